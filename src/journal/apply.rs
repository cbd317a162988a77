//! One apply per command: each reads what its decision needs from the transaction, calls the
//! module that decides it (incident lifecycle, escalation and notices, reviews, outbox), and
//! applies the effects it returns. Nothing here decides what a timer, an amendment or a
//! delivery outcome means.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::txn::{Counted, Txn};
use super::{ActError, Amendment, MaintenanceOp, OverrideOp, PersonAction, Scored, Writer};
use crate::effect::{Effects, entry};
use crate::escalation::steps::{self, Ctx};
use crate::escalation::timers::{self, Fired};
use crate::escalation::{self, TimerKind, Window, notices};
use crate::event::Action;
use crate::incident::{self, Entry, EntryKind, Incident, IncidentId, Outcome, Stamp};
use crate::notify::Channel;
use crate::oncall::{Override, OverrideChange};
use crate::outbox::{self, Attempt, Notification, NotificationId, QueueOp};
use crate::store::{AdminRows, EventRows, IncidentRows, OutboxRows, StoreError, TimerRows};

impl Writer {
    /// Runs a decision with the batch's view: runtime, API maintenance windows, now.
    pub(super) fn decide<R>(&self, tx: &Txn, f: impl FnOnce(&Ctx) -> R) -> R {
        let guard;
        let windows: &[Window] = match &tx.changes.windows {
            Some(w) => w,
            None => {
                guard = self.windows.lock().unwrap_or_else(|e| e.into_inner());
                &guard
            }
        };
        f(&Ctx { rt: tx.rt, windows, now: tx.now })
    }

    /// Records an incident change: its timeline entries, and what the change sets off — a new
    /// incident's roles, first escalation step, notices and reminders; an acknowledgement
    /// stopping the steps; a resolve stopping everything, telling whoever was paged, and
    /// opening the after-action review. `set_off`: what the change itself already set off,
    /// applied after its entries.
    pub(super) fn keep(
        &self,
        tx: &mut Txn,
        mut incident: Incident,
        entries: Vec<Entry>,
        set_off: Effects,
    ) -> Result<(), StoreError> {
        let has = |kind: EntryKind| entries.iter().any(|e| e.kind == kind);
        let (opened, acknowledged, resolved) =
            (has(EntryKind::Opened), has(EntryKind::Acknowledged), has(EntryKind::Resolved));
        tx.changes.log(incident.id, entries);
        tx.apply(&incident, set_off)?;
        if opened {
            tx.changes.opened.insert(incident.id);
            incident.roles = self.role_holders(tx, incident.first_seen);
            let fx = self.decide(tx, |ctx| steps::opened(ctx, &mut incident));
            tx.apply(&incident, fx)?;
        } else if !tx.changes.incidents.contains_key(&incident.id)
            && !tx.changes.opened.contains(&incident.id)
        {
            // First touched in this batch without opening: it came from the store, open.
            tx.changes.was_open.insert(incident.id);
        }
        if acknowledged {
            let pending = tx.pending(incident.id)?;
            let fx = self.decide(tx, |ctx| steps::acknowledged(ctx, &mut incident, &pending));
            tx.apply(&incident, fx)?;
        }
        if resolved {
            let pending = tx.pending(incident.id)?;
            let sent = tx.batch.incident_notifications(incident.id)?;
            let fx = self.decide(tx, |ctx| steps::resolved(ctx, &mut incident, &pending, sent));
            tx.apply(&incident, fx)?;
        }
        tx.changes.save(incident);
        Ok(())
    }

    /// Who holds each role when an incident opens at `at`: the config's roles, with rotations
    /// resolved (and their overrides applied) at that moment.
    fn role_holders(&self, tx: &Txn, at: Timestamp) -> BTreeMap<String, String> {
        self.overrides.with(|o| tx.rt.config.roster.holders(at, o))
    }

