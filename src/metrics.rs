//! Prometheus metrics, served on `GET /metrics` in the format the scraper asks for
//! ([`Exposition::negotiate`]): the Prometheus text format 0.0.4 by default, OpenMetrics 1.0
//! when the `Accept` header prefers it.
//!
//! Every stage records into the one [`Metrics`] value created at start-up; nothing here blocks
//! (prometheus-client's families use short internal locks and atomics). Every series the
//! configuration makes possible exists from the start at zero ([`Metrics::declare`]), so that
//! `increase()` sees a series' first event and a missing series means a missing daemon.

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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IncidentLabels {
    pub severity: String,
    /// `alert` or `report`.
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabels {
    pub severity: String,
}

/// Buckets of the time-to-acknowledge and time-to-resolve histograms, in seconds: 10 s to a
/// week, at the steps people talk about.
pub const RESPONSE_BUCKETS: [f64; 17] = [
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
    43200.0, 86400.0, 172800.0, 345600.0, 604800.0,
];

fn response_histogram() -> Histogram {
    Histogram::new(RESPONSE_BUCKETS)
}

type ResponseFamily = Family<SeverityLabels, Histogram, fn() -> Histogram>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `success` or `failure`.
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub channel: String,
    /// For attempts: delivered, retryable, permanent, gone, unknown. For final outcomes:
    /// delivered or dead.
    pub outcome: String,
}

/// The two text formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// `text/plain; version=0.0.4`: what `promtool check metrics`, Prometheus' own client
    /// libraries' parsers and most scrapers read; counters carry `_total` in HELP and TYPE too.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`: counter families named without
    /// `_total`, ending in `# EOF`.
    OpenMetrics,
}

impl Exposition {
    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format for an `Accept` header, as Prometheus' `expfmt.NegotiateIncludingOpenMetrics`
    /// chooses: media ranges by descending `q` (ties in the order given), the first that names
    /// OpenMetrics (version 1.0.0, 0.0.1 or none) or `text/plain` (version 0.0.4 or none)
    /// wins; anything else, `*/*` and no header at all get the Prometheus text format.
    pub fn negotiate(accept: Option<&str>) -> Exposition {
        let Some(accept) = accept else { return Exposition::Prometheus };
        let mut ranges: Vec<(f64, &str, Option<&str>)> = accept
            .split(',')
            .filter_map(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next().filter(|m| !m.is_empty())?;
                let (mut q, mut version) = (1.0, None);
                for param in parts {
                    let Some((k, v)) = param.split_once('=') else { continue };
                    let v = v.trim().trim_matches('"');
                    if k.trim().eq_ignore_ascii_case("q") {
                        q = v.parse().unwrap_or(0.0);
                    } else if k.trim().eq_ignore_ascii_case("version") {
                        version = Some(v);
                    }
                }
                Some((q, media, version))
            })
            .filter(|(q, _, _)| *q > 0.0)
            .collect();
        // Stable: equal weights keep the client's order.
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, media, version) in ranges {
            if media.eq_ignore_ascii_case("application/openmetrics-text")
                && matches!(version, None | Some("1.0.0" | "0.0.1"))
            {
                return Exposition::OpenMetrics;
            }
            if media.eq_ignore_ascii_case("text/plain") && matches!(version, None | Some("0.0.4")) {
                return Exposition::Prometheus;
            }
        }
        Exposition::Prometheus
    }
}

/// The `reason` of `tocsin_events_rejected_total` an ingest route can give, by whether the
/// credential was known: [`crate::error::ApiError::code`] of each refusal it can answer.
const REFUSALS_KNOWN_SOURCE: [&str; 8] = [
    "malformed",
    "invalid",
    "forbidden",
    "too_large",
    "unsupported_media_type",
    "timeout",
    "rate_limited",
    "unavailable",
];
const REFUSALS_UNKNOWN_SOURCE: [&str; 5] =
    ["unauthorized", "malformed", "too_large", "unsupported_media_type", "timeout"];

