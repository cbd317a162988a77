//! The web dashboard at `/`: server-rendered pages for people, signed in with the same user
//! names, tokens and roles as the JSON API.
//!
//! - [`session`]: the sign-in form's sessions (cookie, CSRF token, idle expiry, rate limit).
//! - [`pages`]: the HTML, with every value escaped.
//! - [`customer`]: [`Redaction`], the one way customer personal data reaches a page (the API's
//!   redaction for the signed-in user).
//!
//! Access: without a session every page redirects to `/login` (health checks, `/metrics`, the
//! JSON API with its bearer tokens and `/ack/{token}` links are not affected). Viewers read;
//! responders acknowledge, resolve and add notes; admins also reload the config and retry or
//! drop notifications. Every `POST` needs the session's CSRF token in a hidden field (compared
//! in constant time) and, when the browser sends an `Origin`, that it is this server. Actions go
//! through the journal writer exactly as the API's do, as `user:<name>`.

pub mod config;
pub mod customer;
pub mod declare;
pub mod figures;
pub mod pages;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

pub use customer::Redaction;

use crate::config::Role;
use crate::http::app::App;
use crate::incident::{Incident, IncidentId, Status};
use crate::journal::{ActError, Amendment, JournalError, PersonAction, QueueOp};
use crate::store::{EventReader, IncidentReader, OutboxReader, TimerReader};
use crate::store::{Store, StoreError};
use session::{SignInError, Viewer};

const CSS: &str = include_str!("style.css");
const JS: &str = include_str!("dashboard.js");

/// Incidents one list page shows.
const LIST_PAGE: usize = 100;
/// The most incidents one page of the list reads while filtering and searching: a search
/// that matches little reads this many, then offers the next page instead of reading the
/// whole store in one request.
const SEARCH_BUDGET: usize = 5_000;
/// Notifications the queue page shows per section.
const QUEUE_PAGE: usize = 200;
/// Timers read for the overview's deadlines and action items.
const DUE_TIMERS: usize = 500;
/// Open incidents shown as cards per severity on the overview (the oldest first); the count
/// is of all of them, and a link lists the rest.
const OVERVIEW_PER_SEVERITY: usize = 25;

/// Largest sign-in form taken (413 beyond): a name, a token and a path fit many times over;
/// the route is open to anyone who can reach it.
pub const LOGIN_BODY_BYTES: usize = 4 * 1024;

