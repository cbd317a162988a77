//! Notice obligations on an incident: attaching the notices the config's rules call for,
//! their reminders and deadlines, and people marking one sent or moving awareness.
//!
//! Plain functions of (the runtime, the incident, its pending timers, now) returning
//! [`Effects`]; the journal writer applies them.

use jiff::Timestamp;

use super::steps::{Ctx, remind_role};
use super::{Notice, NoticeRule, Timer, TimerKind};
use crate::effect::{Amended, Count, Effects};
use crate::incident::{Awareness, EntryKind, Incident, Stamp};

/// Attaches the notice of every `notices[]` rule that applies to the incident's decision and
/// is not attached yet, counting from `aware_at`, with its reminders and deadline scheduled.
pub fn attach(ctx: &Ctx, incident: &mut Incident, aware_at: Timestamp) -> Effects {
    let now = ctx.now;
    let mut fx = Effects::new();
    let rules: Vec<&NoticeRule> = ctx
        .rt
        .config
        .escalation
        .notices
        .iter()
        .filter(|r| {
            r.applies(&incident.decision) && !incident.notices.iter().any(|n| n.name == r.name)
        })
        .collect();
    for rule in rules {
        let notice = rule.notice(aware_at);
        let index = incident.notices.len() as u32;
        schedule(&mut fx, now, index, &notice);
        let liaison = incident
            .roles
            .get("legal_liaison")
            .map(String::as_str)
            .unwrap_or("nobody: the legal_liaison role is not filled");
        fx.log(
            now,
            EntryKind::Notice,
            format!(
                "{} notice `{}` due {} ({:#} from awareness at {}); reminders at {}; legal liaison: {liaison}",
                if notice.mandatory { "mandatory" } else { "voluntary" },
                notice.name,
                notice.due_at,
                notice.due_at.duration_since(notice.aware_at),
                notice.aware_at,
                if notice.reminders.is_empty() {
                    "none".to_string()
                } else {
                    notice.reminders.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
                },
            ),
        );
        incident.notices.push(notice);
    }
    fx
}

/// A later event can reveal what the first did not (customer data exposed after all): an
/// obligation that applies now attaches now, counted from `aware_at` (that event), and the
/// legal liaison hears at once.
pub fn reassessed(ctx: &Ctx, incident: &mut Incident, aware_at: Timestamp) -> Effects {
    let mut fx = Effects::new();
    if ctx.rt.config.escalation.notices.is_empty() {
        return fx;
    }
    let before = incident.notices.len();
    let attached = attach(ctx, incident, aware_at);
    if incident.notices.len() > before {
        let names: Vec<String> = incident.notices[before..]
            .iter()
            .map(|n| format!("\"{}\" (due {})", n.name, n.due_at))
            .collect();
        let line = format!(
            "A new event changed incident #{}'s assessment: notice {} now applies.",
            incident.id,
            names.join(", ")
        );
        fx.extend(attached);
        fx.extend(remind_role(ctx, incident, "legal_liaison", "Notice due", &line));
    }
    fx
}

/// Schedules notice `index`'s reminders still ahead and its deadline (now, if past).
pub fn schedule(fx: &mut Effects, now: Timestamp, index: u32, notice: &Notice) {
    for at in notice.reminders.iter().filter(|r| **r > now) {
        fx.schedule(*at, TimerKind::NoticeReminder { notice: index });
    }
    fx.schedule(notice.due_at.max(now), TimerKind::NoticeDeadline { notice: index });
}

fn is_notice(k: &TimerKind, index: u32) -> bool {
    matches!(k, TimerKind::NoticeReminder { notice } | TimerKind::NoticeDeadline { notice } if *notice == index)
}

/// A notice reminder came due: the legal liaison hears, unless the notice was sent.
pub fn reminder(ctx: &Ctx, incident: &Incident, index: u32, late: &str) -> Option<Effects> {
    let n = incident.notices.get(index as usize)?;
    if n.sent.is_some() {
        return None;
    }
    let left = n.due_at.duration_since(ctx.now);
    let line = format!(
        "{} notice \"{}\" is due at {} ({:#} left) and is not marked as sent.",
        if n.mandatory { "Mandatory" } else { "Voluntary" },
        n.name,
        n.due_at,
        jiff::SignedDuration::from_secs(left.as_secs().max(0)),
    );
    let mut fx = Effects::new();
    fx.log(ctx.now, EntryKind::Notice, format!("reminder{late}: {line}"));
    fx.extend(remind_role(ctx, incident, "legal_liaison", "Notice due", &line));
    Some(fx)
}

