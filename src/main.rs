//! The `tocsin` binary: command-line parsing and process edges (signals, exit codes).
//! Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tocsin::config::{self, ConfigOrigin, TokenFallback};

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
    /// Validate the config; print every error with its location; exit 0 (valid) or 1.
    Check {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Check { config } => check(config),
    }
}

fn describe(origin: &ConfigOrigin) -> String {
    match origin {
        ConfigOrigin::File(path) => path.display().to_string(),
        ConfigOrigin::Embedded => "the embedded default config".to_string(),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn check(path: Option<PathBuf>) -> ExitCode {
    let origin = config::resolve_origin(path.as_deref());
    match config::load(&origin, &env, TokenFallback::Placeholder) {
        Ok(_) => {
            println!("{}: OK", describe(&origin));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn serve(path: Option<PathBuf>) -> ExitCode {
    let origin = config::resolve_origin(path.as_deref());
    let config = match config::load(&origin, &env, TokenFallback::Generate) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    tocsin::telemetry::init(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(origin, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tocsin: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(origin: ConfigOrigin, config: config::Config) -> anyhow::Result<()> {
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
    tracing::info!(%addr, data_dir = %config.data_dir.display(), config = %describe(&origin), "started");
    tocsin::server::run(config, listener, shutdown_signal()).await
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
