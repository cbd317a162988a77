//! The writer's open transaction: the store batch, the changes collected for after the commit,
//! the runtime snapshot and now — and applying the effects the deciding modules return.

use std::collections::HashMap;

use jiff::Timestamp;
use uuid::Uuid;

use crate::effect::{Draft, Effect, Effects, Notify, entry};
use crate::escalation::{Timer, TimerKind, Window};
use crate::incident::{Entry, EntryKind, Incident, IncidentId};
use crate::metrics::Metrics;
use crate::oncall::OverrideChange;
use crate::outbox::{Notification, State, Transition};
use crate::runtime::Runtime;
use crate::store::{Batch, EventRows, IncidentRows, OutboxRows, StoreError, TimerRows};

/// One batch's transaction, handed to every command's apply instead of (batch, changes, rt).
pub(super) struct Txn<'t, 'b> {
    pub batch: &'t mut Batch<'b>,
    pub changes: &'t mut Changes,
    /// The runtime as of the batch (a reload mid-batch applies from the next one).
    pub rt: &'t Runtime,
    pub metrics: &'t Metrics,
    /// Now for the command being applied.
    pub now: Timestamp,
}

/// Incidents changed by the batch so far, and which open incident each key now has, so that
/// two events for one key in one batch see each other before the commit.
#[derive(Default)]
pub(super) struct Changes {
    pub incidents: IdMap<Incident>,
    /// source → dedup key → the open incident as of this batch (None: closed in it).
    pub open: HashMap<String, HashMap<String, Option<IncidentId>>>,
    /// Incidents that were open before this batch began (the open index must drop them when
    /// they close) — the rest were opened by it.
    pub was_open: IdSet,
    /// Timeline entries to write at the end of the batch, per incident in first-touch order:
    /// one sequence lookup per incident instead of one per entry.
    pub timeline: Vec<(IncidentId, Vec<Entry>)>,
    /// Where each incident's entries sit in `timeline`.
    pub timeline_index: IdMap<usize>,
    /// Incidents opened in this batch: their timelines start at 0 without a lookup.
    pub opened: IdSet,
    /// Order in which incidents were first changed, so stores and metrics are deterministic.
    pub order: Vec<IncidentId>,
    /// Notifications became due: wake the delivery workers after the commit.
    pub due: bool,
    /// Timers were scheduled: wake the scheduler after the commit.
    pub timers: bool,
    /// The API's maintenance windows as changed by this batch (applied after the commit).
    pub windows: Option<Vec<Window>>,
    /// Rotation override changes, applied to the in-memory set after the commit.
    pub overrides: Vec<OverrideChange>,
    /// Repeated triggers stored as counts only (see `Writer::repeat`), by incident: the open
    /// index's counts follow after the commit.
    pub counted: IdMap<Counted>,
}

/// Maps and sets of incidents for the writer: incident ids are ours (allocated in order), not a
/// sender's, so they need no DoS-resistant hasher, and foldhash is several times faster than
/// SipHash on the writer thread, which every event passes through.
pub(super) type IdMap<V> = HashMap<IncidentId, V, foldhash::fast::RandomState>;
pub(super) type IdSet = std::collections::HashSet<IncidentId, foldhash::fast::RandomState>;

/// An incident's counts after the repeated triggers of one batch.
#[derive(Debug)]
pub(super) struct Counted {
    pub source: String,
    pub dedup_key: String,
    pub count: u64,
    pub last_seen: Timestamp,
}

impl Changes {
    pub fn log(&mut self, id: IncidentId, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        match self.timeline_index.get(&id) {
            Some(&i) => self.timeline[i].1.extend(entries),
            None => {
                self.timeline_index.insert(id, self.timeline.len());
                self.timeline.push((id, entries));
            }
        }
    }

    /// Puts a changed incident in the batch (stored at the end, once).
    pub fn save(&mut self, incident: Incident) {
        let key = (incident.source.clone(), incident.dedup_key.clone());
        self.open
            .entry(key.0)
            .or_default()
            .insert(key.1, incident.status.is_open().then_some(incident.id));
        if !self.incidents.contains_key(&incident.id) {
            if !self.opened.contains(&incident.id) && incident.status.is_open() {
                self.was_open.insert(incident.id);
            }
            self.order.push(incident.id);
        }
        self.incidents.insert(incident.id, incident);
    }
}

impl Txn<'_, '_> {
    /// The incident as of this batch.
    pub fn load(&mut self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        match self.changes.incidents.get(&id) {
            Some(incident) => Ok(Some(incident.clone())),
            None => self.batch.incident(id),
        }
    }

