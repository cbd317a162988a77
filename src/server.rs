//! The HTTP server: accepts connections, enforces the header-read timeout, routes requests,
//! and stops gracefully.
//!
//! Connections are served with hyper-util's builder rather than `axum::serve`, because axum's
//! helper sets no header-read timeout and a client that drips headers would hold a connection
//! forever.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::auth::Authenticator;
use crate::config::{Config, Limits, Role};
use crate::error::ApiError;
use crate::ingest;
use crate::journal::{self, Journal};
use crate::metrics::Metrics;
use crate::store::{EventQuery, Store};

/// How long graceful shutdown waits for in-flight requests before closing connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Shared state of every route. Built once at start-up; `Arc` because every connection task
/// holds it.
pub struct App {
    pub auth: Authenticator,
    pub journal: Journal,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// False once shutdown begins, so load balancers stop sending before connections close.
    pub ready: AtomicBool,
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/api/v2/alerts", post(ingest::alertmanager_v2))
        .route("/v2/enqueue", post(ingest::pagerduty))
        .route("/api/v1/alertmanager", post(ingest::alertmanager_webhook))
        .route("/api/v1/reports", post(ingest::report))
        .route("/api/v1/events", post(ingest::canonical).get(list_events))
        .route("/api/v1/events/{id}", get(get_event))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .fallback(not_found)
        .with_state(app)
}

/// Opens the store, starts the journal writer, serves `listener` until `shutdown` completes,
/// then drains: stops accepting, finishes in-flight requests, commits what they carried.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&data_dir)).await??;
    let store = Arc::new(store);
    let metrics = Arc::new(Metrics::new());
    let (journal, writer) = journal::spawn(
        store.clone(),
        metrics.clone(),
        config.journal.queue_capacity,
        config.journal.max_batch_events,
    );
    let app = Arc::new(App {
        auth: Authenticator::new(&config),
        journal,
        store: store.clone(),
        metrics,
        limits: config.limits.clone(),
        ready: AtomicBool::new(true),
    });
    let service = TowerToHyperService::new(router(app.clone()));

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.limits.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());

    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = builder.serve_connection(TokioIo::new(stream), service.clone());
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }

    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    app.ready.store(false, Ordering::SeqCst);
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("in-flight requests did not finish within {DRAIN_TIMEOUT:?}; closing");
        }
    }
    // The journal stops once the last handle is gone: the router's clone went with the
    // connections, this is the last one.
    drop(service);
    drop(app);
    tokio::task::spawn_blocking(move || writer.join()).await?;
    tracing::info!(store = %store.path().display(), "stopped; every accepted event is committed");
    Ok(())
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

async fn ready(State(app): State<Arc<App>>) -> Response {
    if app.ready.load(Ordering::SeqCst) {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "shutting down"}))).into_response()
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        app.metrics.encode(),
    )
        .into_response()
}

async fn not_found() -> Response {
    ApiError::NotFound("no such endpoint".into()).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    source: Option<String>,
    before: Option<Uuid>,
    limit: Option<usize>,
}

/// Most events one page may hold.
const MAX_PAGE: usize = 1000;

async fn list_events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    app.auth.user_with_role(&headers, Role::Viewer)?;
    let Query(params) = params.map_err(|e| ApiError::malformed(e.body_text()))?;
    let limit = params.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let query = EventQuery { source: params.source, before: params.before, limit };
    let store = app.store.clone();
    let events = tokio::task::spawn_blocking(move || store.events(&query))
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let next = if events.len() == limit { events.last().map(|e| e.id) } else { None };
    Ok(Json(json!({"events": events, "next": next})).into_response())
}

async fn get_event(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    app.auth.user_with_role(&headers, Role::Viewer)?;
    let id = Uuid::parse_str(&id)
        .map_err(|e| ApiError::malformed(format!("event id {id:?} is not a UUID: {e}")))?;
    let store = app.store.clone();
    let event = tokio::task::spawn_blocking(move || store.event(id))
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    match event {
        Some(event) => Ok(Json(event).into_response()),
        None => Err(ApiError::NotFound(format!("no event with id {id}"))),
    }
}
