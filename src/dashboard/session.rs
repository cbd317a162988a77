//! Dashboard sign-in sessions, their cookie, CSRF tokens and the sign-in rate limit.
//!
//! A session is a random 32-byte id (hex in the cookie) mapped, in memory only, to the user's
//! name, the digest of the token they signed in with, a per-session CSRF token and when it was
//! last used. Every request re-checks the session against the running config: a user removed
//! or whose token changed (after a reload) loses their sessions at their next request, and
//! roles are read afresh each time, so a demotion applies at once. Sessions end after
//! `dashboard.session_ttl` without a request, on sign-out, and when the daemon restarts.
//!
//! The cookie is `HttpOnly; SameSite=Strict; Path=/`, plus `Secure` when
//! `notifications.dashboard_url` starts with `https://` or the request says it came over TLS
//! through a proxy (`X-Forwarded-Proto: https`). Tocsin itself serves plain HTTP, so those are
//! the two ways it can know the browser is on HTTPS; setting `Secure` on a plain-HTTP origin
//! would make the browser drop the cookie and sign-in would never stick.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use crate::config::Role;
use crate::http::clients::FailureBudget;
use crate::http::connections::AddrKey;
use crate::runtime::Runtime;

pub const COOKIE: &str = "tocsin_session";

/// Failed sign-ins per client address and user name: 5, then one every 12 s.
const PER_NAME_BURST: u32 = 5;
const PER_NAME_EVERY: Duration = Duration::from_secs(12);
/// Failed sign-ins per client address, whatever the names: 10, then one every 6 s.
const PER_CLIENT_BURST: u32 = 10;
const PER_CLIENT_EVERY: Duration = Duration::from_secs(6);
/// Sessions held at most; the least recently used goes when a sign-in would exceed it.
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug)]
struct Session {
    user: String,
    token_digest: [u8; 32],
    csrf: String,
    last_seen: Instant,
}

/// Who is signed in, as checked for this request.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub name: String,
    /// The highest role the user holds now.
    pub role: Role,
    /// The session's CSRF token (put in every form).
    pub csrf: String,
    /// Holds the `pii` permission: sees customer data as stored (the API's rule too).
    pub pii: bool,
}

impl Viewer {
    pub fn may(&self, role: Role) -> bool {
        self.role >= role
    }
}

pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    /// Only failures are charged, and only to the client that made them: someone guessing
    /// from elsewhere (or many) cannot lock a user out, and guesses from one client are slow.
    per_name: FailureBudget<(AddrKey, String)>,
    per_client: FailureBudget<AddrKey>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a sign-in was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SignInError {
    /// Too many attempts: try again after this many seconds.
    RateLimited(u64),
    /// Wrong name or token (which one is not said).
    Rejected,
}

