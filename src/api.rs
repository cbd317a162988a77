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
use crate::store::{
    AuditReader, EventQuery, EventReader, IncidentReader, OutboxReader, Store, StoreError,
    TimerReader,
};

/// Most items one page may hold.
const MAX_PAGE: usize = 1000;

/// Runs a store read on a blocking thread (store reads touch the disk).
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

/// The caller, authenticated with at least `role`, and whether personal data must be redacted
/// for them (no `pii` permission). One runtime snapshot for the whole request.
pub(crate) fn reader(
    app: &App,
    headers: &HeaderMap,
    role: Role,
) -> Result<(Arc<crate::runtime::Runtime>, bool), ApiError> {
    let rt = app.runtime.load_full();
    let redact = !crate::redact::allows_pii(rt.auth.user_with_role(headers, role)?);
    Ok((rt, redact))
}

/// The events that opened these incidents (their known personal data is redacted from
/// everything about the incident).
async fn opening_events(
    app: &App,
    ids: Vec<IncidentId>,
) -> Result<std::collections::BTreeMap<IncidentId, crate::event::Event>, ApiError> {
    read(app, move |s| {
        let mut out = std::collections::BTreeMap::new();
        for id in ids {
            if out.contains_key(&id) {
                continue;
            }
            if let Some(incident) = s.incident(id)?
                && let Some(event) = s.event(incident.opened_by)?
            {
                out.insert(id, event);
            }
        }
        Ok(out)
    })
    .await
}

/// JSON about incidents (`(incident id, value)` pairs) as a user without `pii` sees it.
pub(crate) async fn redact_about_incidents(
    app: &App,
    rt: &crate::runtime::Runtime,
    items: &mut [(IncidentId, &mut serde_json::Value)],
) -> Result<(), ApiError> {
    let opening = opening_events(app, items.iter().map(|(id, _)| *id).collect()).await?;
    let view = crate::redact::View::Redacted(&rt.redactor);
    for (id, value) in items.iter_mut() {
        view.incident(value, opening.get(id));
    }
    Ok(())
}

