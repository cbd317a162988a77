//! Tocsin: a rules-driven alert router and escalation daemon.
//!
//! Modules in the order an event flows through them:
//!
//! - [`config`]: the YAML file (or embedded default) → typed, validated [`config::Config`]. Only
//!   the shell (file, `${VAR}`, token and link-key files, located errors, the assembly); each
//!   section's raw type and checks are in a `config` submodule of the module it configures
//!   (`auth::config`, `policy::config`, `oncall::config`, `escalation::config`, …).
//! - [`http`]: the HTTP floor, one folder: `mod.rs` (router, serve loop, graceful stop),
//!   `app.rs` (the shared [`http::app::App`] state; handlers depend on it, the router on the
//!   handlers), `body.rs` (body reading, content type, JSON and query helpers, limits),
//!   `connections.rs` (connection cap, idle and body deadlines), `clients.rs` (client
//!   addresses, failure budgets), and one file per resource: `ingest.rs` (content type, body
//!   limit, rate limit, then normalize, score and journal), `incidents.rs` (events and
//!   incidents: read, acknowledge, resolve), `incident_actions.rs` (notes, roles, notices,
//!   reviews, action items; the review export), `declarations.rs` (`POST /api/v1/incidents`),
//!   `ack.rs` (`/ack/{token}`), `sms_inbound.rs` (Twilio replies), `admin.rs` (reload, clock,
//!   maintenance, notification queue, webhooks, audit verify, report, rotations/overrides).
//! - [`auth`]: bearer tokens and PagerDuty routing keys → the source or user presenting them.
//! - [`normalize`]: every wire format (Alertmanager, PagerDuty, reports, canonical) → [`event::Event`].
//! - [`declaration`]: a person's declaration of an incident with an impact assessment, parsed
//!   and checked → an event of kind `declaration` ([`declaration::normalize`] is pure).
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
//! - [`store`]: durable rows behind one reader and one writer trait per aggregate (events,
//!   incidents, outbox, timers, admin, audit), implemented on redb; the one module that knows
//!   the storage backend.
//! - [`audit`]: the tamper-evident hash chain over every timeline entry, and its verification.
//! - [`links`]: signed one-click acknowledge links (pure: mint and verify tokens);
//!   [`http::ack`] serves them (`GET`/`POST /ack/{token}`); [`http::sms_inbound`] takes
//!   `ACK 42` SMS replies from Twilio's signed incoming-message webhook.
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
//! Shared types: [`vocab`] (secrets, durations, permission and role names), [`event`] (the
//! canonical event), [`event_id`] (event ids: UUID v7 in consecutive blocks per request),
//! [`error`] (HTTP errors as JSON) and [`clock`] (the injectable "now" that timers and drills
//! run on).
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
pub mod vocab;
