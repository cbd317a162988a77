//! Hostile input against the real daemon and CLI (issue 17): sign-in never redirects
//! off-site.

mod common;

use std::net::IpAddr;
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
