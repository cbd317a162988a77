//! Alertmanager's two wire formats: the v2 `postableAlerts` array that Prometheus (and anything
//! else speaking Alertmanager's API) posts, and the webhook notification (version 4) that an
//! Alertmanager sends to a webhook receiver. Both become one [`Event`] per alert, with the
//! Alertmanager fingerprint as dedup key, so the same alert arriving both ways meets itself.
//!
//! Choices that the formats leave open:
//!
//! - `summary` is derived (annotation `summary`, else `description`, else label `alertname`,
//!   else the fingerprint) and cut to [`MAX_SUMMARY_CHARS`] with a trailing `…` rather than
//!   rejected: the sender never wrote a "summary" and the full text stays in `annotations`.
//! - The Go zero time `0001-01-01T00:00:00Z`, which Alertmanager sends for an unset `endsAt`,
//!   counts as absent.
//! - Label names follow Alertmanager ≥ 0.28 (Prometheus 3's UTF-8 names, such as
//!   OpenTelemetry's `service.name`): any non-empty string, as its default (non-`classic`)
//!   mode accepts. JSON cannot carry invalid UTF-8 to here: such a body is refused whole. The
//!   fingerprint is computed over the names' UTF-8 bytes in byte order, as Prometheus' is.
//! - Labels with an empty value are dropped (v2), as Alertmanager does, before the fingerprint.
//! - The label `tocsin_drill="true"` marks a rehearsal (`Event::drill`). It stays a label, so
//!   it is part of the fingerprint: a drill alert never joins the real alert's incident.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::{
    Context, MAX_DEDUP_KEY_CHARS, MAX_SUMMARY_CHARS, Normalized, UniqueMap, check_annotations,
    check_labels, decode, decode_batch, parse_time, shorten, truncate_chars,
};
use crate::error::{ApiError, FieldError};
use crate::event::{Action, Event, Format, Kind, Link};

/// Alertmanager/Prometheus `model.LabelSet.Fingerprint`: 64-bit FNV-1a over the pairs sorted by
/// name, each written as name, 0xff, value, 0xff; as 16 lower-case hex digits.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    const SEPARATOR: u8 = 0xff;
    let mut hash = OFFSET;
    let mut add = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    // BTreeMap iterates in name order, which is the order Prometheus sorts by.
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[SEPARATOR]);
        add(value.as_bytes());
        add(&[SEPARATOR]);
    }
    format!("{hash:016x}")
}

/// One item of `postableAlerts`. Unknown fields are ignored: senders add their own.
#[derive(Deserialize)]
struct PostableAlert {
    labels: Option<UniqueMap>,
    #[serde(default)]
    annotations: Option<UniqueMap>,
    #[serde(default, rename = "startsAt")]
    starts_at: Option<String>,
    #[serde(default, rename = "endsAt")]
    ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    generator_url: Option<String>,
}

/// `POST /api/v2/alerts`: a JSON array of Alertmanager `postableAlert`s.
///
/// An alert whose `endsAt` is at or before `ctx.now` is a resolve, any other a trigger. Invalid
/// alerts are listed in `rejected` as `alerts[i].field`; the others become events.
pub fn alertmanager_v2(body: &[u8], ctx: Context<'_>) -> Result<Normalized, ApiError> {
    let items = decode_batch(body, "alerts", "a JSON array of Alertmanager alerts")?;
    let mut out = Normalized::default();
    out.events.reserve(items.len());
    ctx.ids.reserve(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match postable_alert(i, item, &ctx) {
            Ok(event) => out.events.push(event),
            Err(errors) => out.rejected.extend(errors),
        }
    }
    Ok(out)
}

/// `alerts[i]` and a field below it (`.labels`): written out only when an error names it.
#[derive(Clone, Copy)]
struct At(usize, &'static str);

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "alerts[{}]{}", self.0, self.1)
    }
}

