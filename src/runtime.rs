//! The reloadable part of the daemon: credentials, compiled rules and triage settings, built
//! together from the config and swapped in as one unit.
//!
//! Every request takes one snapshot (`ArcSwap::load`) and uses it throughout, so no event is
//! authenticated under one config and scored under another, or evaluated against half a rule
//! set. A reload (file change, SIGHUP, `POST /-/reload`) builds a complete new [`Runtime`]
//! first; if anything in it fails, the running one stays in force.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::auth::Authenticator;
use crate::config::{self, Config, ConfigErrors, ConfigOrigin, TokenFallback};
use crate::delivery::Channels;
use crate::metrics::Metrics;
use crate::rules::{RuleError, RuleSet, Triage};
use crate::templates::{TemplateError, Templates};

pub struct Runtime {
    pub config: Config,
    pub auth: Authenticator,
    pub rules: Arc<RuleSet>,
    /// The message template library (the configured directory, or the built-in one).
    pub templates: Arc<Templates>,
    /// The configured notification channels (SMTP pool, HTTP clients, log file).
    pub channels: Arc<Channels>,
    /// Signed acknowledge links: `None` unless `notifications.dashboard_url` is set and
    /// `notifications.ack_links.enabled` is on.
    pub ack_links: Option<Arc<crate::links::AckLinks>>,
    /// The redaction policy, compiled (see [`crate::redact`]).
    pub redactor: Arc<crate::redact::Redactor>,
}

