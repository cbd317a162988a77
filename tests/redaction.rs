//! The redaction canary: customer reports and canonical events carrying personal data that is
//! unique to this run (a name, an e-mail address, a phone number, a card number) go through
//! every path — ingest, rules that print and fail, errors that quote the body, a webhook that
//! answers with what it got, notifications to a redacted and a non-redacted audience, the
//! metrics, the API as a viewer, an admin without `pii` and a `pii` user, and the daemon's own
//! output at debug level. Each value must appear only where the policy allows it.

mod common;

use std::path::Path;
use std::time::Duration;

use common::canary::Canary;
use common::{Daemon, TOKEN, eventually};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const VIEWER: &str = "canary-viewer-token-0123456789";
const PII: &str = "canary-pii-token-0123456789";
const ROUTING_KEY: &str = "canary-routing-key-0123456789";

fn config(hook_port: u16, rules: &Path) -> String {
    format!(
        r#"
log_format: text
sources:
  - name: desk
    token: ${{TOCSIN_TOKEN}}
    routing_key: {ROUTING_KEY}
    allow: [alerts, reports, events]
users:
  - name: admin
    token: ${{TOCSIN_TOKEN}}
    roles: [admin]
  - name: viewer
    token: {VIEWER}
    roles: [viewer]
  - name: privacy-officer
    token: {PII}
    roles: [viewer]
    permissions: [pii]
rules:
  dir: {rules}
redaction:
  fields: [customer.name, customer.email, customer.phone, details.reporter.email, annotations.contact]
  notify_audiences: [executive]
notifications:
  log: {{ path: notifications.jsonl }}
  webhooks:
    - {{ name: echo, url: "http://127.0.0.1:{hook_port}/fail", allow_private: true }}
    - {{ name: board, url: "http://127.0.0.1:{hook_port}/ok", allow_private: true }}
  delivery: {{ max_attempts: 2, initial_backoff: 1s, max_backoff: 1s }}
policies:
  - name: default
    notify:
      - {{ webhook: board, audience: executive }}
      - {{ log: true, audience: responder }}
      - {{ webhook: echo, audience: responder }}
default_policy: default
"#,
        rules = rules.display()
    )
}

type Received = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Webhook receivers: `/ok` takes every delivery and keeps its body; `/fail` fails every
/// delivery and answers with what it got: the incident's summary first (so the part the
/// error quotes surely holds it), then the whole body.
async fn hook_server() -> (u16, Received, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Received::default();
    let keep = received.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let body = loop {
                    let Ok(n) = sock.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        let ok = head.starts_with("post /ok");
                        break (ok, buf[end + 4..end + 4 + len].to_vec());
                    }
                };
                let (ok, body) = body;
                if ok {
                    keep.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                    let resp = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                    let _ = sock.write_all(resp.as_bytes()).await;
                    return;
                }
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                let summary = v["incident"]["summary"].as_str().unwrap_or_default();
                let answer =
                    format!("cannot take {summary}; you sent {}", String::from_utf8_lossy(&body));
                let resp = format!(
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (port, received, task)
}

