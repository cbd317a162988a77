//! The durable store: redb tables behind one narrow interface, so that another backend
//! (PostgreSQL, for several nodes sharing state) can be added without touching the stages.
//!
//! Last stage of ingest: the [`journal`](crate::journal) writer calls [`Store::append`] with a
//! whole batch; readers (the API) call the `event*` methods from any thread.

use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase, ReadableTableMetadata, TableDefinition};
use uuid::Uuid;

use crate::event::Event;

/// Event id (UUID v7 bytes, big-endian, so key order is arrival order) → event as JSON.
const EVENTS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("events");
/// (source, event id) → (): lists one source's events without scanning the others.
const EVENTS_BY_SOURCE: TableDefinition<(&str, &[u8; 16]), ()> =
    TableDefinition::new("events_by_source");

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
    #[error("event {id} cannot be encoded: {source}")]
    Encode { id: Uuid, source: serde_json::Error },
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
    db: Database,
    path: PathBuf,
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
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|source| StoreError::Open { path: path.clone(), source })?;
        let store = Store { db, path };
        let txn = store.begin_write()?;
        txn.open_table(EVENTS)?;
        txn.open_table(EVENTS_BY_SOURCE)?;
        txn.commit()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every write goes through here: fsync on commit, and two-phase commit because senders
    /// control the bytes we write (redb's hardening against crafted data and torn pages).
    fn begin_write(&self) -> Result<redb::WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.set_two_phase_commit(true);
        Ok(txn)
    }

    /// Stores a batch of encoded events in one transaction: when this returns `Ok`, every
    /// event is on disk; on `Err`, none is.
    pub fn append<'a>(
        &self,
        events: impl IntoIterator<Item = &'a Encoded>,
    ) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut table = txn.open_table(EVENTS)?;
            let mut by_source = txn.open_table(EVENTS_BY_SOURCE)?;
            for encoded in events {
                let key = encoded.event.id.as_bytes();
                table.insert(key, encoded.bytes.as_slice())?;
                by_source.insert((encoded.event.source.as_str(), key), ())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    pub fn event(&self, id: Uuid) -> Result<Option<Event>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVENTS)?;
        match table.get(id.as_bytes())? {
            Some(raw) => decode(id, raw.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Events newest first, optionally of one source, paged by `before`.
    pub fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        let txn = self.db.begin_read()?;
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

    /// Number of stored events (for tests and the start-up log line).
    pub fn event_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
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

fn decode(id: Uuid, raw: &[u8]) -> Result<Event, StoreError> {
    serde_json::from_slice(raw).map_err(|source| StoreError::Decode { id, source })
}
