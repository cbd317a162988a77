//! The ingest contract, end to end against the real binary: every endpoint's happy path with a
//! real-shaped payload, every error with its JSON body, and durability across SIGKILL.

mod common;

use common::{ALERTS_ONLY_TOKEN, Daemon, ROUTING_KEY, TOKEN, VIEWER_TOKEN, fixture};
use serde_json::{Value, json};

async fn stored(d: &Daemon, id: &str) -> Value {
    let r = d.get(&format!("/api/v1/events/{id}"), Some(VIEWER_TOKEN)).await;
    assert_eq!(r.status, 200, "event {id} should be readable: {}", r.text);
    r.body
}

#[tokio::test]
async fn alertmanager_v2_batch_is_stored_with_alertmanager_fingerprints() {
    let d = Daemon::start("");
    let r = d
        .post("/api/v2/alerts", Some(ALERTS_ONLY_TOKEN), fixture("alertmanager-v2/alerts.json"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "success");
    let ids = r.event_ids();
    assert!(!ids.is_empty());
    for id in &ids {
        let event = stored(&d, id).await;
        assert_eq!(event["source"], "prometheus");
        assert_eq!(event["format"], "alertmanager_v2");
        assert_eq!(event["fingerprint"].as_str().unwrap().len(), 16);
    }

    // The vector from Alertmanager's own fingerprinting.
    let alert = json!([{
        "labels": {"alertname": "DiskFull", "instance": "db1", "severity": "critical"},
        "annotations": {"summary": "Disk on db1 is full"},
        "startsAt": "2026-11-27T01:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=disk"
    }]);
    let r = d.post("/api/v2/alerts", Some(TOKEN), alert.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let event = stored(&d, &r.event_ids()[0]).await;
    assert_eq!(event["fingerprint"], "e94c744ae3d44df8");
    assert_eq!(event["dedup_key"], "e94c744ae3d44df8");
    assert_eq!(event["action"], "trigger");
    assert_eq!(event["severity"], "critical");
    assert_eq!(event["summary"], "Disk on db1 is full");
}

/// Prometheus 3 and Alertmanager ≥ 0.28 allow UTF-8 label names (OpenTelemetry's
/// `service.name`); the fingerprint is Prometheus' over the names' bytes.
#[tokio::test]
async fn alertmanager_v2_takes_utf8_label_names_with_prometheus_fingerprints() {
    let d = Daemon::start("");
    // The vector from prometheus/common's signature tests: a name with a hyphen.
    let alert = json!([{"labels": {"first-label": "first-label-value"}}]);
    let r = d.post("/api/v2/alerts", Some(TOKEN), alert.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let event = stored(&d, &r.event_ids()[0]).await;
    assert_eq!(event["fingerprint"], format!("{:016x}", 5_146_282_821_936_882_169_u64));

    let alert = json!([{
        "labels": {"alertname": "HighLatency", "service.name": "checkout", "k8s.pod.name": "web-1"},
        "annotations": {"summary": "p99 above 2 s"}
    }]);
    let r = d.post("/api/v2/alerts", Some(TOKEN), alert.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let event = stored(&d, &r.event_ids()[0]).await;
    assert_eq!(event["labels"]["service.name"], "checkout");
    assert_eq!(event["labels"]["k8s.pod.name"], "web-1");

    // Still refused, as Alertmanager refuses them: an empty name, and invalid UTF-8.
    let r = d.post("/api/v2/alerts", Some(TOKEN), r#"[{"labels": {"": "x", "a": "b"}}]"#).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.body.as_str().unwrap().contains("label names must not be empty"), "{}", r.text);
    let r =
        d.post("/api/v2/alerts", Some(TOKEN), b"[{\"labels\": {\"a\xff\": \"b\"}}]".to_vec()).await;
    assert_eq!(r.status, 400, "{}", r.text);
}

/// A start time from an unset clock (year 0, 1970) would make time-to-detect decades long, and
/// one far ahead would count as never detected: both are refused, naming the field.
#[tokio::test]
async fn implausible_start_times_are_refused() {
    let d = Daemon::start("");
    let event = json!({"summary": "x", "starts_at": "0000-01-01T00:00:00Z"});
    let r = d.post("/api/v1/events", Some(TOKEN), event.to_string()).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["field"], "starts_at", "{}", r.text);
    assert!(r.body["message"].as_str().unwrap().contains("before 2000-01-01T00:00:00Z"));

    let alert = json!([{"labels": {"alertname": "Epoch"}, "startsAt": "1970-01-01T00:00:00Z"}]);
    let r = d.post("/api/v2/alerts", Some(TOKEN), alert.to_string()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.body.as_str().unwrap().contains("alerts[0].startsAt: is 1970-01-01T00:00:00Z"));

    let ahead = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(48)).to_string();
    let report = json!({"reporter": {"name": "desk"}, "service": "web", "summary": "x",
                        "occurred_at": ahead});
    let r = d.post("/api/v1/reports", Some(TOKEN), report.to_string()).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("more than 24 h after it arrived"), "{}", r.text);

    let r = d.get("/api/v1/events", Some(VIEWER_TOKEN)).await;
    assert_eq!(r.body["events"].as_array().unwrap().len(), 0, "{}", r.text);
}

/// A key repeated in one object (`severity` twice) is refused naming it, on every format where
/// labels or details are objects; JSON parsers disagree on which value would win.
#[tokio::test]
async fn a_repeated_label_key_is_refused_naming_the_key() {
    let d = Daemon::start("");
    let labels = r#"{"alertname": "Dup", "severity": "info", "severity": "critical"}"#;
    let cases = [
        ("/api/v2/alerts", format!(r#"[{{"labels": {labels}}}]"#), 400),
        (
            "/api/v1/alertmanager",
            format!(
                r#"{{"version": "4", "alerts": [{{"status": "firing", "labels": {labels}}}]}}"#
            ),
            400,
        ),
        ("/api/v1/events", format!(r#"{{"summary": "dup", "labels": {labels}}}"#), 400),
        (
            "/api/v1/reports",
            format!(
                r#"{{"reporter": {{"name": "d"}}, "service": "web", "summary": "dup", "labels": {labels}}}"#
            ),
            400,
        ),
        (
            "/v2/enqueue",
            format!(
                r#"{{"routing_key": "{ROUTING_KEY}", "event_action": "trigger", "payload": {{"summary": "dup",
                    "source": "h", "severity": "info", "custom_details": {labels}}}}}"#
            ),
            400,
        ),
    ];
    for (path, body, status) in cases {
        let r = d.post(path, Some(TOKEN), body).await;
        assert_eq!(r.status, status, "{path}: {}", r.text);
        assert!(r.text.contains(r#"duplicate key \"severity\""#), "{path}: {}", r.text);
    }
    let r = d.get("/api/v1/events", Some(VIEWER_TOKEN)).await;
    assert_eq!(r.body["events"].as_array().unwrap().len(), 0, "{}", r.text);
}

#[tokio::test]
async fn alertmanager_v2_past_ends_at_is_a_resolve() {
    let d = Daemon::start("");
    let alert = json!([{
        "labels": {"alertname": "DiskFull", "instance": "db1"},
        "startsAt": "2026-11-27T01:00:00Z",
        "endsAt": "2026-11-27T01:05:00Z"
    }]);
    let r = d.post("/api/v2/alerts", Some(TOKEN), alert.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(stored(&d, &r.event_ids()[0]).await["action"], "resolve");
}

#[tokio::test]
async fn a_batch_with_invalid_alerts_stores_the_valid_ones_and_names_the_rest() {
    let d = Daemon::start("");
    let batch = json!([
        {"labels": {"alertname": "Good1"}},
        {"labels": {}},
        {"labels": {"alertname": "Good2"}},
    ]);
    let r = d.post("/api/v2/alerts", Some(TOKEN), batch.to_string()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    // Alertmanager's `badRequest`: one JSON string naming what was refused.
    let message = r.body.as_str().unwrap_or_else(|| panic!("not a JSON string: {}", r.text));
    assert!(message.starts_with("stored 2 events; refused alerts[1].labels"), "{message}");
    let listed = d.get("/api/v1/events?limit=10", Some(VIEWER_TOKEN)).await;
    let summaries: Vec<&str> = listed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["summary"].as_str().unwrap())
        .collect();
    assert_eq!(summaries, ["Good2", "Good1"], "{}", listed.text);

    // Tocsin's own batch formats keep the structured answer, with the stored ids.
    let batch = json!([{"summary": "kept"}, {"summary": ""}]);
    let r = d.post("/api/v1/events", Some(TOKEN), batch.to_string()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"], "invalid");
    assert_eq!(r.body["errors"][0]["field"], "events[1].summary", "{}", r.text);
    stored(&d, &r.event_ids()[0]).await;
}

/// What a client generated from Alertmanager's OpenAPI spec (amtool, Go's go-swagger) sees on
/// `POST /api/v2/alerts`: the spec declares 200 (no body read) and 400 with a JSON string
/// (`badRequest`), and such a client treats any other code as a failure, 202 included.
#[tokio::test]
async fn alertmanager_v2_answers_with_the_codes_and_bodies_of_alertmanagers_spec() {
    let d = Daemon::start("");
    let alert = json!([{"labels": {"alertname": "Amtool", "instance": "db1"}}]).to_string();
    let r = d.post("/api/v2/alerts", Some(TOKEN), alert).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.body["accepted"], 1);
    stored(&d, &r.event_ids()[0]).await;

    // Every problem with the body is a 400 whose body is a string, as amtool decodes it: not
    // JSON at all, not an array, and a batch over the size limit (422 on the other routes).
    let huge = format!("[{}{{}}]", "{},".repeat(10_000));
    for (what, body) in [
        ("truncated", "[{\"labels\": ".to_string()),
        ("an object", json!({"labels": {"a": "b"}}).to_string()),
        ("too many", huge),
        ("no labels", json!([{"labels": {}}]).to_string()),
    ] {
        let r = d.post("/api/v2/alerts", Some(TOKEN), body).await;
        assert_eq!(r.status, 400, "{what}: {}", r.text);
        assert_eq!(r.headers["content-type"], "application/json", "{what}");
        let message: String = serde_json::from_str(&r.text)
            .unwrap_or_else(|e| panic!("{what}: not a JSON string ({e}): {}", r.text));
        assert!(!message.is_empty(), "{what}");
    }
    let r = d.post("/api/v2/alerts", Some(TOKEN), "[{\"labels\": ").await;
    assert!(r.body.as_str().unwrap().contains("line 1 column"), "{}", r.text);

    // Statuses Alertmanager's spec does not have keep their meaning and Tocsin's JSON error.
    let r = d.post("/api/v2/alerts", Some("wrong"), "[]").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.body["error"], "unauthorized");

    // Other routes still answer 202.
    let r = d.post("/api/v1/events", Some(TOKEN), json!({"summary": "x"}).to_string()).await;
    assert_eq!(r.status, 202, "{}", r.text);
}

#[tokio::test]
async fn pagerduty_enqueue_answers_like_pagerduty_and_generates_dedup_keys() {
    let d = Daemon::start("");
    let mut trigger: Value = serde_json::from_slice(&fixture("pagerduty/trigger.json")).unwrap();
    trigger["routing_key"] = json!(ROUTING_KEY);
    trigger.as_object_mut().unwrap().remove("dedup_key");
    // No bearer token: the routing key is the credential.
    let r = d.post("/v2/enqueue", None, trigger.to_string()).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["status"], "success");
    assert_eq!(r.body["message"], "Event processed");
    let key = r.body["dedup_key"].as_str().expect("dedup_key").to_string();
    assert!(!key.is_empty() && key.len() <= 255);
    let event = stored(&d, &r.event_ids()[0]).await;
    assert_eq!(event["dedup_key"], key.as_str());
    assert_eq!(event["format"], "pagerduty");
    assert_eq!(event["source"], "default");

    // Two triggers without a key get different keys.
    let r2 = d.post("/v2/enqueue", None, trigger.to_string()).await;
    assert_ne!(r2.body["dedup_key"], r.body["dedup_key"]);

    // Resolve with the generated key.
    let mut resolve: Value = serde_json::from_slice(&fixture("pagerduty/resolve.json")).unwrap();
    resolve["routing_key"] = json!(ROUTING_KEY);
    resolve["dedup_key"] = json!(key);
    let r = d.post("/v2/enqueue", None, resolve.to_string()).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["dedup_key"], key.as_str());
    assert_eq!(stored(&d, &r.event_ids()[0]).await["action"], "resolve");

    // Acknowledge without a dedup key is an invalid event, in PagerDuty's words.
    let ack = json!({"routing_key": ROUTING_KEY, "event_action": "acknowledge"});
    let r = d.post("/v2/enqueue", None, ack.to_string()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["status"], "invalid event");
    assert_eq!(r.body["message"], "Event object is invalid");
    // The protocol's own words are not redacted as if they were personal data.
    assert_eq!(r.body["errors"], json!(["dedup_key: is required to acknowledge"]), "{}", r.text);

    // A wrong or missing routing key is an invalid event, as PagerDuty answers it (its Events
    // API has no 401): 400, "Event object is invalid", the reason in `errors`.
    trigger["routing_key"] = json!("not-a-key");
    let r = d.post("/v2/enqueue", None, trigger.to_string()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["status"], "invalid event", "{}", r.text);
    assert_eq!(r.body["message"], "Event object is invalid", "{}", r.text);
    assert!(r.body["errors"][0].as_str().unwrap().starts_with("Invalid routing key"), "{}", r.text);
    assert_eq!(r.body["error"], "unauthorized");
    assert!(r.headers.get("www-authenticate").is_none());
    for missing in [json!(null), json!("")] {
        trigger["routing_key"] = missing;
        let r = d.post("/v2/enqueue", None, trigger.to_string()).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.body["status"], "invalid event", "{}", r.text);
        assert_eq!(r.body["errors"], json!(["'routing_key' is missing or blank"]), "{}", r.text);
    }
    // Refused keys are counted as such.
    let m = d.get("/metrics", None).await;
    assert!(
        m.text
            .contains("tocsin_events_rejected_total{source=\"unknown\",reason=\"unauthorized\"} 3"),
        "{}",
        m.text
    );
}

#[tokio::test]
async fn alertmanager_webhook_keeps_the_senders_fingerprints() {
    let d = Daemon::start("");
    let body = fixture("alertmanager-webhook/v4.json");
    let sent: Value = serde_json::from_slice(&body).unwrap();
    let r = d.post("/api/v1/alertmanager", Some(ALERTS_ONLY_TOKEN), body).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let ids = r.event_ids();
    let alerts = sent["alerts"].as_array().unwrap();
    assert_eq!(ids.len(), alerts.len());
    for (id, alert) in ids.iter().zip(alerts) {
        let event = stored(&d, id).await;
        assert_eq!(event["format"], "alertmanager_webhook");
        if let Some(fp) = alert["fingerprint"].as_str() {
            assert_eq!(event["fingerprint"], fp);
        }
        let expected = if alert["status"] == "resolved" { "resolve" } else { "trigger" };
        assert_eq!(event["action"], expected);
    }
}

#[tokio::test]
async fn customer_reports_and_canonical_events_are_stored() {
    let d = Daemon::start("");
    let body = fixture("reports/verified-personal-data.json");
    let sent: Value = serde_json::from_slice(&body).unwrap();
    let r = d.post("/api/v1/reports", Some(TOKEN), body).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let event = stored(&d, &r.event_ids()[0]).await;
    assert_eq!(event["kind"], "report");
    assert_eq!(event["verified"], true);
    // A viewer sees the customer redacted; a user with the `pii` permission, the original.
    assert_eq!(event["customer"]["email"], "[redacted:email]");
    let r2 = d.get(&format!("/api/v1/events/{}", r.event_ids()[0]), Some(TOKEN)).await;
    assert_eq!(r2.body["customer"], sent["customer"]);
    if let Some(ticket) = sent["ticket_id"].as_str() {
        assert_eq!(event["dedup_key"], ticket);
    }

    let r = d.post("/api/v1/events", Some(TOKEN), fixture("events/canonical.json")).await;
    assert_eq!(r.status, 202, "{}", r.text);
    for id in r.event_ids() {
        assert_eq!(stored(&d, &id).await["format"], "canonical");
    }

    // Listing: newest first, filterable by source, paged.
    let r = d.get("/api/v1/events?limit=1", Some(VIEWER_TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["events"].as_array().unwrap().len(), 1);
    assert!(r.body["next"].is_string());
    let r = d.get("/api/v1/events?source=prometheus", Some(VIEWER_TOKEN)).await;
    assert_eq!(r.body["events"].as_array().unwrap().len(), 0);
    let r = d.get("/api/v1/events?source=default&limit=100", Some(VIEWER_TOKEN)).await;
    let events = r.body["events"].as_array().unwrap();
    assert!(events.len() >= 2);
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
}

#[tokio::test]
async fn every_refusal_has_its_status_and_a_json_body() {
    let d = Daemon::start("limits:\n  max_body_bytes: 4096\n");
    let alert = json!([{"labels": {"alertname": "X"}}]).to_string();

    let check = |r: &common::Reply, status: u16, code: &str| {
        assert_eq!(r.status, status, "{}", r.text);
        assert_eq!(r.body["error"], code, "{}", r.text);
        assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.text);
    };

    // 401: no token, wrong token.
    check(&d.post("/api/v2/alerts", None, alert.clone()).await, 401, "unauthorized");
    check(&d.post("/api/v2/alerts", Some("wrong"), alert.clone()).await, 401, "unauthorized");
    // 403: a source that may send alerts only, sending a report.
    let report =
        json!({"reporter": {"name": "desk"}, "service": "checkout", "summary": "x"}).to_string();
    check(&d.post("/api/v1/reports", Some(ALERTS_ONLY_TOKEN), report).await, 403, "forbidden");
    // 403: a viewer cannot ingest... it is not a source at all, so 401; a source cannot read.
    check(&d.get("/api/v1/events", Some(ALERTS_ONLY_TOKEN)).await, 401, "unauthorized");
    // 415: wrong content type.
    let r = d
        .client
        .post(d.url("/api/v2/alerts"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body(alert.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_media_type");
    // 413: larger than the configured limit, with and without Content-Length.
    let big = format!("[{{\"labels\":{{\"alertname\":\"{}\"}}}}]", "x".repeat(8000));
    check(&d.post("/api/v2/alerts", Some(TOKEN), big.clone()).await, 413, "too_large");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.as_bytes().chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let r = d
        .client
        .post(d.url("/api/v2/alerts"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // 400: not JSON, with the position.
    let r = d.post("/api/v1/events", Some(TOKEN), "[{\"labels\": ").await;
    check(&r, 400, "malformed");
    // 422: well-formed, but a value is out of bounds.
    let long =
        json!({"reporter": {"name": "desk"}, "service": "checkout", "summary": "x".repeat(2000)});
    let r = d.post("/api/v1/reports", Some(TOKEN), long.to_string()).await;
    check(&r, 422, "invalid");
    assert!(r.text.contains("summary"), "the error names the field: {}", r.text);

    // Nothing of the above was stored.
    let r = d.get("/api/v1/events", Some(VIEWER_TOKEN)).await;
    assert_eq!(r.body["events"].as_array().unwrap().len(), 0, "{}", r.text);

    // Rejections are counted by reason.
    let m = d.get("/metrics", None).await;
    assert!(m.text.contains("reason=\"unauthorized\""), "{}", m.text);
    assert!(m.text.contains("reason=\"too_large\""), "{}", m.text);
}

/// A body stream from chunks, so the request has no Content-Length (chunked encoding).
fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    struct Iter(std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>);
    impl futures_core::Stream for Iter {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(chunks.into_iter())
}

#[tokio::test]
async fn a_source_over_its_rate_limit_gets_429_with_retry_after() {
    let d = Daemon::with(&format!(
        "sources:\n  - name: slow\n    token: {TOKEN}\n    allow: [alerts]\n    rate_limit: {{per_second: 1, burst: 2}}\n"
    )).start();
    let alert = json!([{"labels": {"alertname": "X"}}]).to_string();
    for _ in 0..2 {
        assert_eq!(d.post("/api/v2/alerts", Some(TOKEN), alert.clone()).await.status, 200);
    }
    let r = d.post("/api/v2/alerts", Some(TOKEN), alert).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.body["error"], "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
}

#[tokio::test]
async fn events_answered_2xx_survive_sigkill() {
    let mut d = Daemon::start("");
    let mut ids = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = d.client.clone();
        let url = d.url("/api/v2/alerts");
        tasks.push(tokio::spawn(async move {
            let body = json!([{"labels": {"alertname": "Crash", "n": i.to_string()}}]);
            let r = client
                .post(url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            let v: Value = r.json().await.unwrap();
            v["event_ids"][0].as_str().unwrap().to_string()
        }));
    }
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    // Killed right after the last 202: no shutdown path runs.
    d.kill9();
    let d = d.restart();
    for id in &ids {
        stored(&d, id).await;
    }
    let r = d.get("/api/v1/events?limit=1000", Some(VIEWER_TOKEN)).await;
    assert_eq!(r.body["events"].as_array().unwrap().len(), ids.len());
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let mut d = Daemon::start("");
    let alert = json!([{"labels": {"alertname": "BeforeStop"}}]).to_string();
    let r = d.post("/api/v2/alerts", Some(TOKEN), alert).await;
    assert_eq!(r.status, 200);
    let id = r.event_ids()[0].clone();

    // A request whose body is still arriving when SIGTERM lands is finished, not cut off.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let slow = d
        .client
        .post(d.url("/api/v2/alerts"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(ReceiverStream(rx)))
        .send();
    let slow = tokio::spawn(slow);
    tx.send(Ok(b"[{\"labels\":".to_vec())).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let pid = d.child.id();
    let term =
        std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(term.success());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tx.send(Ok(b"{\"alertname\":\"InFlight\"}}]".to_vec())).await.unwrap();
    drop(tx);
    let resp = slow.await.unwrap().expect("in-flight request answered");
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.unwrap();
    let in_flight = v["event_ids"][0].as_str().unwrap().to_string();

    assert_eq!(d.terminate(), Some(0), "exit code after SIGTERM");
    let d = d.restart();
    stored(&d, &id).await;
    stored(&d, &in_flight).await;
}

struct ReceiverStream(tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>);

impl futures_core::Stream for ReceiverStream {
    type Item = Result<Vec<u8>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[tokio::test]
async fn a_client_that_drips_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d = Daemon::start("limits:\n  header_read_timeout: 1s\n");
    let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    s.write_all(b"POST /api/v2/alerts HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    // The server must close (or answer) on its own; we never finish the headers.
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(read.is_ok(), "connection still open after 10 s");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn health_readiness_and_metrics_answer_without_credentials() {
    let d = Daemon::start("");
    assert_eq!(d.get("/-/healthy", None).await.status, 200);
    assert_eq!(d.get("/-/ready", None).await.status, 200);
    let alert = json!([{"labels": {"alertname": "M"}}, {"labels": {"alertname": "N"}}]);
    assert_eq!(d.post("/api/v2/alerts", Some(TOKEN), alert.to_string()).await.status, 200);
    let m = d.get("/metrics", None).await;
    assert_eq!(m.status, 200);
    assert!(
        m.text.contains(
            "tocsin_events_accepted_total{source=\"default\",format=\"alertmanager_v2\"} 2"
        ),
        "{}",
        m.text
    );
    assert!(m.text.contains("tocsin_journal_commit_seconds_bucket"), "{}", m.text);
    assert!(m.text.contains("tocsin_journal_commit_batch_events_count"), "{}", m.text);
}

/// A healthy daemon under ingest is ready every time it is asked: readiness reads the store's
/// published health, not a lock the writer happens to hold (which read as "broken" and
/// answered 503 now and then while the writer checked for a reopen before each commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_never_flashes_503_while_ingest_commits() {
    let d = std::sync::Arc::new(Daemon::start(""));
    let until = std::time::Instant::now() + std::time::Duration::from_secs(6);
    let mut writers = Vec::new();
    for w in 0..3 {
        let d = d.clone();
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while std::time::Instant::now() < until {
                let alert = json!([{"labels": {"alertname": format!("R{w}-{}", i % 50)}}]);
                let r = d.post("/api/v2/alerts", Some(TOKEN), alert.to_string()).await;
                assert_eq!(r.status, 200, "{}", r.text);
                i += 1;
            }
            i
        }));
    }
    let mut checkers = Vec::new();
    for _ in 0..4 {
        let d = d.clone();
        checkers.push(tokio::spawn(async move {
            let mut asked = 0u64;
            while std::time::Instant::now() < until {
                let r = d.get("/-/ready", None).await;
                assert_eq!(r.status, 200, "a healthy daemon answered not ready: {}", r.text);
                asked += 1;
            }
            asked
        }));
    }
    let mut commits = 0;
    for w in writers {
        commits += w.await.unwrap();
    }
    let mut asked = 0;
    for c in checkers {
        asked += c.await.unwrap();
    }
    assert!(commits > 50 && asked > 200, "{commits} ingests, {asked} readiness checks");
}
