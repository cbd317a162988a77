//! What a template sees: the [`RenderContext`] a caller passes, turned into the variables
//! documented in `rules/templates/README.md`.
//!
//! The variables are built from one serializable view ([`View`]) so that the names templates
//! use, the names `check_variables` accepts ([`INCIDENT_FIELDS`], [`ROOT_NAMES`]) and the
//! README cannot drift apart silently: a unit test compares the lists with the serialized view.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::Serialize;

use crate::incident::Incident;
use crate::notify::Channel;

/// Why a message is being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// An incident was opened.
    New,
    /// Something changed on an open incident (severity, acknowledgement).
    Update,
    Resolved,
    /// A reminder about the incident (an escalation step's reason, a notice deadline, an
    /// overdue action item, a status update). The incident may be in any state, resolved
    /// included: templates say which, never assume it is open.
    Reminder,
    /// Several incidents in one message ("3 new incidents"); they are in `bundle`.
    Bundle,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 5] = [
        NoticeKind::New,
        NoticeKind::Update,
        NoticeKind::Resolved,
        NoticeKind::Reminder,
        NoticeKind::Bundle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::New => "new",
            NoticeKind::Update => "update",
            NoticeKind::Resolved => "resolved",
            NoticeKind::Reminder => "reminder",
            NoticeKind::Bundle => "bundle",
        }
    }
}

/// Everything one message is rendered from. Built by the delivery stage for one notification.
#[derive(Debug, Clone)]
pub struct RenderContext<'a> {
    /// The incident the message is about. For a bundle, its lead (most severe) incident: its
    /// severity chooses the template.
    pub incident: &'a Incident,
    pub kind: NoticeKind,
    /// For [`NoticeKind::Bundle`]: every incident in the message, the lead included. Empty
    /// otherwise.
    pub bundle: &'a [Incident],
    /// A one-click acknowledge link for this recipient, when the channel may carry one.
    pub ack_url: Option<String>,
    /// The incident's page (or, for a bundle, the incident list) in the dashboard.
    pub dashboard_url: Option<String>,
    /// How to address the recipient ("Ana"), when known.
    pub recipient_name: Option<String>,
    /// An exercise: every shipped template marks the message as a drill.
    pub drill: bool,
    /// The recipient's time zone, for deadlines in their local time (`None`: UTC).
    pub zone: Option<jiff::tz::TimeZone>,
}

impl<'a> RenderContext<'a> {
    /// A context for `kind` about `incident` with no links, no recipient name and no bundle.
    pub fn new(incident: &'a Incident, kind: NoticeKind) -> RenderContext<'a> {
        RenderContext {
            incident,
            kind,
            bundle: &[],
            ack_url: None,
            dashboard_url: None,
            recipient_name: None,
            drill: false,
            zone: None,
        }
    }
}

/// Top-level template variables. `View`'s fields, in the same order.
pub(crate) const ROOT_NAMES: [&str; 9] = [
    "incident",
    "kind",
    "bundle",
    "ack_url",
    "dashboard_url",
    "recipient_name",
    "drill",
    "audience",
    "channel",
];

/// The attributes of `incident` (and of every item of `bundle`). `IncidentFields`' fields.
pub(crate) const INCIDENT_FIELDS: [&str; 28] = [
    "id",
    "kind",
    "status",
    "severity",
    "score",
    "summary",
    "service",
    "scope",
    "source",
    "dedup_key",
    "labels",
    "tags",
    "roles",
    "reasons",
    "sensitivity",
    "customer_facing",
    "policy",
    "first_seen",
    "last_seen",
    "detected_at",
    "count",
    "acknowledged_by",
    "acknowledged_at",
    "resolved_by",
    "resolved_at",
    "links",
    "runbook_url",
    "notices",
];

/// The variables of one render. Optional values are `none` in templates (and print as nothing).
#[derive(Serialize)]
pub(crate) struct View<'a> {
    incident: IncidentFields<'a>,
    kind: &'static str,
    bundle: Vec<IncidentFields<'a>>,
    ack_url: Option<&'a str>,
    dashboard_url: Option<&'a str>,
    recipient_name: Option<&'a str>,
    drill: bool,
    audience: &'a str,
    channel: &'static str,
}

