//! Rules: Rhai source → a compiled `RuleSet` with the sandbox's production limits, as a
//! `*.rhai` file is compiled at load and reload — and, when it compiles, run against an alert
//! and a customer report, as ingest runs it. Compile errors and rule failures (limits, budget,
//! "nested too deeply", a disabled rule) are fine; a panic, a hang or a crash of the process
//! (a stack overflow aborts it) is not. Closures nesting closures, which overflowed the stack
//! of a worker (issue 17), would show here as a crash.
//!
//! The evaluation runs on a thread of the default size, as `tocsin test` and drills do: it
//! must move itself to a rule thread's stack (`rules::stack`).
#![no_main]

use std::collections::BTreeMap;

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use tocsin::event::{Action, Customer, Event, Format, Kind, Link};
use tocsin::rules::{IncidentView, RuleLimits, RuleSet, Triage};

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn alert() -> Event {
    let details = serde_json::json!({"runbook": "r", "nested": {"a": [1, "x", {"b": true}]}});
    Event {
        id: uuid::Uuid::nil(),
        received_at: at("2026-11-27T12:00:00Z"),
        source: "prometheus".into(),
        format: Format::AlertmanagerV2,
        kind: Kind::Alert,
        action: Action::Trigger,
        dedup_key: "HighErrorRate/checkout".into(),
        fingerprint: Some("a1b2c3d4".into()),
        labels: BTreeMap::from([
            ("alertname".into(), "HighErrorRate".into()),
            ("service".into(), "checkout".into()),
            ("severity".into(), "critical".into()),
        ]),
        annotations: BTreeMap::from([("summary".into(), "Checkout errors".into())]),
        summary: "Checkout 5xx above 5%".into(),
        severity: Some("critical".into()),
        service: Some("checkout".into()),
        starts_at: Some(at("2026-11-27T11:55:00Z")),
        ends_at: None,
        links: vec![Link { href: "https://example.com/g".into(), text: None }],
        customer: None,
        verified: false,
        drill: false,
        assessment: None,
        details: details.as_object().cloned().unwrap_or_default(),
    }
}

fn report() -> Event {
    Event {
        format: Format::Report,
        kind: Kind::Report,
        source: "helpdesk".into(),
        dedup_key: "HD-1".into(),
        summary: "Customer cannot pay; card charged twice".into(),
        customer: Some(Customer {
            id: Some("c-1".into()),
            name: Some("Jo".into()),
            email: Some("jo@example.com".into()),
            phone: None,
        }),
        verified: true,
        ..alert()
    }
}

fn incident(count: u64) -> IncidentView {
    IncidentView {
        id: 1,
        is_new: count == 1,
        status: "triggered".into(),
        count,
        first_seen: at("2026-11-27T11:58:00Z"),
        last_seen: at("2026-11-27T12:00:00Z"),
        severity: Some("sev2".into()),
        score: Some(60),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let set = match RuleSet::from_source("fuzz.rhai", source, &RuleLimits::default()) {
        Ok(set) => set,
        Err(err) => {
            let _ = err.to_string();
            return;
        }
    };
    let triage = Triage::default();
    // Twice each: the second run may reuse a remembered outcome, or skip a disabled rule.
    for (event, count) in [(alert(), 1), (alert(), 2), (report(), 1), (report(), 7)] {
        let evaluation = set.evaluate(&event, &incident(count), &triage);
        let _ = serde_json::to_string(&evaluation.decision);
    }
});
