//! Incidents: events with the same source and dedup key, grouped while the problem is open.
//!
//! Sits after the rules in the flow: the journal writer calls [`apply`] for every committed
//! event, with the decision the rules made, and [`acknowledge`] / [`resolve`] for people's
//! actions. Everything here is pure: the writer loads the incident, applies, and stores the
//! result and its timeline entries in the same transaction as the event.
//!
//! Semantics follow PagerDuty's: a trigger joins the open incident with the same key or opens a
//! new one (so a trigger after a resolve opens a new incident); repeated triggers count
//! occurrences without re-notifying; acknowledge and resolve for a key with no open incident
//! are stored as events and otherwise ignored.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{Action, Event, Format, Kind};
use crate::rules::{Decision, Evaluation, IncidentView};

pub type IncidentId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Triggered,
    Acknowledged,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Triggered => "triggered",
            Status::Acknowledged => "acknowledged",
            Status::Resolved => "resolved",
        }
    }

    pub fn is_open(self) -> bool {
        self != Status::Resolved
    }
}

/// Who did something and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub by: String,
    pub at: Timestamp,
}

/// A recorded awareness time: when the organization became aware of the incident (a report
/// that sat in a mailbox, a vendor's advisory read days later), who recorded it and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Awareness {
    pub at: Timestamp,
    pub by: String,
    pub recorded_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: IncidentId,
    pub source: String,
    pub dedup_key: String,
    pub kind: Kind,
    pub status: Status,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The services this incident affects: the ones its opening event named and every service
    /// that depends on them in the catalog (see [`crate::catalog::Catalog::scope`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    /// The rules' latest decision on a trigger of this incident.
    pub decision: Decision,
    /// When the first event arrived (the organization became aware).
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// When the problem started according to the first sender (`startsAt`), for MTTD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_at: Option<Timestamp>,
    /// Trigger events that joined this incident, the first included.
    pub count: u64,
    /// The event that opened it.
    pub opened_by: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<Stamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Stamp>,
    /// Who holds each incident role (role → person id): from the roles and rotations when it
    /// opened, then as people change them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<crate::escalation::EscalationState>,
    /// Legal and contractual notices owed, with their deadlines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<crate::escalation::Notice>,
    /// The after-action review, once the incident resolved at a reviewed severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<crate::review::Review>,
    /// When the organization became aware, as a person recorded it (otherwise the first
    /// event's arrival, `first_seen`, is the awareness time notices count from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awareness: Option<Awareness>,
    /// A rehearsal: opened by a drill event (see `Event::drill`). Labelled as a drill in every
    /// message, notified to the `drills` recipients instead of the policy's, and to be left
    /// out of response-time figures (MTTA/MTTR). A real event joining it makes it real.
    #[serde(default)]
    pub drill: bool,
    /// When the sender's `endsAt` says the alert stops holding unless refreshed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<crate::escalation::Expiry>,
    /// The maintenance window holding its pages back until it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<crate::escalation::Held>,
    /// Runbook, dashboard and other links its events carried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<IncidentLink>,
    /// Which escalation policy it follows and what chose it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_choice: Option<crate::policy::Choice>,
}

/// A link for the people working an incident: its runbook, a dashboard, the sender's page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentLink {
    /// `runbook`, `dashboard`, `source` (the sender's page for the alert, Prometheus'
    /// `generatorURL`) or `link`.
    pub kind: String,
    pub href: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Most links kept per incident.
pub const MAX_LINKS: usize = 10;
/// Longest link kept, in bytes.
const MAX_LINK_BYTES: usize = 2048;

