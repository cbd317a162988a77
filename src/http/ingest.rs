//! Ingest handlers: the door every event comes through.
//!
//! For each request, in this order: credential (401/403) → content type (415) → body size and
//! deadline (413/408) → normalize (400/422) → source rate limit (429) → rules (on a blocking
//! thread) → journal commit with the incident change (503 if it cannot be made durable) → 202
//! with the stored event ids. The cheap refusals come first, and nothing is answered 2xx
//! before the commit. One runtime snapshot serves the whole request, so a reload never splits
//! it between two configs or rule sets.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use uuid::Uuid;

use crate::auth::SourceEntry;
use crate::config::Permission;
use crate::error::ApiError;
use crate::event::{Event, Format};
use crate::http::app::App;
use crate::http::body;
use crate::journal::JournalError;
use crate::normalize::{self, Context, Normalized};
use crate::runtime::Runtime;

pub async fn alertmanager_v2(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    ingest(&app, Format::AlertmanagerV2, &headers, body).await
}

pub async fn alertmanager_webhook(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    ingest(&app, Format::AlertmanagerWebhook, &headers, body).await
}

pub async fn report(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    ingest(&app, Format::Report, &headers, body).await
}

pub async fn canonical(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    ingest(&app, Format::Canonical, &headers, body).await
}

fn permission_for(format: Format) -> Permission {
    match format {
        Format::AlertmanagerV2 | Format::AlertmanagerWebhook | Format::Pagerduty => {
            Permission::Alerts
        }
        Format::Report => Permission::Reports,
        Format::Canonical => Permission::Events,
        // Declarations come from users (`POST /api/v1/incidents`), never from a source.
        Format::Declaration => Permission::Events,
    }
}

/// The bearer-token formats: every route but PagerDuty's.
async fn ingest(app: &App, format: Format, headers: &HeaderMap, body: Body) -> Response {
    let runtime = app.runtime.load_full();
    let source = match runtime.auth.source_by_bearer(headers) {
        Ok(source) => source,
        Err(e) => return refuse(app, "unknown", format, e),
    };
    match ingest_as(app, &runtime, source, format, headers, body).await {
        Ok((ids, rejected)) if rejected.is_empty() => accepted(format, &ids, json!({})),
        Ok((ids, rejected)) => {
            // Alertmanager's behaviour for a batch with bad alerts: keep the good ones, answer
            // 400 naming the bad ones, so the sender's logs show what was dropped.
            // (`rejected` was cleaned of personal data in `ingest_as`.)
            app.metrics.rejected(&source.name, "invalid", rejected.len() as u64);
            let message = format!(
                "stored {} events; refused {}",
                ids.len(),
                crate::error::summarize(&rejected)
            );
            if format == Format::AlertmanagerV2 {
                return alertmanager_bad_request(&message);
            }
            let body = json!({
                "error": "invalid",
                "message": message,
                "errors": rejected,
                "event_ids": ids,
            });
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
        Err(e) => refuse(app, &source.name, format, e),
    }
}

/// Alertmanager's `badRequest` answer on `POST /api/v2/alerts`: the body is one JSON string.
/// Clients generated from its spec (amtool) decode a 400 as exactly that and print it; an
/// object makes them fail to decode and lose the reason.
fn alertmanager_bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(message)).into_response()
}

async fn ingest_as(
    app: &App,
    runtime: &Arc<Runtime>,
    source: &SourceEntry,
    format: Format,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Vec<Uuid>, Vec<crate::error::FieldError>), ApiError> {
    source.require(permission_for(format))?;
    let bytes = body::read_body(headers, body, &runtime.config.limits).await?;
    let ctx = Context::new(&source.name, app.clock.now());
    let normalized = match format {
        Format::AlertmanagerV2 => normalize::alertmanager_v2(&bytes, ctx),
        Format::AlertmanagerWebhook => normalize::alertmanager_webhook(&bytes, ctx),
        Format::Report => normalize::report(&bytes, ctx),
        Format::Canonical => normalize::canonical(&bytes, ctx),
        Format::Pagerduty => {
            return Err(ApiError::malformed("PagerDuty events go to /v2/enqueue"));
        }
        Format::Declaration => {
            return Err(ApiError::malformed("declarations go to POST /api/v1/incidents"));
        }
    };
    // Error messages quote the body: not its personal data (they go to the sender and the log).
    let normalized = normalized.map_err(|e| runtime.redactor.api_error(e, &bytes))?;
    let Normalized { events, mut rejected } = normalized;
    if !rejected.is_empty() {
        rejected = runtime.redactor.field_errors(rejected, &bytes);
    }
    let ids = commit(app, runtime, source, format, events).await?;
    Ok((ids, rejected))
}

