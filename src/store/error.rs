//! What can go wrong in the store.

use std::path::PathBuf;

use uuid::Uuid;

use crate::incident::IncidentId;

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
    pub(super) fn is_io(&self) -> bool {
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