/// The links an event carries: the annotations Prometheus rules conventionally use
/// (`runbook_url`, `dashboard_url`, also `runbook`, `dashboard`, `grafana_url`) and its `links`
/// (PagerDuty `links`, canonical `links`, Alertmanager's `generatorURL`), each classified by
/// its text. Only `http` and `https` links: they end up as `href`s on the dashboard.
pub fn links_of(event: &Event) -> Vec<IncidentLink> {
    let mut out: Vec<IncidentLink> = Vec::new();
    let mut add = |kind: &str, href: &str, text: Option<&str>| {
        if let Some(href) = web_href(href)
            && out.len() < MAX_LINKS
            && !out.iter().any(|l| l.href == href)
        {
            out.push(IncidentLink {
                kind: kind.to_string(),
                href: href.to_string(),
                text: text.map(|t| t.chars().take(200).collect()),
            });
        }
    };
    for (key, kind) in LINK_ANNOTATIONS {
        if let Some(href) = event.annotations.get(key) {
            add(kind, href, None);
        }
    }
    let alertmanager = matches!(event.format, Format::AlertmanagerV2 | Format::AlertmanagerWebhook);
    for link in &event.links {
        let said = link.text.as_deref().unwrap_or_default().to_lowercase();
        let kind = if said.contains("runbook") || said.contains("playbook") {
            "runbook"
        } else if said.contains("dashboard") || said.contains("grafana") {
            "dashboard"
        } else if link.text.is_none() && alertmanager {
            "source"
        } else {
            "link"
        };
        add(kind, &link.href, link.text.as_deref());
    }
    out
}

/// The annotations Prometheus rules put links in, and the kind of link each holds.
const LINK_ANNOTATIONS: [(&str, &str); 5] = [
    ("runbook_url", "runbook"),
    ("runbook", "runbook"),
    ("dashboard_url", "dashboard"),
    ("dashboard", "dashboard"),
    ("grafana_url", "dashboard"),
];

/// The address a link is kept under, if it is kept at all: `http` and `https` only (they end up
/// as `href`s on the dashboard), at most [`MAX_LINK_BYTES`].
fn web_href(href: &str) -> Option<&str> {
    let href = href.trim();
    let web = href.len() <= MAX_LINK_BYTES
        && ["https://", "http://"].iter().any(|p| {
            href.get(..p.len()).is_some_and(|s| s.eq_ignore_ascii_case(p)) && href.len() > p.len()
        });
    web.then_some(href)
}

/// A link address's digest, for [`Summary`]'s cheap check of what an incident lacks.
fn href_hash(href: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    href.hash(&mut h);
    h.finish()
}

/// Adds the links of a later event that the incident does not have yet.
fn merge_links(links: &mut Vec<IncidentLink>, event: &Event) {
    for link in links_of(event) {
        if links.len() < MAX_LINKS && !links.iter().any(|l| l.href == link.href) {
            links.push(link);
        }
    }
}

impl Incident {
    /// What the rules may read about this incident when another event for it arrives.
    pub fn view(&self) -> IncidentView {
        Summary::of(self).view()
    }
}

/// What the rules may know about an open incident: small enough for the writer to keep one
/// per open incident in memory, where ingest handlers read it to build each event's view.
#[derive(Debug, Clone)]
pub struct Summary {
    id: IncidentId,
    status: Status,
    count: u64,
    first_seen: Timestamp,
    last_seen: Timestamp,
    severity: String,
    score: i64,
    drill: bool,
    /// A hash of the rules' stored decision: a repeated trigger that gets the same decision
    /// changes only the counts (see [`Summary::repeat`]).
    decision: u64,
    /// How long one refresh keeps it valid ([`crate::escalation::Expiry::lease`]).
    lease: Option<jiff::SignedDuration>,
    /// A maintenance window from the config holds it back (`held_by` without an id): a
    /// reload that changes the window re-checks it.
    held_by_config: bool,
    /// Digests of its links' addresses ([`href_hash`]), so that a repeat carrying one it lacks
    /// takes the full path and adds it; `None` when it holds [`MAX_LINKS`] (none can be added).
    links: Option<Box<[u64]>>,
}

impl Summary {
    pub fn of(incident: &Incident) -> Summary {
        Summary {
            id: incident.id,
            status: incident.status,
            count: incident.count,
            first_seen: incident.first_seen,
            last_seen: incident.last_seen,
            severity: incident.decision.severity.clone(),
            score: incident.decision.score,
            drill: incident.drill,
            decision: decision_hash(&incident.decision),
            lease: incident.expiry.as_ref().map(crate::escalation::Expiry::lease),
            held_by_config: incident.held_by.as_ref().is_some_and(|h| h.id.is_none()),
            links: (incident.links.len() < MAX_LINKS)
                .then(|| incident.links.iter().map(|l| href_hash(&l.href)).collect()),
        }
    }

