//! Tocsin: a rules-driven alert router and escalation daemon.
//!
//! Modules in the order an event flows through them:
//!
//! - [`config`]: the YAML file (or embedded default) → typed, validated [`config::Config`].
//! - [`server`]: the HTTP listener: routes, graceful stop; [`connections`]: the connection cap,
//!   idle and body deadlines that keep silent or slow clients from using up descriptors.
//! - [`auth`]: bearer tokens and PagerDuty routing keys → the source or user presenting them;
//!   [`clients`]: who a request comes from (trusted proxies) and per-client failure budgets
//!   for the routes that need no credential.
//! - [`ingest`]: ingest handlers: content type, body limit, rate limit, then normalize and journal.
//! - [`normalize`]: every wire format (Alertmanager, PagerDuty, reports, canonical) → [`event::Event`].
//! - [`declaration`]: `POST /api/v1/incidents`: a person declares an incident with an impact
//!   assessment → an event of kind `declaration` ([`declaration::normalize`] is pure).
//! - [`rules`]: sandboxed Rhai scoring scripts → a triage [`rules::Decision`] per event, run on
//!   the rule threads ([`rules::threads`]) with a stack no script can exhaust; they may ask the
//!   [`catalog`] (services, owners, dependencies) who is downstream or upstream, and the time
//!   of day in a zone.
//! - [`journal`]: the single writer: drains waiting requests, applies events to incidents and
//!   people's actions, commits them as one transaction (group commit), then answers all.
//! - [`incident`]: the pure incident lifecycle (open, join, acknowledge, resolve, timeline).
//! - [`policy`]: people and escalation policies; which notifications an incident calls for.
//! - [`escalation`]: durable timers (escalation steps, notice deadlines, reminders) the writer
//!   fires, triage-driven role involvement, notice rules and maintenance windows.
//! - [`review`]: after-action reviews with owned action items, and their timeline export.
//! - [`oncall`]: rotations, overrides and incident-command roles: who is on call at a time.
//! - [`compose`]: incident + channel + audience → the rendered message, via [`templates`].
//! - [`outbox`]: notification rows and the retry policy (pure).
//! - [`delivery`]: claims due notifications, rate-limits and bundles, sends via [`notify`].
//! - [`store`]: durable rows behind one reader and one writer trait per aggregate (events,
//!   incidents, outbox, timers, admin, audit), implemented on redb; the one module that knows
//!   the storage backend.
//! - [`api`]: read and act for people: events, incidents, acknowledge/resolve, reload.
//! - [`incident_api`]: notes, roles, notices sent, reviews and action items; the review export.
//! - [`audit`]: the tamper-evident hash chain over every timeline entry, and its verification.
//! - [`links`]: signed one-click acknowledge links (pure: mint and verify tokens); [`ack`]
//!   serves them (`GET`/`POST /ack/{token}`); [`sms_inbound`] takes `ACK 42` SMS replies from
//!   Twilio's signed incoming-message webhook.
//! - [`templates`]: the pre-approved message templates (channel × audience × severity) → the
//!   subject, text, HTML and webhook body of one notification; never fails to render.
//! - [`runtime`]: the reloadable unit (credentials + compiled rules), swapped atomically.
//! - [`rule_tests`]: `tocsin test`, the offline rule test runner.
//! - [`dashboard`]: the web pages at `/` for people: sign-in sessions, overview, incidents,
//!   acknowledge/resolve/notes, the notification queue; [`dashboard::Redaction`] is where
//!   customer data is redacted (the API's view).
//! - [`drill`]: `tocsin drill`, scenarios run through the real pipeline on a simulated clock
//!   against an in-memory store; and live drills' routing ([`drill::live`]).
//! - [`redact`]: the redaction policy: personal data out of logs, named audiences'
//!   notifications, error bodies, and API answers for users without the `pii` permission.
//! - [`metrics`]: Prometheus counters and histograms served on `/metrics`, in the text format
//!   the scraper asks for.
//! - [`report`]: MTTD/MTTA/MTTR, recurrence, report volume, notifications and action items over
//!   a period (pure), for `tocsin report`, `GET /api/v1/report` and the dashboard.
//! - [`telemetry`]: structured logs through `tracing`.
//!
//! Shared types: [`event`] (the canonical event), [`event_id`] (event ids: UUID v7 in
//! consecutive blocks per request), [`error`] (HTTP errors as JSON) and [`clock`] (the
//! injectable "now" that timers and drills run on).
#![forbid(unsafe_code)]

pub mod ack;
pub mod api;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod clients;
pub mod clock;
pub mod compose;
pub mod config;
pub mod connections;
pub mod dashboard;
pub mod declaration;
pub mod delivery;
pub mod drill;
pub mod error;
pub mod escalation;
pub mod event;
pub mod event_id;
pub mod incident;
pub mod incident_api;
pub mod ingest;
pub mod journal;
pub mod links;
pub mod metrics;
pub mod normalize;
pub mod notify;
pub mod oncall;
pub mod outbox;
pub mod policy;
pub mod redact;
pub mod report;
pub mod review;
pub mod rule_tests;
pub mod rules;
pub mod runtime;
pub mod server;
pub mod sms_inbound;
pub mod store;
pub mod telemetry;
pub mod templates;