/// The dashboard's routes, merged into the daemon's router.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(overview))
        .route(
            "/login",
            get(login_page)
                .post(login)
                .layer(axum::extract::DefaultBodyLimit::max(LOGIN_BODY_BYTES)),
        )
        .route("/logout", post(logout))
        .route("/incidents", get(list))
        .route("/incidents/{id}", get(incident))
        .route("/incidents/{id}/ack", post(acknowledge))
        .route("/incidents/{id}/resolve", post(resolve))
        .route("/incidents/{id}/notes", post(add_note))
        .route("/incidents/{id}/roles", post(hand_role))
        .route("/incidents/{id}/awareness", post(record_awareness))
        .route("/incidents/{id}/notices/{n}/sent", post(notice_sent))
        .route("/incidents/{id}/review", post(edit_review))
        .route("/incidents/{id}/actions", post(add_action))
        .route("/incidents/{id}/actions/{n}", post(update_action))
        .route("/figures", get(figures))
        .route("/declare", get(declare_page).post(declare_post))
        .route("/queue", get(queue))
        .route("/queue/{id}/{op}", post(queue_op))
        .route("/reload", post(reload))
        .route("/assets/dashboard.css", get(|| async { asset("text/css; charset=utf-8", CSS) }))
        .route(
            "/assets/dashboard.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// A page with the dashboard's security headers: never cached, never framed, no inline script.
fn html(status: StatusCode, page: String) -> Response {
    let mut r = (status, page).into_response();
    let h = r.headers_mut();
    let fixed = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ];
    for (name, value) in fixed {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn page(app: &App, v: Option<&Viewer>, status: StatusCode, title: &str, body: &str) -> Response {
    html(status, pages::layout(v, title, app.clock.now(), body))
}

fn message(app: &App, v: &Viewer, status: StatusCode, text: &str, back: &str) -> Response {
    page(
        app,
        Some(v),
        status,
        status.canonical_reason().unwrap_or("Error"),
        &pages::message(text, &[], back),
    )
}

/// The signed-in user, or a redirect to the sign-in page (back to `path` afterwards).
fn signed_in(app: &App, headers: &HeaderMap, path: &str) -> Result<Viewer, Box<Response>> {
    let rt = app.runtime.load();
    app.dashboard.viewer(&rt, headers).ok_or_else(|| {
        let next: String = url_encode(path);
        Box::new(redirect(&format!("/login?next={next}")))
    })
}

/// The signed-in user for a form `POST`, with its CSRF token and `Origin` checked and the
/// role required: a redirect to sign in without a session, 403 otherwise.
fn may_post(
    app: &App,
    headers: &HeaderMap,
    csrf: Option<&str>,
    role: Role,
) -> Result<Viewer, Box<Response>> {
    let rt = app.runtime.load();
    let Some(v) = app.dashboard.viewer(&rt, headers) else {
        return Err(Box::new(redirect("/login")));
    };
    if !session::origin_ok(&rt, headers) || !session::csrf_ok(&v, csrf) {
        tracing::info!(user = v.name, "dashboard form refused: bad CSRF token or origin");
        return Err(Box::new(message(
            app,
            &v,
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from this dashboard. Reload the page and try again.",
            "/",
        )));
    }
    if !v.may(role) {
        let text = format!(
            "You are signed in as {} {}; this needs the {} role.",
            crate::error::a_or_an(pages::role_name(v.role)),
            pages::role_name(v.role),
            pages::role_name(role)
        );
        return Err(Box::new(message(app, &v, StatusCode::FORBIDDEN, &text, "/")));
    }
    Ok(v)
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where to go after signing in: a path on this dashboard, else `/`.
///
/// Browsers resolve `Location` leniently: they drop tabs and newlines anywhere, strip
/// leading and trailing control characters and spaces, and read `\` as `/`, so `/\t/evil`
/// and `/\evil` both become `//evil`, another host. Rather than predict every such
/// normalisation, only a path made of the characters a URL path and query may hold
/// unescaped (RFC 3986 `pchar`, `/`, `?`, `%`) is kept, and it must not start with two
/// slashes after that: whatever a browser does to it, it stays a path on this origin.
fn safe_next(next: Option<&str>) -> String {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b);
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.len() <= 2048
                && n.bytes().all(allowed) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

async fn read<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    let store = app.store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn unavailable(app: &App, v: &Viewer, why: &str) -> Response {
    tracing::warn!(error = why, "dashboard read failed");
    message(
        app,
        v,
        StatusCode::SERVICE_UNAVAILABLE,
        "The store could not be read right now; try again shortly.",
        "/",
    )
}

// ---------------------------------------------------------------------------------------------
// Sign-in
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct NextParam {
    next: Option<String>,
}

async fn login_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    q: Result<Query<NextParam>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let next = safe_next(q.as_ref().ok().and_then(|q| q.next.as_deref()));
    if app.dashboard.viewer(&app.runtime.load(), &headers).is_some() {
        return redirect(&next);
    }
    page(&app, None, StatusCode::OK, "Sign in", &pages::login(None, "", &next))
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    token: String,
    next: Option<String>,
}

async fn login(
    State(app): State<Arc<App>>,
    client: crate::http::clients::Client,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let rt = app.runtime.load();
    let form = match form {
        Ok(Form(form)) => form,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return crate::error::ApiError::TooLarge { limit: LOGIN_BODY_BYTES }.into_response();
        }
        Err(_) => {
            let body = pages::login(Some("Send the sign-in form."), "", "/");
            return page(&app, None, StatusCode::BAD_REQUEST, "Sign in", &body);
        }
    };
    let next = safe_next(form.next.as_deref());
    if !session::origin_ok(&rt, &headers) {
        let body = pages::login(Some("This form did not come from this dashboard."), "", &next);
        return page(&app, None, StatusCode::FORBIDDEN, "Sign in", &body);
    }
    let name = form.name.trim();
    match app.dashboard.sign_in(&rt, client.0, name, form.token.trim()) {
        Ok(id) => {
            let mut r = redirect(&next);
            let cookie = session::set_cookie(&id, session::secure(&rt, &headers));
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(SignInError::Rejected) => {
            let body =
                pages::login(Some("That user name and token are not accepted."), name, &next);
            page(&app, None, StatusCode::UNAUTHORIZED, "Sign in", &body)
        }
        Err(SignInError::RateLimited(wait)) => {
            let text = format!("Too many sign-in attempts. Try again in {wait} s.");
            let body = pages::login(Some(&text), name, &next);
            let mut r = page(&app, None, StatusCode::TOO_MANY_REQUESTS, "Sign in", &body);
            if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
    }
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let csrf = form.ok().and_then(|f| f.0.csrf);
    if let Err(r) = may_post(&app, &headers, csrf.as_deref(), Role::Viewer) {
        return *r;
    }
    app.dashboard.sign_out(&headers);
    let mut r = redirect("/login");
    let cookie = session::clear_cookie(session::secure(&app.runtime.load(), &headers));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

// ---------------------------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------------------------

async fn overview(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let v = match signed_in(&app, &headers, "/") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    // Counts for every open incident, cards for the oldest few of each severity: in a storm
    // the page stays small and quick, and the list pages through the rest.
    let groups = app.journal.open.by_severity(OVERVIEW_PER_SEVERITY);
    let open_counts: Vec<(String, usize)> =
        groups.iter().map(|(sev, (count, _))| (sev.clone(), *count)).collect();
    let shown: Vec<IncidentId> = groups.into_values().flat_map(|(_, ids)| ids).collect();
    let mut red = Redaction::new(&v, &app.runtime.load().redactor);
    let data = read(&app, move |s| {
        let mut open: Vec<(Incident, Vec<crate::escalation::Timer>)> = Vec::new();
        for id in shown {
            // Closed since the index was read: left out.
            if let Some(i) = s.incident(id)?.filter(|i| i.status.is_open()) {
                let timers = s.incident_timers(i.id)?;
                open.push((i, timers));
            }
        }
        open.sort_by_key(|(i, _)| i.first_seen);
        let mut due = Vec::new();
        let mut cache: std::collections::HashMap<IncidentId, Option<Incident>> =
            std::collections::HashMap::new();
        for t in s.timers(DUE_TIMERS)? {
            use crate::escalation::TimerKind;
            if !matches!(t.kind, TimerKind::NoticeDeadline { .. } | TimerKind::ActionDue { .. }) {
                continue;
            }
            let incident = match cache.get(&t.incident) {
                Some(found) => found.clone(),
                None => {
                    let found = s.incident(t.incident)?;
                    cache.insert(t.incident, found.clone());
                    found
                }
            };
            if let Some(incident) = incident {
                due.push(pages::Due { timer: t, incident });
            }
        }
        let health = std::cell::RefCell::new(pages::Health::default());
        s.delivery_health(
            |n| health.borrow_mut().count(n),
            |channel| health.borrow_mut().dead(channel),
        )?;
        red.learn(s, open.iter().map(|(i, _)| i).chain(due.iter().map(|d| &d.incident)))?;
        Ok((pages::Overview { open, open_counts, due, health: health.into_inner() }, red))
    })
    .await;
    let (data, red) = match data {
        Ok(d) => d,
        Err(e) => return unavailable(&app, &v, &e),
    };
    let severities: Vec<String> =
        app.runtime.load().config.triage.severities.iter().map(|t| t.name.clone()).collect();
    let body = pages::overview(&red, &data, &severities, app.clock.now());
    page(&app, Some(&v), StatusCode::OK, "Overview", &body)
}

/// `GET /declare` (responder): the declaration form.
async fn declare_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let v = match signed_in(&app, &headers, "/declare") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if !v.may(Role::Responder) {
        return message(
            &app,
            &v,
            StatusCode::FORBIDDEN,
            "Declaring incidents needs a responder.",
            "/",
        );
    }
    let severities: Vec<String> =
        app.runtime.load().config.triage.severities.iter().map(|t| t.name.clone()).collect();
    page(&app, Some(&v), StatusCode::OK, "Declare an incident", &declare::form(&v, &severities))
}

#[derive(Debug, Deserialize)]
struct DeclareForm {
    csrf: Option<String>,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    services: String,
    customer_impact: Option<String>,
    #[serde(default)]
    data_sensitivity: String,
    #[serde(default)]
    estimated_reach: String,
    #[serde(default)]
    severity: String,
}

/// `POST /declare` (responder): declares through [`crate::http::declarations::declare`], then shows
/// the new incident.
async fn declare_post(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    form: Result<Form<DeclareForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.ok().map(|f| f.0);
    let csrf = form.as_ref().and_then(|f| f.csrf.clone());
    let v = match may_post(&app, &headers, csrf.as_deref(), Role::Responder) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Some(f) = form else {
        return message(
            &app,
            &v,
            StatusCode::BAD_REQUEST,
            "The form was not understood.",
            "/declare",
        );
    };
    let Some(data_sensitivity) = crate::rules::Sensitivity::parse(&f.data_sensitivity) else {
        return message(
            &app,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Choose a data sensitivity.",
            "/declare",
        );
    };
    let reach = f.estimated_reach.trim();
    let decl = crate::declaration::Declaration {
        title: f.title,
        description: f.description,
        impact: crate::declaration::Impact {
            services: f
                .services
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            customer_impact: f.customer_impact.is_some(),
            data_sensitivity,
            estimated_reach: (!reach.is_empty()).then(|| match reach.parse::<u64>() {
                Ok(n) => crate::event::Reach::Count(n),
                Err(_) => crate::event::Reach::Text(reach.to_owned()),
            }),
        },
        severity: (!f.severity.is_empty()).then_some(f.severity),
    };
    match crate::http::declarations::declare(&app, decl, &v.name).await {
        Ok(id) => redirect(&format!("/incidents/{id}")),
        Err(e) => {
            let details: Vec<String> = match &e {
                crate::error::ApiError::Invalid { errors, .. } => {
                    errors.iter().map(|f| format!("{}: {}", f.field, f.message)).collect()
                }
                _ => Vec::new(),
            };
            page(
                &app,
                Some(&v),
                StatusCode::UNPROCESSABLE_ENTITY,
                "Not declared",
                &pages::message(&e.to_string(), &details, "/declare"),
            )
        }
    }
}

#[derive(Debug, Deserialize)]
struct FiguresParams {
    since: Option<String>,
}

/// `/figures`: the report (as `tocsin report`) for a period, default the last 30 days.
async fn figures(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    params: Result<Query<FiguresParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let v = match signed_in(&app, &headers, "/figures") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let since = params.ok().and_then(|Query(p)| p.since).unwrap_or_else(|| "30d".into());
    let options = match crate::report::Options::parse(Some(&since), None, app.clock.now()) {
        Ok(o) => o,
        Err((field, why)) => {
            return message(
                &app,
                &v,
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("{field}: {why}"),
                "/figures",
            );
        }
    };
    let data = read(&app, move |s| s.report_data(options.read_from())).await;
    match data {
        Ok(d) => {
            let mut report = crate::report::compute(&d.incidents, &d.notifications, &options);
            if !v.pii {
                let redactor = app.runtime.load().redactor.clone();
                report.redact(&redactor, &d.known(&redactor));
            }
            page(&app, Some(&v), StatusCode::OK, "Figures", &figures::page(&report, &since))
        }
        Err(e) => unavailable(&app, &v, &e),
    }
}

#[derive(Debug, Deserialize)]
struct ListParams {
    status: Option<String>,
    severity: Option<String>,
    q: Option<String>,
    before: Option<IncidentId>,
}

async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let v = match signed_in(&app, &headers, "/incidents") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Ok(Query(p)) = params else {
        return message(
            &app,
            &v,
            StatusCode::BAD_REQUEST,
            "That search is not understood.",
            "/incidents",
        );
    };
    let status = p.status.unwrap_or_else(|| "open".into());
    let keep_status: fn(Status) -> bool = match status.as_str() {
        "open" => Status::is_open,
        "triggered" => |s| s == Status::Triggered,
        "acknowledged" => |s| s == Status::Acknowledged,
        "resolved" => |s| s == Status::Resolved,
        "all" => |_| true,
        _ => {
            return message(
                &app,
                &v,
                StatusCode::BAD_REQUEST,
                "Status must be one of: open, triggered, acknowledged, resolved, all.",
                "/incidents",
            );
        }
    };
    let severity = p.severity.unwrap_or_default();
    let q = p.q.unwrap_or_default();
    let (sev, needle) = (severity.clone(), q.trim().to_lowercase());
    let mut red = Redaction::new(&v, &app.runtime.load().redactor);
    let found = read(&app, move |s| {
        // The search sees what the user sees: a value redacted for them never matches.
        let failed = std::cell::RefCell::new(None);
        let keep = |i: &Incident| {
            keep_status(i.status)
                && (sev.is_empty() || i.decision.severity == sev)
                && (needle.is_empty()
                    || needle.trim_start_matches('#').parse::<u64>().is_ok_and(|n| n == i.id)
                    || red.shows(s, i, &needle).unwrap_or_else(|e| {
                        failed.borrow_mut().get_or_insert(e);
                        false
                    }))
        };
        let (found, go_on) = s.search_incidents(p.before, LIST_PAGE, SEARCH_BUDGET, keep)?;
        if let Some(e) = failed.into_inner() {
            return Err(e);
        }
        red.learn(s, &found)?;
        Ok((found, go_on, red))
    })
    .await;
    let (found, go_on, red) = match found {
        Ok(f) => f,
        Err(e) => return unavailable(&app, &v, &e),
    };
    // A full page, or a search that spent its budget: the next page goes on from there.
    let from = match go_on {
        Some(id) => Some(id),
        None => (found.len() == LIST_PAGE).then(|| found.last().map(|i| i.id)).flatten(),
    };
    let next = from.map(|before| {
        format!(
            "/incidents?status={}&severity={}&q={}&before={before}",
            url_encode(&status),
            url_encode(&severity),
            url_encode(&q),
        )
    });
    let severities: Vec<String> =
        app.runtime.load().config.triage.severities.iter().map(|t| t.name.clone()).collect();
    let query = pages::ListQuery { status: &status, severity: &severity, q: &q };
    let body = pages::list(&red, &query, &severities, &found, next, app.clock.now());
    page(&app, Some(&v), StatusCode::OK, "Incidents", &body)
}

async fn incident(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let v = match signed_in(&app, &headers, &format!("/incidents/{}", url_encode(&id))) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    render_incident(&app, &v, &id, StatusCode::OK, None).await
}

async fn render_incident(
    app: &App,
    v: &Viewer,
    id: &str,
    status: StatusCode,
    flash: Option<&str>,
) -> Response {
    let Ok(id) = id.parse::<IncidentId>() else {
        return message(app, v, StatusCode::NOT_FOUND, "There is no such incident.", "/incidents");
    };
    let found = read(app, move |s| {
        let Some(incident) = s.incident(id)? else { return Ok(None) };
        let event = s.event(incident.opened_by)?;
        let timeline = s.timeline(id)?;
        let notifications = s.incident_notifications(id)?;
        let timers = s.incident_timers(id)?;
        Ok(Some((incident, event, timeline, notifications, timers)))
    })
    .await
    .map(|found| {
        found.map(|(incident, event, timeline, notifications, timers)| {
            let rt = app.runtime.load();
            let people = rt
                .config
                .policies
                .people
                .values()
                .map(|p| (p.id.clone(), p.name.clone()))
                .collect();
            let role_names = rt.config.roster.roles.keys().cloned().collect();
            pages::IncidentPage {
                incident,
                event,
                timeline,
                notifications,
                timers,
                people,
                role_names,
            }
        })
    });
    match found {
        Ok(Some(p)) => {
            let title = format!("Incident #{id}");
            let mut red = Redaction::new(v, &app.runtime.load().redactor);
            red.learn_event(p.incident.id, p.event.as_ref());
            let body = pages::incident(v, &red, &p, app.clock.now(), flash);
            page(app, Some(v), status, &title, &body)
        }
        Ok(None) => message(
            app,
            v,
            StatusCode::NOT_FOUND,
            &format!("There is no incident #{id}."),
            "/incidents",
        ),
        Err(e) => unavailable(app, v, &e),
    }
}

async fn queue(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let v = match signed_in(&app, &headers, "/queue") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if !v.may(Role::Admin) {
        return message(&app, &v, StatusCode::FORBIDDEN, "The queue is for admins.", "/");
    }
    let mut red = Redaction::new(&v, &app.runtime.load().redactor);
    let lists = read(&app, move |s| {
        let dead = s.dead_notifications(None, QUEUE_PAGE, |_| true)?;
        let pending = s.pending_notifications(None, QUEUE_PAGE, |_| true)?;
        red.learn_ids(s, dead.iter().chain(&pending).map(|n| n.incident_id))?;
        Ok((dead, pending, red))
    })
    .await;
    match lists {
        Ok((dead, pending, red)) => {
            let body = pages::queue(&v, &red, &dead, &pending, app.clock.now());
            page(&app, Some(&v), StatusCode::OK, "Notification queue", &body)
        }
        Err(e) => unavailable(&app, &v, &e),
    }
}

// ---------------------------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------------------------

fn journal_failed(app: &App, v: &Viewer, e: JournalError, back: &str) -> Response {
    tracing::warn!(error = %e, "dashboard action not recorded");
    message(
        app,
        v,
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("Not recorded ({e}); try again."),
        back,
    )
}

async fn acknowledge(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let csrf = form.ok().and_then(|f| f.0.csrf);
    act(&app, &headers, &id, csrf.as_deref(), PersonAction::Acknowledge).await
}

async fn resolve(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let csrf = form.ok().and_then(|f| f.0.csrf);
    act(&app, &headers, &id, csrf.as_deref(), PersonAction::Resolve).await
}

/// Answers an incident change: back to the incident page (303), or the page with the reason.
async fn after_change(
    app: &App,
    v: &Viewer,
    raw_id: &str,
    outcome: Result<Result<Incident, ActError>, JournalError>,
) -> Response {
    let back = format!("/incidents/{raw_id}");
    match outcome {
        Ok(Ok(i)) => redirect(&format!("/incidents/{}", i.id)),
        Ok(Err(ActError::NotFound(id))) => message(
            app,
            v,
            StatusCode::NOT_FOUND,
            &format!("There is no incident #{id}."),
            "/incidents",
        ),
        Ok(Err(e @ (ActError::Refused(_) | ActError::Invalid(_)))) => {
            render_incident(app, v, raw_id, StatusCode::CONFLICT, Some(&e.to_string())).await
        }
        Err(e) => journal_failed(app, v, e, &back),
    }
}

async fn act(
    app: &App,
    headers: &HeaderMap,
    raw_id: &str,
    csrf: Option<&str>,
    action: PersonAction,
) -> Response {
    let v = match may_post(app, headers, csrf, Role::Responder) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Ok(id) = raw_id.parse::<IncidentId>() else {
        return message(app, &v, StatusCode::NOT_FOUND, "There is no such incident.", "/incidents");
    };
    let outcome = app.journal.act(id, action, format!("user:{}", v.name)).await;
    after_change(app, &v, raw_id, outcome).await
}

/// The fields of every incident form; each form sends the ones it has. An empty field counts
/// as not given.
#[derive(Debug, Default, Deserialize)]
struct ChangeForm {
    csrf: Option<String>,
    text: Option<String>,
    role: Option<String>,
    person: Option<String>,
    at: Option<String>,
    note: Option<String>,
    reference: Option<String>,
    summary: Option<String>,
    went_well: Option<String>,
    went_badly: Option<String>,
    title: Option<String>,
    owner: Option<String>,
    due: Option<String>,
    state: Option<String>,
}

fn given(field: Option<String>) -> Option<String> {
    field.filter(|v| !v.trim().is_empty())
}

type FormResult = Result<Form<ChangeForm>, axum::extract::rejection::FormRejection>;

/// Checks a form post to an incident (session, CSRF, responder), builds the change with the
/// same checks as the API (`crate::http::incident_actions`), and hands it to the journal writer as
/// `user:<name>`. A change the checks refuse is shown with its reasons and nothing is written.
async fn change(
    app: &App,
    headers: &HeaderMap,
    raw_id: &str,
    form: FormResult,
    build: impl FnOnce(ChangeForm, jiff::Timestamp) -> Result<Amendment, crate::error::ApiError>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    let v = match may_post(app, headers, form.csrf.as_deref(), Role::Responder) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Ok(id) = raw_id.parse::<IncidentId>() else {
        return message(app, &v, StatusCode::NOT_FOUND, "There is no such incident.", "/incidents");
    };
    let amendment = match build(form, app.clock.now()) {
        Ok(a) => a,
        Err(e) => {
            let details: Vec<String> = e.field_errors().iter().map(ToString::to_string).collect();
            let body = pages::message(&e.to_string(), &details, &format!("/incidents/{id}"));
            return page(app, Some(&v), e.status(), "Not changed", &body);
        }
    };
    let outcome = app.journal.amend(id, amendment, format!("user:{}", v.name)).await;
    after_change(app, &v, raw_id, outcome).await
}

async fn add_note(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    form: FormResult,
) -> Response {
    change(&app, &headers, &raw_id, form, |f, _| {
        crate::http::incident_actions::note_change(f.text.unwrap_or_default())
    })
    .await
}

async fn hand_role(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    form: FormResult,
) -> Response {
    change(&app, &headers, &raw_id, form, |f, _| {
        crate::http::incident_actions::role_change(f.role.unwrap_or_default(), given(f.person))
    })
    .await
}

/// `at` from the form: RFC 3339, or what a `datetime-local` input sends (`2026-05-01T17:00`),
/// read as UTC (the form says so).
fn form_time(raw: &str) -> Result<jiff::Timestamp, crate::error::ApiError> {
    let raw = raw.trim();
    if let Ok(t) = raw.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    raw.parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|dt| format!("{dt}Z").parse::<jiff::Timestamp>().ok())
        .ok_or_else(|| {
            crate::error::ApiError::invalid(vec![crate::error::FieldError::new(
                "at",
                format!("{raw:?} is not a time such as 2026-05-01T17:00 (UTC)"),
            )])
        })
}

async fn record_awareness(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    form: FormResult,
) -> Response {
    change(&app, &headers, &raw_id, form, |f, now| {
        let at = form_time(f.at.as_deref().unwrap_or_default())?;
        crate::http::incident_actions::awareness_change(now, at, given(f.note))
    })
    .await
}

async fn notice_sent(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((raw_id, n)): Path<(String, String)>,
    form: FormResult,
) -> Response {
    change(&app, &headers, &raw_id, form, |f, _| {
        crate::http::incident_actions::notice_sent_change(&n, None, given(f.reference))
    })
    .await
}

async fn edit_review(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    form: FormResult,
) -> Response {
    // An empty field keeps its text (the form is not prefilled for people who do not see
    // customer data, so an empty field there means "unchanged").
    change(&app, &headers, &raw_id, form, |f, _| {
        crate::http::incident_actions::review_change(
            given(f.summary),
            given(f.went_well),
            given(f.went_badly),
        )
    })
    .await
}

async fn add_action(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    form: FormResult,
) -> Response {
    change(&app, &headers, &raw_id, form, |f, _| {
        crate::http::incident_actions::action_added(
            f.title.unwrap_or_default(),
            f.owner.unwrap_or_default(),
            f.due.as_deref().unwrap_or_default(),
        )
    })
    .await
}

async fn update_action(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((raw_id, n)): Path<(String, String)>,
    form: FormResult,
) -> Response {
    change(&app, &headers, &raw_id, form, |f, _| {
        let due = given(f.due);
        crate::http::incident_actions::action_updated(
            &n,
            given(f.state).as_deref(),
            given(f.owner),
            due.as_deref(),
        )
    })
    .await
}

async fn queue_op(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((id, op)): Path<(String, String)>,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let csrf = form.ok().and_then(|f| f.0.csrf);
    let v = match may_post(&app, &headers, csrf.as_deref(), Role::Admin) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let op = match op.as_str() {
        "retry" => QueueOp::Retry,
        "drop" => QueueOp::Drop,
        _ => return message(&app, &v, StatusCode::NOT_FOUND, "No such queue action.", "/queue"),
    };
    let Ok(id) = id.parse::<crate::outbox::NotificationId>() else {
        return message(
            &app,
            &v,
            StatusCode::NOT_FOUND,
            "There is no such notification.",
            "/queue",
        );
    };
    match app.journal.queue(id, op, format!("user:{}", v.name)).await {
        Ok(Ok(_)) => redirect("/queue"),
        Ok(Err(msg)) if msg.starts_with("no notification") => {
            message(&app, &v, StatusCode::NOT_FOUND, &msg, "/queue")
        }
        Ok(Err(msg)) => message(&app, &v, StatusCode::CONFLICT, &msg, "/queue"),
        Err(e) => journal_failed(&app, &v, e, "/queue"),
    }
}

async fn reload(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let csrf = form.ok().and_then(|f| f.0.csrf);
    let v = match may_post(&app, &headers, csrf.as_deref(), Role::Admin) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let why = format!("dashboard reload by {}", v.name);
    let (status, text, details) = match app.reloader.reload(&why).await {
        Err(crate::runtime::LoadError::Interrupted(e)) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("Reload failed: {e}"), Vec::new())
        }
        Ok(restart_only) => {
            let text = if restart_only.is_empty() {
                "Reloaded: the new config and rules are in force.".to_string()
            } else {
                "Reloaded. These changes take effect only after a restart:".to_string()
            };
            (StatusCode::OK, text, restart_only)
        }
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "The new config or rules are invalid; the running ones stay in force.".to_string(),
            e.to_string().lines().map(str::to_string).collect(),
        ),
    };
    // A reload may have removed this user or changed their token: check again.
    match app.dashboard.viewer(&app.runtime.load(), &headers) {
        Some(v) => page(&app, Some(&v), status, "Reload", &pages::message(&text, &details, "/")),
        None => redirect("/login"),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_paths_on_this_origin_are_kept_after_sign_in() {
        for ok in ["/", "/incidents/42", "/incidents?status=open&q=%23disk", "/figures?since=30d"] {
            assert_eq!(safe_next(Some(ok)), ok);
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "\t//evil.example",
            " //evil.example",
            "/ /evil.example",
            "/\u{0}/evil.example",
            "/\u{b}/evil.example",
            "/\u{7f}/evil.example",
            "/\u{a0}/evil.example",
            "/\u{3000}/evil.example",
            "https://evil.example",
            "http:evil.example",
            "javascript:alert(1)",
            "evil.example",
            "",
            "/incidents#\"><script>",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