    pub(super) fn apply_event(&self, tx: &mut Txn, scored: &Scored) -> Result<(), StoreError> {
        let event = &scored.encoded.event;
        for failure in &scored.evaluation.failures {
            self.metrics.rule_failed(failure);
        }
        self.metrics.rule_runs.inc_by(u64::from(scored.evaluation.ran));
        self.metrics.rule_outcomes_reused.inc_by(u64::from(scored.evaluation.reused));
        if let Some((id, count)) = self.repeat(tx, scored) {
            tx.batch.put_counts(id, count, event.received_at);
            tx.batch.insert_event(&scored.encoded, Some(id))?;
            let c = tx.changes.counted.entry(id).or_insert_with(|| Counted {
                source: event.source.clone(),
                dedup_key: event.dedup_key.clone(),
                count,
                last_seen: event.received_at,
            });
            (c.count, c.last_seen) = (count, event.received_at);
            return Ok(());
        }
        let open_id = match tx.changes.open.get(&event.source).and_then(|m| m.get(&event.dedup_key))
        {
            Some(id) => *id,
            None => self.open.get(&event.source, &event.dedup_key),
        };
        let open = match open_id {
            Some(id) => tx.load(id)?,
            None => None,
        };
        let was_drill = open.as_ref().is_some_and(|i| i.drill);
        let mut new_id = None;
        let outcome = incident::apply(open, event, &scored.evaluation, || {
            // Allocation can fail only with the store; remember and report after `apply`.
            let id = tx.batch.next_incident_id();
            let value = id.as_ref().copied().unwrap_or(0);
            new_id = Some(id);
            value
        });
        if let Some(Err(e)) = new_id {
            return Err(e);
        }
        let validity = escalation::validity(event, tx.rt.config.resolve_timeout);
        match outcome {
            Outcome::Updated(mut incident, entries) if was_drill && !incident.drill => {
                tx.batch.insert_event(&scored.encoded, Some(incident.id))?;
                tx.changes.log(incident.id, entries);
                self.track_expiry(tx, &mut incident, validity, event.received_at)?;
                let pending = tx.pending(incident.id)?;
                let fx =
                    self.decide(tx, |ctx| steps::drill_turned_real(ctx, &mut incident, &pending));
                tx.apply(&incident, fx)?;
                tx.changes.save(incident);
            }
            Outcome::Opened(mut incident, entries) => {
                // The services it affects: the ones named and everything downstream of them.
                let named = event
                    .service
                    .iter()
                    .chain(event.assessment.iter().flat_map(|a| &a.services))
                    .map(String::as_str);
                incident.scope = tx.rt.triage().catalog.scope(named);
                tx.batch.insert_event(&scored.encoded, Some(incident.id))?;
                self.track_expiry(tx, &mut incident, validity, event.received_at)?;
                self.keep(tx, incident, entries, Effects::new())?;
            }
            Outcome::Updated(mut incident, entries) => {
                match event.action {
                    Action::Acknowledge => {
                        self.metrics.incident_acted(&incident, PersonAction::Acknowledge);
                    }
                    Action::Resolve => {
                        self.metrics.incident_acted(&incident, PersonAction::Resolve);
                    }
                    Action::Trigger => {
                        self.track_expiry(tx, &mut incident, validity, event.received_at)?;
                        let pending = tx.pending(incident.id)?;
                        let aware_at = event.received_at;
                        let fx = self.decide(tx, |ctx| {
                            let mut fx = steps::start_comms_updates(ctx, &incident, &pending);
                            fx.extend(notices::reassessed(ctx, &mut incident, aware_at));
                            fx
                        });
                        tx.batch.insert_event(&scored.encoded, Some(incident.id))?;
                        return self.keep(tx, incident, entries, fx);
                    }
                }
                tx.batch.insert_event(&scored.encoded, Some(incident.id))?;
                self.keep(tx, incident, entries, Effects::new())?;
            }
            Outcome::Ignored(why) => {
                tx.batch.insert_event(&scored.encoded, None)?;
                tracing::debug!(event = %event.id, source = %event.source, key = %tx.rt.redactor.log_text(&event.dedup_key, &crate::redact::Known::of_event(&tx.rt.redactor, event)), why, "event stored; no incident change");
            }
        }
        Ok(())
    }

