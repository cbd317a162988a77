//! Escalation: timed steps, notice deadlines, communications reminders and action-item
//! reminders, all as durable timers that the journal writer fires.
//!
//! Sits after the policies in the flow. When an incident opens, the writer fires the first step
//! of its policy and writes a [`Timer`] row for the next one, in the same transaction. A
//! scheduler task watches the earliest due time and asks the writer to fire what is due
//! (`journal::Command::Tick`); firing a timer deletes its row in the transaction that acts on
//! it, so a timer fires at most once, and one that came due while the daemon was down fires
//! once, right after start-up. Everything here is plain data and pure functions; the writer
//! does the I/O.

pub mod config;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::event::{Action, Event, Format};
use crate::incident::{Incident, IncidentId, Stamp};
use crate::rules::{Decision, Sensitivity};

pub mod notices;
pub mod steps;
#[cfg(test)]
pub(crate) mod testing;
pub mod timers;
pub mod windows;

/// Role names are identifiers: they appear in URLs, templates and config keys.
pub fn valid_role_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Whose templates a role's holder reads by default.
pub fn role_audience(role: &str) -> &'static str {
    match role {
        "legal_liaison" => "legal",
        "communications_lead" => "communications",
        _ => "responder",
    }
}

/// Roles the triage brings in on top of the policy's first step: personal or financial data
/// brings the legal liaison, a customer-facing incident the communications lead, and whatever
/// the rules asked for with `decision.involve(role)`.
pub fn involved_roles(decision: &Decision) -> Vec<String> {
    let mut roles: Vec<String> = Vec::new();
    let mut add = |r: &str| {
        if !roles.iter().any(|x| x == r) {
            roles.push(r.to_string());
        }
    };
    if matches!(decision.sensitivity, Sensitivity::Personal | Sensitivity::Financial) {
        add("legal_liaison");
    }
    if decision.customer_facing {
        add("communications_lead");
    }
    for r in &decision.roles {
        add(r);
    }
    roles
}

/// Who the first page adds for an incident's scope: each affected service's owner from the
/// catalog (a role or a person), once each, in scope order.
pub fn owner_targets(
    catalog: &crate::catalog::Catalog,
    scope: &[String],
) -> Vec<crate::policy::Target> {
    let mut out: Vec<crate::policy::Target> = Vec::new();
    for service in scope {
        let target = match catalog.owner(service) {
            Some(crate::catalog::Owner::Role(r)) => crate::policy::Target::Role(r.clone()),
            Some(crate::catalog::Owner::Person(p)) => crate::policy::Target::Person(p.clone()),
            None => continue,
        };
        if !out.contains(&target) {
            out.push(target);
        }
    }
    out
}

/// A durable timer: a row keyed by its due time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    pub id: u64,
    pub incident: IncidentId,
    pub due_at: Timestamp,
    pub kind: TimerKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TimerKind {
    /// Fire escalation step `step` (0-based) of round `round` unless acknowledged by then.
    Step { policy: String, step: u32, round: u32 },
    /// An acknowledgement ran out without a resolve: escalate again from the first step.
    AckExpired { policy: String },
    /// Remind the legal liaison that notice `notice` (index in the incident's notices) is due.
    NoticeReminder { notice: u32 },
    /// Notice `notice` is due now: if it was not sent, it is missed and escalates.
    NoticeDeadline { notice: u32 },
    /// Ask the communications lead for the next status update.
    CommsUpdate,
    /// Action item `action` of the after-action review is due (and again every reminder
    /// interval while it stays open).
    ActionDue { action: u32 },
    /// The sender's `endsAt` passes: resolve unless a refresh moved it (see [`Expiry`]).
    Expiry,
    /// The maintenance window that held the incident back ends: page if it is still open.
    WindowEnds { window: String },
}

impl TimerKind {
    /// Stopped by an acknowledgement.
    pub fn stops_on_ack(&self) -> bool {
        matches!(self, TimerKind::Step { .. })
    }

    /// Stopped by a resolve. Notice deadlines outlive the incident: a legal obligation does
    /// not end because the outage did.
    pub fn stops_on_resolve(&self) -> bool {
        matches!(
            self,
            TimerKind::Step { .. }
                | TimerKind::AckExpired { .. }
                | TimerKind::CommsUpdate
                | TimerKind::Expiry
                | TimerKind::WindowEnds { .. }
        )
    }

