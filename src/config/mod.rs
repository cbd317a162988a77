//! Configuration: one YAML file (or the embedded default) parsed into raw structs that reject
//! unknown fields, then validated into the typed [`Config`] with every error reported at once,
//! each with its file, line, column and key path.
//!
//! First stage of start-up and of every reload: nothing else reads YAML. The flow is
//! [`resolve_origin`] → [`load`], which reads the text, [`parse`]s it, applies the
//! `TOCSIN_LISTEN` / `TOCSIN_DATA_DIR` overrides, supplies `TOCSIN_TOKEN` when the environment
//! lacks it ([`TokenFallback`]), and ends in the pure [`validate`]. `${VAR}` references are
//! expanded by [`validate`], after parsing, so an environment value can never change the YAML
//! structure.

mod errors;
mod files;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
mod validator;
mod vars;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

pub use crate::vocab::{Permission, Role, Secret, UserPermission, parse_duration};
pub use errors::{ConfigError, ConfigErrors, Position};
pub(crate) use errors::{parse_error, position};
pub use files::{LINK_KEY_FILE, random_secret, read_or_create_link_key};
use files::{TOKEN_FILE, random_token, read_config_file, read_or_create_token};
pub(crate) use validator::At;
pub use validator::{MAX_NAME_CHARS, Validator};
pub use vars::expand_secret;
use vars::{Piece, expand, split_vars};

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// The configuration used when no file is given and `rules/tocsin.yaml` does not exist.
///
/// Every credential is `${TOCSIN_TOKEN}`, which [`load`] can generate and keep in
/// `<data_dir>/token`, so a bare `tocsin serve` works and is still authenticated. The rate limit
/// is high enough that benchmarks measure the server, not the limiter.
pub const EMBEDDED_DEFAULT: &str = r#"# Tocsin's embedded default configuration. rules/tocsin.yaml documents every key.
listen: "127.0.0.1:9797"
data_dir: "./tocsin-data"
log_format: text
limits:
  max_body_bytes: 524288
  header_read_timeout: 30s
  request_timeout: 30s
journal:
  queue_capacity: 4096
  max_batch_events: 4096
sources:
  - name: default
    token: "${TOCSIN_TOKEN}"
    routing_key: "${TOCSIN_TOKEN}"
    allow: [alerts, reports, events]
    rate_limit: { per_second: 200000, burst: 400000 }
users:
  - name: admin
    token: "${TOCSIN_TOKEN}"
    roles: [admin]
    permissions: [pii]
# Every new incident is written to <data_dir>/notifications.jsonl, so a newcomer sees the whole
# pipeline work without a mail server or SMS gateway.
notifications:
  log: { path: notifications.jsonl }
policies:
  - name: default
    notify:
      - { log: true }
default_policy: default
"#;

/// Lower-case letters, digits and `_`, starting with a letter: marker labels and audiences.
fn is_marker_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(b'a'..=b'z'))
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// The file looked for in the working directory when no path is given.
pub const DEFAULT_CONFIG_PATH: &str = "rules/tocsin.yaml";

/// Where the configuration text comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOrigin {
    File(PathBuf),
    Embedded,
}

impl fmt::Display for ConfigOrigin {
    /// The name used in front of every error location.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigOrigin::File(path) => write!(f, "{}", path.display()),
            ConfigOrigin::Embedded => f.write_str("<embedded default>"),
        }
    }
}

/// The explicit path if one is given, else [`DEFAULT_CONFIG_PATH`] if it exists (relative to
/// the working directory), else the embedded default.
pub fn resolve_origin(explicit: Option<&Path>) -> ConfigOrigin {
    match explicit {
        Some(path) => ConfigOrigin::File(path.to_path_buf()),
        None if Path::new(DEFAULT_CONFIG_PATH).is_file() => {
            ConfigOrigin::File(PathBuf::from(DEFAULT_CONFIG_PATH))
        }
        None => ConfigOrigin::Embedded,
    }
}

/// What [`load`] does when the config references `${TOCSIN_TOKEN}` and the environment has no
/// `TOCSIN_TOKEN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFallback {
    /// Read `<data_dir>/token`, or create it (mode 0600) with a new random token. For `serve`.
    Generate,
    /// Use a random in-memory token and touch nothing on disk. For `tocsin check`, which only
    /// asks whether the config is valid.
    Placeholder,
}

/// Loads and validates the configuration.
///
/// `env` looks up environment variables; pass `&|name| std::env::var(name).ok()` in the
/// binary and a map in tests. `TOCSIN_LISTEN` and `TOCSIN_DATA_DIR`, when set and non-empty,
/// win over the file. Every problem found is returned at once.
pub fn load(
    origin: &ConfigOrigin,
    env: &dyn Fn(&str) -> Option<String>,
    token: TokenFallback,
) -> Result<Config, ConfigErrors> {
    let file = origin.to_string();
    let text = match origin {
        ConfigOrigin::File(path) => read_config_file(path)?,
        ConfigOrigin::Embedded => EMBEDDED_DEFAULT.to_string(),
    };
    let mut raw = parse(&text, &file)?;
    raw.apply_env_overrides(env);

    let mut generated_token = None;
    let mut fallback_token = None;
    if raw.references_var(TOKEN_VAR) && env(TOKEN_VAR).is_none() {
        let data_dir = match &raw.env_overrides.data_dir {
            Some(dir) => Some(dir.clone()),
            None => match &raw.data_dir {
                Some(dir) => expand(&dir.value, env).ok(),
                None => Some(DEFAULT_DATA_DIR.to_string()),
            },
        };
        match (token, data_dir) {
            (TokenFallback::Generate, Some(dir)) if !dir.is_empty() => {
                let path = Path::new(&dir).join(TOKEN_FILE);
                fallback_token = Some(read_or_create_token(&path)?);
                generated_token = Some(path);
            }
            // Without a usable data_dir, validation fails anyway and names the real problem;
            // the placeholder keeps a second, misleading "TOCSIN_TOKEN is not set" out of it.
            _ => fallback_token = Some(random_token().map_err(|e| ConfigErrors::one(&file, e))?),
        }
    }

    let env_with_token = |name: &str| match (&fallback_token, name == TOKEN_VAR) {
        (Some(token), true) => Some(token.clone()),
        _ => env(name),
    };
    let mut config = validate(raw, &file, &env_with_token)?;
    config.generated_token = generated_token;
    if let ConfigOrigin::File(path) = origin {
        let base = path.parent().unwrap_or(Path::new("."));
        for dir in
            [&mut config.rules_dir, &mut config.notifications.templates].into_iter().flatten()
        {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
    }
    // The notification log lives with the rest of the data unless an absolute path is given.
    if let Some(log) = &mut config.notifications.log_path
        && log.is_relative()
    {
        *log = config.data_dir.join(&*log);
    }
    Ok(config)
}

/// Parses YAML text into [`RawConfig`]. `file` names the text in error messages.
///
/// Only YAML syntax, shape, types and unknown keys are checked here; values are checked by
/// [`validate`].
pub fn parse(text: &str, file: &str) -> Result<RawConfig, ConfigErrors> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigErrors::one(
            file,
            format!("config is {} bytes; the limit is {MAX_CONFIG_BYTES}", text.len()),
        ));
    }
    serde_saphyr::from_str_with_options(text, parse_options())
        .map_err(|err| ConfigErrors { errors: vec![parse_error(file, &err)] })
}

/// Turns a parsed config into the typed [`Config`], reporting every problem at once.
///
/// Pure: `env` is the only outside input, used to expand `${VAR}` in `listen`, `data_dir`,
/// tokens and routing keys. [`Config::generated_token`] is left `None`; [`load`] sets it.
pub fn validate(
    raw: RawConfig,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut v = Validator::new(file, env);
    let config = v.config(raw);
    let errors = v.into_errors();
    if errors.is_empty() { Ok(config) } else { Err(ConfigErrors { errors }) }
}

// ---------------------------------------------------------------------------------------------
// Typed configuration: the contract the rest of the crate builds against
// ---------------------------------------------------------------------------------------------

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest accepted request body; larger gets 413.
    pub max_body_bytes: usize,
    /// A client must finish sending its request headers within this time; a connection that
    /// sends no request for this long (a new one included) is closed.
    pub header_read_timeout: Duration,
    /// A request body must arrive within this time.
    pub request_timeout: Duration,
    /// Connections served at once; `None`: derived from the descriptor limit at start
    /// (see [`crate::connections`]).
    pub max_connections: Option<usize>,
    /// Connections from one client address (an IPv6 /64) at once; `None`: a quarter of
    /// `max_connections`. Trusted proxies are exempt.
    pub max_connections_per_address: Option<usize>,
    /// Reverse proxies whose `X-Forwarded-For` names the client for per-address limits.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 512 * 1024,
            header_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            max_connections: None,
            max_connections_per_address: None,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Journal {
    /// Ingest requests that may wait for the writer; beyond that ingest answers 503.
    pub queue_capacity: usize,
    /// Most events committed in one transaction (one fsync).
    pub max_batch_events: usize,
}

