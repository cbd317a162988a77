//! The journal writer: the single owner of every state change.
//!
//! Ingest handlers hand normalized, scored events to it over a bounded channel and wait for the
//! commit; acknowledgements and resolves from people, and the auto-resolve sweep, come the same
//! way, never as side writes. The writer thread takes whatever is waiting, applies it all in one
//! transaction — events, the incidents they open or join, their timelines — commits (one fsync
//! for many requests: group commit), then answers every request in the batch. A 2xx therefore
//! never goes out before the event and its incident change are on disk.
//!
//! The writer is a transaction shell: `txn` holds the open transaction and applies effects;
//! `apply` has one apply per command, each handing the decision to the module it belongs to
//! (incident lifecycle, escalation steps, timers and notices, reviews, outbox transitions).

mod apply;
mod txn;

pub mod config;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};

use arc_swap::ArcSwap;

use crate::clock::SharedClock;
use crate::escalation::{self, Window};
use crate::event::Event;
use crate::incident::{self, ActionError, EntryKind, Incident, IncidentId, Summary};
use crate::metrics::Metrics;
use crate::oncall::{Override, OverrideSet};
use crate::outbox::{Attempt, Notification, NotificationId};
use crate::rules::{Evaluation, IncidentView};
use crate::runtime::Runtime;
use crate::store::{
    AdminReader, Backend, Encoded, IncidentReader, IncidentRows, Store, StoreError, panic_message,
};
use txn::{Changes, Counted, IdMap, Txn};

/// An event ready for the writer: encoded for the store, with the rules' evaluation.
#[derive(Debug)]
pub struct Scored {
    pub encoded: Encoded,
    pub evaluation: Evaluation,
    /// [`incident::decision_hash`] of the evaluation's decision, computed by the thread that
    /// scored the event rather than by the one writer.
    pub decision_hash: u64,
}

impl Scored {
    pub fn new(encoded: Encoded, evaluation: Evaluation) -> Scored {
        let decision_hash = incident::decision_hash(&evaluation.decision);
        Scored { encoded, evaluation, decision_hash }
    }
}

/// What a person can do to an incident through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonAction {
    Acknowledge,
    Resolve,
}

#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("no incident with id {0}")]
    NotFound(IncidentId),
    #[error(transparent)]
    Refused(#[from] ActionError),
    /// The change is not possible as asked (unknown person, no review yet, …).
    #[error("{0}")]
    Invalid(String),
}

/// What the writer can be asked to do. A closed set, dispatched with `match`.
#[derive(Debug)]
pub enum Command {
    /// Store these events and apply them to their incidents, then answer (handing the events
    /// back, so that their memory is freed on the requester's thread, not the writer's).
    Append { events: Vec<Scored>, reply: oneshot::Sender<(Vec<Scored>, CommitResult)> },
    /// A person acknowledges or resolves an incident.
    Act {
        id: IncidentId,
        action: PersonAction,
        by: String,
        reply: oneshot::Sender<Result<Result<Incident, ActError>, Arc<StoreError>>>,
    },
    /// Resolve open incidents that have been quiet for longer than `quiet`.
    AutoResolve { now: Timestamp, quiet: jiff::SignedDuration },
    /// A delivery worker takes up to `limit` due notifications, leased until `now + lease`.
    Claim {
        now: Timestamp,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<Notification>, Arc<StoreError>>>,
    },
    /// Delivery workers report what happened to claimed notifications.
    Report { outcomes: Vec<(NotificationId, Attempt)>, reply: oneshot::Sender<CommitResult> },
    /// Fire every timer due at or before `now` (escalation steps, reminders, deadlines).
    Tick { now: Timestamp, reply: oneshot::Sender<CommitResult> },
    /// A person changes an incident: a note, a role, a notice marked sent, the review.
    Amend {
        id: IncidentId,
        change: Amendment,
        by: String,
        reply: oneshot::Sender<Result<Result<Incident, ActError>, Arc<StoreError>>>,
    },
    /// A person opens a maintenance window, or ends one early.
    Maintenance {
        op: MaintenanceOp,
        by: String,
        reply: oneshot::Sender<Result<Result<Window, String>, Arc<StoreError>>>,
    },
    /// An operator revives a dead letter (same idempotency id) or drops a pending one.
    Queue {
        id: NotificationId,
        op: QueueOp,
        by: String,
        reply: oneshot::Sender<Result<Result<Notification, String>, Arc<StoreError>>>,
    },
    /// Re-enable a webhook endpoint that was disabled after a 410 (`Err` answer: it was not
    /// disabled). The answer is why it had been disabled.
    EnableWebhook {
        name: String,
        by: String,
        reply: oneshot::Sender<Result<Result<String, String>, Arc<StoreError>>>,
    },
    /// Add or delete a rotation override (the API checked rotation and person first).
    Override {
        op: OverrideOp,
        reply: oneshot::Sender<Result<Result<Override, String>, Arc<StoreError>>>,
    },
}

