//! `notifications.delivery`, `notifications.workers` and `notifications.rate_limits`: the retry
//! policy the delivery workers follow and the per-recipient and global rate limits they enforce.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::{Validator, parse_duration};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    pub max_attempts: Option<Spanned<u64>>,
    pub max_age: Option<Spanned<String>>,
    pub initial_backoff: Option<Spanned<String>>,
    pub max_backoff: Option<Spanned<String>>,
    pub retry_after_cap: Option<Spanned<String>>,
    pub attempt_timeout: Option<Spanned<String>>,
    pub lease: Option<Spanned<String>>,
    pub retry_unknown_sms: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannelLimits {
    #[serde(default)]
    pub per_recipient: Vec<RawWindow>,
    pub global_per_second: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    pub count: u32,
    pub per: String,
}

/// How many messages one recipient may get on one channel within `per`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub count: u32,
    pub per: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelLimits {
    /// Every window must allow a message for it to go; otherwise it waits (and is bundled
    /// with whatever else waits for the same recipient).
    pub per_recipient: Vec<Window>,
    pub global_per_second: Option<u32>,
}

/// In the spirit of the on-call tools people trust: a phone gets at most one text a minute
/// and five per quarter hour; mail and webhooks are allowed more.
pub fn default_rate_limits() -> BTreeMap<crate::notify::Channel, ChannelLimits> {
    use crate::notify::Channel;
    let w = |count, secs| Window { count, per: Duration::from_secs(secs) };
    BTreeMap::from([
        (
            Channel::Sms,
            ChannelLimits { per_recipient: vec![w(1, 60), w(5, 900)], global_per_second: Some(10) },
        ),
        (
            Channel::Email,
            ChannelLimits {
                per_recipient: vec![w(10, 60), w(60, 3600)],
                global_per_second: Some(50),
            },
        ),
        (
            Channel::Webhook,
            ChannelLimits { per_recipient: vec![w(120, 60)], global_per_second: Some(200) },
        ),
        (Channel::Log, ChannelLimits::default()),
    ])
}

/// `notifications.delivery` → the retry policy; each key left out keeps its default.
pub fn retry_policy(
    cx: &mut Validator<'_>,
    raw: Option<Spanned<RawDelivery>>,
) -> crate::outbox::RetryPolicy {
    let mut policy = crate::outbox::RetryPolicy::default();
    if let Some(d) = raw.map(|d| d.value) {
        let p = &mut policy;
        if let Some(m) = d.max_attempts {
            p.max_attempts =
                cx.count(Some(m), "notifications.delivery.max_attempts", 1000, 10) as u32;
        }
        p.max_age = cx.duration(d.max_age, "notifications.delivery.max_age", p.max_age);
        p.initial_backoff = cx.duration(
            d.initial_backoff,
            "notifications.delivery.initial_backoff",
            p.initial_backoff,
        );
        p.max_backoff =
            cx.duration(d.max_backoff, "notifications.delivery.max_backoff", p.max_backoff);
        p.retry_after_cap = cx.duration(
            d.retry_after_cap,
            "notifications.delivery.retry_after_cap",
            p.retry_after_cap,
        );
        p.attempt_timeout = cx.duration(
            d.attempt_timeout,
            "notifications.delivery.attempt_timeout",
            p.attempt_timeout,
        );
        p.lease = cx.duration(d.lease, "notifications.delivery.lease", p.lease);
        if let Some(b) = d.retry_unknown_sms {
            p.retry_unknown_sms = b;
        }
    }
    policy
}

/// `notifications.rate_limits`: each channel named replaces that channel's entry in `out`
/// (the defaults from [`default_rate_limits`]).
pub fn rate_limits(
    cx: &mut Validator<'_>,
    raw: Option<Spanned<BTreeMap<String, RawChannelLimits>>>,
    out: &mut BTreeMap<crate::notify::Channel, ChannelLimits>,
) {
    if let Some(limits) = raw {
        let at = limits.referenced;
        for (channel, raw_limits) in limits.value {
            let path = format!("notifications.rate_limits.{channel}");
            let Some(ch) = [
                crate::notify::Channel::Email,
                crate::notify::Channel::Sms,
                crate::notify::Channel::Webhook,
                crate::notify::Channel::Log,
            ]
            .into_iter()
            .find(|c| c.as_str() == channel) else {
                cx.err(at, &path, format!("`{channel}` is not one of: email, sms, webhook, log"));
                continue;
            };
            let mut windows = Vec::new();
            for (i, w) in raw_limits.per_recipient.into_iter().enumerate() {
                let wpath = format!("{path}.per_recipient[{i}]");
                match parse_duration(&w.per) {
                    Ok(per) if w.count > 0 => windows.push(Window { count: w.count, per }),
                    Ok(_) => cx.err(at, &wpath, "count must be at least 1"),
                    Err(e) => cx.err(at, &format!("{wpath}.per"), e),
                }
            }
            if raw_limits.global_per_second == Some(0) {
                cx.err(
                    at,
                    &format!("{path}.global_per_second"),
                    "must be at least 1 (leave it out for no limit)",
                );
            }
            out.insert(
                ch,
                ChannelLimits {
                    per_recipient: windows,
                    global_per_second: raw_limits.global_per_second.filter(|g| *g > 0),
                },
            );
        }
    }
}
