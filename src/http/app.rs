//! The state every route shares: one [`App`], built at start-up by [`crate::http::run`]; and
//! what handlers read through it (store reads off the async workers, the caller's role and
//! redaction, incident JSON as that caller may see it).
//!
//! Handlers depend on this module and the router ([`crate::http`]) depends on the handlers, so
//! the HTTP floor has no import loop.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;

use axum::http::HeaderMap;

use crate::clock::SharedClock;
use crate::config::Role;
use crate::error::ApiError;
use crate::incident::IncidentId;
use crate::journal::{Journal, JournalError};
use crate::metrics::Metrics;
use crate::outbox::Notification;
use crate::runtime::{Reloader, Runtime};
use crate::store::{EventReader, IncidentReader};
use crate::store::{Store, StoreError};

/// Shared state of every route. Built once at start-up; `Arc` because every connection task
/// holds it.
pub struct App {
    /// Credentials, rules and triage: swapped whole on reload; each request loads it once.
    pub runtime: Arc<ArcSwap<Runtime>>,
    pub reloader: Arc<Reloader>,
    pub journal: Journal,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    /// False once shutdown begins, so load balancers stop sending before connections close.
    pub ready: AtomicBool,
    /// The daemon's "now": the system clock, or a manual one for tests and rehearsals.
    pub clock: SharedClock,
    /// Bounds `/ack/{token}` requests whose link verified (no credential needed to reach it).
    pub ack_limiter: governor::DefaultDirectRateLimiter,
    /// Bounds SMS replies whose Twilio signature verified, apart from links: a flood of
    /// either cannot starve the other.
    pub sms_limiter: governor::DefaultDirectRateLimiter,
    /// Failed unauthenticated attempts (links that do not verify, unsigned SMS replies) per
    /// client: charged only to the client that made them, so they cannot starve valid ones.
    pub failures: crate::http::clients::FailureBudget,
    /// The dashboard's sign-in sessions (in memory) and sign-in rate limits.
    pub dashboard: crate::dashboard::session::Sessions,
}

/// Runs a store read on a blocking thread (redb reads touch the disk).
pub async fn read<T: Send + 'static>(
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
pub fn reader(
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
pub async fn redact_about_incidents(
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
pub async fn incident_json(
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

/// A person's change the journal could not take or commit: 503, to be retried.
pub fn journal_unavailable(e: JournalError) -> ApiError {
    match e {
        JournalError::Overloaded(_) | JournalError::Closed => ApiError::Unavailable(e.to_string()),
        JournalError::Store(err) => ApiError::Unavailable(format!("not recorded ({err}); retry")),
    }
}

/// A stored notification as the API shows it: acknowledge-link tokens replaced, so that
/// reading the outbox never hands out someone else's one-click credential.
pub fn redacted(mut n: Notification) -> Notification {
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
