//! Notification channels: how a rendered message reaches a person or a system — email, SMS
//! gateways, webhooks, and a JSON-lines log file.
//!
//! Sits at the end of the flow: delivery workers take a due notification from the outbox,
//! render it, and call the channel for its target. Every channel returns the same
//! [`SendError`] classification from one shared table ([`classify_http`]), so retry policy
//! lives in one place, apart from the retry loop.
//!
//! One file per channel: [`email`] (SMTP through a pooled relay), [`sms`] (Twilio or a JSON
//! gateway), [`webhook`] (Standard Webhooks signatures, SSRF guard) and [`logfile`] (JSON lines,
//! the embedded default). This file holds what they share: the types, the failure table
//! ([`classify_http`], [`classify_reqwest`]), the HTTP client ([`http_client`]) and the bounded
//! body reader ([`read_body_limited`]).
//!
//! Classification states facts, not policy: `Unknown` means "the receiver may have acted on
//! it", and the retry policy decides per channel whether that is worth repeating (a webhook
//! receiver drops duplicates by `webhook-id`; a second SMS wakes someone twice).
//!
//! Error reasons never contain a secret: URLs appear as `scheme://host:port` only (Slack,
//! Discord and Teams put the credential in the path, others in the query or userinfo), and
//! every channel scrubs its own credentials from the reason before returning it, including
//! from the receiver's answer, which may echo what we sent.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Deserializer, Serialize};

use crate::vocab::Secret;

pub mod config;
pub mod email;
pub mod guard;
pub mod logfile;
pub mod sms;
pub mod webhook;

#[cfg(test)]
mod tests;

pub use email::{Email, EmailConfig, SmtpTls};
pub use logfile::{LogConfig, LogFile};
pub use sms::{Sms, SmsConfig, SmsProvider};
pub use webhook::{Webhook, WebhookConfig, WebhookFormat};

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
    pub const ALL: [Channel; 4] = [Channel::Email, Channel::Sms, Channel::Webhook, Channel::Log];

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

impl SendError {
    /// The human reason, whatever the variant.
    pub fn reason(&self) -> &str {
        match self {
            SendError::Retryable { reason, .. }
            | SendError::Permanent { reason }
            | SendError::Gone { reason }
            | SendError::Unknown { reason } => reason,
        }
    }

    pub(crate) fn map_reason(self, f: impl FnOnce(String) -> String) -> SendError {
        match self {
            SendError::Retryable { reason, retry_after } => {
                SendError::Retryable { reason: f(reason), retry_after }
            }
            SendError::Permanent { reason } => SendError::Permanent { reason: f(reason) },
            SendError::Gone { reason } => SendError::Gone { reason: f(reason) },
            SendError::Unknown { reason } => SendError::Unknown { reason: f(reason) },
        }
    }

    /// Puts what was being attempted in front of the reason (`sms twilio https://host: …`).
    pub(crate) fn context(self, what: &str) -> SendError {
        self.map_reason(|reason| format!("{what}: {reason}"))
    }

    /// Replaces every occurrence of a secret in the reason with `***`. Each channel calls this
    /// last, with all its credentials, so that nothing a receiver or a library echoes back
    /// reaches a log line.
    pub(crate) fn scrub(self, secrets: &[String]) -> SendError {
        self.map_reason(|reason| scrub(&reason, secrets))
    }
}

// ---------------------------------------------------------------------------------------------
// The failure table
// ---------------------------------------------------------------------------------------------

/// The longest `Retry-After` honoured; a receiver asking for more gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The most of a response body that is read. Enough for any gateway's JSON answer; a hostile
/// receiver cannot make us buffer more.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The one table from an HTTP status to a send outcome, for every HTTP channel.
///
/// | status | outcome |
/// |---|---|
/// | 2xx | `Ok` |
/// | 408, 425, 429, 5xx | `Retryable`, with `Retry-After` (seconds or HTTP-date, capped at 1 h) |
/// | 410 | `Gone`: the endpoint is retired; disable it |
/// | other 4xx | `Permanent`: repeating the same request cannot help |
/// | 3xx | `Permanent`: redirects are not followed (a redirect could lead a signed request anywhere) |
/// | anything else | `Permanent` |
pub fn classify_http(status: u16, retry_after: Option<&str>) -> Result<(), SendError> {
    classify_http_at(status, retry_after, jiff::Timestamp::now())
}

/// [`classify_http`] with the clock given, so tests can check HTTP-dates exactly.
pub(crate) fn classify_http_at(
    status: u16,
    retry_after: Option<&str>,
    now: jiff::Timestamp,
) -> Result<(), SendError> {
    let line = status_line(status);
    match status {
        200..=299 => Ok(()),
        408 | 425 | 429 | 500..=599 => Err(SendError::Retryable {
            reason: line,
            retry_after: retry_after.and_then(|value| parse_retry_after(value, now)),
        }),
        410 => Err(SendError::Gone { reason: line }),
        300..=399 => {
            Err(SendError::Permanent { reason: format!("{line}: redirects are not followed") })
        }
        400..=499 => Err(SendError::Permanent { reason: line }),
        _ => Err(SendError::Permanent { reason: format!("{line}: unexpected status") }),
    }
}

