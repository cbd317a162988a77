//! What an incident's life sets off: the first page when it opens, each escalation step, the
//! stop on acknowledgement, the resolution notices and review when it resolves, the page held
//! back by a maintenance window, and reminders to role holders.
//!
//! Plain functions of (the runtime, the incident, its pending timers, now) returning
//! [`Effects`]; the journal writer reads what they need and applies what they return.

use jiff::Timestamp;

use super::{EscalationState, Timer, TimerKind, Window};
use crate::effect::{Draft, Effects, Notify};
use crate::incident::{EntryKind, Incident, Status};
use crate::notify::Channel;
use crate::outbox::{Notification, Reason, State};
use crate::policy::{self, Delivery, Policy};
use crate::runtime::Runtime;

/// What the decisions read besides the incident: the runtime snapshot of the batch, the API's
/// maintenance windows as of the batch, and now.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub rt: &'a Runtime,
    pub windows: &'a [Window],
    pub now: Timestamp,
}

impl Ctx<'_> {
    /// The maintenance window (the config's or the API's) that covers the incident at `at`.
    pub fn covering(&self, incident: &Incident, at: Timestamp) -> Option<Window> {
        self.rt
            .config
            .escalation
            .maintenance
            .iter()
            .chain(self.windows)
            .find(|w| w.covers(incident, at))
            .cloned()
    }

    /// Picks the incident's policy (recording the choice on it) and returns it.
    pub fn choose_policy(&self, incident: &mut Incident) -> Option<Policy> {
        let floor = self.rt.config.escalation.severity_floor;
        self.rt.config.policies.choose_for(incident, floor)
    }

    fn log_path(&self) -> Option<String> {
        self.rt.config.notifications.log_path.as_ref().map(|p| p.display().to_string())
    }
}

/// A new incident (its roles already filled): maintenance windows, its policy, the notices it
/// owes, the first escalation step, and the status-update reminders.
pub fn opened(ctx: &Ctx, incident: &mut Incident) -> Effects {
    let now = ctx.now;
    let mut fx = Effects::new();
    if !incident.roles.is_empty() {
        let held: Vec<String> = incident.roles.iter().map(|(r, p)| format!("{r}: {p}")).collect();
        fx.log(now, EntryKind::RoleChanged, format!("roles: {}", held.join(", ")));
    }
    if incident.decision.suppressed.is_none()
        && let Some(w) = ctx.covering(incident, incident.first_seen)
    {
        incident.decision.suppressed = Some(w.reason());
        incident.held_by = Some(w.held());
        // When the window ends with the incident still open, it pages then.
        fx.schedule(w.ends, TimerKind::WindowEnds { window: w.name });
    }
    let policy = ctx.choose_policy(incident);
    if let Some(choice) = &incident.policy_choice {
        let name = choice.policy.as_deref().unwrap_or("none");
        fx.log(now, EntryKind::Note, format!("escalation policy `{name}`: {}", choice.why));
    }
    // Notices first: a legal obligation holds even when notifications are suppressed, and
    // the legal liaison's first message states each notice and its deadline.
    let aware_at = incident.first_seen;
    fx.extend(super::notices::attach(ctx, incident, aware_at));
    match &policy {
        _ if incident.decision.suppressed.is_some() => {
            let reason = incident.decision.suppressed.clone().unwrap_or_default();
            let held: Vec<String> = match &policy {
                Some(p) => step_deliveries(ctx.rt, incident, p, 0, true)
                    .0
                    .iter()
                    .map(Delivery::describe)
                    .collect(),
                None => Vec::new(),
            };
            fx.log(
                now,
                EntryKind::Suppressed,
                format!(
                    "suppressed ({reason}); held back {} notification(s){}{}",
                    held.len(),
                    if held.is_empty() { "" } else { ": " },
                    held.join(", ")
                ),
            );
        }
        None => fx.log(
            now,
            EntryKind::Note,
            "no policy notifies anyone for this incident (no default_policy, severity_policies or rule-chosen policy)".to_string(),
        ),
        Some(p) => fx.extend(fire_step(ctx, incident, p, 0, 0, "the incident opened")),
    }
    if incident.decision.suppressed.is_none()
        && let Some(every) = ctx.rt.config.escalation.comms_every_for(&incident.decision)
    {
        fx.schedule(super::after(now, every), TimerKind::CommsUpdate);
    }
    fx
}

