//! The web dashboard over plain HTTP against the real daemon: who may see and do what, CSRF,
//! escaping, sign-in rate limiting and sign-out. Assertions read what a browser would get (status,
//! redirects, the page's text) and what the JSON API says changed (or did not).

mod common;

use std::time::Duration;

use common::{Daemon, RESPONDER, TOKEN, VIEWER, users_config};
use serde_json::{Value, json};

const ADMIN: (&str, &str) = ("admin", TOKEN);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

struct Page {
    status: u16,
    location: Option<String>,
    set_cookie: Option<String>,
    body: String,
}

async fn page(resp: reqwest::Response) -> Page {
    let status = resp.status().as_u16();
    let header =
        |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (location, set_cookie) = (header("location"), header("set-cookie"));
    Page { status, location, set_cookie, body: resp.text().await.expect("body") }
}

async fn get(d: &Daemon, cookie: Option<&str>, path: &str) -> Page {
    let mut req = client().get(d.url(path));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    page(req.send().await.expect("GET")).await
}

async fn post(d: &Daemon, cookie: Option<&str>, path: &str, form: &[(&str, &str)]) -> Page {
    let mut req = client().post(d.url(path)).form(form);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    page(req.send().await.expect("POST")).await
}

/// Signs in through the form; answers the `Cookie` header value to send afterwards.
async fn sign_in(d: &Daemon, (name, token): (&str, &str)) -> String {
    let p = post(d, None, "/login", &[("name", name), ("token", token), ("next", "/")]).await;
    assert_eq!(p.status, 303, "sign-in as {name}: {}", p.body);
    let set = p.set_cookie.expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "cookie lacks {attr}: {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP without an https dashboard_url: {set}");
    set.split(';').next().unwrap().to_string()
}

/// The CSRF token in a page's forms.
fn csrf(body: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).expect("a form with a CSRF field") + marker.len();
    body[start..start + 64].to_string()
}

