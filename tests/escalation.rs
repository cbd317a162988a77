//! Escalation end to end: the real daemon on a manual clock (`TOCSIN_FAKE_CLOCK`, moved through
//! `POST /-/clock`) against a real SMTP server. Every test asserts on the mails that ARRIVED —
//! who got which, in which order — and that nobody got one the policy did not call for.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::smtp::{Mail, mail_header, mail_part, smtp_server};
use common::{Daemon, TOKEN, config_yaml, eventually, within};
use serde_json::{Value, json};
use tocsin::store::{Backend, IncidentRows, TimerRows};

const T0: &str = "2026-03-02T09:00:00Z";

/// People ana, ben, cora, lena and omar (email only), SMTP to `port`, and `policies` (YAML,
/// top level).
fn config(port: u16, policies: &str) -> String {
    format!(
        r#"people:
  - {{id: ana, name: Ana, email: ana@example.com}}
  - {{id: ben, name: Ben, email: ben@example.com}}
  - {{id: cora, name: Cora, email: cora@example.com}}
  - {{id: lena, name: Lena, email: lena@example.com}}
  - {{id: omar, name: Omar, email: omar@example.com}}
notifications:
  email: {{relay: 127.0.0.1, port: {port}, tls: none, from: "Tocsin <tocsin@example.com>", timeout: 5s}}
  delivery: {{initial_backoff: 100ms, max_backoff: 1s, attempt_timeout: 2s, lease: 5s, max_attempts: 5}}
  rate_limits: {{email: {{}}, sms: {{}}, webhook: {{}}, log: {{}}}}
{policies}"#
    )
}

/// Two steps (ana, wait 5m; ben, wait 10m), the whole list twice.
const TWO_STEPS: &str = r#"policies:
  - name: page
    steps:
      - notify: [{person: ana, channels: [email]}]
        wait: 5m
      - notify: [{person: ben, channels: [email]}]
        wait: 10m
    repeat: 1
default_policy: page
"#;

struct Env {
    daemon: Daemon,
    mails: Arc<Mutex<Vec<Mail>>>,
}

fn start(policies: &str) -> Env {
    let (port, mails) = smtp_server();
    let daemon =
        Daemon::with(&config_yaml(&config(port, policies))).env("TOCSIN_FAKE_CLOCK", T0).start();
    Env { daemon, mails }
}

/// (recipient, subject) of every mail so far, in arrival order.
fn inbox(env: &Env) -> Vec<(String, String)> {
    env.mails
        .lock()
        .unwrap()
        .iter()
        .map(|m| {
            let to = m.to.first().cloned().unwrap_or_default();
            let to = to.trim_matches(|c| c == '<' || c == '>').to_string();
            (to, subject(&m.data))
        })
        .collect()
}

fn subject(data: &str) -> String {
    let head = data.split("\r\n\r\n").next().unwrap_or_default().replace("\r\n ", " ");
    head.split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with("subject:"))
        .map(|l| l[8..].trim().to_string())
        .unwrap_or_default()
}

/// Waits (at most 20 s of real time) until the inbox holds `n` mails, then returns them.
async fn mails(env: &Env, n: usize) -> Vec<(String, String)> {
    let got = within(Duration::from_secs(20), async || {
        let got = inbox(env);
        if got.len() >= n { Ok(got) } else { Err(format!("{}: {got:?}", got.len())) }
    })
    .await;
    match got {
        Ok(got) => got,
        Err(got) => {
            // What the daemon did about each notification says why a mail is missing.
            let queue = env.daemon.get("/api/v1/notifications", Some(TOKEN)).await.text;
            panic!("expected {n} mails, got {got}\nnotifications: {queue}");
        }
    }
}

/// Asserts that the inbox stays at exactly `n` mails for a while (the scheduler runs at least
/// every second; two seconds of quiet proves nothing more is coming for this clock reading).
async fn quiet(env: &Env, n: usize) {
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let got = inbox(env);
    assert_eq!(got.len(), n, "nothing more should have been sent: {got:?}");
}

async fn alert(d: &Daemon, key: &str, severity: &str) -> u64 {
    let body = json!({
        "dedup_key": key,
        "action": "trigger",
        "summary": format!("{key} is failing"),
        "severity": severity,
    });
    let r = d.post("/api/v1/events", Some(TOKEN), body.to_string()).await;
    d.incident_of(&r).await
}

/// A trigger for `service`, through the canonical endpoint.
async fn alert_on(d: &Daemon, key: &str, severity: &str, service: &str) -> u64 {
    let body = json!({
        "dedup_key": key,
        "summary": format!("{key} is failing"),
        "severity": severity,
        "service": service,
    });
    let r = d.post("/api/v1/events", Some(TOKEN), body.to_string()).await;
    d.incident_of(&r).await
}

/// The text part of mail `n` (0-based, arrival order).
fn text_of(env: &Env, n: usize) -> String {
    let data = env.mails.lock().unwrap()[n].data.clone();
    mail_part(&data, "text/plain").expect("a text part").replace("\r\n", "\n")
}

/// Distinct notifications (by Message-ID) in order of first arrival, as (recipient, subject):
/// delivery is at-least-once, so a mail sent just before a kill may come again after a restart.
fn distinct(inbox: &Arc<Mutex<Vec<Mail>>>) -> Vec<(String, String)> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for m in inbox.lock().unwrap().iter() {
        if seen.insert(mail_header(&m.data, "message-id")) {
            let to = m.to[0].trim_matches(|c| c == '<' || c == '>').to_string();
            out.push((to, subject(&m.data)));
        }
    }
    out
}

async fn distinct_n(inbox: &Arc<Mutex<Vec<Mail>>>, n: usize) -> Vec<(String, String)> {
    eventually(&format!("{n} notifications"), Duration::from_secs(20), async || {
        let got = distinct(inbox);
        if got.len() >= n { Ok(got) } else { Err(format!("{got:?}")) }
    })
    .await
}