impl Runtime {
    pub fn triage(&self) -> &Triage {
        &self.config.triage
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("rules", &self.rules.names()).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Rules(Vec<RuleError>),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Templates(Vec<TemplateError>),
    #[error("{}", .0.join("\n"))]
    Channels(Vec<String>),
    #[error("{0}")]
    Redaction(String),
    /// The blocking thread that compiled the new set did not finish (it panicked).
    #[error("the reload did not finish: {0}")]
    Interrupted(String),
}

/// Compiles the template library and renders every template against sample incidents, so a
/// typo is caught now rather than at 3 a.m.
pub fn load_templates(config: &Config) -> Result<Templates, Vec<TemplateError>> {
    let templates = match &config.notifications.templates {
        Some(dir) => Templates::load(dir)?,
        None => Templates::builtin(),
    };
    let problems = templates.check_variables();
    if problems.is_empty() { Ok(templates) } else { Err(problems) }
}

/// Compiles the rules the config names: every `*.rhai` in `rules.dir`, or none.
pub fn load_rules(config: &Config) -> Result<RuleSet, Vec<RuleError>> {
    match &config.rules_dir {
        Some(dir) => RuleSet::load(dir, &config.triage.limits),
        None => Ok(RuleSet::empty(&config.triage.limits)),
    }
}

/// Builds a complete runtime from a config: credentials and compiled rules.
/// `dry_run` (for `tocsin check` and `tocsin test`) builds everything but opens no file for
/// writing, so checking a config never creates the data directory.
pub fn build(config: Config, dry_run: bool) -> Result<Runtime, LoadError> {
    let rules = load_rules(&config).map_err(LoadError::Rules)?;
    let templates = load_templates(&config).map_err(LoadError::Templates)?;
    let channels = Channels::build(&config.notifications, dry_run).map_err(LoadError::Channels)?;
    let ack_links = ack_links(&config, dry_run).map_err(LoadError::Config)?;
    let redactor = Arc::new(
        crate::redact::Redactor::new(config.redaction.clone()).map_err(LoadError::Redaction)?,
    );
    if !dry_run {
        // The log follows the running policy's operator regexes from here on.
        crate::redact::set_log_redactor(redactor.clone());
    }
    Ok(Runtime {
        ack_links,
        redactor,
        auth: Authenticator::new(&config),
        rules: Arc::new(rules),
        templates: Arc::new(templates),
        channels: Arc::new(channels),
        config,
    })
}

/// The acknowledge-link signer: the configured secret, else `<data_dir>/link.key` (created
/// on first start, 0600). A dry run (`tocsin check`) uses a throwaway key and writes nothing.
fn ack_links(
    config: &Config,
    dry_run: bool,
) -> Result<Option<Arc<crate::links::AckLinks>>, ConfigErrors> {
    let n = &config.notifications;
    let Some(base_url) = n.dashboard_url.clone().filter(|_| n.ack_links.enabled) else {
        return Ok(None);
    };
    let secret = match &n.ack_links.secret {
        Some(secret) => secret.clone(),
        None if dry_run => config::random_secret().map_err(|e| ConfigErrors {
            errors: vec![config::ConfigError {
                file: config::LINK_KEY_FILE.to_string(),
                position: None,
                path: String::new(),
                message: e,
            }],
        })?,
        None => config::read_or_create_link_key(&config.data_dir)?,
    };
    Ok(Some(Arc::new(crate::links::AckLinks {
        key: crate::links::Key::new(secret.expose().as_bytes()),
        ttl: n.ack_links.ttl,
        base_url,
    })))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads the config from `origin` and builds the runtime.
pub fn load(origin: &ConfigOrigin, token: TokenFallback) -> Result<Runtime, LoadError> {
    let dry_run = matches!(token, TokenFallback::Placeholder);
    build(config::load(origin, &env, token)?, dry_run)
}

/// Swaps in a new runtime when asked. One reload at a time (a std Mutex: held only on the
/// blocking thread that compiles, never across an await).
pub struct Reloader {
    origin: ConfigOrigin,
    current: Arc<ArcSwap<Runtime>>,
    metrics: Arc<Metrics>,
    lock: Mutex<()>,
}

impl Reloader {
    pub fn new(
        origin: ConfigOrigin,
        current: Arc<ArcSwap<Runtime>>,
        metrics: Arc<Metrics>,
    ) -> Reloader {
        Reloader { origin, current, metrics, lock: Mutex::new(()) }
    }

    /// Rebuilds everything from the files and swaps it in, or keeps the running runtime and
    /// returns every error with its file and line. The one entry for every trigger (a file
    /// change, SIGHUP, `POST /-/reload`, the dashboard's button): it compiles on a blocking
    /// thread of the Tokio runtime, which building the channels needs (the SMTP pool spawns a
    /// task there), wherever the trigger came from.
    pub async fn reload(self: &Arc<Self>, why: &str) -> Result<Vec<String>, LoadError> {
        let (rl, why) = (self.clone(), why.to_string());
        tokio::task::spawn_blocking(move || rl.rebuild(&why))
            .await
            .unwrap_or_else(|e| Err(LoadError::Interrupted(e.to_string())))
    }

    fn rebuild(&self, why: &str) -> Result<Vec<String>, LoadError> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let result = load(&self.origin, TokenFallback::Generate);
        match result {
            Ok(next) => {
                let old = self.current.load();
                let ignored = restart_only_changes(&old.config, &next.config);
                for key in &ignored {
                    tracing::warn!(
                        key,
                        "changed in the config but only takes effect after a restart"
                    );
                }
                let names = next.rules.names();
                self.metrics.declare(&next.config, &names);
                self.current.store(Arc::new(next));
                self.metrics.reloaded(true);
                tracing::info!(why, rules = ?names, "reloaded config and rules");
                Ok(ignored)
            }
            Err(e) => {
                self.metrics.reloaded(false);
                tracing::error!(why, errors = %e, "reload failed; the running config and rules stay in force");
                Err(e)
            }
        }
    }

    /// Whether a change to `path` should reload: the config file, or a rule script.
    fn is_watched(&self, path: &std::path::Path) -> bool {
        let same = |a: &std::path::Path, b: &std::path::Path| {
            a == b || a.canonicalize().ok().zip(b.canonicalize().ok()).is_some_and(|(a, b)| a == b)
        };
        if let ConfigOrigin::File(config) = &self.origin
            && (same(path, config) || path.file_name() == config.file_name())
        {
            return true;
        }
        path.extension().is_some_and(|e| e == "rhai" || e == "j2")
    }

    /// The files whose change should trigger a reload: the config file and the rules directory.
    pub fn watched(&self) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        if let ConfigOrigin::File(path) = &self.origin {
            paths.push(path.clone());
        }
        let rt = self.current.load();
        if let Some(dir) = &rt.config.rules_dir {
            paths.push(dir.clone());
        }
        if let Some(dir) = &rt.config.notifications.templates {
            // Each channel has its own subdirectory.
            // Language directories (`de/`, …) hold channel directories of their own.
            let mut bases = vec![dir.clone()];
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let is_channel = ["email", "sms", "webhook", "log"].contains(&name.as_str());
                    if !is_channel && !name.starts_with('.') && entry.path().is_dir() {
                        bases.push(entry.path());
                    }
                }
            }
            for base in bases {
                for channel in ["email", "sms", "webhook", "log"] {
                    let sub = base.join(channel);
                    if sub.is_dir() {
                        paths.push(sub);
                    }
                }
            }
        }
        paths
    }
}

