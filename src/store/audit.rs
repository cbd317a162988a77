//! The audit chain over every timeline entry: links, the index by entry, the head.

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use super::StoreError;
use super::incidents::TIMELINE;
use super::shell::{Batch, Store, caught};
use crate::audit::{Finding, Head};
use crate::incident::{Entry, IncidentId};

/// The audit chain (see [`audit`](crate::audit)): link number (1, 2, …) → (incident id,
/// timeline sequence number, the link's SHA-256). One link per timeline row, in write order.
pub(super) const AUDIT: TableDefinition<u64, (u64, u32, [u8; 32])> = TableDefinition::new("audit");
/// (incident id, timeline sequence number) → its link number: the hash of one entry without
/// scanning the chain, and the check that every timeline row is in it.
pub(super) const AUDIT_INDEX: TableDefinition<(u64, u32), u64> =
    TableDefinition::new("audit_index");
/// `head` → (last link number, its hash): what the chain must end with (a truncated tail shows).
pub(super) const AUDIT_HEAD: TableDefinition<&str, (u64, [u8; 32])> =
    TableDefinition::new("audit_head");
pub(super) const HEAD_KEY: &str = "head";

/// Reading the audit chain: each timeline entry with its link, and a walk of the whole chain.
/// The chain has no write operations of its own:
/// [`IncidentRows::append_timeline`](super::IncidentRows::append_timeline) links every entry
/// it writes.
pub trait AuditReader {
    /// An incident's timeline with each entry's audit link (number and hash; `None` for an
    /// entry missing from the chain), read in one transaction.
    fn timeline_audited(&self, id: IncidentId) -> Result<Vec<(Entry, Option<Head>)>, StoreError>;

    /// Walks the audit chain in a read transaction (concurrent writes go on; they are not
    /// part of this snapshot). `recorded`: a head recorded earlier that the chain must pass.
    fn verify_audit(&self, recorded: Option<Head>) -> Result<Result<Head, Finding>, StoreError>;
}

impl AuditReader for Store {
    fn timeline_audited(&self, id: IncidentId) -> Result<Vec<(Entry, Option<Head>)>, StoreError> {
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

    fn verify_audit(&self, recorded: Option<Head>) -> Result<Result<Head, Finding>, StoreError> {
        // The walk reads every page of the chain: a damaged one is an answer, not a panic.
        caught(|| verify_chain(&self.read_txn()?, recorded))
    }
}

impl Batch<'_> {
    /// The chain's head: read once per batch.
    pub(super) fn head(&mut self) -> Result<Head, StoreError> {
        caught(|| {
            if let Some(head) = self.head {
                return Ok(head);
            }
            let head = read_head(&self.audit_head)?.unwrap_or(Head::EMPTY);
            self.head = Some(head);
            Ok(head)
        })
    }

    pub(super) fn save_head(&mut self) -> Result<(), StoreError> {
        caught(|| {
            if let (true, Some(head)) = (self.head_moved, self.head) {
                self.audit_head.insert(HEAD_KEY, (head.seq, head.hash))?;
            }
            Ok(())
        })
    }

    /// A store written before the audit log existed has timeline rows and no chain: chain them
    /// all, in (incident, sequence) order. Returns how many; 0 once a chain exists.
    pub(super) fn chain_unaudited(&mut self) -> Result<u64, StoreError> {
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
}

pub(super) fn read_head(
    table: &impl ReadableTable<&'static str, (u64, [u8; 32])>,
) -> Result<Option<Head>, StoreError> {
    Ok(table.get(HEAD_KEY)?.map(|v| {
        let (seq, hash) = v.value();
        Head { seq, hash }
    }))
}

/// Walks the whole chain in link order, checking each link against the timeline row it names,
/// then the head record, then that every timeline row is a link of the chain.
pub(super) fn verify_chain(
    txn: &redb::ReadTransaction,
    recorded: Option<Head>,
) -> Result<Result<Head, Finding>, StoreError> {
    let timeline = txn.open_table(TIMELINE)?;
    // A store that no audit-aware Tocsin has opened yet has no audit tables at all.
    let chain = match txn.open_table(AUDIT) {
        Err(redb::TableError::TableDoesNotExist(_)) if timeline.is_empty()? => {
            return Ok(crate::audit::Verifier::expecting(recorded).finish(None));
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
    let mut verifier = crate::audit::Verifier::expecting(recorded);
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

#[cfg(test)]
mod tests {
    use super::*;
    use redb::Database;

    use crate::store::testing::*;
    use crate::store::{DB_FILE, verify_audit_file};

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
}
