//! Data files written by an earlier version open and read back unchanged.
//!
//! `tests/fixtures/store-compat/` holds a data directory (`data/`: `tocsin.redb`, the link key
//! and the generated token) written by the release named in its `VERSION` file, the config it
//! ran with (`tocsin.yaml`, with `@SMTP_PORT@` and `@RULES_DIR@` filled in at run time), the
//! manual clock's time when it stopped (`CLOCK`), and `expected.json`: what that same binary
//! answered, read back from a fresh copy of the file, on every read endpoint and both offline
//! tools. The test starts today's binary on another fresh copy, at the same clock, asks the same
//! questions and compares the answers exactly.
//!
//! The fixture exercises every table family: events of each format, incidents with their
//! timeline, acknowledgements, notes, roles, awareness, notices (one marked sent), escalation
//! timers still pending, a lease (`endsAt`) that resolved an incident, a declared incident, an
//! after-action review with an action item, an override, a maintenance window, delivered and
//! dead-lettered notifications, and the audit chain over all of it.
//!
//! To freeze a new version's file (only when the row encodings change on purpose, with a
//! migration): `cargo test --test store_compat -- --ignored write_store_fixture`, with the
//! binary of the version to freeze, then commit the directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::smtp::smtp_server;
use common::{Daemon, RESPONDER, ROUTING_KEY, TOKEN, VIEWER};
use serde_json::{Map, Value, json};

const T0: &str = "2026-03-02T09:00:00Z";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-compat")
}

/// The config the fixture was written with; `@SMTP_PORT@` and `@RULES_DIR@` filled in.
const CONFIG: &str = r#"log_format: text
sources:
  - name: default
    token: ${TOCSIN_TOKEN}
    routing_key: test-routing-key-abcdef
    allow: [alerts, reports, events]
users:
  - name: admin
    token: ${TOCSIN_TOKEN}
    roles: [admin]
    permissions: [pii]
  - {name: rita, token: responder-token-0123456789, roles: [responder], permissions: [pii]}
  - {name: vic, token: viewer-token-0123456789, roles: [viewer]}
rules: {dir: "@RULES_DIR@"}
people:
  - {id: ana, name: Ana, email: ana@example.com}
  - {id: ben, name: Ben, email: ben@example.com}
  - {id: cora, name: Cora, email: cora@example.com}
  - {id: lena, name: Lena, email: lena@example.com}
  - {id: omar, name: Omar, email: omar@example.com}
rotations:
  - {name: primary, members: [ana, ben], shift: daily, handoff: "09:00", zone: America/New_York, start: 2026-03-01}
roles:
  incident_lead: {rotation: primary}
  legal_liaison: {person: lena}
  communications_lead: {person: cora}
policies:
  - name: page
    steps:
      - notify: [{role: incident_lead, channels: [email]}, {webhook: gone}]
        wait: 5m
      - notify: [{person: omar, channels: [email]}]
        wait: 10m
    repeat: 1
default_policy: page
notices:
  - name: "GDPR Art. 33 supervisory authority notice"
    when: {sensitivity: [personal, financial]}
    deadline: 72h
    mandatory: true
    reminders: [24h, 48h, 66h]
notifications:
  email: {relay: 127.0.0.1, port: @SMTP_PORT@, tls: none, from: "Tocsin <tocsin@example.com>", timeout: 5s}
  webhooks:
    - {name: gone, url: "http://127.0.0.1:9/hook", format: tocsin, allow_private: true, timeout: 2s}
  delivery: {initial_backoff: 100ms, max_backoff: 1s, attempt_timeout: 2s, lease: 5s, max_attempts: 2}
  rate_limits: {email: {}, sms: {}, webhook: {}, log: {}}
"#;

