//! Normalization: every ingest wire format becomes canonical [`Event`]s here, one file per
//! format. Pure functions of (body, source, clock): no I/O, no shared state.
//!
//! Second stage of the flow: HTTP ingest → **normalize** → journal.
//!
//! | format | function | file |
//! |---|---|---|
//! | Alertmanager v2 `postableAlerts` (Prometheus) | [`alertmanager_v2`] | `alertmanager.rs` |
//! | Alertmanager webhook, version 4 | [`alertmanager_webhook`] | `alertmanager.rs` |
//! | PagerDuty Events API v2 | [`parse_pagerduty`] then [`PagerdutyEvent::into_normalized`] | `pagerduty.rs` |
//! | customer report from a support desk | [`report`] | `report.rs` |
//! | Tocsin's canonical event | [`canonical`] | `canonical.rs` |
//!
//! Every function answers the same way, so the ingest handler needs one `match`:
//!
//! - `Err(ApiError::Malformed)` (400): the body is not JSON, or not the JSON shape of the format.
//!   The message is serde's, with the line and column where it went wrong.
//! - `Err(ApiError::Invalid)` (422): well-formed, but a value is unacceptable; every bad field is
//!   listed at once. (PagerDuty answers 400 for these, as PagerDuty itself does.)
//! - `Ok(Normalized)`: the events to store. For batch formats, items that fail are listed in
//!   [`Normalized::rejected`] by index (`alerts[3].labels`) while the valid ones are still
//!   stored, as Alertmanager does; the caller decides how to answer.
//!
//! Limits are enforced here, not left to later stages, so that nothing unbounded reaches the
//! journal: see the `MAX_*` constants. The formats that Tocsin does not own (Alertmanager,
//! PagerDuty) ignore unknown fields, because senders add fields over time; Tocsin's own formats
//! (report, canonical) reject them, so that a typo is an error rather than lost data.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::error::{ApiError, FieldError};
use crate::event::Event;

mod alertmanager;
mod canonical;
mod pagerduty;
mod report;

pub use alertmanager::{alertmanager_v2, alertmanager_webhook, fingerprint};
pub use canonical::canonical;
pub use pagerduty::{PagerdutyEvent, parse_pagerduty};
pub use report::report;

/// Most items in one batch body; a bigger batch is rejected whole (422) before any is stored.
pub const MAX_BATCH: usize = 10_000;
/// PagerDuty's limit on `summary`, applied to every format.
pub const MAX_SUMMARY_CHARS: usize = 1024;
pub const MAX_DEDUP_KEY_CHARS: usize = 255;
pub const MAX_LABEL_NAME_BYTES: usize = 1024;
pub const MAX_LABEL_VALUE_BYTES: usize = 16 * 1024;
/// Annotation values and report descriptions: prose, so larger than a label value.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Most labels (and, separately, annotations) on one alert or event: a thousand is far beyond
/// any real alert, and bounds the work a hostile body can cause once it is under the size limit.
pub const MAX_LABELS: usize = 1000;
/// Short free-text fields (severity, service, names, ids) that have no limit of their own.
pub const MAX_SHORT_CHARS: usize = 1024;

/// Who sent the body and when it arrived: the parts of an event that never come from the body.
#[derive(Debug)]
pub struct Context<'a> {
    pub source: &'a str,
    pub now: Timestamp,
    /// The request's event ids: a batch reserves one consecutive block for its items.
    pub ids: crate::event_id::Ids,
}

impl<'a> Context<'a> {
    pub fn new(source: &'a str, now: Timestamp) -> Context<'a> {
        Context { source, now, ids: crate::event_id::Ids::default() }
    }
}

/// The outcome of normalizing one request body that was at least well-formed.
#[derive(Debug, Default)]
pub struct Normalized {
    /// Events to store, in the order they appeared in the body.
    pub events: Vec<Event>,
    /// Items of a batch that were rejected, each naming its index and field, e.g.
    /// `alerts[3].labels: must not be empty`. The valid items are still stored.
    pub rejected: Vec<FieldError>,
}

/// Decodes the whole body as `T` (which may borrow from it); `what` completes "request body
/// is not …".
fn decode<'b, T: Deserialize<'b>>(body: &'b [u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| malformed(&e, what))
}

fn malformed(e: &serde_json::Error, what: &str) -> ApiError {
    use serde_json::error::Category;
    // serde's Display already ends in "at line L column C".
    let message = match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            format!("request body is not valid JSON: {e}")
        }
        Category::Data => format!("request body is not {what}: {e}"),
    };
    ApiError::malformed(message)
}