    /// The incident's pending timers, as of this batch.
    pub fn pending(&self, id: IncidentId) -> Result<Vec<Timer>, StoreError> {
        self.batch.incident_timers(id)
    }

    pub fn schedule(
        &mut self,
        incident: IncidentId,
        due_at: Timestamp,
        kind: TimerKind,
    ) -> Result<Timer, StoreError> {
        let timer = Timer { id: self.batch.next_timer_id()?, incident, due_at, kind };
        self.batch.put_timer(&timer)?;
        self.changes.timers = true;
        Ok(timer)
    }

    /// Removes the incident's timers that `stop` picks; returns them.
    pub fn cancel(
        &mut self,
        incident: IncidentId,
        stop: impl Fn(&TimerKind) -> bool,
    ) -> Result<Vec<Timer>, StoreError> {
        let mut out = Vec::new();
        for t in self.batch.incident_timers(incident)? {
            if stop(&t.kind) {
                self.batch.remove_timer(&t)?;
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Applies a decision's effects on `incident`, in order.
    pub fn apply(&mut self, incident: &Incident, effects: Effects) -> Result<(), StoreError> {
        let id = incident.id;
        for effect in effects.0 {
            match effect {
                Effect::Log(e) => self.changes.log(id, vec![e]),
                Effect::Schedule { at, kind } => {
                    self.schedule(id, at, kind)?;
                }
                Effect::Cancel(t) => self.batch.remove_timer(&t)?,
                Effect::Notify(n) => {
                    let e = self.enqueue(incident, n)?;
                    self.changes.log(id, vec![e]);
                    self.changes.due = true;
                }
                Effect::Count(crate::effect::Count::EscalationStep) => {
                    self.metrics.escalation_steps.inc();
                }
                Effect::Count(crate::effect::Count::NoticeMissed) => {
                    self.metrics.notices_missed.inc();
                }
            }
        }
        Ok(())
    }

    /// Writes one outbox row, rendered for its recipient, and returns its timeline entry.
    fn enqueue(&mut self, incident: &Incident, n: Notify) -> Result<Entry, StoreError> {
        let Notify { reason, delivery: d, why, note, draft } = n;
        let (rt, now) = (self.rt, self.now);
        let id = self.batch.next_notification_id()?;
        let (mut message, fallback) = crate::compose::render(rt, incident, reason, &d, now);
        if let Some((lead, line)) = &note {
            message = crate::compose::with_note(message, lead, line);
        }
        match draft {
            Draft::No => {}
            Draft::Full => {
                let draft = crate::compose::customer_draft(rt, incident, reason, now);
                message = crate::compose::with_draft(message, &draft);
            }
            Draft::InEmail => message = crate::compose::with_draft_in_email(message),
        }
        if rt.redactor.applies_to(d.channel, &d.audience) {
            let opening = self.batch.event(incident.opened_by)?;
            message = crate::compose::redacted(rt, message, opening.as_ref());
        }
        let n = Notification {
            id,
            idempotency_id: format!("tocsin-{}", Uuid::now_v7().simple()),
            incident_id: incident.id,
            reason,
            channel: d.channel,
            recipient: d.recipient.clone(),
            audience: d.audience.clone(),
            message,
            state: State::Queued,
            attempts: 0,
            created_at: now,
            due_at: now,
            last_error: None,
            reference: None,
            delivered_at: None,
            bundled_into: None,
            drill: incident.drill,
            waited: false,
            requeued_at: None,
        };
        self.batch.put_notification(&n)?;
        self.metrics.notification_queued(d.channel);
        let mut text =
            format!("notification #{id} queued: {} ({}, {why})", d.describe(), reason.as_str());
        if let Some(f) = fallback {
            text.push_str(&format!("; template failed, sent the plain built-in message: {f}"));
        }
        Ok(entry(now, EntryKind::Notification, text))
    }

    /// Writes a notification row after an outbox transition, with what the transition says
    /// to record (timeline line, counters, wake-up, a disabled endpoint).
    pub fn record(&mut self, n: &Notification, t: Transition) -> Result<(), StoreError> {
        if let Some(label) = t.attempt {
            self.metrics.notification_attempt(n.channel, label);
        }
        if let Some(reason) = &t.disable {
            self.batch.disable_endpoint(&n.recipient.address, reason)?;
        }
        if let Some(state) = t.ended {
            self.metrics.notification_outcome(n.channel, state.as_str());
        }
        self.batch.put_notification(n)?;
        if t.due {
            self.changes.due = true;
        }
        if let Some(line) = t.line {
            self.changes.log(n.incident_id, vec![entry(self.now, EntryKind::Notification, line)]);
        }
        Ok(())
    }
}
