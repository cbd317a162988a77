//! Tocsin: a rules-driven alert router and escalation daemon.
//!
//! Modules in the order an event flows through them:
//!
//! - [`config`]: the YAML file (or embedded default) → typed, validated [`config::Config`].
//! - [`server`]: the HTTP listener: connections, header-read timeout, routes, graceful stop.
//! - [`auth`]: bearer tokens and PagerDuty routing keys → the source or user presenting them.
//! - [`ingest`]: ingest handlers: content type, body limit, rate limit, then normalize and journal.
//! - [`normalize`]: every wire format (Alertmanager, PagerDuty, reports, canonical) → [`event::Event`].
//! - [`journal`]: the single writer: drains waiting ingest requests, commits them as one
//!   transaction (group commit), then answers all of them.
//! - [`store`]: the redb tables; the one module that knows the storage backend.
//! - [`metrics`]: Prometheus counters and histograms served on `/metrics`.
//! - [`telemetry`]: structured logs through `tracing`.
//!
//! Shared types: [`event`] (the canonical event) and [`error`] (HTTP errors as JSON).
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod error;
pub mod event;
pub mod ingest;
pub mod journal;
pub mod metrics;
pub mod normalize;
pub mod server;
pub mod store;
pub mod telemetry;
