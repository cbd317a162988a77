//! Prometheus metrics, served as text on `GET /metrics`.
//!
//! Every stage records into the one [`Metrics`] value created at start-up; nothing here blocks
//! (prometheus-client's families use short internal locks and atomics).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AcceptedLabels {
    pub source: String,
    pub format: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectedLabels {
    /// The source when the credential was good, else `unknown`.
    pub source: String,
    /// The error code of the answer (`malformed`, `unauthorized`, `rate_limited`, …).
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    pub events_accepted: Family<AcceptedLabels, Counter>,
    pub events_rejected: Family<RejectedLabels, Counter>,
    /// Events per committed transaction: how well group commit is batching.
    pub commit_batch_events: Histogram,
    /// Wall time of one commit including fsync.
    pub commit_seconds: Histogram,
    pub commit_failures: Counter,
    /// Ingest requests waiting for the writer right now.
    pub journal_queue_depth: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tocsin");
        let events_accepted = Family::<AcceptedLabels, Counter>::default();
        registry.register(
            "events_accepted",
            "Events stored durably, by source and ingest format",
            events_accepted.clone(),
        );
        let events_rejected = Family::<RejectedLabels, Counter>::default();
        registry.register(
            "events_rejected",
            "Ingest requests or batch items refused, by source and reason",
            events_rejected.clone(),
        );
        let commit_batch_events = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register(
            "journal_commit_batch_events",
            "Events committed per journal transaction (group commit)",
            commit_batch_events.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "journal_commit_seconds",
            "Time to commit and fsync one journal transaction",
            commit_seconds.clone(),
        );
        let commit_failures = Counter::default();
        registry.register(
            "journal_commit_failures",
            "Journal transactions that failed; their requests were answered 503",
            commit_failures.clone(),
        );
        let journal_queue_depth = Gauge::default();
        registry.register(
            "journal_queue_depth",
            "Ingest requests waiting for the journal writer",
            journal_queue_depth.clone(),
        );
        Metrics {
            registry,
            events_accepted,
            events_rejected,
            commit_batch_events,
            commit_seconds,
            commit_failures,
            journal_queue_depth,
        }
    }

    pub fn accepted(&self, source: &str, format: &str, n: u64) {
        self.events_accepted
            .get_or_create(&AcceptedLabels { source: source.to_owned(), format: format.to_owned() })
            .inc_by(n);
    }

    pub fn rejected(&self, source: &str, reason: &str, n: u64) {
        self.events_rejected
            .get_or_create(&RejectedLabels { source: source.to_owned(), reason: reason.to_owned() })
            .inc_by(n);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
