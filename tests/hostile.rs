//! Hostile requests against the real daemon (issue 7): each is answered with the right 4xx and
//! a JSON error body, and nothing is stored. `tests/ingest.rs` already covers wrong content
//! type (415), oversize bodies with and without Content-Length (413), truncated JSON (400),
//! out-of-bounds values (422) and a client dripping its headers being cut off; this adds JSON
//! nested 200 deep, 100,000 keys, invalid UTF-8 — on every ingest endpoint — and a request
//! whose headers arrive after the header timeout but whose body is complete and valid.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, ROUTING_KEY, TOKEN, VIEWER_TOKEN};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ENDPOINTS: [&str; 5] =
    ["/api/v2/alerts", "/api/v1/alertmanager", "/v2/enqueue", "/api/v1/reports", "/api/v1/events"];

fn deep(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// A body shaped like the endpoint's format, with `inner` (raw JSON) where a nested value may go.
fn shaped(endpoint: &str, inner: &str) -> String {
    match endpoint {
        "/api/v2/alerts" => format!(r#"[{{"labels":{{"alertname":"H"}},"annotations":{inner}}}]"#),
        "/api/v1/alertmanager" => format!(
            r#"{{"version":"4","status":"firing","receiver":"r","groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"x","groupKey":"g","alerts":[{{"status":"firing","labels":{inner},"annotations":{{}},"startsAt":"2026-01-01T00:00:00Z","fingerprint":"0123456789abcdef"}}]}}"#
        ),
        "/v2/enqueue" => format!(
            r#"{{"routing_key":"{ROUTING_KEY}","event_action":"trigger","payload":{{"summary":"s","source":"h","severity":"critical","custom_details":{inner}}}}}"#
        ),
        "/api/v1/reports" => format!(
            r#"{{"reporter":{{"name":"desk"}},"service":"checkout","summary":"s","labels":{inner}}}"#
        ),
        _ => format!(r#"{{"summary":"s","details":{{"x":{inner}}},"labels":{inner}}}"#),
    }
}

fn many_keys(n: usize) -> String {
    let fields: Vec<String> = (0..n).map(|i| format!("\"k{i}\":\"v\"")).collect();
    format!("{{{}}}", fields.join(","))
}

async fn post_raw(d: &Daemon, endpoint: &str, body: Vec<u8>) -> (u16, Value, String) {
    // A fresh connection each time: a refused body may leave the server closing this one.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let r = client
        .post(d.url(endpoint))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), text)
}

/// A JSON error body: Tocsin's `{"error","message"}`, PagerDuty's `{"status","message"}` on
/// `/v2/enqueue`, or Alertmanager's JSON string on `/api/v2/alerts`.
fn assert_json_error(what: &str, body: &Value, text: &str) {
    if let Value::String(message) = body {
        assert!(what.starts_with("/api/v2/alerts") && !message.is_empty(), "{what}: {text}");
        return;
    }
    let code = body["error"].as_str().or_else(|| body["status"].as_str());
    assert!(code.is_some_and(|c| !c.is_empty()), "{what}: no JSON error body: {text}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {text}");
}

async fn assert_nothing_stored(d: &Daemon) {
    let r = d.get("/api/v1/events", Some(VIEWER_TOKEN)).await;
    assert_eq!(r.body["events"].as_array().unwrap().len(), 0, "events stored: {}", r.text);
    let r = d.get("/api/v1/incidents", Some(VIEWER_TOKEN)).await;
    assert_eq!(r.body["incidents"].as_array().unwrap().len(), 0, "incidents: {}", r.text);
    let m = d.get("/metrics", None).await;
    let accepted: Vec<&str> = m
        .text
        .lines()
        .filter(|l| l.starts_with("tocsin_events_accepted_total{") && !l.ends_with(" 0"))
        .collect();
    assert!(accepted.is_empty(), "events counted as accepted: {accepted:?}");
}

#[tokio::test]
async fn hostile_bodies_get_a_4xx_with_a_json_error_and_nothing_is_stored() {
    // A body limit large enough that 100,000 keys reach the parser (the default 512 KiB would
    // refuse them with 413 before parsing, which the last row checks).
    let d = Daemon::start("limits:\n  max_body_bytes: 8388608\n");
    let keys = many_keys(100_000);
    let mut table: Vec<(String, &str, Vec<u8>, u16)> = Vec::new();
    for ep in ENDPOINTS {
        // Nested 200 deep, alone and inside a field that takes free-form JSON.
        table.push((format!("{ep} depth 200"), ep, deep(200).into_bytes(), 400));
        table.push((
            format!("{ep} depth 200 in a field"),
            ep,
            shaped(ep, &deep(200)).into_bytes(),
            400,
        ));
        // Invalid UTF-8 inside a string.
        let mut bad = shaped(ep, r#"{"a":"X"}"#).into_bytes();
        let at = bad.iter().position(|&b| b == b'X').unwrap();
        bad.splice(at..=at, [0xff, 0xfe]);
        table.push((format!("{ep} invalid UTF-8"), ep, bad, 400));
    }
    // 100,000 label keys: over MAX_LABELS. Alertmanager batches answer 400 naming the alert (as
    // Alertmanager does); the others 422. PagerDuty answers 400 for invalid events.
    for (ep, status) in [
        ("/api/v2/alerts", 400),
        ("/api/v1/alertmanager", 400),
        ("/api/v1/reports", 422),
        ("/api/v1/events", 422),
    ] {
        table.push((format!("{ep} 100k label keys"), ep, shaped(ep, &keys).into_bytes(), status));
    }

    for (what, ep, body, want) in &table {
        let started = Instant::now();
        let (status, json, text) = post_raw(&d, ep, body.clone()).await;
        let short: String = text.chars().take(300).collect();
        assert_eq!(status, *want, "{what}: {short}");
        assert_json_error(what, &json, &short);
        assert!(started.elapsed() < Duration::from_secs(10), "{what} took {:?}", started.elapsed());
        let code = json["error"].as_str().or(json["status"].as_str()).or(json.as_str());
        println!("{what}: {status} {}", code.unwrap());
    }
    assert_nothing_stored(&d).await;
    assert_eq!(d.get("/-/healthy", None).await.status, 200);

    // Under the default body limit, 100,000 keys never reach the parser.
    let small = Daemon::start("");
    let (status, json, text) =
        post_raw(&small, "/api/v1/events", shaped("/api/v1/events", &keys).into_bytes()).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(json["error"], "too_large");
    // The unread body means the server closes the connection, and it says so, so that a
    // client's connection pool does not send the next request into a closing socket. A body
    // larger than the sockets' buffers (~7 MB here) is still being sent when the answer is
    // ready: the server reads and discards the rest (up to 8 MiB) before it closes, so the
    // client gets the 413 instead of a broken pipe.
    let r = small
        .client
        .post(small.url("/api/v1/events"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(shaped("/api/v1/events", &many_keys(300_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(r.headers()["connection"], "close");
    // The same pooled client's next request works.
    assert_eq!(small.get("/-/healthy", None).await.status, 200);
    assert_nothing_stored(&small).await;
}

#[tokio::test]
async fn a_request_whose_headers_come_too_late_is_not_stored() {
    let d = Daemon::start("limits:\n  header_read_timeout: 1s\n");
    let body = r#"[{"labels":{"alertname":"Late"}}]"#;
    let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    s.write_all(b"POST /api/v2/alerts HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // Drip the rest of the headers past the timeout, then send a complete, valid request.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _ = s.write_all(format!("Authorization: Bearer {TOKEN}\r\n").as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let rest =
        format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let _ = s.write_all(rest.as_bytes()).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "connection still open after 10 s");
    let answer = String::from_utf8_lossy(&answer);
    // Cut off (no answer) or a 408: never a 2xx.
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "answered: {answer}");
    assert_nothing_stored(&d).await;
    // The daemon still serves the next, honest client.
    let r = d.post("/api/v2/alerts", Some(TOKEN), body).await;
    assert_eq!(r.status, 200, "{}", r.text);
}