impl Default for Journal {
    fn default() -> Self {
        Journal { queue_capacity: 4096, max_batch_events: 4096 }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `host:port` to listen on.
    pub listen: String,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub limits: Limits,
    pub journal: Journal,
    pub sources: Vec<Source>,
    pub users: Vec<User>,
    /// Directory of `*.rhai` scoring rules, relative paths resolved against the config file's
    /// directory; `None` (the embedded default) runs no scripts.
    pub rules_dir: Option<PathBuf>,
    /// Severity thresholds, base scores and rule sandbox limits.
    pub triage: crate::rules::Triage,
    /// People, escalation policies and how decisions pick one.
    pub policies: crate::policy::Policies,
    /// Rotations, roles, and people's time zones and languages.
    pub roster: crate::oncall::Roster,
    /// Channels, delivery retry policy, rate limits, templates.
    pub notifications: Notifications,
    /// Reload when the config file or a rule file changes (inotify); SIGHUP and
    /// `POST /-/reload` work either way.
    pub watch: bool,
    /// Resolve an open incident after this long without a trigger; `None`: never.
    pub auto_resolve_after: Option<Duration>,
    /// What an Alertmanager v2 alert without `endsAt` holds for (Alertmanager's
    /// `resolve_timeout`); `None`: until resolved.
    pub resolve_timeout: Option<Duration>,
    /// Notice rules, status-update intervals, reviews, maintenance windows.
    pub escalation: crate::escalation::Settings,
    /// Where notifications about drill incidents go (`drills:`).
    pub drills: crate::drill::live::Drills,
    /// Set when `${TOCSIN_TOKEN}` came from (or was just written to) this file because the
    /// environment had none, so `serve` can say where the token is.
    pub generated_token: Option<PathBuf>,
    /// The web dashboard's sign-in sessions.
    pub dashboard: Dashboard,
    /// What personal data is redacted where (`redaction:`).
    pub redaction: crate::redact::Policy,
}

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

// ---------------------------------------------------------------------------------------------
// Raw configuration: the YAML shape, before any value is checked
// ---------------------------------------------------------------------------------------------

/// The file as written. Enum-like values (`log_format`, `allow`, `roles`), durations and
/// numbers are kept loose here so that [`validate`] can report all bad values together, each
/// at its own line, instead of stopping at the first one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<Spanned<String>>,
    pub data_dir: Option<Spanned<String>>,
    pub log_format: Option<Spanned<String>>,
    pub limits: Option<Spanned<RawLimits>>,
    pub journal: Option<Spanned<RawJournal>>,
    #[serde(default)]
    pub sources: Vec<Spanned<RawSource>>,
    #[serde(default)]
    pub users: Vec<Spanned<RawUser>>,
    pub rules: Option<Spanned<RawRules>>,
    pub triage: Option<Spanned<RawTriage>>,
    pub incidents: Option<Spanned<RawIncidents>>,
    #[serde(default)]
    pub people: Vec<Spanned<RawPerson>>,
    #[serde(default)]
    pub policies: Vec<Spanned<RawPolicy>>,
    pub default_policy: Option<Spanned<String>>,
    pub severity_policies: Option<Spanned<BTreeMap<String, String>>>,
    /// On-call rotations (see [`crate::oncall`]).
    #[serde(default)]
    pub rotations: Vec<Spanned<RawRotation>>,
    /// Role name → `{ person: ID }` or `{ rotation: NAME }`.
    pub roles: Option<Spanned<BTreeMap<String, Spanned<RawRoleFill>>>>,
    pub notifications: Option<Spanned<RawNotifications>>,
    pub escalation: Option<Spanned<RawEscalation>>,
    #[serde(default)]
    pub notices: Vec<Spanned<RawNotice>>,
    pub communications: Option<Spanned<RawCommunications>>,
    pub reviews: Option<Spanned<RawReviews>>,
    #[serde(default)]
    pub maintenance: Vec<Spanned<RawMaintenance>>,
    pub dashboard: Option<Spanned<RawDashboard>>,
    /// Live drills: who hears about drill incidents.
    pub drills: Option<Spanned<RawDrills>>,
    /// The service catalog (see [`crate::catalog`]).
    #[serde(default)]
    pub catalog: Vec<Spanned<crate::catalog::RawService>>,
    /// Personal data redaction (see [`crate::redact`]).
    pub redaction: Option<Spanned<RawRedaction>>,
    /// Values from the environment that win over the file; not part of the YAML.
    #[serde(skip)]
    pub env_overrides: EnvOverrides,
}

/// `TOCSIN_LISTEN` and `TOCSIN_DATA_DIR`, kept apart from the file's values so an error can say
/// which one was wrong.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EnvOverrides {
    pub listen: Option<String>,
    pub data_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_body_bytes: Option<Spanned<u64>>,
    pub header_read_timeout: Option<Spanned<String>>,
    pub request_timeout: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<u64>>,
    pub max_connections_per_address: Option<Spanned<u64>>,
    pub trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJournal {
    pub queue_capacity: Option<Spanned<u64>>,
    pub max_batch_events: Option<Spanned<u64>>,
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    pub dir: Option<Spanned<String>>,
    pub watch: Option<Spanned<bool>>,
    pub time_budget: Option<Spanned<String>>,
    pub max_operations: Option<Spanned<u64>>,
    pub business_hours: Option<Spanned<RawBusinessHours>>,
    pub night: Option<Spanned<RawNight>>,
}

/// `rules.business_hours`: what `is_business_hours(tz)` answers for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBusinessHours {
    pub days: Option<Spanned<Vec<Spanned<String>>>>,
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
}

