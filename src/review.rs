//! After-action reviews: opened when an incident of a configured severity resolves; a summary,
//! what went well and badly, and action items with an owner and a due date. The export lays the
//! incident's whole timeline out for the review meeting, as Markdown or JSON.
//!
//! Pure: the journal writer applies [`Review`] changes (people's edits come through the writer
//! like every other change) and schedules the action items' due timers.

pub mod config;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::effect::Amended;
use crate::escalation::{Timer, TimerKind};
use crate::incident::{Entry, EntryKind, Incident, Stamp};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub opened_at: Timestamp,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub went_well: String,
    #[serde(default)]
    pub went_badly: String,
    #[serde(default)]
    pub actions: Vec<ActionItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<Stamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionState {
    Open,
    Done,
    Dropped,
}

impl ActionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionState::Open => "open",
            ActionState::Done => "done",
            ActionState::Dropped => "dropped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionItem {
    /// 1, 2, … within the review.
    pub id: u32,
    pub title: String,
    /// A person id from the config.
    pub owner: String,
    pub due: Timestamp,
    pub state: ActionState,
    pub created: Stamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<Stamp>,
}

impl ActionItem {
    pub fn overdue(&self, now: Timestamp) -> bool {
        self.state == ActionState::Open && self.due <= now
    }
}

impl Review {
    pub fn new(opened_at: Timestamp) -> Review {
        Review {
            opened_at,
            summary: String::new(),
            went_well: String::new(),
            went_badly: String::new(),
            actions: Vec::new(),
            updated: None,
        }
    }
}

/// The people a review's action items may be given to (the config's `people`).
pub type People = std::collections::BTreeMap<String, crate::policy::Person>;

/// A person edits the review's text fields (those given). Refused while the incident is open
/// and has no review yet.
pub fn edit(
    incident: &mut Incident,
    summary: Option<String>,
    went_well: Option<String>,
    went_badly: Option<String>,
    stamp: Stamp,
) -> Result<Amended, String> {
    let id = incident.id;
    if incident.status.is_open() && incident.review.is_none() {
        return Err(format!("incident #{id} is still open: its review opens when it resolves"));
    }
    let review = incident.review.get_or_insert_with(|| Review::new(stamp.at));
    let mut fields = Vec::new();
    for (name, value, slot) in [
        ("summary", summary, &mut review.summary),
        ("went_well", went_well, &mut review.went_well),
        ("went_badly", went_badly, &mut review.went_badly),
    ] {
        if let Some(v) = value {
            *slot = v;
            fields.push(name);
        }
    }
    if fields.is_empty() {
        return Err("give at least one of summary, went_well, went_badly".into());
    }
    review.updated = Some(stamp);
    Ok(Amended::new(EntryKind::Review, format!("review updated: {}", fields.join(", "))))
}

/// A person adds an action item to the review; its owner is reminded from `due` on.
pub fn add_action(
    incident: &mut Incident,
    title: String,
    owner: String,
    due: Timestamp,
    people: &People,
    stamp: Stamp,
) -> Result<Amended, String> {
    let (id, now) = (incident.id, stamp.at);
    if !people.contains_key(&owner) {
        return Err(format!("no person `{owner}` in the config's people"));
    }
    if incident.status.is_open() && incident.review.is_none() {
        return Err(format!(
            "incident #{id} is still open: action items belong to its review, which opens when it resolves"
        ));
    }
    let review = incident.review.get_or_insert_with(|| Review::new(now));
    let action = review.actions.iter().map(|a| a.id).max().unwrap_or(0) + 1;
    review.actions.push(ActionItem {
        id: action,
        title: title.clone(),
        owner: owner.clone(),
        due,
        state: ActionState::Open,
        created: stamp,
        closed: None,
    });
    let mut amended = Amended::new(
        EntryKind::Review,
        format!("action item #{action} added: {title} (owner {owner}, due {due})"),
    );
    amended.effects.schedule(due.max(now), TimerKind::ActionDue { action });
    Ok(amended)
}