/// The deliveries of `step`: its entries, plus — on the first page only — the roles the
/// triage brings in and the owners of the affected services. The second value lists roles
/// nobody holds.
pub fn step_deliveries(
    rt: &Runtime,
    incident: &Incident,
    policy: &Policy,
    step: u32,
    first: bool,
) -> (Vec<Delivery>, Vec<String>) {
    let log = rt.config.notifications.log_path.as_ref().map(|p| p.display().to_string());
    let mut targets: Vec<policy::Entry> =
        policy.step(step).map(|s| s.notify.clone()).unwrap_or_default();
    if first {
        // A rule's policy the severity floor overrode still pages its first step.
        if let Some(also) = incident
            .policy_choice
            .as_ref()
            .and_then(|c| c.also.as_ref())
            .and_then(|name| rt.config.policies.policies.get(name))
        {
            for e in also.step(0).map(|s| s.notify.clone()).unwrap_or_default() {
                if !targets.contains(&e) {
                    targets.push(e);
                }
            }
        }
        for role in super::involved_roles(&incident.decision) {
            targets.push(policy::Entry {
                audience: super::role_audience(&role).to_string(),
                target: policy::Target::Role(role),
                channels: rt.config.escalation.involve_channels.clone(),
            });
        }
        // The owners of every affected service (from the catalog) are paged with the first
        // step, as responders.
        for target in super::owner_targets(&rt.triage().catalog, &incident.scope) {
            if !targets.iter().any(|t| t.target == target) {
                targets.push(policy::Entry {
                    audience: "responder".to_string(),
                    target,
                    channels: rt.config.escalation.involve_channels.clone(),
                });
            }
        }
    }
    rt.config.policies.deliveries(&targets, &incident.roles, log.as_deref())
}

/// Fires escalation step `step` of round `round`: its notifications, the next step's timer,
/// and the incident's escalation state.
pub fn fire_step(
    ctx: &Ctx,
    incident: &mut Incident,
    policy: &Policy,
    step: u32,
    round: u32,
    why: &str,
) -> Effects {
    let (rt, now) = (ctx.rt, ctx.now);
    let first = step == 0 && round == 0 && incident.escalation.is_none();
    let (deliveries, unfilled) = step_deliveries(rt, incident, policy, step, first);
    let log = ctx.log_path();
    let (deliveries, drill_note) = crate::drill::live::route(
        &rt.config.drills,
        &rt.config.policies,
        incident,
        deliveries,
        log.as_deref(),
    );
    let reason = if first { Reason::New } else { Reason::Escalated };
    let steps = policy.steps.len();
    let mut fx = Effects::new();
    fx.log(
        now,
        EntryKind::Escalated,
        format!(
            "escalation step {} of {steps} (round {} of {}) of policy `{}`: {why}; notifying {}",
            step + 1,
            round + 1,
            policy.repeat + 1,
            policy.name,
            if deliveries.is_empty() {
                "nobody".to_string()
            } else {
                deliveries.iter().map(Delivery::describe).collect::<Vec<_>>().join(", ")
            },
        ),
    );
    if let Some(note) = drill_note {
        fx.log(now, EntryKind::Note, note);
    }
    for role in unfilled {
        fx.log(
            now,
            EntryKind::Note,
            format!("role `{role}` is not filled, so nobody was notified for it; assign it with POST /api/v1/incidents/{}/roles", incident.id),
        );
    }
    let label = format!("policy {}, step {}", policy.name, step + 1);
    let line = format!("Escalated to step {} of policy `{}`: {why}.", step + 1, policy.name);
    let note = (!first).then(|| ("Escalated".to_string(), line.clone()));
    for d in &deliveries {
        // The communications lead starts from the approved customer wording, as the
        // status-update reminders do: in full where there is room (email, webhook); an SMS
        // says where to find it when an email goes to them too.
        let draft = match d.channel {
            _ if !first || !crate::templates::is_communications(&d.audience) => Draft::No,
            Channel::Email | Channel::Webhook => Draft::Full,
            Channel::Sms
                if deliveries.iter().any(|e| {
                    e.channel == Channel::Email
                        && e.recipient.person.is_some()
                        && e.recipient.person == d.recipient.person
                }) =>
            {
                Draft::InEmail
            }
            Channel::Sms | Channel::Log => Draft::No,
        };
        fx.notify(Notify {
            reason,
            delivery: d.clone(),
            why: label.clone(),
            note: note.clone(),
            draft,
        });
    }
    let wait = policy.step(step).and_then(|s| s.wait);
    let next = match (policy.next(step, round), wait) {
        (Some((s, r)), Some(wait)) => {
            let at = super::after(now, wait);
            fx.schedule(at, TimerKind::Step { policy: policy.name.clone(), step: s, round: r });
            Some(at)
        }
        _ => None,
    };
    incident.escalation = Some(EscalationState {
        policy: policy.name.clone(),
        step,
        round,
        next_at: next,
        stopped: next.is_none().then(|| "the policy has no further steps".to_string()),
    });
    fx
}

