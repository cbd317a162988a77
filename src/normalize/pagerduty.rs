//! PagerDuty Events API v2 (`POST /v2/enqueue`), so that anything that can page PagerDuty can
//! page Tocsin by changing the URL.
//!
//! Two steps, because the route authenticates by a field of the body (`routing_key`): the
//! handler calls [`parse_pagerduty`], looks up [`PagerdutyEvent::routing_key`], and only for a
//! known key calls [`PagerdutyEvent::into_normalized`].
//!
//! Mapping onto [`Event`](crate::event::Event):
//!
//! | PagerDuty | Event |
//! |---|---|
//! | `event_action` | `action` |
//! | `dedup_key` | `dedup_key`; for a trigger without one, the event's UUID v7 as 32 hex digits (no dashes), which PagerDuty also answers with |
//! | `payload.summary` | `summary` (acknowledge/resolve: `"<action> <dedup_key>"`, since PagerDuty ignores their payload) |
//! | `payload.severity` | `severity` |
//! | `payload.source` | label `source` and `details.source` |
//! | `payload.component` | `service` and `details.component` |
//! | `payload.timestamp` | `starts_at` |
//! | `payload.group`, `class`, `custom_details`; `client`, `client_url`, `images` | `details` under the same names |
//! | `links` | `links` |
//! | `payload.custom_details.tocsin_drill` (`true` or `"true"`) | `drill`: a rehearsal |
//!
//! As PagerDuty does, every invalid value is a 400 (not a 422), all listed at once; unknown
//! fields are ignored; severity is accepted in any case and stored lower-case; the payload of an
//! acknowledge or resolve is ignored.

use serde::Deserialize;
use serde_json::Value;

use super::{
    Context, MAX_DEDUP_KEY_CHARS, MAX_LABEL_VALUE_BYTES, MAX_SUMMARY_CHARS, Normalized, Plausible,
    check_chars, decode, generated_dedup_key, optional_time, shorten,
};
use crate::error::{ApiError, FieldError, summarize};
use crate::event::{Action, Format, Kind, Link};

const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];

/// A PagerDuty event that is well-formed JSON of the right shape, not yet validated.
#[derive(Debug, Deserialize)]
pub struct PagerdutyEvent {
    #[serde(default)]
    routing_key: Option<String>,
    #[serde(default)]
    event_action: Option<String>,
    #[serde(default)]
    dedup_key: Option<String>,
    #[serde(default)]
    payload: Option<Payload>,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    client_url: Option<String>,
    #[serde(default)]
    links: Option<Vec<RawLink>>,
    #[serde(default)]
    images: Option<Vec<Image>>,
}

#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    component: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    class: Option<String>,
    #[serde(default)]
    custom_details: Option<super::UniqueValue>,
}

#[derive(Debug, Deserialize)]
struct RawLink {
    href: String,
    #[serde(default)]
    text: Option<String>,
}

/// Kept only to be copied into `details`, as sent.
#[derive(Debug, Deserialize, serde::Serialize)]
struct Image {
    src: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    href: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alt: Option<String>,
}

/// Decodes a PagerDuty Events v2 body. Only the JSON shape is checked here (400 otherwise);
/// values are checked by [`PagerdutyEvent::into_normalized`].
pub fn parse_pagerduty(body: &[u8]) -> Result<PagerdutyEvent, ApiError> {
    decode(body, "a PagerDuty Events API v2 event")
}

impl PagerdutyEvent {
    /// The integration key the sender presents; empty when absent (the caller rejects it).
    pub fn routing_key(&self) -> &str {
        self.routing_key.as_deref().unwrap_or("")
    }

