//! Client connections: how many are served at once, how long one may stay without a request,
//! and how long a request body may take — so that silent, slow or numerous clients cannot
//! take the file descriptors (and with them ingest and health checks) away.
//!
//! - **Cap.** At most `limits.max_connections` connections are served at once, and at most
//!   `limits.max_connections_per_address` from one client address (an IPv4 address, or an
//!   IPv6 /64, since one host usually holds a whole /64; trusted proxies are exempt). The
//!   default cap is derived from the descriptor limit (`RLIMIT_NOFILE`, whose soft value is
//!   first raised to the hard one): what is left after a reserve for the store, logs,
//!   outgoing notifications and the like, at most 4096.
//! - **At the cap** the connection that has been idle longest (no request in progress: one
//!   that never sent anything, or a keep-alive connection between requests) is closed to make
//!   room for the new one; only when every connection is busy with a request is the new one
//!   closed at once. So a health check (a new connection that asks at once) is answered while
//!   a flood of silent connections holds the cap, and a flood from one address only ever
//!   displaces its own connections once it reaches the per-address cap.
//! - **Idle deadline.** A connection that has no request in progress for
//!   `limits.header_read_timeout` is closed: one that sends nothing at all (hyper-util's
//!   HTTP/1-or-2 detection would wait for its first bytes forever), one that sends part of a
//!   request and stalls, a keep-alive connection, and an HTTP/2 connection with no stream.
//! - **Body deadline.** A request body must arrive within `limits.request_timeout` of the
//!   request's headers, on every route (ingest, sign-in, SMS replies, notes, forms): after it
//!   the request is answered 408 and, on HTTP/1, the connection closed.
//!
//! Each served connection holds one [`Slot`]; the accept loop asks [`Guard::admit`] for it.

pub mod config;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, Version, header};
use axum::response::IntoResponse;
use hyper::body::{Frame, Incoming, SizeHint};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::runtime::Runtime;

/// Never more connections by default than this, however many descriptors there are: each
/// costs buffers and a task, and an alert router with thousands of clients is a cluster's job.
const DEFAULT_CAP: usize = 4096;
/// How far the descriptor soft limit is raised (when the hard limit allows).
const WANTED_DESCRIPTORS: u64 = 65_536;
/// A closed (evicted or idle) connection gets this long to finish what it was doing (an
/// HTTP/2 GOAWAY, a half-read request) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Connections still closing may exceed the cap by this many, so that a flood that makes every
/// new connection evict an old one cannot, while the old ones close, hold more descriptors
/// than the reserve allows.
const CLOSING_HEADROOM: usize = 32;

/// The connection limits in force (fixed at start: a reload does not change them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub max: usize,
    pub per_address: usize,
    /// `limits.header_read_timeout`: the longest a connection may go without a request.
    pub idle: Duration,
    /// The descriptor limit the defaults were derived from (`None`: unlimited).
    pub descriptors: Option<u64>,
}

