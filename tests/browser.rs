//! The dashboard in a real browser: headless Chromium, driven through chromedriver over the W3C
//! WebDriver protocol, signs in, finds an incident by searching, acknowledges it, signs out,
//! and signs in again as a viewer who must see the customer's email redacted.
//!
//! The WebDriver client is the few JSON-over-HTTP calls below, sent with reqwest (already a
//! dev-dependency): no client crate to build, nothing fetched. chromedriver is started here on
//! a free loopback port and killed (by its `Child`) when the test ends. Needs Debian's
//! `chromium` and `chromium-driver` (`.ci/run` installs them); without `/usr/bin/chromium` the
//! test says so and passes without running.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Daemon, RESPONDER, TOKEN, VIEWER, eventually, users_config};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver, killed when dropped — after it closed the browser session, if one is open,
/// so that Chromium does not outlive the test even when an assertion fails midway.
struct Driver {
    child: Child,
    port: u16,
    url: String,
    /// The open WebDriver session's id.
    session: std::sync::Mutex<Option<String>>,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(id) = self.session.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // A plain blocking HTTP DELETE: Drop cannot await. chromedriver answers once
            // Chromium has quit.
            use std::io::{Read, Write};
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                let _ = write!(
                    s,
                    "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    self.port
                );
                // Until the JSON answer arrived (chromedriver may keep the connection open).
                let mut answer = Vec::new();
                let mut chunk = [0u8; 1024];
                while let Ok(n @ 1..) = s.read(&mut chunk) {
                    answer.extend_from_slice(&chunk[..n]);
                    if answer.windows(1).rev().take(4).any(|w| w == b"}") {
                        break;
                    }
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session.
struct Browser {
    http: reqwest::Client,
    session: String,
}

impl Browser {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.session);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().await.expect("WebDriver answers JSON");
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap().to_string()
    }

    async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None).await.as_str().unwrap().to_string()
    }

    /// The element `selector` finds (CSS, or XPath when it starts with `/`); the session's
    /// implicit wait lets it appear after a navigation.
    async fn find(&self, selector: &str) -> String {
        let using = if selector.starts_with('/') { "xpath" } else { "css selector" };
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": using, "value": selector})),
            )
            .await;
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("element {selector}: {v}")).to_string()
    }

    async fn type_into(&self, selector: &str, text: &str) {
        let e = self.find(selector).await;
        self.call(reqwest::Method::POST, &format!("/element/{e}/clear"), Some(json!({}))).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, selector: &str) {
        let e = self.find(selector).await;
        self.call(reqwest::Method::POST, &format!("/element/{e}/click"), Some(json!({}))).await;
    }

    /// The element's text. A navigation between finding it and reading it (a form just
    /// submitted) makes the element stale: then it is found again on the new page (at most 5
    /// tries).
    async fn text(&self, selector: &str) -> String {
        for _ in 0..5 {
            let e = self.find(selector).await;
            let url = format!("{}/element/{e}/text", self.session);
            let resp = self.http.get(&url).send().await.expect("WebDriver answers");
            let status = resp.status();
            let v: Value = resp.json().await.expect("WebDriver answers JSON");
            if status.is_success() {
                return v["value"].as_str().unwrap().to_string();
            }
            assert_eq!(v["value"]["error"], "stale element reference", "text of {selector}: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{selector} kept going stale");
    }

    /// Waits (at most 10 s) until the page's URL contains `part`.
    async fn wait_for_url(&self, part: &str) -> String {
        eventually(&format!("the URL to contain {part}"), Duration::from_secs(10), async || {
            let url = self.current_url().await;
            if url.contains(part) { Ok(url) } else { Err(format!("still at {url}")) }
        })
        .await
    }

    async fn sign_in(&self, base: &str, (name, token): (&str, &str)) {
        self.go(&format!("{base}/")).await;
        self.wait_for_url("/login").await;
        self.type_into("#name", name).await;
        self.type_into("#token", token).await;
        self.click("#sign-in").await;
        // Back at the overview, signed in.
        let what = format!("sign-in as {name} to leave the form");
        eventually(&what, Duration::from_secs(10), async || {
            !self.current_url().await.contains("/login")
        })
        .await;
        assert_eq!(self.text("nav .who").await.split_whitespace().next(), Some(name));
    }

    async fn sign_out(&self) {
        self.click("form[action='/logout'] button").await;
        self.wait_for_url("/login").await;
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        port,
        url: format!("http://127.0.0.1:{port}"),
        session: std::sync::Mutex::new(None),
        _profile: tempfile::tempdir().expect("profile dir"),
    };
    let http = reqwest::Client::new();
    let status = format!("{}/status", driver.url);
    eventually("chromedriver to be ready", Duration::from_secs(20), async || {
        let Ok(r) = http.get(&status).send().await else { return false };
        r.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == json!(true))
    })
    .await;
    driver
}

