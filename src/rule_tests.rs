//! `tocsin test`: runs rule test cases written as YAML, like promtool's rule tests, against
//! the real normalizers, incident lifecycle and compiled rules — without a store or a network.
//!
//! A case file holds `cases:`; each case posts one or more events (in any ingest format) from
//! one source, in order, and states what the decision for the last event's incident must be:
//!
//! ```yaml
//! cases:
//!   - name: a checkout outage is sev1
//!     source: prometheus            # optional, default "test"
//!     events:
//!       - format: alertmanager_v2   # alertmanager_v2 | alertmanager_webhook | pagerduty | report | canonical
//!         body: [{labels: {alertname: CheckoutDown, service: checkout, severity: critical}}]
//!         at: 2026-03-02T03:00:00Z  # optional: when it arrives (what `local_hour(tz)` and the
//!                                   # other clock helpers see); default: now
//!     expect:
//!       score: 110                  # or {min: 100, max: 130}
//!       severity: sev1
//!       policy: payments            # or null for none
//!       tags: [payments]            # these must be present (others may be too)
//!       sensitivity: personal       # none | internal | personal | financial
//!       customer_facing: true
//!       roles: [legal_liaison]      # these must be present
//!       suppressed: true            # or false, or text the reason must contain
//!       rule_failures: 0            # rules that failed for the last event
//! ```

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Deserialize;

use crate::event::{Action, Format};
use crate::incident::{self, Incident, Outcome};
use crate::normalize::{self, Context};
use crate::rules::{Evaluation, RuleSet, Triage};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    source: Option<String>,
    events: Vec<Input>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    format: Format,
    body: serde_json::Value,
    /// When the event arrives (RFC 3339); default now.
    #[serde(default)]
    at: Option<Timestamp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    score: Option<ScoreExpect>,
    severity: Option<String>,
    #[serde(default, deserialize_with = "some_or_null")]
    policy: Option<Option<String>>,
    tags: Option<BTreeSet<String>>,
    sensitivity: Option<String>,
    customer_facing: Option<bool>,
    roles: Option<BTreeSet<String>>,
    suppressed: Option<SuppressedExpect>,
    rule_failures: Option<usize>,
}

/// Distinguishes `policy: null` (expect none) from a missing key (don't check).
fn some_or_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ScoreExpect {
    Exact(i64),
    Range {
        #[serde(default)]
        min: Option<i64>,
        #[serde(default)]
        max: Option<i64>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SuppressedExpect {
    Flag(bool),
    Reason(String),
}

/// The outcome of one case: `None` when it passed, else the differences.
#[derive(Debug)]
pub struct CaseResult {
    pub file: PathBuf,
    pub name: String,
    pub problems: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub results: Vec<CaseResult>,
    /// Files that could not be read or parsed.
    pub errors: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.problems.is_empty()).count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.passed() + self.errors.len()
    }

    /// Human-readable: one line per case, the differences under each failure, and the summary
    /// line `N passed, M failed`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for e in &self.errors {
            let _ = writeln!(out, "ERROR {e}");
        }
        for r in &self.results {
            let verdict = if r.problems.is_empty() { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "{verdict} {}: {}", r.file.display(), r.name);
            for p in &r.problems {
                let _ = writeln!(out, "       {p}");
            }
        }
        let _ = writeln!(out, "{} passed, {} failed", self.passed(), self.failed());
        out
    }
}

/// Case files under `paths` (a file, or every `*.yaml`/`*.yml` in a directory, sorted).
fn case_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries =
                std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            found.sort();
            files.extend(found);
        } else if path.exists() {
            files.push(path.clone());
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    Ok(files)
}

/// Runs every case in `paths` against `rules` and `triage`.
pub fn run(paths: &[PathBuf], rules: &RuleSet, triage: &Triage) -> Report {
    let mut report = Report::default();
    let files = match case_files(paths) {
        Ok(files) => files,
        Err(e) => {
            report.errors.push(e);
            return report;
        }
    };
    for file in files {
        let parsed = std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_saphyr::from_str::<CaseFile>(&text).map_err(|e| e.to_string()));
        match parsed {
            Ok(cases) => {
                for case in cases.cases {
                    let problems = run_case(&case, rules, triage);
                    report.results.push(CaseResult {
                        file: file.clone(),
                        name: case.name,
                        problems,
                    });
                }
            }
            Err(e) => report.errors.push(format!("{}: {e}", file.display())),
        }
    }
    report
}

fn normalize_input(
    input: &Input,
    ctx: Context<'_>,
    triage: &Triage,
) -> Result<Vec<crate::event::Event>, String> {
    let body = serde_json::to_vec(&input.body).map_err(|e| e.to_string())?;
    let normalized = match input.format {
        // A declaration by the user named as the case's source.
        Format::Declaration => crate::declaration::parse(&body, triage).map(|d| {
            let event =
                crate::declaration::normalize(&d, ctx.source, crate::event_id::new(), ctx.now);
            normalize::Normalized { events: vec![event], rejected: Vec::new() }
        }),
        Format::AlertmanagerV2 => normalize::alertmanager_v2(&body, ctx),
        Format::AlertmanagerWebhook => normalize::alertmanager_webhook(&body, ctx),
        Format::Report => normalize::report(&body, ctx),
        Format::Canonical => normalize::canonical(&body, ctx),
        Format::Pagerduty => normalize::parse_pagerduty(&body).and_then(|e| e.into_normalized(ctx)),
    }
    .map_err(|e| format!("the {} body was refused: {e}", input.format.as_str()))?;
    if let Some(bad) = normalized.rejected.first() {
        return Err(format!("the {} body was refused: {bad}", input.format.as_str()));
    }
    Ok(normalized.events)
}

