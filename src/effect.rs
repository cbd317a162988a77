//! Effects: what a decision asks the journal writer to do.
//!
//! The deciding modules ([`escalation`](crate::escalation), [`incident`](crate::incident),
//! [`review`](crate::review), [`outbox`](crate::outbox)) are plain functions of (state, input,
//! now); they never touch the store. They return an ordered list of effects — timeline entries,
//! timers to schedule or cancel, notifications to queue, counters to bump — and the writer
//! applies them, in order, inside its transaction. Order matters: a queued notification's
//! timeline entry sits where its `Notify` sits among the `Log`s.

use jiff::Timestamp;

use crate::escalation::{Timer, TimerKind};
use crate::incident::{Entry, EntryKind};
use crate::outbox::Reason;
use crate::policy::Delivery;

/// One thing for the writer to do for the incident being decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Append this entry to the incident's timeline.
    Log(Entry),
    /// Write a timer row for the incident.
    Schedule { at: Timestamp, kind: TimerKind },
    /// Delete this pending timer row (read from the store before deciding).
    Cancel(Timer),
    /// Queue a notification about the incident; its "queued" entry goes on the timeline here.
    Notify(Notify),
    /// Bump a counter.
    Count(Count),
}

/// A notification to render and write as an outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    pub reason: Reason,
    pub delivery: Delivery,
    /// Why, in the "queued" timeline entry (`policy page, step 2`, `resolution notice`).
    pub why: String,
    /// A (subject lead, first line) saying why an escalation or reminder is sent.
    pub note: Option<(String, String)>,
    pub draft: Draft,
}

/// Counters a decision moves (the writer owns the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    EscalationStep,
    NoticeMissed,
}

/// Whether a message to the communications lead carries the customer draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draft {
    No,
    /// Appended whole (email, webhook).
    Full,
    /// An SMS that says the draft is in the email that goes with it.
    InEmail,
}

/// The effects of one decision, in the order they are to be applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects(pub Vec<Effect>);

impl Effects {
    pub fn new() -> Effects {
        Effects(Vec::new())
    }

    /// A timeline entry by Tocsin itself.
    pub fn log(&mut self, at: Timestamp, kind: EntryKind, message: String) {
        self.0.push(Effect::Log(entry(at, kind, message)));
    }

    pub fn schedule(&mut self, at: Timestamp, kind: TimerKind) {
        self.0.push(Effect::Schedule { at, kind });
    }

    /// Cancels the timers among `pending` that `stop` picks; returns them.
    pub fn cancel(&mut self, pending: &[Timer], stop: impl Fn(&TimerKind) -> bool) -> Vec<Timer> {
        let picked: Vec<Timer> = pending.iter().filter(|t| stop(&t.kind)).cloned().collect();
        self.0.extend(picked.iter().cloned().map(Effect::Cancel));
        picked
    }

    pub fn notify(&mut self, n: Notify) {
        self.0.push(Effect::Notify(n));
    }

    pub fn count(&mut self, c: Count) {
        self.0.push(Effect::Count(c));
    }

    pub fn extend(&mut self, other: Effects) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The timeline entries, in order (without the notifications' own entries).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.0.iter().filter_map(|e| match e {
            Effect::Log(entry) => Some(entry),
            _ => None,
        })
    }

    /// The timers to schedule.
    pub fn scheduled(&self) -> Vec<(Timestamp, &TimerKind)> {
        self.0
            .iter()
            .filter_map(|e| match e {
                Effect::Schedule { at, kind } => Some((*at, kind)),
                _ => None,
            })
            .collect()
    }

    /// The kinds of the timers to cancel.
    pub fn cancelled(&self) -> Vec<&TimerKind> {
        self.0
            .iter()
            .filter_map(|e| match e {
                Effect::Cancel(t) => Some(&t.kind),
                _ => None,
            })
            .collect()
    }

    /// The notifications to queue.
    pub fn notified(&self) -> Vec<&Notify> {
        self.0
            .iter()
            .filter_map(|e| match e {
                Effect::Notify(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    pub fn counted(&self) -> Vec<Count> {
        self.0
            .iter()
            .filter_map(|e| match e {
                Effect::Count(c) => Some(*c),
                _ => None,
            })
            .collect()
    }
}

/// A timeline entry by Tocsin itself.
pub fn entry(at: Timestamp, kind: EntryKind, message: String) -> Entry {
    Entry {
        at,
        actor: "tocsin".into(),
        kind,
        message,
        event_id: None,
        detail: serde_json::Value::Null,
    }
}

/// A person's change to an incident as decided: the timeline entry's kind and text (the
/// person is its actor, the writer adds it last), and what the change sets off.
#[derive(Debug, Clone, PartialEq)]
pub struct Amended {
    pub kind: EntryKind,
    pub message: String,
    pub effects: Effects,
}

impl Amended {
    pub fn new(kind: EntryKind, message: String) -> Amended {
        Amended { kind, message, effects: Effects::new() }
    }
}
