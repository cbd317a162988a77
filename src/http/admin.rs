//! Operating the daemon: reload, the manual clock, maintenance windows, the notification
//! queue (list, retry, drop), webhook endpoints, audit verification, the report, and on-call
//! rotations and overrides.
//!
//! Every route here needs a user credential with a role: viewers read, responders open
//! windows and overrides, admins reload and work the queue. Changes go through the journal
//! writer like everything else that changes state, so each is on disk before it is answered.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::config::Role;
use crate::error::{ApiError, FieldError};
use crate::http::app::{
    App, incident_json, journal_unavailable, read, reader, redact_about_incidents, redacted,
};
use crate::http::body::{MAX_PAGE, json_body, query, text, when};
use crate::incident::IncidentId;
use crate::journal::QueueOp;
use crate::outbox::{Notification, NotificationId, State as OutboxState};
use crate::store::{AdminReader, AuditReader, IncidentReader, OutboxReader};

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
struct ClockBody {
    /// Move forward by this much: `90s`, `5m`, `72h`.
    advance: Option<String>,
    /// Move forward to this RFC 3339 time.
    set: Option<String>,
}

/// `POST /-/clock` (admin, manual clock only): moves the simulated clock forward. Exists only
/// when the daemon runs on `TOCSIN_FAKE_CLOCK`; on the system clock it is 404.
pub async fn move_clock(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    app.runtime.load().auth.user_with_role(&headers, Role::Admin)?;
    let Some(clock) = app.clock.manual() else {
        return Err(ApiError::NotFound(
            "this daemon runs on the system clock; /-/clock exists only under TOCSIN_FAKE_CLOCK"
                .into(),
        ));
    };
    let b: ClockBody = json_body(&headers, &bytes)?;
    let moved = match (b.advance, b.set) {
        (Some(by), None) => {
            let d = crate::config::parse_duration(&by)
                .map_err(|m| ApiError::invalid(vec![FieldError::new("advance", m)]))?;
            clock.advance(crate::escalation::signed(d))
        }
        (None, Some(to)) => clock.set(when("set", &to)?),
        _ => return Err(ApiError::malformed("give exactly one of `advance` or `set`")),
    };
    let now = moved.map_err(ApiError::Conflict)?;
    Ok(Json(json!({"now": now})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowBody {
    name: String,
    /// RFC 3339; default now.
    starts: Option<String>,
    /// RFC 3339 end, or give `duration` instead.
    ends: Option<String>,
    duration: Option<String>,
    source: Option<String>,
    service: Option<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

/// `GET /api/v1/maintenance` (viewer): the config's windows and those opened through the API
/// that have not ended.
pub async fn list_maintenance(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let rt = app.runtime.load();
    rt.auth.user_with_role(&headers, Role::Viewer)?;
    let now = app.clock.now();
    let store = app.store.clone();
    let api = tokio::task::spawn_blocking(move || store.maintenance_windows())
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .map_err(|e| ApiError::Unavailable(format!("the store could not be read: {e}")))?;
    let windows: Vec<&crate::escalation::Window> =
        rt.config.escalation.maintenance.iter().chain(&api).filter(|w| w.ends > now).collect();
    Ok(Json(json!({"windows": windows, "now": now})).into_response())
}

/// `POST /api/v1/maintenance` (responder): opens a window. Incidents that open inside it for
/// what it matches are suppressed, and their timelines say what was held back.
pub async fn open_maintenance(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let user = app.runtime.load().auth.user_with_role(&headers, Role::Responder)?.name.clone();
    let b: WindowBody = json_body(&headers, &bytes)?;
    text("name", &b.name)?;
    let now = app.clock.now();
    let starts = b.starts.as_deref().map(|s| when("starts", s)).transpose()?.unwrap_or(now);
    let ends = match (b.ends.as_deref(), b.duration.as_deref()) {
        (Some(e), None) => when("ends", e)?,
        (None, Some(d)) => {
            let d = crate::config::parse_duration(d)
                .map_err(|m| ApiError::invalid(vec![FieldError::new("duration", m)]))?;
            crate::escalation::after(starts, d)
        }
        _ => {
            return Err(ApiError::invalid(vec![FieldError::new(
                "ends",
                "give exactly one of `ends` or `duration`: a window always ends",
            )]));
        }
    };
    if ends <= starts || ends <= now {
        return Err(ApiError::invalid(vec![FieldError::new(
            "ends",
            "must be after `starts` and in the future",
        )]));
    }
    let window = crate::escalation::Window {
        id: None,
        created: None,
        name: b.name,
        starts,
        ends,
        source: b.source,
        service: b.service,
        labels: b.labels,
    };
    let outcome = app
        .journal
        .maintenance(crate::journal::MaintenanceOp::Open(window), format!("user:{user}"))
        .await
        .map_err(journal_unavailable)?;
    match outcome {
        Ok(w) => Ok((StatusCode::CREATED, Json(w)).into_response()),
        Err(m) => Err(ApiError::Conflict(m)),
    }
}

/// `DELETE /api/v1/maintenance/{id}` (responder): ends a window now.
pub async fn end_maintenance(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user = app.runtime.load().auth.user_with_role(&headers, Role::Responder)?.name.clone();
    let id: u64 =
        id.parse().map_err(|_| ApiError::malformed(format!("window id {id:?} is not a number")))?;
    let outcome = app
        .journal
        .maintenance(crate::journal::MaintenanceOp::End(id), format!("user:{user}"))
        .await
        .map_err(journal_unavailable)?;
    match outcome {
        Ok(w) => Ok(Json(w).into_response()),
        Err(m) => Err(ApiError::NotFound(m)),
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
                ));
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