/// A person changes an action item's state, owner or due time; its reminder moves with it
/// (and stops once it is no longer open).
pub fn update_action(
    incident: &mut Incident,
    pending: &[Timer],
    action: u32,
    change: (Option<ActionState>, Option<String>, Option<Timestamp>),
    people: &People,
    stamp: Stamp,
) -> Result<Amended, String> {
    let (state, owner, due) = change;
    let (id, now) = (incident.id, stamp.at);
    let Some(item) =
        incident.review.as_mut().and_then(|r| r.actions.iter_mut().find(|a| a.id == action))
    else {
        return Err(format!("incident #{id} has no action item #{action}"));
    };
    if let Some(o) = &owner
        && !people.contains_key(o)
    {
        return Err(format!("no person `{o}` in the config's people"));
    }
    let mut what = Vec::new();
    if let Some(o) = owner {
        what.push(format!("owner {} → {o}", item.owner));
        item.owner = o;
    }
    if let Some(d) = due {
        what.push(format!("due {} → {d}", item.due));
        item.due = d;
    }
    if let Some(st) = state {
        what.push(format!("state {} → {}", item.state.as_str(), st.as_str()));
        item.state = st;
        item.closed = (st != ActionState::Open).then(|| stamp.clone());
    }
    if what.is_empty() {
        return Err("give at least one of state, owner, due".into());
    }
    let (open, due_at) = (item.state == ActionState::Open, item.due);
    let mut amended =
        Amended::new(EntryKind::Review, format!("action item #{action}: {}", what.join(", ")));
    amended
        .effects
        .cancel(pending, |k| matches!(k, TimerKind::ActionDue { action: a } if *a == action));
    if open {
        amended.effects.schedule(due_at.max(now), TimerKind::ActionDue { action });
    }
    Ok(amended)
}

/// The review meeting's document: the incident, its review and its full timeline.
#[derive(Debug, Serialize)]
pub struct Export<'a> {
    pub incident: &'a Incident,
    pub review: Option<&'a Review>,
    pub timeline: &'a [Entry],
    /// Time to acknowledge and to resolve, in seconds, where known.
    pub seconds_to_acknowledge: Option<i64>,
    pub seconds_to_resolve: Option<i64>,
}

impl<'a> Export<'a> {
    pub fn new(incident: &'a Incident, timeline: &'a [Entry]) -> Export<'a> {
        let since = |s: &Option<Stamp>| {
            s.as_ref().map(|s| s.at.duration_since(incident.first_seen).as_secs())
        };
        Export {
            incident,
            review: incident.review.as_ref(),
            timeline,
            seconds_to_acknowledge: since(&incident.acknowledged),
            seconds_to_resolve: since(&incident.resolved),
        }
    }

    /// Markdown for the meeting: header facts, the review, action items, then the timeline
    /// as a table with the offset from the first event.
    pub fn markdown(&self) -> String {
        let i = self.incident;
        let mut out = String::new();
        let push = |out: &mut String, s: &str| {
            out.push_str(s);
            out.push('\n');
        };
        push(&mut out, &format!("# Incident #{}: {}", i.id, md(&i.summary)));
        push(&mut out, "");
        push(&mut out, &format!("- **Severity:** {}", i.decision.severity));
        push(&mut out, &format!("- **Source:** {} (`{}`)", i.source, md(&i.dedup_key)));
        if let Some(service) = &i.service {
            push(&mut out, &format!("- **Service:** {}", md(service)));
        }
        push(&mut out, &format!("- **Status:** {}", i.status.as_str()));
        push(&mut out, &format!("- **First event:** {}", i.first_seen));
        if let Some(a) = &i.acknowledged {
            let took = self.seconds_to_acknowledge.map(human).unwrap_or_default();
            push(&mut out, &format!("- **Acknowledged:** {} by {} (after {took})", a.at, a.by));
        }
        if let Some(r) = &i.resolved {
            let took = self.seconds_to_resolve.map(human).unwrap_or_default();
            push(&mut out, &format!("- **Resolved:** {} by {} (after {took})", r.at, r.by));
        }
        if !i.roles.is_empty() {
            let roles: Vec<String> = i.roles.iter().map(|(r, p)| format!("{r}: {p}")).collect();
            push(&mut out, &format!("- **Roles:** {}", roles.join(", ")));
        }
        for n in &i.notices {
            let state = match (&n.sent, n.missed) {
                (Some(s), _) => format!("sent {} by {}", s.at, s.by),
                (None, true) => "MISSED".to_string(),
                (None, false) => "not sent".to_string(),
            };
            push(&mut out, &format!("- **Notice:** {} — due {} — {state}", md(&n.name), n.due_at));
        }
        if let Some(review) = self.review {
            push(&mut out, "");
            push(&mut out, "## Review");
            for (title, text) in [
                ("Summary", &review.summary),
                ("What went well", &review.went_well),
                ("What went badly", &review.went_badly),
            ] {
                push(&mut out, "");
                push(&mut out, &format!("### {title}"));
                push(&mut out, "");
                push(&mut out, if text.is_empty() { "_(not written yet)_" } else { text });
            }
            push(&mut out, "");
            push(&mut out, "### Action items");
            push(&mut out, "");
            if review.actions.is_empty() {
                push(&mut out, "_(none yet)_");
            } else {
                push(&mut out, "| # | Action | Owner | Due | State |");
                push(&mut out, "|---|---|---|---|---|");
                for a in &review.actions {
                    push(
                        &mut out,
                        &format!(
                            "| {} | {} | {} | {} | {} |",
                            a.id,
                            cell(&a.title),
                            cell(&a.owner),
                            a.due,
                            a.state.as_str()
                        ),
                    );
                }
            }
        }
        push(&mut out, "");
        push(&mut out, "## Timeline");
        push(&mut out, "");
        push(&mut out, "| Time | +offset | Actor | What | Detail |");
        push(&mut out, "|---|---|---|---|---|");
        for e in self.timeline {
            let offset = human(e.at.duration_since(i.first_seen).as_secs());
            push(
                &mut out,
                &format!(
                    "| {} | +{offset} | {} | {} | {} |",
                    e.at,
                    cell(&e.actor),
                    serde_json::to_value(e.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    cell(&e.message)
                ),
            );
        }
        out
    }
}