    /// Validates every field and builds the one event; all problems are reported in one
    /// `ApiError::Malformed` (400), as PagerDuty answers "Invalid event" with a list of errors.
    pub fn into_normalized(self, ctx: Context<'_>) -> Result<Normalized, ApiError> {
        let mut errors = Vec::new();
        let mut event = super::new_event(&ctx, Format::Pagerduty, Kind::Alert);

        let action = match self.event_action.as_deref() {
            Some("trigger") => Some(Action::Trigger),
            Some("acknowledge") => Some(Action::Acknowledge),
            Some("resolve") => Some(Action::Resolve),
            None => {
                errors.push(FieldError::new(
                    "event_action",
                    "is required: one of trigger, acknowledge, resolve",
                ));
                None
            }
            Some(other) => {
                errors.push(FieldError::new(
                    "event_action",
                    format!("{:?} is not one of trigger, acknowledge, resolve", shorten(other)),
                ));
                None
            }
        };

        let dedup_key = self.dedup_key.filter(|k| !k.is_empty());
        if let Some(key) = &dedup_key {
            check_chars("dedup_key", key, MAX_DEDUP_KEY_CHARS, &mut errors);
        }
        match (action, dedup_key) {
            (Some(Action::Trigger) | None, None) => {
                event.dedup_key = generated_dedup_key(event.id);
            }
            (Some(action), None) => errors
                .push(FieldError::new("dedup_key", format!("is required to {}", action.as_str()))),
            (_, Some(key)) => event.dedup_key = key,
        }

        if action == Some(Action::Trigger) {
            match self.payload {
                Some(payload) => apply_payload(payload, &mut event, &mut errors),
                None => errors.push(FieldError::new(
                    "payload",
                    "is required for a trigger (with summary, source and severity)",
                )),
            }
        } else if let Some(action) = action {
            event.summary = format!("{} {}", action.as_str(), event.dedup_key);
        }

        for (i, link) in self.links.into_iter().flatten().enumerate() {
            if link.href.is_empty() {
                errors.push(FieldError::new(format!("links[{i}].href"), "must not be empty"));
            }
            event.links.push(Link { href: link.href, text: link.text.filter(|t| !t.is_empty()) });
        }
        for (i, image) in self.images.iter().flatten().enumerate() {
            if image.src.is_empty() {
                errors.push(FieldError::new(format!("images[{i}].src"), "must not be empty"));
            }
        }
        if let Some(images) = self.images.filter(|i| !i.is_empty()) {
            let images = serde_json::to_value(images).unwrap_or_default();
            event.details.insert("images".to_string(), images);
        }
        for (key, value) in [("client", self.client), ("client_url", self.client_url)] {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                event.details.insert(key.to_string(), Value::String(v));
            }
        }

        match action {
            Some(action) if errors.is_empty() => {
                event.action = action;
                Ok(Normalized { events: vec![event], rejected: Vec::new() })
            }
            _ => Err(ApiError::Malformed {
                message: format!("invalid PagerDuty event: {}", summarize(&errors)),
                errors,
            }),
        }
    }
}

