//! The canonical `Event`: what every ingest format normalizes into, what the journal stores,
//! and what every later stage (incidents, rules, notifications) reads.
//!
//! Sits between `normalize` (wire formats in) and `store` (journal out). Nothing here does I/O.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Which wire format an event arrived in. Kept on the event so that operators and rules can
/// tell a PagerDuty trigger from a Prometheus alert with the same labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `POST /api/v2/alerts`: the Alertmanager v2 alert array that Prometheus sends.
    AlertmanagerV2,
    /// `POST /v2/enqueue`: PagerDuty Events API v2.
    Pagerduty,
    /// `POST /api/v1/alertmanager`: an Alertmanager webhook (version 4) notification.
    AlertmanagerWebhook,
    /// `POST /api/v1/reports`: a customer report from a support desk.
    Report,
    /// `POST /api/v1/events`: Tocsin's own canonical event.
    Canonical,
    /// `POST /api/v1/incidents`: a person declaring an incident (see [`crate::declaration`]).
    Declaration,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::AlertmanagerV2 => "alertmanager_v2",
            Format::Pagerduty => "pagerduty",
            Format::AlertmanagerWebhook => "alertmanager_webhook",
            Format::Report => "report",
            Format::Canonical => "canonical",
            Format::Declaration => "declaration",
        }
    }
}

/// What the event is about. Alerts come from machines; reports from people at a support desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Alert,
    Report,
    /// A person's declaration of an incident, with their risk assessment.
    Declaration,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Alert => "alert",
            Kind::Report => "report",
            Kind::Declaration => "declaration",
        }
    }
}

/// What the sender asks for, in PagerDuty's words: an Alertmanager alert that is firing is a
/// trigger, one whose `endsAt` has passed is a resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Trigger,
    Acknowledge,
    Resolve,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Trigger => "trigger",
            Action::Acknowledge => "acknowledge",
            Action::Resolve => "resolve",
        }
    }
}

/// A link the sender attached (PagerDuty `links`, Alertmanager `generatorURL`, a ticket URL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub href: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// The customer a report is about. Every field is optional: support desks know different things.
/// This is personal data: later stages redact it according to the config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// One accepted event, normalized from whatever format it arrived in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// UUID v7: unique, and ordered by arrival so the journal lists newest first cheaply.
    pub id: Uuid,
    /// When Tocsin accepted it (the server's clock, not the sender's).
    pub received_at: Timestamp,
    /// The configured source that sent it (from its credential, never from the body).
    pub source: String,
    pub format: Format,
    pub kind: Kind,
    pub action: Action,
    /// Events with the same source and dedup key belong to the same incident.
    pub dedup_key: String,
    /// The Alertmanager fingerprint, for alerts that have labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// One line for humans: PagerDuty `summary`, the `summary` annotation, a report's summary.
    pub summary: String,
    /// The sender's own severity word (`critical`, `warning`, …), lower-cased; rules map it to a
    /// base score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// The service or product it concerns, when the sender says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// When the problem started according to the sender (`startsAt`, PagerDuty `timestamp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Timestamp>,
    /// When the problem ended according to the sender (`endsAt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<Customer>,
    /// A report the support desk has verified (always false for machine alerts).
    #[serde(default)]
    pub verified: bool,
    /// A rehearsal, not a real problem (canonical and report `drill: true`, the Alertmanager
    /// label `tocsin_drill="true"`, PagerDuty `payload.custom_details.tocsin_drill: true`).
    /// Its incident is a drill: labelled as one, routed to `drills` recipients only, and left
    /// out of response-time figures.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drill: bool,
    /// A declared incident's impact assessment (declarations only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assessment: Option<Assessment>,
    /// Everything else the format carries that has no field above (PagerDuty `custom_details`,
    /// `component`, a report's description, …). Free-form JSON, kept as sent.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// How many people or customers a declarer expects to be affected: a number when they know
/// one, else their words (`"all EU customers"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reach {
    Count(u64),
    Text(String),
}

/// The impact assessment a person gives when declaring an incident, kept on its event so
/// that the rules (as `event.assessment`) and later readers see what the declarer saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    /// The user who declared it (their name from `users`).
    pub declared_by: String,
    pub description: String,
    /// The services the declarer says are affected.
    #[serde(default)]
    pub services: Vec<String>,
    pub customer_impact: bool,
    pub data_sensitivity: crate::rules::Sensitivity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_reach: Option<Reach>,
    /// The severity the declarer chose (a threshold name), if any: a floor for the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}
