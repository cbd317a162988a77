//! SMS through Twilio's Messages API or any gateway that takes a JSON POST.
//!
//! The text is cut to `max_segments` SMS segments first ([`fit`]): a gateway bills and
//! delivers per segment, and an alert that arrives as seven fragments helps nobody. The
//! answer goes through the shared failure table; a timeout once the request is sent is
//! `Unknown`, because the gateway may already have sent the SMS, which costs money and wakes
//! someone: the retry policy decides (`delivery.retry_unknown_sms`).
//!
//! The JSON gateway's body is a template with `{{to}}`, `{{text}}` and `{{id}}` (the
//! idempotency id, for gateways that take a client reference). Each placeholder is replaced
//! by its value escaped as the *inside* of a JSON string, so placeholders belong between
//! quotes: `{"to": "{{to}}", "text": "{{text}}"}`. Replacement is a single pass: a value that
//! itself contains `{{id}}` stays as written. [`Sms::new`] checks that the template is JSON
//! once filled in.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde::Deserialize;

use super::{
    Message, Receipt, SendError, check_response, de_duration, guard, header_secret_forms,
    redact_url, redact_url_text, secret_headers, url_secrets,
};
use crate::vocab::Secret;

/// Twilio's Messages endpoint; `{account_sid}` is filled in.
pub const TWILIO_URL: &str =
    "https://api.twilio.com/2010-04-01/Accounts/{account_sid}/Messages.json";

/// How an SMS channel reaches its gateway.
///
/// ```yaml
/// sms:
///   provider: twilio
///   account_sid: AC0123456789abcdef0123456789abcdef
///   auth_token: "${TWILIO_AUTH_TOKEN}"
///   from: "+15005550006"
///   # url: defaults to Twilio's Messages.json for the account; tests point it elsewhere
///   max_segments: 3     # default 3
///   timeout: 10s        # default 10s
///   allow_private: false  # default false: refuse internal addresses (see super::guard)
/// ```
///
/// ```yaml
/// sms:
///   provider: json
///   url: https://sms.example.net/v1/send
///   headers: { Authorization: "Bearer ${SMS_API_KEY}" }
///   body: '{"to": "{{to}}", "message": "{{text}}", "reference": "{{id}}"}'
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    pub provider: SmsProvider,
    /// Twilio: overrides [`TWILIO_URL`] (`{account_sid}` is filled in). JSON: required.
    #[serde(default)]
    pub url: Option<String>,
    /// Twilio only.
    #[serde(default)]
    pub account_sid: Option<String>,
    /// Twilio only.
    #[serde(default)]
    pub auth_token: Option<Secret>,
    /// Twilio only: the sending number (or alphanumeric sender id).
    #[serde(default)]
    pub from: Option<String>,
    /// JSON only: extra request headers. Values are secrets (they usually hold the API key).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// JSON only: the body template (see the module documentation).
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default = "default_max_segments")]
    pub max_segments: u32,
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Lets the gateway URL be an internal address (the outbound address policy of
    /// [`super::guard`], as for webhooks).
    #[serde(default)]
    pub allow_private: bool,
}