    pub fn describe(&self) -> String {
        match self {
            TimerKind::Step { policy, step, round } => {
                format!("escalation step {} of policy `{policy}` (round {})", step + 1, round + 1)
            }
            TimerKind::AckExpired { policy } => {
                format!("re-escalation by policy `{policy}` if still unresolved")
            }
            TimerKind::NoticeReminder { notice } => format!("reminder for notice #{}", notice + 1),
            TimerKind::NoticeDeadline { notice } => format!("deadline of notice #{}", notice + 1),
            TimerKind::CommsUpdate => "status update reminder to the communications lead".into(),
            TimerKind::ActionDue { action } => format!("action item #{action} due"),
            TimerKind::Expiry => {
                "resolve if the sender's endsAt passes without a refresh".to_string()
            }
            TimerKind::WindowEnds { window } => {
                format!("maintenance window `{window}` ends: page if still open")
            }
        }
    }
}

/// Where an incident's escalation stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationState {
    pub policy: String,
    /// The last step that fired (0-based) and its round.
    pub step: u32,
    pub round: u32,
    /// When the next step fires, if one is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<Timestamp>,
    /// Why escalation stopped (acknowledged, resolved, policy exhausted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

/// How long the sender says an alert holds: Alertmanager's `endsAt`. Prometheus sends it a few
/// evaluation intervals ahead and refreshes it while the alert fires, so an alert that stops
/// being refreshed (its rule deleted, Prometheus gone) resolves when it passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiry {
    /// The latest `endsAt` a trigger stated (or its arrival plus `incidents.resolve_timeout`).
    pub ends_at: Timestamp,
    /// When that trigger arrived: each refresh keeps the alert valid for `ends_at − this`.
    pub refreshed_at: Timestamp,
}

impl Expiry {
    /// How long one refresh keeps the alert valid.
    pub fn lease(&self) -> SignedDuration {
        self.ends_at.duration_since(self.refreshed_at)
    }

    /// When the incident resolves unless refreshed again, its last trigger having arrived at
    /// `last_seen`. Refreshes stored as counts only (see [`Validity::kept_by`]) stated a lease
    /// no longer than this one and at most [`LEASE_TOLERANCE`] shorter, so counting it from
    /// the last of them is never early, and late by that tolerance at most.
    pub fn due(&self, last_seen: Timestamp) -> Timestamp {
        let refreshed = last_seen.saturating_add(self.lease()).unwrap_or(self.ends_at);
        self.ends_at.max(refreshed)
    }
}

/// How much shorter than the stored lease a refresh's may be and still be stored as counts
/// only: an incident resolves at most this long after the `endsAt` of its last refresh.
pub const LEASE_TOLERANCE: SignedDuration = SignedDuration::from_secs(1);

/// What one trigger says about how long its alert holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// Nothing: its format has no such notion (PagerDuty, the Alertmanager webhook, whose
    /// sender resolves by itself, reports, declarations). The incident's expiry stays.
    Unstated,
    /// It holds until resolved: an Alertmanager v2 alert without `endsAt` (and no
    /// `incidents.resolve_timeout`), a canonical event without `ends_at`.
    OpenEnded,
    /// It holds until then, unless refreshed.
    Until(Timestamp),
}

/// The validity a trigger states. Alertmanager gives an alert without `endsAt` its
/// `resolve_timeout`; Tocsin does so only when `incidents.resolve_timeout` is set, since a
/// one-off page posted by a script must not close itself before anyone has looked.
pub fn validity(event: &Event, resolve_timeout: Option<Duration>) -> Validity {
    if event.action != Action::Trigger {
        return Validity::Unstated;
    }
    let stated = event.ends_at.filter(|end| *end > event.received_at);
    match (event.format, stated) {
        (Format::AlertmanagerV2 | Format::Canonical, Some(end)) => Validity::Until(end),
        (Format::AlertmanagerV2, None) => match resolve_timeout {
            Some(t) => Validity::Until(after(event.received_at, t)),
            None => Validity::OpenEnded,
        },
        (Format::Canonical, None) => Validity::OpenEnded,
        _ => Validity::Unstated,
    }
}

