//! The durable outbox: one row per notification, written in the same transaction as the
//! incident change that caused it, and the retry policy that decides what happens after a
//! failed attempt.
//!
//! Sits between the journal writer (which creates rows and records outcomes) and the
//! delivery workers (which claim due rows with a lease and send them). The policy here is pure
//! — `(attempt, error, clock) → next step` — kept apart from the loop that applies it.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::incident::IncidentId;
use crate::notify::{Channel, SendError};

pub type NotificationId = u64;

/// Why a notification exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The incident opened.
    New,
    /// The incident was resolved; whoever was told it opened hears that it closed.
    Resolved,
    /// A later escalation step: nobody acknowledged in time.
    Escalated,
    /// A reminder: a notice deadline, a status update, an overdue action item, or a missed
    /// deadline escalating to the incident lead. The row's text says which.
    Reminder,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::New => "new",
            Reason::Resolved => "resolved",
            Reason::Escalated => "escalated",
            Reason::Reminder => "reminder",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for its first attempt (or for its rate limit).
    Queued,
    /// Claimed by a worker until the lease ends; if the process dies, it is due again then.
    Sending,
    /// An attempt failed in a way worth retrying; due again at `next_attempt_at`.
    Retrying,
    Delivered,
    /// Gave up, with `last_error` saying why. `tocsin queue retry` revives it.
    Dead,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Sending => "sending",
            State::Retrying => "retrying",
            State::Delivered => "delivered",
            State::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        [State::Queued, State::Sending, State::Retrying, State::Delivered, State::Dead]
            .into_iter()
            .find(|st| st.as_str() == s)
    }

    /// Still owed a delivery.
    pub fn is_pending(self) -> bool {
        matches!(self, State::Queued | State::Sending | State::Retrying)
    }
}

/// Where a notification goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Recipient {
    /// The person's id from the config, when it is a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// The email address, phone number, webhook name, or log path.
    pub address: String,
}

/// The message as rendered when the notification was created; what is sent unless it is
/// bundled with others for the same recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub id: NotificationId,
    /// Stable across every attempt and every retry of a dead letter: receivers drop duplicates
    /// by it (`webhook-id`, email `Message-ID`, the SMS gateway reference).
    pub idempotency_id: String,
    pub incident_id: IncidentId,
    pub reason: Reason,
    pub channel: Channel,
    pub recipient: Recipient,
    /// Whose templates rendered it (responder, legal, communications, executive, customer).
    pub audience: String,
    pub message: Rendered,
    pub state: State,
    /// Attempts started so far (a rate-limit wait is not an attempt).
    pub attempts: u32,
    pub created_at: Timestamp,
    /// When it is next due (queued/retrying), or when the current lease ends (sending).
    pub due_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The receiver's reference for the delivered message (gateway id, SMTP answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Timestamp>,
    /// Set when this one was sent as part of a bundle headed by another notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundled_into: Option<NotificationId>,
    /// A drill: labelled as such wherever it is shown.
    #[serde(default)]
    pub drill: bool,
    /// It waited for a rate limit: when it may go, it goes bundled with whatever else waited
    /// for the same recipient.
    #[serde(default)]
    pub waited: bool,
    /// When an operator last revived it: attempts and age count afresh from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requeued_at: Option<Timestamp>,
}

impl Notification {
    /// The key that rate limits and bundling share.
    pub fn limit_key(&self) -> (Channel, String) {
        (self.channel, self.recipient.address.clone())
    }
}

/// What happened when a worker took a claimed notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered {
        reference: Option<String>,
        bundled_into: Option<NotificationId>,
    },
    Failed(SendError),
    /// The recipient's rate limit says wait: not an attempt; due again at `until`.
    Deferred {
        until: Timestamp,
    },
}

/// The retry policy's settings (config `notifications.delivery`).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts before a notification is dead-lettered.
    pub max_attempts: u32,
    /// Age after which it is dead-lettered even with attempts left.
    pub max_age: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A receiver's `Retry-After` is honoured up to this.
    pub retry_after_cap: Duration,
    /// How long one attempt may take before it is abandoned.
    pub attempt_timeout: Duration,
    /// How long a claimed notification stays claimed; past it, it is due again.
    pub lease: Duration,
    /// Retry an SMS whose outcome is unknown (the gateway may have sent it). Off by default:
    /// a second text message costs money and wakes someone twice.
    pub retry_unknown_sms: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            max_age: Duration::from_secs(24 * 3600),
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(600),
            retry_after_cap: Duration::from_secs(3600),
            attempt_timeout: Duration::from_secs(10),
            lease: Duration::from_secs(60),
            retry_unknown_sms: false,
        }
    }
}

