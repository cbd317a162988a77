//! The read-and-act API for people and tools: events, incidents, acknowledge/resolve, reload.
//!
//! Every route here needs a user credential with a role: viewers read, responders act,
//! admins reload. Acting goes through the journal writer like everything else that changes
//! state, so an acknowledgement is on disk before it is answered.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::config::Role;
use crate::error::ApiError;
use crate::incident::{Incident, IncidentId, Status};
use crate::journal::{ActError, JournalError, PersonAction, QueueOp};
use crate::outbox::{Notification, NotificationId, State as OutboxState};
use crate::server::App;
use crate::store::{EventQuery, Store, StoreError};

/// Most items one page may hold.
const MAX_PAGE: usize = 1000;

/// Runs a store read on a blocking thread (redb reads touch the disk).
async fn read<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .map_err(|e| ApiError::Unavailable(format!("the store could not be read: {e}")))
}

fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| ApiError::malformed(e.body_text()))
}

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
    app.runtime.load().auth.user_with_role(&headers, Role::Viewer)?;
    let params = query(params)?;
    let limit = params.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let q = EventQuery { source: params.source, before: params.before, limit };
    let events = read(&app, move |s| s.events(&q)).await?;
    let next = if events.len() == limit { events.last().map(|e| e.id) } else { None };
    Ok(Json(json!({"events": events, "next": next})).into_response())
}

