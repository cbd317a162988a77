//! Fixtures for the decision tests: a runtime from YAML and incidents built directly, no store.

use jiff::{SignedDuration, Timestamp};

use super::steps::Ctx;
use crate::incident::{self, Incident, Outcome};
use crate::rules::{Decision, Evaluation, Sensitivity};
use crate::runtime::Runtime;

pub const T0: &str = "2026-03-02T09:00:00Z";

pub fn t0() -> Timestamp {
    T0.parse().unwrap()
}

pub fn mins(n: i64) -> Timestamp {
    t0() + SignedDuration::from_mins(n)
}

/// People ana, ben, lena, cora with email, email configured, plus `extra` YAML. Build it inside
/// a tokio runtime (the email channel is built in it; nothing is sent).
pub fn runtime(extra: &str) -> Runtime {
    let yaml = format!(
        r#"people:
  - {{id: ana, name: Ana, email: ana@example.com}}
  - {{id: ben, name: Ben, email: ben@example.com}}
  - {{id: lena, name: Lena, email: lena@example.com}}
  - {{id: cora, name: Cora, email: cora@example.com}}
notifications:
  email: {{relay: 127.0.0.1, port: 2525, tls: none, from: "Tocsin <tocsin@example.com>"}}
{extra}"#
    );
    let raw = crate::config::parse(&yaml, "t.yaml").unwrap();
    let config = crate::config::validate(raw, "t.yaml", &|_: &str| None).unwrap();
    crate::runtime::build(config, true).unwrap()
}

/// Two steps (ana, wait 5m; ben, wait 10m), re-escalating 30m after an acknowledgement.
pub const TWO_STEPS: &str = r#"policies:
  - name: page
    steps:
      - notify: [{person: ana, channels: [email]}]
        wait: 5m
      - notify: [{person: ben, channels: [email]}]
        wait: 10m
    reescalate_after: 30m
default_policy: page
"#;

pub fn ctx(rt: &Runtime, now: Timestamp) -> Ctx<'_> {
    Ctx { rt, windows: &[], now }
}

pub fn decision(severity: &str, sensitivity: Sensitivity, customer_facing: bool) -> Decision {
    Decision {
        score: 50,
        base_score: 50,
        severity: severity.into(),
        policy: None,
        tags: Default::default(),
        sensitivity,
        customer_facing,
        roles: Default::default(),
        suppressed: None,
        rules_fired: Vec::new(),
        reasons: Vec::new(),
    }
}

/// Incident #7, just opened at T0 by a trigger, with `decision`.
pub fn incident(decision: Decision) -> Incident {
    let event = serde_json::from_value(serde_json::json!({
        "id": "01890000-0000-7000-8000-000000000000",
        "received_at": T0,
        "source": "default",
        "format": "alertmanager_v2",
        "kind": "alert",
        "action": "trigger",
        "dedup_key": "db",
        "summary": "db down",
    }))
    .unwrap();
    let evaluation = Evaluation { decision, failures: Vec::new(), ran: 0, reused: 0 };
    match incident::apply(None, &event, &evaluation, || 7) {
        Outcome::Opened(incident, _) => incident,
        other => panic!("not opened: {other:?}"),
    }
}

/// A sev2 incident without personal data or customers.
pub fn plain_incident() -> Incident {
    incident(decision("sev2", Sensitivity::None, false))
}
