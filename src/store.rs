//! The durable store: redb tables behind one narrow interface, so that another backend
//! (PostgreSQL, for several nodes sharing state) can be added without touching the stages.
//!
//! Last stage of ingest: the [`journal`](crate::journal) writer calls [`Store::append`] with a
//! whole batch; readers (the API) call the `event*` methods from any thread.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jiff::Timestamp;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use uuid::Uuid;

use crate::audit::{self, Finding, Head};
use crate::escalation::{Timer, Window};
use crate::event::Event;
use crate::incident::{Entry, Incident, IncidentId};
use crate::oncall::Override;
use crate::outbox::{Notification, NotificationId, State};

/// Event id (UUID v7 bytes, big-endian, so key order is arrival order) → the event, in one of
/// three row forms (see [`Row`]):
/// - one event that joined an incident: [`JOINED`], the incident id (8 bytes, big-endian), its
///   JSON. Carrying the link in the row saves the writer a B-tree insert per event;
/// - one event that joined none: its JSON. Rows written before rows carried the link have this
///   form too (JSON starts with `{`); their links are in [`EVENT_INCIDENT`];
/// - several events with consecutive ids from one source ([`CHUNK`]), keyed by the first id:
///   a request's batch is one row and one by-source index row, not one of each per event.
///   Ids are handed out in consecutive blocks per request ([`crate::event_id`]), so no other
///   key falls inside a chunk's range, and event `id` is in the row with the greatest key
///   not above it.
const EVENTS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("events");
/// (source, key of an [`EVENTS`] row) → (): lists one source's events without scanning the
/// others.
const EVENTS_BY_SOURCE: TableDefinition<(&str, &[u8; 16]), ()> =
    TableDefinition::new("events_by_source");

/// Incident id → incident as JSON. Ids are allocated in order, so key order is age order.
const INCIDENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("incidents");
/// Incident id → (count, last seen: seconds, nanoseconds) after repeated triggers that changed
/// nothing else: in an alert storm a repeat writes these 20 bytes instead of decoding and
/// re-encoding the incident's JSON. A row here is newer than the incident's JSON (every read of
/// an incident applies it); rewriting the JSON removes it.
const COUNTS: TableDefinition<u64, (u64, i64, i32)> = TableDefinition::new("incident_counts");
/// Ids of the open (triggered or acknowledged) incidents, read at start-up to rebuild the
/// in-memory index by (source, dedup key). Keyed by id, not by key, so that a storm of new
/// incidents appends to the end of the tree instead of dirtying pages all over it.
const OPEN: TableDefinition<u64, ()> = TableDefinition::new("open_incident_ids");
/// (incident id, sequence number) → timeline entry as JSON; append-only.
const TIMELINE: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("timeline");
/// The first byte of an [`EVENTS`] row of one event that carries its incident.
const JOINED: u8 = 0x01;
/// The first byte of an [`EVENTS`] row of several events: then their number `n` (u32,
/// little-endian), `n` heads of [`HEAD`] bytes (whether it joined an incident: 0 or 1; the
/// incident id, u64 big-endian; where its JSON ends in the data, u32 little-endian), and the
/// data: the events' JSON one after another.
const CHUNK: u8 = 0x02;
const HEAD: usize = 13;
/// Most events in one [`CHUNK`] row.
const CHUNK_EVENTS: usize = 512;
/// A [`CHUNK`] row grows no larger than this once it holds two events (a larger event gets a
/// row of its own): values of up to 64 KiB fit one page of redb's 64 KiB page order.
const CHUNK_BYTES: usize = 64 * 1024 - 1024;
/// Event id → the incident it joined, for events stored before [`EVENTS`] rows carried it.
/// Read only; kept so that older data files answer the same.
const EVENT_INCIDENT: TableDefinition<&[u8; 16], u64> = TableDefinition::new("event_incident");
/// Notification id → notification as JSON (the outbox).
const NOTIFICATIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("notifications");
/// (due time in ms since the epoch, notification id) → (): the pending notifications in the
/// order they are due; a claimed one is keyed by its lease's end, so it is due again if the
/// process dies mid-send.
const DUE: TableDefinition<(i64, u64), ()> = TableDefinition::new("notifications_due");
/// (incident id, notification id) → (): an incident's notifications.
const INCIDENT_NOTIFICATIONS: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("incident_notifications");
/// (channel, notification id) → (): the dead-lettered notifications, so that the dashboard's
/// delivery health and queue page find them without reading the whole outbox history. Kept in
/// step by [`Batch::put_notification`]; built once from the outbox by [`Store::open`] for a
/// file written before it existed (meta `dead_index`).
const DEAD: TableDefinition<(&str, u64), ()> = TableDefinition::new("notifications_dead");
/// Webhook endpoint name → why it was disabled (it answered 410 Gone).
const DISABLED_ENDPOINTS: TableDefinition<&str, &str> = TableDefinition::new("disabled_endpoints");
/// (due time in ms since the epoch, timer id) → timer as JSON: escalation steps, notice
/// reminders and deadlines, status-update and action-item reminders, soonest first.
const TIMERS: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("timers");
/// (incident id, timer id) → its due time in ms: an incident's pending timers, so that an
/// acknowledgement or a resolve can cancel them without a scan.
const INCIDENT_TIMERS: TableDefinition<(u64, u64), i64> = TableDefinition::new("incident_timers");
/// Maintenance window id → window as JSON: the windows people opened through the API.
const MAINTENANCE: TableDefinition<u64, &[u8]> = TableDefinition::new("maintenance_windows");
/// The audit chain (see [`audit`](crate::audit)): link number (1, 2, …) → (incident id,
/// timeline sequence number, the link's SHA-256). One link per timeline row, in write order.
const AUDIT: TableDefinition<u64, (u64, u32, [u8; 32])> = TableDefinition::new("audit");
/// (incident id, timeline sequence number) → its link number: the hash of one entry without
/// scanning the chain, and the check that every timeline row is in it.
const AUDIT_INDEX: TableDefinition<(u64, u32), u64> = TableDefinition::new("audit_index");
/// `head` → (last link number, its hash): what the chain must end with (a truncated tail shows).
const AUDIT_HEAD: TableDefinition<&str, (u64, [u8; 32])> = TableDefinition::new("audit_head");
const HEAD_KEY: &str = "head";
/// Override id → rotation override as JSON (see [`crate::oncall::Override`]). Ids are
/// allocated in order, so the highest covering id is the override created last.
const ROTATION_OVERRIDES: TableDefinition<u64, &[u8]> = TableDefinition::new("rotation_overrides");
/// Counters: `next_incident_id`, `next_notification_id`, `next_timer_id`, `next_window_id`,
/// `next_override_id`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "tocsin.redb";

/// redb's page cache. Its default (1 GiB) would let resident memory climb under a sustained
/// flood; recent pages are what readers want, and the OS page cache holds the rest.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open store {path}: {source}")]
    Open { path: PathBuf, source: redb::DatabaseError },
    #[error("cannot create the store file {path} or make it owner-only: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("store transaction failed: {0}")]
    Transaction(#[from] redb::TransactionError),
    #[error("store table failed: {0}")]
    Table(#[from] redb::TableError),
    #[error("store read or write failed: {0}")]
    Storage(#[from] redb::StorageError),
    #[error("store commit failed (nothing in this batch was stored): {0}")]
    Commit(#[from] redb::CommitError),
    #[error("store setting failed: {0}")]
    Durability(#[from] redb::SetDurabilityError),
    #[error("stored event {id} cannot be decoded: {source}")]
    Decode { id: Uuid, source: serde_json::Error },
    #[error("stored events from {first} are damaged: {what}")]
    Damaged { first: Uuid, what: &'static str },
    #[error("stored notification {id} cannot be decoded: {source}")]
    DecodeNotification { id: u64, source: serde_json::Error },
    #[error("stored incident {id} cannot be decoded: {source}")]
    DecodeIncident { id: IncidentId, source: serde_json::Error },
    #[error("incident {id} cannot be encoded: {source}")]
    EncodeIncident { id: IncidentId, source: serde_json::Error },
    #[error("event {id} cannot be encoded: {source}")]
    Encode { id: Uuid, source: serde_json::Error },
    #[error("rotation override {id} cannot be encoded or decoded: {source}")]
    Override { id: u64, source: serde_json::Error },
    #[error("store is closed after an I/O error and could not be reopened yet: {0}")]
    Reopening(String),
    /// redb panicked (it does on pages it cannot make sense of: a damaged file). Caught at
    /// the store's boundary so that it is an error like any other, not a dead writer thread.
    #[error("the store file is damaged or unreadable (redb failed: {0}); restore it from a backup")]
    Corrupt(String),
    /// Tocsin's own code panicked while deciding a batch (a bug, not a damaged file): nothing
    /// in the batch was stored, and the store is as healthy as before.
    #[error("an internal error stopped this change (nothing of it was stored): {0}")]
    Panicked(String),
}

impl StoreError {
    /// An I/O failure under redb (disk full, EIO). After one, redb refuses every later write
    /// (`PreviousIo`) until the database is closed and reopened.
    fn is_io(&self) -> bool {
        use redb::{CommitError, StorageError, TransactionError};
        let storage = match self {
            StoreError::Storage(e)
            | StoreError::Commit(CommitError::Storage(e))
            | StoreError::Transaction(TransactionError::Storage(e)) => e,
            _ => return false,
        };
        matches!(storage, StorageError::Io(_) | StorageError::PreviousIo)
    }
}

fn open_db(path: &Path) -> Result<Database, StoreError> {
    caught(|| {
        Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })
    })
}

/// Runs `f`, turning a panic inside it (redb's answer to a page it cannot parse) into
/// [`StoreError::Corrupt`]. redb is built to stay usable after a panic unwinds through a
/// transaction (it leaks that transaction's pages until the next open), so the caller may go
/// on: reads that avoid the damaged pages keep working, and the daemon can say what is wrong.
fn caught<R>(f: impl FnOnce() -> Result<R, StoreError>) -> Result<R, StoreError> {
    panic_message(f).unwrap_or_else(|why| Err(StoreError::Corrupt(why)))
}

/// `f`'s result, or the message of the panic that ended it.
pub(crate) fn panic_message<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string())
    })
}

/// After a write failed on a damaged file, writes are refused at once (no new panic, no log
/// line per request) for this long, then tried again: the damage may have been in pages that
/// a later write no longer touches, and a successful write ends the refusal.
const DAMAGED_RETRY: Duration = Duration::from_secs(30);

/// Creates the store file owner-only (0600), or makes an existing one so: it holds personal
/// data from customer reports. The data directory, when Tocsin creates it, is 0700.
fn private_file(dir: &Path, path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::CreateDir { path: dir.to_path_buf(), source })?;
    let io = |source: std::io::Error| StoreError::File { path: path.to_path_buf(), source };
    // No truncate: an existing file is opened as it is. redb initialises an empty one.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    let mode = file.metadata().map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700)).map_err(io)?;
        tracing::warn!(
            path = %path.display(),
            was = format!("{:o}", mode & 0o777),
            "the store file was readable by others; made it owner-only"
        );
    }
    Ok(())
}

/// A page of the event list, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub source: Option<String>,
    /// Only events older than this id (the `next` cursor of the previous page).
    pub before: Option<Uuid>,
    pub limit: usize,
}

