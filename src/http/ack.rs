//! `GET` and `POST /ack/{token}`: the signed one-click acknowledge link from an email or SMS.
//!
//! The token is the credential (see [`crate::links`]): no bearer token, no session. `GET`
//! only shows the incident and a button, because mail scanners, chat link previews and
//! prefetching browsers fetch links on their own; only the `POST` the button sends
//! acknowledges, through the journal writer like every other action, as `link:<person>`.
//!
//! Answers are small HTML pages (people read them on a phone). They are never cached, never
//! framed, and send no `Referer` (the token is in the URL). The token is never logged.
//! The link is checked first (an HMAC, no I/O): one that does not verify is charged to its
//! client's failure budget ([`failures`]), which refuses that client for a while once spent;
//! links that verify are bounded by one global rate. So a flood of made-up links cannot make
//! a real one answer 429.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::app::App;
use crate::http::clients::Client;
use crate::http::connections::AddrKey;
use crate::incident::{Incident, Status};
use crate::journal::{ActError, JournalError, PersonAction};
use crate::links::{Claim, LinkError};
use crate::store::IncidentReader;

/// Requests to `/ack/…` with a valid link per second across all clients, and the burst
/// allowed above it (the same for signed SMS replies, on a limiter of their own).
pub const RATE_PER_SECOND: u32 = 20;
pub const RATE_BURST: u32 = 40;

/// Failed attempts (a link that does not verify, an unsigned SMS reply) per client: 20, then
/// one per second.
pub const FAILURE_BURST: u32 = 20;
pub const FAILURE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The failure budget [`crate::http::app::App`] holds for these routes and SMS replies.
pub fn failures() -> crate::http::clients::FailureBudget {
    crate::http::clients::FailureBudget::new(FAILURE_BURST, FAILURE_EVERY)
}

/// The limiter [`crate::http::app::App`] holds for these routes.
pub fn limiter() -> governor::DefaultDirectRateLimiter {
    let quota = governor::Quota::per_second(
        std::num::NonZeroU32::new(RATE_PER_SECOND).expect("non-zero rate"),
    )
    .allow_burst(std::num::NonZeroU32::new(RATE_BURST).expect("non-zero burst"));
    governor::RateLimiter::direct(quota)
}

/// `GET /ack/{token}`: shows the incident and an "Acknowledge" button. Changes nothing.
pub async fn page(
    State(app): State<Arc<App>>,
    client: Client,
    Path(token): Path<String>,
) -> Response {
    let (claim, incident) = match check(&app, client, &token).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let body = match incident.status {
        Status::Triggered => format!(
            "{}<form method=\"post\"><button type=\"submit\" style=\"font-size: 1.2em; padding: 0.5em 1.5em\">Acknowledge</button></form>\
             <p class=\"small\">Acknowledging as <strong>{}</strong> stops further escalation of this incident. This link works until {}.</p>",
            describe(&incident),
            escape(&claim.person),
            claim.expires_at().map(|t| t.to_string()).unwrap_or_default(),
        ),
        Status::Acknowledged | Status::Resolved => {
            format!("{}{}", describe(&incident), already(&incident))
        }
    };
    html(StatusCode::OK, &format!("Incident #{}", incident.id), &body)
}

/// `POST /ack/{token}`: acknowledges the incident as `link:<person>`.
pub async fn act(
    State(app): State<Arc<App>>,
    client: Client,
    Path(token): Path<String>,
) -> Response {
    let (claim, incident) = match check(&app, client, &token).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let by = format!("link:{}", claim.person);
    let title = format!("Incident #{}", incident.id);
    match app.journal.act(claim.incident, PersonAction::Acknowledge, by.clone()).await {
        Ok(Ok(incident)) => {
            tracing::info!(incident = incident.id, by, "acknowledged through a signed link");
            let body = format!(
                "<p class=\"ok\"><strong>Acknowledged.</strong> Thank you; further escalation of this incident has stopped.</p>{}",
                describe(&incident)
            );
            html(StatusCode::OK, &title, &body)
        }
        Ok(Err(ActError::Refused(_) | ActError::Invalid(_))) => {
            // Acknowledged or resolved meanwhile (or a second click): say by whom.
            let current = read_incident(&app, claim.incident).await.ok().flatten();
            let body = match current {
                Some(i) => format!("{}{}", describe(&i), already(&i)),
                None => "<p>This incident can no longer be acknowledged.</p>".to_string(),
            };
            html(StatusCode::CONFLICT, &title, &body)
        }
        Ok(Err(ActError::NotFound(_))) => not_found(claim.incident),
        Err(JournalError::Overloaded(_) | JournalError::Closed | JournalError::Store(_)) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "<p>The acknowledgement could not be recorded right now. Please try again in a moment.</p>",
        ),
    }
}

