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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escalation::Window;
    use crate::escalation::testing::*;
    use crate::rules::Sensitivity;

    fn timer(kind: TimerKind, due_at: Timestamp) -> Timer {
        Timer { id: 1, incident: 7, due_at, kind }
    }

    /// The incident paged at T0 with step 1 of `page`.
    fn paged(rt: &crate::runtime::Runtime) -> Incident {
        let mut i = plain_incident();
        let p = rt.config.policies.policies["page"].clone();
        steps::fire_step(&ctx(rt, t0()), &mut i, &p, 0, 0, "opened");
        i
    }

    fn effects(f: Fired) -> Effects {
        match f {
            Fired::Changed(fx) | Fired::Untouched(fx) => fx,
            other => panic!("not fired: {other:?}"),
        }
    }

    fn recipients(fx: &Effects) -> Vec<String> {
        fx.notified().iter().map(|n| n.delivery.recipient.address.clone()).collect()
    }

    #[test]
    fn late_says_why_only_past_a_minute() {
        assert_eq!(late(t0(), mins(1), t0(), false), "");
        assert!(
            late(mins(0), mins(5), mins(1), false).contains("while the daemon was not running")
        );
        assert!(late(mins(2), mins(5), mins(1), true).contains("manual clock"));
        assert!(late(mins(2), mins(5), mins(1), false).contains("could not fire it on time"));
    }

    #[tokio::test]
    async fn an_escalation_step_pages_the_next_step_and_stops_after_the_last() {
        let rt = runtime(TWO_STEPS);
        let mut i = paged(&rt);
        let kind = TimerKind::Step { policy: "page".into(), step: 1, round: 0 };
        let fx = effects(fire(&ctx(&rt, mins(5)), &timer(kind, mins(5)), &mut i, &[], ""));
        assert_eq!(recipients(&fx), ["ben@example.com"]);
        assert_eq!(fx.counted(), [Count::EscalationStep]);
        assert!(fx.notified()[0].note.is_some(), "an escalation says why");
        assert!(fx.scheduled().is_empty(), "the last step, no repeat: nothing after it");
        let state = i.escalation.unwrap();
        assert_eq!(
            (state.step, state.stopped.as_deref()),
            (1, Some("the policy has no further steps"))
        );
    }

    #[tokio::test]
    async fn an_escalation_step_is_stale_once_acknowledged_and_stops_when_its_policy_is_gone() {
        let rt = runtime(TWO_STEPS);
        let kind = TimerKind::Step { policy: "page".into(), step: 1, round: 0 };
        let mut i = paged(&rt);
        i.status = Status::Acknowledged;
        assert_eq!(fire(&ctx(&rt, mins(5)), &timer(kind, mins(5)), &mut i, &[], ""), Fired::Stale);
        let mut i = paged(&rt);
        i.escalation.as_mut().unwrap().policy = "gone".into();
        let kind = TimerKind::Step { policy: "gone".into(), step: 1, round: 0 };
        let fx = effects(fire(&ctx(&rt, mins(5)), &timer(kind, mins(5)), &mut i, &[], ""));
        assert!(fx.notified().is_empty());
        assert!(i.escalation.unwrap().stopped.unwrap().contains("no longer in the config"));
    }

    #[tokio::test]
    async fn an_acknowledgement_that_runs_out_triggers_again_from_step_one() {
        let rt = runtime(TWO_STEPS);
        let mut i = paged(&rt);
        i = incident::acknowledge(i, "user:ana", mins(1), None).unwrap().0;
        let kind = TimerKind::AckExpired { policy: "page".into() };
        let fx = effects(fire(&ctx(&rt, mins(31)), &timer(kind, mins(31)), &mut i, &[], ""));
        assert_eq!(i.status, Status::Triggered);
        assert!(i.acknowledged.is_none());
        assert_eq!(recipients(&fx), ["ana@example.com"]);
        assert!(fx.entries().next().unwrap().message.contains("back to triggered"));
    }

    #[tokio::test]
    async fn a_notice_reminder_reaches_the_legal_liaison_until_the_notice_is_sent() {
        let rt = runtime(NOTICE);
        let mut i = incident(decision("sev2", Sensitivity::Personal, false));
        i.roles.insert("legal_liaison".into(), "lena".into());
        notices::attach(&ctx(&rt, t0()), &mut i, t0());
        let kind = TimerKind::NoticeReminder { notice: 0 };
        let fx =
            effects(fire(&ctx(&rt, mins(60)), &timer(kind.clone(), mins(60)), &mut i, &[], ""));
        assert_eq!(recipients(&fx), ["lena@example.com"]);
        i.notices[0].sent = Some(incident::Stamp { by: "user:lena".into(), at: mins(61) });
        assert_eq!(
            fire(&ctx(&rt, mins(61)), &timer(kind, mins(61)), &mut i, &[], ""),
            Fired::Stale
        );
    }

    #[tokio::test]
    async fn a_missed_notice_deadline_is_recorded_and_reaches_the_incident_lead() {
        let rt = runtime(NOTICE);
        let mut i = incident(decision("sev2", Sensitivity::Personal, false));
        notices::attach(&ctx(&rt, t0()), &mut i, t0());
        let kind = TimerKind::NoticeDeadline { notice: 0 };
        let fx = effects(fire(&ctx(&rt, mins(240)), &timer(kind, mins(240)), &mut i, &[], ""));
        assert!(i.notices[0].missed);
        assert_eq!(fx.counted(), [Count::NoticeMissed]);
        let lines: Vec<&str> = fx.entries().map(|e| e.message.as_str()).collect();
        assert!(lines[0].starts_with("MISSED DEADLINE"), "{lines:?}");
        assert!(lines[1].contains("nobody holds the `incident_lead` role"), "{lines:?}");
    }

    #[tokio::test]
    async fn a_status_update_reminder_carries_a_draft_and_schedules_the_next() {
        let rt = runtime("communications: {update_every: {sev1: 30m}}\n");
        let mut i = incident(decision("sev1", Sensitivity::None, true));
        i.roles.insert("communications_lead".into(), "cora".into());
        let fx = effects(fire(
            &ctx(&rt, mins(30)),
            &timer(TimerKind::CommsUpdate, mins(30)),
            &mut i,
            &[],
            "",
        ));
        assert_eq!(fx.scheduled(), [(mins(60), &TimerKind::CommsUpdate)]);
        let n = fx.notified();
        assert_eq!(n[0].delivery.recipient.address, "cora@example.com");
        assert!(
            n[0].note.as_ref().unwrap().1.contains("Draft from the approved customer template")
        );
        i.decision.customer_facing = false;
        let stale =
            fire(&ctx(&rt, mins(60)), &timer(TimerKind::CommsUpdate, mins(60)), &mut i, &[], "");
        assert_eq!(stale, Fired::Stale, "no longer customer-facing: the reminders end");
    }

    #[tokio::test]
    async fn an_overdue_action_item_reminds_its_owner_until_it_is_closed() {
        let rt = runtime("");
        let mut i = plain_incident();
        let stamp = incident::Stamp { by: "user:ana".into(), at: t0() };
        i.review = Some(crate::review::Review::new(t0()));
        let people = rt.config.policies.people.clone();
        crate::review::add_action(&mut i, "fix".into(), "ben".into(), mins(10), &people, stamp)
            .unwrap();
        let kind = TimerKind::ActionDue { action: 1 };
        let fx =
            effects(fire(&ctx(&rt, mins(10)), &timer(kind.clone(), mins(10)), &mut i, &[], ""));
        assert_eq!(recipients(&fx), ["ben@example.com"]);
        assert_eq!(fx.scheduled().len(), 1);
        i.review.as_mut().unwrap().actions[0].state = crate::review::ActionState::Done;
        assert_eq!(
            fire(&ctx(&rt, mins(20)), &timer(kind, mins(20)), &mut i, &[], ""),
            Fired::Stale
        );
    }

    #[tokio::test]
    async fn an_alert_past_its_end_resolves_unless_a_refresh_moved_it() {
        let rt = runtime("");
        let mut i = plain_incident();
        i.expiry = Some(crate::escalation::Expiry { ends_at: mins(5), refreshed_at: t0() });
        let t = timer(TimerKind::Expiry, mins(5));
        match fire(&ctx(&rt, mins(5)), &t, &mut i.clone(), &[], "") {
            Fired::Resolved(e) => assert!(e.message.contains("endsAt"), "{}", e.message),
            other => panic!("{other:?}"),
        }
        // A trigger at 0:04 kept it valid for another 5 minutes.
        i.last_seen = mins(4);
        let fx = effects(fire(&ctx(&rt, mins(5)), &t, &mut i, &[], ""));
        assert_eq!(fx.scheduled(), [(mins(9), &TimerKind::Expiry)]);
    }

    #[tokio::test]
    async fn a_window_end_pages_unless_another_window_covers_the_incident() {
        let rt = runtime(TWO_STEPS);
        let window = |name: &str, ends| Window {
            id: Some(1),
            created: None,
            name: name.into(),
            starts: t0(),
            ends,
            source: None,
            service: None,
            labels: Default::default(),
        };
        let first = window("db", mins(10));
        let mut i = plain_incident();
        i.decision.suppressed = Some(first.reason());
        i.held_by = Some(first.held());
        let kind = TimerKind::WindowEnds { window: "db".into() };
        let longer = [window("longer", mins(60))];
        let c = Ctx { rt: &rt, windows: &longer, now: mins(10) };
        let fx = effects(fire(&c, &timer(kind.clone(), mins(10)), &mut i.clone(), &[], ""));
        assert!(fx.notified().is_empty(), "still held back");
        assert_eq!(
            fx.scheduled(),
            [(mins(60), &TimerKind::WindowEnds { window: "longer".into() })]
        );
        let fx = effects(fire(&ctx(&rt, mins(10)), &timer(kind, mins(10)), &mut i, &[], ""));
        assert_eq!(recipients(&fx), ["ana@example.com"]);
        assert!(i.held_by.is_none() && i.decision.suppressed.is_none());
    }

    const NOTICE: &str = r#"notices:
  - name: "GDPR"
    when: {sensitivity: [personal]}
    deadline: 4h
    mandatory: true
    reminders: [1h]
"#;
}
