//! The journal writer: the single owner of every state change.
//!
//! Ingest handlers hand normalized, scored events to it over a bounded channel and wait for the
//! commit; acknowledgements and resolves from people, and the auto-resolve sweep, come the same
//! way, never as side writes. The writer thread takes whatever is waiting, applies it all in one
//! transaction — events, the incidents they open or join, their timelines — commits (one fsync
//! for many requests: group commit), then answers every request in the batch. A 2xx therefore
//! never goes out before the event and its incident change are on disk.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};

use arc_swap::ArcSwap;
use uuid::Uuid;

use crate::event::{Action, Event};
use crate::incident::{
    self, ActionError, Entry, EntryKind, Incident, IncidentId, Outcome, Status, Summary,
};
use crate::metrics::Metrics;
use crate::notify::{Channel, SendError};
use crate::outbox::{Attempt, Next, Notification, NotificationId, Reason, State};
use crate::policy::Delivery;
use crate::rules::{Evaluation, IncidentView};
use crate::runtime::Runtime;
use crate::store::{Batch, Encoded, Store, StoreError};

/// An event ready for the writer: encoded for the store, with the rules' evaluation.
#[derive(Debug)]
pub struct Scored {
    pub encoded: Encoded,
    pub evaluation: Evaluation,
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
    /// An operator revives a dead letter (same idempotency id) or drops a pending one.
    Queue {
        id: NotificationId,
        op: QueueOp,
        by: String,
        reply: oneshot::Sender<Result<Result<Notification, String>, Arc<StoreError>>>,
    },
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
                map.entry(incident.source.clone())
                    .or_default()
                    .insert(incident.dedup_key.clone(), Summary::of(&incident));
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
    /// Poked after a commit that made notifications due, so delivery starts at once instead of
    /// at its next poll.
    pub wake: Arc<tokio::sync::Notify>,
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
) -> Result<(Journal, WriterThread), StoreError> {
    let open = Arc::new(OpenIndex::default());
    open.apply(store.open_incidents()?);
    metrics.incidents_open.set(open.len() as i64);
    let (tx, rx) = mpsc::channel(queue_capacity);
    let wake = Arc::new(tokio::sync::Notify::new());
    let writer = Writer {
        store,
        runtime,
        metrics: metrics.clone(),
        open: open.clone(),
        max_batch_events,
        wake: wake.clone(),
    };
    let handle = std::thread::Builder::new()
        .name("tocsin-journal".into())
        .spawn(move || writer.run(rx))
        .expect("spawning the journal thread");
    Ok((Journal { tx, capacity: queue_capacity, metrics, open, wake }, WriterThread(handle)))
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
        self.send(Command::Claim { now: Timestamp::now(), limit, reply })?;
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

    /// Asks the writer to resolve incidents quiet for longer than `quiet` (fire and forget: the
    /// next sweep retries whatever a full queue turned away).
    pub fn auto_resolve(&self, quiet: jiff::SignedDuration) -> Result<(), JournalError> {
        self.send(Command::AutoResolve { now: Timestamp::now(), quiet })
    }
}

/// Answers owed once the batch is committed.
enum Owed {
    Append(oneshot::Sender<(Vec<Scored>, CommitResult)>, Vec<Scored>),
    Act(
        oneshot::Sender<Result<Result<Incident, ActError>, Arc<StoreError>>>,
        Result<Incident, ActError>,
    ),
    Claim(oneshot::Sender<Result<Vec<Notification>, Arc<StoreError>>>, Vec<Notification>),
    Report(oneshot::Sender<CommitResult>),
    Queue(
        oneshot::Sender<Result<Result<Notification, String>, Arc<StoreError>>>,
        Result<Notification, String>,
    ),
}

struct Writer {
    store: Arc<Store>,
    /// Policies, templates and delivery settings, read once per batch.
    runtime: Arc<ArcSwap<Runtime>>,
    metrics: Arc<Metrics>,
    open: Arc<OpenIndex>,
    max_batch_events: usize,
    wake: Arc<tokio::sync::Notify>,
}

/// Incidents changed by the batch so far, and which open incident each key now has, so that
/// two events for one key in one batch see each other before the commit.
#[derive(Default)]
struct Changes {
    incidents: HashMap<IncidentId, Incident>,
    /// source → dedup key → the open incident as of this batch (None: closed in it).
    open: HashMap<String, HashMap<String, Option<IncidentId>>>,
    /// Incidents that were open before this batch began (the open index must drop them when
    /// they close) — the rest were opened by it.
    was_open: std::collections::HashSet<IncidentId>,
    /// Timeline entries to write at the end of the batch, per incident in first-touch order:
    /// one sequence lookup per incident instead of one per entry.
    timeline: Vec<(IncidentId, Vec<Entry>)>,
    /// Where each incident's entries sit in `timeline`.
    timeline_index: HashMap<IncidentId, usize>,
    /// Incidents opened in this batch: their timelines start at 0 without a lookup.
    opened: std::collections::HashSet<IncidentId>,
    /// Order in which incidents were first changed, so stores and metrics are deterministic.
    order: Vec<IncidentId>,
    /// Notifications became due: wake the delivery workers after the commit.
    due: bool,
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

