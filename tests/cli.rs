//! The command line as an operator uses it: `tocsin check` and `tocsin serve` on the embedded
//! default with a generated token.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

fn tocsin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tocsin"));
    // Tests must not see the developer's own credentials or overrides.
    for var in ["TOCSIN_TOKEN", "TOCSIN_LISTEN", "TOCSIN_DATA_DIR"] {
        cmd.env_remove(var);
    }
    cmd
}

#[test]
fn check_reports_every_mistake_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "listen: \"not an address\"\n\
         limits:\n  max_body_bytes: 0\n  header_read_timeout: soon\n\
         sources:\n  - name: a\n    token: t1\n    allow: [alerts, pagers]\n\
         \x20 - name: a\n    token: t1\n    rate_limit: { per_second: 0 }\n\
         users:\n  - name: boss\n    token: ${TOCSIN_TEST_UNSET_VARIABLE}\n    roles: [emperor]\n",
    )
    .unwrap();
    let out = tocsin().args(["check", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = [
        ("listen", 1),
        ("max_body_bytes", 3),
        ("header_read_timeout", 4),
        ("pagers", 8),
        ("sources[1].name", 9),
        ("per_second", 11),
        ("TOCSIN_TEST_UNSET_VARIABLE", 14),
        ("emperor", 15),
    ];
    for (what, line) in expected {
        let found =
            stderr.lines().any(|l| l.contains(what) && l.contains(&format!("bad.yaml:{line}:")));
        assert!(found, "no error about {what} at line {line} in:\n{stderr}");
    }
}

/// `repeat` runs the steps again after the last one, whose `wait` is then how long the next
/// round waits: `tocsin check` says so (not that the policy "does not repeat"), at `repeat`.
#[test]
fn check_explains_the_wait_a_repeating_policy_needs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repeat.yaml");
    std::fs::write(
        &path,
        "policies:\n\
         \x20 - name: short\n    notify: [{log: true}]\n    repeat: 1\n\
         \x20 - name: steps\n    steps:\n      - {notify: [{log: true}], wait: 5m}\n      - {notify: [{log: true}]}\n    repeat: 2\n\
         \x20 - name: middle\n    steps:\n      - {notify: [{log: true}]}\n      - {notify: [{log: true}]}\n\
         notifications:\n  log: {path: n.jsonl}\n",
    )
    .unwrap();
    let out = tocsin().args(["check", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("does not repeat"), "{stderr}");
    for (line, what) in [
        (
            4,
            "policies[0].wait: `repeat: 1` runs the steps again, so the last step needs a `wait` too: how long to wait for an acknowledgement before the first step fires again; write the one step as `steps: [{notify: [...], wait: 5m}]`",
        ),
        (
            9,
            "policies[1].steps[1].wait: `repeat: 2` runs the steps again, so the last step needs a `wait` too",
        ),
        (10, "policies[2].steps[0].wait: every step but the last needs a `wait`"),
    ] {
        assert!(
            stderr.lines().any(|l| l.contains(&format!("repeat.yaml:{line}:")) && l.contains(what)),
            "no {what:?} at line {line} in:\n{stderr}"
        );
    }
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
}

#[test]
fn check_accepts_the_shipped_example_and_the_embedded_default() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/tocsin.yaml");
    let out = tocsin().args(["check", "--config", shipped]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // From a directory without rules/tocsin.yaml, the embedded default is used.
    let dir = tempfile::tempdir().unwrap();
    let out = tocsin().arg("check").current_dir(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("embedded"));
    // check never writes a token file.
    assert!(!dir.path().join("tocsin-data").exists());
}

#[tokio::test]
async fn serve_on_the_embedded_default_generates_a_private_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tocsin()
        .arg("serve")
        .current_dir(dir.path())
        .env("TOCSIN_LISTEN", "127.0.0.1:0")
        .env("TOCSIN_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut addr = None;
    let mut told_token = false;
    while addr.is_none() {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("tocsin printed nothing");
        told_token |= line.contains("tocsin-data/token");
        addr = line
            .strip_prefix("tocsin listening on http://")
            .map(|r| r.split(' ').next().unwrap().to_string());
    }
    assert!(told_token, "serve must say where the generated token is");
    let token_file = dir.path().join("tocsin-data/token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "token file readable by others: {mode:o}");
    let token = std::fs::read_to_string(&token_file).unwrap();
    let token = token.trim();

    let client = reqwest::Client::new();
    let url = format!("http://{}/api/v2/alerts", addr.unwrap());
    let body = r#"[{"labels":{"alertname":"Hello"}}]"#;
    let post = |auth: Option<String>| {
        let mut req = client.post(&url).header("content-type", "application/json").body(body);
        if let Some(t) = auth {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(post(None).await.unwrap().status().as_u16(), 401, "ingest is never open");
    assert_eq!(post(Some(token.to_string())).await.unwrap().status().as_u16(), 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn tocsin_test_passes_the_shipped_rule_cases() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = tocsin()
        .args(["test", "--config", "rules/tocsin.yaml", "fixtures/rules"])
        .current_dir(root)
        .env("TOCSIN_TOKEN", "t")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(summary.ends_with("passed, 0 failed"), "{stdout}");
    assert!(!summary.starts_with("0 passed"), "{stdout}");
}

#[test]
fn tocsin_test_shows_a_diff_and_fails_on_a_wrong_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let case = dir.path().join("wrong.yaml");
    std::fs::write(
        &case,
        "cases:\n  - name: checkout is surely sev4\n    events:\n      - format: canonical\n        body: {summary: down, severity: critical, service: checkout}\n    expect:\n      severity: sev4\n      tags: [not-a-tag]\n",
    )
    .unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = tocsin()
        .args(["test", "--config", "rules/tocsin.yaml"])
        .arg(&case)
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.contains("checkout is surely sev4"), "{stdout}");
    assert!(stdout.contains("severity: expected sev4, got sev1"), "{stdout}");
    assert!(stdout.contains("tags: expected to include [\"not-a-tag\"]"), "{stdout}");
    assert!(stdout.contains("0 passed, 1 failed"), "{stdout}");
}

#[test]
fn every_rule_capability_passes_through_tocsin_test() {
    let out = tocsin()
        .args([
            "test",
            "--config",
            "fixtures/rule-capabilities/tocsin.yaml",
            "fixtures/rule-capabilities/cases",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("20 passed, 0 failed"), "{stdout}");
}
