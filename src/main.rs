//! The `tocsin` binary: command-line parsing and process edges (signals, exit codes).
//! Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// mimalloc instead of the system allocator: the daemon allocates and frees many small,
// short-lived buffers on several threads (request bodies, rule values, store pages), where
// glibc's malloc spent about a quarter of the journal writer's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tocsin::config::{self, ConfigOrigin, TokenFallback};
use tocsin::runtime::{self, Runtime};

#[derive(Debug, Parser)]
#[command(name = "tocsin", version, about = "Rules-driven alert router and escalation daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon. Without --config: rules/tocsin.yaml if present, else the embedded default.
    Serve {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate the config and compile every rule; print every error with its location;
    /// exit 0 (valid) or 1.
    Check {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Inspect and manage the notification queue of a running daemon (through its API).
    Queue {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        op: QueueCommand,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        op: AuditCommand,
    },
    /// Rehearse a scenario offline: its events and actions go through the real pipeline on a
    /// simulated clock against an in-memory store; prints who would have been told what and
    /// when; exit 0 when every expectation holds, 1 when one fails, 2 when it cannot run.
    Drill {
        /// The config (default: the scenario's `config:`, else rules/tocsin.yaml if present,
        /// else the embedded default).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The scenario file (YAML).
        scenario: PathBuf,
    },
    /// MTTD, MTTA and MTTR by severity, kind and service; recurrence; customer report volume;
    /// notifications per incident; action items. Reads the store file read-only; while a
    /// daemon holds it, asks that daemon (GET /api/v1/report, viewer).
    Report {
        #[command(flatten)]
        target: Target,
        /// Data directory holding tocsin.redb (default: TOCSIN_DATA_DIR, else the config's).
        /// With --url and without --data-dir, only the daemon is asked.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Incidents opened in this last span (`7d`, `12h`) or since this RFC 3339 time.
        #[arg(long, value_name = "DURATION", default_value = tocsin::report::DEFAULT_SINCE)]
        since: String,
        /// An incident opening this soon after the previous one for its key resolved recurs.
        #[arg(long, value_name = "DURATION", default_value = tocsin::report::DEFAULT_RECURRENCE_WINDOW)]
        recurrence_window: String,
        /// table: aligned columns; json: as GET /api/v1/report; csv: one figure per row
        /// (section,dimension,key,metric,value).
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
    },
    /// Run rule test cases (YAML) against the config's rules; print a diff for each failing
    /// case; exit 1 if any fails. Default path: fixtures/rules/.
    Test {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Case files, or directories of them.
        paths: Vec<PathBuf>,
    },
}

/// Which daemon to talk to, and as whom.
#[derive(Debug, clap::Args)]
struct Target {
    /// Config whose `listen` address and token file locate the daemon.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Base URL of the daemon (default: http:// + the config's listen address).
    #[arg(long, value_name = "URL", global = true)]
    url: Option<String>,
    /// A user's token: an admin's for queue changes and audit verify, a viewer's is enough for
    /// reports (default: TOCSIN_TOKEN, else the daemon's generated token file).
    #[arg(long, env = "TOCSIN_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

impl Target {
    /// The daemon's base URL (`--url`, else http:// + `listen`) and a token (`--token` or
    /// TOCSIN_TOKEN, else the generated token file in `data_dir`).
    fn access(self, listen: &str, data_dir: Option<&std::path::Path>) -> (String, Option<String>) {
        let url = self
            .url
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_string();
        let token = self.token.or_else(|| {
            let token = std::fs::read_to_string(data_dir?.join("token")).ok()?;
            Some(token.trim().to_string())
        });
        (url, token)
    }
}

#[derive(Debug, Subcommand)]
enum QueueCommand {
    /// List notifications, newest first.
    List {
        /// pending, queued, sending, retrying, delivered or dead.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        channel: Option<String>,
        #[arg(long)]
        incident: Option<u64>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Make a dead-lettered notification due again (same idempotency id).
    Retry { id: u64 },
    /// Give up on a pending notification.
    Drop { id: u64 },
    /// List the configured webhooks and which are disabled (after a 410 Gone), and why.
    Webhooks,
    /// Re-enable a webhook disabled after a 410 Gone.
    EnableWebhook { name: String },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walk the audit hash chain; exit 0 printing the entry count and head hash, 1 naming the
    /// first entry that does not match, 2 if it could not be verified. Reads the store file
    /// read-only; while a daemon holds it, asks that daemon (GET /api/v1/audit/verify, admin).
    Verify {
        #[command(flatten)]
        target: Target,
        /// Data directory holding tocsin.redb (default: TOCSIN_DATA_DIR, else the config's).
        /// With --url and without --data-dir, only the daemon is asked.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// A head printed by an earlier verify (`N:HEX`): the chain must still pass through it,
        /// which catches a chain rewritten since.
        #[arg(long, value_name = "N:HASH", value_parser = tocsin::audit::parse_head)]
        expect_head: Option<tocsin::audit::Head>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Check { config } => check(config),
        Command::Test { config, paths } => test(config, paths),
        Command::Drill { config, scenario } => ExitCode::from(tocsin::drill::main(
            &scenario,
            config.as_deref(),
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )),
        Command::Queue { target, op } => queue(target, op),
        Command::Audit { op: AuditCommand::Verify { target, data_dir, expect_head } } => {
            audit_verify(target, data_dir, expect_head)
        }
        Command::Report { target, data_dir, since, recurrence_window, format } => {
            report(target, data_dir, &since, &recurrence_window, format)
        }
    }
}

fn describe(origin: &ConfigOrigin) -> String {
    match origin {
        ConfigOrigin::File(path) => path.display().to_string(),
        ConfigOrigin::Embedded => "the embedded default config".to_string(),
    }
}

/// A small runtime to build channels in (the SMTP pool spawns a task when it is built).
fn offline_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

fn check(path: Option<PathBuf>) -> ExitCode {
    let origin = config::resolve_origin(path.as_deref());
    let rt = offline_runtime();
    let _entered = rt.enter();
    match runtime::load(&origin, TokenFallback::Placeholder) {
        Ok(rt) => {
            println!("{}: OK; rules: {}", describe(&origin), rule_list(&rt.rules.names()));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn queue(target: Target, op: QueueCommand) -> ExitCode {
    let origin = config::resolve_origin(target.config.as_deref());
    let env = |name: &str| std::env::var(name).ok();
    let cfg = match config::load(&origin, &env, TokenFallback::Placeholder) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let (url, token) = target.access(&cfg.listen, Some(&cfg.data_dir));
    let Some(token) = token else {
        eprintln!(
            "no token: pass --token, set TOCSIN_TOKEN, or run where the daemon's data_dir/token is readable"
        );
        return ExitCode::FAILURE;
    };
    let (method, path) = match &op {
        QueueCommand::List { state, channel, incident, limit } => {
            let mut q = vec![format!("limit={limit}")];
            q.extend(state.as_ref().map(|s| format!("state={s}")));
            q.extend(channel.as_ref().map(|c| format!("channel={c}")));
            q.extend(incident.map(|i| format!("incident={i}")));
            ("GET", format!("/api/v1/notifications?{}", q.join("&")))
        }
        QueueCommand::Retry { id } => ("POST", format!("/api/v1/notifications/{id}/retry")),
        QueueCommand::Drop { id } => ("POST", format!("/api/v1/notifications/{id}/drop")),
        QueueCommand::Webhooks => ("GET", "/api/v1/webhooks".to_string()),
        QueueCommand::EnableWebhook { name } => {
            ("POST", format!("/api/v1/webhooks/{}/enable", utf8_percent(name)))
        }
    };
    let rt = offline_runtime();
    let result = rt.block_on(async {
        let client = reqwest::Client::new();
        let req = match method {
            "GET" => client.get(format!("{url}{path}")),
            _ => client.post(format!("{url}{path}")),
        };
        let resp = req.bearer_auth(&token).send().await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    let (status, body) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot reach the daemon at {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !status.is_success() {
        eprintln!("{}: {}", status, body["message"].as_str().unwrap_or("(no message)"));
        return ExitCode::FAILURE;
    }
    let rows: Vec<serde_json::Value> = match op {
        QueueCommand::List { .. } => body["notifications"].as_array().cloned().unwrap_or_default(),
        QueueCommand::Webhooks => {
            println!("{:<24} state", "webhook");
            for w in body["webhooks"].as_array().into_iter().flatten() {
                let state = match w["disabled"].as_str() {
                    Some(why) => format!("DISABLED: {why}"),
                    None => "enabled".to_string(),
                };
                println!("{:<24} {state}", w["name"].as_str().unwrap_or(""));
            }
            return ExitCode::SUCCESS;
        }
        QueueCommand::EnableWebhook { name } => {
            println!(
                "webhook {name} re-enabled (it was disabled: {})",
                body["was_disabled"].as_str().unwrap_or("?")
            );
            return ExitCode::SUCCESS;
        }
        _ => vec![body],
    };
    println!(
        "{:>6} {:>8} {:<9} {:<8} {:<28} {:>3} last error / reference",
        "id", "incident", "state", "channel", "to", "try"
    );
    for n in rows {
        let to =
            n["recipient"]["person"].as_str().or(n["recipient"]["address"].as_str()).unwrap_or("");
        // serde_json's numbers ignore width and alignment: padded as text, under the header.
        let number = |v: &serde_json::Value| v.as_u64().map(|n| n.to_string()).unwrap_or_default();
        println!(
            "{:>6} {:>8} {:<9} {:<8} {:<28} {:>3} {}",
            number(&n["id"]),
            number(&n["incident_id"]),
            n["state"].as_str().unwrap_or(""),
            n["channel"].as_str().unwrap_or(""),
            to,
            number(&n["attempts"]),
            n["last_error"].as_str().or(n["reference"].as_str()).unwrap_or("")
        );
    }
    ExitCode::SUCCESS
}

/// `name` for a URL path segment: everything but unreserved characters percent-encoded.
fn utf8_percent(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Exit code of `audit verify` when it could not verify at all (no store, daemon unreachable).
const CANNOT_VERIFY: u8 = 2;

fn audit_verify(
    target: Target,
    data_dir: Option<PathBuf>,
    expect_head: Option<tocsin::audit::Head>,
) -> ExitCode {
    use tocsin::store::{self, VerifyFileError};
    // The config locates the store and the daemon; it is not needed when both are given.
    let origin = config::resolve_origin(target.config.as_deref());
    let env = |name: &str| std::env::var(name).ok();
    let cfg = match config::load(&origin, &env, TokenFallback::Placeholder) {
        Ok(cfg) => Some(cfg),
        Err(_) if target.config.is_none() && (data_dir.is_some() || target.url.is_some()) => None,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(CANNOT_VERIFY);
        }
    };
    let dir = data_dir.clone().or_else(|| cfg.as_ref().map(|c| c.data_dir.clone()));
    let ask_daemon_only = target.url.is_some() && data_dir.is_none();
    if let (Some(dir), false) = (&dir, ask_daemon_only) {
        match store::verify_audit_file(dir, expect_head) {
            Ok((result, repaired)) => {
                if repaired {
                    eprintln!("note: {}", store::REPAIRED_NOTE);
                }
                return audit_outcome(&tocsin::audit::report_json(&result));
            }
            Err(VerifyFileError::InUse(path)) => {
                eprintln!("{} is held by a running daemon; asking it to verify", path.display());
            }
            Err(e) => {
                eprintln!("cannot verify: {e}");
                return ExitCode::from(CANNOT_VERIFY);
            }
        }
    }
    let listen = cfg.as_ref().map(|c| c.listen.clone()).unwrap_or_else(|| "127.0.0.1:9797".into());
    let (url, token) = target.access(&listen, dir.as_deref());
    let Some(token) = token else {
        eprintln!("no token to ask the daemon with: pass --token or set TOCSIN_TOKEN (an admin's)");
        return ExitCode::from(CANNOT_VERIFY);
    };
    let rt = offline_runtime();
    let result = rt.block_on(async {
        let query = match expect_head {
            Some(h) => format!("?expect_head={}:{}", h.seq, tocsin::audit::hex(&h.hash)),
            None => String::new(),
        };
        let resp = reqwest::Client::new()
            .get(format!("{url}/api/v1/audit/verify{query}"))
            .bearer_auth(&token)
            .send()
            .await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    match result {
        Ok((status, body)) if status.is_success() => audit_outcome(&body),
        Ok((status, body)) => {
            eprintln!(
                "cannot verify: {status}: {}",
                body["message"].as_str().unwrap_or("(no message)")
            );
            ExitCode::from(CANNOT_VERIFY)
        }
        Err(e) => {
            eprintln!("cannot verify: cannot reach the daemon at {url}: {e}");
            ExitCode::from(CANNOT_VERIFY)
        }
    }
}

/// `tocsin report`: from the store file when no daemon holds it, else from the daemon.
fn report(
    target: Target,
    data_dir: Option<PathBuf>,
    since: &str,
    recurrence_window: &str,
    format: ReportFormat,
) -> ExitCode {
    use tocsin::store::{self, VerifyFileError};
    // Under TOCSIN_FAKE_CLOCK "now" is that time, as for a daemon started with it.
    let now = match tocsin::clock::from_env() {
        Ok(clock) => clock.now(),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Checked here so that a typo fails the same way whichever side computes.
    let options = match tocsin::report::Options::parse(Some(since), Some(recurrence_window), now) {
        Ok(o) => o,
        Err((field, message)) => {
            eprintln!("--{}: {message}", field.replace('_', "-"));
            return ExitCode::from(2);
        }
    };
    let origin = config::resolve_origin(target.config.as_deref());
    let env = |name: &str| std::env::var(name).ok();
    let cfg = match config::load(&origin, &env, TokenFallback::Placeholder) {
        Ok(cfg) => Some(cfg),
        Err(_) if target.config.is_none() && (data_dir.is_some() || target.url.is_some()) => None,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let dir = data_dir.clone().or_else(|| cfg.as_ref().map(|c| c.data_dir.clone()));
    let ask_daemon_only = target.url.is_some() && data_dir.is_none();
    if let (Some(dir), false) = (&dir, ask_daemon_only) {
        match store::report_data_file(dir, options.read_from()) {
            Ok((data, repaired)) => {
                if repaired {
                    eprintln!("note: {}", store::REPAIRED_NOTE);
                }
                let mut report =
                    tocsin::report::compute(&data.incidents, &data.notifications, &options);
                // Read from the file, nobody's permissions apply: the report is redacted as
                // for a user without `pii` (reports get pasted into tickets and mail); a
                // `pii` user asks the daemon (--url, --token) for the originals.
                let policy = cfg.as_ref().map(|c| c.redaction.clone()).unwrap_or_default();
                let redactor = tocsin::redact::Redactor::new(policy)
                    .unwrap_or_else(|_| tocsin::redact::Redactor::default());
                report.redact(&redactor, &data.known(&redactor));
                return print_report(&report, format);
            }
            Err(VerifyFileError::InUse(path)) => {
                eprintln!(
                    "{} is held by a running daemon; asking it for the report",
                    path.display()
                );
            }
            Err(e) => {
                eprintln!("cannot read the store: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let listen = cfg.as_ref().map(|c| c.listen.clone()).unwrap_or_else(|| "127.0.0.1:9797".into());
    let (url, token) = target.access(&listen, dir.as_deref());
    let Some(token) = token else {
        eprintln!(
            "no token to ask the daemon with: pass --token or set TOCSIN_TOKEN (a viewer's is enough)"
        );
        return ExitCode::FAILURE;
    };
    let rt = offline_runtime();
    let result = rt.block_on(async {
        let resp = reqwest::Client::new()
            .get(format!(
                "{url}/api/v1/report?since={}&recurrence_window={}",
                percent_encode(since),
                percent_encode(recurrence_window)
            ))
            .bearer_auth(&token)
            .timeout(std::time::Duration::from_secs(60))
            .send()
            .await?;
        let status = resp.status();
        let body = resp.text().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    match result {
        Ok((status, body)) if status.is_success() => {
            match serde_json::from_str::<tocsin::report::Report>(&body) {
                Ok(report) => print_report(&report, format),
                Err(e) => {
                    eprintln!("the daemon at {url} answered a report this tocsin cannot read: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Ok((status, body)) => {
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|b| b["message"].as_str().map(str::to_owned))
                .unwrap_or(body);
            eprintln!("the daemon at {url} refused: {status}: {message}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cannot reach the daemon at {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A query-string value: everything but unreserved characters as %XX.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn print_report(report: &tocsin::report::Report, format: ReportFormat) -> ExitCode {
    match format {
        ReportFormat::Table => print!("{}", report.table()),
        ReportFormat::Csv => print!("{}", report.csv()),
        ReportFormat::Json => match serde_json::to_string_pretty(report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("cannot encode the report: {e}");
                return ExitCode::FAILURE;
            }
        },
    }
    ExitCode::SUCCESS
}

/// Prints a verification report (`audit::report_json`'s shape) and picks the exit code.
fn audit_outcome(report: &serde_json::Value) -> ExitCode {
    if report["valid"] == true {
        println!(
            "audit log intact: {} entries; head hash {}",
            report["entries"],
            report["head"].as_str().unwrap_or("")
        );
        println!(
            "record this head elsewhere; later check it with --expect-head {}",
            report["head_record"].as_str().unwrap_or("")
        );
        ExitCode::SUCCESS
    } else {
        eprintln!("audit log FAILED verification: {}", report["problem"].as_str().unwrap_or("?"));
        ExitCode::FAILURE
    }
}

fn rule_list(names: &[String]) -> String {
    if names.is_empty() { "none".to_string() } else { names.join(", ") }
}

fn test(path: Option<PathBuf>, paths: Vec<PathBuf>) -> ExitCode {
    let origin = config::resolve_origin(path.as_deref());
    let tokio_rt = offline_runtime();
    let _entered = tokio_rt.enter();
    let env = |name: &str| std::env::var(name).ok();
    let loaded = config::load(&origin, &env, TokenFallback::Placeholder)
        .map_err(runtime::LoadError::from)
        .and_then(|mut cfg| {
            // Cases test what the rules decide, not how fast this machine is: a busy machine
            // must not turn a wall-clock overrun into a failed case. The operation limit, which
            // catches runaway loops deterministically, stays as configured.
            let budget = &mut cfg.triage.limits.time_budget;
            *budget = (*budget).max(std::time::Duration::from_secs(2));
            runtime::build(cfg, true)
        });
    let rt = match loaded {
        Ok(rt) => rt,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let paths = if paths.is_empty() { tocsin::rule_tests::default_paths() } else { paths };
    let report = tocsin::rule_tests::run(&paths, &rt.rules, rt.triage());
    print!("{}", report.render());
    if report.failed() == 0 && !report.results.is_empty() {
        ExitCode::SUCCESS
    } else {
        if report.results.is_empty() && report.errors.is_empty() {
            eprintln!("no test cases found in {paths:?}");
        }
        ExitCode::FAILURE
    }
}

fn serve(path: Option<PathBuf>) -> ExitCode {
    let origin = config::resolve_origin(path.as_deref());
    // Blocking threads score event batches and read the store. More of them than a few per
    // core only contend for the cores, and each holds its own allocator heap: capped (8 on 2
    // cores), a storm of 64 concurrent batches queues for them instead of starting 64 threads.
    // Measured on 2 cores, 100-alert batches: peak RSS 268 MB instead of 478 MB, throughput
    // the same or better.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let tokio_runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads((cores * 4).max(8))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = {
        let _entered = tokio_runtime.enter();
        match runtime::load(&origin, TokenFallback::Generate) {
            Ok(runtime) => runtime,
            Err(errors) => {
                eprintln!("{errors}");
                return ExitCode::FAILURE;
            }
        }
    };
    tocsin::telemetry::init(runtime.config.log_format);
    match tokio_runtime.block_on(run(origin, runtime)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tocsin: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(origin: ConfigOrigin, runtime: Runtime) -> anyhow::Result<()> {
    let config = &runtime.config;
    let (listener, addr) = tocsin::http::bind(&config.listen).await?;
    if let Some(token_file) = &config.generated_token {
        println!(
            "no TOCSIN_TOKEN set: using the token kept in {} (owner-only); send it as \
             `Authorization: Bearer $(cat {})`",
            token_file.display(),
            token_file.display()
        );
    }
    // Installed before the line below: whoever reads it may send SIGTERM at once, and a
    // SIGTERM before the handler exists would kill the process uncommitted.
    let shutdown = shutdown_signal();
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("tocsin listening on http://{addr} (config: {})", describe(&origin));
    tracing::info!(%addr, data_dir = %config.data_dir.display(), config = %describe(&origin), rules = ?runtime.rules.names(), "started");
    let clock = tocsin::clock::from_env()?;
    tocsin::http::run(origin, runtime, listener, clock, shutdown).await
}

/// Installs the SIGTERM and SIGINT handlers now (not when first polled); the future resolves
/// on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL only");
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}