    /// Whether `event` carries a link the incident lacks and would keep ([`merge_links`]).
    fn lacks_links_of(&self, event: &Event) -> bool {
        let Some(kept) = &self.links else { return false };
        let annotated = LINK_ANNOTATIONS.iter().filter_map(|(key, _)| event.annotations.get(*key));
        annotated
            .map(String::as_str)
            .chain(event.links.iter().map(|l| l.href.as_str()))
            .filter_map(web_href)
            .any(|href| !kept.contains(&href_hash(href)))
    }

    pub fn held_by_config(&self) -> bool {
        self.held_by_config
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether a trigger `event` scored `decision` would change this incident in nothing but
    /// its count and last-seen time: what [`apply`] does to it then is only that (no drill to
    /// make real, no severity change, the same decision to store, no link to add).
    /// `hash`: the decision's [`decision_hash`], computed where it was scored; `validity`: what
    /// the event says about how long the alert holds, which must leave the expiry true.
    pub fn repeat(
        &self,
        event: &Event,
        decision: &Decision,
        hash: u64,
        validity: crate::escalation::Validity,
    ) -> bool {
        event.action == Action::Trigger
            && validity.kept_by(self.lease, event.received_at)
            && !self.drill
            && !event.drill
            && self.severity == decision.severity
            && self.score == decision.score
            && self.decision == hash
            && !self.lacks_links_of(event)
    }

    /// After a repeat stored as counts only (the id guards against a reused key).
    pub fn counted(&mut self, id: IncidentId, count: u64, last_seen: Timestamp) {
        if self.id == id {
            self.count = count;
            self.last_seen = last_seen;
        }
    }

    pub fn id(&self) -> IncidentId {
        self.id
    }

    pub fn last_seen(&self) -> Timestamp {
        self.last_seen
    }

    pub fn first_seen(&self) -> Timestamp {
        self.first_seen
    }

    pub fn severity(&self) -> &str {
        &self.severity
    }

    /// The view for an event joining this incident: the count includes that event, as the
    /// rules API documents.
    pub fn view(&self) -> IncidentView {
        IncidentView {
            id: self.id,
            is_new: false,
            status: self.status.as_str().to_string(),
            count: self.count + 1,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            severity: Some(self.severity.clone()),
            score: Some(self.score),
        }
    }
}

/// A digest of the whole decision, kept in the open incident's summary: a repeat whose
/// decision has the same digest (and severity and score) leaves the stored decision as it is.
pub fn decision_hash(decision: &Decision) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    decision.hash(&mut h);
    h.finish()
}

