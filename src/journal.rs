//! The journal writer: the single owner of writes to the store.
//!
//! Ingest handlers hand normalized events to it over a bounded channel and wait for the commit.
//! The writer thread takes whatever is waiting, commits it as one transaction (one fsync for
//! many requests: group commit), then answers every request in the batch. A 2xx therefore never
//! goes out before the event is on disk, and concurrency is what makes batches large.
//!
//! Later stages (incidents, acknowledgements, timers) become more [`Command`] variants handled
//! by the same thread, so one writer owns all state changes.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::event::Event;
use crate::metrics::Metrics;
use crate::store::{Encoded, Store, StoreError};

/// What the writer can be asked to do. A closed set, dispatched with `match`.
#[derive(Debug)]
pub enum Command {
    /// Store these events durably, then answer (handing the events back, so that their memory
    /// is freed on the requester's thread, not the writer's).
    Append { events: Vec<Encoded>, reply: Reply },
}

/// Where the writer sends the outcome of one request's commit.
pub type Reply = oneshot::Sender<(Vec<Encoded>, Result<(), Arc<StoreError>>)>;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("the journal is overloaded ({0} requests already waiting); retry shortly")]
    Overloaded(usize),
    #[error("the journal is shutting down")]
    Closed,
    #[error("the event could not be stored: {0}")]
    Store(Arc<StoreError>),
}

/// The ingest side's handle: cheap to clone, one per request.
#[derive(Debug, Clone)]
pub struct Journal {
    tx: mpsc::Sender<Command>,
    capacity: usize,
    metrics: Arc<Metrics>,
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

/// Starts the writer thread. `queue_capacity` bounds the requests that may wait (beyond it,
/// ingest answers 503 instead of buffering without limit); `max_batch_events` bounds one
/// transaction so a flood cannot make a single commit arbitrarily slow.
pub fn spawn(
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    queue_capacity: usize,
    max_batch_events: usize,
) -> (Journal, WriterThread) {
    let (tx, rx) = mpsc::channel(queue_capacity);
    let writer_metrics = metrics.clone();
    let handle = std::thread::Builder::new()
        .name("tocsin-journal".into())
        .spawn(move || run_writer(store, rx, writer_metrics, max_batch_events))
        .expect("spawning the journal thread");
    (Journal { tx, capacity: queue_capacity, metrics }, WriterThread(handle))
}

impl Journal {
    /// Stores the events durably. Returns only after the commit (or its failure).
    pub async fn append(&self, events: Vec<Event>) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        let events = events
            .into_iter()
            .map(Encoded::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| JournalError::Store(Arc::new(e)))?;
        let (reply, answer) = oneshot::channel();
        self.tx.try_send(Command::Append { events, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => JournalError::Overloaded(self.capacity),
            mpsc::error::TrySendError::Closed(_) => JournalError::Closed,
        })?;
        self.metrics.journal_queue_depth.inc();
        match answer.await {
            Ok((_events, result)) => result.map_err(JournalError::Store),
            // The writer dropped the request without answering: it exited.
            Err(_) => Err(JournalError::Closed),
        }
    }
}

fn run_writer(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<Command>,
    metrics: Arc<Metrics>,
    max_batch_events: usize,
) {
    let mut batch: Vec<(Vec<Encoded>, Reply)> = Vec::new();
    // `blocking_recv` returns None once every Journal handle is dropped and the queue is
    // empty: that is the graceful-shutdown path, after the last request was answered.
    while let Some(first) = rx.blocking_recv() {
        let mut pending = Some(first);
        let mut count = 0usize;
        while let Some(cmd) = pending.take() {
            metrics.journal_queue_depth.dec();
            match cmd {
                Command::Append { events: evs, reply } => {
                    count += evs.len();
                    batch.push((evs, reply));
                }
            }
            if count < max_batch_events {
                pending = rx.try_recv().ok();
            }
        }

        let started = Instant::now();
        let result = store.append(batch.iter().flat_map(|(evs, _)| evs)).map_err(Arc::new);
        metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(()) => metrics.commit_batch_events.observe(count as f64),
            Err(e) => {
                metrics.commit_failures.inc();
                tracing::error!(error = %e, events = count, "journal commit failed");
            }
        }
        for (evs, reply) in batch.drain(..) {
            // A requester that gave up (client went away) is fine: its events are stored.
            let _ = reply.send((evs, result.clone()));
        }
    }
    tracing::debug!("journal writer stopped: all requests answered");
}
