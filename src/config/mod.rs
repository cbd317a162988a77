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
//!
//! This module is only the shell: the file and the embedded default, `${VAR}` (`vars`),
//! the generated token and link key (`files`), located errors ([`ConfigErrors`]) and the
//! validation context every section is checked with ([`Validator`]). Each section's raw type
//! and checks live in a `config` module beside the code that uses them —
//! [`crate::auth::config`] (`sources`, `users`), [`crate::http::connections::config`] (`limits`),
//! [`crate::journal::config`], [`crate::rules::config`] (`rules`, `triage`),
//! [`crate::notify::config`] (`notifications`, with [`crate::links::config`] and
//! [`crate::delivery::config`]), [`crate::policy::config`] (`people`, `policies`),
//! [`crate::oncall::config`] (`rotations`, `roles`), [`crate::escalation::config`]
//! (`escalation`, `notices`, `communications`, `maintenance`), [`crate::review::config`],
//! [`crate::dashboard::config`], [`crate::drill::config`], [`crate::redact::config`] and
//! [`crate::catalog`] — and `assemble` calls them in a fixed order. A new key goes next to
//! the code that reads it. Shared words ([`Secret`], [`parse_duration`], [`Role`], …) live in
//! [`crate::vocab`] and are re-exported here.

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
use serde_saphyr::Spanned;

pub use crate::vocab::{Permission, Role, Secret, UserPermission, parse_duration};
pub use errors::{ConfigError, ConfigErrors, Position};
pub(crate) use errors::{parse_error, position};
pub use files::{LINK_KEY_FILE, random_secret, read_or_create_link_key};
use files::{TOKEN_FILE, random_token, read_config_file, read_or_create_token};
pub(crate) use validator::At;
pub use validator::{MAX_NAME_CHARS, Validator};
pub use vars::expand_secret;
use vars::{Piece, expand, split_vars};

// Each section's typed settings, re-exported so that `config::Limits` and the like name the
// types of [`Config`]'s fields; each is defined and checked beside the code that uses it.
pub use crate::auth::config::{RateLimit, Source, User};
pub use crate::dashboard::config::Dashboard;
pub use crate::delivery::config::{ChannelLimits, Window, default_rate_limits};
pub use crate::http::connections::config::Limits;
pub use crate::journal::config::Journal;
pub use crate::links::config::{AckLinks, MAX_LINK_TTL, MIN_LINK_SECRET_BYTES};
pub use crate::notify::config::Notifications;

use crate::auth::config::{RawSource, RawUser};
use crate::dashboard::config::RawDashboard;
use crate::drill::config::RawDrills;
use crate::escalation::config::{RawCommunications, RawEscalation, RawMaintenance, RawNotice};
use crate::http::connections::config::RawLimits;
use crate::journal::config::RawJournal;
use crate::notify::config::RawNotifications;
use crate::oncall::config::{RawRoleFill, RawRotation};
use crate::policy::config::{RawPerson, RawPolicy};
use crate::redact::config::RawRedaction;
use crate::review::config::RawReviews;
use crate::rules::config::{RawRules, RawTriage};

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
    let mut cx = Validator::new(file, env);
    let config = assemble(&mut cx, raw);
    let errors = cx.into_errors();
    if errors.is_empty() { Ok(config) } else { Err(ConfigErrors { errors }) }
}

