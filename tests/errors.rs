//! Every error answer is JSON (README, "HTTP API"): not only the refusals Tocsin's handlers
//! write, but also those the HTTP framework writes itself — a method a path does not take, a
//! path that does not decode, a body over the framework's buffering limit — which used to come
//! as plain text or an empty body.

mod common;

use common::{Daemon, TOKEN};
use serde_json::Value;

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    text: String,
}

async fn send(d: &Daemon, method: reqwest::Method, path: &str, body: Vec<u8>) -> Answer {
    let r = d
        .client
        .request(method, d.url(path))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    Answer { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
}

fn assert_json_error(what: &str, a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{what}: {}", a.text);
    assert_eq!(a.headers["content-type"], "application/json", "{what}: {}", a.text);
    assert_eq!(a.body["error"], code, "{what}: {}", a.text);
    let message = a.body["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{what}: no message in {}", a.text);
}

#[tokio::test]
async fn the_frameworks_own_refusals_are_json_too() {
    use reqwest::Method;
    let d = Daemon::start("");

    // A path that exists, with a method it does not take: 405, the Allow header kept.
    for (method, path, allow) in [
        (Method::GET, "/api/v2/alerts", "POST"),
        (Method::DELETE, "/metrics", "GET,HEAD"),
        (Method::PUT, "/api/v1/incidents/1/ack", "POST"),
        (Method::POST, "/-/healthy", "GET,HEAD"),
        (Method::DELETE, "/login", "GET,HEAD,POST"),
    ] {
        let what = format!("{method} {path}");
        let a = send(&d, method, path, Vec::new()).await;
        assert_json_error(&what, &a, 405, "method_not_allowed");
        assert_eq!(a.headers["allow"], allow, "{what}");
        assert!(a.body["message"].as_str().unwrap().contains(path), "{what}: {}", a.text);
    }

    // No such path.
    let a = send(&d, Method::GET, "/api/v1/nothing", Vec::new()).await;
    assert_json_error("unknown path", &a, 404, "not_found");

    // A path parameter that does not decode (%FF is not UTF-8).
    let a = send(&d, Method::GET, "/api/v1/events/%FF", Vec::new()).await;
    assert_json_error("undecodable path", &a, 400, "malformed");

    // A body over the framework's buffering limit (2 MB) on a route that reads it whole.
    let big = vec![b' '; 3 << 20];
    let a = send(&d, Method::POST, "/api/v1/incidents/1/notes", big).await;
    assert_json_error("3 MB note", &a, 413, "too_large");

    // Answers that chose their own type keep it: the dashboard's pages are HTML.
    let r = d.client.get(d.url("/login")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
}
