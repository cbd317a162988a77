//! Customer reports from a support desk (`POST /api/v1/reports`): a person says something is
//! wrong, before or instead of a machine noticing. Each report becomes one `kind: report`,
//! `action: trigger` event.
//!
//! ## Report schema
//!
//! A JSON object; unknown fields are rejected (400), so a misspelt field is never silently lost.
//!
//! | field | type | | becomes |
//! |---|---|---|---|
//! | `reporter` | object `{name, email?, desk?}` | required; `name` non-empty | `details.reporter` |
//! | `customer` | object `{id?, name?, email?, phone?}` | optional | `customer` (personal data: redacted by later stages per config) |
//! | `service` | string, the product or service concerned | required | `service` |
//! | `summary` | string, ≤ 1024 characters | required | `summary` |
//! | `description` | string, ≤ 64 KiB | optional | `details.description` |
//! | `verified` | bool: the desk has confirmed the problem | default `false` | `verified` |
//! | `ticket_id` | string, ≤ 255 characters: the desk's ticket | optional | `dedup_key` and `details.ticket_id` |
//! | `ticket_url` | string | optional | a link with text `ticket` |
//! | `severity` | string, a hint | optional | `severity`, lower-cased |
//! | `occurred_at` | RFC 3339 time from 2000 on, at most 24 h ahead | optional | `starts_at` |
//! | `labels` | object of strings; names `[a-zA-Z_][a-zA-Z0-9_]*` | optional | `labels` |
//! | `drill` | bool: a rehearsal, not a real report | default `false` | `drill` |
//!
//! The dedup key is the `ticket_id` when given, so that further reports on the same ticket join
//! its incident; otherwise `report:` followed by the event id in 32 hex digits, a new incident.
//!
//! ```json
//! {
//!   "reporter": {"name": "Dana Reyes", "email": "dana@support.example.com", "desk": "EU tier 1"},
//!   "customer": {"id": "C-10442", "name": "Jo Example", "email": "jo@example.org"},
//!   "service": "checkout",
//!   "summary": "Card payments fail with error 502 at the last step",
//!   "verified": true,
//!   "ticket_id": "SUP-88121",
//!   "ticket_url": "https://desk.example.com/tickets/SUP-88121",
//!   "severity": "high",
//!   "occurred_at": "2025-03-01T11:40:00+01:00"
//! }
//! ```
//!
//! Values that do not fit (empty `summary`, a bad time, an oversized field) are all reported
//! together as a 422.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Context, MAX_DEDUP_KEY_CHARS, MAX_SHORT_CHARS, MAX_SUMMARY_CHARS, MAX_TEXT_BYTES, Normalized,
    check_chars, check_labels, decode, generated_dedup_key, optional_time,
};
use crate::error::{ApiError, FieldError};
use crate::event::{Customer, Format, Kind, Link};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    reporter: Reporter,
    #[serde(default)]
    customer: Option<Customer>,
    service: String,
    summary: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    verified: bool,
    #[serde(default)]
    drill: bool,
    #[serde(default)]
    ticket_id: Option<String>,
    #[serde(default)]
    ticket_url: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    occurred_at: Option<String>,
    #[serde(default)]
    labels: super::UniqueMap,
}

/// Who at the desk filed it: kept in `details` so responders know whom to ask.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Reporter {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    desk: Option<String>,
}

/// `POST /api/v1/reports`: one customer report, see the module doc for the schema.
pub fn report(body: &[u8], ctx: Context<'_>) -> Result<Normalized, ApiError> {
    let report: Report = decode(body, "a Tocsin report")?;
    let mut errors = Vec::new();
    let mut event = super::new_event(&ctx, Format::Report, Kind::Report);

    non_empty("summary", &report.summary, MAX_SUMMARY_CHARS, &mut errors);
    non_empty("service", &report.service, MAX_SHORT_CHARS, &mut errors);
    non_empty("reporter.name", &report.reporter.name, MAX_SHORT_CHARS, &mut errors);
    for (path, value) in [
        ("reporter.email", &report.reporter.email),
        ("reporter.desk", &report.reporter.desk),
        ("severity", &report.severity),
        ("ticket_url", &report.ticket_url),
    ] {
        if let Some(v) = value {
            check_chars(path, v, MAX_SHORT_CHARS, &mut errors);
        }
    }
    if let Some(c) = &report.customer {
        for (path, value) in [
            ("customer.id", &c.id),
            ("customer.name", &c.name),
            ("customer.email", &c.email),
            ("customer.phone", &c.phone),
        ] {
            if let Some(v) = value {
                check_chars(path, v, MAX_SHORT_CHARS, &mut errors);
            }
        }
    }
    if let Some(d) = &report.description {
        if d.len() > MAX_TEXT_BYTES {
            errors.push(FieldError::new(
                "description",
                format!("is {} bytes long; at most {MAX_TEXT_BYTES}", d.len()),
            ));
        }
    }
    let mut labels = report.labels.0;
    check_labels("labels", &mut labels, true, &mut errors);
    let start = super::Plausible::Start { now: ctx.now };
    event.starts_at =
        optional_time("occurred_at", report.occurred_at.as_deref(), start, &mut errors);

    match report.ticket_id.filter(|t| !t.is_empty()) {
        Some(ticket) => {
            check_chars("ticket_id", &ticket, MAX_DEDUP_KEY_CHARS, &mut errors);
            event.details.insert("ticket_id".to_string(), Value::String(ticket.clone()));
            event.dedup_key = ticket;
        }
        None => event.dedup_key = format!("report:{}", generated_dedup_key(event.id)),
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }

    event.summary = report.summary;
    event.service = Some(report.service);
    event.severity = report.severity.filter(|s| !s.is_empty()).map(|s| s.to_lowercase());
    event.verified = report.verified;
    event.drill = report.drill;
    event.customer = report.customer.filter(|c| *c != Customer::default());
    event.labels = labels;
    if let Some(href) = report.ticket_url.filter(|u| !u.is_empty()) {
        event.links.push(Link { href, text: Some("ticket".to_string()) });
    }
    let reporter = serde_json::to_value(&report.reporter).unwrap_or_default();
    event.details.insert("reporter".to_string(), reporter);
    if let Some(d) = report.description.filter(|d| !d.is_empty()) {
        event.details.insert("description".to_string(), Value::String(d));
    }
    Ok(Normalized { events: vec![event], rejected: Vec::new() })
}