/// The view for an event that will open a new incident.
pub fn new_view(event: &Event) -> IncidentView {
    IncidentView {
        id: 0,
        is_new: true,
        status: Status::Triggered.as_str().to_string(),
        count: 1,
        first_seen: event.received_at,
        last_seen: event.received_at,
        severity: None,
        score: None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// An event opened the incident; the entry carries the rules' decision (score, severity,
    /// the rules that fired and why).
    Opened,
    /// A later trigger changed the severity.
    SeverityChanged,
    /// A rule failed or ran out of budget for an event; the decision fell back.
    RuleFailed,
    Acknowledged,
    Resolved,
    Note,
    /// The rules suppressed the incident: what it held back.
    Suppressed,
    /// A notification was queued, attempted, delivered or dead-lettered.
    Notification,
    /// An escalation step fired, or escalation stopped or restarted.
    Escalated,
    /// Someone took or handed over an incident role.
    RoleChanged,
    /// A notice obligation was created, reminded, sent or missed.
    Notice,
    /// The after-action review opened or changed; action items added or updated.
    Review,
}

/// One line of an incident's append-only timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub at: Timestamp,
    /// `source:<name>`, `user:<name>`, `link:<person>`, `rule:<file>` or `tocsin`.
    pub actor: String,
    pub kind: EntryKind,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// What one event did to its incident.
#[derive(Debug)]
pub enum Outcome {
    /// A new incident (the caller allocated `id`).
    Opened(Incident, Vec<Entry>),
    /// The open incident changed (joined, acknowledged or resolved).
    Updated(Incident, Vec<Entry>),
    /// Acknowledge or resolve with no open incident, or nothing to change: stored as an event,
    /// nothing else.
    Ignored(&'static str),
}

/// What opened an incident, for its first timeline entry, in words with their article: "an
/// Alertmanager alert", "a PagerDuty event", "a customer report".
fn what_opened(event: &Event) -> &'static str {
    use crate::event::Format;
    match (event.format, event.kind) {
        (Format::AlertmanagerV2, _) => "an Alertmanager alert",
        (Format::AlertmanagerWebhook, _) => "an Alertmanager webhook alert",
        (Format::Pagerduty, _) => "a PagerDuty event",
        (Format::Report, _) => "a customer report",
        (Format::Canonical, Kind::Report) => "a customer report (canonical event)",
        (Format::Canonical, Kind::Alert) => "an alert (canonical event)",
        (Format::Declaration, _) | (Format::Canonical, Kind::Declaration) => "a declaration",
    }
}

fn source_actor(event: &Event) -> String {
    if let Some(a) = event.assessment.as_ref().filter(|_| event.kind == Kind::Declaration) {
        return format!("user:{}", a.declared_by);
    }
    format!("source:{}", event.source)
}

fn rule_failures(event: &Event, evaluation: &Evaluation) -> Vec<Entry> {
    evaluation
        .failures
        .iter()
        .map(|f| Entry {
            at: event.received_at,
            actor: format!("rule:{}", f.rule),
            kind: EntryKind::RuleFailed,
            message: format!(
                "rule {} failed; its changes were dropped and the decision fell back: {}",
                f.rule, f.error
            ),
            event_id: Some(event.id),
            detail: serde_json::Value::Null,
        })
        .collect()
}

/// Applies one event to the open incident for its key (`open`), or opens a new one with id
/// `new_id`.
pub fn apply(
    open: Option<Incident>,
    event: &Event,
    evaluation: &Evaluation,
    new_id: impl FnOnce() -> IncidentId,
) -> Outcome {
    match (event.action, open) {
        (Action::Trigger, None) => {
            let decision = evaluation.decision.clone();
            let incident = Incident {
                id: new_id(),
                source: event.source.clone(),
                dedup_key: event.dedup_key.clone(),
                kind: event.kind,
                status: Status::Triggered,
                summary: event.summary.clone(),
                service: event.service.clone(),
                labels: event.labels.clone(),
                scope: Vec::new(),
                first_seen: event.received_at,
                last_seen: event.received_at,
                detected_at: event.starts_at,
                count: 1,
                opened_by: event.id,
                acknowledged: None,
                resolved: None,
                roles: BTreeMap::new(),
                escalation: None,
                notices: Vec::new(),
                review: None,
                awareness: None,
                drill: event.drill,
                decision,
                expiry: None,
                held_by: None,
                links: links_of(event),
                policy_choice: None,
            };
            // One entry for the opening and the rules' decision on it: the first line of every
            // timeline, and one write instead of two in an alert storm.
            let d = &incident.decision;
            let suppressed =
                d.suppressed.as_ref().map(|r| format!("; suppressed: {r}")).unwrap_or_default();
            let mut entries = vec![Entry {
                at: event.received_at,
                actor: source_actor(event),
                kind: EntryKind::Opened,
                message: match &event.assessment {
                    Some(a) if event.kind == Kind::Declaration => format!(
                        "declared by user:{}: {}; scored {} ({}){suppressed}",
                        a.declared_by, event.summary, d.score, d.severity,
                    ),
                    _ => format!(
                        "opened by {}: {}; scored {} ({}){suppressed}",
                        what_opened(event),
                        event.summary,
                        d.score,
                        d.severity,
                    ),
                },
                event_id: Some(event.id),
                detail: serde_json::json!({
                    "rules_fired": d.rules_fired,
                    "reasons": d.reasons,
                }),
            }];
            entries.extend(rule_failures(event, evaluation));
            Outcome::Opened(incident, entries)
        }
        (Action::Trigger, Some(mut incident)) => {
            incident.count += 1;
            incident.last_seen = event.received_at;
            merge_links(&mut incident.links, event);
            let mut entries = rule_failures(event, evaluation);
            if incident.drill && !event.drill {
                // Never let a rehearsal hide a real problem with the same key.
                incident.drill = false;
                entries.push(Entry {
                    at: event.received_at,
                    actor: "tocsin".into(),
                    kind: EntryKind::Note,
                    message: "a real (non-drill) event joined this drill incident: it is no longer a drill, and its policy pages from the first step".into(),
                    event_id: Some(event.id),
                    detail: serde_json::Value::Null,
                });
            }
            let before = std::mem::replace(&mut incident.decision, evaluation.decision.clone());
            if before.severity != incident.decision.severity {
                entries.push(Entry {
                    at: event.received_at,
                    actor: "tocsin".into(),
                    kind: EntryKind::SeverityChanged,
                    message: format!(
                        "severity {} → {} (score {} → {}) after {} occurrences",
                        before.severity,
                        incident.decision.severity,
                        before.score,
                        incident.decision.score,
                        incident.count
                    ),
                    event_id: Some(event.id),
                    detail: serde_json::json!({"reasons": incident.decision.reasons}),
                });
            }
            Outcome::Updated(incident, entries)
        }
        (Action::Acknowledge, Some(incident)) => {
            match acknowledge(incident, &source_actor(event), event.received_at, Some(event.id)) {
                Ok((incident, entry)) => Outcome::Updated(incident, vec![entry]),
                Err(_) => Outcome::Ignored("already acknowledged"),
            }
        }
        (Action::Resolve, Some(incident)) => {
            match resolve(incident, &source_actor(event), event.received_at, Some(event.id)) {
                Ok((incident, entry)) => Outcome::Updated(incident, vec![entry]),
                Err(_) => Outcome::Ignored("already resolved"),
            }
        }
        (Action::Acknowledge, None) => {
            Outcome::Ignored("acknowledge for a key with no open incident")
        }
        (Action::Resolve, None) => Outcome::Ignored("resolve for a key with no open incident"),
    }
}

/// Why a person's action could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("incident {0} is already acknowledged")]
    AlreadyAcknowledged(IncidentId),
    #[error("incident {0} is resolved")]
    Resolved(IncidentId),
}