async fn incident(d: &Daemon, id: u64) -> Value {
    let r = d.get(&format!("/api/v1/incidents/{id}"), Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

fn timeline(i: &Value) -> Vec<String> {
    i["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn step_two_fires_only_after_the_wait_and_the_list_repeats() {
    let env = start(TWO_STEPS);
    let d = &env.daemon;
    let id = alert(d, "db-down", "critical").await;
    let first = mails(&env, 1).await;
    assert_eq!(first[0].0, "ana@example.com");

    // One second short of the wait: nobody else hears.
    d.advance("4m59s").await;
    quiet(&env, 1).await;
    let i = incident(d, id).await;
    assert_eq!(i["escalation"]["step"], 0);
    assert_eq!(i["pending"][0]["what"], "escalation step 2 of policy `page` (round 1)");

    d.advance("1s").await;
    let got = mails(&env, 2).await;
    assert_eq!(got[1].0, "ben@example.com");
    assert!(got[1].1.starts_with("Escalated:"), "subject says it is an escalation: {}", got[1].1);

    // Round two: ana after ben's ten minutes, then ben again; then the policy is exhausted.
    d.advance("9m").await;
    quiet(&env, 2).await;
    d.advance("1m").await;
    assert_eq!(mails(&env, 3).await[2].0, "ana@example.com");
    d.advance("5m").await;
    assert_eq!(mails(&env, 4).await[3].0, "ben@example.com");
    d.advance("2h").await;
    quiet(&env, 4).await;

    let i = incident(d, id).await;
    assert_eq!(i["escalation"]["round"], 1);
    assert_eq!(i["escalation"]["stopped"], "the policy has no further steps");
    assert!(i["pending"].as_array().unwrap().is_empty());
    let steps: Vec<String> =
        timeline(&i).into_iter().filter(|m| m.starts_with("escalation step")).collect();
    assert_eq!(steps.len(), 4, "{steps:#?}");
    assert!(steps[1].starts_with("escalation step 2 of 2 (round 1 of 2)"), "{}", steps[1]);
    assert!(steps[1].contains("nobody acknowledged within 5m"), "{}", steps[1]);
    assert!(steps[2].starts_with("escalation step 1 of 2 (round 2 of 2)"), "{}", steps[2]);
}

#[tokio::test]
async fn an_acknowledgement_in_time_stops_the_next_step() {
    let env = start(TWO_STEPS);
    let d = &env.daemon;
    let id = alert(d, "disk-full", "critical").await;
    mails(&env, 1).await;
    d.advance("2m").await;
    let r = d.post(&format!("/api/v1/incidents/{id}/ack"), Some(TOKEN), "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    d.advance("1h").await;
    quiet(&env, 1).await;
    assert_eq!(inbox(&env)[0].0, "ana@example.com");

    let i = incident(d, id).await;
    assert_eq!(i["escalation"]["stopped"], "acknowledged by user:admin");
    assert!(i["pending"].as_array().unwrap().is_empty(), "{}", i["pending"]);
    let t = timeline(&i);
    assert!(
        t.iter().any(|m| m.starts_with(
            "escalation stopped: acknowledged by user:admin; cancelled escalation step 2"
        )),
        "{t:#?}"
    );
}

#[tokio::test]
async fn an_acknowledgement_that_runs_out_escalates_again() {
    let policies = r#"policies:
  - name: page
    steps:
      - notify: [{person: ana, channels: [email]}]
        wait: 5m
      - notify: [{person: ben, channels: [email]}]
    reescalate_after: 30m
default_policy: page
"#;
    let env = start(policies);
    let d = &env.daemon;
    let id = alert(d, "queue-stuck", "critical").await;
    mails(&env, 1).await;
    let r = d.post(&format!("/api/v1/incidents/{id}/ack"), Some(TOKEN), "").await;
    assert_eq!(r.status, 200);
    d.advance("29m").await;
    quiet(&env, 1).await;
    d.advance("1m").await;
    let got = mails(&env, 2).await;
    assert_eq!(got[1].0, "ana@example.com", "escalation restarts at step 1");
    let i = incident(d, id).await;
    assert_eq!(i["status"], "triggered");
    // And step 2 follows five minutes later, since nobody acknowledged again.
    d.advance("5m").await;
    assert_eq!(mails(&env, 3).await[2].0, "ben@example.com");
    // A resolve stops everything and tells both who were paged.
    let r = d.post(&format!("/api/v1/incidents/{id}/resolve"), Some(TOKEN), "").await;
    assert_eq!(r.status, 200);
    let got = mails(&env, 5).await;
    let mut resolved: Vec<&str> = got[3..].iter().map(|(to, _)| to.as_str()).collect();
    resolved.sort();
    assert_eq!(resolved, ["ana@example.com", "ben@example.com"]);
    assert!(got[3..].iter().all(|(_, s)| s.contains("Resolved")), "{got:?}");
    d.advance("3h").await;
    quiet(&env, 5).await;
}

#[tokio::test]
async fn a_restart_mid_policy_fires_each_due_step_exactly_once() {
    let policies = r#"policies:
  - name: page
    steps:
      - notify: [{person: ana, channels: [email]}]
        wait: 5m
      - notify: [{person: ben, channels: [email]}]
        wait: 10m
      - notify: [{person: cora, channels: [email]}]
default_policy: page
"#;
    let env = start(policies);
    let mut d = env.daemon;
    let env_mails = env.mails.clone();
    let id = alert(&d, "api-5xx", "critical").await;
    // Delivery is at-least-once: a mail sent just before a kill may be sent again after the
    // restart, under the same Message-ID. What must happen once is each notification, so count
    // distinct Message-IDs (recipients in order of first arrival).
    let distinct = |mails: &Arc<Mutex<Vec<Mail>>>| {
        let mut seen = std::collections::BTreeSet::new();
        let mut out: Vec<String> = Vec::new();
        for m in mails.lock().unwrap().iter() {
            if seen.insert(mail_header(&m.data, "message-id")) {
                out.push(m.to[0].trim_matches(|c| c == '<' || c == '>').to_string());
            }
        }
        out
    };
    let probe = |n| {
        let mails = env_mails.clone();
        async move {
            eventually(&format!("{n} notifications"), Duration::from_secs(20), async || {
                let got = distinct(&mails);
                if got.len() >= n { Ok(()) } else { Err(format!("{got:?}")) }
            })
            .await;
        }
    };
    probe(1).await;

    // Down for 20 minutes: step 2 (due at +5m) and, on the old schedule, step 3 (+15m) both
    // came due. On restart step 2 fires once, now; step 3 waits its ten minutes from now.
    d.kill9();
    let later = "2026-03-02T09:20:00Z";
    let d = d.restart_env(&[("TOCSIN_FAKE_CLOCK", later)]);
    probe(2).await;
    let i = incident(&d, id).await;
    let fired: Vec<String> =
        timeline(&i).into_iter().filter(|m| m.starts_with("escalation step 2")).collect();
    assert_eq!(fired.len(), 1, "{fired:#?}");
    assert!(
        fired[0].contains("fired late: it came due while the daemon was not running"),
        "{}",
        fired[0]
    );
    assert_eq!(i["escalation"]["next_at"], "2026-03-02T09:30:00Z");

    // Killed again at once, restarted at the same moment: step 2 does not fire twice.
    let mut d = d;
    d.kill9();
    let d = d.restart_env(&[("TOCSIN_FAKE_CLOCK", later)]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(distinct(&env_mails), ["ana@example.com", "ben@example.com"]);
    let i = incident(&d, id).await;
    let fired = timeline(&i).into_iter().filter(|m| m.starts_with("escalation step 2")).count();
    assert_eq!(fired, 1);
    d.advance("10m").await;
    probe(3).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(distinct(&env_mails), ["ana@example.com", "ben@example.com", "cora@example.com"]);
}

#[tokio::test]
async fn a_resolved_sev1_opens_a_review_whose_overdue_actions_remind_their_owner() {
    let env = start(
        r#"policies:
  - name: page
    notify: [{person: ana, channels: [email]}]
default_policy: page
"#,
    );
    let d = &env.daemon;
    let id = alert(d, "payments-down", "critical").await;
    mails(&env, 1).await;
    // Action items belong to the review, which opens on resolve.
    let early = d
        .post(
            &format!("/api/v1/incidents/{id}/actions"),
            Some(TOKEN),
            json!({"title": "x", "owner": "ana", "due": "2026-03-03"}).to_string(),
        )
        .await;
    assert_eq!(early.status, 409, "{}", early.text);
    d.advance("20m").await;
    let r = d.post(&format!("/api/v1/incidents/{id}/resolve"), Some(TOKEN), "").await;
    assert_eq!(r.status, 200);
    mails(&env, 2).await;
    let i = incident(d, id).await;
    assert_eq!(i["review"]["opened_at"], "2026-03-02T09:20:00Z", "{}", i["review"]);

    let r = d
        .client
        .put(d.url(&format!("/api/v1/incidents/{id}/review")))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(json!({"summary": "Card payments failed for 20 minutes.", "went_badly": "Paging took 5m."}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = d
        .post(
            &format!("/api/v1/incidents/{id}/actions"),
            Some(TOKEN),
            json!({"title": "Alert on card error rate", "owner": "omar", "due": "2026-03-05T12:00:00Z"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let bad = d
        .post(
            &format!("/api/v1/incidents/{id}/actions"),
            Some(TOKEN),
            json!({"title": "t", "owner": "nobody", "due": "2026-03-05"}).to_string(),
        )
        .await;
    assert_eq!(bad.status, 409, "{}", bad.text);
    assert!(bad.text.contains("no person `nobody`"), "{}", bad.text);

    // Not yet due: nothing. Due: omar is reminded, and again a day later, until it is done.
    d.advance("3d").await;
    quiet(&env, 2).await;
    d.advance("3h").await;
    let got = mails(&env, 3).await;
    assert_eq!(got[2].0, "omar@example.com");
    assert!(got[2].1.starts_with("Action item overdue:"), "{}", got[2].1);
    // The incident is resolved: the reminder says so, not that it is open and unacknowledged.
    assert!(got[2].1.contains("Resolved #1"), "{}", got[2].1);
    let text = text_of(&env, 2);
    assert!(text.contains("which was resolved at 2026-03-02T09:20:00Z"), "{text}");
    for lie in ["still open", "Still open", "nobody has acknowledged"] {
        assert!(!text.contains(lie), "says {lie:?}:\n{text}");
    }
    d.advance("24h").await;
    assert_eq!(mails(&env, 4).await[3].0, "omar@example.com");
    let r = d
        .post(
            &format!("/api/v1/incidents/{id}/actions/1"),
            Some(TOKEN),
            json!({"state": "done"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    d.advance("48h").await;
    quiet(&env, 4).await;

    // The export lays it all out for the meeting.
    let md = d.get(&format!("/api/v1/incidents/{id}/review"), Some(TOKEN)).await;
    assert_eq!(md.status, 200);
    for needle in [
        "# Incident #1: payments-down is failing",
        "Card payments failed for 20 minutes.",
        "| 1 | Alert on card error rate | omar | 2026-03-05T12:00:00Z | done |",
        "Resolved:** 2026-03-02T09:20:00Z by user:admin (after 20m 0s)",
        "action item #1: state open → done",
    ] {
        assert!(md.text.contains(needle), "missing {needle:?} in:\n{}", md.text);
    }
    let js = d.get(&format!("/api/v1/incidents/{id}/review?format=json"), Some(TOKEN)).await;
    assert_eq!(js.body["seconds_to_resolve"], 1200);
    assert_eq!(js.body["review"]["actions"][0]["state"], "done");
}

#[tokio::test]
async fn notes_and_roles_land_on_the_timeline_with_their_author() {
    let env = start(
        r#"policies:
  - name: page
    notify: [{person: ana, channels: [email]}]
default_policy: page
"#,
    );
    let d = &env.daemon;
    let id = alert(d, "cdn-errors", "warning").await;
    let r = d
        .post(
            &format!("/api/v1/incidents/{id}/notes"),
            Some(TOKEN),
            json!({"text": "Rolled back deploy 42"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = d
        .post(
            &format!("/api/v1/incidents/{id}/roles"),
            Some(TOKEN),
            json!({"role": "incident_lead", "person": "cora"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["roles"]["incident_lead"], "cora");
    let viewer = d
        .post(
            &format!("/api/v1/incidents/{id}/notes"),
            Some(common::VIEWER_TOKEN),
            json!({"text": "x"}).to_string(),
        )
        .await;
    assert_eq!(viewer.status, 403, "viewers read, responders act");
    let empty = d
        .post(
            &format!("/api/v1/incidents/{id}/notes"),
            Some(TOKEN),
            json!({"text": " "}).to_string(),
        )
        .await;
    assert_eq!(empty.status, 422, "{}", empty.text);
    let i = incident(d, id).await;
    let t = &i["timeline"];
    let note = t
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "note" && e["actor"] == "user:admin")
        .unwrap();
    assert_eq!(note["message"], "Rolled back deploy 42");
    assert!(t.as_array().unwrap().iter().any(
        |e| e["kind"] == "role_changed" && e["message"] == "role incident_lead: nobody → cora"
    ));
}

#[tokio::test]
async fn the_clock_endpoint_exists_only_on_a_manual_clock() {
    let d = Daemon::start("");
    let r = d.post("/-/clock", Some(TOKEN), r#"{"advance": "5m"}"#).await;
    assert_eq!(r.status, 404, "{}", r.text);
}

/// Roles from a rotation that hands off at 09:00 New York time, a legal liaison and a
/// communications lead; the shipped rules; a 72-hour notice for personal data.
fn roster(policies_and_more: &str) -> String {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");
    format!(
        r#"rules: {{dir: "{rules}"}}
rotations:
  - {{name: primary, members: [ana, ben], shift: daily, handoff: "09:00", zone: America/New_York, start: 2026-03-01}}
roles:
  incident_lead: {{rotation: primary}}
  legal_liaison: {{person: lena}}
  communications_lead: {{person: cora}}
{policies_and_more}"#
    )
}

const LEAD_PAGES: &str = r#"policies:
  - name: page
    notify: [{role: incident_lead}]
default_policy: page
"#;

#[tokio::test]
async fn the_rotation_hands_off_at_nine_in_new_york_not_at_nine_utc() {
    let env = start(&roster(LEAD_PAGES));
    let d = &env.daemon;
    // 09:00 UTC is 04:00 in New York: still Sunday's shift (ana), though the UTC day turned.
    let first = alert(d, "lb-1", "critical").await;
    assert_eq!(mails(&env, 1).await[0].0, "ana@example.com");
    assert_eq!(incident(d, first).await["roles"]["incident_lead"], "ana");
    // 13:59:59 UTC is 08:59:59 EST: still ana.
    d.advance("4h59m59s").await;
    alert(d, "lb-2", "critical").await;
    assert_eq!(mails(&env, 2).await[1].0, "ana@example.com");
    // 14:00 UTC is 09:00 in New York: ben's shift.
    d.advance("1s").await;
    let third = alert(d, "lb-3", "critical").await;
    assert_eq!(mails(&env, 3).await[2].0, "ben@example.com");
    assert_eq!(incident(d, third).await["roles"]["incident_lead"], "ben");
    quiet(&env, 3).await;
}

fn personal_report(ticket: &str) -> String {
    json!({
        "reporter": {"name": "Dana Reyes", "email": "dana@support.example.com"},
        "customer": {"id": "C-1", "name": "Jo Example", "email": "jo@example.org"},
        "service": "accounts",
        "summary": "Customer sees another customer's address on the profile page",
        "verified": true,
        "ticket_id": ticket,
        "severity": "low",
    })
    .to_string()
}

const GDPR: &str = r#"notices:
  - name: "GDPR Art. 33 supervisory authority notice"
    when: {sensitivity: [personal, financial]}
    deadline: 72h
    mandatory: true
    reminders: [24h, 48h, 66h]
"#;

#[tokio::test]
async fn a_personal_data_report_brings_in_legal_and_a_72_hour_notice_that_escalates_when_missed() {
    let env = start(&roster(&format!("{LEAD_PAGES}{GDPR}")));
    let d = &env.daemon;
    let r = d.post("/api/v1/reports", Some(TOKEN), personal_report("SUP-1")).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let event = r.event_ids()[0].clone();
    let id = d.get(&format!("/api/v1/events/{event}"), Some(TOKEN)).await.body["incident_id"]
        .as_u64()
        .expect("the report opened an incident");

    // The incident lead per the policy; the legal liaison (personal data) and the
    // communications lead (a verified report is customer-facing) brought in by the triage.
    let mut opened: Vec<String> = mails(&env, 3).await.into_iter().map(|(to, _)| to).collect();
    opened.sort();
    assert_eq!(opened, ["ana@example.com", "cora@example.com", "lena@example.com"]);
    assert_eq!(incident(d, id).await["roles"]["communications_lead"], "cora");
    let i = incident(d, id).await;
    assert_eq!(i["decision"]["sensitivity"], "personal");
    assert_eq!(i["roles"]["legal_liaison"], "lena");
    let notice = &i["notices"][0];
    assert_eq!(notice["name"], "GDPR Art. 33 supervisory authority notice");
    assert_eq!(notice["due_at"], "2026-03-05T09:00:00Z");
    assert_eq!(
        notice["reminders"],
        json!(["2026-03-03T09:00:00Z", "2026-03-04T09:00:00Z", "2026-03-05T03:00:00Z"])
    );
    quiet(&env, 3).await;

    // Reminders to the legal liaison at 24 h, 48 h and 66 h; nobody else.
    for (advance, n, left) in [("24h", 4, "48h"), ("24h", 5, "24h"), ("18h", 6, "6h")] {
        d.advance(advance).await;
        let got = mails(&env, n).await;
        assert_eq!(got[n - 1].0, "lena@example.com", "{got:?}");
        assert!(got[n - 1].1.starts_with("Notice due:"), "{}", got[n - 1].1);
        let data = env.mails.lock().unwrap()[n - 1].data.clone();
        assert!(data.contains(&format!("({left} left)")), "reminder says what is left: {data}");
        quiet(&env, n).await;
    }
    // The deadline passes unsent: missed, and the incident lead hears about it.
    d.advance("6h").await;
    let got = mails(&env, 7).await;
    assert_eq!(got[6].0, "ana@example.com");
    assert!(got[6].1.starts_with("Notice deadline missed:"), "{}", got[6].1);
    let i = incident(d, id).await;
    assert_eq!(i["notices"][0]["missed"], true);
    let metrics = d.get("/metrics", None).await.text;
    assert!(metrics.contains("tocsin_notices_missed_total 1"), "{metrics}");
    d.advance("72h").await;
    quiet(&env, 7).await;
}

#[tokio::test]
async fn a_notice_marked_sent_stops_its_reminders_and_its_deadline() {
    let env = start(&roster(&format!("{LEAD_PAGES}{GDPR}")));
    let d = &env.daemon;
    let r = d.post("/api/v1/reports", Some(TOKEN), personal_report("SUP-2")).await;
    assert_eq!(r.status, 202, "{}", r.text);
    mails(&env, 3).await;
    let id = 1;
    d.advance("30h").await;
    assert_eq!(mails(&env, 4).await[3].0, "lena@example.com");
    let r = d
        .post(
            &format!("/api/v1/incidents/{id}/notices/0/sent"),
            Some(TOKEN),
            json!({"reference": "DPA case 2026-0117"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["notices"][0]["sent"]["by"], "user:admin");
    let again = d.post(&format!("/api/v1/incidents/{id}/notices/0/sent"), Some(TOKEN), "").await;
    assert_eq!(again.status, 409, "{}", again.text);
    d.advance("96h").await;
    quiet(&env, 4).await;
    let i = incident(d, id).await;
    assert_eq!(i["notices"][0]["missed"], false);
    assert!(i["pending"].as_array().unwrap().is_empty(), "{}", i["pending"]);
    let t = timeline(&i);
    assert!(
        t.iter().any(|m| m.starts_with("notice `GDPR Art. 33 supervisory authority notice` marked sent at 2026-03-03T15:00:00Z by user:admin (reference: DPA case 2026-0117): on time, 42h")),
        "{t:#?}"
    );
}

#[tokio::test]
async fn a_later_event_that_reveals_personal_data_attaches_the_notice_then() {
    let env = start(&roster(&format!("{LEAD_PAGES}{GDPR}")));
    let d = &env.daemon;
    // The first report on the ticket shows nothing personal: no notice, no legal liaison.
    let first = json!({
        "reporter": {"name": "Dana Reyes", "email": "dana@support.example.com"},
        "service": "accounts",
        "summary": "Profile page shows the wrong layout",
        "verified": true,
        "ticket_id": "SUP-4",
        "severity": "low",
    });
    let r = d.post("/api/v1/reports", Some(TOKEN), first.to_string()).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let opened: Vec<String> = mails(&env, 2).await.into_iter().map(|(to, _)| to).collect();
    assert!(!opened.contains(&"lena@example.com".to_string()), "{opened:?}");
    quiet(&env, 2).await;
    let id = 1;
    assert!(incident(d, id).await["notices"].as_array().is_none_or(|n| n.is_empty()));

    // Five hours later a follow-up on the same ticket: it is another customer's address.
    d.advance("5h").await;
    let r = d.post("/api/v1/reports", Some(TOKEN), personal_report("SUP-4")).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let got = mails(&env, 3).await;
    assert_eq!(got[2].0, "lena@example.com", "{got:?}");
    assert!(got[2].1.starts_with("Notice due:"), "{}", got[2].1);
    let data = env.mails.lock().unwrap()[2].data.clone();
    assert!(data.contains("now applies"), "{data}");
    let i = incident(d, id).await;
    assert_eq!(i["decision"]["sensitivity"], "personal");
    let notice = &i["notices"][0];
    assert_eq!(notice["aware_at"], "2026-03-02T14:00:00Z", "counted from the revealing event");
    assert_eq!(notice["due_at"], "2026-03-05T14:00:00Z");
    quiet(&env, 3).await;
    // Its reminders run from there: the first at 24 h.
    d.advance("23h").await;
    quiet(&env, 3).await;
    d.advance("1h").await;
    assert_eq!(mails(&env, 4).await[3].0, "lena@example.com");
    // A third report on the ticket does not attach the same notice again.
    let r = d.post("/api/v1/reports", Some(TOKEN), personal_report("SUP-4")).await;
    assert_eq!(r.status, 202, "{}", r.text);
    quiet(&env, 4).await;
    assert_eq!(incident(d, id).await["notices"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_recorded_awareness_time_moves_the_notice_deadline_and_its_reminders() {
    let env = start(&roster(&format!("{LEAD_PAGES}{GDPR}")));
    let d = &env.daemon;
    let r = d.post("/api/v1/reports", Some(TOKEN), personal_report("SUP-3")).await;
    assert_eq!(r.status, 202, "{}", r.text);
    mails(&env, 3).await;
    let id = 1;
    d.advance("10h").await;
    let path = format!("/api/v1/incidents/{id}/awareness");

    // Awareness cannot be in the future, and `at` must be a time.
    let r = d.post(&path, Some(TOKEN), json!({"at": "2026-03-03T09:00:00Z"}).to_string()).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("in the future"), "{}", r.text);
    let r = d.post(&path, Some(TOKEN), json!({"at": "monday"}).to_string()).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("RFC 3339"), "{}", r.text);

    // The customer's report sat in the support mailbox for 30 hours before it was verified.
    let note = "first mail to support at 03:00 on 1 March, verified on 2 March";
    let r = d
        .post(&path, Some(TOKEN), json!({"at": "2026-03-01T03:00:00Z", "note": note}).to_string())
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let notice = &r.body["notices"][0];
    assert_eq!(notice["aware_at"], "2026-03-01T03:00:00Z");
    assert_eq!(notice["due_at"], "2026-03-04T03:00:00Z");
    assert_eq!(
        notice["reminders"],
        json!(["2026-03-02T03:00:00Z", "2026-03-03T03:00:00Z", "2026-03-03T21:00:00Z"])
    );
    assert_eq!(r.body["awareness"]["by"], "user:admin");
    assert_eq!(r.body["awareness"]["at"], "2026-03-01T03:00:00Z");
    let t = timeline(&incident(d, id).await);
    assert!(
        t.iter().any(|m| m.starts_with(
            "awareness recorded as 2026-03-01T03:00:00Z by user:admin (was 2026-03-02T09:00:00Z)"
        ) && m.contains(note)
            && m.contains("now due 2026-03-04T03:00:00Z (32h left)")),
        "{t:#?}"
    );
    quiet(&env, 3).await; // the 24 h reminder is already past: not sent late

    // Reminders at the moved times only: the old schedule (24 h, 48 h, 66 h after the report)
    // is gone.
    d.advance("8h").await;
    let got = mails(&env, 4).await;
    assert_eq!(got[3].0, "lena@example.com");
    assert!(env.mails.lock().unwrap()[3].data.contains("(24h left)"));
    quiet(&env, 4).await;
    d.advance("6h").await; // the old first reminder's time
    quiet(&env, 4).await;
    d.advance("12h").await;
    let got = mails(&env, 5).await;
    assert_eq!(got[4].0, "lena@example.com");
    assert!(env.mails.lock().unwrap()[4].data.contains("(6h left)"));
    // Missed at the moved deadline, 30 hours before the old one.
    d.advance("6h").await;
    let got = mails(&env, 6).await;
    assert_eq!(got[5].0, "ana@example.com");
    assert!(got[5].1.starts_with("Notice deadline missed:"), "{}", got[5].1);
    assert_eq!(incident(d, id).await["notices"][0]["missed"], true);
    d.advance("48h").await;
    quiet(&env, 6).await;
}

#[tokio::test]
async fn the_communications_lead_is_reminded_to_post_updates_while_it_is_open() {
    let env =
        start(&roster(&format!("{LEAD_PAGES}communications:\n  update_every: {{sev1: 30m}}\n")));
    let d = &env.daemon;
    // checkout is customer-facing (rules/50-customer-facing.rhai); the database is not.
    let id = alert_on(d, "checkout-down", "critical", "checkout").await;
    let i = incident(d, id).await;
    assert_eq!(i["decision"]["severity"], "sev1");
    assert_eq!(i["decision"]["customer_facing"], true);
    let mut first: Vec<String> = mails(&env, 2).await.into_iter().map(|(to, _)| to).collect();
    first.sort();
    assert_eq!(first, ["ana@example.com", "cora@example.com"]);
    let internal = alert(d, "db-disk", "critical").await;
    assert_eq!(incident(d, internal).await["decision"]["severity"], "sev1");
    assert_eq!(mails(&env, 3).await[2].0, "ana@example.com");
    d.advance("29m").await;
    quiet(&env, 3).await;
    d.advance("1m").await;
    let got = mails(&env, 4).await;
    assert_eq!(got[3].0, "cora@example.com");
    assert!(got[3].1.starts_with("Status update due:"), "{}", got[3].1);
    assert!(got[3].1.contains(&format!("#{id}")), "only the customer-facing one: {}", got[3].1);
    let data = env.mails.lock().unwrap()[3].data.clone();
    let text = mail_part(&data, "text/plain").expect("a text part");
    assert!(text.contains("Draft from the approved customer template:"), "{text}");
    quiet(&env, 4).await;
    d.advance("30m").await;
    assert_eq!(mails(&env, 5).await[4].0, "cora@example.com");
    quiet(&env, 5).await;
    let r = d.post(&format!("/api/v1/incidents/{id}/resolve"), Some(TOKEN), "").await;
    assert_eq!(r.status, 200);
    mails(&env, 7).await; // ana's and cora's resolution notices
    d.advance("2h").await;
    quiet(&env, 7).await;
    let t = timeline(&incident(d, internal).await);
    assert!(!t.iter().any(|m| m.contains("status update")), "{t:#?}");
}

#[tokio::test]
async fn a_maintenance_window_holds_back_pages_and_says_what_it_held() {
    let env = start(&roster(LEAD_PAGES));
    let d = &env.daemon;
    let r = d
        .post(
            "/api/v1/maintenance",
            Some(TOKEN),
            json!({"name": "db failover", "duration": "1h", "labels": {}}).to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let window = r.body["id"].as_u64().unwrap();
    let held = alert(d, "db-primary", "critical").await;
    let i = incident(d, held).await;
    assert_eq!(
        i["decision"]["suppressed"],
        format!("maintenance window `db failover` until 2026-03-02T10:00:00Z")
    );
    assert!(
        timeline(&i).iter().any(|m| m.starts_with("suppressed (maintenance window `db failover`")
            && m.contains("held back 1 notification(s): email to ana")),
        "{:#?}",
        timeline(&i)
    );
    quiet(&env, 0).await;
    let r = d
        .client
        .delete(d.url(&format!("/api/v1/maintenance/{window}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Ending the window early pages what it held back, now.
    let got = mails(&env, 1).await;
    assert_eq!(got[0].0, "ana@example.com");
    assert!(got[0].1.contains("db-primary"), "{got:?}");
    alert(d, "db-replica", "critical").await;
    assert_eq!(mails(&env, 2).await[1].0, "ana@example.com");
    quiet(&env, 2).await;
}

#[tokio::test]
async fn an_incident_acknowledged_during_a_window_gets_its_status_updates_once_it_ends() {
    let env =
        start(&roster(&format!("{LEAD_PAGES}communications:\n  update_every: {{sev1: 30m}}\n")));
    let d = &env.daemon;
    let window = json!({"name": "checkout deploy", "duration": "1h"}).to_string();
    assert_eq!(d.post("/api/v1/maintenance", Some(TOKEN), window).await.status, 201);
    // checkout is customer-facing (rules/50-customer-facing.rhai).
    let id = alert_on(d, "checkout-down", "critical", "checkout").await;
    assert_eq!(incident(d, id).await["held_by"]["window"], "checkout deploy");
    let r = d.post(&format!("/api/v1/incidents/{id}/ack"), Some(TOKEN), "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    d.advance("1h").await;
    quiet(&env, 0).await;
    // Nobody is paged (it is acknowledged), but the status updates start at the window's end.
    d.advance("30m").await;
    let got = mails(&env, 1).await;
    assert_eq!(got[0].0, "cora@example.com");
    assert!(got[0].1.starts_with("Status update due:"), "{got:?}");
    let t = timeline(&incident(d, id).await);
    assert!(t.iter().any(|m| m.contains("so nobody is paged")), "{t:#?}");
    assert!(t.iter().any(|m| m.starts_with("status updates are now due every 30m")), "{t:#?}");
}

#[tokio::test]
async fn acknowledging_through_the_signed_link_stops_the_next_step() {
    let (port, inbox) = smtp_server();
    let yaml = config(port, TWO_STEPS).replace(
        "notifications:\n",
        "notifications:\n  dashboard_url: \"https://tocsin.example.com\"\n",
    );
    let env = Env {
        daemon: Daemon::with(&config_yaml(&yaml)).env("TOCSIN_FAKE_CLOCK", T0).start(),
        mails: inbox,
    };
    let d = &env.daemon;
    let id = alert(d, "search-slow", "critical").await;
    mails(&env, 1).await;
    let data = env.mails.lock().unwrap()[0].data.clone();
    let text = mail_part(&data, "text/plain").expect("a text part");
    let link = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Acknowledge: https://tocsin.example.com"))
        .unwrap_or_else(|| panic!("no acknowledge link in:\n{text}"))
        .to_string();
    d.advance("3m").await;
    let r = d
        .client
        .post(d.url(&link))
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    d.advance("1h").await;
    quiet(&env, 1).await;
    let i = incident(d, id).await;
    assert_eq!(i["acknowledged"]["by"], "link:ana");
    assert_eq!(i["escalation"]["stopped"], "acknowledged by link:ana");
}

const ONE_STEP: &str = r#"policies:
  - name: page
    notify: [{person: ana, channels: [email]}]
default_policy: page
"#;

/// An Alertmanager v2 alert as Prometheus sends it: `endsAt` a few minutes ahead, refreshed
/// while it fires.
fn prometheus_alert(instance: &str, ends_at: &str) -> String {
    json!([{
        "labels": {"alertname": "DiskFull", "instance": instance, "severity": "critical"},
        "annotations": {"summary": format!("Disk full on {instance}")},
        "startsAt": "2026-03-02T08:58:00Z",
        "endsAt": ends_at,
    }])
    .to_string()
}

#[tokio::test]
async fn an_alert_whose_ends_at_passes_without_a_refresh_resolves_once_across_restarts() {
    let Env { daemon: mut d, mails: env } = start(ONE_STEP);
    let r = d
        .post("/api/v2/alerts", Some(TOKEN), prometheus_alert("db1", "2026-03-02T09:04:00Z"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = d.incident_of(&r).await;
    distinct_n(&env, 1).await;
    // Refreshed at +2m with endsAt +6m: the end moves with it.
    d.advance("2m").await;
    let r = d
        .post("/api/v2/alerts", Some(TOKEN), prometheus_alert("db1", "2026-03-02T09:06:00Z"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    d.advance("3m").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(incident(&d, id).await["status"], "triggered", "the refresh moved the end");
    d.advance("1m").await;
    let got = distinct_n(&env, 2).await;
    assert_eq!(got[1].0, "ana@example.com");
    assert!(got[1].1.contains("Resolved"), "{got:?}");
    let i = incident(&d, id).await;
    assert_eq!(i["status"], "resolved");
    assert_eq!(i["resolved"]["by"], "tocsin");
    assert!(
        timeline(&i).iter().any(|m| m.starts_with(
            "resolved: the sender's endsAt 2026-03-02T09:06:00Z passed without a refresh"
        )),
        "{:#?}",
        timeline(&i)
    );

    // A second alert whose refresh states a much later end (a longer lease): not resolved at
    // the first end. Then the daemon is down when the later end passes.
    let r = d
        .post("/api/v2/alerts", Some(TOKEN), prometheus_alert("db2", "2026-03-02T09:10:00Z"))
        .await;
    let second = d.incident_of(&r).await;
    distinct_n(&env, 3).await;
    d.advance("1m").await;
    let r = d
        .post("/api/v2/alerts", Some(TOKEN), prometheus_alert("db2", "2026-03-02T10:00:00Z"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    d.advance("20m").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(incident(&d, second).await["status"], "triggered");
    assert_eq!(incident(&d, second).await["expiry"]["ends_at"], "2026-03-02T10:00:00Z");
    d.kill9();
    let later = "2026-03-02T10:30:00Z";
    let mut d = d.restart_env(&[("TOCSIN_FAKE_CLOCK", later)]);
    let got = distinct_n(&env, 4).await;
    assert!(got[3].1.contains("Resolved") && got[3].1.contains(&format!("#{second}")), "{got:?}");
    d.kill9();
    let d = d.restart_env(&[("TOCSIN_FAKE_CLOCK", later)]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(distinct(&env).len(), 4, "{:?}", distinct(&env));
    let t = timeline(&incident(&d, second).await);
    let resolved = t.iter().filter(|m| m.starts_with("resolved: the sender's endsAt")).count();
    assert_eq!(resolved, 1, "{t:#?}");
    assert!(
        t.iter().any(|m| m.contains("fired late: it came due while the daemon was not running")),
        "{t:#?}"
    );
}

#[tokio::test]
async fn a_short_lease_after_a_long_one_resolves_at_its_own_ends_at() {
    let env = start(ONE_STEP);
    let d = &env.daemon;
    let send = |ends_at: &'static str| {
        d.post("/api/v2/alerts", Some(TOKEN), prometheus_alert("db1", ends_at))
    };
    let r = send("2026-03-02T09:04:00Z").await;
    let id = d.incident_of(&r).await;
    mails(&env, 1).await;
    // One refresh states a long lease (endsAt 10:00), the next ones 4 minutes again.
    d.advance("2m").await;
    assert_eq!(send("2026-03-02T10:00:00Z").await.status, 200);
    d.advance("2m").await;
    assert_eq!(send("2026-03-02T09:08:00Z").await.status, 200);
    d.advance("2m").await;
    assert_eq!(send("2026-03-02T09:10:00Z").await.status, 200);
    // The sender stops at 09:06; its last endsAt is 09:10.
    d.advance("3m59s").await;
    quiet(&env, 1).await;
    assert_eq!(incident(d, id).await["status"], "triggered");
    d.advance("1s").await;
    let got = mails(&env, 2).await;
    assert!(got[1].1.contains("Resolved"), "resolved at 09:10, not an hour later: {got:?}");
    let i = incident(d, id).await;
    assert!(
        timeline(&i).iter().any(|m| m.starts_with(
            "resolved: the sender's endsAt 2026-03-02T09:10:00Z passed without a refresh"
        )),
        "{:#?}",
        timeline(&i)
    );
}

#[tokio::test]
async fn an_alert_without_ends_at_stays_open_unless_a_resolve_timeout_is_set() {
    let (port, inbox) = smtp_server();
    let yaml = format!("{}incidents:\n  resolve_timeout: 5m\n", config(port, ONE_STEP));
    let env = Env {
        daemon: Daemon::with(&config_yaml(&yaml)).env("TOCSIN_FAKE_CLOCK", T0).start(),
        mails: inbox,
    };
    let d = &env.daemon;
    let bare = |instance: &str| {
        json!([{"labels": {"alertname": "QueueStuck", "instance": instance}}]).to_string()
    };
    let r = d.post("/api/v2/alerts", Some(TOKEN), bare("q1")).await;
    let id = d.incident_of(&r).await;
    // The canonical endpoint has no such timeout: its incidents stay open.
    let other = alert(d, "cron-failed", "critical").await;
    mails(&env, 2).await;
    d.advance("3m").await;
    d.post("/api/v2/alerts", Some(TOKEN), bare("q1")).await;
    d.advance("4m").await;
    quiet(&env, 2).await;
    assert_eq!(incident(d, id).await["status"], "triggered", "refreshed at +3m: open until +8m");
    d.advance("1m").await;
    mails(&env, 3).await;
    assert_eq!(incident(d, id).await["status"], "resolved");
    d.advance("3h").await;
    quiet(&env, 3).await;
    assert_eq!(incident(d, other).await["status"], "triggered");
}

#[tokio::test]
async fn a_maintenance_window_that_ends_while_its_incident_fires_pages_once_across_a_restart() {
    let Env { daemon: mut d, mails: env } = start(&roster(LEAD_PAGES));
    let window = |name: &str| json!({"name": name, "duration": "1h"}).to_string();
    let r = d.post("/api/v1/maintenance", Some(TOKEN), window("db failover")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let held = alert(&d, "db-primary", "critical").await;
    assert_eq!(incident(&d, held).await["held_by"]["until"], "2026-03-02T10:00:00Z");
    // Still failing half-way through: the repeat joins the held incident, nobody is paged.
    d.advance("30m").await;
    alert(&d, "db-primary", "critical").await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(distinct(&env).is_empty(), "{:?}", distinct(&env));
    // The window ends with the incident still open: it pages now, from the first step.
    d.advance("30m").await;
    let got = distinct_n(&env, 1).await;
    assert_eq!(got[0].0, "ana@example.com");
    assert!(got[0].1.contains("db-primary"), "{got:?}");
    let i = incident(&d, held).await;
    assert!(i["held_by"].is_null(), "{}", i["held_by"]);
    assert!(
        timeline(&i).iter().any(|m| m.contains(
            "maintenance window `db failover` ended at 2026-03-02T10:00:00Z with the incident still triggered: paging now"
        )),
        "{:#?}",
        timeline(&i)
    );
    // A second window ends while the daemon is down: it pages once, after the restart.
    let r = d.post("/api/v1/maintenance", Some(TOKEN), window("switch upgrade")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let second = alert(&d, "switch-3", "critical").await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(distinct(&env).len(), 1, "{:?}", distinct(&env));
    d.kill9();
    let later = "2026-03-02T11:30:00Z";
    let mut d = d.restart_env(&[("TOCSIN_FAKE_CLOCK", later)]);
    let got = distinct_n(&env, 2).await;
    assert!(got[1].1.contains("switch-3"), "{got:?}");
    d.kill9();
    let d = d.restart_env(&[("TOCSIN_FAKE_CLOCK", later)]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(distinct(&env).len(), 2, "{:?}", distinct(&env));
    let t = timeline(&incident(&d, second).await);
    assert_eq!(t.iter().filter(|m| m.contains("paging now")).count(), 1, "{t:#?}");
}

/// Waits (at most 20 s of real time) until `check` holds for incident `id`.
async fn until(d: &Daemon, id: u64, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(&format!("incident {id}: {what}"), Duration::from_secs(20), async || {
        let i = incident(d, id).await;
        if check(&i) { Ok(i) } else { Err(format!("{i:#}")) }
    })
    .await
}

/// A config window from 08:00 to `ends` for `service`.
fn config_window(name: &str, service: &str, ends: &str) -> String {
    format!(
        "  - {{name: \"{name}\", starts: 2026-03-02T08:00:00Z, ends: {ends}, service: {service}}}\n"
    )
}

#[tokio::test]
async fn incidents_an_earlier_version_held_back_page_when_their_window_ends() {
    let (port, inbox) = smtp_server();
    let window = config_window("db failover", "db", "2026-03-02T10:00:00Z");
    let yaml = config(port, &format!("{ONE_STEP}maintenance:\n{window}"));
    let mut d = Daemon::with(&config_yaml(&yaml)).env("TOCSIN_FAKE_CLOCK", T0).start();
    let primary = alert_on(&d, "db-primary", "critical", "db").await;
    let replica = alert_on(&d, "db-replica", "critical", "db").await;
    d.terminate();
    // As the version before held_by left them: suppressed by the window, with no held_by and no
    // timer for its end; the replica's decision since replaced by a repeated trigger.
    {
        use tocsin::escalation::TimerKind;
        let store = tocsin::store::Store::open(&d.data_dir).unwrap();
        store
            .write(|batch| {
                for id in [primary, replica] {
                    let mut i = batch.incident(id)?.unwrap();
                    assert!(i.held_by.take().is_some());
                    if id == replica {
                        i.decision.suppressed = None;
                    }
                    for t in batch.incident_timers(id)? {
                        if matches!(t.kind, TimerKind::WindowEnds { .. }) {
                            batch.remove_timer(&t)?;
                        }
                    }
                    batch.put_incident(&i, true)?;
                }
                Ok(())
            })
            .unwrap();
    }
    let mut d = d.restart_env(&[("TOCSIN_FAKE_CLOCK", T0)]);
    let env = Env { daemon: d, mails: inbox };
    for id in [primary, replica] {
        until(&env.daemon, id, "held until the window's end", |i| {
            i["held_by"]["until"] == "2026-03-02T10:00:00Z"
        })
        .await;
    }
    // A restart before the window ends finds nothing more to do.
    d = env.daemon;
    d.kill9();
    let env = Env { daemon: d.restart_env(&[("TOCSIN_FAKE_CLOCK", T0)]), mails: env.mails };
    let d = &env.daemon;
    alert_on(d, "db-backup", "critical", "db").await; // a commit after the restart's first
    quiet(&env, 0).await;
    d.advance("1h").await;
    let mut got: Vec<String> = mails(&env, 2).await.into_iter().map(|(_, s)| s).collect();
    got.sort();
    assert!(got[0].contains("db-primary") && got[1].contains("db-replica"), "{got:?}");
    mails(&env, 3).await; // db-backup, held by the same window
    quiet(&env, 3).await;
    for id in [primary, replica] {
        let t = timeline(&incident(d, id).await);
        let held = t.iter().filter(|m| m.contains("held by an earlier version")).count();
        assert_eq!(held, 1, "{t:#?}");
        assert_eq!(t.iter().filter(|m| m.contains("paging now")).count(), 1, "{t:#?}");
    }
}

#[tokio::test]
async fn a_reload_that_shortens_or_removes_a_window_pages_what_it_held_then() {
    let (port, inbox) = smtp_server();
    let db = config_window("db failover", "db", "2026-03-02T10:00:00Z");
    let net = config_window("switch upgrade", "net", "2026-03-02T10:00:00Z");
    let yaml = config(port, &format!("{ONE_STEP}maintenance:\n{db}{net}"));
    let env = Env {
        daemon: Daemon::with(&config_yaml(&yaml)).env("TOCSIN_FAKE_CLOCK", T0).start(),
        mails: inbox,
    };
    let d = &env.daemon;
    let primary = alert_on(d, "db-primary", "critical", "db").await;
    let switch = alert_on(d, "switch-3", "critical", "net").await;
    assert_eq!(incident(d, primary).await["held_by"]["until"], "2026-03-02T10:00:00Z");
    quiet(&env, 0).await;
    // The db window now ends at 09:20; the switch window is gone.
    let shorter = config_window("db failover", "db", "2026-03-02T09:20:00Z");
    let yaml = common::config_yaml(&config(port, &format!("{ONE_STEP}maintenance:\n{shorter}")));
    std::fs::write(&d.config, yaml).unwrap();
    let r = d.post("/-/reload", Some(TOKEN), "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got = mails(&env, 1).await;
    assert!(got[0].1.contains("switch-3"), "paged at the reload, not at 10:00: {got:?}");
    let i = incident(d, switch).await;
    assert!(
        timeline(&i).iter().any(|m| m
            == "maintenance window `switch upgrade` is no longer in the config (it was to end at 2026-03-02T10:00:00Z): it pages now if still triggered"),
        "{:#?}",
        timeline(&i)
    );
    until(d, primary, "held until the new end", |i| {
        i["held_by"]["until"] == "2026-03-02T09:20:00Z"
    })
    .await;
    d.advance("19m").await;
    quiet(&env, 1).await;
    d.advance("1m").await;
    let got = mails(&env, 2).await;
    assert!(got[1].1.contains("db-primary"), "paged at the new end: {got:?}");
    quiet(&env, 2).await;
}

/// The dashboard page at `path` as the user with `token` sees it.
async fn dashboard(d: &Daemon, path: &str, name: &str, token: &str) -> String {
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login =
        c.post(d.url("/login")).form(&[("name", name), ("token", token), ("next", "/")]).send();
    let login = login.await.unwrap();
    let cookie =
        login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page = c.get(d.url(path)).header("cookie", cookie).send().await.unwrap();
    assert_eq!(page.status(), 200);
    page.text().await.unwrap()
}

#[tokio::test]
async fn a_resolved_incident_is_no_longer_held_back_or_due_to_expire() {
    let env = start(ONE_STEP);
    let d = &env.daemon;
    let window = json!({"name": "db failover", "duration": "1h"}).to_string();
    assert_eq!(d.post("/api/v1/maintenance", Some(TOKEN), window).await.status, 201);
    let r = d
        .post("/api/v2/alerts", Some(TOKEN), prometheus_alert("db1", "2026-03-02T09:04:00Z"))
        .await;
    let id = d.incident_of(&r).await;
    let i = incident(d, id).await;
    assert_eq!(i["held_by"]["window"], "db failover");
    assert_eq!(i["expiry"]["ends_at"], "2026-03-02T09:04:00Z");
    let r = d.post(&format!("/api/v1/incidents/{id}/resolve"), Some(TOKEN), "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let i = incident(d, id).await;
    assert!(i["held_by"].is_null() && i["expiry"].is_null(), "{i:#}");
    let page = dashboard(d, &format!("/incidents/{id}"), "admin", TOKEN).await;
    assert!(!page.contains("Held back") && !page.contains("it pages then"), "{page}");
    assert!(!page.contains("unless its sender refreshes it"), "{page}");
    d.advance("2h").await;
    quiet(&env, 0).await;
}

#[tokio::test]
async fn a_link_with_personal_data_shows_only_to_users_with_the_pii_permission() {
    let env = start(ONE_STEP);
    let d = &env.daemon;
    let ticket = "https://desk.example.com/tickets/SUP-7?requester=jane@x.com";
    let mut report: Value = serde_json::from_str(&personal_report("SUP-7")).unwrap();
    report["ticket_url"] = json!(ticket);
    let encoded = json!({
        "dedup_key": "encoded",
        "summary": "Export failed",
        "links": [{"href": "https://desk.example.com/search?q=jane%40x.com"}],
    });
    let r = d.post("/api/v1/reports", Some(TOKEN), report.to_string()).await;
    let id = d.incident_of(&r).await;
    let r = d.post("/api/v1/events", Some(TOKEN), encoded.to_string()).await;
    let other = d.incident_of(&r).await;
    for id in [id, other] {
        let path = format!("/incidents/{id}");
        let viewer = dashboard(d, &path, "dashboard", common::VIEWER_TOKEN).await;
        assert!(!viewer.contains("jane@x.com") && !viewer.contains("jane%40x.com"), "{viewer}");
        assert!(viewer.contains("(the link holds personal data"), "{viewer}");
    }
    let admin = dashboard(d, &format!("/incidents/{id}"), "admin", TOKEN).await;
    assert!(
        admin.contains(&format!("<a class=\"incident-link\" href=\"{ticket}\"")),
        "the pii permission shows it: {admin}"
    );
}

#[tokio::test]
async fn the_legal_liaisons_first_message_states_the_notice_and_its_deadline() {
    let (port, inbox) = smtp_server();
    let yaml = config(port, &roster(&format!("{LEAD_PAGES}{GDPR}"))).replace(
        "{id: lena, name: Lena, email: lena@example.com}",
        "{id: lena, name: Lena, email: lena@example.com, zone: Europe/Berlin}",
    );
    let env = Env {
        daemon: Daemon::with(&config_yaml(&yaml)).env("TOCSIN_FAKE_CLOCK", T0).start(),
        mails: inbox,
    };
    let d = &env.daemon;
    let r = d.post("/api/v1/reports", Some(TOKEN), personal_report("SUP-9")).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let got = mails(&env, 3).await;
    let at = |who: &str| got.iter().position(|(to, _)| to == who).unwrap();
    let legal = text_of(&env, at("lena@example.com"));
    assert!(
        legal.contains("- GDPR Art. 33 supervisory authority notice (mandatory): due 2026-03-05 10:00 CET (Europe/Berlin), that is 2026-03-05T09:00:00Z in UTC"),
        "{legal}"
    );
    // The communications lead starts from the approved customer wording.
    let comms = text_of(&env, at("cora@example.com"));
    assert!(comms.contains("Draft from the approved customer template:\n---\n"), "{comms}");
    assert!(!comms.contains("another customer's address"), "no summary in the draft: {comms}");
}

#[tokio::test]
async fn runbook_and_dashboard_links_reach_the_incident_its_mail_and_its_page() {
    let env = start(ONE_STEP);
    let d = &env.daemon;
    let body = json!([{
        "labels": {"alertname": "DiskFull", "instance": "db1", "severity": "critical"},
        "annotations": {
            "summary": "Disk full on db1",
            "runbook_url": "https://wiki.example.com/runbooks/disk-full",
            "dashboard_url": "https://grafana.example.com/d/disk"
        },
        "generatorURL": "http://prometheus.example.com/graph?g0.expr=disk"
    }]);
    let r = d.post("/api/v2/alerts", Some(TOKEN), body.to_string()).await;
    let id = d.incident_of(&r).await;
    mails(&env, 1).await;
    let text = text_of(&env, 0);
    assert!(text.contains("  Runbook: https://wiki.example.com/runbooks/disk-full\n"), "{text}");
    assert!(text.contains("  Dashboard: https://grafana.example.com/d/disk"), "{text}");
    let i = incident(d, id).await;
    assert_eq!(
        i["links"][0],
        json!({"kind": "runbook", "href": "https://wiki.example.com/runbooks/disk-full"})
    );
    assert_eq!(i["links"][2]["kind"], "source");
    // PagerDuty `links` join the same incident's list when they come with a later event.
    let pd = json!({
        "routing_key": common::ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "pd-1",
        "payload": {"summary": "Replication lag", "source": "db2", "severity": "error"},
        "links": [{"href": "https://runbooks.example.com/replication", "text": "Runbook: replication lag"}]
    });
    let r = d.post("/v2/enqueue", None, pd.to_string()).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let pd_id = d.incident_of(&r).await;
    assert_eq!(incident(d, pd_id).await["links"][0]["kind"], "runbook");
    // The dashboard's incident page links them.
    let html = dashboard(d, &format!("/incidents/{id}"), "admin", TOKEN).await;
    assert!(
        html.contains("<tr><th>Runbook</th><td><a class=\"incident-link\" href=\"https://wiki.example.com/runbooks/disk-full\""),
        "{html}"
    );
}

#[tokio::test]
async fn a_repeated_alert_adds_the_runbook_the_incident_lacked() {
    let env = start(ONE_STEP);
    let d = &env.daemon;
    let alert = |runbook: Option<&str>| {
        let mut a = json!({
            "labels": {"alertname": "DiskFull", "instance": "db1", "severity": "critical"},
            "annotations": {"summary": "Disk full on db1"},
        });
        if let Some(href) = runbook {
            a["annotations"]["runbook_url"] = json!(href);
        }
        json!([a]).to_string()
    };
    let r = d.post("/api/v2/alerts", Some(TOKEN), alert(None)).await;
    let id = d.incident_of(&r).await;
    // A repeat with nothing new is counted; one that brings a runbook adds it.
    d.post("/api/v2/alerts", Some(TOKEN), alert(None)).await;
    let runbook = "https://wiki.example.com/runbooks/disk-full";
    let r = d.post("/api/v2/alerts", Some(TOKEN), alert(Some(runbook))).await;
    assert_eq!(d.incident_of(&r).await, id);
    let i = incident(d, id).await;
    assert_eq!(i["count"], 3);
    assert_eq!(i["links"], json!([{"kind": "runbook", "href": runbook}]), "{i:#}");
    d.post("/api/v2/alerts", Some(TOKEN), alert(Some(runbook))).await;
    assert_eq!(incident(d, id).await["count"], 4);
}

#[tokio::test]
async fn with_the_severity_floor_a_rules_one_step_policy_cannot_weaken_a_sev1() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");
    let policies = format!(
        r#"rules: {{dir: "{rules}"}}
policies:
  - name: payments
    notify: [{{person: ben, channels: [email]}}]
  - name: sev1-page
    steps:
      - notify: [{{person: ana, channels: [email]}}]
        wait: 5m
      - notify: [{{person: cora, channels: [email]}}]
severity_policies: {{sev1: sev1-page}}
default_policy: payments
escalation:
  severity_floor: true
"#
    );
    let env = start(&policies);
    let d = &env.daemon;
    // rules/10-service-weight.rhai picks `payments` for the payments service.
    let id = alert_on(d, "card-data", "critical", "payments").await;
    let i = incident(d, id).await;
    assert_eq!(i["decision"]["severity"], "sev1");
    assert_eq!(i["decision"]["policy"], "payments");
    let choice = &i["policy_choice"];
    assert_eq!(choice["policy"], "sev1-page", "{choice}");
    assert_eq!(choice["by"], "floor");
    assert_eq!(choice["rule"], "10-service-weight.rhai");
    assert_eq!(choice["also"], "payments");
    assert!(
        timeline(&i).iter().any(|m| m.starts_with(
            "escalation policy `sev1-page`: rule 10-service-weight.rhai chose `payments` (1 escalation step(s)), which escalates less than severity_policies.sev1 `sev1-page` (2)"
        )),
        "{:#?}",
        timeline(&i)
    );
    // The severity's first step and the rule's team at once; the severity's next step later.
    let mut first: Vec<String> = mails(&env, 2).await.into_iter().map(|(to, _)| to).collect();
    first.sort();
    assert_eq!(first, ["ana@example.com", "ben@example.com"]);
    d.advance("5m").await;
    assert_eq!(mails(&env, 3).await[2].0, "cora@example.com");
    quiet(&env, 3).await;
}

/// On a manual clock, a step passed over by moving the clock fires late, and the timeline says
/// so — not that the daemon was down, which it was not.
#[tokio::test]
async fn a_step_passed_by_a_clock_jump_says_the_clock_moved() {
    let env = start(TWO_STEPS);
    let d = &env.daemon;
    let id = alert(d, "jump", "critical").await;
    mails(&env, 1).await;
    d.advance("20m").await;
    mails(&env, 2).await;
    let fired: Vec<String> = timeline(&incident(d, id).await)
        .into_iter()
        .filter(|m| m.starts_with("escalation step 2"))
        .collect();
    assert_eq!(fired.len(), 1, "{fired:#?}");
    assert!(
        fired[0].contains("fired late: the manual clock (TOCSIN_FAKE_CLOCK) was moved past it"),
        "{}",
        fired[0]
    );
    assert!(!fired[0].contains("not running"), "{}", fired[0]);
}