/// A notice deadline came due: unless the notice was sent, it is missed (for the record) and
/// the incident lead hears.
pub fn deadline(ctx: &Ctx, incident: &mut Incident, index: u32, late: &str) -> Option<Effects> {
    let i = index as usize;
    let n = incident.notices.get(i).cloned()?;
    if n.sent.is_some() {
        return None;
    }
    incident.notices[i].missed = true;
    let line = format!(
        "MISSED DEADLINE: {} notice \"{}\" was due at {} and is not marked as sent.",
        if n.mandatory { "mandatory" } else { "voluntary" },
        n.name,
        n.due_at
    );
    let mut fx = Effects::new();
    fx.count(Count::NoticeMissed);
    fx.log(ctx.now, EntryKind::Notice, format!("{line} Escalating to the incident lead.{late}"));
    fx.extend(remind_role(ctx, incident, "incident_lead", "Notice deadline missed", &line));
    Some(fx)
}

/// A person marks notice `index` sent (at `at`, default now): its reminders and deadline stop.
pub fn mark_sent(
    incident: &mut Incident,
    pending: &[Timer],
    index: usize,
    at: Option<Timestamp>,
    reference: Option<String>,
    by: &str,
    now: Timestamp,
) -> Result<Amended, String> {
    let id = incident.id;
    let Some(n) = incident.notices.get_mut(index) else {
        return Err(format!("incident #{id} has no notice #{index}"));
    };
    if let Some(sent) = &n.sent {
        return Err(format!(
            "notice #{index} was already marked sent by {} at {}",
            sent.by, sent.at
        ));
    }
    let at = at.unwrap_or(now);
    if at > now {
        return Err("`at` is in the future: mark a notice sent once it was sent".into());
    }
    n.sent = Some(Stamp { by: by.to_string(), at });
    n.reference = reference.clone();
    let timing = if at <= n.due_at {
        format!("on time, {:#} before the deadline", n.due_at.duration_since(at))
    } else {
        format!("LATE, {:#} after the deadline", at.duration_since(n.due_at))
    };
    let name = n.name.clone();
    let mut effects = Effects::new();
    effects.cancel(pending, |k| is_notice(k, index as u32));
    let reference = reference.map(|r| format!(" (reference: {r})")).unwrap_or_default();
    let message = format!("notice `{name}` marked sent at {at} by {by}{reference}: {timing}");
    Ok(Amended { kind: EntryKind::Notice, message, effects })
}