/// `rules.night`: what `is_night(tz)` answers for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNight {
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTriage {
    pub severities: Option<Spanned<Vec<Spanned<RawThreshold>>>>,
    pub base_scores: Option<Spanned<std::collections::BTreeMap<String, i64>>>,
    pub default_base_score: Option<Spanned<i64>>,
    pub verified_report_score: Option<Spanned<i64>>,
    pub unverified_report_score: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThreshold {
    pub name: Spanned<String>,
    pub min_score: Spanned<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPerson {
    pub id: Spanned<String>,
    pub name: Option<String>,
    pub email: Option<Spanned<String>>,
    pub phone: Option<Spanned<String>>,
    /// IANA time zone name; UTC when left out.
    pub zone: Option<Spanned<String>>,
    /// Preferred message language tag; `en` when left out.
    pub language: Option<Spanned<String>>,
}

/// A person's id, zone and language, taken out of `people[i]` for the roster.
type RawPrefs = (String, Option<Spanned<String>>, Option<Spanned<String>>);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRotation {
    pub name: Spanned<String>,
    pub members: Spanned<Vec<Spanned<String>>>,
    pub shift: Spanned<String>,
    pub handoff: Option<Spanned<String>>,
    pub zone: Option<Spanned<String>>,
    pub start: Option<Spanned<String>>,
}

/// One of `person` or `rotation`; neither declares the role unfilled.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoleFill {
    pub person: Option<Spanned<String>>,
    pub rotation: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub name: Spanned<String>,
    /// Shorthand for a policy of one step.
    pub notify: Option<Vec<Spanned<RawPolicyEntry>>>,
    pub steps: Option<Vec<Spanned<RawStep>>>,
    pub repeat: Option<Spanned<u32>>,
    pub reescalate_after: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub notify: Vec<Spanned<RawPolicyEntry>>,
    pub wait: Option<Spanned<String>>,
}

/// One of `person`, `role`, `webhook` or `log: true`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicyEntry {
    pub person: Option<String>,
    pub role: Option<String>,
    pub webhook: Option<String>,
    #[serde(default)]
    pub log: bool,
    pub channels: Option<Vec<String>>,
    pub audience: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEscalation {
    /// Channels for roles the triage brings in (legal liaison, communications lead, …).
    pub involve_channels: Option<Spanned<Vec<String>>>,
    /// `severity_policies` are a floor a rule's policy cannot go below.
    pub severity_floor: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotice {
    pub name: Spanned<String>,
    pub when: Option<Spanned<RawNoticeWhen>>,
    pub deadline: Spanned<String>,
    pub mandatory: Option<bool>,
    pub reminders: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNoticeWhen {
    pub sensitivity: Option<Vec<String>>,
    pub customer_facing: Option<bool>,
    pub severity: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

/// `drills:`: `notify: recipients | policy`, and the recipients (policy notify entries).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrills {
    pub notify: Option<Spanned<String>>,
    #[serde(default)]
    pub recipients: Vec<Spanned<RawPolicyEntry>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommunications {
    /// Severity → interval between status-update reminders.
    #[serde(default)]
    pub update_every: BTreeMap<String, Spanned<String>>,
    /// Remind only for customer-facing incidents (default true).
    pub customer_facing_only: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReviews {
    pub severities: Option<Spanned<Vec<String>>>,
    pub remind_every: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    pub name: Spanned<String>,
    pub starts: Spanned<String>,
    pub ends: Spanned<String>,
    pub source: Option<String>,
    pub service: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotifications {
    pub log: Option<Spanned<RawLogChannel>>,
    pub email: Option<Spanned<crate::notify::EmailConfig>>,
    pub sms: Option<Spanned<crate::notify::SmsConfig>>,
    #[serde(default)]
    pub webhooks: Vec<Spanned<crate::notify::WebhookConfig>>,
    pub templates: Option<Spanned<String>>,
    /// Audience → the language its messages go out in when the recipient is not a person
    /// (a person's own `language` wins).
    pub audience_languages: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub dashboard_url: Option<Spanned<String>>,
    pub ack_links: Option<Spanned<RawAckLinks>>,
    pub workers: Option<Spanned<u64>>,
    pub delivery: Option<Spanned<RawDelivery>>,
    pub rate_limits: Option<Spanned<BTreeMap<String, RawChannelLimits>>>,
}

/// `notifications.ack_links`: signed one-click acknowledge links.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAckLinks {
    pub enabled: Option<bool>,
    pub secret: Option<Spanned<Secret>>,
    pub ttl: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogChannel {
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    pub max_attempts: Option<Spanned<u64>>,
    pub max_age: Option<Spanned<String>>,
    pub initial_backoff: Option<Spanned<String>>,
    pub max_backoff: Option<Spanned<String>>,
    pub retry_after_cap: Option<Spanned<String>>,
    pub attempt_timeout: Option<Spanned<String>>,
    pub lease: Option<Spanned<String>>,
    pub retry_unknown_sms: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannelLimits {
    #[serde(default)]
    pub per_recipient: Vec<RawWindow>,
    pub global_per_second: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    pub count: u32,
    pub per: String,
}

/// How many messages one recipient may get on one channel within `per`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub count: u32,
    pub per: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelLimits {
    /// Every window must allow a message for it to go; otherwise it waits (and is bundled
    /// with whatever else waits for the same recipient).
    pub per_recipient: Vec<Window>,
    pub global_per_second: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Notifications {
    /// JSON-lines file of every notification sent through the `log` channel.
    pub log_path: Option<PathBuf>,
    pub email: Option<crate::notify::EmailConfig>,
    pub sms: Option<crate::notify::SmsConfig>,
    pub webhooks: Vec<crate::notify::WebhookConfig>,
    /// Template directory; `None`: the built-in plain templates.
    pub templates: Option<PathBuf>,
    /// Audience → language for recipients that are not people (webhooks, the log); an
    /// audience `customer-apology` also takes `customer`'s entry.
    pub audience_languages: BTreeMap<String, String>,
    /// Base URL for links in messages (incident pages, acknowledge links).
    pub dashboard_url: Option<String>,
    /// Signed acknowledge links in person-addressed email and SMS (need `dashboard_url`).
    pub ack_links: AckLinks,
    /// Concurrent sends.
    pub workers: usize,
    pub delivery: crate::outbox::RetryPolicy,
    pub rate_limits: BTreeMap<crate::notify::Channel, ChannelLimits>,
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications {
            log_path: None,
            email: None,
            sms: None,
            webhooks: Vec::new(),
            templates: None,
            audience_languages: BTreeMap::new(),
            dashboard_url: None,
            ack_links: AckLinks::default(),
            workers: 8,
            delivery: crate::outbox::RetryPolicy::default(),
            rate_limits: default_rate_limits(),
        }
    }
}

/// `notifications.ack_links`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckLinks {
    pub enabled: bool,
    /// The HMAC key; `None`: the daemon's generated `<data_dir>/link.key`.
    pub secret: Option<Secret>,
    /// How long a link works after the message is composed.
    pub ttl: Duration,
}

/// Shortest configured link secret, in bytes: 256 bits if written as random hex or base64.
pub const MIN_LINK_SECRET_BYTES: usize = 32;
/// Longest link lifetime: a link in an old mail must not work forever.
pub const MAX_LINK_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

impl Default for AckLinks {
    fn default() -> Self {
        AckLinks { enabled: true, secret: None, ttl: Duration::from_secs(24 * 3600) }
    }
}

/// In the spirit of the on-call tools people trust: a phone gets at most one text a minute
/// and five per quarter hour; mail and webhooks are allowed more.
pub fn default_rate_limits() -> BTreeMap<crate::notify::Channel, ChannelLimits> {
    use crate::notify::Channel;
    let w = |count, secs| Window { count, per: Duration::from_secs(secs) };
    BTreeMap::from([
        (
            Channel::Sms,
            ChannelLimits { per_recipient: vec![w(1, 60), w(5, 900)], global_per_second: Some(10) },
        ),
        (
            Channel::Email,
            ChannelLimits {
                per_recipient: vec![w(10, 60), w(60, 3600)],
                global_per_second: Some(50),
            },
        ),
        (
            Channel::Webhook,
            ChannelLimits { per_recipient: vec![w(120, 60)], global_per_second: Some(200) },
        ),
        (Channel::Log, ChannelLimits::default()),
    ])
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIncidents {
    pub auto_resolve_after: Option<Spanned<String>>,
    pub resolve_timeout: Option<Spanned<String>>,
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

impl RawConfig {
    /// Records `TOCSIN_LISTEN` and `TOCSIN_DATA_DIR`. Empty values count as unset, as an empty
    /// `KEY=` line in a compose or systemd file usually means "not configured".
    pub fn apply_env_overrides(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        let get = |name| env(name).filter(|v: &String| !v.is_empty());
        self.env_overrides = EnvOverrides { listen: get(LISTEN_VAR), data_dir: get(DATA_DIR_VAR) };
    }

    /// Whether any expanded field refers to `${name}` (escaped `$${name}` does not count).
    pub fn references_var(&self, name: &str) -> bool {
        let mut fields: Vec<&str> = Vec::new();
        if self.env_overrides.listen.is_none() {
            fields.extend(self.listen.as_ref().map(|s| s.value.as_str()));
        }
        if self.env_overrides.data_dir.is_none() {
            fields.extend(self.data_dir.as_ref().map(|s| s.value.as_str()));
        }
        for source in &self.sources {
            fields.extend(source.value.token.as_ref().map(|s| s.value.expose()));
            fields.extend(source.value.routing_key.as_ref().map(|s| s.value.expose()));
        }
        for user in &self.users {
            fields.extend(user.value.token.as_ref().map(|s| s.value.expose()));
        }
        fields.into_iter().any(|text| {
            split_vars(text)
                .is_ok_and(|pieces| pieces.iter().any(|p| matches!(p, Piece::Var(v) if *v == name)))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Limits and defaults
// ---------------------------------------------------------------------------------------------

const TOKEN_VAR: &str = "TOCSIN_TOKEN";
const LISTEN_VAR: &str = "TOCSIN_LISTEN";
const DATA_DIR_VAR: &str = "TOCSIN_DATA_DIR";
const DEFAULT_LISTEN: &str = "127.0.0.1:9797";
const DEFAULT_DATA_DIR: &str = "./tocsin-data";

/// A config is a few kilobytes; anything near this is a mistake or an attack.
pub(crate) const MAX_CONFIG_BYTES: usize = 1024 * 1024;
/// Above this a single request body stops being an alert and starts being a memory problem.
const MAX_BODY_BYTES_LIMIT: u64 = 64 * 1024 * 1024;
/// Each waiting request may hold a body, so the queue bounds memory too.
const MAX_QUEUE_CAPACITY: u64 = 1 << 20;
const MAX_BATCH_EVENTS: u64 = 1 << 20;

pub(crate) fn parse_options() -> serde_saphyr::Options {
    // The schema is at most five levels deep and a real config has a few hundred nodes; the
    // budget turns alias bombs and deeply nested junk into a prompt error.
    let budget = serde_saphyr::budget! {
        max_depth: 16,
        max_documents: 1,
        max_nodes: 100_000,
        max_events: 200_000,
        max_aliases: 1_000,
        max_anchors: 1_000,
        max_total_scalar_bytes: MAX_CONFIG_BYTES,
    };
    serde_saphyr::options! {
        budget: budget,
        strict_booleans: true,
        // Errors are rendered as one `file:line:col: message` line each, not as snippets.
        with_snippet: false,
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

impl Validator<'_> {
    fn config(&mut self, raw: RawConfig) -> Config {
        let listen = match (raw.env_overrides.listen, raw.listen) {
            (Some(value), _) => self.listen(value, At::Env(LISTEN_VAR)),
            (None, Some(s)) => match self.expand(&s.value, s.referenced, "listen") {
                Some(value) => self.listen(value, At::File(s.referenced)),
                None => DEFAULT_LISTEN.to_string(),
            },
            (None, None) => DEFAULT_LISTEN.to_string(),
        };

        let data_dir = match (raw.env_overrides.data_dir, raw.data_dir) {
            (Some(value), _) => value,
            (None, Some(s)) => match self.expand(&s.value, s.referenced, "data_dir") {
                Some(value) if value.is_empty() => {
                    self.err(s.referenced, "data_dir", "must not be empty");
                    value
                }
                Some(value) => value,
                None => String::new(),
            },
            (None, None) => DEFAULT_DATA_DIR.to_string(),
        };

        let log_format = match raw.log_format {
            None => LogFormat::Text,
            Some(s) => match s.value.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    self.err(
                        s.referenced,
                        "log_format",
                        format!("`{other}` is not one of: text, json"),
                    );
                    LogFormat::Text
                }
            },
        };

        let limits = self.limits(raw.limits);
        let journal = self.journal(raw.journal);
        let sources = self.sources(raw.sources);
        let users = self.users(raw.users);
        let rules_dir = raw.rules.as_ref().and_then(|r| r.value.dir.as_ref()).and_then(|d| {
            if d.value.trim().is_empty() {
                self.err(
                    d.referenced,
                    "rules.dir",
                    "must not be empty; leave it out to run no rules",
                );
                None
            } else {
                Some(PathBuf::from(&d.value))
            }
        });
        let watch = raw.rules.as_ref().and_then(|r| r.value.watch.as_ref()).is_none_or(|w| w.value);
        let triage = self.triage(raw.triage, raw.rules);
        let notifications = self.notifications(raw.notifications);
        let mut raw_people = raw.people;
        let prefs: Vec<_> = raw_people
            .iter_mut()
            .map(|p| {
                (p.value.id.value.trim().to_string(), p.value.zone.take(), p.value.language.take())
            })
            .collect();
        // Roles a policy may page: the built-in ones and those the config declares.
        let known_roles: BTreeSet<String> = crate::oncall::BUILTIN_ROLES
            .iter()
            .map(|r| r.to_string())
            .chain(raw.roles.iter().flat_map(|r| r.value.keys().cloned()))
            .collect();
        let policies = self.policies(
            raw_people,
            raw.policies,
            raw.default_policy,
            raw.severity_policies,
            &triage,
            &notifications,
            &known_roles,
        );
        let escalation = self.escalation(
            raw.escalation,
            raw.notices,
            raw.communications,
            raw.reviews,
            raw.maintenance,
            &triage,
            &notifications,
        );
        let (auto_resolve_after, resolve_timeout) = match raw.incidents {
            Some(i) => (i.value.auto_resolve_after, i.value.resolve_timeout),
            None => (None, None),
        };
        let auto_resolve_after = auto_resolve_after
            .map(|d| self.duration(Some(d), "incidents.auto_resolve_after", Duration::ZERO))
            .filter(|d| !d.is_zero());
        let resolve_timeout = resolve_timeout
            .map(|d| self.duration(Some(d), "incidents.resolve_timeout", Duration::ZERO))
            .filter(|d| !d.is_zero());
        let roster = self.roster(prefs, raw.rotations, raw.roles, &policies);
        let dashboard = self.dashboard(raw.dashboard);
        let drills = self.drills(raw.drills, &policies, &notifications, &known_roles);
        let mut triage = triage;
        let people: BTreeSet<String> = policies.people.keys().cloned().collect();
        let (catalog, problems) = crate::catalog::build(raw.catalog, &people, &known_roles);
        for (loc, path, message) in problems {
            self.err(loc, &path, message);
        }
        triage.catalog = std::sync::Arc::new(catalog);
        let redaction = self.redaction(raw.redaction);

        Config {
            listen,
            data_dir: PathBuf::from(data_dir),
            log_format,
            limits,
            journal,
            sources,
            users,
            rules_dir,
            watch,
            triage,
            policies,
            roster,
            notifications,
            auto_resolve_after,
            resolve_timeout,
            escalation,
            drills,
            generated_token: None,
            dashboard,
            redaction,
        }
    }

    fn dashboard(&mut self, raw: Option<Spanned<RawDashboard>>) -> Dashboard {
        let mut out = Dashboard::default();
        let Some(ttl) = raw.and_then(|r| r.value.session_ttl) else { return out };
        let at = ttl.referenced;
        let parsed = self.duration(Some(ttl), "dashboard.session_ttl", out.session_ttl);
        if parsed < Duration::from_secs(60) || parsed > MAX_SESSION_TTL {
            self.err(at, "dashboard.session_ttl", "must be from 1m to 30 days");
        } else {
            out.session_ttl = parsed;
        }
        out
    }

    /// `drills:`: the mode and the recipients that replace a policy's for drill incidents.
    fn drills(
        &mut self,
        raw: Option<Spanned<RawDrills>>,
        policies: &crate::policy::Policies,
        notifications: &Notifications,
        known_roles: &BTreeSet<String>,
    ) -> crate::drill::live::Drills {
        use crate::drill::live::{DrillNotify, Drills, Recipient};
        let mut out = Drills::default();
        let Some(raw) = raw else { return out };
        if let Some(mode) = raw.value.notify {
            out.notify = match mode.value.as_str() {
                "recipients" => DrillNotify::Recipients,
                "policy" => DrillNotify::Policy,
                other => {
                    self.err(
                        mode.referenced,
                        "drills.notify",
                        format!("`{other}` is not one of recipients, policy"),
                    );
                    DrillNotify::Recipients
                }
            };
        }
        for (i, e) in raw.value.recipients.into_iter().enumerate() {
            let path = format!("drills.recipients[{i}]");
            if e.value.role.is_some() {
                // A role is held by real on-call people: a drill must not page them this way.
                self.err(
                    e.referenced,
                    &format!("{path}.role"),
                    "drill recipients are people, webhooks or the log, not roles (a role is held by whoever is really on call)",
                );
                continue;
            }
            let audience = e.value.audience.clone();
            if let Some(entry) =
                self.policy_entry(&policies.people, e, &path, notifications, known_roles)
            {
                out.recipients.push(Recipient { entry, audience });
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn escalation(
        &mut self,
        raw: Option<Spanned<RawEscalation>>,
        notices: Vec<Spanned<RawNotice>>,
        communications: Option<Spanned<RawCommunications>>,
        reviews: Option<Spanned<RawReviews>>,
        maintenance: Vec<Spanned<RawMaintenance>>,
        triage: &crate::rules::Triage,
        notifications: &Notifications,
    ) -> crate::escalation::Settings {
        use crate::escalation::{NoticeRule, Settings, Window};
        use crate::notify::Channel;
        use crate::rules::Sensitivity;
        let mut out = Settings::default();
        let known_severity = |name: &str| triage.severities.iter().any(|t| t.name == name);
        let raw = raw.map(|r| r.value);
        if let Some(floor) = raw.as_ref().and_then(|r| r.severity_floor) {
            out.severity_floor = floor;
        }
        if let Some(channels) = raw.and_then(|r| r.involve_channels) {
            out.involve_channels.clear();
            for w in &channels.value {
                match w.as_str() {
                    "email" if notifications.email.is_some() => {
                        out.involve_channels.push(Channel::Email)
                    }
                    "sms" if notifications.sms.is_some() => out.involve_channels.push(Channel::Sms),
                    "email" | "sms" => self.err(
                        channels.referenced,
                        "escalation.involve_channels",
                        format!("uses {w}, but notifications.{w} is not configured"),
                    ),
                    _ => self.err(
                        channels.referenced,
                        "escalation.involve_channels",
                        format!("`{w}` is not a channel for people; allowed: email, sms"),
                    ),
                }
            }
        }
        for (i, n) in notices.into_iter().enumerate() {
            let path = format!("notices[{i}]");
            let raw = n.value;
            let name = raw.name.value.trim().to_string();
            if name.is_empty() {
                self.err(raw.name.referenced, &format!("{path}.name"), "must not be empty");
            }
            let deadline_at = raw.deadline.referenced;
            let deadline =
                self.duration(Some(raw.deadline), &format!("{path}.deadline"), Duration::ZERO);
            if deadline.is_zero() {
                self.err(deadline_at, &format!("{path}.deadline"), "must be longer than 0s");
            }
            let mut reminders = Vec::new();
            for (j, r) in raw.reminders.unwrap_or_default().into_iter().enumerate() {
                let at = r.referenced;
                let d = self.duration(Some(r), &format!("{path}.reminders[{j}]"), Duration::ZERO);
                if !deadline.is_zero() && d >= deadline {
                    self.err(
                        at,
                        &format!("{path}.reminders[{j}]"),
                        "a reminder must come before the deadline",
                    );
                }
                reminders.push(d);
            }
            let (when, when_at) = match raw.when {
                Some(w) => (w.value, w.referenced),
                None => (RawNoticeWhen::default(), raw.name.referenced),
            };
            let mut sensitivity = Vec::new();
            for word in when.sensitivity.unwrap_or_default() {
                match Sensitivity::parse(&word) {
                    Some(level) => sensitivity.push(level),
                    None => self.err(
                        when_at,
                        &format!("{path}.when.sensitivity"),
                        format!(
                            "unknown sensitivity `{word}`; expected one of {}",
                            Sensitivity::ALL.map(|s| s.as_str()).join(", ")
                        ),
                    ),
                }
            }
            let severities = when.severity.unwrap_or_default();
            for sev in &severities {
                if !known_severity(sev) {
                    self.err(
                        when_at,
                        &format!("{path}.when.severity"),
                        format!("`{sev}` is not a severity in triage.severities"),
                    );
                }
            }
            out.notices.push(NoticeRule {
                name,
                sensitivity,
                customer_facing: when.customer_facing,
                severities,
                tags: when.tags.unwrap_or_default(),
                deadline,
                mandatory: raw.mandatory.unwrap_or(true),
                reminders,
            });
        }
        if let Some(c) = communications {
            if let Some(only) = c.value.customer_facing_only {
                out.comms_customer_facing_only = only;
            }
            for (severity, every) in c.value.update_every {
                let path = format!("communications.update_every.{severity}");
                if !known_severity(&severity) {
                    self.err(every.referenced, &path, "is not a severity in triage.severities");
                }
                let at = every.referenced;
                let d = self.duration(Some(every), &path, Duration::ZERO);
                if d < Duration::from_secs(60) {
                    self.err(at, &path, "must be at least 1m");
                } else {
                    out.comms_every.insert(severity, d);
                }
            }
        }
        if let Some(r) = reviews {
            if let Some(sevs) = r.value.severities {
                for sev in &sevs.value {
                    if !known_severity(sev) {
                        self.err(
                            sevs.referenced,
                            "reviews.severities",
                            format!("`{sev}` is not a severity in triage.severities"),
                        );
                    }
                }
                out.review_severities = sevs.value;
            }
            if let Some(every) = r.value.remind_every {
                let at = every.referenced;
                let d = self.duration(Some(every), "reviews.remind_every", out.action_remind_every);
                if d < Duration::from_secs(60) {
                    self.err(at, "reviews.remind_every", "must be at least 1m");
                } else {
                    out.action_remind_every = d;
                }
            }
        }
        for (i, m) in maintenance.into_iter().enumerate() {
            let path = format!("maintenance[{i}]");
            let raw = m.value;
            let time =
                |this: &mut Self, v: Spanned<String>, key: &str| -> Option<jiff::Timestamp> {
                    match v.value.parse::<jiff::Timestamp>() {
                        Ok(t) => Some(t),
                        Err(e) => {
                            this.err(
                                v.referenced,
                                &format!("{path}.{key}"),
                                format!("not an RFC 3339 time such as 2026-05-01T22:00:00Z: {e}"),
                            );
                            None
                        }
                    }
                };
            let ends_at = raw.ends.referenced;
            let (Some(starts), Some(ends)) =
                (time(self, raw.starts, "starts"), time(self, raw.ends, "ends"))
            else {
                continue;
            };
            if ends <= starts {
                self.err(ends_at, &format!("{path}.ends"), "must be after starts");
                continue;
            }
            out.maintenance.push(Window {
                id: None,
                created: None,
                name: raw.name.value,
                starts,
                ends,
                source: raw.source,
                service: raw.service,
                labels: raw.labels,
            });
        }
        out
    }

    fn notifications(&mut self, raw: Option<Spanned<RawNotifications>>) -> Notifications {
        let mut n = Notifications::default();
        let Some(raw) = raw.map(|r| r.value) else { return n };
        n.log_path = raw
            .log
            .map(|l| PathBuf::from(l.value.path.unwrap_or_else(|| "notifications.jsonl".into())));
        // The channels themselves, with `${VAR}` in their secrets expanded. A channel whose
        // secrets do not expand is kept all the same, so that policies using it are not also
        // reported; the config is refused for the expansion error.
        if let Some(email) = raw.email {
            let (at, mut cfg) = (email.referenced, email.value);
            if let Err(problems) = cfg.expand_secrets(self.env()) {
                problems.into_iter().for_each(|p| self.err(at, "notifications.email.password", p));
            }
            n.email = Some(cfg);
        }
        if let Some(sms) = raw.sms {
            let (at, mut cfg) = (sms.referenced, sms.value);
            if let Err(problems) = cfg.expand_secrets(self.env()) {
                problems.into_iter().for_each(|p| self.err(at, "notifications.sms", p));
            }
            // Caught here rather than at the first page: an internal gateway address is a
            // mistake (or an attack on the host) unless the config says it is meant.
            if let Some(problem) = cfg
                .url
                .as_deref()
                .filter(|_| !cfg.allow_private)
                .and_then(crate::notify::guard::check_url)
            {
                self.err(at, "notifications.sms.url", problem);
            }
            n.sms = Some(cfg);
        }
        for (i, hook) in raw.webhooks.into_iter().enumerate() {
            let path = format!("notifications.webhooks[{i}]");
            let (at, mut cfg) = (hook.referenced, hook.value);
            if n.webhooks.iter().any(|w| w.name == cfg.name) {
                self.err(at, &format!("{path}.name"), format!("`{}` is defined twice", cfg.name));
                continue;
            }
            if let Err(problems) = cfg.expand_secrets(self.env()) {
                problems.into_iter().for_each(|p| self.err(at, &path, p));
            }
            if !cfg.allow_private
                && let Some(problem) = crate::notify::guard::check_url(&cfg.url)
            {
                self.err(at, &format!("{path}.url"), problem);
            }
            n.webhooks.push(cfg);
        }
        n.templates = raw.templates.map(|t| PathBuf::from(t.value));
        for (audience, lang) in raw.audience_languages.map(|a| a.value).unwrap_or_default() {
            let ok = (2..=35).contains(&lang.value.len())
                && lang.value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !lang.value.starts_with('-');
            if ok {
                n.audience_languages.insert(audience, lang.value);
            } else {
                self.err(
                    lang.referenced,
                    &format!("notifications.audience_languages.{audience}"),
                    format!(
                        "`{}` is not a language tag; write e.g. en, de or pt-BR",
                        lang.value.escape_debug()
                    ),
                );
            }
        }
        if let Some(url) = raw.dashboard_url {
            if !(url.value.starts_with("http://") || url.value.starts_with("https://")) {
                self.err(
                    url.referenced,
                    "notifications.dashboard_url",
                    "must start with http:// or https://",
                );
            }
            n.dashboard_url = Some(url.value.trim_end_matches('/').to_string());
        }
        if let Some(raw_links) = raw.ack_links {
            n.ack_links = self.ack_links(raw_links);
        }
        n.workers = self.count(raw.workers, "notifications.workers", 256, n.workers);
        if let Some(d) = raw.delivery.map(|d| d.value) {
            let p = &mut n.delivery;
            if let Some(m) = d.max_attempts {
                p.max_attempts =
                    self.count(Some(m), "notifications.delivery.max_attempts", 1000, 10) as u32;
            }
            p.max_age = self.duration(d.max_age, "notifications.delivery.max_age", p.max_age);
            p.initial_backoff = self.duration(
                d.initial_backoff,
                "notifications.delivery.initial_backoff",
                p.initial_backoff,
            );
            p.max_backoff =
                self.duration(d.max_backoff, "notifications.delivery.max_backoff", p.max_backoff);
            p.retry_after_cap = self.duration(
                d.retry_after_cap,
                "notifications.delivery.retry_after_cap",
                p.retry_after_cap,
            );
            p.attempt_timeout = self.duration(
                d.attempt_timeout,
                "notifications.delivery.attempt_timeout",
                p.attempt_timeout,
            );
            p.lease = self.duration(d.lease, "notifications.delivery.lease", p.lease);
            if let Some(b) = d.retry_unknown_sms {
                p.retry_unknown_sms = b;
            }
        }
        if let Some(limits) = raw.rate_limits {
            let at = limits.referenced;
            for (channel, raw_limits) in limits.value {
                let path = format!("notifications.rate_limits.{channel}");
                let Some(ch) = [
                    crate::notify::Channel::Email,
                    crate::notify::Channel::Sms,
                    crate::notify::Channel::Webhook,
                    crate::notify::Channel::Log,
                ]
                .into_iter()
                .find(|c| c.as_str() == channel) else {
                    self.err(
                        at,
                        &path,
                        format!("`{channel}` is not one of: email, sms, webhook, log"),
                    );
                    continue;
                };
                let mut windows = Vec::new();
                for (i, w) in raw_limits.per_recipient.into_iter().enumerate() {
                    let wpath = format!("{path}.per_recipient[{i}]");
                    match parse_duration(&w.per) {
                        Ok(per) if w.count > 0 => windows.push(Window { count: w.count, per }),
                        Ok(_) => self.err(at, &wpath, "count must be at least 1"),
                        Err(e) => self.err(at, &format!("{wpath}.per"), e),
                    }
                }
                if raw_limits.global_per_second == Some(0) {
                    self.err(
                        at,
                        &format!("{path}.global_per_second"),
                        "must be at least 1 (leave it out for no limit)",
                    );
                }
                n.rate_limits.insert(
                    ch,
                    ChannelLimits {
                        per_recipient: windows,
                        global_per_second: raw_limits.global_per_second.filter(|g| *g > 0),
                    },
                );
            }
        }
        n
    }

    #[allow(clippy::too_many_arguments)]
    fn policies(
        &mut self,
        people: Vec<Spanned<RawPerson>>,
        policies: Vec<Spanned<RawPolicy>>,
        default_policy: Option<Spanned<String>>,
        severity_policies: Option<Spanned<BTreeMap<String, String>>>,
        triage: &crate::rules::Triage,
        notifications: &Notifications,
        known_roles: &BTreeSet<String>,
    ) -> crate::policy::Policies {
        use crate::policy::{Person, Policy, Step};
        let mut out = crate::policy::Policies::default();
        for (i, p) in people.into_iter().enumerate() {
            let path = format!("people[{i}]");
            let raw = p.value;
            let id = raw.id.value.trim().to_string();
            if id.is_empty() {
                self.err(raw.id.referenced, &format!("{path}.id"), "must not be empty");
                continue;
            }
            if out.people.contains_key(&id) {
                self.err(
                    raw.id.referenced,
                    &format!("{path}.id"),
                    format!("person `{id}` is defined twice"),
                );
                continue;
            }
            if let Some(e) = &raw.email
                && !e.value.contains('@')
            {
                self.err(
                    e.referenced,
                    &format!("{path}.email"),
                    format!("`{}` is not an email address", e.value),
                );
            }
            if let Some(ph) = &raw.phone
                && !(ph.value.starts_with('+')
                    && ph.value.len() > 4
                    && ph.value[1..].chars().all(|c| c.is_ascii_digit()))
            {
                self.err(
                    ph.referenced,
                    &format!("{path}.phone"),
                    "write phone numbers in E.164 form, e.g. +4915112345678",
                );
            }
            out.people.insert(
                id.clone(),
                Person {
                    name: raw.name.unwrap_or_else(|| id.clone()),
                    id,
                    email: raw.email.map(|e| e.value),
                    phone: raw.phone.map(|p| p.value),
                },
            );
        }
        for (i, p) in policies.into_iter().enumerate() {
            let path = format!("policies[{i}]");
            let raw = p.value;
            let name = raw.name.value.trim().to_string();
            if name.is_empty() || out.policies.contains_key(&name) {
                self.err(
                    raw.name.referenced,
                    &format!("{path}.name"),
                    format!("policy name `{name}` is empty or defined twice"),
                );
                continue;
            }
            let mut steps = Vec::new();
            type RawSteps = Vec<(String, Vec<Spanned<RawPolicyEntry>>, Option<Spanned<String>>)>;
            let one_step_form = raw.notify.is_some();
            let raw_steps: RawSteps = match (raw.notify, raw.steps) {
                (Some(notify), None) => vec![(path.clone(), notify, None)],
                (None, Some(list)) if !list.is_empty() => list
                    .into_iter()
                    .enumerate()
                    .map(|(k, st)| (format!("{path}.steps[{k}]"), st.value.notify, st.value.wait))
                    .collect(),
                _ => {
                    self.err(
                        raw.name.referenced,
                        &path,
                        "give either `notify` (one step) or a non-empty list of `steps`",
                    );
                    continue;
                }
            };
            let count = raw_steps.len();
            let repeat = raw.repeat.as_ref().map(|r| r.value).unwrap_or(0);
            if repeat > 100 {
                self.err(
                    raw.repeat.as_ref().map(|r| r.referenced).unwrap_or(raw.name.referenced),
                    &format!("{path}.repeat"),
                    "at most 100",
                );
            }
            for (k, (spath, notify, wait)) in raw_steps.into_iter().enumerate() {
                let mut entries = Vec::new();
                for (j, e) in notify.into_iter().enumerate() {
                    let epath = format!("{spath}.notify[{j}]");
                    if let Some(entry) =
                        self.policy_entry(&out.people, e, &epath, notifications, known_roles)
                    {
                        entries.push(entry);
                    }
                }
                let last = k + 1 == count;
                let wait = match wait {
                    Some(w) => {
                        let at = w.referenced;
                        let d = self.duration(Some(w), &format!("{spath}.wait"), Duration::ZERO);
                        if d.is_zero() {
                            self.err(at, &format!("{spath}.wait"), "must be longer than 0s");
                        }
                        Some(d)
                    }
                    None if last && repeat == 0 => None,
                    // The list runs again after its last step: that step's `wait` is how long
                    // the next round waits, so a repeating policy needs it too.
                    None if last => {
                        let how = if one_step_form {
                            "; write the one step as `steps: [{notify: [...], wait: 5m}]`"
                        } else {
                            ""
                        };
                        self.err(
                            raw.repeat.as_ref().map_or(raw.name.referenced, |r| r.referenced),
                            &format!("{spath}.wait"),
                            format!(
                                "`repeat: {repeat}` runs the steps again, so the last step needs a `wait` too: how long to wait for an acknowledgement before the first step fires again{how}"
                            ),
                        );
                        None
                    }
                    None => {
                        self.err(
                            raw.name.referenced,
                            &format!("{spath}.wait"),
                            "every step but the last needs a `wait`: how long to wait for an acknowledgement before the next step",
                        );
                        None
                    }
                };
                steps.push(Step { notify: entries, wait });
            }
            let reescalate_after = raw.reescalate_after.map(|r| {
                self.duration(Some(r), &format!("{path}.reescalate_after"), Duration::ZERO)
            });
            out.policies.insert(
                name.clone(),
                Policy {
                    name,
                    steps,
                    repeat,
                    reescalate_after: reescalate_after.filter(|d| !d.is_zero()),
                },
            );
        }
        if let Some(d) = default_policy {
            if !out.policies.contains_key(&d.value) {
                self.err(d.referenced, "default_policy", format!("no policy named `{}`", d.value));
            }
            out.default = Some(d.value);
        }
        if let Some(map) = severity_policies {
            for (severity, policy) in map.value {
                if !triage.severities.iter().any(|t| t.name == severity) {
                    self.err(
                        map.referenced,
                        &format!("severity_policies.{severity}"),
                        "is not a severity in triage.severities",
                    );
                }
                if !out.policies.contains_key(&policy) {
                    self.err(
                        map.referenced,
                        &format!("severity_policies.{severity}"),
                        format!("no policy named `{policy}`"),
                    );
                }
                out.by_severity.insert(severity, policy);
            }
        }
        out
    }

    /// One `notify` entry of a policy step, checked against people, channels and webhooks.
    fn policy_entry(
        &mut self,
        people: &BTreeMap<String, crate::policy::Person>,
        e: Spanned<RawPolicyEntry>,
        epath: &str,
        notifications: &Notifications,
        known_roles: &BTreeSet<String>,
    ) -> Option<crate::policy::Entry> {
        use crate::notify::Channel;
        use crate::policy::{Entry, Target};
        let have_log = notifications.log_path.is_some();
        let at = e.referenced;
        let e = e.value;
        let (target, allowed, default_channels): (Target, &[Channel], Vec<Channel>) = match (
            e.person, e.webhook, e.log, e.role,
        ) {
            (None, None, false, Some(role)) => {
                if !known_roles.contains(&role) {
                    self.err(
                            at,
                            &format!("{epath}.role"),
                            format!(
                                "no role `{role}`: the built-in roles are {}; declare others under `roles:`",
                                crate::oncall::BUILTIN_ROLES.join(", ")
                            ),
                        );
                } else if !crate::escalation::valid_role_name(&role) {
                    self.err(
                        at,
                        &format!("{epath}.role"),
                        format!(
                            "`{role}` is not a role name: use lowercase letters, digits and `_`"
                        ),
                    );
                }
                // Whoever holds the role is only known when an incident opens: email by
                // default, SMS when asked for (skipped for a holder without a phone).
                (Target::Role(role), &[Channel::Email, Channel::Sms], vec![Channel::Email])
            }
            (Some(person), None, false, None) => {
                let defaults = match people.get(&person) {
                    None => {
                        self.err(
                            at,
                            &format!("{epath}.person"),
                            format!("no person `{person}` in people"),
                        );
                        Vec::new()
                    }
                    Some(p) => {
                        [(p.email.is_some(), Channel::Email), (p.phone.is_some(), Channel::Sms)]
                            .into_iter()
                            .filter_map(|(has, c)| has.then_some(c))
                            .collect()
                    }
                };
                (Target::Person(person), &[Channel::Email, Channel::Sms], defaults)
            }
            (None, Some(webhook), false, None) => {
                if !notifications.webhooks.iter().any(|w| w.name == webhook) {
                    self.err(
                        at,
                        &format!("{epath}.webhook"),
                        format!("no webhook `{webhook}` in notifications.webhooks"),
                    );
                }
                (Target::Webhook(webhook), &[Channel::Webhook], vec![Channel::Webhook])
            }
            (None, None, true, None) => {
                if !have_log {
                    self.err(
                        at,
                        epath,
                        "notifies the log, but notifications.log is not configured",
                    );
                }
                (Target::Log, &[Channel::Log], vec![Channel::Log])
            }
            _ => {
                self.err(at, epath, "give exactly one of: person, role, webhook, log: true");
                return None;
            }
        };
        let channels = match e.channels {
            None => default_channels,
            Some(words) => {
                let mut chosen = Vec::new();
                for w in words {
                    match allowed.iter().find(|c| c.as_str() == w) {
                        Some(c) => chosen.push(*c),
                        None => self.err(
                            at,
                            &format!("{epath}.channels"),
                            format!(
                                "`{w}` is not a channel for this target; allowed: {}",
                                allowed.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
                            ),
                        ),
                    }
                }
                chosen
            }
        };
        for c in &channels {
            let configured = match c {
                Channel::Email => notifications.email.is_some(),
                Channel::Sms => notifications.sms.is_some(),
                _ => true,
            };
            if !configured {
                self.err(
                    at,
                    &format!("{epath}.channels"),
                    format!(
                        "uses {}, but notifications.{} is not configured",
                        c.as_str(),
                        c.as_str()
                    ),
                );
            }
        }
        if let Target::Person(id) = &target
            && let Some(person) = people.get(id)
        {
            for c in &channels {
                let missing = match c {
                    Channel::Email => person.email.is_none(),
                    Channel::Sms => person.phone.is_none(),
                    _ => false,
                };
                if missing {
                    self.err(
                        at,
                        &format!("{epath}.channels"),
                        format!("person `{id}` has no {} address", c.as_str()),
                    );
                }
            }
        }
        let audience = match (&e.audience, &target) {
            (Some(a), _) => a.clone(),
            (None, Target::Role(role)) => crate::escalation::role_audience(role).to_string(),
            (None, _) => "responder".to_string(),
        };
        Some(Entry { target, channels, audience })
    }

    /// People's zones and languages, rotations and roles. `prefs` is each `people[i]` entry's
    /// (id, zone, language), in file order; `policies.people` says which ids were accepted.
    fn roster(
        &mut self,
        prefs: Vec<RawPrefs>,
        rotations: Vec<Spanned<RawRotation>>,
        roles: Option<Spanned<BTreeMap<String, Spanned<RawRoleFill>>>>,
        policies: &crate::policy::Policies,
    ) -> crate::oncall::Roster {
        use crate::oncall::{PersonPrefs, RoleFill, Roster, Rotation, Shift};
        let mut roster = Roster::default();
        // Every rotation named, valid or not, so a role naming a broken one is not blamed too.
        let declared: BTreeSet<String> =
            rotations.iter().map(|r| r.value.name.value.trim().to_string()).collect();
        let mut names = BTreeSet::new();
        for (i, (id, zone, language)) in prefs.into_iter().enumerate() {
            let path = format!("people[{i}]");
            let mut p = PersonPrefs::default();
            if let Some(z) = zone
                && let Some(tz) = self.zone(&z, &format!("{path}.zone"))
            {
                p.zone = tz;
            }
            if let Some(l) = language {
                let ok = (2..=35).contains(&l.value.len())
                    && l.value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.value.starts_with('-');
                if ok {
                    p.language = l.value;
                } else {
                    self.err(
                        l.referenced,
                        &format!("{path}.language"),
                        format!(
                            "`{}` is not a language tag; write e.g. en, de or pt-BR",
                            l.value.escape_debug()
                        ),
                    );
                }
            }
            if policies.people.contains_key(&id) && !roster.people.contains_key(&id) {
                roster.people.insert(id, p);
            }
        }
        for (i, r) in rotations.into_iter().enumerate() {
            let path = format!("rotations[{i}]");
            let at = r.referenced;
            let raw = r.value;
            let name = raw.name.value.trim().to_string();
            let name_ok = !name.is_empty()
                && name.len() <= MAX_NAME_CHARS
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !name_ok {
                self.err(
                    raw.name.referenced,
                    &format!("{path}.name"),
                    format!(
                        "`{}` must be 1 to {MAX_NAME_CHARS} letters, digits, `_`, `.` or `-`",
                        name.escape_debug()
                    ),
                );
            } else if !names.insert(name.clone()) {
                self.err(
                    raw.name.referenced,
                    &format!("{path}.name"),
                    format!("rotation `{name}` is defined twice"),
                );
            }
            if raw.members.value.is_empty() {
                self.err(
                    raw.members.referenced,
                    &format!("{path}.members"),
                    "is empty; list the people (ids from `people`) in turn order",
                );
            }
            let mut members = Vec::new();
            for (j, m) in raw.members.value.into_iter().enumerate() {
                if policies.people.contains_key(&m.value) {
                    members.push(m.value);
                } else {
                    self.err(
                        m.referenced,
                        &format!("{path}.members[{j}]"),
                        format!("no person `{}` in people", m.value.escape_debug()),
                    );
                }
            }
            let shift = Shift::parse(&raw.shift.value)
                .map_err(|e| self.err(raw.shift.referenced, &format!("{path}.shift"), e))
                .ok();
            let handoff = match raw.handoff {
                None => Some(jiff::civil::Time::constant(9, 0, 0, 0)),
                Some(h) => {
                    let parsed = h.value.trim().parse::<jiff::civil::Time>().ok().filter(|_| {
                        let t = h.value.trim();
                        t.len() == 5 && t.as_bytes()[2] == b':'
                    });
                    if parsed.is_none() {
                        self.err(
                            h.referenced,
                            &format!("{path}.handoff"),
                            format!(
                                "`{}` is not a time of day; write HH:MM (24-hour), e.g. \"09:00\"",
                                h.value.escape_debug()
                            ),
                        );
                    }
                    parsed
                }
            };
            let zone = match raw.zone {
                None => Some(jiff::tz::TimeZone::UTC),
                Some(z) => self.zone(&z, &format!("{path}.zone")),
            };
            let start = match raw.start {
                None => {
                    self.err(
                        at,
                        &format!("{path}.start"),
                        "is missing; give the date of the first handoff, e.g. 2026-01-05",
                    );
                    None
                }
                Some(d) => {
                    let parsed = d.value.trim().parse::<jiff::civil::Date>().ok();
                    if parsed.is_none() {
                        self.err(
                            d.referenced,
                            &format!("{path}.start"),
                            format!(
                                "`{}` is not a date; write YYYY-MM-DD, e.g. 2026-01-05",
                                d.value.escape_debug()
                            ),
                        );
                    }
                    parsed
                }
            };
            if let (true, Some(shift), Some(handoff), Some(zone), Some(start)) =
                (name_ok, shift, handoff, zone, start)
                && !roster.rotations.contains_key(&name)
            {
                roster
                    .rotations
                    .insert(name.clone(), Rotation { name, members, shift, handoff, zone, start });
            }
        }
        if let Some(roles) = roles {
            for (role, fill) in roles.value {
                let path = format!("roles.{role}");
                let at = fill.referenced;
                if role.is_empty()
                    || role.len() > 64
                    || !role
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    self.err(
                        at,
                        &path,
                        "role names are 1 to 64 lower-case letters, digits and `_`",
                    );
                    continue;
                }
                let value = match (fill.value.person, fill.value.rotation) {
                    (Some(p), None) => {
                        if !policies.people.contains_key(&p.value) {
                            self.err(
                                p.referenced,
                                &format!("{path}.person"),
                                format!("no person `{}` in people", p.value.escape_debug()),
                            );
                        }
                        Some(RoleFill::Person(p.value))
                    }
                    (None, Some(r)) => {
                        if !declared.contains(&r.value) {
                            self.err(
                                r.referenced,
                                &format!("{path}.rotation"),
                                format!("no rotation `{}` in rotations", r.value.escape_debug()),
                            );
                        }
                        Some(RoleFill::Rotation(r.value))
                    }
                    (None, None) => None,
                    (Some(_), Some(_)) => {
                        self.err(at, &path, "give one of person or rotation, not both");
                        None
                    }
                };
                roster.roles.insert(role, value);
            }
        }
        roster
    }

    /// An IANA time zone name (from the bundled database when the system has none).
    fn zone(&mut self, raw: &Spanned<String>, path: &str) -> Option<jiff::tz::TimeZone> {
        match jiff::tz::TimeZone::get(raw.value.trim()) {
            Ok(tz) => Some(tz),
            Err(_) => {
                self.err(
                    raw.referenced,
                    path,
                    format!(
                        "`{}` is not a time zone; write an IANA name such as UTC, Europe/Berlin or \
                         America/New_York",
                        raw.value.escape_debug()
                    ),
                );
                None
            }
        }
    }

    /// A local time of day `HH:MM` as minutes after midnight (`24:00` for the end of a day).
    fn minute_of_day(&mut self, raw: Option<Spanned<String>>, path: &str, default: u16) -> u16 {
        let Some(raw) = raw else { return default };
        let t = raw.value.trim();
        let parsed = (t.len() == 5 && t.as_bytes()[2] == b':')
            .then(|| Some((t[..2].parse::<u16>().ok()?, t[3..].parse::<u16>().ok()?)))
            .flatten()
            .filter(|&(h, m)| (h < 24 && m < 60) || (h, m) == (24, 0));
        match parsed {
            Some((h, m)) => h * 60 + m,
            None => {
                self.err(
                    raw.referenced,
                    path,
                    format!(
                        "`{}` is not a time of day; write HH:MM (24-hour), e.g. \"09:00\"",
                        t.escape_debug()
                    ),
                );
                default
            }
        }
    }

    fn hours(
        &mut self,
        business: Option<Spanned<RawBusinessHours>>,
        night: Option<Spanned<RawNight>>,
    ) -> crate::rules::Hours {
        let mut hours = crate::rules::Hours::default();
        if let Some(b) = business {
            let b = b.value;
            if let Some(days) = b.days {
                const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
                hours.business_days = [false; 7];
                for (i, day) in days.value.iter().enumerate() {
                    let name = day.value.trim().to_ascii_lowercase();
                    match NAMES.iter().position(|n| name.starts_with(n) && name.len() <= 9) {
                        Some(d) => hours.business_days[d] = true,
                        None => self.err(
                            day.referenced,
                            &format!("rules.business_hours.days[{i}]"),
                            format!(
                                "`{}` is not a day; use mon, tue, wed, thu, fri, sat or sun",
                                day.value.escape_debug()
                            ),
                        ),
                    }
                }
            }
            let from_at = b.from.as_ref().map(|f| f.referenced);
            hours.business_from =
                self.minute_of_day(b.from, "rules.business_hours.from", hours.business_from);
            hours.business_to =
                self.minute_of_day(b.to, "rules.business_hours.to", hours.business_to);
            if hours.business_from >= hours.business_to
                && let Some(at) = from_at
            {
                self.err(at, "rules.business_hours", "`from` must be before `to` (within one day)");
            }
        }
        if let Some(n) = night {
            let n = n.value;
            hours.night_from = self.minute_of_day(n.from, "rules.night.from", hours.night_from);
            hours.night_to = self.minute_of_day(n.to, "rules.night.to", hours.night_to);
        }
        hours
    }

    fn triage(
        &mut self,
        raw: Option<Spanned<RawTriage>>,
        rules: Option<Spanned<RawRules>>,
    ) -> crate::rules::Triage {
        let mut triage = crate::rules::Triage::default();
        if let Some(rules) = rules.map(|r| r.value) {
            triage.hours = self.hours(rules.business_hours, rules.night);
            triage.limits.time_budget =
                self.duration(rules.time_budget, "rules.time_budget", triage.limits.time_budget);
            if let Some(ops) = rules.max_operations {
                if ops.value == 0 || ops.value > 100_000_000 {
                    self.err(
                        ops.referenced,
                        "rules.max_operations",
                        format!("must be from 1 to 100000000, not {}", ops.value),
                    );
                } else {
                    triage.limits.max_operations = ops.value;
                }
            }
        }
        let Some(raw) = raw.map(|s| s.value) else { return triage };
        if let Some(list) = raw.severities {
            if list.value.is_empty() {
                self.err(list.referenced, "triage.severities", "needs at least one severity");
            } else {
                let mut seen = std::collections::BTreeSet::new();
                let mut previous: Option<i64> = None;
                let mut severities = Vec::new();
                for (i, t) in list.value.into_iter().enumerate() {
                    let path = format!("triage.severities[{i}]");
                    let name = t.value.name.value.trim().to_string();
                    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_whitespace) {
                        self.err(
                            t.value.name.referenced,
                            &format!("{path}.name"),
                            "must be 1 to 64 characters without spaces",
                        );
                    } else if !seen.insert(name.clone()) {
                        self.err(
                            t.value.name.referenced,
                            &format!("{path}.name"),
                            format!("`{name}` is listed twice"),
                        );
                    }
                    let min = t.value.min_score.value;
                    if previous.is_some_and(|p| min >= p) {
                        self.err(
                            t.value.min_score.referenced,
                            &format!("{path}.min_score"),
                            format!("must be lower than the severity before it ({}): list the most severe first", previous.unwrap_or_default()),
                        );
                    }
                    previous = Some(min);
                    severities.push(crate::rules::Threshold { name, min_score: min });
                }
                triage.severities = severities;
            }
        }
        if let Some(scores) = raw.base_scores {
            let mut table = std::collections::BTreeMap::new();
            for (word, score) in scores.value {
                if word.is_empty() || word != word.to_lowercase() {
                    self.err(scores.referenced, "triage.base_scores", format!("`{word}`: severity words are matched lower-cased; write them in lower case"));
                }
                table.insert(word, score);
            }
            triage.base_scores = table;
        }
        if let Some(v) = raw.default_base_score {
            triage.default_base_score = v.value;
        }
        if let Some(v) = raw.verified_report_score {
            triage.verified_report_score = v.value;
        }
        if let Some(v) = raw.unverified_report_score {
            triage.unverified_report_score = v.value;
        }
        triage
    }
    fn listen(&mut self, value: String, at: At) -> String {
        if let Err(message) = check_listen(&value) {
            self.error(at, "listen", message);
        }
        value
    }

    fn limits(&mut self, raw: Option<Spanned<RawLimits>>) -> Limits {
        /// More connections than this would need more descriptors than most systems allow.
        const MAX_CONNECTIONS_LIMIT: u64 = 1_000_000;
        let defaults = Limits::default();
        let Some(raw) = raw.map(|s| s.value) else {
            return defaults;
        };
        let max_body_bytes = match raw.max_body_bytes {
            None => defaults.max_body_bytes,
            Some(s) => {
                if s.value == 0 || s.value > MAX_BODY_BYTES_LIMIT {
                    self.err(
                        s.referenced,
                        "limits.max_body_bytes",
                        format!(
                            "must be from 1 to {MAX_BODY_BYTES_LIMIT} (64 MiB), not {}",
                            s.value
                        ),
                    );
                }
                usize::try_from(s.value).unwrap_or(defaults.max_body_bytes)
            }
        };
        let mut count = |raw: Option<Spanned<u64>>, path: &str| {
            let s = raw?;
            if s.value == 0 || s.value > MAX_CONNECTIONS_LIMIT {
                self.err(
                    s.referenced,
                    path,
                    format!("must be from 1 to {MAX_CONNECTIONS_LIMIT}, not {}", s.value),
                );
                return None;
            }
            usize::try_from(s.value).ok()
        };
        let max_connections = count(raw.max_connections, "limits.max_connections");
        let max_connections_per_address =
            count(raw.max_connections_per_address, "limits.max_connections_per_address");
        let mut trusted_proxies = Vec::new();
        for (i, entry) in
            raw.trusted_proxies.map(|l| l.value).unwrap_or_default().into_iter().enumerate()
        {
            // A bare address is a network of one.
            let parsed = entry
                .value
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) => trusted_proxies.push(net.trunc()),
                Err(_) => self.err(
                    entry.referenced,
                    &format!("limits.trusted_proxies[{i}]"),
                    format!(
                        "`{}` is not an address or CIDR network (10.0.0.0/8, ::1)",
                        entry.value
                    ),
                ),
            }
        }
        Limits {
            max_body_bytes,
            header_read_timeout: self.duration(
                raw.header_read_timeout,
                "limits.header_read_timeout",
                defaults.header_read_timeout,
            ),
            request_timeout: self.duration(
                raw.request_timeout,
                "limits.request_timeout",
                defaults.request_timeout,
            ),
            max_connections,
            max_connections_per_address,
            trusted_proxies,
        }
    }

    fn ack_links(&mut self, raw: Spanned<RawAckLinks>) -> AckLinks {
        let (at, raw) = (raw.referenced, raw.value);
        let mut links = AckLinks::default();
        if let Some(enabled) = raw.enabled {
            links.enabled = enabled;
        }
        if let Some(secret) = raw.secret {
            let mut value = secret.value;
            match expand_secret(&mut value, self.env()) {
                Err(problems) => {
                    problems
                        .into_iter()
                        .for_each(|p| self.err(secret.referenced, "notifications.ack_links.secret", p));
                }
                Ok(()) if value.expose().len() < MIN_LINK_SECRET_BYTES => self.err(
                    secret.referenced,
                    "notifications.ack_links.secret",
                    format!(
                        "must be at least {MIN_LINK_SECRET_BYTES} bytes (e.g. `openssl rand -base64 32`); leave it out to have one generated in data_dir/{LINK_KEY_FILE}"
                    ),
                ),
                Ok(()) => links.secret = Some(value),
            }
        }
        let ttl_at = raw.ttl.as_ref().map_or(at, |t| t.referenced);
        links.ttl = self.duration(raw.ttl, "notifications.ack_links.ttl", links.ttl);
        if links.ttl < Duration::from_secs(1) || links.ttl > MAX_LINK_TTL {
            self.err(ttl_at, "notifications.ack_links.ttl", "must be from 1s to 30 days");
            links.ttl = AckLinks::default().ttl;
        }
        links
    }
    fn journal(&mut self, raw: Option<Spanned<RawJournal>>) -> Journal {
        let defaults = Journal::default();
        let Some(raw) = raw.map(|s| s.value) else {
            return defaults;
        };
        Journal {
            queue_capacity: self.count(
                raw.queue_capacity,
                "journal.queue_capacity",
                MAX_QUEUE_CAPACITY,
                defaults.queue_capacity,
            ),
            max_batch_events: self.count(
                raw.max_batch_events,
                "journal.max_batch_events",
                MAX_BATCH_EVENTS,
                defaults.max_batch_events,
            ),
        }
    }
    fn sources(&mut self, raw: Vec<Spanned<RawSource>>) -> Vec<Source> {
        let mut sources = Vec::new();
        // Earlier owner of each name / token / routing key, so the error names both places.
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut tokens: BTreeMap<String, String> = BTreeMap::new();
        let mut routing_keys: BTreeMap<String, String> = BTreeMap::new();
        for (i, entry) in raw.into_iter().enumerate() {
            let at = entry.referenced;
            let raw = entry.value;
            let path = format!("sources[{i}]");

            let name = self.name(raw.name, at, &path, true);
            if let Some((name, loc)) = &name {
                if let Some(first) = names.get(name) {
                    let message = format!("source `{name}` is already defined at {first}");
                    self.err(*loc, &format!("{path}.name"), message);
                } else {
                    names.insert(name.clone(), path.clone());
                }
            }

            let token = self.secret(raw.token, at, &format!("{path}.token"), "token", &mut tokens);
            let routing_key = raw.routing_key.and_then(|key| {
                self.secret(
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
                        self.err(
                            list.referenced,
                            &allow_path,
                            "is empty, so this source could send nothing; list permissions \
                             (alerts, reports, events) or omit `allow` to allow all",
                        );
                    }
                    self.one_of(
                        list.value,
                        &allow_path,
                        |word| Permission::ALL.into_iter().find(|p| p.as_str() == word),
                        "alerts, reports, events",
                    )
                }
            };

            let rate_limit = self.rate_limit(raw.rate_limit, &format!("{path}.rate_limit"));

            if let (Some((name, _)), Some(token)) = (name, token) {
                sources.push(Source { name, token, routing_key, allow, rate_limit });
            }
        }
        sources
    }

    /// `redaction:` → the policy; each key defaults on its own (see [`crate::redact::Policy`]).
    fn redaction(&mut self, raw: Option<Spanned<RawRedaction>>) -> crate::redact::Policy {
        use crate::redact::{Builtin, EVENT_FIELDS, NamedRegex, Policy};
        let mut policy = Policy::default();
        let Some(raw) = raw.map(|r| r.value) else {
            return policy;
        };
        if let Some(fields) = raw.fields {
            policy.fields.clear();
            for (i, f) in fields.into_iter().enumerate() {
                let path = format!("redaction.fields[{i}]");
                let segments = crate::redact::split_path(f.value.trim());
                if segments.iter().any(|s| s.is_empty()) {
                    self.err(
                        f.referenced,
                        &path,
                        format!("`{}` is not a dotted path such as customer.email", f.value),
                    );
                } else if !EVENT_FIELDS.contains(&segments[0].as_str()) {
                    self.err(
                        f.referenced,
                        &path,
                        format!(
                            "`{}` does not start with an event field; use one of: {}",
                            f.value,
                            EVENT_FIELDS.join(", ")
                        ),
                    );
                } else {
                    policy.fields.push(segments);
                }
            }
        }
        if let Some(patterns) = raw.patterns {
            policy.patterns = self.one_of(
                patterns,
                "redaction.patterns",
                Builtin::parse,
                "email, phone, card (operator patterns go under redaction.regexes)",
            );
        }
        let mut names = BTreeSet::new();
        for (i, r) in raw.regexes.into_iter().enumerate() {
            let path = format!("redaction.regexes[{i}]");
            let at = r.referenced;
            let name = match r.value.name {
                None => {
                    self.err(at, &format!("{path}.name"), "is missing");
                    None
                }
                Some(n) if !is_marker_name(&n.value) => {
                    self.err(
                        n.referenced,
                        &format!("{path}.name"),
                        format!("`{}` must be lower-case letters, digits or _", n.value),
                    );
                    None
                }
                Some(n) if Builtin::parse(&n.value).is_some() || !names.insert(n.value.clone()) => {
                    self.err(
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
                    self.err(at, &format!("{path}.regex"), "is missing");
                    None
                }
                Some(re) => match regex::Regex::new(&re.value) {
                    Ok(compiled) if compiled.is_match("") => {
                        self.err(
                            re.referenced,
                            &format!("{path}.regex"),
                            "matches the empty string, so it would match everywhere",
                        );
                        None
                    }
                    Ok(_) => Some(re.value),
                    Err(e) => {
                        let first = e.to_string().lines().last().unwrap_or_default().to_string();
                        self.err(
                            re.referenced,
                            &format!("{path}.regex"),
                            format!("is not a valid regular expression: {first}"),
                        );
                        None
                    }
                },
            };
            if let (Some(name), Some(regex)) = (name, regex) {
                policy.regexes.push(NamedRegex { name, regex });
            }
        }
        for (i, a) in raw.notify_audiences.into_iter().enumerate() {
            if is_marker_name(&a.value) {
                policy.notify_audiences.insert(a.value);
            } else {
                self.err(
                    a.referenced,
                    &format!("redaction.notify_audiences[{i}]"),
                    format!(
                        "`{}` is not an audience name (lower-case letters, digits, _)",
                        a.value
                    ),
                );
            }
        }
        policy.notify_channels = self.one_of(
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

    fn users(&mut self, raw: Vec<Spanned<RawUser>>) -> Vec<User> {
        let mut users = Vec::new();
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut tokens: BTreeMap<String, String> = BTreeMap::new();
        for (i, entry) in raw.into_iter().enumerate() {
            let at = entry.referenced;
            let raw = entry.value;
            let path = format!("users[{i}]");

            let name = self.name(raw.name, at, &path, false);
            if let Some((name, loc)) = &name {
                if let Some(first) = names.get(name) {
                    let message = format!("user `{name}` is already defined at {first}");
                    self.err(*loc, &format!("{path}.name"), message);
                } else {
                    names.insert(name.clone(), path.clone());
                }
            }

            let token = self.secret(raw.token, at, &format!("{path}.token"), "token", &mut tokens);

            let roles_path = format!("{path}.roles");
            let roles = match raw.roles {
                None => {
                    self.err(
                        at,
                        &roles_path,
                        "is missing; give at least one of: viewer, responder, admin",
                    );
                    BTreeSet::new()
                }
                Some(list) => {
                    if list.value.is_empty() {
                        self.err(
                            list.referenced,
                            &roles_path,
                            "is empty; give at least one of: viewer, responder, admin",
                        );
                    }
                    self.one_of(
                        list.value,
                        &roles_path,
                        |word| Role::ALL.into_iter().find(|r| r.as_str() == word),
                        "viewer, responder, admin",
                    )
                }
            };

            let permissions = self.one_of(
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
        &mut self,
        raw: Option<Spanned<String>>,
        at: Location,
        path: &str,
        strict: bool,
    ) -> Option<(String, Location)> {
        let path = format!("{path}.name");
        let Some(s) = raw else {
            self.err(at, &path, "is missing");
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
                self.err(s.referenced, &path, message);
                None
            }
            None => Some((name, s.referenced)),
        }
    }

    /// Expands and checks a token or routing key; `seen` maps each value to the first field
    /// that used it, because one credential must identify exactly one source or user.
    fn secret(
        &mut self,
        raw: Option<Spanned<Secret>>,
        at: Location,
        path: &str,
        what: &str,
        seen: &mut BTreeMap<String, String>,
    ) -> Option<Secret> {
        let Some(s) = raw else {
            self.err(at, path, format!("{what} is missing"));
            return None;
        };
        let value = self.expand(s.value.expose(), s.referenced, path)?;
        if value.is_empty() {
            self.err(s.referenced, path, format!("{what} is empty"));
            return None;
        }
        // Whitespace usually means a stray newline from a file or variable; the header value
        // that must match it can't carry one.
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.err(
                s.referenced,
                path,
                format!("{what} contains whitespace or control characters"),
            );
            return None;
        }
        if let Some(first) = seen.get(&value) {
            self.err(s.referenced, path, format!("same {what} as {first}; each must be unique"));
            return None;
        }
        seen.insert(value.clone(), path.to_string());
        Some(Secret::new(value))
    }
    fn rate_limit(&mut self, raw: Option<Spanned<RawRateLimit>>, path: &str) -> RateLimit {
        let defaults = RateLimit::default();
        let Some(raw) = raw.map(|s| s.value) else {
            return defaults;
        };
        let mut field = |value: Option<Spanned<u64>>, name: &str| -> Option<u32> {
            let s = value?;
            match u32::try_from(s.value) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    self.err(
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
}

fn check_listen(value: &str) -> Result<(), String> {
    if value.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err(format!("`{}` is not host:port, e.g. 127.0.0.1:9797", value.escape_debug()));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("port `{}` is not a number from 0 to 65535", port.escape_debug()));
    }
    if host.is_empty() {
        return Err("host is empty; use 0.0.0.0:PORT to listen on every interface".to_string());
    }
    if host.contains(':') {
        return Err("an IPv6 address needs brackets, e.g. [::1]:9797".to_string());
    }
    if !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return Err(format!("`{}` is not a host name or IP address", host.escape_debug()));
    }
    Ok(())
}
