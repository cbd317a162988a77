//! The shared failure table, and every HTTP channel run through it against a real local
//! receiver: each status and network failure must come back as the same `SendError` variant
//! whichever channel met it, and no error text may carry a credential, even when the
//! receiver echoes the whole request back.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

use super::*;

// ---------------------------------------------------------------------------------------------
// A real HTTP receiver on 127.0.0.1, port 0
// ---------------------------------------------------------------------------------------------

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    /// The header's value, or empty.
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
    }
}

/// Stands in for Twilio, a JSON gateway and webhook receivers. The path picks the answer:
///
/// - `…/Messages.json`: 201 with a Twilio `sid`; `/json-ok`: 200 with `message_id`; `/ok`: 200;
/// - `/status/{code}`: that status, the body echoing every request header and the body;
/// - `/retry-seconds`: 429, `Retry-After: 7`; `/retry-date`: 503, `Retry-After` an HTTP-date
///   30 s ahead; `/redirect`: 302 elsewhere; `/slow`: answers after 5 s; `/huge`: 1 MiB.
pub(crate) struct Sink {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    pub async fn start() -> Sink {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(answer).with_state(requests.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Sink { addr, requests, task }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn answer(
    State(requests): State<Arc<Mutex<Vec<Recorded>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    // What a careless receiver does: quote the request in its error.
    let mut echo = String::new();
    for (name, value) in &headers {
        echo.push_str(&format!("{name}: {} | ", value.to_str().unwrap_or("?")));
    }
    echo.push_str(&String::from_utf8_lossy(&body));
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    echo.push_str(&format!(" | {method} {path}{query}"));
    requests.lock().unwrap().push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        headers,
        body: body.to_vec(),
    });

    let json = |status: StatusCode, value: serde_json::Value| {
        (status, [("content-type", "application/json")], value.to_string()).into_response()
    };
    match path.as_str() {
        p if p.ends_with("/Messages.json") => json(
            StatusCode::CREATED,
            serde_json::json!({ "sid": "SM0123456789abcdef", "status": "queued" }),
        ),
        "/json-ok" => json(StatusCode::OK, serde_json::json!({ "message_id": "gw-42" })),
        "/ok" => json(StatusCode::OK, serde_json::json!({})),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            json(StatusCode::OK, serde_json::json!({}))
        }
        "/huge" => (StatusCode::OK, vec![b'x'; 1024 * 1024]).into_response(),
        "/retry-seconds" => {
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "7".to_string())], echo)
                .into_response()
        }
        "/retry-date" => {
            let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30);
            let date = jiff::fmt::rfc2822::DateTimePrinter::new()
                .timestamp_to_rfc9110_string(&at)
                .unwrap();
            (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", date)], echo).into_response()
        }
        "/redirect" => {
            (StatusCode::FOUND, [("location", "http://127.0.0.1:9/elsewhere".to_string())], echo)
                .into_response()
        }
        p => match p.strip_prefix("/status/").and_then(|c| c.parse::<u16>().ok()) {
            Some(code) => (StatusCode::from_u16(code).unwrap(), echo).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
    }
}

/// Accepts, reads the start of the request, hangs up without answering.
async fn hang_up_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let mut buf = [0u8; 256];
            let _ = stream.read(&mut buf).await;
            drop(stream);
        }
    });
    (addr, task)
}

// ---------------------------------------------------------------------------------------------
// The failure table itself
// ---------------------------------------------------------------------------------------------

fn retryable(result: Result<(), SendError>) -> Option<Option<Duration>> {
    match result {
        Err(SendError::Retryable { retry_after, .. }) => Some(retry_after),
        _ => None,
    }
}

#[test]
fn status_table() {
    for ok in [200, 201, 202, 204, 299] {
        assert_eq!(classify_http(ok, None), Ok(()), "{ok}");
    }
    for retry in [408, 425, 429, 500, 502, 503, 504, 599] {
        assert_eq!(retryable(classify_http(retry, None)), Some(None), "{retry}");
    }
    assert!(matches!(classify_http(410, None), Err(SendError::Gone { .. })));
    for permanent in [400, 401, 403, 404, 405, 413, 422, 301, 302, 307, 308, 100, 600] {
        assert!(
            matches!(classify_http(permanent, None), Err(SendError::Permanent { .. })),
            "{permanent}"
        );
    }
    let redirect = classify_http(302, None).unwrap_err();
    assert_eq!(redirect.reason(), "HTTP 302 Found: redirects are not followed");
    assert_eq!(classify_http(503, None).unwrap_err().reason(), "HTTP 503 Service Unavailable");
}

