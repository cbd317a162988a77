//! Declared incidents, the service catalog and templates per language, end to end: the real
//! daemon on a manual clock against a real SMTP server. Every test asserts on what a person
//! would see: the API's answers, the incident and its timeline, and the mails that arrived.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::smtp::{Mail, mail_header, mail_part, smtp_server};
use common::{Daemon, TOKEN, VIEWER_TOKEN, config_yaml, eventually};
use serde_json::{Value, json};

const T0: &str = "2026-03-02T09:00:00Z";
const RESPONDER_TOKEN: &str = "test-responder-token-decl";

/// A responder user (appended to `users`, the last list of the common config), people ana
/// (English), greta (German), pierre (French: no French templates), ben and cora, SMTP to
/// `port` (one connection: the sink serves two at a time, and the pool keeps one open), and
/// `extra` (top-level YAML).
fn config(port: u16, extra: &str) -> String {
    format!(
        r#"  - name: rita
    token: {RESPONDER_TOKEN}
    roles: [responder]
people:
  - {{id: ana, name: Ana, email: ana@example.com}}
  - {{id: greta, name: Greta, email: greta@example.com, language: de}}
  - {{id: pierre, name: Pierre, email: pierre@example.com, language: fr}}
  - {{id: ben, name: Ben, email: ben@example.com}}
  - {{id: cora, name: Cora, email: cora@example.com}}
notifications:
  email: {{relay: 127.0.0.1, port: {port}, tls: none, from: "Tocsin <tocsin@example.com>", timeout: 5s, max_connections: 1}}
  delivery: {{initial_backoff: 100ms, max_backoff: 1s, attempt_timeout: 2s, lease: 5s, max_attempts: 5}}
  rate_limits: {{email: {{}}, sms: {{}}, webhook: {{}}, log: {{}}}}
{extra}"#
    )
}

struct Env {
    daemon: Daemon,
    mails: Arc<Mutex<Vec<Mail>>>,
}

fn start(extra: &str) -> Env {
    let (port, mails) = smtp_server();
    let daemon =
        Daemon::with(&config_yaml(&config(port, extra))).env("TOCSIN_FAKE_CLOCK", T0).start();
    Env { daemon, mails }
}

fn recipient(m: &Mail) -> String {
    m.to.first().cloned().unwrap_or_default().trim_matches(|c| c == '<' || c == '>').to_string()
}

/// Waits (at most 20 s) until every address in `to` has a mail; returns all mails so far.
async fn mails_to(env: &Env, to: &[&str]) -> Vec<Mail> {
    eventually(&format!("mail to {to:?}"), Duration::from_secs(20), async || {
        let got = env.mails.lock().unwrap().clone();
        if to.iter().all(|t| got.iter().any(|m| recipient(m) == *t)) {
            return Ok(got);
        }
        let have: Vec<String> = got.iter().map(recipient).collect();
        Err(format!("mail to {have:?}"))
    })
    .await
}

fn mail_for<'a>(mails: &'a [Mail], to: &str) -> &'a Mail {
    mails.iter().find(|m| recipient(m) == to).unwrap_or_else(|| panic!("no mail to {to}"))
}

/// The decoded text/plain part of a mail.
fn text_part(data: &str) -> String {
    mail_part(data, "text/plain").unwrap_or_else(|| panic!("no text part in:\n{data}"))
}

