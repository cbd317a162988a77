//! The tamper-evident audit log: every timeline entry ever written is one link of a single
//! global SHA-256 hash chain, in the order the writer stored them.
//!
//! Link `n` (numbered 1, 2, …) covers timeline entry `s` of incident `i` whose stored bytes are
//! `b` (exactly the JSON in the timeline table):
//!
//! ```text
//! hash_n = SHA-256(hash_{n-1} || n as u64 BE || i as u64 BE || s as u32 BE || b)    hash_0 = 32 zero bytes
//! ```
//!
//! The [`store`](crate::store) computes the links in the same transaction as the entries and
//! keeps a head record (the last link's number and hash); [`Verifier`] walks the chain back.
//! This module is pure: the chain function, the head, what a verification can find, and how
//! it is reported.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::incident::IncidentId;

/// A link's SHA-256.
pub type Hash = [u8; 32];

/// The hash before the first link.
pub const GENESIS: Hash = [0; 32];

/// The hash of link `seq` (timeline entry `entry` of `incident`, stored as `bytes`) after a
/// link whose hash is `prev`.
pub fn link_hash(prev: &Hash, seq: u64, incident: IncidentId, entry: u32, bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(incident.to_be_bytes());
    h.update(entry.to_be_bytes());
    h.update(bytes);
    h.finalize().into()
}

/// Lowercase hex, as printed and served.
pub fn hex(hash: &Hash) -> String {
    use std::fmt::Write;
    hash.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The end of the chain: how many links it has (the last one's number) and the last hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: Hash,
}

impl Head {
    /// The head of an empty chain.
    pub const EMPTY: Head = Head { seq: 0, hash: GENESIS };

    /// Appends one link and returns its number and hash.
    pub fn advance(&mut self, incident: IncidentId, entry: u32, bytes: &[u8]) -> Head {
        let seq = self.seq + 1;
        *self = Head { seq, hash: link_hash(&self.hash, seq, incident, entry, bytes) };
        *self
    }
}

/// The first thing a verification found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The entry's bytes (or the hash recorded for it) changed since it was chained.
    Edited { seq: u64, incident: IncidentId, entry: u32 },
    /// The chain names a timeline entry that is no longer there.
    EntryMissing { seq: u64, incident: IncidentId, entry: u32 },
    /// Link `seq` is gone: the chain jumps from `seq - 1` to `found`.
    LinkMissing { seq: u64, found: u64 },
    /// A timeline entry that no link covers.
    NotInChain { incident: IncidentId, entry: u32 },
    /// The chain ends before its head record (`last.seq < head.seq`), goes past it, or ends on
    /// another hash; `head` is `None` when the record itself is gone.
    HeadMismatch { head: Option<Head>, last: Head },
    /// Link `seq` has another hash than the head recorded earlier (`expected`): the chain was
    /// rewritten since.
    Rewritten { seq: u64, expected: Hash, found: Hash },
    /// The chain is shorter than a head recorded earlier at `expected`.
    ShorterThanRecorded { expected: u64, last: u64 },
    /// Timeline entries but no chain at all: written before the audit log existed and not yet
    /// chained (the daemon chains them when it opens the store), or the chain was removed.
    Unchained { entries: u64 },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Finding::Edited { seq, incident, entry } => write!(
                f,
                "audit entry #{seq} (incident {incident}, timeline entry {entry}): content does \
                 not match its hash (edited?)"
            ),
            Finding::EntryMissing { seq, incident, entry } => write!(
                f,
                "audit entry #{seq} (incident {incident}, timeline entry {entry}): the timeline \
                 entry is missing (deleted?)"
            ),
            Finding::LinkMissing { seq, found } if found == seq + 1 => write!(
                f,
                "audit entry #{seq} is missing: the chain jumps from #{} to #{found} (deleted?)",
                seq - 1
            ),
            Finding::LinkMissing { seq, found } => write!(
                f,
                "audit entries #{seq} to #{} are missing: the chain jumps from #{} to #{found} \
                 (deleted?)",
                found - 1,
                seq - 1
            ),
            Finding::NotInChain { incident, entry } => write!(
                f,
                "incident {incident}, timeline entry {entry}: not in the audit chain (inserted?)"
            ),
            Finding::HeadMismatch { head: None, last } => write!(
                f,
                "the audit head record is missing but the chain has {} entries (removed?)",
                last.seq
            ),
            Finding::HeadMismatch { head: Some(head), last } if last.seq < head.seq => write!(
                f,
                "the audit chain ends at #{} but its head record says #{}: the last {} entries \
                 are missing (truncated?)",
                last.seq,
                head.seq,
                head.seq - last.seq
            ),
            Finding::HeadMismatch { head: Some(head), last } if last.seq > head.seq => write!(
                f,
                "the audit chain goes on to #{} past its head record #{} (appended outside \
                 Tocsin?)",
                last.seq, head.seq
            ),
            Finding::HeadMismatch { head: Some(head), last } => write!(
                f,
                "audit entry #{}: its hash {} does not match the head record's {} (rewritten?)",
                last.seq,
                hex(&last.hash),
                hex(&head.hash)
            ),
            Finding::Rewritten { seq, expected, found } => write!(
                f,
                "audit entry #{seq}: hash {} is not the recorded {} (chain rewritten since it was \
                 recorded?)",
                hex(&found),
                hex(&expected)
            ),
            Finding::ShorterThanRecorded { expected, last } => write!(
                f,
                "the audit chain ends at #{last} but a head was recorded at #{expected} \
                 (truncated?)"
            ),
            Finding::Unchained { entries } => write!(
                f,
                "the store has {entries} timeline entries but no audit chain (written before the \
                 audit log existed: start the daemon once to chain them; or the chain was removed)"
            ),
        }
    }
}