pub fn acknowledge(
    mut incident: Incident,
    by: &str,
    at: Timestamp,
    event_id: Option<Uuid>,
) -> Result<(Incident, Entry), ActionError> {
    match incident.status {
        Status::Resolved => return Err(ActionError::Resolved(incident.id)),
        Status::Acknowledged => return Err(ActionError::AlreadyAcknowledged(incident.id)),
        Status::Triggered => {}
    }
    incident.status = Status::Acknowledged;
    incident.acknowledged = Some(Stamp { by: by.to_string(), at });
    let entry = Entry {
        at,
        actor: by.to_string(),
        kind: EntryKind::Acknowledged,
        message: format!("acknowledged by {by}"),
        event_id,
        detail: serde_json::Value::Null,
    };
    Ok((incident, entry))
}

pub fn resolve(
    mut incident: Incident,
    by: &str,
    at: Timestamp,
    event_id: Option<Uuid>,
) -> Result<(Incident, Entry), ActionError> {
    if incident.status == Status::Resolved {
        return Err(ActionError::Resolved(incident.id));
    }
    incident.status = Status::Resolved;
    incident.resolved = Some(Stamp { by: by.to_string(), at });
    // Neither applies any more (their timers stop with the resolve): no window holds a resolved
    // incident back, and no endsAt can resolve it again.
    incident.held_by = None;
    incident.expiry = None;
    let entry = Entry {
        at,
        actor: by.to_string(),
        kind: EntryKind::Resolved,
        message: format!("resolved by {by}"),
        event_id,
        detail: serde_json::Value::Null,
    };
    Ok((incident, entry))
}

