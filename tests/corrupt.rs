//! A damaged data file (issue 17, item 6): one zeroed page of `tocsin.redb`, as a failing disk
//! or a careless copy leaves it. The daemon does not pretend: it refuses to start on a file it
//! cannot open, saying why in one line (no panic); on one it opens but cannot write, it stays
//! up, reads, and is not ready (log, `/-/ready`, metrics). The tools report the damage as an
//! error (exit 2 / 1), never a panic (exit 101). (A full disk, the other store that cannot
//! write, is `tests/diskfull.rs`; a panic at the writer boundary is a unit test in
//! `src/store.rs`.)
//!
//! Which page breaks what depends on redb's layout, so the test finds its pages: it writes a
//! store through the daemon, then, in this process, zeroes one page at a time in copies and
//! asks the store (the real code) what still works, and picks a page for each case.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Daemon, TOKEN, VIEWER_TOKEN};
use serde_json::json;
use tocsin::store::{self, AdminReader, EventQuery, EventReader, IncidentReader, Store};

const PAGE: u64 = 4096;

/// A copy of `pristine` in a new directory with page `page` (counted from the start) zeroed.
fn damaged_copy(pristine: &Path, page: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(store::DB_FILE);
    std::fs::copy(pristine, &file).unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.seek(SeekFrom::Start(page * PAGE)).unwrap();
    f.write_all(&[0u8; PAGE as usize]).unwrap();
    f.sync_all().unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

/// `f`'s answer, `false` if it failed or panicked.
fn works<T, E>(f: impl FnOnce() -> Result<T, E>) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok_and(|r| r.is_ok())
}

/// What still works on a copy with `page` zeroed: (the store opens and its incidents read,
/// its events read).
fn what_works(pristine: &Path, page: u64) -> (bool, bool) {
    let (_dir, path) = damaged_copy(pristine, page);
    let opened = std::panic::catch_unwind(|| Store::open(&path));
    let Ok(Ok(store)) = opened else { return (false, false) };
    let incidents = works(|| store.incidents(None, 1000, |_| true))
        && works(|| store.open_incidents())
        && works(|| store.maintenance_windows())
        && works(|| store.overrides());
    let query = EventQuery { limit: 1000, ..EventQuery::default() };
    let events = works(|| store.events(&query));
    (incidents, events)
}

