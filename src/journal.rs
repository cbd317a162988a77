//! The journal writer: the single owner of every state change.
//!
//! Ingest handlers hand normalized, scored events to it over a bounded channel and wait for the
//! commit; acknowledgements and resolves from people, and the auto-resolve sweep, come the same
//! way, never as side writes. The writer thread takes whatever is waiting, applies it all in one
//! transaction — events, the incidents they open or join, their timelines — commits (one fsync
//! for many requests: group commit), then answers every request in the batch. A 2xx therefore
//! never goes out before the event and its incident change are on disk.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};

use arc_swap::ArcSwap;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::escalation::{self, EscalationState, Timer, TimerKind, Window};
use crate::event::{Action, Event};
use crate::incident::{
    self, ActionError, Entry, EntryKind, Incident, IncidentId, Outcome, Stamp, Status, Summary,
};
use crate::metrics::Metrics;
use crate::notify::{Channel, SendError};
use crate::oncall::{Override, OverrideChange, OverrideSet};
use crate::outbox::{Attempt, Next, Notification, NotificationId, Reason, State};
use crate::policy::{self, Delivery, Policy};
use crate::rules::{Evaluation, IncidentView};
use crate::runtime::Runtime;
use crate::store::{
    AdminReader, AdminRows, Backend, Batch, Encoded, EventRows, IncidentReader, IncidentRows,
    OutboxRows, Store, StoreError, TimerRows, panic_message,
};

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

/// What an operator can do to one notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOp {
    /// Make a dead (or delivered) notification due now again, keeping its idempotency id.
    Retry,
    /// Dead-letter a pending notification with the operator as the reason.
    Drop,
}

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
        self.timers_changed.notified().await
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

/// Incidents changed by the batch so far, and which open incident each key now has, so that
/// two events for one key in one batch see each other before the commit.
#[derive(Default)]
struct Changes {
    incidents: IdMap<Incident>,
    /// source → dedup key → the open incident as of this batch (None: closed in it).
    open: HashMap<String, HashMap<String, Option<IncidentId>>>,
    /// Incidents that were open before this batch began (the open index must drop them when
    /// they close) — the rest were opened by it.
    was_open: IdSet,
    /// Timeline entries to write at the end of the batch, per incident in first-touch order:
    /// one sequence lookup per incident instead of one per entry.
    timeline: Vec<(IncidentId, Vec<Entry>)>,
    /// Where each incident's entries sit in `timeline`.
    timeline_index: IdMap<usize>,
    /// Incidents opened in this batch: their timelines start at 0 without a lookup.
    opened: IdSet,
    /// Order in which incidents were first changed, so stores and metrics are deterministic.
    order: Vec<IncidentId>,
    /// Notifications became due: wake the delivery workers after the commit.
    due: bool,
    /// Timers were scheduled: wake the scheduler after the commit.
    timers: bool,
    /// The API's maintenance windows as changed by this batch (applied after the commit).
    windows: Option<Vec<Window>>,
    /// Rotation override changes, applied to the in-memory set after the commit.
    overrides: Vec<OverrideChange>,
    /// Repeated triggers stored as counts only (see [`Journal::repeat`]), by incident: the
    /// open index's counts follow after the commit.
    counted: IdMap<Counted>,
}

/// Maps and sets of incidents for the writer: incident ids are ours (allocated in order), not a
/// sender's, so they need no DoS-resistant hasher, and foldhash is several times faster than
/// SipHash on the writer thread, which every event passes through.
type IdMap<V> = HashMap<IncidentId, V, foldhash::fast::RandomState>;
type IdSet = std::collections::HashSet<IncidentId, foldhash::fast::RandomState>;

/// An incident's counts after the repeated triggers of one batch.
#[derive(Debug)]
struct Counted {
    source: String,
    dedup_key: String,
    count: u64,
    last_seen: Timestamp,
}

