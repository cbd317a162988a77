//! `sources:` and `users:`: who may present which credential. Checked here, next to the code
//! that authenticates them: names, tokens and routing keys (expanded from `${VAR}`, each unique
//! across the file), what a source may send, and a user's roles and permissions.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::config::{MAX_NAME_CHARS, Validator};
use crate::vocab::{Permission, Role, Secret, UserPermission};

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// Sustained events per second.
    pub per_second: u32,
    /// Events that may arrive at once above the sustained rate.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { per_second: 200_000, burst: 400_000 }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub name: String,
    /// `Authorization: Bearer` token for every ingest route but `/v2/enqueue`.
    pub token: Secret,
    /// PagerDuty `routing_key` that identifies this source on `/v2/enqueue`.
    pub routing_key: Option<Secret>,
    pub allow: BTreeSet<Permission>,
    pub rate_limit: RateLimit,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub name: String,
    pub token: Secret,
    pub roles: BTreeSet<Role>,
    /// `pii`: sees personal data unredacted.
    pub permissions: BTreeSet<UserPermission>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub name: Option<Spanned<String>>,
    pub token: Option<Spanned<Secret>>,
    pub routing_key: Option<Spanned<Secret>>,
    pub allow: Option<Spanned<Vec<Spanned<String>>>>,
    pub rate_limit: Option<Spanned<RawRateLimit>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub per_second: Option<Spanned<u64>>,
    pub burst: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: Option<Spanned<String>>,
    pub token: Option<Spanned<Secret>>,
    pub roles: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub permissions: Vec<Spanned<String>>,
}

/// `sources:`: each source's name, token, routing key, `allow` and rate limit; names and
/// credentials unique across the file. A source with no usable name or token is left out.
pub fn sources(cx: &mut Validator<'_>, raw: Vec<Spanned<RawSource>>) -> Vec<Source> {
    let mut sources = Vec::new();
    // Earlier owner of each name / token / routing key, so the error names both places.
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut tokens: BTreeMap<String, String> = BTreeMap::new();
    let mut routing_keys: BTreeMap<String, String> = BTreeMap::new();
    for (i, entry) in raw.into_iter().enumerate() {
        let at = entry.referenced;
        let raw = entry.value;
        let path = format!("sources[{i}]");

        let name = name(cx, raw.name, at, &path, true);
        if let Some((name, loc)) = &name {
            if let Some(first) = names.get(name) {
                let message = format!("source `{name}` is already defined at {first}");
                cx.err(*loc, &format!("{path}.name"), message);
            } else {
                names.insert(name.clone(), path.clone());
            }
        }

        let token = secret(cx, raw.token, at, &format!("{path}.token"), "token", &mut tokens);
        let routing_key = raw.routing_key.and_then(|key| {
            secret(
                cx,
                Some(key),
                at,
                &format!("{path}.routing_key"),
                "routing_key",
                &mut routing_keys,
            )
        });

        let allow = match raw.allow {
            None => Permission::ALL.into_iter().collect(),
            Some(list) => {
                let allow_path = format!("{path}.allow");
                if list.value.is_empty() {
                    cx.err(
                        list.referenced,
                        &allow_path,
                        "is empty, so this source could send nothing; list permissions \
                         (alerts, reports, events) or omit `allow` to allow all",
                    );
                }
                cx.one_of(
                    list.value,
                    &allow_path,
                    |word| Permission::ALL.into_iter().find(|p| p.as_str() == word),
                    "alerts, reports, events",
                )
            }
        };

        let rate_limit = rate_limit(cx, raw.rate_limit, &format!("{path}.rate_limit"));

        if let (Some((name, _)), Some(token)) = (name, token) {
            sources.push(Source { name, token, routing_key, allow, rate_limit });
        }
    }
    sources
}

/// `users:`: each user's name, token, roles and permissions.
pub fn users(cx: &mut Validator<'_>, raw: Vec<Spanned<RawUser>>) -> Vec<User> {
    let mut users = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut tokens: BTreeMap<String, String> = BTreeMap::new();
    for (i, entry) in raw.into_iter().enumerate() {
        let at = entry.referenced;
        let raw = entry.value;
        let path = format!("users[{i}]");

        let name = name(cx, raw.name, at, &path, false);
        if let Some((name, loc)) = &name {
            if let Some(first) = names.get(name) {
                let message = format!("user `{name}` is already defined at {first}");
                cx.err(*loc, &format!("{path}.name"), message);
            } else {
                names.insert(name.clone(), path.clone());
            }
        }

        let token = secret(cx, raw.token, at, &format!("{path}.token"), "token", &mut tokens);

        let roles_path = format!("{path}.roles");
        let roles = match raw.roles {
            None => {
                cx.err(
                    at,
                    &roles_path,
                    "is missing; give at least one of: viewer, responder, admin",
                );
                BTreeSet::new()
            }
            Some(list) => {
                if list.value.is_empty() {
                    cx.err(
                        list.referenced,
                        &roles_path,
                        "is empty; give at least one of: viewer, responder, admin",
                    );
                }
                cx.one_of(
                    list.value,
                    &roles_path,
                    |word| Role::ALL.into_iter().find(|r| r.as_str() == word),
                    "viewer, responder, admin",
                )
            }
        };

        let permissions = cx.one_of(
            raw.permissions,
            &format!("{path}.permissions"),
            |word| UserPermission::ALL.into_iter().find(|p| p.as_str() == word),
            "pii",
        );

        if let (Some((name, _)), Some(token)) = (name, token) {
            users.push(User { name, token, roles, permissions });
        }
    }
    users
}

