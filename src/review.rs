//! After-action reviews: opened when an incident of a configured severity resolves; a summary,
//! what went well and badly, and action items with an owner and a due date. The export lays the
//! incident's whole timeline out for the review meeting, as Markdown or JSON.
//!
//! Pure: the journal writer applies [`Review`] changes (people's edits come through the writer
//! like every other change) and schedules the action items' due timers.

pub mod config;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::incident::{Entry, Incident, Stamp};

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
}