pub async fn get_event(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    app.runtime.load().auth.user_with_role(&headers, Role::Viewer)?;
    let id = Uuid::parse_str(&id)
        .map_err(|e| ApiError::malformed(format!("event id {id:?} is not a UUID: {e}")))?;
    let (event, incident) = read(&app, move |s| Ok((s.event(id)?, s.event_incident(id)?))).await?;
    match event {
        Some(event) => {
            let mut body = serde_json::to_value(event).unwrap_or_default();
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
    app.runtime.load().auth.user_with_role(&headers, Role::Viewer)?;
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
    let keep = move |i: &Incident| {
        status.is_none_or(|f| f(i.status))
            && severity.as_ref().is_none_or(|s| &i.decision.severity == s)
            && source.as_ref().is_none_or(|s| &i.source == s)
            && service.as_ref().is_none_or(|s| i.service.as_ref() == Some(s))
    };
    let before = p.before;
    let incidents = read(&app, move |s| s.incidents(before, limit, keep)).await?;
    let next = if incidents.len() == limit { incidents.last().map(|i| i.id) } else { None };
    Ok(Json(json!({"incidents": incidents, "next": next})).into_response())
}

fn incident_id(raw: &str) -> Result<IncidentId, ApiError> {
    raw.parse().map_err(|_| ApiError::malformed(format!("incident id {raw:?} is not a number")))
}

pub async fn get_incident(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    app.runtime.load().auth.user_with_role(&headers, Role::Viewer)?;
    let id = incident_id(&id)?;
    let (incident, timeline, notifications) =
        read(&app, move |s| Ok((s.incident(id)?, s.timeline(id)?, s.incident_notifications(id)?)))
            .await?;
    let incident =
        incident.ok_or_else(|| ApiError::NotFound(format!("no incident with id {id}")))?;
    let mut body = serde_json::to_value(incident).unwrap_or_default();
    // A failed send's error text (on the timeline too) may quote the message it carried.
    let timeline: Vec<_> = timeline
        .into_iter()
        .map(|mut e| {
            if let std::borrow::Cow::Owned(r) = crate::links::redact(&e.message) {
                e.message = r;
            }
            e
        })
        .collect();
    body["timeline"] = json!(timeline);
    body["notifications"] = json!(notifications.into_iter().map(redacted).collect::<Vec<_>>());
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
    let user = app.runtime.load().auth.user_with_role(headers, Role::Responder)?.name.clone();
    let id = incident_id(id)?;
    let outcome =
        app.journal.act(id, action, format!("user:{user}")).await.map_err(|e| match e {
            JournalError::Overloaded(_) | JournalError::Closed => {
                ApiError::Unavailable(e.to_string())
            }
            JournalError::Store(err) => {
                ApiError::Unavailable(format!("not recorded ({err}); retry"))
            }
        })?;
    match outcome {
        Ok(incident) => Ok(Json(incident).into_response()),
        Err(ActError::NotFound(id)) => Err(ApiError::NotFound(format!("no incident with id {id}"))),
        Err(ActError::Refused(e)) => Err(ApiError::Conflict(e.to_string())),
    }
}

/// `POST /-/reload` (admin): rebuild config and rules; answer what happened.
pub async fn reload(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    app.runtime.load().auth.user_with_role(&headers, Role::Admin)?;
    let reloader = app.reloader.clone();
    let result = tokio::task::spawn_blocking(move || reloader.reload("POST /-/reload"))
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    match result {
        Ok(restart_only) => Ok(Json(json!({
            "status": "reloaded",
            "rules": app.runtime.load().rules.names(),
            "needs_restart": restart_only,
        }))
        .into_response()),
        Err(e) => {
            let errors: Vec<String> = e.to_string().lines().map(str::to_string).collect();
            let body = json!({
                "error": "reload_failed",
                "message": "the new config or rules are invalid; the running ones stay in force",
                "errors": errors,
            });
            Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response())
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationParams {
    /// queued, sending, retrying, delivered, dead; or `pending` (the first three).
    state: Option<String>,
    channel: Option<String>,
    incident: Option<IncidentId>,
    before: Option<NotificationId>,
    limit: Option<usize>,
}

pub async fn list_notifications(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    params: Result<Query<NotificationParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    app.runtime.load().auth.user_with_role(&headers, Role::Viewer)?;
    let p = query(params)?;
    let state: Option<fn(OutboxState) -> bool> = match p.state.as_deref() {
        None => None,
        Some("pending") => Some(OutboxState::is_pending),
        Some(word) => match OutboxState::parse(word) {
            Some(OutboxState::Queued) => Some(|s| s == OutboxState::Queued),
            Some(OutboxState::Sending) => Some(|s| s == OutboxState::Sending),
            Some(OutboxState::Retrying) => Some(|s| s == OutboxState::Retrying),
            Some(OutboxState::Delivered) => Some(|s| s == OutboxState::Delivered),
            Some(OutboxState::Dead) => Some(|s| s == OutboxState::Dead),
            None => {
                return Err(ApiError::invalid(vec![crate::error::FieldError::new(
                    "state",
                    format!(
                        "`{word}` is not one of: pending, queued, sending, retrying, delivered, dead"
                    ),
                )]));
            }
        },
    };
    let limit = p.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let (channel, incident, before) = (p.channel, p.incident, p.before);
    let keep = move |n: &Notification| {
        state.is_none_or(|f| f(n.state))
            && channel.as_ref().is_none_or(|c| n.channel.as_str() == c)
            && incident.is_none_or(|i| n.incident_id == i)
    };
    let list = read(&app, move |s| s.notifications(before, limit, keep)).await?;
    let next = if list.len() == limit { list.last().map(|n| n.id) } else { None };
    let list: Vec<Notification> = list.into_iter().map(redacted).collect();
    Ok(Json(json!({"notifications": list, "next": next})).into_response())
}

/// A stored notification as the API shows it: acknowledge-link tokens replaced, so that
/// reading the outbox never hands out someone else's one-click credential.
fn redacted(mut n: Notification) -> Notification {
    let m = &mut n.message;
    for text in [&mut m.subject, &mut m.text] {
        if let std::borrow::Cow::Owned(r) = crate::links::redact(text) {
            *text = r;
        }
    }
    if let Some(html) = &mut m.html
        && let std::borrow::Cow::Owned(r) = crate::links::redact(html)
    {
        *html = r;
    }
    if let Some(error) = &mut n.last_error
        && let std::borrow::Cow::Owned(r) = crate::links::redact(error)
    {
        *error = r;
    }
    let m = &mut n.message;
    if !m.payload.is_null() {
        let raw = m.payload.to_string();
        if let std::borrow::Cow::Owned(r) = crate::links::redact(&raw) {
            m.payload = serde_json::from_str(&r).unwrap_or(serde_json::Value::Null);
        }
    }
    n
}

fn notification_id(raw: &str) -> Result<NotificationId, ApiError> {
    raw.parse().map_err(|_| ApiError::malformed(format!("notification id {raw:?} is not a number")))
}

/// `POST /api/v1/notifications/{id}/retry` (admin): a dead letter is due again, same
/// idempotency id.
pub async fn retry_notification(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    queue_op(&app, &headers, &id, QueueOp::Retry).await
}

/// `POST /api/v1/notifications/{id}/drop` (admin): give up on a pending notification.
pub async fn drop_notification(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    queue_op(&app, &headers, &id, QueueOp::Drop).await
}

async fn queue_op(
    app: &App,
    headers: &HeaderMap,
    id: &str,
    op: QueueOp,
) -> Result<Response, ApiError> {
    let user = app.runtime.load().auth.user_with_role(headers, Role::Admin)?.name.clone();
    let id = notification_id(id)?;
    let outcome = app.journal.queue(id, op, format!("user:{user}")).await.map_err(|e| match e {
        JournalError::Overloaded(_) | JournalError::Closed => ApiError::Unavailable(e.to_string()),
        JournalError::Store(err) => ApiError::Unavailable(format!("not recorded ({err}); retry")),
    })?;
    match outcome {
        Ok(n) => Ok(Json(redacted(n)).into_response()),
        Err(msg) if msg.starts_with("no notification") => Err(ApiError::NotFound(msg)),
        Err(msg) => Err(ApiError::Conflict(msg)),
    }
}
