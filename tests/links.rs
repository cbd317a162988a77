//! Acknowledging through the signed one-click link, end to end: the real daemon mails a real
//! SMTP server (mailin on 127.0.0.1, port 0); the test takes the link out of the mail it
//! received and uses it the way a phone or a mail scanner would.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::smtp::{Mail, mail_part, smtp_server};
use common::{Daemon, ROUTING_KEY, VIEWER_TOKEN, eventually};
use serde_json::{Value, json};

const EMAIL: &str = "ana@example.com";
/// The public base URL in messages. The daemon listens elsewhere (a proxy would sit between);
/// the test sends the link's path to the daemon directly.
const PUBLIC: &str = "https://tocsin.example.com";

fn config(smtp_port: u16, ack_links: &str) -> String {
    common::config_yaml(&format!(
        r#"people:
  - {{id: ana, name: Ana, email: {EMAIL}}}
  - {{id: bob, name: Bob, email: bob@example.com}}
policies:
  - name: main
    notify: [{{person: ana, channels: [email]}}]
default_policy: main
notifications:
  dashboard_url: "{PUBLIC}/"
  ack_links: {ack_links}
  delivery: {{initial_backoff: 100ms, max_backoff: 1s, attempt_timeout: 2s, lease: 5s}}
  rate_limits: {{email: {{}}, sms: {{}}, webhook: {{}}, log: {{}}}}
  email: {{relay: 127.0.0.1, port: {smtp_port}, tls: none, from: "tocsin@example.com", timeout: 5s}}
"#
    ))
}

async fn trigger(d: &Daemon, key: &str, summary: &str) -> u64 {
    let body = json!({
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {"summary": summary, "source": "db1", "severity": "critical"}
    });
    let r = d.post("/v2/enqueue", None, body.to_string()).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let event = &r.event_ids()[0];
    let r = d.get(&format!("/api/v1/events/{event}"), Some(VIEWER_TOKEN)).await;
    r.body["incident_id"].as_u64().unwrap_or_else(|| panic!("no incident: {}", r.text))
}