    fn commit(&self, commands: Vec<Command>, events: usize) {
        let started = Instant::now();
        let mut owed = Vec::with_capacity(commands.len());
        let mut changes = Changes::default();
        let rt = self.runtime.load_full();
        // Commands the transaction never reached (it could not begin: disk full) are answered
        // with the error below, not dropped (which would read as "shutting down").
        let mut unreached = commands.into_iter();
        let result = self.store.write(|batch| {
            for cmd in unreached.by_ref() {
                match cmd {
                    Command::Append { events, reply } => {
                        for scored in &events {
                            self.apply_event(batch, &mut changes, &rt, scored)?;
                        }
                        owed.push(Owed::Append(reply, events));
                    }
                    Command::Act { id, action, by, reply } => {
                        let outcome = self.act(batch, &mut changes, &rt, id, action, &by)?;
                        owed.push(Owed::Act(reply, outcome));
                    }
                    Command::AutoResolve { now, quiet } => {
                        self.auto_resolve(batch, &mut changes, &rt, now, quiet)?;
                    }
                    Command::Claim { now, limit, reply } => {
                        let claimed = self.claim(batch, &mut changes, &rt, now, limit)?;
                        owed.push(Owed::Claim(reply, claimed));
                    }
                    Command::Report { outcomes, reply } => {
                        self.report(batch, &mut changes, &rt, outcomes)?;
                        owed.push(Owed::Report(reply));
                    }
                    Command::Queue { id, op, by, reply } => {
                        let outcome = self.queue_op(batch, &mut changes, id, op, &by)?;
                        owed.push(Owed::Queue(reply, outcome));
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
        let result = result.map_err(Arc::new);
        match &result {
            Ok(()) => {
                self.metrics.commit_batch_events.observe(events as f64);
                self.record(&changes);
                let mut changed = changes.incidents;
                self.open.apply(changes.order.iter().filter_map(|id| changed.remove(id)));
                self.metrics.incidents_open.set(self.open.len() as i64);
                if changes.due {
                    self.wake.notify_one();
                }
            }
            Err(e) => {
                self.metrics.commit_failures.inc();
                tracing::error!(error = %e, events, "journal commit failed; nothing in the batch was stored");
            }
        }
        if let Err(e) = &result {
            for cmd in unreached {
                fail(cmd, e);
            }
        }
        for debt in owed {
            // A requester that gave up (client went away) is fine: the commit stands.
            match debt {
                Owed::Append(reply, events) => {
                    let _ = reply.send((events, result.clone()));
                }
                Owed::Act(reply, outcome) => {
                    let _ = reply.send(result.clone().map(|()| outcome));
                }
                Owed::Claim(reply, claimed) => {
                    let _ = reply.send(result.clone().map(|()| claimed));
                }
                Owed::Report(reply) => {
                    let _ = reply.send(result.clone());
                }
                Owed::Queue(reply, outcome) => {
                    let _ = reply.send(result.clone().map(|()| outcome));
                }
            }
        }
    }

    /// Counts what a committed batch did, by severity and kind.
    fn record(&self, changes: &Changes) {
        for incident in changes.incidents.values() {
            if incident.count == 1 && incident.status == Status::Triggered {
                self.metrics.incident_opened(incident);
            }
        }
    }

    fn current(
        &self,
        batch: &Batch<'_>,
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
        batch: &Batch<'_>,
        changes: &Changes,
        id: IncidentId,
    ) -> Result<Option<Incident>, StoreError> {
        match changes.incidents.get(&id) {
            Some(incident) => Ok(Some(incident.clone())),
            None => batch.incident(id),
        }
    }

    /// Records an incident change: its timeline entries, and the notifications the change calls
    /// for (a new incident's policy; resolution notices to whoever was told it opened).
    fn keep(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        incident: Incident,
        entries: &[incident::Entry],
    ) -> Result<(), StoreError> {
        changes.log(incident.id, entries.to_vec());
        let opened = entries.iter().any(|e| e.kind == EntryKind::Opened);
        if opened {
            changes.opened.insert(incident.id);
            self.notify_opened(batch, changes, rt, &incident)?;
        } else if !changes.incidents.contains_key(&incident.id)
            && !changes.opened.contains(&incident.id)
        {
            // First touched in this batch without opening: it came from the store, open.
            changes.was_open.insert(incident.id);
        }
        if entries.iter().any(|e| e.kind == EntryKind::Resolved) {
            self.notify_resolved(batch, changes, rt, &incident)?;
        }
        let key = (incident.source.clone(), incident.dedup_key.clone());
        changes
            .open
            .entry(key.0)
            .or_default()
            .insert(key.1, incident.status.is_open().then_some(incident.id));
        if !changes.incidents.contains_key(&incident.id) {
            changes.order.push(incident.id);
        }
        changes.incidents.insert(incident.id, incident);
        Ok(())
    }

    fn apply_event(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        scored: &Scored,
    ) -> Result<(), StoreError> {
        let event = &scored.encoded.event;
        batch.insert_event(&scored.encoded)?;
        for failure in &scored.evaluation.failures {
            self.metrics.rule_failed(&failure.rule);
        }
        let open = self.current(batch, changes, &event.source, &event.dedup_key)?;
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
        match outcome {
            Outcome::Opened(incident, entries) | Outcome::Updated(incident, entries) => {
                match event.action {
                    Action::Acknowledge => {
                        self.metrics.incident_acted(&incident, PersonAction::Acknowledge)
                    }
                    Action::Resolve => {
                        self.metrics.incident_acted(&incident, PersonAction::Resolve)
                    }
                    Action::Trigger => {}
                }
                batch.link_event(event.id, incident.id)?;
                self.keep(batch, changes, rt, incident, &entries)?;
            }
            Outcome::Ignored(why) => {
                tracing::debug!(event = %event.id, source = %event.source, key = %event.dedup_key, why, "event stored; no incident change");
            }
        }
        Ok(())
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
        let now = Timestamp::now();
        let done = match action {
            PersonAction::Acknowledge => incident::acknowledge(current, by, now, None),
            PersonAction::Resolve => incident::resolve(current, by, now, None),
        };
        match done {
            Ok((incident, entry)) => {
                self.metrics.incident_acted(&incident, action);
                self.keep(batch, changes, rt, incident.clone(), std::slice::from_ref(&entry))?;
                Ok(Ok(incident))
            }
            Err(e) => Ok(Err(e.into())),
        }
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
                self.keep(batch, changes, rt, incident, std::slice::from_ref(&entry))?;
            }
        }
        Ok(())
    }

    fn notify_opened(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        incident: &Incident,
    ) -> Result<(), StoreError> {
        let policies = &rt.config.policies;
        let (policy, note) = policies.choose(&incident.decision);
        let mut entries = Vec::new();
        if let Some(note) = note {
            entries.push(entry(incident.first_seen, EntryKind::Note, note));
        }
        let log = rt.config.notifications.log_path.as_ref().map(|p| p.display().to_string());
        let deliveries = match policy {
            Some(p) => policies.deliveries(p, log.as_deref()),
            None => Vec::new(),
        };
        if let Some(reason) = &incident.decision.suppressed {
            let held: Vec<String> = deliveries.iter().map(describe).collect();
            entries.push(entry(
                incident.first_seen,
                EntryKind::Suppressed,
                format!(
                    "suppressed ({reason}); held back {} notification(s): {}",
                    held.len(),
                    held.join(", ")
                ),
            ));
        } else if deliveries.is_empty() {
            entries.push(entry(
                incident.first_seen,
                EntryKind::Note,
                "no policy notifies anyone for this incident (no default_policy, severity_policies or rule-chosen policy)".to_string(),
            ));
        } else {
            let policy_name = policy.map(|p| p.name.as_str()).unwrap_or_default();
            for d in deliveries {
                entries.push(self.enqueue(batch, rt, incident, Reason::New, &d, policy_name)?);
            }
            changes.due = true;
        }
        changes.log(incident.id, entries);
        Ok(())
    }

    fn notify_resolved(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        rt: &Runtime,
        incident: &Incident,
    ) -> Result<(), StoreError> {
        let mut told: Vec<Delivery> = Vec::new();
        for n in batch.incident_notifications(incident.id)? {
            if n.reason == Reason::New && n.state != State::Dead {
                let d =
                    Delivery { channel: n.channel, recipient: n.recipient, audience: n.audience };
                if !told.iter().any(|t| t.channel == d.channel && t.recipient == d.recipient) {
                    told.push(d);
                }
            }
        }
        let mut entries = Vec::new();
        for d in &told {
            entries.push(self.enqueue(
                batch,
                rt,
                incident,
                Reason::Resolved,
                d,
                "resolution notice",
            )?);
        }
        if !entries.is_empty() {
            changes.due = true;
        }
        changes.log(incident.id, entries);
        Ok(())
    }

    /// Writes one outbox row (in the caller's transaction) and returns its timeline entry.
    fn enqueue(
        &self,
        batch: &mut Batch<'_>,
        rt: &Runtime,
        incident: &Incident,
        reason: Reason,
        d: &Delivery,
        why: &str,
    ) -> Result<Entry, StoreError> {
        let id = batch.next_notification_id()?;
        let now = Timestamp::now();
        let (message, fallback) = crate::compose::render(rt, incident, reason, d);
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
            drill: false,
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
        let now = Timestamp::now();
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
        let now = Timestamp::now();
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