impl Validity {
    /// Whether a repeat arriving at `received` may be stored as counts only (moving the
    /// incident's last-seen time, not its expiry) and the expiry stay true: it states nothing,
    /// or the same open end, or about the stored lease (`lease`): no longer (counting the
    /// stored lease from it would resolve before its `endsAt`) and at most
    /// [`LEASE_TOLERANCE`] shorter (or it would resolve long after its `endsAt`: a 4-minute
    /// refresh counted against an earlier 53-minute lease holds for 53 minutes). Prometheus
    /// states the same lease each time, give or take its arrival jitter, so nearly every
    /// refresh in a storm stays on the fast path: a longer one is stored and becomes the lease
    /// the next ones are held to.
    pub fn kept_by(&self, lease: Option<SignedDuration>, received: Timestamp) -> bool {
        match (self, lease) {
            (Validity::Unstated, _) | (Validity::OpenEnded, None) => true,
            (Validity::Until(end), Some(lease)) => {
                let stated = end.duration_since(received);
                stated <= lease && lease - stated <= LEASE_TOLERANCE
            }
            _ => false,
        }
    }

    /// The incident's expiry after a trigger arriving at `received`: the latest word wins.
    pub fn apply(&self, current: Option<Expiry>, received: Timestamp) -> Option<Expiry> {
        match self {
            Validity::Unstated => current,
            Validity::OpenEnded => None,
            Validity::Until(end) => Some(Expiry { ends_at: *end, refreshed_at: received }),
        }
    }
}

/// The maintenance window that held an incident's pages back, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub window: String,
    /// The API window's id (config windows have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub until: Timestamp,
}

impl Notice {
    /// Counts the deadline and the reminders from `aware_at` instead (same offsets).
    pub fn shift_awareness(&mut self, aware_at: Timestamp) {
        let shift = aware_at.duration_since(self.aware_at);
        let moved = |t: Timestamp| t.saturating_add(shift).unwrap_or(t);
        self.due_at = moved(self.due_at);
        self.reminders = self.reminders.iter().map(|r| moved(*r)).collect();
        self.aware_at = aware_at;
    }
}

/// A legal or contractual notice obligation attached to an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub name: String,
    pub mandatory: bool,
    /// When the organization became aware (the deadline counts from here).
    pub aware_at: Timestamp,
    pub due_at: Timestamp,
    /// When the legal liaison is reminded, if the notice is not sent by then.
    #[serde(default)]
    pub reminders: Vec<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<Stamp>,
    /// Free text: the authority's case number, a link to the filed notice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default)]
    pub missed: bool,
}

/// A notice rule from the config: when it applies and how long there is to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRule {
    pub name: String,
    /// Any of these sensitivities (empty: any).
    pub sensitivity: Vec<Sensitivity>,
    /// Only customer-facing incidents, when set.
    pub customer_facing: Option<bool>,
    /// Any of these severities (empty: any).
    pub severities: Vec<String>,
    /// Any of these tags (empty: any).
    pub tags: Vec<String>,
    pub deadline: Duration,
    pub mandatory: bool,
    /// Offsets from awareness at which the legal liaison is reminded.
    pub reminders: Vec<Duration>,
}

impl NoticeRule {
    pub fn applies(&self, d: &Decision) -> bool {
        (self.sensitivity.is_empty() || self.sensitivity.contains(&d.sensitivity))
            && self.customer_facing.is_none_or(|c| c == d.customer_facing)
            && (self.severities.is_empty() || self.severities.contains(&d.severity))
            && (self.tags.is_empty() || self.tags.iter().any(|t| d.tags.contains(t)))
    }

    /// The notice this rule creates for an incident the organization became aware of at
    /// `aware_at`.
    pub fn notice(&self, aware_at: Timestamp) -> Notice {
        let at = |d: &Duration| aware_at.saturating_add(signed(*d)).unwrap_or(aware_at);
        Notice {
            name: self.name.clone(),
            mandatory: self.mandatory,
            aware_at,
            due_at: at(&self.deadline),
            reminders: self.reminders.iter().filter(|r| **r < self.deadline).map(at).collect(),
            sent: None,
            reference: None,
            missed: false,
        }
    }
}