impl Finding {
    /// The audit entry it names, if it names one.
    pub fn seq(&self) -> Option<u64> {
        match *self {
            Finding::Edited { seq, .. }
            | Finding::EntryMissing { seq, .. }
            | Finding::LinkMissing { seq, .. }
            | Finding::Rewritten { seq, .. } => Some(seq),
            Finding::ShorterThanRecorded { last, .. } => Some(last),
            Finding::HeadMismatch { last, .. } => Some(last.seq),
            Finding::NotInChain { .. } | Finding::Unchained { .. } => None,
        }
    }

    /// The timeline entry it names, if it names one.
    pub fn entry(&self) -> Option<(IncidentId, u32)> {
        match *self {
            Finding::Edited { incident, entry, .. }
            | Finding::EntryMissing { incident, entry, .. }
            | Finding::NotInChain { incident, entry } => Some((incident, entry)),
            _ => None,
        }
    }
}

/// Walks the chain in link order. Feed every link with the bytes of the timeline entry it names
/// ([`Verifier::link`]), then [`Verifier::finish`] with the head record; the first problem
/// ends the walk.
#[derive(Debug)]
pub struct Verifier {
    last: Head,
    /// A head recorded earlier, outside the store: the chain must pass through it.
    recorded: Option<Head>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier { last: Head::EMPTY, recorded: None }
    }
}

impl Verifier {
    pub fn new() -> Verifier {
        Verifier::default()
    }

    /// Also checks that link `recorded.seq` still has the hash recorded then.
    pub fn expecting(recorded: Option<Head>) -> Verifier {
        Verifier { last: Head::EMPTY, recorded }
    }

    /// Link `seq` records `stored` as the hash of timeline entry `entry` of `incident`, whose
    /// bytes are `content` (`None`: the entry is gone).
    pub fn link(
        &mut self,
        seq: u64,
        incident: IncidentId,
        entry: u32,
        stored: &Hash,
        content: Option<&[u8]>,
    ) -> Result<(), Finding> {
        let expected = self.last.seq + 1;
        if seq != expected {
            return Err(Finding::LinkMissing { seq: expected, found: seq });
        }
        let Some(content) = content else {
            return Err(Finding::EntryMissing { seq, incident, entry });
        };
        if link_hash(&self.last.hash, seq, incident, entry, content) != *stored {
            return Err(Finding::Edited { seq, incident, entry });
        }
        if let Some(r) = self.recorded
            && r.seq == seq
            && r.hash != *stored
        {
            return Err(Finding::Rewritten { seq, expected: r.hash, found: *stored });
        }
        self.last = Head { seq, hash: *stored };
        Ok(())
    }