fn too_many(retry_after: u64) -> Response {
    let mut page = html(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests",
        "<p>Too many requests right now. Please try again in a few seconds.</p>",
    );
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        page.headers_mut().insert(header::RETRY_AFTER, v);
    }
    page
}

/// Client's failure budget, links enabled, token valid (a failure is charged otherwise), the
/// valid links' rate, person still configured, incident exists.
async fn check(app: &App, client: Client, token: &str) -> Result<(Claim, Incident), Response> {
    let from = AddrKey::of(client.0);
    if let Some(wait) = app.failures.blocked(&from) {
        return Err(too_many(crate::http::clients::retry_after_secs(wait)));
    }
    let rt = app.runtime.load();
    let Some(links) = rt.ack_links.clone() else {
        return Err(html(
            StatusCode::NOT_FOUND,
            "Not available",
            "<p>Acknowledge links are not enabled on this Tocsin.</p>",
        ));
    };
    let claim = links.verify(token, app.clock.now()).map_err(|e| {
        tracing::info!(error = %e, client = %client.0, "acknowledge link refused");
        // An expired link was real once (it verified): a person with an old message, not a
        // guess.
        if !matches!(e, LinkError::Expired(_)) {
            app.failures.fail(from);
        }
        let status = match e {
            LinkError::Expired(_) => StatusCode::GONE,
            LinkError::Malformed | LinkError::BadSignature => StatusCode::FORBIDDEN,
        };
        let hint = match e {
            LinkError::Expired(_) => {
                "Acknowledge the incident in Tocsin or through the API instead, or use the link in a newer message."
            }
            _ => "Use the link exactly as it arrived, or acknowledge the incident in Tocsin.",
        };
        html(status, "Link not valid", &format!("<p>{}.</p><p>{hint}</p>", escape(&e.to_string())))
    })?;
    if app.ack_limiter.check().is_err() {
        return Err(too_many(2));
    }
    if !rt.config.policies.people.contains_key(&claim.person) {
        tracing::info!(
            person = claim.person,
            "acknowledge link refused: person no longer configured"
        );
        return Err(html(
            StatusCode::FORBIDDEN,
            "Link not valid",
            "<p>This link was issued to someone who is no longer in Tocsin's people list, so it no longer works.</p>",
        ));
    }
    match read_incident(app, claim.incident).await {
        Ok(Some(incident)) => Ok((claim, incident)),
        Ok(None) => Err(not_found(claim.incident)),
        Err(()) => Err(html(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "<p>The incident could not be read right now. Please try again in a moment.</p>",
        )),
    }
}

async fn read_incident(app: &App, id: u64) -> Result<Option<Incident>, ()> {
    let store = app.store.clone();
    match tokio::task::spawn_blocking(move || store.incident(id)).await {
        Ok(Ok(found)) => Ok(found),
        _ => Err(()),
    }
}

fn not_found(id: u64) -> Response {
    html(StatusCode::NOT_FOUND, "Not found", &format!("<p>There is no incident #{id}.</p>"))
}

fn describe(i: &Incident) -> String {
    let service = i.service.as_deref().map(|s| format!(" ({})", escape(s))).unwrap_or_default();
    format!(
        "<table>\
         <tr><th>Incident</th><td>#{}</td></tr>\
         <tr><th>Severity</th><td>{}</td></tr>\
         <tr><th>Summary</th><td>{}{service}</td></tr>\
         <tr><th>Status</th><td><strong>{}</strong></td></tr>\
         <tr><th>First seen</th><td>{}</td></tr>\
         </table>",
        i.id,
        escape(&i.decision.severity),
        escape(&i.summary),
        i.status.as_str(),
        i.first_seen,
    )
}

fn already(i: &Incident) -> String {
    match (&i.resolved, &i.acknowledged) {
        (Some(r), _) => format!(
            "<p>This incident is already <strong>resolved</strong> (by {} at {}); nothing to acknowledge.</p>",
            escape(&r.by),
            r.at
        ),
        (None, Some(a)) => format!(
            "<p>This incident is already <strong>acknowledged</strong> by {} at {}.</p>",
            escape(&a.by),
            a.at
        ),
        (None, None) => String::new(),
    }
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex, nofollow\">\
         <title>{title} - Tocsin</title>\
         <style>body{{font-family:sans-serif;max-width:40em;margin:1em auto;padding:0 1em;color:#222}}\
         th{{text-align:left;padding-right:1em;vertical-align:top}}.ok{{color:#176117}}.small{{font-size:0.9em;color:#555}}</style>\
         </head><body><h1>{title}</h1>\n{body}\n</body></html>\n",
        title = escape(title),
    );
    let mut response = (status, page).into_response();
    let headers = response.headers_mut();
    let fixed = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
        (header::HeaderName::from_static("x-robots-tag"), "noindex, nofollow"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// HTML escaping: the dashboard's, one rule for every page the daemon serves.
fn escape(text: &str) -> String {
    crate::dashboard::pages::esc(text)
}
