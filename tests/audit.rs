//! The tamper-evident audit log against the real binary: incidents get timelines through the
//! API, `tocsin audit verify` accepts the untouched store (from the file, and through the
//! running daemon), and names the entry after one is edited, deleted or inserted in the redb
//! file — opened here directly, with table definitions written out as the daemon's.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Daemon, ROUTING_KEY, TOKEN, VIEWER_TOKEN};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The daemon's on-disk format (src/store.rs); a rename there breaks this test on purpose.
const TIMELINE: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("timeline");
const AUDIT: TableDefinition<u64, (u64, u32, [u8; 32])> = TableDefinition::new("audit");
const AUDIT_INDEX: TableDefinition<(u64, u32), u64> = TableDefinition::new("audit_index");
const AUDIT_HEAD: TableDefinition<&str, (u64, [u8; 32])> = TableDefinition::new("audit_head");
const DB_FILE: &str = "tocsin.redb";

struct Verified {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `tocsin audit verify ARGS` (bounded: a verification of a few entries, or one request
/// with the client's own timeout).
fn verify(args: &[&str]) -> Verified {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tocsin"));
    for var in ["TOCSIN_TOKEN", "TOCSIN_LISTEN", "TOCSIN_DATA_DIR"] {
        cmd.env_remove(var);
    }
    let out = cmd.args(["audit", "verify"]).args(args).output().expect("run tocsin audit verify");
    Verified {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn verify_dir(dir: &Path) -> Verified {
    verify(&["--data-dir", dir.to_str().unwrap()])
}

/// One timeline entry as the API shows it.
#[derive(Debug, Clone)]
struct Shown {
    incident: u64,
    entry: u32,
    audit_seq: u64,
    hash: String,
    kind: String,
}

async fn trigger(d: &Daemon, key: &str) -> u64 {
    let body = json!({
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {"summary": format!("{key} is down"), "source": "db1", "severity": "critical"}
    });
    let r = d.post("/v2/enqueue", None, body.to_string()).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let event = &r.event_ids()[0];
    let r = d.get(&format!("/api/v1/events/{event}"), Some(VIEWER_TOKEN)).await;
    r.body["incident_id"].as_u64().unwrap_or_else(|| panic!("no incident: {}", r.text))
}

async fn act(d: &Daemon, id: u64, action: &str) {
    let r = d.post(&format!("/api/v1/incidents/{id}/{action}"), Some(TOKEN), "").await;
    assert_eq!(r.status, 200, "{action} {id}: {}", r.text);
}

async fn timeline(d: &Daemon, id: u64) -> Vec<Shown> {
    let r = d.get(&format!("/api/v1/incidents/{id}"), Some(VIEWER_TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let entries = r.body["timeline"].as_array().expect("timeline").clone();
    entries
        .iter()
        .enumerate()
        .map(|(i, e): (usize, &Value)| Shown {
            incident: id,
            entry: i as u32,
            audit_seq: e["audit_seq"].as_u64().unwrap_or_else(|| panic!("no audit_seq: {e}")),
            hash: e["hash"].as_str().unwrap_or_else(|| panic!("no hash: {e}")).to_string(),
            kind: e["kind"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// The chain recomputed from the file with the documented formula, independently of the
/// daemon's code: (entries, head hash in hex).
fn recompute(dir: &Path) -> (u64, String) {
    let db = Database::open(dir.join(DB_FILE)).expect("open store");
    let txn = db.begin_read().unwrap();
    let chain = txn.open_table(AUDIT).unwrap();
    let timeline = txn.open_table(TIMELINE).unwrap();
    let mut prev = [0u8; 32];
    let mut n = 0;
    for link in chain.iter().unwrap() {
        let (seq, value) = link.unwrap();
        let (incident, entry, stored) = value.value();
        n += 1;
        assert_eq!(seq.value(), n, "links are numbered 1, 2, …");
        let bytes = timeline.get((incident, entry)).unwrap().expect("chained row exists");
        let hash = link_hash(&prev, n, incident, entry, bytes.value());
        assert_eq!(hash, stored, "link #{n}");
        prev = hash;
    }
    assert_eq!(n, timeline.len().unwrap(), "one link per timeline row");
    (n, prev.iter().map(|b| format!("{b:02x}")).collect())
}

fn link_hash(prev: &[u8; 32], n: u64, incident: u64, entry: u32, bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(n.to_be_bytes());
    h.update(incident.to_be_bytes());
    h.update(entry.to_be_bytes());
    h.update(bytes);
    h.finalize().into()
}

/// What a tamperer who knows the format does after editing: recompute every link and the head.
fn rechain(txn: &redb::WriteTransaction) {
    let timeline = txn.open_table(TIMELINE).unwrap();
    let mut chain = txn.open_table(AUDIT).unwrap();
    let links: Vec<(u64, u64, u32)> = chain
        .iter()
        .unwrap()
        .map(|l| {
            let (n, v) = l.unwrap();
            (n.value(), v.value().0, v.value().1)
        })
        .collect();
    let mut prev = [0u8; 32];
    for &(n, incident, entry) in &links {
        let bytes = timeline.get((incident, entry)).unwrap().unwrap().value().to_vec();
        prev = link_hash(&prev, n, incident, entry, &bytes);
        chain.insert(n, (incident, entry, prev)).unwrap();
    }
    txn.open_table(AUDIT_HEAD).unwrap().insert("head", (links.len() as u64, prev)).unwrap();
}

/// A copy of the store in a new directory under `root`, changed by `f` in one transaction.
fn tampered(
    pristine: &Path,
    root: &Path,
    name: &str,
    f: impl FnOnce(&redb::WriteTransaction),
) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(pristine.join(DB_FILE), dir.join(DB_FILE)).unwrap();
    let db = Database::open(dir.join(DB_FILE)).expect("open copy");
    let txn = db.begin_write().unwrap();
    f(&txn);
    txn.commit().unwrap();
    dir
}

fn edit_message(txn: &redb::WriteTransaction, incident: u64, entry: u32, message: &str) {
    let mut t = txn.open_table(TIMELINE).unwrap();
    let mut value: Value = {
        let raw = t.get((incident, entry)).unwrap().expect("entry to edit");
        serde_json::from_slice(raw.value()).unwrap()
    };
    assert_ne!(value["message"], message);
    value["message"] = json!(message);
    t.insert((incident, entry), serde_json::to_vec(&value).unwrap().as_slice()).unwrap();
}

fn assert_fails_naming(v: &Verified, expected: &str) {
    assert_eq!(v.code, Some(1), "stdout: {}\nstderr: {}", v.stdout, v.stderr);
    assert!(v.stderr.contains(expected), "expected {expected:?} in:\n{}", v.stderr);
    assert!(!v.stdout.contains("intact"), "{}", v.stdout);
}

#[tokio::test]
async fn verify_accepts_the_untouched_chain_and_names_the_entry_that_was_tampered_with() {
    let mut d = Daemon::start("");
    let url = format!("http://{}", d.addr);
    // Three incidents with timelines of different lengths: triggered, acknowledged,
    // acknowledged then resolved; one trigger after the others so links interleave.
    let a = trigger(&d, "audit/a").await;
    let b = trigger(&d, "audit/b").await;
    let c = trigger(&d, "audit/c").await;
    act(&d, b, "ack").await;
    act(&d, c, "ack").await;
    act(&d, c, "resolve").await;
    let mut shown = Vec::new();
    for id in [a, b, c] {
        shown.extend(timeline(&d, id).await);
    }
    assert!(shown.len() >= 6, "{shown:?}");
    let mut seqs: Vec<u64> = shown.iter().map(|s| s.audit_seq).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=shown.len() as u64).collect::<Vec<_>>(), "one link per entry");
    assert!(
        shown.iter().all(|s| s.hash.len() == 64 && s.hash.bytes().all(|c| c.is_ascii_hexdigit()))
    );
    let last = shown.iter().max_by_key(|s| s.audit_seq).unwrap().clone();

    // (c) Through the running daemon: the file is locked, so the CLI asks the daemon.
    let dir = d.data_dir.clone();
    let v = verify(&["--data-dir", dir.to_str().unwrap(), "--url", &url, "--token", TOKEN]);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
    assert!(v.stderr.contains("held by a running daemon"), "{}", v.stderr);
    let intact = format!("audit log intact: {} entries; head hash {}", shown.len(), last.hash);
    assert!(v.stdout.contains(&intact), "{}", v.stdout);
    let v = verify(&["--url", &url, "--token", TOKEN]);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
    assert!(v.stdout.contains(&intact), "{}", v.stdout);
    // The endpoint is for admins only.
    let v = verify(&["--url", &url, "--token", VIEWER_TOKEN]);
    assert_eq!(v.code, Some(2), "{}{}", v.stdout, v.stderr);
    assert!(v.stderr.contains("403"), "{}", v.stderr);

    assert_eq!(d.terminate(), Some(0));

    // From the file, with the daemon stopped; the chain is the documented formula.
    let v = verify_dir(&dir);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
    assert!(v.stdout.contains(&intact), "{}", v.stdout);
    assert_eq!(recompute(&dir), (shown.len() as u64, last.hash.clone()));

    let work = tempfile::tempdir().unwrap();
    // An entry in the middle of the chain, not the last one.
    let victim = shown.iter().find(|s| s.audit_seq == 2).unwrap().clone();
    let named = format!(
        "audit entry #{} (incident {}, timeline entry {})",
        victim.audit_seq, victim.incident, victim.entry
    );

    // (a) One entry's message edited.
    let edited = tampered(&dir, work.path(), "edited", |txn| {
        edit_message(txn, victim.incident, victim.entry, "nothing happened here");
    });
    assert_fails_naming(
        &verify_dir(&edited),
        &format!("{named}: content does not match its hash (edited?)"),
    );

    // (b) One entry deleted from the timeline, its link left in place.
    let deleted = tampered(&dir, work.path(), "deleted", |txn| {
        txn.open_table(TIMELINE).unwrap().remove((victim.incident, victim.entry)).unwrap();
    });
    assert_fails_naming(
        &verify_dir(&deleted),
        &format!("{named}: the timeline entry is missing (deleted?)"),
    );

    // (b') Deleted together with its link and index row: a gap in the chain.
    let unlinked = tampered(&dir, work.path(), "unlinked", |txn| {
        let key = (victim.incident, victim.entry);
        txn.open_table(TIMELINE).unwrap().remove(key).unwrap();
        txn.open_table(AUDIT).unwrap().remove(victim.audit_seq).unwrap();
        txn.open_table(AUDIT_INDEX).unwrap().remove(key).unwrap();
    });
    assert_fails_naming(
        &verify_dir(&unlinked),
        &format!(
            "audit entry #{} is missing: the chain jumps from #1 to #3 (deleted?)",
            victim.audit_seq
        ),
    );

    // The last entry removed with its link: a truncated tail.
    let truncated = tampered(&dir, work.path(), "truncated", |txn| {
        let key = (last.incident, last.entry);
        txn.open_table(TIMELINE).unwrap().remove(key).unwrap();
        txn.open_table(AUDIT).unwrap().remove(last.audit_seq).unwrap();
        txn.open_table(AUDIT_INDEX).unwrap().remove(key).unwrap();
    });
    assert_fails_naming(&verify_dir(&truncated), "(truncated?)");

    // An entry slipped into an incident's timeline.
    let next = shown.iter().filter(|s| s.incident == a).count() as u32;
    let inserted = tampered(&dir, work.path(), "inserted", |txn| {
        let mut t = txn.open_table(TIMELINE).unwrap();
        let raw = t.get((a, 0)).unwrap().unwrap().value().to_vec();
        t.insert((a, next), raw.as_slice()).unwrap();
    });
    assert_fails_naming(
        &verify_dir(&inserted),
        &format!("incident {a}, timeline entry {next}: not in the audit chain (inserted?)"),
    );

    // Edited, then the whole chain recomputed with the head: self-consistent, so verify alone
    // passes (the documented limit) — but not against the head recorded before.
    let record = format!("{}:{}", shown.len(), last.hash);
    let rewritten = tampered(&dir, work.path(), "rewritten", |txn| {
        edit_message(txn, victim.incident, victim.entry, "nothing happened here");
        rechain(txn);
    });
    assert_eq!(verify_dir(&rewritten).code, Some(0), "a full rewrite is self-consistent");
    let v = verify(&["--data-dir", rewritten.to_str().unwrap(), "--expect-head", &record]);
    assert_fails_naming(&v, &format!("audit entry #{}: hash ", shown.len()));
    assert!(v.stderr.contains("chain rewritten since it was recorded"), "{}", v.stderr);

    // The pristine store still verifies (the copies were independent), also against the
    // recorded head, which verify prints for exactly this.
    let v = verify(&["--data-dir", dir.to_str().unwrap(), "--expect-head", &record]);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
    assert!(v.stdout.contains(&format!("--expect-head {record}")), "{}", v.stdout);

    // (c) A daemon serving the edited store reports the same entry through the API and
    // shows the hash it was chained with; after kill -9 the file still verifies (and fails):
    // redb rebuilds its allocator state first, which the CLI notes on stderr.
    let mut d = Daemon::on(&d.config, &edited).start();
    let url = format!("http://{}", d.addr);
    let v = verify(&["--url", &url, "--token", TOKEN]);
    assert_fails_naming(&v, &format!("{named}: content does not match its hash (edited?)"));
    // A daemon serving the rewritten copy: intact on its own, not through the recorded head.
    let mut r = Daemon::on(&d.config, &rewritten).start();
    let rurl = format!("http://{}", r.addr);
    assert_eq!(verify(&["--url", &rurl, "--token", TOKEN]).code, Some(0));
    let v = verify(&["--url", &rurl, "--token", TOKEN, "--expect-head", &record]);
    assert_fails_naming(&v, "chain rewritten since it was recorded");
    let bad = r.get("/api/v1/audit/verify?expect_head=7:nothex", Some(TOKEN)).await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert_eq!(bad.body["field"], "expect_head", "{}", bad.text);
    assert_eq!(r.terminate(), Some(0));
    let served = timeline(&d, victim.incident).await;
    assert_eq!(served[victim.entry as usize].hash, victim.hash);
    assert_eq!(served[victim.entry as usize].kind, victim.kind);
    d.kill9();
    assert_fails_naming(
        &verify_dir(&edited),
        &format!("{named}: content does not match its hash (edited?)"),
    );
}

#[test]
fn verify_without_a_store_cannot_verify() {
    let dir = tempfile::tempdir().unwrap();
    let v = verify_dir(dir.path());
    assert_eq!(v.code, Some(2), "{}{}", v.stdout, v.stderr);
    assert!(v.stderr.contains("no store at"), "{}", v.stderr);
    assert!(!dir.path().join(DB_FILE).exists(), "verify must not create a store");
}
