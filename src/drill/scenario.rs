//! The drill scenario file: what happens when (events in any ingest format, people's actions)
//! and what must come of it (who is told what, when; incident states). Parsed strictly —
//! unknown keys are errors — and every problem is reported as `FILE:LINE:COL: path: message`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::{ConfigError, ConfigErrors};
use crate::event::Format;
use crate::notify::Channel;
use crate::outbox::Reason;

/// Where the simulated clock starts unless the scenario says (a Monday morning).
pub const DEFAULT_START: &str = "2026-03-02T09:00:00Z";
/// How long the simulation runs past the last timeline step or expectation by default.
pub const DEFAULT_TAIL: SignedDuration = SignedDuration::from_hours(1);
const MAX_SCENARIO_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    description: Option<String>,
    config: Option<Spanned<String>>,
    start: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
    until: Option<Spanned<String>>,
    tolerance: Option<Spanned<String>>,
    #[serde(default)]
    timeline: Vec<Spanned<RawStep>>,
    expect: Option<Spanned<RawExpect>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    at: Spanned<String>,
    event: Option<serde_json::Value>,
    alertmanager: Option<serde_json::Value>,
    alertmanager_webhook: Option<serde_json::Value>,
    pagerduty: Option<serde_json::Value>,
    report: Option<serde_json::Value>,
    /// A declared incident: the body of `POST /api/v1/incidents`, declared by `user:drill`.
    declare: Option<serde_json::Value>,
    ack: Option<RawAct>,
    resolve: Option<RawAct>,
    note: Option<RawAct>,
    role: Option<RawAct>,
    notice_sent: Option<RawAct>,
}

/// A person's action on an incident. Which keys apply depends on the action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAct {
    incident: Option<u64>,
    key: Option<String>,
    by: String,
    text: Option<String>,
    role: Option<String>,
    person: Option<String>,
    notice: Option<usize>,
    reference: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    #[serde(default)]
    exact: bool,
    incident_count: Option<u64>,
    #[serde(default)]
    notifications: Vec<Spanned<RawNotification>>,
    #[serde(default)]
    incidents: Vec<Spanned<RawIncident>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotification {
    at: Option<String>,
    within: Option<String>,
    to: Option<String>,
    channel: Option<String>,
    audience: Option<String>,
    reason: Option<String>,
    template: Option<String>,
    incident: Option<u64>,
    subject_contains: Option<String>,
    text_contains: Option<String>,
    drill: Option<bool>,
    bundled: Option<bool>,
    count: Option<u32>,
    #[serde(default)]
    never: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIncident {
    incident: Option<u64>,
    key: Option<String>,
    at: Option<String>,
    status: Option<String>,
    severity: Option<String>,
    acknowledged_by: Option<String>,
    resolved_by: Option<String>,
    drill: Option<bool>,
    count: Option<u64>,
    roles: Option<BTreeMap<String, String>>,
    notices: Option<Vec<String>>,
    escalation_step: Option<u32>,
    scope: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    sensitivity: Option<String>,
    customer_facing: Option<bool>,
}

/// Which incident an action or expectation is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncidentRef {
    /// By id: incidents are numbered 1, 2, … in the order they open.
    Id(u64),
    /// By the scenario source's dedup key: the newest incident with it.
    Key(String),
}

impl std::fmt::Display for IncidentRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IncidentRef::Id(id) => write!(f, "#{id}"),
            IncidentRef::Key(k) => write!(f, "with key `{k}`"),
        }
    }
}

/// What happens at one instant.
#[derive(Debug, Clone)]
pub enum Input {
    /// A body in an ingest format, as it would be posted.
    Event {
        format: Format,
        body: Vec<u8>,
    },
    Ack {
        incident: IncidentRef,
        by: String,
    },
    Resolve {
        incident: IncidentRef,
        by: String,
    },
    Note {
        incident: IncidentRef,
        by: String,
        text: String,
    },
    Role {
        incident: IncidentRef,
        by: String,
        role: String,
        person: Option<String>,
    },
    NoticeSent {
        incident: IncidentRef,
        by: String,
        notice: usize,
        reference: Option<String>,
    },
}