/// A maintenance window: incidents that open inside it for what it matches are suppressed,
/// with a record of what they held back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Set for windows created through the API (config windows have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<Stamp>,
    pub name: String,
    pub starts: Timestamp,
    pub ends: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Window {
    pub fn covers(&self, incident: &Incident, at: Timestamp) -> bool {
        self.starts <= at
            && at < self.ends
            && self.source.as_ref().is_none_or(|s| *s == incident.source)
            && self.service.as_ref().is_none_or(|s| Some(s) == incident.service.as_ref())
            && self.labels.iter().all(|(k, v)| incident.labels.get(k) == Some(v))
    }

    pub fn held(&self) -> Held {
        Held { window: self.name.clone(), id: self.id, until: self.ends }
    }

    /// Why an incident it covers is suppressed (the decision's `suppressed` text).
    pub fn reason(&self) -> String {
        window_reason(&self.name, self.ends)
    }
}

/// The decision's `suppressed` text for an incident a maintenance window holds back.
pub fn window_reason(name: &str, until: Timestamp) -> String {
    format!("maintenance window `{name}` until {until}")
}

/// The window's name and end in a [`window_reason`] text (as every version wrote it), if
/// `reason` is one.
pub fn parse_window_reason(reason: &str) -> Option<(&str, Option<Timestamp>)> {
    let (name, until) = reason.strip_prefix("maintenance window `")?.rsplit_once("` until ")?;
    Some((name, until.parse().ok()))
}

/// The escalation settings of a config beyond the policies themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub notices: Vec<NoticeRule>,
    /// Severity → how often the communications lead is reminded to post a status update while
    /// the incident is open.
    pub comms_every: BTreeMap<String, Duration>,
    /// Resolving an incident of one of these severities opens an after-action review.
    pub review_severities: Vec<String>,
    /// How often an overdue action item reminds its owner.
    pub action_remind_every: Duration,
    /// Channels on which roles brought in by triage (legal liaison, communications lead, roles
    /// the rules involve) are notified.
    pub involve_channels: Vec<crate::notify::Channel>,
    pub maintenance: Vec<Window>,
    /// Status-update reminders only for customer-facing incidents
    /// (`communications.customer_facing_only`).
    pub comms_customer_facing_only: bool,
    /// `severity_policies` are a floor: a rule's policy that escalates less than the
    /// severity's does not replace it (`escalation.severity_floor`).
    pub severity_floor: bool,
}

impl Settings {
    /// How often the communications lead is reminded to post a status update for an incident
    /// with this decision: its severity has an interval, and it is customer-facing (unless
    /// `communications.customer_facing_only` is off). The communications lead is brought in
    /// for customer-facing incidents; an internal outage has no public to update.
    pub fn comms_every_for(&self, decision: &Decision) -> Option<Duration> {
        if self.comms_customer_facing_only && !decision.customer_facing {
            return None;
        }
        self.comms_every.get(&decision.severity).copied()
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            notices: Vec::new(),
            comms_every: BTreeMap::new(),
            review_severities: vec!["sev1".into(), "sev2".into()],
            action_remind_every: Duration::from_secs(24 * 3600),
            involve_channels: vec![crate::notify::Channel::Email],
            maintenance: Vec::new(),
            comms_customer_facing_only: true,
            severity_floor: false,
        }
    }
}