/// What to do after an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Retry {
        at: Timestamp,
        reason: String,
    },
    Dead {
        reason: String,
    },
    /// The webhook endpoint is gone (410): dead-letter, and disable the endpoint.
    DisableEndpoint {
        reason: String,
    },
}

impl RetryPolicy {
    /// Exponential backoff with full jitter: attempt 1 waits up to `initial`, attempt n up to
    /// `initial·2^(n-1)`, never more than `max_backoff`. `jitter` is in [0, 1).
    pub fn backoff(&self, attempts: u32, jitter: f64) -> Duration {
        let exp = self.initial_backoff.as_secs_f64()
            * 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
        let ceiling = exp.min(self.max_backoff.as_secs_f64());
        // Half fixed, half random: never retry immediately, and spread a thundering herd.
        Duration::from_secs_f64(ceiling * (0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
    }

    /// The policy: which failures are retried, when, and when to give up.
    pub fn after_failure(
        &self,
        n: &Notification,
        error: &SendError,
        now: Timestamp,
        jitter: f64,
    ) -> Next {
        let give_up = |reason: String| Next::Dead { reason };
        let (reason, retry_after) = match error {
            SendError::Permanent { reason } => {
                return give_up(format!("permanent failure: {reason}"));
            }
            SendError::Gone { reason } => {
                return Next::DisableEndpoint { reason: format!("endpoint gone: {reason}") };
            }
            SendError::Unknown { reason }
                if n.channel == Channel::Sms && !self.retry_unknown_sms =>
            {
                return give_up(format!(
                    "outcome unknown, the gateway may have sent it; not retried (delivery.retry_unknown_sms is off): {reason}"
                ));
            }
            SendError::Unknown { reason } => (reason.clone(), None),
            SendError::Retryable { reason, retry_after } => (reason.clone(), *retry_after),
        };
        if n.attempts >= self.max_attempts {
            return give_up(format!("gave up after {} attempts; last error: {reason}", n.attempts));
        }
        let wait = match retry_after {
            Some(ra) => ra.min(self.retry_after_cap),
            None => self.backoff(n.attempts, jitter),
        };
        let at = now
            .saturating_add(SignedDuration::try_from(wait).unwrap_or(SignedDuration::MAX))
            .unwrap_or(now);
        let age_limit = n
            .requeued_at
            .unwrap_or(n.created_at)
            .saturating_add(SignedDuration::try_from(self.max_age).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX);
        if at > age_limit {
            return give_up(format!(
                "gave up: the next attempt would be past the maximum age of {:?}; last error: {reason}",
                self.max_age
            ));
        }
        Next::Retry { at, reason }
    }
}

/// What an operator can do to one notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOp {
    /// Make a dead (or delivered) notification due now again, keeping its idempotency id.
    Retry,
    /// Dead-letter a pending notification with the operator as the reason.
    Drop,
}

/// What a transition of one row leaves for the writer besides writing the row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transition {
    /// A line for the incident's timeline.
    pub line: Option<String>,
    /// The row ended in this state (delivered or dead): counted by outcome.
    pub ended: Option<State>,
    /// An attempt was made, with this outcome label: counted.
    pub attempt: Option<&'static str>,
    /// The row is due (again): wake the delivery workers after the commit.
    pub due: bool,
    /// Disable this webhook endpoint (it answered 410), with the reason.
    pub disable: Option<String>,
}

impl Notification {
    /// `email to ana`: for timeline entries.
    pub fn describe(&self) -> String {
        let who = self.recipient.person.as_deref().unwrap_or(&self.recipient.address);
        format!("{} to {who}", self.channel.as_str())
    }
}

/// A worker claims a due row: leased until `now + lease`. A row whose lease ran out mid-send
/// counts that as an attempt, and an SMS is not sent twice (unless configured); a webhook
/// endpoint that is disabled (`disabled`: why) dead-letters it. `None`: claimed, hand it out;
/// `Some`: it ended instead.
pub fn claim(
    n: &mut Notification,
    policy: &RetryPolicy,
    disabled: Option<String>,
    now: Timestamp,
) -> Option<Transition> {
    if n.state == State::Sending {
        // Its lease ran out: the process died or the worker hung mid-send. It may have gone
        // out, so this counts as an attempt.
        n.attempts += 1;
        if n.channel == Channel::Sms && !policy.retry_unknown_sms {
            let reason = "the lease ran out while sending (restart or hang); the gateway may have sent it, so it is not repeated (notifications.delivery.retry_unknown_sms is off)";
            return Some(finish(n, State::Dead, Some(reason.to_string()), now));
        }
    }
    if n.channel == Channel::Webhook
        && let Some(why) = disabled
    {
        return Some(finish(
            n,
            State::Dead,
            Some(format!("webhook endpoint disabled: {why}")),
            now,
        ));
    }
    let lease = SignedDuration::try_from(policy.lease).unwrap_or(SignedDuration::from_secs(60));
    n.state = State::Sending;
    n.due_at = now.saturating_add(lease).unwrap_or(now);
    None
}