    /// A repeated trigger that changes nothing but its open incident's count and last-seen
    /// time — the common case in an alert storm — is stored as those counts alone, without
    /// reading and rewriting the incident (what [`incident::apply`] would do to it is exactly
    /// that). Its incident and the new count, or `None` for the full path: a rule failed (its
    /// timeline entry), the decision differs from the stored one, a drill is involved, a
    /// notice rule applies (it may have to attach), the event moves the alert's expiry, or this
    /// batch already holds the incident.
    fn repeat(&self, tx: &Txn, scored: &Scored) -> Option<(IncidentId, u64)> {
        let event = &scored.encoded.event;
        let decision = &scored.evaluation.decision;
        if !scored.evaluation.failures.is_empty()
            || tx.changes.open.get(&event.source).is_some_and(|m| m.contains_key(&event.dedup_key))
            || tx.rt.config.escalation.notices.iter().any(|r| r.applies(decision))
        {
            return None;
        }
        let validity = escalation::validity(event, tx.rt.config.resolve_timeout);
        let (id, stored) = self.open.repeat(scored, validity)?;
        if tx.changes.incidents.contains_key(&id) {
            return None;
        }
        Some((id, tx.changes.counted.get(&id).map_or(stored, |c| c.count) + 1))
    }

    /// Moves the incident's expiry to what a trigger arriving at `received` says
    /// ([`escalation::Validity`]), with its timer.
    fn track_expiry(
        &self,
        tx: &mut Txn,
        incident: &mut Incident,
        validity: escalation::Validity,
        received: Timestamp,
    ) -> Result<(), StoreError> {
        let next = validity.apply(incident.expiry.clone(), received);
        if next == incident.expiry {
            return Ok(());
        }
        if incident.expiry.is_some() {
            tx.cancel(incident.id, |k| matches!(k, TimerKind::Expiry))?;
        }
        if let Some(e) = &next {
            tx.schedule(incident.id, e.ends_at, TimerKind::Expiry)?;
        }
        incident.expiry = next;
        Ok(())
    }

    pub(super) fn act(
        &self,
        tx: &mut Txn,
        id: IncidentId,
        action: PersonAction,
        by: &str,
    ) -> Result<Result<Incident, ActError>, StoreError> {
        let Some(current) = tx.load(id)? else {
            return Ok(Err(ActError::NotFound(id)));
        };
        let done = match action {
            PersonAction::Acknowledge => incident::acknowledge(current, by, tx.now, None),
            PersonAction::Resolve => incident::resolve(current, by, tx.now, None),
        };
        match done {
            Ok((incident, entry)) => {
                self.metrics.incident_acted(&incident, action);
                self.keep(tx, incident, vec![entry], Effects::new())?;
                Ok(Ok(tx.changes.incidents[&id].clone()))
            }
            Err(e) => Ok(Err(e.into())),
        }
    }

    /// A person's change to an incident: decided by the module it belongs to, applied, and put
    /// on the timeline with them as the actor.
    pub(super) fn amend(
        &self,
        tx: &mut Txn,
        id: IncidentId,
        change: Amendment,
        by: &str,
    ) -> Result<Result<Incident, ActError>, StoreError> {
        let Some(mut incident) = tx.load(id)? else {
            return Ok(Err(ActError::NotFound(id)));
        };
        let now = tx.now;
        let people = &tx.rt.config.policies.people;
        let stamp = Stamp { by: by.to_string(), at: now };
        let pending = tx.pending(id)?;
        let i = &mut incident;
        let decided = match change {
            Amendment::Note { text } => Ok(incident::note(text)),
            Amendment::Role { role, person } => incident::assign_role(i, role, person, people),
            Amendment::NoticeSent { index, at, reference } => {
                notices::mark_sent(i, &pending, index, at, reference, by, now)
            }
            Amendment::Awareness { at, note } => notices::awareness(i, &pending, at, note, by, now),
            Amendment::Review { summary, went_well, went_badly } => {
                crate::review::edit(i, summary, went_well, went_badly, stamp)
            }
            Amendment::AddAction { title, owner, due } => {
                crate::review::add_action(i, title, owner, due, people, stamp)
            }
            Amendment::UpdateAction { action, state, owner, due } => {
                let change = (state, owner, due);
                crate::review::update_action(i, &pending, action, change, people, stamp)
            }
        };
        let amended = match decided {
            Ok(a) => a,
            Err(m) => return Ok(Err(ActError::Invalid(m))),
        };
        tx.apply(&incident, amended.effects)?;
        let e = Entry {
            at: now,
            actor: by.to_string(),
            kind: amended.kind,
            message: amended.message,
            event_id: None,
            detail: serde_json::Value::Null,
        };
        tx.changes.save(incident.clone());
        tx.changes.log(id, vec![e]);
        Ok(Ok(incident))
    }

