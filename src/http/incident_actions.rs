//! People's changes to an incident beyond acknowledge and resolve: notes, roles, notices
//! marked as sent, the after-action review and its action items; and the review export.
//!
//! Like every change, each goes through the journal writer ([`Journal::amend`]), so it is on
//! disk and on the incident's timeline, with the person as the actor, before it is answered.
//!
//! [`Journal::amend`]: crate::journal::Journal::amend

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::json;

use crate::config::Role;
use crate::error::{ApiError, FieldError};
use crate::http::app::{App, incident_json, journal_unavailable, reader};
use crate::http::body::{MAX_TEXT, json_body, text, when};
use crate::incident::IncidentId;
use crate::journal::{ActError, Amendment};
use crate::review::{ActionState, Export};
use crate::store::{EventReader, IncidentReader};

fn incident_id(raw: &str) -> Result<IncidentId, ApiError> {
    raw.parse().map_err(|_| ApiError::malformed(format!("incident id {raw:?} is not a number")))
}

async fn amend(
    app: &App,
    headers: &HeaderMap,
    id: &str,
    change: impl FnOnce() -> Result<Amendment, ApiError>,
) -> Result<Response, ApiError> {
    let (rt, redact) = reader(app, headers, Role::Responder)?;
    let user = rt.auth.user_with_role(headers, Role::Responder)?.name.clone();
    let id = incident_id(id)?;
    let change = change()?;
    let outcome =
        app.journal.amend(id, change, format!("user:{user}")).await.map_err(journal_unavailable)?;
    match outcome {
        Ok(incident) => {
            let body = incident_json(app, &rt, redact, id, incident).await?;
            Ok(Json(body).into_response())
        }
        Err(ActError::NotFound(id)) => Err(ApiError::NotFound(format!("no incident with id {id}"))),
        Err(ActError::Refused(e)) => Err(ApiError::Conflict(e.to_string())),
        Err(ActError::Invalid(message)) => Err(ApiError::Conflict(message)),
    }
}

// The changes people make to an incident, checked the same way whether they arrive as JSON
// (the handlers below) or as dashboard forms (`crate::dashboard`).

/// A note: text, not empty, at most `MAX_TEXT` bytes.
pub fn note_change(text_: String) -> Result<Amendment, ApiError> {
    text("text", &text_)?;
    Ok(Amendment::Note { text: text_ })
}

/// Hand `role` to `person` (a person id), or take it away (`None`).
pub fn role_change(role: String, person: Option<String>) -> Result<Amendment, ApiError> {
    if !crate::escalation::valid_role_name(&role) {
        return Err(ApiError::invalid(vec![FieldError::new(
            "role",
            "use lowercase letters, digits and `_`, e.g. incident_lead",
        )]));
    }
    Ok(Amendment::Role { role, person })
}

/// Mark notice `index` (0-based, as text from the path) sent at `at` (default now).
pub fn notice_sent_change(
    index: &str,
    at: Option<&str>,
    reference: Option<String>,
) -> Result<Amendment, ApiError> {
    let index: usize = index
        .parse()
        .map_err(|_| ApiError::malformed(format!("notice index {index:?} is not a number")))?;
    let at = at.map(|a| when("at", a)).transpose()?;
    if let Some(r) = &reference {
        text("reference", r)?;
    }
    Ok(Amendment::NoticeSent { index, at, reference })
}

/// Record when the organization became aware: not after `now`.
pub fn awareness_change(
    now: Timestamp,
    at: Timestamp,
    note: Option<String>,
) -> Result<Amendment, ApiError> {
    if at > now {
        return Err(ApiError::invalid(vec![FieldError::new(
            "at",
            "is in the future: awareness is when the organization became aware",
        )]));
    }
    if let Some(n) = &note {
        text("note", n)?;
    }
    Ok(Amendment::Awareness { at, note })
}

/// Set the review's text fields that are given.
pub fn review_change(
    summary: Option<String>,
    went_well: Option<String>,
    went_badly: Option<String>,
) -> Result<Amendment, ApiError> {
    for (field, value) in
        [("summary", &summary), ("went_well", &went_well), ("went_badly", &went_badly)]
    {
        if let Some(v) = value
            && v.len() > MAX_TEXT
        {
            return Err(ApiError::invalid(vec![FieldError::new(
                field,
                format!("at most {MAX_TEXT} bytes"),
            )]));
        }
    }
    Ok(Amendment::Review { summary, went_well, went_badly })
}

/// A new action item; `due` is an RFC 3339 time or a date (the end of that day in UTC).
pub fn action_added(title: String, owner: String, due: &str) -> Result<Amendment, ApiError> {
    text("title", &title)?;
    let due = when("due", due)?;
    Ok(Amendment::AddAction { title, owner, due })
}

/// Change action item `action` (as text from the path): state (open, done, dropped), owner, due.
pub fn action_updated(
    action: &str,
    state: Option<&str>,
    owner: Option<String>,
    due: Option<&str>,
) -> Result<Amendment, ApiError> {
    let action: u32 = action
        .parse()
        .map_err(|_| ApiError::malformed(format!("action item {action:?} is not a number")))?;
    let state = match state {
        None => None,
        Some("open") => Some(ActionState::Open),
        Some("done") => Some(ActionState::Done),
        Some("dropped") => Some(ActionState::Dropped),
        Some(other) => {
            return Err(ApiError::invalid(vec![FieldError::new(
                "state",
                format!("`{other}` is not one of: open, done, dropped"),
            )]));
        }
    };
    let due = due.map(|d| when("due", d)).transpose()?;
    Ok(Amendment::UpdateAction { action, state, owner, due })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    text: String,
}

