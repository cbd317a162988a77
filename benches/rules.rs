//! `RuleSet::evaluate` with the shipped `rules/` on a realistic Prometheus alert and a verified
//! customer report. Target: under 20 µs per event.
//!
//! `CARGO_TARGET_DIR=/work/main/target cargo bench --bench rules`
//!
//! Besides Criterion's estimates, prints the median of 31 batches as µs per event.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use criterion::Criterion;
use jiff::Timestamp;
use serde_json::json;
use tocsin::event::{Action, Customer, Event, Format, Kind, Link};
use tocsin::rules::{IncidentView, RuleLimits, RuleSet, Triage};
use uuid::Uuid;

fn at(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn alert() -> Event {
    Event {
        id: Uuid::now_v7(),
        received_at: at("2026-11-02T10:05:00Z"),
        source: "prometheus".into(),
        format: Format::AlertmanagerV2,
        kind: Kind::Alert,
        action: Action::Trigger,
        dedup_key: "HighErrorRate/checkout/eu-west-1".into(),
        fingerprint: Some("a1b2c3d4e5f60718".into()),
        labels: strings(&[
            ("alertname", "HighErrorRate"),
            ("service", "checkout"),
            ("severity", "critical"),
            ("cluster", "eu-west-1"),
            ("namespace", "shop"),
            ("job", "checkout-api"),
            ("instance", "10.0.3.17:9090"),
        ]),
        annotations: strings(&[
            ("summary", "Checkout 5xx rate above 5% for 5 minutes"),
            ("description", "checkout-api returns 7.2% errors on POST /orders"),
            ("runbook_url", "https://runbooks.example.com/checkout/errors"),
        ]),
        summary: "Checkout 5xx rate above 5% for 5 minutes".into(),
        severity: Some("critical".into()),
        service: None,
        starts_at: Some(at("2026-11-02T10:00:00Z")),
        ends_at: None,
        links: vec![Link {
            href: "https://prometheus.example.com/graph?g0.expr=rate".into(),
            text: None,
        }],
        customer: None,
        verified: false,
        drill: false,
        assessment: None,
        details: serde_json::Map::new(),
    }
}

fn report() -> Event {
    let details = json!({
        "description": "Customer says the receipt email shows their full card number and home address.",
        "ticket": "HD-48213",
        "channel": "chat",
        "priority": "high",
    });
    Event {
        source: "helpdesk".into(),
        format: Format::Report,
        kind: Kind::Report,
        dedup_key: "HD-48213".into(),
        fingerprint: None,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        summary: "Receipt email shows full card number".into(),
        severity: None,
        service: Some("payments".into()),
        links: vec![Link {
            href: "https://helpdesk.example.com/tickets/48213".into(),
            text: Some("ticket".into()),
        }],
        customer: Some(Customer {
            id: Some("cus_8812".into()),
            name: Some("Jo Example".into()),
            email: Some("jo@example.com".into()),
            phone: Some("+44 20 7946 0000".into()),
        }),
        verified: true,
        details: details.as_object().cloned().unwrap_or_default(),
        ..alert()
    }
}

fn incident() -> IncidentView {
    IncidentView {
        id: 1042,
        is_new: false,
        status: "triggered".into(),
        count: 12,
        first_seen: at("2026-11-02T10:02:00Z"),
        last_seen: at("2026-11-02T10:04:30Z"),
        severity: Some("sev2".into()),
        score: Some(70),
    }
}

fn shipped_rules() -> RuleSet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    RuleSet::load(&dir, &RuleLimits::default()).expect("shipped rules load")
}

fn median_micros(rules: &RuleSet, event: &Event, incident: &IncidentView, triage: &Triage) -> f64 {
    const BATCH: u32 = 2_000;
    let mut batches: Vec<f64> = (0..31)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..BATCH {
                black_box(rules.evaluate(black_box(event), incident, triage));
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(BATCH)
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    batches[batches.len() / 2]
}

fn main() {
    // As in the daemon, on a rule thread (`tocsin::rules::threads`): its stack is the size
    // evaluations need, so none moves to a fresh stack segment first.
    let thread = std::thread::Builder::new().stack_size(tocsin::rules::STACK_SIZE);
    thread.spawn(bench).expect("bench thread").join().expect("bench");
}

fn bench() {
    let rules = shipped_rules();
    let triage = Triage::default();
    let incident = incident();
    let cases = [("alert", alert()), ("report", report())];
    for (name, event) in &cases {
        let evaluation = rules.evaluate(event, &incident, &triage);
        assert!(evaluation.failures.is_empty(), "{name}: {:?}", evaluation.failures);
    }

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("rules/evaluate");
    for (name, event) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| rules.evaluate(black_box(event), &incident, &triage));
        });
    }
    group.finish();
    criterion.final_summary();

    for (name, event) in &cases {
        let median = median_micros(&rules, event, &incident, &triage);
        println!("rules/evaluate/{name}: median {median:.2} µs per event (5 shipped rules)");
    }
}
