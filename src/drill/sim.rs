//! The simulation: the real journal writer (rules, incidents, escalation timers, notices,
//! templates) on a [`ManualClock`] against an in-memory store, with a delivery stand-in that
//! applies the real rate limiter and bundling and records what would have been sent instead
//! of sending it.
//!
//! Time moves in steps. At each instant — a scenario step, a timer's due time, or a rate-limited
//! notification's release — the clock is set there, the scenario's inputs for that instant go
//! through the journal (in file order), then due timers fire and due notifications are claimed
//! and "sent", repeatedly, until nothing more is due at that instant. So an escalation step due
//! at +5m is seen at +5m exactly, and an acknowledgement at +5m comes before the step due then.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arc_swap::ArcSwap;
use jiff::{SignedDuration, Timestamp};

use super::scenario::{IncidentRef, Input, Scenario};
use crate::clock::{Clock, ManualClock};
use crate::delivery::Limiter;
use crate::event::Format;
use crate::incident::{Incident, IncidentId};
use crate::journal::{Amendment, Journal, PersonAction};
use crate::metrics::Metrics;
use crate::normalize::{self, Context, Normalized};
use crate::notify::Channel;
use crate::outbox::{Attempt, Notification, Reason};
use crate::runtime::Runtime;
use crate::store::{IncidentReader, OutboxReader, Store, TimerReader};

/// One notification the pipeline would have delivered.
#[derive(Debug, Clone)]
pub struct Sent {
    pub at: SignedDuration,
    pub id: u64,
    pub incident: IncidentId,
    pub channel: Channel,
    /// The person's id, when it went to a person.
    pub person: Option<String>,
    pub address: String,
    pub audience: String,
    pub reason: Reason,
    pub subject: String,
    pub text: String,
    /// The template file that rendered its main part, or `built-in`.
    pub template: String,
    pub drill: bool,
    /// Sent as part of a bundle of this many (rate-limited messages for one recipient).
    pub bundle: Option<usize>,
    /// It waited for a rate limit: it was created earlier than it went.
    pub queued_at: SignedDuration,
}

impl Sent {
    pub fn recipient(&self) -> &str {
        self.person.as_deref().unwrap_or(&self.address)
    }

    pub fn describe(&self) -> String {
        format!(
            "{} to {} ({}, {}, incident #{})",
            self.channel.as_str(),
            self.recipient(),
            self.audience,
            self.reason.as_str(),
            self.incident
        )
    }
}

/// A line of the run's story: an input, or a note about it.
#[derive(Debug, Clone)]
pub struct Happening {
    pub at: SignedDuration,
    pub what: String,
}

#[derive(Debug, Default)]
pub struct Run {
    pub sent: Vec<Sent>,
    pub happenings: Vec<Happening>,
    /// Incidents as they were at the instants expectations look at (offset → id → incident).
    pub snapshots: BTreeMap<SignedDuration, Vec<Incident>>,
    /// Every incident at the end.
    pub incidents: Vec<Incident>,
    /// Where the run stopped.
    pub ended: SignedDuration,
}

/// Something went wrong that is not an expectation: a bad input, a store failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RunError(pub String);

const CLAIM_BATCH: usize = 256;
/// A runaway scenario (a reminder every second for a year) stops here.
const MAX_INSTANTS: usize = 200_000;

