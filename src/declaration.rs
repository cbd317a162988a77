//! Declared incidents: a person who sees a risk (a researcher's email, a regulator's question,
//! a vendor's advisory) declares an incident with an impact assessment.
//!
//! `POST /api/v1/incidents` (responder or admin) → [`parse`] (422 naming every bad field) →
//! [`declare`], which any caller (the API handler, the dashboard's form, `tocsin drill`) can
//! use; the handler and [`declare`] are the HTTP floor's ([`crate::http::declarations`]), this
//! module is pure: [`normalize`] turns the declaration into an [`Event`] of kind `declaration` (pure, so
//! drills and rule tests build the same event), the rules score it like any other event (they
//! read the assessment as `event.assessment`), and the journal opens the incident and runs
//! the escalation, exactly as for an alert. The opening timeline entry says who declared it.
//!
//! Severity precedence: a severity the declarer gives is a floor. The decision starts at that
//! threshold's score; rules may raise the severity (by score or `set_severity`) but neither a
//! lower score, `set_severity` nor `cap_severity` takes it below the declared one.
//!
//! [`declare`]: crate::http::declarations::declare

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{ApiError, FieldError};
use crate::event::{Action, Assessment, Event, Format, Kind, Reach};
use crate::rules::{Sensitivity, Triage};

/// The `source` of every declared event (a declaration has a user, not a configured source).
pub const SOURCE: &str = "declared";

const MAX_TITLE: usize = 500;
const MAX_DESCRIPTION: usize = 16 * 1024;
const MAX_SERVICES: usize = 64;

/// What a person declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declaration {
    pub title: String,
    pub description: String,
    pub impact: Impact,
    /// A severity name from `triage.severities`; a floor for the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}

/// The declarer's impact assessment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Impact {
    #[serde(default)]
    pub services: Vec<String>,
    pub customer_impact: bool,
    pub data_sensitivity: Sensitivity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_reach: Option<Reach>,
}

/// Parses and checks a declaration body; every bad field is named (422), a body that is not a
/// JSON object is 400.
pub fn parse(bytes: &[u8], triage: &Triage) -> Result<Declaration, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::malformed(format!("invalid JSON body: {e}")))?;
    let Value::Object(body) = value else {
        return Err(ApiError::malformed("the body must be a JSON object"));
    };
    let mut errors = Vec::new();
    for key in body.keys() {
        if !matches!(key.as_str(), "title" | "description" | "impact" | "severity") {
            errors.push(FieldError::new(
                key.as_str(),
                "unknown field; expected title, description, impact, severity",
            ));
        }
    }
    let text = |field: &str, max: usize, errors: &mut Vec<FieldError>| match body.get(field) {
        Some(Value::String(s)) if s.trim().is_empty() => {
            errors.push(FieldError::new(field, "must not be empty"));
            String::new()
        }
        Some(Value::String(s)) if s.len() > max => {
            errors.push(FieldError::new(field, format!("at most {max} bytes")));
            String::new()
        }
        Some(Value::String(s)) => s.trim().to_owned(),
        None | Some(Value::Null) => {
            errors.push(FieldError::new(field, "is required"));
            String::new()
        }
        Some(_) => {
            errors.push(FieldError::new(field, "must be a string"));
            String::new()
        }
    };
    let title = text("title", MAX_TITLE, &mut errors);
    let description = text("description", MAX_DESCRIPTION, &mut errors);
    let severity = match body.get("severity") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if triage.severities.iter().any(|t| t.name == *s) => Some(s.clone()),
        Some(_) => {
            let names: Vec<&str> = triage.severities.iter().map(|t| t.name.as_str()).collect();
            errors
                .push(FieldError::new("severity", format!("must be one of {}", names.join(", "))));
            None
        }
    };
    let impact = impact(body.get("impact"), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    Ok(Declaration { title, description, impact, severity })
}