/// `HTTP 503 Service Unavailable`.
fn status_line(status: u16) -> String {
    let canonical = reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason());
    match canonical {
        Some(text) => format!("HTTP {status} {text}"),
        None => format!("HTTP {status}"),
    }
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT` (RFC 9110 §10.2.3),
/// capped at [`MAX_RETRY_AFTER`]. A date in the past means "now" (zero). Unparseable: `None`,
/// and the retry policy's own backoff applies.
fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for u64 is still "a very long time".
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = jiff::fmt::rfc2822::DateTimeParser::new().parse_timestamp(value).ok()?;
        let ahead = at.duration_since(now);
        Duration::try_from(ahead).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Classifies a failed HTTP exchange.
///
/// `request_sent` says whether the receiver may already hold the request: `true` for errors
/// from sending or from reading the answer, `false` when the request never left (building
/// it failed). Whatever it says, a connect error means nothing was sent.
///
/// - connect errors (refused, DNS, TLS handshake, connect timeout) → `Retryable`;
/// - a timeout once the request may have arrived → `Unknown` (the receiver may have acted;
///   the retry policy decides), before that → `Retryable`;
/// - body and decode errors, connections closed or reset → `Retryable`;
/// - an invalid request (builder errors) → `Permanent`.
///
/// The reason names no URL (reqwest's own `Display` would print it, query and all).
pub fn classify_reqwest(err: &reqwest::Error, request_sent: bool) -> SendError {
    let detail = error_chain(err);
    if err.is_connect() {
        SendError::Retryable { reason: format!("could not connect: {detail}"), retry_after: None }
    } else if err.is_timeout() {
        if request_sent {
            SendError::Unknown {
                reason: format!(
                    "no answer before the timeout; the receiver may have acted on the request: \
                     {detail}"
                ),
            }
        } else {
            SendError::Retryable { reason: format!("timed out: {detail}"), retry_after: None }
        }
    } else if err.is_builder() {
        SendError::Permanent { reason: format!("invalid request: {detail}") }
    } else if err.is_body() || err.is_decode() {
        SendError::Retryable {
            reason: format!("reading the answer failed: {detail}"),
            retry_after: None,
        }
    } else {
        SendError::Retryable { reason: format!("request failed: {detail}"), retry_after: None }
    }
}

/// The error and its sources, `: `-separated, without reqwest's `for url (…)`. Sources are
/// hyper, io and rustls errors (and our own SSRF refusal), none of which print the URL.
pub(crate) fn error_chain(err: &reqwest::Error) -> String {
    let head = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connect error"
    } else if err.is_body() {
        "body error"
    } else if err.is_decode() {
        "decode error"
    } else if err.is_builder() {
        "builder error"
    } else {
        "request error"
    };
    let mut parts = vec![head.to_string()];
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        let text = inner.to_string();
        // hyper and hyper-util repeat their inner error in their own message; keep it once.
        if !parts.iter().any(|p| p == &text) && !text.is_empty() {
            parts.push(text);
        }
        source = inner.source();
    }
    parts.join(": ")
}

/// `text` without the characters that have no business in a message a person reads: control
/// characters (a NUL from a sender's summary included) and the bidirectional overrides and
/// isolates that can make a text display other than it reads. Tabs become spaces; line
/// breaks (`\r\n`, `\r`, `\n`, U+2028/2029) become `\n` when `keep_lines`, else a space
/// (subjects and other header values are one line).
pub fn plain_text(text: &str, keep_lines: bool) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| {
        c.is_control()
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
    };
    if !text.chars().any(bad) {
        return std::borrow::Cow::Borrowed(text);
    }
    let newline = if keep_lines { '\n' } else { ' ' };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push(newline);
            }
            '\n' | '\u{2028}' | '\u{2029}' => out.push(newline),
            '\t' => out.push(' '),
            c if bad(c) => {}
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

// ---------------------------------------------------------------------------------------------
// HTTP client and responses
// ---------------------------------------------------------------------------------------------

/// The base of every HTTP channel's client (webhooks and SMS gateways add the address guard,
/// [`guard::client`]): overall `timeout`, connect timeout of half that (at most 10 s), no
/// redirects, TLS verified against the platform's roots, HTTP/2 by ALPN. Proxies from
/// `HTTPS_PROXY`/`HTTP_PROXY` apply.
///
/// Building one loads the TLS roots (25–40 ms in a debug build, blocking): build channels
/// once per config load and share them, never per send.
///
/// # Panics
///
/// Only if the TLS backend cannot be initialised, which is a build problem (the crypto
/// provider is compiled in), not something a deployment can cause.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    client_builder(timeout).build().expect("reqwest client with the compiled-in TLS provider")
}

/// The settings of [`http_client`], for channels that add to them.
pub(crate) fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    // A connect timeout shorter than the overall one makes a hung connect fail as a *connect*
    // error (nothing sent: retryable) rather than as the overall timeout (outcome unknown).
    let connect = (timeout / 2).min(Duration::from_secs(10));
    reqwest::Client::builder()
        // Never a proxy from the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`): it
        // would connect on our behalf, past the address guard, and a variable set for other
        // programs would silently reroute notifications. README: Security → Outbound requests.
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(connect)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(60))
}

