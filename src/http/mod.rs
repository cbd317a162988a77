//! The HTTP floor: the router, the serve loop and graceful stop (here), and the handlers, one
//! module per resource. Handlers take the shared state from [`app`]; only this module names
//! them all, so there is no import loop. Connections are accepted within the limits of
//! [`connections`] (caps, idle and body deadlines); requests are read by [`body`].
//!
//! Connections are served with hyper-util's builder rather than `axum::serve`, because axum's
//! helper sets no header-read timeout and a client that drips headers would hold a connection
//! forever.

pub mod ack;
pub mod admin;
pub mod app;
pub mod body;
pub mod clients;
pub mod connections;
pub mod declarations;
pub mod incident_actions;
pub mod incidents;
pub mod ingest;
pub mod sms_inbound;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::ConfigOrigin;
use crate::error::ApiError;
use crate::journal::{self, Journal};
use crate::metrics::Metrics;
use crate::runtime::{Reloader, Runtime};
use crate::store::{Backend, Store, TimerReader};

use app::App;

/// How long graceful shutdown waits for in-flight requests before closing connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/api/v2/alerts", post(ingest::alertmanager_v2))
        .route("/v2/enqueue", post(ingest::pagerduty))
        .route("/api/v1/alertmanager", post(ingest::alertmanager_webhook))
        .route("/api/v1/reports", post(ingest::report))
        .route("/api/v1/events", post(ingest::canonical).get(incidents::list_events))
        .route("/api/v1/events/{id}", get(incidents::get_event))
        .route("/api/v1/incidents", get(incidents::list_incidents).post(declarations::post))
        .route("/api/v1/incidents/{id}", get(incidents::get_incident))
        .route("/api/v1/incidents/{id}/ack", post(incidents::acknowledge))
        .route("/api/v1/incidents/{id}/resolve", post(incidents::resolve))
        .route("/api/v1/incidents/{id}/notes", post(incident_actions::add_note))
        .route("/api/v1/incidents/{id}/roles", post(incident_actions::set_role))
        .route("/api/v1/incidents/{id}/notices/{index}/sent", post(incident_actions::notice_sent))
        .route("/api/v1/incidents/{id}/awareness", post(incident_actions::record_awareness))
        .route(
            "/api/v1/incidents/{id}/review",
            get(incident_actions::export_review).put(incident_actions::put_review),
        )
        .route("/api/v1/incidents/{id}/actions", post(incident_actions::add_action))
        .route("/api/v1/maintenance", get(admin::list_maintenance).post(admin::open_maintenance))
        .route("/api/v1/maintenance/{id}", axum::routing::delete(admin::end_maintenance))
        .route(
            "/api/v1/incidents/{id}/actions/{action}",
            post(incident_actions::update_action).patch(incident_actions::update_action),
        )
        .route("/api/v1/notifications", get(admin::list_notifications))
        .route("/api/v1/notifications/{id}/retry", post(admin::retry_notification))
        .route("/api/v1/webhooks", get(admin::list_webhooks))
        .route("/api/v1/webhooks/{name}/enable", post(admin::enable_webhook))
        .route("/api/v1/notifications/{id}/drop", post(admin::drop_notification))
        .route("/api/v1/audit/verify", get(admin::verify_audit))
        .route("/api/v1/report", get(admin::report))
        .route("/api/v1/rotations", get(admin::list_rotations))
        .route("/api/v1/rotations/{name}/overrides", post(admin::add_override))
        .route(
            "/api/v1/rotations/{name}/overrides/{id}",
            axum::routing::delete(admin::delete_override),
        )
        .route("/ack/{token}", get(ack::page).post(ack::act))
        .route(
            sms_inbound::PATH,
            post(sms_inbound::inbound)
                .layer(axum::extract::DefaultBodyLimit::max(sms_inbound::MAX_BODY_BYTES)),
        )
        .route("/-/reload", post(admin::reload))
        .route("/-/clock", post(admin::move_clock))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .merge(crate::dashboard::routes())
        // After every route (it applies to those registered before it), dashboard's included.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::map_response(json_errors))
        .with_state(app)
}