/// A change to a rotation's overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverrideOp {
    Add {
        rotation: String,
        person: String,
        from: Timestamp,
        until: Timestamp,
        by: String,
        reason: Option<String>,
    },
    /// Refused (`Err` answer) unless override `id` exists and belongs to `rotation`.
    Delete { rotation: String, id: u64, by: String },
}

/// What a person can change on an incident besides acknowledging and resolving it.
#[derive(Debug, Clone)]
pub enum Amendment {
    Note {
        text: String,
    },
    /// Hand a role to a person (by id), or take it away (`None`).
    Role {
        role: String,
        person: Option<String>,
    },
    /// Mark notice `index` as sent (at `at`, default now), with an optional reference.
    NoticeSent {
        index: usize,
        at: Option<Timestamp>,
        reference: Option<String>,
    },
    /// Record when the organization became aware: unsent notices count their deadlines and
    /// reminders from `at` instead.
    Awareness {
        at: Timestamp,
        note: Option<String>,
    },
    /// Edit the after-action review's text fields (those given).
    Review {
        summary: Option<String>,
        went_well: Option<String>,
        went_badly: Option<String>,
    },
    AddAction {
        title: String,
        owner: String,
        due: Timestamp,
    },
    UpdateAction {
        action: u32,
        state: Option<crate::review::ActionState>,
        owner: Option<String>,
        due: Option<Timestamp>,
    },
}

#[derive(Debug, Clone)]
pub enum MaintenanceOp {
    Open(Window),
    /// End window `id` now.
    End(u64),
}

pub use crate::outbox::QueueOp;

pub type CommitResult = Result<(), Arc<StoreError>>;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("the journal is overloaded ({0} requests already waiting); retry shortly")]
    Overloaded(usize),
    #[error("the journal is shutting down")]
    Closed,
    #[error("could not be stored: {0}")]
    Store(Arc<StoreError>),
}

/// The open incidents by (source, dedup key), as of the last commit.
///
/// std `RwLock`, not tokio's: it is never held across an await. Only the writer thread writes
/// it, after each commit, so readers never see a change that is not on disk.
#[derive(Debug, Default)]
pub struct OpenIndex {
    /// source → dedup key → summary: two levels so lookups borrow `&str` instead of building
    /// an owned key per event.
    map: RwLock<HashMap<String, HashMap<String, Summary>>>,
}

impl OpenIndex {
    /// The view the rules get for `event`: its open incident, or a new one.
    pub fn view(&self, event: &Event) -> IncidentView {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        match map.get(event.source.as_str()).and_then(|m| m.get(event.dedup_key.as_str())) {
            Some(summary) => summary.view(),
            None => incident::new_view(event),
        }
    }

    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, source: &str, key: &str) -> Option<IncidentId> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(source).and_then(|m| m.get(key)).map(|s| s.id())
    }

    /// The open incident `event` repeats and its count as of the last commit, when the event
    /// (scored `decision`) would change nothing else about it.
    fn repeat(&self, scored: &Scored, validity: escalation::Validity) -> Option<(IncidentId, u64)> {
        let event = &scored.encoded.event;
        let decision = &scored.evaluation.decision;
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let summary = map.get(event.source.as_str())?.get(event.dedup_key.as_str())?;
        let repeat = summary.repeat(event, decision, scored.decision_hash, validity);
        repeat.then(|| (summary.id(), summary.count()))
    }

    fn counted(&self, counted: &IdMap<Counted>) {
        if counted.is_empty() {
            return;
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        for (id, c) in counted {
            if let Some(s) =
                map.get_mut(c.source.as_str()).and_then(|m| m.get_mut(c.dedup_key.as_str()))
            {
                s.counted(*id, c.count, c.last_seen);
            }
        }
    }

    /// The open incidents by severity: how many there are of each, and the ids of the `per`
    /// that opened first (oldest first). From memory, without reading the store, so that an
    /// overview stays cheap in an alert storm of a hundred thousand open incidents.
    pub fn by_severity(&self, per: usize) -> BTreeMap<String, (usize, Vec<IncidentId>)> {
        let mut groups: BTreeMap<String, Vec<(Timestamp, IncidentId)>> = BTreeMap::new();
        {
            let map = self.map.read().unwrap_or_else(|e| e.into_inner());
            for s in map.values().flat_map(HashMap::values) {
                match groups.get_mut(s.severity()) {
                    Some(group) => group.push((s.first_seen(), s.id())),
                    None => {
                        groups.insert(s.severity().to_owned(), vec![(s.first_seen(), s.id())]);
                    }
                }
            }
        }
        groups
            .into_iter()
            .map(|(severity, mut group)| {
                let count = group.len();
                if group.len() > per {
                    group.select_nth_unstable(per);
                    group.truncate(per);
                }
                group.sort_unstable();
                (severity, (count, group.into_iter().map(|(_, id)| id).collect()))
            })
            .collect()
    }

    /// The open incidents a maintenance window from the config holds back.
    fn held_by_config(&self) -> Vec<IncidentId> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.values()
            .flat_map(HashMap::values)
            .filter(|s| s.held_by_config())
            .map(|s| s.id())
            .collect()
    }

    fn quiet_since(&self, cutoff: Timestamp) -> Vec<IncidentId> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.values()
            .flat_map(HashMap::values)
            .filter(|s| s.last_seen() < cutoff)
            .map(|s| s.id())
            .collect()
    }

    fn apply(&self, changed: impl IntoIterator<Item = Incident>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        for incident in changed {
            if incident.status.is_open() {
                // Owned incidents: their keys move into the map instead of being copied.
                let summary = Summary::of(&incident);
                let Incident { source, dedup_key, .. } = incident;
                match map.get_mut(source.as_str()) {
                    Some(keys) => {
                        keys.insert(dedup_key, summary);
                    }
                    None => {
                        map.insert(source, HashMap::from([(dedup_key, summary)]));
                    }
                }
            } else if let Some(keys) = map.get_mut(incident.source.as_str())
                && keys.get(incident.dedup_key.as_str()).is_some_and(|s| s.id() == incident.id)
            {
                keys.remove(incident.dedup_key.as_str());
                if keys.is_empty() {
                    map.remove(incident.source.as_str());
                }
            }
        }
    }
}

