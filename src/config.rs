//! Configuration: one YAML file (or the embedded default), parsed into raw structs that reject
//! unknown fields, then validated into the typed [`Config`] with every error reported at once.
//!
//! First stage of start-up and of every reload: nothing else reads YAML.
//!
//! TYPE SKELETON — the loader and validation are being written; the typed shapes below are the
//! contract the rest of the crate builds against.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// A credential or other secret. `Debug` and `Display` print `***`; only [`Secret::expose`]
/// gives the value, so a secret cannot reach a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// What a source may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Machine alerts: `/api/v2/alerts`, `/v2/enqueue`, `/api/v1/alertmanager`.
    Alerts,
    /// Customer reports: `/api/v1/reports`.
    Reports,
    /// Canonical events: `/api/v1/events`.
    Events,
}

/// What a user credential may do on the read/act API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Responder,
    Admin,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// Sustained events per second.
    pub per_second: u32,
    /// Events that may arrive at once above the sustained rate.
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub name: String,
    /// `Authorization: Bearer` token for every ingest route but `/v2/enqueue`.
    pub token: Secret,
    /// PagerDuty `routing_key` that identifies this source on `/v2/enqueue`.
    pub routing_key: Option<Secret>,
    pub allow: BTreeSet<Permission>,
    pub rate_limit: RateLimit,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub name: String,
    pub token: Secret,
    pub roles: BTreeSet<Role>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest accepted request body; larger gets 413.
    pub max_body_bytes: usize,
    /// A client must finish sending its request headers within this time.
    pub header_read_timeout: Duration,
    /// A request must be read and answered within this time.
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Journal {
    /// Ingest requests that may wait for the writer; beyond that ingest answers 503.
    pub queue_capacity: usize,
    /// Most events committed in one transaction (one fsync).
    pub max_batch_events: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `host:port` to listen on.
    pub listen: String,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub limits: Limits,
    pub journal: Journal,
    pub sources: Vec<Source>,
    pub users: Vec<User>,
}
