//! Reports and response-time metrics against the real binary on a manual clock
//! (`TOCSIN_FAKE_CLOCK`, moved through `POST /-/clock`): incidents open, are acknowledged and
//! resolved at known offsets, one key reopens; then `GET /api/v1/report`, `tocsin report`
//! (through the running daemon, then from the store file once it stopped) and `/metrics` must
//! show the figures worked out by hand below.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Daemon, TOKEN, VIEWER_TOKEN, config_yaml, eventually};
use serde_json::{Value, json};

const T0: &str = "2026-03-02T09:00:00Z";
/// Where the clock ends: T0 + 80 minutes.
const END: &str = "2026-03-02T10:20:00Z";

/// Every new incident and every resolve writes one line to the log channel; Ana owns the
/// action items (no channel: her reminders add no notification).
const EXTRA: &str = r#"
people:
  - {id: ana, name: Ana}
notifications:
  log: { path: notifications.jsonl }
  rate_limits: {email: {}, sms: {}, webhook: {}, log: {}}
policies:
  - name: default
    notify:
      - { log: true }
default_policy: default
"#;

async fn alert(d: &Daemon, key: &str, severity: &str, service: &str, starts: Option<&str>) -> u64 {
    let mut body = json!({
        "dedup_key": key, "summary": format!("{key} is failing"),
        "severity": severity, "service": service,
    });
    if let Some(s) = starts {
        body["starts_at"] = json!(s);
    }
    let r = d.post("/api/v1/events", Some(TOKEN), body.to_string()).await;
    d.incident_of(&r).await
}

async fn customer_report(d: &Daemon, ticket: &str, verified: bool, occurred: Option<&str>) -> u64 {
    let mut body = json!({
        "reporter": {"name": "Dana Reyes"},
        "service": "checkout",
        "summary": "Card payments fail at the last step",
        "verified": verified,
        "ticket_id": ticket,
    });
    if let Some(o) = occurred {
        body["occurred_at"] = json!(o);
    }
    let r = d.post("/api/v1/reports", Some(TOKEN), body.to_string()).await;
    d.incident_of(&r).await
}

async fn act(d: &Daemon, id: u64, action: &str) {
    let r = d.post(&format!("/api/v1/incidents/{id}/{action}"), Some(TOKEN), "").await;
    assert_eq!(r.status, 200, "{action} #{id}: {}", r.text);
}

async fn at_minute(d: &Daemon, now: &mut u32, minute: u32) {
    assert!(minute > *now);
    d.advance(&format!("{}m", minute - *now)).await;
    *now = minute;
}

/// Runs `tocsin report ARGS` with no inherited Tocsin environment (bounded: one file read or one
/// request with a timeout).
fn tocsin_report(args: &[&str], fake_now: Option<&str>) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tocsin"));
    for var in ["TOCSIN_TOKEN", "TOCSIN_LISTEN", "TOCSIN_DATA_DIR", "TOCSIN_FAKE_CLOCK"] {
        cmd.env_remove(var);
    }
    if let Some(now) = fake_now {
        cmd.env("TOCSIN_FAKE_CLOCK", now);
    }
    let out = cmd.arg("report").args(args).output().expect("run tocsin report");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn group<'a>(report: &'a Value, dimension: &str, value: &str) -> &'a Value {
    report["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["dimension"] == dimension && g["value"] == value)
        .unwrap_or_else(|| panic!("no {dimension} {value} in {report:#}"))
}

fn stat(count: u64, mean: f64, median: f64, p90: f64) -> Value {
    json!({"count": count, "mean_seconds": mean, "median_seconds": median, "p90_seconds": p90})
}

/// The value of one sample line of the Prometheus text, e.g.
/// `tocsin_incident_time_to_acknowledge_seconds_count{severity="sev1"}`.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        rest.strip_prefix(' ')?.split_whitespace().next()?.parse().ok()
    })
}