/// The ingest side's handle: cheap to clone, one per request.
#[derive(Debug, Clone)]
pub struct Journal {
    tx: mpsc::Sender<Command>,
    capacity: usize,
    metrics: Arc<Metrics>,
    pub open: Arc<OpenIndex>,
    /// The rotation overrides as of the last commit (for the API and the escalation engine).
    pub overrides: Arc<OverrideSet>,
    /// Poked after a commit that made notifications due, so delivery starts at once instead of
    /// at its next poll.
    pub wake: Arc<tokio::sync::Notify>,
    timers_changed: Arc<tokio::sync::Notify>,
    clock: SharedClock,
}

/// An open incident an earlier version held back for a maintenance window without recording
/// `held_by` or scheduling a timer for the window's end: it would never page.
#[derive(Debug, Clone)]
struct LegacyHold {
    id: IncidentId,
    window: String,
    /// The window's end as the suppression text stated it.
    until: Option<Timestamp>,
}

/// The open incidents an earlier version held back for a maintenance window (see
/// [`LegacyHold`]): by their decision's suppression text, or, when a later trigger replaced the
/// decision, by the timeline entry that said what the window held back — unless a later entry
/// says the window's end was dealt with. The writer's first commit holds them properly
/// (`Writer::recheck_held`), so this finds each once.
fn legacy_holds(store: &Store, open: &[Incident]) -> Result<Vec<LegacyHold>, StoreError> {
    let mut out = Vec::new();
    for incident in open.iter().filter(|i| i.held_by.is_none()) {
        let said = incident.decision.suppressed.as_deref();
        if let Some((window, until)) = said.and_then(escalation::parse_window_reason) {
            out.push(LegacyHold { id: incident.id, window: window.to_string(), until });
            continue;
        }
        // It paged, or the rules suppress it: nothing a window still holds back.
        if incident.escalation.is_some() || said.is_some() {
            continue;
        }
        let timeline = store.timeline(incident.id)?;
        let held = timeline.iter().find_map(|e| {
            let reason = e.message.strip_prefix("suppressed (")?.rsplit_once("); held back ")?.0;
            (e.kind == EntryKind::Suppressed).then_some(())?;
            escalation::parse_window_reason(reason)
        });
        let dealt_with = || {
            timeline.iter().any(|e| {
                e.kind != EntryKind::Suppressed && e.message.starts_with("maintenance window `")
            })
        };
        if let Some((window, until)) = held
            && !dealt_with()
        {
            out.push(LegacyHold { id: incident.id, window: window.to_string(), until });
        }
    }
    Ok(out)
}

/// Joining this waits until everything sent before the last [`Journal`] was dropped is
/// committed and answered.
pub struct WriterThread(std::thread::JoinHandle<()>);

impl WriterThread {
    pub fn join(self) {
        if self.0.join().is_err() {
            tracing::error!("journal writer thread panicked");
        }
    }
}