async fn incident(d: &Daemon, id: u64) -> Value {
    let r = d.get(&format!("/api/v1/incidents/{id}"), Some(VIEWER_TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// Waits (at most 20 s) for a mail to `to`; returns its decoded text and HTML parts.
async fn mail_to(mails: &Arc<Mutex<Vec<Mail>>>, to: &str) -> (String, String) {
    let m = eventually(&format!("a mail to {to}"), Duration::from_secs(20), async || {
        mails.lock().unwrap().iter().find(|m| m.to.iter().any(|t| t == to)).cloned()
    })
    .await;
    let text = mail_part(&m.data, "text/plain").expect("a text part");
    let html = mail_part(&m.data, "text/html").unwrap_or_default();
    (text, html)
}

/// The token of the `Acknowledge: <PUBLIC>/ack/<token>` line of a mail's text.
fn ack_token(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("Acknowledge:"))
        .unwrap_or_else(|| panic!("no acknowledge line in:\n{text}"));
    let url = line.split_whitespace().nth(1).expect("a URL");
    url.strip_prefix(&format!("{PUBLIC}/ack/"))
        .unwrap_or_else(|| panic!("not an ack link under the public URL: {url}"))
        .to_string()
}

struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

async fn ack(d: &Daemon, method: reqwest::Method, token: &str) -> Page {
    let mut req = d.client.request(method.clone(), d.url(&format!("/ack/{token}")));
    if method == reqwest::Method::POST {
        // What a browser's form submit sends.
        req = req.header("content-type", "application/x-www-form-urlencoded").body("");
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    Page { status, headers, text: resp.text().await.expect("body") }
}

/// The same token with one character in the middle changed (still valid base64url).
fn tampered(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mailed_link_shows_on_get_and_acknowledges_on_post_only() {
    let (smtp_port, mails) = smtp_server();
    let d = Daemon::with(&config(smtp_port, "{ttl: 1h}")).start();
    let id = trigger(&d, "disk-db1", "Disk full on db1").await;

    let (text, html) = mail_to(&mails, EMAIL).await;
    let token = ack_token(&text);
    assert!(html.contains(&format!("href=\"{PUBLIC}/ack/{token}\"")), "{html}");
    assert!(text.contains(&format!("{PUBLIC}/incidents/{id}")), "{text}");

    // No secret configured: the key was generated, private, in the data directory.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.data_dir.join("link.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // The API shows the stored message without the token.
    let inc = incident(&d, id).await;
    let shown = inc["notifications"].to_string();
    assert!(!shown.contains(&token), "the API must not hand out the link: {shown}");
    assert!(shown.contains("/ack/<redacted>"), "{shown}");

    // GET (what scanners and previews do) shows the incident and a button, and acts not.
    for _ in 0..3 {
        let page = ack(&d, reqwest::Method::GET, &token).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert!(page.text.contains(&format!("#{id}")), "{}", page.text);
        assert!(page.text.contains("Disk full on db1"), "{}", page.text);
        assert!(page.text.contains("triggered"), "{}", page.text);
        assert!(page.text.contains("<form method=\"post\">"), "{}", page.text);
        assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
        assert_eq!(page.headers["cache-control"], "no-store");
        assert_eq!(page.headers["referrer-policy"], "no-referrer");
        assert_eq!(page.headers["x-frame-options"], "DENY");
    }
    let inc = incident(&d, id).await;
    assert_eq!(inc["status"], "triggered", "GET must not acknowledge: {inc}");

    // A tampered token is refused and changes nothing.
    let forged = tampered(&token);
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let page = ack(&d, method, &forged).await;
        assert_eq!(page.status, 403, "{}", page.text);
        assert!(page.text.contains("signature does not match"), "{}", page.text);
    }
    let page = ack(&d, reqwest::Method::POST, "not-a-token").await;
    assert_eq!(page.status, 403, "{}", page.text);
    assert_eq!(incident(&d, id).await["status"], "triggered");

    // A correctly signed link for an incident that does not exist, or for someone no longer in
    // `people`: minted here with the daemon's own key to reach those checks.
    let key = std::fs::read_to_string(d.data_dir.join("link.key")).unwrap();
    let key = tocsin::links::Key::new(key.trim().as_bytes());
    let in_an_hour = jiff::Timestamp::now().as_second() + 3600;
    let mint = |incident: u64, person: &str| {
        tocsin::links::mint(
            &key,
            &tocsin::links::Claim { incident, person: person.into(), expires: in_an_hour },
        )
        .unwrap()
    };
    let page = ack(&d, reqwest::Method::POST, &mint(id + 100, "ana")).await;
    assert_eq!(page.status, 404, "{}", page.text);
    let page = ack(&d, reqwest::Method::POST, &mint(id, "mallory")).await;
    assert_eq!(page.status, 403, "{}", page.text);
    assert!(page.text.contains("no longer"), "{}", page.text);
    assert_eq!(incident(&d, id).await["status"], "triggered");

    // POST acknowledges, as the person the link was sent to.
    let page = ack(&d, reqwest::Method::POST, &token).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("Acknowledged."), "{}", page.text);
    let inc = incident(&d, id).await;
    assert_eq!(inc["status"], "acknowledged", "{inc}");
    assert_eq!(inc["acknowledged"]["by"], "link:ana", "{inc}");
    let acks: Vec<&Value> = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "acknowledged")
        .collect();
    assert_eq!(acks.len(), 1, "{inc}");
    assert_eq!(acks[0]["message"], "acknowledged by link:ana");
    assert_eq!(acks[0]["actor"], "link:ana", "{}", acks[0]);

    // A second click, and the page afterwards, say who acknowledged it.
    let page = ack(&d, reqwest::Method::POST, &token).await;
    assert_eq!(page.status, 409, "{}", page.text);
    assert!(
        page.text.contains("already <strong>acknowledged</strong> by link:ana"),
        "{}",
        page.text
    );
    let page = ack(&d, reqwest::Method::GET, &token).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(!page.text.contains("<form"), "{}", page.text);
    assert_eq!(incident(&d, id).await["timeline"], inc["timeline"], "nothing more happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_link_is_refused() {
    let (smtp_port, mails) = smtp_server();
    let secret = "a-configured-secret-of-at-least-32-bytes";
    let d = Daemon::with(&config(smtp_port, &format!("{{secret: \"{secret}\", ttl: 1s}}"))).start();
    let id = trigger(&d, "cpu-web1", "CPU hot on web1").await;
    let (text, _) = mail_to(&mails, EMAIL).await;
    let token = ack_token(&text);
    // A configured secret: nothing generated.
    assert!(!d.data_dir.join("link.key").exists());

    // The link lives one second from when the message was composed; wait it out.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let page = ack(&d, method, &token).await;
        assert_eq!(page.status, 410, "{}", page.text);
        assert!(page.text.contains("expired"), "{}", page.text);
    }
    let inc = incident(&d, id).await;
    assert_eq!(inc["status"], "triggered", "{inc}");
    assert!(inc["acknowledged"].is_null(), "{inc}");
}

/// A link's lifetime is counted on the daemon's clock, both when it is minted and when it is
/// used: on a manual clock (drills, tests) it expires when that clock says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_expires_on_the_daemons_clock() {
    let (smtp_port, mails) = smtp_server();
    // Months before the wall clock, so a link minted or checked on the wall clock would differ.
    let d = Daemon::with(&config(smtp_port, "{ttl: 1h}"))
        .env("TOCSIN_FAKE_CLOCK", "2026-03-01T09:00:00Z")
        .captured()
        .start();
    let id = trigger(&d, "disk-db2", "Disk full on db2").await;
    let (text, _) = mail_to(&mails, EMAIL).await;
    let token = ack_token(&text);

    d.advance("59m").await;
    let page = ack(&d, reqwest::Method::GET, &token).await;
    assert_eq!(page.status, 200, "still valid 59 minutes in: {}", page.text);

    d.advance("2m").await;
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let page = ack(&d, method, &token).await;
        assert_eq!(page.status, 410, "expired an hour after the mail: {}", page.text);
        assert!(page.text.contains("expired at 2026-03-01"), "{}", page.text);
    }
    let inc = incident(&d, id).await;
    assert!(inc["acknowledged"].is_null(), "{inc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dashboard_url_no_link_is_sent_and_the_route_is_off() {
    let (smtp_port, mails) = smtp_server();
    let yaml =
        config(smtp_port, "{ttl: 1h}").replace(&format!("  dashboard_url: \"{PUBLIC}/\"\n"), "");
    let d = Daemon::with(&yaml).start();
    trigger(&d, "mem-db2", "Memory low on db2").await;
    let (text, html) = mail_to(&mails, EMAIL).await;
    assert!(!text.contains("/ack/") && !text.contains("Acknowledge:"), "{text}");
    assert!(!html.contains("/ack/"), "{html}");
    assert!(!d.data_dir.join("link.key").exists());
    let page = ack(&d, reqwest::Method::POST, "AAAA").await;
    assert_eq!(page.status, 404, "{}", page.text);
}