/// Source names end up in metrics labels, log fields and URLs, so they are kept to a safe
/// alphabet; user names only need to be printable.
fn name(
    cx: &mut Validator<'_>,
    raw: Option<Spanned<String>>,
    at: Location,
    path: &str,
    strict: bool,
) -> Option<(String, Location)> {
    let path = format!("{path}.name");
    let Some(s) = raw else {
        cx.err(at, &path, "is missing");
        return None;
    };
    let name = s.value;
    let problem = if name.is_empty() {
        Some("must not be empty".to_string())
    } else if name.chars().count() > MAX_NAME_CHARS {
        Some(format!("is longer than {MAX_NAME_CHARS} characters"))
    } else if strict && !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        Some(format!(
            "`{}` may only contain letters, digits, `_`, `.` and `-`",
            name.escape_debug()
        ))
    } else if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Some(format!("`{}` must not contain spaces or control characters", name.escape_debug()))
    } else {
        None
    };
    match problem {
        Some(message) => {
            cx.err(s.referenced, &path, message);
            None
        }
        None => Some((name, s.referenced)),
    }
}

/// Expands and checks a token or routing key; `seen` maps each value to the first field
/// that used it, because one credential must identify exactly one source or user.
fn secret(
    cx: &mut Validator<'_>,
    raw: Option<Spanned<Secret>>,
    at: Location,
    path: &str,
    what: &str,
    seen: &mut BTreeMap<String, String>,
) -> Option<Secret> {
    let Some(s) = raw else {
        cx.err(at, path, format!("{what} is missing"));
        return None;
    };
    let value = cx.expand(s.value.expose(), s.referenced, path)?;
    if value.is_empty() {
        cx.err(s.referenced, path, format!("{what} is empty"));
        return None;
    }
    // Whitespace usually means a stray newline from a file or variable; the header value
    // that must match it can't carry one.
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        cx.err(s.referenced, path, format!("{what} contains whitespace or control characters"));
        return None;
    }
    if let Some(first) = seen.get(&value) {
        cx.err(s.referenced, path, format!("same {what} as {first}; each must be unique"));
        return None;
    }
    seen.insert(value.clone(), path.to_string());
    Some(Secret::new(value))
}

fn rate_limit(cx: &mut Validator<'_>, raw: Option<Spanned<RawRateLimit>>, path: &str) -> RateLimit {
    let defaults = RateLimit::default();
    let Some(raw) = raw.map(|s| s.value) else {
        return defaults;
    };
    let mut field = |value: Option<Spanned<u64>>, name: &str| -> Option<u32> {
        let s = value?;
        match u32::try_from(s.value) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                cx.err(
                    s.referenced,
                    &format!("{path}.{name}"),
                    format!("must be from 1 to {}, not {}", u32::MAX, s.value),
                );
                None
            }
        }
    };
    let per_second_given = raw.per_second.is_some();
    let per_second = field(raw.per_second, "per_second");
    let burst = field(raw.burst, "burst");
    let per_second = per_second.unwrap_or(defaults.per_second);
    // A burst left out follows the given rate (two seconds' worth) rather than the default
    // rate, so `{ per_second: 10 }` doesn't silently allow 400000 at once.
    let burst = burst.unwrap_or(if per_second_given {
        per_second.saturating_mul(2)
    } else {
        defaults.burst
    });
    RateLimit { per_second, burst }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{env_of, find, load_text};

    #[test]
    fn unquoted_references_and_partial_rate_limit() {
        let text = "sources:\n  - name: a\n    token: ${T}\n    routing_key: rk-${T}\n    \
                    rate_limit: { per_second: 10 }\n";
        let config = load_text(text, &env_of(&[("T", "v")])).unwrap();
        let source = &config.sources[0];
        assert_eq!(source.token.expose(), "v");
        assert_eq!(source.routing_key.as_ref().map(Secret::expose), Some("rk-v"));
        assert_eq!(source.rate_limit, RateLimit { per_second: 10, burst: 20 });
    }

    #[test]
    fn env_values_cannot_inject_yaml() {
        let text = "sources:\n  - name: a\n    token: ${T}\n";
        let env = env_of(&[("T", "x\n  - name: evil\n    token: y")]);
        let errors = load_text(text, &env).unwrap_err();
        assert!(find(&errors, "sources[0].token").message.contains("whitespace"), "{errors}");

        let env = env_of(&[("T", "x}]},{name:evil")]);
        let config = load_text(text, &env).unwrap();
        assert_eq!(config.sources.len(), 1);
        assert_eq!(config.sources[0].token.expose(), "x}]},{name:evil");
    }
}