/// Raises the descriptor soft limit towards the hard one (the soft default of 1024 is a
/// leftover of `select()`, which Tocsin does not use), and answers the soft limit in force.
pub fn raise_descriptor_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let wanted = limit.maximum.map_or(WANTED_DESCRIPTORS, |hard| hard.min(WANTED_DESCRIPTORS));
    if limit.current.is_some_and(|soft| soft < wanted) {
        let raised = Rlimit { current: Some(wanted), maximum: limit.maximum };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "cannot raise the descriptor limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Descriptors kept for everything but client connections: the store, the log and
/// notification files, the listener, outgoing email, SMS and webhook connections, the
/// runtime's own. An eighth of the limit, and at least 64.
pub fn reserve(descriptors: u64) -> u64 {
    64 + descriptors / 8
}

/// The limits for `limits`, given the descriptor limit: configured values, else the defaults
/// described in the module documentation. A configured cap that the descriptors cannot carry is
/// lowered, with a warning.
pub fn settings(limits: &crate::config::Limits, descriptors: Option<u64>) -> Settings {
    let room =
        descriptors.map(|d| usize::try_from(d.saturating_sub(reserve(d))).unwrap_or(usize::MAX));
    let max = match (limits.max_connections, room) {
        (Some(max), Some(room)) if max > room => {
            tracing::warn!(
                configured = max,
                descriptors,
                "limits.max_connections is more than the descriptor limit leaves room for; using {}",
                room.max(1)
            );
            room.max(1)
        }
        (Some(max), _) => max,
        (None, Some(room)) => room.clamp(1, DEFAULT_CAP),
        (None, None) => DEFAULT_CAP,
    };
    let per_address = limits.max_connections_per_address.unwrap_or((max / 4).max(1)).min(max);
    Settings { max, per_address, idle: limits.header_read_timeout, descriptors }
}

/// What per-address limits count by: an IPv4 address, or the /64 of an IPv6 one (an
/// IPv4-mapped IPv6 address counts as its IPv4 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrKey {
    V4(u32),
    V6(u64),
}

impl AddrKey {
    pub fn of(ip: IpAddr) -> AddrKey {
        match ip {
            IpAddr::V4(v4) => AddrKey::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(v4.into()),
                None => AddrKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// One served connection, as the guard and its request service see it.
#[derive(Debug)]
pub struct Conn {
    id: u64,
    key: AddrKey,
    /// Requests being handled, responses being written included.
    in_flight: AtomicUsize,
    /// Milliseconds since the guard's epoch when the connection last became idle.
    idle_since: AtomicU64,
    /// Being closed to make room (counts against the cap no more).
    closing: AtomicBool,
    evicted: CancellationToken,
    epoch: Instant,
}

impl Conn {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn idle_for(&self) -> Option<Duration> {
        (self.in_flight.load(Ordering::SeqCst) == 0).then(|| {
            Duration::from_millis(
                self.now_ms().saturating_sub(self.idle_since.load(Ordering::SeqCst)),
            )
        })
    }
}

/// The connection table behind the cap.
pub struct Guard {
    pub settings: Settings,
    table: Mutex<Table>,
    metrics: Arc<Metrics>,
    runtime: Arc<ArcSwap<Runtime>>,
    epoch: Instant,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
    /// Connections not closing, in all and per address.
    serving: usize,
    per_address: HashMap<AddrKey, usize>,
}

impl Table {
    /// Marks the longest-idle connection (of `key`, when given) as closing and tells it to
    /// close; false when every such connection has a request in progress.
    fn evict_idlest(&mut self, key: Option<AddrKey>) -> bool {
        let victim = self
            .conns
            .values()
            .filter(|c| !c.closing.load(Ordering::SeqCst) && key.is_none_or(|k| c.key == k))
            .filter_map(|c| c.idle_for().map(|idle| (idle, c)))
            .max_by_key(|(idle, c)| (*idle, std::cmp::Reverse(c.id)))
            .map(|(_, c)| c.clone());
        let Some(victim) = victim else { return false };
        victim.closing.store(true, Ordering::SeqCst);
        self.stop_counting(victim.key);
        victim.evicted.cancel();
        true
    }

    fn stop_counting(&mut self, key: AddrKey) {
        self.serving -= 1;
        if let Some(n) = self.per_address.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&key);
            }
        }
    }
}

impl Guard {
    pub fn new(settings: Settings, metrics: Arc<Metrics>, runtime: Arc<ArcSwap<Runtime>>) -> Guard {
        Guard {
            settings,
            table: Mutex::new(Table::default()),
            metrics,
            runtime,
            epoch: Instant::now(),
        }
    }

