//! Firing a due timer: what each kind does to its incident (escalation step, acknowledgement
//! expiry, notice reminder and deadline, status-update reminder, action-item reminder,
//! maintenance window end, alert expiry).
//!
//! [`fire`] is a plain function of (the runtime, the timer, its incident, the incident's other
//! pending timers, now); the journal writer deletes the timer row, loads the incident, calls
//! it, and applies what it returns.

use jiff::{SignedDuration, Timestamp};

use super::steps::{self, Ctx};
use super::{Timer, TimerKind, notices};
use crate::effect::{Count, Effects};
use crate::incident::{self, Entry, EntryKind, Incident, Status};
use crate::outbox::Reason;

/// What firing a timer does to its incident.
#[derive(Debug, PartialEq)]
pub enum Fired {
    /// Nothing: the timer is stale (the incident moved on).
    Stale,
    /// The incident is unchanged; apply the effects.
    Untouched(Effects),
    /// The incident changed: apply the effects and save it.
    Changed(Effects),
    /// The alert expired: the incident is resolved with this entry (the writer runs what a
    /// resolve sets off).
    Resolved(Entry),
}

/// Why a timer fired late, for its timeline entry (empty when it fired within a minute).
/// Downtime is worth investigating, a rehearsal's clock jump is not.
pub fn late(due_at: Timestamp, now: Timestamp, started: Timestamp, manual_clock: bool) -> String {
    if now.duration_since(due_at) <= SignedDuration::from_secs(60) {
        return String::new();
    }
    let why = if due_at < started {
        "it came due while the daemon was not running"
    } else if manual_clock {
        "the manual clock (TOCSIN_FAKE_CLOCK) was moved past it"
    } else {
        "the daemon could not fire it on time (a suspended machine or a stalled store)"
    };
    format!(" (due at {due_at}; fired late: {why})")
}

/// Fires `timer` on its incident. `pending`: the incident's other timers; `late`: see [`late`].
pub fn fire(
    ctx: &Ctx,
    timer: &Timer,
    incident: &mut Incident,
    pending: &[Timer],
    late: &str,
) -> Fired {
    let changed = |fx: Option<Effects>| fx.map_or(Fired::Stale, Fired::Changed);
    match &timer.kind {
        TimerKind::Step { policy, step, round } => {
            escalation_step(ctx, incident, policy, *step, *round, late)
        }
        TimerKind::AckExpired { policy } => changed(ack_expired(ctx, incident, policy, late)),
        TimerKind::NoticeReminder { notice } => {
            changed(notices::reminder(ctx, incident, *notice, late))
        }
        TimerKind::NoticeDeadline { notice } => {
            changed(notices::deadline(ctx, incident, *notice, late))
        }
        TimerKind::CommsUpdate => changed(comms_update(ctx, incident)),
        TimerKind::Expiry => expiry(ctx, incident, pending, late),
        TimerKind::WindowEnds { window } => {
            changed(window_ends(ctx, incident, pending, window, late))
        }
        TimerKind::ActionDue { action } => changed(action_due(ctx, incident, *action, late)),
    }
}

/// Nobody acknowledged in time: the next step of the policy the incident is on fires.
fn escalation_step(
    ctx: &Ctx,
    incident: &mut Incident,
    policy: &str,
    step: u32,
    round: u32,
    late: &str,
) -> Fired {
    let current = incident.escalation.as_ref().is_some_and(|e| e.policy == policy);
    if incident.status != Status::Triggered || !current {
        return Fired::Stale;
    }
    let mut fx = Effects::new();
    let Some(p) = ctx.rt.config.policies.policies.get(policy).cloned() else {
        let gone = format!("escalation stopped: policy `{policy}` is no longer in the config");
        if let Some(e) = &mut incident.escalation {
            e.next_at = None;
            e.stopped = Some(gone.clone());
        }
        fx.log(ctx.now, EntryKind::Escalated, gone);
        return Fired::Changed(fx);
    };
    let waited = incident
        .escalation
        .as_ref()
        .and_then(|e| p.step(e.step).and_then(|s| s.wait))
        .map(|w| format!("{:#}", super::signed(w)))
        .unwrap_or_else(|| "the wait".into());
    fx.count(Count::EscalationStep);
    let why = format!("nobody acknowledged within {waited}{late}");
    fx.extend(steps::fire_step(ctx, incident, &p, step, round, &why));
    Fired::Changed(fx)
}

/// An acknowledgement ran out without a resolve: back to triggered, paging from step 1.
fn ack_expired(ctx: &Ctx, incident: &mut Incident, policy: &str, late: &str) -> Option<Effects> {
    if incident.status != Status::Acknowledged {
        return None;
    }
    let p = ctx.rt.config.policies.policies.get(policy).cloned()?;
    let by =
        incident.acknowledged.take().map(|a| format!("{} at {}", a.by, a.at)).unwrap_or_default();
    incident.status = Status::Triggered;
    let mut fx = Effects::new();
    fx.log(
        ctx.now,
        EntryKind::Escalated,
        format!(
            "acknowledged by {by} but not resolved in time{late}: back to triggered, escalating again from step 1"
        ),
    );
    fx.count(Count::EscalationStep);
    fx.extend(steps::fire_step(ctx, incident, &p, 0, 0, "the acknowledgement expired"));
    Some(fx)
}