fn impact(value: Option<&Value>, errors: &mut Vec<FieldError>) -> Impact {
    let mut out = Impact {
        services: Vec::new(),
        customer_impact: false,
        data_sensitivity: Sensitivity::None,
        estimated_reach: None,
    };
    let Some(Value::Object(impact)) = value else {
        let message = if value.is_none_or(Value::is_null) {
            "is required: {services, customer_impact, data_sensitivity, estimated_reach}"
        } else {
            "must be an object: {services, customer_impact, data_sensitivity, estimated_reach}"
        };
        errors.push(FieldError::new("impact", message));
        return out;
    };
    for key in impact.keys() {
        if !matches!(
            key.as_str(),
            "services" | "customer_impact" | "data_sensitivity" | "estimated_reach"
        ) {
            errors.push(FieldError::new(
                format!("impact.{key}"),
                "unknown field; expected services, customer_impact, data_sensitivity, estimated_reach",
            ));
        }
    }
    match impact.get("services") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) if items.len() > MAX_SERVICES => errors
            .push(FieldError::new("impact.services", format!("at most {MAX_SERVICES} services"))),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item.as_str().map(str::trim) {
                    Some(s) if !s.is_empty() && s.len() <= 64 => {
                        if !out.services.iter().any(|x| x == s) {
                            out.services.push(s.to_owned());
                        }
                    }
                    _ => errors.push(FieldError::new(
                        format!("impact.services[{i}]"),
                        "must be a service name (1 to 64 characters)",
                    )),
                }
            }
        }
        Some(_) => errors.push(FieldError::new("impact.services", "must be a list of names")),
    }
    match impact.get("customer_impact") {
        Some(Value::Bool(b)) => out.customer_impact = *b,
        None | Some(Value::Null) => {
            errors.push(FieldError::new("impact.customer_impact", "is required (true or false)"));
        }
        Some(_) => errors.push(FieldError::new("impact.customer_impact", "must be true or false")),
    }
    let levels = || Sensitivity::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    match impact.get("data_sensitivity") {
        Some(Value::String(s)) => match Sensitivity::parse(s) {
            Some(level) => out.data_sensitivity = level,
            None => errors.push(FieldError::new(
                "impact.data_sensitivity",
                format!("must be one of {}", levels()),
            )),
        },
        None | Some(Value::Null) => errors.push(FieldError::new(
            "impact.data_sensitivity",
            format!("is required: one of {}", levels()),
        )),
        Some(_) => errors.push(FieldError::new(
            "impact.data_sensitivity",
            format!("must be one of {}", levels()),
        )),
    }
    match impact.get("estimated_reach") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) => out.estimated_reach = Some(Reach::Count(n)),
            None => errors.push(FieldError::new(
                "impact.estimated_reach",
                "must be a whole number of at least 0, or a text",
            )),
        },
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_TITLE => {
            out.estimated_reach = Some(Reach::Text(s.trim().to_owned()));
        }
        Some(_) => errors.push(FieldError::new(
            "impact.estimated_reach",
            format!("must be a number or a text of 1 to {MAX_TITLE} bytes"),
        )),
    }
    out
}

/// The event a declaration stores: kind and format `declaration`, source [`SOURCE`], a dedup
/// key unique to this declaration (so it always opens its own incident), the first affected
/// service as the service, and the assessment for the rules. Pure: the same inputs give the
/// same event (`tocsin drill` and rule tests build declarations with it).
pub fn normalize(decl: &Declaration, declared_by: &str, id: Uuid, now: Timestamp) -> Event {
    let mut details = serde_json::Map::new();
    details.insert("description".into(), Value::String(decl.description.clone()));
    Event {
        id,
        received_at: now,
        source: SOURCE.to_owned(),
        format: Format::Declaration,
        kind: Kind::Declaration,
        action: Action::Trigger,
        dedup_key: format!("declaration:{}", id.simple()),
        fingerprint: None,
        labels: Default::default(),
        annotations: Default::default(),
        summary: decl.title.clone(),
        severity: decl.severity.clone(),
        service: decl.impact.services.first().cloned(),
        starts_at: None,
        ends_at: None,
        links: Vec::new(),
        customer: None,
        verified: true,
        drill: false,
        assessment: Some(Assessment {
            declared_by: declared_by.to_owned(),
            description: decl.description.clone(),
            services: decl.impact.services.clone(),
            customer_impact: decl.impact.customer_impact,
            data_sensitivity: decl.impact.data_sensitivity,
            estimated_reach: decl.impact.estimated_reach.clone(),
            severity: decl.severity.clone(),
        }),
        details,
    }
}

