//! The durable store: every table Tocsin keeps, behind one small interface per aggregate, so
//! that a second backend (PostgreSQL, for several nodes sharing state) plugs in without
//! touching the stages. The one module that knows the storage backend: nothing above it names
//! redb.
//!
//! Last stage of ingest: the [`journal`](crate::journal) writer runs each batch through
//! [`Backend::write`]; readers (the API and dashboard from `spawn_blocking`, delivery, start-up)
//! call the `*Reader` traits from any thread.
//!
//! # The interface
//!
//! | aggregate | in the writer's transaction | from a snapshot | file |
//! |---|---|---|---|
//! | events (+ the incident each joined) | [`EventRows`] | [`EventReader`] | `events.rs` |
//! | incidents, repeat counts, open set, timelines | [`IncidentRows`] | [`IncidentReader`] | `incidents.rs` |
//! | outbox: notifications and their indexes, disabled endpoints | [`OutboxRows`] | [`OutboxReader`] | `outbox.rs` |
//! | timers | [`TimerRows`] | [`TimerReader`] | `timers.rs` |
//! | maintenance windows, rotation overrides | [`AdminRows`] | [`AdminReader`] | `admin.rs` |
//! | audit chain, its index and head | (by `append_timeline`) | [`AuditReader`] | `audit.rs` |
//!
//! [`Backend`] ties them together: `write` and the health readiness reads. The traits are
//! synchronous on purpose: the writer is one OS thread, readers run on blocking threads, and
//! the PostgreSQL backend will use the synchronous `postgres` crate. Callers import the traits
//! whose methods they call. Redb's side: `shell.rs` (open, repair, damaged and disk-full
//! states, health, transactions, [`Batch`]), `codec.rs` (row encodings, which must stay
//! readable by and from older binaries: `tests/store_compat.rs`), `offline.rs` (`tocsin audit
//! verify` and `tocsin report` on a file no daemon holds). A second backend makes [`Store`] an
//! enum over the two (a closed set), each arm implementing the same traits.
//!
//! # What a backend must provide (the stages rely on all of it)
//!
//! - **Atomic batch commit.** [`Backend::write`] runs its closure against one transaction.
//!   `Ok` means everything it wrote is durable (fsync on redb, a commit on PostgreSQL): ingest
//!   answers 2xx only after it. `Err` means none of it is: an error from the closure, a
//!   failure at commit and a panic inside the closure ([`StoreError::Panicked`]) all leave
//!   nothing behind, id counters and the audit head included.
//! - **A batch reads its own writes.** An event inserted, counts recorded, a notification put
//!   earlier in the batch read back before the commit.
//! - **Read snapshots.** Each reader call sees one committed state, never part of a batch, and
//!   does not hold up the writer.
//! - **Order.** One writer at a time; batches apply in commit order. Incident, notification,
//!   timer, window and override ids are allocated from 1 upward, durably with the batch and
//!   never reused, so id order is age order and pages run newest first by id. Event ids
//!   (UUID v7) sort in arrival order. Timeline entries are numbered per incident from 0, and
//!   every entry is linked into the audit chain in write order across batches, hashing the
//!   entry's stored bytes (so a backend keeps the JSON exactly as written). Due notifications
//!   and timers come back soonest first (to the millisecond), then by id.
//! - **Health.** [`Backend::write_problem`] says, without waiting on the writer, why writes
//!   fail right now (disk full, damaged file), for readiness and metrics.

use uuid::Uuid;

use crate::event::Event;

mod admin;
mod audit;
mod codec;
mod error;
mod events;
mod incidents;
mod offline;
mod outbox;
mod shell;
mod timers;

pub use admin::{AdminReader, AdminRows};
pub use audit::AuditReader;
pub use error::StoreError;
pub use events::{EventReader, EventRows};
pub use incidents::{IncidentReader, IncidentRows};
pub use offline::{
    REPAIRED_NOTE, ReportData, VerifyFileError, report_data_file, verify_audit_file,
};
pub use outbox::{OutboxReader, OutboxRows, QueueStats};
pub(crate) use shell::panic_message;
pub use shell::{Batch, DB_FILE, Store};
pub use timers::{TimerReader, TimerRows};

/// A storage backend: the six aggregates' readers, and one writer's transactions over their
/// rows (see the module documentation for what each must guarantee).
pub trait Backend:
    EventReader + IncidentReader + OutboxReader + TimerReader + AdminReader + AuditReader + Send + Sync
{
    /// One write transaction as the writer sees it.
    type Batch<'txn>: EventRows + IncidentRows + OutboxRows + TimerRows + AdminRows;

    /// Runs `f` in one write transaction and commits it (with fsync). When this returns `Ok`,
    /// everything `f` wrote is on disk; on `Err`, none of it is.
    fn write<R>(
        &self,
        f: impl FnOnce(&mut Self::Batch<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError>;

    /// Why the store cannot take writes right now (a full disk it is waiting to reopen after,
    /// or a damaged file), or `None` when it can as far as it knows. For readiness and metrics:
    /// a lock-free read of what the writer last published, never a guess from a busy lock.
    fn write_problem(&self) -> Option<String>;
}

/// A page of the event list, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub source: Option<String>,
    /// Only events older than this id (the `next` cursor of the previous page).
    pub before: Option<Uuid>,
    pub limit: usize,
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

#[cfg(test)]
mod testing {
    use std::path::Path;

    use jiff::Timestamp;
    use redb::Database;

    // Every test module takes the traits it calls from here.
    #[allow(unused_imports)]
    pub(super) use super::{
        AdminReader, AdminRows, AuditReader, Backend, DB_FILE, EventReader, EventRows,
        IncidentReader, IncidentRows, OutboxReader, OutboxRows, TimerReader, TimerRows,
    };
    use crate::incident::{Entry, EntryKind};

    pub(super) fn entry(message: &str) -> Entry {
        Entry {
            at: Timestamp::UNIX_EPOCH,
            actor: "tocsin".into(),
            kind: EntryKind::Note,
            message: message.into(),
            event_id: None,
            detail: serde_json::Value::Null,
        }
    }

    pub(super) fn raw_db(dir: &Path) -> Database {
        Database::create(dir.join(DB_FILE)).unwrap()
    }
}
