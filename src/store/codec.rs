//! Row codecs: how events, incidents, notifications, timers and overrides are encoded in rows.

use uuid::Uuid;

use super::StoreError;
use crate::escalation::Timer;
use crate::event::Event;
use crate::incident::{Incident, IncidentId};
use crate::oncall::Override;
use crate::outbox::{Notification, NotificationId};

/// The first byte of an [`EVENTS`] row of one event that carries its incident.
pub(super) const JOINED: u8 = 0x01;
/// The first byte of an [`EVENTS`] row of several events: then their number `n` (u32,
/// little-endian), `n` heads of [`HEAD`] bytes (whether it joined an incident: 0 or 1; the
/// incident id, u64 big-endian; where its JSON ends in the data, u32 little-endian), and the
/// data: the events' JSON one after another.
pub(super) const CHUNK: u8 = 0x02;
pub(super) const HEAD: usize = 13;
/// Most events in one [`CHUNK`] row.
pub(super) const CHUNK_EVENTS: usize = 512;
/// A [`CHUNK`] row grows no larger than this once it holds two events (a larger event gets a
/// row of its own): values of up to 64 KiB fit one page of redb's 64 KiB page order.
pub(super) const CHUNK_BYTES: usize = 64 * 1024 - 1024;

pub(super) fn decode_incident(id: IncidentId, raw: &[u8]) -> Result<Incident, StoreError> {
    serde_json::from_slice(raw).map_err(|source| StoreError::DecodeIncident { id, source })
}

pub(super) fn decode_override(id: u64, raw: &[u8]) -> Result<Override, StoreError> {
    serde_json::from_slice(raw).map_err(|source| StoreError::Override { id, source })
}

pub(super) fn decode_timer(id: u64, raw: &[u8]) -> Result<Timer, StoreError> {
    serde_json::from_slice(raw).map_err(|source| StoreError::DecodeNotification { id, source })
}

pub(super) fn decode_notification(
    id: NotificationId,
    raw: &[u8],
) -> Result<Notification, StoreError> {
    serde_json::from_slice(raw).map_err(|source| StoreError::DecodeNotification { id, source })
}

/// An event from its JSON (see [`Row::entry`]).
pub(super) fn decode_json(id: Uuid, json: &[u8]) -> Result<Event, StoreError> {
    serde_json::from_slice(json).map_err(|source| StoreError::Decode { id, source })
}

/// Where an event's incident is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    /// In its row: the incident it joined, or none.
    Joined(Option<IncidentId>),
    /// Not in its row: none, or for a row written before rows carried it, in
    /// [`EVENT_INCIDENT`].
    Legacy,
}

/// An [`EVENTS`] row, read (see the table for its forms).
pub(super) enum Row<'a> {
    One { first: u128, link: Link, json: &'a [u8] },
    Chunk { first: u128, n: usize, heads: &'a [u8], data: &'a [u8] },
}

impl<'a> Row<'a> {
    pub(super) fn parse(first: Uuid, raw: &'a [u8]) -> Result<Row<'a>, StoreError> {
        let damaged = |what| StoreError::Damaged { first, what };
        match raw.first() {
            Some(&JOINED) => {
                let (id, json) =
                    raw[1..].split_first_chunk::<8>().ok_or(damaged("joined row too short"))?;
                let link = Link::Joined(Some(u64::from_be_bytes(*id)));
                Ok(Row::One { first: first.as_u128(), link, json })
            }
            Some(&CHUNK) => {
                let (n, rest) =
                    raw[1..].split_first_chunk::<4>().ok_or(damaged("chunk row too short"))?;
                let n = u32::from_le_bytes(*n) as usize;
                if rest.len() < n * HEAD {
                    return Err(damaged("chunk heads cut short"));
                }
                let (heads, data) = rest.split_at(n * HEAD);
                Ok(Row::Chunk { first: first.as_u128(), n, heads, data })
            }
            _ => Ok(Row::One { first: first.as_u128(), link: Link::Legacy, json: raw }),
        }
    }

    /// Number of events in the row.
    pub(super) fn len(&self) -> usize {
        match self {
            Row::One { .. } => 1,
            Row::Chunk { n, .. } => *n,
        }
    }

    /// The `i`-th event's link and JSON.
    pub(super) fn nth(&self, i: usize) -> Result<(Link, &'a [u8]), StoreError> {
        let (first, n, heads, data) = match *self {
            Row::One { link, json, .. } => return Ok((link, json)),
            Row::Chunk { first, n, heads, data } => (first, n, heads, data),
        };
        let damaged = |what| StoreError::Damaged { first: Uuid::from_u128(first), what };
        if i >= n {
            return Err(damaged("event index beyond the chunk"));
        }
        let end_of = |j: usize| {
            let at = j * HEAD + 9;
            u32::from_le_bytes([heads[at], heads[at + 1], heads[at + 2], heads[at + 3]]) as usize
        };
        let start = if i == 0 { 0 } else { end_of(i - 1) };
        let end = end_of(i);
        let json = data.get(start..end).ok_or(damaged("event bounds outside the chunk"))?;
        let head = &heads[i * HEAD..i * HEAD + 9];
        let incident = u64::from_be_bytes(head[1..9].try_into().expect("8 bytes"));
        let link = Link::Joined((head[0] == 1).then_some(incident));
        Ok((link, json))
    }

    /// Event `id`'s link and JSON, if the row holds it.
    pub(super) fn entry(&self, id: Uuid) -> Result<Option<(Link, &'a [u8])>, StoreError> {
        let (first, n) = match *self {
            Row::One { first, .. } => (first, 1),
            Row::Chunk { first, n, .. } => (first, n),
        };
        match id.as_u128().wrapping_sub(first) {
            i if i < n as u128 => self.nth(i as usize).map(Some),
            _ => Ok(None),
        }
    }
}

/// Appends a row's events below id `below` to `out`, newest first, until it holds `limit`.
pub(super) fn newest_first(
    first: Uuid,
    raw: &[u8],
    below: u128,
    limit: usize,
    out: &mut Vec<Event>,
) -> Result<(), StoreError> {
    let row = Row::parse(first, raw)?;
    for i in (0..row.len()).rev() {
        if out.len() >= limit {
            break;
        }
        let id = first.as_u128() + i as u128;
        if id < below {
            out.push(decode_json(Uuid::from_u128(id), row.nth(i)?.1)?);
        }
    }
    Ok(())
}