fn postable_alert(i: usize, item: &RawValue, ctx: &Context<'_>) -> Result<Event, Vec<FieldError>> {
    let alert: PostableAlert = serde_json::from_str(item.get()).map_err(|e| {
        vec![FieldError::new(At(i, "").to_string(), format!("not an Alertmanager alert: {e}"))]
    })?;
    let mut errors = Vec::new();
    let mut labels = alert.labels.unwrap_or_default().0;
    check_labels(At(i, ".labels"), &mut labels, false, &mut errors);
    if labels.is_empty() {
        errors.push(FieldError::new(
            At(i, ".labels").to_string(),
            "must not be empty: at least one label is required",
        ));
    }
    let annotations = alert.annotations.unwrap_or_default().0;
    check_annotations(At(i, ".annotations"), &annotations, &mut errors);
    let times = alert_times(At(i, ""), alert.starts_at, alert.ends_at, ctx.now, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let ends_at = times.1;
    let action = match ends_at {
        Some(end) if end <= ctx.now => Action::Resolve,
        _ => Action::Trigger,
    };
    let alert = Alert {
        labels,
        annotations,
        starts_at: times.0,
        ends_at,
        generator_url: alert.generator_url,
    };
    Ok(alert.into_event(ctx, Format::AlertmanagerV2, action, None))
}

/// What both formats share once validated.
struct Alert {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: Option<Timestamp>,
    ends_at: Option<Timestamp>,
    generator_url: Option<String>,
}

impl Alert {
    fn into_event(
        self,
        ctx: &Context<'_>,
        format: Format,
        action: Action,
        sender_fingerprint: Option<String>,
    ) -> Event {
        let fp = sender_fingerprint.unwrap_or_else(|| fingerprint(&self.labels));
        let summary = ["summary", "description"]
            .iter()
            .find_map(|k| self.annotations.get(*k).filter(|s| !s.is_empty()))
            .or_else(|| self.labels.get("alertname"))
            .map_or_else(|| fp.clone(), |s| truncate_chars(s, MAX_SUMMARY_CHARS));
        let mut event = super::new_event(ctx, format, Kind::Alert);
        event.action = action;
        event.dedup_key = fp.clone();
        event.fingerprint = Some(fp);
        event.summary = summary;
        event.severity = self.labels.get("severity").map(|s| s.to_lowercase());
        event.service = self.labels.get("service").or_else(|| self.labels.get("job")).cloned();
        event.starts_at = self.starts_at;
        event.ends_at = self.ends_at;
        event.drill = self
            .labels
            .get(super::DRILL_LABEL)
            .is_some_and(|v| super::drill_flag(Some(&Value::String(v.clone()))));
        event.links = self
            .generator_url
            .filter(|u| !u.is_empty())
            .map(|href| Link { href, text: None })
            .into_iter()
            .collect();
        event.labels = self.labels;
        event.annotations = self.annotations;
        event
    }
}

/// Parses `startsAt`/`endsAt`, treating Go's zero time as absent, refusing implausible times
/// (see [`super::Plausible`]; Alertmanager itself takes any), and checks their order as
/// Alertmanager does ("start time must be before end time").
fn alert_times(
    path: impl std::fmt::Display,
    starts_at: Option<String>,
    ends_at: Option<String>,
    now: Timestamp,
    errors: &mut Vec<FieldError>,
) -> (Option<Timestamp>, Option<Timestamp>) {
    let mut parse = |name: &str, value: Option<String>, bound| {
        let value = value.filter(|s| !s.is_empty())?;
        let path = format!("{path}.{name}");
        match parse_time(&value) {
            Ok(ts) if is_go_zero_time(ts) => None,
            Ok(ts) => super::plausible(&path, ts, bound, errors),
            Err(message) => {
                errors.push(FieldError::new(path, message));
                None
            }
        }
    };
    let starts = parse("startsAt", starts_at, super::Plausible::Start { now });
    let ends = parse("endsAt", ends_at, super::Plausible::End);
    if let (Some(s), Some(e)) = (starts, ends) {
        if e < s {
            errors.push(FieldError::new(format!("{path}.endsAt"), "must not be before startsAt"));
        }
    }
    (starts, ends)
}

/// `0001-01-01T00:00:00Z`, Go's `time.Time{}`, which Alertmanager marshals for "not set".
/// Exactly that: any other time before 2000 is refused as implausible.
fn is_go_zero_time(ts: Timestamp) -> bool {
    ts == Timestamp::constant(-62_135_596_800, 0)
}

/// Alertmanager webhook notification. `groupLabels`, `commonLabels` and `commonAnnotations` are
/// not read (nor checked for repeated keys): they are derived from the alerts' own labels,
/// which every event keeps.
#[derive(Deserialize)]
struct Webhook<'a> {
    version: String,
    #[serde(default, rename = "groupKey")]
    group_key: Option<String>,
    #[serde(default, rename = "truncatedAlerts")]
    truncated_alerts: Option<u64>,
    #[serde(default)]
    receiver: Option<String>,
    #[serde(default, rename = "externalURL")]
    external_url: Option<String>,
    /// Borrowed raw, each decoded once into its own type: a `Value` would already have
    /// dropped a repeated label key.
    #[serde(borrow)]
    alerts: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct WebhookAlert {
    status: Option<String>,
    labels: Option<UniqueMap>,
    #[serde(default)]
    annotations: Option<UniqueMap>,
    #[serde(default, rename = "startsAt")]
    starts_at: Option<String>,
    #[serde(default, rename = "endsAt")]
    ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    generator_url: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

/// `POST /api/v1/alertmanager`: an Alertmanager webhook notification, `version` "4".
///
/// One event per alert; `status: resolved` is a resolve, `firing` a trigger. The sender's
/// `fingerprint` is kept (computed when absent). `receiver`, `groupKey`, `externalURL` and a
/// non-zero `truncatedAlerts` go into each event's `details`. Another `version` is a 422.
pub fn alertmanager_webhook(body: &[u8], ctx: Context<'_>) -> Result<Normalized, ApiError> {
    let hook: Webhook = decode(body, "an Alertmanager webhook notification")?;
    if hook.version != "4" {
        return Err(ApiError::invalid(vec![FieldError::new(
            "version",
            format!("version {:?} is not supported; only \"4\" is", shorten(&hook.version)),
        )]));
    }
    super::check_batch_size("alerts", hook.alerts.len())?;
    let mut details = serde_json::Map::new();
    let strings = [
        ("receiver", hook.receiver),
        ("groupKey", hook.group_key),
        ("externalURL", hook.external_url),
    ];
    for (key, value) in strings {
        if let Some(v) = value {
            details.insert(key.to_string(), Value::String(v));
        }
    }
    if let Some(n) = hook.truncated_alerts.filter(|n| *n > 0) {
        details.insert("truncatedAlerts".to_string(), Value::from(n));
    }
    let mut out = Normalized::default();
    ctx.ids.reserve(hook.alerts.len());
    for (i, item) in hook.alerts.into_iter().enumerate() {
        let path = format!("alerts[{i}]");
        match webhook_alert(&path, item, &ctx) {
            Ok(mut event) => {
                event.details = details.clone();
                out.events.push(event);
            }
            Err(errors) => out.rejected.extend(errors),
        }
    }
    Ok(out)
}

fn webhook_alert(path: &str, item: &RawValue, ctx: &Context<'_>) -> Result<Event, Vec<FieldError>> {
    let alert: WebhookAlert = serde_json::from_str(item.get()).map_err(|e| {
        vec![FieldError::new(path, format!("not an Alertmanager webhook alert: {e}"))]
    })?;
    let mut errors = Vec::new();
    let action = match alert.status.as_deref() {
        Some("firing") => Some(Action::Trigger),
        Some("resolved") => Some(Action::Resolve),
        _ => {
            errors.push(FieldError::new(
                format!("{path}.status"),
                "must be \"firing\" or \"resolved\"",
            ));
            None
        }
    };
    let labels_path = format!("{path}.labels");
    let mut labels = alert.labels.unwrap_or_default().0;
    check_labels(&labels_path, &mut labels, false, &mut errors);
    if labels.is_empty() {
        errors.push(FieldError::new(
            &labels_path,
            "must not be empty: at least one label is required",
        ));
    }
    let annotations = alert.annotations.unwrap_or_default().0;
    check_annotations(format!("{path}.annotations"), &annotations, &mut errors);
    let (starts_at, ends_at) =
        alert_times(path, alert.starts_at, alert.ends_at, ctx.now, &mut errors);
    let fingerprint = alert.fingerprint.filter(|f| !f.is_empty());
    if let Some(fp) = &fingerprint {
        super::check_chars(&format!("{path}.fingerprint"), fp, MAX_DEDUP_KEY_CHARS, &mut errors);
    }
    let Some(action) = action.filter(|_| errors.is_empty()) else {
        return Err(errors);
    };
    let alert =
        Alert { labels, annotations, starts_at, ends_at, generator_url: alert.generator_url };
    Ok(alert.into_event(ctx, Format::AlertmanagerWebhook, action, fingerprint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(now: &str) -> Context<'static> {
        Context::new("prometheus", now.parse().unwrap())
    }

    #[test]
    fn batch_items_are_decoded_one_by_one_from_the_raw_body() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let body = format!(
            r#"[{{"labels":{{"alertname":"Caf\u00e9","instance":"a\nb"}},"annotations":{{"summary":"x\"y"}}}},
               5,
               {{"labels":{{"alertname":"B"}},"startsAt":"yesterday"}},
               {{"labels":{{"alertname":"D"}},"extra":{deep}}},
               {{"labels":{{"alertname":"C"}}}}]"#
        );
        let out = alertmanager_v2(body.as_bytes(), ctx("2025-03-01T12:00:00Z")).unwrap();
        // Escapes inside an item decode as they would in a whole document.
        assert_eq!(out.events.len(), 3, "{:?}", out.rejected);
        let first = &out.events[0];
        assert_eq!(first.labels["alertname"], "Café");
        assert_eq!(first.labels["instance"], "a\nb");
        assert_eq!(first.summary, "x\"y");
        // A field Alertmanager does not define is skipped however deep it nests (the skip
        // keeps its own stack on the heap, bounded by the body limit), as Alertmanager does.
        assert_eq!(out.events[1].labels["alertname"], "D");
        assert_eq!(out.events[2].labels["alertname"], "C");
        // Each bad item is named by its index; the good ones around it are kept.
        let named: Vec<&str> = out.rejected.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(named, ["alerts[1]", "alerts[2].startsAt"]);
        assert!(out.rejected[0].message.starts_with("not an Alertmanager alert: invalid type"));
        // Not JSON at all (invalid UTF-8 inside an item's string): the whole body is refused.
        let bad = b"[{\"labels\":{\"alertname\":\"\xff\"}}]";
        assert!(alertmanager_v2(bad, ctx("2025-03-01T12:00:00Z")).is_err());
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn fingerprint_matches_prometheus() {
        let ls =
            labels(&[("alertname", "DiskFull"), ("instance", "db1"), ("severity", "critical")]);
        assert_eq!(fingerprint(&ls), "e94c744ae3d44df8");
        assert_eq!(fingerprint(&BTreeMap::new()), "cbf29ce484222325");
    }

    #[test]
    fn v2_fixture() {
        let body = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/alertmanager-v2/alerts.json"
        ));
        let out = alertmanager_v2(body, ctx("2025-03-01T12:00:00Z")).unwrap();
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        assert_eq!(out.events.len(), 3);

        let disk = &out.events[0];
        assert_eq!(disk.format, Format::AlertmanagerV2);
        assert_eq!(disk.kind, Kind::Alert);
        assert_eq!(disk.action, Action::Trigger);
        assert_eq!(disk.source, "prometheus");
        assert_eq!(disk.received_at, "2025-03-01T12:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(disk.id.get_version_num(), 7);
        assert_eq!(disk.dedup_key, fingerprint(&disk.labels));
        assert_eq!(disk.fingerprint.as_deref(), Some(disk.dedup_key.as_str()));
        assert_eq!(disk.summary, "Disk /var is 97% full on db1");
        assert_eq!(disk.severity.as_deref(), Some("critical"));
        assert_eq!(disk.service.as_deref(), Some("postgres"));
        assert_eq!(disk.starts_at, Some("2025-03-01T11:52:30.123Z".parse().unwrap()));
        assert_eq!(disk.links.len(), 1);
        assert!(disk.links[0].href.starts_with("http://prometheus.example.com:9090/graph"));

        // No summary annotation: description; no `service` label: `job`; severity lower-cased.
        let latency = &out.events[1];
        assert_eq!(latency.action, Action::Trigger);
        assert_eq!(latency.summary, "p99 latency of the checkout API is above 2 s");
        assert_eq!(latency.service.as_deref(), Some("checkout-api"));
        assert_eq!(latency.severity.as_deref(), Some("warning"));

        // endsAt in the past: resolved; no annotations: alertname.
        let down = &out.events[2];
        assert_eq!(down.action, Action::Resolve);
        assert_eq!(down.summary, "InstanceDown");
        assert!(down.ends_at.is_some());
    }

    #[test]
    fn v2_rejects_invalid_alerts_and_keeps_the_valid_ones() {
        let body = br#"[
            {"labels": {"alertname": "A"}},
            {"labels": {}},
            {"labels": {"": "x", "alertname": "B"}},
            {"annotations": {"summary": "no labels"}},
            {"labels": {"alertname": "C"}, "startsAt": "soon"},
            {"labels": {"alertname": "D"}, "extra": "ignored"},
            {"labels": {"only": ""}}
        ]"#;
        let out = alertmanager_v2(body, ctx("2025-03-01T12:00:00Z")).unwrap();
        let summaries: Vec<_> = out.events.iter().map(|e| e.summary.as_str()).collect();
        assert_eq!(summaries, ["A", "D"]);
        let fields: Vec<_> = out.rejected.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "alerts[1].labels",
                "alerts[2].labels",
                "alerts[3].labels",
                "alerts[4].startsAt",
                "alerts[6].labels"
            ]
        );
        assert!(out.rejected[0].message.contains("must not be empty"));
        assert!(out.rejected[1].message.contains("label names must not be empty"));
    }

    #[test]
    fn v2_takes_utf8_label_names_with_prometheus_fingerprints() {
        // Vectors from prometheus/common's own tests (model/signature_test.go), whose names
        // are not classic label names.
        let body = r#"[
            {"labels": {"first-label": "first-label-value"}},
            {"labels": {"first-label": "first-label-value", "second-label": "second-label-value",
                        "third-label": "third-label-value"}},
            {"labels": {"service.name": "checkout", "alertname": "HighLatency",
                        "région": "eu-ouest", "Zone": "a", "1st": "x", "with space": "y"}}
        ]"#;
        let out = alertmanager_v2(body.as_bytes(), ctx("2025-03-01T12:00:00Z")).unwrap();
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        assert_eq!(out.events[0].dedup_key, format!("{:016x}", 5_146_282_821_936_882_169_u64));
        assert_eq!(out.events[1].dedup_key, format!("{:016x}", 13_843_036_195_897_128_121_u64));
        assert_eq!(out.events[2].labels["service.name"], "checkout");
        assert_eq!(out.events[2].labels["région"], "eu-ouest");
        // Go sorts names by their bytes ("Z" < "a" < "é"), as BTreeMap<String, _> does.
        let names: Vec<&str> = out.events[2].labels.keys().map(String::as_str).collect();
        assert_eq!(names, ["1st", "Zone", "alertname", "région", "service.name", "with space"]);
    }

    #[test]
    fn v2_empty_array_is_fine_and_non_array_is_malformed() {
        let out = alertmanager_v2(b"[]", ctx("2025-03-01T12:00:00Z")).unwrap();
        assert!(out.events.is_empty() && out.rejected.is_empty());
        let err =
            alertmanager_v2(br#"{"labels": {"a": "b"}}"#, ctx("2025-03-01T12:00:00Z")).unwrap_err();
        assert_eq!(err.code(), "malformed");
        assert!(err.to_string().contains("expected a sequence at line 1"), "{err}");
        let err = alertmanager_v2(b"[{\"labels\": ", ctx("2025-03-01T12:00:00Z")).unwrap_err();
        assert_eq!(err.code(), "malformed");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn v2_batch_limit() {
        let body = format!("[{}{{}}]", "{},".repeat(super::super::MAX_BATCH));
        let err = alertmanager_v2(body.as_bytes(), ctx("2025-03-01T12:00:00Z")).unwrap_err();
        assert_eq!(err.code(), "invalid");
    }

    #[test]
    fn v2_long_summary_is_cut() {
        let long = "x".repeat(3000);
        let body = format!(
            r#"[{{"labels": {{"alertname": "A"}}, "annotations": {{"summary": "{long}"}}}}]"#
        );
        let out = alertmanager_v2(body.as_bytes(), ctx("2025-03-01T12:00:00Z")).unwrap();
        let e = &out.events[0];
        assert_eq!(e.summary.chars().count(), MAX_SUMMARY_CHARS);
        assert!(e.summary.ends_with('…'));
        assert_eq!(e.annotations["summary"], long);
    }

    #[test]
    fn v2_end_before_start_rejected_and_zero_time_is_none() {
        let body = br#"[
            {"labels": {"a": "1"}, "startsAt": "2025-03-01T12:00:00Z", "endsAt": "2025-03-01T11:00:00Z"},
            {"labels": {"a": "2"}, "startsAt": "2025-03-01T11:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}
        ]"#;
        let out = alertmanager_v2(body, ctx("2025-03-01T12:00:00Z")).unwrap();
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].field, "alerts[0].endsAt");
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.events[0].ends_at, None);
        assert_eq!(out.events[0].action, Action::Trigger);
    }

    #[test]
    fn webhook_fixture() {
        let body = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/alertmanager-webhook/v4.json"
        ));
        let out = alertmanager_webhook(body, ctx("2025-03-01T12:00:00Z")).unwrap();
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        assert_eq!(out.events.len(), 2);

        let firing = &out.events[0];
        assert_eq!(firing.format, Format::AlertmanagerWebhook);
        assert_eq!(firing.action, Action::Trigger);
        assert_eq!(firing.dedup_key, "a1b2c3d4e5f60718");
        assert_eq!(firing.fingerprint.as_deref(), Some("a1b2c3d4e5f60718"));
        assert_eq!(firing.ends_at, None, "zero endsAt is no end");
        assert_eq!(firing.summary, "Disk /var is 97% full on db1");
        assert_eq!(firing.details["receiver"], "tocsin");
        assert_eq!(firing.details["groupKey"], "{}:{alertname=\"DiskFull\"}");
        assert_eq!(firing.details["externalURL"], "http://alertmanager.example.com:9093");

        // No fingerprint from the sender: computed from the labels.
        let resolved = &out.events[1];
        assert_eq!(resolved.action, Action::Resolve);
        assert_eq!(resolved.dedup_key, fingerprint(&resolved.labels));
        assert!(resolved.ends_at.is_some());
    }

    #[test]
    fn webhook_other_version_is_invalid() {
        let body = br#"{"version": "3", "alerts": []}"#;
        let err = alertmanager_webhook(body, ctx("2025-03-01T12:00:00Z")).unwrap_err();
        assert_eq!(err.code(), "invalid");
        assert_eq!(err.field_errors()[0].field, "version");
    }

    #[test]
    fn webhook_bad_status_rejected() {
        let body = br#"{"version": "4", "alerts": [
            {"status": "pending", "labels": {"alertname": "A"}},
            {"status": "firing", "labels": {"alertname": "B"}}
        ]}"#;
        let out = alertmanager_webhook(body, ctx("2025-03-01T12:00:00Z")).unwrap();
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.rejected[0].field, "alerts[0].status");
    }
}