fn config_for(smtp_port: u16) -> String {
    CONFIG
        .replace("@SMTP_PORT@", &smtp_port.to_string())
        .replace("@RULES_DIR@", concat!(env!("CARGO_MANIFEST_DIR"), "/rules"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "notifications.jsonl" {
            continue;
        }
        std::fs::copy(entry.path(), to.join(&name)).unwrap();
    }
}

/// Starts the binary on a copy of `data` with `config`, on the manual clock at `clock`.
fn start_on_copy(data: &Path, config: &str, clock: &str) -> (Daemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    copy_dir(data, &data_dir);
    let config_path = dir.path().join("tocsin.yaml");
    std::fs::write(&config_path, config).unwrap();
    let d = Daemon::on(&config_path, &data_dir).env("TOCSIN_FAKE_CLOCK", clock).start();
    (d, dir)
}

/// Every read the API and the tools offer over what the fixture holds, as one JSON object keyed
/// by the question asked.
async fn read_everything(d: &Daemon) -> Value {
    let mut out = Map::new();
    let mut ask = |key: String, v: Value| {
        out.insert(key, v);
    };
    let get = |path: String, token: &'static str| async move {
        let r = d.get(&path, Some(token)).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.text);
        if r.body.is_null() { Value::String(r.text) } else { r.body }
    };
    let incidents = get("/api/v1/incidents?limit=1000".into(), TOKEN).await;
    let ids: Vec<u64> = incidents["incidents"]
        .as_array()
        .unwrap_or_else(|| panic!("no incidents: {incidents}"))
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect();
    assert!(ids.len() >= 6, "the fixture holds at least six incidents: {incidents}");
    ask("incidents".into(), incidents);
    ask("incidents as viewer".into(), get("/api/v1/incidents?limit=1000".into(), VIEWER.1).await);
    for id in &ids {
        ask(format!("incident {id}"), get(format!("/api/v1/incidents/{id}"), TOKEN).await);
        ask(
            format!("incident {id} as viewer"),
            get(format!("/api/v1/incidents/{id}"), VIEWER.1).await,
        );
    }
    let events = get("/api/v1/events?limit=1000".into(), TOKEN).await;
    for e in events["events"].as_array().unwrap() {
        let id = e["id"].as_str().unwrap();
        ask(format!("event {id}"), get(format!("/api/v1/events/{id}"), TOKEN).await);
    }
    ask("events".into(), events);
    ask("notifications".into(), get("/api/v1/notifications?limit=1000".into(), TOKEN).await);
    for state in ["pending", "dead", "delivered"] {
        ask(
            format!("notifications {state}"),
            get(format!("/api/v1/notifications?limit=1000&state={state}"), TOKEN).await,
        );
    }
    ask("report".into(), get("/api/v1/report?since=2026-01-01T00:00:00Z".into(), TOKEN).await);
    ask(
        "report as viewer".into(),
        get("/api/v1/report?since=2026-01-01T00:00:00Z".into(), VIEWER.1).await,
    );
    ask("audit".into(), get("/api/v1/audit/verify".into(), TOKEN).await);
    ask("rotations".into(), get("/api/v1/rotations".into(), TOKEN).await);
    ask("maintenance".into(), get("/api/v1/maintenance".into(), TOKEN).await);
    ask("webhooks".into(), get("/api/v1/webhooks".into(), TOKEN).await);
    ask("review 1".into(), get("/api/v1/incidents/1/review?format=json".into(), TOKEN).await);
    ask("review 1 markdown".into(), get("/api/v1/incidents/1/review".into(), TOKEN).await);
    Value::Object(out)
}

/// What the offline tools print reading the data directory (no daemon holds it).
fn read_offline(data_dir: &Path, config: &Path, clock: &str) -> Value {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(args)
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir)
            .env("TOCSIN_FAKE_CLOCK", clock)
            .env("TOCSIN_TOKEN", TOKEN)
            .output()
            .unwrap();
        assert!(out.status.success(), "tocsin {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let report = run(&["report", "--since", "2026-01-01T00:00:00Z", "--format", "json"]);
    json!({
        "audit verify": run(&["audit", "verify"]),
        "report": serde_json::from_str::<Value>(&report).unwrap_or(Value::String(report)),
    })
}

/// Reads the fixture with this binary, online then offline, each on its own fresh copy.
async fn read_fixture() -> Value {
    let dir = fixture_dir();
    let clock = std::fs::read_to_string(dir.join("CLOCK")).unwrap().trim().to_string();
    // Nothing is due at the fixture's clock, so nothing is sent; the port is closed anyway.
    let config = config_for(9);
    let (mut d, _keep) = start_on_copy(&dir.join("data"), &config, &clock);
    let online = read_everything(&d).await;
    assert_eq!(d.terminate(), Some(0));

    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&dir.join("data"), &tmp.path().join("data"));
    let config_path = tmp.path().join("tocsin.yaml");
    std::fs::write(&config_path, &config).unwrap();
    let offline = read_offline(&tmp.path().join("data"), &config_path, &clock);
    json!({"online": online, "offline": offline})
}

