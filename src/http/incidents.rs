//! Reading and acting on events and incidents: list and show them, acknowledge and resolve.
//!
//! Viewers read, responders act. Acting goes through the journal writer like everything else
//! that changes state, so an acknowledgement is on disk before it is answered.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::config::Role;
use crate::error::ApiError;
use crate::http::app::{
    App, incident_json, journal_unavailable, read, reader, redact_about_incidents, redacted,
};
use crate::http::body::{MAX_PAGE, query};
use crate::incident::{Incident, IncidentId, Status};
use crate::journal::{ActError, PersonAction};
use crate::store::EventQuery;
use crate::store::{AuditReader, EventReader, IncidentReader, OutboxReader, TimerReader};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    source: Option<String>,
    before: Option<Uuid>,
    limit: Option<usize>,
}

pub async fn list_events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    params: Result<Query<EventParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (rt, redact) = reader(&app, &headers, Role::Viewer)?;
    let params = query(params)?;
    let limit = params.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let q = EventQuery { source: params.source, before: params.before, limit };
    let events = read(&app, move |s| s.events(&q)).await?;
    let next = if events.len() == limit { events.last().map(|e| e.id) } else { None };
    let mut events = serde_json::to_value(events).unwrap_or_default();
    if redact && let serde_json::Value::Array(items) = &mut events {
        items.iter_mut().for_each(|e| rt.redactor.redact_json(e));
    }
    Ok(Json(json!({"events": events, "next": next})).into_response())
}

pub async fn get_event(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (rt, redact) = reader(&app, &headers, Role::Viewer)?;
    let id = Uuid::parse_str(&id)
        .map_err(|e| ApiError::malformed(format!("event id {id:?} is not a UUID: {e}")))?;
    match read(&app, move |s| s.event_joined(id)).await? {
        Some((event, incident)) => {
            let mut body = serde_json::to_value(event).unwrap_or_default();
            if redact {
                rt.redactor.redact_json(&mut body);
            }
            body["incident_id"] = json!(incident);
            Ok(Json(body).into_response())
        }
        None => Err(ApiError::NotFound(format!("no event with id {id}"))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentParams {
    /// `triggered`, `acknowledged`, `resolved`, or `open` (triggered or acknowledged).
    status: Option<String>,
    severity: Option<String>,
    source: Option<String>,
    service: Option<String>,
    before: Option<IncidentId>,
    limit: Option<usize>,
}

pub async fn list_incidents(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    params: Result<Query<IncidentParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (rt, redact) = reader(&app, &headers, Role::Viewer)?;
    let p = query(params)?;
    let status: Option<fn(Status) -> bool> = match p.status.as_deref() {
        None => None,
        Some("open") => Some(Status::is_open),
        Some("triggered") => Some(|s| s == Status::Triggered),
        Some("acknowledged") => Some(|s| s == Status::Acknowledged),
        Some("resolved") => Some(|s| s == Status::Resolved),
        Some(other) => {
            return Err(ApiError::invalid(vec![crate::error::FieldError::new(
                "status",
                format!("`{other}` is not one of: open, triggered, acknowledged, resolved"),
            )]));
        }
    };
    let limit = p.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let (severity, source, service) = (p.severity, p.source, p.service);
    let asked_service = service.clone();
    let keep = move |i: &Incident| {
        status.is_none_or(|f| f(i.status))
            && severity.as_ref().is_none_or(|s| &i.decision.severity == s)
            && source.as_ref().is_none_or(|s| &i.source == s)
            && service.as_ref().is_none_or(|s| i.service.as_ref() == Some(s))
    };
    let before = p.before;
    let incidents = read(&app, move |s| s.incidents(before, limit, keep)).await?;
    let next = if incidents.len() == limit { incidents.last().map(|i| i.id) } else { None };
    let ids: Vec<IncidentId> = incidents.iter().map(|i| i.id).collect();
    let mut values: Vec<serde_json::Value> =
        incidents.into_iter().map(|i| serde_json::to_value(i).unwrap_or_default()).collect();
    if redact {
        let mut items: Vec<_> = ids.into_iter().zip(values.iter_mut()).collect();
        redact_about_incidents(&app, &rt, &mut items).await?;
        // The filter matched the stored service; a user who may not see it must not learn
        // that it equals a guess either: keep only incidents whose service they can see as
        // asked. (`next` still follows the stored page, so paging goes on where it left off.)
        if let Some(asked) = asked_service {
            values.retain(|v| v["service"].as_str() == Some(asked.as_str()));
        }
    }
    Ok(Json(json!({"incidents": values, "next": next})).into_response())
}

fn incident_id(raw: &str) -> Result<IncidentId, ApiError> {
    raw.parse().map_err(|_| ApiError::malformed(format!("incident id {raw:?} is not a number")))
}

pub async fn get_incident(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (rt, redact) = reader(&app, &headers, Role::Viewer)?;
    let id = incident_id(&id)?;
    let (incident, timeline, notifications, timers) = read(&app, move |s| {
        Ok((
            s.incident(id)?,
            s.timeline_audited(id)?,
            s.incident_notifications(id)?,
            s.incident_timers(id)?,
        ))
    })
    .await?;
    let incident =
        incident.ok_or_else(|| ApiError::NotFound(format!("no incident with id {id}")))?;
    let mut body = serde_json::to_value(incident).unwrap_or_default();
    // A failed send's error text (on the timeline too) may quote the message it carried.
    let timeline: Vec<_> = timeline
        .into_iter()
        .map(|(mut e, link)| {
            if let std::borrow::Cow::Owned(r) = crate::links::redact(&e.message) {
                e.message = r;
            }
            (e, link)
        })
        .collect();
    body["timeline"] = crate::audit::timeline_json(timeline);
    body["notifications"] = json!(notifications.into_iter().map(redacted).collect::<Vec<_>>());
    // What is scheduled next: escalation steps, notice reminders and deadlines, reminders.
    body["pending"] = json!(
        timers
            .iter()
            .map(|t| json!({"due_at": t.due_at, "what": t.kind.describe(), "timer": t.kind}))
            .collect::<Vec<_>>()
    );
    if redact {
        redact_about_incidents(&app, &rt, &mut [(id, &mut body)]).await?;
    }
    Ok(Json(body).into_response())
}

pub async fn acknowledge(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(&app, &headers, &id, PersonAction::Acknowledge).await
}

pub async fn resolve(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(&app, &headers, &id, PersonAction::Resolve).await
}

async fn act(
    app: &App,
    headers: &HeaderMap,
    id: &str,
    action: PersonAction,
) -> Result<Response, ApiError> {
    let (rt, redact) = reader(app, headers, Role::Responder)?;
    let user = rt.auth.user_with_role(headers, Role::Responder)?.name.clone();
    let id = incident_id(id)?;
    let outcome =
        app.journal.act(id, action, format!("user:{user}")).await.map_err(journal_unavailable)?;
    match outcome {
        Ok(incident) => {
            Ok(Json(incident_json(app, &rt, redact, id, incident).await?).into_response())
        }
        Err(ActError::NotFound(id)) => Err(ApiError::NotFound(format!("no incident with id {id}"))),
        Err(ActError::Refused(e)) => Err(ApiError::Conflict(e.to_string())),
        Err(ActError::Invalid(m)) => Err(ApiError::Conflict(m)),
    }
}