#[tokio::test]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn personal_data_appears_only_where_the_policy_allows() {
    let c = Canary::new();
    let (port, received, hooks_task) = hook_server().await;
    let rules = tempfile::tempdir().unwrap();
    // A rule that prints event content at debug level, and one that fails quoting it.
    std::fs::write(
        rules.path().join("10-print.rhai"),
        "print(\"scoring \" + event.summary + \" for \" + (event.customer ?? #{}).to_json());\n",
    )
    .unwrap();
    std::fs::write(
        rules.path().join("90-fail.rhai"),
        "if event.kind == \"report\" { throw \"cannot score \" + event.summary; }\n",
    )
    .unwrap();
    let mut d =
        Daemon::with(&config(port, rules.path())).env("TOCSIN_LOG", "debug").captured().start();

    // 1. A customer report and a canonical event, full of the canary values.
    let summary = format!(
        "Customer {} ({}, {}) was charged twice on card {}",
        c.name, c.email, c.phone, c.card
    );
    let report = json!({
        "reporter": {"name": "Desk Agent", "email": "agent@desk.example.com"},
        "customer": {"id": "C-1", "name": c.name, "email": c.email, "phone": c.phone},
        "service": "checkout",
        "summary": summary,
        "description": format!("Call {} back on {} about card {}", c.name, c.phone_compact, c.card_compact),
        "verified": true,
        "severity": "high",
    });
    let r = d.post("/api/v1/reports", Some(TOKEN), report.to_string()).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let report_id = r.event_ids()[0].clone();
    let canonical = json!({
        "summary": format!("Refund for {} failed", c.email),
        "service": "payments",
        "labels": {"job": "refunds"},
        "annotations": {"contact": c.contact, "note": format!("card {}", c.card)},
        "details": {"phone": c.phone_compact},
    });
    let r = d.post("/api/v1/events", Some(TOKEN), canonical.to_string()).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let canonical_id = r.event_ids()[0].clone();

    // 2. Errors that quote the body: a value of the wrong type, a bad time, an unknown field.
    let mut errors = String::new();
    for bad in [
        json!({"reporter": {"name": "A"}, "service": "s", "summary": "x", "verified": c.name,
               "customer": {"name": c.name}}),
        json!({"reporter": {"name": "A"}, "service": "s", "summary": "x", "occurred_at": c.name,
               "customer": {"name": c.name}}),
        json!({"reporter": {"name": "A"}, "service": "s", "summary": "x", "severity": 5,
               "customer": {"email": c.email}}),
        json!({"reporter": {"name": "A"}, "service": "s", "summary": "x", c.email.clone(): 1}),
        json!({"reporter": {"name": "A"}, "service": "s", "summary": "x", "ticket_url": c.phone,
               "labels": {"bad name": c.card}}),
    ] {
        let r = d.post("/api/v1/reports", Some(TOKEN), bad.to_string()).await;
        assert!(matches!(r.status, 400 | 422), "{} {}", r.status, r.text);
        errors.push_str(&r.text);
        errors.push('\n');
    }
    for bad in [
        json!({"summary": "x", "action": c.email}),
        json!({"summary": "x", "action": c.name}),
        json!({"summary": "x", "kind": c.name}),
        json!({"summary": "x", "starts_at": c.phone, "labels": {"a": c.card}, "verified": c.name}),
    ] {
        let r = d.post("/api/v1/events", Some(TOKEN), bad.to_string()).await;
        assert!(matches!(r.status, 400 | 422), "{} {}", r.status, r.text);
        errors.push_str(&r.text);
        errors.push('\n');
    }
    let r = d
        .post(
            "/api/v2/alerts",
            Some(TOKEN),
            json!([{"labels": {"alertname": c.name, "who": c.email},
            "startsAt": c.phone}])
            .to_string(),
        )
        .await;
    errors.push_str(&r.text);
    // PagerDuty events with canary values in its protocol fields, or in a value cut short in
    // the message (a name longer than the 64 characters an error quotes).
    let long_name = format!("{} {}", c.name, "von und zu ".repeat(6));
    for bad in [
        json!({"routing_key": ROUTING_KEY, "event_action": c.name}),
        json!({"routing_key": ROUTING_KEY, "event_action": long_name}),
        json!({"routing_key": ROUTING_KEY, "event_action": "trigger",
               "payload": {"summary": "s", "source": "h", "severity": c.email}}),
    ] {
        let r = d.post("/v2/enqueue", None, bad.to_string()).await;
        assert_eq!(r.status, 400, "{}", r.text);
        errors.push_str(&r.text);
        errors.push('\n');
    }
    assert!(errors.contains("expected a boolean") && errors.contains("RFC 3339"), "{errors}");
    c.assert_absent("4xx error bodies", &errors);

    // What is not personal data stays readable: the protocol's own words, and a value that is
    // one of its words' kind (a severity that is not PagerDuty's).
    let r = d
        .post(
            "/v2/enqueue",
            None,
            json!({"routing_key": ROUTING_KEY, "event_action": "trigger",
                   "payload": {"summary": "s", "source": "h", "severity": "sev1",
                               "custom_details": {"level": "error", "who": c.name}}})
            .to_string(),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.body["errors"],
        json!(["payload.severity: \"sev1\" is not one of critical, error, warning, info"]),
        "{}",
        r.text
    );
    let r = d
        .post(
            "/v2/enqueue",
            None,
            json!({"routing_key": ROUTING_KEY, "event_action": "acknowledge"}).to_string(),
        )
        .await;
    assert_eq!(r.body["errors"], json!(["dedup_key: is required to acknowledge"]), "{}", r.text);

    // 3. Notifications: both log targets written, the webhook failed twice (quoting the body).
    let notifications =
        eventually("the notifications to all end", Duration::from_secs(40), async || {
            let r = d.get("/api/v1/notifications?limit=1000", Some(PII)).await;
            let Some(list) = r.body["notifications"].as_array().cloned() else {
                return Err(r.text);
            };
            let states: Vec<String> = list
                .iter()
                .map(|n| format!("{}:{}:{}", n["channel"], n["audience"], n["state"]))
                .collect();
            let done = list.len() == 6
                && list.iter().all(|n| matches!(n["state"].as_str(), Some("delivered" | "dead")));
            if done { Ok(list) } else { Err(states.join(" ")) }
        })
        .await;
    // The responder audience (not redacted) through the log target: the values are there, so
    // the test would see a leak if there were one.
    let file = std::fs::read_to_string(d.data_dir.join("notifications.jsonl")).unwrap();
    assert_eq!(file.lines().count(), 2, "two incidents:\n{file}");
    assert!(file.contains(&c.email) && file.contains(&c.name), "{file}");
    // The executive audience (redacted) through a webhook: what the receiver got.
    let board = received.lock().unwrap().join("\n");
    assert_eq!(received.lock().unwrap().len(), 2, "{board}");
    assert!(board.contains("[redacted:email]") && board.contains("[redacted:name]"), "{board}");
    c.assert_absent("the executive (redacted) notifications as received", &board);
    for n in notifications.iter().filter(|n| n["audience"] == "executive") {
        c.assert_absent("the executive outbox row (as a pii user)", &n.to_string());
    }
    let hooks: Vec<&Value> = notifications
        .iter()
        .filter(|n| n["channel"] == "webhook" && n["audience"] == "responder")
        .collect();
    assert_eq!(hooks.len(), 2);
    for h in &hooks {
        assert_eq!(h["state"], "dead", "{h}");
        let err = h["last_error"].as_str().unwrap();
        assert!(err.contains("cannot take") && err.contains("[redacted:"), "{err}");
        c.assert_absent("a webhook's error (last_error, as a pii user)", err);
    }

    // 4. The API: a viewer and an admin without `pii` see redacted data everywhere.
    let report_incident =
        d.get(&format!("/api/v1/events/{report_id}"), Some(PII)).await.body["incident_id"]
            .as_u64()
            .unwrap();
    let canonical_incident = d.get(&format!("/api/v1/events/{canonical_id}"), Some(PII)).await.body
        ["incident_id"]
        .as_u64()
        .unwrap();
    for (who, token) in [("viewer", VIEWER), ("admin without pii", TOKEN)] {
        let mut seen = String::new();
        for path in [
            "/api/v1/events?limit=1000".to_string(),
            format!("/api/v1/events/{report_id}"),
            format!("/api/v1/events/{canonical_id}"),
            "/api/v1/incidents?limit=1000".to_string(),
            format!("/api/v1/incidents/{report_incident}"),
            format!("/api/v1/incidents/{canonical_incident}"),
            format!("/api/v1/incidents/{report_incident}/review?format=json"),
            format!("/api/v1/incidents/{report_incident}/review?format=markdown"),
            "/api/v1/notifications?limit=1000".to_string(),
        ] {
            let r = d.get(&path, Some(token)).await;
            assert_eq!(r.status, 200, "{who} {path}: {}", r.text);
            c.assert_absent(&format!("{path} as {who}"), &r.text);
            seen.push_str(&r.text);
        }
        let event = d.get(&format!("/api/v1/events/{report_id}"), Some(token)).await.body;
        assert_eq!(event["customer"]["email"], "[redacted:email]");
        assert_eq!(event["customer"]["name"], "[redacted:name]");
        assert_eq!(event["customer"]["id"], "C-1");
        assert!(seen.contains("[redacted:card]") && seen.contains("[redacted:phone]"), "{who}");
        // Acting answers with the incident: redacted too.
        if token == TOKEN {
            let r = d
                .post(&format!("/api/v1/incidents/{report_incident}/ack"), Some(TOKEN), "{}")
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            c.assert_absent("the acknowledge answer", &r.text);
        }
    }

    // 5. A user with `pii` sees the stored originals.
    let event = d.get(&format!("/api/v1/events/{report_id}"), Some(PII)).await.body;
    assert_eq!(event["customer"]["name"], c.name.as_str());
    assert_eq!(event["customer"]["email"], c.email.as_str());
    assert_eq!(event["customer"]["phone"], c.phone.as_str());
    assert_eq!(event["summary"], summary.as_str());
    let event = d.get(&format!("/api/v1/events/{canonical_id}"), Some(PII)).await.body;
    assert_eq!(event["annotations"]["contact"], c.contact.as_str());

    // 6. Metrics.
    let metrics = d.client.get(d.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tocsin_"), "{metrics}");
    c.assert_absent("/metrics", &metrics);

    // 7. The daemon's own output, at debug level, once it has stopped.
    assert_eq!(d.terminate(), Some(0));
    hooks_task.abort();
    let mut output = std::fs::read_to_string(d.log()).unwrap();
    output.push_str(&std::fs::read_to_string(d.log().with_extension("stdout")).unwrap_or_default());
    for proof in ["DEBUG", "print: scoring", "ingest refused", "notification dead-lettered"] {
        assert!(output.contains(proof), "the log should show {proof:?}:\n{output}");
    }
    c.assert_absent("the daemon's log at debug level", &output);
}