    /// The chain is whole if it ends exactly at the head record; `None` when there is no head
    /// record (a store that never chained anything).
    pub fn finish(self, head: Option<Head>) -> Result<Head, Finding> {
        if let Some(r) = self.recorded
            && r.seq > self.last.seq
        {
            return Err(Finding::ShorterThanRecorded { expected: r.seq, last: self.last.seq });
        }
        match head {
            Some(head) if head == self.last => Ok(head),
            None if self.last == Head::EMPTY => Ok(Head::EMPTY),
            head => Err(Finding::HeadMismatch { head, last: self.last }),
        }
    }

    /// Links checked so far.
    pub fn checked(&self) -> u64 {
        self.last.seq
    }
}

/// Parses a recorded head as printed and written on the command line: `N:HEX` (64 hex digits).
pub fn parse_head(s: &str) -> Result<Head, String> {
    let bad = || format!("{s:?} is not SEQ:HASH (an entry count, a colon, 64 hex digits)");
    let (seq, digits) = s.split_once(':').ok_or_else(bad)?;
    let seq = seq.trim().parse().map_err(|_| bad())?;
    let digits = digits.trim();
    if digits.len() != 64 || !digits.is_ascii() {
        return Err(bad());
    }
    let mut hash = GENESIS;
    for (i, b) in hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(Head { seq, hash })
}

/// The JSON answer of `GET /api/v1/audit/verify`, also what `tocsin audit verify` reads back.
pub fn report_json(result: &Result<Head, Finding>) -> Value {
    match result {
        Ok(head) => json!({
            "valid": true,
            "entries": head.seq,
            "head": hex(&head.hash),
            "head_record": format!("{}:{}", head.seq, hex(&head.hash)),
        }),
        Err(finding) => json!({
            "valid": false,
            "problem": finding.to_string(),
            "audit_seq": finding.seq(),
            "incident": finding.entry().map(|e| e.0),
            "timeline_entry": finding.entry().map(|e| e.1),
        }),
    }
}

