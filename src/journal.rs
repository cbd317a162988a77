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

use crate::event::{Action, Event};
use crate::incident::{self, ActionError, Incident, IncidentId, Outcome, Status};
use crate::metrics::Metrics;
use crate::rules::{Evaluation, IncidentView};
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

/// What the rules may know about an open incident, kept in memory by the writer and read by
/// ingest handlers to build each event's [`IncidentView`].
#[derive(Debug, Clone)]
struct OpenSummary {
    id: IncidentId,
    status: Status,
    count: u64,
    first_seen: Timestamp,
    last_seen: Timestamp,
    severity: String,
    score: i64,
}

impl OpenSummary {
    fn of(incident: &Incident) -> OpenSummary {
        OpenSummary {
            id: incident.id,
            status: incident.status,
            count: incident.count,
            first_seen: incident.first_seen,
            last_seen: incident.last_seen,
            severity: incident.decision.severity.clone(),
            score: incident.decision.score,
        }
    }
}

/// The open incidents by (source, dedup key), as of the last commit.
///
/// std `RwLock`, not tokio's: it is never held across an await. Only the writer thread writes
/// it, after each commit, so readers never see a change that is not on disk.
#[derive(Debug, Default)]
pub struct OpenIndex {
    map: RwLock<HashMap<(String, String), OpenSummary>>,
}

impl OpenIndex {
    /// The view the rules get for `event`: its open incident, or a new one.
    pub fn view(&self, event: &Event) -> IncidentView {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        match map.get(&(event.source.clone(), event.dedup_key.clone())) {
            Some(s) => IncidentView {
                id: s.id,
                is_new: false,
                status: s.status.as_str().to_string(),
                // The view counts the event being scored, as the rules API documents.
                count: s.count + 1,
                first_seen: s.first_seen,
                last_seen: s.last_seen,
                severity: Some(s.severity.clone()),
                score: Some(s.score),
            },
            None => incident::new_view(event),
        }
    }

    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, source: &str, key: &str) -> Option<IncidentId> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(&(source.to_string(), key.to_string())).map(|s| s.id)
    }

    fn quiet_since(&self, cutoff: Timestamp) -> Vec<IncidentId> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.values().filter(|s| s.last_seen < cutoff).map(|s| s.id).collect()
    }

    fn apply(&self, changed: impl IntoIterator<Item = Incident>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        for incident in changed {
            let key = (incident.source.clone(), incident.dedup_key.clone());
            if incident.status.is_open() {
                map.insert(key, OpenSummary::of(&incident));
            } else if map.get(&key).is_some_and(|s| s.id == incident.id) {
                map.remove(&key);
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
    metrics: Arc<Metrics>,
    queue_capacity: usize,
    max_batch_events: usize,
) -> Result<(Journal, WriterThread), StoreError> {
    let open = Arc::new(OpenIndex::default());
    open.apply(store.open_incidents()?);
    metrics.incidents_open.set(open.len() as i64);
    let (tx, rx) = mpsc::channel(queue_capacity);
    let writer = Writer { store, metrics: metrics.clone(), open: open.clone(), max_batch_events };
    let handle = std::thread::Builder::new()
        .name("tocsin-journal".into())
        .spawn(move || writer.run(rx))
        .expect("spawning the journal thread");
    Ok((Journal { tx, capacity: queue_capacity, metrics, open }, WriterThread(handle)))
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
}

struct Writer {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    open: Arc<OpenIndex>,
    max_batch_events: usize,
}

/// Incidents changed by the batch so far, and which open incident each key now has, so that
/// two events for one key in one batch see each other before the commit.
#[derive(Default)]
struct Changes {
    incidents: HashMap<IncidentId, Incident>,
    open: HashMap<(String, String), Option<IncidentId>>,
    /// Order in which incidents were first changed, so stores and metrics are deterministic.
    order: Vec<IncidentId>,
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
        let result = self.store.write(|batch| {
            for cmd in commands {
                match cmd {
                    Command::Append { events, reply } => {
                        for scored in &events {
                            self.apply_event(batch, &mut changes, scored)?;
                        }
                        owed.push(Owed::Append(reply, events));
                    }
                    Command::Act { id, action, by, reply } => {
                        let outcome = self.act(batch, &mut changes, id, action, &by)?;
                        owed.push(Owed::Act(reply, outcome));
                    }
                    Command::AutoResolve { now, quiet } => {
                        self.auto_resolve(batch, &mut changes, now, quiet)?;
                    }
                }
            }
            for id in &changes.order {
                batch.put_incident(&changes.incidents[id])?;
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
            }
            Err(e) => {
                self.metrics.commit_failures.inc();
                tracing::error!(error = %e, events, "journal commit failed; nothing in the batch was stored");
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
        let id = match changes.open.get(&(source.to_string(), key.to_string())) {
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

    fn keep(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
        incident: Incident,
        entries: &[incident::Entry],
    ) -> Result<(), StoreError> {
        batch.append_timeline(incident.id, entries)?;
        let key = (incident.source.clone(), incident.dedup_key.clone());
        changes.open.insert(key, incident.status.is_open().then_some(incident.id));
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
                self.keep(batch, changes, incident, &entries)?;
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
                self.keep(batch, changes, incident.clone(), std::slice::from_ref(&entry))?;
                Ok(Ok(incident))
            }
            Err(e) => Ok(Err(e.into())),
        }
    }

    fn auto_resolve(
        &self,
        batch: &mut Batch<'_>,
        changes: &mut Changes,
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
                self.keep(batch, changes, incident, std::slice::from_ref(&entry))?;
            }
        }
        Ok(())
    }
}
