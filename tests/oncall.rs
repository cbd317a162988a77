//! On-call rotations through the real binary: who is on call, overrides added through the API
//! surviving a restart, deleting them, and the validation answers.

mod common;

use common::{Daemon, Reply, TOKEN, VIEWER_TOKEN, eventually};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

const RESPONDER_TOKEN: &str = "test-responder-token";

fn config() -> String {
    format!(
        r#"
sources:
  - name: default
    token: ${{TOCSIN_TOKEN}}
users:
  - {{ name: admin, token: "${{TOCSIN_TOKEN}}", roles: [admin] }}
  - {{ name: dashboard, token: {VIEWER_TOKEN}, roles: [viewer] }}
  - {{ name: oncall, token: {RESPONDER_TOKEN}, roles: [responder] }}
people:
  - {{ id: alice, zone: Europe/Berlin }}
  - {{ id: bob, zone: America/New_York, language: en }}
  - {{ id: carol }}
rotations:
  # Starts in 2100: until then the first member is on call, whatever the date of the test.
  - {{ name: primary, members: [alice, bob], shift: weekly, handoff: "09:00", zone: Europe/Berlin, start: 2100-01-04 }}
  - {{ name: secondary, members: [bob, carol], shift: 12h, start: 2026-01-01 }}
roles:
  incident_lead: {{ rotation: primary }}
  legal_liaison: {{ person: carol }}
"#
    )
}

async fn delete(d: &Daemon, path: &str, token: &str) -> Reply {
    let resp = d.client.delete(d.url(path)).bearer_auth(token).send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, headers, body, text }
}