/// With email configured and every library at trace level, the SMTP transcript (subjects
/// with the customer's name, bodies with acknowledge links) never reaches the log: not one
/// acknowledge token, not one canary value, also where quoted-printable broke a line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_log_with_email_keeps_no_ack_link_or_customer_data() {
    use common::smtp::{mail_part, smtp_server};
    let c = Canary::new();
    let (smtp_port, mails) = smtp_server();
    let yaml = format!(
        r#"log_format: text
sources:
  - {{name: desk, token: "${{TOCSIN_TOKEN}}", allow: [alerts, reports, events]}}
users:
  - {{name: admin, token: "${{TOCSIN_TOKEN}}", roles: [admin]}}
people:
  - {{id: ana, name: Ana, email: ana@example.com}}
policies:
  - {{name: main, notify: [{{person: ana, channels: [email]}}]}}
default_policy: main
notifications:
  dashboard_url: "https://tocsin.example.com/"
  email: {{relay: 127.0.0.1, port: {smtp_port}, tls: none, from: "tocsin@example.com", timeout: 5s}}
  rate_limits: {{email: {{}}, sms: {{}}, webhook: {{}}, log: {{}}}}
"#
    );
    let mut d = Daemon::with(&yaml)
        .env("TOCSIN_LOG", "trace,lettre=trace,reqwest=trace,hyper=trace,rustls=trace")
        .captured()
        .start();
    let report = json!({
        "reporter": {"name": "Desk Agent"},
        "customer": {"name": c.name, "email": c.email, "phone": c.phone},
        "service": "checkout",
        "summary": format!("{} ({}, {}) was charged twice on card {}", c.name, c.email, c.phone, c.card),
        "verified": true,
    });
    let r = d.post("/api/v1/reports", Some(TOKEN), report.to_string()).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let mail = eventually("the mail to ana", Duration::from_secs(40), async || {
        mails.lock().unwrap().first().cloned()
    })
    .await;
    let text = mail_part(&mail.data, "text/plain").expect("a text part");
    let token = text
        .split("/ack/")
        .nth(1)
        .and_then(|rest| {
            rest.split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')).next()
        })
        .unwrap_or_else(|| panic!("an acknowledge link in:\n{text}"))
        .to_string();
    assert!(token.len() > 40, "{token}");
    assert!(mail.data.contains(&c.name) || text.contains(&c.name), "the mail names the customer");

    assert_eq!(d.terminate(), Some(0));
    let output = std::fs::read_to_string(d.log()).unwrap();
    assert!(output.contains("TRACE"), "the log is at trace level:\n{output}");
    // Quoted-printable soft line breaks (`=` CRLF, written `=<CRLF>` by a transcript) could
    // split a value; joined, nothing may be found either.
    let joined = output.replace("=<CRLF>", "").replace("=\r\n", "");
    for text in [&output, &joined] {
        assert!(!text.contains(&token), "the log holds the acknowledge token");
        assert!(!text.contains(&token[..24]), "the log holds part of the acknowledge token");
        c.assert_absent("the daemon's log at trace level", text);
    }
}

