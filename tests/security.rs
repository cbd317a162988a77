//! Hostile input against the real daemon and CLI (issue 17; issue 16 item 17): sign-in never
//! redirects off-site, internal notification endpoints are config errors at `tocsin check`, and
//! data files are owner-only.

mod common;

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Daemon, TOKEN};

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