    pub(super) fn maintenance(
        &self,
        tx: &mut Txn,
        op: MaintenanceOp,
        by: &str,
    ) -> Result<Result<Window, String>, StoreError> {
        let now = tx.now;
        let mut windows = match tx.changes.windows.take() {
            Some(w) => w,
            None => self.windows.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        };
        let result = match op {
            MaintenanceOp::Open(mut w) => {
                let id = tx.batch.next_window_id()?;
                w.id = Some(id);
                w.created = Some(Stamp { by: by.to_string(), at: now });
                tx.batch.put_window(id, &w)?;
                windows.push(w.clone());
                Ok(w)
            }
            MaintenanceOp::End(id) => match windows.iter_mut().find(|w| w.id == Some(id)) {
                None => Err(format!("no open maintenance window with id {id}")),
                Some(w) => {
                    let planned = w.ends;
                    w.ends = now.max(w.starts);
                    tx.batch.put_window(id, w)?;
                    // The incidents it holds back page now, not at the planned end: their
                    // timers all sit at that one due time.
                    for t in tx.batch.timers_at(planned)? {
                        if let TimerKind::WindowEnds { window } = &t.kind
                            && *window == w.name
                            // Opened in this batch, it is not in the store yet.
                            && tx.load(t.incident)?.is_some_and(|i| {
                                i.held_by.as_ref().is_some_and(|h| h.id == Some(id))
                            })
                        {
                            tx.batch.remove_timer(&t)?;
                            tx.schedule(t.incident, w.ends, t.kind.clone())?;
                        }
                    }
                    Ok(w.clone())
                }
            },
        };
        // Windows that are over are forgotten in memory (they stay in the store for the record).
        windows.retain(|w| w.ends > now);
        tx.changes.windows = Some(windows);
        Ok(result)
    }

    pub(super) fn auto_resolve(
        &self,
        tx: &mut Txn,
        quiet: jiff::SignedDuration,
    ) -> Result<(), StoreError> {
        let now = tx.now;
        let Ok(cutoff) = now.checked_sub(quiet) else { return Ok(()) };
        for id in self.open.quiet_since(cutoff) {
            let Some(current) = tx.load(id)? else { continue };
            // A trigger earlier in this batch may have refreshed it.
            if current.last_seen >= cutoff || !current.status.is_open() {
                continue;
            }
            if let Ok((incident, mut entry)) = incident::resolve(current, "tocsin", now, None) {
                entry.message = format!("resolved automatically: no trigger for {quiet:#}");
                self.metrics.incident_acted(&incident, PersonAction::Resolve);
                self.keep(tx, incident, vec![entry], Effects::new())?;
            }
        }
        Ok(())
    }

    /// Fires the timers due at `tx.now`. Each row is deleted in this transaction, so it fires
    /// once; a timer that came due while the daemon was down fires now, once, and the step
    /// after it is scheduled from now, not from when it should have fired.
    pub(super) fn tick(&self, tx: &mut Txn) -> Result<(), StoreError> {
        let manual = self.clock.manual().is_some();
        for timer in tx.batch.due_timers(tx.now, 512)? {
            tx.batch.remove_timer(&timer)?;
            let Some(mut incident) = tx.load(timer.incident)? else { continue };
            let late = timers::late(timer.due_at, tx.now, self.started, manual);
            let pending = tx.pending(incident.id)?;
            let fired =
                self.decide(tx, |ctx| timers::fire(ctx, &timer, &mut incident, &pending, &late));
            match fired {
                Fired::Stale => {}
                Fired::Untouched(fx) => tx.apply(&incident, fx)?,
                Fired::Changed(fx) => {
                    tx.apply(&incident, fx)?;
                    tx.changes.save(incident);
                }
                Fired::Resolved(e) => {
                    self.metrics.incident_acted(&incident, PersonAction::Resolve);
                    self.keep(tx, incident, vec![e], Effects::new())?;
                }
            }
        }
        Ok(())
    }

