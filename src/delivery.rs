//! Delivery: claims due notifications from the outbox, holds them to the rate limits, bundles
//! what waits for the same recipient, sends through the channels, and reports every outcome
//! back to the journal writer (which applies the retry policy and writes the timeline).
//!
//! Last stage of the flow. Nothing here writes to the store: a claim is a lease granted by the
//! writer, and an outcome is a command to it, so a crash at any point leaves every
//! notification either delivered or due again when its lease ends.

pub mod config;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::compose;
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::notify::config::Notifications;
use crate::notify::{Channel, Message, Receipt, SendError};
use crate::outbox::{Attempt, Notification, NotificationId, State};
use crate::runtime::Runtime;
use crate::store::OutboxReader;
use crate::store::Store;
use config::ChannelLimits;

/// How many due notifications one claim takes.
const CLAIM_BATCH: usize = 256;
/// How often the loop looks for due retries even when nothing woke it.
const POLL: Duration = Duration::from_millis(500);
/// How often the queue-depth metrics are recomputed: a scan of every pending row, so not on
/// every tick (100,000 pending rows take a few hundred milliseconds to read).
const STATS_EVERY: Duration = Duration::from_secs(15);

/// Per-recipient limits over several windows at once ("1 a minute and 5 a quarter hour").
///
/// A sliding log of send times per (channel, recipient), not governor's GCRA: GCRA cannot test
/// several windows without spending a cell in the ones that pass, and cannot be rebuilt from
/// the store after a restart. This can: [`Limiter::replay`] feeds it the recent deliveries.
/// Keys idle for longer than their longest window are forgotten by [`Limiter::forget_idle`].
/// The global per-channel rate uses governor's direct limiter.
pub struct Limiter {
    /// std Mutex, not tokio's: held for a few comparisons, never across an await.
    sent: Mutex<HashMap<(Channel, String), VecDeque<Timestamp>>>,
    limits: BTreeMap<Channel, ChannelLimits>,
    global: BTreeMap<Channel, DefaultDirectRateLimiter>,
}

impl Limiter {
    pub fn new(limits: &BTreeMap<Channel, ChannelLimits>) -> Limiter {
        let global = limits
            .iter()
            .filter_map(|(c, l)| {
                let rate = NonZeroU32::new(l.global_per_second?)?;
                Some((*c, RateLimiter::direct(Quota::per_second(rate))))
            })
            .collect();
        Limiter { sent: Mutex::new(HashMap::new()), limits: limits.clone(), global }
    }

    /// `None` if a message may go to `key` now (and records it), else when it may.
    pub fn admit(&self, key: &(Channel, String), now: Timestamp) -> Option<Timestamp> {
        let windows = self.limits.get(&key.0).map(|l| l.per_recipient.as_slice()).unwrap_or(&[]);
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        let log = sent.entry(key.clone()).or_default();
        let mut until: Option<Timestamp> = None;
        for w in windows {
            let per = SignedDuration::try_from(w.per).unwrap_or(SignedDuration::MAX);
            let start = now.checked_sub(per).unwrap_or(Timestamp::MIN);
            let inside: Vec<&Timestamp> = log.iter().filter(|t| **t > start).collect();
            if inside.len() >= w.count as usize {
                // Free again when the oldest send that still counts leaves the window.
                let idx = inside.len() - w.count as usize;
                let free = inside[idx].saturating_add(per).unwrap_or(Timestamp::MAX);
                until = Some(until.map_or(free, |u| u.max(free)));
            }
        }
        if until.is_some() {
            return until;
        }
        if let Some(g) = self.global.get(&key.0)
            && g.check().is_err()
        {
            return Some(now.saturating_add(SignedDuration::from_millis(100)).unwrap_or(now));
        }
        log.push_back(now);
        let longest = windows.iter().map(|w| w.per).max().unwrap_or_default();
        let horizon = now
            .checked_sub(SignedDuration::try_from(longest).unwrap_or_default())
            .unwrap_or(Timestamp::MIN);
        while log.front().is_some_and(|t| *t <= horizon) {
            log.pop_front();
        }
        None
    }

    /// Rebuilds the limits from deliveries recorded in the store (after a restart).
    pub fn replay(&self, delivered: impl IntoIterator<Item = ((Channel, String), Timestamp)>) {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        for (key, at) in delivered {
            sent.entry(key).or_default().push_back(at);
        }
        for log in sent.values_mut() {
            log.make_contiguous().sort();
        }
    }