/// Opens the store, starts the journal writer, serves `listener` until `shutdown` completes,
/// then drains: stops accepting, finishes in-flight requests, commits what they carried.
/// `origin` is where reloads read the config from.
#[expect(
    clippy::too_many_lines,
    reason = "the accept loop with its connection cap and drain; to split"
)]
pub async fn run(
    origin: ConfigOrigin,
    runtime: Runtime,
    listener: TcpListener,
    clock: SharedClock,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let config = runtime.config.clone();
    let data_dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&data_dir)).await??;
    let store = Arc::new(store);
    let metrics = Arc::new(Metrics::new());
    metrics.declare(&runtime.config, &runtime.rules.names());
    let runtime = Arc::new(ArcSwap::from_pointee(runtime));
    let (journal, writer) = {
        let (store, metrics, rt) = (store.clone(), metrics.clone(), runtime.clone());
        let (capacity, batch) = (config.journal.queue_capacity, config.journal.max_batch_events);
        let clock = clock.clone();
        tokio::task::spawn_blocking(move || {
            journal::spawn(store, rt, metrics, capacity, batch, clock)
        })
        .await??
    };
    let reloader = Arc::new(Reloader::new(origin, runtime.clone(), metrics.clone()));
    let app = Arc::new(App {
        runtime,
        reloader: reloader.clone(),
        journal,
        store: store.clone(),
        metrics,
        ready: AtomicBool::new(true),
        clock: clock.clone(),
        ack_limiter: ack::limiter(),
        sms_limiter: ack::limiter(),
        failures: ack::failures(),
        dashboard: crate::dashboard::session::Sessions::new(),
    });
    // Reload on file changes and on SIGHUP. The watcher stops when dropped at the end of run.
    let _watcher = if config.watch {
        crate::runtime::watch(reloader.clone(), tokio::runtime::Handle::current())
            .inspect_err(|e| {
                tracing::warn!(error = %e, "cannot watch config and rules; reload with SIGHUP or POST /-/reload");
            })
            .ok()
    } else {
        None
    };
    let background = tokio_util::sync::CancellationToken::new();
    tokio::spawn(reload_on_sighup(reloader, background.clone()));
    if let Some(quiet) = config.auto_resolve_after {
        tokio::spawn(auto_resolve(app.journal.clone(), quiet, background.clone()));
    }
    let timers = tokio::spawn(fire_timers(app.journal.clone(), store.clone(), background.clone()));
    let delivery = tokio::spawn(crate::delivery::run(
        app.journal.clone(),
        store.clone(),
        app.runtime.clone(),
        app.metrics.clone(),
        background.clone(),
    ));
    let router = router(app.clone());
    let descriptors = connections::raise_descriptor_limit();
    let settings = connections::settings(&config.limits, descriptors);
    tracing::info!(
        max_connections = settings.max,
        per_address = settings.per_address,
        descriptors = ?descriptors,
        "connection limits"
    );
    let guard =
        Arc::new(connections::Guard::new(settings, app.metrics.clone(), app.runtime.clone()));

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.limits.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());

    // `shutdown`: connections finish their requests and close; `halt`: they are dropped.
    let (stopping, halt) = (CancellationToken::new(), CancellationToken::new());
    let connections = tokio_util::task::TaskTracker::new();
    let mut backoff = connections::AcceptBackoff::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => {
                        backoff.succeeded();
                        conn
                    }
                    Err(e) => {
                        app.metrics.accept_errors.inc();
                        // Out of descriptors: close the idlest connection to free one, and
                        // back off rather than spin (every retry would fail the same way).
                        if connections::out_of_descriptors(&e) {
                            guard.shed();
                        }
                        tokio::time::sleep(backoff.failed(&e)).await;
                        continue;
                    }
                };
                let Some(slot) = guard.admit(peer) else {
                    tracing::debug!(%peer, "connection refused: at the connection cap, none idle");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let service = connections::Service::new(
                    router.clone(),
                    &slot,
                    peer,
                    app.runtime.clone(),
                );
                let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let (stopping, halt) = (stopping.clone(), halt.clone());
                connections.spawn(connections::drive(conn, slot, peer, stopping, halt));
            }
            () = &mut shutdown => break,
        }
    }

    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    background.cancel();
    // Delivery stops claiming; sends in flight finish and report (bounded inside).
    let _ = delivery.await;
    let _ = timers.await;
    app.ready.store(false, Ordering::SeqCst);
    drop(listener);
    connections.close();
    stopping.cancel();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait()).await.is_err() {
        tracing::warn!("in-flight requests did not finish within {DRAIN_TIMEOUT:?}; closing");
        halt.cancel();
        // Dropped connections release the router (and its journal handle) at once.
        let _ = tokio::time::timeout(Duration::from_secs(5), connections.wait()).await;
    }
    // The journal stops once the last handle is gone: the router's clone went with the
    // connections, this is the last one.
    drop(router);
    drop(app);
    tokio::task::spawn_blocking(move || writer.join()).await?;
    tracing::info!(store = %store.path().display(), "stopped; every accepted event is committed");
    Ok(())
}