#[test]
fn retry_after_seconds_dates_and_cap() {
    let now: jiff::Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
    let at = |value: &str| retryable(classify_http_at(429, Some(value), now)).unwrap();
    assert_eq!(at("120"), Some(Duration::from_secs(120)));
    assert_eq!(at(" 0 "), Some(Duration::ZERO));
    assert_eq!(at("Fri, 27 Nov 2026 10:01:30 GMT"), Some(Duration::from_secs(90)));
    assert_eq!(at("Fri, 27 Nov 2026 09:00:00 GMT"), Some(Duration::ZERO), "in the past");
    assert_eq!(at("86400"), Some(MAX_RETRY_AFTER));
    assert_eq!(at("99999999999999999999999"), Some(MAX_RETRY_AFTER));
    assert_eq!(at("Sat, 28 Nov 2026 10:00:00 GMT"), Some(MAX_RETRY_AFTER));
    assert_eq!(at("soon"), None);
    assert_eq!(at("-5"), None);
    assert_eq!(at(""), None);
    // Retry-After on a status that is not retried changes nothing.
    assert!(matches!(classify_http_at(400, Some("5"), now), Err(SendError::Permanent { .. })));
}

#[test]
fn urls_in_reasons_keep_only_scheme_host_and_port() {
    let url = reqwest::Url::parse("https://user:pa55@hooks.example.com:8443/T0/B0/tok?key=abc#f")
        .unwrap();
    assert_eq!(redact_url(&url), "https://hooks.example.com:8443");
    let url = reqwest::Url::parse("https://api.twilio.com/2010-04-01/Accounts/AC1/M.json").unwrap();
    assert_eq!(redact_url(&url), "https://api.twilio.com");
    assert_eq!(redact_url_text("not a url"), "<invalid url>");

    let url = reqwest::Url::parse("https://u:pw-secret@h/p?api_key=querykey123&n=1").unwrap();
    let secrets = url_secrets(&url);
    assert!(secrets.contains(&"pw-secret".to_string()));
    assert!(secrets.contains(&"querykey123".to_string()));
    assert!(!secrets.contains(&"1".to_string()), "short values would mangle every reason");
}

#[test]
fn scrub_replaces_longest_first() {
    let secrets = vec!["abc".to_string(), "Bearer abcdef".to_string(), String::new()];
    assert_eq!(scrub("got Bearer abcdef and abc", &secrets), "got *** and ***");
    assert_eq!(scrub("nothing here", &secrets), "nothing here");
}

#[test]
fn snippets_are_one_bounded_line() {
    assert_eq!(snippet(b"line one\nline two\r\n"), "line one line two");
    let long = snippet(&[b'y'; 1000]);
    assert_eq!(long.chars().count(), 201);
    assert!(long.ends_with('…'));
    assert_eq!(snippet(&[0xff, b'a']), "\u{fffd}a");
}

#[test]
fn durations_are_humane() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert!(parse_duration("10").is_err());
    assert!(parse_duration("0s").is_err());
    assert!(parse_duration("-1s").is_err());
}

#[tokio::test]
async fn bodies_are_read_up_to_the_limit() {
    let sink = Sink::start().await;
    let client = http_client(Duration::from_secs(2));
    let response = client.get(format!("{}/huge", sink.base())).send().await.unwrap();
    let body = read_body_limited(response, MAX_RESPONSE_BYTES).await.unwrap();
    assert_eq!(body.len(), MAX_RESPONSE_BYTES);
    let response = client.get(format!("{}/ok", sink.base())).send().await.unwrap();
    assert_eq!(read_body_limited(response, MAX_RESPONSE_BYTES).await.unwrap(), b"{}");
}

