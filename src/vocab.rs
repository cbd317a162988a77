//! Shared vocabulary at the bottom of the layering: the words the config file, the HTTP layer
//! and the channels all use — [`Secret`] (a credential that never prints), [`parse_duration`]
//! (`5m`, `1h 30m`, `3d`), and the names of what a source may send ([`Permission`]) and what a
//! user may do ([`Role`], [`UserPermission`]). Depends on nothing in the crate, so low modules
//! (channels, redaction, auth) need not reach up into [`crate::config`] for them; `config`
//! re-exports them so its call sites read as before.

use std::time::Duration;

use serde::Deserialize;

/// gives the value, so a secret cannot reach a log line by accident.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// What a source may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Machine alerts: `/api/v2/alerts`, `/v2/enqueue`, `/api/v1/alertmanager`.
    Alerts,
    /// Customer reports: `/api/v1/reports`.
    Reports,
    /// Canonical events: `/api/v1/events`.
    Events,
}

impl Permission {
    pub const ALL: [Permission; 3] = [Permission::Alerts, Permission::Reports, Permission::Events];

    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Alerts => "alerts",
            Permission::Reports => "reports",
            Permission::Events => "events",
        }
    }
}

/// What a user credential may do on the read/act API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Responder,
    Admin,
}

/// A permission a user holds besides their role (`users[].permissions`). Roles never imply
/// one: an admin without `pii` sees redacted customer data like a viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UserPermission {
    /// See personal data unredacted in API answers and on the dashboard.
    Pii,
}

impl UserPermission {
    pub const ALL: [UserPermission; 1] = [UserPermission::Pii];

    pub fn as_str(self) -> &'static str {
        match self {
            UserPermission::Pii => "pii",
        }
    }
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Responder, Role::Admin];

    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Admin => "admin",
        }
    }
}

/// Accepts jiff's friendly format (`500ms`, `2s`, `5m`, `1h`, `1h 30m`) and ISO 8601 (`PT2S`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad =
        || format!("`{}` is not a duration; write e.g. 500ms, 2s, 5m or 1h", text.escape_debug());
    // Days (and weeks) count as 24 hours (168): notice deadlines and review reminders are
    // written as `3d`, and a deadline measured in hours does not bend for clock changes.
    let signed: jiff::SignedDuration = match text.trim().parse() {
        Ok(d) => d,
        Err(_) => text
            .trim()
            .parse::<jiff::Span>()
            .ok()
            .filter(|s| s.get_years() == 0 && s.get_months() == 0)
            .and_then(|s| s.to_duration(jiff::SpanRelativeTo::days_are_24_hours()).ok())
            .ok_or_else(bad)?,
    };
    if signed.is_negative() {
        return Err(format!("`{}` is negative", text.escape_debug()));
    }
    if signed.is_zero() {
        return Err("must be longer than 0".to_string());
    }
    Duration::try_from(signed).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_humane() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("4m59s"), Ok(Duration::from_secs(299)));
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(3 * 86400)));
        assert_eq!(parse_duration("1w 2d"), Ok(Duration::from_secs(9 * 86400)));
        assert!(parse_duration("1 month").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-2s").is_err());
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn secrets_print_as_stars() {
        assert_eq!(format!("{:?}", Secret::new("s3cret")), "***");
        assert_eq!(format!("{}", Secret::new("s3cret")), "***");
    }
}
