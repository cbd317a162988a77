//! Incidents end to end: dedup and lifecycle with PagerDuty and Alertmanager semantics,
//! acknowledge/resolve through the API, rules scoring live events, rule failures, hot reload
//! and auto-resolve — against the real binary.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, ROUTING_KEY, TOKEN, VIEWER_TOKEN, eventually};
use serde_json::{Value, json};

const RESPONDER_TOKEN: &str = "test-responder-token";

fn with_responder(extra: &str) -> String {
    format!("  - name: oncall\n    token: {RESPONDER_TOKEN}\n    roles: [responder]\n{extra}")
}

/// Users are the last list in `config_yaml`, so extra users can be appended to it.
fn start(extra_users_then_keys: &str) -> Daemon {
    Daemon::start(&with_responder(extra_users_then_keys))
}

fn pd(action: &str, key: &str) -> String {
    json!({
        "routing_key": ROUTING_KEY,
        "event_action": action,
        "dedup_key": key,
        "payload": {"summary": format!("{key} is down"), "source": "db1", "severity": "critical"}
    })
    .to_string()
}

async fn incident_of(d: &Daemon, event_id: &str) -> Option<u64> {
    let r = d.get(&format!("/api/v1/events/{event_id}"), Some(VIEWER_TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["incident_id"].as_u64()
}

async fn incident(d: &Daemon, id: u64) -> Value {
    let r = d.get(&format!("/api/v1/incidents/{id}"), Some(VIEWER_TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

async fn post_pd(d: &Daemon, action: &str, key: &str) -> String {
    let r = d.post("/v2/enqueue", None, pd(action, key)).await;
    assert_eq!(r.status, 202, "{}", r.text);
    r.event_ids()[0].clone()
}

#[tokio::test]
async fn pagerduty_semantics_dedup_acknowledge_resolve_and_reopen() {
    let d = start("");
    let first = post_pd(&d, "trigger", "db1/disk").await;
    let id = incident_of(&d, &first).await.expect("trigger opens an incident");
    let second = post_pd(&d, "trigger", "db1/disk").await;
    assert_eq!(incident_of(&d, &second).await, Some(id), "same key joins the open incident");
    let inc = incident(&d, id).await;
    assert_eq!(inc["count"], 2);
    assert_eq!(inc["status"], "triggered");
    assert_eq!(inc["source"], "default");
    assert!(inc["decision"]["severity"].is_string());
    // Repeated triggers do not add timeline entries of their own.
    let opened =
        inc["timeline"].as_array().unwrap().iter().filter(|e| e["kind"] == "opened").count();
    assert_eq!(opened, 1);

    post_pd(&d, "acknowledge", "db1/disk").await;
    let inc = incident(&d, id).await;
    assert_eq!(inc["status"], "acknowledged");
    assert_eq!(inc["acknowledged"]["by"], "source:default");

    post_pd(&d, "resolve", "db1/disk").await;
    assert_eq!(incident(&d, id).await["status"], "resolved");

    // A trigger after the resolve opens a new incident.
    let again = post_pd(&d, "trigger", "db1/disk").await;
    let new_id = incident_of(&d, &again).await.unwrap();
    assert_ne!(new_id, id);
    assert_eq!(incident(&d, new_id).await["count"], 1);

    // Acknowledge or resolve for a key with no open incident: stored, otherwise ignored.
    let stray = post_pd(&d, "resolve", "never/seen").await;
    assert_eq!(incident_of(&d, &stray).await, None);
    let stray = post_pd(&d, "acknowledge", "never/seen").await;
    assert_eq!(incident_of(&d, &stray).await, None);

    let m = d.get("/metrics", None).await.text;
    assert!(m.contains("tocsin_incidents_opened_total"), "{m}");
    assert!(m.contains("tocsin_incidents_open 1"), "{m}");
}

#[tokio::test]
async fn alertmanager_resolves_close_the_incident() {
    let d = start("");
    let labels = json!({"alertname": "DiskFull", "instance": "db1", "severity": "critical"});
    let firing = json!([{"labels": labels, "startsAt": "2026-11-27T01:00:00Z"}]).to_string();
    let r = d.post("/api/v2/alerts", Some(TOKEN), firing.clone()).await;
    let id = incident_of(&d, &r.event_ids()[0]).await.unwrap();
    // Prometheus re-sends firing alerts: they count, they do not open new incidents.
    let r = d.post("/api/v2/alerts", Some(TOKEN), firing).await;
    assert_eq!(incident_of(&d, &r.event_ids()[0]).await, Some(id));
    let inc = incident(&d, id).await;
    assert_eq!(inc["count"], 2);
    assert_eq!(inc["dedup_key"], "e94c744ae3d44df8");
    assert_eq!(inc["detected_at"], "2026-11-27T01:00:00Z");

    let resolved = json!([{"labels": labels, "startsAt": "2026-11-27T01:00:00Z", "endsAt": "2026-11-27T01:05:00Z"}]);
    d.post("/api/v2/alerts", Some(TOKEN), resolved.to_string()).await;
    let inc = incident(&d, id).await;
    assert_eq!(inc["status"], "resolved");
    assert_eq!(inc["resolved"]["by"], "source:default");

    // An Alertmanager webhook with status resolved does the same for its fingerprint.
    let wh = |status: &str| {
        json!({"version": "4", "status": status, "receiver": "tocsin", "groupKey": "{}:{}",
               "alerts": [{"status": status, "labels": {"alertname": "Hook"}, "annotations": {},
                           "startsAt": "2026-11-27T01:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                           "fingerprint": "00000000000000aa"}]})
        .to_string()
    };
    let r = d.post("/api/v1/alertmanager", Some(TOKEN), wh("firing")).await;
    let hook = incident_of(&d, &r.event_ids()[0]).await.unwrap();
    d.post("/api/v1/alertmanager", Some(TOKEN), wh("resolved")).await;
    assert_eq!(incident(&d, hook).await["status"], "resolved");
}

#[tokio::test]
async fn responders_acknowledge_and_resolve_through_the_api() {
    let d = start("");
    let event = post_pd(&d, "trigger", "api/ack").await;
    let id = incident_of(&d, &event).await.unwrap();
    let ack = format!("/api/v1/incidents/{id}/ack");

    // A viewer may read but not act; no credential may do neither.
    let r = d.post(&ack, Some(VIEWER_TOKEN), "").await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(d.post(&ack, None, "").await.status, 401);
    assert_eq!(d.get("/api/v1/incidents", None).await.status, 401);

    let r = d.post(&ack, Some(RESPONDER_TOKEN), "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "acknowledged");
    assert_eq!(r.body["acknowledged"]["by"], "user:oncall");
    // Twice is a conflict, said plainly.
    let r = d.post(&ack, Some(RESPONDER_TOKEN), "").await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.body["error"], "conflict");

    let r = d.post(&format!("/api/v1/incidents/{id}/resolve"), Some(RESPONDER_TOKEN), "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let inc = incident(&d, id).await;
    assert_eq!(inc["status"], "resolved");
    // Lifecycle entries in order (notes about notifications may sit between them).
    let lifecycle = ["opened", "acknowledged", "resolved"];
    let kinds: Vec<&str> = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .filter(|k| lifecycle.contains(k))
        .collect();
    assert_eq!(kinds, lifecycle);
    assert!(
        inc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["at"].is_string() && e["actor"].is_string())
    );

    assert_eq!(d.post("/api/v1/incidents/999999/ack", Some(RESPONDER_TOKEN), "").await.status, 404);

    // Listing: filters and newest first.
    post_pd(&d, "trigger", "api/second").await;
    let r = d.get("/api/v1/incidents?status=open", Some(VIEWER_TOKEN)).await;
    let open = r.body["incidents"].as_array().unwrap();
    assert_eq!(open.len(), 1, "{}", r.text);
    assert_eq!(open[0]["dedup_key"], "api/second");
    let r = d.get("/api/v1/incidents", Some(VIEWER_TOKEN)).await;
    let ids: Vec<u64> =
        r.body["incidents"].as_array().unwrap().iter().map(|i| i["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let r = d.get("/api/v1/incidents?status=bogus", Some(VIEWER_TOKEN)).await;
    assert_eq!(r.status, 422);
}

#[tokio::test]
async fn an_open_incident_survives_a_restart_and_keeps_deduplicating() {
    let mut d = start("");
    let event = post_pd(&d, "trigger", "restart/key").await;
    let id = incident_of(&d, &event).await.unwrap();
    d.kill9();
    let d = d.restart();
    let again = post_pd(&d, "trigger", "restart/key").await;
    assert_eq!(incident_of(&d, &again).await, Some(id));
    assert_eq!(incident(&d, id).await["count"], 2);
}

/// A daemon whose rules directory is a temporary one the test writes scripts into.
fn start_with_rules(scripts: &[(&str, &str)], extra: &str) -> (Daemon, std::path::PathBuf) {
    let rules = tempfile::tempdir().unwrap().keep();
    for (name, text) in scripts {
        std::fs::write(rules.join(name), text).unwrap();
    }
    let d = start(&format!("rules:\n  dir: {}\n  time_budget: 200ms\n{extra}", rules.display()));
    (d, rules)
}

async fn decision_of(d: &Daemon, key: &str) -> Value {
    let event = post_pd(d, "trigger", key).await;
    let id = incident_of(d, &event).await.unwrap();
    incident(d, id).await
}

#[tokio::test]
async fn rules_score_live_events_and_a_failing_rule_keeps_the_fallback() {
    let (d, _rules) = start_with_rules(
        &[
            (
                "10-db.rhai",
                r#"if event.labels.source == "db1" { decision.add_score(5, "database host"); decision.tag("database"); }"#,
            ),
            ("20-throws.rhai", r#"if event.dedup_key == "boom" { throw "rule bug"; }"#),
        ],
        "",
    );
    let inc = decision_of(&d, "scored").await;
    // PagerDuty `critical` → base 80, +5 from the rule.
    assert_eq!(inc["decision"]["base_score"], 80, "{inc}");
    assert_eq!(inc["decision"]["score"], 85, "{inc}");
    assert_eq!(inc["decision"]["severity"], "sev1");
    assert!(inc["decision"]["tags"].as_array().unwrap().contains(&json!("database")));

    let inc = decision_of(&d, "boom").await;
    // The throwing rule contributed nothing; the other rule still ran; the event is stored.
    assert_eq!(inc["decision"]["score"], 85, "{inc}");
    let failure = inc["timeline"].as_array().unwrap().iter().find(|e| e["kind"] == "rule_failed");
    let failure = failure.unwrap_or_else(|| panic!("no rule failure on the timeline: {inc}"));
    assert!(failure["message"].as_str().unwrap().contains("20-throws.rhai"), "{failure}");
    let m = d.get("/metrics", None).await.text;
    assert!(m.contains("tocsin_rule_failures_total{rule=\"20-throws.rhai\"} 1"), "{m}");
    // Outcomes are remembered per scoring thread, so which of these events reuse one depends
    // on the thread each lands on. 20 more events with the label 10-db.rhai reads and keys of
    // their own: 20-throws.rhai (it reads the key) runs for every one; 10-db.rhai runs at most
    // once per thread and is reused for the rest.
    for n in 0..20 {
        post_pd(&d, "trigger", &format!("more-{n}")).await;
    }
    let m = d.get("/metrics", None).await.text;
    let counter = |name: &str| -> u64 {
        let line = m.lines().find(|l| l.starts_with(&format!("{name} ")));
        line.and_then(|l| l.split(' ').nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("no {name}: {m}"))
    };
    let (runs, reused) =
        (counter("tocsin_rule_runs_total"), counter("tocsin_rule_outcomes_reused_total"));
    assert_eq!(runs + reused, 2 * 22, "two scripts for each of 22 events: {m}");
    assert!(runs >= 22, "20-throws.rhai runs for every event: {m}");
    assert!(reused >= 1, "10-db.rhai's outcome reused: {m}");
}

/// A repeated trigger whose decision matches the stored one is stored as counts only (no
/// rewrite of the incident); this checks that what a user reads is the same as if it were
/// rewritten: counts and last-seen through kills, the rules seeing the true count, a changed
/// decision still stored, and acknowledge and resolve keeping the count.
#[tokio::test]
async fn repeated_triggers_keep_count_and_decision_through_kills_and_acknowledgement() {
    let (mut d, _rules) = start_with_rules(
        &[(
            "10-count.rhai",
            r#"if incident.count >= 3 { decision.add_score(10, "3+ occurrences"); }
               if incident.count == 6 { decision.tag("sixth"); }"#,
        )],
        "",
    );
    let key = "repeat/key";
    let received_at = |event: Value| event["received_at"].as_str().unwrap().to_owned();
    let event_at = async |d: &Daemon, id: &str| {
        let r = d.get(&format!("/api/v1/events/{id}"), Some(VIEWER_TOKEN)).await;
        received_at(r.body)
    };
    let first = post_pd(&d, "trigger", key).await;
    let id = incident_of(&d, &first).await.unwrap();
    let mut last = first.clone();
    for n in 2..=5 {
        last = post_pd(&d, "trigger", key).await;
        assert_eq!(incident_of(&d, &last).await, Some(id), "event {n} joins the incident");
        let inc = incident(&d, id).await;
        assert_eq!(inc["count"], n, "{inc}");
        // The third occurrence changed the decision: stored, and kept by the next two.
        let score = if n >= 3 { 90 } else { 80 };
        assert_eq!(inc["decision"]["score"], score, "after event {n}: {inc}");
    }
    let inc = incident(&d, id).await;
    assert_eq!(inc["last_seen"].as_str().unwrap(), event_at(&d, &last).await, "{inc}");
    let reasons = inc["decision"]["reasons"].to_string();
    assert!(reasons.contains("3+ occurrences"), "{inc}");
    let timeline = inc["timeline"].as_array().unwrap().len();

    d.kill9();
    let d = d.restart();
    let inc = incident(&d, id).await;
    assert_eq!(inc["count"], 5, "the counts survive a kill: {inc}");
    assert_eq!(inc["last_seen"].as_str().unwrap(), event_at(&d, &last).await);
    assert_eq!(inc["timeline"].as_array().unwrap().len(), timeline, "repeats add no entries");
    // The rules see the sixth occurrence as the sixth (the count in memory came back too).
    post_pd(&d, "trigger", key).await;
    let inc = incident(&d, id).await;
    assert_eq!(inc["count"], 6);
    assert!(inc["decision"]["tags"].as_array().unwrap().contains(&json!("sixth")), "{inc}");

    let r = d.post(&format!("/api/v1/incidents/{id}/ack"), Some(RESPONDER_TOKEN), "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    for n in 7..=8 {
        last = post_pd(&d, "trigger", key).await;
        let inc = incident(&d, id).await;
        assert_eq!(inc["count"], n, "{inc}");
        assert_eq!(inc["status"], "acknowledged");
        assert!(!inc["decision"]["tags"].as_array().unwrap().contains(&json!("sixth")), "{inc}");
    }
    let mut d = d;
    d.kill9();
    let d = d.restart();
    post_pd(&d, "resolve", key).await;
    let inc = incident(&d, id).await;
    assert_eq!((inc["status"].as_str(), inc["count"].as_u64()), (Some("resolved"), Some(8)));
    assert_eq!(inc["last_seen"].as_str().unwrap(), event_at(&d, &last).await);
    let again = post_pd(&d, "trigger", key).await;
    let new_id = incident_of(&d, &again).await.unwrap();
    assert_ne!(new_id, id);
    assert_eq!(incident(&d, new_id).await["count"], 1);
}

#[tokio::test]
async fn a_runaway_rule_is_halted_and_the_daemon_keeps_answering() {
    let (d, _rules) = start_with_rules(&[("10-loop.rhai", "loop { }")], "");
    let started = Instant::now();
    let inc = decision_of(&d, "loops").await;
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(inc["decision"]["score"], 80, "fallback to the base score: {inc}");
    assert!(
        inc["timeline"].as_array().unwrap().iter().any(|e| e["kind"] == "rule_failed"),
        "{inc}"
    );
    assert_eq!(d.get("/-/healthy", None).await.status, 200);
}

async fn reload(d: &Daemon) -> common::Reply {
    d.post("/-/reload", Some(TOKEN), "").await
}

#[tokio::test]
async fn a_broken_rule_on_reload_keeps_the_old_rules_in_force() {
    let (d, rules) = start_with_rules(&[("10-plus.rhai", r#"decision.add_score(1, "one");"#)], "");
    assert_eq!(decision_of(&d, "r1").await["decision"]["score"], 81);

    // Only an admin may reload.
    assert_eq!(d.post("/-/reload", Some(RESPONDER_TOKEN), "").await.status, 403);

    std::fs::write(rules.join("20-broken.rhai"), "let x = ;\n").unwrap();
    let r = reload(&d).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("20-broken.rhai:1"), "error names file and line: {}", r.text);
    assert_eq!(decision_of(&d, "r2").await["decision"]["score"], 81, "old rules still in force");
    let m = d.get("/metrics", None).await.text;
    assert!(m.contains("tocsin_reload_last_success 0"), "{m}");

    std::fs::write(rules.join("20-broken.rhai"), r#"decision.add_score(10, "ten");"#).unwrap();
    let r = reload(&d).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(decision_of(&d, "r3").await["decision"]["score"], 91);
    let m = d.get("/metrics", None).await.text;
    assert!(m.contains("tocsin_reload_last_success 1"), "{m}");
}

#[tokio::test]
async fn editing_a_rule_file_reloads_it() {
    let (d, rules) = start_with_rules(&[("10-a.rhai", r#"decision.add_score(1, "a");"#)], "");
    assert_eq!(decision_of(&d, "w1").await["decision"]["score"], 81);
    std::fs::write(rules.join("10-a.rhai"), r#"decision.add_score(2, "a");"#).unwrap();
    let mut n = 0;
    eventually("the edit to be picked up", Duration::from_secs(15), async || {
        n += 1;
        let score = decision_of(&d, &format!("w-watch-{n}")).await["decision"]["score"].as_i64();
        if score == Some(82) { Ok(()) } else { Err(format!("score {score:?}")) }
    })
    .await;
}

/// With email configured, reloading builds an SMTP pool, which needs the Tokio runtime: a file
/// edit (noticed on the watcher's own thread) reloads like SIGHUP and `POST /-/reload` do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_a_rule_file_reloads_it_when_email_is_configured() {
    let (smtp_port, _mails) = common::smtp::smtp_server();
    let (d, rules) = start_with_rules(
        &[("10-a.rhai", r#"decision.add_score(1, "a");"#)],
        &format!(
            "notifications:\n  email: {{relay: 127.0.0.1, port: {smtp_port}, tls: none, from: tocsin@example.com}}\n"
        ),
    );
    assert_eq!(decision_of(&d, "e1").await["decision"]["score"], 81);
    std::fs::write(rules.join("20-b.rhai"), r#"decision.add_score(4, "b");"#).unwrap();
    let mut n = 0;
    eventually("the new rule to be in force", Duration::from_secs(15), async || {
        n += 1;
        let score = decision_of(&d, &format!("e-watch-{n}")).await["decision"]["score"].as_i64();
        if score == Some(85) {
            return Ok(());
        }
        let m = d.get("/metrics", None).await.text;
        assert!(!m.contains("tocsin_reload_last_success 0"), "the reload failed:\n{m}");
        Err(format!("score {score:?}"))
    })
    .await;
    let m = d.get("/metrics", None).await.text;
    assert!(m.contains("tocsin_reload_last_success 1"), "{m}");
    let count = |result: &str| -> f64 {
        let prefix = format!("tocsin_reloads_total{{result=\"{result}\"}} ");
        m.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0.0, |v| v.split_whitespace().next().unwrap().parse().unwrap())
    };
    assert!(count("success") >= 1.0, "{m}");
    assert_eq!(count("failure"), 0.0, "{m}");
}

#[tokio::test]
async fn sighup_reloads_when_file_watching_is_off() {
    let (d, rules) = start_with_rules(
        &[("10-a.rhai", r#"decision.add_score(1, "a");"#)],
        "  watch: false
",
    );
    std::fs::write(rules.join("10-a.rhai"), r#"decision.add_score(3, "a");"#).unwrap();
    // Not watched: the edit alone changes nothing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(decision_of(&d, "w-unwatched").await["decision"]["score"], 81);
    let mut n = 0;
    let pid = d.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    eventually("SIGHUP to reload", Duration::from_secs(15), async || {
        n += 1;
        let score = decision_of(&d, &format!("w-hup-{n}")).await["decision"]["score"].as_i64();
        if score == Some(83) { Ok(()) } else { Err(format!("score {score:?}")) }
    })
    .await;
}

#[tokio::test]
async fn reloads_under_concurrent_ingest_lose_nothing() {
    let (d, rules) = start_with_rules(&[("10-a.rhai", r#"decision.add_score(1, "a");"#)], "");
    let client = d.client.clone();
    let url = d.url("/api/v2/alerts");
    let writer = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..300 {
            let body = json!([{"labels": {"alertname": "Load", "n": i.to_string()}}]).to_string();
            let r = client
                .post(&url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            let v: Value = r.json().await.unwrap();
            ids.push(v["event_ids"][0].as_str().unwrap().to_string());
        }
        ids
    });
    for i in 0..10 {
        std::fs::write(rules.join("10-a.rhai"), format!("decision.add_score({i}, \"a\");"))
            .unwrap();
        let r = reload(&d).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let ids = writer.await.unwrap();
    let r = d.get("/api/v1/events?limit=1000", Some(VIEWER_TOKEN)).await;
    let stored: std::collections::HashSet<&str> =
        r.body["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    for id in &ids {
        assert!(stored.contains(id.as_str()), "event {id} answered 202 but not stored");
        assert!(incident_of(&d, id).await.is_some());
    }
}

#[tokio::test]
async fn quiet_incidents_resolve_themselves_when_configured() {
    let d = start("incidents:\n  auto_resolve_after: 1s\n");
    let event = post_pd(&d, "trigger", "quiet/one").await;
    let id = incident_of(&d, &event).await.unwrap();
    eventually("the incident to resolve itself", Duration::from_secs(15), async || {
        let inc = incident(&d, id).await;
        if inc["status"] == "resolved" {
            assert_eq!(inc["resolved"]["by"], "tocsin");
            return Ok(());
        }
        Err(inc.to_string())
    })
    .await;
}

/// An incident's first timeline entry says what opened it in words, with the right article.
#[tokio::test]
async fn the_opening_entry_names_the_sender_kind_in_words() {
    let d = start("");
    let mut pd: Value = serde_json::from_slice(&common::fixture("pagerduty/trigger.json")).unwrap();
    pd["routing_key"] = json!(ROUTING_KEY);
    let canonical_report =
        json!({"kind": "report", "summary": "Customer cannot log in", "verified": true});
    let cases: [(&str, Vec<u8>, &str); 6] = [
        (
            "/api/v2/alerts",
            json!([{"labels": {"alertname": "DiskFull", "severity": "critical"}}])
                .to_string()
                .into_bytes(),
            "an Alertmanager alert",
        ),
        (
            "/api/v1/alertmanager",
            common::fixture("alertmanager-webhook/v4.json"),
            "an Alertmanager webhook alert",
        ),
        ("/v2/enqueue", pd.to_string().into_bytes(), "a PagerDuty event"),
        (
            "/api/v1/reports",
            common::fixture("reports/verified-personal-data.json"),
            "a customer report",
        ),
        (
            "/api/v1/events",
            json!({"summary": "Queue backlog"}).to_string().into_bytes(),
            "an alert (canonical event)",
        ),
        (
            "/api/v1/events",
            canonical_report.to_string().into_bytes(),
            "a customer report (canonical event)",
        ),
    ];
    for (path, body, words) in cases {
        let token = if path == "/v2/enqueue" { None } else { Some(TOKEN) };
        let r = d.post(path, token, body).await;
        let accepted = if path == "/api/v2/alerts" { 200 } else { 202 };
        assert_eq!(r.status, accepted, "{path}: {}", r.text);
        let id = incident_of(&d, &r.event_ids()[0])
            .await
            .unwrap_or_else(|| panic!("{path}: no incident for {}", r.text));
        let first = incident(&d, id).await["timeline"][0]["message"].as_str().unwrap().to_string();
        assert!(first.starts_with(&format!("opened by {words}: ")), "{path}: {first}");
    }
}