/// The figures every reader must show (see the timeline in the test).
fn check(report: &Value) {
    assert_eq!(report["incidents"], 5, "{report:#}");
    assert_eq!(report["open"], 1);
    assert_eq!(report["now"], END);
    let all = group(report, "all", "all");
    assert_eq!((&all["acknowledged"], &all["resolved"]), (&json!(3), &json!(4)));
    // TTD: db 120 s (started 2 min before), SUP-1 600 s (occurred 10 min before): mean 360,
    // median (120+600)/2 = 360, p90 the 2nd of 2 = 600.
    assert_eq!(all["mttd"], stat(2, 360.0, 360.0, 600.0));
    // TTA: db 240, SUP-1 120, db again 300 → 120 240 300: mean 220, median 240, p90 300.
    assert_eq!(all["mtta"], stat(3, 220.0, 240.0, 300.0));
    // TTR: db 1800, SUP-1 1200, api 3600 (never acknowledged), db again 600 → 600 1200 1800
    // 3600: mean 1800, median (1200+1800)/2 = 1500, p90 the 4th = 3600.
    assert_eq!(all["mttr"], stat(4, 1800.0, 1500.0, 3600.0));
    // sev1 = both db incidents: TTA 240, 300 → 270; TTR 1800, 600 → 1200.
    let sev1 = group(report, "severity", "sev1");
    assert_eq!(sev1["incidents"], 2);
    assert_eq!(sev1["mtta"], stat(2, 270.0, 270.0, 300.0));
    assert_eq!(sev1["mttr"], stat(2, 1200.0, 1200.0, 1800.0));
    // sev3 = api: resolved unacknowledged.
    let sev3 = group(report, "severity", "sev3");
    assert_eq!(sev3["mtta"]["count"], 0);
    assert_eq!(sev3["mtta"]["mean_seconds"], Value::Null);
    assert_eq!(sev3["mttr"], stat(1, 3600.0, 3600.0, 3600.0));
    // Reports: SUP-1 (sev2, verified) and SUP-2 (sev4, unverified, open).
    let reports = group(report, "kind", "report");
    assert_eq!((&reports["incidents"], &reports["resolved"]), (&json!(2), &json!(1)));
    assert_eq!(reports["mtta"], stat(1, 120.0, 120.0, 120.0));
    assert_eq!(group(report, "service", "checkout")["incidents"], 2);
    assert_eq!(group(report, "service", "db")["mttr"], sev1["mttr"]);
    // db reopened 10 minutes after its resolve: 1 recurrence in 5 incidents.
    assert_eq!(report["recurrence"]["recurrences"], 1);
    assert_eq!(report["recurrence"]["rate"], 0.2);
    assert_eq!(
        report["recurrence"]["keys"],
        json!([{"source": "default", "dedup_key": "db", "recurrences": 1}])
    );
    // checkout: SUP-1 reported twice, SUP-2 once.
    assert_eq!(
        report["customer_reports"],
        json!([{"service": "checkout", "incidents": 2, "reports": 3}])
    );
    // One notice at opening, one at resolve: 2 each for the four resolved, 1 for SUP-2 →
    // total 9, mean 1.8, median 2, max 2.
    assert_eq!(
        report["notifications"],
        json!({"total": 9, "per_incident_mean": 1.8, "per_incident_median": 2.0, "per_incident_max": 2})
    );
    // db's review: one item due at +65m (overdue at +80m), one due at +200m.
    let a = &report["action_items"];
    assert_eq!(
        (&a["total"], &a["open"], &a["overdue"], &a["done"]),
        (&json!(2), &json!(2), &json!(1), &json!(0)),
        "{a:#}"
    );
    assert_eq!(a["overdue_items"][0]["title"], "Alert on replication lag");
}

