//! Drills: `tocsin drill` on the shipped scenarios (they pass), on scenarios with a wrong
//! expectation (exit 1 naming it) and a malformed one (exit 2 with FILE:LINE); and live drills
//! through the real daemon against a real SMTP server — a drill event in each of the formats
//! reaches the drill mailbox only, marked as a drill, while a real event pages the on-call.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::smtp::smtp_server;
use common::{Daemon, ROUTING_KEY, TOKEN, eventually};
use serde_json::json;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Runs `tocsin drill ARGS…` (bounded: a drill is a few hundred milliseconds).
fn drill(args: &[&Path]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .arg("drill")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running tocsin drill");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_shipped_scenario_passes() {
    let dir = repo("fixtures/drills");
    let mut ran = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "tocsin.yaml" || !name.ends_with(".yaml") {
            continue;
        }
        let (code, out, err) = drill(&[&path]);
        assert_eq!(code, 0, "{name} failed:\n{out}\n{err}");
        assert!(out.contains("\nPASS "), "{name}: {out}");
        ran += 1;
    }
    assert!(ran >= 3, "the sev1 outage, customer report and alert storm scenarios ship");
}

#[test]
fn the_timeline_shows_who_was_told_what_and_when() {
    let (code, out, _) = drill(&[&repo("fixtures/drills/sev1-outage.yaml")]);
    assert_eq!(code, 0, "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.contains(" escalated ")).collect();
    assert_eq!(rows.len(), 3, "ben by SMS and email at +5m, cora at +15m:\n{out}");
    assert!(
        rows.iter().any(|r| r.starts_with("+5m ") && r.contains(" ben ") && r.contains(" sms "))
    );
    assert!(rows.iter().any(|r| r.starts_with("+15m ") && r.contains(" cora ")), "{out}");
    // The acknowledgement at +17m stopped the second round: nothing escalated after it.
    assert!(!out.lines().any(|l| l.starts_with("+20m") && l.contains("escalated")), "{out}");
}

/// A copy of a shipped scenario next to the shipped config, with `edit` applied.
fn variant(name: &str, from: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(repo(&format!("fixtures/drills/{from}"))).unwrap();
    let dir = tempfile::tempdir().unwrap().keep();
    let config = repo("fixtures/drills/tocsin.yaml");
    let text = edit(text).replace("config: tocsin.yaml", &format!("config: {}", config.display()));
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_wrong_expectation_fails_and_says_what_happened_instead() {
    // The secondary is paged at +5m, not +10m.
    let path = variant("late.yaml", "sev1-outage.yaml", |t| {
        t.replace(
            "- { at: 5m, to: ben, channel: sms, reason: escalated }",
            "- { at: 10m, to: ben, channel: sms, reason: escalated }",
        )
    });
    let (code, out, err) = drill(&[&path]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("\nFAIL sev1 outage"), "{out}");
    assert!(
        err.contains("expected sms to ben (escalated) at +10m, got it at +5m"),
        "the message names the expectation and what happened: {err}"
    );
    assert!(err.contains("late.yaml:"), "and where the expectation is: {err}");

    // Someone who is never told.
    let path = variant("never.yaml", "sev1-outage.yaml", |t| {
        t.replace(
            "    - { at: 0s, to: omar,",
            "    - { at: 0s, to: lena, channel: email, reason: new }\n    - { at: 0s, to: omar,",
        )
    });
    let (code, _, err) = drill(&[&path]);
    assert_eq!(code, 1);
    assert!(
        err.contains("expected email to lena (new) at +0s, never; lena was told nothing"),
        "{err}"
    );

    // exact: someone the scenario does not expect is told.
    let path = variant("exact.yaml", "sev1-outage.yaml", |t| {
        t.replace("    - { at: 15m, to: cora, channel: email, audience: executive, reason: escalated, template: email/executive }\n", "")
    });
    let (code, _, err) = drill(&[&path]);
    assert_eq!(code, 1);
    assert!(
        err.contains("unexpected (expect.exact: nobody else): +15m email to cora (executive, escalated, incident #1)"),
        "{err}"
    );

    // `never` on any channel for someone who is told.
    let path = variant("nobody.yaml", "sev1-outage.yaml", |t| {
        t.replace(
            "    - { at: 0s, to: omar,",
            "    - { to: ana, reason: new, never: true }\n    - { at: 0s, to: omar,",
        )
    });
    let (code, _, err) = drill(&[&path]);
    assert_eq!(code, 1);
    assert!(err.contains("expected no notification to ana (new), got 2 (+0s"), "{err}");

    // An incident state expectation.
    let path = variant("state.yaml", "sev1-outage.yaml", |t| {
        t.replace("acknowledged_by: ben, resolved_by", "acknowledged_by: ana, resolved_by")
    });
    let (code, _, err) = drill(&[&path]);
    assert_eq!(code, 1);
    assert!(
        err.contains("incident #1 at the end (+2h): expected acknowledged_by ana, got ben"),
        "{err}"
    );
}

#[test]
fn a_wrong_triage_expectation_fails_naming_it() {
    // The shipped expectation: scope [checkout], tags [payments], sensitivity none,
    // customer-facing. Each one wrong on its own fails, naming the key and what happened.
    let shipped = "scope: [checkout], tags: [payments], sensitivity: none, customer_facing: true";
    for (wrong, says) in [
        (
            "scope: [checkout, payments], tags: [payments], sensitivity: none, customer_facing: true",
            "expected scope [checkout, payments], got [checkout]",
        ),
        (
            "scope: [checkout], tags: [database], sensitivity: none, customer_facing: true",
            "expected tags [database], got [payments]",
        ),
        (
            "scope: [checkout], tags: [payments], sensitivity: personal, customer_facing: true",
            "expected sensitivity personal, got none",
        ),
        (
            "scope: [checkout], tags: [payments], sensitivity: none, customer_facing: false",
            "expected customer_facing false, got true",
        ),
    ] {
        let path = variant("triage.yaml", "sev1-outage.yaml", |t| {
            assert!(t.contains(shipped), "the shipped scenario expects {shipped}");
            t.replace(shipped, wrong)
        });
        let (code, out, err) = drill(&[&path]);
        assert_eq!(code, 1, "{wrong}: {out}\n{err}");
        let line = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .position(|l| l.contains("- { incident: 1, status: resolved"))
            .unwrap()
            + 1;
        assert!(
            err.contains(&format!("triage.yaml:{line}:"))
                && err.contains(&format!("incident #1 at the end (+2h): {says}")),
            "{wrong}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "only the wrong key fails: {err}");
    }

    // A sensitivity that does not exist is a malformed scenario, located.
    let path = variant("unknown.yaml", "sev1-outage.yaml", |t| {
        t.replace("sensitivity: none", "sensitivity: secret")
    });
    let (code, _, err) = drill(&[&path]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown.yaml:") && err.contains("expect.incidents[1].sensitivity: `secret` is not one of none, internal, personal, financial"), "{err}");
}

#[test]
fn a_malformed_scenario_is_refused_with_its_line() {
    let path = variant("bad.yaml", "sev1-outage.yaml", |t| {
        t.replace("  - at: 17m\n", "  - at: 17 mins later\n")
    });
    let (code, _, err) = drill(&[&path]);
    assert_eq!(code, 2, "{err}");
    let line = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .position(|l| l.contains("17 mins later"))
        .unwrap()
        + 1;
    assert!(err.contains(&format!("bad.yaml:{line}:")), "FILE:LINE in {err}");
    assert!(err.contains("timeline[2].at"), "{err}");

    let path =
        variant("typo.yaml", "sev1-outage.yaml", |t| t.replace("    ack: {", "    acknowledge: {"));
    let (code, _, err) = drill(&[&path]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("typo.yaml:") && err.contains("acknowledge"), "{err}");

    let (code, _, err) = drill(&[&repo("fixtures/drills/no-such-scenario.yaml")]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read the scenario"), "{err}");
}

/// Waits (at most 20 s) until `n` mails arrived.
async fn wait_mails(mails: &std::sync::Arc<std::sync::Mutex<Vec<common::smtp::Mail>>>, n: usize) {
    eventually(&format!("{n} mails"), Duration::from_secs(20), async || {
        let got = mails.lock().unwrap().len();
        if got >= n { Ok(()) } else { Err(format!("{got} mails")) }
    })
    .await;
}

fn subject(data: &str) -> String {
    let head = data.split("\r\n\r\n").next().unwrap_or_default().replace("\r\n ", " ");
    head.split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with("subject:"))
        .map(|l| l[8..].trim().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn live_drills_reach_the_drill_mailbox_only_and_are_labelled() {
    let (port, mails) = smtp_server();
    let extra = format!(
        r#"people:
  - {{id: ana, name: Ana, email: ana@example.com}}
  - {{id: box, name: Drill box, email: drills@example.com}}
notifications:
  email: {{relay: 127.0.0.1, port: {port}, tls: none, from: "Tocsin <tocsin@example.com>", timeout: 5s}}
  rate_limits: {{email: {{}}, sms: {{}}, webhook: {{}}, log: {{}}}}
policies:
  - name: page
    notify: [{{person: ana, channels: [email]}}]
default_policy: page
drills:
  recipients: [{{person: box, channels: [email]}}]
"#
    );
    let d = Daemon::start(&extra);
    let drills = [
        ("/api/v1/events", json!({"summary": "canonical drill", "dedup_key": "d1", "drill": true})),
        (
            "/api/v1/reports",
            json!({"reporter": {"name": "Desk"}, "service": "web", "summary": "report drill", "drill": true}),
        ),
        (
            "/api/v2/alerts",
            json!([{"labels": {"alertname": "AmDrill", "tocsin_drill": "true"}, "annotations": {"summary": "alertmanager drill"}}]),
        ),
        (
            "/api/v1/alertmanager",
            json!({"version": "4", "status": "firing", "receiver": "t", "groupKey": "g", "groupLabels": {},
                   "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
                   "alerts": [{"status": "firing", "labels": {"alertname": "WebhookDrill", "tocsin_drill": "true"},
                               "annotations": {"summary": "webhook drill"}, "startsAt": "2026-03-02T09:00:00Z"}]}),
        ),
        (
            "/v2/enqueue",
            json!({"routing_key": ROUTING_KEY, "event_action": "trigger", "dedup_key": "pd1",
                   "payload": {"summary": "pagerduty drill", "source": "x", "severity": "critical",
                               "custom_details": {"tocsin_drill": true}}}),
        ),
    ];
    for (path, body) in &drills {
        let r = d.post(path, Some(TOKEN), body.to_string()).await;
        // Alertmanager's route answers 200, as Alertmanager does; the others 202.
        let ok = if *path == "/api/v2/alerts" { 200 } else { 202 };
        assert_eq!(r.status, ok, "{path}: {}", r.text);
    }
    wait_mails(&mails, drills.len()).await;
    // A real alert pages the on-call.
    let r = d
        .post(
            "/api/v1/events",
            Some(TOKEN),
            json!({"summary": "real outage", "dedup_key": "r1"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    wait_mails(&mails, drills.len() + 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let got: Vec<(String, String)> =
        mails.lock().unwrap().iter().map(|m| (m.to.join(","), subject(&m.data))).collect();
    assert_eq!(got.len(), drills.len() + 1, "nothing else was sent: {got:#?}");
    for (to, subj) in &got[..] {
        if subj.contains("real outage") {
            assert!(to.contains("ana@example.com"), "{to}: {subj}");
            assert!(!subj.contains("DRILL"), "{subj}");
        } else {
            assert!(
                to.contains("drills@example.com"),
                "a drill never pages the on-call: {to}: {subj}"
            );
            assert!(subj.contains("[DRILL]"), "labelled as a drill: {subj}");
        }
    }

    // The API shows the flag on incidents and notifications.
    let list = d.get("/api/v1/incidents?limit=100", Some(TOKEN)).await;
    let incidents = list.body["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), drills.len() + 1, "{}", list.text);
    for i in incidents {
        let real = i["summary"] == "real outage";
        assert_eq!(i["drill"], !real, "{i}");
    }
    let one = incidents.iter().find(|i| i["summary"] == "canonical drill").unwrap();
    let detail = d.get(&format!("/api/v1/incidents/{}", one["id"]), Some(TOKEN)).await;
    assert_eq!(detail.body["notifications"][0]["drill"], true, "{}", detail.text);
    let timeline = detail.body["timeline"].to_string();
    assert!(timeline.contains("go to the drill recipients instead"), "{timeline}");

    // A real event joining a drill incident makes it real: the on-call is paged.
    let r = d
        .post(
            "/api/v1/events",
            Some(TOKEN),
            json!({"summary": "canonical drill", "dedup_key": "d1"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 202);
    wait_mails(&mails, drills.len() + 2).await;
    let last = mails.lock().unwrap().last().map(|m| (m.to.join(","), subject(&m.data))).unwrap();
    assert!(last.0.contains("ana@example.com") && !last.1.contains("DRILL"), "{last:?}");
    let detail = d.get(&format!("/api/v1/incidents/{}", one["id"]), Some(TOKEN)).await;
    assert_eq!(detail.body["drill"], false, "{}", detail.text);
}