impl<'a> View<'a> {
    pub(crate) fn new(ctx: &'a RenderContext<'a>, channel: Channel, audience: &'a str) -> View<'a> {
        View {
            incident: IncidentFields::new(ctx.incident, ctx.zone.as_ref()),
            kind: ctx.kind.as_str(),
            bundle: ctx.bundle.iter().map(|i| IncidentFields::new(i, ctx.zone.as_ref())).collect(),
            ack_url: ctx.ack_url.as_deref(),
            dashboard_url: ctx.dashboard_url.as_deref(),
            recipient_name: ctx.recipient_name.as_deref(),
            drill: ctx.drill,
            audience,
            channel: channel.as_str(),
        }
    }
}

#[derive(Serialize)]
struct IncidentFields<'a> {
    id: u64,
    /// `alert` or `report`.
    kind: &'static str,
    status: &'static str,
    severity: &'a str,
    score: i64,
    summary: &'a str,
    service: Option<&'a str>,
    /// The affected services (the alerted one and everything downstream of it).
    scope: &'a [String],
    source: &'a str,
    dedup_key: &'a str,
    labels: &'a BTreeMap<String, String>,
    tags: &'a BTreeSet<String>,
    roles: &'a BTreeSet<String>,
    reasons: &'a [String],
    sensitivity: &'static str,
    customer_facing: bool,
    policy: Option<&'a str>,
    first_seen: String,
    last_seen: String,
    detected_at: Option<String>,
    count: u64,
    acknowledged_by: Option<&'a str>,
    acknowledged_at: Option<String>,
    resolved_by: Option<&'a str>,
    resolved_at: Option<String>,
    /// Runbook, dashboard and other links from its events.
    links: &'a [crate::incident::IncidentLink],
    /// The first runbook link, for texts too short for the list.
    runbook_url: Option<&'a str>,
    /// Legal and contractual notices owed, with deadlines in UTC and the reader's zone.
    notices: Vec<NoticeFields<'a>>,
}

/// One notice as templates see it.
#[derive(Serialize)]
struct NoticeFields<'a> {
    name: &'a str,
    mandatory: bool,
    /// The deadline, RFC 3339 in UTC.
    due_at: String,
    /// The deadline in the recipient's zone: `2026-03-05 10:00 CET`.
    due_local: String,
    /// That zone's name (`Europe/Berlin`, `UTC`).
    zone: String,
    aware_at: String,
    sent: bool,
    missed: bool,
}

impl<'a> NoticeFields<'a> {
    fn new(n: &'a crate::escalation::Notice, zone: &jiff::tz::TimeZone) -> NoticeFields<'a> {
        NoticeFields {
            name: &n.name,
            mandatory: n.mandatory,
            due_at: time(n.due_at),
            due_local: n
                .due_at
                .to_zoned_datetime(zone.clone())
                .strftime("%Y-%m-%d %H:%M %Z")
                .to_string(),
            zone: zone.iana_name().unwrap_or("UTC").to_string(),
            aware_at: time(n.aware_at),
            sent: n.sent.is_some(),
            missed: n.missed,
        }
    }
}

impl<'a> IncidentFields<'a> {
    fn new(incident: &'a Incident, zone: Option<&jiff::tz::TimeZone>) -> IncidentFields<'a> {
        let utc = jiff::tz::TimeZone::UTC;
        let zone = zone.unwrap_or(&utc);
        let decision = &incident.decision;
        IncidentFields {
            id: incident.id,
            kind: incident.kind.as_str(),
            status: incident.status.as_str(),
            severity: &decision.severity,
            score: decision.score,
            summary: &incident.summary,
            service: incident.service.as_deref(),
            scope: &incident.scope,
            source: &incident.source,
            dedup_key: &incident.dedup_key,
            labels: &incident.labels,
            tags: &decision.tags,
            roles: &decision.roles,
            reasons: &decision.reasons,
            sensitivity: decision.sensitivity.as_str(),
            customer_facing: decision.customer_facing,
            policy: decision.policy.as_deref(),
            first_seen: time(incident.first_seen),
            last_seen: time(incident.last_seen),
            detected_at: incident.detected_at.map(time),
            count: incident.count,
            acknowledged_by: incident.acknowledged.as_ref().map(|s| s.by.as_str()),
            acknowledged_at: incident.acknowledged.as_ref().map(|s| time(s.at)),
            resolved_by: incident.resolved.as_ref().map(|s| s.by.as_str()),
            resolved_at: incident.resolved.as_ref().map(|s| time(s.at)),
            links: &incident.links,
            runbook_url: incident
                .links
                .iter()
                .find(|l| l.kind == "runbook")
                .map(|l| l.href.as_str()),
            notices: incident.notices.iter().map(|n| NoticeFields::new(n, zone)).collect(),
        }
    }
}

/// RFC 3339 in UTC to the second: unambiguous for every audience (legal deadlines are counted
/// from these), and the same text in the webhook payload.
pub(crate) fn time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Sample incidents for `check_variables` and the tests: one with every optional value set, one
/// with none, so a template is tried against both shapes it will meet.
pub(crate) mod sample {
    use std::collections::{BTreeMap, BTreeSet};