async fn open_browser(driver: &Driver) -> Browser {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=412,915",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ],
        },
    }}});
    let resp = http.post(format!("{}/session", driver.url)).json(&caps).send().await.unwrap();
    let v: Value = resp.json().await.unwrap();
    let id = v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("new session: {v}"));
    *driver.session.lock().unwrap() = Some(id.to_string());
    let b = Browser { http, session: format!("{}/session/{id}", driver.url) };
    b.call(
        reqwest::Method::POST,
        "/timeouts",
        Some(json!({"implicit": 5000, "pageLoad": 20000, "script": 5000})),
    )
    .await;
    b
}

#[tokio::test]
async fn sign_in_find_acknowledge_and_viewer_sees_masked_customer_data() {
    if !Path::new(CHROMIUM).exists() {
        println!(
            "SKIPPED: {CHROMIUM} is absent; install Debian's chromium and chromium-driver \
             (as .ci/run does) to run the browser test"
        );
        return;
    }
    let d = Daemon::with(&users_config()).start();
    let mut body: Value =
        serde_json::from_slice(&common::fixture("reports/verified-personal-data.json")).unwrap();
    body["summary"] = json!("Card payments fail at the last step");
    let r = d.post("/api/v1/reports", Some(TOKEN), body.to_string()).await;
    assert_eq!(r.status, 202, "{}", r.text);
    // Another incident, so that finding the right one takes the search.
    let mut other = body.clone();
    other["summary"] = json!("Newsletter images broken");
    other["customer"] = json!({"email": "someone@example.net"});
    assert_eq!(d.post("/api/v1/reports", Some(TOKEN), other.to_string()).await.status, 202);

    let driver = start_driver().await;
    let browser = open_browser(&driver).await;
    let base = d.url("");
    let run = async {
        // Responder: sign in, search, open, acknowledge.
        browser.sign_in(&base, RESPONDER).await;
        browser.go(&format!("{base}/incidents")).await;
        browser.type_into("#q", "card payments").await;
        browser.click("#search").await;
        browser.wait_for_url("q=card").await;
        let listed = browser.source().await;
        assert!(!listed.contains("Newsletter images broken"), "search did not filter");
        browser.click("//table//a[contains(., 'Card payments fail')]").await;
        let url = browser.wait_for_url("/incidents/").await;
        let id: u64 = url.rsplit('/').next().unwrap().parse().expect("incident id in the URL");
        assert_eq!(browser.text("#customer-email").await, "jo@example.org");
        assert!(browser.text("#summary").await.contains("triggered"));
        browser.click("#acknowledge").await;
        let what = "the page to show the acknowledgement";
        eventually(what, Duration::from_secs(10), async || {
            browser.text("#summary").await.contains("acknowledged")
        })
        .await;
        let api = d.get(&format!("/api/v1/incidents/{id}"), Some(TOKEN)).await;
        assert!(api.text.contains("\"acknowledged\""), "{}", api.text);
        assert!(api.text.contains("user:rita"), "{}", api.text);

        // Declare an incident through the form: it opens through the same rules and journal
        // as the API's declarations, declared by the signed-in responder.
        browser.go(&format!("{base}/declare")).await;
        browser.type_into("#title", "Researcher reports exposed backups").await;
        browser.type_into("#description", "An email from a security researcher with proof.").await;
        browser.type_into("#services", "backups").await;
        browser.click("#customer_impact").await;
        browser.click("#declare-submit").await;
        let url = browser.wait_for_url("/incidents/").await;
        let declared: u64 = url.rsplit('/').next().unwrap().parse().expect("incident id");
        assert_ne!(declared, id);
        let api = d.get(&format!("/api/v1/incidents/{declared}"), Some(TOKEN)).await;
        assert_eq!(api.body["kind"], "declaration", "{}", api.text);
        assert_eq!(api.body["decision"]["customer_facing"], true, "{}", api.text);
        let first = &api.body["timeline"][0];
        assert_eq!(first["actor"], "user:rita", "{}", api.text);
        assert!(
            first["message"]
                .as_str()
                .unwrap()
                .starts_with("declared by user:rita: Researcher reports exposed backups"),
            "{}",
            api.text
        );
        browser.sign_out().await;

        // Viewer: the same page with the customer's email redacted, and no acknowledge button.
        browser.sign_in(&base, VIEWER).await;
        browser.go(&format!("{base}/incidents/{id}")).await;
        assert_eq!(browser.text("#customer-email").await, "[redacted:email]");
        let page = browser.source().await;
        assert!(!page.contains("jo@example.org"), "viewer's page holds the email");
        assert!(!page.contains("7946 0958"), "viewer's page holds the phone number");
        assert!(!page.contains("id=\"acknowledge\""));
        browser.sign_out().await;
    };
    let outcome = tokio::time::timeout(Duration::from_secs(120), run).await;
    drop(driver); // closes the browser, then stops chromedriver (also when `run` panicked)
    outcome.expect("the browser test finished within 120 s");
}