/// Batch bodies are decoded item by item, so that one bad item is rejected by index instead of
/// failing the batch. The items are borrowed from the body as raw JSON (checked, not built into
/// a tree): each is then decoded once, straight into its own type; an item's error positions
/// count from the start of the item.
fn decode_batch<'b>(
    body: &'b [u8],
    item: &str,
    what: &str,
) -> Result<Vec<&'b serde_json::value::RawValue>, ApiError> {
    let items: Vec<&serde_json::value::RawValue> = decode(body, what)?;
    check_batch_size(item, items.len())?;
    Ok(items)
}

fn check_batch_size(item: &str, len: usize) -> Result<(), ApiError> {
    if len > MAX_BATCH {
        return Err(ApiError::invalid(vec![FieldError::new(
            item,
            format!(
                "{len} items in one request; at most {MAX_BATCH} are accepted, split the batch"
            ),
        )]));
    }
    Ok(())
}

/// A JSON object of strings (labels, annotations) in which each key appears once.
///
/// serde's maps (and so `BTreeMap`, `serde_json::Map`) keep the last of a repeated key and
/// drop the others silently, and parsers disagree on which one wins (first, last, error): an
/// alert whose `severity` label says both `info` and `critical` would page, or not, depending
/// on who read it. It is refused instead, naming the key, as strict JSON parsers do.
#[derive(Debug, Default)]
struct UniqueMap(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for UniqueMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<UniqueMap, D::Error> {
        struct Strings;
        impl<'de> serde::de::Visitor<'de> for Strings {
            type Value = UniqueMap;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueMap, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    if out.contains_key(&key) {
                        return Err(serde::de::Error::custom(duplicate_key(&key)));
                    }
                    let value: String = map.next_value()?;
                    out.insert(key, value);
                }
                Ok(UniqueMap(out))
            }
        }
        d.deserialize_map(Strings)
    }
}

/// Any JSON value (`details`, PagerDuty's `custom_details`) in which no object, at any depth,
/// repeats a key; see [`UniqueMap`]. Depth stays bounded by serde_json's recursion limit.
#[derive(Debug)]
struct UniqueValue(Value);

/// A JSON object, as [`UniqueValue`].
#[derive(Debug, Default)]
struct UniqueObject(serde_json::Map<String, Value>);

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // As serde_json's own `Value` reads a float: a non-finite one (never in JSON) is null.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(UniqueValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(duplicate_key(&key)));
            }
            let UniqueValue(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

impl<'de> Deserialize<'de> for UniqueValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<UniqueValue, D::Error> {
        d.deserialize_any(UniqueVisitor).map(UniqueValue)
    }
}

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<UniqueObject, D::Error> {
        match d.deserialize_map(UniqueVisitor)? {
            Value::Object(map) => Ok(UniqueObject(map)),
            _ => Err(serde::de::Error::custom("expected an object")),
        }
    }
}

fn duplicate_key(key: &str) -> String {
    format!("duplicate key {:?}: each key may appear once in an object", shorten(key))
}

/// The label (Alertmanager) or `custom_details` key (PagerDuty) that marks a drill.
pub const DRILL_LABEL: &str = "tocsin_drill";