/// The timer scheduler: sleeps until the earliest timer is due (re-reading it when the writer
/// schedules a new one, when a manual clock moves, and at least every second), then asks the
/// writer to fire what is due. The writer deletes each fired row in the same commit, so a timer
/// fires once however often this asks.
async fn fire_timers(
    journal: Journal,
    store: Arc<Store>,
    stop: tokio_util::sync::CancellationToken,
) {
    const MAX_SLEEP: Duration = Duration::from_secs(1);
    // While the store cannot write, a write now and then tries to recover it (the reopen after
    // a full disk happens before a write), so readiness comes back without waiting for
    // traffic: a load balancer that stopped sending to a not-ready daemon would send none.
    const PROBE_EVERY: Duration = Duration::from_secs(2);
    let mut probed = std::time::Instant::now();
    loop {
        if store.write_problem().is_some() && probed.elapsed() >= PROBE_EVERY {
            probed = std::time::Instant::now();
            if let Err(e) = journal.tick().await {
                tracing::debug!(error = %e, "the store still cannot write");
            }
        }
        let next = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.next_timer_due()).await
        };
        let now = journal.clock().now();
        let sleep = match next {
            Ok(Ok(Some(due))) if due <= now => match journal.tick().await {
                Ok(()) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "firing due timers failed; retrying shortly");
                    MAX_SLEEP
                }
            },
            Ok(Ok(Some(due))) => {
                let wait = due.duration_since(now).unsigned_abs();
                if journal.clock().manual().is_some() { MAX_SLEEP } else { wait.min(MAX_SLEEP) }
            }
            Ok(Ok(None)) => MAX_SLEEP,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading the timer table failed; retrying shortly");
                MAX_SLEEP
            }
            Err(_) => MAX_SLEEP,
        };
        let clock = journal.clock().clone();
        let moved = async {
            match clock.manual() {
                Some(m) => m.moved().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = journal.timers_changed() => {}
            () = moved => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Binds `listen` (`host:port`; port 0 picks a free port).
pub async fn bind(listen: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

async fn healthy() -> Response {
    Json(json!({"status": "healthy"})).into_response()
}

/// Why the daemon cannot do its job right now (`None`: ready). Ingest is the job, so a store
/// that cannot write, or a writer thread that is gone, makes it not ready although reads
/// still work.
fn not_ready(app: &App) -> Option<String> {
    if !app.ready.load(Ordering::SeqCst) {
        return Some("shutting down".to_string());
    }
    if app.journal.is_closed() {
        return Some("the journal writer has stopped; nothing can be stored".to_string());
    }
    app.store.write_problem()
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    match not_ready(&app) {
        None => Json(json!({"status": "ready"})).into_response(),
        Some(why) if why == "shutting down" => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "shutting down"})))
                .into_response()
        }
        Some(why) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not ready", "reason": why})))
                .into_response()
        }
    }
}

async fn metrics(State(app): State<Arc<App>>, headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = crate::metrics::Exposition::negotiate(accept);
    app.metrics.store_writable.set(i64::from(app.store.write_problem().is_none()));
    app.metrics.ready.set(i64::from(not_ready(&app).is_none()));
    (
        [(header::CONTENT_TYPE, format.content_type()), (header::VARY, "Accept")],
        app.metrics.encode(format),
    )
        .into_response()
}

async fn not_found() -> Response {
    ApiError::NotFound("no such endpoint".into()).into_response()
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    ApiError::MethodNotAllowed(format!(
        "{method} is not allowed on {}; the Allow header lists the methods that are",
        uri.path()
    ))
    .into_response()
}

/// Most a framework refusal's text body that [`json_errors`] reads.
const FRAMEWORK_ERROR_BYTES: usize = 16 * 1024;

/// Every error answer is JSON: the refusals the framework writes itself (a body over axum's
/// buffering limit, a path that does not decode, an extractor's rejection) come as plain text
/// or empty, and become `{"error", "message"}` here. Answers that chose their type (JSON, the
/// dashboard's HTML, TwiML) pass untouched.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let plain = resp.headers().get(header::CONTENT_TYPE).is_none_or(|ct| {
        ct.to_str().is_ok_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("text/plain"))
    });
    if !plain {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, FRAMEWORK_ERROR_BYTES).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_string(),
        text => text.to_string(),
    };
    let body = json!({"error": crate::error::code_for_status(status), "message": message});
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // As for ingest's 413: the rest of the body is not read and the connection closes;
        // saying so keeps a client's pool from sending its next request into it.
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}

async fn reload_on_sighup(reloader: Arc<Reloader>, stop: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let _ = reloader.reload("SIGHUP").await;
            }
            () = stop.cancelled() => return,
        }
    }
}

/// Asks the writer to resolve quiet incidents, at a tenth of the quiet period (at most every
/// 30 s), so an incident is resolved at most 10% late.
async fn auto_resolve(
    journal: Journal,
    quiet: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let every = (quiet / 10).clamp(Duration::from_millis(100), Duration::from_secs(30));
    let Ok(quiet) = jiff::SignedDuration::try_from(quiet) else { return };
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = journal.auto_resolve(quiet) {
                    tracing::debug!(error = %e, "auto-resolve sweep skipped");
                }
            }
            () = stop.cancelled() => return,
        }
    }
}