/// Ends a row (delivered or dead) and says so for its incident's timeline.
pub fn finish(
    n: &mut Notification,
    state: State,
    error: Option<String>,
    now: Timestamp,
) -> Transition {
    n.state = state;
    n.due_at = now;
    let line = match (&state, &error) {
        (State::Delivered, _) => format!(
            "notification #{} delivered: {} (attempt {}{})",
            n.id,
            n.describe(),
            n.attempts,
            n.reference.as_ref().map(|r| format!(", reference {r}")).unwrap_or_default()
        ),
        (_, Some(e)) => format!("notification #{} dead-lettered: {}: {e}", n.id, n.describe()),
        _ => format!("notification #{} dead-lettered: {}", n.id, n.describe()),
    };
    if error.is_some() {
        n.last_error = error;
        tracing::warn!(notification = n.id, channel = n.channel.as_str(), error = ?n.last_error, "notification dead-lettered");
    }
    Transition { line: Some(line), ended: Some(state), ..Transition::default() }
}

/// A worker reports what happened to a claimed row (its error already scrubbed of personal
/// data). `None`: the row is no longer being sent — an operator dropped or retried it
/// meanwhile, and their word stands.
pub fn report(
    n: &mut Notification,
    attempt: Attempt,
    policy: &RetryPolicy,
    now: Timestamp,
) -> Option<Transition> {
    if n.state != State::Sending {
        return None;
    }
    Some(match attempt {
        Attempt::Deferred { until } => {
            n.state = if n.attempts == 0 { State::Queued } else { State::Retrying };
            n.due_at = until;
            n.waited = true;
            Transition { due: true, ..Transition::default() }
        }
        Attempt::Delivered { reference, bundled_into } => {
            n.attempts += 1;
            n.reference = reference;
            n.bundled_into = bundled_into;
            n.delivered_at = Some(now);
            // The failures before are on the timeline; the row shows how it ended.
            n.last_error = None;
            Transition { attempt: Some("delivered"), ..finish(n, State::Delivered, None, now) }
        }
        Attempt::Failed(error) => {
            n.attempts += 1;
            let attempt = Some(outcome_label(&error));
            let t = match policy.after_failure(n, &error, now, jitter(n.id, n.attempts)) {
                Next::Retry { at, reason } => {
                    n.state = State::Retrying;
                    n.due_at = at;
                    n.last_error = Some(reason.clone());
                    let line = format!(
                        "notification #{} attempt {} failed: {}: {reason}; next attempt at {at}",
                        n.id,
                        n.attempts,
                        n.describe()
                    );
                    Transition { line: Some(line), due: true, ..Transition::default() }
                }
                Next::Dead { reason } => finish(n, State::Dead, Some(reason), now),
                Next::DisableEndpoint { reason } => {
                    tracing::error!(endpoint = %n.recipient.address, %reason, "webhook endpoint disabled: it answered 410 Gone");
                    let disable = Some(reason.clone());
                    Transition { disable, ..finish(n, State::Dead, Some(reason), now) }
                }
            };
            Transition { attempt, ..t }
        }
    })
}

/// An operator retries (same idempotency id, fresh attempts and age limit) or drops a row.
pub fn operate(
    n: &mut Notification,
    op: QueueOp,
    by: &str,
    now: Timestamp,
) -> Result<Transition, String> {
    let id = n.id;
    let (line, due) = match op {
        QueueOp::Retry => {
            if n.state.is_pending() {
                return Err(format!("notification {id} is already {}", n.state.as_str()));
            }
            n.state = State::Queued;
            n.due_at = now;
            // A revived notification gets a fresh set of attempts and a fresh age limit.
            n.attempts = 0;
            n.requeued_at = Some(now);
            let line = format!(
                "notification #{id} requeued by {by} (same idempotency id {})",
                n.idempotency_id
            );
            (line, true)
        }
        QueueOp::Drop => {
            if !n.state.is_pending() {
                return Err(format!("notification {id} is {}, not pending", n.state.as_str()));
            }
            n.state = State::Dead;
            n.due_at = now;
            n.last_error = Some(format!("dropped by {by}"));
            (format!("notification #{id} dropped by {by}"), false)
        }
    };
    Ok(Transition { line: Some(line), due, ..Transition::default() })
}