/// Whether a drill marker's value says "drill": `true`, or the string `"true"` (any case).
pub fn drill_flag(value: Option<&serde_json::Value>) -> bool {
    match value {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// A new event with the fields that never come from the body already set.
fn new_event(ctx: &Context<'_>, format: crate::event::Format, kind: crate::event::Kind) -> Event {
    Event {
        id: ctx.ids.next(),
        received_at: ctx.now,
        source: ctx.source.to_string(),
        format,
        kind,
        action: crate::event::Action::Trigger,
        dedup_key: String::new(),
        fingerprint: None,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        summary: String::new(),
        severity: None,
        service: None,
        starts_at: None,
        ends_at: None,
        links: Vec::new(),
        customer: None,
        verified: false,
        drill: false,
        assessment: None,
        details: serde_json::Map::new(),
    }
}

/// Dedup key for an event whose sender gave none: its own id, 32 hex digits without dashes.
/// Unique, so such an event always opens its own incident.
fn generated_dedup_key(id: Uuid) -> String {
    id.simple().to_string()
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: Prometheus' classic label name rule, which Tocsin's own formats
/// (canonical events, reports) keep; the Alertmanager formats take UTF-8 names as Alertmanager
/// ≥ 0.28 does.
fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Removes empty values first: Prometheus and Alertmanager treat an empty label as an absent one,
/// and the fingerprint must agree with theirs. `strict_names` applies [`is_valid_label_name`];
/// without it names need only be non-empty, Alertmanager ≥ 0.28's rule for UTF-8 names.
fn check_labels(
    path: impl std::fmt::Display,
    labels: &mut BTreeMap<String, String>,
    strict_names: bool,
    errors: &mut Vec<FieldError>,
) {
    labels.retain(|_, v| !v.is_empty());
    if labels.len() > MAX_LABELS {
        let n = labels.len();
        errors.push(FieldError::new(path.to_string(), format!("{n} labels; at most {MAX_LABELS}")));
        return;
    }
    for (name, value) in labels.iter() {
        if name.len() > MAX_LABEL_NAME_BYTES {
            errors.push(FieldError::new(
                path.to_string(),
                format!(
                    "a label name is {} bytes long; at most {MAX_LABEL_NAME_BYTES}",
                    name.len()
                ),
            ));
        } else if name.is_empty() {
            errors.push(FieldError::new(path.to_string(), "label names must not be empty"));
        } else if strict_names && !is_valid_label_name(name) {
            errors.push(FieldError::new(
                path.to_string(),
                format!("label name {name:?} is not valid: it must match [a-zA-Z_][a-zA-Z0-9_]*"),
            ));
        }
        if value.len() > MAX_LABEL_VALUE_BYTES {
            errors.push(FieldError::new(
                path.to_string(),
                format!(
                    "the value of label {:?} is {} bytes long; at most {MAX_LABEL_VALUE_BYTES}",
                    shorten(name),
                    value.len()
                ),
            ));
        }
    }
}

fn check_annotations(
    path: impl std::fmt::Display,
    annotations: &BTreeMap<String, String>,
    errors: &mut Vec<FieldError>,
) {
    if annotations.len() > MAX_LABELS {
        let n = annotations.len();
        errors.push(FieldError::new(
            path.to_string(),
            format!("{n} annotations; at most {MAX_LABELS}"),
        ));
        return;
    }
    for (name, value) in annotations {
        if name.is_empty() || name.len() > MAX_LABEL_NAME_BYTES {
            errors.push(FieldError::new(
                path.to_string(),
                format!("annotation names must be 1 to {MAX_LABEL_NAME_BYTES} bytes long"),
            ));
        }
        if value.len() > MAX_TEXT_BYTES {
            errors.push(FieldError::new(
                path.to_string(),
                format!(
                    "the value of annotation {:?} is {} bytes long; at most {MAX_TEXT_BYTES}",
                    shorten(name),
                    value.len()
                ),
            ));
        }
    }
}

/// Error messages quote names from the body; a 1 KiB name would swamp the message.
fn shorten(s: &str) -> String {
    truncate_chars(s, crate::error::QUOTED_CHARS)
}

/// At most `max` characters, the last one `…` when something was cut.
fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some(_) => {
            let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
            out.push('…');
            out
        }
    }
}

/// Pushes an error when `value` has more than `max` characters; returns whether it fits.
fn check_chars(path: &str, value: &str, max: usize, errors: &mut Vec<FieldError>) -> bool {
    let len = value.chars().count();
    if len > max {
        errors.push(FieldError::new(path, format!("is {len} characters long; at most {max}")));
        return false;
    }
    true
}

/// RFC 3339. Also takes an offset without a colon (`+0000`), which PagerDuty's own examples use.
fn parse_time(s: &str) -> Result<Timestamp, String> {
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Ok(ts);
    }
    jiff::fmt::strtime::parse("%Y-%m-%dT%H:%M:%S%.f%z", s).and_then(|tm| tm.to_timestamp()).map_err(
        |_| format!("{:?} is not an RFC 3339 time such as 2025-01-31T12:00:00Z", shorten(s)),
    )
}