    /// Drops keys with nothing inside their longest window, so memory follows activity.
    pub fn forget_idle(&self, now: Timestamp) {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.retain(|key, log| {
            let longest = self
                .limits
                .get(&key.0)
                .and_then(|l| l.per_recipient.iter().map(|w| w.per).max())
                .unwrap_or_default();
            let horizon = now
                .checked_sub(SignedDuration::try_from(longest).unwrap_or_default())
                .unwrap_or(Timestamp::MIN);
            log.back().is_some_and(|t| *t > horizon)
        });
    }

    pub fn keys(&self) -> usize {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The configured channels, built from the config (and rebuilt on reload).
pub struct Channels {
    pub log: Option<crate::notify::logfile::LogFile>,
    pub email: Option<crate::notify::email::Email>,
    pub sms: Option<crate::notify::sms::Sms>,
    pub webhooks: HashMap<String, crate::notify::webhook::Webhook>,
}

impl Channels {
    /// Builds every configured channel (connection pools, HTTP clients), reporting every
    /// problem at once. Must run inside the Tokio runtime (the SMTP pool spawns a task).
    pub fn build(config: &Notifications, dry_run: bool) -> Result<Channels, Vec<String>> {
        let mut errors = Vec::new();
        let log = match &config.log_path {
            Some(_) if dry_run => None,
            Some(path) => {
                let cfg = crate::notify::LogConfig { path: path.clone() };
                crate::notify::LogFile::open(&cfg)
                    .map_err(|e| errors.push(format!("notifications.log: {e}")))
                    .ok()
            }
            None => None,
        };
        let email = config
            .email
            .clone()
            .map(crate::notify::Email::new)
            .transpose()
            .map_err(|e| errors.push(format!("notifications.email: {e}")))
            .ok()
            .flatten();
        let sms = config
            .sms
            .clone()
            .map(crate::notify::Sms::new)
            .transpose()
            .map_err(|e| errors.push(format!("notifications.sms: {e}")))
            .ok()
            .flatten();
        let mut webhooks = HashMap::new();
        for w in &config.webhooks {
            match crate::notify::Webhook::new(w.clone()) {
                Ok(hook) => {
                    webhooks.insert(w.name.clone(), hook);
                }
                Err(e) => errors.push(format!("notifications.webhooks `{}`: {e}", w.name)),
            }
        }
        if errors.is_empty() { Ok(Channels { log, email, sms, webhooks }) } else { Err(errors) }
    }

    /// `now`: the daemon's clock, for what records a time of its own (the log channel's line).
    async fn send(
        &self,
        channel: Channel,
        address: &str,
        msg: &Message,
        now: Timestamp,
    ) -> Result<Receipt, SendError> {
        let missing = |what: &str| SendError::Permanent {
            reason: format!("no {what} channel is configured"),
        };
        match channel {
            Channel::Log => {
                self.log.as_ref().ok_or_else(|| missing("log"))?.send(address, msg, now)
            }
            Channel::Email => {
                self.email.as_ref().ok_or_else(|| missing("email"))?.send(address, msg).await
            }
            Channel::Sms => {
                self.sms.as_ref().ok_or_else(|| missing("sms"))?.send(address, msg).await
            }
            Channel::Webhook => match self.webhooks.get(address) {
                Some(w) => w.send(msg).await,
                None => Err(SendError::Permanent {
                    reason: format!("no webhook named `{address}` is configured"),
                }),
            },
        }
    }
}

/// Runs until `stop`: claim, limit, bundle, send, report.
pub async fn run(
    journal: Journal,
    store: Arc<Store>,
    runtime: Arc<ArcSwap<Runtime>>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let config: Notifications = runtime.load().config.notifications.clone();
    let limiter = Arc::new(Limiter::new(&config.rate_limits));
    limiter.replay(recent_deliveries(&store, &config, journal.clock().now()));
    let workers = Arc::new(Semaphore::new(config.workers));
    let mut tick = tokio::time::interval(POLL);
    // The first refresh runs at the first tick.
    let mut stats_at = tokio::time::Instant::now()
        .checked_sub(STATS_EVERY)
        .unwrap_or_else(tokio::time::Instant::now);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = journal.wake.notified() => {}
            _ = tick.tick() => {}
        }
        if stats_at.elapsed() > STATS_EVERY {
            stats_at = tokio::time::Instant::now();
            refresh_stats(&store, &metrics).await;
            limiter.forget_idle(journal.clock().now());
        }
        // A backlog keeps this loop busy for as long as it lasts (every send waits for a
        // worker): look at `stop` before each claim, or shutdown waits for the whole queue.
        while !stop.is_cancelled() {
            let claimed = match journal.claim(CLAIM_BATCH).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "claim failed; retrying at the next tick");
                    break;
                }
            };
            let more = claimed.len() == CLAIM_BATCH;
            dispatch(&journal, &limiter, &workers, &runtime, claimed, &stop).await;
            if !more {
                break;
            }
        }
    }
    // Let in-flight sends finish and report (their leases would cover a crash anyway).
    let _ =
        tokio::time::timeout(Duration::from_secs(10), workers.acquire_many(config.workers as u32))
            .await;
}