/// Starts the writer thread after rebuilding the open-incident index from the store.
/// `queue_capacity` bounds the requests that may wait (beyond it, ingest answers 503 instead of
/// buffering without limit); `max_batch_events` bounds one transaction so a flood cannot make a
/// single commit arbitrarily slow.
pub fn spawn(
    store: Arc<Store>,
    runtime: Arc<ArcSwap<Runtime>>,
    metrics: Arc<Metrics>,
    queue_capacity: usize,
    max_batch_events: usize,
    clock: SharedClock,
) -> Result<(Journal, WriterThread), StoreError> {
    let open = Arc::new(OpenIndex::default());
    let open_incidents = store.open_incidents()?;
    let legacy_holds = legacy_holds(&store, &open_incidents)?;
    open.apply(open_incidents);
    metrics.incidents_open.set(open.len() as i64);
    let overrides = Arc::new(OverrideSet::new(store.overrides()?));
    let (tx, rx) = mpsc::channel(queue_capacity);
    let wake = Arc::new(tokio::sync::Notify::new());
    let timers_changed = Arc::new(tokio::sync::Notify::new());
    let writer = Writer {
        store: store.clone(),
        runtime,
        metrics: metrics.clone(),
        open: open.clone(),
        overrides: overrides.clone(),
        max_batch_events,
        wake: wake.clone(),
        timers_changed: timers_changed.clone(),
        started: clock.now(),
        clock: clock.clone(),
        windows: std::sync::Mutex::new(store.maintenance_windows()?),
        checked: RefCell::new(None),
        legacy_holds: RefCell::new(legacy_holds),
    };
    let handle = std::thread::Builder::new()
        .name("tocsin-journal".into())
        .spawn(move || writer.run(rx))
        .expect("spawning the journal thread");
    let journal = Journal {
        tx,
        capacity: queue_capacity,
        metrics,
        open,
        overrides,
        wake,
        timers_changed,
        clock,
    };
    Ok((journal, WriterThread(handle)))
}

impl Journal {
    fn send(&self, cmd: Command) -> Result<(), JournalError> {
        self.tx.try_send(cmd).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => JournalError::Overloaded(self.capacity),
            mpsc::error::TrySendError::Closed(_) => JournalError::Closed,
        })?;
        self.metrics.journal_queue_depth.inc();
        Ok(())
    }

    /// Stores the events and applies them to their incidents. Returns only after the commit
    /// (or its failure).
    pub async fn append(&self, events: Vec<Scored>) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::Append { events, reply })?;
        match answer.await {
            Ok((_events, result)) => result.map_err(JournalError::Store),
            // The writer dropped the request without answering: it exited.
            Err(_) => Err(JournalError::Closed),
        }
    }

    /// A person acknowledges or resolves an incident; answers with the incident as committed.
    pub async fn act(
        &self,
        id: IncidentId,
        action: PersonAction,
        by: String,
    ) -> Result<Result<Incident, ActError>, JournalError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Act { id, action, by, reply })?;
        match answer.await {
            Ok(result) => result.map_err(JournalError::Store),
            Err(_) => Err(JournalError::Closed),
        }
    }

    /// Claims up to `limit` due notifications for delivery.
    pub async fn claim(&self, limit: usize) -> Result<Vec<Notification>, JournalError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Claim { now: self.clock.now(), limit, reply })?;
        answer.await.map_err(|_| JournalError::Closed)?.map_err(JournalError::Store)
    }

    /// Records what happened to claimed notifications.
    pub async fn report(
        &self,
        outcomes: Vec<(NotificationId, Attempt)>,
    ) -> Result<(), JournalError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Report { outcomes, reply })?;
        answer.await.map_err(|_| JournalError::Closed)?.map_err(JournalError::Store)
    }

    /// Retries or drops one notification for an operator.
    pub async fn queue(
        &self,
        id: NotificationId,
        op: QueueOp,
        by: String,
    ) -> Result<Result<Notification, String>, JournalError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Queue { id, op, by, reply })?;
        answer.await.map_err(|_| JournalError::Closed)?.map_err(JournalError::Store)
    }

    /// Re-enables a webhook endpoint disabled after a 410; answers once it is committed with
    /// why it had been disabled (`Err`: it was not disabled).
    pub async fn enable_webhook(
        &self,
        name: String,
        by: String,
    ) -> Result<Result<String, String>, JournalError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::EnableWebhook { name, by, reply })?;
        answer.await.map_err(|_| JournalError::Closed)?.map_err(JournalError::Store)
    }

    /// Adds or deletes a rotation override; answers once it is committed (`Err`: refused).
    pub async fn change_override(
        &self,
        op: OverrideOp,
    ) -> Result<Result<Override, String>, JournalError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Override { op, reply })?;
        answer.await.map_err(|_| JournalError::Closed)?.map_err(JournalError::Store)
    }

    /// Asks the writer to resolve incidents quiet for longer than `quiet` (fire and forget: the
    /// next sweep retries whatever a full queue turned away).
    pub fn auto_resolve(&self, quiet: jiff::SignedDuration) -> Result<(), JournalError> {
        self.send(Command::AutoResolve { now: self.clock.now(), quiet })
    }

    /// Fires every timer due now; returns after the commit.
    pub async fn tick(&self) -> Result<(), JournalError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Tick { now: self.clock.now(), reply })?;
        answer.await.map_err(|_| JournalError::Closed)?.map_err(JournalError::Store)
    }

    /// Opens or ends a maintenance window; answers with the window as committed.
    pub async fn maintenance(
        &self,
        op: MaintenanceOp,
        by: String,
    ) -> Result<Result<Window, String>, JournalError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Maintenance { op, by, reply })?;
        answer.await.map_err(|_| JournalError::Closed)?.map_err(JournalError::Store)
    }

    /// A person changes an incident; answers with the incident as committed.
    pub async fn amend(
        &self,
        id: IncidentId,
        change: Amendment,
        by: String,
    ) -> Result<Result<Incident, ActError>, JournalError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Amend { id, change, by, reply })?;
        match answer.await {
            Ok(result) => result.map_err(JournalError::Store),
            Err(_) => Err(JournalError::Closed),
        }
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The writer thread has stopped (it ended or died): nothing can be stored any more.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Completes when the writer scheduled a timer (the scheduler re-reads the next due time).
    pub async fn timers_changed(&self) {
        self.timers_changed.notified().await;
    }
}