#[tokio::test]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn report_figures_from_the_api_the_cli_and_the_file_match_the_hand_computed_ones() {
    let d = Daemon::with(&config_yaml(EXTRA)).env("TOCSIN_FAKE_CLOCK", T0).start();
    let mut now = 0;
    // +0: db (sev1) whose sender saw it start 2 minutes earlier; customer ticket SUP-1 (sev2)
    // about something 10 minutes earlier.
    let db = alert(&d, "db", "critical", "db", Some("2026-03-02T08:58:00Z")).await;
    let sup1 = customer_report(&d, "SUP-1", true, Some("2026-03-02T08:50:00Z")).await;
    at_minute(&d, &mut now, 1).await;
    assert_eq!(customer_report(&d, "SUP-1", true, None).await, sup1, "the ticket joins");
    at_minute(&d, &mut now, 2).await;
    act(&d, sup1, "ack").await;
    at_minute(&d, &mut now, 4).await;
    act(&d, db, "ack").await;
    at_minute(&d, &mut now, 10).await;
    let api = alert(&d, "api", "warning", "api", None).await;
    at_minute(&d, &mut now, 20).await;
    act(&d, sup1, "resolve").await;
    at_minute(&d, &mut now, 30).await;
    act(&d, db, "resolve").await;
    at_minute(&d, &mut now, 40).await;
    let db2 = alert(&d, "db", "critical", "db", None).await;
    assert_ne!(db2, db, "a trigger after a resolve opens a new incident");
    at_minute(&d, &mut now, 45).await;
    act(&d, db2, "ack").await;
    at_minute(&d, &mut now, 50).await;
    act(&d, db2, "resolve").await;
    at_minute(&d, &mut now, 55).await;
    let sup2 = customer_report(&d, "SUP-2", false, None).await;
    at_minute(&d, &mut now, 60).await;
    for (title, due) in [
        ("Alert on replication lag", "2026-03-02T10:05:00Z"),
        ("Runbook for failover", "2026-03-02T12:20:00Z"),
    ] {
        let body = json!({"title": title, "owner": "ana", "due": due});
        let path = format!("/api/v1/incidents/{db}/actions");
        let r = d.post(&path, Some(TOKEN), body.to_string()).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    at_minute(&d, &mut now, 70).await;
    act(&d, api, "resolve").await;
    at_minute(&d, &mut now, 80).await;

    // The severities the figures assume, and the notifications counted by hand.
    for (id, severity, notified) in
        [(db, "sev1", 2), (sup1, "sev2", 2), (api, "sev3", 2), (db2, "sev1", 2), (sup2, "sev4", 1)]
    {
        let i = d.get(&format!("/api/v1/incidents/{id}"), Some(VIEWER_TOKEN)).await;
        assert_eq!(i.body["decision"]["severity"], severity, "#{id}: {}", i.text);
        let n = i.body["notifications"].as_array().expect("notifications").len();
        assert_eq!(n, notified, "#{id}: {:#}", i.body["notifications"]);
    }

    // The API, as a viewer.
    let r = d.get("/api/v1/report?since=1d&recurrence_window=24h", Some(VIEWER_TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    check(&r.body);
    let from_api = r.body.clone();
    // A 5-minute window: the db reopening (10 minutes after) is not a recurrence.
    let r = d.get("/api/v1/report?since=1d&recurrence_window=5m", Some(VIEWER_TOKEN)).await;
    assert_eq!(
        (&r.body["recurrence"]["recurrences"], &r.body["recurrence"]["rate"]),
        (&json!(0), &json!(0.0))
    );
    // A period from +35m: db2 and SUP-2 only.
    let r = d.get("/api/v1/report?since=45m", Some(VIEWER_TOKEN)).await;
    assert_eq!(r.body["incidents"], 2, "{}", r.text);
    // Bad input and no credential.
    let r = d.get("/api/v1/report?since=yesterday", Some(VIEWER_TOKEN)).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("since"), "{}", r.text);
    let r = d.get("/api/v1/report?sinse=1d", Some(VIEWER_TOKEN)).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(d.get("/api/v1/report", None).await.status, 401);

    // /metrics: time-to-acknowledge and time-to-resolve histograms by severity.
    let m = d.client.get(d.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let tta = "tocsin_incident_time_to_acknowledge_seconds";
    let ttr = "tocsin_incident_time_to_resolve_seconds";
    assert_eq!(sample(&m, &format!("{tta}_count{{severity=\"sev1\"}}")), Some(2.0), "{m}");
    assert_eq!(sample(&m, &format!("{tta}_sum{{severity=\"sev1\"}}")), Some(540.0));
    // 240 s and 300 s: none by 2 minutes, both by 5.
    assert_eq!(sample(&m, &format!("{tta}_bucket{{severity=\"sev1\",le=\"120\"}}")), Some(0.0));
    assert_eq!(sample(&m, &format!("{tta}_bucket{{severity=\"sev1\",le=\"300\"}}")), Some(2.0));
    assert_eq!(sample(&m, &format!("{tta}_count{{severity=\"sev2\"}}")), Some(1.0));
    // Every configured severity has its series from the start.
    assert_eq!(sample(&m, &format!("{tta}_count{{severity=\"sev3\"}}")), Some(0.0));
    assert_eq!(sample(&m, &format!("{ttr}_count{{severity=\"sev1\"}}")), Some(2.0));
    assert_eq!(sample(&m, &format!("{ttr}_sum{{severity=\"sev1\"}}")), Some(2400.0));
    assert_eq!(sample(&m, &format!("{ttr}_sum{{severity=\"sev3\"}}")), Some(3600.0));
    assert_eq!(sample(&m, &format!("{ttr}_bucket{{severity=\"sev3\",le=\"1800\"}}")), Some(0.0));
    assert_eq!(sample(&m, &format!("{ttr}_bucket{{severity=\"sev3\",le=\"3600\"}}")), Some(1.0));
    assert!(m.contains("tocsin_notice_deadlines_pending "), "{m}");

    // `tocsin report` while the daemon holds the file: it asks the daemon.
    let data_dir = d.data_dir.to_str().unwrap().to_string();
    let config = d.config.to_str().unwrap().to_string();
    let url = d.url("");
    let (code, out, err) = tocsin_report(
        &[
            "--config",
            &config,
            "--data-dir",
            &data_dir,
            "--url",
            &url,
            "--token",
            VIEWER_TOKEN,
            "--since",
            "1d",
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("held by a running daemon"), "{err}");
    let via_daemon: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(via_daemon, from_api);

    // Stopped: `tocsin report` reads the file itself, with "now" where the daemon's clock ended.
    let mut d = d;
    assert_eq!(d.terminate(), Some(0));
    let (code, out, err) = tocsin_report(
        &["--config", &config, "--data-dir", &data_dir, "--since", "1d", "--format", "json"],
        Some(END),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("daemon"), "{err}");
    let from_file: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    check(&from_file);
    assert_eq!(from_file, from_api);

    // The table a person reads, and the CSV.
    let (code, table, err) = tocsin_report(&["--data-dir", &data_dir, "--since", "1d"], Some(END));
    assert_eq!(code, Some(0), "{err}");
    let all = table.lines().find(|l| l.starts_with("all ")).unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = all.split("   ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(
        cells,
        ["all", "5", "3", "4", "2", "6m / 6m / 10m", "3m 40s / 4m / 5m", "30m / 25m / 1h 00m"],
        "{table}"
    );
    assert!(table.contains("1 of 5 incidents, rate 0.20"), "{table}");
    assert!(table.contains("1 OVERDUE"), "{table}");
    let (code, csv, err) =
        tocsin_report(&["--data-dir", &data_dir, "--since", "1d", "--format", "csv"], Some(END));
    assert_eq!(code, Some(0), "{err}");
    assert!(csv.contains("\ntimes,severity,sev1,mttr_mean_seconds,1200\n"), "{csv}");
    assert!(csv.contains("\ncustomer_reports,service,checkout,reports,3\n"), "{csv}");

    // A bad duration is refused before anything is read.
    let (code, _, err) = tocsin_report(&["--data-dir", &data_dir, "--since", "lately"], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--since"), "{err}");
}

/// Polls `/metrics` (the gauge is refreshed every 15 s) until `name` reads `want`.
async fn gauge_reaches(d: &Daemon, name: &str, want: f64) {
    eventually(&format!("{name} to read {want}"), Duration::from_secs(40), async || {
        let m = d.client.get(d.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let got = sample(&m, name);
        if got == Some(want) { Ok(()) } else { Err(format!("{name} is {got:?}")) }
    })
    .await;
}

#[tokio::test]
async fn pending_notice_deadlines_are_a_gauge_that_drops_when_the_notice_is_sent() {
    let extra = r#"
notices:
  - name: "Regulator notice"
    when: {severity: [sev1]}
    deadline: 72h
"#;
    let d = Daemon::with(&config_yaml(extra)).env("TOCSIN_FAKE_CLOCK", T0).start();
    let first = alert(&d, "db", "critical", "db", None).await;
    alert(&d, "disk", "critical", "db", None).await;
    alert(&d, "cpu", "warning", "db", None).await; // sev3: owes nothing
    gauge_reaches(&d, "tocsin_notice_deadlines_pending", 2.0).await;
    let path = format!("/api/v1/incidents/{first}/notices/0/sent");
    let r = d.post(&path, Some(TOKEN), "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    gauge_reaches(&d, "tocsin_notice_deadlines_pending", 1.0).await;
}

/// What the report quotes from events and people — a service that is an email address, an
/// overdue action item's title with an email, a phone number and a staff id — is redacted for
/// callers without `pii`: the API, the dashboard's Figures page, `tocsin report` through the
/// daemon with a viewer's token, and `tocsin report` from the file (nobody's permissions apply
/// there, so it is redacted too). A `pii` user's token gets the originals.
#[tokio::test]
async fn the_report_is_redacted_for_callers_without_pii() {
    let c = common::canary::Canary::new();
    let pii = "report-pii-token-0123456789";
    // `config_yaml` appends right after its `users:` list: the pii user goes first.
    let yaml = config_yaml(&format!(
        "  - {{name: pia, token: {pii}, roles: [viewer], permissions: [pii]}}\n{EXTRA}\
         redaction:\n  regexes:\n    - {{name: employee_id, regex: \"EMP-[0-9]{{6}}\"}}\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tocsin.yaml");
    std::fs::write(&config, yaml).unwrap();
    let data_dir = dir.path().join("data");
    let mut d = Daemon::on(&config, &data_dir).env("TOCSIN_FAKE_CLOCK", T0).start();

    let body = json!({
        "reporter": {"name": "Dana Reyes"},
        "customer": {"name": c.name, "email": c.email},
        "service": c.email,
        "summary": format!("{} cannot pay", c.name),
        "verified": true,
    });
    let r = d.post("/api/v1/reports", Some(TOKEN), body.to_string()).await;
    let id = d.incident_of(&r).await;
    act(&d, id, "resolve").await;
    let title = format!("Call {} ({}, {}) back; ask {}", c.name, c.email, c.phone, c.staff);
    let r = d
        .post(
            &format!("/api/v1/incidents/{id}/actions"),
            Some(TOKEN),
            json!({"title": title, "owner": "ana", "due": "2026-03-02T09:30:00Z"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    d.advance("1h").await;

    // The API: redacted for a viewer, the originals for `pii`.
    let viewer = d.get("/api/v1/report?since=1d", Some(VIEWER_TOKEN)).await;
    assert_eq!(viewer.status, 200, "{}", viewer.text);
    assert_eq!(viewer.body["action_items"]["overdue"], 1, "{}", viewer.text);
    c.assert_absent("GET /api/v1/report as a viewer", &viewer.text);
    let overdue = &viewer.body["action_items"]["overdue_items"][0]["title"];
    assert_eq!(
        overdue,
        "Call [redacted:name] ([redacted:email], [redacted:phone]) back; ask [redacted:employee_id]"
    );
    assert!(viewer.text.contains("\"value\":\"[redacted:email]\""), "{}", viewer.text);
    let original = d.get("/api/v1/report?since=1d", Some(pii)).await;
    assert!(
        original.text.contains(&c.email) && original.text.contains(&c.staff),
        "{}",
        original.text
    );

    // The Figures page, signed in as the viewer.
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = client
        .post(d.url("/login"))
        .form(&[("name", "dashboard"), ("token", VIEWER_TOKEN), ("next", "/")])
        .send()
        .await
        .unwrap();
    let cookie =
        login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page =
        client.get(d.url("/figures?since=1d")).header("cookie", cookie).send().await.unwrap();
    let page = page.text().await.unwrap();
    assert!(page.contains("<th>[redacted:email]</th>"), "the service: {page}");
    c.assert_absent("the Figures page as a viewer", &page);

    // `tocsin report` through the daemon: the caller's token decides.
    let (config, url) = (config.to_str().unwrap(), d.url(""));
    for (token, redacted) in [(VIEWER_TOKEN, true), (pii, false)] {
        let (code, out, err) = tocsin_report(
            &["--config", config, "--url", &url, "--token", token, "--since", "1d"],
            Some(END),
        );
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("OVERDUE"), "{out}");
        if redacted {
            c.assert_absent("tocsin report with a viewer's token", &out);
        } else {
            assert!(out.contains(&c.staff), "{out}");
        }
    }

    // From the file: redacted, in every format.
    assert_eq!(d.terminate(), Some(0));
    let data_dir = data_dir.to_str().unwrap();
    for format in ["table", "json", "csv"] {
        let (code, out, err) = tocsin_report(
            &["--config", config, "--data-dir", data_dir, "--since", "1d", "--format", format],
            Some(END),
        );
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("[redacted:email]"), "{format}: {out}");
        c.assert_absent(&format!("tocsin report --format {format} from the file"), &out);
    }
}