pub struct Store {
    /// `None` only between closing a database that hit an I/O error and reopening it.
    db: RwLock<Option<Database>>,
    path: PathBuf,
    /// Set after a write failed with an I/O error (disk full): when the last reopen was tried.
    broken: Mutex<Option<Option<Instant>>>,
    /// Set after a write failed on a damaged file: why, and when it was last tried.
    damaged: Mutex<Option<(String, Instant)>>,
    /// Why the store cannot take writes (`None`: healthy), as [`Store::write_problem`] tells
    /// readiness and metrics. Only the writer changes it (after it changed `broken` or
    /// `damaged`, whose locks it holds while it probes and reopens); readers load it without
    /// a lock, so a health check never waits for, or guesses about, a busy writer.
    health: ArcSwapOption<String>,
    /// An in-memory store (drills) has no file to reopen after an I/O error.
    in_memory: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`. Tables are created here so that readers never
    /// see a missing table on a fresh store.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(DB_FILE);
        private_file(dir, &path)?;
        let path_shown = path.display().to_string();
        // A damaged file makes redb panic while it opens or on the first table read: a clean
        // error naming the file, not a panic.
        let named = |e| match e {
            StoreError::Corrupt(why) => StoreError::Corrupt(format!("{path_shown}: {why}")),
            e => e,
        };
        let db = open_db(&path).map_err(named)?;
        caught(|| Store::init(Store::around(db, path, false))).map_err(named)
    }

    /// A fresh store that lives in memory only (redb's in-memory backend): the same tables and
    /// transactions as [`Store::open`], nothing on disk. For `tocsin drill` and tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let path = PathBuf::from("(in memory)");
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|source| StoreError::Open { path: path.clone(), source })?;
        Store::init(Store::around(db, path, true))
    }

    fn around(db: Database, path: PathBuf, in_memory: bool) -> Store {
        Store {
            db: RwLock::new(Some(db)),
            path,
            broken: Mutex::new(None),
            damaged: Mutex::new(None),
            health: ArcSwapOption::empty(),
            in_memory,
        }
    }

    /// Creates every table (so readers never see a missing one) and chains any unaudited
    /// timeline entries.
    fn init(store: Store) -> Result<Store, StoreError> {
        let txn = store.begin_write()?;
        txn.open_table(EVENTS)?;
        txn.open_table(EVENTS_BY_SOURCE)?;
        txn.open_table(INCIDENTS)?;
        txn.open_table(OPEN)?;
        txn.open_table(TIMELINE)?;
        txn.open_table(EVENT_INCIDENT)?;
        txn.open_table(META)?;
        txn.open_table(NOTIFICATIONS)?;
        txn.open_table(DUE)?;
        txn.open_table(INCIDENT_NOTIFICATIONS)?;
        txn.open_table(DISABLED_ENDPOINTS)?;
        txn.open_table(TIMERS)?;
        txn.open_table(INCIDENT_TIMERS)?;
        txn.open_table(MAINTENANCE)?;
        txn.open_table(AUDIT)?;
        txn.open_table(AUDIT_INDEX)?;
        txn.open_table(AUDIT_HEAD)?;
        txn.open_table(ROTATION_OVERRIDES)?;
        txn.open_table(DEAD)?;
        txn.open_table(COUNTS)?;
        txn.commit()?;
        // One transaction (one fsync at start-up) for both catch-ups of an older file.
        let (indexed, chained) =
            store.write(|batch| Ok((batch.index_dead()?, batch.chain_unaudited()?)))?;
        if indexed > 0 {
            tracing::info!(notifications = indexed, "indexed the dead-lettered notifications");
        }
        if chained > 0 {
            tracing::warn!(
                entries = chained,
                "audit: chained {chained} timeline entries written before the audit log existed"
            );
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A read transaction (it does not borrow the database, so the lock is held only briefly).
    fn read_txn(&self) -> Result<redb::ReadTransaction, StoreError> {
        let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
        Ok(guard.as_ref().ok_or_else(|| self.reopening())?.begin_read()?)
    }

    fn reopening(&self) -> StoreError {
        StoreError::Reopening(self.path.display().to_string())
    }

    /// After an I/O error redb refuses every write until the database is reopened (reads of
    /// what was committed keep working). So, before a write, at most once a second: check
    /// that the disk takes a 1 MiB probe file again (space was freed), then close and reopen
    /// the database, which repairs it. Until the probe passes, the old handle stays open for
    /// readers and writes keep failing (503). Only the journal's writer thread writes.
    fn recover(&self) {
        let mut broken = self.broken.lock().unwrap_or_else(|p| p.into_inner());
        let Some(last) = *broken else { return };
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        *broken = Some(Some(Instant::now()));
        let probe = self.path.with_extension("probe");
        let fits = std::fs::write(&probe, vec![0u8; 1 << 20])
            .and_then(|()| std::fs::File::open(&probe)?.sync_all());
        let _ = std::fs::remove_file(&probe);
        if let Err(e) = fits {
            tracing::warn!(error = %e, "store still cannot write; not reopening yet");
            return;
        }
        let mut db = self.db.write().unwrap_or_else(|p| p.into_inner());
        // Close first: redb locks the file, so the old handle must be gone before the new one.
        // A read transaction still running keeps it open a moment longer (redb defers the
        // close), so a refused open is retried briefly; readers get 503 meanwhile.
        drop(db.take());
        let mut opened = open_db(&self.path);
        for _ in 0..100 {
            match &opened {
                Err(StoreError::Open {
                    source: redb::DatabaseError::DatabaseAlreadyOpen, ..
                }) => {
                    std::thread::sleep(Duration::from_millis(10));
                    opened = open_db(&self.path);
                }
                _ => break,
            }
        }
        match opened {
            Ok(reopened) => {
                *db = Some(reopened);
                *broken = None;
                self.publish_health(false);
                tracing::warn!(path = %self.path.display(), "store reopened after an I/O error");
            }
            Err(e) => tracing::error!(error = %e, "reopening the store failed; retrying"),
        }
    }

    /// Every write goes through here: fsync on commit, and two-phase commit because senders
    /// control the bytes we write (redb's hardening against crafted data and torn pages).
    fn begin_write(&self) -> Result<redb::WriteTransaction, StoreError> {
        let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
        let db = guard.as_ref().ok_or_else(|| self.reopening())?;
        let mut txn = db.begin_write()?;
        drop(guard);
        txn.set_durability(Durability::Immediate)?;
        txn.set_two_phase_commit(true);
        Ok(txn)
    }

    /// Runs `f` in one write transaction and commits it (with fsync). When this returns `Ok`,
    /// everything `f` wrote is on disk; on `Err`, none of it is.
    pub fn write<R>(
        &self,
        f: impl FnOnce(&mut Batch<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        {
            let damaged = self.damaged.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((why, at)) = damaged.as_ref()
                && at.elapsed() < DAMAGED_RETRY
            {
                return Err(StoreError::Corrupt(why.clone()));
            }
        }
        self.recover();
        let result = self.write_once(f);
        match &result {
            Err(e) if e.is_io() && !self.in_memory => {
                let mut broken = self.broken.lock().unwrap_or_else(|p| p.into_inner());
                broken.get_or_insert(None);
                self.publish_health(true);
            }
            Err(StoreError::Corrupt(why)) => {
                tracing::error!(
                    store = %self.path.display(),
                    error = %why,
                    "the store cannot write: the file is damaged; writes are refused (retried every {}s) until a write succeeds; restore the file from a backup and restart",
                    DAMAGED_RETRY.as_secs()
                );
                *self.damaged.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((why.clone(), Instant::now()));
                self.publish_health(self.broken_now());
            }
            Ok(_) => {
                let mut damaged = self.damaged.lock().unwrap_or_else(|p| p.into_inner());
                if damaged.take().is_some() {
                    tracing::warn!(store = %self.path.display(), "the store writes again");
                }
                drop(damaged);
                if self.health.load().is_some() {
                    self.publish_health(false);
                }
            }
            Err(_) => {}
        }
        result
    }

    fn broken_now(&self) -> bool {
        self.broken.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Publishes the store's health for [`Store::write_problem`] from `damaged` and `broken`
    /// (passed in, as the caller may hold its lock). Called by the writer only.
    fn publish_health(&self, broken: bool) {
        let damaged = self.damaged.lock().unwrap_or_else(|p| p.into_inner());
        let problem = match (damaged.as_ref(), broken) {
            (Some((why, _)), _) => Some(format!("the store file is damaged: {why}")),
            (None, true) => Some(
                "a write failed with an I/O error (disk full?); the store reopens once it can write"
                    .to_string(),
            ),
            (None, false) => None,
        };
        self.health.store(problem.map(std::sync::Arc::new));
    }

    /// Why the store cannot take writes right now (a full disk it is waiting to reopen after,
    /// or a damaged file), or `None` when it can as far as it knows. For readiness and metrics:
    /// a lock-free read of what the writer last published, never a guess from a busy lock.
    pub fn write_problem(&self) -> Option<String> {
        self.health.load().as_deref().cloned()
    }

    fn write_once<R>(
        &self,
        f: impl FnOnce(&mut Batch<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        // Only redb's calls are caught as a damaged file (here, and in each [`Batch`] method):
        // a panic in `f`, Tocsin's own decisions, is a bug and says nothing about the file.
        let txn = caught(|| self.begin_write())?;
        let result = {
            let mut batch = caught(|| {
                Ok(Batch {
                    events: txn.open_table(EVENTS)?,
                    by_source: txn.open_table(EVENTS_BY_SOURCE)?,
                    incidents: txn.open_table(INCIDENTS)?,
                    counts: txn.open_table(COUNTS)?,
                    counted: HashSet::default(),
                    counts_due: Default::default(),
                    open: txn.open_table(OPEN)?,
                    timeline: txn.open_table(TIMELINE)?,
                    meta: txn.open_table(META)?,
                    notifications: txn.open_table(NOTIFICATIONS)?,
                    due: txn.open_table(DUE)?,
                    incident_notifications: txn.open_table(INCIDENT_NOTIFICATIONS)?,
                    disabled: txn.open_table(DISABLED_ENDPOINTS)?,
                    timers: txn.open_table(TIMERS)?,
                    incident_timers: txn.open_table(INCIDENT_TIMERS)?,
                    maintenance: txn.open_table(MAINTENANCE)?,
                    audit: txn.open_table(AUDIT)?,
                    audit_index: txn.open_table(AUDIT_INDEX)?,
                    audit_head: txn.open_table(AUDIT_HEAD)?,
                    head: None,
                    head_moved: false,
                    counters: Vec::new(),
                    buf: Vec::with_capacity(4096),
                    overrides: txn.open_table(ROTATION_OVERRIDES)?,
                    dead: txn.open_table(DEAD)?,
                    pending: Pending::default(),
                })
            })?;
            let result = panic_message(|| f(&mut batch)).unwrap_or_else(|why| {
                tracing::error!(error = %why, "a change panicked before it was stored (a bug)");
                Err(StoreError::Panicked(why))
            })?;
            batch.flush_events()?;
            batch.flush_counts()?;
            batch.save_head()?;
            batch.save_counters()?;
            result
        };
        caught(|| Ok(txn.commit()?))?;
        Ok(result)
    }

    pub fn event(&self, id: Uuid) -> Result<Option<Event>, StoreError> {
        Ok(self.event_row(id, |json| decode_json(id, json), false)?.map(|(event, _)| event))
    }

    /// Events newest first, optionally of one source, paged by `before`.
    pub fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(EVENTS)?;
        let limit = query.limit.max(1);
        let before = query.before.map(|id| *id.as_bytes()).unwrap_or([0xff; 16]);
        let mut out = Vec::with_capacity(limit.min(1000));
        // Rows keyed below `before` may hold events from `before` on (a chunk's later ones).
        let below = u128::from_be_bytes(before);
        match &query.source {
            None => {
                for entry in table.range::<&[u8; 16]>(..&before)?.rev() {
                    let (key, raw) = entry?;
                    newest_first(
                        Uuid::from_bytes(*key.value()),
                        raw.value(),
                        below,
                        limit,
                        &mut out,
                    )?;
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Some(source) => {
                let index = txn.open_table(EVENTS_BY_SOURCE)?;
                let range =
                    index.range((source.as_str(), &[0u8; 16])..(source.as_str(), &before))?;
                for entry in range.rev() {
                    let (key, _) = entry?;
                    let first = Uuid::from_bytes(*key.value().1);
                    if let Some(raw) = table.get(first.as_bytes())? {
                        newest_first(first, raw.value(), below, limit, &mut out)?;
                    }
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// An event and the incident it joined, from one read of its row.
    pub fn event_joined(
        &self,
        id: Uuid,
    ) -> Result<Option<(Event, Option<IncidentId>)>, StoreError> {
        self.event_row(id, |json| decode_json(id, json), true)
    }

    /// The incident an event joined.
    pub fn event_incident(&self, id: Uuid) -> Result<Option<IncidentId>, StoreError> {
        Ok(self.event_row(id, |_| Ok(()), true)?.and_then(|((), incident)| incident))
    }

    /// `read` of an event's JSON, and (when `joined`) the incident the event joined: from its
    /// row, or for a row written before rows carried it, from [`EVENT_INCIDENT`].
    fn event_row<T>(
        &self,
        id: Uuid,
        read: impl FnOnce(&[u8]) -> Result<T, StoreError>,
        joined: bool,
    ) -> Result<Option<(T, Option<IncidentId>)>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(EVENTS)?;
        let Some((first, raw)) = event_row(&table, id)? else {
            return Ok(None);
        };
        let row = Row::parse(first, raw.value())?;
        let Some((link, json)) = row.entry(id)? else {
            return Ok(None);
        };
        let value = read(json)?;
        let incident = match link {
            Link::Joined(incident) => incident,
            Link::Legacy if joined => {
                txn.open_table(EVENT_INCIDENT)?.get(id.as_bytes())?.map(|v| v.value())
            }
            Link::Legacy => None,
        };
        Ok(Some((value, incident)))
    }

    pub fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        let txn = self.read_txn()?;
        let counts = txn.open_table(COUNTS)?;
        Self::get_in(&txn, INCIDENTS, id, |id, raw| read_incident(&counts, id, raw))
    }

    /// Incidents newest first that pass `keep`, paged by `before` (an incident id).
    pub fn incidents(
        &self,
        before: Option<IncidentId>,
        limit: usize,
        keep: impl Fn(&Incident) -> bool,
    ) -> Result<Vec<Incident>, StoreError> {
        let txn = self.read_txn()?;
        let counts = txn.open_table(COUNTS)?;
        let decode = |id, raw: &[u8]| read_incident(&counts, id, raw);
        Self::page_in(&txn, INCIDENTS, before, limit, decode, keep)
    }

    /// Like [`Store::incidents`], but looks at no more than `budget` incidents: a search whose
    /// matches are rare must not read every incident ever stored in one request. Returns the
    /// matches and, when the budget ran out first, the id of the last incident looked at (the
    /// `before` to continue from).
    pub fn search_incidents(
        &self,
        before: Option<IncidentId>,
        limit: usize,
        budget: usize,
        keep: impl Fn(&Incident) -> bool,
    ) -> Result<(Vec<Incident>, Option<IncidentId>), StoreError> {
        let txn = self.read_txn()?;
        let counts = txn.open_table(COUNTS)?;
        let table = txn.open_table(INCIDENTS)?;
        let mut out = Vec::new();
        for (looked, entry) in table.range(..before.unwrap_or(u64::MAX))?.rev().enumerate() {
            let (id, raw) = entry?;
            let id = id.value();
            if looked >= budget.max(1) {
                return Ok((out, Some(id + 1)));
            }
            let incident = read_incident(&counts, id, raw.value())?;
            if keep(&incident) {
                out.push(incident);
                if out.len() >= limit.max(1) {
                    break;
                }
            }
        }
        Ok((out, None))
    }

    /// Every open incident: read once at start-up to rebuild the in-memory index.
    pub fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        let txn = self.read_txn()?;
        let open = txn.open_table(OPEN)?;
        let table = txn.open_table(INCIDENTS)?;
        let counts = txn.open_table(COUNTS)?;
        let mut out = Vec::new();
        for entry in open.iter()? {
            let (id, _) = entry?;
            let id = id.value();
            if let Some(raw) = table.get(id)? {
                out.push(read_incident(&counts, id, raw.value())?);
            }
        }
        Ok(out)
    }

    /// An incident's timeline with each entry's audit link (number and hash; `None` for an
    /// entry missing from the chain), read in one transaction.
    pub fn timeline_audited(
        &self,
        id: IncidentId,
    ) -> Result<Vec<(Entry, Option<Head>)>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(TIMELINE)?;
        let index = txn.open_table(AUDIT_INDEX)?;
        let chain = txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        for entry in table.range((id, 0)..=(id, u32::MAX))? {
            let (key, raw) = entry?;
            let decoded = serde_json::from_slice(raw.value())
                .map_err(|source| StoreError::DecodeIncident { id, source })?;
            let link = match index.get(key.value())? {
                Some(seq) => {
                    chain.get(seq.value())?.map(|l| Head { seq: seq.value(), hash: l.value().2 })
                }
                None => None,
            };
            out.push((decoded, link));
        }
        Ok(out)
    }

    /// Walks the audit chain in a read transaction (concurrent writes go on; they are not
    /// part of this snapshot). `recorded`: a head recorded earlier that the chain must pass.
    pub fn verify_audit(
        &self,
        recorded: Option<Head>,
    ) -> Result<Result<Head, Finding>, StoreError> {
        // The walk reads every page of the chain: a damaged one is an answer, not a panic.
        caught(|| verify_chain(&self.read_txn()?, recorded))
    }

    pub fn timeline(&self, id: IncidentId) -> Result<Vec<Entry>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(TIMELINE)?;
        let mut out = Vec::new();
        for entry in table.range((id, 0)..=(id, u32::MAX))? {
            let (_, raw) = entry?;
            out.push(
                serde_json::from_slice(raw.value())
                    .map_err(|source| StoreError::DecodeIncident { id, source })?,
            );
        }
        Ok(out)
    }

    pub fn notification(&self, id: NotificationId) -> Result<Option<Notification>, StoreError> {
        self.get(NOTIFICATIONS, id, decode_notification)
    }

    /// Notifications newest first that pass `keep`, paged by `before`.
    pub fn notifications(
        &self,
        before: Option<NotificationId>,
        limit: usize,
        keep: impl Fn(&Notification) -> bool,
    ) -> Result<Vec<Notification>, StoreError> {
        self.page(NOTIFICATIONS, before, limit, decode_notification, keep)
    }

    /// One row of a table keyed by sequential id.
    fn get<T>(
        &self,
        table: TableDefinition<u64, &[u8]>,
        id: u64,
        decode: fn(u64, &[u8]) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        Self::get_in(&self.read_txn()?, table, id, decode)
    }

    /// [`Store::get`] in a transaction the caller holds (so `decode` may read other tables
    /// of it).
    fn get_in<T>(
        txn: &redb::ReadTransaction,
        table: TableDefinition<u64, &[u8]>,
        id: u64,
        decode: impl Fn(u64, &[u8]) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let table = txn.open_table(table)?;
        match table.get(id)? {
            Some(raw) => decode(id, raw.value()).map(Some),
            None => Ok(None),
        }
    }

    /// One page of a table keyed by sequential id, newest first: up to `limit` rows older
    /// than `before` that pass `keep`.
    fn page<T>(
        &self,
        table: TableDefinition<u64, &[u8]>,
        before: Option<u64>,
        limit: usize,
        decode: fn(u64, &[u8]) -> Result<T, StoreError>,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, StoreError> {
        Self::page_in(&self.read_txn()?, table, before, limit, decode, keep)
    }

    /// [`Store::page`] in a transaction the caller holds (so `decode` may read other tables
    /// of it).
    fn page_in<T>(
        txn: &redb::ReadTransaction,
        table: TableDefinition<u64, &[u8]>,
        before: Option<u64>,
        limit: usize,
        decode: impl Fn(u64, &[u8]) -> Result<T, StoreError>,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, StoreError> {
        let table = txn.open_table(table)?;
        let mut out = Vec::new();
        for entry in table.range(..before.unwrap_or(u64::MAX))?.rev() {
            let (id, raw) = entry?;
            let item = decode(id.value(), raw.value())?;
            if keep(&item) {
                out.push(item);
                if out.len() >= limit.max(1) {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Dead-lettered notifications older than `before` that pass `keep`, newest first, at most
    /// `limit` (from the dead-letter index, not the whole outbox).
    pub fn dead_notifications(
        &self,
        before: Option<NotificationId>,
        limit: usize,
        keep: impl Fn(&Notification) -> bool,
    ) -> Result<Vec<Notification>, StoreError> {
        let txn = self.read_txn()?;
        let ids = txn
            .open_table(DEAD)?
            .iter()?
            .map(|e| Ok(e?.0.value().1))
            .collect::<Result<_, StoreError>>()?;
        Self::newest(&txn, ids, before, limit, keep)
    }

    /// Pending notifications (queued, sending, retrying) older than `before` that pass `keep`,
    /// newest first, at most `limit` (from the due index, not the whole outbox).
    pub fn pending_notifications(
        &self,
        before: Option<NotificationId>,
        limit: usize,
        keep: impl Fn(&Notification) -> bool,
    ) -> Result<Vec<Notification>, StoreError> {
        let txn = self.read_txn()?;
        let ids = txn
            .open_table(DUE)?
            .iter()?
            .map(|e| Ok(e?.0.value().1))
            .collect::<Result<_, StoreError>>()?;
        Self::newest(&txn, ids, before, limit, keep)
    }

    fn newest(
        txn: &redb::ReadTransaction,
        mut ids: Vec<u64>,
        before: Option<NotificationId>,
        limit: usize,
        keep: impl Fn(&Notification) -> bool,
    ) -> Result<Vec<Notification>, StoreError> {
        ids.retain(|id| before.is_none_or(|b| *id < b));
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let table = txn.open_table(NOTIFICATIONS)?;
        let mut out = Vec::new();
        for id in ids {
            if out.len() >= limit {
                break;
            }
            if let Some(raw) = table.get(id)? {
                let n = decode_notification(id, raw.value())?;
                if keep(&n) {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }

    /// What delivery health needs, from the indexes rather than the whole outbox history:
    /// `pending` sees every pending notification, `dead` the channel of every dead one.
    pub fn delivery_health(
        &self,
        mut pending: impl FnMut(&Notification),
        mut dead: impl FnMut(&str),
    ) -> Result<(), StoreError> {
        let txn = self.read_txn()?;
        each_pending(&txn, |n| pending(&n))?;
        for entry in txn.open_table(DEAD)?.iter()? {
            dead(entry?.0.value().0);
        }
        Ok(())
    }

    /// Notifications newest first while `more` holds for each one read (ids grow with creation
    /// time, so a caller looking for recent ones stops at the first that is too old).
    pub fn recent_notifications(
        &self,
        more: impl Fn(&Notification) -> bool,
    ) -> Result<Vec<Notification>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(NOTIFICATIONS)?;
        let mut out = Vec::new();
        for entry in table.iter()?.rev() {
            let (id, raw) = entry?;
            let n = decode_notification(id.value(), raw.value())?;
            if !more(&n) {
                break;
            }
            out.push(n);
        }
        Ok(out)
    }

    pub fn incident_notifications(
        &self,
        incident: IncidentId,
    ) -> Result<Vec<Notification>, StoreError> {
        let txn = self.read_txn()?;
        let index = txn.open_table(INCIDENT_NOTIFICATIONS)?;
        let table = txn.open_table(NOTIFICATIONS)?;
        let mut out = Vec::new();
        for entry in index.range((incident, 0)..=(incident, u64::MAX))? {
            let (key, _) = entry?;
            let id = key.value().1;
            if let Some(raw) = table.get(id)? {
                out.push(decode_notification(id, raw.value())?);
            }
        }
        Ok(out)
    }

    /// The earliest due time of any pending notification.
    pub fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let txn = self.read_txn()?;
        let due = txn.open_table(DUE)?;
        Ok(match due.first()? {
            Some((key, _)) => Timestamp::from_millisecond(key.value().0).ok(),
            None => None,
        })
    }

    /// Pending notifications by channel and the oldest one's age (scans the due index).
    pub fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let txn = self.read_txn()?;
        let mut stats = QueueStats::default();
        each_pending(&txn, |n| {
            *stats.pending.entry(n.channel.as_str().to_string()).or_default() += 1;
            stats.oldest =
                Some(stats.oldest.map_or(n.created_at, |o: Timestamp| o.min(n.created_at)));
        })?;
        // Marking a notice sent cancels its deadline timer, so every deadline timer left is a
        // notice still owed.
        for entry in txn.open_table(TIMERS)?.iter()? {
            let (key, raw) = entry?;
            if matches!(
                decode_timer(key.value().1, raw.value())?.kind,
                crate::escalation::TimerKind::NoticeDeadline { .. }
            ) {
                stats.notice_deadlines += 1;
            }
        }
        Ok(stats)
    }

    /// The earliest due time of any timer.
    pub fn next_timer_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let txn = self.read_txn()?;
        let timers = txn.open_table(TIMERS)?;
        Ok(match timers.first()? {
            Some((key, _)) => Timestamp::from_millisecond(key.value().0).ok(),
            None => None,
        })
    }

    /// An incident's pending timers, soonest first.
    pub fn incident_timers(&self, incident: IncidentId) -> Result<Vec<Timer>, StoreError> {
        let txn = self.read_txn()?;
        let index = txn.open_table(INCIDENT_TIMERS)?;
        let timers = txn.open_table(TIMERS)?;
        let mut out = Vec::new();
        for entry in index.range((incident, 0)..=(incident, u64::MAX))? {
            let (key, due) = entry?;
            if let Some(raw) = timers.get((due.value(), key.value().1))? {
                out.push(decode_timer(key.value().1, raw.value())?);
            }
        }
        out.sort_by_key(|t| (t.due_at, t.id));
        Ok(out)
    }

    /// Every pending timer, soonest first, up to `limit` (for the dashboard and tests).
    pub fn timers(&self, limit: usize) -> Result<Vec<Timer>, StoreError> {
        let txn = self.read_txn()?;
        let timers = txn.open_table(TIMERS)?;
        let mut out = Vec::new();
        for entry in timers.iter()?.take(limit) {
            let (key, raw) = entry?;
            out.push(decode_timer(key.value().1, raw.value())?);
        }
        Ok(out)
    }

    /// The maintenance windows opened through the API, oldest first.
    /// Webhook endpoint name → why it was disabled, for every disabled endpoint.
    pub fn disabled_endpoints(
        &self,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(DISABLED_ENDPOINTS)?;
        let mut out = std::collections::BTreeMap::new();
        for entry in table.iter()? {
            let (name, why) = entry?;
            out.insert(name.value().to_string(), why.value().to_string());
        }
        Ok(out)
    }

    pub fn maintenance_windows(&self) -> Result<Vec<Window>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(MAINTENANCE)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, raw) = entry?;
            out.push(
                serde_json::from_slice(raw.value())
                    .map_err(|source| StoreError::DecodeNotification { id: key.value(), source })?,
            );
        }
        Ok(out)
    }

    /// Every stored rotation override, oldest first: read at start-up into the writer's
    /// in-memory [`crate::oncall::OverrideSet`].
    pub fn overrides(&self) -> Result<Vec<Override>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(ROTATION_OVERRIDES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (id, raw) = entry?;
            out.push(decode_override(id.value(), raw.value())?);
        }
        Ok(out)
    }

    /// Number of stored events (reads every row).
    pub fn event_count(&self) -> Result<u64, StoreError> {
        let txn = self.read_txn()?;
        let mut n = 0;
        for entry in txn.open_table(EVENTS)?.iter()? {
            let (key, raw) = entry?;
            n += Row::parse(Uuid::from_bytes(*key.value()), raw.value())?.len() as u64;
        }
        Ok(n)
    }

    /// What [`crate::report::compute`] needs: the incidents that opened at `from` or later and
    /// how many notifications each has, read in one transaction.
    pub fn report_data(&self, from: Timestamp) -> Result<ReportData, StoreError> {
        caught(|| read_report_data(&self.read_txn()?, from))
    }
}

/// An event with its stored form. Encoding happens on the request's own thread, in parallel,
/// so that the single writer only copies bytes into the store.
#[derive(Debug)]
pub struct Encoded {
    pub event: Event,
    pub bytes: Vec<u8>,
}

impl Encoded {
    pub fn new(event: Event) -> Result<Encoded, StoreError> {
        let bytes = serde_json::to_vec(&event)
            .map_err(|source| StoreError::Encode { id: event.id, source })?;
        Ok(Encoded { event, bytes })
    }
}

fn decode_incident(id: IncidentId, raw: &[u8]) -> Result<Incident, StoreError> {
    serde_json::from_slice(raw).map_err(|source| StoreError::DecodeIncident { id, source })
}

/// An incident as stored: its JSON with the counters of any later repeated triggers applied.
/// Whether it had such a row is the second value.
fn read_incident_counted(
    counts: &impl ReadableTable<u64, (u64, i64, i32)>,
    id: IncidentId,
    raw: &[u8],
) -> Result<(Incident, bool), StoreError> {
    let mut incident = decode_incident(id, raw)?;
    let Some(row) = counts.get(id)? else {
        return Ok((incident, false));
    };
    let (count, secs, nanos) = row.value();
    incident.count = count;
    // Written from a valid timestamp; a row that does not read as one keeps the JSON's.
    if let Ok(at) = Timestamp::new(secs, nanos) {
        incident.last_seen = at;
    }
    Ok((incident, true))
}

fn read_incident(
    counts: &impl ReadableTable<u64, (u64, i64, i32)>,
    id: IncidentId,
    raw: &[u8],
) -> Result<Incident, StoreError> {
    read_incident_counted(counts, id, raw).map(|(incident, _)| incident)
}

/// The tables of one write transaction, for the journal writer. Every write of a batch goes
/// through here, so one commit covers events, incidents and their timelines together.
pub struct Batch<'txn> {
    events: redb::Table<'txn, &'static [u8; 16], &'static [u8]>,
    by_source: redb::Table<'txn, (&'static str, &'static [u8; 16]), ()>,
    incidents: redb::Table<'txn, u64, &'static [u8]>,
    counts: redb::Table<'txn, u64, (u64, i64, i32)>,
    /// Incidents with a row in `counts` as far as this batch knows (read or written in it):
    /// rewriting one's JSON removes its row.
    counted: HashSet<IncidentId, foldhash::fast::RandomState>,
    /// Counts recorded by [`Batch::put_counts`], written to [`COUNTS`] when the batch ends.
    counts_due:
        std::collections::HashMap<IncidentId, (u64, Timestamp), foldhash::fast::RandomState>,
    open: redb::Table<'txn, u64, ()>,
    timeline: redb::Table<'txn, (u64, u32), &'static [u8]>,
    meta: redb::Table<'txn, &'static str, u64>,
    notifications: redb::Table<'txn, u64, &'static [u8]>,
    due: redb::Table<'txn, (i64, u64), ()>,
    dead: redb::Table<'txn, (&'static str, u64), ()>,
    incident_notifications: redb::Table<'txn, (u64, u64), ()>,
    disabled: redb::Table<'txn, &'static str, &'static str>,
    timers: redb::Table<'txn, (i64, u64), &'static [u8]>,
    incident_timers: redb::Table<'txn, (u64, u64), i64>,
    maintenance: redb::Table<'txn, u64, &'static [u8]>,
    audit: redb::Table<'txn, u64, (u64, u32, [u8; 32])>,
    audit_index: redb::Table<'txn, (u64, u32), u64>,
    audit_head: redb::Table<'txn, &'static str, (u64, [u8; 32])>,
    /// The chain's head as of this batch: read on the first timeline write, saved once at its end.
    head: Option<Head>,
    head_moved: bool,
    /// Id counters as advanced by this batch, saved once at its end.
    counters: Vec<(&'static str, u64)>,
    /// One encoding buffer for the batch's incidents and timeline entries (an allocation and a
    /// free per row saved on the writer thread).
    buf: Vec<u8>,
    overrides: redb::Table<'txn, u64, &'static [u8]>,
    /// Events inserted but not yet written: consecutive ids from one source, written as one
    /// row when the run ends or the batch does.
    pending: Pending,
}

/// The next [`EVENTS`] row, as it grows (a [`CHUNK`] row's parts).
#[derive(Default)]
struct Pending {
    first: u128,
    source: String,
    n: usize,
    heads: Vec<u8>,
    data: Vec<u8>,
}

impl Pending {
    fn covers(&self, id: u128) -> bool {
        id.wrapping_sub(self.first) < self.n as u128
    }

    fn row_len(&self) -> usize {
        5 + self.heads.len() + self.data.len()
    }
}

impl Batch<'_> {
    /// An event as of this batch (one inserted earlier in it included).
    pub fn event(&self, id: Uuid) -> Result<Option<Event>, StoreError> {
        caught(|| {
            let p = &self.pending;
            let stored;
            let row = if p.covers(id.as_u128()) {
                Row::Chunk { first: p.first, n: p.n, heads: &p.heads, data: &p.data }
            } else {
                let Some((first, raw)) = event_row(&self.events, id)? else {
                    return Ok(None);
                };
                stored = raw;
                Row::parse(first, stored.value())?
            };
            match row.entry(id)? {
                Some((_, json)) => decode_json(id, json).map(Some),
                None => Ok(None),
            }
        })
    }

    /// Stores an event, with the incident it joined (`None`: it changed none). Consecutive
    /// events of a request are written together, as one row, when the run or the batch ends.
    pub fn insert_event(
        &mut self,
        encoded: &Encoded,
        incident: Option<IncidentId>,
    ) -> Result<(), StoreError> {
        caught(|| {
            let id = encoded.event.id.as_u128();
            let p = &self.pending;
            if p.n > 0
                && (id != p.first.wrapping_add(p.n as u128)
                    || p.source != encoded.event.source
                    || p.n >= CHUNK_EVENTS
                    || p.row_len() + HEAD + encoded.bytes.len() > CHUNK_BYTES)
            {
                self.flush_events()?;
            }
            let p = &mut self.pending;
            if p.n == 0 {
                p.first = id;
                p.source.clone_from(&encoded.event.source);
            }
            p.data.extend_from_slice(&encoded.bytes);
            let end = u32::try_from(p.data.len()).map_err(|_| StoreError::Damaged {
                first: Uuid::from_u128(p.first),
                what: "over 4 GiB",
            })?;
            p.heads.push(u8::from(incident.is_some()));
            p.heads.extend_from_slice(&incident.unwrap_or(0).to_be_bytes());
            p.heads.extend_from_slice(&end.to_le_bytes());
            p.n += 1;
            Ok(())
        })
    }

    /// Writes the pending events: one event as a row of its own (the forms older versions
    /// read), several as a [`CHUNK`]; and the row's by-source index entry.
    fn flush_events(&mut self) -> Result<(), StoreError> {
        caught(|| {
            let Batch { pending: p, events, by_source, .. } = self;
            if p.n == 0 {
                return Ok(());
            }
            let key = Uuid::from_u128(p.first).into_bytes();
            if p.n == 1 {
                if p.heads[0] == 1 {
                    let mut row = events.insert_reserve(&key, 9 + p.data.len())?;
                    let out = row.as_mut();
                    out[0] = JOINED;
                    out[1..9].copy_from_slice(&p.heads[1..9]);
                    out[9..].copy_from_slice(&p.data);
                } else {
                    events.insert(&key, p.data.as_slice())?;
                }
            } else {
                let mut row = events.insert_reserve(&key, p.row_len())?;
                let out = row.as_mut();
                out[0] = CHUNK;
                out[1..5].copy_from_slice(&(p.n as u32).to_le_bytes());
                let (heads, data) = out[5..].split_at_mut(p.heads.len());
                heads.copy_from_slice(&p.heads);
                data.copy_from_slice(&p.data);
            }
            by_source.insert((p.source.as_str(), &key), ())?;
            p.n = 0;
            p.heads.clear();
            p.data.clear();
            Ok(())
        })
    }

    pub fn incident(&mut self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        caught(|| {
            let Some(raw) = self.incidents.get(id)? else {
                return Ok(None);
            };
            let (mut incident, counted) = read_incident_counted(&self.counts, id, raw.value())?;
            if let Some(&(count, last_seen)) = self.counts_due.get(&id) {
                (incident.count, incident.last_seen) = (count, last_seen);
            } else if counted {
                self.counted.insert(id);
            }
            Ok(Some(incident))
        })
    }

    /// Records a repeated trigger that changed nothing but the incident's count and last-seen
    /// time, without rewriting its JSON (see [`COUNTS`]). Written when the batch ends: once
    /// per incident however often it repeated, in id order.
    pub fn put_counts(&mut self, id: IncidentId, count: u64, last_seen: Timestamp) {
        self.counts_due.insert(id, (count, last_seen));
        self.counted.insert(id);
    }

    fn flush_counts(&mut self) -> Result<(), StoreError> {
        caught(|| {
            let mut due: Vec<(IncidentId, (u64, Timestamp))> = self.counts_due.drain().collect();
            due.sort_unstable_by_key(|(id, _)| *id);
            for (id, (count, at)) in due {
                self.counts.insert(id, (count, at.as_second(), at.subsec_nanosecond()))?;
            }
            Ok(())
        })
    }

    /// Stores the incident and keeps the open-incident index in step with its status.
    /// `was_open`: it was open before this transaction (so the index already has it).
    pub fn put_incident(&mut self, incident: &Incident, was_open: bool) -> Result<(), StoreError> {
        caught(|| {
            self.buf.clear();
            serde_json::to_writer(&mut self.buf, incident)
                .map_err(|source| StoreError::EncodeIncident { id: incident.id, source })?;
            self.incidents.insert(incident.id, self.buf.as_slice())?;
            if self.counted.remove(&incident.id) {
                // The JSON now holds the counts (the incident was read with them applied).
                self.counts_due.remove(&incident.id);
                self.counts.remove(incident.id)?;
            }
            match (incident.status.is_open(), was_open) {
                (true, false) => {
                    self.open.insert(incident.id, ())?;
                }
                (false, true) => {
                    self.open.remove(incident.id)?;
                }
                _ => {}
            }
            Ok(())
        })
    }

    /// Appends entries to an incident's timeline after its last one (`first`: the next
    /// sequence number when the caller knows it, e.g. 0 for a new incident).
    pub fn append_timeline(
        &mut self,
        id: IncidentId,
        first: Option<u32>,
        entries: &[Entry],
    ) -> Result<(), StoreError> {
        caught(|| {
            if entries.is_empty() {
                return Ok(());
            }
            let first = match first {
                Some(n) => n,
                None => match self.timeline.range((id, 0)..=(id, u32::MAX))?.next_back() {
                    Some(last) => last?.0.value().1 + 1,
                    None => 0,
                },
            };
            let mut head = self.head()?;
            for (seq, entry) in (first..).zip(entries) {
                self.buf.clear();
                serde_json::to_writer(&mut self.buf, entry)
                    .map_err(|source| StoreError::EncodeIncident { id, source })?;
                self.timeline.insert((id, seq), self.buf.as_slice())?;
                let link = head.advance(id, seq, &self.buf);
                self.audit.insert(link.seq, (id, seq, link.hash))?;
                self.audit_index.insert((id, seq), link.seq)?;
            }
            self.head = Some(head);
            self.head_moved = true;
            Ok(())
        })
    }

    /// The chain's head: read once per batch.
    fn head(&mut self) -> Result<Head, StoreError> {
        caught(|| {
            if let Some(head) = self.head {
                return Ok(head);
            }
            let head = read_head(&self.audit_head)?.unwrap_or(Head::EMPTY);
            self.head = Some(head);
            Ok(head)
        })
    }

    fn save_head(&mut self) -> Result<(), StoreError> {
        caught(|| {
            if let (true, Some(head)) = (self.head_moved, self.head) {
                self.audit_head.insert(HEAD_KEY, (head.seq, head.hash))?;
            }
            Ok(())
        })
    }

    /// A store written before the audit log existed has timeline rows and no chain: chain them
    /// all, in (incident, sequence) order. Returns how many; 0 once a chain exists.
    fn chain_unaudited(&mut self) -> Result<u64, StoreError> {
        caught(|| {
            if read_head(&self.audit_head)?.is_some() || !self.audit.is_empty()? {
                return Ok(0);
            }
            let mut head = Head::EMPTY;
            for row in self.timeline.iter()? {
                let (key, raw) = row?;
                let (id, seq) = key.value();
                let link = head.advance(id, seq, raw.value());
                self.audit.insert(link.seq, (id, seq, link.hash))?;
                self.audit_index.insert((id, seq), link.seq)?;
            }
            if head.seq > 0 {
                self.head = Some(head);
                self.head_moved = true;
            }
            Ok(head.seq)
        })
    }

    /// Allocates the next incident id (1, 2, …), durable with the batch.
    pub fn next_incident_id(&mut self) -> Result<IncidentId, StoreError> {
        caught(|| self.next_id("next_incident_id"))
    }

    pub fn next_notification_id(&mut self) -> Result<NotificationId, StoreError> {
        caught(|| self.next_id("next_notification_id"))
    }

    /// Counters are read on first use in a batch and written once at its end (an alert storm
    /// allocates thousands of incident ids per batch: one read and one write instead of one each
    /// per incident).
    fn next_id(&mut self, counter: &'static str) -> Result<u64, StoreError> {
        caught(|| {
            let slot = match self.counters.iter().position(|(name, _)| *name == counter) {
                Some(i) => i,
                None => {
                    let next = self.meta.get(counter)?.map(|v| v.value()).unwrap_or(1);
                    self.counters.push((counter, next));
                    self.counters.len() - 1
                }
            };
            let next = self.counters[slot].1;
            self.counters[slot].1 = next + 1;
            Ok(next)
        })
    }

    /// Writes the counters this batch advanced (see [`Batch::next_id`]).
    fn save_counters(&mut self) -> Result<(), StoreError> {
        caught(|| {
            for (name, next) in std::mem::take(&mut self.counters) {
                self.meta.insert(name, next)?;
            }
            Ok(())
        })
    }

    pub fn notification(&self, id: NotificationId) -> Result<Option<Notification>, StoreError> {
        caught(|| match self.notifications.get(id)? {
            Some(raw) => decode_notification(id, raw.value()).map(Some),
            None => Ok(None),
        })
    }

    /// Stores a notification and keeps the due and dead indexes in step with its state and due
    /// time.
    pub fn put_notification(&mut self, n: &Notification) -> Result<(), StoreError> {
        caught(|| {
            let old = self.notification(n.id)?;
            match &old {
                Some(old) if old.state.is_pending() => {
                    self.due.remove((old.due_at.as_millisecond(), n.id))?;
                }
                _ => {
                    self.incident_notifications.insert((n.incident_id, n.id), ())?;
                }
            }
            let was_dead = old.as_ref().filter(|o| o.state == State::Dead);
            if let Some(o) = was_dead
                && (n.state != State::Dead || o.channel != n.channel)
            {
                self.dead.remove((o.channel.as_str(), n.id))?;
            }
            if n.state == State::Dead && was_dead.is_none_or(|o| o.channel != n.channel) {
                self.dead.insert((n.channel.as_str(), n.id), ())?;
            }
            let bytes = serde_json::to_vec(n)
                .map_err(|source| StoreError::EncodeIncident { id: n.incident_id, source })?;
            self.notifications.insert(n.id, bytes.as_slice())?;
            if n.state.is_pending() {
                self.due.insert((n.due_at.as_millisecond(), n.id), ())?;
            }
            Ok(())
        })
    }

    /// Builds the dead-letter index from the outbox, once per file (a file from before the
    /// index existed); answers how many it found.
    fn index_dead(&mut self) -> Result<u64, StoreError> {
        caught(|| {
            const BUILT: &str = "dead_index";
            if self.meta.get(BUILT)?.is_some() {
                return Ok(0);
            }
            let mut dead = Vec::new();
            for entry in self.notifications.iter()? {
                let (id, raw) = entry?;
                let n = decode_notification(id.value(), raw.value())?;
                if n.state == State::Dead {
                    dead.push((n.channel, n.id));
                }
            }
            for (channel, id) in &dead {
                self.dead.insert((channel.as_str(), *id), ())?;
            }
            self.meta.insert(BUILT, 1)?;
            Ok(dead.len() as u64)
        })
    }

    /// Pending notifications due at or before `now`, soonest first.
    pub fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<Notification>, StoreError> {
        caught(|| {
            let mut out = Vec::new();
            for entry in self.due.range(..=(now.as_millisecond(), u64::MAX))?.take(limit) {
                let (key, _) = entry?;
                if let Some(n) = self.notification(key.value().1)? {
                    out.push(n);
                }
            }
            Ok(out)
        })
    }

    pub fn incident_notifications(
        &self,
        incident: IncidentId,
    ) -> Result<Vec<Notification>, StoreError> {
        caught(|| {
            let mut out = Vec::new();
            for entry in self.incident_notifications.range((incident, 0)..=(incident, u64::MAX))? {
                let (key, _) = entry?;
                if let Some(n) = self.notification(key.value().1)? {
                    out.push(n);
                }
            }
            Ok(out)
        })
    }

    pub fn next_timer_id(&mut self) -> Result<u64, StoreError> {
        caught(|| self.next_id("next_timer_id"))
    }

    /// Schedules a timer (its id from [`Batch::next_timer_id`]).
    pub fn put_timer(&mut self, timer: &Timer) -> Result<(), StoreError> {
        caught(|| {
            let bytes = serde_json::to_vec(timer)
                .map_err(|source| StoreError::EncodeIncident { id: timer.incident, source })?;
            let due = timer.due_at.as_millisecond();
            self.timers.insert((due, timer.id), bytes.as_slice())?;
            self.incident_timers.insert((timer.incident, timer.id), due)?;
            Ok(())
        })
    }

    pub fn remove_timer(&mut self, timer: &Timer) -> Result<(), StoreError> {
        caught(|| {
            self.timers.remove((timer.due_at.as_millisecond(), timer.id))?;
            self.incident_timers.remove((timer.incident, timer.id))?;
            Ok(())
        })
    }

    /// Timers due at or before `now`, soonest first.
    pub fn due_timers(&self, now: Timestamp, limit: usize) -> Result<Vec<Timer>, StoreError> {
        caught(|| {
            let mut out = Vec::new();
            for entry in self.timers.range(..=(now.as_millisecond(), u64::MAX))?.take(limit) {
                let (key, raw) = entry?;
                out.push(decode_timer(key.value().1, raw.value())?);
            }
            Ok(out)
        })
    }

    /// The timers due exactly at `at` (to the millisecond, as they are keyed).
    pub fn timers_at(&self, at: Timestamp) -> Result<Vec<Timer>, StoreError> {
        caught(|| {
            let due = at.as_millisecond();
            let mut out = Vec::new();
            for entry in self.timers.range((due, 0)..=(due, u64::MAX))? {
                let (key, raw) = entry?;
                out.push(decode_timer(key.value().1, raw.value())?);
            }
            Ok(out)
        })
    }

    /// An incident's pending timers.
    pub fn incident_timers(&self, incident: IncidentId) -> Result<Vec<Timer>, StoreError> {
        caught(|| {
            let mut out = Vec::new();
            for entry in self.incident_timers.range((incident, 0)..=(incident, u64::MAX))? {
                let (key, due) = entry?;
                if let Some(raw) = self.timers.get((due.value(), key.value().1))? {
                    out.push(decode_timer(key.value().1, raw.value())?);
                }
            }
            Ok(out)
        })
    }

    pub fn next_window_id(&mut self) -> Result<u64, StoreError> {
        caught(|| self.next_id("next_window_id"))
    }

    pub fn put_window(&mut self, id: u64, window: &Window) -> Result<(), StoreError> {
        caught(|| {
            let bytes = serde_json::to_vec(window)
                .map_err(|source| StoreError::EncodeIncident { id: 0, source })?;
            self.maintenance.insert(id, bytes.as_slice())?;
            Ok(())
        })
    }

    pub fn remove_window(&mut self, id: u64) -> Result<bool, StoreError> {
        caught(|| Ok(self.maintenance.remove(id)?.is_some()))
    }

    pub fn disable_endpoint(&mut self, name: &str, reason: &str) -> Result<(), StoreError> {
        caught(|| {
            self.disabled.insert(name, reason)?;
            Ok(())
        })
    }

    /// Re-enables a webhook endpoint; returns why it had been disabled (`None`: it was not).
    pub fn enable_endpoint(&mut self, name: &str) -> Result<Option<String>, StoreError> {
        caught(|| Ok(self.disabled.remove(name)?.map(|v| v.value().to_string())))
    }

    pub fn disabled_endpoint(&self, name: &str) -> Result<Option<String>, StoreError> {
        caught(|| Ok(self.disabled.get(name)?.map(|v| v.value().to_string())))
    }

    /// Allocates the next rotation override id (1, 2, …), durable with the batch.
    pub fn next_override_id(&mut self) -> Result<u64, StoreError> {
        caught(|| self.next_id("next_override_id"))
    }

    pub fn put_override(&mut self, o: &Override) -> Result<(), StoreError> {
        caught(|| {
            let bytes = serde_json::to_vec(o)
                .map_err(|source| StoreError::Override { id: o.id, source })?;
            self.overrides.insert(o.id, bytes.as_slice())?;
            Ok(())
        })
    }

    pub fn rotation_override(&self, id: u64) -> Result<Option<Override>, StoreError> {
        caught(|| match self.overrides.get(id)? {
            Some(raw) => decode_override(id, raw.value()).map(Some),
            None => Ok(None),
        })
    }

    /// Deletes an override; returns it if it existed.
    pub fn delete_override(&mut self, id: u64) -> Result<Option<Override>, StoreError> {
        caught(|| {
            let old = self.rotation_override(id)?;
            if old.is_some() {
                self.overrides.remove(id)?;
            }
            Ok(old)
        })
    }
}

fn decode_override(id: u64, raw: &[u8]) -> Result<Override, StoreError> {
    serde_json::from_slice(raw).map_err(|source| StoreError::Override { id, source })
}

fn decode_timer(id: u64, raw: &[u8]) -> Result<Timer, StoreError> {
    serde_json::from_slice(raw).map_err(|source| StoreError::DecodeNotification { id, source })
}

fn read_head(
    table: &impl ReadableTable<&'static str, (u64, [u8; 32])>,
) -> Result<Option<Head>, StoreError> {
    Ok(table.get(HEAD_KEY)?.map(|v| {
        let (seq, hash) = v.value();
        Head { seq, hash }
    }))
}

/// Walks the whole chain in link order, checking each link against the timeline row it names,
/// then the head record, then that every timeline row is a link of the chain.
fn verify_chain(
    txn: &redb::ReadTransaction,
    recorded: Option<Head>,
) -> Result<Result<Head, Finding>, StoreError> {
    let timeline = txn.open_table(TIMELINE)?;
    // A store that no audit-aware Tocsin has opened yet has no audit tables at all.
    let chain = match txn.open_table(AUDIT) {
        Err(redb::TableError::TableDoesNotExist(_)) if timeline.is_empty()? => {
            return Ok(audit::Verifier::expecting(recorded).finish(None));
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {
            return Ok(Err(Finding::Unchained { entries: timeline.len()? }));
        }
        other => other?,
    };
    let index = txn.open_table(AUDIT_INDEX)?;
    let head = read_head(&txn.open_table(AUDIT_HEAD)?)?;
    if head.is_none() && chain.is_empty()? && !timeline.is_empty()? {
        return Ok(Err(Finding::Unchained { entries: timeline.len()? }));
    }
    let mut verifier = audit::Verifier::expecting(recorded);
    for link in chain.iter()? {
        let (seq, value) = link?;
        let (incident, entry, hash) = value.value();
        let content = timeline.get((incident, entry))?;
        if let Err(finding) =
            verifier.link(seq.value(), incident, entry, &hash, content.as_ref().map(|c| c.value()))
        {
            return Ok(Err(finding));
        }
    }
    let head = match verifier.finish(head) {
        Ok(head) => head,
        Err(finding) => return Ok(Err(finding)),
    };
    // Every timeline row must be the one its link names.
    for row in timeline.iter()? {
        let (key, _) = row?;
        let (incident, entry) = key.value();
        let linked = match index.get((incident, entry))? {
            Some(seq) => chain
                .get(seq.value())?
                .is_some_and(|l| (l.value().0, l.value().1) == (incident, entry)),
            None => false,
        };
        if !linked {
            return Ok(Err(Finding::NotInChain { incident, entry }));
        }
    }
    Ok(Ok(head))
}

/// Why `tocsin audit verify` or `tocsin report` could not read a store file itself.
#[derive(Debug, thiserror::Error)]
pub enum VerifyFileError {
    #[error("no store at {0}")]
    Missing(PathBuf),
    /// The daemon has it open (redb locks the file): ask the daemon instead.
    #[error("{0} is in use by a running daemon")]
    InUse(PathBuf),
    #[error("cannot open store {path}: {source}")]
    Open { path: PathBuf, source: redb::DatabaseError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Verifies the audit chain of the store in `dir` without the daemon, opening the file
/// read-only. Returns whether redb had to repair the file first (it was not closed cleanly,
/// e.g. after `kill -9`: redb rebuilds its page allocator, never the tables' contents).
pub fn verify_audit_file(
    dir: &Path,
    recorded: Option<Head>,
) -> Result<(Result<Head, Finding>, bool), VerifyFileError> {
    read_file(dir, |txn| verify_chain(txn, recorded))
}

/// Reads a report's input from the store in `dir` without the daemon (see
/// [`verify_audit_file`] for the opening and the returned repair flag).
pub fn report_data_file(
    dir: &Path,
    from: Timestamp,
) -> Result<(ReportData, bool), VerifyFileError> {
    read_file(dir, |txn| read_report_data(txn, from))
}

/// Opens the store file in `dir` read-only (repairing it first if it was not closed cleanly)
/// and runs `f` in one read transaction. Refuses a file a running daemon holds.
fn read_file<R>(
    dir: &Path,
    f: impl FnOnce(&redb::ReadTransaction) -> Result<R, StoreError>,
) -> Result<(R, bool), VerifyFileError> {
    let path = dir.join(DB_FILE);
    if !path.is_file() {
        return Err(VerifyFileError::Missing(path));
    }
    // A damaged file makes redb panic while opening or reading: an error for the tools to
    // report (`audit verify` exits 2), not a crash.
    match panic_message(|| read_file_inner(&path, f)) {
        Ok(result) => result,
        Err(why) => {
            Err(VerifyFileError::Store(StoreError::Corrupt(format!("{}: {why}", path.display()))))
        }
    }
}

fn read_file_inner<R>(
    path: &Path,
    f: impl FnOnce(&redb::ReadTransaction) -> Result<R, StoreError>,
) -> Result<(R, bool), VerifyFileError> {
    let path = path.to_path_buf();
    let open_err = |source| VerifyFileError::Open { path: path.clone(), source };
    match Database::builder().set_cache_size(CACHE_BYTES).open_read_only(&path) {
        Ok(db) => Ok((f(&db.begin_read().map_err(StoreError::from)?)?, false)),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(VerifyFileError::InUse(path)),
        Err(redb::DatabaseError::RepairAborted) => {
            let db =
                Database::builder().set_cache_size(CACHE_BYTES).open(&path).map_err(
                    |e| match e {
                        redb::DatabaseError::DatabaseAlreadyOpen => {
                            VerifyFileError::InUse(path.clone())
                        }
                        e => open_err(e),
                    },
                )?;
            Ok((f(&db.begin_read().map_err(StoreError::from)?)?, true))
        }
        Err(e) => Err(open_err(e)),
    }
}

fn decode_notification(id: NotificationId, raw: &[u8]) -> Result<Notification, StoreError> {
    serde_json::from_slice(raw).map_err(|source| StoreError::DecodeNotification { id, source })
}

/// What the outbox holds right now, for metrics and the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Pending notifications (queued, retrying or being sent), by channel.
    pub pending: std::collections::BTreeMap<String, u64>,
    /// When the longest-waiting pending notification was created.
    pub oldest: Option<Timestamp>,
    /// Notice deadlines still pending (the notice is not marked as sent, the deadline has not
    /// fired yet).
    pub notice_deadlines: u64,
}

/// The input of a report: see [`Store::report_data`].
#[derive(Debug, Clone, Default)]
pub struct ReportData {
    pub incidents: Vec<Incident>,
    /// Incident id → its notifications (absent: none).
    pub notifications: std::collections::BTreeMap<IncidentId, u64>,
    /// The opening events of the incidents with action items (whose titles the report may
    /// show), for redacting their known personal data.
    pub openings: Vec<Event>,
}

impl ReportData {
    /// The personal data known from [`ReportData::openings`], to redact from the report.
    pub fn known(&self, redactor: &crate::redact::Redactor) -> crate::redact::Known {
        self.openings.iter().fold(crate::redact::Known::none(), |k, e| {
            k.merge(crate::redact::Known::of_event(redactor, e))
        })
    }
}

/// Incident ids follow arrival order only roughly (an event is stamped when it arrives and gets
/// its incident id when the writer commits it), so the newest-first scan reads on this far past
/// the first incident older than the period before it stops.
const REPORT_SCAN_SLACK: jiff::SignedDuration = jiff::SignedDuration::from_mins(10);

fn read_report_data(
    txn: &redb::ReadTransaction,
    from: Timestamp,
) -> Result<ReportData, StoreError> {
    let table = txn.open_table(INCIDENTS)?;
    let counts = txn.open_table(COUNTS)?;
    let index = txn.open_table(INCIDENT_NOTIFICATIONS)?;
    let events = txn.open_table(EVENTS)?;
    let stop = from.checked_sub(REPORT_SCAN_SLACK).unwrap_or(from);
    let mut data = ReportData::default();
    for entry in table.iter()?.rev() {
        let (id, raw) = entry?;
        let incident = read_incident(&counts, id.value(), raw.value())?;
        if incident.first_seen < stop {
            break;
        }
        if incident.first_seen < from {
            continue;
        }
        let mut n = 0;
        for row in index.range((incident.id, 0)..=(incident.id, u64::MAX))? {
            row?;
            n += 1;
        }
        if n > 0 {
            data.notifications.insert(incident.id, n);
        }
        if incident.review.as_ref().is_some_and(|r| !r.actions.is_empty())
            && let Some((first, raw)) = event_row(&events, incident.opened_by)?
            && let Some((_, json)) = Row::parse(first, raw.value())?.entry(incident.opened_by)?
        {
            data.openings.push(decode_json(incident.opened_by, json)?);
        }
        data.incidents.push(incident);
    }
    data.incidents.reverse();
    Ok(data)
}

/// Every notification the due index lists that is still pending (queued, sending, retrying).
fn each_pending(
    txn: &redb::ReadTransaction,
    mut f: impl FnMut(Notification),
) -> Result<(), StoreError> {
    let table = txn.open_table(NOTIFICATIONS)?;
    for entry in txn.open_table(DUE)?.iter()? {
        let id = entry?.0.value().1;
        if let Some(raw) = table.get(id)? {
            let n = decode_notification(id, raw.value())?;
            if n.state.is_pending() {
                f(n);
            }
        }
    }
    Ok(())
}

/// An event from its JSON (see [`Row::entry`]).
fn decode_json(id: Uuid, json: &[u8]) -> Result<Event, StoreError> {
    serde_json::from_slice(json).map_err(|source| StoreError::Decode { id, source })
}

type RawRow<'t> = redb::AccessGuard<'t, &'static [u8]>;

/// The [`EVENTS`] row that holds event `id`, with its key: the row keyed `id`, or else the
/// chunk before it (which [`Row::entry`] then checks covers it).
fn event_row<'t>(
    table: &'t impl ReadableTable<&'static [u8; 16], &'static [u8]>,
    id: Uuid,
) -> Result<Option<(Uuid, RawRow<'t>)>, StoreError> {
    if let Some(raw) = table.get(id.as_bytes())? {
        return Ok(Some((id, raw)));
    }
    let Some(entry) = table.range::<&[u8; 16]>(..id.as_bytes())?.next_back() else {
        return Ok(None);
    };
    let (key, raw) = entry?;
    let first = Uuid::from_bytes(*key.value());
    Ok(Some((first, raw)))
}

/// Where an event's incident is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// In its row: the incident it joined, or none.
    Joined(Option<IncidentId>),
    /// Not in its row: none, or for a row written before rows carried it, in
    /// [`EVENT_INCIDENT`].
    Legacy,
}

/// An [`EVENTS`] row, read (see the table for its forms).
enum Row<'a> {
    One { first: u128, link: Link, json: &'a [u8] },
    Chunk { first: u128, n: usize, heads: &'a [u8], data: &'a [u8] },
}

impl<'a> Row<'a> {
    fn parse(first: Uuid, raw: &'a [u8]) -> Result<Row<'a>, StoreError> {
        let damaged = |what| StoreError::Damaged { first, what };
        match raw.first() {
            Some(&JOINED) => {
                let (id, json) =
                    raw[1..].split_first_chunk::<8>().ok_or(damaged("joined row too short"))?;
                let link = Link::Joined(Some(u64::from_be_bytes(*id)));
                Ok(Row::One { first: first.as_u128(), link, json })
            }
            Some(&CHUNK) => {
                let (n, rest) =
                    raw[1..].split_first_chunk::<4>().ok_or(damaged("chunk row too short"))?;
                let n = u32::from_le_bytes(*n) as usize;
                if rest.len() < n * HEAD {
                    return Err(damaged("chunk heads cut short"));
                }
                let (heads, data) = rest.split_at(n * HEAD);
                Ok(Row::Chunk { first: first.as_u128(), n, heads, data })
            }
            _ => Ok(Row::One { first: first.as_u128(), link: Link::Legacy, json: raw }),
        }
    }

    /// Number of events in the row.
    fn len(&self) -> usize {
        match self {
            Row::One { .. } => 1,
            Row::Chunk { n, .. } => *n,
        }
    }

    /// The `i`-th event's link and JSON.
    fn nth(&self, i: usize) -> Result<(Link, &'a [u8]), StoreError> {
        let (first, n, heads, data) = match *self {
            Row::One { link, json, .. } => return Ok((link, json)),
            Row::Chunk { first, n, heads, data } => (first, n, heads, data),
        };
        let damaged = |what| StoreError::Damaged { first: Uuid::from_u128(first), what };
        if i >= n {
            return Err(damaged("event index beyond the chunk"));
        }
        let end_of = |j: usize| {
            let at = j * HEAD + 9;
            u32::from_le_bytes([heads[at], heads[at + 1], heads[at + 2], heads[at + 3]]) as usize
        };
        let start = if i == 0 { 0 } else { end_of(i - 1) };
        let end = end_of(i);
        let json = data.get(start..end).ok_or(damaged("event bounds outside the chunk"))?;
        let head = &heads[i * HEAD..i * HEAD + 9];
        let incident = u64::from_be_bytes(head[1..9].try_into().expect("8 bytes"));
        let link = Link::Joined((head[0] == 1).then_some(incident));
        Ok((link, json))
    }

    /// Event `id`'s link and JSON, if the row holds it.
    fn entry(&self, id: Uuid) -> Result<Option<(Link, &'a [u8])>, StoreError> {
        let (first, n) = match *self {
            Row::One { first, .. } => (first, 1),
            Row::Chunk { first, n, .. } => (first, n),
        };
        match id.as_u128().wrapping_sub(first) {
            i if i < n as u128 => self.nth(i as usize).map(Some),
            _ => Ok(None),
        }
    }
}

/// Appends a row's events below id `below` to `out`, newest first, until it holds `limit`.
fn newest_first(
    first: Uuid,
    raw: &[u8],
    below: u128,
    limit: usize,
    out: &mut Vec<Event>,
) -> Result<(), StoreError> {
    let row = Row::parse(first, raw)?;
    for i in (0..row.len()).rev() {
        if out.len() >= limit {
            break;
        }
        let id = first.as_u128() + i as u128;
        if id < below {
            out.push(decode_json(Uuid::from_u128(id), row.nth(i)?.1)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::EntryKind;

    fn entry(message: &str) -> Entry {
        Entry {
            at: Timestamp::UNIX_EPOCH,
            actor: "tocsin".into(),
            kind: EntryKind::Note,
            message: message.into(),
            event_id: None,
            detail: serde_json::Value::Null,
        }
    }

    fn raw_db(dir: &Path) -> Database {
        Database::create(dir.join(DB_FILE)).unwrap()
    }

    #[test]
    fn a_panic_in_tocsins_code_is_not_taken_for_a_damaged_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.write_problem(), None);
        let err = store
            .write(|b| -> Result<(), StoreError> {
                b.append_timeline(1, Some(0), &[entry("lost")])?;
                panic!("a decision that panics")
            })
            .unwrap_err();
        assert!(matches!(&err, StoreError::Panicked(why) if why.contains("decision")), "{err}");
        // Nothing of it stored, the store still healthy, and the next write goes through.
        assert_eq!(store.write_problem(), None);
        assert!(store.timeline(1).unwrap().is_empty());
        store.write(|b| b.append_timeline(1, Some(0), &[entry("kept")])).unwrap();
        assert_eq!(store.timeline(1).unwrap().len(), 1);
    }

    #[test]
    fn a_panic_in_redb_is_a_damaged_file_and_the_store_says_it_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // What redb does on a page it cannot parse: panic, inside the transaction.
        let err = store
            .write(|b| -> Result<(), StoreError> {
                caught(|| panic!("Invalid page type byte 0 for page r0.5/0"))?;
                b.append_timeline(1, Some(0), &[entry("lost")])
            })
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(why) if why.contains("Invalid page type")),
            "{err}"
        );
        assert!(err.to_string().contains("damaged"), "{err}");
        let problem = store.write_problem().expect("not writable");
        assert!(problem.contains("damaged") && problem.contains("Invalid page type"), "{problem}");
        // Refused at once from then on (no new panic per request), until the retry time.
        let mut called = false;
        let again = store.write(|_| {
            called = true;
            Ok(())
        });
        assert!(matches!(again, Err(StoreError::Corrupt(_))), "{again:?}");
        assert!(!called);
        // Reads go on.
        assert_eq!(store.event_count().unwrap(), 0);
    }

    #[test]
    fn readiness_does_not_read_a_busy_writer_as_a_broken_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // The writer holds these while it checks for (or runs) a reopen on every write.
        let busy = store.broken.lock().unwrap();
        let also = store.damaged.lock().unwrap();
        assert_eq!(store.write_problem(), None);
        drop((busy, also));
        // What the writer publishes after a failed write is what readiness says.
        *store.damaged.lock().unwrap() = Some(("bad page".into(), Instant::now()));
        store.publish_health(false);
        let _busy = store.broken.lock().unwrap();
        assert!(store.write_problem().unwrap().contains("damaged: bad page"));
    }

    #[test]
    fn every_timeline_entry_is_chained_in_write_order_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.verify_audit(None).unwrap(), Ok(Head::EMPTY));
        store
            .write(|b| {
                b.append_timeline(1, Some(0), &[entry("a"), entry("b")])?;
                b.append_timeline(2, Some(0), &[entry("c")])
            })
            .unwrap();
        store.write(|b| b.append_timeline(1, None, &[entry("d")])).unwrap();
        let head = store.verify_audit(None).unwrap().unwrap();
        assert_eq!(head.seq, 4);
        // The chain recomputed by hand from the stored bytes, in write order.
        let mut expected = Head::EMPTY;
        for (incident, seq, message) in [(1, 0, "a"), (1, 1, "b"), (2, 0, "c"), (1, 2, "d")] {
            expected.advance(incident, seq, &serde_json::to_vec(&entry(message)).unwrap());
        }
        assert_eq!(head, expected);
        // The API view: each entry with its link.
        let timeline = store.timeline_audited(1).unwrap();
        let seqs: Vec<u64> = timeline.iter().map(|(_, l)| l.unwrap().seq).collect();
        assert_eq!(seqs, [1, 2, 4]);
        assert_eq!(timeline[2].1.unwrap().hash, head.hash);
        // A batch without timeline entries leaves the head alone.
        store.write(|b| b.next_incident_id().map(drop)).unwrap();
        assert_eq!(store.verify_audit(None).unwrap(), Ok(head));
    }

    #[test]
    fn a_search_looks_at_no_more_incidents_than_its_budget_and_says_where_to_go_on() {
        use crate::templates::{NoticeKind, sample};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .write(|b| {
                for id in 1..=10 {
                    let mut i = sample::full(NoticeKind::New, id);
                    i.summary = if id == 2 { "needle".into() } else { format!("hay {id}") };
                    b.put_incident(&i, false)?;
                }
                Ok(())
            })
            .unwrap();
        let looked = std::cell::Cell::new(0);
        let keep = |i: &Incident| {
            looked.set(looked.get() + 1);
            i.summary == "needle"
        };
        // Newest first: 10, 9, 8, 7 looked at, then the budget is spent; go on before 7.
        let (found, go_on) = store.search_incidents(None, 5, 4, keep).unwrap();
        assert!(found.is_empty());
        assert_eq!((looked.get(), go_on), (4, Some(7)));
        let (found, go_on) = store.search_incidents(go_on, 5, 4, keep).unwrap();
        assert!(found.is_empty());
        assert_eq!((looked.get(), go_on), (8, Some(3)), "6, 5, 4, 3");
        let (found, go_on) = store.search_incidents(go_on, 5, 4, keep).unwrap();
        assert_eq!(found.iter().map(|i| i.id).collect::<Vec<_>>(), [2]);
        assert_eq!((looked.get(), go_on), (10, None), "2 and 1: the end, within the budget");
        // A full page before the budget runs out ends the search there, with no cursor.
        let (found, go_on) = store.search_incidents(None, 2, 4, |_| true).unwrap();
        assert_eq!((found.len(), go_on), (2, None));
    }

    #[test]
    fn counts_of_repeats_apply_to_every_read_until_the_incident_is_rewritten() {
        use crate::templates::{NoticeKind, sample};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut incident = sample::full(NoticeKind::New, 7);
        incident.count = 1;
        let later: Timestamp = "2026-11-27T12:00:00.123456789Z".parse().unwrap();
        store.write(|b| b.put_incident(&incident, false)).unwrap();
        let mut other = sample::full(NoticeKind::New, 3);
        other.count = 1;
        store.write(|b| b.put_incident(&other, false)).unwrap();
        // Repeats in one batch: read back inside it, then written once per incident.
        store
            .write(|b| {
                for count in 2..=5 {
                    b.put_counts(7, count, later);
                    b.put_counts(3, count * 10, later);
                    assert_eq!(b.incident(7)?.unwrap().count, count);
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(store.incident(3).unwrap().unwrap().count, 50);
        let rows = |store: &Store| {
            let txn = store.read_txn().unwrap();
            txn.open_table(COUNTS).unwrap().len().unwrap()
        };
        assert_eq!(rows(&store), 2);
        // Every reader sees the counts: one incident, a page, the open ones, a batch.
        let read = store.incident(7).unwrap().unwrap();
        assert_eq!((read.count, read.last_seen), (5, later));
        let page = store.incidents(None, 10, |_| true).unwrap();
        let page: Vec<_> = page.iter().map(|i| (i.id, i.count, i.last_seen)).collect();
        assert!(page.contains(&(7, 5, later)) && page.contains(&(3, 50, later)), "{page:?}");
        let open = store.open_incidents().unwrap();
        let open: Vec<_> = open.iter().map(|i| (i.id, i.count, i.last_seen)).collect();
        assert!(open.contains(&(7, 5, later)) && open.contains(&(3, 50, later)), "{open:?}");
        let in_batch = store.write(|b| b.incident(7)).unwrap().unwrap();
        assert_eq!((in_batch.count, in_batch.last_seen), (5, later));
        // Counts written and read in one batch; the incident rewritten in it: the JSON holds
        // the counts and the row is gone.
        store
            .write(|b| {
                b.put_counts(7, 6, later);
                let mut i = b.incident(7)?.unwrap();
                assert_eq!(i.count, 6);
                i.summary = "rewritten".into();
                b.put_incident(&i, true)
            })
            .unwrap();
        assert_eq!(rows(&store), 1, "incident 3's row stays");
        let read = store.incident(7).unwrap().unwrap();
        assert_eq!((read.count, read.summary.as_str()), (6, "rewritten"));
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.incident(7).unwrap().unwrap().count, 6);
        // A failed batch leaves no counts behind.
        let failed: Result<(), _> = store.write(|b| {
            b.put_counts(7, 9, later);
            Err(StoreError::Storage(redb::StorageError::Corrupted("test".into())))
        });
        assert!(failed.is_err());
        assert_eq!(store.incident(7).unwrap().unwrap().count, 6);
    }

    fn event(id: Uuid, source: &str) -> Encoded {
        let event: Event = serde_json::from_value(serde_json::json!({
            "action": "trigger", "dedup_key": "k", "fingerprint": "k",
            "format": "alertmanager_v2", "id": id, "kind": "alert",
            "labels": {"alertname": "A"}, "received_at": "2026-11-27T14:25:13.589927591Z",
            "severity": "warning", "source": source, "summary": "s", "verified": false,
        }))
        .unwrap();
        Encoded::new(event).unwrap()
    }

    #[test]
    fn events_carry_their_incident_and_older_rows_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<Uuid> = (1..=4).map(|n| Uuid::from_u128(n << 80)).collect();
        // A file from before rows carried the link: plain JSON, the link in its own table.
        {
            let db = raw_db(dir.path());
            let txn = db.begin_write().unwrap();
            let old = event(ids[0], "a");
            txn.open_table(EVENTS)
                .unwrap()
                .insert(ids[0].as_bytes(), old.bytes.as_slice())
                .unwrap();
            txn.open_table(EVENTS_BY_SOURCE).unwrap().insert(("a", ids[0].as_bytes()), ()).unwrap();
            txn.open_table(EVENT_INCIDENT).unwrap().insert(ids[0].as_bytes(), 3).unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        store
            .write(|b| {
                b.insert_event(&event(ids[1], "a"), Some(u64::MAX))?;
                b.insert_event(&event(ids[2], "b"), None)?;
                b.insert_event(&event(ids[3], "a"), Some(9))?;
                // Read back inside the batch (the writer composes from the opening event).
                assert_eq!(b.event(ids[3])?.unwrap().id, ids[3]);
                Ok(())
            })
            .unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let joined: Vec<_> = ids.iter().map(|id| store.event_incident(*id).unwrap()).collect();
        assert_eq!(joined, [Some(3), Some(u64::MAX), None, Some(9)]);
        for id in &ids {
            assert_eq!(store.event(*id).unwrap().unwrap().id, *id);
        }
        let listed = |source: Option<&str>| {
            let query = EventQuery { source: source.map(String::from), before: None, limit: 10 };
            store.events(&query).unwrap().iter().map(|e| e.id).collect::<Vec<_>>()
        };
        assert_eq!(listed(None), [ids[3], ids[2], ids[1], ids[0]]);
        assert_eq!(listed(Some("a")), [ids[3], ids[1], ids[0]]);
        assert_eq!(store.event_incident(Uuid::from_u128(7)).unwrap(), None);
    }

    #[test]
    fn a_requests_events_share_one_row_and_each_reads_back_as_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let base = crate::event_id::block(9);
        let id = |i: u128| Uuid::from_u128(base + i);
        // A big event: the row it would join is full, so it starts the next one.
        let mut big = event(id(5), "c");
        big.event.summary = "x".repeat(CHUNK_BYTES / 2);
        big = Encoded::new(big.event).unwrap();
        let mut big2 = event(id(6), "c");
        big2.event.summary = "y".repeat(CHUNK_BYTES / 2);
        big2 = Encoded::new(big2.event).unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .write(|b| {
                // 0..=2 one run from "a"; 3 is "b" (a new row); 4 is "a" again (a new row, one
                // event: the single-event form); 5..=7 are from "c", but 5 and 6 are too big
                // to share a row.
                b.insert_event(&event(id(0), "a"), Some(4))?;
                b.insert_event(&event(id(1), "a"), None)?;
                b.insert_event(&event(id(2), "a"), Some(u64::MAX))?;
                // The writer reads an event back before the batch ends.
                assert_eq!(b.event(id(1))?.unwrap().id, id(1));
                assert_eq!(b.event(id(3))?, None);
                b.insert_event(&event(id(3), "b"), Some(5))?;
                b.insert_event(&event(id(4), "a"), None)?;
                b.insert_event(&big, Some(6))?;
                b.insert_event(&big2, Some(6))?;
                b.insert_event(&event(id(7), "c"), Some(7))?;
                // Id 8 is never stored; a later batch stores an event after the gap.
                assert_eq!(b.event(id(2))?.unwrap().id, id(2));
                Ok(())
            })
            .unwrap();
        store.write(|b| b.insert_event(&event(id(9), "a"), Some(8))).unwrap();
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        let rows: Vec<(Uuid, u8)> = {
            let txn = store.read_txn().unwrap();
            let table = txn.open_table(EVENTS).unwrap();
            let rows = table.iter().unwrap().map(|e| {
                let (k, v) = e.unwrap();
                (Uuid::from_bytes(*k.value()), v.value()[0])
            });
            rows.collect()
        };
        let tags = [CHUNK, JOINED, b'{', JOINED, CHUNK, JOINED];
        let keys = [id(0), id(3), id(4), id(5), id(6), id(9)];
        assert_eq!(rows, keys.into_iter().zip(tags).collect::<Vec<_>>());
        assert_eq!(store.event_count().unwrap(), 9);

        let stored: Vec<Uuid> = (0..=9).filter(|i| *i != 8).map(id).collect();
        let links =
            [Some(4), None, Some(u64::MAX), Some(5), None, Some(6), Some(6), Some(7), Some(8)];
        for (id, link) in stored.iter().zip(links) {
            let (event, joined) = store.event_joined(*id).unwrap().unwrap();
            assert_eq!((event.id, joined), (*id, link), "{id}");
            assert_eq!(store.event(*id).unwrap().unwrap(), event);
            assert_eq!(store.event_incident(*id).unwrap(), link);
        }
        assert_eq!(store.event(big.event.id).unwrap().unwrap().summary, big.event.summary);
        for missing in [id(8), id(10), Uuid::from_u128(base - 1)] {
            assert_eq!(store.event(missing).unwrap(), None, "{missing}");
            assert_eq!(store.event_joined(missing).unwrap(), None, "{missing}");
        }

        let page = |source: Option<&str>, before: Option<Uuid>, limit| {
            let query = EventQuery { source: source.map(String::from), before, limit };
            store.events(&query).unwrap().iter().map(|e| e.id).collect::<Vec<_>>()
        };
        let newest: Vec<Uuid> = stored.iter().rev().copied().collect();
        assert_eq!(page(None, None, 20), newest);
        // Pages that start and end inside rows.
        assert_eq!(page(None, None, 2), newest[..2]);
        assert_eq!(page(None, Some(id(7)), 3), [id(6), id(5), id(4)]);
        assert_eq!(page(None, Some(id(2)), 5), [id(1), id(0)]);
        assert_eq!(page(Some("a"), None, 20), [id(9), id(4), id(2), id(1), id(0)]);
        assert_eq!(page(Some("a"), Some(id(4)), 2), [id(2), id(1)]);
        assert_eq!(page(Some("b"), None, 20), [id(3)]);
        assert_eq!(page(Some("c"), None, 20), [id(7), id(6), id(5)]);
        assert_eq!(page(Some("c"), Some(id(7)), 20), [id(6), id(5)]);
    }

    #[test]
    fn a_damaged_chunk_is_an_error_not_a_crash() {
        let store = Store::open_in_memory().unwrap();
        let first = Uuid::from_u128(crate::event_id::block(2));
        let second = Uuid::from_u128(first.as_u128() + 1);
        let json = event(first, "a").bytes;
        let mut row = vec![CHUNK, 2, 0, 0, 0];
        for end in [json.len() as u32, json.len() as u32 + 1_000_000] {
            row.push(0);
            row.extend_from_slice(&0u64.to_be_bytes());
            row.extend_from_slice(&end.to_le_bytes());
        }
        row.extend_from_slice(&json);
        {
            let txn = store.begin_write().unwrap();
            txn.open_table(EVENTS).unwrap().insert(first.as_bytes(), row.as_slice()).unwrap();
            let short = [CHUNK, 9, 0, 0, 0, 1];
            let third = Uuid::from_u128(first.as_u128() + 100);
            txn.open_table(EVENTS).unwrap().insert(third.as_bytes(), &short[..]).unwrap();
            txn.commit().unwrap();
        }
        assert_eq!(store.event(first).unwrap().unwrap().id, first);
        let err = store.event(second).unwrap_err();
        assert!(err.to_string().contains("event bounds outside the chunk"), "{err}");
        let err = store.event(Uuid::from_u128(first.as_u128() + 100)).unwrap_err();
        assert!(err.to_string().contains("chunk heads cut short"), "{err}");
    }

    #[test]
    fn a_failed_batch_leaves_no_link_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.write(|b| b.append_timeline(1, Some(0), &[entry("a")])).unwrap();
        let failed: Result<(), _> = store.write(|b| {
            b.append_timeline(1, None, &[entry("b")])?;
            Err(StoreError::Storage(redb::StorageError::Corrupted("test".into())))
        });
        assert!(failed.is_err());
        store.write(|b| b.append_timeline(1, None, &[entry("c")])).unwrap();
        assert_eq!(store.verify_audit(None).unwrap().unwrap().seq, 2);
        assert_eq!(store.timeline(1).unwrap().len(), 2);
    }

    #[test]
    fn the_dead_letter_index_follows_every_state_change_and_is_built_for_an_older_file() {
        use crate::notify::Channel;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ids = |list: Vec<Notification>| list.iter().map(|n| n.id).collect::<Vec<_>>();
        let dead_channels = |store: &Store| {
            let mut seen = Vec::new();
            store.delivery_health(|_| {}, |c| seen.push(c.to_owned())).unwrap();
            seen
        };
        let mut n = crate::outbox::tests::notification(Channel::Webhook, 0, Timestamp::UNIX_EPOCH);
        let put = |n: &Notification| store.write(|b| b.put_notification(n)).unwrap();

        n.state = State::Queued;
        put(&n);
        n.state = State::Dead;
        put(&n);
        put(&n); // written again dead (an operator's note, say): still one entry
        let mut mail = crate::outbox::tests::notification(Channel::Email, 3, Timestamp::UNIX_EPOCH);
        mail.id = 2;
        mail.state = State::Dead;
        put(&mail);
        assert_eq!(
            ids(store.dead_notifications(None, 10, |_| true).unwrap()),
            [2, 1],
            "newest first"
        );
        assert_eq!(ids(store.dead_notifications(None, 1, |_| true).unwrap()), [2]);
        assert_eq!(ids(store.dead_notifications(Some(2), 10, |_| true).unwrap()), [1]);
        let webhooks = |n: &Notification| n.channel == Channel::Webhook;
        assert_eq!(ids(store.dead_notifications(None, 10, webhooks).unwrap()), [1]);
        assert_eq!(dead_channels(&store), ["email", "webhook"]);
        assert!(store.pending_notifications(None, 10, |_| true).unwrap().is_empty());

        // Retried: pending again, no longer dead; then delivered: neither.
        n.state = State::Queued;
        put(&n);
        assert_eq!(ids(store.dead_notifications(None, 10, |_| true).unwrap()), [2]);
        assert_eq!(ids(store.pending_notifications(None, 10, |_| true).unwrap()), [1]);
        n.state = State::Delivered;
        put(&n);
        assert!(store.pending_notifications(None, 10, |_| true).unwrap().is_empty());
        assert_eq!(dead_channels(&store), ["email"]);

        // A file from before the index: entries and flag gone; the next open rebuilds it.
        drop(store);
        {
            let db = raw_db(dir.path());
            let txn = db.begin_write().unwrap();
            {
                let mut dead = txn.open_table(DEAD).unwrap();
                dead.retain(|_, _| false).unwrap();
                txn.open_table(META).unwrap().remove("dead_index").unwrap();
            }
            txn.commit().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(ids(store.dead_notifications(None, 10, |_| true).unwrap()), [2]);
        assert_eq!(dead_channels(&store), ["email"]);
    }

    #[test]
    fn a_store_from_before_the_audit_log_is_chained_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = |m: &str| serde_json::to_vec(&entry(m)).unwrap();
        {
            let db = raw_db(dir.path());
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(TIMELINE).unwrap();
                // Inserted out of order: the chain follows (incident, sequence).
                t.insert((2, 0), bytes("c").as_slice()).unwrap();
                t.insert((1, 0), bytes("a").as_slice()).unwrap();
                t.insert((1, 1), bytes("b").as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        // Read-only, it cannot be verified yet.
        let (found, _) = verify_audit_file(dir.path(), None).unwrap();
        assert_eq!(found, Err(Finding::Unchained { entries: 3 }));
        let store = Store::open(dir.path()).unwrap();
        let head = store.verify_audit(None).unwrap().unwrap();
        let mut expected = Head::EMPTY;
        for (incident, seq, message) in [(1, 0, "a"), (1, 1, "b"), (2, 0, "c")] {
            expected.advance(incident, seq, &bytes(message));
        }
        assert_eq!(head, expected);
        // New entries continue the chain; reopening chains nothing twice.
        store.write(|b| b.append_timeline(2, None, &[entry("d")])).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.verify_audit(None).unwrap().unwrap().seq, 4);
        drop(store);
        let (result, repaired) = verify_audit_file(dir.path(), None).unwrap();
        assert_eq!(result.unwrap().seq, 4);
        assert!(!repaired);
    }

    #[test]
    fn verify_names_edits_deletions_insertions_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .write(|b| {
                b.append_timeline(1, Some(0), &[entry("a"), entry("b")])?;
                b.append_timeline(2, Some(0), &[entry("c"), entry("d")])
            })
            .unwrap();
        drop(store);
        let pristine = std::fs::read(dir.path().join(DB_FILE)).unwrap();
        let tamper = |f: &dyn Fn(&redb::WriteTransaction)| -> Finding {
            std::fs::write(dir.path().join(DB_FILE), &pristine).unwrap();
            {
                let db = Database::open(dir.path().join(DB_FILE)).unwrap();
                let txn = db.begin_write().unwrap();
                f(&txn);
                txn.commit().unwrap();
            }
            verify_audit_file(dir.path(), None).unwrap().0.unwrap_err()
        };
        let edited = tamper(&|txn| {
            let mut t = txn.open_table(TIMELINE).unwrap();
            t.insert((1, 1), serde_json::to_vec(&entry("B")).unwrap().as_slice()).unwrap();
        });
        assert_eq!(edited, Finding::Edited { seq: 2, incident: 1, entry: 1 });
        let deleted = tamper(&|txn| {
            txn.open_table(TIMELINE).unwrap().remove((2, 0)).unwrap();
        });
        assert_eq!(deleted, Finding::EntryMissing { seq: 3, incident: 2, entry: 0 });
        let unlinked = tamper(&|txn| {
            txn.open_table(TIMELINE).unwrap().remove((2, 0)).unwrap();
            txn.open_table(AUDIT).unwrap().remove(3).unwrap();
            txn.open_table(AUDIT_INDEX).unwrap().remove((2, 0)).unwrap();
        });
        assert_eq!(unlinked, Finding::LinkMissing { seq: 3, found: 4 });
        let inserted = tamper(&|txn| {
            let mut t = txn.open_table(TIMELINE).unwrap();
            t.insert((1, 2), serde_json::to_vec(&entry("x")).unwrap().as_slice()).unwrap();
        });
        assert_eq!(inserted, Finding::NotInChain { incident: 1, entry: 2 });
        let truncated = tamper(&|txn| {
            txn.open_table(TIMELINE).unwrap().remove((2, 1)).unwrap();
            txn.open_table(AUDIT).unwrap().remove(4).unwrap();
            txn.open_table(AUDIT_INDEX).unwrap().remove((2, 1)).unwrap();
        });
        assert!(matches!(truncated, Finding::HeadMismatch { .. }), "{truncated}");
        // The untouched copy still verifies.
        std::fs::write(dir.path().join(DB_FILE), &pristine).unwrap();
        assert_eq!(verify_audit_file(dir.path(), None).unwrap().0.unwrap().seq, 4);
    }

    #[test]
    fn queue_stats_count_the_notice_deadlines_still_pending() {
        use crate::escalation::TimerKind;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.queue_stats().unwrap().notice_deadlines, 0);
        let timer = |id, kind| Timer { id, incident: 1, due_at: Timestamp::UNIX_EPOCH, kind };
        let deadline = timer(2, TimerKind::NoticeDeadline { notice: 0 });
        store
            .write(|b| {
                b.put_timer(&timer(1, TimerKind::NoticeReminder { notice: 0 }))?;
                b.put_timer(&deadline)?;
                b.put_timer(&timer(3, TimerKind::NoticeDeadline { notice: 1 }))?;
                b.put_timer(&timer(4, TimerKind::CommsUpdate))
            })
            .unwrap();
        assert_eq!(store.queue_stats().unwrap().notice_deadlines, 2);
        // Sent (its timer cancelled) or fired: no longer pending.
        store.write(|b| b.remove_timer(&deadline)).unwrap();
        assert_eq!(store.queue_stats().unwrap().notice_deadlines, 1);
    }

    #[test]
    fn verify_refuses_a_missing_store_and_one_in_use() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(verify_audit_file(dir.path(), None), Err(VerifyFileError::Missing(_))));
        let _store = Store::open(dir.path()).unwrap();
        assert!(matches!(verify_audit_file(dir.path(), None), Err(VerifyFileError::InUse(_))));
        assert!(!dir.path().join("other").exists());
    }
}

#[cfg(test)]
mod override_tests {
    use super::*;

    fn o(id: u64, person: &str) -> Override {
        Override {
            id,
            rotation: "primary".into(),
            person: person.into(),
            from: "2026-01-01T00:00:00Z".parse().unwrap(),
            until: "2026-01-02T00:00:00Z".parse().unwrap(),
            by: "user:t".into(),
            reason: Some("swap".into()),
            created_at: "2025-12-31T00:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn overrides_are_stored_listed_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ids = store
            .write(|b| {
                let a = b.next_override_id()?;
                let c = b.next_override_id()?;
                b.put_override(&o(a, "ann"))?;
                b.put_override(&o(c, "cid"))?;
                Ok((a, c))
            })
            .unwrap();
        assert_eq!(ids, (1, 2));
        assert_eq!(store.overrides().unwrap(), [o(1, "ann"), o(2, "cid")]);
        let gone = store.write(|b| b.delete_override(1)).unwrap();
        assert_eq!(gone, Some(o(1, "ann")));
        assert_eq!(store.write(|b| b.delete_override(1)).unwrap(), None);
        drop(store);
        // Reopened: the remaining one is there and ids keep growing.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.overrides().unwrap(), [o(2, "cid")]);
        assert_eq!(store.write(|b| b.next_override_id()).unwrap(), 3);
    }
}