/// A real event joined a drill incident: its steps stop, and it pages as if it had just
/// opened, since the policy's people heard nothing while it was a drill.
pub fn drill_turned_real(ctx: &Ctx, incident: &mut Incident, pending: &[Timer]) -> Effects {
    let mut fx = Effects::new();
    fx.cancel(pending, |k| matches!(k, TimerKind::Step { .. }));
    incident.escalation = None;
    if incident.status == Status::Triggered
        && incident.decision.suppressed.is_none()
        && incident.held_by.is_none()
        && let Some(p) = ctx.choose_policy(incident)
    {
        let why = "a real event joined the drill incident";
        fx.extend(fire_step(ctx, incident, &p, 0, 0, why));
    }
    fx
}

/// An acknowledgement stops the escalation steps; a policy with `reescalate_after` starts
/// the clock for escalating again if nobody resolves.
pub fn acknowledged(ctx: &Ctx, incident: &mut Incident, pending: &[Timer]) -> Effects {
    let now = ctx.now;
    let mut fx = Effects::new();
    let cancelled = fx.cancel(pending, TimerKind::stops_on_ack);
    let by = incident.acknowledged.as_ref().map(|a| a.by.clone()).unwrap_or_default();
    if let Some(state) = &mut incident.escalation {
        if !cancelled.is_empty() {
            fx.log(
                now,
                EntryKind::Escalated,
                format!(
                    "escalation stopped: acknowledged by {by}; cancelled {}",
                    cancelled.iter().map(|t| t.kind.describe()).collect::<Vec<_>>().join(", ")
                ),
            );
        }
        state.next_at = None;
        state.stopped = Some(format!("acknowledged by {by}"));
        if let Some(p) = ctx.rt.config.policies.policies.get(&state.policy)
            && let Some(after) = p.reescalate_after
        {
            let at = super::after(now, after);
            fx.schedule(at, TimerKind::AckExpired { policy: p.name.clone() });
            fx.log(
                now,
                EntryKind::Escalated,
                format!("escalates again at {at} unless resolved by then (policy `{}` reescalate_after {:#})", p.name, super::signed(after)),
            );
        }
    }
    fx
}

