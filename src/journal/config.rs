//! `journal:`: how many ingest requests may wait for the writer and how many events one
//! transaction commits.

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::Validator;

#[derive(Debug, Clone, PartialEq)]
pub struct Journal {
    /// Ingest requests that may wait for the writer; beyond that ingest answers 503.
    pub queue_capacity: usize,
    /// Most events committed in one transaction (one fsync).
    pub max_batch_events: usize,
}

impl Default for Journal {
    fn default() -> Self {
        Journal { queue_capacity: 4096, max_batch_events: 4096 }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJournal {
    pub queue_capacity: Option<Spanned<u64>>,
    pub max_batch_events: Option<Spanned<u64>>,
}

/// Each waiting request may hold a body, so the queue bounds memory too.
const MAX_QUEUE_CAPACITY: u64 = 1 << 20;

const MAX_BATCH_EVENTS: u64 = 1 << 20;

/// `journal:`; each key left out keeps its default.
pub fn validate(cx: &mut Validator<'_>, raw: Option<Spanned<RawJournal>>) -> Journal {
    let defaults = Journal::default();
    let Some(raw) = raw.map(|s| s.value) else {
        return defaults;
    };
    Journal {
        queue_capacity: cx.count(
            raw.queue_capacity,
            "journal.queue_capacity",
            MAX_QUEUE_CAPACITY,
            defaults.queue_capacity,
        ),
        max_batch_events: cx.count(
            raw.max_batch_events,
            "journal.max_batch_events",
            MAX_BATCH_EVENTS,
            defaults.max_batch_events,
        ),
    }
}