impl Sessions {
    pub fn new() -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            per_name: FailureBudget::new(PER_NAME_BURST, PER_NAME_EVERY),
            per_client: FailureBudget::new(PER_CLIENT_BURST, PER_CLIENT_EVERY),
        }
    }

    /// Checks the name and token against the configured users and opens a session: answers
    /// the new session id. A client whose failures have used up its budget (for this name, or
    /// for all names) is refused before the credential is looked at; a failure is charged to
    /// the client that made it, a success to nobody.
    pub fn sign_in(
        &self,
        rt: &Runtime,
        client: std::net::IpAddr,
        name: &str,
        token: &str,
    ) -> Result<String, SignInError> {
        // Names no user has share one key, so guessed names grow no limiter state.
        let key: String = if rt.config.users.iter().any(|u| u.name == name) {
            name.to_string()
        } else {
            "\u{0}unknown".to_string()
        };
        let from = AddrKey::of(client);
        let named = (from, key.clone());
        if let Some(wait) = self.per_client.blocked(&from).max(self.per_name.blocked(&named)) {
            tracing::info!(
                user = key.trim_start_matches('\u{0}'),
                %client,
                "dashboard sign-in rate limited"
            );
            return Err(SignInError::RateLimited(crate::http::clients::retry_after_secs(wait)));
        }
        let Some(user) = rt.auth.user_by_credentials(name, token) else {
            tracing::info!(user = key.trim_start_matches('\u{0}'), %client, "dashboard sign-in refused");
            self.per_client.fail(from);
            self.per_name.fail(named);
            return Err(SignInError::Rejected);
        };
        let id = random_hex();
        let session = Session {
            user: user.name.clone(),
            token_digest: user.token_digest(),
            csrf: random_hex(),
            last_seen: Instant::now(),
        };
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let ttl = rt.config.dashboard.session_ttl;
        map.retain(|_, s| s.last_seen.elapsed() < ttl);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) =
                map.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id.clone(), session);
        tracing::info!(user = user.name, "dashboard sign-in");
        Ok(id)
    }

    /// The signed-in user for these request headers, if the session exists, is not idle past
    /// the TTL, and the user still exists with the same token. Refreshes the idle timer.
    pub fn viewer(&self, rt: &Runtime, headers: &HeaderMap) -> Option<Viewer> {
        let id = session_id(headers)?;
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let session = map.get_mut(&id)?;
        let ttl = rt.config.dashboard.session_ttl;
        let user = rt.auth.user_with_digest(&session.user, &session.token_digest);
        let (Some(user), true) = (user, session.last_seen.elapsed() < ttl) else {
            map.remove(&id);
            return None;
        };
        let role = user.roles.iter().max().copied()?;
        session.last_seen = Instant::now();
        Some(Viewer {
            name: user.name.clone(),
            role,
            csrf: session.csrf.clone(),
            pii: crate::redact::allows_pii(user),
        })
    }

    /// Ends the session these headers carry.
    pub fn sign_out(&self, headers: &HeaderMap) {
        if let Some(id) = session_id(headers) {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = map.remove(&id) {
                tracing::info!(user = s.user, "dashboard sign-out");
            }
        }
    }

    /// Sessions currently held (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session id from the `Cookie` header(s).
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether the browser reached us over HTTPS (see the module doc).
pub fn secure(rt: &Runtime, headers: &HeaderMap) -> bool {
    let configured =
        rt.config.notifications.dashboard_url.as_deref().is_some_and(|u| u.starts_with("https://"));
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    configured || forwarded
}

/// The `Set-Cookie` value that stores session `id`.
pub fn set_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/{secure}")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}")
}

/// The form's CSRF token matches the session's (constant time).
pub fn csrf_ok(viewer: &Viewer, presented: Option<&str>) -> bool {
    let Some(presented) = presented else { return false };
    presented.len() == viewer.csrf.len()
        && bool::from(presented.as_bytes().ct_eq(viewer.csrf.as_bytes()))
}

/// If the request carries an `Origin`, it must be this server (the `Host` it was sent to, or
/// the origin of `notifications.dashboard_url`). A missing `Origin` passes (older browsers,
/// and the CSRF token is checked anyway).
pub fn origin_ok(rt: &Runtime, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    if origin == "null" {
        return false;
    }
    let host_of = |o: &str| {
        o.split_once("://").map(|(_, rest)| rest.split('/').next().unwrap_or("").to_string())
    };
    let Some(origin_host) = host_of(origin) else { return false };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        return true;
    }
    rt.config
        .notifications
        .dashboard_url
        .as_deref()
        .and_then(host_of)
        .is_some_and(|h| h.eq_ignore_ascii_case(&origin_host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookie_is_found_among_others_and_must_look_like_an_id() {
        let id = "ab".repeat(32);
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("a=1; {COOKIE}={id}")).unwrap());
        assert_eq!(session_id(&h), Some(id));
        h.insert(header::COOKIE, HeaderValue::from_static("tocsin_session=short"));
        assert_eq!(session_id(&h), None);
    }

    #[test]
    fn cookie_attributes() {
        assert_eq!(set_cookie("x", false), "tocsin_session=x; HttpOnly; SameSite=Strict; Path=/");
        assert!(set_cookie("x", true).ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }

    #[test]
    fn csrf_compares_whole_tokens() {
        let v = Viewer { name: "a".into(), role: Role::Viewer, csrf: "abcd".into(), pii: false };
        assert!(csrf_ok(&v, Some("abcd")));
        assert!(!csrf_ok(&v, Some("abc")));
        assert!(!csrf_ok(&v, Some("abce")));
        assert!(!csrf_ok(&v, None));
    }
}