// ---------------------------------------------------------------------------------------------
// Typed configuration: the contract the rest of the crate builds against
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
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
pub struct RawIncidents {
    pub auto_resolve_after: Option<Spanned<String>>,
    pub resolve_timeout: Option<Spanned<String>>,
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
// Assembly: the shell's own keys, then each section, checked by the module it configures
// ---------------------------------------------------------------------------------------------

/// Checks every section in a fixed order (errors are reported in this order, and a later
/// section may refer to an earlier one's result: policies to channels, the roster to people).
fn assemble(cx: &mut Validator<'_>, raw: RawConfig) -> Config {
    let listen = listen(cx, raw.env_overrides.listen, raw.listen);
    let data_dir = data_dir(cx, raw.env_overrides.data_dir, raw.data_dir);
    let log_format = log_format(cx, raw.log_format);
    let limits = crate::http::connections::config::validate(cx, raw.limits);
    let journal = crate::journal::config::validate(cx, raw.journal);
    let sources = crate::auth::config::sources(cx, raw.sources);
    let users = crate::auth::config::users(cx, raw.users);
    let (rules_dir, watch) = crate::rules::config::dir_and_watch(cx, raw.rules.as_ref());
    let triage = crate::rules::config::triage(cx, raw.triage, raw.rules);
    let notifications = crate::notify::config::validate(cx, raw.notifications);
    let mut raw_people = raw.people;
    let prefs = crate::oncall::config::take_prefs(&mut raw_people);
    let known_roles = crate::oncall::config::known_roles(raw.roles.as_ref());
    let policies = crate::policy::config::validate(
        cx,
        raw_people,
        raw.policies,
        raw.default_policy,
        raw.severity_policies,
        &triage,
        &notifications,
        &known_roles,
    );
    let escalation = crate::escalation::config::validate(
        cx,
        raw.escalation,
        raw.notices,
        raw.communications,
        raw.reviews,
        raw.maintenance,
        &triage,
        &notifications,
    );
    let (auto_resolve_after, resolve_timeout) = incidents(cx, raw.incidents);
    let roster = crate::oncall::config::validate(cx, prefs, raw.rotations, raw.roles, &policies);
    let dashboard = crate::dashboard::config::validate(cx, raw.dashboard);
    let drills =
        crate::drill::config::validate(cx, raw.drills, &policies, &notifications, &known_roles);
    let mut triage = triage;
    let people: BTreeSet<String> = policies.people.keys().cloned().collect();
    let (catalog, problems) = crate::catalog::build(raw.catalog, &people, &known_roles);
    for (loc, path, message) in problems {
        cx.err(loc, &path, message);
    }
    triage.catalog = std::sync::Arc::new(catalog);
    let redaction = crate::redact::config::validate(cx, raw.redaction);

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

/// `listen`, or `TOCSIN_LISTEN` (an error names the variable, not a line).
fn listen(cx: &mut Validator<'_>, env: Option<String>, raw: Option<Spanned<String>>) -> String {
    let checked = |cx: &mut Validator<'_>, value: String, at: At| {
        if let Err(message) = check_listen(&value) {
            cx.error(at, "listen", message);
        }
        value
    };
    match (env, raw) {
        (Some(value), _) => checked(cx, value, At::Env(LISTEN_VAR)),
        (None, Some(s)) => match cx.expand(&s.value, s.referenced, "listen") {
            Some(value) => checked(cx, value, At::File(s.referenced)),
            None => DEFAULT_LISTEN.to_string(),
        },
        (None, None) => DEFAULT_LISTEN.to_string(),
    }
}

/// `data_dir`, or `TOCSIN_DATA_DIR`.
fn data_dir(cx: &mut Validator<'_>, env: Option<String>, raw: Option<Spanned<String>>) -> String {
    match (env, raw) {
        (Some(value), _) => value,
        (None, Some(s)) => match cx.expand(&s.value, s.referenced, "data_dir") {
            Some(value) if value.is_empty() => {
                cx.err(s.referenced, "data_dir", "must not be empty");
                value
            }
            Some(value) => value,
            None => String::new(),
        },
        (None, None) => DEFAULT_DATA_DIR.to_string(),
    }
}

fn log_format(cx: &mut Validator<'_>, raw: Option<Spanned<String>>) -> LogFormat {
    match raw {
        None => LogFormat::Text,
        Some(s) => match s.value.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                cx.err(s.referenced, "log_format", format!("`{other}` is not one of: text, json"));
                LogFormat::Text
            }
        },
    }
}

/// `incidents:` → (`auto_resolve_after`, `resolve_timeout`); `0s` or left out: never.
fn incidents(
    cx: &mut Validator<'_>,
    raw: Option<Spanned<RawIncidents>>,
) -> (Option<Duration>, Option<Duration>) {
    let (auto_resolve_after, resolve_timeout) = match raw {
        Some(i) => (i.value.auto_resolve_after, i.value.resolve_timeout),
        None => (None, None),
    };
    let auto_resolve_after = auto_resolve_after
        .map(|d| cx.duration(Some(d), "incidents.auto_resolve_after", Duration::ZERO))
        .filter(|d| !d.is_zero());
    let resolve_timeout = resolve_timeout
        .map(|d| cx.duration(Some(d), "incidents.resolve_timeout", Duration::ZERO))
        .filter(|d| !d.is_zero());
    (auto_resolve_after, resolve_timeout)
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