/// `POST /v2/enqueue`: PagerDuty Events API v2. The body's `routing_key` is the credential, and
/// answers keep PagerDuty's shape so existing PagerDuty clients understand them.
pub async fn pagerduty(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let mut source_name = String::from("unknown");
    let runtime = app.runtime.load_full();
    let result = async {
        let bytes = body::read_body(&headers, body, &runtime.config.limits).await?;
        let clean = |e: ApiError| runtime.redactor.api_error(e, &bytes);
        let event = normalize::parse_pagerduty(&bytes).map_err(clean)?;
        let source = runtime.auth.source_by_routing_key(event.routing_key())?;
        source_name.clone_from(&source.name);
        source.require(Permission::Alerts)?;
        let ctx = Context::new(&source.name, app.clock.now());
        let Normalized { events, .. } = event.into_normalized(ctx).map_err(clean)?;
        let dedup_key = events.first().map(|e| e.dedup_key.clone()).unwrap_or_default();
        let ids = commit(&app, &runtime, source, Format::Pagerduty, events).await?;
        Ok::<_, ApiError>((dedup_key, ids))
    }
    .await;
    match result {
        Ok((dedup_key, ids)) => accepted(
            Format::Pagerduty,
            &ids,
            json!({"message": "Event processed", "dedup_key": dedup_key}),
        ),
        Err(e) => {
            app.metrics.rejected(&source_name, e.code(), 1);
            pagerduty_error(e)
        }
    }
}

fn pagerduty_error(e: ApiError) -> Response {
    // PagerDuty answers every invalid event with 400, never 422; and a missing or unknown
    // routing key is an invalid event too (its Events API has no 401 or 403), so clients that
    // branch on PagerDuty's codes (retry 429 and 5xx, drop and log a 400) behave as with it.
    let status = match e.status() {
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            StatusCode::BAD_REQUEST
        }
        s => s,
    };
    let (status_word, message) = match status {
        StatusCode::BAD_REQUEST => ("invalid event", "Event object is invalid".to_string()),
        StatusCode::TOO_MANY_REQUESTS => ("throttle event", e.to_string()),
        _ => (e.code(), e.to_string()),
    };
    let errors: Vec<String> = if e.field_errors().is_empty() {
        vec![e.to_string()]
    } else {
        e.field_errors().iter().map(ToString::to_string).collect()
    };
    let body = json!({
        "status": status_word,
        "message": message,
        "errors": errors,
        "error": e.code(),
    });
    let mut resp = e.into_response();
    if resp.status() != status {
        // No longer a 401: no challenge either.
        resp.headers_mut().remove(header::WWW_AUTHENTICATE);
        *resp.status_mut() = status;
    }
    *resp.body_mut() = Body::from(body.to_string());
    resp
}

/// Rate-limits, scores the events with the rules, then hands them to the journal and waits
/// for the commit.
async fn commit(
    app: &App,
    runtime: &Arc<Runtime>,
    source: &SourceEntry,
    format: Format,
    events: Vec<Event>,
) -> Result<Vec<Uuid>, ApiError> {
    source.admit(events.len())?;
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let n = ids.len() as u64;
    let scored = crate::scoring::score_on_rule_threads(runtime, &app.journal.open, events).await?;
    app.journal.append(scored).await.map_err(|e| match e {
        JournalError::Overloaded(_) | JournalError::Closed => ApiError::Unavailable(e.to_string()),
        JournalError::Store(err) => {
            ApiError::Unavailable(format!("the event could not be stored durably ({err}); retry"))
        }
    })?;
    app.metrics.accepted(&source.name, format.as_str(), n);
    Ok(ids)
}

/// 202 with the stored ids; 200 on `/api/v2/alerts`, the only success code Alertmanager's
/// spec gives that route, so that clients generated from it (amtool) accept the answer.
fn accepted(format: Format, ids: &[Uuid], extra: serde_json::Value) -> Response {
    let mut body = json!({"status": "success", "accepted": ids.len(), "event_ids": ids});
    if let (Some(obj), serde_json::Value::Object(more)) = (body.as_object_mut(), extra) {
        obj.extend(more);
    }
    let status = match format {
        Format::AlertmanagerV2 => StatusCode::OK,
        _ => StatusCode::ACCEPTED,
    };
    (status, Json(body)).into_response()
}

fn refuse(app: &App, source: &str, format: Format, e: ApiError) -> Response {
    app.metrics.rejected(source, e.code(), 1);
    if matches!(e, ApiError::Unavailable(_)) {
        tracing::warn!(source, error = %e, "ingest answered 503");
    } else {
        tracing::debug!(source, error = %e, "ingest refused");
    }
    match (format, &e) {
        // Alertmanager answers every problem with the body itself 400 (its spec has no 422).
        // The other statuses keep their meaning and Tocsin's JSON object: Alertmanager has no
        // equivalent for them, and the sender's logs (Prometheus logs the status) and proxies
        // understand a 401, 413, 429 or 503 better than a 400.
        (Format::AlertmanagerV2, ApiError::Malformed { .. } | ApiError::Invalid { .. }) => {
            alertmanager_bad_request(&e.to_string())
        }
        _ => e.into_response(),
    }
}