    use jiff::Timestamp;
    use uuid::Uuid;

    use super::NoticeKind;
    use crate::event::Kind;
    use crate::incident::{Incident, Stamp, Status};
    use crate::rules::{Decision, Sensitivity};

    fn at(text: &str) -> Timestamp {
        text.parse().expect("sample timestamps are valid")
    }

    /// An alert with every optional field set, in the state `kind` implies.
    pub(crate) fn full(kind: NoticeKind, id: u64) -> Incident {
        let mut incident = Incident {
            id,
            source: "prometheus".into(),
            dedup_key: format!("checkout-errors-{id}"),
            kind: Kind::Alert,
            status: Status::Triggered,
            summary: "Checkout error rate above 5% for 10 minutes".into(),
            service: Some("checkout".into()),
            labels: BTreeMap::from([
                ("alertname".to_owned(), "CheckoutErrorRate".to_owned()),
                ("team".to_owned(), "payments".to_owned()),
                ("instance".to_owned(), "checkout-7f9c:8080".to_owned()),
            ]),
            scope: vec!["checkout".into(), "storefront".into()],
            decision: Decision {
                score: 95,
                base_score: 80,
                severity: "sev1".into(),
                policy: Some("payments".into()),
                tags: BTreeSet::from(["payments".to_owned(), "pci".to_owned()]),
                sensitivity: Sensitivity::Personal,
                customer_facing: true,
                roles: BTreeSet::from(["legal_liaison".to_owned()]),
                suppressed: None,
                rules_fired: vec!["10-service-weight.rhai".into()],
                reasons: vec!["10-service-weight.rhai: +15 checkout is tier 1".into()],
            },
            first_seen: at("2026-11-27T03:09:00Z"),
            last_seen: at("2026-11-27T03:19:30Z"),
            detected_at: Some(at("2026-11-27T03:05:00Z")),
            count: 7,
            opened_by: Uuid::nil(),
            acknowledged: None,
            resolved: None,
            roles: BTreeMap::new(),
            escalation: None,
            notices: Vec::new(),
            review: None,
            awareness: None,
            expiry: None,
            held_by: None,
            links: vec![
                crate::incident::IncidentLink {
                    kind: "runbook".into(),
                    href: "https://wiki.example.com/runbooks/checkout-errors".into(),
                    text: None,
                },
                crate::incident::IncidentLink {
                    kind: "dashboard".into(),
                    href: "https://grafana.example.com/d/checkout".into(),
                    text: Some("Checkout overview".into()),
                },
            ],
            policy_choice: None,
            drill: false,
        };
        incident.notices.push(crate::escalation::Notice {
            name: "GDPR Art. 33 supervisory authority notice".into(),
            mandatory: true,
            aware_at: at("2026-11-27T03:09:00Z"),
            due_at: at("2026-11-30T03:09:00Z"),
            reminders: Vec::new(),
            sent: None,
            reference: None,
            missed: false,
        });
        match kind {
            NoticeKind::Update => {
                incident.status = Status::Acknowledged;
                incident.acknowledged =
                    Some(Stamp { by: "user:ana".into(), at: at("2026-11-27T03:12:00Z") });
            }
            NoticeKind::Resolved => {
                incident.status = Status::Resolved;
                incident.acknowledged =
                    Some(Stamp { by: "user:ana".into(), at: at("2026-11-27T03:12:00Z") });
                incident.resolved =
                    Some(Stamp { by: "source:prometheus".into(), at: at("2026-11-27T03:40:00Z") });
            }
            NoticeKind::New | NoticeKind::Reminder | NoticeKind::Bundle => {}
        }
        incident
    }

    /// A customer report with no optional field set.
    pub(crate) fn sparse(kind: NoticeKind, id: u64) -> Incident {
        let mut incident = full(kind, id);
        incident.kind = Kind::Report;
        incident.source = "support".into();
        incident.summary = "Customer cannot log in".into();
        incident.service = None;
        incident.labels.clear();
        incident.detected_at = None;
        incident.links.clear();
        incident.notices.clear();
        incident.decision = Decision {
            score: 30,
            base_score: 30,
            severity: "sev4".into(),
            policy: None,
            tags: BTreeSet::new(),
            sensitivity: Sensitivity::None,
            customer_facing: false,
            roles: BTreeSet::new(),
            suppressed: None,
            rules_fired: Vec::new(),
            reasons: Vec::new(),
        };
        incident.count = 1;
        incident
    }
}
