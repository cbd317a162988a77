//! Hostile input against the real daemon and CLI (issue 17; issue 16 item 17): sign-in never
//! redirects off-site, a flood of bad unauthenticated requests starves no valid one (limits
//! are per client, behind trusted proxies), internal notification endpoints are config errors
//! at `tocsin check`, and data files are owner-only.

mod common;

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Daemon, ROUTING_KEY, TOKEN, VIEWER_TOKEN, config_yaml, eventually};
use serde_json::json;

const PUBLIC: &str = "https://tocsin.example.com";
const TWILIO_TOKEN: &str = "twilio-auth-token-0123456789";
const PHONE: &str = "+15551234567";
const LINK_SECRET: &str = "link-secret-0123456789abcdef0123456789";

/// A client that does not follow redirects, sending from `local` (Linux answers the whole of
/// 127.0.0.0/8 on loopback, so each is another client address).
fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Where a browser goes with this `Location`, seen from the sign-in page.
fn resolved(d: &Daemon, location: Option<&str>) -> reqwest::Url {
    let base = reqwest::Url::parse(&d.url("/login")).unwrap();
    base.join(location.unwrap_or("/")).unwrap()
}

#[tokio::test]
async fn sign_in_never_redirects_to_another_origin() {
    let d = Daemon::start("");
    let browser = client_from("127.0.0.1");
    let evil = "/\t/evil.example";
    let r = browser
        .post(d.url("/login"))
        .form(&[("name", "admin"), ("token", TOKEN), ("next", evil)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers().get("location").map(|v| v.to_str().unwrap().to_string());
    let to = resolved(&d, location.as_deref());
    assert_eq!(to.host_str(), Some("127.0.0.1"), "POST /login next={evil:?} → {location:?}");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();

    // Signed in, `GET /login?next=` redirects straight on: every spelling browsers read as
    // another host, raw and percent-encoded.
    for next in [
        "/%09/evil.example",
        "/%0a/evil.example",
        "/%0d/evil.example",
        "%09//evil.example",
        "%20//evil.example",
        "//evil.example",
        "%2F%2Fevil.example",
        "/%5Cevil.example",
        "%5C%5Cevil.example",
        "/%5C/evil.example",
        "%5C/evil.example",
        "/%00/evil.example",
        "/%E3%80%80/evil.example",
        "https://evil.example",
        "https:evil.example",
        "http:/evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/%252F%252Fevil.example",
    ] {
        let r = browser
            .get(d.url(&format!("/login?next={next}")))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{next}");
        let location = r.headers().get("location").map(|v| v.to_str().unwrap().to_string());
        let to = resolved(&d, location.as_deref());
        assert_eq!(
            (to.scheme(), to.host_str(), to.port()),
            ("http", Some("127.0.0.1"), Some(d.addr.port())),
            "next={next} → Location {location:?} → {to}"
        );
    }
    // A real path is kept.
    let r = browser
        .get(d.url("/login?next=/incidents%3Fstatus%3Dopen"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/incidents?status=open");
}

async fn trigger(d: &Daemon) -> u64 {
    let body = json!({
        "routing_key": ROUTING_KEY, "event_action": "trigger", "dedup_key": "edge1",
        "payload": {"summary": "Packet loss on edge1", "source": "edge1", "severity": "critical"}
    });
    let r = d.post("/v2/enqueue", None, body.to_string()).await;
    assert_eq!(r.status, 202, "{}", r.text);
    d.incident_of(&r).await
}

/// Twilio's signature (HMAC-SHA1 over the URL and the sorted parameters, base64).
fn twilio_sign(url: &str, params: &[(&str, &str)]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(TWILIO_TOKEN.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn sms_reply(d: &Daemon, from: &str, body: &str, signature: &str) -> (u16, String) {
    let params = [("From", PHONE), ("To", "+15005550006"), ("Body", body)];
    let r = client_from(from)
        .post(d.url("/api/v1/sms/inbound"))
        .header("x-twilio-signature", signature)
        .form(&params)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn sign_in(d: &Daemon, from: &str, name: &str, token: &str, via: Option<&str>) -> u16 {
    let mut req = client_from(from).post(d.url("/login")).form(&[("name", name), ("token", token)]);
    if let Some(forwarded) = via {
        req = req.header("x-forwarded-for", forwarded);
    }
    req.send().await.unwrap().status().as_u16()
}

/// `burst` refusals (`refused`), then 429s: the budget refills one failure per `every`, so a
/// flood that took `took` may see at most one more refusal per refill after the burst (a slow,
/// loaded machine makes the flood slow, not the limit loose); everything else is limited.
fn limited_after(statuses: &[u16], refused: u16, burst: usize, took: Duration, every: Duration) {
    assert!(statuses[..burst].iter().all(|s| *s == refused), "{statuses:?}");
    let refills = (took.as_secs_f64() / every.as_secs_f64()).ceil() as usize + 1;
    let rest = &statuses[burst..];
    let more = rest.iter().filter(|s| **s == refused).count();
    assert!(
        more <= refills,
        "{more} more refusals than {refills} refills in {took:?}: {statuses:?}"
    );
    assert!(rest.iter().all(|s| *s == refused || *s == 429), "{statuses:?}");
    assert!(rest.len() - more >= rest.len() / 2, "the flood is not limited: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_bad_unauthenticated_requests_starve_no_valid_one() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let d = Daemon::start(&format!(
        r#"people:
  - {{id: ana, name: Ana, phone: "{PHONE}"}}
policies:
  - name: main
    notify: [{{person: ana, channels: [sms]}}]
default_policy: main
limits:
  trusted_proxies: [127.0.0.1]
notifications:
  dashboard_url: "{PUBLIC}"
  ack_links: {{secret: "{LINK_SECRET}"}}
  delivery: {{initial_backoff: 1s, max_backoff: 2s, attempt_timeout: 1s, max_attempts: 2}}
  sms:
    provider: twilio
    url: "http://{closed}/2010-04-01/Accounts/{{account_sid}}/Messages.json"
    account_sid: AC0123456789abcdef0123456789abcdef
    auth_token: {TWILIO_TOKEN}
    from: "+15005550006"
    allow_private: true
"#
    ));
    let id = trigger(&d).await;

    // A flood of made-up acknowledge links from one address: refused, then limited.
    let flood = client_from("127.0.0.2");
    let mut statuses = Vec::new();
    let started = Instant::now();
    for i in 0..100 {
        let r = flood.get(d.url(&format!("/ack/made-up-{i}"))).send().await.unwrap();
        statuses.push(r.status().as_u16());
    }
    limited_after(&statuses, 403, 20, started.elapsed(), Duration::from_secs(1));

    // A real link still works, from anywhere else.
    let token = tocsin::links::mint(
        &tocsin::links::Key::new(LINK_SECRET.as_bytes()),
        &tocsin::links::Claim {
            incident: id,
            person: "ana".into(),
            expires: jiff::Timestamp::now().as_second() + 3600,
        },
    )
    .unwrap();
    let r = client_from("127.0.0.3").get(d.url(&format!("/ack/{token}"))).send().await.unwrap();
    assert_eq!(r.status(), 200, "a valid link after a flood of invalid ones");

    // A flood of unsigned SMS replies: refused, then limited; a signed one from Twilio's
    // address is answered.
    let url = format!("{PUBLIC}/api/v1/sms/inbound");
    let ack = format!("ACK {id}");
    let mut statuses = Vec::new();
    let started = Instant::now();
    for _ in 0..50 {
        statuses.push(sms_reply(&d, "127.0.0.4", &ack, "forged").await.0);
    }
    limited_after(&statuses, 403, 20, started.elapsed(), Duration::from_secs(1));
    let signature =
        twilio_sign(&url, &[("From", PHONE), ("To", "+15005550006"), ("Body", ack.as_str())]);
    let (status, text) = sms_reply(&d, "127.0.0.5", &ack, &signature).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(&format!("Acknowledged #{id}")), "{text}");

    // 30 bad sign-ins spread over user names from one address: that address is limited after
    // ten; a correct sign-in from another address is not.
    let names = ["admin", "dashboard", "nobody"];
    let mut statuses = Vec::new();
    let started = Instant::now();
    for i in 0..30 {
        statuses.push(sign_in(&d, "127.0.0.2", names[i % 3], "wrong", None).await);
    }
    limited_after(&statuses, 401, 10, started.elapsed(), Duration::from_secs(6));
    assert_eq!(sign_in(&d, "127.0.0.2", "admin", TOKEN, None).await, 429, "its own budget");
    assert_eq!(sign_in(&d, "127.0.0.3", "admin", TOKEN, None).await, 303);

    // Behind the trusted proxy (127.0.0.1) the client is X-Forwarded-For's.
    for _ in 0..12 {
        sign_in(&d, "127.0.0.1", "admin", "wrong", Some("203.0.113.7")).await;
    }
    assert_eq!(sign_in(&d, "127.0.0.1", "admin", TOKEN, Some("203.0.113.7")).await, 429);
    assert_eq!(sign_in(&d, "127.0.0.1", "admin", TOKEN, Some("198.51.100.9")).await, 303);
    // From an address that is not a trusted proxy the header is not believed: changing it
    // escapes nothing.
    let mut statuses = Vec::new();
    for i in 0..12 {
        let spoofed = format!("192.0.2.{i}");
        statuses.push(sign_in(&d, "127.0.0.6", "dashboard", "wrong", Some(&spoofed)).await);
    }
    assert_eq!(statuses[10..], [429, 429], "{statuses:?}");
    assert_eq!(sign_in(&d, "127.0.0.7", "dashboard", VIEWER_TOKEN, None).await, 303);
}

#[test]
fn check_reports_internal_notification_endpoints_with_their_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.yaml");
    std::fs::write(
        &path,
        r#"sources:
  - { name: default, token: "t-0123456789abcdef", allow: [alerts] }
people:
  - { id: ana, phone: "+15551234567" }
policies:
  - { name: main, notify: [{ person: ana, channels: [sms] }, { webhook: ops }, { webhook: lan }] }
default_policy: main
notifications:
  sms:
    provider: twilio
    url: "http://localhost:8080/2010-04-01/Accounts/{account_sid}/Messages.json"
    account_sid: AC0123456789abcdef0123456789abcdef
    auth_token: secret-token
    from: "+15005550006"
  webhooks:
    - { name: ops, url: "http://127.0.0.1:9000/hook/secretpath" }
    - { name: lan, url: "http://[::ffff:192.168.1.10]/hook" }
    - { name: ok, url: "http://127.0.0.1:9001/hook", allow_private: true }
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let file = path.display().to_string();
    for (line, key, says) in [
        (10, "notifications.sms.url", "localhost"),
        (16, "notifications.webhooks[0].url", "loopback"),
        (17, "notifications.webhooks[1].url", "private-use"),
    ] {
        let found =
            stderr.lines().find(|l| l.contains(key)).unwrap_or_else(|| panic!("{key}: {stderr}"));
        assert!(found.starts_with(&format!("{file}:{line}:")), "{found}");
        assert!(found.contains(says) && found.contains("allow_private"), "{found}");
    }
    assert!(!stderr.contains("webhooks[2]"), "{stderr}");
    assert!(!stderr.contains("secretpath"), "{stderr}");
}

#[tokio::test]
async fn data_files_are_owner_only() {
    let mut d = Daemon::start("");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let store = d.data_dir.join("tocsin.redb");
    assert_eq!(mode(&d.data_dir), 0o700, "the data directory Tocsin created");
    assert_eq!(mode(&store), 0o600);
    // A store left readable by others (an older version made it 0644) is made owner-only.
    assert_eq!(d.terminate(), Some(0));
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o644)).unwrap();
    let d = d.restart();
    assert_eq!(d.get("/-/ready", None).await.status, 200);
    assert_eq!(mode(&store), 0o600);
}

/// Sign-in and SMS replies are open to anyone who can reach them: a body far larger than
/// either needs is refused 413 with a JSON error, well below the ingest limit (1 MiB).
#[tokio::test]
async fn sign_in_and_sms_replies_refuse_large_bodies() {
    let d = Daemon::start("");
    let client = reqwest::Client::new();
    let filler = "x".repeat(64 * 1024);
    for (path, body) in [
        ("/login", format!("name=ana&token={filler}&next=/")),
        ("/api/v1/sms/inbound", format!("From=%2B15550100&Body=ACK+1&Pad={filler}")),
    ] {
        let r = client
            .post(d.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 413, "{path}");
        let ct = r.headers().get("content-type").unwrap().to_str().unwrap().to_string();
        assert!(ct.starts_with("application/json"), "{path}: {ct}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "too_large", "{path}: {body}");
    }
    // A sign-in form of ordinary size is still read (and refused for its token, not its size).
    let r = client
        .post(d.url("/login"))
        .form(&[("name", "nobody"), ("token", "wrong"), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_ne!(r.status().as_u16(), 413);
}

/// Webhooks and SMS gateways never use a proxy from the environment, not even an endpoint
/// with `allow_private: true`: a proxy would connect on Tocsin's behalf, past the address
/// guard. The endpoint's name does not resolve, so only a proxy could have reached it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_ignore_proxies_from_the_environment() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = proxy.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    let d = Daemon::with(&config_yaml(r#"policies:
  - name: main
    notify: [{webhook: out}]
default_policy: main
notifications:
  delivery: {initial_backoff: 200ms, max_backoff: 1s, attempt_timeout: 1s, lease: 10s, max_attempts: 10}
  rate_limits: {email: {}, sms: {}, webhook: {}, log: {}}
  webhooks:
    - {name: out, url: "http://tocsin-proxy-test.invalid/hook", allow_private: true, timeout: 1s}
"#)).envs(&[
            ("HTTP_PROXY", &proxy_url),
            ("http_proxy", &proxy_url),
            ("HTTPS_PROXY", &proxy_url),
            ("ALL_PROXY", &proxy_url),
            ("NO_PROXY", ""),
        ]).start();
    let r = d
        .post(
            "/api/v1/events",
            Some(TOKEN),
            json!({"summary": "x", "severity": "critical"}).to_string(),
        )
        .await;
    let id = d.incident_of(&r).await;
    eventually("two delivery attempts", Duration::from_secs(20), async || {
        let inc = d.get(&format!("/api/v1/incidents/{id}"), Some(VIEWER_TOKEN)).await;
        let attempts = inc.body["notifications"][0]["attempts"].as_u64().unwrap_or(0);
        if attempts >= 2 { Ok(()) } else { Err(inc.text) }
    })
    .await;
    assert_eq!(reached.load(Ordering::SeqCst), 0, "a notification went through the env proxy");
}
