//! Events: the [`EVENTS`] rows (one event, or a request's run of events in one chunk row), the
//! by-source index, and the event → incident link of older files.

use redb::{ReadableTable, TableDefinition};
use uuid::Uuid;

use super::codec::{
    CHUNK, CHUNK_BYTES, CHUNK_EVENTS, HEAD, JOINED, Link, Row, decode_json, newest_first,
};
use super::shell::{Batch, Store, caught};
use super::{Encoded, EventQuery, StoreError};
use crate::event::Event;
use crate::incident::IncidentId;

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
pub(super) const EVENTS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("events");
/// (source, key of an [`EVENTS`] row) → (): lists one source's events without scanning the
/// others.
pub(super) const EVENTS_BY_SOURCE: TableDefinition<(&str, &[u8; 16]), ()> =
    TableDefinition::new("events_by_source");

/// Event id → the incident it joined, for events stored before [`EVENTS`] rows carried it.
/// Read only; kept so that older data files answer the same.
pub(super) const EVENT_INCIDENT: TableDefinition<&[u8; 16], u64> =
    TableDefinition::new("event_incident");

/// The next [`EVENTS`] row, as it grows (a [`CHUNK`] row's parts).
#[derive(Default)]
pub(super) struct Pending {
    pub(super) first: u128,
    pub(super) source: String,
    pub(super) n: usize,
    pub(super) heads: Vec<u8>,
    pub(super) data: Vec<u8>,
}

impl Pending {
    pub(super) fn covers(&self, id: u128) -> bool {
        id.wrapping_sub(self.first) < self.n as u128
    }

    pub(super) fn row_len(&self) -> usize {
        5 + self.heads.len() + self.data.len()
    }
}

/// Reading events, each call from one committed snapshot (the API, the dashboard, start-up).
pub trait EventReader {
    /// One event by id (it may sit inside a request's chunk row).
    fn event(&self, id: Uuid) -> Result<Option<Event>, StoreError>;

    /// Events newest first, optionally of one source, paged by `before`.
    fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError>;

    /// An event and the incident it joined, from one read of its row.
    fn event_joined(&self, id: Uuid) -> Result<Option<(Event, Option<IncidentId>)>, StoreError>;

    /// The incident an event joined.
    fn event_incident(&self, id: Uuid) -> Result<Option<IncidentId>, StoreError>;

    /// Number of stored events (reads every row).
    fn event_count(&self) -> Result<u64, StoreError>;
}

impl Store {
    /// `read` of an event's JSON, and (when `joined`) the incident the event joined: from its
    /// row, or for a row written before rows carried it, from [`EVENT_INCIDENT`].
    pub(super) fn event_row<T>(
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
}

impl EventReader for Store {
    fn event(&self, id: Uuid) -> Result<Option<Event>, StoreError> {
        Ok(self.event_row(id, |json| decode_json(id, json), false)?.map(|(event, _)| event))
    }

    fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
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

    fn event_joined(&self, id: Uuid) -> Result<Option<(Event, Option<IncidentId>)>, StoreError> {
        self.event_row(id, |json| decode_json(id, json), true)
    }

    fn event_incident(&self, id: Uuid) -> Result<Option<IncidentId>, StoreError> {
        Ok(self.event_row(id, |_| Ok(()), true)?.and_then(|((), incident)| incident))
    }

    fn event_count(&self) -> Result<u64, StoreError> {
        let txn = self.read_txn()?;
        let mut n = 0;
        for entry in txn.open_table(EVENTS)?.iter()? {
            let (key, raw) = entry?;
            n += Row::parse(Uuid::from_bytes(*key.value()), raw.value())?.len() as u64;
        }
        Ok(n)
    }
}

/// Storing events inside the writer's transaction (see [`Backend::write`](super::Backend::write)).
/// An event inserted earlier in the same batch reads back before the commit.
pub trait EventRows {
    /// An event as of this batch (one inserted earlier in it included).
    fn event(&self, id: Uuid) -> Result<Option<Event>, StoreError>;

    /// Stores an event, with the incident it joined (`None`: it changed none). Consecutive
    /// events of a request are written together, as one row, when the run or the batch ends.
    fn insert_event(
        &mut self,
        encoded: &Encoded,
        incident: Option<IncidentId>,
    ) -> Result<(), StoreError>;
}

impl Batch<'_> {
    /// Writes the pending events: one event as a row of its own (the forms older versions
    /// read), several as a [`CHUNK`]; and the row's by-source index entry.
    pub(super) fn flush_events(&mut self) -> Result<(), StoreError> {
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
}

impl EventRows for Batch<'_> {
    fn event(&self, id: Uuid) -> Result<Option<Event>, StoreError> {
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

    fn insert_event(
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
}

pub(super) type RawRow<'t> = redb::AccessGuard<'t, &'static [u8]>;

/// The [`EVENTS`] row that holds event `id`, with its key: the row keyed `id`, or else the
/// chunk before it (which [`Row::entry`] then checks covers it).
pub(super) fn event_row<'t>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::*;

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
}
