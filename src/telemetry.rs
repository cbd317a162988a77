//! Structured logs through `tracing`: a filter from `TOCSIN_LOG` (else `RUST_LOG`, else `info`)
//! and text or JSON lines on stderr, redacted (see [`crate::redact`]). Set up once by the binary before anything else runs.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Safe to call twice (the second call does nothing), which
/// keeps tests that start several servers in one process simple.
pub fn init(format: LogFormat) {
    let filter = std::env::var("TOCSIN_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // Every line passes through the redactor on its way to stderr: personal data never reaches
    // the log, whichever crate or level wrote it (see `crate::redact::for_log`).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::redact::LogWriterFactory);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
