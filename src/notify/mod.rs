//! Notification channels: how a rendered message reaches a person or a system — email, SMS
//! gateways, webhooks, and a JSON-lines log file.
//!
//! Sits at the end of the flow: delivery workers take a due notification from the outbox,
//! render it, and call the channel for its target. Every channel returns the same
//! [`SendError`] classification from one shared table ([`classify_http`]), so retry policy
//! lives in one place, apart from the retry loop.
//!
//! INTERFACE SKELETON — channels are being written.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The closed set of channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    Webhook,
    Log,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Webhook => "webhook",
            Channel::Log => "log",
        }
    }
}

/// A rendered message, ready for one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Stable across every retry of one notification: the email `Message-ID` local part, the
    /// webhook `webhook-id`, the SMS gateway's client reference. Receivers drop duplicates by it.
    pub idempotency_id: String,
    /// Email subject (other channels ignore it).
    pub subject: String,
    /// Plain text: the email text part, the SMS body, the log line's text.
    pub text: String,
    /// Email HTML part, when the template has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Webhook body (Tocsin's schema or Alertmanager-compatible), already built.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub payload: serde_json::Value,
}

/// What a channel learned from a successful send.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The receiver's reference: SMTP queue id line, gateway message id (Twilio `sid`), the
    /// webhook's status line.
    pub reference: Option<String>,
}

/// Why a send did not succeed, classified once for the retry policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again later: connection errors, timeouts, 5xx, 429. `retry_after` is the receiver's
    /// own `Retry-After`, when it gave one.
    #[error("retryable: {reason}")]
    Retryable { reason: String, retry_after: Option<Duration> },
    /// Will never succeed as is: other 4xx, a refused address, a bad config.
    #[error("permanent: {reason}")]
    Permanent { reason: String },
    /// The webhook endpoint answered 410 Gone: disable it.
    #[error("gone: {reason}")]
    Gone { reason: String },
    /// The request may have been accepted but no answer came (timeout after the request was
    /// sent). Repeating it could send a second SMS.
    #[error("unknown outcome: {reason}")]
    Unknown { reason: String },
}