/// What a command decided, answered once the batch is committed (a command that must be
/// tried again after another one in its batch failed is decided afresh).
enum Decided {
    Nothing,
    Incident(Box<Result<Incident, ActError>>),
    Claimed(Vec<Notification>),
    Window(Box<Result<Window, String>>),
    Queue(Box<Result<Notification, String>>),
    Override(Result<Override, String>),
    Webhook(Result<String, String>),
}

struct Writer {
    store: Arc<Store>,
    /// Policies, templates and delivery settings, read once per batch.
    runtime: Arc<ArcSwap<Runtime>>,
    metrics: Arc<Metrics>,
    open: Arc<OpenIndex>,
    overrides: Arc<OverrideSet>,
    max_batch_events: usize,
    wake: Arc<tokio::sync::Notify>,
    /// Tells the timer scheduler that a timer was scheduled (it may be due sooner than the one
    /// it is waiting for).
    timers_changed: Arc<tokio::sync::Notify>,
    clock: SharedClock,
    /// When this writer started: a timer due before it came due while the daemon was down.
    started: Timestamp,
    /// Maintenance windows opened through the API, as committed (the config's come with the
    /// runtime).
    windows: std::sync::Mutex<Vec<Window>>,
    /// The runtime whose maintenance windows the held incidents were last checked against;
    /// `None` until the first commit (see [`Writer::recheck_held`]).
    checked: RefCell<Option<Arc<Runtime>>>,
    /// Incidents an earlier version held back without recording it, for the first commit.
    legacy_holds: RefCell<Vec<LegacyHold>>,
}

impl Writer {
    fn run(self, mut rx: mpsc::Receiver<Command>) {
        let mut commands = Vec::new();
        // `blocking_recv` returns None once every Journal handle is dropped and the queue is
        // empty: the graceful-shutdown path, after the last request was answered.
        while let Some(first) = rx.blocking_recv() {
            let mut pending = Some(first);
            let mut events = 0usize;
            while let Some(cmd) = pending.take() {
                self.metrics.journal_queue_depth.dec();
                if let Command::Append { events: evs, .. } = &cmd {
                    events += evs.len();
                }
                commands.push(cmd);
                if events < self.max_batch_events {
                    pending = rx.try_recv().ok();
                }
            }
            self.commit(std::mem::take(&mut commands), events);
        }
        tracing::debug!("journal writer stopped: all requests answered");
    }

    /// Commits a batch of commands in one transaction and answers them. A command whose
    /// decision panics (a bug in Tocsin, not a damaged store: redb's own calls are caught
    /// inside the store) is answered with an error and dropped, and the rest of the batch is
    /// decided again without it, so that one poison command neither takes its neighbours
    /// down nor stops the writer.
    fn commit(&self, mut commands: Vec<Command>, events: usize) {
        while let Some(rest) = self.commit_once(commands, events) {
            if rest.is_empty() {
                return;
            }
            commands = rest;
        }
    }