/// A service value that redaction hides (here it is also the customer's e-mail address) cannot
/// be probed through the incident list's `service` filter by a user without `pii`: a guess that
/// equals it lists nothing, while a `pii` user finds the incident.
#[tokio::test]
async fn the_service_filter_does_not_confirm_a_hidden_service() {
    let d = Daemon::with(&common::users_config()).start();
    let hidden = "jo.probe@example.org";
    let r = d
        .post(
            "/api/v1/reports",
            Some(TOKEN),
            json!({"reporter": {"name": "Desk"}, "customer": {"email": hidden},
                   "service": hidden, "summary": "Account page shows another address",
                   "verified": true})
            .to_string(),
        )
        .await;
    let id = d.incident_of(&r).await;
    let path = format!("/api/v1/incidents?service={hidden}");
    let pii = d.get(&path, Some(common::RESPONDER.1)).await;
    assert_eq!(pii.status, 200, "{}", pii.text);
    assert_eq!(pii.body["incidents"][0]["id"], id, "a pii user finds it: {}", pii.text);
    let viewer = d.get(&path, Some(common::VIEWER.1)).await;
    assert_eq!(viewer.status, 200, "{}", viewer.text);
    assert_eq!(viewer.body["incidents"], json!([]), "the guess is confirmed: {}", viewer.text);
    // The viewer still sees the incident in the unfiltered list, with the service hidden.
    let all = d.get("/api/v1/incidents", Some(common::VIEWER.1)).await;
    let listed = &all.body["incidents"][0];
    assert_eq!(listed["id"], id, "{}", all.text);
    assert_ne!(listed["service"], hidden, "{}", all.text);
}