    /// A slot for a connection from `peer`, making room by closing the idlest connection when
    /// a cap is reached; `None` (close it now) when there is no room.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<Slot> {
        let key = AddrKey::of(peer.ip());
        let exempt = self
            .runtime
            .load()
            .config
            .limits
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&peer.ip()));
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let s = self.settings;
        let mut room = true;
        if !exempt && table.per_address.get(&key).copied().unwrap_or(0) >= s.per_address {
            room = table.evict_idlest(Some(key));
            if room {
                self.metrics.connections_evicted.inc();
            }
        }
        if room && table.serving >= s.max {
            room = table.evict_idlest(None);
            if room {
                self.metrics.connections_evicted.inc();
            }
        }
        if !room || table.conns.len() >= s.max + CLOSING_HEADROOM {
            self.metrics.connections_refused.inc();
            return None;
        }
        table.next_id += 1;
        let conn = Arc::new(Conn {
            id: table.next_id,
            key,
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            evicted: CancellationToken::new(),
            epoch: self.epoch,
        });
        conn.idle_since.store(conn.now_ms(), Ordering::SeqCst);
        table.conns.insert(conn.id, conn.clone());
        table.serving += 1;
        *table.per_address.entry(key).or_insert(0) += 1;
        self.metrics.connections_open.set(table.conns.len() as i64);
        Some(Slot { guard: self.clone(), conn })
    }

    /// Closes the idlest connection, to free a descriptor (after `accept` ran out of them).
    pub fn shed(&self) -> bool {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let shed = table.evict_idlest(None);
        if shed {
            self.metrics.connections_evicted.inc();
        }
        shed
    }

    fn release(&self, conn: &Conn) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if table.conns.remove(&conn.id).is_some() && !conn.closing.load(Ordering::SeqCst) {
            table.stop_counting(conn.key);
        }
        self.metrics.connections_open.set(table.conns.len() as i64);
    }
}

/// A connection's place in the table; freed when dropped (the connection task ends).
pub struct Slot {
    guard: Arc<Guard>,
    conn: Arc<Conn>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.guard.release(&self.conn);
    }
}

/// Why a connection is being closed by us.
enum Close {
    Idle,
    Evicted,
    Shutdown,
}

/// Drives one connection to its end: serves it until the client closes, it is idle for
/// `settings.idle`, it is evicted, or the daemon shuts down (then it finishes in-flight
/// requests until `halt`).
pub async fn drive<C, E>(
    conn: C,
    slot: Slot,
    peer: SocketAddr,
    shutdown: CancellationToken,
    halt: CancellationToken,
) where
    C: hyper_util::server::graceful::GracefulConnection<Error = E>,
    E: std::fmt::Display,
{
    let idle = slot.guard.settings.idle;
    let state = slot.conn.clone();
    tokio::pin!(conn);
    let why = loop {
        // While a request is in progress its own deadlines apply; look again after `idle`.
        let wait = match state.idle_for() {
            Some(for_) => idle.saturating_sub(for_),
            None => idle,
        };
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = state.evicted.cancelled() => break Close::Evicted,
            () = shutdown.cancelled() => break Close::Shutdown,
            () = tokio::time::sleep(wait) => {
                if state.idle_for().is_some_and(|for_| for_ >= idle) {
                    slot.guard.metrics.connections_idle_closed.inc();
                    break Close::Idle;
                }
            }
        }
    };
    conn.as_mut().graceful_shutdown();
    match why {
        Close::Shutdown => {
            tokio::select! {
                _ = conn.as_mut() => {}
                () = halt.cancelled() => {}
            }
        }
        Close::Idle | Close::Evicted => {
            let _ = tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await;
        }
    }
}

/// The per-connection request service: the router, with the client's address as
/// [`ConnectInfo`], the body deadline, and the connection's in-flight count kept.
#[derive(Clone)]
pub struct Service {
    router: Router,
    conn: Arc<Conn>,
    peer: SocketAddr,
    runtime: Arc<ArcSwap<Runtime>>,
}