    /// One try at [`Writer::commit`]: `Some(rest)` when a command panicked and was answered;
    /// `rest` must be tried again.
    fn commit_once(&self, mut commands: Vec<Command>, events: usize) -> Option<Vec<Command>> {
        let started = Instant::now();
        let mut outcomes = Vec::with_capacity(commands.len());
        let mut poisoned = None;
        let mut changes = Changes::default();
        // In a storm nearly every event of a batch is a counted repeat: no rehashing midway.
        changes.counted.reserve(events);
        let rt = self.runtime.load_full();
        // The first commit, and the first after a reload that changed `maintenance:`, checks
        // what the windows hold back against the windows as they are now.
        let recheck = match self.checked.borrow().as_ref() {
            None => true,
            Some(before) => {
                !Arc::ptr_eq(before, &rt)
                    && before.config.escalation.maintenance != rt.config.escalation.maintenance
            }
        };
        let result = self.store.write(|batch| {
            let now = self.clock.now();
            let metrics = &*self.metrics;
            let mut tx = Txn { batch, changes: &mut changes, rt: &rt, metrics, now };
            if recheck {
                self.recheck_held(&mut tx)?;
            }
            for (i, cmd) in commands.iter().enumerate() {
                match panic_message(|| self.dispatch(&mut tx, cmd)) {
                    Ok(outcome) => outcomes.push(outcome?),
                    Err(why) => {
                        poisoned = Some(i);
                        return Err(StoreError::Panicked(why));
                    }
                }
            }
            let Txn { batch, changes, .. } = tx;
            for id in &changes.order {
                batch.put_incident(&changes.incidents[id], changes.was_open.contains(id))?;
            }
            for (id, entries) in &changes.timeline {
                let first = if changes.opened.contains(id) { Some(0) } else { None };
                batch.append_timeline(*id, first, entries)?;
            }
            Ok(())
        });
        self.metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
        let e = match result {
            Ok(()) => {
                *self.checked.borrow_mut() = Some(rt);
                if recheck {
                    self.legacy_holds.borrow_mut().clear();
                }
                self.metrics.commit_batch_events.observe(events as f64);
                self.record(&changes);
                self.overrides.apply(&changes.overrides);
                // Counts first: an incident also changed in full in this batch gets its
                // summary from that change.
                self.open.counted(&changes.counted);
                let mut changed = changes.incidents;
                self.open.apply(changes.order.iter().filter_map(|id| changed.remove(id)));
                self.metrics.incidents_open.set(self.open.len() as i64);
                if changes.due {
                    self.wake.notify_one();
                }
                if changes.timers {
                    self.timers_changed.notify_one();
                }
                if let Some(windows) = changes.windows.take() {
                    *self.windows.lock().unwrap_or_else(|e| e.into_inner()) = windows;
                }
                for (cmd, outcome) in commands.into_iter().zip(outcomes) {
                    answer(cmd, outcome);
                }
                return None;
            }
            Err(e) => Arc::new(e),
        };
        self.metrics.commit_failures.inc();
        if let Some(i) = poisoned {
            let cmd = commands.remove(i);
            tracing::error!(error = %e, command = cmd.kind(), "a command failed inside Tocsin (a bug); it was answered with an error and the rest of its batch is tried again");
            fail(cmd, &e);
            return Some(commands);
        }
        tracing::error!(error = %e, events, "journal commit failed; nothing in the batch was stored");
        for cmd in commands {
            fail(cmd, &e);
        }
        None
    }

    /// Decides one command in the batch (stored when the batch commits): hands it to the
    /// function that decides it, at the time it was sent with (or the clock's now).
    fn dispatch(&self, tx: &mut Txn, cmd: &Command) -> Result<Decided, StoreError> {
        #[cfg(test)]
        if matches!(cmd, Command::Act { by, .. } if by == tests::POISON) {
            panic!("a decision that panics (test)");
        }
        tx.now = self.clock.now();
        Ok(match cmd {
            Command::Append { events, .. } => {
                for scored in events {
                    self.apply_event(tx, scored)?;
                }
                Decided::Nothing
            }
            Command::Act { id, action, by, .. } => {
                Decided::Incident(Box::new(self.act(tx, *id, *action, by)?))
            }
            Command::AutoResolve { now, quiet } => {
                tx.now = *now;
                self.auto_resolve(tx, *quiet)?;
                Decided::Nothing
            }
            Command::Claim { now, limit, .. } => {
                tx.now = *now;
                Decided::Claimed(self.claim(tx, *limit)?)
            }
            Command::Report { outcomes, .. } => {
                self.report(tx, outcomes.clone())?;
                Decided::Nothing
            }
            Command::Tick { now, .. } => {
                tx.now = *now;
                self.tick(tx)?;
                Decided::Nothing
            }
            Command::Maintenance { op, by, .. } => {
                Decided::Window(Box::new(self.maintenance(tx, op.clone(), by)?))
            }
            Command::Amend { id, change, by, .. } => {
                Decided::Incident(Box::new(self.amend(tx, *id, change.clone(), by)?))
            }
            Command::Queue { id, op, by, .. } => {
                Decided::Queue(Box::new(self.queue_op(tx, *id, *op, by)?))
            }
            Command::Override { op, .. } => Decided::Override(self.override_op(tx, op.clone())?),
            Command::EnableWebhook { name, by, .. } => {
                Decided::Webhook(self.enable_webhook(tx, name, by)?)
            }
        })
    }

