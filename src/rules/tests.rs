use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use uuid::Uuid;

use super::*;
use crate::event::{Action, Customer, Event, Format, Kind, Link};

fn at(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn alert(severity: Option<&str>) -> Event {
    Event {
        id: Uuid::nil(),
        received_at: at("2026-11-02T10:05:00Z"),
        source: "prometheus".into(),
        format: Format::AlertmanagerV2,
        kind: Kind::Alert,
        action: Action::Trigger,
        dedup_key: "HighErrorRate/payments".into(),
        fingerprint: Some("8f3c2a1b".into()),
        labels: BTreeMap::from([
            ("alertname".into(), "HighErrorRate".into()),
            ("severity".into(), "critical".into()),
        ]),
        annotations: BTreeMap::from([("runbook".into(), "https://runbooks/errors".into())]),
        summary: "Error rate above 5%".into(),
        severity: severity.map(str::to_owned),
        service: None,
        starts_at: Some(at("2026-11-02T10:00:00Z")),
        ends_at: None,
        links: vec![Link { href: "https://prometheus/graph".into(), text: Some("graph".into()) }],
        customer: None,
        verified: false,
        drill: false,
        assessment: None,
        details: serde_json::Map::new(),
    }
}

fn report(verified: bool, summary: &str) -> Event {
    Event {
        format: Format::Report,
        kind: Kind::Report,
        source: "helpdesk".into(),
        dedup_key: "ticket-4711".into(),
        fingerprint: None,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        summary: summary.into(),
        severity: None,
        links: Vec::new(),
        customer: Some(Customer { id: Some("c-17".into()), ..Customer::default() }),
        verified,
        ..alert(None)
    }
}

fn incident() -> IncidentView {
    IncidentView {
        id: 7,
        is_new: true,
        status: "triggered".into(),
        count: 1,
        first_seen: at("2026-11-02T10:05:00Z"),
        last_seen: at("2026-11-02T10:05:00Z"),
        severity: None,
        score: None,
    }
}

/// Writes the scripts into a fresh directory and loads it.
fn load_with(files: &[(&str, &str)], limits: &RuleLimits) -> Result<RuleSet, Vec<RuleError>> {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, source) in files {
        std::fs::write(dir.path().join(name), source).expect("write script");
    }
    RuleSet::load(dir.path(), limits)
}

fn load(files: &[(&str, &str)]) -> RuleSet {
    load_with(files, &RuleLimits::default()).unwrap_or_else(|errors| {
        panic!("load failed: {}", errors.iter().map(|e| format!("{e}\n")).collect::<String>())
    })
}

fn run(files: &[(&str, &str)], event: &Event) -> Evaluation {
    load(files).evaluate(event, &incident(), &Triage::default())
}

/// Runs one script that must succeed, and returns the decision.
fn decide(script: &str, event: &Event) -> Decision {
    let evaluation = run(&[("10-test.rhai", script)], event);
    assert_eq!(evaluation.failures, [], "script failed");
    evaluation.decision
}

