//! `redaction:` → the [`super::Policy`]: which event fields and patterns are redacted, the
//! operator's own regexes, and which audiences and channels get redacted notifications.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Builtin, NamedRegex};
use crate::config::Validator;

/// Lower-case letters, digits and `_`, starting with a letter: marker labels and audiences.
fn is_marker_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(b'a'..=b'z'))
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// `redaction:`: what personal data to redact, and for whom (see [`crate::redact`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedaction {
    pub fields: Option<Vec<Spanned<String>>>,
    pub patterns: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub regexes: Vec<Spanned<RawNamedRegex>>,
    #[serde(default)]
    pub notify_audiences: Vec<Spanned<String>>,
    #[serde(default)]
    pub notify_channels: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNamedRegex {
    pub name: Option<Spanned<String>>,
    pub regex: Option<Spanned<String>>,
}

/// `redaction:` → the policy; each key defaults on its own (see [`crate::redact::Policy`]).
pub fn validate(
    cx: &mut Validator<'_>,
    raw: Option<Spanned<RawRedaction>>,
) -> crate::redact::Policy {
    use super::{CUSTOMER_FIELDS, Policy};
    let mut policy = Policy::default();
    let Some(raw) = raw.map(|r| r.value) else {
        return policy;
    };
    if let Some(fields) = raw.fields {
        // A verified customer report's name, e-mail and phone are redacted whatever the
        // list names: configuring one more field must not un-redact the customer.
        policy.fields = CUSTOMER_FIELDS.iter().map(|f| crate::redact::split_path(f)).collect();
        for (i, f) in fields.into_iter().enumerate() {
            let path = format!("redaction.fields[{i}]");
            match crate::redact::parse_path(f.value.trim()) {
                Err(why) => cx.err(
                    f.referenced,
                    &path,
                    format!(
                        "`{}` {why} (a dotted path such as customer.email or labels.\"a.b\")",
                        f.value
                    ),
                ),
                Ok(segments) if !policy.fields.contains(&segments) => policy.fields.push(segments),
                Ok(_) => {}
            }
        }
    }
    if let Some(patterns) = raw.patterns {
        policy.patterns = cx.one_of(
            patterns,
            "redaction.patterns",
            Builtin::parse,
            "email, phone, card (operator patterns go under redaction.regexes)",
        );
    }
    policy.regexes = regexes(cx, raw.regexes);
    for (i, a) in raw.notify_audiences.into_iter().enumerate() {
        if is_marker_name(&a.value) {
            policy.notify_audiences.insert(a.value);
        } else {
            cx.err(
                a.referenced,
                &format!("redaction.notify_audiences[{i}]"),
                format!("`{}` is not an audience name (lower-case letters, digits, _)", a.value),
            );
        }
    }
    policy.notify_channels = cx.one_of(
        raw.notify_channels,
        "redaction.notify_channels",
        |w| {
            use crate::notify::Channel;
            [Channel::Email, Channel::Sms, Channel::Webhook, Channel::Log]
                .into_iter()
                .find(|c| c.as_str() == w)
        },
        "email, sms, webhook, log",
    );
    policy
}

/// `redaction.regexes`: the operator's named patterns, each name new and each regex valid and
/// unable to match the empty string.
fn regexes(cx: &mut Validator<'_>, raw: Vec<Spanned<RawNamedRegex>>) -> Vec<NamedRegex> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (i, r) in raw.into_iter().enumerate() {
        let path = format!("redaction.regexes[{i}]");
        let at = r.referenced;
        let name = match r.value.name {
            None => {
                cx.err(at, &format!("{path}.name"), "is missing");
                None
            }
            Some(n) if !is_marker_name(&n.value) => {
                cx.err(
                    n.referenced,
                    &format!("{path}.name"),
                    format!("`{}` must be lower-case letters, digits or _", n.value),
                );
                None
            }
            Some(n) if Builtin::parse(&n.value).is_some() || !names.insert(n.value.clone()) => {
                cx.err(
                    n.referenced,
                    &format!("{path}.name"),
                    format!("`{}` is already a pattern name", n.value),
                );
                None
            }
            Some(n) => Some(n.value),
        };
        let regex = match r.value.regex {
            None => {
                cx.err(at, &format!("{path}.regex"), "is missing");
                None
            }
            Some(re) => match regex::Regex::new(&re.value) {
                Ok(compiled) if compiled.is_match("") => {
                    cx.err(
                        re.referenced,
                        &format!("{path}.regex"),
                        "matches the empty string, so it would match everywhere",
                    );
                    None
                }
                Ok(_) => Some(re.value),
                Err(e) => {
                    let first = e.to_string().lines().last().unwrap_or_default().to_string();
                    cx.err(
                        re.referenced,
                        &format!("{path}.regex"),
                        format!("is not a valid regular expression: {first}"),
                    );
                    None
                }
            },
        };
        if let (Some(name), Some(regex)) = (name, regex) {
            out.push(NamedRegex { name, regex });
        }
    }
    out
}