    pub(super) fn claim(
        &self,
        tx: &mut Txn,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let policy = &tx.rt.config.notifications.delivery;
        let mut claimed = Vec::new();
        for mut n in tx.batch.due(tx.now, limit)? {
            let disabled = match n.channel {
                Channel::Webhook => tx.batch.disabled_endpoint(&n.recipient.address)?,
                _ => None,
            };
            match outbox::claim(&mut n, policy, disabled, tx.now) {
                Some(ended) => tx.record(&n, ended)?,
                None => {
                    tx.batch.put_notification(&n)?;
                    claimed.push(n);
                }
            }
        }
        Ok(claimed)
    }

    pub(super) fn report(
        &self,
        tx: &mut Txn,
        outcomes: Vec<(NotificationId, Attempt)>,
    ) -> Result<(), StoreError> {
        let policy = &tx.rt.config.notifications.delivery;
        for (id, attempt) in outcomes {
            let Some(mut n) = tx.batch.notification(id)? else { continue };
            // A receiver's answer may quote the message it got, personal data and all; the
            // error goes to the outbox row, the timeline and the log only scrubbed.
            let attempt = match attempt {
                Attempt::Failed(error) if n.state == outbox::State::Sending => {
                    Attempt::Failed(self.scrub_send_error(tx, &n, error)?)
                }
                other => other,
            };
            if let Some(t) = outbox::report(&mut n, attempt, policy, tx.now) {
                tx.record(&n, t)?;
            }
        }
        Ok(())
    }

    /// A send error without personal data or acknowledge tokens: its reason through the
    /// redactor with the known values of the incident's opening event, and through
    /// [`crate::links::redact`] however a receiver escaped the link it echoes. This is what the
    /// outbox row (`last_error`, a dead letter's reason), the timeline and the log keep.
    fn scrub_send_error(
        &self,
        tx: &mut Txn,
        n: &Notification,
        error: crate::notify::SendError,
    ) -> Result<crate::notify::SendError, StoreError> {
        let opening = match tx.batch.incident(n.incident_id)? {
            Some(incident) => tx.batch.event(incident.opened_by)?,
            None => None,
        };
        let redactor = &tx.rt.redactor;
        let known =
            opening.map(|e| crate::redact::Known::of_event(redactor, &e)).unwrap_or_default();
        Ok(error.map_reason(|reason| {
            let reason = redactor.log_text(&reason, &known);
            crate::links::redact(&reason).into_owned()
        }))
    }

    pub(super) fn queue_op(
        &self,
        tx: &mut Txn,
        id: NotificationId,
        op: QueueOp,
        by: &str,
    ) -> Result<Result<Notification, String>, StoreError> {
        let Some(mut n) = tx.batch.notification(id)? else {
            return Ok(Err(format!("no notification with id {id}")));
        };
        match outbox::operate(&mut n, op, by, tx.now) {
            Ok(t) => {
                tx.record(&n, t)?;
                Ok(Ok(n))
            }
            Err(why) => Ok(Err(why)),
        }
    }