async fn report(d: &Daemon, summary: &str) -> u64 {
    let mut body: Value =
        serde_json::from_slice(&common::fixture("reports/verified-personal-data.json")).unwrap();
    body["summary"] = json!(summary);
    let r = d.post("/api/v1/reports", Some(TOKEN), body.to_string()).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let list = d.get("/api/v1/incidents", Some(TOKEN)).await;
    list.body["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["summary"] == json!(summary))
        .unwrap_or_else(|| panic!("incident for {summary} in {}", list.text))["id"]
        .as_u64()
        .unwrap()
}

async fn status(d: &Daemon, id: u64) -> String {
    let r = d.get(&format!("/api/v1/incidents/{id}"), Some(TOKEN)).await;
    let i = if r.body["incident"].is_object() { &r.body["incident"] } else { &r.body };
    i["status"].as_str().unwrap_or_else(|| panic!("status in {}", r.text)).to_string()
}

#[tokio::test]
async fn without_a_session_only_sign_in_health_and_ack_links_answer() {
    let d = Daemon::with(&users_config()).start();
    let id = report(&d, "Checkout down").await;
    for path in ["/", "/incidents", &format!("/incidents/{id}"), "/queue"] {
        let p = get(&d, None, path).await;
        assert_eq!(p.status, 303, "{path}");
        assert!(p.location.as_deref().unwrap().starts_with("/login"), "{path} → {:?}", p.location);
        assert!(!p.body.contains("Checkout"), "{path} leaked: {}", p.body);
    }
    // A made-up session id is no session.
    let forged = format!("tocsin_session={}", "ab".repeat(32));
    assert_eq!(get(&d, Some(&forged), "/").await.status, 303);
    // Acting without a session changes nothing.
    let p = post(&d, None, &format!("/incidents/{id}/ack"), &[("csrf", "x")]).await;
    assert_eq!(p.status, 303);
    assert_eq!(status(&d, id).await, "triggered");
    assert_eq!(post(&d, None, "/reload", &[]).await.status, 303);
    // What stays open: the sign-in page, health checks, ack links (their own token).
    let login = get(&d, None, "/login").await;
    assert_eq!(login.status, 200);
    assert!(login.body.contains("name=\"token\""));
    assert_eq!(get(&d, None, "/-/healthy").await.status, 200);
    assert_eq!(get(&d, None, "/-/ready").await.status, 200);
    let ack = get(&d, None, "/ack/not-a-token").await;
    assert_ne!(ack.status, 303, "ack links are not behind the sign-in");
    // The JSON API still wants its bearer token, a session cookie is no substitute.
    let cookie = sign_in(&d, ADMIN).await;
    let api =
        client().get(d.url("/api/v1/incidents")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(api.status().as_u16(), 401);
}

#[tokio::test]
async fn viewers_read_responders_act_admins_reload() {
    let d = Daemon::with(&users_config()).start();
    let id = report(&d, "Card payments fail").await;
    let path = format!("/incidents/{id}");

    // Viewer: sees the incident, no action buttons, and is refused when posting anyway.
    let viewer = sign_in(&d, VIEWER).await;
    let p = get(&d, Some(&viewer), &path).await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("Card payments fail"));
    assert!(!p.body.contains("id=\"acknowledge\""), "viewer shown the ack button");
    let refused =
        post(&d, Some(&viewer), &format!("{path}/ack"), &[("csrf", &csrf(&p.body))]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(status(&d, id).await, "triggered");
    let note = post(
        &d,
        Some(&viewer),
        &format!("{path}/notes"),
        &[("csrf", &csrf(&p.body)), ("text", "hi")],
    )
    .await;
    assert_eq!(note.status, 403);
    assert_eq!(get(&d, Some(&viewer), "/queue").await.status, 403);

    // Responder: acknowledges and adds a note through the forms; both land in the journal.
    let responder = sign_in(&d, RESPONDER).await;
    let p = get(&d, Some(&responder), &path).await;
    assert!(p.body.contains("id=\"acknowledge\""));
    let token = csrf(&p.body);
    let acked = post(&d, Some(&responder), &format!("{path}/ack"), &[("csrf", &token)]).await;
    assert_eq!(acked.status, 303, "{}", acked.body);
    assert_eq!(acked.location.as_deref(), Some(path.as_str()));
    assert_eq!(status(&d, id).await, "acknowledged");
    let api = d.get(&path.replace("/incidents", "/api/v1/incidents"), Some(TOKEN)).await;
    assert!(api.text.contains("user:rita"), "acknowledged as the signed-in user: {}", api.text);
    let noted = post(
        &d,
        Some(&responder),
        &format!("{path}/notes"),
        &[("csrf", &token), ("text", "rolled back the deploy")],
    )
    .await;
    assert_eq!(noted.status, 303, "{}", noted.body);
    let p = get(&d, Some(&responder), &path).await;
    assert!(p.body.contains("rolled back the deploy"));
    assert!(p.body.contains("acknowledged by user:rita"));
    // A second acknowledgement is a conflict, said on the page.
    let again = post(&d, Some(&responder), &format!("{path}/ack"), &[("csrf", &token)]).await;
    assert_eq!(again.status, 409);
    assert!(again.body.contains("already acknowledged"));
    // Responder cannot reload or manage the queue.
    let r = post(&d, Some(&responder), "/reload", &[("csrf", &token)]).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("admin role"));
    assert!(!get(&d, Some(&responder), "/").await.body.contains("action=\"/reload\""));

    // Admin: sees the reload button and reloads.
    let admin = sign_in(&d, ADMIN).await;
    let home = get(&d, Some(&admin), "/").await;
    assert!(home.body.contains("action=\"/reload\""));
    let r = post(&d, Some(&admin), "/reload", &[("csrf", &csrf(&home.body))]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Reloaded"));
    assert_eq!(get(&d, Some(&admin), "/queue").await.status, 200);
}

#[tokio::test]
async fn forms_without_the_right_csrf_token_change_nothing() {
    let d = Daemon::with(&users_config()).start();
    let id = report(&d, "Login page slow").await;
    let path = format!("/incidents/{id}");
    let responder = sign_in(&d, RESPONDER).await;
    let good = csrf(&get(&d, Some(&responder), &path).await.body);

    let missing = post(&d, Some(&responder), &format!("{path}/ack"), &[]).await;
    assert_eq!(missing.status, 403);
    let wrong =
        post(&d, Some(&responder), &format!("{path}/ack"), &[("csrf", &"0".repeat(64))]).await;
    assert_eq!(wrong.status, 403);
    let note = post(
        &d,
        Some(&responder),
        &format!("{path}/notes"),
        &[("csrf", "nope"), ("text", "sneaky")],
    )
    .await;
    assert_eq!(note.status, 403);
    // Another session's token is not this session's.
    let other = sign_in(&d, RESPONDER).await;
    let other_token = csrf(&get(&d, Some(&other), &path).await.body);
    assert_ne!(other_token, good);
    let crossed =
        post(&d, Some(&responder), &format!("{path}/ack"), &[("csrf", &other_token)]).await;
    assert_eq!(crossed.status, 403);
    // The right token from a foreign Origin is refused too.
    let foreign = client()
        .post(d.url(&format!("{path}/ack")))
        .header("cookie", &responder)
        .header("origin", "https://evil.example")
        .form(&[("csrf", good.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status().as_u16(), 403);

    assert_eq!(status(&d, id).await, "triggered");
    let api = d.get(&format!("/api/v1/incidents/{id}"), Some(TOKEN)).await;
    assert!(!api.text.contains("sneaky"));
    // And the right token, same origin, works.
    let ok = client()
        .post(d.url(&format!("{path}/ack")))
        .header("cookie", &responder)
        .header("origin", format!("http://{}", d.addr))
        .form(&[("csrf", good.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 303);
    assert_eq!(status(&d, id).await, "acknowledged");
}

#[tokio::test]
async fn summaries_and_notes_are_escaped() {
    let d = Daemon::with(&users_config()).start();
    let evil = "<script>alert('x')</script><img src=x onerror=alert(1)>";
    let id = report(&d, evil).await;
    let responder = sign_in(&d, RESPONDER).await;
    let path = format!("/incidents/{id}");
    let token = csrf(&get(&d, Some(&responder), &path).await.body);
    let noted = post(
        &d,
        Some(&responder),
        &format!("{path}/notes"),
        &[("csrf", &token), ("text", "<b onclick=x>bold</b>")],
    )
    .await;
    assert_eq!(noted.status, 303);
    for (page_path, label) in
        [(path.as_str(), "incident"), ("/", "overview"), ("/incidents?status=all", "list")]
    {
        let body = get(&d, Some(&responder), page_path).await.body;
        assert!(!body.contains("<script>alert"), "{label} renders the script: {body}");
        assert!(!body.contains("<img src=x"), "{label} renders the img");
        assert!(
            body.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"),
            "{label}: {body}"
        );
    }
    let body = get(&d, Some(&responder), &path).await.body;
    assert!(!body.contains("<b onclick"));
    assert!(body.contains("&lt;b onclick=x&gt;bold&lt;/b&gt;"));
}

#[tokio::test]
async fn viewers_see_customer_contact_masked() {
    let d = Daemon::with(&users_config()).start();
    let id = report(&d, "Card payments fail for jo@example.org").await;
    let path = format!("/incidents/{id}");
    let viewer = get(&d, Some(&sign_in(&d, VIEWER).await), &path).await.body;
    assert!(!viewer.contains("jo@example.org"), "viewer sees the email: {viewer}");
    assert!(!viewer.contains("7946 0958"), "viewer sees the phone");
    assert!(!viewer.contains("Jo Example"), "viewer sees the name");
    assert!(viewer.contains("<td id=\"customer-email\">[redacted:email]</td>"), "{viewer}");
    assert!(viewer.contains("<td id=\"customer-phone\">[redacted:phone]</td>"), "{viewer}");
    assert!(viewer.contains("<td id=\"customer-name\">[redacted:name]</td>"), "{viewer}");
    let responder = get(&d, Some(&sign_in(&d, RESPONDER).await), &path).await.body;
    assert!(responder.contains("jo@example.org"));
    assert!(responder.contains("+44 20 7946 0958"));
    assert!(responder.contains("Jo Example"));
}

/// Users for the canary test: a viewer and an admin without `pii`, a responder with it.
const CANARY_VIEWER: (&str, &str) = ("vera", "canary-viewer-token-0123456789");
const CANARY_ADMIN: (&str, &str) = ("adam", "canary-admin-token-0123456789");
const CANARY_PII: (&str, &str) = ("pia", "canary-pii-token-0123456789");

fn canary_config() -> String {
    format!(
        r#"log_format: text
sources:
  - {{name: desk, token: "${{TOCSIN_TOKEN}}", allow: [alerts, reports, events]}}
users:
  - {{name: ops, token: "${{TOCSIN_TOKEN}}", roles: [viewer]}}
  - {{name: {}, token: {}, roles: [viewer]}}
  - {{name: {}, token: {}, roles: [admin]}}
  - {{name: {}, token: {}, roles: [responder], permissions: [pii]}}
people:
  - {{id: ana, name: Ana, email: ana@example.com}}
redaction:
  fields: [customer.name, customer.email, customer.phone, details.reporter.email, annotations.contact]
  regexes:
    - {{name: employee_id, regex: "EMP-[0-9]{{6}}"}}
notifications:
  webhooks:
    # Nothing listens there: its notifications stay pending, for the admin's queue page.
    - {{name: hook, url: "http://127.0.0.1:9/hook", allow_private: true}}
  delivery: {{initial_backoff: 1h, max_backoff: 1h}}
policies:
  - {{name: default, notify: [{{webhook: hook}}]}}
default_policy: default
"#,
        CANARY_VIEWER.0,
        CANARY_VIEWER.1,
        CANARY_ADMIN.0,
        CANARY_ADMIN.1,
        CANARY_PII.0,
        CANARY_PII.1
    )
}

/// The canary of tests/redaction.rs through every dashboard page and the search: a user
/// without `pii` sees what the API shows them (markers, not masks that keep parts of the value),
/// and a search for part of a hidden value finds nothing.
#[tokio::test]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn without_pii_no_page_or_search_shows_personal_data() {
    let c = common::canary::Canary::new();
    let d = Daemon::with(&canary_config()).start();
    let admin_token = CANARY_ADMIN.1;
    let report = json!({
        "reporter": {"name": "Desk Agent", "email": "agent@desk.example.com"},
        "customer": {"id": "C-1", "name": c.name, "email": c.email, "phone": c.phone},
        "service": "checkout",
        "summary": format!("Customer {} ({}, {}) charged twice on card {}; agent {}", c.name, c.email, c.phone, c.card, c.staff),
        "description": format!("Call {} back on {} about card {} ({})", c.name, c.phone_compact, c.card_compact, c.staff),
        "verified": true,
    });
    let r = d.post("/api/v1/reports", Some(TOKEN), report.to_string()).await;
    let reported = d.incident_of(&r).await;
    // A service that is an email address, and a configured annotation.
    let canonical = json!({
        "summary": format!("Refund for {} failed", c.email),
        "service": c.email,
        "annotations": {"contact": c.contact},
    });
    let r = d.post("/api/v1/events", Some(TOKEN), canonical.to_string()).await;
    let refund = d.incident_of(&r).await;

    // Notes, the review and an overdue action item, all quoting the customer.
    let quote = format!("spoke to {} ({}, {}), {}", c.name, c.email, c.phone, c.staff);
    // (A configured field's value is known personal data in text about its own event only.)
    for (id, text) in [
        (reported, quote.clone()),
        (refund, format!("{}, {}, {} via {}", c.email, c.phone, c.staff, c.contact)),
    ] {
        let r = d
            .post(
                &format!("/api/v1/incidents/{id}/notes"),
                Some(admin_token),
                json!({ "text": text }).to_string(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let r = d.post(&format!("/api/v1/incidents/{reported}/resolve"), Some(admin_token), "{}").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = d
        .client
        .put(d.url(&format!("/api/v1/incidents/{reported}/review")))
        .bearer_auth(admin_token)
        .json(&json!({ "summary": quote }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let action = json!({"title": format!("Call {} at {}", c.email, c.phone), "owner": "ana", "due": "2020-01-01"});
    let r = d
        .post(
            &format!("/api/v1/incidents/{reported}/actions"),
            Some(admin_token),
            action.to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    // The API's answer is clean (the reference the pages must match).
    let api = d.get(&format!("/api/v1/incidents/{reported}"), Some(CANARY_VIEWER.1)).await;
    c.assert_absent("the API", &api.text);

    let pages = [
        "/".to_string(),
        "/incidents?status=all".to_string(),
        format!("/incidents/{reported}"),
        format!("/incidents/{refund}"),
    ];
    for who in [CANARY_VIEWER, CANARY_ADMIN] {
        let cookie = sign_in(&d, who).await;
        let mut seen = String::new();
        let mut paths = pages.to_vec();
        if who == CANARY_ADMIN {
            paths.push("/queue".to_string());
        }
        for path in &paths {
            let p = get(&d, Some(&cookie), path).await;
            assert_eq!(p.status, 200, "{path} as {}: {}", who.0, p.body);
            c.assert_absent(&format!("{path} as {}", who.0), &p.body);
            // Not masked with parts of the value kept (initials, first letter, last digits).
            assert!(!p.body.contains("***"), "{path} as {} masks instead of redacting", who.0);
            seen.push_str(&p.body);
        }
        for marker in [
            "[redacted:name]",
            "[redacted:email]",
            "[redacted:phone]",
            "[redacted:card]",
            "[redacted:employee_id]",
            "[redacted:contact]",
        ] {
            assert!(seen.contains(marker), "{} is shown {marker}", who.0);
        }
        if who == CANARY_ADMIN {
            assert!(
                seen.contains("Dead letters") && seen.contains("data-notification"),
                "the queue lists the pending notifications"
            );
        }
        // A search for the beginning of a hidden value finds nothing.
        for needle in
            [&c.email[..12], &c.surname[..5], &c.staff[..7], &c.contact[..10], &c.phone[..9]]
        {
            let p =
                get(&d, Some(&cookie), &format!("/incidents?status=all&q={}", urlencode(needle)))
                    .await;
            assert_eq!(p.status, 200);
            assert!(
                p.body.contains("No incidents match."),
                "{} searching {needle:?} finds: {}",
                who.0,
                p.body
            );
        }
        // What the user sees is still searchable.
        let p = get(&d, Some(&cookie), "/incidents?status=all&q=charged+twice").await;
        assert!(p.body.contains(&format!("href=\"/incidents/{reported}\"")), "{}", p.body);
    }

    // A user with `pii` sees the originals, and finds the incidents by them.
    let cookie = sign_in(&d, CANARY_PII).await;
    let p = get(&d, Some(&cookie), &format!("/incidents/{reported}")).await;
    assert!(
        p.body.contains(&c.email) && p.body.contains(&c.name) && p.body.contains(&c.staff),
        "{}",
        p.body
    );
    for (needle, id) in
        [(&c.email[..12], reported), (&c.surname[..5], reported), (&c.staff[..7], reported)]
    {
        let p =
            get(&d, Some(&cookie), &format!("/incidents?status=all&q={}", urlencode(needle))).await;
        assert!(
            p.body.contains(&format!("href=\"/incidents/{id}\"")),
            "searching {needle:?}: {}",
            p.body
        );
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn failed_sign_ins_are_rate_limited_and_sign_out_ends_the_session() {
    let d = Daemon::with(&users_config()).start();
    // Wrong tokens: refused, then limited — and while limited, even the right token waits.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let p = post(&d, None, "/login", &[("name", RESPONDER.0), ("token", "wrong")]).await;
        assert!(p.set_cookie.is_none());
        statuses.push(p.status);
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429], "per-name budget of 5");
    let p = post(&d, None, "/login", &[("name", RESPONDER.0), ("token", RESPONDER.1)]).await;
    assert_eq!(p.status, 429);
    assert!(p.set_cookie.is_none());
    // Another user's budget is their own.
    let viewer = sign_in(&d, VIEWER).await;
    assert_eq!(get(&d, Some(&viewer), "/").await.status, 200);

    // Sign-out: the cookie is cleared and the old session id no longer works.
    let home = get(&d, Some(&viewer), "/").await;
    let out = post(&d, Some(&viewer), "/logout", &[("csrf", &csrf(&home.body))]).await;
    assert_eq!(out.status, 303);
    assert!(out.set_cookie.unwrap().contains("Max-Age=0"));
    let after = get(&d, Some(&viewer), "/").await;
    assert_eq!(after.status, 303);
    assert!(after.location.unwrap().starts_with("/login"));
}

#[tokio::test]
async fn a_reload_that_changes_a_token_ends_that_users_sessions() {
    let d = Daemon::with(&users_config()).start();
    let viewer = sign_in(&d, VIEWER).await;
    let responder = sign_in(&d, RESPONDER).await;
    assert_eq!(get(&d, Some(&viewer), "/").await.status, 200);
    let changed = users_config().replace(VIEWER.1, "a-brand-new-viewer-token-42");
    std::fs::write(&d.config, changed).unwrap();
    let r = d.post("/-/reload", Some(TOKEN), "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(get(&d, Some(&viewer), "/").await.status, 303, "old token's session survived");
    assert_eq!(get(&d, Some(&responder), "/").await.status, 200, "unchanged user kept theirs");
}

#[tokio::test]
async fn pages_read_on_a_phone_and_the_overview_shows_what_is_open() {
    let d = Daemon::with(&users_config()).start();
    let id = report(&d, "Refunds stuck").await;
    let viewer = sign_in(&d, VIEWER).await;
    let home = get(&d, Some(&viewer), "/").await;
    assert!(home.body.contains("name=\"viewport\" content=\"width=device-width"));
    assert!(home.body.contains(&format!("href=\"/incidents/{id}\"")));
    assert!(home.body.contains("Delivery health"));
    let list = get(&d, Some(&viewer), "/incidents?status=open&q=refunds").await;
    assert!(list.body.contains("Refunds stuck"));
    let none = get(&d, Some(&viewer), "/incidents?status=resolved&q=refunds").await;
    assert!(!none.body.contains("Refunds stuck"));
    let css = client().get(d.url("/assets/dashboard.css")).send().await.unwrap();
    assert_eq!(css.status().as_u16(), 200);
    assert!(css.text().await.unwrap().contains("@media (max-width"));
}

#[tokio::test]
async fn the_figures_page_shows_the_reports_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tocsin.yaml");
    std::fs::write(&config, users_config()).unwrap();
    let d = Daemon::on(&config, &dir.path().join("data"))
        .env("TOCSIN_FAKE_CLOCK", "2026-03-02T09:00:00Z")
        .start();
    let id = report(&d, "Checkout fails for some customers").await;
    d.advance("2m").await;
    let r = d.post(&format!("/api/v1/incidents/{id}/ack"), Some(TOKEN), "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    d.advance("58m").await;
    let r = d.post(&format!("/api/v1/incidents/{id}/resolve"), Some(TOKEN), "").await;
    assert_eq!(r.status, 200, "{}", r.text);

    let api = d.get("/api/v1/report?since=1d", Some(TOKEN)).await;
    assert_eq!(api.body["groups"][0]["mtta"]["median_seconds"], 120.0, "{}", api.text);
    assert_eq!(api.body["groups"][0]["mttr"]["median_seconds"], 3600.0, "{}", api.text);

    let cookie = sign_in(&d, VIEWER).await;
    let p = get(&d, Some(&cookie), "/figures?since=1d").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("1 incidents opened from"), "{}", p.body);
    // The all-incidents row: 1 incident; MTTD from the report's `occurred_at` (a year
    // earlier in the fixture); MTTA 2m; MTTR 1h — each n, mean, median, p90.
    assert!(
        p.body.contains("<tr><th>all</th><td>1</td><td>1</td><td>365d 22h</td><td>365d 22h</td><td>365d 22h</td><td>1</td><td>2m 0s</td><td>2m 0s</td><td>2m 0s</td><td>1</td><td>1h 0m</td><td>1h 0m</td><td>1h 0m</td></tr>"),
        "{}",
        p.body
    );
    assert!(p.body.contains("<meter class=\"bar\""), "a chart: {}", p.body);
    let bad = get(&d, Some(&cookie), "/figures?since=soon").await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    let anonymous = get(&d, None, "/figures").await;
    assert_eq!(anonymous.status, 303);
}

/// What the legal liaison and the incident lead do on the incident page without the API: hand
/// a role, record when the organization became aware, mark the notice sent, and run the
/// after-action review. Every change is checked in the JSON API; refused input changes nothing.
#[tokio::test]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn the_incident_page_hands_roles_records_notices_awareness_and_runs_the_review() {
    let config = format!(
        "{}people:\n  - {{id: lena, name: Lena Legal, email: lena@example.com}}\n  - {{id: ana, name: Ana, email: ana@example.com}}\n\
         notices:\n  - {{name: \"GDPR Art. 33 notice\", when: {{sensitivity: [personal, financial]}}, deadline: 72h}}\n",
        users_config()
    );
    let d = Daemon::with(&config).start();
    let declared = json!({
        "title": "Invoices readable in a public bucket",
        "description": "A researcher sent a link.",
        "impact": {"services": ["billing"], "customer_impact": true, "data_sensitivity": "financial"},
        "severity": "sev2"
    });
    let r = d.post("/api/v1/incidents", Some(TOKEN), declared.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["incident_id"].as_u64().unwrap();
    let path = format!("/incidents/{id}");
    let api = async |d: &Daemon| d.get(&format!("/api/v1/incidents/{id}"), Some(TOKEN)).await.body;

    // A viewer sees the notice but none of the forms.
    let viewer = sign_in(&d, VIEWER).await;
    let p = get(&d, Some(&viewer), &path).await;
    assert!(p.body.contains("GDPR Art. 33 notice"), "{}", p.body);
    for form in ["hand-role", "notice-0-sent", "record-awareness"] {
        assert!(!p.body.contains(&format!("id=\"{form}\"")), "viewer shown {form}");
    }
    let refused = post(
        &d,
        Some(&viewer),
        &format!("{path}/roles"),
        &[("csrf", &csrf(&p.body)), ("role", "legal_liaison"), ("person", "ana")],
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(api(&d).await["roles"]["legal_liaison"].is_null());

    let rita = sign_in(&d, RESPONDER).await;
    let p = get(&d, Some(&rita), &path).await;
    let token = csrf(&p.body);
    assert!(p.body.contains("<option value=\"lena\">Lena Legal (lena)</option>"), "{}", p.body);

    // Roles: hand the legal liaison role to Lena; a malformed role name is refused.
    let handed = post(
        &d,
        Some(&rita),
        &format!("{path}/roles"),
        &[("csrf", &token), ("role", "legal_liaison"), ("person", "lena")],
    )
    .await;
    assert_eq!(handed.status, 303, "{}", handed.body);
    assert_eq!(api(&d).await["roles"]["legal_liaison"], "lena");
    let bad = post(
        &d,
        Some(&rita),
        &format!("{path}/roles"),
        &[("csrf", &token), ("role", "Legal Liaison"), ("person", "ana")],
    )
    .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains("lowercase letters"), "{}", bad.body);
    assert_eq!(api(&d).await["roles"]["legal_liaison"], "lena");

    // Awareness an hour ago (a datetime-local value, read as UTC) moves the notice deadline;
    // a time in the future is refused.
    let hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    let local = hour_ago.strftime("%Y-%m-%dT%H:%M").to_string();
    let future = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24))
        .strftime("%Y-%m-%dT%H:%M")
        .to_string();
    let refused = post(
        &d,
        Some(&rita),
        &format!("{path}/awareness"),
        &[("csrf", &token), ("at", &future), ("note", "")],
    )
    .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("in the future"), "{}", refused.body);
    assert!(api(&d).await["awareness"].is_null());
    let recorded = post(
        &d,
        Some(&rita),
        &format!("{path}/awareness"),
        &[("csrf", &token), ("at", &local), ("note", "researcher mail, read late")],
    )
    .await;
    assert_eq!(recorded.status, 303, "{}", recorded.body);
    let i = api(&d).await;
    let aware: jiff::Timestamp = format!("{local}:00Z").parse().unwrap();
    assert_eq!(i["awareness"]["at"], aware.to_string(), "{i}");
    assert_eq!(i["awareness"]["by"], "user:rita");
    let due = aware + jiff::SignedDuration::from_hours(72);
    assert_eq!(i["notices"][0]["due_at"], due.to_string(), "{i}");

    // Mark the notice sent, with the authority's case number.
    let sent = post(
        &d,
        Some(&rita),
        &format!("{path}/notices/0/sent"),
        &[("csrf", &token), ("reference", "DPA-2026-117")],
    )
    .await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    let i = api(&d).await;
    assert_eq!(i["notices"][0]["sent"]["by"], "user:rita", "{i}");
    assert_eq!(i["notices"][0]["reference"], "DPA-2026-117");
    let p = get(&d, Some(&rita), &path).await;
    assert!(!p.body.contains("id=\"notice-0-sent\""), "a sent notice offers no button");
    assert!(p.body.contains("recorded by user:rita: researcher mail, read late"), "{}", p.body);

    // Resolving a sev2 opens its review; action items and the review text go through forms.
    let resolved = post(&d, Some(&rita), &format!("{path}/resolve"), &[("csrf", &token)]).await;
    assert_eq!(resolved.status, 303, "{}", resolved.body);
    let p = get(&d, Some(&rita), &path).await;
    assert!(p.body.contains("id=\"add-action\"") && p.body.contains("id=\"save-review\""));
    let added = post(
        &d,
        Some(&rita),
        &format!("{path}/actions"),
        &[
            ("csrf", &token),
            ("title", "Block public ACLs"),
            ("owner", "ana"),
            ("due", "2027-01-15"),
        ],
    )
    .await;
    assert_eq!(added.status, 303, "{}", added.body);
    let action = &api(&d).await["review"]["actions"][0];
    assert_eq!(action["title"], "Block public ACLs", "{action}");
    assert_eq!(action["owner"], "ana");
    assert_eq!(action["due"], "2027-01-15T23:59:59Z");
    let n = action["id"].as_u64().unwrap();
    let undated = post(
        &d,
        Some(&rita),
        &format!("{path}/actions"),
        &[("csrf", &token), ("title", "No date"), ("owner", "ana"), ("due", "soon")],
    )
    .await;
    assert_eq!(undated.status, 422, "{}", undated.body);
    assert_eq!(api(&d).await["review"]["actions"].as_array().unwrap().len(), 1);
    let done = post(
        &d,
        Some(&rita),
        &format!("{path}/actions/{n}"),
        &[("csrf", &token), ("state", "done")],
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(api(&d).await["review"]["actions"][0]["state"], "done");
    let saved = post(
        &d,
        Some(&rita),
        &format!("{path}/review"),
        &[
            ("csrf", &token),
            ("summary", "Bucket made private in 20 minutes."),
            ("went_well", ""),
            ("went_badly", ""),
        ],
    )
    .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let review = &api(&d).await["review"];
    assert_eq!(review["summary"], "Bucket made private in 20 minutes.", "{review}");
    assert_eq!(review["went_well"], "", "an empty field changes nothing");
}

/// An alert storm: the overview counts every open incident but shows cards only for the 25 of
/// each severity that opened first, with a link to the full list, so it stays a page a phone
/// can load.
#[tokio::test]
async fn in_an_alert_storm_the_overview_counts_all_and_shows_the_oldest_few() {
    let d = Daemon::with(&users_config()).start();
    let alerts = |from: usize, to: usize| {
        let list: Vec<Value> = (from..to)
            .map(|i| {
                json!({
                    "labels": {"alertname": "DiskFull", "instance": format!("host-{i}"), "severity": "warning"},
                    "annotations": {"summary": format!("disk full on host-{i}")}
                })
            })
            .collect();
        Value::Array(list).to_string()
    };
    // The first ten open first, in their own request.
    for (from, to) in [(0, 10), (10, 40)] {
        let r = d.post("/api/v2/alerts", Some(TOKEN), alerts(from, to)).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let list = d.get("/api/v1/incidents?limit=100", Some(TOKEN)).await;
    let incidents = list.body["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 40, "{}", list.text);
    let severity = incidents[0]["decision"]["severity"].as_str().unwrap().to_string();
    let first = incidents.iter().find(|i| i["summary"] == "disk full on host-0").unwrap()["id"]
        .as_u64()
        .unwrap();

    let viewer = sign_in(&d, VIEWER).await;
    let home = get(&d, Some(&viewer), "/").await;
    assert!(home.body.contains("Open incidents (40)"), "{}", home.body);
    assert_eq!(home.body.matches("data-incident=").count(), 25);
    assert!(home.body.contains(&format!("data-incident=\"{first}\"")), "the oldest is shown");
    assert!(
        home.body.contains(&format!(
            "<a href=\"/incidents?status=open&amp;severity={severity}\">All 40 open {severity} incidents"
        )),
        "{}",
        home.body
    );

    let r = d.post(&format!("/api/v1/incidents/{first}/resolve"), Some(TOKEN), "{}").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let home = get(&d, Some(&viewer), "/").await;
    assert!(home.body.contains("Open incidents (39)"), "{}", home.body);
    assert!(!home.body.contains(&format!("data-incident=\"{first}\"")));
    assert_eq!(home.body.matches("data-incident=").count(), 25);
}

/// The overview lists an overdue action item with its due time and as overdue (as `tocsin
/// report` does), not as due at its next reminder.
#[tokio::test]
async fn the_overview_shows_an_overdue_action_item_as_overdue() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tocsin.yaml");
    let yaml = format!(
        "{}people:\n  - {{id: ana, name: Ana}}\nreviews: {{remind_every: 2h}}\n",
        users_config()
    );
    std::fs::write(&config, yaml).unwrap();
    let d = Daemon::on(&config, &dir.path().join("data"))
        .env("TOCSIN_FAKE_CLOCK", "2026-03-02T09:00:00Z")
        .start();
    let id = report(&d, "Checkout fails for some customers").await;
    let r = d.post(&format!("/api/v1/incidents/{id}/resolve"), Some(TOKEN), "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let action =
        json!({"title": "Add a canary check", "owner": "ana", "due": "2026-03-02T09:30:00Z"});
    let r =
        d.post(&format!("/api/v1/incidents/{id}/actions"), Some(TOKEN), action.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Due at 09:30; at 10:30 it is an hour overdue (and has reminded its owner).
    d.advance("90m").await;
    let cookie = sign_in(&d, VIEWER).await;
    let home = get(&d, Some(&cookie), "/").await.body;
    let row = home
        .split("<tr>")
        .find(|r| r.contains("Add a canary check"))
        .unwrap_or_else(|| panic!("the action item is listed: {home}"));
    assert!(
        row.contains("datetime=\"2026-03-02T09:30:00Z\"") && row.contains("1h 0m ago"),
        "shows when it was due: {row}"
    );
    assert!(row.contains("overdue"), "marked overdue: {row}");
    assert!(row.contains("next reminder <time"), "{row}");
}
