//! The `tocsin` binary: command-line parsing and process edges (signals, exit codes).
//! Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    /// Run rule test cases (YAML) against the config's rules; print a diff for each failing
    /// case; exit 1 if any fails. Default path: fixtures/rules/.
    Test {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Case files, or directories of them.
        paths: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Check { config } => check(config),
        Command::Test { config, paths } => test(config, paths),
    }
}

fn describe(origin: &ConfigOrigin) -> String {
    match origin {
        ConfigOrigin::File(path) => path.display().to_string(),
        ConfigOrigin::Embedded => "the embedded default config".to_string(),
    }
}

fn check(path: Option<PathBuf>) -> ExitCode {
    let origin = config::resolve_origin(path.as_deref());
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

fn rule_list(names: &[String]) -> String {
    if names.is_empty() { "none".to_string() } else { names.join(", ") }
}

fn test(path: Option<PathBuf>, paths: Vec<PathBuf>) -> ExitCode {
    let origin = config::resolve_origin(path.as_deref());
    let rt = match runtime::load(&origin, TokenFallback::Placeholder) {
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
    let runtime = match runtime::load(&origin, TokenFallback::Generate) {
        Ok(runtime) => runtime,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    tocsin::telemetry::init(runtime.config.log_format);
    let tokio_runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
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
    let (listener, addr) = tocsin::server::bind(&config.listen).await?;
    if let Some(token_file) = &config.generated_token {
        println!(
            "no TOCSIN_TOKEN set: using the token kept in {} (owner-only); send it as \
             `Authorization: Bearer $(cat {})`",
            token_file.display(),
            token_file.display()
        );
    }
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("tocsin listening on http://{addr} (config: {})", describe(&origin));
    tracing::info!(%addr, data_dir = %config.data_dir.display(), config = %describe(&origin), rules = ?runtime.rules.names(), "started");
    tocsin::server::run(origin, runtime, listener, shutdown_signal()).await
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL only");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