fn non_empty(path: &str, value: &str, max: usize, errors: &mut Vec<FieldError>) {
    if value.trim().is_empty() {
        errors.push(FieldError::new(path, "must not be empty"));
    } else {
        check_chars(path, value, max, errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Action;

    fn ctx() -> Context<'static> {
        Context::new("support-desk", "2025-03-01T12:00:00Z".parse().unwrap())
    }

    #[test]
    fn verified_personal_data_fixture() {
        let body = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/reports/verified-personal-data.json"
        ));
        let out = report(body, ctx()).unwrap();
        let [e] = out.events.as_slice() else { panic!("one event") };
        assert_eq!(e.format, Format::Report);
        assert_eq!(e.kind, Kind::Report);
        assert_eq!(e.action, Action::Trigger);
        assert_eq!(e.source, "support-desk");
        assert!(e.verified);
        assert_eq!(e.dedup_key, "SUP-88121");
        assert_eq!(e.service.as_deref(), Some("checkout"));
        assert_eq!(e.severity.as_deref(), Some("high"));
        assert_eq!(e.summary, "Card payments fail with error 502 at the last step");
        assert_eq!(e.starts_at, Some("2025-03-01T10:40:00Z".parse().unwrap()));
        let c = e.customer.as_ref().unwrap();
        assert_eq!(c.email.as_deref(), Some("jo@example.org"));
        assert_eq!(c.phone.as_deref(), Some("+44 20 7946 0958"));
        assert_eq!(e.details["reporter"]["name"], "Dana Reyes");
        assert_eq!(e.details["ticket_id"], "SUP-88121");
        assert!(e.details["description"].as_str().unwrap().contains("three customers"));
        assert_eq!(e.links[0].href, "https://desk.example.com/tickets/SUP-88121");
        assert_eq!(e.labels["region"], "eu-west");
    }

    #[test]
    fn without_ticket_the_key_is_the_event_id() {
        let body = br#"{"reporter": {"name": "A"}, "service": "s", "summary": "broken"}"#;
        let e = &report(body, ctx()).unwrap().events[0];
        assert_eq!(e.dedup_key, format!("report:{}", e.id.simple()));
        assert!(!e.verified);
        assert_eq!(e.customer, None);
    }

    #[test]
    fn unknown_field_rejected_with_position() {
        let body = br#"{"reporter": {"name": "A"}, "service": "s", "summary": "x", "priority": 1}"#;
        let err = report(body, ctx()).unwrap_err();
        assert_eq!(err.code(), "malformed");
        let msg = err.to_string();
        assert!(msg.contains("unknown field `priority`") && msg.contains("line 1 column"), "{msg}");
    }

    #[test]
    fn values_checked_all_at_once() {
        let body = format!(
            r#"{{"reporter": {{"name": " "}}, "service": "", "summary": "{}",
                "occurred_at": "last tuesday", "labels": {{"bad name": "x"}}}}"#,
            "s".repeat(1025)
        );
        let err = report(body.as_bytes(), ctx()).unwrap_err();
        assert_eq!(err.code(), "invalid");
        let fields: Vec<_> = err.field_errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["summary", "service", "reporter.name", "labels", "occurred_at"]);
    }

    #[test]
    fn reporter_must_be_an_object() {
        let body = br#"{"reporter": "Dana", "service": "s", "summary": "x"}"#;
        assert_eq!(report(body, ctx()).unwrap_err().code(), "malformed");
    }
}