/// Seconds as `1h 2m 3s`.
fn human(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

/// Text safe inside a Markdown table cell: pipes escaped, line breaks flattened.
fn cell(s: &str) -> String {
    md(s).replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Text that cannot open Markdown constructs by accident (headings, HTML).
fn md(s: &str) -> String {
    s.replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human(5), "5s");
        assert_eq!(human(65), "1m 5s");
        assert_eq!(human(3 * 3600 + 61), "3h 1m 1s");
    }

    #[test]
    fn table_cells_cannot_break_the_table() {
        assert_eq!(cell("a|b\nc <script>"), "a\\|b c &lt;script&gt;");
    }

    #[test]
    fn overdue_only_while_open() {
        let due: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let mut a = ActionItem {
            id: 1,
            title: "t".into(),
            owner: "ana".into(),
            due,
            state: ActionState::Open,
            created: Stamp { by: "user:ana".into(), at: due },
            closed: None,
        };
        assert!(a.overdue(due));
        assert!(!a.overdue("2026-01-01T00:00:00Z".parse().unwrap()));
        a.state = ActionState::Done;
        assert!(!a.overdue(due));
    }

    mod amendments {
        use super::super::*;
        use crate::escalation::testing::*;

        fn stamp(at: Timestamp) -> Stamp {
            Stamp { by: "user:ana".into(), at }
        }

        #[tokio::test]
        async fn a_review_opens_only_once_the_incident_resolves() {
            let mut i = plain_incident();
            assert!(edit(&mut i, Some("s".into()), None, None, stamp(t0())).is_err());
            i.status = crate::incident::Status::Resolved;
            assert!(edit(&mut i, None, None, None, stamp(t0())).is_err(), "nothing given");
            let a = edit(&mut i, Some("s".into()), None, Some("b".into()), stamp(t0())).unwrap();
            assert_eq!(a.message, "review updated: summary, went_badly");
            assert_eq!(i.review.unwrap().summary, "s");
        }

        #[tokio::test]
        async fn action_items_are_reminded_from_their_due_time_until_closed() {
            let people = runtime("").config.policies.people;
            let mut i = plain_incident();
            i.status = crate::incident::Status::Resolved;
            let add = |i: &mut Incident, owner: &str| {
                add_action(i, "fix".into(), owner.into(), mins(-5), &people, stamp(t0()))
            };
            assert!(add(&mut i, "nobody").is_err());
            let a = add(&mut i, "ben").unwrap();
            assert_eq!(a.effects.scheduled(), [(t0(), &TimerKind::ActionDue { action: 1 })]);
            let pending = [Timer {
                id: 1,
                incident: 7,
                due_at: t0(),
                kind: TimerKind::ActionDue { action: 1 },
            }];
            let change = (None, Some("ana".into()), Some(mins(60)));
            let a = update_action(&mut i, &pending, 1, change, &people, stamp(t0())).unwrap();
            assert_eq!(a.effects.cancelled().len(), 1);
            assert_eq!(a.effects.scheduled(), [(mins(60), &TimerKind::ActionDue { action: 1 })]);
            let done = (Some(ActionState::Done), None, None);
            let a = update_action(&mut i, &pending, 1, done, &people, stamp(t0())).unwrap();
            assert!(a.effects.scheduled().is_empty(), "closed: no more reminders");
            assert!(i.review.as_ref().unwrap().actions[0].closed.is_some());
            assert!(
                update_action(&mut i, &[], 9, (None, None, None), &people, stamp(t0())).is_err()
            );
        }
    }
}