/// The first place two JSON values differ, as a path.
fn first_difference(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let (p, q) = (x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null));
                if let Some(d) = first_difference(&format!("{path}.{k}"), p, q) {
                    return Some(d);
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(&format!("{path}[{i}]"), p, q)),
        _ if a == b => None,
        _ => Some(format!("{path}: expected {a}, got {b}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_file_written_by_an_earlier_version_reads_back_unchanged() {
    let dir = fixture_dir();
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let got = read_fixture().await;
    if let Some(d) = first_difference("", &expected, &got) {
        panic!(
            "a data file written by {} reads back differently: {d}",
            std::fs::read_to_string(dir.join("VERSION")).unwrap().trim()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Writing the fixture (run by hand with the version to freeze; see the module comment)
// ---------------------------------------------------------------------------------------------

async fn accepted(d: &Daemon, path: &str, token: Option<&str>, body: Value) -> u64 {
    let r = d.post(path, token, body.to_string()).await;
    d.incident_of(&r).await
}

async fn ok(d: &Daemon, path: &str, token: &str, body: Value, status: u16) {
    let r = d.post(path, Some(token), body.to_string()).await;
    assert_eq!(r.status, status, "POST {path}: {}", r.text);
}

/// Waits until no notification is pending, queued, sending or retrying, moving the manual clock
/// a second at a time so retries come due.
async fn settle(d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut busy = 0;
        for state in ["pending", "queued", "sending", "retrying"] {
            let r = d.get(&format!("/api/v1/notifications?state={state}"), Some(TOKEN)).await;
            busy += r.body["notifications"].as_array().map_or(0, |a| a.len());
        }
        if busy == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "notifications did not settle");
        d.advance("1s").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes tests/fixtures/store-compat: run by hand to freeze a version's data file"]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn write_store_fixture() {
    let (smtp_port, _mails) = smtp_server();
    let tmp = tempfile::tempdir().unwrap();
    let config_path = tmp.path().join("tocsin.yaml");
    std::fs::write(&config_path, config_for(smtp_port)).unwrap();
    let data_dir = tmp.path().join("data");
    let mut d = Daemon::on(&config_path, &data_dir).env("TOCSIN_FAKE_CLOCK", T0).start();

    // Every ingest format.
    let payments = accepted(
        &d,
        "/api/v2/alerts",
        Some(TOKEN),
        json!([{
            "labels": {"alertname": "CardPaymentsFailing", "service": "payments", "severity": "critical"},
            "annotations": {"summary": "Card payments failing", "runbook_url": "https://runbooks.example.com/payments"},
            "startsAt": "2026-03-02T08:58:00Z",
        }]),
    )
    .await;
    let lease = accepted(
        &d,
        "/api/v2/alerts",
        Some(TOKEN),
        json!([{
            "labels": {"alertname": "QueueSlow", "service.name": "queue", "severity": "warning"},
            "annotations": {"summary": "Queue slow"},
            "startsAt": "2026-03-02T08:59:00Z",
            "endsAt": "2026-03-02T09:04:00Z",
        }]),
    )
    .await;
    let pd = accepted(
        &d,
        "/v2/enqueue",
        None,
        json!({"routing_key": ROUTING_KEY, "event_action": "trigger", "dedup_key": "srv01/mysql",
               "payload": {"summary": "DISK at 99% on db1", "source": "db1", "severity": "error"},
               "links": [{"href": "https://grafana.example.com/d/db", "text": "dashboard"}]}),
    )
    .await;
    let r = d
        .post(
            "/v2/enqueue",
            None,
            json!({"routing_key": ROUTING_KEY, "event_action": "acknowledge", "dedup_key": "srv01/mysql"})
                .to_string(),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let canonical = accepted(
        &d,
        "/api/v1/events",
        Some(TOKEN),
        json!({"summary": "Nightly backup of nas1 failed", "severity": "error", "service": "backup",
               "labels": {"job": "backup", "host": "nas1"}, "details": {"exit_code": 2}}),
    )
    .await;
    let report = accepted(
        &d,
        "/api/v1/reports",
        Some(TOKEN),
        json!({"reporter": {"name": "Dana Reyes", "email": "dana@support.example.com"},
               "customer": {"id": "C-1", "name": "Jo Example", "email": "jo@example.org", "phone": "+15551234567"},
               "service": "accounts", "summary": "Customer sees another customer's address",
               "verified": true, "ticket_id": "SUP-1", "severity": "low"}),
    )
    .await;
    let webhook = accepted(
        &d,
        "/api/v1/alertmanager",
        Some(TOKEN),
        serde_json::from_slice(&common::fixture("alertmanager-webhook/v4.json")).unwrap(),
    )
    .await;
    let declared = {
        let r = d
            .post(
                "/api/v1/incidents",
                Some(RESPONDER.1),
                json!({"title": "Researcher reports an exposed storage bucket",
                       "description": "A public bucket with invoices.",
                       "impact": {"services": ["billing"], "customer_impact": true,
                                  "data_sensitivity": "financial", "estimated_reach": 1200},
                       "severity": "sev2"})
                .to_string(),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["incident_id"].as_u64().unwrap()
    };
    assert_eq!(
        [payments, lease, pd, canonical, report, webhook, declared].len(),
        7,
        "each opened its incident"
    );
    settle(&d).await;

    // People's actions.
    d.advance("2m").await;
    ok(&d, &format!("/api/v1/incidents/{payments}/ack"), RESPONDER.1, json!({}), 200).await;
    ok(
        &d,
        &format!("/api/v1/incidents/{payments}/notes"),
        TOKEN,
        json!({"text": "Rolled back 4.2"}),
        200,
    )
    .await;
    ok(
        &d,
        &format!("/api/v1/incidents/{payments}/roles"),
        TOKEN,
        json!({"role": "technical_lead", "person": "ben"}),
        200,
    )
    .await;
    ok(
        &d,
        &format!("/api/v1/incidents/{report}/awareness"),
        TOKEN,
        json!({"at": "2026-03-02T08:30:00Z", "note": "desk saw it first"}),
        200,
    )
    .await;
    ok(
        &d,
        &format!("/api/v1/incidents/{declared}/notices/0/sent"),
        TOKEN,
        json!({"reference": "DPA-7"}),
        200,
    )
    .await;
    ok(
        &d,
        "/api/v1/rotations/primary/overrides",
        TOKEN,
        json!({"person": "ben", "until": "2026-03-03T09:00:00Z", "reason": "swap"}),
        201,
    )
    .await;
    ok(
        &d,
        "/api/v1/maintenance",
        TOKEN,
        json!({"name": "db upgrade", "duration": "6h", "service": "db"}),
        201,
    )
    .await;
    settle(&d).await;

    // The lease runs out, the second step fires on what nobody acknowledged.
    d.advance("8m").await;
    settle(&d).await;

    // Resolve, review and an action item.
    ok(&d, &format!("/api/v1/incidents/{payments}/resolve"), TOKEN, json!({}), 200).await;
    let r = d
        .client
        .put(d.url(&format!("/api/v1/incidents/{payments}/review")))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(json!({"summary": "Card payments failed for 12 minutes.", "went_badly": "Paging took 5m."}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    ok(
        &d,
        &format!("/api/v1/incidents/{payments}/actions"),
        TOKEN,
        json!({"title": "Alert on card error rate", "owner": "omar", "due": "2026-03-05T12:00:00Z"}),
        201,
    )
    .await;
    d.advance("1m").await;
    settle(&d).await;
    let clock = d.post("/-/clock", Some(TOKEN), json!({"advance": "1s"}).to_string()).await;
    let now = clock.body["now"].as_str().unwrap_or_else(|| panic!("{}", clock.text)).to_string();
    let lease_state = d.get(&format!("/api/v1/incidents/{lease}"), Some(TOKEN)).await;
    assert_eq!(lease_state.body["status"], "resolved", "the lease ran out: {}", lease_state.text);
    let dead = d.get("/api/v1/notifications?state=dead", Some(TOKEN)).await;
    assert!(!dead.body["notifications"].as_array().unwrap().is_empty(), "{}", dead.text);
    assert_eq!(d.terminate(), Some(0));

    let out = fixture_dir();
    let _ = std::fs::remove_dir_all(&out);
    copy_dir(&data_dir, &out.join("data"));
    std::fs::write(out.join("CLOCK"), format!("{now}\n")).unwrap();
    std::fs::write(
        out.join("VERSION"),
        format!("tocsin {} at commit {}\n", env!("CARGO_PKG_VERSION"), git_head()),
    )
    .unwrap();
    let expected = read_fixture().await;
    std::fs::write(
        out.join("expected.json"),
        serde_json::to_string_pretty(&expected).unwrap() + "\n",
    )
    .unwrap();
}

fn git_head() -> String {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