/// The earliest time a sender's timestamp may name. Anything earlier is an unset or broken
/// clock (the Unix epoch, a year 0 or 1), not when a problem began, and would make MTTD
/// decades long.
pub const EARLIEST_TIME: Timestamp = Timestamp::constant(946_684_800, 0); // 2000-01-01T00:00:00Z
/// How far after its arrival a start time may lie. Clock skew is seconds to minutes, and a
/// local time sent with `Z` at most 14 hours ahead; a start time a day ahead is a wrong clock.
pub const MAX_START_AHEAD: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// Which times a timestamp field may hold.
#[derive(Debug, Clone, Copy)]
enum Plausible {
    /// When something began (`startsAt`, `occurred_at`, `payload.timestamp`): from
    /// [`EARLIEST_TIME`] to [`MAX_START_AHEAD`] after `now`, the arrival.
    Start { now: Timestamp },
    /// When something ended or will end (`endsAt`): from [`EARLIEST_TIME`] on; Alertmanager
    /// senders set it ahead on purpose.
    End,
}

/// `ts`, or an error naming the field when it is not a time the sender can have meant. The
/// message writes the time as parsed (not the sent text, which redaction would hide).
fn plausible(
    path: &str,
    ts: Timestamp,
    bound: Plausible,
    errors: &mut Vec<FieldError>,
) -> Option<Timestamp> {
    if ts < EARLIEST_TIME {
        errors.push(FieldError::new(
            path,
            format!("is {ts}, before {EARLIEST_TIME}: not a plausible time (a clock that was never set?)"),
        ));
        return None;
    }
    if let Plausible::Start { now } = bound
        && ts > now + MAX_START_AHEAD
    {
        errors.push(FieldError::new(
            path,
            format!(
                "is {ts}, more than 24 h after it arrived ({now}): the sender's clock is wrong"
            ),
        ));
        return None;
    }
    Some(ts)
}

/// Parses an optional time field, pushing an error for a bad or implausible one.
fn optional_time(
    path: &str,
    value: Option<&str>,
    bound: Plausible,
    errors: &mut Vec<FieldError>,
) -> Option<Timestamp> {
    match parse_time(value?) {
        Ok(ts) => plausible(path, ts, bound, errors),
        Err(message) => {
            errors.push(FieldError::new(path, message));
            None
        }
    }
}