/// Feeds the events through normalize → incident → rules in order, as the daemon would, and
/// compares the last event's decision with the expectation.
fn run_case(case: &Case, rules: &RuleSet, triage: &Triage) -> Vec<String> {
    let source = case.source.as_deref().unwrap_or("test");
    let mut open: HashMap<String, Incident> = HashMap::new();
    let mut next_id = 1;
    let mut last: Option<Evaluation> = None;
    for (i, input) in case.events.iter().enumerate() {
        let ctx = Context::new(source, input.at.unwrap_or_else(Timestamp::now));
        let events = match normalize_input(input, ctx, triage) {
            Ok(events) => events,
            Err(e) => return vec![format!("events[{i}]: {e}")],
        };
        for event in events {
            let current = open.get(&event.dedup_key).cloned();
            let view =
                current.as_ref().map(Incident::view).unwrap_or_else(|| incident::new_view(&event));
            let evaluation = rules.evaluate(&event, &view, triage);
            let outcome = incident::apply(current, &event, &evaluation, || {
                next_id += 1;
                next_id - 1
            });
            if let Outcome::Opened(incident, _) | Outcome::Updated(incident, _) = outcome {
                if incident.status.is_open() {
                    open.insert(event.dedup_key.clone(), incident);
                } else {
                    open.remove(&event.dedup_key);
                }
            }
            // Acknowledge and resolve do not re-triage: the decision that counts is the last
            // trigger's.
            if event.action == Action::Trigger {
                last = Some(evaluation);
            }
        }
    }
    let Some(evaluation) = last else {
        return vec!["no trigger event in the case: nothing was scored".to_string()];
    };
    compare(&case.expect, &evaluation)
}

fn compare(expect: &Expect, got: &Evaluation) -> Vec<String> {
    let d = &got.decision;
    let mut problems = Vec::new();
    let mut differ = |what: &str, want: String, have: String| {
        problems.push(format!("{what}: expected {want}, got {have}"));
    };
    match &expect.score {
        Some(ScoreExpect::Exact(s)) if *s != d.score => {
            differ("score", s.to_string(), d.score.to_string());
        }
        Some(ScoreExpect::Range { min, max })
            if min.is_some_and(|m| d.score < m) || max.is_some_and(|m| d.score > m) =>
        {
            let show = |v: &Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
            differ("score", format!("{}..{}", show(min), show(max)), d.score.to_string());
        }
        _ => {}
    }
    if let Some(s) = &expect.severity
        && s != &d.severity
    {
        differ("severity", s.clone(), d.severity.clone());
    }
    if let Some(p) = &expect.policy
        && p != &d.policy
    {
        differ("policy", format!("{p:?}"), format!("{:?}", d.policy));
    }
    if let Some(tags) = &expect.tags {
        let missing: Vec<&String> = tags.difference(&d.tags).collect();
        if !missing.is_empty() {
            differ("tags", format!("to include {missing:?}"), format!("{:?}", d.tags));
        }
    }
    if let Some(s) = &expect.sensitivity
        && s != d.sensitivity.as_str()
    {
        differ("sensitivity", s.clone(), d.sensitivity.as_str().to_string());
    }
    if let Some(c) = expect.customer_facing
        && c != d.customer_facing
    {
        differ("customer_facing", c.to_string(), d.customer_facing.to_string());
    }
    if let Some(roles) = &expect.roles {
        let missing: Vec<&String> = roles.difference(&d.roles).collect();
        if !missing.is_empty() {
            differ("roles", format!("to include {missing:?}"), format!("{:?}", d.roles));
        }
    }
    match (&expect.suppressed, &d.suppressed) {
        (Some(SuppressedExpect::Flag(true)), None) => {
            differ("suppressed", "true".into(), "false".into());
        }
        (Some(SuppressedExpect::Flag(false)), Some(r)) => {
            differ("suppressed", "false".into(), format!("{r:?}"));
        }
        (Some(SuppressedExpect::Reason(want)), have)
            if !have.as_ref().is_some_and(|h| h.contains(want.as_str())) =>
        {
            differ("suppressed", format!("a reason containing {want:?}"), format!("{have:?}"));
        }
        _ => {}
    }
    if let Some(n) = expect.rule_failures
        && n != got.failures.len()
    {
        let list: Vec<String> = got.failures.iter().map(ToString::to_string).collect();
        differ(
            "rule_failures",
            n.to_string(),
            format!("{} ({})", got.failures.len(), list.join("; ")),
        );
    }
    if !problems.is_empty() {
        problems.push(format!(
            "decision reasons: {}",
            if d.reasons.is_empty() { "(none)".to_string() } else { d.reasons.join("; ") }
        ));
        for f in &got.failures {
            problems.push(format!("rule failure: {f}"));
        }
    }
    problems
}

/// The default place for case files, relative to the working directory.
pub fn default_paths() -> Vec<PathBuf> {
    vec![Path::new("fixtures").join("rules")]
}