fn failure(script: &str) -> String {
    let evaluation = run(&[("10-test.rhai", script)], &alert(None));
    assert_eq!(evaluation.failures.len(), 1, "expected a failure: {evaluation:?}");
    evaluation.failures[0].error.clone()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

use std::collections::BTreeSet;

// --- base scores and severity thresholds ---

#[test]
fn base_score_comes_from_the_senders_severity_word() {
    let rules = RuleSet::empty(&RuleLimits::default());
    let triage = Triage::default();
    let score = |event: &Event| rules.evaluate(event, &incident(), &triage).decision;

    let critical = score(&alert(Some("critical")));
    assert_eq!((critical.base_score, critical.score), (80, 80));
    assert_eq!(critical.severity, "sev1");
    assert_eq!(score(&alert(Some("error"))).severity, "sev2");
    assert_eq!(score(&alert(Some("warning"))).severity, "sev3");
    assert_eq!(score(&alert(Some("info"))).base_score, 10);
    assert_eq!(score(&alert(Some("info"))).severity, "sev4");
    assert_eq!(score(&alert(None)).base_score, 20);
    assert_eq!(score(&alert(Some("disaster"))).base_score, 20);
}

#[test]
fn reports_score_by_verification() {
    let rules = RuleSet::empty(&RuleLimits::default());
    let triage = Triage::default();
    let verified = rules.evaluate(&report(true, "x"), &incident(), &triage);
    assert_eq!(verified.decision.base_score, 60);
    assert_eq!(verified.decision.severity, "sev2");
    let unverified = rules.evaluate(&report(false, "x"), &incident(), &triage);
    assert_eq!(unverified.decision.base_score, 30);
    assert_eq!(unverified.decision.severity, "sev4");
}

#[test]
fn a_score_below_every_threshold_gets_the_last_severity() {
    let d = decide(r#"decision.add_score(-500, "noise");"#, &alert(None));
    assert_eq!(d.score, -480);
    assert_eq!(d.severity, "sev4");
}

#[test]
fn with_no_scripts_the_decision_is_the_base_decision() {
    let rules = RuleSet::empty(&RuleLimits::default());
    assert!(rules.names().is_empty());
    let evaluation = rules.evaluate(&alert(Some("warning")), &incident(), &Triage::default());
    assert_eq!(evaluation.failures, []);
    let d = evaluation.decision;
    assert_eq!((d.score, d.severity.as_str()), (40, "sev3"));
    assert_eq!(d.policy, None);
    assert!(d.tags.is_empty() && d.roles.is_empty() && d.rules_fired.is_empty());
    assert_eq!(d.sensitivity, Sensitivity::None);
    assert!(!d.customer_facing);
    assert_eq!(d.suppressed, None);
}

// --- every capability through a small script ---

#[test]
fn add_score_adjusts_and_explains() {
    let d = decide(
        r#"decision.add_score(30, "payment path"); decision.add_score(-5, "staging");"#,
        &alert(Some("warning")),
    );
    assert_eq!((d.base_score, d.score), (40, 65));
    assert_eq!(d.severity, "sev2");
    assert_eq!(d.reasons, ["10-test.rhai: +30 payment path", "10-test.rhai: -5 staging"]);
    assert_eq!(d.rules_fired, ["10-test.rhai"]);
}

#[test]
fn add_score_saturates_instead_of_overflowing() {
    let d = decide(
        r#"decision.add_score(9223372036854775807, "max"); decision.add_score(10, "more");"#,
        &alert(None),
    );
    assert_eq!(d.score, i64::MAX);
}

#[test]
fn set_severity_overrides_the_thresholds() {
    let d = decide(r#"decision.set_severity("sev1", "customer data");"#, &alert(None));
    assert_eq!((d.score, d.severity.as_str()), (20, "sev1"));
    assert_eq!(d.reasons, ["10-test.rhai: severity set to sev1 (customer data)"]);
}

#[test]
fn cap_severity_applies_after_score_and_forced_severity() {
    let capped = decide(r#"decision.cap_severity("sev3");"#, &alert(Some("critical")));
    assert_eq!((capped.score, capped.severity.as_str()), (80, "sev3"));

    let forced_then_capped =
        decide(r#"decision.set_severity("sev1"); decision.cap_severity("sev2");"#, &alert(None));
    assert_eq!(forced_then_capped.severity, "sev2");

    // A cap never raises: a sev4 stays sev4 under a sev2 cap.
    assert_eq!(decide(r#"decision.cap_severity("sev2");"#, &alert(None)).severity, "sev4");

    // Two caps: the stricter (less severe) one holds, whichever came first.
    let two = decide(
        r#"decision.cap_severity("sev3"); decision.cap_severity("sev2");"#,
        &alert(Some("critical")),
    );
    assert_eq!(two.severity, "sev3");
}

#[test]
fn set_policy_last_call_wins() {
    let evaluation = run(
        &[
            ("10-a.rhai", r#"decision.set_policy("payments");"#),
            ("20-b.rhai", r#"decision.set_policy("payments-night", "after hours");"#),
        ],
        &alert(None),
    );
    assert_eq!(evaluation.decision.policy.as_deref(), Some("payments-night"));
    assert_eq!(
        evaluation.decision.reasons,
        ["10-a.rhai: policy payments", "20-b.rhai: policy payments-night (after hours)"]
    );
}

#[test]
fn tag_and_involve_collect_sets() {
    let d = decide(
        r#"
        decision.tag("payments");
        decision.tag("payments");
        decision.tag("pci", "card data");
        decision.involve("legal_liaison");
        decision.involve("communications_lead", "status page");
        "#,
        &alert(None),
    );
    assert_eq!(d.tags, set(&["payments", "pci"]));
    assert_eq!(d.roles, set(&["communications_lead", "legal_liaison"]));
    // The repeated tag changed nothing, so it gave no reason.
    assert_eq!(d.reasons.len(), 4);
}

#[test]
fn sensitivity_keeps_the_highest_level() {
    let d = decide(
        r#"
        decision.set_sensitivity("personal");
        decision.set_sensitivity("internal");
        "#,
        &alert(None),
    );
    assert_eq!(d.sensitivity, Sensitivity::Personal);
    let d = decide(r#"decision.set_sensitivity("financial");"#, &alert(None));
    assert_eq!(d.sensitivity, Sensitivity::Financial);
}

#[test]
fn customer_facing_and_suppress() {
    let d = decide(
        r#"decision.set_customer_facing("checkout"); decision.suppress("maintenance window");"#,
        &alert(None),
    );
    assert!(d.customer_facing);
    assert_eq!(d.suppressed.as_deref(), Some("maintenance window"));
    assert_eq!(
        d.reasons,
        [
            "10-test.rhai: customer-facing (checkout)",
            "10-test.rhai: suppressed: maintenance window"
        ]
    );
}

#[test]
fn later_scripts_read_what_earlier_ones_decided() {
    let evaluation = run(
        &[
            (
                "10-first.rhai",
                r#"decision.add_score(45, "x"); decision.tag("payments"); decision.involve("dba");
                   decision.set_policy("db"); decision.set_sensitivity("internal");
                   decision.set_customer_facing(); decision.suppress("quiet");"#,
            ),
            (
                "20-reader.rhai",
                r#"
                if decision.score == 65 && decision.base_score == 20 && decision.severity == "sev2"
                    && "payments" in decision.tags && "dba" in decision.roles
                    && decision.policy == "db" && decision.sensitivity == "internal"
                    && decision.customer_facing && decision.suppressed {
                    decision.tag("seen-everything");
                }
                "#,
            ),
        ],
        &alert(None),
    );
    assert_eq!(evaluation.failures, []);
    assert!(evaluation.decision.tags.contains("seen-everything"));
    assert_eq!(evaluation.decision.rules_fired, ["10-first.rhai", "20-reader.rhai"]);
}

#[test]
fn severity_read_in_a_script_reflects_its_own_changes() {
    let d = decide(
        r#"
        let before = decision.severity;
        decision.add_score(70, "x");
        if before == "sev4" && decision.severity == "sev1" { decision.tag("moved"); }
        decision.cap_severity("sev2");
        if decision.severity == "sev2" { decision.tag("capped"); }
        "#,
        &alert(None),
    );
    assert_eq!(d.tags, set(&["capped", "moved"]));
}

#[test]
fn a_script_that_changes_nothing_does_not_fire() {
    let evaluation = run(
        &[
            ("10-noop.rhai", r#"if event.kind == "report" { decision.tag("r"); }"#),
            ("20-tag.rhai", r#"decision.tag("x");"#),
        ],
        &alert(None),
    );
    assert_eq!(evaluation.decision.rules_fired, ["20-tag.rhai"]);
}

#[test]
fn the_event_is_visible_field_by_field() {
    let mut event = alert(Some("critical"));
    event.service = Some("payments".into());
    event.customer = Some(Customer { email: Some("a@example.com".into()), ..Customer::default() });
    event.details.insert("component".into(), serde_json::json!({"name": "db", "replicas": 3}));
    let d = decide(
        r#"
        let checks = [
            event.id == "00000000-0000-0000-0000-000000000000",
            event.source == "prometheus",
            event.format == "alertmanager_v2",
            event.kind == "alert",
            event.action == "trigger",
            event.dedup_key == "HighErrorRate/payments",
            event.fingerprint == "8f3c2a1b",
            event.labels.alertname == "HighErrorRate",
            event.labels.missing == (),
            event.annotations.runbook.starts_with("https://"),
            event.summary == "Error rate above 5%",
            event.severity == "critical",
            event.service == "payments",
            event.starts_at == "2026-11-02T10:00:00Z",
            event.links[0].href == "https://prometheus/graph",
            event.links[0].text == "graph",
            event.customer.email == "a@example.com",
            event.customer.phone == (),
            event.verified == false,
            event.details.component.name == "db",
            event.details.component.replicas == 3,
        ];
        for (ok, i) in checks {
            if !ok { throw `event check ${i} failed`; }
        }
        decision.tag("ok");
        "#,
        &event,
    );
    assert!(d.tags.contains("ok"));
}

#[test]
fn the_incident_is_visible_with_its_age() {
    let incident = IncidentView {
        id: 42,
        is_new: false,
        status: "acknowledged".into(),
        count: 12,
        first_seen: at("2026-11-02T10:00:00Z"),
        last_seen: at("2026-11-02T10:04:00Z"),
        severity: Some("sev2".into()),
        score: Some(65),
    };
    let rules = load(&[(
        "10-test.rhai",
        r#"
        let checks = [
            incident.id == 42, !incident.is_new, incident.status == "acknowledged",
            incident.count == 12, incident.first_seen == "2026-11-02T10:00:00Z",
            incident.last_seen == "2026-11-02T10:04:00Z",
            incident.age_seconds == 300, incident.severity == "sev2", incident.score == 65,
        ];
        for (ok, i) in checks {
            if !ok { throw `incident check ${i} failed`; }
        }
        decision.tag("ok");
        "#,
    )]);
    let evaluation = rules.evaluate(&alert(None), &incident, &Triage::default());
    assert_eq!(evaluation.failures, []);
    assert!(evaluation.decision.tags.contains("ok"));
}

#[test]
fn mentions_any_matches_substrings_ignoring_case() {
    let d = decide(
        r#"
        if "My CARD was charged".mentions_any(["iban", "card"]) { decision.tag("card"); }
        if "all fine".mentions_any(["card"]) { decision.tag("wrong"); }
        if !"text".mentions_any([]) { decision.tag("empty-list"); }
        "#,
        &alert(None),
    );
    assert_eq!(d.tags, set(&["card", "empty-list"]));
}

#[test]
fn print_and_debug_do_not_disturb_the_rule() {
    let d = decide(r#"print("hello"); debug(decision); decision.tag("ok");"#, &alert(None));
    assert!(d.tags.contains("ok"));
}

#[test]
fn return_ends_a_rule_early_and_keeps_its_changes() {
    let d = decide(
        r#"decision.tag("before"); if true { return; } decision.tag("after");"#,
        &alert(None),
    );
    assert_eq!(d.tags, set(&["before"]));
}

// --- validation at run time ---

#[test]
fn unknown_severity_names_the_allowed_ones() {
    let error = failure(r#"decision.set_severity("critical");"#);
    assert!(error.contains(r#"unknown severity "critical""#), "{error}");
    assert!(error.contains("sev1, sev2, sev3, sev4"), "{error}");
    let error = failure(r#"decision.cap_severity("sev9");"#);
    assert!(error.contains("sev1, sev2, sev3, sev4"), "{error}");
}

#[test]
fn unknown_sensitivity_names_the_allowed_ones() {
    let error = failure(r#"decision.set_sensitivity("secret");"#);
    assert!(error.contains("none, internal, personal, financial"), "{error}");
}

#[test]
fn names_and_reasons_are_checked() {
    assert!(failure(r#"decision.tag("");"#).contains("invalid tag"));
    assert!(failure(r#"decision.involve("legal liaison");"#).contains("invalid role"));
    assert!(failure(r#"decision.set_policy("a/b");"#).contains("invalid policy"));
    assert!(failure(r#"decision.suppress("  ");"#).contains("needs a reason"));
    // Wrong argument types are Rhai's "function not found", naming the call.
    assert!(failure(r#"decision.add_score("30", "x");"#).contains("add_score"));
}

#[test]
fn long_reasons_are_clipped_not_refused() {
    let d = decide(
        r#"let s = "x"; s.pad(500, "y"); decision.add_score(1, s); decision.suppress(s);"#,
        &alert(None),
    );
    assert!(d.reasons[0].chars().count() < 240, "{}", d.reasons[0]);
    assert!(d.suppressed.unwrap().ends_with('…'));
}

#[test]
fn collections_a_rule_can_grow_are_bounded() {
    let error = failure(r#"for i in 0..100 { decision.tag(`t${i}`); }"#);
    assert!(error.contains("at most"), "{error}");
}

// --- read-only inputs and the decision binding ---

#[test]
fn event_and_incident_are_read_only() {
    for script in [
        r#"event.summary = "changed";"#,
        r#"event.labels.severity = "info";"#,
        r#"event.labels.clear();"#,
        r#"incident.count += 1;"#,
        r#"event = #{};"#,
    ] {
        let evaluation = run(
            &[
                ("10-write.rhai", script),
                (
                    "20-read.rhai",
                    r#"if event.labels.severity == "critical" { decision.tag("intact"); }"#,
                ),
            ],
            &alert(None),
        );
        assert_eq!(evaluation.failures.len(), 1, "{script} should fail");
        assert!(evaluation.decision.tags.contains("intact"), "{script} changed the event");
    }
}

#[test]
fn shadowing_a_bound_name_is_a_load_error() {
    for script in ["let decision = 1;", "const event = 2;", "let incident = ();"] {
        let errors =
            load_with(&[("10-shadow.rhai", script)], &RuleLimits::default()).expect_err(script);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, Some(1), "{script}: {}", errors[0]);
    }
}

#[test]
fn replacing_the_decision_is_a_failure() {
    let evaluation =
        run(&[("10-replace.rhai", r#"decision.add_score(50, "x"); decision = 5;"#)], &alert(None));
    assert_eq!(evaluation.decision.score, 20);
    assert!(evaluation.failures[0].error.contains("`decision` was replaced"));
}

#[test]
fn a_misspelt_variable_is_a_load_error() {
    let errors = load_with(&[("10-typo.rhai", "\nlet x = evnet.summary;")], &RuleLimits::default())
        .expect_err("typo");
    assert_eq!((errors[0].line, errors[0].column), (Some(2), Some(9)));
    assert!(errors[0].message.contains("evnet"), "{}", errors[0]);
}

// --- failures roll back ---

#[test]
fn a_script_that_throws_leaves_the_base_decision() {
    let evaluation = run(
        &[(
            "10-throws.rhai",
            r#"decision.add_score(50, "x"); decision.tag("half"); throw "boom";"#,
        )],
        &alert(Some("warning")),
    );
    let base = RuleSet::empty(&RuleLimits::default())
        .evaluate(&alert(Some("warning")), &incident(), &Triage::default())
        .decision;
    assert_eq!(evaluation.decision, base);
    assert_eq!(evaluation.failures.len(), 1);
    assert_eq!(evaluation.failures[0].rule, "10-throws.rhai");
    assert!(evaluation.failures[0].error.contains("boom"), "{}", evaluation.failures[0]);
}

#[test]
fn a_failing_script_between_good_ones_drops_only_its_own_changes() {
    let evaluation = run(
        &[
            ("10-good.rhai", r#"decision.add_score(10, "first");"#),
            ("20-bad.rhai", r#"decision.add_score(100, "lost"); let x = 1 / 0;"#),
            ("30-good.rhai", r#"decision.add_score(decision.score, "double");"#),
        ],
        &alert(None),
    );
    assert_eq!(evaluation.decision.score, 60);
    assert_eq!(evaluation.decision.rules_fired, ["10-good.rhai", "30-good.rhai"]);
    assert_eq!(evaluation.failures.len(), 1);
    assert_eq!(evaluation.failures[0].rule, "20-bad.rhai");
}

// --- hostile scripts ---

/// Each script must be rejected at load with its line, or halted at run time well within the
/// test's 2 s allowance (generous: the machine is shared), with the good rules around it applied.
#[test]
fn hostile_scripts_are_rejected_or_halted() {
    let nested = format!("let x = {}1{};", "(".repeat(10_000), ")".repeat(10_000));
    let at_load: &[(&str, &str, usize)] = &[
        ("eval", "let x = 1;\neval(\"decision.add_score(100, 'x')\");", 2),
        ("import", "\nimport \"x\" as y;", 2),
        ("nested", nested.as_str(), 1),
        (
            "deep-function",
            "fn f(x) { if x { if x { if x { if x { if x { if x { if x { if x { if x { if x { if x { if x { if x { if x { if x { if x { if x { 1 } } } } } } } } } } } } } } } } } }",
            1,
        ),
    ];
    for (name, script, line) in at_load {
        let errors = load_with(
            &[("10-ok.rhai", "let x = 1;"), ("50-hostile.rhai", script)],
            &RuleLimits::default(),
        )
        .expect_err(name);
        assert_eq!(errors.len(), 1, "{name}: {errors:?}");
        assert!(errors[0].file.ends_with("50-hostile.rhai"), "{name}: {}", errors[0]);
        assert_eq!(errors[0].line, Some(*line), "{name}: {}", errors[0]);
    }

    let at_run: &[(&str, &str)] = &[
        ("endless loop", "loop { }"),
        ("endless loop in try", "loop { try { loop { } } catch { } }"),
        ("string doubling", r#"let s = "x"; loop { s += s; }"#),
        ("string padding", r#"let s = "x".pad(100000000, "y");"#),
        ("array growing", "let a = []; loop { a.push(a.len()); }"),
        ("nested arrays", "let a = []; loop { a = [a, a]; }"),
        ("map growing", "let m = #{}; let i = 0; loop { m[`k${i}`] = i; i += 1; }"),
        ("blob", "let b = blob(100000000);"),
        ("deep recursion", "fn f(n) { f(n + 1) } f(0);"),
        ("mutual recursion", "fn a(n) { b(n) } fn b(n) { a(n) } a(1);"),
        ("sleep", "sleep(100);"),
        (
            "too many variables",
            "let a0=0;let a1=0;let a2=0;let a3=0;let a4=0;let a5=0;let a6=0;let a7=0;let a8=0;let a9=0;let b0=0;let b1=0;let b2=0;let b3=0;let b4=0;let b5=0;let b6=0;let b7=0;let b8=0;let b9=0;let c0=0;let c1=0;let c2=0;let c3=0;let c4=0;let c5=0;let c6=0;let c7=0;let c8=0;let c9=0;let d0=0;let d1=0;let d2=0;let d3=0;let d4=0;let d5=0;let d6=0;let d7=0;let d8=0;let d9=0;let e0=0;let e1=0;let e2=0;let e3=0;let e4=0;let e5=0;let e6=0;let e7=0;let e8=0;let e9=0;let f0=0;let f1=0;let f2=0;let f3=0;let f4=0;let f5=0;let f6=0;let f7=0;let f8=0;let f9=0;let g0=0;let g1=0;let g2=0;let g3=0;let g4=0;let g5=0;let g6=0;let g7=0;let g8=0;let g9=0;",
        ),
        ("closure loop", "let f = |x| { loop { } }; f.call(1);"),
    ];
    for (name, script) in at_run {
        let rules = load(&[
            ("10-before.rhai", r#"decision.add_score(5, "before");"#),
            ("50-hostile.rhai", &format!(r#"decision.add_score(100, "hostile"); {script}"#)),
            ("90-after.rhai", r#"decision.tag("after");"#),
        ]);
        let started = Instant::now();
        let evaluation = rules.evaluate(&alert(None), &incident(), &Triage::default());
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "{name} ran for {took:?}");
        assert_eq!(evaluation.failures.len(), 1, "{name}: {:?}", evaluation.failures);
        assert_eq!(evaluation.failures[0].rule, "50-hostile.rhai", "{name}");
        assert_eq!(evaluation.decision.score, 25, "{name}: hostile changes kept");
        assert!(evaluation.decision.tags.contains("after"), "{name}: later rule lost");
        assert_eq!(evaluation.decision.rules_fired, ["10-before.rhai", "90-after.rhai"]);
    }
}

#[test]
fn the_deadline_halts_a_script_the_operation_limit_would_not() {
    let limits = RuleLimits {
        max_operations: 0, // unlimited: only the clock can stop it
        time_budget: Duration::from_millis(20),
        ..RuleLimits::default()
    };
    let rules = load_with(
        &[("10-spin.rhai", "loop { }"), ("20-after.rhai", r#"decision.tag("after");"#)],
        &limits,
    )
    .expect("load");
    let started = Instant::now();
    let evaluation = rules.evaluate(&alert(None), &incident(), &Triage::default());
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(evaluation.failures.len(), 1);
    assert_eq!(evaluation.failures[0].rule, "10-spin.rhai");
    assert!(evaluation.failures[0].error.contains("time budget"), "{}", evaluation.failures[0]);
    // The spinning script could use only its share of the budget: the next one still ran.
    assert!(evaluation.decision.tags.contains("after"));
}

#[test]
fn the_budget_counts_cpu_time_not_time_spent_waiting() {
    // A thread that is not running (descheduled on a busy machine, here asleep) uses none of
    // its budget.
    let before = super::engine::thread_cpu_time();
    std::thread::sleep(Duration::from_millis(100));
    let used = super::engine::thread_cpu_time() - before;
    assert!(used < Duration::from_millis(50), "{used:?} of CPU time while asleep");
    // And work does count.
    let before = super::engine::thread_cpu_time();
    let mut x = 0u64;
    while super::engine::thread_cpu_time() - before < Duration::from_millis(5) {
        x = std::hint::black_box(x.wrapping_add(1));
    }
    assert!(x > 0);
}

#[test]
fn the_operation_limit_names_itself() {
    let error = failure("loop { }");
    assert!(error.contains("200000 operations") || error.contains("time budget"), "{error}");
}

// --- load errors ---

#[test]
fn load_reports_every_error_in_every_file_with_position() {
    let errors = load_with(
        &[
            ("10-good.rhai", r#"decision.tag("fine");"#),
            ("20-bad.rhai", "let x = 1;\nlet y = ;\n"),
            ("30-worse.rhai", "if true {\n  decision.tag(\"x\")\n"),
            ("notes.txt", "not a rule ("),
        ],
        &RuleLimits::default(),
    )
    .expect_err("two broken files");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].file.ends_with("20-bad.rhai"));
    assert_eq!((errors[0].line, errors[0].column), (Some(2), Some(9)));
    assert!(errors[1].file.ends_with("30-worse.rhai"));
    assert!(errors[1].line.is_some() && errors[1].column.is_some());
    let shown = errors[0].to_string();
    assert!(shown.ends_with(&format!("20-bad.rhai:2:9: {}", errors[0].message)), "{shown}");
}

#[test]
fn load_orders_by_file_name_and_ignores_other_files() {
    let rules = load(&[
        ("20-b.rhai", "let x = 1;"),
        ("10-a.rhai", "let x = 1;"),
        ("README.md", "# docs"),
        (".#10-a.rhai", "broken ("),
    ]);
    assert_eq!(rules.names(), ["10-a.rhai", "20-b.rhai"]);
}

#[test]
fn a_missing_directory_is_an_error() {
    let errors = RuleSet::load(Path::new("/nonexistent/rules"), &RuleLimits::default())
        .expect_err("missing dir");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().starts_with("/nonexistent/rules: cannot read"), "{}", errors[0]);
}

#[test]
fn rule_error_display_omits_missing_positions() {
    let error = RuleError {
        file: "rules/x.rhai".into(),
        line: None,
        column: None,
        message: "cannot read".into(),
    };
    assert_eq!(error.to_string(), "rules/x.rhai: cannot read");
}

// --- sharing and serialization ---

#[test]
fn a_rule_set_is_shared_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<RuleSet>();

    let rules = Arc::new(load(&[("10-a.rhai", r#"decision.add_score(1, "x");"#)]));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let rules = Arc::clone(&rules);
            std::thread::spawn(move || {
                (0..50)
                    .map(|_| rules.evaluate(&alert(None), &incident(), &Triage::default()))
                    .all(|e| e.decision.score == 21 && e.failures.is_empty())
            })
        })
        .collect();
    for thread in threads {
        assert!(thread.join().expect("thread"));
    }
}

#[test]
fn decision_serializes_with_lowercase_sensitivity() {
    let d = decide(r#"decision.set_sensitivity("personal");"#, &alert(None));
    let json = serde_json::to_value(&d).expect("serialize");
    assert_eq!(json["sensitivity"], "personal");
    let back: Decision = serde_json::from_value(json).expect("deserialize");
    assert_eq!(back, d);
}

// --- the shipped rules ---

fn shipped() -> RuleSet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    // These tests check decisions, in an unoptimised build where the shipped scripts use more
    // CPU than in a release build (the budget itself has tests of its own above).
    let limits =
        RuleLimits { time_budget: std::time::Duration::from_secs(2), ..RuleLimits::default() };
    RuleSet::load(&dir, &limits).unwrap_or_else(|errors| {
        panic!("shipped rules: {}", errors.iter().map(|e| format!("{e}\n")).collect::<String>())
    })
}

fn shipped_decision(event: &Event, incident: &IncidentView) -> Decision {
    let evaluation = shipped().evaluate(event, incident, &Triage::default());
    assert_eq!(evaluation.failures, [], "shipped rules failed");
    evaluation.decision
}

#[test]
fn the_readme_examples_run() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/README.md"))
            .expect("rules/README.md");
    let example = readme
        .split("```rhai\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a rhai example block");
    let rules = load(&[("10-readme.rhai", example)]);
    let mut staging_payments = alert(Some("critical"));
    staging_payments.service = Some("payments".into());
    staging_payments.labels.insert("env".into(), "staging".into());
    let mut report = report(true, "I cannot pay");
    report.customer.as_mut().unwrap().email = Some("jo@example.com".into());
    let run = |event: &Event| {
        let evaluation = rules.evaluate(event, &incident(), &Triage::default());
        assert_eq!(evaluation.failures, [], "{event:?}");
        evaluation.decision
    };
    assert!(run(&alert(None)).rules_fired.is_empty());
    let d = run(&staging_payments);
    assert_eq!((d.score, d.severity.as_str()), (110, "sev3"));
    assert_eq!(d.policy.as_deref(), Some("payments"));
    let d = run(&report);
    assert_eq!(d.severity, "sev1");
    assert_eq!(d.sensitivity, Sensitivity::Personal);
    assert!(d.roles.contains("legal_liaison"));
}

#[test]
fn shipped_rules_load_in_order() {
    assert_eq!(
        shipped().names(),
        [
            "10-service-weight.rhai",
            "20-customer-reports.rhai",
            "30-recurrence.rhai",
            "40-maintenance.rhai",
            "45-dependencies.rhai",
            "50-customer-facing.rhai",
        ]
    );
}

#[test]
fn shipped_plain_alert_is_left_alone() {
    let d = shipped_decision(&alert(Some("warning")), &incident());
    assert_eq!((d.score, d.severity.as_str()), (40, "sev3"));
    assert!(d.rules_fired.is_empty(), "{:?}", d.reasons);
}

#[test]
fn shipped_service_weight_scores_and_tags_payments() {
    let mut event = alert(Some("warning"));
    event.labels.insert("service".into(), "checkout".into());
    let d = shipped_decision(&event, &incident());
    assert_eq!((d.score, d.severity.as_str()), (70, "sev2"));
    assert_eq!(d.tags, set(&["payments"]));
    assert_eq!(d.policy.as_deref(), Some("payments"));
    assert!(d.reasons.contains(&"10-service-weight.rhai: +30 revenue path: checkout".to_owned()));
}

#[test]
fn shipped_customer_report_with_contact_details_involves_legal() {
    let mut event = report(true, "Cannot log in after reset");
    event.customer.as_mut().unwrap().email = Some("jo@example.com".into());
    let d = shipped_decision(&event, &incident());
    assert_eq!(d.sensitivity, Sensitivity::Personal);
    assert!(d.roles.contains("legal_liaison"));
}

#[test]
fn shipped_customer_report_mentioning_card_data_is_financial() {
    let mut event = report(true, "Charged twice");
    event
        .details
        .insert("description".into(), "My CARD number shows up in the receipt email".into());
    let d = shipped_decision(&event, &incident());
    assert_eq!(d.sensitivity, Sensitivity::Financial);
    assert_eq!(d.score, 70);
    assert!(d.roles.contains("legal_liaison"));
}

#[test]
fn shipped_customer_report_words_without_contact_details_still_count() {
    let d = shipped_decision(&report(true, "Someone changed my address"), &incident());
    assert_eq!(d.sensitivity, Sensitivity::Personal);
    // Nothing personal: no legal liaison.
    let d = shipped_decision(&report(true, "The app is slow"), &incident());
    assert_eq!(d.sensitivity, Sensitivity::None);
    assert!(!d.roles.contains("legal_liaison"));
}

#[test]
fn shipped_unverified_report_waits_for_verification() {
    let mut event = report(false, "My password was leaked");
    event.customer.as_mut().unwrap().email = Some("jo@example.com".into());
    let d = shipped_decision(&event, &incident());
    assert_eq!(d.sensitivity, Sensitivity::None);
    assert!(d.roles.is_empty());
    assert!(!d.customer_facing);
}

#[test]
fn shipped_recurrence_raises_the_score() {
    let mut burst = incident();
    burst.count = 12;
    burst.first_seen = at("2026-11-02T10:02:00Z");
    assert_eq!(shipped_decision(&alert(None), &burst).score, 30);
    burst.count = 60;
    assert_eq!(shipped_decision(&alert(None), &burst).score, 40);
    // The same count spread over an hour is not a burst.
    burst.first_seen = at("2026-11-02T09:05:00Z");
    assert_eq!(shipped_decision(&alert(None), &burst).score, 20);
}

#[test]
fn shipped_maintenance_label_suppresses_alerts_only() {
    let mut event = alert(Some("critical"));
    event.labels.insert("maintenance".into(), "true".into());
    let d = shipped_decision(&event, &incident());
    assert_eq!(d.suppressed.as_deref(), Some("maintenance window"));
    assert_eq!(d.severity, "sev1");

    let mut event = report(true, "Checkout is down");
    event.labels.insert("maintenance".into(), "true".into());
    assert_eq!(shipped_decision(&event, &incident()).suppressed, None);
}

#[test]
fn shipped_customer_facing_involves_communications_only_when_serious() {
    let mut event = alert(Some("info"));
    event.service = Some("login".into());
    let minor = shipped_decision(&event, &incident());
    assert!(minor.customer_facing);
    assert!(minor.roles.is_empty());

    event.severity = Some("critical".into());
    let serious = shipped_decision(&event, &incident());
    assert!(serious.customer_facing);
    assert_eq!(serious.roles, set(&["communications_lead"]));
}

// --- the service catalog and declarations ---

fn shop_triage() -> Triage {
    let yaml = r#"
- {name: stripe, vendor: true}
- {name: payments, owner: payments_oncall, depends_on: [stripe]}
- {name: checkout, owner: ana, customer_facing: true, depends_on: [payments]}
- {name: reporting, depends_on: [payments]}
"#;
    let raw = serde_saphyr::from_str(yaml).unwrap();
    let people = BTreeSet::from(["ana".to_string()]);
    let roles = BTreeSet::from(["payments_oncall".to_string()]);
    let (catalog, problems) = crate::catalog::build(raw, &people, &roles);
    assert!(problems.is_empty(), "{problems:?}");
    Triage { catalog: std::sync::Arc::new(catalog), ..Triage::default() }
}

#[test]
fn rules_ask_the_catalog_who_depends_on_a_service_and_who_owns_it() {
    let script = r#"
        let down = dependents(event.service);
        decision.tag("down-" + down.len());
        for d in down { decision.tag("dep-" + d); }
        if is_customer_facing_downstream(event.service) { decision.add_score(25, "customers downstream"); }
        if is_vendor(event.service) { decision.tag("vendor"); }
        decision.tag("owner-" + (owner("payments") ?? "none"));
        decision.tag("checkout-owner-" + owner("checkout"));
        if owner(event.service) == () { decision.tag("vendor-unowned"); }
        if !is_customer_facing_downstream(()) && dependents(()).is_empty() { decision.tag("no-service-ok"); }
    "#;
    let rules = load(&[("10-deps.rhai", script)]);
    let mut event = alert(Some("warning"));
    event.service = Some("stripe".into());
    let evaluation = rules.evaluate(&event, &incident(), &shop_triage());
    assert_eq!(evaluation.failures, []);
    let d = evaluation.decision;
    assert_eq!(d.score, 40 + 25);
    assert_eq!(
        d.tags,
        set(&[
            "down-3",
            "dep-checkout",
            "dep-payments",
            "dep-reporting",
            "vendor",
            "owner-payments_oncall",
            "checkout-owner-ana",
            "vendor-unowned",
            "no-service-ok",
        ])
    );
    // Without a catalog the same script runs and finds nothing downstream.
    let d = rules.evaluate(&event, &incident(), &Triage::default()).decision;
    assert_eq!(d.score, 40);
    assert!(d.tags.contains("down-0"));
}

#[test]
fn rules_read_a_declarations_assessment_and_cannot_lower_its_severity() {
    let decl: crate::declaration::Declaration = serde_json::from_value(serde_json::json!({
        "title": "Vendor advisory: card data may be exposed",
        "description": "Advisory from the payment provider",
        "impact": {"services": ["stripe"], "customer_impact": false,
                   "data_sensitivity": "internal", "estimated_reach": "all EU customers"},
        "severity": "sev2",
    }))
    .unwrap();
    let event =
        crate::declaration::normalize(&decl, "ana", Uuid::nil(), at("2026-11-02T10:05:00Z"));
    let script = r#"
        let a = event.assessment;
        if event.kind == "declaration" && a.declared_by == "ana" && a.services[0] == "stripe"
            && a.estimated_reach == "all EU customers" && a.severity == "sev2"
            && a.data_sensitivity == "internal" && !a.customer_impact {
            decision.tag("read");
        }
        decision.add_score(-50, "looks minor");
        decision.cap_severity("sev4", "trying to lower it");
    "#;
    let d = load(&[("10-decl.rhai", script)]).evaluate(&event, &incident(), &Triage::default());
    assert_eq!(d.failures, []);
    assert!(d.decision.tags.contains("read"));
    assert_eq!(d.decision.severity, "sev2", "the declared severity is a floor");
    assert_eq!(d.decision.sensitivity, crate::rules::Sensitivity::Internal);
    let raise = load(&[("10-up.rhai", r#"decision.set_severity("sev1", "raise");"#)]);
    assert_eq!(raise.evaluate(&event, &incident(), &Triage::default()).decision.severity, "sev1");
    // An alert without an assessment sees ().
    let plain = load(&[("10-a.rhai", r#"if event.assessment == () { decision.tag("none"); }"#)]);
    let d = plain.evaluate(&alert(None), &incident(), &Triage::default()).decision;
    assert!(d.tags.contains("none"));
}

#[test]
fn the_readme_catalog_example_runs() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/README.md"))
            .expect("rules/README.md");
    let example = readme
        .split("## Asking the service catalog")
        .nth(1)
        .and_then(|rest| rest.split("```rhai\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("a rhai example block about the catalog");
    let rules = load(&[("10-readme.rhai", example)]);
    let mut event = alert(Some("warning"));
    event.service = Some("stripe".into());
    let evaluation = rules.evaluate(&event, &incident(), &shop_triage());
    assert_eq!(evaluation.failures, []);
    let d = evaluation.decision;
    assert_eq!(d.score, 60);
    assert!(d.customer_facing);
    assert_eq!(d.tags, set(&["wide-vendor-outage", "unowned"]));
    let decl: crate::declaration::Declaration = serde_json::from_value(serde_json::json!({
        "title": "t", "description": "d",
        "impact": {"customer_impact": false, "data_sensitivity": "none", "estimated_reach": 20000},
    }))
    .unwrap();
    let event =
        crate::declaration::normalize(&decl, "ana", Uuid::nil(), at("2026-11-02T10:05:00Z"));
    let evaluation = rules.evaluate(&event, &incident(), &shop_triage());
    assert_eq!(evaluation.failures, []);
    assert_eq!(evaluation.decision.severity, "sev1");
}

// Remembered outcomes (`memo`): a script's outcome is reused only for the same values at the
// paths it reads and the same decision so far.

fn labelled(pairs: &[(&str, &str)]) -> Event {
    let mut event = alert(Some("warning"));
    for (k, v) in pairs {
        event.labels.insert((*k).into(), (*v).into());
    }
    event
}

fn reads_of(script: &str) -> memo::Reads {
    let set = load(&[("10-test.rhai", script)]);
    set.rules[0].reads.clone()
}

#[test]
fn the_text_of_a_script_says_what_it_reads_and_whether_it_is_remembered() {
    use memo::Root::{Event as E, Incident as I};
    let paths = |script: &str| -> Option<Vec<(memo::Root, Vec<String>)>> {
        reads_of(script).paths.map(|p| {
            p.into_iter()
                .map(|p| (p.root, p.names.iter().map(|s| s.to_string()).collect()))
                .collect()
        })
    };
    let p = |root, path: &[&str]| (root, path.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(
        paths("let s = event.service ?? event.labels.service; if event.summary.len() > 3 {}"),
        Some(vec![p(E, &["labels", "service"]), p(E, &["service"]), p(E, &["summary"])])
    );
    assert_eq!(
        paths("if incident.severity == \"sev1\" { decision.tag(\"x\"); }"),
        Some(vec![p(I, &["severity"])])
    );
    assert_eq!(
        paths("let k = \"team\"; if event.labels[k] == \"db\" {}"),
        Some(vec![p(E, &["labels"])])
    );
    assert_eq!(paths("decision.add_score(1, \"always\");"), Some(vec![]));
    // Not remembered: the whole event, an indexed root, a method on the root, a field that
    // changes every time, output, the clock, an indirect call.
    for script in [
        "let e = event; if e.labels.team == \"db\" {}",
        "if event[\"kind\"] == \"alert\" {}",
        "if event.keys().len() > 3 {}",
        "if event.id == \"x\" {}",
        "let c = incident.count; if c > 3 {}",
        "if incident.age_seconds > 3.5 {}",
        "if incident.count + 1 > 3 {}",
        "if incident.count > 3 && incident.count.to_string() == \"5\" {}",
        "let limit = 3; if incident.count > limit {}",
        "print(event.summary);",
        "debug(event.summary);",
        "let t = timestamp();",
        "let f = Fn(\"to_string\"); f.call(1);",
        "fn f(e) { e.kind } if f(event) == \"alert\" {}",
    ] {
        let reads = reads_of(script);
        assert_eq!(reads.paths, None, "{script}");
    }
    // Bound only where named; both where the analysis cannot follow the script.
    let reads = reads_of("if incident.count > 3 {}");
    assert!(!reads.event() && reads.incident());
    let reads = reads_of("let e = event;");
    assert!(reads.event() && !reads.incident());
    let reads = reads_of("let x = loop { break 1; };");
    assert_eq!((reads.event(), reads.incident(), reads.paths), (true, true, None));
}

#[test]
fn a_remembered_outcome_is_reused_only_for_the_same_values_and_decision_so_far() {
    let set = load(&[
        ("10-team.rhai", r#"if event.labels.team == "db" { decision.add_score(50, "database"); }"#),
        ("20-top.rhai", r#"if decision.severity == "sev1" { decision.tag("top"); }"#),
    ]);
    let triage = Triage::default();
    let eval = |event: &Event| set.evaluate(event, &incident(), &triage).decision;
    let hits = memo::hits();
    let db = eval(&labelled(&[("team", "db"), ("instance", "a")]));
    assert_eq!((db.score, db.severity.as_str()), (90, "sev1"));
    assert!(db.tags.contains("top"));
    assert_eq!(db.reasons, ["10-team.rhai: +50 database", "20-top.rhai: tag top"]);
    // Another label value: not the remembered outcome.
    let web = eval(&labelled(&[("team", "web"), ("instance", "a")]));
    assert_eq!((web.score, web.severity.as_str()), (40, "sev3"));
    assert!(web.tags.is_empty() && web.reasons.is_empty(), "{web:?}");
    assert_eq!(memo::hits(), hits, "nothing repeated yet");
    // The same values again (an unread label differs): both outcomes reused, same decision.
    let again = eval(&labelled(&[("team", "db"), ("instance", "b")]));
    assert_eq!(again, db);
    assert_eq!(memo::hits(), hits + 2);
    // Without the label: a value of its own (missing), not the unit or empty string.
    let none = eval(&labelled(&[]));
    assert_eq!(none.score, 40);
    let empty = eval(&labelled(&[("team", "")]));
    assert_eq!(empty.score, 40);
    // The second script reads only the decision so far: a different decision, a different key.
    let critical = eval(&alert(Some("critical")));
    assert_eq!(critical.severity, "sev1");
    assert!(critical.tags.contains("top"), "{critical:?}");
}

#[test]
fn remembered_paths_read_event_and_incident_fields_and_names_the_view_lacks() {
    let set = load(&[(
        "10-fields.rhai",
        r#"
        if event.source == "prometheus" && incident.status == "acknowledged" {
            decision.add_score(7, "acknowledged prometheus");
        }
        if event.no_such_field == () && event.annotations.runbook != () { decision.tag("runbook"); }
        "#,
    )]);
    let paths: Vec<String> = set.rules[0]
        .reads
        .paths
        .as_ref()
        .expect("remembered")
        .iter()
        .map(|p| p.names.join("."))
        .collect();
    assert_eq!(paths, ["annotations.runbook", "no_such_field", "source", "status"]);
    let triage = Triage::default();
    let mut acked = incident();
    acked.status = "acknowledged".into();
    let mut other_source = alert(Some("critical"));
    other_source.source = "grafana".into();
    let mut no_runbook = alert(Some("critical"));
    no_runbook.annotations.clear();
    let hits = memo::hits();
    let decide = |event: &Event, view: &IncidentView| {
        let d = set.evaluate(event, view, &triage).decision;
        (d.score, d.tags.contains("runbook"))
    };
    let base = decide(&alert(Some("critical")), &incident()).0;
    assert_eq!(decide(&alert(Some("critical")), &acked), (base + 7, true));
    assert_eq!(decide(&other_source, &acked), (base, true));
    assert_eq!(decide(&no_runbook, &acked), (base + 7, false));
    assert_eq!(memo::hits(), hits, "every value differed so far");
    // Each again: the remembered outcome, the same decision.
    assert_eq!(decide(&alert(Some("critical")), &acked), (base + 7, true));
    assert_eq!(decide(&no_runbook, &acked), (base + 7, false));
    assert_eq!(memo::hits(), hits + 2);
}

#[test]
fn scripts_that_are_not_remembered_see_every_event_and_failures_are_never_reused() {
    let set = load(&[
        (
            "10-copy.rhai",
            r#"let e = event; if e.labels.team == "db" { decision.add_score(50, "db"); }"#,
        ),
        ("20-count.rhai", r#"let c = incident.count; if c == 3 { decision.tag("third"); }"#),
        ("30-boom.rhai", r#"if event.labels.team == "boom" { throw "boom"; }"#),
    ]);
    let triage = Triage::default();
    let view = |count| IncidentView { count, is_new: count == 1, ..incident() };
    for (team, count, score, third) in
        [("db", 1, 90, false), ("web", 2, 40, false), ("db", 3, 90, true), ("web", 3, 40, true)]
    {
        let e = set.evaluate(&labelled(&[("team", team)]), &view(count), &triage);
        assert_eq!(e.failures, []);
        assert_eq!(e.decision.score, score, "{team} #{count}");
        assert_eq!(e.decision.tags.contains("third"), third, "{team} #{count}");
    }
    for _ in 0..2 {
        let e = set.evaluate(&labelled(&[("team", "boom")]), &view(1), &triage);
        assert_eq!(e.failures.len(), 1, "the failure every time: {e:?}");
    }
}

#[test]
fn counts_compared_with_numbers_are_remembered_by_the_comparisons_results() {
    let set = load(&[(
        "30-hot.rhai",
        r#"
        if incident.count >= 10 && 600 >= incident.age_seconds { decision.add_score(10, "hot"); }
        if incident.count == 3 { decision.tag("third"); }
        "#,
    )]);
    let reads = &set.rules[0].reads;
    let tests: Vec<(String, Option<memo::Test>)> = reads
        .paths
        .as_ref()
        .expect("remembered")
        .iter()
        .map(|p| (p.names.join("."), p.test))
        .collect();
    assert_eq!(tests.len(), 3, "{tests:?}");
    assert!(tests.iter().all(|(_, t)| t.is_some()), "{tests:?}");
    let triage = Triage::default();
    let view = |count, age: i64| IncidentView {
        count,
        is_new: count == 1,
        first_seen: at("2026-11-02T10:05:00Z") - jiff::SignedDuration::from_secs(age),
        ..incident()
    };
    let hits = memo::hits();
    let mut runs = 0;
    let base = set.evaluate(&alert(None), &view(1, 0), &triage).decision.score;
    for (count, age, hot, third) in [
        (1, 0, false, false),
        (2, 10, false, false),
        (3, 20, false, true),
        (4, 30, false, false),
        (9, 40, false, false),
        (10, 50, true, false),
        (11, 60, true, false),
        (12, 600, true, false),
        (13, 601, false, false),
        (3, 700, false, true),
    ] {
        let e = set.evaluate(&alert(None), &view(count, age), &triage);
        runs += e.ran;
        let d = e.decision;
        assert_eq!(d.score, base + if hot { 10 } else { 0 }, "count {count}, age {age}");
        assert_eq!(d.tags.contains("third"), third, "count {count}, age {age}");
    }
    // Ran only where the results were new: (3, 20), (10, 50), (13, 601) and (3, 700); the
    // first evaluation above ran for (1, 0).
    assert_eq!(runs, 4);
    assert_eq!(memo::hits(), hits + 6);
}

#[test]
fn a_new_catalog_or_rule_set_starts_a_new_memo() {
    use crate::catalog::Catalog;
    let hits = memo::hits();
    let script = r#"if dependents(event.labels.service).len() > 0 { decision.tag("upstream"); }"#;
    let set = load(&[("10-up.rhai", script)]);
    let event = labelled(&[("service", "db")]);
    let triage = Triage { catalog: Arc::new(Catalog::default()), ..Triage::default() };
    assert!(!set.evaluate(&event, &incident(), &triage).decision.tags.contains("upstream"));
    let event = labelled(&[("service", "payments")]);
    assert!(!set.evaluate(&event, &incident(), &triage).decision.tags.contains("upstream"));
    // The same event under a catalog where others depend on it.
    let triage = shop_triage();
    assert!(set.evaluate(&event, &incident(), &triage).decision.tags.contains("upstream"));
    // Another set with a different script under the same name and position.
    let other = load(&[("10-up.rhai", r#"decision.tag("other");"#)]);
    assert!(other.evaluate(&event, &incident(), &triage).decision.tags.contains("other"));
    assert_eq!(memo::hits(), hits, "nothing was reused across catalogs or sets");
}

#[test]
fn the_shipped_rules_that_read_only_steady_fields_are_remembered() {
    let set = RuleSet::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").as_path(),
        &RuleLimits::default(),
    )
    .expect("shipped rules load");
    let remembered: Vec<(String, bool)> =
        set.rules.iter().map(|r| (r.name.to_string(), r.reads.paths.is_some())).collect();
    assert_eq!(
        remembered,
        [
            ("10-service-weight.rhai".to_string(), true),
            ("20-customer-reports.rhai".to_string(), true),
            ("30-recurrence.rhai".to_string(), true),
            ("40-maintenance.rhai".to_string(), true),
            ("45-dependencies.rhai".to_string(), true),
            ("50-customer-facing.rhai".to_string(), true),
        ]
    );
    // Only the fields the scripts read are bound: no timestamps to format, no event id.
    let names = |fields: &Option<Vec<usize>>, all: rhai::Dynamic| -> Vec<String> {
        let all = all.cast::<rhai::Map>();
        let keys: Vec<String> = all.keys().map(|k| k.to_string()).collect();
        fields.as_ref().expect("a partial map").iter().map(|&i| keys[i].clone()).collect()
    };
    assert_eq!(
        names(&set.incident_fields, view::incident(&incident(), at("2026-11-02T10:05:00Z"))),
        ["age_seconds", "count"]
    );
    assert_eq!(
        names(&set.event_fields, view::event(&alert(None))),
        ["assessment", "customer", "details", "kind", "labels", "service", "summary", "verified"]
    );
}

#[test]
fn the_maps_bound_hold_what_any_script_reads_and_all_of_it_for_a_whole_use() {
    let rules = load(&[
        ("10-team.rhai", r#"if event.labels.team == "db" { decision.tag("db"); }"#),
        (
            "20-kind.rhai",
            r#"if event.kind == "alert" && incident.is_new { decision.tag("alert"); }"#,
        ),
    ]);
    assert_eq!(rules.event_fields.as_ref().map(Vec::len), Some(2));
    let e = rules.evaluate(&labelled(&[("team", "db")]), &incident(), &Triage::default());
    assert_eq!(e.decision.tags, set(&["alert", "db"]));
    let whole = load(&[
        ("10-team.rhai", r#"if event.labels.team == "db" { decision.tag("db"); }"#),
        ("20-all.rhai", r#"let e = event; decision.add_score(e.keys().len(), "fields");"#),
    ]);
    assert_eq!(whole.event_fields, None);
    let e = whole.evaluate(&labelled(&[("team", "db")]), &incident(), &Triage::default());
    assert_eq!(e.failures, []);
    assert_eq!(e.decision.tags, set(&["db"]));
    assert_eq!(e.decision.score, 40 + 18, "the whole map: {:?}", e.decision.reasons);
}

/// The scripts of issue 17 that crashed the daemon: a loop nesting closures in closures (in
/// an array, through `call`, in a map). Each nests one level per iteration in a few
/// operations, uncounted by the size limits, until dropping the value overflows the stack.
const CLOSURE_BOMBS: [&str; 3] = [
    "let a = [];\nloop { let b = a; a = [|x| b]; }",
    "let g = |x| x;\nloop { let h = g; g = |x| h.call(x); }",
    "let m = #{};\nloop { let n = m; m = #{f: |x| n}; }",
];

#[test]
fn closures_that_capture_variables_and_curry_are_refused_at_load() {
    let limits = RuleLimits::default();
    for (source, var) in CLOSURE_BOMBS.iter().zip(["`b`", "`h`", "`n`"]) {
        let err = RuleSet::from_source("bomb.rhai", source, &limits).unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("may not capture variables") && err.message.contains(var));
    }
    // Inside a function, and explicit currying.
    let inside = "fn f(a) { let b = a; [|x| b] }\nlet a = f([]);";
    let err = RuleSet::from_source("f.rhai", inside, &limits).unwrap_err();
    assert!(err.message.contains("may not capture variables"), "{err}");
    let curried = [
        "fn f(a, b) { a }\nlet g = Fn(\"f\");\nloop { g = g.curry(g); }",
        "let n = 1;\nlet g = curry(Fn(\"f\"), n);",
    ];
    for curried in curried {
        let err = RuleSet::from_source("c.rhai", curried, &limits).unwrap_err();
        assert!(err.message.contains("`curry` is not available"), "{curried}: {err}");
    }
    // Closures that capture nothing stay available.
    let d = decide("decision.add_score([1, 2, 3].filter(|x| x > 1).len(), \"two\");", &alert(None));
    assert_eq!(d.score, 22);
}

#[test]
fn a_rule_recursing_toward_the_end_of_the_stack_is_halted_and_disabled() {
    // Only the stack stops this recursion: calls, operations and time are all but unlimited.
    let limits = RuleLimits {
        max_call_levels: usize::MAX,
        max_operations: 0,
        time_budget: Duration::from_secs(600),
        ..RuleLimits::default()
    };
    let set = load_with(
        &[
            ("10-deep.rhai", "fn down(n) { down(n + 1) }\ndown(0);"),
            ("20-ok.rhai", r#"decision.add_score(5, "ok");"#),
        ],
        &limits,
    )
    .unwrap();
    let first = set.evaluate(&alert(None), &incident(), &Triage::default());
    assert_eq!(first.failures.len(), 1, "{:?}", first.failures);
    assert_eq!(first.failures[0].rule, "10-deep.rhai");
    assert!(first.failures[0].error.contains("nested too deeply"), "{}", first.failures[0].error);
    assert!(first.failures[0].error.contains("disabled until the rules are reloaded"));
    assert!(first.failures[0].disabled);
    assert_eq!(first.decision.score, 25, "the other rules still ran");
    // Not retried: the next event skips it.
    let next = set.evaluate(&alert(None), &incident(), &Triage::default());
    assert_eq!(next.failures, []);
    assert_eq!(next.decision.score, 25);
    assert_eq!(set.disabled().len(), 1);
    assert_eq!(set.disabled()[0].0, "10-deep.rhai");
}

/// The deepest values the limits allow, 20,000 levels of arrays and maps (built here as an
/// event's details, which ingest never lets arrive so deep, rather than by a script, which
/// would take minutes in a debug build), cloned, hashed, formatted and dropped in a script:
/// within the headroom the sandbox keeps below the interpreter (`stack::HEADROOM`).
#[test]
fn the_deepest_values_fit_the_headroom() {
    let big = std::thread::Builder::new().stack_size(1 << 30);
    big.spawn(|| {
        let mut deep = serde_json::Value::Array(Vec::new());
        for i in 0..20_000 {
            deep = if i % 2 == 1 {
                serde_json::Value::Object(serde_json::Map::from_iter([("x".into(), deep)]))
            } else {
                serde_json::Value::Array(vec![deep])
            };
        }
        let mut event = alert(None);
        event.details.insert("deep".into(), deep);
        let limits = RuleLimits { time_budget: Duration::from_secs(600), ..RuleLimits::default() };
        let set = load_with(
            &[
                ("10-clone.rhai", "let a = event.details.deep; let b = a;"),
                ("20-hash.rhai", "let a = event.details.deep; switch a { _ => 1 }"),
                ("30-throw.rhai", "throw event.details.deep;"),
                ("40-ok.rhai", r#"decision.add_score(1, "still here");"#),
            ],
            &limits,
        )
        .unwrap();
        // On a thread of the default size: the evaluation moves to a rule thread's stack.
        let eval = std::thread::scope(|s| {
            s.spawn(|| set.evaluate(&event, &incident(), &Triage::default())).join().unwrap()
        });
        assert_eq!(eval.decision.score, 21);
        assert_eq!(eval.failures.len(), 1, "{:?}", eval.failures);
        assert!(eval.failures[0].error.len() < 1100, "a thrown value's message is cut");
    })
    .unwrap()
    .join()
    .unwrap();
}

#[test]
fn mentions_any_gives_the_same_answers_for_large_inputs() {
    let words = |ws: &[&str]| -> rhai::Array {
        ws.iter().map(|w| rhai::Dynamic::from(w.to_string())).collect()
    };
    let mut text = "x".repeat(1 << 20);
    let long_word = format!("{}Y", "x".repeat(128 << 10));
    // Past the naive path's cost: the automaton answers.
    assert!(!engine::mentions_any(&text, &words(&[&long_word])));
    text.push_str("xxxy");
    assert!(engine::mentions_any(&text, &words(&[&long_word])));
    assert!(engine::mentions_any(&text, &words(&["nothing", "XXXY"])));
    assert!(!engine::mentions_any(&text, &words(&["nothing", "z"])));
    assert!(engine::mentions_any(&text, &words(&[""])), "an empty word is in every text");
    // And on the naive path, the same.
    assert!(engine::mentions_any("My CARD", &words(&["card"])));
    assert!(!engine::mentions_any("My CARD", &words(&["cards"])));
}

#[test]
fn clock_helpers_answer_for_the_arrival_time_in_the_zone_named() {
    let set = load(&[(
        "10-clock.rhai",
        r#"
        decision.add_score(local_hour("Europe/Berlin"), "hour");
        if local_weekday("America/New_York") == 7 { decision.tag("sunday-in-new-york"); }
        if is_business_hours("America/New_York") { decision.tag("ny-open"); }
        if is_night("Europe/Berlin") { decision.tag("berlin-night"); }
        "#,
    )]);
    let mut triage = Triage::default();
    let decide = |when: &str, triage: &Triage| {
        let event = Event { received_at: at(when), ..alert(None) };
        let eval = set.evaluate(&event, &incident(), triage);
        assert_eq!(eval.failures, []);
        eval.decision
    };
    // Monday 2026-03-02 03:00 UTC: 04:00 in Berlin (night), Sunday 22:00 in New York.
    let d = decide("2026-03-02T03:00:00Z", &triage);
    assert_eq!(d.score, 24);
    assert_eq!(d.tags, ["berlin-night", "sunday-in-new-york"].map(String::from).into());
    // 15:00 UTC: 16:00 in Berlin, Monday 10:00 in New York.
    let d = decide("2026-03-02T15:00:00Z", &triage);
    assert_eq!((d.score, d.tags), (36, ["ny-open".to_string()].into()));
    // Summer time: 15:00 UTC is 17:00 in Berlin.
    assert_eq!(decide("2026-07-01T15:00:00Z", &triage).score, 37);
    // The configured hours: New York opens at 11:00, and only on weekends.
    triage.hours.business_from = 11 * 60;
    assert!(decide("2026-03-02T15:00:00Z", &triage).tags.is_empty());
    triage.hours.business_days = [false, false, false, false, false, true, true];
    triage.hours.business_from = 9 * 60;
    assert!(decide("2026-03-07T15:00:00Z", &triage).tags.contains("ny-open"), "a Saturday");
}

#[test]
fn a_remembered_rule_reading_the_hour_runs_again_when_the_hour_changes() {
    let set = load(&[(
        "10-night.rhai",
        r#"if is_night("Europe/Berlin") { decision.add_score(30, "night in Berlin"); }"#,
    )]);
    assert!(set.rules[0].reads.paths.is_some(), "remembered, by the helper's answer");
    let triage = Triage::default();
    let score = |when: &str| {
        let event = Event { received_at: at(when), ..alert(None) };
        set.evaluate(&event, &incident(), &triage).decision.score
    };
    let hits = memo::hits();
    assert_eq!(score("2026-03-02T12:00:00Z"), 20);
    assert_eq!(score("2026-03-02T12:30:00Z"), 20);
    assert_eq!(memo::hits(), hits + 1, "the same answer: the outcome is reused");
    // Night now: not the remembered day-time outcome.
    assert_eq!(score("2026-03-02T22:30:00Z"), 50);
    assert_eq!(score("2026-03-02T12:45:00Z"), 20);
    // A zone computed at run time: the script always runs.
    let computed = load(&[(
        "10-tz.rhai",
        r#"let tz = "Europe/" + "Berlin"; if is_night(tz) { decision.tag("n"); }"#,
    )]);
    assert!(computed.rules[0].reads.paths.is_none());
}

#[test]
fn an_unknown_time_zone_is_a_load_error_or_a_rule_failure() {
    let err = RuleSet::from_source(
        "tz.rhai",
        "\nlet h = local_hour(\"Europe/Berln\");",
        &RuleLimits::default(),
    )
    .unwrap_err();
    assert_eq!(err.line, Some(2), "{err}");
    assert!(err.message.contains("\"Europe/Berln\" is not a time zone"), "{err}");
    let eval =
        run(&[("10-tz.rhai", r#"let tz = "Mars/" + "Olympus"; is_night(tz);"#)], &alert(None));
    assert!(eval.failures[0].error.contains("is not a time zone"), "{:?}", eval.failures);
}

#[test]
fn depends_on_lists_what_a_service_needs_transitively() {
    let d = run(
        &[(
            "10-deps.rhai",
            r#"for s in depends_on("checkout") { decision.tag(s); } if depends_on(()).is_empty() { decision.tag("none"); }"#,
        )],
        &alert(None),
    );
    assert_eq!(d.failures, []);
    let triage = shop_triage();
    let set = load(&[("10-deps.rhai", r#"for s in depends_on("checkout") { decision.tag(s); }"#)]);
    let d = set.evaluate(&alert(None), &incident(), &triage).decision;
    assert!(!d.tags.is_empty(), "{:?}", d.tags);
    let expected: std::collections::BTreeSet<String> =
        triage.catalog.depends_on("checkout").into_iter().collect();
    assert_eq!(d.tags, expected);
}