pub fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// `at + d`, saturating at the end of time instead of failing.
pub fn after(at: Timestamp, d: Duration) -> Timestamp {
    at.saturating_add(signed(d)).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(sensitivity: Sensitivity, customer_facing: bool) -> Decision {
        testing::decision("sev2", sensitivity, customer_facing)
    }

    #[test]
    fn triage_brings_in_legal_and_communications() {
        assert!(involved_roles(&decision(Sensitivity::None, false)).is_empty());
        assert_eq!(involved_roles(&decision(Sensitivity::Personal, false)), ["legal_liaison"]);
        assert_eq!(involved_roles(&decision(Sensitivity::Financial, false)), ["legal_liaison"]);
        assert_eq!(involved_roles(&decision(Sensitivity::Internal, true)), ["communications_lead"]);
        let mut d = decision(Sensitivity::Personal, true);
        d.roles.insert("legal_liaison".into());
        d.roles.insert("security_officer".into());
        assert_eq!(
            involved_roles(&d),
            ["legal_liaison", "communications_lead", "security_officer"]
        );
    }

    #[test]
    fn a_72_hour_notice_counts_from_awareness_with_its_reminders() {
        let rule = NoticeRule {
            name: "GDPR Art. 33".into(),
            sensitivity: vec![Sensitivity::Personal],
            customer_facing: None,
            severities: vec![],
            tags: vec![],
            deadline: Duration::from_secs(72 * 3600),
            mandatory: true,
            reminders: [24, 48, 66, 80].map(|h| Duration::from_secs(h * 3600)).to_vec(),
        };
        assert!(rule.applies(&decision(Sensitivity::Personal, false)));
        assert!(!rule.applies(&decision(Sensitivity::Financial, false)));
        let aware: Timestamp = "2026-05-01T10:00:00Z".parse().unwrap();
        let n = rule.notice(aware);
        assert_eq!(n.due_at, "2026-05-04T10:00:00Z".parse::<Timestamp>().unwrap());
        // A reminder after the deadline makes no sense and is dropped.
        let reminders: Vec<String> = n.reminders.iter().map(|t| t.to_string()).collect();
        assert_eq!(
            reminders,
            ["2026-05-02T10:00:00Z", "2026-05-03T10:00:00Z", "2026-05-04T04:00:00Z"]
        );
    }

    #[test]
    fn timers_know_what_stops_them() {
        let step = TimerKind::Step { policy: "p".into(), step: 1, round: 0 };
        assert!(step.stops_on_ack() && step.stops_on_resolve());
        let deadline = TimerKind::NoticeDeadline { notice: 0 };
        assert!(!deadline.stops_on_ack() && !deadline.stops_on_resolve());
        assert!(
            TimerKind::CommsUpdate.stops_on_resolve() && !TimerKind::CommsUpdate.stops_on_ack()
        );
    }

    fn trigger(format: Format, ends_at: Option<&str>) -> Event {
        Event {
            id: uuid::Uuid::nil(),
            received_at: "2026-03-02T09:00:00Z".parse().unwrap(),
            source: "default".into(),
            format,
            kind: crate::event::Kind::Alert,
            action: Action::Trigger,
            dedup_key: "k".into(),
            fingerprint: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            summary: "s".into(),
            severity: None,
            service: None,
            starts_at: None,
            ends_at: ends_at.map(|t| t.parse().unwrap()),
            links: Vec::new(),
            customer: None,
            verified: false,
            drill: false,
            assessment: None,
            details: serde_json::Map::new(),
        }
    }

    #[test]
    fn an_alerts_validity_comes_from_its_ends_at_or_the_resolve_timeout() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let five = Some(Duration::from_secs(300));
        let v2 = trigger(Format::AlertmanagerV2, Some("2026-03-02T09:04:00Z"));
        assert_eq!(validity(&v2, None), Validity::Until(t("2026-03-02T09:04:00Z")));
        let bare = trigger(Format::AlertmanagerV2, None);
        assert_eq!(validity(&bare, None), Validity::OpenEnded);
        assert_eq!(validity(&bare, five), Validity::Until(t("2026-03-02T09:05:00Z")));
        assert_eq!(validity(&trigger(Format::Canonical, None), five), Validity::OpenEnded);
        let webhook = trigger(Format::AlertmanagerWebhook, Some("2026-03-02T09:04:00Z"));
        assert_eq!(validity(&webhook, five), Validity::Unstated, "its Alertmanager resolves");
        assert_eq!(validity(&trigger(Format::Pagerduty, None), five), Validity::Unstated);
        let mut resolve = v2;
        resolve.action = Action::Resolve;
        assert_eq!(validity(&resolve, five), Validity::Unstated);
    }

    #[test]
    fn a_refresh_moves_the_expiry_and_a_counted_repeat_never_brings_it_forward() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let first = Validity::Until(t("2026-03-02T09:04:00Z"));
        let e = first.apply(None, t("2026-03-02T09:00:00Z")).unwrap();
        assert_eq!(e.lease(), SignedDuration::from_mins(4));
        assert_eq!(e.due(t("2026-03-02T09:00:00Z")), t("2026-03-02T09:04:00Z"));
        // Refreshes with the same lease, stored as counts only, push it along with last_seen.
        let lease = Some(e.lease());
        let refresh = Validity::Until(t("2026-03-02T09:05:00Z"));
        assert!(refresh.kept_by(lease, t("2026-03-02T09:01:00Z")));
        assert_eq!(e.due(t("2026-03-02T09:01:00Z")), t("2026-03-02T09:05:00Z"));
        // A lease within the tolerance below the stored one is kept: at most that late.
        let jitter = Validity::Until(t("2026-03-02T09:04:59.5Z"));
        assert!(jitter.kept_by(lease, t("2026-03-02T09:01:00Z")));
        let beyond = Validity::Until(t("2026-03-02T09:04:58.9Z"));
        assert!(!beyond.kept_by(lease, t("2026-03-02T09:01:00Z")));
        // A longer lease must rewrite the expiry, or it would resolve early.
        let longer = Validity::Until(t("2026-03-02T10:00:00Z"));
        assert!(!longer.kept_by(lease, t("2026-03-02T09:01:00Z")));
        let moved = longer.apply(Some(e.clone()), t("2026-03-02T09:01:00Z")).unwrap();
        assert_eq!(moved.due(t("2026-03-02T09:01:00Z")), t("2026-03-02T10:00:00Z"));
        // A much shorter lease after a longer one must rewrite it too, or the incident would
        // resolve the longer lease after its last refresh instead of at its endsAt.
        let lease = Some(moved.lease());
        let shorter = Validity::Until(t("2026-03-02T09:06:00Z"));
        assert!(!shorter.kept_by(lease, t("2026-03-02T09:02:00Z")));
        let back = shorter.apply(Some(moved), t("2026-03-02T09:02:00Z")).unwrap();
        assert_eq!(back.due(t("2026-03-02T09:02:00Z")), t("2026-03-02T09:06:00Z"));
        let lease = Some(e.lease());
        // The latest word wins: no end given makes it open-ended; silence keeps it.
        assert!(!Validity::OpenEnded.kept_by(lease, t("2026-03-02T09:01:00Z")));
        assert_eq!(Validity::OpenEnded.apply(Some(e.clone()), t("2026-03-02T09:01:00Z")), None);
        assert!(Validity::Unstated.kept_by(lease, t("2026-03-02T09:01:00Z")));
        assert_eq!(Validity::Unstated.apply(Some(e.clone()), t("2026-03-02T09:01:00Z")), Some(e));
        assert!(Validity::OpenEnded.kept_by(None, t("2026-03-02T09:01:00Z")));
        assert!(!first.kept_by(None, t("2026-03-02T09:01:00Z")));
    }

    #[test]
    fn a_window_reason_names_the_window_and_its_end() {
        let t = "2026-03-02T10:00:00Z".parse::<Timestamp>().unwrap();
        let reason = window_reason("db `a` failover", t);
        assert_eq!(reason, "maintenance window `db `a` failover` until 2026-03-02T10:00:00Z");
        assert_eq!(parse_window_reason(&reason), Some(("db `a` failover", Some(t))));
        assert_eq!(parse_window_reason("maintenance window"), None, "a rule's own words");
    }

    #[test]
    fn status_update_reminders_are_for_customer_facing_incidents_unless_configured() {
        let mut s = Settings::default();
        s.comms_every.insert("sev2".into(), Duration::from_secs(1800));
        let internal = decision(Sensitivity::None, false);
        let facing = decision(Sensitivity::None, true);
        assert_eq!(s.comms_every_for(&internal), None);
        assert_eq!(s.comms_every_for(&facing), Some(Duration::from_secs(1800)));
        let mut sev3 = facing;
        sev3.severity = "sev3".into();
        assert_eq!(s.comms_every_for(&sev3), None);
        s.comms_customer_facing_only = false;
        assert_eq!(s.comms_every_for(&internal), Some(Duration::from_secs(1800)));
    }

    #[test]
    fn role_names_and_audiences() {
        assert!(valid_role_name("incident_lead"));
        assert!(!valid_role_name("Incident Lead"));
        assert_eq!(role_audience("legal_liaison"), "legal");
        assert_eq!(role_audience("communications_lead"), "communications");
        assert_eq!(role_audience("technical_lead"), "responder");
    }
}
