//! Property tests (proptest) for fingerprinting and normalization, through the public API.
//!
//! - The fingerprint equals an independent implementation of Prometheus'
//!   `LabelSet.Fingerprint` (written again here from its definition), whatever order the labels
//!   arrive in on the wire, and keeps the known vector.
//! - Any valid generated Alertmanager alert or canonical event normalizes (no panic, nothing
//!   rejected), keeps what was sent, survives the store's JSON encoding unchanged, and
//!   normalizing it again from its own fields gives the same incident key.
//! - Arbitrary bytes and arbitrary JSON never panic any parser; they are answered 400/422.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};
use tocsin::error::ApiError;
use tocsin::event::Event;
use tocsin::normalize::{
    Context, Normalized, alertmanager_v2, alertmanager_webhook, canonical, fingerprint,
    parse_pagerduty, report,
};

fn ctx() -> Context<'static> {
    Context::new("props", "2026-11-27T12:00:00Z".parse().unwrap())
}

/// Prometheus `model.labelSetToFingerprint`, from its definition: sort the names, FNV-1a 64
/// over name, 0xff, value, 0xff for each pair.
fn reference_fingerprint(pairs: &[(String, String)]) -> u64 {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    // Go compares strings byte by byte, UTF-8 names included.
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, value) in sorted {
        for b in name.bytes().chain([0xff]).chain(value.bytes()).chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,15}"
}

/// What Alertmanager ≥ 0.28 takes as a label name: classic names, dotted OpenTelemetry names,
/// and any other non-empty UTF-8.
fn utf8_label_name() -> impl Strategy<Value = String> {
    prop_oneof![label_name(), "[a-z]{1,8}(\\.[a-z]{1,8}){1,3}", "\\PC{1,16}"]
}

/// Distinct names (as Alertmanager takes them), non-empty values (any Unicode, no control
/// characters).
fn label_set() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::btree_map(utf8_label_name(), "\\PC{1,24}", 1..8)
        .prop_map(|m| m.into_iter().collect::<Vec<_>>())
}

/// A JSON object written by hand in exactly this key order (serde_json would sort it).
fn object_in_order(pairs: &[(String, String)]) -> String {
    let fields: Vec<String> =
        pairs.iter().map(|(k, v)| format!("{}:{}", json!(k), json!(v))).collect();
    format!("{{{}}}", fields.join(","))
}

fn roundtrips(event: &Event) {
    let stored = serde_json::to_vec(event).unwrap();
    let back: Event = serde_json::from_slice(&stored).unwrap();
    assert_eq!(&back, event, "the store's encoding changes nothing");
}

fn no_panic(result: Result<Normalized, ApiError>) {
    if let Err(e) = result {
        let status = e.status().as_u16();
        assert!(status == 400 || status == 422, "refusals are 400 or 422, got {status}: {e}");
    }
}