/// `POST /api/v1/incidents/{id}/notes` (responder): `{"text": "…"}`.
pub async fn add_note(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    amend(&app, &headers, &id, || {
        let b: NoteBody = json_body(&headers, &bytes)?;
        note_change(b.text)
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: String,
    /// A person id; `null` takes the role away.
    person: Option<String>,
}

/// `POST /api/v1/incidents/{id}/roles` (responder): `{"role": "incident_lead", "person": "ana"}`.
pub async fn set_role(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    amend(&app, &headers, &id, || {
        let b: RoleBody = json_body(&headers, &bytes)?;
        role_change(b.role, b.person)
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoticeSentBody {
    /// When it was sent (default: now).
    at: Option<String>,
    /// The authority's case number, a link to the filed notice.
    reference: Option<String>,
}

/// `POST /api/v1/incidents/{id}/notices/{index}/sent` (responder): marks the notice (its
/// 0-based index in the incident's `notices`) as sent.
pub async fn notice_sent(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((id, index)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    amend(&app, &headers, &id, || {
        let b: NoticeSentBody =
            if bytes.is_empty() { NoticeSentBody::default() } else { json_body(&headers, &bytes)? };
        notice_sent_change(&index, b.at.as_deref(), b.reference)
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AwarenessBody {
    /// When the organization became aware (RFC 3339, not in the future).
    at: String,
    /// How it became aware: "researcher's email of Monday, read on Wednesday".
    note: Option<String>,
}

/// `POST /api/v1/incidents/{id}/awareness` (responder): records when the organization became
/// aware of the incident. Notices not yet sent (or missed) count their deadline and reminders
/// from it instead of from the first event.
pub async fn record_awareness(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    amend(&app, &headers, &id, || {
        let b: AwarenessBody = json_body(&headers, &bytes)?;
        let at = b.at.parse::<Timestamp>().map_err(|e| {
            ApiError::invalid(vec![FieldError::new("at", format!("not an RFC 3339 time: {e}"))])
        })?;
        awareness_change(app.journal.clock().now(), at, b.note)
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    summary: Option<String>,
    went_well: Option<String>,
    went_badly: Option<String>,
}

/// `PUT /api/v1/incidents/{id}/review` (responder): sets the fields given.
pub async fn put_review(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    amend(&app, &headers, &id, || {
        let b: ReviewBody = json_body(&headers, &bytes)?;
        review_change(b.summary, b.went_well, b.went_badly)
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    title: String,
    owner: String,
    due: String,
}

/// `POST /api/v1/incidents/{id}/actions` (responder): `{"title", "owner", "due"}`.
pub async fn add_action(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let response = amend(&app, &headers, &id, || {
        let b: ActionBody = json_body(&headers, &bytes)?;
        action_added(b.title, b.owner, &b.due)
    })
    .await?;
    Ok((StatusCode::CREATED, response).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionUpdate {
    state: Option<String>,
    owner: Option<String>,
    due: Option<String>,
}

/// `POST` or `PATCH /api/v1/incidents/{id}/actions/{n}` (responder): state (open, done,
/// dropped), owner, due.
pub async fn update_action(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    amend(&app, &headers, &id, || {
        let b: ActionUpdate = json_body(&headers, &bytes)?;
        action_updated(&action, b.state.as_deref(), b.owner, b.due.as_deref())
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// `markdown` (default) or `json`.
    format: Option<String>,
}

/// `GET /api/v1/incidents/{id}/review` (viewer): the review meeting's document — the
/// incident, its review and action items, and the full timeline — as Markdown or JSON.
pub async fn export_review(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Result<Query<ExportParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (rt, redact) = reader(&app, &headers, Role::Viewer)?;
    let Query(p) = params.map_err(|e| ApiError::malformed(e.body_text()))?;
    let id = incident_id(&id)?;
    let store = app.store.clone();
    let (incident, timeline, opening) = tokio::task::spawn_blocking(move || {
        let incident = store.incident(id)?;
        let opening = match &incident {
            Some(i) => store.event(i.opened_by)?,
            None => None,
        };
        Ok::<_, crate::store::StoreError>((incident, store.timeline(id)?, opening))
    })
    .await
    .map_err(|e| ApiError::Unavailable(e.to_string()))?
    .map_err(|e| ApiError::Unavailable(format!("the store could not be read: {e}")))?;
    let incident =
        incident.ok_or_else(|| ApiError::NotFound(format!("no incident with id {id}")))?;
    let export = Export::new(&incident, &timeline);
    let view = if redact {
        crate::redact::View::Redacted(&rt.redactor)
    } else {
        crate::redact::View::Original
    };
    let known = view.known(opening.as_ref());
    match p.format.as_deref().unwrap_or("markdown") {
        "markdown" | "md" => {
            let text = view.text(&export.markdown(), &known).into_owned();
            Ok(([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], text).into_response())
        }
        "json" => {
            let mut body = json!(export);
            view.json(&mut body, &known);
            Ok(Json(body).into_response())
        }
        other => Err(ApiError::invalid(vec![FieldError::new(
            "format",
            format!("`{other}` is not one of: markdown, json"),
        )])),
    }
}
