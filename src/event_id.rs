//! Event ids: UUID v7, handed out in contiguous blocks.
//!
//! Every stored event gets its id here. An id is a standard UUID v7 (RFC 9562): the Unix time
//! in milliseconds, then random bits, so ids sort by arrival. Within one process they are also
//! strictly increasing, and a request's events get consecutive ids (as 128-bit numbers): the
//! journal then stores a request's events as one row keyed by the first id (see
//! `store::insert_event`), and finds any of them with one ordered lookup.
//!
//! Layout: 48 bits of milliseconds, version 7, 12 random bits (`rand_a`), variant `10`, and 62
//! bits that start at a random value below 2^61 in each new millisecond and then count up. A
//! block never crosses into `rand_a`, so `first + i` is the i-th id of a block.

use std::cell::Cell;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

/// The counting part's room: 62 bits.
const COUNTER_LIMIT: u64 = 1 << 62;

struct Clock {
    ms: u64,
    rand_a: u16,
    next: u64,
}

static CLOCK: Mutex<Clock> = Mutex::new(Clock { ms: 0, rand_a: 0, next: COUNTER_LIMIT });

fn random_u64() -> u64 {
    // The OS generator; if it ever fails, the random bits of the uuid crate's own v7 ids.
    getrandom::u64().unwrap_or_else(|_| Uuid::now_v7().as_u128() as u64)
}

/// The first of `n` consecutive new ids (`n` at least 1).
pub fn block(n: usize) -> u128 {
    let n = n.max(1) as u64;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut clock = CLOCK.lock().unwrap_or_else(|p| p.into_inner());
    // A clock that went back keeps counting in the last millisecond, so ids never decrease.
    let fresh = now > clock.ms;
    if fresh || clock.next.saturating_add(n) > COUNTER_LIMIT {
        // Out of room within one millisecond (2^61 ids at least): borrow the next one.
        clock.ms = if fresh { now } else { clock.ms + 1 };
        let r = random_u64();
        clock.rand_a = (r >> 52) as u16;
        clock.next = r & ((1 << 61) - 1);
    }
    let first = clock.next;
    clock.next += n;
    (u128::from(clock.ms & 0xffff_ffff_ffff) << 80)
        | (0x7 << 76)
        | (u128::from(clock.rand_a) << 64)
        | (0b10 << 62)
        | u128::from(first)
}

/// One new id.
pub fn new() -> Uuid {
    Uuid::from_u128(block(1))
}

/// The ids of one request: a block reserved for its items, drawn in order. Ids not drawn are
/// skipped (never reused); drawing past the block starts another.
#[derive(Debug, Default)]
pub struct Ids {
    next: Cell<u128>,
    end: Cell<u128>,
}

impl Ids {
    /// Makes sure the next `n` ids drawn are consecutive.
    pub fn reserve(&self, n: usize) {
        if self.end.get() - self.next.get() < n as u128 {
            let first = block(n);
            self.next.set(first);
            self.end.set(first + n as u128);
        }
    }

    pub fn next(&self) -> Uuid {
        self.reserve(1);
        let id = self.next.get();
        self.next.set(id + 1);
        Uuid::from_u128(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_increasing_and_consecutive_within_a_block() {
        let ids = Ids::default();
        ids.reserve(100);
        let drawn: Vec<Uuid> = (0..100).map(|_| ids.next()).collect();
        for pair in drawn.windows(2) {
            assert_eq!(pair[1].as_u128(), pair[0].as_u128() + 1);
        }
        let after = new();
        assert!(after > drawn[99]);
        for id in drawn.iter().chain([&after]) {
            assert_eq!(id.get_version_num(), 7, "{id}");
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
            let (secs, _) = id.get_timestamp().expect("v7 carries a time").to_unix();
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
            assert!(secs.abs_diff(now) <= 5, "{id}: {secs} vs {now}");
        }
        // Drawing past the reserved block starts a new one, still increasing.
        let more = ids.next();
        assert!(more > drawn[99]);
    }

    #[test]
    fn ids_from_many_threads_never_repeat_or_overlap() {
        let blocks: Vec<Vec<(u128, usize)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    s.spawn(move || {
                        (0..2000).map(|i| (block(1 + (i + t) % 7), 1 + (i + t) % 7)).collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<(u128, usize)> = blocks.into_iter().flatten().collect();
        all.sort();
        for pair in all.windows(2) {
            let ((a, n), (b, _)) = (pair[0], pair[1]);
            assert!(a + n as u128 <= b, "block {a:x}+{n} overlaps {b:x}");
        }
    }
}
