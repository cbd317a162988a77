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
//! - [`scoring`]: runs the rules on each event (on the rule threads) and encodes it for the
//!   journal; ingest, declarations and drills all score here.
//! - [`rules`]: sandboxed Rhai scoring scripts → a triage [`rules::Decision`] per event, run on
//!   the rule threads ([`rules::threads`]) with a stack no script can exhaust; they may ask the
//!   [`catalog`] (services, owners, dependencies) who is downstream or upstream, and the time
//!   of day in a zone.
//! - [`journal`]: the single writer, a transaction shell: drains waiting requests, opens one
//!   transaction (`journal::txn`), hands each command to the function that decides it
//!   (`journal::apply` dispatches), applies the [`effect`]s it returns, commits (group
//!   commit), then answers all.
//! - [`effect`]: what a decision asks the writer to do: timeline entries, timers scheduled or
//!   cancelled, notifications queued, counters.
//! - [`incident`]: the pure incident lifecycle (open, join, acknowledge, resolve, timeline),
//!   and the notes and role changes people make.
//! - [`policy`]: people and escalation policies; which policy an incident gets and which
//!   notifications it calls for.
//! - [`escalation`]: durable timers, triage-driven role involvement, notice rules and
//!   maintenance windows; as functions of (state, input, now) → effects:
//!   [`escalation::steps`] (first page, escalation steps, ack, resolve, window end, reminders),
//!   [`escalation::timers`] (firing each timer kind), [`escalation::notices`] (attaching,
//!   reminders, deadlines, marked sent, awareness), [`escalation::windows`] (holds re-checked).
//! - [`review`]: after-action reviews with owned action items (edits decided here), and their
//!   timeline export.
//! - [`oncall`]: rotations, overrides and incident-command roles: who is on call at a time.
//! - [`compose`]: incident + channel + audience → the rendered message, via [`templates`].
//! - [`outbox`]: notification rows, their transitions (claim, report, finish, retry/drop) and
//!   the retry policy (pure).
//! - [`delivery`]: claims due notifications, rate-limits and bundles, sends via [`notify`].
//! - [`store`]: the redb tables; the one module that knows the storage backend.
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

pub mod audit;
pub mod auth;
pub mod catalog;
pub mod clock;
pub mod compose;
pub mod config;
pub mod dashboard;
pub mod declaration;
pub mod delivery;
pub mod drill;
pub mod effect;
pub mod error;
pub mod escalation;
pub mod event;
pub mod event_id;
pub mod http;
pub mod incident;
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
pub mod scoring;
pub mod store;
pub mod telemetry;
pub mod templates;