/// Timeline entries as served: each with `audit_seq` (its link number) and `hash` (hex), both
/// null for an entry missing from the chain.
pub fn timeline_json<E: serde::Serialize>(timeline: Vec<(E, Option<Head>)>) -> Value {
    timeline
        .into_iter()
        .map(|(entry, link)| {
            let mut v = serde_json::to_value(entry).unwrap_or_default();
            v["audit_seq"] = json!(link.map(|l| l.seq));
            v["hash"] = json!(link.map(|l| hex(&l.hash)));
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of `(incident, entry, bytes)` as the store would build it.
    fn chain(entries: &[(u64, u32, &[u8])]) -> (Vec<(u64, u64, u32, Hash)>, Head) {
        let mut head = Head::EMPTY;
        let links = entries
            .iter()
            .map(|&(i, e, b)| {
                let h = head.advance(i, e, b);
                (h.seq, i, e, h.hash)
            })
            .collect();
        (links, head)
    }

    fn verify(
        links: &[(u64, u64, u32, Hash)],
        content: impl Fn(u64, u32) -> Option<Vec<u8>>,
        head: Option<Head>,
    ) -> Result<Head, Finding> {
        let mut v = Verifier::new();
        for &(seq, i, e, h) in links {
            v.link(seq, i, e, &h, content(i, e).as_deref())?;
        }
        v.finish(head)
    }

    const ENTRIES: [(u64, u32, &[u8]); 4] =
        [(1, 0, b"{\"a\":1}"), (2, 0, b"{\"b\":2}"), (1, 1, b"{\"c\":3}"), (2, 1, b"{\"d\":4}")];

    fn content_of(i: u64, e: u32) -> Option<Vec<u8>> {
        ENTRIES.iter().find(|x| x.0 == i && x.1 == e).map(|x| x.2.to_vec())
    }

    #[test]
    fn the_link_hash_is_sha256_of_prev_seq_incident_entry_and_bytes() {
        let mut input = vec![7u8; 32];
        input.extend(5u64.to_be_bytes());
        input.extend(12u64.to_be_bytes());
        input.extend(3u32.to_be_bytes());
        input.extend(b"{\"m\":\"x\"}");
        let expected: Hash = Sha256::digest(&input).into();
        assert_eq!(link_hash(&[7; 32], 5, 12, 3, b"{\"m\":\"x\"}"), expected);
        // Every input matters.
        let base = link_hash(&GENESIS, 1, 1, 0, b"x");
        assert_ne!(base, link_hash(&[1; 32], 1, 1, 0, b"x"));
        assert_ne!(base, link_hash(&GENESIS, 2, 1, 0, b"x"));
        assert_ne!(base, link_hash(&GENESIS, 1, 2, 0, b"x"));
        assert_ne!(base, link_hash(&GENESIS, 1, 1, 1, b"x"));
        assert_ne!(base, link_hash(&GENESIS, 1, 1, 0, b"y"));
    }

    #[test]
    fn hex_is_lowercase_and_64_digits() {
        let mut h = GENESIS;
        h[0] = 0xab;
        h[31] = 0x01;
        let s = hex(&h);
        assert_eq!(s.len(), 64);
        assert!(s.starts_with("ab00"));
        assert!(s.ends_with("0001"));
    }

    #[test]
    fn an_intact_chain_verifies_to_its_head() {
        let (links, head) = chain(&ENTRIES);
        assert_eq!(head.seq, 4);
        assert_eq!(verify(&links, content_of, Some(head)), Ok(head));
        // An empty store with no head record is fine; an empty chain with a head is not.
        assert_eq!(Verifier::new().finish(None), Ok(Head::EMPTY));
        assert!(Verifier::new().finish(Some(head)).is_err());
    }

    #[test]
    fn an_edited_entry_is_named() {
        let (links, head) = chain(&ENTRIES);
        let edited =
            |i, e| if (i, e) == (1, 1) { Some(b"{\"c\":4}".to_vec()) } else { content_of(i, e) };
        let found = verify(&links, edited, Some(head)).unwrap_err();
        assert_eq!(found, Finding::Edited { seq: 3, incident: 1, entry: 1 });
        assert_eq!(
            found.to_string(),
            "audit entry #3 (incident 1, timeline entry 1): content does not match its hash (edited?)"
        );
    }

    #[test]
    fn an_edited_hash_is_named() {
        let (mut links, head) = chain(&ENTRIES);
        links[1].3[0] ^= 1;
        assert_eq!(
            verify(&links, content_of, Some(head)),
            Err(Finding::Edited { seq: 2, incident: 2, entry: 0 })
        );
    }

    #[test]
    fn a_deleted_entry_is_named() {
        let (links, head) = chain(&ENTRIES);
        let deleted = |i, e| if (i, e) == (2, 0) { None } else { content_of(i, e) };
        let found = verify(&links, deleted, Some(head)).unwrap_err();
        assert_eq!(found, Finding::EntryMissing { seq: 2, incident: 2, entry: 0 });
        assert!(found.to_string().starts_with("audit entry #2 (incident 2, timeline entry 0)"));
    }

    #[test]
    fn a_deleted_link_is_a_gap() {
        let (mut links, head) = chain(&ENTRIES);
        links.remove(1);
        let found = verify(&links, content_of, Some(head)).unwrap_err();
        assert_eq!(found, Finding::LinkMissing { seq: 2, found: 3 });
        assert_eq!(
            found.to_string(),
            "audit entry #2 is missing: the chain jumps from #1 to #3 (deleted?)"
        );
        links.remove(1);
        assert!(
            verify(&links, content_of, Some(head))
                .unwrap_err()
                .to_string()
                .starts_with("audit entries #2 to #3 are missing")
        );
    }

    #[test]
    fn a_truncated_tail_or_a_changed_head_is_caught() {
        let (mut links, head) = chain(&ENTRIES);
        links.pop();
        let found = verify(&links, content_of, Some(head)).unwrap_err();
        assert!(matches!(found, Finding::HeadMismatch { .. }), "{found:?}");
        assert!(found.to_string().contains("truncated"), "{found}");
        // The whole chain, with the head record gone.
        let (links, head) = chain(&ENTRIES);
        assert!(verify(&links, content_of, None).unwrap_err().to_string().contains("missing"));
        // Same length, another hash.
        let other = Head { seq: head.seq, hash: [9; 32] };
        assert!(
            verify(&links, content_of, Some(other)).unwrap_err().to_string().contains("rewritten")
        );
        // A head behind the chain.
        let behind = Head { seq: 3, hash: links[2].3 };
        assert!(verify(&links, content_of, Some(behind)).unwrap_err().to_string().contains("past"));
    }

    #[test]
    fn a_recorded_head_must_still_be_in_the_chain() {
        let (links, head) = chain(&ENTRIES);
        let at2 = Head { seq: 2, hash: links[1].3 };
        let check = |links: &[(u64, u64, u32, Hash)], head, recorded| {
            let mut v = Verifier::expecting(Some(recorded));
            for &(seq, i, e, h) in links {
                v.link(seq, i, e, &h, content_of(i, e).as_deref())?;
            }
            v.finish(Some(head))
        };
        assert_eq!(check(&links, head, at2), Ok(head));
        assert_eq!(check(&links, head, head), Ok(head));
        // The whole chain rewritten consistently from entry 2 on (other content): intact on its
        // own, but not through the recorded head.
        let mut other = ENTRIES.to_vec();
        other[1].2 = b"{\"b\":\"rewritten\"}";
        let (rewritten, rhead) = chain(&other);
        let content = |i, e| other.iter().find(|x| x.0 == i && x.1 == e).map(|x| x.2.to_vec());
        let mut v = Verifier::expecting(Some(at2));
        let found = rewritten
            .iter()
            .try_for_each(|&(seq, i, e, h)| v.link(seq, i, e, &h, content(i, e).as_deref()))
            .unwrap_err();
        assert!(matches!(found, Finding::Rewritten { seq: 2, .. }), "{found:?}");
        assert!(found.to_string().starts_with("audit entry #2: hash "), "{found}");
        let _ = rhead;
        // A chain cut before the recorded head.
        let found = check(&links[..1], Head { seq: 1, hash: links[0].3 }, at2).unwrap_err();
        assert_eq!(found, Finding::ShorterThanRecorded { expected: 2, last: 1 });
    }

    #[test]
    fn a_head_parses_as_printed() {
        let (_, head) = chain(&ENTRIES);
        let printed = report_json(&Ok(head))["head_record"].as_str().unwrap().to_string();
        assert_eq!(parse_head(&printed), Ok(head));
        for bad in ["", "4", "x:00", "4:abc", &format!("4:{}", "g".repeat(64))] {
            assert!(parse_head(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_report_says_what_and_where() {
        let (_, head) = chain(&ENTRIES);
        let ok = report_json(&Ok(head));
        assert_eq!(ok["valid"], true);
        assert_eq!(ok["entries"], 4);
        assert_eq!(ok["head"], hex(&head.hash));
        let bad = report_json(&Err(Finding::Edited { seq: 57, incident: 12, entry: 3 }));
        assert_eq!(bad["valid"], false);
        assert_eq!(bad["audit_seq"], 57);
        assert_eq!(bad["incident"], 12);
        assert_eq!(bad["timeline_entry"], 3);
        assert!(bad["problem"].as_str().unwrap().starts_with("audit entry #57 (incident 12"));
    }
}