#[test]
fn the_known_vector_holds() {
    let labels: BTreeMap<String, String> =
        [("alertname", "DiskFull"), ("instance", "db1"), ("severity", "critical")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(fingerprint(&labels), "e94c744ae3d44df8");
    let pairs: Vec<(String, String)> = labels.into_iter().collect();
    assert_eq!(format!("{:016x}", reference_fingerprint(&pairs)), "e94c744ae3d44df8");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn fingerprint_is_prometheus_and_ignores_wire_order(
        pairs in label_set(),
        order in prop::collection::vec(any::<prop::sample::Index>(), 8),
    ) {
        // Permute by the generated indices.
        let mut permuted = pairs.clone();
        for (i, ix) in order.iter().enumerate().take(permuted.len()) {
            let j = ix.index(permuted.len());
            permuted.swap(i, j);
        }
        let expected = format!("{:016x}", reference_fingerprint(&pairs));
        let map: BTreeMap<String, String> = permuted.iter().cloned().collect();
        prop_assert_eq!(&fingerprint(&map), &expected);
        prop_assert_eq!(fingerprint(&map), fingerprint(&map));
        prop_assert_eq!(expected.len(), 16);

        // On the wire: the same labels in two orders give the same dedup key.
        let a = format!("[{{\"labels\":{}}}]", object_in_order(&pairs));
        let b = format!("[{{\"labels\":{}}}]", object_in_order(&permuted));
        let na = alertmanager_v2(a.as_bytes(), ctx()).unwrap();
        let nb = alertmanager_v2(b.as_bytes(), ctx()).unwrap();
        prop_assert_eq!(&na.events[0].dedup_key, &expected);
        prop_assert_eq!(&nb.events[0].dedup_key, &expected);
    }

    #[test]
    fn a_valid_alertmanager_alert_normalizes_keeps_its_fields_and_round_trips(
        labels in label_set(),
        annotations in prop::collection::btree_map("[a-z_]{1,12}", "\\PC{0,64}", 0..4),
        start_offset in 0i64..86_400,
        resolved in any::<bool>(),
    ) {
        let starts: jiff::Timestamp = ctx().now - jiff::SignedDuration::from_secs(start_offset + 60);
        let ends = if resolved { Some(ctx().now - jiff::SignedDuration::from_secs(1)) } else { None };
        let mut alert = json!({
            "labels": labels.iter().cloned().collect::<BTreeMap<_, _>>(),
            "annotations": annotations,
            "startsAt": starts.to_string(),
        });
        if let Some(ends) = ends {
            alert["endsAt"] = json!(ends.to_string());
        }
        let body = Value::Array(vec![alert]).to_string();
        let n = alertmanager_v2(body.as_bytes(), ctx()).unwrap();
        prop_assert!(n.rejected.is_empty(), "{:?}", n.rejected);
        prop_assert_eq!(n.events.len(), 1);
        let e = &n.events[0];
        let map: BTreeMap<String, String> = labels.iter().cloned().collect();
        prop_assert_eq!(&e.labels, &map);
        prop_assert_eq!(&e.dedup_key, &fingerprint(&map));
        prop_assert_eq!(e.fingerprint.as_deref(), Some(e.dedup_key.as_str()));
        prop_assert_eq!(e.source.as_str(), "props");
        prop_assert_eq!(e.action.as_str(), if resolved { "resolve" } else { "trigger" });
        prop_assert_eq!(e.starts_at, Some(starts));
        prop_assert!(!e.summary.is_empty());
        roundtrips(e);

        // The same alert forwarded by an Alertmanager (webhook v4, with the fingerprint it
        // computed) lands on the same incident key.
        let webhook = json!({
            "version": "4", "status": if resolved { "resolved" } else { "firing" },
            "receiver": "tocsin", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://am", "groupKey": "{}:{}", "truncatedAlerts": 0,
            "alerts": [{
                "status": if resolved { "resolved" } else { "firing" },
                "labels": map, "annotations": e.annotations,
                "startsAt": starts.to_string(),
                "endsAt": ends.map_or("0001-01-01T00:00:00Z".to_string(), |t| t.to_string()),
                "generatorURL": "", "fingerprint": e.dedup_key,
            }],
        });
        let w = alertmanager_webhook(webhook.to_string().as_bytes(), ctx()).unwrap();
        prop_assert!(w.rejected.is_empty(), "{:?}", w.rejected);
        prop_assert_eq!(&w.events[0].dedup_key, &e.dedup_key);
        prop_assert_eq!(&w.events[0].labels, &e.labels);
        roundtrips(&w.events[0]);
    }

    #[test]
    fn a_valid_canonical_event_normalizes_and_round_trips(
        summary in "\\PC{1,200}",
        key in proptest::option::of("[a-zA-Z0-9/._-]{1,64}"),
        severity in proptest::option::of(prop::sample::select(vec!["critical", "error", "warning", "info"])),
        labels in prop::collection::btree_map(label_name(), "\\PC{1,24}", 0..6),
        detail in any::<i64>(),
    ) {
        let mut body = json!({"summary": summary, "labels": labels, "details": {"n": detail}});
        if let Some(key) = &key {
            body["dedup_key"] = json!(key);
        }
        if let Some(severity) = severity {
            body["severity"] = json!(severity);
        }
        let n = canonical(body.to_string().as_bytes(), ctx()).unwrap();
        prop_assert!(n.rejected.is_empty(), "{:?}", n.rejected);
        let e = &n.events[0];
        prop_assert_eq!(&e.labels, &labels);
        prop_assert_eq!(&e.details["n"], &json!(detail));
        if let Some(key) = &key {
            prop_assert_eq!(&e.dedup_key, key);
        }
        prop_assert!(!e.dedup_key.is_empty());
        prop_assert_eq!(e.severity.as_deref(), severity);
        roundtrips(e);
        // The same event twice (with its key) keys the same incident.
        let again = canonical(body.to_string().as_bytes(), ctx()).unwrap();
        if key.is_some() || !labels.is_empty() {
            prop_assert_eq!(&again.events[0].dedup_key, &e.dedup_key);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_parser(body in prop::collection::vec(any::<u8>(), 0..512)) {
        no_panic(alertmanager_v2(&body, ctx()));
        no_panic(alertmanager_webhook(&body, ctx()));
        no_panic(canonical(&body, ctx()));
        no_panic(report(&body, ctx()));
        if let Ok(pd) = parse_pagerduty(&body) {
            no_panic(pd.into_normalized(ctx()));
        }
    }

    #[test]
    fn arbitrary_json_never_panics_a_parser(value in arb_json()) {
        let body = value.to_string();
        let wrapped = json!([value]).to_string();
        for b in [body.as_bytes(), wrapped.as_bytes()] {
            no_panic(alertmanager_v2(b, ctx()));
            no_panic(alertmanager_webhook(b, ctx()));
            no_panic(canonical(b, ctx()));
            no_panic(report(b, ctx()));
            if let Ok(pd) = parse_pagerduty(b) {
                no_panic(pd.into_normalized(ctx()));
            }
        }
    }
}

/// JSON values whose keys are often the ones the formats look for.
fn arb_json() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "summary",
        "dedup_key",
        "action",
        "event_action",
        "routing_key",
        "payload",
        "severity",
        "source",
        "alerts",
        "version",
        "status",
        "fingerprint",
        "reporter",
        "service",
        "kind",
        "verified",
        "links",
        "x",
    ])
    .prop_map(str::to_string);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
        Just(Value::from("2026-11-27T12:00:00Z")),
        Just(Value::from("trigger")),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
