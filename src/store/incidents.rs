//! Incidents: their rows, the counts of repeated triggers, the open set and the timelines.

use jiff::Timestamp;
use redb::{ReadableTable, TableDefinition};

use super::codec::decode_incident;
use super::offline::read_report_data;
use super::shell::{Batch, Store, caught};
use super::{ReportData, StoreError};
use crate::incident::{Entry, Incident, IncidentId};

/// Incident id → incident as JSON. Ids are allocated in order, so key order is age order.
pub(super) const INCIDENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("incidents");
/// Incident id → (count, last seen: seconds, nanoseconds) after repeated triggers that changed
/// nothing else: in an alert storm a repeat writes these 20 bytes instead of decoding and
/// re-encoding the incident's JSON. A row here is newer than the incident's JSON (every read of
/// an incident applies it); rewriting the JSON removes it.
pub(super) const COUNTS: TableDefinition<u64, (u64, i64, i32)> =
    TableDefinition::new("incident_counts");
/// Ids of the open (triggered or acknowledged) incidents, read at start-up to rebuild the
/// in-memory index by (source, dedup key). Keyed by id, not by key, so that a storm of new
/// incidents appends to the end of the tree instead of dirtying pages all over it.
pub(super) const OPEN: TableDefinition<u64, ()> = TableDefinition::new("open_incident_ids");
/// (incident id, sequence number) → timeline entry as JSON; append-only.
pub(super) const TIMELINE: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("timeline");

/// An incident as stored: its JSON with the counters of any later repeated triggers applied.
/// Whether it had such a row is the second value.
pub(super) fn read_incident_counted(
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

pub(super) fn read_incident(
    counts: &impl ReadableTable<u64, (u64, i64, i32)>,
    id: IncidentId,
    raw: &[u8],
) -> Result<Incident, StoreError> {
    read_incident_counted(counts, id, raw).map(|(incident, _)| incident)
}

/// Reading incidents and their timelines, each call from one committed snapshot. Every read
/// of an incident applies the counts of repeated triggers recorded after its last rewrite.
pub trait IncidentReader {
    /// One incident, with its repeat counts applied.
    fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError>;

    /// Incidents newest first that pass `keep`, paged by `before` (an incident id).
    fn incidents(
        &self,
        before: Option<IncidentId>,
        limit: usize,
        keep: impl Fn(&Incident) -> bool,
    ) -> Result<Vec<Incident>, StoreError>;

    /// Like [`Store::incidents`], but looks at no more than `budget` incidents: a search whose
    /// matches are rare must not read every incident ever stored in one request. Returns the
    /// matches and, when the budget ran out first, the id of the last incident looked at (the
    /// `before` to continue from).
    fn search_incidents(
        &self,
        before: Option<IncidentId>,
        limit: usize,
        budget: usize,
        keep: impl Fn(&Incident) -> bool,
    ) -> Result<(Vec<Incident>, Option<IncidentId>), StoreError>;

    /// Every open incident: read once at start-up to rebuild the in-memory index.
    fn open_incidents(&self) -> Result<Vec<Incident>, StoreError>;

    /// An incident's timeline, oldest entry first.
    fn timeline(&self, id: IncidentId) -> Result<Vec<Entry>, StoreError>;

    /// What [`crate::report::compute`] needs: the incidents that opened at `from` or later and
    /// how many notifications each has, read in one transaction.
    fn report_data(&self, from: Timestamp) -> Result<ReportData, StoreError>;
}

impl IncidentReader for Store {
    fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        let txn = self.read_txn()?;
        let counts = txn.open_table(COUNTS)?;
        Self::get_in(&txn, INCIDENTS, id, |id, raw| read_incident(&counts, id, raw))
    }

    fn incidents(
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

    fn search_incidents(
        &self,
        before: Option<IncidentId>,
        limit: usize,
        budget: usize,
        keep: impl Fn(&Incident) -> bool,
    ) -> Result<(Vec<Incident>, Option<IncidentId>), StoreError> {
        let txn = self.read_txn()?;
        let counts = txn.open_table(COUNTS)?;
        let decode = |id, raw: &[u8]| read_incident(&counts, id, raw);
        Self::page_within(&txn, INCIDENTS, before, limit, budget, decode, keep)
    }

    fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
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

    fn timeline(&self, id: IncidentId) -> Result<Vec<Entry>, StoreError> {
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

    fn report_data(&self, from: Timestamp) -> Result<ReportData, StoreError> {
        caught(|| read_report_data(&self.read_txn()?, from))
    }
}

/// Incidents inside the writer's transaction: reads see this batch's own writes. Appending to
/// a timeline also links each entry into the audit chain, in write order, in the same commit.
pub trait IncidentRows {
    /// Allocates the next incident id (1, 2, …), durable with the batch.
    fn next_incident_id(&mut self) -> Result<IncidentId, StoreError>;

    /// One incident as of this batch (its counts recorded in it included).
    fn incident(&mut self, id: IncidentId) -> Result<Option<Incident>, StoreError>;

    /// Records a repeated trigger that changed nothing but the incident's count and last-seen
    /// time, without rewriting its JSON (see [`COUNTS`]). Written when the batch ends: once
    /// per incident however often it repeated, in id order.
    fn put_counts(&mut self, id: IncidentId, count: u64, last_seen: Timestamp);

    /// Stores the incident and keeps the open-incident index in step with its status.
    /// `was_open`: it was open before this transaction (so the index already has it).
    fn put_incident(&mut self, incident: &Incident, was_open: bool) -> Result<(), StoreError>;

    /// Appends entries to an incident's timeline after its last one (`first`: the next
    /// sequence number when the caller knows it, e.g. 0 for a new incident).
    fn append_timeline(
        &mut self,
        id: IncidentId,
        first: Option<u32>,
        entries: &[Entry],
    ) -> Result<(), StoreError>;
}

impl Batch<'_> {
    pub(super) fn flush_counts(&mut self) -> Result<(), StoreError> {
        caught(|| {
            let mut due: Vec<(IncidentId, (u64, Timestamp))> = self.counts_due.drain().collect();
            due.sort_unstable_by_key(|(id, _)| *id);
            for (id, (count, at)) in due {
                self.counts.insert(id, (count, at.as_second(), at.subsec_nanosecond()))?;
            }
            Ok(())
        })
    }
}

impl IncidentRows for Batch<'_> {
    fn next_incident_id(&mut self) -> Result<IncidentId, StoreError> {
        caught(|| self.next_id("next_incident_id"))
    }

    fn incident(&mut self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
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

    fn put_counts(&mut self, id: IncidentId, count: u64, last_seen: Timestamp) {
        self.counts_due.insert(id, (count, last_seen));
        self.counted.insert(id);
    }

    fn put_incident(&mut self, incident: &Incident, was_open: bool) -> Result<(), StoreError> {
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

    fn append_timeline(
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
}

#[cfg(test)]
mod tests {
    use redb::ReadableTableMetadata;

    use crate::store::testing::*;

    use super::*;

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
}