pub async fn run(scenario: &Scenario, runtime: Runtime) -> Result<Run, RunError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| RunError(format!("{what}: {e}"));
    let source = scenario
        .source
        .clone()
        .or_else(|| runtime.config.sources.first().map(|s| s.name.clone()))
        .unwrap_or_else(|| "drill".to_string());
    // The global per-second rate of a channel is a real-time throttle (at most a fraction of a
    // second's delay); the per-recipient windows are what shape who hears what when.
    let mut limits = runtime.config.notifications.rate_limits.clone();
    for l in limits.values_mut() {
        l.global_per_second = None;
    }
    let limiter = Limiter::new(&limits);
    let capacity = runtime.config.journal.queue_capacity;
    let max_batch = runtime.config.journal.max_batch_events;
    let runtime = Arc::new(ArcSwap::from_pointee(runtime));
    let store = Arc::new(Store::open_in_memory().map_err(|e| fail("in-memory store", &e))?);
    let clock = Arc::new(ManualClock::new(scenario.start));
    let (journal, writer) = crate::journal::spawn(
        store.clone(),
        runtime.clone(),
        Arc::new(Metrics::new()),
        capacity,
        max_batch,
        clock.clone(),
    )
    .map_err(|e| fail("journal", &e))?;

    let mut sim =
        Sim { scenario, source, store, journal, clock, runtime, limiter, run: Run::default() };
    let result = sim.drive().await;
    let Sim { journal, mut run, store, .. } = sim;
    drop(journal);
    // The writer exits once the last handle is gone and the queue is drained.
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    result?;
    run.incidents = all_incidents(&store)?;
    Ok(run)
}

fn all_incidents(store: &Store) -> Result<Vec<Incident>, RunError> {
    let mut all = store
        .incidents(None, usize::MAX, |_| true)
        .map_err(|e| RunError(format!("reading incidents: {e}")))?;
    all.sort_by_key(|i| i.id);
    Ok(all)
}

struct Sim<'a> {
    scenario: &'a Scenario,
    source: String,
    store: Arc<Store>,
    journal: Journal,
    clock: Arc<ManualClock>,
    runtime: Arc<ArcSwap<Runtime>>,
    limiter: Limiter,
    run: Run,
}

