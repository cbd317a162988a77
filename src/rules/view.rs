//! The read-only `event` and `incident` maps scripts see.
//!
//! Built once per event and bound as constants for every script of the evaluation, so the cost
//! of building them (a large share of a cheap script's run) is paid once, not per script.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use jiff::Timestamp;
use rhai::{Array, Dynamic, ImmutableString, Map};

use super::IncidentView;
use crate::event::{Action, Event, Format, Kind};

fn text(s: &str) -> Dynamic {
    // Straight into Rhai's string type: going through `String` costs a copy and a free.
    ImmutableString::from(s).into()
}

/// Builds a map with the given keys, which must be sorted. A template with those keys and unit
/// values is built once; each call clones it and fills the values in key order. That skips
/// every key comparison of building the map entry by entry, which is most of the cost here:
/// Rhai's map keys are small-string-optimized and slow to compare.
macro_rules! record {
    ($($key:literal => $value:expr),+ $(,)?) => {{
        static TEMPLATE: LazyLock<Map> = LazyLock::new(|| {
            let keys = [$($key),+];
            debug_assert!(keys.is_sorted(), "record keys must be sorted: {keys:?}");
            keys.into_iter().map(|k| (k.into(), Dynamic::UNIT)).collect()
        });
        let mut map = TEMPLATE.clone();
        for (slot, value) in map.values_mut().zip([$($value),+]) {
            *slot = value;
        }
        Dynamic::from_map(map)
    }};
}

fn optional<T>(value: Option<T>, f: impl FnOnce(T) -> Dynamic) -> Dynamic {
    value.map_or(Dynamic::UNIT, f)
}

fn string_map(map: &BTreeMap<String, String>) -> Dynamic {
    // Inserted one by one: the source is already sorted, and `collect` would sort and
    // de-duplicate it again through a temporary vector.
    let mut out = Map::new();
    for (k, v) in map {
        out.insert(k.as_str().into(), text(v));
    }
    Dynamic::from_map(out)
}

/// One shared Rhai string per variant of a closed set (format, kind, action), so that naming
/// one in an event's map is a reference-count increment instead of an allocation.
macro_rules! shared_name {
    ($value:expr, $ty:ty, [$($variant:expr),+ $(,)?]) => {{
        static NAMES: LazyLock<Vec<($ty, ImmutableString)>> =
            LazyLock::new(|| vec![$(($variant, $variant.as_str().into())),+]);
        let value: $ty = $value;
        NAMES
            .iter()
            .find(|(v, _)| *v == value)
            .map_or_else(|| text(value.as_str()), |(_, name)| name.clone().into())
    }};
}

/// Rhai integers are i64; a u64 beyond that range saturates rather than wrapping negative.
fn int(n: u64) -> Dynamic {
    Dynamic::from(i64::try_from(n).unwrap_or(i64::MAX))
}

fn json(value: &serde_json::Value) -> Dynamic {
    use serde_json::Value;
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().map_or(Dynamic::UNIT, Dynamic::from),
        },
        Value::String(s) => text(s),
        Value::Array(items) => items.iter().map(json).collect::<Array>().into(),
        Value::Object(fields) => json_object(fields),
    }
}

fn json_object(fields: &serde_json::Map<String, serde_json::Value>) -> Dynamic {
    let mut map = Map::new();
    for (k, v) in fields {
        map.insert(k.as_str().into(), json(v));
    }
    Dynamic::from_map(map)
}

pub(super) fn event(event: &Event) -> Dynamic {
    let links: Array = event
        .links
        .iter()
        .map(|link| {
            record! {
                "href" => text(&link.href),
                "text" => optional(link.text.as_deref(), text),
            }
        })
        .collect();
    let customer = optional(event.customer.as_ref(), |c| {
        record! {
            "email" => optional(c.email.as_deref(), text),
            "id" => optional(c.id.as_deref(), text),
            "name" => optional(c.name.as_deref(), text),
            "phone" => optional(c.phone.as_deref(), text),
        }
    });
    let assessment = optional(event.assessment.as_ref(), |a| {
        let services: Array = a.services.iter().map(|s| text(s)).collect();
        record! {
            "customer_impact" => a.customer_impact.into(),
            "data_sensitivity" => text(a.data_sensitivity.as_str()),
            "declared_by" => text(&a.declared_by),
            "description" => text(&a.description),
            "estimated_reach" => match &a.estimated_reach {
                None => Dynamic::UNIT,
                Some(crate::event::Reach::Count(n)) => int(*n),
                Some(crate::event::Reach::Text(t)) => text(t),
            },
            "services" => services.into(),
            "severity" => optional(a.severity.as_deref(), text),
        }
    });
    record! {
        "action" => shared_name!(event.action, Action, [Action::Trigger, Action::Acknowledge, Action::Resolve]),
        "annotations" => string_map(&event.annotations),
        "assessment" => assessment,
        "customer" => customer,
        "dedup_key" => text(&event.dedup_key),
        "details" => json_object(&event.details),
        "fingerprint" => optional(event.fingerprint.as_deref(), text),
        "format" => shared_name!(event.format, Format, [
            Format::AlertmanagerV2,
            Format::Pagerduty,
            Format::AlertmanagerWebhook,
            Format::Report,
            Format::Canonical,
            Format::Declaration,
        ]),
        "id" => text(&event.id.to_string()),
        "kind" => shared_name!(event.kind, Kind, [Kind::Alert, Kind::Report, Kind::Declaration]),
        "labels" => string_map(&event.labels),
        "links" => links.into(),
        "service" => optional(event.service.as_deref(), text),
        "severity" => optional(event.severity.as_deref(), text),
        "source" => text(&event.source),
        "starts_at" => optional(event.starts_at, |t| text(&t.to_string())),
        "summary" => text(&event.summary),
        "verified" => event.verified.into(),
    }
}

/// `now` is the event's arrival time, not the wall clock: the same event and incident always
/// give the same `age_seconds`, so offline rule tests reproduce what the daemon decided.
pub(super) fn incident(incident: &IncidentView, now: Timestamp) -> Dynamic {
    let age = now.as_second().saturating_sub(incident.first_seen.as_second());
    record! {
        "age_seconds" => age.max(0).into(),
        "count" => int(incident.count),
        "first_seen" => text(&incident.first_seen.to_string()),
        "id" => int(incident.id),
        "is_new" => incident.is_new.into(),
        "last_seen" => text(&incident.last_seen.to_string()),
        "score" => optional(incident.score, Dynamic::from),
        "severity" => optional(incident.severity.as_deref(), text),
        "status" => text(&incident.status),
    }
}