/// Reads at most `limit` bytes of a response body and drops the rest (and so the connection).
pub async fn read_body_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() >= room {
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A response that passed the failure table.
pub(crate) struct Answer {
    pub status: reqwest::StatusCode,
    /// Up to [`MAX_RESPONSE_BYTES`]; empty if the body could not be read (the receiver
    /// accepted the request all the same).
    pub body: Vec<u8>,
}

/// Runs a response through [`classify_http`]. On failure the start of the receiver's answer
/// joins the reason (gateways explain a 400 there); the caller scrubs it of secrets.
pub(crate) async fn check_response(response: reqwest::Response) -> Result<Answer, SendError> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_body_limited(response, MAX_RESPONSE_BYTES).await;
    match classify_http(status.as_u16(), retry_after.as_deref()) {
        Ok(()) => Ok(Answer { status, body: body.unwrap_or_default() }),
        Err(error) => match body {
            Ok(body) if !body.is_empty() => {
                Err(error.map_reason(|reason| format!("{reason}: {}", snippet(&body))))
            }
            _ => Err(error),
        },
    }
}

/// The first 200 characters of a body, on one line.
pub(crate) fn snippet(body: &[u8]) -> String {
    const MAX_CHARS: usize = 200;
    // Redacted before it is cut, so that no half address slips past the patterns.
    let raw = String::from_utf8_lossy(body);
    let text = crate::redact::for_log(&raw);
    // And before its line ends become spaces: a quoted-printable echo's soft breaks still say
    // where an acknowledge token goes on.
    let text = crate::links::redact(&text);
    let mut out: String =
        text.chars().take(MAX_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out.trim().to_string()
}

/// `scheme://host[:port]` of a URL: enough to tell endpoints apart, nothing secret (no
/// userinfo, path, query or fragment).
pub fn redact_url(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// [`redact_url`] for a URL that may not parse (config `Debug`).
pub(crate) fn redact_url_text(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => redact_url(&url),
        Err(_) => "<invalid url>".to_string(),
    }
}

/// What in a URL may be a credential, for [`scrub`]: the userinfo password, the query and
/// its longer values, a long path (chat webhooks keep their token there).
pub(crate) fn url_secrets(url: &reqwest::Url) -> Vec<String> {
    const LONG: usize = 8;
    let mut out = Vec::new();
    if let Some(password) = url.password() {
        out.push(password.to_string());
    }
    if let Some(query) = url.query() {
        out.push(query.to_string());
        out.extend(url.query_pairs().map(|(_, v)| v.into_owned()).filter(|v| v.len() >= LONG));
    }
    if url.path().len() >= LONG {
        out.push(url.path().to_string());
    }
    out
}

/// A header value and, for `Scheme credentials` values (`Bearer abc`), the credentials alone.
pub(crate) fn header_secret_forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_string()];
    if let Some((_, credentials)) = value.split_once(' ') {
        forms.push(credentials.trim().to_string());
    }
    forms
}

/// Configured extra headers, checked. `reserved` are the (lowercase) names Tocsin sets itself
/// and a config may not replace. Values are marked sensitive, which keeps them out of
/// hyper's and reqwest's `Debug`.
pub(crate) fn secret_headers(
    headers: &BTreeMap<String, Secret>,
    reserved: &[&str],
) -> Result<HeaderMap, Vec<String>> {
    let mut map = HeaderMap::new();
    let mut problems = Vec::new();
    for (name, value) in headers {
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            problems.push(format!("headers.{name}: not a valid header name"));
            continue;
        };
        if reserved.contains(&header.as_str()) {
            problems.push(format!("headers.{name}: set by Tocsin"));
            continue;
        }
        match HeaderValue::from_str(value.expose()) {
            Ok(mut value) => {
                value.set_sensitive(true);
                map.insert(header, value);
            }
            Err(_) => problems.push(format!("headers.{name}: not a valid header value")),
        }
    }
    if problems.is_empty() { Ok(map) } else { Err(problems) }
}

/// `text` with every non-empty secret replaced by `***`.
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    // Longest first, so a secret that contains another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for secret in secrets {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Config helpers
// ---------------------------------------------------------------------------------------------

/// Deserializes a humane duration: `500ms`, `10s`, `2m`, `1h 30m` (jiff's friendly format,
/// the same spelling as the rest of the config). A bare number is refused: its unit would be
/// a guess.
pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad =
        || format!("`{}` is not a duration; write e.g. 500ms, 10s or 2m", text.escape_debug());
    let signed: jiff::SignedDuration = text.trim().parse().map_err(|_| bad())?;
    if signed.is_negative() || signed.is_zero() {
        return Err(format!("`{}` must be longer than 0", text.escape_debug()));
    }
    Duration::try_from(signed).map_err(|_| bad())
}
