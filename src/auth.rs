//! Credentials: who is presenting a request, and what they may do.
//!
//! Sits at the door of every route. Tokens are kept only as SHA-256 digests and compared in
//! constant time against every configured credential (no early exit), so neither timing nor a
//! memory dump reveals a token. Logs name the credential, never its value.

pub mod config;

use std::collections::BTreeSet;
use std::num::NonZeroU32;

use axum::http::{HeaderMap, header};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Config, Permission, Role};
use crate::error::ApiError;

type Digest32 = [u8; 32];

fn digest(token: &str) -> Digest32 {
    Sha256::digest(token.as_bytes()).into()
}

/// A configured sender of events.
pub struct SourceEntry {
    pub name: String,
    token: Digest32,
    routing_key: Option<Digest32>,
    pub allow: BTreeSet<Permission>,
    /// Direct (not keyed) limiter: one per source, so a flood from one sender cannot starve
    /// another, and no per-key state grows.
    limiter: DefaultDirectRateLimiter,
    burst: NonZeroU32,
}

impl std::fmt::Debug for SourceEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceEntry").field("name", &self.name).field("allow", &self.allow).finish()
    }
}

impl SourceEntry {
    /// Takes `n` events from the source's budget, or says how long to wait. A batch larger
    /// than the burst is charged the whole burst, so that it can pass on an idle limiter
    /// instead of being refused forever.
    pub fn admit(&self, n: usize) -> Result<(), ApiError> {
        let n = u32::try_from(n).unwrap_or(u32::MAX).min(self.burst.get());
        let Some(n) = NonZeroU32::new(n) else {
            return Ok(());
        };
        match self.limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(ApiError::RateLimited {
                    limit: format!("source {}", self.name),
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                })
            }
            // Unreachable with n clamped to the burst; answer as a full limiter anyway.
            Err(_) => Err(ApiError::RateLimited {
                limit: format!("source {}", self.name),
                retry_after_secs: 1,
            }),
        }
    }

    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.allow.contains(&permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "source {} may not send {}; its config allows {:?}",
                self.name,
                permission_name(permission),
                self.allow.iter().map(|p| permission_name(*p)).collect::<Vec<_>>()
            )))
        }
    }
}

pub fn permission_name(p: Permission) -> &'static str {
    match p {
        Permission::Alerts => "alerts",
        Permission::Reports => "reports",
        Permission::Events => "events",
    }
}

/// A configured person or tool using the read/act API.
#[derive(Debug)]
pub struct UserEntry {
    pub name: String,
    token: Digest32,
    pub roles: BTreeSet<Role>,
    /// `pii`: may see personal data unredacted (see [`crate::redact::allows_pii`]).
    pub permissions: BTreeSet<crate::config::UserPermission>,
}

impl UserEntry {
    /// Roles are ordered: an admin may do what a responder may, a responder what a viewer may.
    pub fn has(&self, role: Role) -> bool {
        self.roles.iter().any(|r| *r >= role)
    }
}

#[derive(Debug)]
pub struct Authenticator {
    sources: Vec<SourceEntry>,
    users: Vec<UserEntry>,
}

impl Authenticator {
    pub fn new(config: &Config) -> Authenticator {
        let sources = config
            .sources
            .iter()
            .map(|s| {
                let per_second =
                    NonZeroU32::new(s.rate_limit.per_second).unwrap_or(NonZeroU32::MIN);
                let burst = NonZeroU32::new(s.rate_limit.burst).unwrap_or(per_second);
                SourceEntry {
                    name: s.name.clone(),
                    token: digest(s.token.expose()),
                    routing_key: s.routing_key.as_ref().map(|k| digest(k.expose())),
                    allow: s.allow.clone(),
                    limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
                    burst,
                }
            })
            .collect();
        let users = config
            .users
            .iter()
            .map(|u| UserEntry {
                name: u.name.clone(),
                token: digest(u.token.expose()),
                roles: u.roles.clone(),
                permissions: u.permissions.clone(),
            })
            .collect();
        Authenticator { sources, users }
    }

    /// The source whose bearer token is in the `Authorization` header (401 otherwise).
    pub fn source_by_bearer(&self, headers: &HeaderMap) -> Result<&SourceEntry, ApiError> {
        let presented = digest(bearer(headers)?);
        find(&self.sources, |s| &s.token, &presented)
            .ok_or_else(|| ApiError::Unauthorized("the bearer token matches no source".into()))
    }

    /// The source whose PagerDuty routing key this is (401 otherwise).
    pub fn source_by_routing_key(&self, key: &str) -> Result<&SourceEntry, ApiError> {
        if key.is_empty() {
            // PagerDuty's words, since this is PagerDuty's API (answered 400 on /v2/enqueue).
            return Err(ApiError::Unauthorized("'routing_key' is missing or blank".into()));
        }
        let presented = digest(key);
        let mut found = None;
        for s in &self.sources {
            if let Some(k) = &s.routing_key
                && bool::from(k.ct_eq(&presented))
                && found.is_none()
            {
                found = Some(s);
            }
        }
        found.ok_or_else(|| {
            ApiError::Unauthorized("Invalid routing key: it is no source's routing_key".into())
        })
    }

    /// The user presenting the bearer token, if they hold `role` (401 or 403 otherwise).
    pub fn user_with_role(&self, headers: &HeaderMap, role: Role) -> Result<&UserEntry, ApiError> {
        let presented = digest(bearer(headers)?);
        let user = find(&self.users, |u| &u.token, &presented)
            .ok_or_else(|| ApiError::Unauthorized("the bearer token matches no user".into()))?;
        if user.has(role) {
            Ok(user)
        } else {
            Err(ApiError::Forbidden(format!("user {} needs the {:?} role", user.name, role)))
        }
    }
}

/// For the dashboard's sign-in form and its sessions.
impl Authenticator {
    /// The user named `name` whose token is `token`, compared in constant time like a bearer
    /// token (`None` for a wrong name or token, without saying which).
    pub fn user_by_credentials(&self, name: &str, token: &str) -> Option<&UserEntry> {
        let presented = digest(token);
        find(&self.users, |u| &u.token, &presented).filter(|u| u.name == name)
    }

    /// The user named `name` if their token still has the digest `token_digest` (a session
    /// outlives neither the user nor a change of their token).
    pub fn user_with_digest(&self, name: &str, token_digest: &[u8; 32]) -> Option<&UserEntry> {
        self.users.iter().find(|u| u.name == name && bool::from(u.token.ct_eq(token_digest)))
    }
}

impl UserEntry {
    /// The SHA-256 digest of the user's token: what a dashboard session remembers.
    pub fn token_digest(&self) -> [u8; 32] {
        self.token
    }
}

/// Compares against every entry without stopping at the first match, so the time taken does
/// not tell an attacker how far down the list a near-miss was.
fn find<'a, T>(
    items: &'a [T],
    key: impl Fn(&T) -> &Digest32,
    presented: &Digest32,
) -> Option<&'a T> {
    let mut found = None;
    for item in items {
        if bool::from(key(item).ct_eq(presented)) && found.is_none() {
            found = Some(item);
        }
    }
    found
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized(
            "missing Authorization header; send `Authorization: Bearer <token>`".into(),
        )
    })?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("Authorization header is not valid text".into()))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::Unauthorized("Authorization header must be `Bearer <token>`".into())),
    }
}