/// What the limits let go now: messages to send (each a single notification, or a bundle of
/// those that waited, with its recipient key) and the notifications that must wait, with until
/// when.
#[derive(Debug, Default)]
pub struct Admitted {
    pub sends: Vec<((Channel, String), Vec<Notification>)>,
    pub deferred: Vec<(NotificationId, Attempt)>,
}

/// Groups claimed notifications by recipient and channel and holds them to `limiter` at `now`:
/// what waited for the limit goes as one bundle; fresh messages go one by one, each admitted
/// on its own, until the limit says wait — and everything after that waits too.
pub fn admit(limiter: &Limiter, claimed: Vec<Notification>, now: Timestamp) -> Admitted {
    let mut groups: BTreeMap<(Channel, String), Vec<Notification>> = BTreeMap::new();
    for n in claimed {
        groups.entry(n.limit_key()).or_default().push(n);
    }
    let mut admitted = Admitted::default();
    for (key, group) in groups {
        let (waited, fresh): (Vec<Notification>, Vec<Notification>) =
            group.into_iter().partition(|n| n.waited);
        let mut sends: Vec<Vec<Notification>> = Vec::new();
        if !waited.is_empty() {
            sends.push(waited);
        }
        sends.extend(fresh.into_iter().map(|n| vec![n]));
        let mut blocked: Option<Timestamp> = None;
        for batch in sends {
            if blocked.is_none() {
                blocked = limiter.admit(&key, now);
            }
            match blocked {
                Some(until) => admitted
                    .deferred
                    .extend(batch.into_iter().map(|n| (n.id, Attempt::Deferred { until }))),
                None => admitted.sends.push((key.clone(), batch)),
            }
        }
    }
    admitted
}

/// Sends what the limits admit, each message on a worker permit; records what must wait.
async fn dispatch(
    journal: &Journal,
    limiter: &Arc<Limiter>,
    workers: &Arc<Semaphore>,
    runtime: &Arc<ArcSwap<Runtime>>,
    claimed: Vec<Notification>,
    stop: &CancellationToken,
) {
    let Admitted { sends, deferred } = admit(limiter, claimed, journal.clock().now());
    for (key, batch) in sends {
        // Stopping: what is left of this claim stays leased and is due again when the lease
        // ends (after a restart), as after a crash.
        let permit = tokio::select! {
            permit = workers.clone().acquire_owned() => permit,
            () = stop.cancelled() => return,
        };
        let Ok(permit) = permit else { return };
        spawn_send(journal.clone(), runtime, key, batch, permit);
    }
    if !deferred.is_empty()
        && let Err(e) = journal.report(deferred).await
    {
        tracing::warn!(error = %e, "could not record rate-limit waits");
    }
}

/// Sends one message (a single notification, or a bundle of those that waited) on a worker
/// permit, and reports the outcome for each notification in it.
fn spawn_send(
    journal: Journal,
    runtime: &Arc<ArcSwap<Runtime>>,
    key: (Channel, String),
    group: Vec<Notification>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let rt = runtime.load();
    let channels = rt.channels.clone();
    let timeout = rt.config.notifications.delivery.attempt_timeout;
    tokio::spawn(async move {
        let message = compose::bundle(&group);
        let head = group[0].id;
        let now = journal.clock().now();
        let outcome = match tokio::time::timeout(
            timeout,
            channels.send(key.0, &key.1, &message, now),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(SendError::Retryable {
                reason: format!("no answer within {timeout:?}"),
                retry_after: None,
            }),
        };
        let outcomes = group
            .iter()
            .map(|n| {
                let attempt = match &outcome {
                    Ok(r) => Attempt::Delivered {
                        reference: r.reference.clone(),
                        bundled_into: (n.id != head).then_some(head),
                    },
                    Err(e) => Attempt::Failed(e.clone()),
                };
                (n.id, attempt)
            })
            .collect();
        if let Err(e) = journal.report(outcomes).await {
            // The lease will run out and the notification be due again: at-least-once.
            tracing::warn!(error = %e, "could not record a delivery outcome; it will be retried");
        }
        drop(permit);
    });
}

