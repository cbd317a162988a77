//! `POST /api/v1/incidents`: a person declares an incident ([`crate::declaration`] parses,
//! checks and normalizes the declaration; pure). [`declare`] is what every caller uses (this
//! handler, the dashboard's form): the rules score the event like any other, and the journal
//! opens the incident and runs the escalation, all committed before it returns.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::config::Role;
use crate::declaration::{Declaration, SOURCE, check, normalize, parse};
use crate::error::ApiError;
use crate::event::Format;
use crate::http::app::App;
use crate::incident::IncidentId;
use crate::journal::JournalError;
use crate::store::EventReader;

/// Declares an incident as user `user` (a name from `users`; the caller has checked that the
/// user may): checks it ([`check`]), stores the event, scores it with the rules, opens the
/// incident and runs its escalation, all committed before it returns. Returns the new
/// incident's id.
pub async fn declare(app: &App, decl: Declaration, user: &str) -> Result<IncidentId, ApiError> {
    let runtime = app.runtime.load_full();
    check(&decl, runtime.triage())?;
    let event = normalize(&decl, user, crate::event_id::new(), app.clock.now());
    let id = event.id;
    let scored =
        crate::scoring::score_on_rule_threads(&runtime, &app.journal.open, vec![event]).await?;
    app.journal.append(scored).await.map_err(|e| match e {
        JournalError::Overloaded(_) | JournalError::Closed => ApiError::Unavailable(e.to_string()),
        JournalError::Store(err) => ApiError::Unavailable(format!(
            "the declaration could not be stored durably ({err}); retry"
        )),
    })?;
    app.metrics.accepted(SOURCE, Format::Declaration.as_str(), 1);
    let store = app.store.clone();
    let incident = tokio::task::spawn_blocking(move || store.event_incident(id))
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .map_err(|e| ApiError::Unavailable(format!("the store could not be read: {e}")))?;
    incident.ok_or_else(|| {
        ApiError::Unavailable(format!("the declaration {id} was stored but opened no incident"))
    })
}

/// `POST /api/v1/incidents`: 201 with `{incident_id, event_id}`.
pub async fn post(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    match handle(&app, &headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn handle(app: &App, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let runtime = app.runtime.load_full();
    let user = runtime.auth.user_with_role(headers, Role::Responder)?.name.clone();
    let bytes = crate::http::body::read_body(headers, body, &runtime.config.limits).await?;
    let decl = parse(&bytes, runtime.triage())?;
    let id = declare(app, decl, &user).await?;
    let body =
        json!({"status": "declared", "incident_id": id, "declared_by": format!("user:{user}")});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