fn outcome_label(e: &SendError) -> &'static str {
    match e {
        SendError::Retryable { .. } => "retryable",
        SendError::Permanent { .. } => "permanent",
        SendError::Gone { .. } => "gone",
        SendError::Unknown { .. } => "unknown",
    }
}

/// Jitter in [0, 1) that differs per notification and attempt, without a random source in the
/// writer (so replaying a batch gives the same schedule).
pub fn jitter(id: NotificationId, attempt: u32) -> f64 {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(attempt).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A notification in state `sending`, id 1 (the store's tests use it too).
    pub(crate) fn notification(
        channel: Channel,
        attempts: u32,
        created_at: Timestamp,
    ) -> Notification {
        Notification {
            id: 1,
            idempotency_id: "tocsin-n1".into(),
            incident_id: 1,
            reason: Reason::New,
            channel,
            recipient: Recipient { person: None, address: "x".into() },
            audience: "responder".into(),
            message: Rendered {
                subject: String::new(),
                text: String::new(),
                html: None,
                payload: serde_json::Value::Null,
            },
            state: State::Sending,
            attempts,
            created_at,
            due_at: created_at,
            last_error: None,
            reference: None,
            delivered_at: None,
            bundled_into: None,
            drill: false,
            waited: false,
            requeued_at: None,
        }
    }

    fn retryable(retry_after: Option<Duration>) -> SendError {
        SendError::Retryable { reason: "503".into(), retry_after }
    }

    #[test]
    fn backoff_grows_exponentially_within_bounds() {
        let p = RetryPolicy::default();
        for attempt in 1..=12u32 {
            let lo = p.backoff(attempt, 0.0);
            let hi = p.backoff(attempt, 0.999_999);
            let ceiling = (2.0 * 2f64.powi(attempt as i32 - 1)).min(600.0);
            assert!((lo.as_secs_f64() - ceiling / 2.0).abs() < 1e-6, "attempt {attempt}: {lo:?}");
            assert!(hi.as_secs_f64() <= ceiling + 1e-6 && hi > lo, "attempt {attempt}: {hi:?}");
        }
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let p = RetryPolicy::default();
        let now = Timestamp::now();
        let n = notification(Channel::Webhook, 1, now);
        match p.after_failure(&n, &retryable(Some(Duration::from_secs(120))), now, 0.5) {
            Next::Retry { at, .. } => {
                assert_eq!(at.duration_since(now), SignedDuration::from_secs(120));
            }
            other => panic!("{other:?}"),
        }
        match p.after_failure(&n, &retryable(Some(Duration::from_secs(90_000))), now, 0.5) {
            Next::Retry { at, .. } => {
                assert_eq!(at.duration_since(now), SignedDuration::from_secs(3600));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn permanent_gone_and_exhausted_end_the_notification() {
        let p = RetryPolicy::default();
        let now = Timestamp::now();
        let n = notification(Channel::Webhook, 1, now);
        let perm = SendError::Permanent { reason: "400 Bad Request".into() };
        assert!(
            matches!(p.after_failure(&n, &perm, now, 0.5), Next::Dead { reason } if reason.contains("400"))
        );
        let gone = SendError::Gone { reason: "410".into() };
        assert!(matches!(p.after_failure(&n, &gone, now, 0.5), Next::DisableEndpoint { .. }));
        let spent = notification(Channel::Webhook, p.max_attempts, now);
        assert!(
            matches!(p.after_failure(&spent, &retryable(None), now, 0.5), Next::Dead { reason } if reason.contains("attempts"))
        );
        let old = notification(
            Channel::Webhook,
            1,
            now.saturating_sub(SignedDuration::from_hours(24)).unwrap(),
        );
        assert!(
            matches!(p.after_failure(&old, &retryable(None), now, 0.5), Next::Dead { reason } if reason.contains("maximum age"))
        );
    }

    #[test]
    fn a_revived_dead_letter_counts_its_age_from_the_revival() {
        let p = RetryPolicy::default();
        let now = Timestamp::now();
        let mut n = notification(
            Channel::Webhook,
            1,
            now.saturating_sub(SignedDuration::from_hours(48)).unwrap(),
        );
        assert!(matches!(p.after_failure(&n, &retryable(None), now, 0.5), Next::Dead { .. }));
        n.requeued_at = Some(now);
        assert!(matches!(p.after_failure(&n, &retryable(None), now, 0.5), Next::Retry { .. }));
    }

    #[test]
    fn an_unknown_sms_outcome_is_not_repeated_unless_configured() {
        let now = Timestamp::now();
        let unknown = SendError::Unknown { reason: "timed out after sending".into() };
        let p = RetryPolicy::default();
        assert!(matches!(
            p.after_failure(&notification(Channel::Sms, 1, now), &unknown, now, 0.5),
            Next::Dead { .. }
        ));
        assert!(matches!(
            p.after_failure(&notification(Channel::Webhook, 1, now), &unknown, now, 0.5),
            Next::Retry { .. }
        ));
        let p = RetryPolicy { retry_unknown_sms: true, ..RetryPolicy::default() };
        assert!(matches!(
            p.after_failure(&notification(Channel::Sms, 1, now), &unknown, now, 0.5),
            Next::Retry { .. }
        ));
    }

    mod transitions {
        use super::super::*;
        use super::notification;

        fn t(s: &str) -> Timestamp {
            s.parse().unwrap()
        }

        #[test]
        fn a_claim_leases_the_row_or_ends_it() {
            let now = t("2026-03-02T09:00:00Z");
            let policy = RetryPolicy::default();
            let mut n = notification(Channel::Email, 0, now);
            n.state = State::Queued;
            assert_eq!(claim(&mut n, &policy, None, now), None);
            assert_eq!((n.state, n.due_at), (State::Sending, t("2026-03-02T09:01:00Z")));
            // Its lease ran out mid-send: an SMS is not sent twice.
            let mut sms = notification(Channel::Sms, 0, now);
            let ended = claim(&mut sms, &policy, None, now).unwrap();
            assert_eq!((sms.state, sms.attempts, ended.ended), (State::Dead, 1, Some(State::Dead)));
            let mut hook = notification(Channel::Webhook, 0, now);
            let ended = claim(&mut hook, &policy, Some("410".into()), now).unwrap();
            assert!(ended.line.unwrap().contains("webhook endpoint disabled: 410"));
        }

        #[test]
        fn a_report_delivers_retries_dead_letters_or_disables_the_endpoint() {
            let now = t("2026-03-02T09:00:00Z");
            let policy = RetryPolicy::default();
            let mut n = notification(Channel::Email, 0, now);
            let ok = Attempt::Delivered { reference: Some("r1".into()), bundled_into: None };
            let done = report(&mut n, ok.clone(), &policy, now).unwrap();
            assert_eq!(
                (n.state, done.attempt, done.ended),
                (State::Delivered, Some("delivered"), Some(State::Delivered))
            );
            assert_eq!(report(&mut n, ok, &policy, now), None, "no longer sending: ignored");
            let mut n = notification(Channel::Email, 0, now);
            let busy = SendError::Retryable { reason: "busy".into(), retry_after: None };
            let retry = report(&mut n, Attempt::Failed(busy), &policy, now).unwrap();
            assert_eq!(
                (n.state, retry.due, retry.attempt),
                (State::Retrying, true, Some("retryable"))
            );
            let mut n = notification(Channel::Webhook, 0, now);
            let gone = SendError::Gone { reason: "410".into() };
            let dead = report(&mut n, Attempt::Failed(gone), &policy, now).unwrap();
            assert_eq!(n.state, State::Dead);
            assert!(dead.disable.is_some());
            let mut n = notification(Channel::Email, 0, now);
            let wait = Attempt::Deferred { until: t("2026-03-02T09:05:00Z") };
            let deferred = report(&mut n, wait, &policy, now).unwrap();
            assert_eq!((n.state, n.attempts, deferred.due), (State::Queued, 0, true));
        }

        #[test]
        fn an_operator_revives_a_dead_row_or_drops_a_pending_one() {
            let now = t("2026-03-02T09:00:00Z");
            let mut n = notification(Channel::Email, 3, now);
            assert!(operate(&mut n, QueueOp::Retry, "user:op", now).is_err(), "still pending");
            let dropped = operate(&mut n, QueueOp::Drop, "user:op", now).unwrap();
            assert_eq!((n.state, dropped.due), (State::Dead, false));
            let revived = operate(&mut n, QueueOp::Retry, "user:op", now).unwrap();
            assert_eq!(
                (n.state, n.attempts, n.requeued_at, revived.due),
                (State::Queued, 0, Some(now), true)
            );
            assert!(operate(&mut n, QueueOp::Retry, "user:op", now).is_err());
        }
    }
}