async fn alert(d: &Daemon, n: usize) -> common::Reply {
    let body = json!([{
        "labels": {"alertname": format!("Damage{n}"), "instance": format!("db{n}")},
        "annotations": {"summary": format!("disk trouble #{n}"), "pad": "x".repeat(1000)},
    }]);
    d.post("/api/v2/alerts", Some(TOKEN), body.to_string()).await
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_an_error_the_daemon_and_the_tools_say_clearly() {
    // A store with some history, closed cleanly.
    let mut d = Daemon::start("");
    for n in 0..40 {
        assert_eq!(alert(&d, n).await.status, 200);
    }
    assert_eq!(d.terminate(), Some(0));
    let pristine_dir = tempfile::tempdir().unwrap();
    let pristine = pristine_dir.path().join(store::DB_FILE);
    std::fs::copy(d.data_dir.join(store::DB_FILE), &pristine).unwrap();
    let pages = std::fs::metadata(&pristine).unwrap().len() / PAGE;

    // redb's panics on the damaged pages, in this process, are expected: keep them quiet.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    // From the last page (the case reported) backwards. Which pages a store reads when it
    // opens depends on the build: redb's debug builds read every live page then, release
    // builds only what they need, so a page may break only the writes that come later.
    let survey: Vec<(u64, (bool, bool))> =
        (1..pages).rev().map(|p| (p, what_works(&pristine, p))).collect();
    let open_breaks = survey.iter().find(|(_, w)| *w == (false, false)).map(|(p, _)| *p);
    let writes_break = survey.iter().find(|(_, w)| *w == (true, false)).map(|(p, _)| *p);
    let audit_breaks = (1..pages).rev().find(|&p| {
        let (_dir, path) = damaged_copy(&pristine, p);
        !works(|| store::verify_audit_file(&path, None))
    });
    let report_breaks = (1..pages).rev().find(|&p| {
        let (_dir, path) = damaged_copy(&pristine, p);
        !works(|| store::report_data_file(&path, jiff::Timestamp::UNIX_EPOCH))
    });
    std::panic::set_hook(hook);
    println!(
        "{pages} pages; open: {open_breaks:?}, writes: {writes_break:?}, audit: {audit_breaks:?}, report: {report_breaks:?}"
    );
    let config = d.config.clone();

    // A store that cannot be opened: the daemon does not start, and says why (no panic).
    let page = open_breaks.expect("a page whose loss the store notices when it opens");
    let (_keep, data) = damaged_copy(&pristine, page);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("TOCSIN_LISTEN", "127.0.0.1:0")
        .env("TOCSIN_DATA_DIR", &data)
        .env("TOCSIN_TOKEN", TOKEN)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("tocsin: ") && last.contains("tocsin.redb") && last.contains("damaged"),
        "the last line names the file and the damage: {stderr}"
    );

    // A store that opens but cannot write (release builds): not ready, says why, still reads.
    if let Some(page) = writes_break {
        let (_keep, data) = damaged_copy(&pristine, page);
        let d = Daemon::on(&config, &data).env("TOCSIN_LOG", "info").captured().start();
        let r = alert(&d, 1000).await;
        assert_eq!(r.status, 503, "{}", r.text);
        assert!(r.text.contains("damaged"), "the answer says why: {}", r.text);
        let ready = d.get("/-/ready", None).await;
        assert_eq!(ready.status, 503, "{}", ready.text);
        assert!(ready.body["reason"].as_str().unwrap_or("").contains("damaged"), "{}", ready.text);
        assert_eq!(d.get("/-/healthy", None).await.status, 200);
        let list = d.get("/api/v1/incidents", Some(VIEWER_TOKEN)).await;
        assert_eq!(list.status, 200, "{}", list.text);
        let started = std::time::Instant::now();
        assert_eq!(alert(&d, 1001).await.status, 503);
        assert!(started.elapsed() < Duration::from_secs(5));
        let metrics = d.get("/metrics", None).await.text;
        assert_eq!(metric(&metrics, "tocsin_ready"), 0.0, "{metrics}");
        assert_eq!(metric(&metrics, "tocsin_store_writable"), 0.0, "{metrics}");
        assert!(metric(&metrics, "tocsin_journal_commit_failures_total") >= 2.0, "{metrics}");
        let text = std::fs::read_to_string(d.log()).unwrap();
        assert!(text.contains("the store cannot write: the file is damaged"), "{text}");
    } else {
        println!("no page breaks only the writes in this build (redb reads every page on open)");
    }

    // The tools on damaged files: an error naming the damage, not a crash.
    let tool = |args: &[&str], dir: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(args)
            .arg("--data-dir")
            .arg(dir)
            .env_remove("TOCSIN_TOKEN")
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let page = audit_breaks.expect("a page the audit walk reads");
    let (_keep, dir) = damaged_copy(&pristine, page);
    let (code, stderr) = tool(&["audit", "verify"], &dir);
    assert_eq!(code, Some(2), "audit verify on a damaged file: {stderr}");
    assert!(stderr.contains("cannot verify") && stderr.contains("damaged"), "{stderr}");
    let page = report_breaks.expect("a page the report reads");
    let (_keep, dir) = damaged_copy(&pristine, page);
    let (code, stderr) = tool(&["report"], &dir);
    assert_eq!(code, Some(1), "report on a damaged file: {stderr}");
    assert!(stderr.contains("cannot read the store") && stderr.contains("damaged"), "{stderr}");
}