/// Keys that a running daemon cannot change (the listener, the store, the connection builder).
fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    if old.listen != new.listen {
        keys.push("listen".to_string());
    }
    if old.data_dir != new.data_dir {
        keys.push("data_dir".to_string());
    }
    if old.journal != new.journal {
        keys.push("journal".to_string());
    }
    if old.limits.max_connections != new.limits.max_connections {
        keys.push("limits.max_connections".to_string());
    }
    if old.limits.max_connections_per_address != new.limits.max_connections_per_address {
        keys.push("limits.max_connections_per_address".to_string());
    }
    if old.limits.header_read_timeout != new.limits.header_read_timeout {
        keys.push("limits.header_read_timeout".to_string());
    }
    if old.watch != new.watch {
        keys.push("rules.watch".to_string());
    }
    if old.auto_resolve_after != new.auto_resolve_after {
        keys.push("incidents.auto_resolve_after".to_string());
    }
    keys
}

/// Watches the config file and rules directory and reloads on change (debounced, so an editor
/// that writes a file in several steps causes one reload) through `runtime`, like every other
/// trigger. Returns the watcher, which stops watching when dropped.
pub fn watch(
    reloader: Arc<Reloader>,
    runtime: tokio::runtime::Handle,
) -> Result<
    notify_debouncer_full::Debouncer<
        notify_debouncer_full::notify::RecommendedWatcher,
        notify_debouncer_full::RecommendedCache,
    >,
    notify_debouncer_full::notify::Error,
> {
    use notify_debouncer_full::notify::RecursiveMode;
    let rl = reloader.clone();
    let mut debouncer = notify_debouncer_full::new_debouncer(
        Duration::from_millis(300),
        None,
        move |result: notify_debouncer_full::DebounceEventResult| match result {
            Ok(events) => {
                let relevant = events
                    .iter()
                    .any(|e| !e.kind.is_access() && e.paths.iter().any(|p| rl.is_watched(p)));
                if relevant {
                    // The debouncer's own thread is outside the Tokio runtime: enter it (and
                    // wait, so that one burst of changes is one reload at a time).
                    let _ = runtime.block_on(rl.reload("file change"));
                }
            }
            Err(errors) => tracing::warn!(?errors, "file watching failed"),
        },
    )?;
    let mut targets: Vec<PathBuf> = Vec::new();
    for path in reloader.watched() {
        // Watch a file's directory: editors replace files by renaming, which a watch on the
        // file itself would lose.
        let (target, mode) = if path.is_dir() {
            (path.clone(), RecursiveMode::NonRecursive)
        } else {
            (
                path.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")),
                RecursiveMode::NonRecursive,
            )
        };
        if targets.contains(&target) {
            continue;
        }
        targets.push(target.clone());
        if let Err(e) = debouncer.watch(&target, mode) {
            tracing::warn!(path = %target.display(), error = %e, "cannot watch for changes; reload with SIGHUP or POST /-/reload");
        }
    }
    Ok(debouncer)
}