async fn rotations(d: &Daemon) -> Value {
    let r = d.get("/api/v1/rotations", Some(VIEWER_TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

fn primary(body: &Value) -> &Value {
    body["rotations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "primary")
        .unwrap_or_else(|| panic!("no primary in {body}"))
}

fn plus(minutes: i64) -> String {
    (Timestamp::now() + SignedDuration::from_mins(minutes)).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_change_who_is_on_call_and_survive_a_restart() {
    let mut d = Daemon::with(&config()).start();

    let body = rotations(&d).await;
    let p = primary(&body);
    assert_eq!(p["on_call"], "alice", "{body}");
    assert_eq!(p["scheduled"], "alice");
    assert_eq!(p["shift"], "weekly");
    assert_eq!(p["handoff"], "09:00");
    assert_eq!(p["zone"], "Europe/Berlin");
    assert_eq!(p["members"], json!(["alice", "bob"]));
    // Before the start the first member's time runs into their first shift, which ends a
    // week after the first handoff (2100-01-04 09:00 CET = 08:00 UTC).
    assert_eq!(p["next_handoff"], "2100-01-11T08:00:00Z");
    assert_eq!(p["overrides"], json!([]));
    assert_eq!(body["roles"]["incident_lead"]["person"], "alice");
    assert_eq!(body["roles"]["incident_lead"]["fill"], json!({"rotation": "primary"}));
    assert_eq!(body["roles"]["legal_liaison"]["person"], "carol");
    assert_eq!(body["roles"]["technical_lead"]["person"], Value::Null, "built in, unfilled");
    assert_eq!(body["roles"]["communications_lead"]["fill"], Value::Null);
    let secondary = &body["rotations"][1];
    assert_eq!(secondary["name"], "secondary");
    assert!(["bob", "carol"].contains(&secondary["on_call"].as_str().unwrap()), "{secondary}");

    // A viewer may look but not override.
    let path = "/api/v1/rotations/primary/overrides";
    let now_body = json!({"person": "carol", "until": plus(60), "reason": "alice at the dentist"});
    let r = d.post(path, Some(VIEWER_TOKEN), now_body.to_string()).await;
    assert_eq!(r.status, 403, "{}", r.text);

    let r = d.post(path, Some(RESPONDER_TOKEN), now_body.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let first = r.body["id"].as_u64().expect("id");
    assert_eq!(r.body["person"], "carol");
    assert_eq!(r.body["by"], "user:oncall");
    assert_eq!(r.body["reason"], "alice at the dentist");
    // A future one: listed, not yet in force.
    let later = json!({"person": "bob", "from": plus(120), "until": plus(180)});
    let r = d.post(path, Some(TOKEN), later.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let second = r.body["id"].as_u64().expect("id");
    assert!(second > first);

    let check = |body: &Value| {
        let p = primary(body);
        assert_eq!(p["on_call"], "carol", "{body}");
        assert_eq!(p["scheduled"], "alice");
        assert_eq!(p["override_id"], first);
        let ids: Vec<u64> =
            p["overrides"].as_array().unwrap().iter().map(|o| o["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, [first, second]);
        assert_eq!(body["roles"]["incident_lead"]["person"], "carol");
    };
    check(&rotations(&d).await);

    // Validation: every bad field named, unknown rotation 404, broken JSON 400.
    let bad = |body: Value| body.to_string();
    let r = d.post(path, Some(TOKEN), bad(json!({"person": "zed", "until": plus(60)}))).await;
    assert_eq!((r.status, r.body["field"].as_str()), (422, Some("person")), "{}", r.text);
    assert_eq!(r.body["error"], "invalid");
    let r = d
        .post(path, Some(TOKEN), bad(json!({"person": "bob", "from": plus(60), "until": plus(30)})))
        .await;
    assert_eq!((r.status, r.body["field"].as_str()), (422, Some("until")), "{}", r.text);
    let r = d.post(path, Some(TOKEN), bad(json!({"person": "bob", "until": plus(-5)}))).await;
    assert_eq!((r.status, r.body["field"].as_str()), (422, Some("until")), "{}", r.text);
    let r = d.post(path, Some(TOKEN), bad(json!({"person": "bob"}))).await;
    assert_eq!((r.status, r.body["field"].as_str()), (422, Some("until")), "{}", r.text);
    let r = d
        .post(
            path,
            Some(TOKEN),
            bad(json!({"person": "bob", "from": "tomorrow", "until": plus(5)})),
        )
        .await;
    assert_eq!((r.status, r.body["field"].as_str()), (422, Some("from")), "{}", r.text);
    let r = d
        .post(
            "/api/v1/rotations/nope/overrides",
            Some(TOKEN),
            bad(json!({"person": "bob", "until": plus(5)})),
        )
        .await;
    assert_eq!((r.status, r.body["error"].as_str()), (404, Some("not_found")), "{}", r.text);
    let r = d.post(path, Some(TOKEN), "{not json").await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r =
        d.post(path, Some(TOKEN), bad(json!({"person": "bob", "until": plus(5), "x": 1}))).await;
    assert_eq!(r.status, 400, "unknown fields are refused: {}", r.text);
    // Refused requests stored nothing.
    check(&rotations(&d).await);

    // Restart: the overrides are in the store.
    assert_eq!(d.terminate(), Some(0));
    let d = d.restart();
    check(&rotations(&d).await);

    // Delete: wrong rotation or unknown id is 404; then the schedule is back.
    let r = delete(&d, &format!("/api/v1/rotations/secondary/overrides/{first}"), TOKEN).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = delete(&d, &format!("/api/v1/rotations/primary/overrides/{first}"), VIEWER_TOKEN).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r =
        delete(&d, &format!("/api/v1/rotations/primary/overrides/{first}"), RESPONDER_TOKEN).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["id"], first);
    let r = delete(&d, &format!("/api/v1/rotations/primary/overrides/{first}"), TOKEN).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = delete(&d, "/api/v1/rotations/primary/overrides/abc", TOKEN).await;
    assert_eq!(r.status, 400, "{}", r.text);

    let body = rotations(&d).await;
    let p = primary(&body);
    assert_eq!(p["on_call"], "alice", "{body}");
    assert_eq!(p["override_id"], Value::Null);
    assert_eq!(p["overrides"].as_array().unwrap().len(), 1, "the future one remains");
    assert_eq!(body["roles"]["incident_lead"]["person"], "alice");
}

#[test]
fn check_reports_roster_mistakes_with_locations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.yaml");
    let yaml = "people:\n  - { id: alice, zone: Nowhere/Land }\nrotations:\n  - { name: p, members: [alice, bob], shift: daily, start: 2026-01-01 }\nroles:\n  incident_lead: { rotation: q }\n";
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["check", "--config"])
        .arg(&path)
        .env("TOCSIN_TOKEN", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let file = path.display().to_string();
    assert!(text.contains(&format!("{file}:2:24: people[0].zone:")), "{text}");
    assert!(
        text.contains(&format!("{file}:4:33: rotations[0].members[1]: no person `bob`")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{file}:6:30: roles.incident_lead.rotation: no rotation `q`")),
        "{text}"
    );
}

/// On a manual clock an override's `created_at`, like everything else the daemon stamps, is
/// the daemon's time, not the wall clock; and so is a log-channel line's `at`.
#[tokio::test]
async fn an_override_and_a_log_line_are_stamped_with_the_daemons_clock() {
    let fake = "2026-03-02T09:00:00Z";
    let dir = tempfile::tempdir().unwrap();
    let yaml = config().replacen(
        "\n",
        "\nnotifications:\n  log: {path: notifications.jsonl}\npolicies:\n  - {name: main, notify: [{log: true}]}\ndefault_policy: main\n",
        1,
    );
    let path = dir.path().join("tocsin.yaml");
    std::fs::write(&path, yaml).unwrap();
    let data_dir = dir.path().join("data");
    let d = Daemon::on(&path, &data_dir).env("TOCSIN_FAKE_CLOCK", fake).start();
    d.advance("5m").await;
    let body = json!({"person": "carol", "until": "2026-03-02T12:00:00Z"});
    let r = d.post("/api/v1/rotations/primary/overrides", Some(TOKEN), body.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["created_at"], "2026-03-02T09:05:00Z", "{}", r.text);

    let r = d
        .post("/api/v1/events", Some(TOKEN), json!({"summary": "Queue backlog"}).to_string())
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let what = "a log-channel line";
    let line = eventually(what, std::time::Duration::from_secs(20), async || {
        let file =
            std::fs::read_to_string(data_dir.join("notifications.jsonl")).unwrap_or_default();
        file.lines().next().map(|l| serde_json::from_str::<Value>(l).unwrap())
    })
    .await;
    assert_eq!(line["at"], "2026-03-02T09:05:00Z", "{line}");
}