impl Service {
    pub fn new(
        router: Router,
        slot: &Slot,
        peer: SocketAddr,
        runtime: Arc<ArcSwap<Runtime>>,
    ) -> Service {
        Service { router, conn: slot.conn.clone(), peer, runtime }
    }
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        use tower::ServiceExt as _;
        let busy = InFlight::new(self.conn.clone());
        let limit = self.runtime.load().config.limits.request_timeout;
        let expired = Arc::new(AtomicBool::new(false));
        let http1 = req.version() < Version::HTTP_2;
        let deadline = tokio::time::Instant::now() + limit;
        let mut req = req.map(|body| {
            Body::new(Deadline {
                inner: body,
                sleep: Box::pin(tokio::time::sleep_until(deadline)),
                expired: expired.clone(),
            })
        });
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let call = self.router.clone().oneshot(req);
        Box::pin(async move {
            let response = match call.await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            // A handler that met the deadline reading its body answered whatever its extractor
            // makes of a failed read; the truth is a 408.
            let mut response = if expired.load(Ordering::SeqCst) {
                ApiError::Timeout(limit).into_response()
            } else {
                response
            };
            if expired.load(Ordering::SeqCst) && http1 {
                // The rest of the body is unread: the connection cannot carry another request.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response.map(|body| Body::new(Tracked { inner: body, _busy: busy })))
        })
    }
}

/// Counts a request in progress on its connection until dropped (its response is written, or
/// the request was abandoned).
struct InFlight(Arc<Conn>);

impl InFlight {
    fn new(conn: Arc<Conn>) -> InFlight {
        conn.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now_ms(), Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request body that fails once its deadline passes.
struct Deadline {
    inner: Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
}

impl hyper::body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::SeqCst);
            return Poll::Ready(Some(Err(
                "the request body did not arrive within limits.request_timeout".into(),
            )));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request counted as in progress until it is written.
struct Tracked {
    inner: Body,
    _busy: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Backs off after `accept` fails (out of descriptors: every retry would fail the same way
/// at once), from 10 ms up to 1 s, and logs at most one line per 10 s with how many failed.
pub struct AcceptBackoff {
    delay: Duration,
    failures: u64,
    last_log: Option<Instant>,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff { delay: Duration::from_millis(10), failures: 0, last_log: None }
    }
}

impl AcceptBackoff {
    /// Records a failure; answers how long to wait before accepting again.
    pub fn failed(&mut self, error: &std::io::Error) -> Duration {
        self.failures += 1;
        if self.last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            tracing::warn!(%error, failures = self.failures, "accept failed; backing off");
            self.last_log = Some(Instant::now());
            self.failures = 0;
        }
        let wait = self.delay;
        self.delay = (self.delay * 2).min(Duration::from_secs(1));
        wait
    }

    pub fn succeeded(&mut self) {
        self.delay = Duration::from_millis(10);
    }
}

/// Whether an accept error means the process or system is out of file descriptors.
pub fn out_of_descriptors(error: &std::io::Error) -> bool {
    // EMFILE (24): this process; ENFILE (23): the whole system.
    matches!(error.raw_os_error(), Some(24 | 23))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(AddrKey::of(a), AddrKey::of(b));
        assert_ne!(AddrKey::of(a), AddrKey::of(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(AddrKey::of(mapped), AddrKey::of("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn defaults_leave_a_reserve_below_the_descriptor_limit() {
        let limits = crate::config::Limits::default();
        let s = settings(&limits, Some(256));
        assert_eq!((s.max, s.per_address), (256 - 64 - 32, 40));
        let s = settings(&limits, Some(1024));
        assert_eq!(s.max, 1024 - 64 - 128);
        assert_eq!(settings(&limits, Some(1 << 20)).max, DEFAULT_CAP);
        assert_eq!(settings(&limits, None).max, DEFAULT_CAP);
        // A configured cap the descriptors cannot carry is lowered; one they can is kept.
        let wanted = crate::config::Limits { max_connections: Some(10_000), ..limits };
        assert_eq!(settings(&wanted, Some(1024)).max, 832);
        assert_eq!(settings(&wanted, Some(1 << 20)).max, 10_000);
    }
}
