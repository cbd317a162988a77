//! The built-in webhook bodies: Tocsin's own schema (`version` "1") and an Alertmanager webhook
//! (version 4) body for receivers that already speak Alertmanager. Both are documented in
//! `rules/templates/README.md`; a `webhook/….json.j2` template may replace the Tocsin body.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::context::{RenderContext, time};
use crate::incident::{Incident, Status};
use crate::normalize::fingerprint;

/// Tocsin's webhook body:
/// `{"version": "1", "kind": "incident.new", "incident": {…}, "drill": false}`, plus
/// `"incidents": [...]` (every incident of the bundle, the lead included) when the kind is
/// `incident.bundle`.
pub fn tocsin_payload(ctx: &RenderContext) -> Value {
    let mut body = json!({
        "version": "1",
        "kind": format!("incident.{}", ctx.kind.as_str()),
        "incident": incident(ctx.incident, ctx.dashboard_url.as_deref()),
        "drill": ctx.drill,
    });
    if !ctx.bundle.is_empty() {
        body["incidents"] = ctx.bundle.iter().map(|i| incident(i, None)).collect();
    }
    body
}

fn incident(incident: &Incident, url: Option<&str>) -> Value {
    let decision = &incident.decision;
    json!({
        "id": incident.id,
        "status": incident.status.as_str(),
        "severity": decision.severity,
        "score": decision.score,
        "summary": incident.summary,
        "service": incident.service,
        "source": incident.source,
        "dedup_key": incident.dedup_key,
        "tags": decision.tags,
        "sensitivity": decision.sensitivity.as_str(),
        "customer_facing": decision.customer_facing,
        "first_seen": time(incident.first_seen),
        "last_seen": time(incident.last_seen),
        "count": incident.count,
        "url": url,
        "links": incident.links,
    })
}

/// The Tocsin body for audiences outside the incident team (see `is_external`): the same
/// shape with only what a status page needs. No summary (a customer report's summary may hold
/// personal data), source, dedup key, tags or sensitivity.
pub(crate) fn redacted_payload(ctx: &RenderContext) -> Value {
    let redact = |incident: &Incident| {
        json!({
            "id": incident.id,
            "status": incident.status.as_str(),
            "severity": incident.decision.severity,
            "customer_facing": incident.decision.customer_facing,
            "first_seen": time(incident.first_seen),
            "last_seen": time(incident.last_seen),
        })
    };
    let mut body = json!({
        "version": "1",
        "kind": format!("incident.{}", ctx.kind.as_str()),
        "incident": redact(ctx.incident),
        "drill": ctx.drill,
    });
    if !ctx.bundle.is_empty() {
        body["incidents"] = ctx.bundle.iter().map(redact).collect();
    }
    body
}

/// Alertmanager's zero `endsAt` for an alert that is still firing (Go's zero time).
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// An Alertmanager webhook (version 4) body for one incident, as Alertmanager would send it to
/// `receiver` for a group holding one alert.
///
/// Labels are the incident's, plus `alertname` when it has none (receivers group and title by
/// it) and `tocsin_incident` / `tocsin_severity` (the group key and Tocsin's verdict, prefixed
/// so they never collide with the sender's labels). The fingerprint is Prometheus' hash of
/// those labels; `startsAt` is the sender's start time when it gave one. The incident's runbook,
/// dashboard and source links (`runbook_url`, `dashboard_url`, `generatorURL`) are internal:
/// bodies for audiences outside the incident team ([`super::is_external`]) leave them out.
pub fn alertmanager_payload(incident: &Incident, receiver: &str, audience: &str) -> Value {
    let internal = !super::is_external(audience);
    let link = |kind: &str| {
        incident.links.iter().find(|l| internal && l.kind == kind).map(|l| l.href.as_str())
    };
    let mut labels: BTreeMap<String, String> = incident.labels.clone();
    labels.entry("alertname".into()).or_insert_with(|| "TocsinIncident".into());
    if let Some(service) = &incident.service {
        labels.entry("service".into()).or_insert_with(|| service.clone());
    }
    labels.insert("tocsin_incident".into(), incident.id.to_string());
    labels.insert("tocsin_severity".into(), incident.decision.severity.clone());

    let mut annotations = BTreeMap::from([
        ("summary".to_owned(), incident.summary.clone()),
        ("tocsin_score".to_owned(), incident.decision.score.to_string()),
    ]);
    // Alertmanager receivers look for the runbook where Prometheus rules put it.
    for (kind, name) in [("runbook", "runbook_url"), ("dashboard", "dashboard_url")] {
        if let Some(href) = link(kind) {
            annotations.insert(name.to_owned(), href.to_owned());
        }
    }
    let (status, ends_at) = match (&incident.status, &incident.resolved) {
        (Status::Resolved, Some(stamp)) => ("resolved", time(stamp.at)),
        (Status::Resolved, None) => ("resolved", time(incident.last_seen)),
        _ => ("firing", GO_ZERO_TIME.to_owned()),
    };
    let group_labels = BTreeMap::from([("tocsin_incident", incident.id.to_string())]);
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{tocsin_incident=\"{}\"}}", incident.id),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": time(incident.detected_at.unwrap_or(incident.first_seen)),
            "endsAt": ends_at,
            "generatorURL": link("source").unwrap_or_default(),
            "fingerprint": fingerprint(&labels),
        }],
    })
}
