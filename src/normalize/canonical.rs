//! Tocsin's own event format (`POST /api/v1/events`), for senders that speak none of the others:
//! scripts, cron jobs, other tools' webhooks run through a small adapter.
//!
//! ## Canonical event schema
//!
//! The body is one event object, or an array of them (at most 10 000). Unknown fields are
//! rejected (400). Id, arrival time and source are never taken from the body.
//!
//! | field | type | |
//! |---|---|---|
//! | `kind` | `"alert"` or `"report"` | default `"alert"` |
//! | `action` | `"trigger"`, `"acknowledge"` or `"resolve"` | default `"trigger"` |
//! | `dedup_key` | string, ≤ 255 characters | required for acknowledge and resolve; otherwise defaults to the fingerprint of `labels` when there are labels, else to the event id in 32 hex digits |
//! | `summary` | string, 1 to 1024 characters | required |
//! | `severity` | string, a hint | optional, lower-cased |
//! | `service` | string | optional |
//! | `labels` | object of strings; names `[a-zA-Z_][a-zA-Z0-9_]*`, values ≤ 16 KiB | optional; empty values are dropped |
//! | `annotations` | object of strings, values ≤ 64 KiB | optional |
//! | `starts_at`, `ends_at` | RFC 3339 times from 2000 on, `starts_at` at most 24 h ahead, `ends_at` not before `starts_at` | optional; a future `ends_at` on a trigger is a lease (Alertmanager's `endsAt`): the incident resolves when it passes unless a later trigger refreshes it; none, or a past one, holds until resolved (see `escalation::validity`) |
//! | `links` | array of `{href, text?}` | optional |
//! | `customer` | `{id?, name?, email?, phone?}` | optional, personal data |
//! | `verified` | bool | default `false`; `true` only with `kind: "report"` |
//! | `details` | any JSON object | optional, kept as sent |
//!
//! ```json
//! {"action": "trigger", "summary": "Nightly backup failed", "severity": "error",
//!  "service": "backup", "labels": {"job": "backup", "host": "nas1"}}
//! ```
//!
//! A single object with a bad value is a 422 listing every problem. In an array, bad items are
//! listed in `rejected` as `events[2].summary` and the rest are stored, like Alertmanager batches.

use serde::Deserialize;

use super::{
    Context, MAX_DEDUP_KEY_CHARS, MAX_SHORT_CHARS, MAX_SUMMARY_CHARS, Normalized, Plausible,
    UniqueMap, UniqueObject, check_annotations, check_chars, check_labels, decode, field,
    fingerprint, generated_dedup_key, optional_time, shorten,
};
use crate::error::{ApiError, FieldError};
use crate::event::{Action, Customer, Event, Format, Kind, Link};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    dedup_key: Option<String>,
    summary: String,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    labels: UniqueMap,
    #[serde(default)]
    annotations: UniqueMap,
    #[serde(default)]
    starts_at: Option<String>,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default)]
    links: Vec<RawLink>,
    #[serde(default)]
    customer: Option<Customer>,
    #[serde(default)]
    verified: bool,
    /// A rehearsal (see `Event::drill`).
    #[serde(default)]
    drill: bool,
    #[serde(default)]
    details: UniqueObject,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    href: String,
    #[serde(default)]
    text: Option<String>,
}

const WHAT: &str = "a Tocsin event object or array of them";

/// `POST /api/v1/events`: one canonical event or an array of them; see the module doc.
pub fn canonical(body: &[u8], ctx: Context<'_>) -> Result<Normalized, ApiError> {
    // Told apart by the first byte, then decoded once straight into the events: never into a
    // `Value` first, which would already have dropped a repeated label key.
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {
            let raw: RawEvent = decode(body, WHAT)?;
            let event = validate(raw, "", &ctx).map_err(ApiError::invalid)?;
            Ok(Normalized { events: vec![event], rejected: Vec::new() })
        }
        Some(b'[') => {
            let items = super::decode_batch(body, "events", WHAT)?;
            ctx.ids.reserve(items.len());
            let mut out = Normalized::default();
            for (i, item) in items.into_iter().enumerate() {
                let path = format!("events[{i}]");
                let result = serde_json::from_str::<RawEvent>(item.get())
                    .map_err(|e| vec![FieldError::new(&path, format!("not a Tocsin event: {e}"))])
                    .and_then(|raw| validate(raw, &path, &ctx));
                match result {
                    Ok(event) => out.events.push(event),
                    Err(errors) => out.rejected.extend(errors),
                }
            }
            Ok(out)
        }
        _ => {
            decode::<serde::de::IgnoredAny>(body, WHAT)?;
            Err(ApiError::malformed(format!(
                "request body is not {WHAT}: it is JSON, but neither an object nor an array"
            )))
        }
    }
}