fn apply_payload(payload: Payload, event: &mut crate::event::Event, errors: &mut Vec<FieldError>) {
    match payload.summary.filter(|s| !s.is_empty()) {
        Some(summary) => {
            if check_chars("payload.summary", &summary, MAX_SUMMARY_CHARS, errors) {
                event.summary = summary;
            }
        }
        None => errors.push(FieldError::new("payload.summary", "is required")),
    }
    match payload.source.filter(|s| !s.is_empty()) {
        Some(source) if source.len() > MAX_LABEL_VALUE_BYTES => errors.push(FieldError::new(
            "payload.source",
            format!("is {} bytes long; at most {MAX_LABEL_VALUE_BYTES}", source.len()),
        )),
        Some(source) => {
            event.labels.insert("source".to_string(), source.clone());
            event.details.insert("source".to_string(), Value::String(source));
        }
        None => errors.push(FieldError::new("payload.source", "is required")),
    }
    match payload.severity.map(|s| s.to_lowercase()) {
        Some(severity) if SEVERITIES.contains(&severity.as_str()) => {
            event.severity = Some(severity);
        }
        Some(other) => errors.push(FieldError::new(
            "payload.severity",
            format!("{:?} is not one of critical, error, warning, info", shorten(&other)),
        )),
        None => errors.push(FieldError::new(
            "payload.severity",
            "is required: one of critical, error, warning, info",
        )),
    }
    let start = Plausible::Start { now: event.received_at };
    event.starts_at =
        optional_time("payload.timestamp", payload.timestamp.as_deref(), start, errors);
    if let Some(component) = payload.component.filter(|c| !c.is_empty()) {
        if check_chars("payload.component", &component, super::MAX_SHORT_CHARS, errors) {
            event.service = Some(component.clone());
        }
        event.details.insert("component".to_string(), Value::String(component));
    }
    for (key, value) in [("group", payload.group), ("class", payload.class)] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            event.details.insert(key.to_string(), Value::String(v));
        }
    }
    if let Some(custom) = payload.custom_details.map(|v| v.0).filter(|v| !v.is_null()) {
        event.drill = super::drill_flag(custom.get(super::DRILL_LABEL));
        event.details.insert("custom_details".to_string(), custom);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context<'static> {
        Context::new("legacy-nagios", "2025-03-01T12:00:00Z".parse().unwrap())
    }

    fn normalize(body: &[u8]) -> Result<Normalized, ApiError> {
        parse_pagerduty(body)?.into_normalized(ctx())
    }

    fn fields(err: &ApiError) -> Vec<&str> {
        err.field_errors().iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn trigger_fixture() {
        let body =
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/pagerduty/trigger.json"));
        let parsed = parse_pagerduty(body).unwrap();
        assert_eq!(parsed.routing_key(), "e93facc04764012d7bfb002500d5d1a6");
        let out = parsed.into_normalized(ctx()).unwrap();
        assert!(out.rejected.is_empty());
        let [e] = out.events.as_slice() else { panic!("one event") };
        assert_eq!(e.format, Format::Pagerduty);
        assert_eq!(e.kind, Kind::Alert);
        assert_eq!(e.action, Action::Trigger);
        assert_eq!(e.source, "legacy-nagios");
        assert_eq!(e.dedup_key, "srv01/mysql");
        assert_eq!(e.summary, "DISK at 99% on machine prod-datapipe03.example.com");
        assert_eq!(e.severity.as_deref(), Some("critical"));
        assert_eq!(e.service.as_deref(), Some("mysql"));
        assert_eq!(e.labels["source"], "prod-datapipe03.example.com");
        assert_eq!(e.starts_at, Some("2015-07-17T08:42:58.315Z".parse().unwrap()));
        assert_eq!(
            e.links,
            vec![Link {
                href: "http://pagerduty.example.com".into(),
                text: Some("An example link.".into())
            }]
        );
        assert_eq!(e.details["group"], "prod-datapipe");
        assert_eq!(e.details["class"], "disk");
        assert_eq!(e.details["client"], "Sample Monitoring Service");
        assert_eq!(e.details["custom_details"]["free space"], "1%");
        assert_eq!(e.details["images"][0]["alt"], "An example link with an image");
    }

    #[test]
    fn acknowledge_and_resolve_fixtures() {
        for (file, action) in [
            (
                &include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/fixtures/pagerduty/acknowledge.json"
                ))[..],
                Action::Acknowledge,
            ),
            (
                &include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/fixtures/pagerduty/resolve.json"
                ))[..],
                Action::Resolve,
            ),
        ] {
            let out = normalize(file).unwrap();
            let e = &out.events[0];
            assert_eq!(e.action, action);
            assert_eq!(e.dedup_key, "srv01/mysql");
            assert_eq!(e.summary, format!("{} srv01/mysql", action.as_str()));
        }
    }

    #[test]
    fn trigger_without_dedup_key_gets_the_event_id() {
        let body = br#"{"routing_key": "k", "event_action": "trigger",
            "payload": {"summary": "s", "source": "h", "severity": "Warning"}}"#;
        let e = &normalize(body).unwrap().events[0];
        assert_eq!(e.dedup_key, e.id.simple().to_string());
        assert_eq!(e.dedup_key.len(), 32);
        assert_eq!(e.severity.as_deref(), Some("warning"));
    }

    #[test]
    fn acknowledge_without_dedup_key_rejected() {
        let err = normalize(br#"{"routing_key": "k", "event_action": "acknowledge"}"#).unwrap_err();
        assert_eq!(err.code(), "malformed");
        assert_eq!(fields(&err), ["dedup_key"]);
    }

    #[test]
    fn every_problem_listed_at_once() {
        let body = br#"{"routing_key": "k", "event_action": "trigger",
            "payload": {"summary": "", "severity": "sev1", "timestamp": "now"}}"#;
        let err = normalize(body).unwrap_err();
        assert_eq!(err.code(), "malformed");
        assert_eq!(
            fields(&err),
            ["payload.summary", "payload.source", "payload.severity", "payload.timestamp"]
        );
        assert!(err.to_string().contains("\"sev1\" is not one of"), "{err}");
    }

    #[test]
    fn summary_over_1024_and_long_dedup_key_rejected() {
        let body = format!(
            r#"{{"routing_key": "k", "event_action": "trigger", "dedup_key": "{}",
                "payload": {{"summary": "{}", "source": "h", "severity": "info"}}}}"#,
            "d".repeat(256),
            "s".repeat(1025)
        );
        let err = normalize(body.as_bytes()).unwrap_err();
        assert_eq!(fields(&err), ["dedup_key", "payload.summary"]);
        let ok = body.replace(&"s".repeat(1025), &"s".repeat(1024)).replace(&"d".repeat(256), "d");
        assert_eq!(normalize(ok.as_bytes()).unwrap().events[0].summary.len(), 1024);
    }

    #[test]
    fn bad_action_and_missing_routing_key() {
        let parsed = parse_pagerduty(br#"{"event_action": "page", "unknown": 1}"#).unwrap();
        assert_eq!(parsed.routing_key(), "");
        let err = parsed.into_normalized(ctx()).unwrap_err();
        assert_eq!(fields(&err), ["event_action"]);
    }

    #[test]
    fn wrong_shape_is_malformed_with_position() {
        let err = parse_pagerduty(b"{\"routing_key\": 5}").unwrap_err();
        assert_eq!(err.code(), "malformed");
        assert!(err.to_string().contains("line 1 column"), "{err}");
        assert!(parse_pagerduty(b"routing_key=k").is_err());
    }
}