#[tokio::test]
async fn reqwest_errors_are_classified_without_the_url() {
    let client = http_client(Duration::from_secs(1));
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://user:pw-in-url@127.0.0.1:{port}/p?token=tok-in-url");
    let err = client.get(&url).send().await.unwrap_err();
    let classified = classify_reqwest(&err, true);
    assert!(matches!(classified, SendError::Retryable { .. }), "{classified:?}");
    let shown = format!("{classified} {classified:?}");
    assert!(!shown.contains("pw-in-url") && !shown.contains("tok-in-url"), "{shown}");

    let sink = Sink::start().await;
    let err = client.get(format!("{}/slow", sink.base())).send().await.unwrap_err();
    assert!(matches!(classify_reqwest(&err, true), SendError::Unknown { .. }));
    assert!(matches!(classify_reqwest(&err, false), SendError::Retryable { .. }));
}

// ---------------------------------------------------------------------------------------------
// Every HTTP channel through the table
// ---------------------------------------------------------------------------------------------

const TWILIO_TOKEN: &str = "twilio-token-7f3a9c";
const JSON_KEY: &str = "json-gateway-key-51d2";
const HOOK_TOKEN: &str = "hook-token-88e1b0";
const HOOK_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD8SYAMqAh8s4=";

#[derive(Debug, Clone, Copy)]
enum HttpChannel {
    Twilio,
    JsonSms,
    Webhook,
}

const HTTP_CHANNELS: [HttpChannel; 3] =
    [HttpChannel::Twilio, HttpChannel::JsonSms, HttpChannel::Webhook];

impl HttpChannel {
    /// Every credential the channel holds, in every form it goes on the wire.
    fn secrets(self) -> Vec<String> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        match self {
            HttpChannel::Twilio => {
                vec![TWILIO_TOKEN.into(), b64.encode(format!("AC123:{TWILIO_TOKEN}"))]
            }
            HttpChannel::JsonSms => vec![JSON_KEY.into()],
            HttpChannel::Webhook => vec![
                HOOK_TOKEN.into(),
                HOOK_SECRET.into(),
                HOOK_SECRET.trim_start_matches("whsec_").into(),
            ],
        }
    }

    /// Builds the channel for `url`. Done before any send starts: building a client loads
    /// the TLS roots (tens of ms in a debug build), which would stall the single-threaded
    /// test runtime while other sends' timeouts run.
    fn build(self, url: &str) -> Built {
        match self {
            HttpChannel::Twilio => Built::Sms(
                Sms::new(
                    serde_json::from_value(serde_json::json!({
                        "provider": "twilio", "url": url, "account_sid": "AC123",
                        "auth_token": TWILIO_TOKEN, "from": "+15005550006", "timeout": "1s",
                        "allow_private": true,
                    }))
                    .unwrap(),
                )
                .unwrap(),
            ),
            HttpChannel::JsonSms => Built::Sms(
                Sms::new(
                    serde_json::from_value(serde_json::json!({
                        "provider": "json", "url": url,
                        "headers": { "Authorization": format!("Bearer {JSON_KEY}") },
                        "body": r#"{"to": "{{to}}", "text": "{{text}}"}"#, "timeout": "1s",
                        "allow_private": true,
                    }))
                    .unwrap(),
                )
                .unwrap(),
            ),
            HttpChannel::Webhook => Built::Webhook(
                Webhook::new(
                    serde_json::from_value(serde_json::json!({
                        "name": "matrix", "url": url, "secrets": [HOOK_SECRET],
                        "headers": { "Authorization": format!("Bearer {HOOK_TOKEN}") },
                        "allow_private": true, "timeout": "1s",
                    }))
                    .unwrap(),
                )
                .unwrap(),
            ),
        }
    }
}

enum Built {
    Sms(Sms),
    Webhook(Webhook),
}

impl Built {
    async fn send(&self) -> Result<Receipt, SendError> {
        let msg = Message {
            idempotency_id: "ntf-matrix".into(),
            subject: "s".into(),
            text: "db-1 down".into(),
            html: None,
            payload: serde_json::json!({ "incident": 1 }),
        };
        match self {
            Built::Sms(sms) => sms.send("+15551234567", &msg).await,
            Built::Webhook(hook) => hook.send(&msg).await,
        }
    }
}

/// What a case must come back as.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Retryable(Option<Duration>),
    /// Retryable, with a `Retry-After` close to this (an HTTP-date has one-second steps).
    RetryableAbout(Duration),
    Permanent,
    Gone,
    Unknown,
}

