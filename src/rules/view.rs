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

type EventField = fn(&Event) -> Dynamic;

/// The `event` map's fields, sorted by name: the one definition of what scripts see, used to
/// build the whole map ([`event`]) and to read one field ([`event_field`]) for a rule's memo
/// key without building the rest.
static EVENT_FIELDS: [(&str, EventField); 18] = [
    ("action", |e| {
        shared_name!(e.action, Action, [Action::Trigger, Action::Acknowledge, Action::Resolve])
    }),
    ("annotations", |e| string_map(&e.annotations)),
    ("assessment", |e| {
        optional(e.assessment.as_ref(), |a| {
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
        })
    }),
    ("customer", |e| {
        optional(e.customer.as_ref(), |c| {
            record! {
                "email" => optional(c.email.as_deref(), text),
                "id" => optional(c.id.as_deref(), text),
                "name" => optional(c.name.as_deref(), text),
                "phone" => optional(c.phone.as_deref(), text),
            }
        })
    }),
    ("dedup_key", |e| text(&e.dedup_key)),
    ("details", |e| json_object(&e.details)),
    ("fingerprint", |e| optional(e.fingerprint.as_deref(), text)),
    ("format", |e| {
        shared_name!(
            e.format,
            Format,
            [
                Format::AlertmanagerV2,
                Format::Pagerduty,
                Format::AlertmanagerWebhook,
                Format::Report,
                Format::Canonical,
                Format::Declaration,
            ]
        )
    }),
    ("id", |e| text(&e.id.to_string())),
    ("kind", |e| shared_name!(e.kind, Kind, [Kind::Alert, Kind::Report, Kind::Declaration])),
    ("labels", |e| string_map(&e.labels)),
    ("links", |e| {
        let links: Array = e
            .links
            .iter()
            .map(|link| {
                record! {
                    "href" => text(&link.href),
                    "text" => optional(link.text.as_deref(), text),
                }
            })
            .collect();
        links.into()
    }),
    ("service", |e| optional(e.service.as_deref(), text)),
    ("severity", |e| optional(e.severity.as_deref(), text)),
    ("source", |e| text(&e.source)),
    ("starts_at", |e| optional(e.starts_at, |t| text(&t.to_string()))),
    ("summary", |e| text(&e.summary)),
    ("verified", |e| e.verified.into()),
];

/// A map with `fields`' names (sorted) and unit values, built once per field table.
fn template<T>(fields: &[(&str, T)]) -> Map {
    fields.iter().map(|(k, _)| ((*k).into(), Dynamic::UNIT)).collect()
}

pub(super) fn event(event: &Event) -> Dynamic {
    static TEMPLATE: LazyLock<Map> = LazyLock::new(|| template(event_fields()));
    let mut map = TEMPLATE.clone();
    for (slot, (_, field)) in map.values_mut().zip(event_fields()) {
        *slot = field(event);
    }
    Dynamic::from_map(map)
}

fn event_fields() -> &'static [(&'static str, EventField)] {
    &EVENT_FIELDS
}

/// The map with only the fields at `indexes` (into the sorted field table, see
/// [`event_field_index`]): what the rule set binds when its scripts read only those.
pub(super) fn event_partial(event: &Event, indexes: &[usize]) -> Dynamic {
    let fields = event_fields();
    let map: Map = indexes.iter().map(|&i| (fields[i].0.into(), (fields[i].1)(event))).collect();
    Dynamic::from_map(map)
}

pub(super) fn event_field_index(name: &str) -> Option<usize> {
    event_fields().binary_search_by(|(k, _)| (*k).cmp(name)).ok()
}

/// The field at `index` (from [`event_field_index`]) of [`event`]'s map.
pub(super) fn event_field_at(event: &Event, index: usize) -> Dynamic {
    (event_fields()[index].1)(event)
}

/// For a field whose value in [`event`]'s map is text or unit: that text (`None`: unit),
/// without building a Rhai string. `None` for the other fields.
pub(super) fn event_text(name: &str) -> Option<fn(&Event) -> Option<&str>> {
    Some(match name {
        "dedup_key" => |e| Some(e.dedup_key.as_str()),
        "fingerprint" => |e| e.fingerprint.as_deref(),
        "service" => |e| e.service.as_deref(),
        "severity" => |e| e.severity.as_deref(),
        "source" => |e| Some(e.source.as_str()),
        "summary" => |e| Some(e.summary.as_str()),
        _ => return None,
    })
}