const TWILIO_TOKEN: &str = "twilio-auth-token-0123456789";
const PHONE: &str = "+15551234567";

/// Twilio's signature of a form POST to `url` (HMAC-SHA1 over the URL and the sorted
/// parameters, base64), computed independently of the daemon's code.
fn twilio_sign(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    BASE64.encode(mac.finalize().into_bytes())
}

fn form(params: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                b => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    params.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

async fn sms_reply(d: &Daemon, params: &[(&str, &str)], signature: &str) -> Page {
    let resp = d
        .client
        .post(d.url("/api/v1/sms/inbound"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .body(form(params))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    Page { status, headers, text: resp.text().await.expect("body") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_reply_acknowledges_as_the_sender() {
    // The gateway itself is not reachable (nothing listens there): the SMS rows exist, which is
    // all a reply needs; what arrives at Twilio is tests/notifications.rs' business.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let yaml = common::config_yaml(&format!(
        r#"people:
  - {{id: ana, name: Ana, phone: "{PHONE}"}}
  - {{id: bob, name: Bob, phone: "+15557654321"}}
policies:
  - name: main
    notify: [{{person: ana, channels: [sms]}}]
default_policy: main
notifications:
  dashboard_url: "{PUBLIC}"
  delivery: {{initial_backoff: 1s, max_backoff: 2s, attempt_timeout: 1s, max_attempts: 2}}
  rate_limits: {{email: {{}}, sms: {{}}, webhook: {{}}, log: {{}}}}
  sms:
    provider: twilio
    url: "http://{closed}/2010-04-01/Accounts/{{account_sid}}/Messages.json"
    account_sid: AC0123456789abcdef0123456789abcdef
    auth_token: {TWILIO_TOKEN}
    from: "+15005550006"
    timeout: 2s
    allow_private: true
"#
    ));
    let d = Daemon::with(&yaml).start();
    let id = trigger(&d, "net-edge1", "Packet loss on edge1").await;
    // The SMS carries the link (shown redacted through the API).
    let inc = incident(&d, id).await;
    let sms = &inc["notifications"][0];
    assert_eq!(sms["channel"], "sms", "{inc}");
    let text = sms["message"]["text"].as_str().unwrap();
    assert!(text.contains(&format!("Ack: {PUBLIC}/ack/<redacted>")), "{text}");

    let url = format!("{PUBLIC}/api/v1/sms/inbound");
    let body = format!("ACK {id}");
    let params = [("From", PHONE), ("To", "+15005550006"), ("Body", body.as_str())];

    // Wrong or missing signature: refused, nothing changes. Refusals are JSON errors (only a
    // message Twilio signed gets TwiML).
    let page = sms_reply(&d, &params, &twilio_sign("not-the-token", &url, &params)).await;
    assert_eq!(page.status, 403, "{}", page.text);
    let json: serde_json::Value = serde_json::from_str(&page.text).expect("a JSON error");
    assert_eq!(json["error"], "forbidden", "{}", page.text);
    assert!(json["message"].as_str().unwrap().contains("X-Twilio-Signature"), "{}", page.text);
    assert_eq!(page.headers["content-type"], "application/json");
    let page = sms_reply(&d, &params, "").await;
    assert_eq!(page.status, 403, "{}", page.text);
    assert_eq!(incident(&d, id).await["status"], "triggered");
    // Not a form at all (a byte that is not UTF-8 once decoded).
    let resp = d
        .client
        .post(d.url("/api/v1/sms/inbound"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("Body=%FF")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let json: serde_json::Value = resp.json().await.expect("a JSON error");
    assert_eq!(json["error"], "malformed", "{json}");

    // A number nobody has: no reply at all.
    let stranger = [("From", "+15550000000"), ("To", "+15005550006"), ("Body", body.as_str())];
    let page = sms_reply(&d, &stranger, &twilio_sign(TWILIO_TOKEN, &url, &stranger)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("<Response></Response>"), "{}", page.text);
    // Bob is a person, but was not paged for this incident.
    let bob = [("From", "+15557654321"), ("To", "+15005550006"), ("Body", body.as_str())];
    let page = sms_reply(&d, &bob, &twilio_sign(TWILIO_TOKEN, &url, &bob)).await;
    assert!(page.text.contains("was not sent to you"), "{}", page.text);
    // Gibberish from Ana: told how.
    let what = [("From", PHONE), ("To", "+15005550006"), ("Body", "yes")];
    let page = sms_reply(&d, &what, &twilio_sign(TWILIO_TOKEN, &url, &what)).await;
    assert!(page.text.contains("reply ACK followed by the incident number"), "{}", page.text);
    assert_eq!(incident(&d, id).await["status"], "triggered");

    // Ana's reply acknowledges, as her.
    let page = sms_reply(&d, &params, &twilio_sign(TWILIO_TOKEN, &url, &params)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.headers["content-type"], "text/xml; charset=utf-8");
    assert!(
        page.text.contains(&format!("<Message>Acknowledged #{id}. Thank you.</Message>")),
        "{}",
        page.text
    );
    let inc = incident(&d, id).await;
    assert_eq!(inc["status"], "acknowledged", "{inc}");
    assert_eq!(inc["acknowledged"]["by"], "sms:ana", "{inc}");
    // Again: already acknowledged.
    let page = sms_reply(&d, &params, &twilio_sign(TWILIO_TOKEN, &url, &params)).await;
    assert!(page.text.contains("not acknowledged"), "{}", page.text);
}

/// An SMS gateway that refuses every message with 400 and echoes the link it got, escaped
/// the way a receiver might (in turn: as it came, percent-encoded; JSON-escaped; wrapped as
/// quoted-printable with a soft break inside the token; HTML-escaped; plain). Returns the
/// port and the tokens it saw.
async fn echoing_gateway() -> (u16, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tokens = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = tokens.clone();
    tokio::spawn(async move {
        let mut count = 0usize;
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let body = loop {
                let Ok(n) = sock.read(&mut chunk).await else { break None };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break Some(String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned());
                }
            };
            let Some(body) = body else { continue };
            // The form as sent: `…&Body=…https%3A%2F%2Ftocsin.example.com%2Fack%2F<token>…`.
            let mark = "%2Fack%2F";
            let Some(at) = body.find(mark) else { continue };
            let token: String = body[at + mark.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            seen.lock().unwrap().push(token.clone());
            let (a, b) = token.split_at(token.len() / 2);
            let answer = match count % 5 {
                0 => format!(
                    "invalid request: Body=https%3A%2F%2Ftocsin.example.com%2Fack%2F{token}"
                ),
                1 => format!(
                    r#"{{"error":"bad body","echo":"https:\/\/tocsin.example.com\/ack\/{token}"}}"#
                ),
                2 => format!("bad body:\r\nhttps://tocsin.example.com/ack/{a}=\r\n{b}"),
                3 => format!(
                    "<p>bad body: https:&#x2F;&#x2F;tocsin.example.com&#x2F;ack&#x2F;{token}</p>"
                ),
                _ => format!("bad body: https://tocsin.example.com/ack/{token}"),
            };
            count += 1;
            let resp = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    (port, tokens)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_echoing_the_link_however_escaped_leaves_no_token_in_errors_or_logs() {
    let (port, tokens) = echoing_gateway().await;
    let yaml = common::config_yaml(&format!(
        r#"people:
  - {{id: ana, name: Ana, phone: "{PHONE}"}}
policies:
  - name: main
    notify: [{{person: ana, channels: [sms]}}]
default_policy: main
notifications:
  dashboard_url: "{PUBLIC}"
  delivery: {{initial_backoff: 1s, max_backoff: 2s, attempt_timeout: 2s, max_attempts: 2}}
  rate_limits: {{email: {{}}, sms: {{}}, webhook: {{}}, log: {{}}}}
  sms:
    provider: twilio
    url: "http://127.0.0.1:{port}/2010-04-01/Accounts/{{account_sid}}/Messages.json"
    account_sid: AC0123456789abcdef0123456789abcdef
    auth_token: {TWILIO_TOKEN}
    from: "+15005550006"
    timeout: 2s
    allow_private: true
"#
    ));
    let d = Daemon::with(&yaml).env("TOCSIN_LOG", "debug").captured().start();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(trigger(&d, &format!("edge-{i}"), &format!("Packet loss on edge{i}")).await);
    }
    // A 400 is final: each SMS is a dead letter after one attempt.
    let dead = eventually("5 dead letters", Duration::from_secs(30), async || {
        let r = d.get("/api/v1/notifications?state=dead", Some(common::TOKEN)).await;
        let list = r.body["notifications"].as_array().cloned().unwrap_or_default();
        if list.len() == 5 { Ok(Value::Array(list)) } else { Err(r.text) }
    })
    .await;
    let tokens = tokens.lock().unwrap().clone();
    assert_eq!(tokens.len(), 5, "{tokens:?}");
    // The receiver's answer is in the reason (so the check below means something)…
    let errors: Vec<&str> =
        dead.as_array().unwrap().iter().map(|n| n["last_error"].as_str().unwrap_or("")).collect();
    assert!(
        errors.iter().all(|e| e.contains("HTTP 400") && e.contains("<redacted>")),
        "{errors:?}"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["queue", "list", "--state", "dead"])
        .args(["--url", &format!("http://{}", d.addr), "--token", common::TOKEN])
        .current_dir(d.config.parent().unwrap())
        .env_remove("TOCSIN_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut timelines = String::new();
    for id in &ids {
        timelines.push_str(&incident(&d, *id).await["timeline"].to_string());
    }
    let logged = std::fs::read_to_string(d.log()).unwrap();
    // …and no token, whole or either half of it, in the row, the CLI, the timeline or the log.
    for token in &tokens {
        let (a, b) = token.split_at(token.len() / 2);
        for (what, text) in [
            ("API", dead.to_string()),
            ("queue list", listed.clone()),
            ("timeline", timelines.clone()),
            ("log", logged.clone()),
        ] {
            assert!(
                !text.contains(a) && !text.contains(b),
                "{what} holds a token ({token}):\n{text}"
            );
        }
    }
}