impl Changes {
    fn log(&mut self, id: IncidentId, entries: Vec<Entry>) {
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
            if recheck {
                self.recheck_held(batch, &mut changes, &rt)?;
            }
            for (i, cmd) in commands.iter().enumerate() {
                match panic_message(|| self.decide(batch, &mut changes, &rt, cmd)) {
                    Ok(outcome) => outcomes.push(outcome?),
                    Err(why) => {
                        poisoned = Some(i);
                        return Err(StoreError::Panicked(why));
                    }
                }
            }
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
                *self.checked.borrow_mut() = Some(rt.clone());
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

    /// Decides one command in the batch (stored when the batch commits).
    fn decide(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        cmd: &Command,
    ) -> Result<Decided, StoreError> {
        #[cfg(test)]
        if matches!(cmd, Command::Act { by, .. } if by == tests::POISON) {
            panic!("a decision that panics (test)");
        }
        Ok(match cmd {
            Command::Append { events, .. } => {
                for scored in events {
                    self.apply_event(batch, changes, rt, scored)?;
                }
                Decided::Nothing
            }
            Command::Act { id, action, by, .. } => {
                Decided::Incident(Box::new(self.act(batch, changes, rt, *id, *action, by)?))
            }
            Command::AutoResolve { now, quiet } => {
                self.auto_resolve(batch, changes, rt, *now, *quiet)?;
                Decided::Nothing
            }
            Command::Claim { now, limit, .. } => {
                Decided::Claimed(self.claim(batch, changes, rt, *now, *limit)?)
            }
            Command::Report { outcomes, .. } => {
                self.report(batch, changes, rt, outcomes.clone())?;
                Decided::Nothing
            }
            Command::Tick { now, .. } => {
                self.tick(batch, changes, rt, *now)?;
                Decided::Nothing
            }
            Command::Maintenance { op, by, .. } => {
                Decided::Window(Box::new(self.maintenance(batch, changes, op.clone(), by)?))
            }
            Command::Amend { id, change, by, .. } => Decided::Incident(Box::new(self.amend(
                batch,
                changes,
                rt,
                *id,
                change.clone(),
                by,
            )?)),
            Command::Queue { id, op, by, .. } => {
                Decided::Queue(Box::new(self.queue_op(batch, changes, *id, *op, by)?))
            }
            Command::Override { op, .. } => Decided::Override(override_op(
                batch,
                &mut changes.overrides,
                op.clone(),
                self.clock.now(),
            )?),
            Command::EnableWebhook { name, by, .. } => {
                Decided::Webhook(match batch.enable_endpoint(name)? {
                    Some(why) => {
                        tracing::info!(endpoint = %name, %by, was = %why, "webhook endpoint re-enabled");
                        changes.due = true;
                        Ok(why)
                    }
                    None => Err(format!("webhook `{name}` is not disabled")),
                })
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

    fn current(
        &self,
        batch: &mut Batch<'_>,
        changes: &Changes,
        source: &str,
        key: &str,
    ) -> Result<Option<Incident>, StoreError> {
        let id = match changes.open.get(source).and_then(|m| m.get(key)) {
            Some(id) => *id,
            None => self.open.get(source, key),
        };
        match id {
            Some(id) => self.load(batch, changes, id),
            None => Ok(None),
        }
    }

    fn load(
        &self,
        batch: &mut Batch<'_>,
        changes: &Changes,
        id: IncidentId,
    ) -> Result<Option<Incident>, StoreError> {
        match changes.incidents.get(&id) {
            Some(incident) => Ok(Some(incident.clone())),
            None => batch.incident(id),
        }
    }

    /// Records an incident change: its timeline entries, and what the change sets off — a new
    /// incident's roles, first escalation step, notices and reminders; an acknowledgement
    /// stopping the steps; a resolve stopping everything, telling whoever was paged, and
    /// opening the after-action review.
    fn keep(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        mut incident: Incident,
        entries: Vec<incident::Entry>,
    ) -> Result<(), StoreError> {
        let has = |kind: EntryKind| entries.iter().any(|e| e.kind == kind);
        let (opened, acknowledged, resolved) =
            (has(EntryKind::Opened), has(EntryKind::Acknowledged), has(EntryKind::Resolved));
        changes.log(incident.id, entries);
        if opened {
            changes.opened.insert(incident.id);
            self.on_opened(batch, changes, rt, &mut incident)?;
        } else if !changes.incidents.contains_key(&incident.id)
            && !changes.opened.contains(&incident.id)
        {
            // First touched in this batch without opening: it came from the store, open.
            changes.was_open.insert(incident.id);
        }
        if acknowledged {
            self.on_acknowledged(batch, changes, rt, &mut incident)?;
        }
        if resolved {
            self.on_resolved(batch, changes, rt, &mut incident)?;
        }
        self.save(changes, incident);
        Ok(())
    }

    /// Puts a changed incident in the batch (stored at the end, once).
    fn save(&self, changes: &mut Changes, incident: Incident) {
        let key = (incident.source.clone(), incident.dedup_key.clone());
        changes
            .open
            .entry(key.0)
            .or_default()
            .insert(key.1, incident.status.is_open().then_some(incident.id));
        if !changes.incidents.contains_key(&incident.id) {
            if !changes.opened.contains(&incident.id) && incident.status.is_open() {
                changes.was_open.insert(incident.id);
            }
            changes.order.push(incident.id);
        }
        changes.incidents.insert(incident.id, incident);
    }

    fn apply_event(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        scored: &Scored,
    ) -> Result<(), StoreError> {
        let event = &scored.encoded.event;
        for failure in &scored.evaluation.failures {
            self.metrics.rule_failed(failure);
        }
        self.metrics.rule_runs.inc_by(u64::from(scored.evaluation.ran));
        self.metrics.rule_outcomes_reused.inc_by(u64::from(scored.evaluation.reused));
        if let Some((id, count)) = self.repeat(changes, rt, scored) {
            batch.put_counts(id, count, event.received_at);
            batch.insert_event(&scored.encoded, Some(id))?;
            let c = changes.counted.entry(id).or_insert_with(|| Counted {
                source: event.source.clone(),
                dedup_key: event.dedup_key.clone(),
                count,
                last_seen: event.received_at,
            });
            (c.count, c.last_seen) = (count, event.received_at);
            return Ok(());
        }
        let open = self.current(batch, changes, &event.source, &event.dedup_key)?;
        let open_drill = open.as_ref().is_some_and(|i| i.drill);
        let mut new_id = None;
        let outcome = incident::apply(open, event, &scored.evaluation, || {
            // Allocation can fail only with the store; remember and report after `apply`.
            let id = batch.next_incident_id();
            let value = id.as_ref().copied().unwrap_or(0);
            new_id = Some(id);
            value
        });
        if let Some(Err(e)) = new_id {
            return Err(e);
        }
        let was_drill = open_drill;
        let validity = escalation::validity(event, rt.config.resolve_timeout);
        match outcome {
            Outcome::Updated(mut incident, entries) if was_drill && !incident.drill => {
                // A real event joined a drill incident: page as if it had just opened, since
                // the policy's people heard nothing while it was a drill.
                batch.insert_event(&scored.encoded, Some(incident.id))?;
                changes.log(incident.id, entries);
                self.track_expiry(batch, changes, &mut incident, validity, event.received_at)?;
                self.cancel(batch, incident.id, |k| matches!(k, TimerKind::Step { .. }))?;
                incident.escalation = None;
                if incident.status == Status::Triggered
                    && incident.decision.suppressed.is_none()
                    && incident.held_by.is_none()
                    && let Some(p) = self.choose_policy(rt, &mut incident)
                {
                    let why = "a real event joined the drill incident";
                    let fired = self.fire_step(batch, changes, rt, &mut incident, &p, 0, 0, why)?;
                    changes.log(incident.id, fired);
                }
                self.save(changes, incident);
            }
            Outcome::Opened(mut incident, entries) => {
                // The services it affects: the ones named and everything downstream of them.
                let named = event
                    .service
                    .iter()
                    .chain(event.assessment.iter().flat_map(|a| &a.services))
                    .map(String::as_str);
                incident.scope = rt.triage().catalog.scope(named);
                batch.insert_event(&scored.encoded, Some(incident.id))?;
                self.track_expiry(batch, changes, &mut incident, validity, event.received_at)?;
                self.keep(batch, changes, rt, incident, entries)?;
            }
            Outcome::Updated(mut incident, mut entries) => {
                match event.action {
                    Action::Acknowledge => {
                        self.metrics.incident_acted(&incident, PersonAction::Acknowledge)
                    }
                    Action::Resolve => {
                        self.metrics.incident_acted(&incident, PersonAction::Resolve)
                    }
                    Action::Trigger => {
                        self.track_expiry(
                            batch,
                            changes,
                            &mut incident,
                            validity,
                            event.received_at,
                        )?;
                        entries.extend(self.start_comms_updates(batch, changes, rt, &incident)?);
                        // A later event can reveal what the first did not (customer data
                        // exposed after all): an obligation that applies now attaches now,
                        // counted from this event, and the legal liaison hears at once.
                        if !rt.config.escalation.notices.is_empty() {
                            let aware_at = event.received_at;
                            let before = incident.notices.len();
                            let attached =
                                self.attach_notices(batch, changes, rt, &mut incident, aware_at)?;
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
                                entries.extend(attached);
                                entries.extend(self.remind_role(
                                    batch,
                                    changes,
                                    rt,
                                    &incident,
                                    "legal_liaison",
                                    "Notice due",
                                    &line,
                                )?);
                            }
                        }
                    }
                }
                batch.insert_event(&scored.encoded, Some(incident.id))?;
                self.keep(batch, changes, rt, incident, entries)?;
            }
            Outcome::Ignored(why) => {
                batch.insert_event(&scored.encoded, None)?;
                tracing::debug!(event = %event.id, source = %event.source, key = %rt.redactor.log_text(&event.dedup_key, &crate::redact::Known::of_event(&rt.redactor, event)), why, "event stored; no incident change");
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
    fn repeat(
        &self,
        changes: &Changes,
        rt: &Runtime,
        scored: &Scored,
    ) -> Option<(IncidentId, u64)> {
        let event = &scored.encoded.event;
        let decision = &scored.evaluation.decision;
        if !scored.evaluation.failures.is_empty()
            || changes.open.get(&event.source).is_some_and(|m| m.contains_key(&event.dedup_key))
            || rt.config.escalation.notices.iter().any(|r| r.applies(decision))
        {
            return None;
        }
        let validity = escalation::validity(event, rt.config.resolve_timeout);
        let (id, stored) = self.open.repeat(scored, validity)?;
        if changes.incidents.contains_key(&id) {
            return None;
        }
        Some((id, changes.counted.get(&id).map_or(stored, |c| c.count) + 1))
    }

    fn act(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        id: IncidentId,
        action: PersonAction,
        by: &str,
    ) -> Result<Result<Incident, ActError>, StoreError> {
        let Some(current) = self.load(batch, changes, id)? else {
            return Ok(Err(ActError::NotFound(id)));
        };
        let now = self.clock.now();
        let done = match action {
            PersonAction::Acknowledge => incident::acknowledge(current, by, now, None),
            PersonAction::Resolve => incident::resolve(current, by, now, None),
        };
        match done {
            Ok((incident, entry)) => {
                self.metrics.incident_acted(&incident, action);
                self.keep(batch, changes, rt, incident, vec![entry])?;
                Ok(Ok(changes.incidents[&id].clone()))
            }
            Err(e) => Ok(Err(e.into())),
        }
    }

    /// A person's change to an incident: checked, applied, and put on the timeline with them
    /// as the actor.
    fn amend(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        id: IncidentId,
        change: Amendment,
        by: &str,
    ) -> Result<Result<Incident, ActError>, StoreError> {
        use crate::review::{ActionItem, ActionState, Review};
        let Some(mut incident) = self.load(batch, changes, id)? else {
            return Ok(Err(ActError::NotFound(id)));
        };
        let now = self.clock.now();
        let people = &rt.config.policies.people;
        let invalid = |m: String| Ok(Err(ActError::Invalid(m)));
        let stamp = Stamp { by: by.to_string(), at: now };
        let (kind, message) = match change {
            Amendment::Note { text } => (EntryKind::Note, text),
            Amendment::Role { role, person } => {
                if !escalation::valid_role_name(&role) {
                    return invalid(format!(
                        "`{role}` is not a role name: use lowercase letters, digits and `_`"
                    ));
                }
                let before = match &person {
                    Some(p) => {
                        if !people.contains_key(p) {
                            return invalid(format!("no person `{p}` in the config's people"));
                        }
                        incident.roles.insert(role.clone(), p.clone())
                    }
                    None => incident.roles.remove(&role),
                };
                let before = before.unwrap_or_else(|| "nobody".into());
                let after = person.unwrap_or_else(|| "nobody".into());
                (EntryKind::RoleChanged, format!("role {role}: {before} → {after}"))
            }
            Amendment::NoticeSent { index, at, reference } => {
                let Some(n) = incident.notices.get_mut(index) else {
                    return invalid(format!("incident #{id} has no notice #{index}"));
                };
                if let Some(sent) = &n.sent {
                    return invalid(format!(
                        "notice #{index} was already marked sent by {} at {}",
                        sent.by, sent.at
                    ));
                }
                let at = at.unwrap_or(now);
                if at > now {
                    return invalid(
                        "`at` is in the future: mark a notice sent once it was sent".into(),
                    );
                }
                n.sent = Some(Stamp { by: by.to_string(), at });
                n.reference = reference.clone();
                let timing = if at <= n.due_at {
                    format!("on time, {:#} before the deadline", n.due_at.duration_since(at))
                } else {
                    format!("LATE, {:#} after the deadline", at.duration_since(n.due_at))
                };
                let name = n.name.clone();
                let index32 = index as u32;
                self.cancel(batch, id, |k| {
                    matches!(k, TimerKind::NoticeReminder { notice } | TimerKind::NoticeDeadline { notice } if *notice == index32)
                })?;
                let reference = reference.map(|r| format!(" (reference: {r})")).unwrap_or_default();
                (
                    EntryKind::Notice,
                    format!("notice `{name}` marked sent at {at} by {by}{reference}: {timing}"),
                )
            }
            Amendment::Awareness { at, note } => {
                if at > now {
                    return invalid(
                        "`at` is in the future: awareness is when the organization became aware"
                            .into(),
                    );
                }
                let before = incident.awareness.as_ref().map_or(incident.first_seen, |a| a.at);
                let mut moved = Vec::new();
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
                    self.cancel(batch, id, |k| {
                        matches!(k, TimerKind::NoticeReminder { notice } | TimerKind::NoticeDeadline { notice } if *notice == index32)
                    })?;
                    self.schedule_notice(batch, changes, id, index32, n)?;
                    let left = if n.due_at > now {
                        format!("{:#} left", n.due_at.duration_since(now))
                    } else {
                        "already past: missed now".to_string()
                    };
                    moved.push(format!("`{}` now due {} ({left})", n.name, n.due_at));
                }
                let note_text = note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default();
                incident.awareness =
                    Some(incident::Awareness { at, by: by.to_string(), recorded_at: now, note });
                let notices = if moved.is_empty() {
                    "no notices to move".to_string()
                } else {
                    format!("notices: {}", moved.join("; "))
                };
                (
                    EntryKind::Notice,
                    format!(
                        "awareness recorded as {at} by {by} (was {before}){note_text}; {notices}"
                    ),
                )
            }
            Amendment::Review { summary, went_well, went_badly } => {
                if incident.status.is_open() && incident.review.is_none() {
                    return invalid(format!(
                        "incident #{id} is still open: its review opens when it resolves"
                    ));
                }
                let review = incident.review.get_or_insert_with(|| Review::new(now));
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
                    return invalid("give at least one of summary, went_well, went_badly".into());
                }
                review.updated = Some(stamp.clone());
                (EntryKind::Review, format!("review updated: {}", fields.join(", ")))
            }
            Amendment::AddAction { title, owner, due } => {
                if !people.contains_key(&owner) {
                    return invalid(format!("no person `{owner}` in the config's people"));
                }
                if incident.status.is_open() && incident.review.is_none() {
                    return invalid(format!(
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
                    created: stamp.clone(),
                    closed: None,
                });
                self.schedule(batch, changes, id, due.max(now), TimerKind::ActionDue { action })?;
                (
                    EntryKind::Review,
                    format!("action item #{action} added: {title} (owner {owner}, due {due})"),
                )
            }
            Amendment::UpdateAction { action, state, owner, due } => {
                let Some(item) = incident
                    .review
                    .as_mut()
                    .and_then(|r| r.actions.iter_mut().find(|a| a.id == action))
                else {
                    return invalid(format!("incident #{id} has no action item #{action}"));
                };
                if let Some(o) = &owner
                    && !people.contains_key(o)
                {
                    return invalid(format!("no person `{o}` in the config's people"));
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
                    return invalid("give at least one of state, owner, due".into());
                }
                let (open, due_at) = (item.state == ActionState::Open, item.due);
                self.cancel(
                    batch,
                    id,
                    |k| matches!(k, TimerKind::ActionDue { action: a } if *a == action),
                )?;
                if open {
                    self.schedule(
                        batch,
                        changes,
                        id,
                        due_at.max(now),
                        TimerKind::ActionDue { action },
                    )?;
                }
                (EntryKind::Review, format!("action item #{action}: {}", what.join(", ")))
            }
        };
        let e = Entry {
            at: now,
            actor: by.to_string(),
            kind,
            message,
            event_id: None,
            detail: serde_json::Value::Null,
        };
        self.save(changes, incident.clone());
        changes.log(id, vec![e]);
        Ok(Ok(incident))
    }

    fn maintenance(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        op: MaintenanceOp,
        by: &str,
    ) -> Result<Result<Window, String>, StoreError> {
        let now = self.clock.now();
        let mut windows = match changes.windows.take() {
            Some(w) => w,
            None => self.windows.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        };
        let result = match op {
            MaintenanceOp::Open(mut w) => {
                let id = batch.next_window_id()?;
                w.id = Some(id);
                w.created = Some(Stamp { by: by.to_string(), at: now });
                batch.put_window(id, &w)?;
                windows.push(w.clone());
                Ok(w)
            }
            MaintenanceOp::End(id) => match windows.iter_mut().find(|w| w.id == Some(id)) {
                None => Err(format!("no open maintenance window with id {id}")),
                Some(w) => {
                    let planned = w.ends;
                    w.ends = now.max(w.starts);
                    batch.put_window(id, w)?;
                    // The incidents it holds back page now, not at the planned end: their
                    // timers all sit at that one due time.
                    for t in batch.timers_at(planned)? {
                        if let TimerKind::WindowEnds { window } = &t.kind
                            && *window == w.name
                            // Opened in this batch, it is not in the store yet.
                            && self.load(batch, changes, t.incident)?.is_some_and(|i| {
                                i.held_by.as_ref().is_some_and(|h| h.id == Some(id))
                            })
                        {
                            batch.remove_timer(&t)?;
                            let kind = t.kind.clone();
                            self.schedule(batch, changes, t.incident, w.ends, kind)?;
                        }
                    }
                    Ok(w.clone())
                }
            },
        };
        // Windows that are over are forgotten in memory (they stay in the store for the record).
        windows.retain(|w| w.ends > now);
        changes.windows = Some(windows);
        Ok(result)
    }

    fn auto_resolve(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        now: Timestamp,
        quiet: jiff::SignedDuration,
    ) -> Result<(), StoreError> {
        let Ok(cutoff) = now.checked_sub(quiet) else { return Ok(()) };
        for id in self.open.quiet_since(cutoff) {
            let Some(current) = self.load(batch, changes, id)? else { continue };
            // A trigger earlier in this batch may have refreshed it.
            if current.last_seen >= cutoff || !current.status.is_open() {
                continue;
            }
            if let Ok((incident, mut entry)) = incident::resolve(current, "tocsin", now, None) {
                entry.message = format!("resolved automatically: no trigger for {quiet:#}");
                self.metrics.incident_acted(&incident, PersonAction::Resolve);
                self.keep(batch, changes, rt, incident, vec![entry])?;
            }
        }
        Ok(())
    }

    /// A new incident: who holds its roles, maintenance windows, the notices it owes, the first
    /// escalation step, and the status-update reminders.
    fn on_opened(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        incident: &mut Incident,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        incident.roles = self.role_holders(rt, incident.first_seen);
        let mut entries = Vec::new();
        if !incident.roles.is_empty() {
            let held: Vec<String> =
                incident.roles.iter().map(|(r, p)| format!("{r}: {p}")).collect();
            entries.push(entry(now, EntryKind::RoleChanged, format!("roles: {}", held.join(", "))));
        }
        if incident.decision.suppressed.is_none()
            && let Some(w) = self.covering_window(changes, rt, incident, incident.first_seen)
        {
            incident.decision.suppressed = Some(w.reason());
            incident.held_by = Some(w.held());
            // When the window ends with the incident still open, it pages then.
            self.schedule(
                batch,
                changes,
                incident.id,
                w.ends,
                TimerKind::WindowEnds { window: w.name.clone() },
            )?;
        }
        let policy = self.choose_policy(rt, incident);
        if let Some(choice) = &incident.policy_choice {
            let name = choice.policy.as_deref().unwrap_or("none");
            entries.push(entry(
                now,
                EntryKind::Note,
                format!("escalation policy `{name}`: {}", choice.why),
            ));
        }
        changes.log(incident.id, std::mem::take(&mut entries));
        // Notices first: a legal obligation holds even when notifications are suppressed, and
        // the legal liaison's first message states each notice and its deadline.
        let aware_at = incident.first_seen;
        entries.extend(self.attach_notices(batch, changes, rt, incident, aware_at)?);
        match &policy {
            _ if incident.decision.suppressed.is_some() => {
                let reason = incident.decision.suppressed.clone().unwrap_or_default();
                let held: Vec<String> = match &policy {
                    Some(p) => self.step_deliveries(rt, incident, p, 0, true).0.iter().map(describe).collect(),
                    None => Vec::new(),
                };
                entries.push(entry(
                    now,
                    EntryKind::Suppressed,
                    format!(
                        "suppressed ({reason}); held back {} notification(s){}{}",
                        held.len(),
                        if held.is_empty() { "" } else { ": " },
                        held.join(", ")
                    ),
                ));
            }
            None => entries.push(entry(
                now,
                EntryKind::Note,
                "no policy notifies anyone for this incident (no default_policy, severity_policies or rule-chosen policy)".to_string(),
            )),
            Some(p) => {
                let fired = self.fire_step(batch, changes, rt, incident, p, 0, 0, "the incident opened")?;
                entries.extend(fired);
            }
        }
        if incident.decision.suppressed.is_none()
            && let Some(every) = rt.config.escalation.comms_every_for(&incident.decision)
        {
            self.schedule(
                batch,
                changes,
                incident.id,
                escalation::after(now, every),
                TimerKind::CommsUpdate,
            )?;
        }
        changes.log(incident.id, entries);
        Ok(())
    }

    /// Checks what maintenance windows hold back against the windows as they are: at the first
    /// commit after start-up, and after a reload that changed `maintenance:`. An incident an
    /// earlier version held back without recording it ([`LegacyHold`]) is held properly, with a
    /// timer at the window's end (or now, if it is over); one held by a config window that the
    /// config now ends earlier or later, or no longer has, gets its timer moved to the new end
    /// (or now), instead of being noticed at the old end. Idempotent: a restart finds nothing
    /// left to do. API windows change only through the API, which moves their timers itself.
    fn recheck_held(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let config = &rt.config.escalation.maintenance;
        let legacy = self.legacy_holds.borrow().clone();
        if !legacy.is_empty() {
            let api: Vec<Window> = match &changes.windows {
                Some(w) => w.clone(),
                None => self.windows.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            };
            for hold in legacy {
                let Some(incident) = self.load(batch, changes, hold.id)? else { continue };
                if !incident.status.is_open() || incident.held_by.is_some() {
                    continue;
                }
                let named: Vec<&Window> =
                    config.iter().chain(&api).filter(|w| w.name == hold.window).collect();
                let window = named.iter().find(|w| Some(w.ends) == hold.until).or(named.first());
                let held = match window {
                    Some(w) => w.held(),
                    // Gone from the config (and not an API window): over.
                    None => escalation::Held {
                        window: hold.window.clone(),
                        id: None,
                        until: hold.until.filter(|u| *u <= now).unwrap_or(now),
                    },
                };
                let line = if held.until > now {
                    format!(
                        "maintenance window `{}` holds this incident back until {} (held by an earlier version, which kept no timer for the window's end): it pages then if still triggered",
                        held.window, held.until
                    )
                } else {
                    format!(
                        "maintenance window `{}` held this incident back and ended at {} (held by an earlier version, which did not page when a window ended): it pages now if still triggered",
                        held.window, held.until
                    )
                };
                self.hold(batch, changes, incident, held, line)?;
            }
        }
        for id in self.open.held_by_config() {
            let Some(incident) = self.load(batch, changes, id)? else { continue };
            let Some(was) = incident.held_by.clone().filter(|h| h.id.is_none()) else { continue };
            if !incident.status.is_open() {
                continue;
            }
            let named = || config.iter().filter(|w| w.name == was.window);
            let (held, line) = match named()
                .find(|w| w.ends == was.until)
                .or_else(|| named().next())
            {
                Some(w) if w.ends == was.until => continue,
                Some(w) if w.ends > now => (
                    w.held(),
                    format!(
                        "maintenance window `{}` now ends at {} (the config changed; it was to end at {}): held back until then, it pages then if still triggered",
                        w.name, w.ends, was.until
                    ),
                ),
                // Its timer is due already.
                _ if was.until <= now => continue,
                Some(w) => (
                    escalation::Held { until: now, ..w.held() },
                    format!(
                        "maintenance window `{}` ended at {} (the config changed; it was to end at {}): it pages now if still triggered",
                        w.name, w.ends, was.until
                    ),
                ),
                None => (
                    escalation::Held { until: now, ..was.clone() },
                    format!(
                        "maintenance window `{}` is no longer in the config (it was to end at {}): it pages now if still triggered",
                        was.window, was.until
                    ),
                ),
            };
            self.hold(batch, changes, incident, held, line)?;
        }
        Ok(())
    }

    /// Holds the incident back until `held.until` (now, if that is past): its window-end timer
    /// moves there, and the timeline says why (`line`).
    fn hold(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        mut incident: Incident,
        held: escalation::Held,
        line: String,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        self.cancel(batch, incident.id, |k| matches!(k, TimerKind::WindowEnds { .. }))?;
        let kind = TimerKind::WindowEnds { window: held.window.clone() };
        self.schedule(batch, changes, incident.id, held.until.max(now), kind)?;
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
        changes.log(incident.id, vec![entry(now, EntryKind::Note, line)]);
        self.save(changes, incident);
        Ok(())
    }

    /// The maintenance window (the config's or the API's, as of this batch) that covers the
    /// incident at `at`, if any.
    fn covering_window(
        &self,
        changes: &Changes,
        rt: &Runtime,
        incident: &Incident,
        at: Timestamp,
    ) -> Option<Window> {
        // The API's windows as of this batch; searched in place (no copy per incident).
        let held;
        let api_windows: &[Window] = match &changes.windows {
            Some(w) => w,
            None => {
                held = self.windows.lock().unwrap_or_else(|e| e.into_inner());
                &held
            }
        };
        rt.config
            .escalation
            .maintenance
            .iter()
            .chain(api_windows)
            .find(|w| w.covers(incident, at))
            .cloned()
    }

    /// Picks the incident's policy (recording the choice on it) and returns it.
    fn choose_policy(&self, rt: &Runtime, incident: &mut Incident) -> Option<Policy> {
        let policies = &rt.config.policies;
        let choice = policies.choice(&incident.decision, rt.config.escalation.severity_floor);
        let policy = choice.policy.as_ref().and_then(|n| policies.policies.get(n)).cloned();
        incident.policy_choice = Some(choice);
        policy
    }

    /// Moves the incident's expiry to what a trigger arriving at `received` says
    /// ([`escalation::Validity`]), with its timer.
    fn track_expiry(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        incident: &mut Incident,
        validity: escalation::Validity,
        received: Timestamp,
    ) -> Result<(), StoreError> {
        let next = validity.apply(incident.expiry.clone(), received);
        if next == incident.expiry {
            return Ok(());
        }
        if incident.expiry.is_some() {
            self.cancel(batch, incident.id, |k| matches!(k, TimerKind::Expiry))?;
        }
        if let Some(e) = &next {
            self.schedule(batch, changes, incident.id, e.ends_at, TimerKind::Expiry)?;
        }
        incident.expiry = next;
        Ok(())
    }

    /// Starts the status-update reminders of an open incident that a later event made call
    /// for them (it became customer-facing, or more severe), unless they run already.
    fn start_comms_updates(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        incident: &Incident,
    ) -> Result<Vec<Entry>, StoreError> {
        let Some(every) = rt.config.escalation.comms_every_for(&incident.decision) else {
            return Ok(Vec::new());
        };
        if !incident.status.is_open()
            || incident.decision.suppressed.is_some()
            || incident.held_by.is_some()
            || batch.incident_timers(incident.id)?.iter().any(|t| t.kind == TimerKind::CommsUpdate)
        {
            return Ok(Vec::new());
        }
        let at = escalation::after(self.clock.now(), every);
        self.schedule(batch, changes, incident.id, at, TimerKind::CommsUpdate)?;
        Ok(vec![entry(
            self.clock.now(),
            EntryKind::Note,
            format!(
                "status updates are now due every {:#} ({}, customer-facing: {}): the first reminder to the communications lead at {at}",
                escalation::signed(every),
                incident.decision.severity,
                incident.decision.customer_facing
            ),
        )])
    }

    /// Attaches the notice of every `notices[]` rule that applies to the incident's decision
    /// and is not attached yet, counting from `aware_at`, with its reminders and deadline
    /// scheduled. Returns the timeline entries.
    fn attach_notices(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        incident: &mut Incident,
        aware_at: Timestamp,
    ) -> Result<Vec<Entry>, StoreError> {
        let now = self.clock.now();
        let mut entries = Vec::new();
        let rules: Vec<&escalation::NoticeRule> = rt
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
            self.schedule_notice(batch, changes, incident.id, index, &notice)?;
            let liaison = incident
                .roles
                .get("legal_liaison")
                .map(String::as_str)
                .unwrap_or("nobody: the legal_liaison role is not filled");
            entries.push(entry(
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
            ));
            incident.notices.push(notice);
        }
        Ok(entries)
    }

    /// Schedules notice `index`'s reminders still ahead and its deadline (now, if past).
    fn schedule_notice(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        id: IncidentId,
        index: u32,
        notice: &escalation::Notice,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        for at in notice.reminders.iter().filter(|r| **r > now) {
            self.schedule(batch, changes, id, *at, TimerKind::NoticeReminder { notice: index })?;
        }
        self.schedule(
            batch,
            changes,
            id,
            notice.due_at.max(now),
            TimerKind::NoticeDeadline { notice: index },
        )?;
        Ok(())
    }

    /// Who holds each role when an incident opens at `at`: the config's roles, with rotations
    /// resolved (and their overrides applied) at that moment.
    fn role_holders(&self, rt: &Runtime, at: Timestamp) -> BTreeMap<String, String> {
        self.overrides.with(|o| rt.config.roster.holders(at, o))
    }

    /// The deliveries of `step`: its entries, plus — on the first page only — the roles the
    /// triage brings in. The second value lists roles nobody holds.
    fn step_deliveries(
        &self,
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
            for role in escalation::involved_roles(&incident.decision) {
                targets.push(policy::Entry {
                    audience: escalation::role_audience(&role).to_string(),
                    target: policy::Target::Role(role),
                    channels: rt.config.escalation.involve_channels.clone(),
                });
            }
            // The owners of every affected service (from the catalog) are paged with the first
            // step, as responders.
            for target in escalation::owner_targets(&rt.triage().catalog, &incident.scope) {
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

    /// Fires escalation step `step` of round `round`: queues its notifications and schedules
    /// the next step. Returns the timeline entries.
    #[allow(clippy::too_many_arguments)]
    fn fire_step(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        incident: &mut Incident,
        policy: &Policy,
        step: u32,
        round: u32,
        why: &str,
    ) -> Result<Vec<Entry>, StoreError> {
        let now = self.clock.now();
        let first = step == 0 && round == 0 && incident.escalation.is_none();
        let (deliveries, unfilled) = self.step_deliveries(rt, incident, policy, step, first);
        let log = rt.config.notifications.log_path.as_ref().map(|p| p.display().to_string());
        let (deliveries, drill_note) = crate::drill::live::route(
            &rt.config.drills,
            &rt.config.policies,
            incident,
            deliveries,
            log.as_deref(),
        );
        let reason = if first { Reason::New } else { Reason::Escalated };
        let steps = policy.steps.len();
        let mut entries = vec![entry(
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
                    deliveries.iter().map(describe).collect::<Vec<_>>().join(", ")
                },
            ),
        )];
        if let Some(note) = drill_note {
            entries.push(entry(now, EntryKind::Note, note));
        }
        for role in unfilled {
            entries.push(entry(
                now,
                EntryKind::Note,
                format!("role `{role}` is not filled, so nobody was notified for it; assign it with POST /api/v1/incidents/{}/roles", incident.id),
            ));
        }
        let label = format!("policy {}, step {}", policy.name, step + 1);
        let line = format!("Escalated to step {} of policy `{}`: {why}.", step + 1, policy.name);
        let note = (!first).then_some(("Escalated", line.as_str()));
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
            entries.push(self.enqueue(batch, rt, incident, reason, d, &label, note, draft)?);
        }
        if !deliveries.is_empty() {
            changes.due = true;
        }
        let wait = policy.step(step).and_then(|s| s.wait);
        let next = match (policy.next(step, round), wait) {
            (Some((s, r)), Some(wait)) => {
                let at = escalation::after(now, wait);
                self.schedule(
                    batch,
                    changes,
                    incident.id,
                    at,
                    TimerKind::Step { policy: policy.name.clone(), step: s, round: r },
                )?;
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
        Ok(entries)
    }

    /// An acknowledgement stops the escalation steps; a policy with `reescalate_after` starts
    /// the clock for escalating again if nobody resolves.
    fn on_acknowledged(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        incident: &mut Incident,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let cancelled = self.cancel(batch, incident.id, TimerKind::stops_on_ack)?;
        let by = incident.acknowledged.as_ref().map(|a| a.by.clone()).unwrap_or_default();
        let mut entries = Vec::new();
        if let Some(state) = &mut incident.escalation {
            if !cancelled.is_empty() {
                entries.push(entry(
                    now,
                    EntryKind::Escalated,
                    format!(
                        "escalation stopped: acknowledged by {by}; cancelled {}",
                        cancelled.iter().map(|t| t.kind.describe()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            state.next_at = None;
            state.stopped = Some(format!("acknowledged by {by}"));
            if let Some(p) = rt.config.policies.policies.get(&state.policy)
                && let Some(after) = p.reescalate_after
            {
                let at = escalation::after(now, after);
                self.schedule(
                    batch,
                    changes,
                    incident.id,
                    at,
                    TimerKind::AckExpired { policy: p.name.clone() },
                )?;
                entries.push(entry(
                    now,
                    EntryKind::Escalated,
                    format!("escalates again at {at} unless resolved by then (policy `{}` reescalate_after {:#})", p.name, escalation::signed(after)),
                ));
            }
        }
        changes.log(incident.id, entries);
        Ok(())
    }

    /// A resolve stops escalation and reminders (not notice deadlines), tells whoever was
    /// paged, and opens the after-action review for reviewed severities.
    fn on_resolved(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        incident: &mut Incident,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let cancelled = self.cancel(batch, incident.id, TimerKind::stops_on_resolve)?;
        let mut entries = Vec::new();
        if let Some(state) = &mut incident.escalation {
            state.next_at = None;
            state.stopped = Some("resolved".into());
        }
        if !cancelled.is_empty() {
            entries.push(entry(
                now,
                EntryKind::Escalated,
                format!(
                    "resolved: cancelled {}",
                    cancelled.iter().map(|t| t.kind.describe()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let mut told: Vec<Delivery> = Vec::new();
        for n in batch.incident_notifications(incident.id)? {
            if matches!(n.reason, Reason::New | Reason::Escalated) && n.state != State::Dead {
                let d =
                    Delivery { channel: n.channel, recipient: n.recipient, audience: n.audience };
                if !told.iter().any(|t| t.channel == d.channel && t.recipient == d.recipient) {
                    told.push(d);
                }
            }
        }
        for d in &told {
            entries.push(self.enqueue(
                batch,
                rt,
                incident,
                Reason::Resolved,
                d,
                "resolution notice",
                None,
                Draft::No,
            )?);
        }
        if !told.is_empty() {
            changes.due = true;
        }
        if incident.review.is_none()
            && rt.config.escalation.review_severities.contains(&incident.decision.severity)
        {
            incident.review = Some(crate::review::Review::new(now));
            entries.push(entry(
                now,
                EntryKind::Review,
                format!(
                    "after-action review opened ({} incidents are reviewed): write it with PUT /api/v1/incidents/{}/review and add action items with POST /api/v1/incidents/{}/actions",
                    incident.decision.severity, incident.id, incident.id
                ),
            ));
        }
        changes.log(incident.id, entries);
        Ok(())
    }

    fn schedule(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        incident: IncidentId,
        due_at: Timestamp,
        kind: TimerKind,
    ) -> Result<Timer, StoreError> {
        let timer = Timer { id: batch.next_timer_id()?, incident, due_at, kind };
        batch.put_timer(&timer)?;
        changes.timers = true;
        Ok(timer)
    }

    /// Removes the incident's timers that `stop` picks; returns them.
    fn cancel(
        &self,
        batch: &mut Batch<'_>,
        incident: IncidentId,
        stop: impl Fn(&TimerKind) -> bool,
    ) -> Result<Vec<Timer>, StoreError> {
        let mut out = Vec::new();
        for t in batch.incident_timers(incident)? {
            if stop(&t.kind) {
                batch.remove_timer(&t)?;
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Fires the timers due at `now`. Each row is deleted in this transaction, so it fires
    /// once; a timer that came due while the daemon was down fires now, once, and the step
    /// after it is scheduled from now, not from when it should have fired.
    fn tick(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        for timer in batch.due_timers(now, 512)? {
            batch.remove_timer(&timer)?;
            let Some(mut incident) = self.load(batch, changes, timer.incident)? else { continue };
            let late = now.duration_since(timer.due_at);
            let late = if late > jiff::SignedDuration::from_secs(60) {
                // Say why: downtime is worth investigating, a rehearsal's clock jump is not.
                let why = if timer.due_at < self.started {
                    "it came due while the daemon was not running"
                } else if self.clock.manual().is_some() {
                    "the manual clock (TOCSIN_FAKE_CLOCK) was moved past it"
                } else {
                    "the daemon could not fire it on time (a suspended machine or a stalled store)"
                };
                format!(" (due at {}; fired late: {why})", timer.due_at)
            } else {
                String::new()
            };
            let entries = match &timer.kind {
                TimerKind::Step { policy, step, round } => {
                    let current = incident.escalation.as_ref().is_some_and(|e| &e.policy == policy);
                    if incident.status != Status::Triggered || !current {
                        continue;
                    }
                    let Some(p) = rt.config.policies.policies.get(policy).cloned() else {
                        let gone = format!(
                            "escalation stopped: policy `{policy}` is no longer in the config"
                        );
                        if let Some(e) = &mut incident.escalation {
                            e.next_at = None;
                            e.stopped = Some(gone.clone());
                        }
                        changes.log(incident.id, vec![entry(now, EntryKind::Escalated, gone)]);
                        self.save(changes, incident);
                        continue;
                    };
                    let waited = incident
                        .escalation
                        .as_ref()
                        .and_then(|e| p.step(e.step).and_then(|s| s.wait))
                        .map(|w| format!("{:#}", escalation::signed(w)))
                        .unwrap_or_else(|| "the wait".into());
                    self.metrics.escalation_steps.inc();
                    let why = format!("nobody acknowledged within {waited}{late}");
                    self.fire_step(batch, changes, rt, &mut incident, &p, *step, *round, &why)?
                }
                TimerKind::AckExpired { policy } => {
                    if incident.status != Status::Acknowledged {
                        continue;
                    }
                    let Some(p) = rt.config.policies.policies.get(policy).cloned() else {
                        continue;
                    };
                    let by = incident
                        .acknowledged
                        .take()
                        .map(|a| format!("{} at {}", a.by, a.at))
                        .unwrap_or_default();
                    incident.status = Status::Triggered;
                    let mut entries = vec![entry(
                        now,
                        EntryKind::Escalated,
                        format!(
                            "acknowledged by {by} but not resolved in time{late}: back to triggered, escalating again from step 1"
                        ),
                    )];
                    self.metrics.escalation_steps.inc();
                    entries.extend(self.fire_step(
                        batch,
                        changes,
                        rt,
                        &mut incident,
                        &p,
                        0,
                        0,
                        "the acknowledgement expired",
                    )?);
                    entries
                }
                TimerKind::NoticeReminder { notice } => {
                    let Some(n) = incident.notices.get(*notice as usize).cloned() else { continue };
                    if n.sent.is_some() {
                        continue;
                    }
                    let left = n.due_at.duration_since(now);
                    let line = format!(
                        "{} notice \"{}\" is due at {} ({:#} left) and is not marked as sent.",
                        if n.mandatory { "Mandatory" } else { "Voluntary" },
                        n.name,
                        n.due_at,
                        jiff::SignedDuration::from_secs(left.as_secs().max(0)),
                    );
                    let mut entries =
                        vec![entry(now, EntryKind::Notice, format!("reminder{late}: {line}"))];
                    entries.extend(self.remind_role(
                        batch,
                        changes,
                        rt,
                        &incident,
                        "legal_liaison",
                        "Notice due",
                        &line,
                    )?);
                    entries
                }
                TimerKind::NoticeDeadline { notice } => {
                    let i = *notice as usize;
                    let Some(n) = incident.notices.get(i).cloned() else { continue };
                    if n.sent.is_some() {
                        continue;
                    }
                    incident.notices[i].missed = true;
                    self.metrics.notices_missed.inc();
                    let line = format!(
                        "MISSED DEADLINE: {} notice \"{}\" was due at {} and is not marked as sent.",
                        if n.mandatory { "mandatory" } else { "voluntary" },
                        n.name,
                        n.due_at
                    );
                    let mut entries = vec![entry(
                        now,
                        EntryKind::Notice,
                        format!("{line} Escalating to the incident lead.{late}"),
                    )];
                    entries.extend(self.remind_role(
                        batch,
                        changes,
                        rt,
                        &incident,
                        "incident_lead",
                        "Notice deadline missed",
                        &line,
                    )?);
                    entries
                }
                TimerKind::CommsUpdate => {
                    if !incident.status.is_open() {
                        continue;
                    }
                    // The incident may have stopped calling for updates (no longer
                    // customer-facing, less severe): the reminders end there.
                    let Some(every) = rt.config.escalation.comms_every_for(&incident.decision)
                    else {
                        continue;
                    };
                    let next = escalation::after(now, every);
                    self.schedule(batch, changes, incident.id, next, TimerKind::CommsUpdate)?;
                    // The draft comes from the approved `customer` email template, rendered
                    // for the incident as it stands now.
                    let draft = customer_draft(rt, &incident, Reason::Reminder, now);
                    let line = format!(
                        "A status update for incident #{} is due (every {:#} at {}). Next reminder at {next}.\nDraft from the approved customer template:\n---\n{}\n{}\n---",
                        incident.id,
                        escalation::signed(every),
                        incident.decision.severity,
                        draft.subject,
                        draft.text.trim_end(),
                    );
                    self.remind_role(
                        batch,
                        changes,
                        rt,
                        &incident,
                        "communications_lead",
                        "Status update due",
                        &line,
                    )?
                }
                TimerKind::Expiry => {
                    let Some(expiry) = incident.expiry.clone() else { continue };
                    if !incident.status.is_open() {
                        continue;
                    }
                    let due = expiry.due(incident.last_seen);
                    if due > now {
                        // Refreshed since: wait for the new end (one timer per incident).
                        let pending = batch.incident_timers(incident.id)?;
                        if !pending.iter().any(|t| t.kind == TimerKind::Expiry) {
                            self.schedule(batch, changes, incident.id, due, TimerKind::Expiry)?;
                        }
                        continue;
                    }
                    if let Ok((incident, mut e)) = incident::resolve(incident, "tocsin", now, None)
                    {
                        e.message = format!(
                            "resolved: the sender's endsAt {due} passed without a refresh (the alert stopped firing, or its sender stopped sending){late}"
                        );
                        self.metrics.incident_acted(&incident, PersonAction::Resolve);
                        self.keep(batch, changes, rt, incident, vec![e])?;
                    }
                    continue;
                }
                TimerKind::WindowEnds { window } => {
                    if !incident.status.is_open() || incident.held_by.is_none() {
                        continue;
                    }
                    let held_reason = incident.decision.suppressed.clone();
                    if let Some(w) = self.covering_window(changes, rt, &incident, now) {
                        // Extended, or another window covers it now: held until that one ends.
                        incident.decision.suppressed = Some(w.reason());
                        incident.held_by = Some(w.held());
                        self.schedule(
                            batch,
                            changes,
                            incident.id,
                            w.ends,
                            TimerKind::WindowEnds { window: w.name.clone() },
                        )?;
                        vec![entry(
                            now,
                            EntryKind::Note,
                            format!(
                                "maintenance window `{window}` ended, but `{}` covers the incident until {}: still held back",
                                w.name, w.ends
                            ),
                        )]
                    } else {
                        self.window_ended(
                            batch,
                            changes,
                            rt,
                            &mut incident,
                            window,
                            held_reason,
                            &late,
                        )?
                    }
                }
                TimerKind::ActionDue { action } => {
                    let Some(item) = incident
                        .review
                        .as_ref()
                        .and_then(|r| r.actions.iter().find(|a| a.id == *action))
                        .cloned()
                    else {
                        continue;
                    };
                    if item.state != crate::review::ActionState::Open {
                        continue;
                    }
                    let every = rt.config.escalation.action_remind_every;
                    let next = escalation::after(now, every);
                    self.schedule(
                        batch,
                        changes,
                        incident.id,
                        next,
                        TimerKind::ActionDue { action: *action },
                    )?;
                    let line = format!(
                        "Action item #{} of the review of incident #{} is overdue (due {}): {}. Next reminder at {next}.",
                        item.id, incident.id, item.due, item.title
                    );
                    let mut entries = vec![entry(
                        now,
                        EntryKind::Review,
                        format!("overdue: action item #{} (owner {}){late}", item.id, item.owner),
                    )];
                    entries.extend(self.remind_person(
                        batch,
                        changes,
                        rt,
                        &incident,
                        &item.owner,
                        "responder",
                        "Action item overdue",
                        &line,
                    )?);
                    entries
                }
            };
            changes.log(incident.id, entries);
            self.save(changes, incident);
        }
        Ok(())
    }

    /// The maintenance window that held an open incident back has ended: it pages now from the
    /// first step (as Alertmanager notifies when a silence expires on a firing alert), unless
    /// someone acknowledged it meanwhile or the rules themselves suppress it.
    #[allow(clippy::too_many_arguments)]
    fn window_ended(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        incident: &mut Incident,
        window: &str,
        held_reason: Option<String>,
        late: &str,
    ) -> Result<Vec<Entry>, StoreError> {
        let now = self.clock.now();
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
            return Ok(vec![entry(
                now,
                EntryKind::Suppressed,
                format!("{ended}; the rules still suppress it ({reason}): nobody is paged"),
            )]);
        }
        if incident.status != Status::Triggered {
            let by = incident.acknowledged.as_ref().map(|a| a.by.clone()).unwrap_or_default();
            let mut entries = vec![entry(
                now,
                EntryKind::Escalated,
                format!("{ended}; acknowledged by {by} during the window, so nobody is paged"),
            )];
            // Acknowledged or not, a customer-facing incident still owes status updates: the
            // reminders the window held back start now, as they would have at its opening.
            entries.extend(self.start_comms_updates(batch, changes, rt, incident)?);
            return Ok(entries);
        }
        let mut entries = Vec::new();
        match self.choose_policy(rt, incident) {
            Some(p) => {
                let why = format!("{ended}: paging now");
                entries.extend(self.fire_step(batch, changes, rt, incident, &p, 0, 0, &why)?);
            }
            None => entries.push(entry(
                now,
                EntryKind::Note,
                format!("{ended}, but no policy notifies anyone for it"),
            )),
        }
        entries.extend(self.start_comms_updates(batch, changes, rt, incident)?);
        Ok(entries)
    }

    /// Sends `line` to whoever holds `role` on the incident (email, and SMS when they have a
    /// phone and the channel is configured); a timeline note when nobody holds it.
    #[allow(clippy::too_many_arguments)]
    fn remind_role(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        incident: &Incident,
        role: &str,
        lead: &str,
        line: &str,
    ) -> Result<Vec<Entry>, StoreError> {
        match incident.roles.get(role) {
            Some(person) => self.remind_person(
                batch,
                changes,
                rt,
                incident,
                &person.clone(),
                escalation::role_audience(role),
                lead,
                line,
            ),
            None => Ok(vec![entry(
                self.clock.now(),
                EntryKind::Note,
                format!("nobody holds the `{role}` role, so this reminder reached no one: {line}"),
            )]),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn remind_person(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        incident: &Incident,
        person: &str,
        audience: &str,
        lead: &str,
        line: &str,
    ) -> Result<Vec<Entry>, StoreError> {
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
        let log = rt.config.notifications.log_path.as_ref().map(|p| p.display().to_string());
        let (deliveries, drill_note) = crate::drill::live::route(
            &rt.config.drills,
            &rt.config.policies,
            incident,
            deliveries,
            log.as_deref(),
        );
        let mut entries = Vec::new();
        if let Some(note) = drill_note {
            entries.push(entry(self.clock.now(), EntryKind::Note, note));
        }
        if deliveries.is_empty() {
            entries.push(entry(
                self.clock.now(),
                EntryKind::Note,
                format!("{person} has no address Tocsin can reach (email is not configured or the person has none): {line}"),
            ));
        }
        for d in &deliveries {
            entries.push(self.enqueue(
                batch,
                rt,
                incident,
                Reason::Reminder,
                d,
                lead,
                Some((lead, line)),
                Draft::No,
            )?);
            changes.due = true;
        }
        Ok(entries)
    }

    /// Writes one outbox row (in the caller's transaction) and returns its timeline entry.
    /// `note`: a (subject lead, first line) that says why an escalation or reminder is sent;
    /// `draft`: whether it carries the approved customer wording.
    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        &self,
        batch: &mut Batch<'_>,
        rt: &Runtime,
        incident: &Incident,
        reason: Reason,
        d: &Delivery,
        why: &str,
        note: Option<(&str, &str)>,
        draft: Draft,
    ) -> Result<Entry, StoreError> {
        let id = batch.next_notification_id()?;
        let now = self.clock.now();
        let (mut message, fallback) = crate::compose::render(rt, incident, reason, d, now);
        if let Some((lead, line)) = note {
            message = crate::compose::with_note(message, lead, line);
        }
        match draft {
            Draft::No => {}
            Draft::Full => {
                let draft = customer_draft(rt, incident, reason, now);
                message = crate::compose::with_draft(message, &draft);
            }
            Draft::InEmail => message = crate::compose::with_draft_in_email(message),
        }
        if rt.redactor.applies_to(d.channel, &d.audience) {
            let opening = batch.event(incident.opened_by)?;
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
        batch.put_notification(&n)?;
        self.metrics.notification_queued(d.channel);
        let mut text =
            format!("notification #{id} queued: {} ({}, {why})", describe(d), reason.as_str());
        if let Some(f) = fallback {
            text.push_str(&format!("; template failed, sent the plain built-in message: {f}"));
        }
        Ok(entry(now, EntryKind::Notification, text))
    }

    fn claim(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let policy = &rt.config.notifications.delivery;
        let lease = jiff::SignedDuration::try_from(policy.lease)
            .unwrap_or(jiff::SignedDuration::from_secs(60));
        let mut claimed = Vec::new();
        for mut n in batch.due(now, limit)? {
            if n.state == State::Sending {
                // Its lease ran out: the process died or the worker hung mid-send. It may have
                // gone out, so this counts as an attempt.
                n.attempts += 1;
                if n.channel == Channel::Sms && !policy.retry_unknown_sms {
                    let reason = "the lease ran out while sending (restart or hang); the gateway may have sent it, so it is not repeated (notifications.delivery.retry_unknown_sms is off)";
                    self.finish(
                        batch,
                        changes,
                        &mut n,
                        State::Dead,
                        Some(reason.to_string()),
                        now,
                    )?;
                    continue;
                }
            }
            if n.channel == Channel::Webhook
                && let Some(why) = batch.disabled_endpoint(&n.recipient.address)?
            {
                self.finish(
                    batch,
                    changes,
                    &mut n,
                    State::Dead,
                    Some(format!("webhook endpoint disabled: {why}")),
                    now,
                )?;
                continue;
            }
            n.state = State::Sending;
            n.due_at = now.saturating_add(lease).unwrap_or(now);
            batch.put_notification(&n)?;
            claimed.push(n);
        }
        let _ = changes;
        Ok(claimed)
    }

    /// A send error without personal data or acknowledge tokens: its reason through the
    /// redactor with the known values of the incident's opening event, and through
    /// [`crate::links::redact`] however a receiver escaped the link it echoes. This is what the
    /// outbox row (`last_error`, a dead letter's reason), the timeline and the log keep.
    fn scrub_send_error(
        &self,
        batch: &mut Batch<'_>,
        rt: &Runtime,
        n: &Notification,
        error: crate::notify::SendError,
    ) -> Result<crate::notify::SendError, StoreError> {
        let opening = match batch.incident(n.incident_id)? {
            Some(incident) => batch.event(incident.opened_by)?,
            None => None,
        };
        let known =
            opening.map(|e| crate::redact::Known::of_event(&rt.redactor, &e)).unwrap_or_default();
        Ok(error.map_reason(|reason| {
            let reason = rt.redactor.log_text(&reason, &known);
            crate::links::redact(&reason).into_owned()
        }))
    }

    /// Ends a notification (delivered or dead) and says so on its incident's timeline.
    fn finish(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        n: &mut Notification,
        state: State,
        error: Option<String>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        n.state = state;
        n.due_at = now;
        let text = match (&state, &error) {
            (State::Delivered, _) => format!(
                "notification #{} delivered: {} (attempt {}{})",
                n.id,
                describe_n(n),
                n.attempts,
                n.reference.as_ref().map(|r| format!(", reference {r}")).unwrap_or_default()
            ),
            (_, Some(e)) => format!("notification #{} dead-lettered: {}: {e}", n.id, describe_n(n)),
            _ => format!("notification #{} dead-lettered: {}", n.id, describe_n(n)),
        };
        if error.is_some() {
            n.last_error = error;
            tracing::warn!(notification = n.id, channel = n.channel.as_str(), error = ?n.last_error, "notification dead-lettered");
        }
        self.metrics.notification_outcome(n.channel, state.as_str());
        batch.put_notification(n)?;
        changes.log(n.incident_id, vec![entry(now, EntryKind::Notification, text)]);
        Ok(())
    }

    fn report(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        outcomes: Vec<(NotificationId, Attempt)>,
    ) -> Result<(), StoreError> {
        let policy = &rt.config.notifications.delivery;
        let now = self.clock.now();
        for (id, attempt) in outcomes {
            let Some(mut n) = batch.notification(id)? else { continue };
            if n.state != State::Sending {
                // An operator dropped or retried it meanwhile: their word stands.
                continue;
            }
            match attempt {
                Attempt::Deferred { until } => {
                    n.state = if n.attempts == 0 { State::Queued } else { State::Retrying };
                    n.due_at = until;
                    n.waited = true;
                    batch.put_notification(&n)?;
                    changes.due = true;
                }
                Attempt::Delivered { reference, bundled_into } => {
                    n.attempts += 1;
                    n.reference = reference;
                    n.bundled_into = bundled_into;
                    n.delivered_at = Some(now);
                    // The failures before are on the timeline; the row shows how it ended.
                    n.last_error = None;
                    self.metrics.notification_attempt(n.channel, "delivered");
                    self.finish(batch, changes, &mut n, State::Delivered, None, now)?;
                }
                Attempt::Failed(error) => {
                    n.attempts += 1;
                    // A receiver's answer may quote the message it got, personal data and all;
                    // the error goes to the outbox row, the timeline and the log.
                    let error = self.scrub_send_error(batch, rt, &n, error)?;
                    self.metrics.notification_attempt(n.channel, outcome_label(&error));
                    match policy.after_failure(&n, &error, now, jitter(n.id, n.attempts)) {
                        Next::Retry { at, reason } => {
                            n.state = State::Retrying;
                            n.due_at = at;
                            n.last_error = Some(reason.clone());
                            batch.put_notification(&n)?;
                            changes.due = true;
                            let text = format!(
                                "notification #{} attempt {} failed: {}: {reason}; next attempt at {at}",
                                n.id,
                                n.attempts,
                                describe_n(&n)
                            );
                            changes.log(
                                n.incident_id,
                                vec![entry(now, EntryKind::Notification, text)],
                            );
                        }
                        Next::Dead { reason } => {
                            self.finish(batch, changes, &mut n, State::Dead, Some(reason), now)?
                        }
                        Next::DisableEndpoint { reason } => {
                            tracing::error!(endpoint = %n.recipient.address, %reason, "webhook endpoint disabled: it answered 410 Gone");
                            batch.disable_endpoint(&n.recipient.address, &reason)?;
                            self.finish(batch, changes, &mut n, State::Dead, Some(reason), now)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn queue_op(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        id: NotificationId,
        op: QueueOp,
        by: &str,
    ) -> Result<Result<Notification, String>, StoreError> {
        let Some(mut n) = batch.notification(id)? else {
            return Ok(Err(format!("no notification with id {id}")));
        };
        let now = self.clock.now();
        let text = match op {
            QueueOp::Retry => {
                if n.state.is_pending() {
                    return Ok(Err(format!("notification {id} is already {}", n.state.as_str())));
                }
                n.state = State::Queued;
                n.due_at = now;
                // A revived notification gets a fresh set of attempts and a fresh age limit.
                n.attempts = 0;
                n.requeued_at = Some(now);
                changes.due = true;
                format!(
                    "notification #{id} requeued by {by} (same idempotency id {})",
                    n.idempotency_id
                )
            }
            QueueOp::Drop => {
                if !n.state.is_pending() {
                    return Ok(Err(format!(
                        "notification {id} is {}, not pending",
                        n.state.as_str()
                    )));
                }
                n.state = State::Dead;
                n.due_at = now;
                n.last_error = Some(format!("dropped by {by}"));
                format!("notification #{id} dropped by {by}")
            }
        };
        batch.put_notification(&n)?;
        changes.log(n.incident_id, vec![entry(now, EntryKind::Notification, text)]);
        Ok(Ok(n))
    }
}

/// Answers a command that no transaction reached with the store's error.
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

fn entry(at: Timestamp, kind: EntryKind, message: String) -> Entry {
    Entry {
        at,
        actor: "tocsin".into(),
        kind,
        message,
        event_id: None,
        detail: serde_json::Value::Null,
    }
}

/// Stores one override change in the batch and notes it for the in-memory set.
fn override_op(
    batch: &mut Batch<'_>,
    changed: &mut Vec<OverrideChange>,
    op: OverrideOp,
    now: Timestamp,
) -> Result<Result<Override, String>, StoreError> {
    match op {
        OverrideOp::Add { rotation, person, from, until, by, reason } => {
            let id = batch.next_override_id()?;
            let o = Override { id, rotation, person, from, until, by, reason, created_at: now };
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

/// Whether a message to the communications lead carries the customer draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Draft {
    No,
    /// Appended whole (email, webhook).
    Full,
    /// An SMS that says the draft is in the email that goes with it.
    InEmail,
}

/// What the approved `customer` email template says about the incident as it stands: the
/// communications lead's draft.
fn customer_draft(
    rt: &Runtime,
    incident: &Incident,
    reason: Reason,
    now: Timestamp,
) -> crate::outbox::Rendered {
    let to_customers = Delivery {
        channel: Channel::Email,
        recipient: crate::outbox::Recipient { person: None, address: "customers".into() },
        audience: "customer".into(),
    };
    crate::compose::render(rt, incident, reason, &to_customers, now).0
}

fn describe(d: &Delivery) -> String {
    let who = d.recipient.person.as_deref().unwrap_or(&d.recipient.address);
    format!("{} to {who} ({})", d.channel.as_str(), d.audience)
}

fn describe_n(n: &Notification) -> String {
    let who = n.recipient.person.as_deref().unwrap_or(&n.recipient.address);
    format!("{} to {who}", n.channel.as_str())
}

fn outcome_label(e: &SendError) -> &'static str {
    match e {
        SendError::Retryable { .. } => "retryable",
        SendError::Permanent { .. } => "permanent",
        SendError::Gone { .. } => "gone",
        SendError::Unknown { .. } => "unknown",
    }
}

/// Jitter in [0, 1) that differs per notification and attempt, without a random source in the
/// writer (so replaying a batch gives the same schedule).
fn jitter(id: NotificationId, attempt: u32) -> f64 {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(attempt).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::TimerReader;
    use jiff::SignedDuration;

    const T0: &str = "2026-03-02T09:00:00Z";
    /// An actor whose command panics in [`Writer::decide`] (a bug in Tocsin's own logic).
    pub(super) const POISON: &str = "user:poison";

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
        let scored = crate::ingest::score(&w.runtime.load(), &w.open, events).unwrap();
        Command::Append { events: scored, reply: oneshot::channel().0 }
    }

    // Tokio: the email channel is built inside its runtime (nothing is sent here).
    #[tokio::test]
    async fn ending_a_window_early_pages_an_incident_opened_in_the_same_batch() {
        let rt = runtime(
            r#"people:
  - {id: ana, name: Ana, email: ana@example.com}
notifications:
  email: {relay: 127.0.0.1, port: 2525, tls: none, from: "Tocsin <tocsin@example.com>"}
policies:
  - name: page
    notify: [{person: ana, channels: [email]}]
default_policy: page
"#,
        );
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
        let rt = runtime(
            r#"people:
  - {id: ana, name: Ana, email: ana@example.com}
notifications:
  email: {relay: 127.0.0.1, port: 2525, tls: none, from: "Tocsin <tocsin@example.com>"}
policies:
  - name: page
    notify: [{person: ana, channels: [email]}]
default_policy: page
"#,
        );
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
