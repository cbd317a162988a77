//! The redb shell: opening (and repairing) the file, the damaged and disk-full states and the
//! health they publish, transactions, and the [`Batch`] of tables one write runs in.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jiff::Timestamp;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::admin::{MAINTENANCE, META, ROTATION_OVERRIDES};
use super::audit::{AUDIT, AUDIT_HEAD, AUDIT_INDEX};
use super::events::{EVENT_INCIDENT, EVENTS, EVENTS_BY_SOURCE, Pending};
use super::incidents::{COUNTS, INCIDENTS, OPEN, TIMELINE};
use super::outbox::{DEAD, DISABLED_ENDPOINTS, DUE, INCIDENT_NOTIFICATIONS, NOTIFICATIONS};
use super::timers::{INCIDENT_TIMERS, TIMERS};
use super::{Backend, StoreError};
use crate::audit::Head;
use crate::incident::IncidentId;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "tocsin.redb";

/// redb's page cache. Its default (1 GiB) would let resident memory climb under a sustained
/// flood; recent pages are what readers want, and the OS page cache holds the rest.
pub(super) const CACHE_BYTES: usize = 64 * 1024 * 1024;

pub(super) fn open_db(path: &Path) -> Result<Database, StoreError> {
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
pub(super) fn caught<R>(f: impl FnOnce() -> Result<R, StoreError>) -> Result<R, StoreError> {
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
pub(super) const DAMAGED_RETRY: Duration = Duration::from_secs(30);

/// Creates the store file owner-only (0600), or makes an existing one so: it holds personal
/// data from customer reports. The data directory, when Tocsin creates it, is 0700.
pub(super) fn private_file(dir: &Path, path: &Path) -> Result<(), StoreError> {
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

pub struct Store {
    /// `None` only between closing a database that hit an I/O error and reopening it.
    pub(super) db: RwLock<Option<Database>>,
    pub(super) path: PathBuf,
    /// Set after a write failed with an I/O error (disk full): when the last reopen was tried.
    pub(super) broken: Mutex<Option<Option<Instant>>>,
    /// Set after a write failed on a damaged file: why, and when it was last tried.
    pub(super) damaged: Mutex<Option<(String, Instant)>>,
    /// Why the store cannot take writes (`None`: healthy), as [`Backend::write_problem`] tells
    /// readiness and metrics. Only the writer changes it (after it changed `broken` or
    /// `damaged`, whose locks it holds while it probes and reopens); readers load it without
    /// a lock, so a health check never waits for, or guesses about, a busy writer.
    pub(super) health: ArcSwapOption<String>,
    /// An in-memory store (drills) has no file to reopen after an I/O error.
    pub(super) in_memory: bool,
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

    pub(super) fn around(db: Database, path: PathBuf, in_memory: bool) -> Store {
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
    pub(super) fn init(store: Store) -> Result<Store, StoreError> {
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
    pub(super) fn read_txn(&self) -> Result<redb::ReadTransaction, StoreError> {
        let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
        Ok(guard.as_ref().ok_or_else(|| self.reopening())?.begin_read()?)
    }

    pub(super) fn reopening(&self) -> StoreError {
        StoreError::Reopening(self.path.display().to_string())
    }

    /// After an I/O error redb refuses every write until the database is reopened (reads of
    /// what was committed keep working). So, before a write, at most once a second: check
    /// that the disk takes a 1 MiB probe file again (space was freed), then close and reopen
    /// the database, which repairs it. Until the probe passes, the old handle stays open for
    /// readers and writes keep failing (503). Only the journal's writer thread writes.
    pub(super) fn recover(&self) {
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
    pub(super) fn begin_write(&self) -> Result<redb::WriteTransaction, StoreError> {
        let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
        let db = guard.as_ref().ok_or_else(|| self.reopening())?;
        let mut txn = db.begin_write()?;
        drop(guard);
        txn.set_durability(Durability::Immediate)?;
        txn.set_two_phase_commit(true);
        Ok(txn)
    }

    pub(super) fn broken_now(&self) -> bool {
        self.broken.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Publishes the store's health for [`Backend::write_problem`] from `damaged` and `broken`
    /// (passed in, as the caller may hold its lock). Called by the writer only.
    pub(super) fn publish_health(&self, broken: bool) {
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

    pub(super) fn write_once<R>(
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

    /// The earliest due time in a table keyed by (due time in ms, id): the next notification
    /// or timer due.
    pub(super) fn first_due<V: redb::Value + 'static>(
        &self,
        table: TableDefinition<(i64, u64), V>,
    ) -> Result<Option<Timestamp>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(table)?;
        Ok(match table.first()? {
            Some((key, _)) => Timestamp::from_millisecond(key.value().0).ok(),
            None => None,
        })
    }

    /// One row of a table keyed by sequential id.
    pub(super) fn get<T>(
        &self,
        table: TableDefinition<u64, &[u8]>,
        id: u64,
        decode: fn(u64, &[u8]) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        Self::get_in(&self.read_txn()?, table, id, decode)
    }

    /// [`Store::get`] in a transaction the caller holds (so `decode` may read other tables
    /// of it).
    pub(super) fn get_in<T>(
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
    pub(super) fn page<T>(
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
    pub(super) fn page_in<T>(
        txn: &redb::ReadTransaction,
        table: TableDefinition<u64, &[u8]>,
        before: Option<u64>,
        limit: usize,
        decode: impl Fn(u64, &[u8]) -> Result<T, StoreError>,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, StoreError> {
        Ok(Self::page_within(txn, table, before, limit, usize::MAX, decode, keep)?.0)
    }

    /// Like [`Store::page_in`], looking at no more than `budget` rows; when the budget runs out
    /// first, also the `before` to continue from (the id of the last row looked at).
    pub(super) fn page_within<T>(
        txn: &redb::ReadTransaction,
        table: TableDefinition<u64, &[u8]>,
        before: Option<u64>,
        limit: usize,
        budget: usize,
        decode: impl Fn(u64, &[u8]) -> Result<T, StoreError>,
        keep: impl Fn(&T) -> bool,
    ) -> Result<(Vec<T>, Option<u64>), StoreError> {
        let table = txn.open_table(table)?;
        let mut out = Vec::new();
        for (looked, entry) in table.range(..before.unwrap_or(u64::MAX))?.rev().enumerate() {
            let (id, raw) = entry?;
            if looked >= budget.max(1) {
                return Ok((out, Some(id.value() + 1)));
            }
            let item = decode(id.value(), raw.value())?;
            if keep(&item) {
                out.push(item);
                if out.len() >= limit.max(1) {
                    break;
                }
            }
        }
        Ok((out, None))
    }
}

impl Backend for Store {
    type Batch<'txn> = Batch<'txn>;

    fn write<R>(
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

    fn write_problem(&self) -> Option<String> {
        self.health.load().as_deref().cloned()
    }
}

/// The tables of one write transaction, for the journal writer. Every write of a batch goes
/// through here, so one commit covers events, incidents and their timelines together.
pub struct Batch<'txn> {
    pub(super) events: redb::Table<'txn, &'static [u8; 16], &'static [u8]>,
    pub(super) by_source: redb::Table<'txn, (&'static str, &'static [u8; 16]), ()>,
    pub(super) incidents: redb::Table<'txn, u64, &'static [u8]>,
    pub(super) counts: redb::Table<'txn, u64, (u64, i64, i32)>,
    /// Incidents with a row in `counts` as far as this batch knows (read or written in it):
    /// rewriting one's JSON removes its row.
    pub(super) counted: HashSet<IncidentId, foldhash::fast::RandomState>,
    /// Counts recorded by [`Batch::put_counts`], written to [`COUNTS`] when the batch ends.
    pub(super) counts_due:
        std::collections::HashMap<IncidentId, (u64, Timestamp), foldhash::fast::RandomState>,
    pub(super) open: redb::Table<'txn, u64, ()>,
    pub(super) timeline: redb::Table<'txn, (u64, u32), &'static [u8]>,
    pub(super) meta: redb::Table<'txn, &'static str, u64>,
    pub(super) notifications: redb::Table<'txn, u64, &'static [u8]>,
    pub(super) due: redb::Table<'txn, (i64, u64), ()>,
    pub(super) dead: redb::Table<'txn, (&'static str, u64), ()>,
    pub(super) incident_notifications: redb::Table<'txn, (u64, u64), ()>,
    pub(super) disabled: redb::Table<'txn, &'static str, &'static str>,
    pub(super) timers: redb::Table<'txn, (i64, u64), &'static [u8]>,
    pub(super) incident_timers: redb::Table<'txn, (u64, u64), i64>,
    pub(super) maintenance: redb::Table<'txn, u64, &'static [u8]>,
    pub(super) audit: redb::Table<'txn, u64, (u64, u32, [u8; 32])>,
    pub(super) audit_index: redb::Table<'txn, (u64, u32), u64>,
    pub(super) audit_head: redb::Table<'txn, &'static str, (u64, [u8; 32])>,
    /// The chain's head as of this batch: read on the first timeline write, saved once at its end.
    pub(super) head: Option<Head>,
    pub(super) head_moved: bool,
    /// Id counters as advanced by this batch, saved once at its end.
    pub(super) counters: Vec<(&'static str, u64)>,
    /// One encoding buffer for the batch's incidents and timeline entries (an allocation and a
    /// free per row saved on the writer thread).
    pub(super) buf: Vec<u8>,
    pub(super) overrides: redb::Table<'txn, u64, &'static [u8]>,
    /// Events inserted but not yet written: consecutive ids from one source, written as one
    /// row when the run ends or the batch does.
    pub(super) pending: Pending,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::*;

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
}