    /// Counts what a committed batch did, by severity and kind.
    fn record(&self, changes: &Changes) {
        for id in &changes.opened {
            if let Some(incident) = changes.incidents.get(id) {
                self.metrics.incident_opened(incident);
            }
        }
    }
}

/// Answers a committed command with what it decided. A requester that gave up (client went
/// away) is fine: the commit stands.
fn answer(cmd: Command, outcome: Decided) {
    match (cmd, outcome) {
        (Command::Append { events, reply }, _) => {
            let _ = reply.send((events, Ok(())));
        }
        (Command::Act { reply, .. } | Command::Amend { reply, .. }, Decided::Incident(o)) => {
            let _ = reply.send(Ok(*o));
        }
        (Command::Claim { reply, .. }, Decided::Claimed(claimed)) => {
            let _ = reply.send(Ok(claimed));
        }
        (Command::Report { reply, .. } | Command::Tick { reply, .. }, _) => {
            let _ = reply.send(Ok(()));
        }
        (Command::Maintenance { reply, .. }, Decided::Window(o)) => {
            let _ = reply.send(Ok(*o));
        }
        (Command::Queue { reply, .. }, Decided::Queue(o)) => {
            let _ = reply.send(Ok(*o));
        }
        (Command::Override { reply, .. }, Decided::Override(o)) => {
            let _ = reply.send(Ok(o));
        }
        (Command::EnableWebhook { reply, .. }, Decided::Webhook(o)) => {
            let _ = reply.send(Ok(o));
        }
        (Command::AutoResolve { .. }, _) => {}
        (cmd, _) => unreachable!("{} decided an outcome of another kind", cmd.kind()),
    }
}

impl Command {
    /// The command's name, for logs.
    fn kind(&self) -> &'static str {
        match self {
            Command::Append { .. } => "append",
            Command::Act { .. } => "act",
            Command::AutoResolve { .. } => "auto-resolve",
            Command::Claim { .. } => "claim",
            Command::Report { .. } => "report",
            Command::Tick { .. } => "tick",
            Command::Amend { .. } => "amend",
            Command::Maintenance { .. } => "maintenance",
            Command::Queue { .. } => "queue",
            Command::EnableWebhook { .. } => "enable-webhook",
            Command::Override { .. } => "override",
        }
    }
}

