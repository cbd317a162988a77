//! The state every route shares: one [`App`], built at start-up by [`crate::http::run`].
//!
//! Handlers depend on this module and the router ([`crate::http`]) depends on the handlers, so
//! the HTTP floor has no import loop.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;

use crate::clock::SharedClock;
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::runtime::{Reloader, Runtime};
use crate::store::Store;

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