/// Checks a declaration built in code (a form, a drill) as [`parse`] checks a JSON body: 422
/// naming each field that is empty, too long or names an unknown severity.
pub fn check(decl: &Declaration, triage: &Triage) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    for (field, value, max) in
        [("title", &decl.title, MAX_TITLE), ("description", &decl.description, MAX_DESCRIPTION)]
    {
        if value.trim().is_empty() {
            errors.push(FieldError::new(field, "must not be empty"));
        } else if value.len() > max {
            errors.push(FieldError::new(field, format!("at most {max} bytes")));
        }
    }
    if let Some(s) = &decl.severity
        && !triage.severities.iter().any(|t| t.name == *s)
    {
        let names: Vec<&str> = triage.severities.iter().map(|t| t.name.as_str()).collect();
        errors.push(FieldError::new("severity", format!("must be one of {}", names.join(", "))));
    }
    if decl.impact.services.len() > MAX_SERVICES {
        errors.push(FieldError::new("impact.services", format!("at most {MAX_SERVICES} services")));
    }
    for (i, s) in decl.impact.services.iter().enumerate() {
        if s.trim().is_empty() || s.len() > 64 {
            errors.push(FieldError::new(
                format!("impact.services[{i}]"),
                "must be a service name (1 to 64 characters)",
            ));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(ApiError::invalid(errors)) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse_ok(v: Value) -> Declaration {
        parse(v.to_string().as_bytes(), &Triage::default()).unwrap()
    }

    fn field_errors(v: Value) -> Vec<String> {
        match parse(v.to_string().as_bytes(), &Triage::default()) {
            Err(e) => e.field_errors().iter().map(|f| f.field.clone()).collect(),
            Ok(d) => panic!("accepted {d:?}"),
        }
    }

    #[test]
    fn a_declaration_normalizes_into_a_declaration_event() {
        let d = parse_ok(json!({
            "title": "Researcher reports exposed S3 bucket",
            "description": "Email from a researcher",
            "impact": {"services": ["storage", "billing"], "customer_impact": true,
                       "data_sensitivity": "personal", "estimated_reach": 1200},
            "severity": "sev2",
        }));
        let id = Uuid::now_v7();
        let now: Timestamp = "2026-03-02T09:00:00Z".parse().unwrap();
        let e = normalize(&d, "ana", id, now);
        assert_eq!(e.kind, Kind::Declaration);
        assert_eq!(e.format, Format::Declaration);
        assert_eq!(e.dedup_key, format!("declaration:{}", id.simple()));
        assert_eq!(e.service.as_deref(), Some("storage"));
        let a = e.assessment.as_ref().unwrap();
        assert_eq!(a.declared_by, "ana");
        assert_eq!(a.estimated_reach, Some(Reach::Count(1200)));
        assert_eq!(a.data_sensitivity, Sensitivity::Personal);
        assert_eq!(normalize(&d, "ana", id, now), e, "pure");
        // A second declaration never joins the first one's incident.
        assert_ne!(normalize(&d, "ana", Uuid::now_v7(), now).dedup_key, e.dedup_key);
    }

    #[test]
    fn every_bad_field_is_named() {
        let fields = field_errors(json!({
            "title": "",
            "impact": {"services": ["ok", 3], "customer_impact": "yes",
                       "data_sensitivity": "secret", "estimated_reach": -4, "colour": 1},
            "severity": "sev9",
            "extra": true,
        }));
        for f in [
            "title",
            "description",
            "severity",
            "extra",
            "impact.services[1]",
            "impact.customer_impact",
            "impact.data_sensitivity",
            "impact.estimated_reach",
            "impact.colour",
        ] {
            assert!(fields.iter().any(|x| x == f), "{f} not in {fields:?}");
        }
        assert_eq!(field_errors(json!({"title": "t", "description": "d"})), ["impact"]);
    }

    #[test]
    fn a_declaration_built_in_code_is_checked_like_a_body() {
        let triage = Triage::default();
        let mut d = parse_ok(json!({
            "title": "t", "description": "d",
            "impact": {"customer_impact": false, "data_sensitivity": "none"},
        }));
        assert!(check(&d, &triage).is_ok());
        d.title = " ".into();
        d.severity = Some("sev9".into());
        d.impact.services = vec!["".into()];
        let err = check(&d, &triage).unwrap_err();
        let fields: Vec<&str> = err.field_errors().iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["title", "severity", "impact.services[0]"]);
    }

    #[test]
    fn the_declared_severity_is_a_floor_rules_cannot_lower() {
        let triage = Triage::default();
        let rules = crate::rules::RuleSet::empty(&triage.limits);
        let view = crate::rules::IncidentView {
            id: 1,
            is_new: true,
            status: "triggered".into(),
            count: 1,
            first_seen: Timestamp::UNIX_EPOCH,
            last_seen: Timestamp::UNIX_EPOCH,
            severity: None,
            score: None,
        };
        let mut d = parse_ok(json!({
            "title": "t", "description": "d", "severity": "sev2",
            "impact": {"customer_impact": true, "data_sensitivity": "financial"},
        }));
        let e = normalize(&d, "ana", Uuid::nil(), Timestamp::UNIX_EPOCH);
        let decision = rules.evaluate(&e, &view, &triage).decision;
        assert_eq!(decision.severity, "sev2");
        assert_eq!(decision.score, 60);
        assert!(decision.customer_facing);
        assert_eq!(decision.sensitivity, Sensitivity::Financial);
        d.severity = None;
        let e = normalize(&d, "ana", Uuid::nil(), Timestamp::UNIX_EPOCH);
        assert_eq!(rules.evaluate(&e, &view, &triage).decision.score, triage.verified_report_score);
    }
}