/// A resolve stops escalation and reminders (not notice deadlines), tells whoever was paged
/// (`sent`: the incident's notifications so far), and opens the after-action review for
/// reviewed severities.
pub fn resolved(
    ctx: &Ctx,
    incident: &mut Incident,
    pending: &[Timer],
    sent: Vec<Notification>,
) -> Effects {
    let now = ctx.now;
    let mut fx = Effects::new();
    let cancelled = fx.cancel(pending, TimerKind::stops_on_resolve);
    if let Some(state) = &mut incident.escalation {
        state.next_at = None;
        state.stopped = Some("resolved".into());
    }
    if !cancelled.is_empty() {
        fx.log(
            now,
            EntryKind::Escalated,
            format!(
                "resolved: cancelled {}",
                cancelled.iter().map(|t| t.kind.describe()).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    let mut told: Vec<Delivery> = Vec::new();
    for n in sent {
        if matches!(n.reason, Reason::New | Reason::Escalated) && n.state != State::Dead {
            let d = Delivery { channel: n.channel, recipient: n.recipient, audience: n.audience };
            if !told.iter().any(|t| t.channel == d.channel && t.recipient == d.recipient) {
                told.push(d);
            }
        }
    }
    for delivery in told {
        fx.notify(Notify {
            reason: Reason::Resolved,
            delivery,
            why: "resolution notice".into(),
            note: None,
            draft: Draft::No,
        });
    }
    if incident.review.is_none()
        && ctx.rt.config.escalation.review_severities.contains(&incident.decision.severity)
    {
        incident.review = Some(crate::review::Review::new(now));
        fx.log(
            now,
            EntryKind::Review,
            format!(
                "after-action review opened ({} incidents are reviewed): write it with PUT /api/v1/incidents/{}/review and add action items with POST /api/v1/incidents/{}/actions",
                incident.decision.severity, incident.id, incident.id
            ),
        );
    }
    fx
}

/// The maintenance window that held an open incident back has ended: it pages now from the
/// first step (as Alertmanager notifies when a silence expires on a firing alert), unless
/// someone acknowledged it meanwhile or the rules themselves suppress it.
pub fn window_ended(
    ctx: &Ctx,
    incident: &mut Incident,
    pending: &[Timer],
    window: &str,
    held_reason: Option<String>,
    late: &str,
) -> Effects {
    let now = ctx.now;
    let mut fx = Effects::new();
    let until = incident.held_by.take().map(|h| h.until);
    if held_reason.as_ref().is_some_and(|r| r.starts_with("maintenance window `")) {
        incident.decision.suppressed = None;
    }
    let ended = format!(
        "maintenance window `{window}` ended{} with the incident still {}{late}",
        until.map(|u| format!(" at {u}")).unwrap_or_default(),
        incident.status.as_str()
    );
    if let Some(reason) = &incident.decision.suppressed {
        fx.log(
            now,
            EntryKind::Suppressed,
            format!("{ended}; the rules still suppress it ({reason}): nobody is paged"),
        );
        return fx;
    }
    if incident.status != Status::Triggered {
        let by = incident.acknowledged.as_ref().map(|a| a.by.clone()).unwrap_or_default();
        fx.log(
            now,
            EntryKind::Escalated,
            format!("{ended}; acknowledged by {by} during the window, so nobody is paged"),
        );
        // Acknowledged or not, a customer-facing incident still owes status updates: the
        // reminders the window held back start now, as they would have at its opening.
        fx.extend(start_comms_updates(ctx, incident, pending));
        return fx;
    }
    match ctx.choose_policy(incident) {
        Some(p) => {
            let why = format!("{ended}: paging now");
            fx.extend(fire_step(ctx, incident, &p, 0, 0, &why));
        }
        None => {
            fx.log(now, EntryKind::Note, format!("{ended}, but no policy notifies anyone for it"));
        }
    }
    fx.extend(start_comms_updates(ctx, incident, pending));
    fx
}

/// Starts the status-update reminders of an open incident that a later event made call for
/// them (it became customer-facing, or more severe), unless they run already.
pub fn start_comms_updates(ctx: &Ctx, incident: &Incident, pending: &[Timer]) -> Effects {
    let mut fx = Effects::new();
    let Some(every) = ctx.rt.config.escalation.comms_every_for(&incident.decision) else {
        return fx;
    };
    if !incident.status.is_open()
        || incident.decision.suppressed.is_some()
        || incident.held_by.is_some()
        || pending.iter().any(|t| t.kind == TimerKind::CommsUpdate)
    {
        return fx;
    }
    let at = super::after(ctx.now, every);
    fx.schedule(at, TimerKind::CommsUpdate);
    fx.log(
        ctx.now,
        EntryKind::Note,
        format!(
            "status updates are now due every {:#} ({}, customer-facing: {}): the first reminder to the communications lead at {at}",
            super::signed(every),
            incident.decision.severity,
            incident.decision.customer_facing
        ),
    );
    fx
}

/// Sends `line` to whoever holds `role` on the incident; a timeline note when nobody does.
pub fn remind_role(ctx: &Ctx, incident: &Incident, role: &str, lead: &str, line: &str) -> Effects {
    match incident.roles.get(role) {
        Some(person) => {
            remind_person(ctx, incident, person, super::role_audience(role), lead, line)
        }
        None => {
            let mut fx = Effects::new();
            fx.log(
                ctx.now,
                EntryKind::Note,
                format!("nobody holds the `{role}` role, so this reminder reached no one: {line}"),
            );
            fx
        }
    }
}

/// Sends `line` to `person` by email (when email is configured and they have an address).
pub fn remind_person(
    ctx: &Ctx,
    incident: &Incident,
    person: &str,
    audience: &str,
    lead: &str,
    line: &str,
) -> Effects {
    let rt = ctx.rt;
    let channels: Vec<Channel> = [Channel::Email]
        .into_iter()
        .filter(|c| *c != Channel::Email || rt.config.notifications.email.is_some())
        .collect();
    let target = [policy::Entry {
        target: policy::Target::Person(person.to_string()),
        channels,
        audience: audience.to_string(),
    }];
    let (deliveries, _) = rt.config.policies.deliveries(&target, &incident.roles, None);
    let log = ctx.log_path();
    let (deliveries, drill_note) = crate::drill::live::route(
        &rt.config.drills,
        &rt.config.policies,
        incident,
        deliveries,
        log.as_deref(),
    );
    let mut fx = Effects::new();
    if let Some(note) = drill_note {
        fx.log(ctx.now, EntryKind::Note, note);
    }
    if deliveries.is_empty() {
        fx.log(
            ctx.now,
            EntryKind::Note,
            format!("{person} has no address Tocsin can reach (email is not configured or the person has none): {line}"),
        );
    }
    for delivery in deliveries {
        fx.notify(Notify {
            reason: Reason::Reminder,
            delivery,
            why: lead.to_string(),
            note: Some((lead.to_string(), line.to_string())),
            draft: Draft::No,
        });
    }
    fx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escalation::testing::*;
    use crate::rules::Sensitivity;

    #[tokio::test]
    async fn an_opened_incident_pages_step_one_and_schedules_step_two() {
        let rt = runtime(TWO_STEPS);
        let mut i = plain_incident();
        let fx = opened(&ctx(&rt, t0()), &mut i);
        let to: Vec<&str> =
            fx.notified().iter().map(|n| n.delivery.recipient.address.as_str()).collect();
        assert_eq!(to, ["ana@example.com"]);
        assert_eq!(fx.notified()[0].reason, Reason::New);
        let next = TimerKind::Step { policy: "page".into(), step: 1, round: 0 };
        assert_eq!(fx.scheduled(), [(mins(5), &next)]);
        assert_eq!(i.policy_choice.unwrap().policy.as_deref(), Some("page"));
    }

    #[tokio::test]
    async fn an_incident_opened_inside_a_window_is_held_back_until_it_ends() {
        let rt = runtime(TWO_STEPS);
        let w = Window {
            id: Some(3),
            created: None,
            name: "db".into(),
            starts: t0(),
            ends: mins(30),
            source: None,
            service: None,
            labels: Default::default(),
        };
        let windows = [w];
        let mut i = plain_incident();
        let fx = opened(&Ctx { rt: &rt, windows: &windows, now: t0() }, &mut i);
        assert!(fx.notified().is_empty());
        assert_eq!(fx.scheduled(), [(mins(30), &TimerKind::WindowEnds { window: "db".into() })]);
        assert!(fx.entries().any(|e| e.kind == EntryKind::Suppressed));
        assert_eq!(i.held_by.unwrap().id, Some(3));
    }

    #[tokio::test]
    async fn an_acknowledgement_cancels_the_steps_and_starts_the_reescalation_clock() {
        let rt = runtime(TWO_STEPS);
        let mut i = plain_incident();
        opened(&ctx(&rt, t0()), &mut i);
        let mut i = crate::incident::acknowledge(i, "user:ana", mins(1), None).unwrap().0;
        let step = Timer {
            id: 1,
            incident: 7,
            due_at: mins(5),
            kind: TimerKind::Step { policy: "page".into(), step: 1, round: 0 },
        };
        let deadline = Timer { kind: TimerKind::NoticeDeadline { notice: 0 }, ..step };
        let fx = acknowledged(&ctx(&rt, mins(1)), &mut i, &[step.clone(), deadline]);
        assert_eq!(fx.cancelled(), [&step.kind], "a notice deadline outlives the acknowledgement");
        let again = TimerKind::AckExpired { policy: "page".into() };
        assert_eq!(fx.scheduled(), [(mins(31), &again)]);
        assert_eq!(i.escalation.unwrap().stopped.as_deref(), Some("acknowledged by user:ana"));
    }

    #[tokio::test]
    async fn a_resolve_tells_whoever_was_paged_once_and_opens_the_review() {
        let rt = runtime(&format!("{TWO_STEPS}reviews: {{severities: [sev2]}}\n"));
        let mut i = plain_incident();
        opened(&ctx(&rt, t0()), &mut i);
        let mut paged = crate::outbox::tests::notification(Channel::Email, 1, t0());
        paged.recipient.address = "ana@example.com".into();
        let mut dead = paged.clone();
        dead.state = State::Dead;
        dead.recipient.address = "ben@example.com".into();
        let sent = vec![paged.clone(), paged, dead];
        let fx = resolved(&ctx(&rt, mins(2)), &mut i, &[], sent);
        let to: Vec<&str> =
            fx.notified().iter().map(|n| n.delivery.recipient.address.as_str()).collect();
        assert_eq!(to, ["ana@example.com"], "once each, and not the dead-lettered");
        assert_eq!(fx.notified()[0].reason, Reason::Resolved);
        assert!(i.review.is_some());
    }

    #[tokio::test]
    async fn a_window_ending_on_an_acknowledged_incident_pages_nobody() {
        let rt = runtime(TWO_STEPS);
        let mut i = plain_incident();
        i.status = Status::Acknowledged;
        i.decision.suppressed = Some(crate::escalation::window_reason("db", mins(10)));
        let held = i.decision.suppressed.clone();
        let fx = window_ended(&ctx(&rt, mins(10)), &mut i, &[], "db", held, "");
        assert!(fx.notified().is_empty());
        assert!(i.decision.suppressed.is_none(), "the window's suppression is lifted");
    }

    #[tokio::test]
    async fn a_customer_facing_trigger_starts_status_updates_once() {
        let rt = runtime("communications: {update_every: {sev1: 30m}}\n");
        let i = incident(decision("sev1", Sensitivity::None, true));
        let fx = start_comms_updates(&ctx(&rt, t0()), &i, &[]);
        assert_eq!(fx.scheduled(), [(mins(30), &TimerKind::CommsUpdate)]);
        let running = Timer { id: 1, incident: 7, due_at: mins(30), kind: TimerKind::CommsUpdate };
        assert!(start_comms_updates(&ctx(&rt, t0()), &i, &[running]).is_empty());
    }
}