/// Answers a command that no transaction reached with the store's error.
fn fail(cmd: Command, e: &Arc<StoreError>) {
    match cmd {
        Command::Append { events, reply } => {
            let _ = reply.send((events, Err(e.clone())));
        }
        Command::Act { reply, .. } => {
            let _ = reply.send(Err(e.clone()));
        }
        Command::AutoResolve { .. } => {}
        Command::Claim { reply, .. } => {
            let _ = reply.send(Err(e.clone()));
        }
        Command::Report { reply, .. } => {
            let _ = reply.send(Err(e.clone()));
        }
        Command::Queue { reply, .. } => {
            let _ = reply.send(Err(e.clone()));
        }
        Command::Tick { reply, .. } => {
            let _ = reply.send(Err(e.clone()));
        }
        Command::Amend { reply, .. } => {
            let _ = reply.send(Err(e.clone()));
        }
        Command::Maintenance { reply, .. } => {
            let _ = reply.send(Err(e.clone()));
        }
        Command::Override { reply, .. } => {
            let _ = reply.send(Err(e.clone()));
        }
        Command::EnableWebhook { reply, .. } => {
            let _ = reply.send(Err(e.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::escalation::TimerKind;
    use crate::store::TimerReader;
    use jiff::SignedDuration;

    const T0: &str = "2026-03-02T09:00:00Z";
    /// An actor whose command panics in [`Writer::dispatch`] (a bug in Tocsin's own logic).
    pub(super) const POISON: &str = "user:poison";

    /// Ana by email, one policy paging her, the default.
    const PAGE_ANA: &str = r#"people:
  - {id: ana, name: Ana, email: ana@example.com}
notifications:
  email: {relay: 127.0.0.1, port: 2525, tls: none, from: "Tocsin <tocsin@example.com>"}
policies:
  - name: page
    notify: [{person: ana, channels: [email]}]
default_policy: page
"#;

    fn runtime(yaml: &str) -> Runtime {
        let raw = crate::config::parse(yaml, "t.yaml").unwrap();
        let config = crate::config::validate(raw, "t.yaml", &|_: &str| None).unwrap();
        crate::runtime::build(config, true).unwrap()
    }

    /// A writer on an in-memory store, committing the batches a test makes up.
    fn writer(rt: Runtime, clock: Arc<ManualClock>) -> Writer {
        Writer {
            store: Arc::new(Store::open_in_memory().unwrap()),
            runtime: Arc::new(ArcSwap::from_pointee(rt)),
            metrics: Arc::new(Metrics::new()),
            open: Arc::new(OpenIndex::default()),
            overrides: Arc::new(OverrideSet::new(Vec::new())),
            max_batch_events: 100,
            wake: Arc::new(tokio::sync::Notify::new()),
            timers_changed: Arc::new(tokio::sync::Notify::new()),
            started: crate::clock::Clock::now(&*clock),
            clock,
            windows: std::sync::Mutex::new(Vec::new()),
            checked: RefCell::new(None),
            legacy_holds: RefCell::new(Vec::new()),
        }
    }

    fn trigger(w: &Writer, key: &str) -> Command {
        let body =
            serde_json::json!({"dedup_key": key, "summary": "db down", "severity": "critical"});
        let ctx = crate::normalize::Context::new("default", w.clock.now());
        let events = crate::normalize::canonical(body.to_string().as_bytes(), ctx).unwrap().events;
        let scored = crate::scoring::score(&w.runtime.load(), &w.open, events).unwrap();
        Command::Append { events: scored, reply: oneshot::channel().0 }
    }

    // Tokio: the email channel is built inside its runtime (nothing is sent here).
    #[tokio::test]
    async fn ending_a_window_early_pages_an_incident_opened_in_the_same_batch() {
        let rt = runtime(PAGE_ANA);
        let t0: Timestamp = T0.parse().unwrap();
        let clock = Arc::new(ManualClock::new(t0));
        let w = writer(rt, clock.clone());
        let (reply, mut opened) = oneshot::channel();
        let window = Window {
            id: None,
            created: None,
            name: "db failover".into(),
            starts: t0,
            ends: t0 + SignedDuration::from_hours(1),
            source: None,
            service: None,
            labels: BTreeMap::new(),
        };
        let op = MaintenanceOp::Open(window);
        w.commit(vec![Command::Maintenance { op, by: "user:admin".into(), reply }], 0);
        let id = opened.try_recv().unwrap().unwrap().unwrap().id.unwrap();
        // One batch: a trigger the window holds back, then the window ended early.
        let now = clock.advance(SignedDuration::from_mins(10)).unwrap();
        let end = Command::Maintenance {
            op: MaintenanceOp::End(id),
            by: "user:admin".into(),
            reply: oneshot::channel().0,
        };
        w.commit(vec![trigger(&w, "db"), end], 1);
        let incident = w.store.open_incidents().unwrap().remove(0);
        assert_eq!(incident.held_by.as_ref().map(|h| h.id), Some(Some(id)));
        let timers = w.store.incident_timers(incident.id).unwrap();
        let ends: Vec<Timestamp> = timers
            .iter()
            .filter(|t| matches!(t.kind, TimerKind::WindowEnds { .. }))
            .map(|t| t.due_at)
            .collect();
        assert_eq!(ends, [now], "the window ended now, not at its planned end: {timers:?}");
        w.commit(vec![Command::Tick { now, reply: oneshot::channel().0 }], 0);
        let incident = w.store.incident(incident.id).unwrap().unwrap();
        assert!(incident.held_by.is_none());
        assert_eq!(incident.escalation.map(|e| e.policy).as_deref(), Some("page"), "paged now");
    }

    #[tokio::test]
    async fn a_command_that_panics_fails_alone_and_the_writer_goes_on() {
        let rt = runtime(PAGE_ANA);
        let clock = Arc::new(ManualClock::new(T0.parse().unwrap()));
        let w = writer(rt, clock);
        let append = |key| {
            let Command::Append { events, .. } = trigger(&w, key) else { unreachable!() };
            let (reply, answer) = oneshot::channel();
            (Command::Append { events, reply }, answer)
        };
        let (a, mut a_answer) = append("a");
        let (b, mut b_answer) = append("b");
        let (reply, mut poison_answer) = oneshot::channel();
        let poison =
            Command::Act { id: 1, action: PersonAction::Acknowledge, by: POISON.into(), reply };
        w.commit(vec![a, poison, b], 2);

        let err = poison_answer.try_recv().unwrap().unwrap_err();
        assert!(matches!(&*err, StoreError::Panicked(why) if why.contains("panics")), "{err}");
        assert!(!err.to_string().contains("damaged"), "{err}");
        // Its neighbours in the batch were stored, and the store is not taken for damaged.
        assert!(a_answer.try_recv().unwrap().1.is_ok());
        assert!(b_answer.try_recv().unwrap().1.is_ok());
        assert_eq!(w.store.open_incidents().unwrap().len(), 2);
        assert_eq!(w.store.write_problem(), None);
        // The writer goes on: the next batch commits at once.
        let (c, mut c_answer) = append("c");
        w.commit(vec![c], 1);
        assert!(c_answer.try_recv().unwrap().1.is_ok());
        assert_eq!(w.store.open_incidents().unwrap().len(), 3);
    }
}