impl Input {
    pub fn describe(&self) -> String {
        match self {
            Input::Event { format, .. } => format!("event ({})", format.as_str()),
            Input::Ack { incident, by } => format!("{by} acknowledges incident {incident}"),
            Input::Resolve { incident, by } => format!("{by} resolves incident {incident}"),
            Input::Note { incident, by, .. } => format!("{by} adds a note to incident {incident}"),
            Input::Role { incident, by, role, person } => format!(
                "{by} gives role {role} of incident {incident} to {}",
                person.as_deref().unwrap_or("nobody")
            ),
            Input::NoticeSent { incident, by, notice, .. } => {
                format!("{by} marks notice #{notice} of incident {incident} sent")
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub at: SignedDuration,
    pub input: Input,
    /// `FILE:LINE:COL` of the step, for errors found while running it.
    pub location: String,
}

/// One expected (or, with `never`, forbidden) notification. `None` fields match anything.
#[derive(Debug, Clone, Default)]
pub struct ExpectNotification {
    pub at: Option<SignedDuration>,
    pub within: SignedDuration,
    pub to: Option<String>,
    pub channel: Option<Channel>,
    pub audience: Option<String>,
    pub reason: Option<Reason>,
    pub template: Option<String>,
    pub incident: Option<u64>,
    pub subject_contains: Option<String>,
    pub text_contains: Option<String>,
    pub drill: Option<bool>,
    pub bundled: Option<bool>,
    pub count: u32,
    pub never: bool,
    pub location: String,
}

#[derive(Debug, Clone)]
pub struct ExpectIncident {
    pub incident: IncidentRef,
    /// When to look (after everything at that instant happened); `None`: at the end.
    pub at: Option<SignedDuration>,
    pub status: Option<String>,
    pub severity: Option<String>,
    pub acknowledged_by: Option<String>,
    pub resolved_by: Option<String>,
    pub drill: Option<bool>,
    pub count: Option<u64>,
    pub roles: Option<BTreeMap<String, String>>,
    pub notices: Option<Vec<String>>,
    pub escalation_step: Option<u32>,
    /// The affected services (in any order): exactly these.
    pub scope: Option<Vec<String>>,
    /// The decision's tags (in any order): exactly these.
    pub tags: Option<Vec<String>>,
    pub sensitivity: Option<crate::rules::Sensitivity>,
    pub customer_facing: Option<bool>,
    pub location: String,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub file: PathBuf,
    pub name: String,
    pub description: Option<String>,
    /// The config the scenario names (resolved against its directory).
    pub config: Option<PathBuf>,
    pub start: Timestamp,
    /// The source events come from (default: the config's first source, else `drill`).
    pub source: Option<String>,
    /// Offset the simulation runs to.
    pub until: SignedDuration,
    pub steps: Vec<Step>,
    pub exact: bool,
    pub incident_count: Option<u64>,
    pub notifications: Vec<ExpectNotification>,
    pub incidents: Vec<ExpectIncident>,
}

struct Errors<'a> {
    file: &'a str,
    errors: Vec<ConfigError>,
}

impl Errors<'_> {
    fn at(&mut self, loc: serde_saphyr::Location, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            position: crate::config::position(loc),
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn location(&self, loc: serde_saphyr::Location) -> String {
        match crate::config::position(loc) {
            Some(p) => format!("{}:{}:{}", self.file, p.line, p.column),
            None => self.file.to_string(),
        }
    }
}

/// An offset such as `0s`, `5m`, `+1h 30m`, `72h`, `3d`.
pub fn parse_offset(text: &str) -> Result<SignedDuration, String> {
    let t = text.trim().trim_start_matches('+').trim();
    if t == "0" {
        return Ok(SignedDuration::ZERO);
    }
    let d = crate::config::parse_duration(t).or_else(|e| {
        // `0s` is a fine offset, though not a fine config duration.
        if t.trim_end_matches(|c: char| c.is_ascii_alphabetic()).trim() == "0" {
            Ok(std::time::Duration::ZERO)
        } else {
            Err(e)
        }
    })?;
    SignedDuration::try_from(d).map_err(|e| e.to_string())
}

/// `+5m`, `+1h 30m 5s`, `+0s`: how offsets are printed.
pub fn show(d: SignedDuration) -> String {
    if d.is_zero() {
        return "+0s".into();
    }
    let mut secs = d.as_secs();
    let mut out = String::from(if secs < 0 { "-" } else { "+" });
    secs = secs.abs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if s > 0 || parts.is_empty() {
        parts.push(format!("{s}s"));
    }
    let ms = d.subsec_millis().abs();
    if ms > 0 {
        parts.push(format!("{ms}ms"));
    }
    out.push_str(&parts.join(" "));
    out
}

/// Reads and checks a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ConfigErrors> {
    let file = path.display().to_string();
    let one = |message: String| ConfigErrors {
        errors: vec![ConfigError {
            file: file.clone(),
            position: None,
            path: String::new(),
            message,
        }],
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| one(format!("cannot read the scenario: {e}")))?;
    if text.len() > MAX_SCENARIO_BYTES {
        return Err(one(format!(
            "the scenario is {} bytes; the limit is {MAX_SCENARIO_BYTES}",
            text.len()
        )));
    }
    let raw: RawScenario = serde_saphyr::from_str_with_options(&text, scenario_options())
        .map_err(|e| ConfigErrors { errors: vec![crate::config::parse_error(&file, &e)] })?;
    let mut errs = Errors { file: &file, errors: Vec::new() };
    let scenario = check(raw, path, &mut errs);
    if errs.errors.is_empty() { Ok(scenario) } else { Err(ConfigErrors { errors: errs.errors }) }
}

fn scenario_options() -> serde_saphyr::Options {
    let budget = serde_saphyr::budget! {
        max_depth: 32,
        max_documents: 1,
        max_nodes: 1_000_000,
        max_events: 2_000_000,
        max_aliases: 10_000,
        max_anchors: 10_000,
        max_total_scalar_bytes: MAX_SCENARIO_BYTES,
    };
    serde_saphyr::options! {
        budget: budget,
        strict_booleans: true,
        with_snippet: false,
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "checks every key of a scenario in file order; to split by section"
)]
fn check(raw: RawScenario, path: &Path, e: &mut Errors<'_>) -> Scenario {
    let base = path.parent().unwrap_or(Path::new("."));
    let offset = |e: &mut Errors<'_>, s: &Spanned<String>, what: &str| match parse_offset(&s.value)
    {
        Ok(d) if d.is_negative() => {
            e.at(s.referenced, what, "must not be negative");
            SignedDuration::ZERO
        }
        Ok(d) => d,
        Err(m) => {
            e.at(s.referenced, what, m);
            SignedDuration::ZERO
        }
    };
    let start = match &raw.start {
        None => DEFAULT_START.parse().expect("a valid default start"),
        Some(s) => s.value.parse::<Timestamp>().unwrap_or_else(|err| {
            e.at(s.referenced, "start", format!("not an RFC 3339 time: {err}"));
            DEFAULT_START.parse().expect("a valid default start")
        }),
    };
    let tolerance = raw.tolerance.as_ref().map(|t| offset(e, t, "tolerance")).unwrap_or_default();
    let mut steps = Vec::new();
    for (i, s) in raw.timeline.into_iter().enumerate() {
        let path = format!("timeline[{i}]");
        let loc = s.referenced;
        let s = s.value;
        let at = offset(e, &s.at, &format!("{path}.at"));
        let mut inputs: Vec<(&str, Input)> = Vec::new();
        let body = |name: &'static str, format: Format, v: Option<serde_json::Value>| {
            v.map(|v| {
                (name, Input::Event { format, body: serde_json::to_vec(&v).unwrap_or_default() })
            })
        };
        inputs.extend(body("event", Format::Canonical, s.event));
        inputs.extend(body("alertmanager", Format::AlertmanagerV2, s.alertmanager));
        inputs.extend(body(
            "alertmanager_webhook",
            Format::AlertmanagerWebhook,
            s.alertmanager_webhook,
        ));
        inputs.extend(body("pagerduty", Format::Pagerduty, s.pagerduty));
        inputs.extend(body("report", Format::Report, s.report));
        inputs.extend(body("declare", Format::Declaration, s.declare));
        let acts = [
            ("ack", s.ack),
            ("resolve", s.resolve),
            ("note", s.note),
            ("role", s.role),
            ("notice_sent", s.notice_sent),
        ];
        for (name, act) in acts {
            let Some(a) = act else { continue };
            let apath = format!("{path}.{name}");
            let incident = match (a.incident, a.key) {
                (Some(id), None) => IncidentRef::Id(id),
                (None, Some(k)) => IncidentRef::Key(k),
                _ => {
                    e.at(
                        loc,
                        &apath,
                        "give exactly one of `incident` (its number) or `key` (its dedup key)",
                    );
                    continue;
                }
            };
            let unused = |e: &mut Errors<'_>, present: bool, key: &str| {
                if present {
                    e.at(
                        loc,
                        &format!("{apath}.{key}"),
                        format!("`{key}` does not apply to `{name}`"),
                    );
                }
            };
            let by = a.by;
            let input = match name {
                "ack" | "resolve" => {
                    unused(e, a.text.is_some(), "text");
                    unused(e, a.role.is_some(), "role");
                    unused(e, a.person.is_some(), "person");
                    unused(e, a.notice.is_some(), "notice");
                    unused(e, a.reference.is_some(), "reference");
                    if name == "ack" {
                        Input::Ack { incident, by }
                    } else {
                        Input::Resolve { incident, by }
                    }
                }
                "note" => {
                    unused(e, a.role.is_some(), "role");
                    unused(e, a.person.is_some(), "person");
                    unused(e, a.notice.is_some(), "notice");
                    unused(e, a.reference.is_some(), "reference");
                    let Some(text) = a.text else {
                        e.at(loc, &format!("{apath}.text"), "a note needs `text`");
                        continue;
                    };
                    Input::Note { incident, by, text }
                }
                "role" => {
                    unused(e, a.text.is_some(), "text");
                    unused(e, a.notice.is_some(), "notice");
                    unused(e, a.reference.is_some(), "reference");
                    let Some(role) = a.role else {
                        e.at(
                            loc,
                            &format!("{apath}.role"),
                            "a role change needs `role` (and `person`, or none to take it away)",
                        );
                        continue;
                    };
                    Input::Role { incident, by, role, person: a.person }
                }
                _ => {
                    unused(e, a.text.is_some(), "text");
                    unused(e, a.role.is_some(), "role");
                    unused(e, a.person.is_some(), "person");
                    Input::NoticeSent {
                        incident,
                        by,
                        notice: a.notice.unwrap_or(0),
                        reference: a.reference,
                    }
                }
            };
            inputs.push((name, input));
        }
        match inputs.len() {
            1 => {
                let (_, input) = inputs.remove(0);
                steps.push(Step { at, input, location: e.location(loc) });
            }
            0 => e.at(loc, &path, "a step needs one of: event, alertmanager, alertmanager_webhook, pagerduty, report, ack, resolve, note, role, notice_sent"),
            _ => e.at(
                loc,
                &path,
                format!(
                    "a step does one thing; this one has {} (write one step each, at the same `at`)",
                    inputs.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ),
            ),
        }
    }
    // Stable: steps at the same offset run in file order.
    steps.sort_by_key(|s| s.at);

    let expect = raw.expect.map(|x| x.value).unwrap_or_default();
    let mut notifications = Vec::new();
    for (i, n) in expect.notifications.into_iter().enumerate() {
        let path = format!("expect.notifications[{i}]");
        let loc = n.referenced;
        let n = n.value;
        let dur = |e: &mut Errors<'_>, v: &Option<String>, key: &str| {
            v.as_ref().map(|t| match parse_offset(t) {
                Ok(d) if !d.is_negative() => d,
                Ok(_) => {
                    e.at(loc, &format!("{path}.{key}"), "must not be negative");
                    SignedDuration::ZERO
                }
                Err(m) => {
                    e.at(loc, &format!("{path}.{key}"), m);
                    SignedDuration::ZERO
                }
            })
        };
        let at = dur(e, &n.at, "at");
        let within = dur(e, &n.within, "within").unwrap_or(tolerance);
        let channel = n.channel.as_ref().and_then(|c| {
            let found = [Channel::Email, Channel::Sms, Channel::Webhook, Channel::Log]
                .into_iter()
                .find(|k| k.as_str() == c);
            if found.is_none() {
                e.at(
                    loc,
                    &format!("{path}.channel"),
                    format!("`{c}` is not one of email, sms, webhook, log"),
                );
            }
            found
        });
        let reason = n.reason.as_ref().and_then(|r| {
            let found = [Reason::New, Reason::Escalated, Reason::Reminder, Reason::Resolved]
                .into_iter()
                .find(|k| k.as_str() == r);
            if found.is_none() {
                e.at(
                    loc,
                    &format!("{path}.reason"),
                    format!("`{r}` is not one of new, escalated, reminder, resolved"),
                );
            }
            found
        });
        let count = n.count.unwrap_or(1);
        if n.never && n.count.is_some() {
            e.at(
                loc,
                &format!("{path}.count"),
                "`never` expects no such notification; leave out `count`",
            );
        }
        if count == 0 {
            e.at(loc, &format!("{path}.count"), "must be at least 1 (use `never: true` for none)");
        }
        notifications.push(ExpectNotification {
            at,
            within,
            to: n.to,
            channel,
            audience: n.audience,
            reason,
            template: n.template,
            incident: n.incident,
            subject_contains: n.subject_contains,
            text_contains: n.text_contains,
            drill: n.drill,
            bundled: n.bundled,
            count,
            never: n.never,
            location: e.location(loc),
        });
    }
    let mut incidents = Vec::new();
    for (i, x) in expect.incidents.into_iter().enumerate() {
        let path = format!("expect.incidents[{i}]");
        let loc = x.referenced;
        let x = x.value;
        let incident = match (x.incident, x.key) {
            (Some(id), None) => IncidentRef::Id(id),
            (None, Some(k)) => IncidentRef::Key(k),
            _ => {
                e.at(
                    loc,
                    &path,
                    "give exactly one of `incident` (its number) or `key` (its dedup key)",
                );
                continue;
            }
        };
        let at = x.at.as_ref().and_then(|t| match parse_offset(t) {
            Ok(d) if !d.is_negative() => Some(d),
            Ok(_) => {
                e.at(loc, &format!("{path}.at"), "must not be negative");
                None
            }
            Err(m) => {
                e.at(loc, &format!("{path}.at"), m);
                None
            }
        });
        if let Some(s) = &x.status
            && !["triggered", "acknowledged", "resolved"].contains(&s.as_str())
        {
            e.at(
                loc,
                &format!("{path}.status"),
                format!("`{s}` is not one of triggered, acknowledged, resolved"),
            );
        }
        let sensitivity = x.sensitivity.as_deref().and_then(|name| {
            let found = crate::rules::Sensitivity::parse(name);
            if found.is_none() {
                let names: Vec<&str> =
                    crate::rules::Sensitivity::ALL.iter().map(|s| s.as_str()).collect();
                e.at(
                    loc,
                    &format!("{path}.sensitivity"),
                    format!("`{name}` is not one of {}", names.join(", ")),
                );
            }
            found
        });
        incidents.push(ExpectIncident {
            incident,
            at,
            status: x.status,
            severity: x.severity,
            acknowledged_by: x.acknowledged_by,
            resolved_by: x.resolved_by,
            drill: x.drill,
            count: x.count,
            roles: x.roles,
            notices: x.notices,
            escalation_step: x.escalation_step,
            scope: x.scope,
            tags: x.tags,
            sensitivity,
            customer_facing: x.customer_facing,
            location: e.location(loc),
        });
    }
    let last = steps
        .iter()
        .map(|s| s.at)
        .chain(notifications.iter().filter_map(|n| n.at.map(|a| a + n.within)))
        .chain(incidents.iter().filter_map(|x| x.at))
        .max()
        .unwrap_or_default();
    let until = match &raw.until {
        Some(u) => offset(e, u, "until"),
        None => last + DEFAULT_TAIL,
    };
    if until < last {
        let loc =
            raw.until.as_ref().map(|u| u.referenced).unwrap_or(serde_saphyr::Location::UNKNOWN);
        e.at(
            loc,
            "until",
            format!(
                "is {} but the scenario has steps or expectations up to {}",
                show(until),
                show(last)
            ),
        );
    }
    let config = raw.config.map(|c| {
        let p = PathBuf::from(&c.value);
        if p.is_relative() { base.join(p) } else { p }
    });
    Scenario {
        file: path.to_path_buf(),
        name: raw.name.unwrap_or_else(|| {
            path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
        }),
        description: raw.description,
        config,
        start,
        source: raw.source.map(|s| s.value),
        until,
        steps,
        exact: expect.exact,
        incident_count: expect.incident_count,
        notifications,
        incidents,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_read_and_print() {
        assert_eq!(parse_offset("0s").unwrap(), SignedDuration::ZERO);
        assert_eq!(parse_offset("0").unwrap(), SignedDuration::ZERO);
        assert_eq!(parse_offset("+5m").unwrap(), SignedDuration::from_mins(5));
        assert_eq!(parse_offset("1h 30m").unwrap(), SignedDuration::from_mins(90));
        assert_eq!(parse_offset("3d").unwrap(), SignedDuration::from_hours(72));
        assert!(parse_offset("5x").is_err());
        assert_eq!(show(SignedDuration::from_secs(5430)), "+1h 30m 30s");
        assert_eq!(show(SignedDuration::ZERO), "+0s");
        assert_eq!(show(SignedDuration::from_hours(72)), "+72h");
    }
}
