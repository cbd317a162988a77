//! `dashboard:`: how long a sign-in session lasts without a request.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::Validator;

/// `dashboard:` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dashboard {
    /// A session ends after this long without a request (idle timeout).
    pub session_ttl: Duration,
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard { session_ttl: Duration::from_secs(12 * 3600) }
    }
}

/// Longest `dashboard.session_ttl` accepted.
const MAX_SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDashboard {
    pub session_ttl: Option<Spanned<String>>,
}

/// `dashboard:`: `session_ttl` from 1m to 30 days.
pub fn validate(cx: &mut Validator<'_>, raw: Option<Spanned<RawDashboard>>) -> Dashboard {
    let mut out = Dashboard::default();
    let Some(ttl) = raw.and_then(|r| r.value.session_ttl) else { return out };
    let at = ttl.referenced;
    let parsed = cx.duration(Some(ttl), "dashboard.session_ttl", out.session_ttl);
    if parsed < Duration::from_secs(60) || parsed > MAX_SESSION_TTL {
        cx.err(at, "dashboard.session_ttl", "must be from 1m to 30 days");
    } else {
        out.session_ttl = parsed;
    }
    out
}
