//! The offline readers: `tocsin audit verify` and `tocsin report` read a store file the daemon
//! does not hold, read-only.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use redb::{Database, ReadableDatabase, ReadableTable};

use super::StoreError;
use super::audit::verify_chain;
use super::codec::{Row, decode_json};
use super::events::{EVENTS, event_row};
use super::incidents::{COUNTS, INCIDENTS, read_incident};
use super::outbox::INCIDENT_NOTIFICATIONS;
use super::shell::{CACHE_BYTES, DB_FILE, panic_message};
use crate::audit::{Finding, Head};
use crate::event::Event;
use crate::incident::{Incident, IncidentId};

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

/// What the tools tell people when [`verify_audit_file`] or [`report_data_file`] had to
/// repair the file first.
pub const REPAIRED_NOTE: &str = "the store was not closed cleanly; redb rebuilt its page \
     allocator before reading (table contents are untouched)";

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
pub(super) fn read_file<R>(
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

pub(super) fn read_file_inner<R>(
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
pub(super) const REPORT_SCAN_SLACK: jiff::SignedDuration = jiff::SignedDuration::from_mins(10);

pub(super) fn read_report_data(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn verify_refuses_a_missing_store_and_one_in_use() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(verify_audit_file(dir.path(), None), Err(VerifyFileError::Missing(_))));
        let _store = Store::open(dir.path()).unwrap();
        assert!(matches!(verify_audit_file(dir.path(), None), Err(VerifyFileError::InUse(_))));
        assert!(!dir.path().join("other").exists());
    }
}
