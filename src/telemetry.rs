//! Structured logs through `tracing`: a filter from `TOCSIN_LOG` (else `RUST_LOG`, else `info`)
//! and text or JSON lines on stderr, redacted (see [`crate::redact`]). Set up once by the binary before anything else runs.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{FilterExt, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Libraries that log what they send and receive at debug and trace level: lettre the whole
/// SMTP transcript (subjects with customer names, bodies with acknowledge links, the AUTH
/// exchange), the HTTP stack request lines and headers (webhook URLs, gateway credentials),
/// rustls the handshake. Whatever the user's filter says, these log at most at `info`: their
/// warnings and errors stay, their transcripts never reach the log.
pub const CAPPED_TARGETS: [&str; 7] =
    ["lettre", "reqwest", "hyper", "hyper_util", "h2", "rustls", "tower"];

/// The cap on [`CAPPED_TARGETS`]; everything else as the user's filter says.
pub fn library_cap() -> Targets {
    CAPPED_TARGETS.iter().fold(Targets::new().with_default(LevelFilter::TRACE), |t, target| {
        t.with_target(*target, LevelFilter::INFO)
    })
}

/// Installs the global subscriber. Safe to call twice (the second call does nothing), which
/// keeps tests that start several servers in one process simple.
pub fn init(format: LogFormat) {
    let filter = std::env::var("TOCSIN_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // Both filters must let an event through: a user's `lettre=trace` cannot lift the cap.
    let filter = filter.and(library_cap());
    // Every line passes through the redactor on its way to stderr: personal data never reaches
    // the log, whichever crate or level wrote it (see `crate::redact::for_log`).
    let layer = tracing_subscriber::fmt::layer().with_writer(crate::redact::LogWriterFactory);
    let _ = match format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(layer.json().flatten_event(true).with_filter(filter))
            .try_init(),
        LogFormat::Text => {
            tracing_subscriber::registry().with(layer.with_filter(filter)).try_init()
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts_are_capped_whatever_the_filter() {
        use tracing::Level;
        let cap = library_cap();
        for target in
            ["lettre::transport::smtp::client::async_connection", "reqwest::connect", "hyper"]
        {
            assert!(!cap.would_enable(target, &Level::DEBUG), "{target}");
            assert!(!cap.would_enable(target, &Level::TRACE), "{target}");
            assert!(cap.would_enable(target, &Level::WARN), "{target}");
        }
        assert!(cap.would_enable("tocsin::delivery", &Level::TRACE));
    }
}