/// One value of the `details` map, as [`event`]'s map holds it.
pub(super) fn detail(event: &Event, name: &str) -> Option<Dynamic> {
    event.details.get(name).map(json)
}

type IncidentField = fn(&IncidentView, Timestamp) -> Dynamic;

/// The `incident` map's fields, sorted by name (see [`EVENT_FIELDS`]). `now` is the event's
/// arrival time, not the wall clock: the same event and incident always give the same
/// `age_seconds`, so offline rule tests reproduce what the daemon decided.
static INCIDENT_FIELDS: [(&str, IncidentField); 9] = [
    ("age_seconds", |i, now| {
        now.as_second().saturating_sub(i.first_seen.as_second()).max(0).into()
    }),
    ("count", |i, _| int(i.count)),
    ("first_seen", |i, _| text(&i.first_seen.to_string())),
    ("id", |i, _| int(i.id)),
    ("is_new", |i, _| i.is_new.into()),
    ("last_seen", |i, _| text(&i.last_seen.to_string())),
    ("score", |i, _| optional(i.score, Dynamic::from)),
    ("severity", |i, _| optional(i.severity.as_deref(), text)),
    ("status", |i, _| text(&i.status)),
];

pub(super) fn incident(incident: &IncidentView, now: Timestamp) -> Dynamic {
    static TEMPLATE: LazyLock<Map> = LazyLock::new(|| template(&INCIDENT_FIELDS));
    let mut map = TEMPLATE.clone();
    for (slot, (_, field)) in map.values_mut().zip(&INCIDENT_FIELDS) {
        *slot = field(incident, now);
    }
    Dynamic::from_map(map)
}

/// The map with only the fields at `indexes` (see [`event_partial`]).
pub(super) fn incident_partial(
    incident: &IncidentView,
    now: Timestamp,
    indexes: &[usize],
) -> Dynamic {
    let map: Map = indexes
        .iter()
        .map(|&i| (INCIDENT_FIELDS[i].0.into(), (INCIDENT_FIELDS[i].1)(incident, now)))
        .collect();
    Dynamic::from_map(map)
}

pub(super) fn incident_field_index(name: &str) -> Option<usize> {
    INCIDENT_FIELDS.binary_search_by(|(k, _)| (*k).cmp(name)).ok()
}

/// The field at `index` (from [`incident_field_index`]) of [`incident`]'s map.
pub(super) fn incident_field_at(incident: &IncidentView, now: Timestamp, index: usize) -> Dynamic {
    (INCIDENT_FIELDS[index].1)(incident, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_tables_are_sorted_so_lookups_and_maps_agree() {
        assert!(event_fields().is_sorted_by_key(|(k, _)| *k));
        assert!(INCIDENT_FIELDS.is_sorted_by_key(|(k, _)| *k));
    }

    #[test]
    fn text_fields_read_directly_are_the_maps_values() {
        let mut e: Event = serde_json::from_value(serde_json::json!({
            "action": "trigger", "dedup_key": "k1", "format": "alertmanager_v2",
            "id": "01a21d65-6376-7229-8701-50f42ecd3d43", "kind": "alert",
            "received_at": "2026-11-27T14:25:13Z", "source": "prom", "summary": "disk full",
            "service": "db", "verified": false, "details": {"a": {"b": [1, "x"]}},
        }))
        .unwrap();
        for service in [Some("db".to_string()), None] {
            e.service = service;
            for (name, field) in event_fields() {
                let Some(read) = event_text(name) else { continue };
                let direct = read(&e).map_or(Dynamic::UNIT, text);
                assert_eq!(direct.to_string(), field(&e).to_string(), "{name}");
                assert_eq!(direct.type_name(), field(&e).type_name(), "{name}");
            }
        }
        let whole = event_field_at(&e, event_field_index("details").unwrap());
        let via_map = whole.read_lock::<Map>().unwrap().get("a").cloned().unwrap();
        assert_eq!(detail(&e, "a").unwrap().to_string(), via_map.to_string());
        assert!(detail(&e, "missing").is_none());
    }
}