impl Sim<'_> {
    fn offset(&self) -> SignedDuration {
        self.clock.now().duration_since(self.scenario.start)
    }

    async fn drive(&mut self) -> Result<(), RunError> {
        let start = self.scenario.start;
        let until = start.saturating_add(self.scenario.until).unwrap_or(Timestamp::MAX);
        let mut pending: BTreeSet<SignedDuration> =
            self.scenario.steps.iter().map(|s| s.at).collect();
        pending.extend(self.scenario.incidents.iter().filter_map(|x| x.at));
        pending.insert(SignedDuration::ZERO);
        let mut next_step = 0;
        let mut instants = 0;
        loop {
            instants += 1;
            if instants > MAX_INSTANTS {
                return Err(RunError(format!(
                    "stopped at {}: more than {MAX_INSTANTS} instants to simulate before `until` ({}); shorten `until`",
                    super::scenario::show(self.offset()),
                    super::scenario::show(self.scenario.until)
                )));
            }
            let now = self.clock.now();
            let scripted =
                pending.iter().next().map(|d| start.saturating_add(*d).unwrap_or(Timestamp::MAX));
            let timer = self.store.next_timer_due().map_err(store_error)?;
            let due = self.store.next_due().map_err(store_error)?;
            let Some(next) = [scripted, timer, due].into_iter().flatten().min() else { break };
            if next > until {
                break;
            }
            // Never backwards; a due time that rounds below now is due now.
            let next = next.max(now);
            self.clock.set(next).map_err(RunError)?;
            let offset = self.offset();
            while pending.first().is_some_and(|d| *d <= offset) {
                pending.pop_first();
            }
            while next_step < self.scenario.steps.len()
                && self.scenario.steps[next_step].at <= offset
            {
                let step = &self.scenario.steps[next_step];
                next_step += 1;
                self.input(&step.input, &step.location).await?;
            }
            self.settle().await?;
            if self.scenario.incidents.iter().any(|x| x.at == Some(offset)) {
                let snapshot = all_incidents(&self.store)?;
                self.run.snapshots.insert(offset, snapshot);
            }
            // Anything still due at this very instant (a timer that came due while settling)
            // is picked up by the next round at the same time; make sure time moves on if not.
            let timer = self.store.next_timer_due().map_err(store_error)?;
            let due = self.store.next_due().map_err(store_error)?;
            if [timer, due].into_iter().flatten().any(|t| t <= next)
                && pending.first().is_none_or(|d| start.saturating_add(*d).unwrap_or(next) > next)
            {
                let bumped = next.saturating_add(SignedDuration::from_millis(1)).unwrap_or(next);
                self.clock.set(bumped).map_err(RunError)?;
            }
        }
        self.run.ended = self.scenario.until;
        Ok(())
    }

    /// Fires due timers and delivers due notifications until nothing more is due now.
    async fn settle(&mut self) -> Result<(), RunError> {
        for _ in 0..10_000 {
            self.journal.tick().await.map_err(journal_error)?;
            let claimed = self.journal.claim(CLAIM_BATCH).await.map_err(journal_error)?;
            let now = self.clock.now();
            let timer_due =
                self.store.next_timer_due().map_err(store_error)?.is_some_and(|t| t <= now);
            if claimed.is_empty() && !timer_due {
                return Ok(());
            }
            self.deliver(claimed).await?;
        }
        Err(RunError(format!(
            "at {} the pipeline kept producing due work; stopped",
            super::scenario::show(self.offset())
        )))
    }

    /// The delivery stage without the sending: group by recipient, hold to the per-recipient
    /// limits (what waited goes as one bundle), and report every message as delivered.
    async fn deliver(&mut self, claimed: Vec<Notification>) -> Result<(), RunError> {
        let offset = self.offset();
        let rt = self.runtime.load_full();
        let admitted = crate::delivery::admit(&self.limiter, claimed, self.clock.now());
        let mut outcomes = admitted.deferred;
        for (_, batch) in admitted.sends {
            let head = batch[0].id;
            let size = batch.len();
            for n in batch {
                let severity = self
                    .store
                    .incident(n.incident_id)
                    .map_err(store_error)?
                    .map(|i| i.decision.severity)
                    .unwrap_or_default();
                let delivery = crate::policy::Delivery {
                    channel: n.channel,
                    recipient: n.recipient.clone(),
                    audience: n.audience.clone(),
                };
                let language = crate::compose::language(&rt, &delivery);
                let template = rt
                    .templates
                    .main_template(n.channel, &n.audience, &severity, language)
                    .unwrap_or("built-in")
                    .to_string();
                self.run.sent.push(Sent {
                    at: offset,
                    id: n.id,
                    incident: n.incident_id,
                    channel: n.channel,
                    person: n.recipient.person.clone(),
                    address: n.recipient.address.clone(),
                    audience: n.audience.clone(),
                    reason: n.reason,
                    subject: n.message.subject.clone(),
                    text: n.message.text.clone(),
                    template,
                    drill: n.drill,
                    bundle: (size > 1).then_some(size),
                    queued_at: n.created_at.duration_since(self.scenario.start),
                });
                let attempt = Attempt::Delivered {
                    reference: Some("drill: not sent".into()),
                    bundled_into: (n.id != head).then_some(head),
                };
                outcomes.push((n.id, attempt));
            }
        }
        if !outcomes.is_empty() {
            self.journal.report(outcomes).await.map_err(journal_error)?;
        }
        Ok(())
    }

    async fn input(&mut self, input: &Input, location: &str) -> Result<(), RunError> {
        let offset = self.offset();
        let bad = |m: String| RunError(format!("{location}: {m}"));
        let mut what = input.describe();
        match input {
            Input::Event { format, body } => {
                let ctx = Context::new(&self.source, self.clock.now());
                let normalized = match format {
                    Format::AlertmanagerV2 => normalize::alertmanager_v2(body, ctx),
                    Format::AlertmanagerWebhook => normalize::alertmanager_webhook(body, ctx),
                    Format::Report => normalize::report(body, ctx),
                    Format::Canonical => normalize::canonical(body, ctx),
                    Format::Pagerduty => {
                        normalize::parse_pagerduty(body).and_then(|e| e.into_normalized(ctx))
                    }
                    Format::Declaration => {
                        let rt = self.runtime.load();
                        crate::declaration::parse(body, rt.triage()).map(|d| Normalized {
                            events: vec![crate::declaration::normalize(
                                &d,
                                "user:drill",
                                crate::event_id::new(),
                                ctx.now,
                            )],
                            rejected: Vec::new(),
                        })
                    }
                };
                let Normalized { events, rejected } = normalized.map_err(|e| {
                    bad(format!(
                        "the {} body is refused: {}",
                        format.as_str(),
                        describe_api_error(&e)
                    ))
                })?;
                if !rejected.is_empty() {
                    return Err(bad(format!(
                        "the {} body is refused: {}",
                        format.as_str(),
                        crate::error::summarize(&rejected)
                    )));
                }
                let summaries: Vec<String> = events
                    .iter()
                    .map(|e| {
                        format!(
                            "{} {}{}",
                            e.action.as_str(),
                            e.summary,
                            if e.drill { " [drill]" } else { "" }
                        )
                    })
                    .collect();
                let rt = self.runtime.load_full();
                let scored = crate::scoring::score(&rt, &self.journal.open, events)
                    .map_err(|e| bad(describe_api_error(&e)))?;
                self.journal.append(scored).await.map_err(journal_error)?;
                what = format!("{what}: {}", summaries.join("; "));
            }
            Input::Ack { incident, by } | Input::Resolve { incident, by } => {
                let id = self.resolve_ref(incident).map_err(bad)?;
                let action = if matches!(input, Input::Ack { .. }) {
                    PersonAction::Acknowledge
                } else {
                    PersonAction::Resolve
                };
                let done = self.journal.act(id, action, by.clone()).await.map_err(journal_error)?;
                if let Err(e) = done {
                    what = format!("{what} — refused: {e}");
                }
            }
            Input::Note { incident, by, text } => {
                let change = Amendment::Note { text: text.clone() };
                what = self.amend(incident, change, by, what).await.map_err(bad)?;
            }
            Input::Role { incident, by, role, person } => {
                let change = Amendment::Role { role: role.clone(), person: person.clone() };
                what = self.amend(incident, change, by, what).await.map_err(bad)?;
            }
            Input::NoticeSent { incident, by, notice, reference } => {
                let change = Amendment::NoticeSent {
                    index: *notice,
                    at: None,
                    reference: reference.clone(),
                };
                what = self.amend(incident, change, by, what).await.map_err(bad)?;
            }
        }
        self.run.happenings.push(Happening { at: offset, what });
        Ok(())
    }

    async fn amend(
        &self,
        incident: &IncidentRef,
        change: Amendment,
        by: &str,
        what: String,
    ) -> Result<String, String> {
        let id = self.resolve_ref(incident)?;
        match self.journal.amend(id, change, by.to_string()).await {
            Ok(Ok(_)) => Ok(what),
            Ok(Err(e)) => Ok(format!("{what} — refused: {e}")),
            Err(e) => Err(e.to_string()),
        }
    }

    fn resolve_ref(&self, r: &IncidentRef) -> Result<IncidentId, String> {
        let all = all_incidents(&self.store).map_err(|e| e.0)?;
        find(&all, r, &self.source).map(|i| i.id).ok_or_else(|| {
            format!(
                "no incident {r} at {} (incidents so far: {})",
                super::scenario::show(self.offset()),
                if all.is_empty() {
                    "none".to_string()
                } else {
                    all.iter()
                        .map(|i| format!("#{} key `{}`", i.id, i.dedup_key))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )
        })
    }
}

/// The incident a reference names: by id, or the newest with the dedup key (open ones first).
pub fn find<'a>(all: &'a [Incident], r: &IncidentRef, source: &str) -> Option<&'a Incident> {
    match r {
        IncidentRef::Id(id) => all.iter().find(|i| i.id == *id),
        IncidentRef::Key(k) => {
            let keyed = || all.iter().rev().filter(|i| i.dedup_key == *k);
            keyed()
                .find(|i| i.status.is_open() && i.source == source)
                .or_else(|| keyed().find(|i| i.source == source))
                .or_else(|| keyed().next())
        }
    }
}

fn describe_api_error(e: &crate::error::ApiError) -> String {
    if e.field_errors().is_empty() {
        e.to_string()
    } else {
        crate::error::summarize(e.field_errors())
    }
}

fn store_error(e: crate::store::StoreError) -> RunError {
    RunError(format!("store: {e}"))
}

fn journal_error(e: crate::journal::JournalError) -> RunError {
    RunError(format!("journal: {e}"))
}