/// One incident (or anything about it) as JSON, redacted when `redact`.
pub(crate) async fn incident_json(
    app: &App,
    rt: &crate::runtime::Runtime,
    redact: bool,
    id: IncidentId,
    value: impl serde::Serialize,
) -> Result<serde_json::Value, ApiError> {
    let mut v = serde_json::to_value(value).unwrap_or_default();
    if redact {
        redact_about_incidents(app, rt, &mut [(id, &mut v)]).await?;
    }
    Ok(v)
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

/// `POST /-/reload` (admin): rebuild config and rules; answer what happened.
pub async fn reload(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    app.runtime.load().auth.user_with_role(&headers, Role::Admin)?;
    match app.reloader.reload("POST /-/reload").await {
        Err(crate::runtime::LoadError::Interrupted(e)) => Err(ApiError::Unavailable(e)),
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
    let (rt, redact) = reader(&app, &headers, Role::Viewer)?;
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
    // Dead and pending ones come from their indexes: after a long history of deliveries, a
    // scan of the whole outbox for the few dead letters would read every row.
    let wanted = p.state.clone().unwrap_or_default();
    let list = read(&app, move |s| match wanted.as_str() {
        "dead" => s.dead_notifications(before, limit, keep),
        "pending" | "queued" | "sending" | "retrying" => {
            s.pending_notifications(before, limit, keep)
        }
        _ => s.notifications(before, limit, keep),
    })
    .await?;
    let next = if list.len() == limit { list.last().map(|n| n.id) } else { None };
    let list: Vec<Notification> = list.into_iter().map(redacted).collect();
    let ids: Vec<IncidentId> = list.iter().map(|n| n.incident_id).collect();
    let mut values: Vec<serde_json::Value> =
        list.into_iter().map(|n| serde_json::to_value(n).unwrap_or_default()).collect();
    if redact {
        let mut items: Vec<_> = ids.into_iter().zip(values.iter_mut()).collect();
        redact_about_incidents(&app, &rt, &mut items).await?;
    }
    Ok(Json(json!({"notifications": values, "next": next})).into_response())
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
    let (rt, redact) = reader(app, headers, Role::Admin)?;
    let user = rt.auth.user_with_role(headers, Role::Admin)?.name.clone();
    let id = notification_id(id)?;
    let outcome =
        app.journal.queue(id, op, format!("user:{user}")).await.map_err(journal_unavailable)?;
    match outcome {
        Ok(n) => {
            let incident = n.incident_id;
            Ok(Json(incident_json(app, &rt, redact, incident, redacted(n)).await?).into_response())
        }
        Err(msg) if msg.starts_with("no notification") => Err(ApiError::NotFound(msg)),
        Err(msg) => Err(ApiError::Conflict(msg)),
    }
}

/// `GET /api/v1/webhooks` (viewer): the configured webhook endpoints by name (not their URLs,
/// whose paths and queries may carry credentials) and, for each one disabled after a 410 Gone,
/// why (the error names only the endpoint's origin).
pub async fn list_webhooks(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (rt, _) = reader(&app, &headers, Role::Viewer)?;
    let disabled = read(&app, |s| s.disabled_endpoints()).await?;
    let webhooks: Vec<serde_json::Value> = rt
        .config
        .notifications
        .webhooks
        .iter()
        .map(|w| json!({"name": w.name, "disabled": disabled.get(&w.name)}))
        .collect();
    Ok(Json(json!({"webhooks": webhooks})).into_response())
}

/// `POST /api/v1/webhooks/{name}/enable` (admin): re-enables an endpoint disabled after a
/// 410 Gone (its receiver is back). Its dead letters stay dead; retry them with
/// `POST /api/v1/notifications/{id}/retry`.
pub async fn enable_webhook(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (rt, _) = reader(&app, &headers, Role::Admin)?;
    let user = rt.auth.user_with_role(&headers, Role::Admin)?.name.clone();
    if !rt.config.notifications.webhooks.iter().any(|w| w.name == name) {
        return Err(ApiError::NotFound(format!("no webhook named `{name}` is configured")));
    }
    let outcome = app
        .journal
        .enable_webhook(name.clone(), format!("user:{user}"))
        .await
        .map_err(journal_unavailable)?;
    match outcome {
        Ok(why) => {
            Ok(Json(json!({"name": name, "enabled": true, "was_disabled": why})).into_response())
        }
        Err(msg) => Err(ApiError::Conflict(msg)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// A head recorded earlier, `N:HEX`, that the chain must still pass through.
    expect_head: Option<String>,
}

/// `GET /api/v1/audit/verify?expect_head=N:HEX` (admin): walks the audit chain on a read
/// snapshot; 200 either way, with `valid` and the head, or the first problem.
pub async fn verify_audit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    app.runtime.load().auth.user_with_role(&headers, Role::Admin)?;
    let recorded = match query(params)?.expect_head {
        Some(raw) => Some(crate::audit::parse_head(&raw).map_err(|e| {
            ApiError::invalid(vec![crate::error::FieldError::new("expect_head", e)])
        })?),
        None => None,
    };
    let result = read(&app, move |s| s.verify_audit(recorded)).await?;
    Ok(Json(crate::audit::report_json(&result)).into_response())
}

// ---------------------------------------------------------------------------------------------
// On-call rotations and overrides
// ---------------------------------------------------------------------------------------------

/// Longest override reason kept.
const MAX_REASON_CHARS: usize = 1000;

/// `GET /api/v1/rotations` (viewer): every rotation with who is on call now, the next
/// handoff, and its active and future overrides; and every role with who holds it now.
pub async fn list_rotations(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let rt = app.runtime.load();
    rt.auth.user_with_role(&headers, Role::Viewer)?;
    let now = app.clock.now();
    let roster = &rt.config.roster;
    let overrides = app.journal.overrides.with(|all| roster.usable_overrides(all));
    let rotations: Vec<serde_json::Value> = roster
        .rotations
        .values()
        .map(|r| {
            let mut upcoming: Vec<&crate::oncall::Override> =
                overrides.iter().filter(|o| o.rotation == r.name && o.until > now).collect();
            upcoming.sort_by_key(|o| (o.from, o.id));
            let active = crate::oncall::override_at(&r.name, now, &overrides);
            json!({
                "name": r.name,
                "members": r.members,
                "shift": r.shift.to_string(),
                "handoff": format!("{:02}:{:02}", r.handoff.hour(), r.handoff.minute()),
                "zone": r.zone.iana_name(),
                "start": r.start,
                "on_call": r.on_call(now, &overrides),
                "scheduled": r.scheduled(now),
                "override_id": active.map(|o| o.id),
                "next_handoff": r.next_handoff(now),
                "overrides": upcoming,
            })
        })
        .collect();
    let holders = roster.holders(now, &overrides);
    let roles: serde_json::Map<String, serde_json::Value> = roster
        .roles
        .iter()
        .map(|(role, fill)| (role.clone(), json!({"fill": fill, "person": holders.get(role)})))
        .collect();
    Ok(Json(json!({"now": now, "rotations": rotations, "roles": roles})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideBody {
    person: Option<String>,
    /// RFC 3339; default now.
    from: Option<String>,
    until: Option<String>,
    reason: Option<String>,
}

/// `POST /api/v1/rotations/{name}/overrides` (responder): `person` covers the rotation from
/// `from` (default now) until `until`. 201 with the stored override.
pub async fn add_override(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let rt = app.runtime.load();
    let user = rt.auth.user_with_role(&headers, Role::Responder)?.name.clone();
    let roster = &rt.config.roster;
    if !roster.rotations.contains_key(&name) {
        return Err(ApiError::NotFound(format!("no rotation named `{name}`")));
    }
    let body: OverrideBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::malformed(format!(
            "the body must be a JSON object {{person, from?, until, reason?}}: {e}"
        ))
    })?;
    use crate::error::FieldError;
    let now = app.clock.now();
    let mut errors = Vec::new();
    let time = |field: &str, text: &str, errors: &mut Vec<FieldError>| {
        text.parse::<jiff::Timestamp>()
            .map_err(|_| {
                errors.push(FieldError::new(
                    field,
                    format!(
                        "`{}` is not an RFC 3339 time, e.g. 2026-01-05T09:00:00Z",
                        text.escape_debug()
                    ),
                ))
            })
            .ok()
    };
    let person = match body.person {
        None => {
            errors.push(FieldError::new("person", "is missing; give a person id from the config"));
            None
        }
        Some(p) if !roster.people.contains_key(&p) => {
            errors.push(FieldError::new(
                "person",
                format!("no person `{}` in the config", p.escape_debug()),
            ));
            None
        }
        Some(p) => Some(p),
    };
    let from = match &body.from {
        None => Some(now),
        Some(text) => time("from", text, &mut errors),
    };
    let until = match &body.until {
        None => {
            errors.push(FieldError::new("until", "is missing; give the end time (RFC 3339)"));
            None
        }
        Some(text) => time("until", text, &mut errors),
    };
    if let (Some(from), Some(until)) = (from, until) {
        if until <= from {
            errors.push(FieldError::new("until", format!("must be after from ({from})")));
        } else if until <= now {
            errors.push(FieldError::new("until", "is in the past; the override would never apply"));
        }
    }
    let reason = body.reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > MAX_REASON_CHARS) {
        errors.push(FieldError::new(
            "reason",
            format!("is longer than {MAX_REASON_CHARS} characters"),
        ));
    }
    let (Some(person), Some(from), Some(until), true) = (person, from, until, errors.is_empty())
    else {
        return Err(ApiError::invalid(errors));
    };
    let op = crate::journal::OverrideOp::Add {
        rotation: name,
        person,
        from,
        until,
        by: format!("user:{user}"),
        reason,
    };
    match app.journal.change_override(op).await.map_err(journal_unavailable)? {
        Ok(o) => Ok((StatusCode::CREATED, Json(o)).into_response()),
        Err(msg) => Err(ApiError::Conflict(msg)),
    }
}

/// `DELETE /api/v1/rotations/{name}/overrides/{id}` (responder): 200 with what was removed.
pub async fn delete_override(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let user = app.runtime.load().auth.user_with_role(&headers, Role::Responder)?.name.clone();
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::malformed(format!("override id {id:?} is not a number")))?;
    let op = crate::journal::OverrideOp::Delete { rotation: name, id, by: format!("user:{user}") };
    match app.journal.change_override(op).await.map_err(journal_unavailable)? {
        Ok(o) => Ok(Json(o).into_response()),
        Err(msg) => Err(ApiError::NotFound(msg)),
    }
}

/// A person's change the journal could not take or commit: 503, to be retried.
pub(crate) fn journal_unavailable(e: JournalError) -> ApiError {
    match e {
        JournalError::Overloaded(_) | JournalError::Closed => ApiError::Unavailable(e.to_string()),
        JournalError::Store(err) => ApiError::Unavailable(format!("not recorded ({err}); retry")),
    }
}

// ---------------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    since: Option<String>,
    recurrence_window: Option<String>,
}

/// `GET /api/v1/report?since=30d&recurrence_window=24h` (viewer): the figures of
/// [`crate::report::Report`] over the incidents opened since then, as JSON. `since` is a
/// duration back from now or an RFC 3339 time.
pub async fn report(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    params: Result<Query<ReportParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (rt, redact) = reader(&app, &headers, Role::Viewer)?;
    let params = query(params)?;
    let now = app.clock.now();
    let options = crate::report::Options::parse(
        params.since.as_deref(),
        params.recurrence_window.as_deref(),
        now,
    )
    .map_err(|(field, message)| {
        ApiError::invalid(vec![crate::error::FieldError::new(field, message)])
    })?;
    let from = options.read_from();
    let data = read(&app, move |s| s.report_data(from)).await?;
    let mut report = crate::report::compute(&data.incidents, &data.notifications, &options);
    if redact {
        report.redact(&rt.redactor, &data.known(&rt.redactor));
    }
    Ok(Json(report).into_response())
}