/// Outcomes of one delivery attempt: `delivered`, or the journal's `outcome_label` of the error.
const ATTEMPT_OUTCOMES: [&str; 5] = ["delivered", "retryable", "permanent", "gone", "unknown"];
/// How a notification ends.
const FINAL_OUTCOMES: [crate::outbox::State; 2] =
    [crate::outbox::State::Delivered, crate::outbox::State::Dead];

/// Creates a series at zero. (`get_or_create` hands back a read guard on the family: dropped at
/// once.)
fn create_at_zero<S, M, C>(family: &Family<S, M, C>, labels: &S)
where
    S: Clone + std::hash::Hash + Eq,
    C: prometheus_client::metrics::family::MetricConstructor<M>,
{
    drop(family.get_or_create(labels));
}

pub struct Metrics {
    registry: Registry,
    pub notifications_queued: Family<ChannelLabels, Counter>,
    pub notification_attempts: Family<OutcomeLabels, Counter>,
    pub notification_outcomes: Family<OutcomeLabels, Counter>,
    /// Pending notifications by channel, refreshed by the delivery loop.
    pub queue_depth: Family<ChannelLabels, Gauge>,
    /// Age in seconds of the oldest pending notification (0 when none).
    pub queue_oldest_seconds: Gauge,
    pub incidents_opened: Family<IncidentLabels, Counter>,
    pub incidents_acknowledged: Family<IncidentLabels, Counter>,
    pub incidents_resolved: Family<IncidentLabels, Counter>,
    pub incidents_open: Gauge,
    /// Rule runs that errored or ran out of budget; the event kept its fallback decision.
    pub rule_failures: Family<RuleLabels, Counter>,
    /// Rules of the running set that were disabled (nested too deeply, or panicked).
    pub rules_disabled: Gauge,
    /// Scripts run for events, and scripts whose remembered outcome was used instead.
    pub rule_runs: Counter,
    pub rule_outcomes_reused: Counter,
    pub reloads: Family<ReloadLabels, Counter>,
    /// 1 when the last reload succeeded (or none was tried), 0 when it failed.
    pub reload_last_success: Gauge,
    pub events_accepted: Family<AcceptedLabels, Counter>,
    pub events_rejected: Family<RejectedLabels, Counter>,
    /// Events per committed transaction: how well group commit is batching.
    pub commit_batch_events: Histogram,
    /// Wall time of one commit including fsync.
    pub commit_seconds: Histogram,
    pub commit_failures: Counter,
    /// Ingest requests waiting for the writer right now.
    pub journal_queue_depth: Gauge,
    /// Escalation steps fired by timers (not the first page when an incident opens).
    pub escalation_steps: Counter,
    /// Notice deadlines that passed without the notice marked as sent.
    pub notices_missed: Counter,
    /// Seconds from an incident's first event to its acknowledgement, by severity.
    pub time_to_acknowledge: ResponseFamily,
    /// Seconds from an incident's first event to its resolve, by severity.
    pub time_to_resolve: ResponseFamily,
    /// Notice deadlines not yet reached whose notice is not marked as sent; refreshed with the
    /// queue gauges.
    pub notice_deadlines_pending: Gauge,
    /// 1 while `GET /-/ready` answers 200, else 0; set when metrics are read.
    pub ready: Gauge,
    /// 1 while the store takes writes as far as it knows, 0 after a write failed on a full
    /// disk or a damaged file; set when metrics are read.
    pub store_writable: Gauge,
    /// Connections being served right now.
    pub connections_open: Gauge,
    /// Connections closed at once when they arrived: the cap was reached and no idle
    /// connection could make room.
    pub connections_refused: Counter,
    /// Idle connections closed to make room for a new one (the cap was reached).
    pub connections_evicted: Counter,
    /// Connections closed because they sent no request for `header_read_timeout`.
    pub connections_idle_closed: Counter,
    /// `accept` failures (out of file descriptors and the like).
    pub accept_errors: Counter,
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
    #[expect(
        clippy::too_many_lines,
        reason = "registers every documented series, one statement each"
    )]
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
        let escalation_steps = Counter::default();
        registry.register(
            "escalation_steps",
            "Escalation steps fired because nobody acknowledged in time (or an acknowledgement expired)",
            escalation_steps.clone(),
        );
        let notices_missed = Counter::default();
        registry.register(
            "notices_missed",
            "Notice deadlines that passed without the notice marked as sent",
            notices_missed.clone(),
        );
        let time_to_acknowledge =
            ResponseFamily::new_with_constructor(response_histogram as fn() -> Histogram);
        registry.register(
            "incident_time_to_acknowledge_seconds",
            "Time from an incident's first event to its acknowledgement, by severity",
            time_to_acknowledge.clone(),
        );
        let time_to_resolve =
            ResponseFamily::new_with_constructor(response_histogram as fn() -> Histogram);
        registry.register(
            "incident_time_to_resolve_seconds",
            "Time from an incident's first event to its resolve, by severity",
            time_to_resolve.clone(),
        );
        let notice_deadlines_pending = Gauge::default();
        registry.register(
            "notice_deadlines_pending",
            "Notice deadlines still ahead whose notice is not marked as sent",
            notice_deadlines_pending.clone(),
        );
        let journal_queue_depth = Gauge::default();
        registry.register(
            "journal_queue_depth",
            "Ingest requests waiting for the journal writer",
            journal_queue_depth.clone(),
        );
        let incidents_opened = Family::<IncidentLabels, Counter>::default();
        registry.register(
            "incidents_opened",
            "Incidents opened, by severity and kind",
            incidents_opened.clone(),
        );
        let incidents_acknowledged = Family::<IncidentLabels, Counter>::default();
        registry.register(
            "incidents_acknowledged",
            "Incidents acknowledged, by severity and kind",
            incidents_acknowledged.clone(),
        );
        let incidents_resolved = Family::<IncidentLabels, Counter>::default();
        registry.register(
            "incidents_resolved",
            "Incidents resolved, by severity and kind",
            incidents_resolved.clone(),
        );
        let incidents_open = Gauge::default();
        registry.register(
            "incidents_open",
            "Incidents triggered or acknowledged right now",
            incidents_open.clone(),
        );
        let rule_failures = Family::<RuleLabels, Counter>::default();
        registry.register(
            "rule_failures",
            "Rule runs that failed or ran out of budget (the event kept its fallback decision)",
            rule_failures.clone(),
        );
        let rules_disabled = Gauge::default();
        registry.register(
            "rules_disabled",
            "Rules of the running set disabled after a failure that would repeat (nested too deeply, or a panic); a reload enables them again",
            rules_disabled.clone(),
        );
        let rule_runs = Counter::default();
        registry.register("rule_runs", "Rule scripts run for events", rule_runs.clone());
        let rule_outcomes_reused = Counter::default();
        registry.register(
            "rule_outcomes_reused",
            "Rule scripts not run because their remembered outcome for the same values was used (README: Rules)",
            rule_outcomes_reused.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register("reloads", "Config and rule reloads, by result", reloads.clone());
        for result in ["success", "failure"] {
            create_at_zero(&reloads, &ReloadLabels { result: result.into() });
        }
        let reload_last_success = Gauge::default();
        reload_last_success.set(1);
        registry.register(
            "reload_last_success",
            "1 if the last reload succeeded (or none was tried), 0 if it failed and the previous rules stay in force",
            reload_last_success.clone(),
        );
        let notifications_queued = Family::<ChannelLabels, Counter>::default();
        registry.register(
            "notifications_queued",
            "Notifications written to the outbox, by channel",
            notifications_queued.clone(),
        );
        let notification_attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "notification_attempts",
            "Delivery attempts by channel and outcome (delivered, retryable, permanent, gone, unknown)",
            notification_attempts.clone(),
        );
        let notification_outcomes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "notification_outcomes",
            "Notifications that ended, by channel and outcome (delivered or dead)",
            notification_outcomes.clone(),
        );
        let queue_depth = Family::<ChannelLabels, Gauge>::default();
        registry.register(
            "notification_queue_depth",
            "Pending notifications by channel",
            queue_depth.clone(),
        );
        let queue_oldest_seconds = Gauge::default();
        registry.register(
            "notification_queue_oldest_seconds",
            "Age of the oldest pending notification",
            queue_oldest_seconds.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 while GET /-/ready answers 200 (store writable, journal running, not shutting down), else 0",
            ready.clone(),
        );
        let store_writable = Gauge::default();
        registry.register(
            "store_writable",
            "1 while the store takes writes, 0 after a write failed on a full disk or a damaged file",
            store_writable.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections being served",
            connections_open.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections closed on arrival: at the connection cap with no idle connection to close",
            connections_refused.clone(),
        );
        let connections_evicted = Counter::default();
        registry.register(
            "connections_evicted",
            "Idle connections closed to make room for a new one at the connection cap",
            connections_evicted.clone(),
        );
        let connections_idle_closed = Counter::default();
        registry.register(
            "connections_idle_closed",
            "Connections closed because no request arrived within header_read_timeout",
            connections_idle_closed.clone(),
        );
        let accept_errors = Counter::default();
        registry.register(
            "accept_errors",
            "Failures to accept a connection (out of file descriptors and the like)",
            accept_errors.clone(),
        );
        for channel in crate::notify::Channel::ALL {
            let channel = channel.as_str().to_owned();
            create_at_zero(&notifications_queued, &ChannelLabels { channel: channel.clone() });
            create_at_zero(&queue_depth, &ChannelLabels { channel: channel.clone() });
            for outcome in ATTEMPT_OUTCOMES {
                let labels = OutcomeLabels { channel: channel.clone(), outcome: outcome.into() };
                create_at_zero(&notification_attempts, &labels);
            }
            for state in FINAL_OUTCOMES {
                let labels =
                    OutcomeLabels { channel: channel.clone(), outcome: state.as_str().into() };
                create_at_zero(&notification_outcomes, &labels);
            }
        }
        Metrics {
            registry,
            ready,
            store_writable,
            connections_open,
            connections_refused,
            connections_evicted,
            connections_idle_closed,
            accept_errors,
            notifications_queued,
            notification_attempts,
            notification_outcomes,
            queue_depth,
            queue_oldest_seconds,
            incidents_opened,
            incidents_acknowledged,
            incidents_resolved,
            incidents_open,
            rule_failures,
            rules_disabled,
            rule_runs,
            rule_outcomes_reused,
            reloads,
            reload_last_success,
            events_accepted,
            events_rejected,
            commit_batch_events,
            commit_seconds,
            commit_failures,
            journal_queue_depth,
            escalation_steps,
            notices_missed,
            time_to_acknowledge,
            time_to_resolve,
            notice_deadlines_pending,
        }
    }

    /// Creates, at zero, every series that `config` and the loaded rules make possible: events
    /// accepted and refused per source, incidents and response times per severity and kind,
    /// failures per rule. Called at start and after every reload; series of a source, severity
    /// or rule that a reload removed stay (a counter must not vanish while Prometheus scrapes).
    pub fn declare(&self, config: &crate::config::Config, rules: &[String]) {
        use crate::config::Permission;
        use crate::event::Format;
        let accepted = |source: &str, format: Format| {
            create_at_zero(
                &self.events_accepted,
                &AcceptedLabels { source: source.to_owned(), format: format.as_str().to_owned() },
            );
        };
        for source in &config.sources {
            let mut formats = Vec::new();
            if source.allow.contains(&Permission::Alerts) {
                formats.extend([Format::AlertmanagerV2, Format::AlertmanagerWebhook]);
                if source.routing_key.is_some() {
                    formats.push(Format::Pagerduty);
                }
            }
            if source.allow.contains(&Permission::Reports) {
                formats.push(Format::Report);
            }
            if source.allow.contains(&Permission::Events) {
                formats.push(Format::Canonical);
            }
            for format in formats {
                accepted(&source.name, format);
            }
            for reason in REFUSALS_KNOWN_SOURCE {
                create_at_zero(
                    &self.events_rejected,
                    &RejectedLabels { source: source.name.clone(), reason: reason.into() },
                );
            }
        }
        accepted(crate::declaration::SOURCE, Format::Declaration);
        for reason in REFUSALS_UNKNOWN_SOURCE {
            create_at_zero(
                &self.events_rejected,
                &RejectedLabels { source: "unknown".into(), reason: reason.into() },
            );
        }
        let kinds = [
            crate::event::Kind::Alert,
            crate::event::Kind::Report,
            crate::event::Kind::Declaration,
        ];
        for threshold in &config.triage.severities {
            let severity = SeverityLabels { severity: threshold.name.clone() };
            create_at_zero(&self.time_to_acknowledge, &severity);
            create_at_zero(&self.time_to_resolve, &severity);
            for kind in kinds {
                let labels =
                    IncidentLabels { severity: threshold.name.clone(), kind: kind.as_str().into() };
                create_at_zero(&self.incidents_opened, &labels);
                create_at_zero(&self.incidents_acknowledged, &labels);
                create_at_zero(&self.incidents_resolved, &labels);
            }
        }
        for rule in rules {
            create_at_zero(&self.rule_failures, &RuleLabels { rule: rule.clone() });
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

    pub fn incident_opened(&self, incident: &crate::incident::Incident) {
        self.incidents_opened.get_or_create(&incident_labels(incident)).inc();
    }

    pub fn incident_acted(
        &self,
        incident: &crate::incident::Incident,
        action: crate::journal::PersonAction,
    ) {
        let (family, times, stamp) = match action {
            crate::journal::PersonAction::Acknowledge => {
                (&self.incidents_acknowledged, &self.time_to_acknowledge, &incident.acknowledged)
            }
            crate::journal::PersonAction::Resolve => {
                (&self.incidents_resolved, &self.time_to_resolve, &incident.resolved)
            }
        };
        family.get_or_create(&incident_labels(incident)).inc();
        // Drills rehearse; their response times are not the team's real ones.
        if let Some(stamp) = stamp
            && !incident.drill
        {
            let seconds = stamp.at.duration_since(incident.first_seen).as_secs_f64().max(0.0);
            times
                .get_or_create(&SeverityLabels { severity: incident.decision.severity.clone() })
                .observe(seconds);
        }
    }

    pub fn notification_queued(&self, channel: crate::notify::Channel) {
        self.notifications_queued
            .get_or_create(&ChannelLabels { channel: channel.as_str().into() })
            .inc();
    }

    pub fn notification_attempt(&self, channel: crate::notify::Channel, outcome: &str) {
        self.notification_attempts
            .get_or_create(&OutcomeLabels {
                channel: channel.as_str().into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn notification_outcome(&self, channel: crate::notify::Channel, outcome: &str) {
        self.notification_outcomes
            .get_or_create(&OutcomeLabels {
                channel: channel.as_str().into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn rule_failed(&self, failure: &crate::rules::RuleFailure) {
        self.rule_failures.get_or_create(&RuleLabels { rule: failure.rule.clone() }).inc();
        if failure.disabled {
            self.rules_disabled.inc();
        }
    }

    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&ReloadLabels { result: result.into() }).inc();
        self.reload_last_success.set(i64::from(ok));
        if ok {
            // A new rule set: nothing in it is disabled yet.
            self.rules_disabled.set(0);
        }
    }

    /// Every metric in `format`.
    pub fn encode(&self, format: Exposition) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = match format {
            Exposition::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
            Exposition::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
        };
        out
    }
}

fn incident_labels(incident: &crate::incident::Incident) -> IncidentLabels {
    IncidentLabels {
        severity: incident.decision.severity.clone(),
        kind: incident.kind.as_str().to_owned(),
    }
}