    /// Checks what maintenance windows hold back against the windows as they are: at the first
    /// commit after start-up, and after a reload that changed `maintenance:`. An incident an
    /// earlier version held back without recording it ([`super::LegacyHold`]) is held
    /// properly, with a timer at the window's end (or now, if it is over); one held by a config
    /// window that the config now ends earlier or later, or no longer has, gets its timer moved
    /// to the new end (or now), instead of being noticed at the old end. Idempotent: a restart
    /// finds nothing left to do. API windows change only through the API, which moves their
    /// timers itself.
    pub(super) fn recheck_held(&self, tx: &mut Txn) -> Result<(), StoreError> {
        let now = tx.now;
        let config = &tx.rt.config.escalation.maintenance;
        let legacy = self.legacy_holds.borrow().clone();
        if !legacy.is_empty() {
            let api: Vec<Window> = match &tx.changes.windows {
                Some(w) => w.clone(),
                None => self.windows.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            };
            for hold in legacy {
                let Some(incident) = tx.load(hold.id)? else { continue };
                if !incident.status.is_open() || incident.held_by.is_some() {
                    continue;
                }
                let (held, line) =
                    escalation::windows::legacy_hold(config, &api, &hold.window, hold.until, now);
                self.hold(tx, incident, held, line)?;
            }
        }
        for id in self.open.held_by_config() {
            let Some(incident) = tx.load(id)? else { continue };
            let Some(was) = incident.held_by.clone().filter(|h| h.id.is_none()) else { continue };
            if !incident.status.is_open() {
                continue;
            }
            if let Some((held, line)) = escalation::windows::config_hold_moved(config, &was, now) {
                self.hold(tx, incident, held, line)?;
            }
        }
        Ok(())
    }

    /// Holds the incident back until `held.until` (now, if that is past): its window-end timer
    /// moves there, and the timeline says why (`line`).
    fn hold(
        &self,
        tx: &mut Txn,
        mut incident: Incident,
        held: escalation::Held,
        line: String,
    ) -> Result<(), StoreError> {
        let now = tx.now;
        tx.cancel(incident.id, |k| matches!(k, TimerKind::WindowEnds { .. }))?;
        let kind = TimerKind::WindowEnds { window: held.window.clone() };
        tx.schedule(incident.id, held.until.max(now), kind)?;
        if incident
            .decision
            .suppressed
            .as_deref()
            .and_then(escalation::parse_window_reason)
            .is_some()
        {
            incident.decision.suppressed =
                Some(escalation::window_reason(&held.window, held.until));
        }
        incident.held_by = Some(held);
        tx.changes.log(incident.id, vec![entry(now, EntryKind::Note, line)]);
        tx.changes.save(incident);
        Ok(())
    }

    /// Stores one override change in the batch and notes it for the in-memory set.
    pub(super) fn override_op(
        &self,
        tx: &mut Txn,
        op: OverrideOp,
    ) -> Result<Result<Override, String>, StoreError> {
        let (batch, changed) = (&mut *tx.batch, &mut tx.changes.overrides);
        match op {
            OverrideOp::Add { rotation, person, from, until, by, reason } => {
                let id = batch.next_override_id()?;
                let o =
                    Override { id, rotation, person, from, until, by, reason, created_at: tx.now };
                batch.put_override(&o)?;
                tracing::info!(id, rotation = %o.rotation, person = %o.person, from = %o.from, until = %o.until, by = %o.by, "rotation override added");
                changed.push(OverrideChange::Added(o.clone()));
                Ok(Ok(o))
            }
            OverrideOp::Delete { rotation, id, by } => match batch.rotation_override(id)? {
                Some(o) if o.rotation == rotation => {
                    batch.delete_override(id)?;
                    tracing::info!(id, %rotation, person = %o.person, %by, "rotation override deleted");
                    changed.push(OverrideChange::Removed(id));
                    Ok(Ok(o))
                }
                _ => Ok(Err(format!("rotation `{rotation}` has no override {id}"))),
            },
        }
    }

    /// Re-enables a webhook endpoint; `Err`: it was not disabled.
    pub(super) fn enable_webhook(
        &self,
        tx: &mut Txn,
        name: &str,
        by: &str,
    ) -> Result<Result<String, String>, StoreError> {
        Ok(match tx.batch.enable_endpoint(name)? {
            Some(why) => {
                tracing::info!(endpoint = %name, %by, was = %why, "webhook endpoint re-enabled");
                tx.changes.due = true;
                Ok(why)
            }
            None => Err(format!("webhook `{name}` is not disabled")),
        })
    }
}