/// A person records when the organization became aware: unsent notices count their deadlines
/// and reminders from `at` instead.
pub fn awareness(
    incident: &mut Incident,
    pending: &[Timer],
    at: Timestamp,
    note: Option<String>,
    by: &str,
    now: Timestamp,
) -> Result<Amended, String> {
    if at > now {
        return Err("`at` is in the future: awareness is when the organization became aware".into());
    }
    let before = incident.awareness.as_ref().map_or(incident.first_seen, |a| a.at);
    let mut moved = Vec::new();
    let mut effects = Effects::new();
    for (index, n) in incident.notices.iter_mut().enumerate() {
        if n.sent.is_some() {
            moved.push(format!("`{}` was already sent: unchanged", n.name));
            continue;
        }
        if n.missed {
            moved.push(format!("`{}` was already missed: its record stands", n.name));
            continue;
        }
        n.shift_awareness(at);
        let index32 = index as u32;
        effects.cancel(pending, |k| is_notice(k, index32));
        schedule(&mut effects, now, index32, n);
        let left = if n.due_at > now {
            format!("{:#} left", n.due_at.duration_since(now))
        } else {
            "already past: missed now".to_string()
        };
        moved.push(format!("`{}` now due {} ({left})", n.name, n.due_at));
    }
    let note_text = note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default();
    incident.awareness = Some(Awareness { at, by: by.to_string(), recorded_at: now, note });
    let notices = if moved.is_empty() {
        "no notices to move".to_string()
    } else {
        format!("notices: {}", moved.join("; "))
    };
    let message =
        format!("awareness recorded as {at} by {by} (was {before}){note_text}; {notices}");
    Ok(Amended { kind: EntryKind::Notice, message, effects })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escalation::testing::*;
    use crate::rules::Sensitivity;

    const NOTICE: &str = "notices:\n  - {name: GDPR, when: {sensitivity: [personal]}, deadline: 4h, mandatory: true, reminders: [1h]}\n";

    fn with_notice(rt: &crate::runtime::Runtime) -> Incident {
        let mut i = incident(decision("sev2", Sensitivity::Personal, false));
        let fx = attach(&ctx(rt, t0()), &mut i, t0());
        let kinds: Vec<&TimerKind> = fx.scheduled().into_iter().map(|(_, k)| k).collect();
        assert_eq!(
            kinds,
            [&TimerKind::NoticeReminder { notice: 0 }, &TimerKind::NoticeDeadline { notice: 0 }]
        );
        i
    }

    fn timers(kinds: &[TimerKind]) -> Vec<Timer> {
        kinds.iter().map(|k| Timer { id: 1, incident: 7, due_at: t0(), kind: k.clone() }).collect()
    }

    #[tokio::test]
    async fn a_notice_attaches_once_with_its_deadline_counted_from_awareness() {
        let rt = runtime(NOTICE);
        let mut i = with_notice(&rt);
        assert_eq!(i.notices[0].due_at, mins(240));
        assert!(attach(&ctx(&rt, mins(1)), &mut i, mins(1)).is_empty(), "attached already");
    }

    #[tokio::test]
    async fn marking_a_notice_sent_stops_its_timers_and_says_whether_it_was_on_time() {
        let rt = runtime(NOTICE);
        let mut i = with_notice(&rt);
        let pending = timers(&[
            TimerKind::NoticeReminder { notice: 0 },
            TimerKind::NoticeDeadline { notice: 0 },
            TimerKind::CommsUpdate,
        ]);
        let a = mark_sent(&mut i, &pending, 0, None, Some("case 9".into()), "user:lena", mins(10))
            .unwrap();
        assert_eq!(a.effects.cancelled().len(), 2, "the notice's timers, nothing else");
        assert!(a.message.contains("on time") && a.message.contains("case 9"), "{}", a.message);
        let again = mark_sent(&mut i, &pending, 0, None, None, "user:lena", mins(11));
        assert!(again.unwrap_err().contains("already marked sent"));
        assert!(mark_sent(&mut i, &[], 5, None, None, "user:lena", mins(11)).is_err());
        let future = mark_sent(&mut with_notice(&rt), &[], 0, Some(mins(20)), None, "x", mins(10));
        assert!(future.unwrap_err().contains("future"));
    }

    #[tokio::test]
    async fn awareness_moves_unsent_notices_and_their_timers() {
        let rt = runtime(NOTICE);
        let mut i = with_notice(&rt);
        let pending = timers(&[TimerKind::NoticeDeadline { notice: 0 }]);
        let a = awareness(&mut i, &pending, mins(-60), None, "user:lena", mins(10)).unwrap();
        assert_eq!(i.notices[0].due_at, mins(180));
        assert_eq!(a.effects.cancelled().len(), 1);
        assert_eq!(
            a.effects.scheduled(),
            [(mins(180), &TimerKind::NoticeDeadline { notice: 0 })],
            "the reminder at 0:00 is past: only the deadline is scheduled"
        );
        assert!(awareness(&mut i, &[], mins(20), None, "x", mins(10)).is_err());
    }

    #[tokio::test]
    async fn a_later_event_that_reveals_personal_data_attaches_the_notice_and_tells_legal() {
        let rt = runtime(NOTICE);
        let mut i = plain_incident();
        assert!(reassessed(&ctx(&rt, t0()), &mut i, t0()).is_empty());
        i.decision.sensitivity = Sensitivity::Personal;
        i.roles.insert("legal_liaison".into(), "lena".into());
        let fx = reassessed(&ctx(&rt, mins(5)), &mut i, mins(5));
        assert_eq!(i.notices[0].due_at, mins(245));
        assert_eq!(fx.notified()[0].delivery.recipient.address, "lena@example.com");
    }
}