fn field(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_name_rule() {
        for ok in ["a", "_", "alertname", "A_1", "__name__"] {
            assert!(is_valid_label_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a.b", "é", "a b"] {
            assert!(!is_valid_label_name(bad), "{bad}");
        }
    }

    #[test]
    fn truncation_keeps_char_boundaries() {
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abcd", 3), "ab…");
        assert_eq!(truncate_chars("ééééé", 4), "ééé…");
    }

    #[test]
    fn times_in_rfc3339_and_pagerduty_example_form() {
        let a = parse_time("2015-07-17T08:42:58.315Z").unwrap();
        let b = parse_time("2015-07-17T08:42:58.315+0000").unwrap();
        let c = parse_time("2015-07-17T10:42:58.315+02:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2015-07-17").is_err());
    }

    #[test]
    fn implausible_times_are_refused_on_every_format() {
        let now: Timestamp = "2026-03-02T09:00:00Z".parse().unwrap();
        let ctx = || Context::new("s", now);
        let early = ["0000-01-01T00:00:00Z", "0001-01-02T00:00:00Z", "1970-01-01T00:00:00Z"];
        let late = "2026-03-03T09:00:01Z";
        for bad in early.iter().copied().chain([late]) {
            let fields = |r: Result<Normalized, ApiError>| -> Vec<String> {
                match r {
                    Ok(n) => n.rejected.into_iter().map(|e| e.field).collect(),
                    Err(e) => e.field_errors().iter().map(|e| e.field.clone()).collect(),
                }
            };
            let body = format!(r#"{{"summary": "x", "starts_at": "{bad}"}}"#);
            assert_eq!(fields(canonical(body.as_bytes(), ctx())), ["starts_at"], "{bad}");
            let body = format!(
                r#"{{"reporter": {{"name": "d"}}, "service": "web", "summary": "x", "occurred_at": "{bad}"}}"#
            );
            assert_eq!(fields(report(body.as_bytes(), ctx())), ["occurred_at"], "{bad}");
            let body = format!(r#"[{{"labels": {{"a": "b"}}, "startsAt": "{bad}"}}]"#);
            assert_eq!(fields(alertmanager_v2(body.as_bytes(), ctx())), ["alerts[0].startsAt"]);
            let body = format!(
                r#"{{"routing_key": "k", "event_action": "trigger", "payload": {{"summary": "x",
                    "source": "s", "severity": "info", "timestamp": "{bad}"}}}}"#
            );
            let pd = parse_pagerduty(body.as_bytes()).unwrap().into_normalized(ctx());
            assert_eq!(fields(pd), ["payload.timestamp"], "{bad}");
        }
        // An end time may lie ahead (Alertmanager senders set it so), never before 2000.
        let body = r#"[{"labels": {"a": "b"}, "endsAt": "1999-12-31T23:59:59Z"},
                       {"labels": {"a": "c"}, "endsAt": "2030-01-01T00:00:00Z"}]"#;
        let out = alertmanager_v2(body.as_bytes(), ctx()).unwrap();
        assert_eq!(out.rejected.len(), 1, "{:?}", out.rejected);
        assert_eq!(out.rejected[0].field, "alerts[0].endsAt");
        assert!(out.rejected[0].message.contains("before 2000-01-01T00:00:00Z"));
        let body = r#"{"summary": "x", "ends_at": "1970-01-01T00:00:00Z"}"#;
        assert_eq!(
            canonical(body.as_bytes(), ctx()).unwrap_err().field_errors()[0].field,
            "ends_at"
        );
        // Kept: Go's zero time (Alertmanager's "not set"), 2000 itself, and a sender's clock
        // up to a day ahead.
        let body = r#"[{"labels": {"a": "b"}, "startsAt": "0001-01-01T00:00:00Z"},
                       {"labels": {"a": "c"}, "startsAt": "2000-01-01T00:00:00Z"},
                       {"labels": {"a": "d"}, "startsAt": "2026-03-03T09:00:00Z"}]"#;
        let out = alertmanager_v2(body.as_bytes(), ctx()).unwrap();
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        assert_eq!(out.events[0].starts_at, None);
    }

    #[test]
    fn a_repeated_key_is_refused_naming_it_on_every_format() {
        let ctx = || Context::new("s", "2026-03-02T09:00:00Z".parse().unwrap());
        let named = |what: &str, errors: Vec<String>| {
            assert!(
                errors.iter().any(|e| e.contains("duplicate key \"severity\"")),
                "{what}: {errors:?}"
            );
        };
        let all = |r: Result<Normalized, ApiError>| -> Vec<String> {
            match r {
                Ok(n) => {
                    assert!(n.events.is_empty(), "stored: {:?}", n.events);
                    n.rejected.iter().map(ToString::to_string).collect()
                }
                Err(e) => {
                    let mut all = vec![e.to_string()];
                    all.extend(e.field_errors().iter().map(ToString::to_string));
                    all
                }
            }
        };
        let labels = r#"{"alertname": "A", "severity": "info", "severity": "critical"}"#;
        let v2 = format!(r#"[{{"labels": {labels}}}]"#);
        named("v2 labels", all(alertmanager_v2(v2.as_bytes(), ctx())));
        let v2 = format!(r#"[{{"labels": {{"a": "b"}}, "annotations": {labels}}}]"#);
        named("v2 annotations", all(alertmanager_v2(v2.as_bytes(), ctx())));
        let hook = format!(
            r#"{{"version": "4", "alerts": [{{"status": "firing", "labels": {labels}}}]}}"#
        );
        named("webhook labels", all(alertmanager_webhook(hook.as_bytes(), ctx())));
        let event = format!(r#"{{"summary": "x", "labels": {labels}}}"#);
        named("canonical labels", all(canonical(event.as_bytes(), ctx())));
        named("canonical batch", all(canonical(format!("[{event}]").as_bytes(), ctx())));
        let event = r#"{"summary": "x", "details": {"a": [{"severity": 1, "severity": 2}]}}"#;
        named("canonical details, nested", all(canonical(event.as_bytes(), ctx())));
        let rep = format!(
            r#"{{"reporter": {{"name": "d"}}, "service": "web", "summary": "x", "labels": {labels}}}"#
        );
        named("report labels", all(report(rep.as_bytes(), ctx())));
        let pd = r#"{"routing_key": "k", "event_action": "trigger", "payload": {"summary": "x",
            "source": "s", "severity": "info", "custom_details": {"severity": 1, "severity": 2}}}"#;
        let err = parse_pagerduty(pd.as_bytes()).unwrap_err();
        named("pagerduty custom_details", vec![err.to_string()]);
        // Repeated top-level fields were already refused by the formats' own structs.
        let err = canonical(br#"{"summary": "x", "summary": "y"}"#, ctx()).unwrap_err();
        assert!(err.to_string().contains("duplicate field `summary`"), "{err}");
        // The same key in different objects is no repetition, and the values are kept as sent.
        let ok = r#"{"summary": "x", "labels": {"a": "1"}, "annotations": {"a": "2"},
            "details": {"a": {"a": [1, 2.5, null, true, "s"]}}}"#;
        let out = canonical(ok.as_bytes(), ctx()).unwrap();
        assert_eq!(
            serde_json::Value::Object(out.events[0].details.clone()),
            serde_json::json!({"a": {"a": [1, 2.5, null, true, "s"]}})
        );
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let err = decode::<serde_json::Value>(b"{\n  \"a\": ,\n}", "an object").unwrap_err();
        assert_eq!(err.code(), "malformed");
        let msg = err.to_string();
        assert!(msg.contains("line 2 column 8"), "{msg}");
    }

    #[test]
    fn every_format_carries_the_drill_marker() {
        let ctx = || Context::new("s", "2026-03-02T09:00:00Z".parse().unwrap());
        let one = |n: Result<Normalized, ApiError>| {
            let n = n.unwrap();
            assert!(n.rejected.is_empty(), "{:?}", n.rejected);
            n.events[0].drill
        };
        assert!(one(canonical(br#"{"summary": "x", "drill": true}"#, ctx())));
        assert!(!one(canonical(br#"{"summary": "x"}"#, ctx())));
        let report = |drill: &str| {
            format!(r#"{{"reporter": {{"name": "d"}}, "service": "web", "summary": "x"{drill}}}"#)
        };
        assert!(one(super::report(report(r#", "drill": true"#).as_bytes(), ctx())));
        assert!(!one(super::report(report("").as_bytes(), ctx())));
        let am =
            |v: &str| format!(r#"[{{"labels": {{"alertname": "A", "tocsin_drill": "{v}"}}}}]"#);
        assert!(one(alertmanager_v2(am("true").as_bytes(), ctx())));
        assert!(!one(alertmanager_v2(am("false").as_bytes(), ctx())));
        let hook = r#"{"version": "4", "status": "firing", "receiver": "r", "groupKey": "g",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "x",
            "alerts": [{"status": "firing", "labels": {"alertname": "A", "tocsin_drill": "TRUE"},
                        "annotations": {}, "startsAt": "2026-03-02T08:00:00Z"}]}"#;
        assert!(one(alertmanager_webhook(hook.as_bytes(), ctx())));
        let pd = |details: &str| {
            format!(
                r#"{{"routing_key": "k", "event_action": "trigger", "payload": {{"summary": "x",
                    "source": "s", "severity": "info", "custom_details": {details}}}}}"#
            )
        };
        let pd_drill =
            |d: &str| one(parse_pagerduty(pd(d).as_bytes()).unwrap().into_normalized(ctx()));
        assert!(pd_drill(r#"{"tocsin_drill": true}"#));
        assert!(pd_drill(r#"{"tocsin_drill": "true"}"#));
        assert!(!pd_drill(r#"{"other": 1}"#));
    }
}