/// A person's note on the incident's timeline.
pub fn note(text: String) -> crate::effect::Amended {
    crate::effect::Amended::new(EntryKind::Note, text)
}

/// A person hands `role` to `person` (a person id the config's `people` has), or takes it away
/// (`None`).
pub fn assign_role(
    incident: &mut Incident,
    role: String,
    person: Option<String>,
    people: &BTreeMap<String, crate::policy::Person>,
) -> Result<crate::effect::Amended, String> {
    if !crate::escalation::valid_role_name(&role) {
        return Err(format!("`{role}` is not a role name: use lowercase letters, digits and `_`"));
    }
    let before = match &person {
        Some(p) => {
            if !people.contains_key(p) {
                return Err(format!("no person `{p}` in the config's people"));
            }
            incident.roles.insert(role.clone(), p.clone())
        }
        None => incident.roles.remove(&role),
    };
    let before = before.unwrap_or_else(|| "nobody".into());
    let after = person.unwrap_or_else(|| "nobody".into());
    Ok(crate::effect::Amended::new(
        EntryKind::RoleChanged,
        format!("role {role}: {before} → {after}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Link;

    #[test]
    fn runbook_and_dashboard_links_are_kept_from_annotations_and_links() {
        let mut e: Event = serde_json::from_value(serde_json::json!({
            "id": "01890000-0000-7000-8000-000000000000",
            "received_at": "2026-03-02T09:00:00Z",
            "source": "default",
            "format": "alertmanager_v2",
            "kind": "alert",
            "action": "trigger",
            "dedup_key": "k",
            "summary": "s",
            "annotations": {
                "runbook_url": "https://wiki.example.com/runbooks/disk",
                "dashboard_url": "javascript:alert(1)",
                "grafana_url": "https://grafana.example.com/d/abc"
            },
            "links": [{"href": "http://prometheus:9090/graph?g0.expr=up"}]
        }))
        .unwrap();
        let links = links_of(&e);
        let got: Vec<(&str, &str)> =
            links.iter().map(|l| (l.kind.as_str(), l.href.as_str())).collect();
        assert_eq!(
            got,
            [
                ("runbook", "https://wiki.example.com/runbooks/disk"),
                ("dashboard", "https://grafana.example.com/d/abc"),
                ("source", "http://prometheus:9090/graph?g0.expr=up"),
            ],
            "a javascript: link is never kept"
        );
        e.format = Format::Pagerduty;
        e.annotations.clear();
        e.links = vec![
            Link { href: "https://runbooks.example.com/db".into(), text: Some("Runbook".into()) },
            Link { href: "https://status.example.com".into(), text: Some("Status".into()) },
        ];
        let mut kept = links.clone();
        merge_links(&mut kept, &e);
        let kinds: Vec<&str> = kept.iter().map(|l| l.kind.as_str()).collect();
        assert_eq!(kinds, ["runbook", "dashboard", "source", "runbook", "link"]);
        merge_links(&mut kept, &e);
        assert_eq!(kept.len(), 5, "a link already kept is not added twice");
    }

    #[tokio::test]
    async fn a_role_goes_to_a_known_person_or_to_nobody() {
        use crate::escalation::testing::*;
        let people = runtime("").config.policies.people;
        let mut i = plain_incident();
        let a = assign_role(&mut i, "scribe".into(), Some("ana".into()), &people).unwrap();
        assert_eq!(a.message, "role scribe: nobody → ana");
        let a = assign_role(&mut i, "scribe".into(), None, &people).unwrap();
        assert_eq!(a.message, "role scribe: ana → nobody");
        assert!(assign_role(&mut i, "Bad Name".into(), None, &people).is_err());
        assert!(assign_role(&mut i, "scribe".into(), Some("zed".into()), &people).is_err());
        assert_eq!(note("hi".into()).kind, EntryKind::Note);
    }
}