impl fmt::Debug for SmsConfig {
    /// The URL is shown as `scheme://host:port`: a gateway key may sit in its query.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsConfig")
            .field("provider", &self.provider)
            .field("url", &self.url.as_deref().map(redact_url_text))
            .field("account_sid", &self.account_sid)
            .field("auth_token", &self.auth_token)
            .field("from", &self.from)
            .field("headers", &self.headers)
            .field("body", &self.body)
            .field("max_segments", &self.max_segments)
            .field("timeout", &self.timeout)
            .field("allow_private", &self.allow_private)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsProvider {
    Twilio,
    Json,
}

fn default_max_segments() -> u32 {
    3
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Beyond this a "text message" is a letter.
const MAX_SEGMENTS: u32 = 10;

impl SmsConfig {
    /// Expands `${VAR}` in the auth token and header values.
    pub fn expand_secrets(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let secrets = self.auth_token.iter_mut().chain(self.headers.values_mut());
        for secret in secrets {
            if let Err(mut p) = crate::config::expand_secret(secret, env) {
                problems.append(&mut p);
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

/// An SMS channel: one gateway account.
pub struct Sms {
    /// Carries the gateway's address guard and timeout.
    client: reqwest::Client,
    allow_private: bool,
    gateway: Gateway,
    url: reqwest::Url,
    max_segments: u32,
    /// Scrubbed from every reason: the token, its basic-auth form, header values, URL keys.
    secrets: Vec<String>,
}

enum Gateway {
    Twilio { account_sid: String, auth_token: Secret, from: String },
    Json { headers: HeaderMap, body: String },
}

impl fmt::Debug for Sms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let provider = match self.gateway {
            Gateway::Twilio { .. } => "twilio",
            Gateway::Json { .. } => "json",
        };
        f.debug_struct("Sms")
            .field("provider", &provider)
            .field("url", &redact_url(&self.url))
            .field("max_segments", &self.max_segments)
            .finish_non_exhaustive()
    }
}

impl Sms {
    /// Checks the config; all problems are reported, `; `-joined.
    pub fn new(cfg: SmsConfig) -> Result<Sms, String> {
        let mut problems = Vec::new();
        if !(1..=MAX_SEGMENTS).contains(&cfg.max_segments) {
            problems.push(format!("max_segments: must be from 1 to {MAX_SEGMENTS}"));
        }
        let mut only = |present: bool, field: &str, provider: &str| {
            if present {
                problems.push(format!("{field}: only for provider: {provider}"));
            }
        };
        let (url, gateway) = match cfg.provider {
            SmsProvider::Twilio => {
                only(!cfg.headers.is_empty(), "headers", "json");
                only(cfg.body.is_some(), "body", "json");
                let sid = cfg.account_sid.unwrap_or_default();
                if sid.is_empty() || !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
                    problems.push("account_sid: required, letters and digits (AC…)".to_string());
                }
                if cfg.auth_token.as_ref().is_none_or(|t| t.expose().is_empty()) {
                    problems.push("auth_token: required".to_string());
                }
                let from = cfg.from.unwrap_or_default();
                if from.trim().is_empty() {
                    problems.push("from: required (the sending number)".to_string());
                }
                let url = cfg.url.as_deref().unwrap_or(TWILIO_URL).replace("{account_sid}", &sid);
                let gateway = Gateway::Twilio {
                    account_sid: sid,
                    auth_token: cfg.auth_token.unwrap_or_else(|| Secret::new("")),
                    from,
                };
                (url, gateway)
            }
            SmsProvider::Json => {
                only(cfg.account_sid.is_some(), "account_sid", "twilio");
                only(cfg.auth_token.is_some(), "auth_token", "twilio");
                only(cfg.from.is_some(), "from", "twilio");
                if cfg.url.is_none() {
                    problems.push("url: required for provider: json".to_string());
                }
                let body = cfg.body.unwrap_or_default();
                if let Err(e) = check_template(&body) {
                    problems.push(format!("body: {e}"));
                }
                let headers = match secret_headers(&cfg.headers, &["content-type"]) {
                    Ok(headers) => headers,
                    Err(mut p) => {
                        problems.append(&mut p);
                        HeaderMap::new()
                    }
                };
                (cfg.url.unwrap_or_default(), Gateway::Json { headers, body })
            }
        };
        let url = match reqwest::Url::parse(&url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Some(url)
            }
            _ => {
                problems.push(format!("url: `{}` is not an http(s) URL", redact_url_text(&url)));
                None
            }
        };
        let client = guard::client(cfg.timeout, cfg.allow_private, "SMS gateway")
            .map_err(|e| problems.push(e))
            .ok();
        let (Some(url), Some(client), true) = (url, client, problems.is_empty()) else {
            return Err(problems.join("; "));
        };

        let mut secrets = url_secrets(&url);
        match &gateway {
            Gateway::Twilio { account_sid, auth_token, .. } => {
                use base64::Engine as _;
                let token = auth_token.expose();
                secrets.push(token.to_string());
                secrets.push(
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{account_sid}:{token}")),
                );
            }
            Gateway::Json { .. } => {
                for value in cfg.headers.values() {
                    secrets.extend(header_secret_forms(value.expose()));
                }
            }
        }
        Ok(Sms {
            client,
            allow_private: cfg.allow_private,
            gateway,
            url,
            max_segments: cfg.max_segments,
            secrets,
        })
    }

    /// Sends `msg.text`, cut to `max_segments`, to `to_phone` (E.164, e.g. `+15551234567`;
    /// passed to the gateway as is). The reference is Twilio's `sid`, or the JSON gateway's
    /// `id` / `message_id` when its answer has one.
    pub async fn send(&self, to_phone: &str, msg: &Message) -> Result<Receipt, SendError> {
        let provider = match self.gateway {
            Gateway::Twilio { .. } => "twilio",
            Gateway::Json { .. } => "json",
        };
        let what = format!("sms {provider} {}", redact_url(&self.url));
        self.send_inner(to_phone, msg).await.map_err(|e| e.context(&what).scrub(&self.secrets))
    }

    async fn send_inner(&self, to_phone: &str, msg: &Message) -> Result<Receipt, SendError> {
        let to = to_phone.trim();
        if to.is_empty() || to.len() > 64 || to.chars().any(char::is_control) {
            return Err(SendError::Permanent {
                reason: format!("`{}` is not a phone number", to_phone.escape_debug()),
            });
        }
        // Control characters (a NUL from a sender's summary) have no place in a text message:
        // gateways reject or mangle them, and handsets show them as boxes or not at all.
        let text = super::plain_text(&msg.text, true);
        if text.trim().is_empty() {
            return Err(SendError::Permanent { reason: "the message text is empty".to_string() });
        }
        // An address written in the URL is never resolved, so the guard checks it here.
        guard::check_literal(&self.url, self.allow_private, "SMS gateway")?;
        let text = fit(&text, self.max_segments);
        let request = match &self.gateway {
            Gateway::Twilio { account_sid, auth_token, from } => self
                .client
                .post(self.url.clone())
                .basic_auth(account_sid, Some(auth_token.expose()))
                .form(&[("To", to), ("From", from.as_str()), ("Body", text.as_str())]),
            Gateway::Json { headers, body } => self
                .client
                .post(self.url.clone())
                .headers(headers.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(render(body, to, &text, &msg.idempotency_id)),
        };
        let response = request.send().await.map_err(|e| guard::classify(&e))?;
        let answer = check_response(response).await?;
        let field = match self.gateway {
            Gateway::Twilio { .. } => &["sid"][..],
            Gateway::Json { .. } => &["id", "message_id"][..],
        };
        Ok(Receipt { reference: reference(&answer.body, field) })
    }
}

/// The first of `fields` present at the top of a JSON answer, as text. An accepted request
/// with an answer we cannot read is still accepted: no reference, not an error.
fn reference(body: &[u8], fields: &[&str]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    fields.iter().find_map(|field| match value.get(field)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// Fills the JSON template in one pass (see the module documentation).
pub fn render(template: &str, to: &str, text: &str, id: &str) -> String {
    let mut out = String::with_capacity(template.len() + text.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let value = match after[..end].trim() {
            "to" => Some(to),
            "text" => Some(text),
            "id" => Some(id),
            _ => None,
        };
        match value {
            Some(value) => {
                let quoted = serde_json::to_string(value).expect("a string always serializes");
                out.push_str(&quoted[1..quoted.len() - 1]);
            }
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The template must name only known placeholders and be JSON once filled in, with values
/// that need escaping.
fn check_template(template: &str) -> Result<(), String> {
    if template.trim().is_empty() {
        return Err("required for provider: json".to_string());
    }
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if !matches!(name, "to" | "text" | "id") {
            return Err(format!(
                "unknown placeholder {{{{{name}}}}}; use {{{{to}}}}, {{{{text}}}} or {{{{id}}}}"
            ));
        }
        rest = &after[end + 2..];
    }
    let sample = render(template, "+15551234567", "line \"one\"\nline two €", "id-1");
    serde_json::from_str::<serde_json::Value>(&sample).map(|_| ()).map_err(|e| {
        format!(
            "is not JSON once filled in ({e}); put placeholders inside quotes: \"{{{{text}}}}\""
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Segments
// ---------------------------------------------------------------------------------------------

/// The SMS alphabet a text needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The GSM 03.38 default alphabet: 160 septets alone, 153 per segment when split (the
    /// rest is the concatenation header). Extension characters (`€ [ ] { } \ ^ ~ |` and form
    /// feed) take two septets.
    Gsm7,
    /// Anything else: UTF-16, 70 units alone, 67 per segment; characters outside the BMP
    /// (most emoji) take two units.
    Ucs2,
}

const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                          ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM7_EXTENSION: &str = "\u{c}^{}\\[~]|€";

impl Encoding {
    pub fn of(text: &str) -> Encoding {
        if text.chars().all(|c| GSM7_BASIC.contains(c) || GSM7_EXTENSION.contains(c)) {
            Encoding::Gsm7
        } else {
            Encoding::Ucs2
        }
    }

    /// (one segment alone, each segment of a split message).
    fn capacity(self) -> (usize, usize) {
        match self {
            Encoding::Gsm7 => (160, 153),
            Encoding::Ucs2 => (70, 67),
        }
    }

    fn cost(self, c: char) -> usize {
        match self {
            Encoding::Gsm7 if GSM7_EXTENSION.contains(c) => 2,
            Encoding::Gsm7 => 1,
            Encoding::Ucs2 => c.len_utf16(),
        }
    }

    /// An ellipsis in this alphabet: `…` is not in GSM-7, and using it would turn the whole
    /// message into UCS-2 and halve its room.
    fn ellipsis(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "...",
            Encoding::Ucs2 => "…",
        }
    }
}

/// How many segments `text` takes.
pub fn segments(text: &str) -> u32 {
    let encoding = Encoding::of(text);
    let (single, multi) = encoding.capacity();
    let total: usize = text.chars().map(|c| encoding.cost(c)).sum();
    if total <= single {
        return 1;
    }
    let mut count = 1;
    let mut used = 0;
    for c in text.chars() {
        let cost = encoding.cost(c);
        // A two-unit character never straddles segments; it starts the next one.
        if used + cost > multi {
            count += 1;
            used = 0;
        }
        used += cost;
    }
    count
}

/// `text` unchanged if it fits in `max_segments` segments, else cut so that it plus an
/// ellipsis does (trailing whitespace before the ellipsis dropped). `max_segments` 0 counts
/// as 1. Cuts fall between characters, which can split a combining sequence or a joined
/// emoji; the message stays valid.
pub fn fit(text: &str, max_segments: u32) -> String {
    let max = max_segments.max(1) as usize;
    let encoding = Encoding::of(text);
    let (single, multi) = encoding.capacity();
    let total: usize = text.chars().map(|c| encoding.cost(c)).sum();
    if total <= single {
        return text.to_string();
    }
    let cap = if max == 1 { single } else { multi };

    // Pack greedily; `after[i]` is (segment, used) once the first i characters are placed.
    let mut after = vec![(0usize, 0usize)];
    let (mut segment, mut used) = (0, 0);
    let mut fits_all = true;
    for c in text.chars() {
        let cost = encoding.cost(c);
        if used + cost > cap {
            segment += 1;
            used = 0;
        }
        if segment >= max {
            fits_all = false;
            break;
        }
        used += cost;
        after.push((segment, used));
    }
    if fits_all {
        return text.to_string();
    }

    // Every ellipsis character costs one unit, so it fits wherever that much room is left.
    let ellipsis = encoding.ellipsis();
    let need = ellipsis.chars().count();
    let room = |(segment, used): (usize, usize)| (max - 1 - segment) * cap + (cap - used);
    let keep = (0..after.len()).rev().find(|&n| room(after[n]) >= need).unwrap_or(0);
    let end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
    let mut out = text[..end].trim_end().to_string();
    out.push_str(ellipsis);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::{Recorded, Sink};

    const TOKEN: &str = "twilio-auth-token-0123456789";
    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    fn message() -> Message {
        Message {
            idempotency_id: "ntf-7".into(),
            subject: "ignored".into(),
            text: "P1 db-1: disk full \"now\"".into(),
            html: None,
            payload: serde_json::Value::Null,
        }
    }

    pub(crate) fn twilio(url: &str) -> SmsConfig {
        serde_json::from_value(serde_json::json!({
            "provider": "twilio",
            "url": url,
            "account_sid": SID,
            "auth_token": TOKEN,
            "from": "+15005550006",
            "timeout": "1s",
            "allow_private": true,
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn twilio_gets_the_form_with_basic_auth_and_answers_a_sid() {
        let sink = Sink::start().await;
        let url = format!("{}/2010-04-01/Accounts/{{account_sid}}/Messages.json", sink.base());
        let sms = Sms::new(twilio(&url)).unwrap();
        let receipt = sms.send("+15551234567", &message()).await.unwrap();
        assert_eq!(receipt.reference.as_deref(), Some("SM0123456789abcdef"));

        let [request]: [Recorded; 1] = sink.requests().try_into().unwrap();
        assert_eq!(request.path, format!("/2010-04-01/Accounts/{SID}/Messages.json"));
        assert_eq!(request.header("content-type"), "application/x-www-form-urlencoded");
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
        assert_eq!(request.header("authorization"), format!("Basic {basic}"));
        let form: Vec<(String, String)> = serde_urlencoded_pairs(&request.body);
        assert_eq!(
            form,
            [
                ("To".to_string(), "+15551234567".to_string()),
                ("From".to_string(), "+15005550006".to_string()),
                ("Body".to_string(), "P1 db-1: disk full \"now\"".to_string()),
            ]
        );
    }

    fn serde_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
        reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(body)))
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[tokio::test]
    async fn json_gateway_gets_the_filled_template_and_headers() {
        let sink = Sink::start().await;
        let cfg: SmsConfig = serde_json::from_value(serde_json::json!({
            "provider": "json",
            "url": format!("{}/json-ok", sink.base()),
            "headers": { "Authorization": "Bearer gw-key-abcdef", "X-Tenant": "ops" },
            "body": r#"{"to": "{{to}}", "text": "{{ text }}", "ref": "{{id}}", "kind": "alert"}"#,
            "timeout": "1s",
            "allow_private": true,
        }))
        .unwrap();
        let sms = Sms::new(cfg).unwrap();
        let receipt = sms.send("+15551234567", &message()).await.unwrap();
        assert_eq!(receipt.reference.as_deref(), Some("gw-42"));

        let [request]: [Recorded; 1] = sink.requests().try_into().unwrap();
        assert_eq!(request.header("authorization"), "Bearer gw-key-abcdef");
        assert_eq!(request.header("x-tenant"), "ops");
        assert_eq!(request.header("content-type"), "application/json");
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "to": "+15551234567", "text": "P1 db-1: disk full \"now\"", "ref": "ntf-7",
                "kind": "alert",
            })
        );
    }

    #[tokio::test]
    async fn long_text_is_cut_before_sending() {
        let sink = Sink::start().await;
        let mut cfg = twilio(&format!("{}/ok", sink.base()));
        cfg.max_segments = 1;
        let sms = Sms::new(cfg).unwrap();
        let mut msg = message();
        msg.text = "x".repeat(500);
        sms.send("+15551234567", &msg).await.unwrap();
        let form = serde_urlencoded_pairs(&sink.requests()[0].body);
        assert_eq!(form[2].1, format!("{}...", "x".repeat(157)));
    }

    #[tokio::test]
    async fn bad_numbers_and_empty_texts_are_permanent_and_not_sent() {
        let sink = Sink::start().await;
        let sms = Sms::new(twilio(&format!("{}/ok", sink.base()))).unwrap();
        for to in ["", "  ", "+1555\n123"] {
            let err = sms.send(to, &message()).await.unwrap_err();
            assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
        }
        let mut empty = message();
        empty.text = " ".into();
        let err = sms.send("+15551234567", &empty).await.unwrap_err();
        assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
        assert!(sink.requests().is_empty(), "nothing unexpected arrived");
    }

    #[tokio::test]
    async fn control_characters_never_reach_the_gateway() {
        let sink = Sink::start().await;
        let sms = Sms::new(twilio(&format!("{}/ok", sink.base()))).unwrap();
        let mut msg = message();
        msg.text = "P1\u{0} db-1:\tdisk\u{7} full\r\nnow \u{202e}lluf\u{1b}[2J".into();
        sms.send("+15551234567", &msg).await.unwrap();
        let form = serde_urlencoded_pairs(&sink.requests()[0].body);
        assert_eq!(form[2].1, "P1 db-1: disk full\nnow lluf[2J");

        // A text of nothing but controls is empty: refused, not sent.
        msg.text = "\u{0}\u{0}\u{7}".into();
        let err = sms.send("+15551234567", &msg).await.unwrap_err();
        assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
        assert_eq!(sink.requests().len(), 1);
    }

    #[tokio::test]
    async fn a_gateway_on_an_internal_address_is_refused_unless_allowed() {
        let sink = Sink::start().await;
        let port = sink.addr.port();
        for url in [
            format!("http://127.0.0.1:{port}/ok"),
            format!("http://localhost:{port}/ok"),
            format!("http://[::ffff:127.0.0.1]:{port}/ok"),
        ] {
            let mut cfg = twilio(&url);
            cfg.allow_private = false;
            let err = Sms::new(cfg).unwrap().send("+15551234567", &message()).await.unwrap_err();
            let SendError::Permanent { reason } = &err else { panic!("{url}: {err:?}") };
            assert!(reason.contains("loopback") && reason.contains("allow_private"), "{reason}");
            assert!(reason.contains("SMS gateway"), "{reason}");
            assert!(!reason.contains(TOKEN), "{reason}");
        }
        assert!(sink.requests().is_empty(), "the gateway's credentials went nowhere");
    }

    #[test]
    fn config_checks_report_every_problem() {
        let cfg: SmsConfig =
            serde_json::from_value(serde_json::json!({ "provider": "twilio", "body": "{}" }))
                .unwrap();
        let err = Sms::new(cfg).unwrap_err();
        for expected in ["body: only for provider: json", "account_sid", "auth_token", "from"] {
            assert!(err.contains(expected), "{expected}: {err}");
        }
        let cfg: SmsConfig = serde_json::from_value(serde_json::json!({
            "provider": "json", "url": "ftp://x", "body": "{\"t\": {{text}}}",
            "headers": { "Content-Type": "text/plain" }, "max_segments": 0,
        }))
        .unwrap();
        let err = Sms::new(cfg).unwrap_err();
        for expected in
            ["url", "body: is not JSON", "headers.Content-Type: set by Tocsin", "max_segments"]
        {
            assert!(err.contains(expected), "{expected}: {err}");
        }
        assert!(check_template("{\"t\": \"{{txt}}\"}").unwrap_err().contains("{{txt}}"));
        let unknown = serde_json::from_value::<SmsConfig>(
            serde_json::json!({ "provider": "json", "token": "x" }),
        );
        assert!(unknown.is_err());
        Sms::new(twilio("http://127.0.0.1:1/")).unwrap();
    }

    #[test]
    fn twilio_url_defaults_to_the_account() {
        let mut cfg = twilio("unused");
        cfg.url = None;
        let sms = Sms::new(cfg).unwrap();
        assert_eq!(
            sms.url.as_str(),
            format!("https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json")
        );
    }

    #[test]
    fn render_escapes_and_does_not_reexpand() {
        let template = r#"{"to": "{{to}}", "text": "{{text}}", "keep": "{{other}}"}"#;
        let out = render(template, "+1", "say \"hi\"\n{{to}} \\ ok", "i");
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["text"], "say \"hi\"\n{{to}} \\ ok");
        assert_eq!(value["keep"], "{{other}}");
    }

    #[test]
    fn secrets_never_show_in_config_debug() {
        let mut cfg = twilio("https://gw.example/send?api_key=url-key-12345678");
        cfg.headers.insert("Authorization".into(), Secret::new("Bearer hdr-secret"));
        let shown = format!("{cfg:?} {:?}", Sms::new(twilio("http://127.0.0.1:1/")).unwrap());
        for secret in [TOKEN, "url-key-12345678", "hdr-secret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    // -- segments ----------------------------------------------------------------------------

    #[test]
    fn gsm7_single_and_multipart_limits() {
        let a160 = "a".repeat(160);
        assert_eq!(Encoding::of(&a160), Encoding::Gsm7);
        assert_eq!(segments(&a160), 1);
        assert_eq!(fit(&a160, 1), a160);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"a".repeat(306)), 2);
        assert_eq!(segments(&"a".repeat(307)), 3);

        // One segment: 157 characters and "...".
        assert_eq!(fit(&"a".repeat(161), 1), format!("{}...", "a".repeat(157)));
        // Three segments of 153: 459 fit exactly, 460 need a cut to 456 + "...".
        assert_eq!(fit(&"a".repeat(459), 3), "a".repeat(459));
        let cut = fit(&"a".repeat(460), 3);
        assert_eq!(cut, format!("{}...", "a".repeat(456)));
        assert_eq!(segments(&cut), 3);
    }

    #[test]
    fn gsm7_extension_characters_count_twice() {
        let euros = "€".repeat(80);
        assert_eq!(Encoding::of(&euros), Encoding::Gsm7);
        assert_eq!(segments(&euros), 1);
        let euros = "€".repeat(81);
        assert_eq!(segments(&euros), 2);
        // 79 euros (158 septets) + "..." would be 161: 78 euros + "..." = 159.
        assert_eq!(fit(&euros, 1), format!("{}...", "€".repeat(78)));
        // An extension pair never straddles a segment: 76 per 153-septet segment.
        assert_eq!(segments(&"€".repeat(152)), 2);
        assert_eq!(segments(&"€".repeat(153)), 3);
    }

    #[test]
    fn ucs2_limits_and_ellipsis() {
        let text = "ж".repeat(70);
        assert_eq!(Encoding::of(&text), Encoding::Ucs2);
        assert_eq!(fit(&text, 1), text);
        let cut = fit(&"ж".repeat(71), 1);
        assert_eq!(cut, format!("{}…", "ж".repeat(69)));
        assert_eq!(segments(&"ж".repeat(134)), 2);
        assert_eq!(segments(&"ж".repeat(135)), 3);
        let cut = fit(&"ж".repeat(300), 2);
        assert_eq!(cut, format!("{}…", "ж".repeat(133)));

        // One non-GSM character makes the whole text UCS-2.
        let mixed = format!("{}✓", "a".repeat(100));
        assert_eq!(Encoding::of(&mixed), Encoding::Ucs2);
        assert_eq!(fit(&mixed, 1), format!("{}…", "a".repeat(69)));
    }

    #[test]
    fn ucs2_surrogate_pairs_are_not_split() {
        // 🔥 is two UTF-16 units.
        let fire = "🔥".repeat(35);
        assert_eq!(segments(&fire), 1);
        let cut = fit(&"🔥".repeat(36), 1);
        assert_eq!(cut, format!("{}…", "🔥".repeat(34)));
        assert_eq!(cut.encode_utf16().count(), 69);
        // 33 per 67-unit segment: the 34th would split a pair.
        assert_eq!(segments(&"🔥".repeat(66)), 2);
        assert_eq!(segments(&"🔥".repeat(67)), 3);
        assert_eq!(fit("", 3), "");
        assert_eq!(fit("short", 0), "short");
    }

    #[test]
    fn trailing_space_goes_before_the_ellipsis() {
        let text = format!("{} tail that does not fit", "w".repeat(156));
        assert_eq!(fit(&text, 1), format!("{}...", "w".repeat(156)));
    }
}
