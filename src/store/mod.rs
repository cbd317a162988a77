//! The durable store: redb tables behind one narrow interface, so that another backend
//! (PostgreSQL, for several nodes sharing state) can be added without touching the stages.
//!
//! Last stage of ingest: the [`journal`](crate::journal) writer calls [`Store::append`] with a
//! whole batch; readers (the API) call the `event*` methods from any thread.

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

pub use error::StoreError;
pub use offline::{ReportData, VerifyFileError, report_data_file, verify_audit_file};
pub use outbox::QueueStats;
pub(crate) use shell::panic_message;
pub use shell::{Batch, DB_FILE, Store};

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

    use super::DB_FILE;
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