/// The communications lead is asked for the next status update, with a draft from the
/// approved customer template, while the incident still calls for updates.
fn comms_update(ctx: &Ctx, incident: &Incident) -> Option<Effects> {
    if !incident.status.is_open() {
        return None;
    }
    // The incident may have stopped calling for updates (no longer customer-facing, less
    // severe): the reminders end there.
    let every = ctx.rt.config.escalation.comms_every_for(&incident.decision)?;
    let next = super::after(ctx.now, every);
    let mut fx = Effects::new();
    fx.schedule(next, TimerKind::CommsUpdate);
    // The draft comes from the approved `customer` email template, rendered for the incident
    // as it stands now.
    let draft = crate::compose::customer_draft(ctx.rt, incident, Reason::Reminder, ctx.now);
    let line = format!(
        "A status update for incident #{} is due (every {:#} at {}). Next reminder at {next}.\nDraft from the approved customer template:\n---\n{}\n{}\n---",
        incident.id,
        super::signed(every),
        incident.decision.severity,
        draft.subject,
        draft.text.trim_end(),
    );
    fx.extend(steps::remind_role(ctx, incident, "communications_lead", "Status update due", &line));
    Some(fx)
}

/// The sender's `endsAt` passed: resolve, unless a refresh moved it (then wait for the new end,
/// one timer per incident).
fn expiry(ctx: &Ctx, incident: &mut Incident, pending: &[Timer], late: &str) -> Fired {
    let Some(expiry) = incident.expiry.clone() else { return Fired::Stale };
    if !incident.status.is_open() {
        return Fired::Stale;
    }
    let due = expiry.due(incident.last_seen);
    if due > ctx.now {
        let mut fx = Effects::new();
        if !pending.iter().any(|t| t.kind == TimerKind::Expiry) {
            fx.schedule(due, TimerKind::Expiry);
        }
        return Fired::Untouched(fx);
    }
    match incident::resolve(incident.clone(), "tocsin", ctx.now, None) {
        Ok((resolved, mut e)) => {
            e.message = format!(
                "resolved: the sender's endsAt {due} passed without a refresh (the alert stopped firing, or its sender stopped sending){late}"
            );
            *incident = resolved;
            Fired::Resolved(e)
        }
        Err(_) => Fired::Stale,
    }
}

/// The window holding the incident back ended: held on if another window (or the same one,
/// extended) covers it now, else it pages (see [`steps::window_ended`]).
fn window_ends(
    ctx: &Ctx,
    incident: &mut Incident,
    pending: &[Timer],
    window: &str,
    late: &str,
) -> Option<Effects> {
    if !incident.status.is_open() || incident.held_by.is_none() {
        return None;
    }
    let held_reason = incident.decision.suppressed.clone();
    let Some(w) = ctx.covering(incident, ctx.now) else {
        return Some(steps::window_ended(ctx, incident, pending, window, held_reason, late));
    };
    incident.decision.suppressed = Some(w.reason());
    incident.held_by = Some(w.held());
    let mut fx = Effects::new();
    fx.schedule(w.ends, TimerKind::WindowEnds { window: w.name.clone() });
    fx.log(
        ctx.now,
        EntryKind::Note,
        format!(
            "maintenance window `{window}` ended, but `{}` covers the incident until {}: still held back",
            w.name, w.ends
        ),
    );
    Some(fx)
}

/// An open action item of the review is overdue: its owner is reminded, and again every
/// `escalation.action_remind_every` while it stays open.
fn action_due(ctx: &Ctx, incident: &Incident, action: u32, late: &str) -> Option<Effects> {
    let item = incident.review.as_ref()?.actions.iter().find(|a| a.id == action)?;
    if item.state != crate::review::ActionState::Open {
        return None;
    }
    let next = super::after(ctx.now, ctx.rt.config.escalation.action_remind_every);
    let mut fx = Effects::new();
    fx.schedule(next, TimerKind::ActionDue { action });
    let line = format!(
        "Action item #{} of the review of incident #{} is overdue (due {}): {}. Next reminder at {next}.",
        item.id, incident.id, item.due, item.title
    );
    fx.log(
        ctx.now,
        EntryKind::Review,
        format!("overdue: action item #{} (owner {}){late}", item.id, item.owner),
    );
    fx.extend(steps::remind_person(
        ctx,
        incident,
        &item.owner,
        "responder",
        "Action item overdue",
        &line,
    ));
    Some(fx)
}