/// Deliveries inside the longest rate-limit window, so limits hold across restarts.
fn recent_deliveries(
    store: &Store,
    config: &Notifications,
    now: Timestamp,
) -> Vec<((Channel, String), Timestamp)> {
    let longest = config
        .rate_limits
        .values()
        .flat_map(|l| l.per_recipient.iter().map(|w| w.per))
        .max()
        .unwrap_or_default();
    let horizon = now
        .checked_sub(SignedDuration::try_from(longest).unwrap_or_default())
        .unwrap_or(Timestamp::MIN);
    // A notification delivered inside the horizon was created at most `max_age` before it
    // (plus any operator requeue, which is rare enough to ignore here).
    let oldest_created = horizon
        .checked_sub(SignedDuration::try_from(config.delivery.max_age).unwrap_or_default())
        .unwrap_or(Timestamp::MIN);
    let mut out = Vec::new();
    match store.recent_notifications(|n| n.created_at >= oldest_created) {
        Ok(list) => {
            for n in list {
                if n.state == State::Delivered
                    && let Some(at) = n.delivered_at.filter(|d| *d > horizon)
                {
                    out.push((n.limit_key(), at));
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read recent deliveries; rate limits start empty");
        }
    }
    out
}

async fn refresh_stats(store: &Arc<Store>, metrics: &Arc<Metrics>) {
    let store = store.clone();
    let Ok(Ok(stats)) = tokio::task::spawn_blocking(move || store.queue_stats()).await else {
        return;
    };
    for channel in [Channel::Email, Channel::Sms, Channel::Webhook, Channel::Log] {
        let depth = stats.pending.get(channel.as_str()).copied().unwrap_or(0);
        metrics
            .queue_depth
            .get_or_create(&crate::metrics::ChannelLabels { channel: channel.as_str().into() })
            .set(depth as i64);
    }
    let age = stats.oldest.map(|o| Timestamp::now().duration_since(o).as_secs()).unwrap_or(0);
    metrics.queue_oldest_seconds.set(age.max(0));
    metrics.notice_deadlines_pending.set(i64::try_from(stats.notice_deadlines).unwrap_or(i64::MAX));
}

#[cfg(test)]
mod tests {
    use super::config::Window;
    use super::*;

    fn limits(windows: &[(u32, u64)]) -> BTreeMap<Channel, ChannelLimits> {
        let per_recipient = windows
            .iter()
            .map(|(count, secs)| Window { count: *count, per: Duration::from_secs(*secs) })
            .collect();
        BTreeMap::from([(Channel::Sms, ChannelLimits { per_recipient, global_per_second: None })])
    }

    fn key() -> (Channel, String) {
        (Channel::Sms, "+15550100".to_string())
    }

    #[test]
    fn every_window_must_allow_and_the_wait_ends_when_the_oldest_send_leaves_it() {
        let limiter = Limiter::new(&limits(&[(1, 60), (3, 900)]));
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(limiter.admit(&key(), t0), None);
        // One a minute: the next is refused until the first send is a minute old.
        let wait = limiter.admit(&key(), t0 + SignedDuration::from_secs(10)).expect("limited");
        assert_eq!(wait, t0 + SignedDuration::from_secs(60));
        assert_eq!(limiter.admit(&key(), t0 + SignedDuration::from_secs(61)), None);
        assert_eq!(limiter.admit(&key(), t0 + SignedDuration::from_secs(122)), None);
        // Three per quarter hour: the fourth waits for the first to leave that window.
        let wait = limiter.admit(&key(), t0 + SignedDuration::from_secs(200)).expect("limited");
        assert_eq!(wait, t0 + SignedDuration::from_secs(900));
        // Another recipient is not affected.
        assert_eq!(
            limiter.admit(&(Channel::Sms, "+15550199".into()), t0 + SignedDuration::from_secs(200)),
            None
        );
    }

    #[test]
    fn limits_are_rebuilt_from_recorded_deliveries_after_a_restart() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let limiter = Limiter::new(&limits(&[(1, 60)]));
        limiter.replay([(key(), t0)]);
        assert_eq!(
            limiter.admit(&key(), t0 + SignedDuration::from_secs(30)),
            Some(t0 + SignedDuration::from_secs(60))
        );
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let limiter = Limiter::new(&limits(&[(1, 60)]));
        assert_eq!(limiter.admit(&key(), t0), None);
        limiter.forget_idle(t0 + SignedDuration::from_secs(30));
        assert_eq!(limiter.keys(), 1);
        limiter.forget_idle(t0 + SignedDuration::from_secs(61));
        assert_eq!(limiter.keys(), 0);
    }
}