async fn incident(d: &Daemon, id: u64) -> Value {
    let r = d.get(&format!("/api/v1/incidents/{id}"), Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

async fn alert(d: &Daemon, body: Value) -> u64 {
    let r = d.post("/api/v1/events", Some(TOKEN), body.to_string()).await;
    d.incident_of(&r).await
}

const PAGE_ANA: &str = r#"policies:
  - name: page
    steps:
      - notify: [{person: ana, channels: [email]}]
        wait: 5m
      - notify: [{person: ben, channels: [email]}]
default_policy: page
"#;

fn declaration() -> Value {
    json!({
        "title": "Researcher reports an exposed storage bucket",
        "description": "A security researcher emailed a link to a public bucket with invoices.",
        "impact": {
            "services": ["billing"],
            "customer_impact": true,
            "data_sensitivity": "financial",
            "estimated_reach": 1200
        },
        "severity": "sev2"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_incident_runs_the_rules_and_escalation_and_names_its_declarer() {
    let env = start(PAGE_ANA);
    let d = &env.daemon;

    let r = d.post("/api/v1/incidents", Some(RESPONDER_TOKEN), declaration().to_string()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["declared_by"], "user:rita");
    let id = r.body["incident_id"].as_u64().expect("an incident id");

    let inc = incident(d, id).await;
    assert_eq!(inc["kind"], "declaration");
    assert_eq!(inc["source"], "declared");
    assert_eq!(inc["summary"], "Researcher reports an exposed storage bucket");
    assert_eq!(inc["service"], "billing");
    assert_eq!(inc["scope"], json!(["billing"]));
    // The declared severity and assessment went into the decision.
    assert_eq!(inc["decision"]["severity"], "sev2");
    assert_eq!(inc["decision"]["sensitivity"], "financial");
    assert_eq!(inc["decision"]["customer_facing"], true);
    let opened = &inc["timeline"][0];
    assert_eq!(opened["actor"], "user:rita", "{opened}");
    let message = opened["message"].as_str().unwrap();
    assert!(
        message.starts_with("declared by user:rita: Researcher reports an exposed storage bucket"),
        "{message}"
    );
    // The stored event carries the assessment.
    let event_id = opened["event_id"].as_str().expect("the opening entry names its event");
    let e = d.get(&format!("/api/v1/events/{event_id}"), Some(TOKEN)).await;
    assert_eq!(e.body["kind"], "declaration");
    assert_eq!(e.body["assessment"]["declared_by"], "rita");
    assert_eq!(e.body["assessment"]["estimated_reach"], 1200);
    assert_eq!(e.body["incident_id"], id);

    // The policy's first step paged ana, and nobody else yet.
    let mails = mails_to(&env, &["ana@example.com"]).await;
    assert_eq!(mails.len(), 1, "{:?}", mails.iter().map(recipient).collect::<Vec<_>>());
    let subject = mail_header(&mails[0].data, "subject");
    assert!(subject.contains(&format!("#{id}")), "{subject}");
    assert!(subject.contains("Researcher reports an exposed storage bucket"), "{subject}");
    let timeline = incident(d, id).await["timeline"].to_string();
    assert!(timeline.contains("escalation step 1 of 2"), "{timeline}");
    // Unacknowledged, it escalates like any incident.
    d.advance("5m").await;
    mails_to(&env, &["ben@example.com"]).await;

    // A second identical declaration opens its own incident.
    let again = d.post("/api/v1/incidents", Some(TOKEN), declaration().to_string()).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_ne!(again.body["incident_id"].as_u64(), Some(id));
    assert_eq!(again.body["declared_by"], "user:admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_declarations_are_refused_naming_each_field_and_viewers_may_not_declare() {
    let env = start(PAGE_ANA);
    let d = &env.daemon;

    let bad = json!({
        "title": "  ",
        "impact": {"services": "billing", "customer_impact": "yes", "data_sensitivity": "secret"},
        "severity": "sev9"
    });
    let r = d.post("/api/v1/incidents", Some(RESPONDER_TOKEN), bad.to_string()).await;
    assert_eq!(r.status, 422, "{}", r.text);
    let fields: Vec<&str> =
        r.body["errors"].as_array().unwrap().iter().filter_map(|e| e["field"].as_str()).collect();
    for f in [
        "title",
        "description",
        "severity",
        "impact.services",
        "impact.customer_impact",
        "impact.data_sensitivity",
    ] {
        assert!(fields.contains(&f), "{f} not named in {}", r.text);
    }

    let r = d.post("/api/v1/incidents", Some(RESPONDER_TOKEN), "not json").await;
    assert_eq!(r.status, 400, "{}", r.text);

    let r = d.post("/api/v1/incidents", Some(VIEWER_TOKEN), declaration().to_string()).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = d.post("/api/v1/incidents", None, declaration().to_string()).await;
    assert_eq!(r.status, 401, "{}", r.text);

    // Nothing was opened and nobody was paged.
    let list = d.get("/api/v1/incidents", Some(TOKEN)).await;
    assert_eq!(list.status, 200);
    assert!(!list.text.contains("declaration"), "{}", list.text);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(env.mails.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_person_gets_the_email_in_their_language_or_english() {
    let env = start(
        r#"policies:
  - name: page
    notify:
      - {person: ana, channels: [email]}
      - {person: greta, channels: [email]}
      - {person: pierre, channels: [email]}
default_policy: page
"#,
    );
    let d = &env.daemon;
    let id = alert(
        d,
        json!({"dedup_key": "db", "summary": "Primary database down", "severity": "critical"}),
    )
    .await;
    let mails =
        mails_to(&env, &["ana@example.com", "greta@example.com", "pierre@example.com"]).await;

    let german = text_part(&mail_for(&mails, "greta@example.com").data);
    assert!(german.contains("Hallo Greta,"), "{german}");
    assert!(german.contains("Ein neuer Vorfall braucht jemanden"), "{german}");
    assert!(german.contains(&format!("Vorfall:     #{id}")), "{german}");
    assert!(german.contains("Primary database down"), "{german}");

    let english = text_part(&mail_for(&mails, "ana@example.com").data);
    assert!(english.contains("Hi Ana,"), "{english}");
    assert!(english.contains("A new incident needs a responder."), "{english}");

    // No French templates: Pierre gets the English ones.
    let fallback = text_part(&mail_for(&mails, "pierre@example.com").data);
    assert!(fallback.contains("Hi Pierre,"), "{fallback}");
    assert!(fallback.contains("A new incident needs a responder."), "{fallback}");
}

const CATALOG: &str = r#"roles:
  payments_oncall: {person: ben}
catalog:
  - {name: stripe, vendor: true}
  - {name: eu-west-1, vendor: true}
  - {name: payments, owner: payments_oncall, depends_on: [stripe]}
  - {name: checkout, owner: cora, customer_facing: true, depends_on: [payments, eu-west-1]}
  - {name: reporting, depends_on: [payments]}
  - {name: search, owner: greta, depends_on: [eu-west-1]}
policies:
  - name: page
    notify: [{person: ana, channels: [email]}]
default_policy: page
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_alert_scopes_the_incident_to_its_dependents_and_pages_their_owners() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");
    let env = start(&format!("{CATALOG}rules: {{dir: \"{rules}\"}}\n"));
    let d = &env.daemon;

    let id = alert(
        d,
        json!({"dedup_key": "stripe-5xx", "summary": "Stripe API errors", "severity": "warning",
               "service": "stripe"}),
    )
    .await;
    let inc = incident(d, id).await;
    assert_eq!(inc["scope"], json!(["checkout", "payments", "reporting", "stripe"]));
    // 45-dependencies.rhai: checkout (customer-facing) is downstream.
    assert_eq!(inc["decision"]["score"], 60, "{}", inc["decision"]);
    assert_eq!(inc["decision"]["customer_facing"], true);
    let tags = inc["decision"]["tags"].to_string();
    assert!(tags.contains("upstream") && tags.contains("vendor"), "{tags}");

    // The policy pages ana; the owners of payments (the role, held by ben) and checkout (cora)
    // are paged with the first step; search's owner (greta) is not downstream of stripe.
    let mails = mails_to(&env, &["ana@example.com", "ben@example.com", "cora@example.com"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let to: Vec<String> = env.mails.lock().unwrap().iter().map(recipient).collect();
    assert_eq!(to.len(), 3, "{to:?}");
    assert!(!to.contains(&"greta@example.com".to_string()), "{to:?}");
    let ben = mail_for(&mails, "ben@example.com");
    assert!(mail_header(&ben.data, "subject").contains("Stripe API errors"));
    let text = text_part(&ben.data);
    assert!(text.contains("Affected:    checkout, payments, reporting, stripe"), "{text}");
    let timeline = incident(d, id).await["timeline"].to_string();
    assert!(
        timeline.contains("email to ben (responder)")
            && timeline.contains("email to cora (responder)"),
        "{timeline}"
    );

    // A cloud region reaches search too: greta (its owner) and cora are paged.
    let region = alert(
        d,
        json!({"dedup_key": "euw1", "summary": "Region degraded", "service": "eu-west-1"}),
    )
    .await;
    let inc = incident(d, region).await;
    assert_eq!(inc["scope"], json!(["checkout", "eu-west-1", "search"]));
    mails_to(&env, &["greta@example.com"]).await;

    // An alert on a leaf service scopes to itself and pages only its owner besides the policy.
    let leaf =
        alert(d, json!({"dedup_key": "co", "summary": "Checkout slow", "service": "checkout"}))
            .await;
    assert_eq!(incident(d, leaf).await["scope"], json!(["checkout"]));
}

fn tocsin() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"));
    for var in ["TOCSIN_TOKEN", "TOCSIN_LISTEN", "TOCSIN_DATA_DIR"] {
        cmd.env_remove(var);
    }
    cmd
}

#[test]
fn check_names_a_dependency_cycle_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.yaml");
    std::fs::write(
        &path,
        "catalog:\n\
         \x20 - {name: api, depends_on: [db]}\n\
         \x20 - {name: db, depends_on: [storage]}\n\
         \x20 - {name: storage, depends_on: [api]}\n\
         \x20 - {name: web, depends_on: [api, cdn]}\n",
    )
    .unwrap();
    let out = tocsin().args(["check", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().any(|l| l.contains("tocsin.yaml:4:")
            && l.contains("catalog[2].depends_on[0]")
            && l.contains("dependency cycle: api → db → storage → api")),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("tocsin.yaml:5:") && l.contains("`cdn` is not in the catalog")),
        "{stderr}"
    );
}

#[test]
fn check_reports_a_template_variable_missing_in_one_language() {
    let dir = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("tocsin.yaml", "notifications:\n  templates: templates\n");
    write(
        "templates/email/customer-status.text.j2",
        "Status of {{ incident.id }}: {{ incident.status }}\n",
    );
    write("templates/de/email/customer-status.text.j2", "Status von {{ incident.id }}\n");
    write("templates/sms/responder.text.j2", "#{{ incident.id }} {{ incident.summary }}\n");
    write("templates/de/sms/responder.text.j2", "#{{ incident.id }} {{ incident.summary }}\n");
    let out = tocsin().args(["check", "--config"]).arg(dir.path().join("tocsin.yaml")).output();
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().any(|l| l.contains("de/email/customer-status.text.j2")
            && l.contains("`incident.status`")
            && l.contains("email/customer-status.text.j2 uses")),
        "{stderr}"
    );
    assert!(!stderr.contains("responder"), "the matching pair is fine: {stderr}");
}
