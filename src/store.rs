//! The durable store: redb tables behind one narrow interface, so that another backend
//! (PostgreSQL, for several nodes sharing state) can be added without touching the stages.
//!
//! Last stage of ingest: the [`journal`](crate::journal) writer calls [`Store::append`] with a
//! whole batch; readers (the API) call the `event*` methods from any thread.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use uuid::Uuid;

use crate::event::Event;
use crate::incident::{Entry, Incident, IncidentId};
use crate::outbox::{Notification, NotificationId, State};

/// Event id (UUID v7 bytes, big-endian, so key order is arrival order) → event as JSON.
const EVENTS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("events");
/// (source, event id) → (): lists one source's events without scanning the others.
const EVENTS_BY_SOURCE: TableDefinition<(&str, &[u8; 16]), ()> =
    TableDefinition::new("events_by_source");

/// Incident id → incident as JSON. Ids are allocated in order, so key order is age order.
const INCIDENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("incidents");
/// Ids of the open (triggered or acknowledged) incidents, read at start-up to rebuild the
/// in-memory index by (source, dedup key). Keyed by id, not by key, so that a storm of new
/// incidents appends to the end of the tree instead of dirtying pages all over it.
const OPEN: TableDefinition<u64, ()> = TableDefinition::new("open_incident_ids");
/// (incident id, sequence number) → timeline entry as JSON; append-only.
const TIMELINE: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("timeline");
/// Event id → the incident it joined (absent for events that were ignored).
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
/// Webhook endpoint name → why it was disabled (it answered 410 Gone).
const DISABLED_ENDPOINTS: TableDefinition<&str, &str> = TableDefinition::new("disabled_endpoints");
/// Counters: `next_incident_id`, `next_notification_id`.
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
    #[error("stored notification {id} cannot be decoded: {source}")]
    DecodeNotification { id: u64, source: serde_json::Error },
    #[error("stored incident {id} cannot be decoded: {source}")]
    DecodeIncident { id: IncidentId, source: serde_json::Error },
    #[error("incident {id} cannot be encoded: {source}")]
    EncodeIncident { id: IncidentId, source: serde_json::Error },
    #[error("event {id} cannot be encoded: {source}")]
    Encode { id: Uuid, source: serde_json::Error },
    #[error("store is closed after an I/O error and could not be reopened yet: {0}")]
    Reopening(String),
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
    Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })
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
        std::fs::create_dir_all(dir)
            .map_err(|source| StoreError::CreateDir { path: dir.to_path_buf(), source })?;
        let path = dir.join(DB_FILE);
        let db = open_db(&path)?;
        let store = Store { db: RwLock::new(Some(db)), path, broken: Mutex::new(None) };
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
        txn.commit()?;
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
        self.recover();
        let result = self.write_once(f);
        if let Err(e) = &result
            && e.is_io()
        {
            let mut broken = self.broken.lock().unwrap_or_else(|p| p.into_inner());
            broken.get_or_insert(None);
        }
        result
    }

    fn write_once<R>(
        &self,
        f: impl FnOnce(&mut Batch<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let txn = self.begin_write()?;
        let result = {
            let mut batch = Batch {
                events: txn.open_table(EVENTS)?,
                by_source: txn.open_table(EVENTS_BY_SOURCE)?,
                incidents: txn.open_table(INCIDENTS)?,
                open: txn.open_table(OPEN)?,
                timeline: txn.open_table(TIMELINE)?,
                event_incident: txn.open_table(EVENT_INCIDENT)?,
                meta: txn.open_table(META)?,
                notifications: txn.open_table(NOTIFICATIONS)?,
                due: txn.open_table(DUE)?,
                incident_notifications: txn.open_table(INCIDENT_NOTIFICATIONS)?,
                disabled: txn.open_table(DISABLED_ENDPOINTS)?,
            };
            f(&mut batch)?
        };
        txn.commit()?;
        Ok(result)
    }

    pub fn event(&self, id: Uuid) -> Result<Option<Event>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(EVENTS)?;
        match table.get(id.as_bytes())? {
            Some(raw) => decode(id, raw.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Events newest first, optionally of one source, paged by `before`.
    pub fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(EVENTS)?;
        let limit = query.limit.max(1);
        let before = query.before.map(|id| *id.as_bytes()).unwrap_or([0xff; 16]);
        let mut out = Vec::with_capacity(limit.min(1000));
        match &query.source {
            None => {
                for entry in table.range::<&[u8; 16]>(..&before)?.rev().take(limit) {
                    let (key, raw) = entry?;
                    out.push(decode(Uuid::from_bytes(*key.value()), raw.value())?);
                }
            }
            Some(source) => {
                let index = txn.open_table(EVENTS_BY_SOURCE)?;
                let range =
                    index.range((source.as_str(), &[0u8; 16])..(source.as_str(), &before))?;
                for entry in range.rev().take(limit) {
                    let (key, _) = entry?;
                    let id = Uuid::from_bytes(*key.value().1);
                    if let Some(raw) = table.get(id.as_bytes())? {
                        out.push(decode(id, raw.value())?);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The incident an event joined.
    pub fn event_incident(&self, id: Uuid) -> Result<Option<IncidentId>, StoreError> {
        let txn = self.read_txn()?;
        Ok(txn.open_table(EVENT_INCIDENT)?.get(id.as_bytes())?.map(|v| v.value()))
    }

    pub fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        self.get(INCIDENTS, id, decode_incident)
    }

    /// Incidents newest first that pass `keep`, paged by `before` (an incident id).
    pub fn incidents(
        &self,
        before: Option<IncidentId>,
        limit: usize,
        keep: impl Fn(&Incident) -> bool,
    ) -> Result<Vec<Incident>, StoreError> {
        self.page(INCIDENTS, before, limit, decode_incident, keep)
    }

    /// Every open incident: read once at start-up to rebuild the in-memory index.
    pub fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        let txn = self.read_txn()?;
        let open = txn.open_table(OPEN)?;
        let table = txn.open_table(INCIDENTS)?;
        let mut out = Vec::new();
        for entry in open.iter()? {
            let (id, _) = entry?;
            let id = id.value();
            if let Some(raw) = table.get(id)? {
                out.push(decode_incident(id, raw.value())?);
            }
        }
        Ok(out)
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
        let txn = self.read_txn()?;
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
        let txn = self.read_txn()?;
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
        let due = txn.open_table(DUE)?;
        let table = txn.open_table(NOTIFICATIONS)?;
        let mut stats = QueueStats::default();
        for entry in due.iter()? {
            let (key, _) = entry?;
            let id = key.value().1;
            if let Some(raw) = table.get(id)? {
                let n = decode_notification(id, raw.value())?;
                if n.state == State::Dead || n.state == State::Delivered {
                    continue;
                }
                *stats.pending.entry(n.channel.as_str().to_string()).or_default() += 1;
                stats.oldest =
                    Some(stats.oldest.map_or(n.created_at, |o: Timestamp| o.min(n.created_at)));
            }
        }
        Ok(stats)
    }

    /// Number of stored events (for tests and the start-up log line).
    pub fn event_count(&self) -> Result<u64, StoreError> {
        let txn = self.read_txn()?;
        Ok(txn.open_table(EVENTS)?.len()?)
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

/// The tables of one write transaction, for the journal writer. Every write of a batch goes
/// through here, so one commit covers events, incidents and their timelines together.
pub struct Batch<'txn> {
    events: redb::Table<'txn, &'static [u8; 16], &'static [u8]>,
    by_source: redb::Table<'txn, (&'static str, &'static [u8; 16]), ()>,
    incidents: redb::Table<'txn, u64, &'static [u8]>,
    open: redb::Table<'txn, u64, ()>,
    timeline: redb::Table<'txn, (u64, u32), &'static [u8]>,
    event_incident: redb::Table<'txn, &'static [u8; 16], u64>,
    meta: redb::Table<'txn, &'static str, u64>,
    notifications: redb::Table<'txn, u64, &'static [u8]>,
    due: redb::Table<'txn, (i64, u64), ()>,
    incident_notifications: redb::Table<'txn, (u64, u64), ()>,
    disabled: redb::Table<'txn, &'static str, &'static str>,
}

impl Batch<'_> {
    pub fn insert_event(&mut self, encoded: &Encoded) -> Result<(), StoreError> {
        let key = encoded.event.id.as_bytes();
        self.events.insert(key, encoded.bytes.as_slice())?;
        self.by_source.insert((encoded.event.source.as_str(), key), ())?;
        Ok(())
    }

    pub fn link_event(&mut self, event: Uuid, incident: IncidentId) -> Result<(), StoreError> {
        self.event_incident.insert(event.as_bytes(), incident)?;
        Ok(())
    }

    pub fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        match self.incidents.get(id)? {
            Some(raw) => decode_incident(id, raw.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Stores the incident and keeps the open-incident index in step with its status.
    /// `was_open`: it was open before this transaction (so the index already has it).
    pub fn put_incident(&mut self, incident: &Incident, was_open: bool) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(incident)
            .map_err(|source| StoreError::EncodeIncident { id: incident.id, source })?;
        self.incidents.insert(incident.id, bytes.as_slice())?;
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
    }

    /// Appends entries to an incident's timeline after its last one (`first`: the next
    /// sequence number when the caller knows it, e.g. 0 for a new incident).
    pub fn append_timeline(
        &mut self,
        id: IncidentId,
        first: Option<u32>,
        entries: &[Entry],
    ) -> Result<(), StoreError> {
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
        for (seq, entry) in (first..).zip(entries) {
            let bytes = serde_json::to_vec(entry)
                .map_err(|source| StoreError::EncodeIncident { id, source })?;
            self.timeline.insert((id, seq), bytes.as_slice())?;
        }
        Ok(())
    }

    /// Allocates the next incident id (1, 2, …), durable with the batch.
    pub fn next_incident_id(&mut self) -> Result<IncidentId, StoreError> {
        self.next_id("next_incident_id")
    }

    pub fn next_notification_id(&mut self) -> Result<NotificationId, StoreError> {
        self.next_id("next_notification_id")
    }

    fn next_id(&mut self, counter: &str) -> Result<u64, StoreError> {
        let next = self.meta.get(counter)?.map(|v| v.value()).unwrap_or(1);
        self.meta.insert(counter, next + 1)?;
        Ok(next)
    }

    pub fn notification(&self, id: NotificationId) -> Result<Option<Notification>, StoreError> {
        match self.notifications.get(id)? {
            Some(raw) => decode_notification(id, raw.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Stores a notification and keeps the due index in step with its state and due time.
    pub fn put_notification(&mut self, n: &Notification) -> Result<(), StoreError> {
        if let Some(old) = self.notification(n.id)?
            && old.state.is_pending()
        {
            self.due.remove((old.due_at.as_millisecond(), n.id))?;
        } else {
            self.incident_notifications.insert((n.incident_id, n.id), ())?;
        }
        let bytes = serde_json::to_vec(n)
            .map_err(|source| StoreError::EncodeIncident { id: n.incident_id, source })?;
        self.notifications.insert(n.id, bytes.as_slice())?;
        if n.state.is_pending() {
            self.due.insert((n.due_at.as_millisecond(), n.id), ())?;
        }
        Ok(())
    }

    /// Pending notifications due at or before `now`, soonest first.
    pub fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<Notification>, StoreError> {
        let mut out = Vec::new();
        for entry in self.due.range(..=(now.as_millisecond(), u64::MAX))?.take(limit) {
            let (key, _) = entry?;
            if let Some(n) = self.notification(key.value().1)? {
                out.push(n);
            }
        }
        Ok(out)
    }

    pub fn incident_notifications(
        &self,
        incident: IncidentId,
    ) -> Result<Vec<Notification>, StoreError> {
        let mut out = Vec::new();
        for entry in self.incident_notifications.range((incident, 0)..=(incident, u64::MAX))? {
            let (key, _) = entry?;
            if let Some(n) = self.notification(key.value().1)? {
                out.push(n);
            }
        }
        Ok(out)
    }

    pub fn disable_endpoint(&mut self, name: &str, reason: &str) -> Result<(), StoreError> {
        self.disabled.insert(name, reason)?;
        Ok(())
    }

    pub fn disabled_endpoint(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.disabled.get(name)?.map(|v| v.value().to_string()))
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
}

fn decode(id: Uuid, raw: &[u8]) -> Result<Event, StoreError> {
    serde_json::from_slice(raw).map_err(|source| StoreError::Decode { id, source })
}