fn validate(raw: RawEvent, prefix: &str, ctx: &Context<'_>) -> Result<Event, Vec<FieldError>> {
    let mut errors = Vec::new();
    let at = |name: &str| field(prefix, name);

    let kind = match raw.kind.as_deref() {
        None | Some("alert") => Kind::Alert,
        Some("report") => Kind::Report,
        Some(other) => {
            errors.push(FieldError::new(
                at("kind"),
                format!("{:?} is not one of alert, report", shorten(other)),
            ));
            Kind::Alert
        }
    };
    let action = match raw.action.as_deref() {
        None | Some("trigger") => Action::Trigger,
        Some("acknowledge") => Action::Acknowledge,
        Some("resolve") => Action::Resolve,
        Some(other) => {
            errors.push(FieldError::new(
                at("action"),
                format!("{:?} is not one of trigger, acknowledge, resolve", shorten(other)),
            ));
            Action::Trigger
        }
    };
    if raw.summary.trim().is_empty() {
        errors.push(FieldError::new(at("summary"), "must not be empty"));
    } else {
        check_chars(&at("summary"), &raw.summary, MAX_SUMMARY_CHARS, &mut errors);
    }
    for (name, value) in [("severity", &raw.severity), ("service", &raw.service)] {
        if let Some(v) = value {
            check_chars(&at(name), v, MAX_SHORT_CHARS, &mut errors);
        }
    }
    let mut labels = raw.labels.0;
    check_labels(at("labels"), &mut labels, true, &mut errors);
    check_annotations(at("annotations"), &raw.annotations.0, &mut errors);
    let start = Plausible::Start { now: ctx.now };
    let starts_at = optional_time(&at("starts_at"), raw.starts_at.as_deref(), start, &mut errors);
    let ends_at =
        optional_time(&at("ends_at"), raw.ends_at.as_deref(), Plausible::End, &mut errors);
    if let (Some(s), Some(e)) = (starts_at, ends_at) {
        if e < s {
            errors.push(FieldError::new(at("ends_at"), "must not be before starts_at"));
        }
    }
    for (i, link) in raw.links.iter().enumerate() {
        if link.href.is_empty() {
            errors.push(FieldError::new(at(&format!("links[{i}].href")), "must not be empty"));
        }
    }
    if raw.verified && kind != Kind::Report {
        errors
            .push(FieldError::new(at("verified"), "only a report (kind: report) can be verified"));
    }
    let dedup_key = raw.dedup_key.filter(|k| !k.is_empty());
    match &dedup_key {
        Some(key) => {
            check_chars(&at("dedup_key"), key, MAX_DEDUP_KEY_CHARS, &mut errors);
        }
        None if action != Action::Trigger => errors
            .push(FieldError::new(at("dedup_key"), format!("is required to {}", action.as_str()))),
        None => {}
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let mut event = super::new_event(ctx, Format::Canonical, kind);
    let fp = (!labels.is_empty()).then(|| fingerprint(&labels));
    event.dedup_key =
        dedup_key.or_else(|| fp.clone()).unwrap_or_else(|| generated_dedup_key(event.id));
    event.fingerprint = fp;
    event.action = action;
    event.summary = raw.summary;
    event.severity = raw.severity.filter(|s| !s.is_empty()).map(|s| s.to_lowercase());
    event.service = raw.service.filter(|s| !s.is_empty());
    event.labels = labels;
    event.annotations = raw.annotations.0;
    event.starts_at = starts_at;
    event.ends_at = ends_at;
    event.links = raw
        .links
        .into_iter()
        .map(|l| Link { href: l.href, text: l.text.filter(|t| !t.is_empty()) })
        .collect();
    event.customer = raw.customer.filter(|c| *c != Customer::default());
    event.verified = raw.verified;
    event.drill = raw.drill;
    event.details = raw.details.0;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context<'static> {
        Context::new("cron", "2025-03-01T12:00:00Z".parse().unwrap())
    }

    #[test]
    fn fixture() {
        let body =
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/events/canonical.json"));
        let out = canonical(body, ctx()).unwrap();
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        assert_eq!(out.events.len(), 3);

        let backup = &out.events[0];
        assert_eq!(backup.format, Format::Canonical);
        assert_eq!(backup.kind, Kind::Alert);
        assert_eq!(backup.action, Action::Trigger);
        assert_eq!(backup.source, "cron");
        assert_eq!(backup.dedup_key, fingerprint(&backup.labels));
        assert_eq!(backup.severity.as_deref(), Some("error"));
        assert_eq!(backup.details["exit_code"], 2);
        assert_eq!(backup.links[0].text.as_deref(), Some("log"));

        let resolved = &out.events[1];
        assert_eq!(resolved.action, Action::Resolve);
        assert_eq!(resolved.dedup_key, "cert-expiry/shop.example.com");
        assert!(resolved.ends_at.is_some());

        let report = &out.events[2];
        assert_eq!(report.kind, Kind::Report);
        assert!(report.verified);
        assert_eq!(report.customer.as_ref().unwrap().id.as_deref(), Some("C-7"));
        assert_eq!(report.dedup_key, report.id.simple().to_string());
    }

    #[test]
    fn single_object_errors_are_invalid_without_prefix() {
        let err = canonical(br#"{"action": "resolve", "summary": "", "verified": true}"#, ctx())
            .unwrap_err();
        assert_eq!(err.code(), "invalid");
        let fields: Vec<_> = err.field_errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["summary", "verified", "dedup_key"]);
    }

    #[test]
    fn array_keeps_valid_items() {
        let body = br#"[
            {"summary": "ok"},
            {"summary": "x", "sumary": "typo"},
            {"summary": ""},
            {"summary": "ok too", "kind": "report"}
        ]"#;
        let out = canonical(body, ctx()).unwrap();
        assert_eq!(out.events.len(), 2);
        let fields: Vec<_> = out.rejected.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["events[1]", "events[2].summary"]);
        assert!(out.rejected[0].message.contains("unknown field `sumary`"));
    }

    #[test]
    fn shape_errors_are_malformed_with_position() {
        let err = canonical(b"{\"summary\": \"x\",\n \"labels\": [1]}", ctx()).unwrap_err();
        assert_eq!(err.code(), "malformed");
        assert!(err.to_string().contains("line 2 column"), "{err}");
        assert_eq!(canonical(b"\"just a string\"", ctx()).unwrap_err().code(), "malformed");
        assert_eq!(canonical(b"{not json", ctx()).unwrap_err().code(), "malformed");
    }

    #[test]
    fn body_cannot_set_id_or_source() {
        let err = canonical(br#"{"summary": "x", "source": "spoofed"}"#, ctx()).unwrap_err();
        assert_eq!(err.code(), "malformed");
    }
}
