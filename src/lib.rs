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
//!
//! ## Layers
//!
//! The same modules as a layering, bottom first: a module uses only modules on an earlier line,
//! or earlier on its own line, or one named under "Exceptions" below with its reason.
//! `tests/layering.rs` checks every `crate::` path in `src/` against this list, in CI.
//!
//! 1. [`vocab`], [`error`], [`clock`], [`event_id`], [`catalog`]: shared words, no domain.
//! 2. [`config`], [`auth`]: the config shell and who may do what.
//! 3. [`event`], [`rules`], [`declaration`], [`normalize`]: what arrives and how it is scored.
//! 4. [`incident`], [`effect`], [`audit`], [`outbox`], [`links`], [`notify`], [`redact`],
//!    [`templates`]: incidents, their timeline and what may be sent.
//! 5. [`policy`], [`oncall`], [`review`], [`escalation`], [`compose`]: who is told what, when.
//! 6. [`runtime`], [`metrics`], [`store`]: the reloadable snapshot, counters, durable rows.
//! 7. [`journal`], [`scoring`], [`delivery`], [`report`], [`drill`]: the pipeline's stages.
//! 8. [`dashboard`], [`http`], [`telemetry`], [`rule_tests`]: the edges people and tools touch.
//!
//! ### Exceptions
//!
//! Each is a known knot, named so that no new one can appear unnoticed; untying one means
//! moving the shared part down and deleting its line here.
//!
//! - exception: `config` → `auth`, `dashboard`, `delivery`, `drill`, `escalation`, `http`, `journal`, `links`, `notify`, `oncall`, `policy`, `redact`, `review`, `rules`: the assembly (`config::assemble`) calls each domain's own section check, while those checks use the shell (`Validator`, located errors) from this module; the assembly is to move to a module of its own at the top.
//! - exception: `event` → `rules`: a declared event carries its assessed data sensitivity as `rules::Sensitivity`, a word that belongs in `vocab`.
//! - exception: `incident` → `effect`, `escalation`, `policy`, `review`: an incident holds its escalation state, the policy chosen and its review, and its lifecycle returns effects.
//! - exception: `effect` → `escalation`, `outbox`, `policy`: an effect names the timer, notification row or delivery it asks for, in the types of the modules that decide them.
//! - exception: `outbox` → `notify`: a notification row names its channel and its send errors (`notify::Channel`, `SendError`).
//! - exception: `notify` → `delivery`, `redact`: the notifications section's check includes delivery's retry and rate-limit sections, and channels redact what they send.
//! - exception: `links` → `runtime`: the acknowledge-link key is read from the runtime snapshot.
//! - exception: `templates` → `escalation`: a message names the escalation step and notice it is about.
//! - exception: `policy` → `escalation`, `oncall`: a policy's steps are escalation steps that notify on-call roles.
//! - exception: `review` → `escalation`: an action item's reminders are escalation timers.
//! - exception: `escalation` → `compose`, `drill`, `runtime`: a step renders its drafts, routes live drills, and decides from the runtime snapshot.
//! - exception: `compose` → `runtime`: composing reads the runtime snapshot (templates, redactor, config) it renders with.
//! - exception: `rules` → `declaration`, `redact`: rules read a declaration's assessment, and the redactor masks what they print.
//! - exception: `runtime` → `delivery`, `metrics`: the snapshot holds the channels built for delivery and counts its reloads.
//! - exception: `metrics` → `journal`: people's actions are counted by `journal::PersonAction`.
//! - exception: `journal` → `scoring`: the writer's unit tests score their events as ingest does.
//! - exception: `dashboard` → `http`: the pages are served by the router and share its `App` state and client addresses.
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
