//! The read-only `event` and `incident` maps scripts see.
//!
//! Built once per event and bound as constants for every script of the evaluation, so the cost
//! of building them (a large share of a cheap script's run) is paid once, not per script.

use std::collections::BTreeMap;

use jiff::Timestamp;
use rhai::{Array, Dynamic, Map};

use super::IncidentView;
use crate::event::Event;

fn text(s: &str) -> Dynamic {
    Dynamic::from(s.to_owned())
}

fn optional<T>(value: Option<T>, f: impl FnOnce(T) -> Dynamic) -> Dynamic {
    value.map_or(Dynamic::UNIT, f)
}

fn string_map(map: &BTreeMap<String, String>) -> Dynamic {
    let map: Map = map.iter().map(|(k, v)| (k.as_str().into(), text(v))).collect();
    map.into()
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
    let map: Map = fields.iter().map(|(k, v)| (k.as_str().into(), json(v))).collect();
    map.into()
}

pub(super) fn event(event: &Event) -> Dynamic {
    let links: Array = event
        .links
        .iter()
        .map(|link| {
            let mut map = Map::new();
            map.insert("href".into(), text(&link.href));
            map.insert("text".into(), optional(link.text.as_deref(), text));
            map.into()
        })
        .collect();
    let customer = optional(event.customer.as_ref(), |c| {
        let mut map = Map::new();
        map.insert("id".into(), optional(c.id.as_deref(), text));
        map.insert("name".into(), optional(c.name.as_deref(), text));
        map.insert("email".into(), optional(c.email.as_deref(), text));
        map.insert("phone".into(), optional(c.phone.as_deref(), text));
        map.into()
    });

    let mut map = Map::new();
    map.insert("id".into(), text(&event.id.to_string()));
    map.insert("source".into(), text(&event.source));
    map.insert("format".into(), text(event.format.as_str()));
    map.insert("kind".into(), text(event.kind.as_str()));
    map.insert("action".into(), text(event.action.as_str()));
    map.insert("dedup_key".into(), text(&event.dedup_key));
    map.insert("fingerprint".into(), optional(event.fingerprint.as_deref(), text));
    map.insert("labels".into(), string_map(&event.labels));
    map.insert("annotations".into(), string_map(&event.annotations));
    map.insert("summary".into(), text(&event.summary));
    map.insert("severity".into(), optional(event.severity.as_deref(), text));
    map.insert("service".into(), optional(event.service.as_deref(), text));
    map.insert("starts_at".into(), optional(event.starts_at, |t| text(&t.to_string())));
    map.insert("links".into(), links.into());
    map.insert("customer".into(), customer);
    map.insert("verified".into(), event.verified.into());
    map.insert("details".into(), json_object(&event.details));
    map.into()
}

/// `now` is the event's arrival time, not the wall clock: the same event and incident always
/// give the same `age_seconds`, so offline rule tests reproduce what the daemon decided.
pub(super) fn incident(incident: &IncidentView, now: Timestamp) -> Dynamic {
    let age = now.as_second().saturating_sub(incident.first_seen.as_second());
    let mut map = Map::new();
    map.insert("id".into(), int(incident.id));
    map.insert("is_new".into(), incident.is_new.into());
    map.insert("status".into(), text(&incident.status));
    map.insert("count".into(), int(incident.count));
    map.insert("first_seen".into(), text(&incident.first_seen.to_string()));
    map.insert("last_seen".into(), text(&incident.last_seen.to_string()));
    map.insert("age_seconds".into(), age.max(0).into());
    map.insert("severity".into(), optional(incident.severity.as_deref(), text));
    map.insert("score".into(), optional(incident.score, Dynamic::from));
    map.into()
}