impl Expect {
    fn matches(self, err: &SendError) -> bool {
        match (self, err) {
            (Expect::Retryable(want), SendError::Retryable { retry_after, .. }) => {
                *retry_after == want
            }
            (Expect::RetryableAbout(want), SendError::Retryable { retry_after: Some(got), .. }) => {
                got.abs_diff(want) <= Duration::from_secs(2)
            }
            (Expect::Permanent, SendError::Permanent { .. })
            | (Expect::Gone, SendError::Gone { .. })
            | (Expect::Unknown, SendError::Unknown { .. }) => true,
            _ => false,
        }
    }
}

#[tokio::test]
async fn every_http_channel_classifies_failures_alike_and_leaks_nothing() {
    let sink = Sink::start().await;
    let (hang_up, _hang_up_task) = hang_up_server().await;
    let base = sink.base();
    let cases: Vec<(String, Expect)> = vec![
        (format!("{base}/status/500"), Expect::Retryable(None)),
        (format!("{base}/status/503"), Expect::Retryable(None)),
        (format!("{base}/status/408"), Expect::Retryable(None)),
        (format!("{base}/retry-seconds"), Expect::Retryable(Some(Duration::from_secs(7)))),
        (format!("{base}/retry-date"), Expect::RetryableAbout(Duration::from_secs(30))),
        (format!("{base}/slow"), Expect::Unknown),
        (format!("http://{hang_up}/hang-up"), Expect::Retryable(None)),
        (format!("{base}/status/400"), Expect::Permanent),
        (format!("{base}/status/401"), Expect::Permanent),
        (format!("{base}/status/422"), Expect::Permanent),
        (format!("{base}/redirect"), Expect::Permanent),
        (format!("{base}/status/410"), Expect::Gone),
    ];

    let mut runs = tokio::task::JoinSet::new();
    for channel in HTTP_CHANNELS {
        for (url, expect) in cases.clone() {
            let built = channel.build(&url);
            runs.spawn(async move {
                let started = std::time::Instant::now();
                let result = built.send().await;
                (channel, url, expect, result, started.elapsed())
            });
        }
    }
    let mut failures = Vec::new();
    while let Some(run) = runs.join_next().await {
        let (channel, url, expect, result, elapsed) = run.unwrap();
        let case = format!("{channel:?} {url}");
        assert!(elapsed < Duration::from_secs(3), "{case} took {elapsed:?}");
        let err = match result {
            Ok(receipt) => {
                failures.push(format!("{case}: expected {expect:?}, got Ok({receipt:?})"));
                continue;
            }
            Err(err) => err,
        };
        if !expect.matches(&err) {
            failures.push(format!("{case}: expected {expect:?}, got {err:?}"));
        }
        let shown = format!("{err} {err:?}");
        for secret in channel.secrets() {
            if shown.contains(&secret) {
                failures.push(format!("{case}: the error shows a secret: {shown}"));
            }
        }
        // The endpoint is named by origin only; the path never shows.
        let origin = url.split('/').take(3).collect::<Vec<_>>().join("/");
        if !shown.contains(&origin) || shown.contains("/status/") {
            failures.push(format!("{case}: the error should name {origin} only: {shown}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The redirect was not followed: nothing asked for /elsewhere (it would have failed to
    // connect anyway), and every channel's request reached the receiver once per case.
    let paths: Vec<String> = sink.requests().into_iter().map(|r| r.path).collect();
    assert!(!paths.iter().any(|p| p.contains("elsewhere")));
    assert_eq!(paths.iter().filter(|p| *p == "/redirect").count(), HTTP_CHANNELS.len());
}

#[tokio::test]
async fn every_http_channel_succeeds_against_a_good_receiver() {
    let sink = Sink::start().await;
    let base = sink.base();
    for channel in HTTP_CHANNELS {
        let path = match channel {
            HttpChannel::Twilio => "/2010-04-01/Accounts/AC123/Messages.json",
            HttpChannel::JsonSms => "/json-ok",
            HttpChannel::Webhook => "/ok",
        };
        let receipt = channel.build(&format!("{base}{path}")).send().await.unwrap();
        assert!(receipt.reference.is_some(), "{channel:?}: {receipt:?}");
    }
    assert_eq!(sink.requests().len(), HTTP_CHANNELS.len(), "nothing unexpected arrived");
}
