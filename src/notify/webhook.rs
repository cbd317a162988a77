//! Webhooks: the already-built payload POSTed as JSON, signed the Standard Webhooks way, to
//! an endpoint that must not be inside our own network unless the config says so.
//!
//! Signing (<https://www.standardwebhooks.com/>): `webhook-id` is the idempotency id (the
//! same on every retry, so receivers drop duplicates), `webhook-timestamp` the send time in
//! Unix seconds (fresh on every attempt), and `webhook-signature` is
//! `v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>` where the key is the base64
//! after `whsec_`. With several secrets (rotation) every one signs and the signatures are
//! space-separated, so a receiver holding either the old or the new secret verifies.
//!
//! SSRF guard: the outbound address policy of [`super::guard`] (unless `allow_private: true`,
//! no address that is not globally reachable, checked on the addresses actually connected
//! to). A host with no address left is a `Permanent` error. Redirects are not followed.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{
    Message, Receipt, SendError, check_response, de_duration, guard, header_secret_forms,
    redact_url, redact_url_text, secret_headers, url_secrets,
};
use crate::vocab::Secret;

/// One webhook endpoint.
///
/// ```yaml
/// webhooks:
///   - name: chatops
///     url: https://hooks.example.com/tocsin
///     format: tocsin            # tocsin | alertmanager; default tocsin
///     secrets:                  # first is current; list two while rotating
///       - "${HOOK_SECRET}"      # whsec_<base64 of 24–64 random bytes>
///     headers: { Authorization: "Bearer ${HOOK_TOKEN}" }
///     allow_private: false      # default false: refuse internal addresses
///     timeout: 10s              # default 10s
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    /// Standard Webhooks signing secrets; none: requests are not signed.
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// Extra headers; they cannot replace `webhook-*`, `content-type`, `content-length` or
    /// `host`. Values are secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    #[serde(default)]
    pub allow_private: bool,
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
}

impl fmt::Debug for WebhookConfig {
    /// The URL is shown as `scheme://host:port`: chat webhooks carry their token in the path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &redact_url_text(&self.url))
            .field("format", &self.format)
            .field("secrets", &self.secrets)
            .field("headers", &self.headers)
            .field("allow_private", &self.allow_private)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Which payload schema the endpoint expects; the payload builder reads it, this module only
/// carries it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    #[default]
    Tocsin,
    Alertmanager,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Headers Tocsin sets; a config may not replace them.
const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "host",
];

/// The spec's recommended minimum key size.
const MIN_KEY_BYTES: usize = 24;

impl WebhookConfig {
    /// Expands `${VAR}` in the secrets and header values.
    pub fn expand_secrets(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for secret in self.secrets.iter_mut().chain(self.headers.values_mut()) {
            if let Err(mut p) = crate::config::expand_secret(secret, env) {
                problems.append(&mut p);
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

/// A webhook endpoint, ready to send.
pub struct Webhook {
    name: String,
    url: reqwest::Url,
    format: WebhookFormat,
    /// Decoded signing keys, current first.
    keys: Vec<Vec<u8>>,
    headers: HeaderMap,
    allow_private: bool,
    /// Built per endpoint: it carries this endpoint's address guard and timeout.
    client: reqwest::Client,
    /// Scrubbed from every reason.
    secrets: Vec<String>,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("url", &redact_url(&self.url))
            .field("format", &self.format)
            .field("signing_keys", &self.keys.len())
            .field("allow_private", &self.allow_private)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Checks the config; all problems are reported, `; `-joined.
    pub fn new(cfg: WebhookConfig) -> Result<Webhook, String> {
        let mut problems = Vec::new();
        if cfg.name.trim().is_empty() {
            problems.push("name: required".to_string());
        }
        let url = match reqwest::Url::parse(&cfg.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Some(url)
            }
            _ => {
                problems
                    .push(format!("url: `{}` is not an http(s) URL", redact_url_text(&cfg.url)));
                None
            }
        };
        let mut keys = Vec::new();
        for (i, secret) in cfg.secrets.iter().enumerate() {
            match decode_secret(secret.expose()) {
                Ok(key) if key.len() >= MIN_KEY_BYTES => keys.push(key),
                Ok(key) => problems.push(format!(
                    "secrets[{i}]: {} bytes is too short; use {MIN_KEY_BYTES} to 64 random bytes",
                    key.len()
                )),
                Err(e) => problems.push(format!("secrets[{i}]: {e}")),
            }
        }
        let headers = secret_headers(&cfg.headers, RESERVED_HEADERS).unwrap_or_else(|mut p| {
            problems.append(&mut p);
            HeaderMap::new()
        });
        let client = guard::client(cfg.timeout, cfg.allow_private, "webhook");
        let client = client.unwrap_or_else(|e| {
            problems.push(e);
            reqwest::Client::new()
        });
        let (Some(url), true) = (url, problems.is_empty()) else {
            return Err(problems.join("; "));
        };

        let mut secrets = url_secrets(&url);
        for value in cfg.headers.values() {
            secrets.extend(header_secret_forms(value.expose()));
        }
        for secret in &cfg.secrets {
            let secret = secret.expose();
            secrets.push(secret.to_string());
            secrets.push(secret.strip_prefix("whsec_").unwrap_or(secret).to_string());
        }
        Ok(Webhook {
            name: cfg.name,
            url,
            format: cfg.format,
            keys,
            headers,
            allow_private: cfg.allow_private,
            client,
            secrets,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn format(&self) -> WebhookFormat {
        self.format
    }

    /// POSTs `msg.payload`. The reference is the endpoint's status line (`200 OK`). `Gone`
    /// (410) means the endpoint is retired: disable it and log an error.
    pub async fn send(&self, msg: &Message) -> Result<Receipt, SendError> {
        let what = format!("webhook {} {}", self.name, redact_url(&self.url));
        self.send_inner(msg).await.map_err(|e| e.context(&what).scrub(&self.secrets))
    }

    async fn send_inner(&self, msg: &Message) -> Result<Receipt, SendError> {
        // An address written in the URL is never resolved, so the guard checks it here.
        guard::check_literal(&self.url, self.allow_private, "webhook")?;
        if msg.payload.is_null() {
            return Err(SendError::Permanent { reason: "the message has no payload".to_string() });
        }
        let body = serde_json::to_vec(&msg.payload).map_err(|e| SendError::Permanent {
            reason: format!("cannot encode the payload: {e}"),
        })?;
        let id = HeaderValue::from_str(&msg.idempotency_id).map_err(|_| SendError::Permanent {
            reason: "the idempotency id is not a valid header value".to_string(),
        })?;
        let timestamp = jiff::Timestamp::now().as_second();
        let mut request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string());
        if !self.keys.is_empty() {
            let signature = signature(&self.keys, &msg.idempotency_id, timestamp, &body);
            request = request.header("webhook-signature", signature);
        }
        let response = request.body(body).send().await.map_err(|e| guard::classify(&e))?;
        let answer = check_response(response).await?;
        Ok(Receipt { reference: Some(answer.status.to_string()) })
    }
}

// ---------------------------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------------------------

/// The `webhook-signature` value for one secret (`whsec_<base64>`; a bare base64 key is also
/// taken, as the reference libraries do).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    Ok(signature(&[decode_secret(secret)?], id, timestamp, body))
}

fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    match BASE64.decode(encoded) {
        Ok(key) if !key.is_empty() => Ok(key),
        _ => Err("not a signing secret; expected `whsec_` followed by base64".to_string()),
    }
}

/// One `v1,<base64>` per key, space-separated.
fn signature(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    let signed = |key: &Vec<u8>| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any size");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    };
    keys.iter().map(signed).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::{Recorded, Sink};

    /// 32 random bytes, base64: a current and a next secret for rotation.
    const SECRET_A: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD8SYAMqAh8s4=";
    const SECRET_B: &str = "whsec_Hb6L9rBFXO/Ri5wtFOvRlKaVdkcW8/z4zuRpkjUIGc4=";
    const HEADER_TOKEN: &str = "hook-bearer-token-42";

    pub(crate) fn config(url: &str, secrets: &[&str]) -> WebhookConfig {
        serde_json::from_value(serde_json::json!({
            "name": "chatops",
            "url": url,
            "secrets": secrets,
            "headers": { "Authorization": format!("Bearer {HEADER_TOKEN}"), "X-Team": "sre" },
            "allow_private": true,
            "timeout": "1s",
        }))
        .unwrap()
    }

    fn message() -> Message {
        Message {
            idempotency_id: "msg_0192abc".into(),
            subject: String::new(),
            text: String::new(),
            html: None,
            payload: serde_json::json!({ "incident": { "id": 7, "title": "db-1 disk full" } }),
        }
    }

    /// A receiver's check: some signature in the header is the one `secret` makes.
    fn verifies(request: &Recorded, secret: &str) -> bool {
        let id = request.header("webhook-id");
        let timestamp: i64 = request.header("webhook-timestamp").parse().unwrap();
        let expected = sign(secret, &id, timestamp, &request.body).unwrap();
        request.header("webhook-signature").split(' ').any(|s| s == expected)
    }

    #[test]
    fn signature_matches_the_standard_webhooks_test_vector() {
        // Published with the spec's reference libraries (e.g. svix's `testSignFunctionWorks`).
        let signature = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature.as_deref(), Ok("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
        // Without the prefix, as the reference libraries also accept.
        let bare = sign(
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(bare, signature);
        assert!(sign("whsec_***", "id", 1, b"").is_err());
    }

    #[tokio::test]
    async fn receiver_gets_the_payload_signed_with_custom_headers() {
        let sink = Sink::start().await;
        let hook = Webhook::new(config(&format!("{}/ok", sink.base()), &[SECRET_A])).unwrap();
        let receipt = hook.send(&message()).await.unwrap();
        assert_eq!(receipt.reference.as_deref(), Some("200 OK"));

        let [request]: [Recorded; 1] = sink.requests().try_into().unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.header("content-type"), "application/json");
        assert_eq!(request.header("webhook-id"), "msg_0192abc");
        assert_eq!(request.header("authorization"), format!("Bearer {HEADER_TOKEN}"));
        assert_eq!(request.header("x-team"), "sre");
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body, message().payload);
        let sent_at: i64 = request.header("webhook-timestamp").parse().unwrap();
        assert!((jiff::Timestamp::now().as_second() - sent_at).abs() <= 5);
        assert!(request.header("webhook-signature").starts_with("v1,"));
        assert!(!request.header("webhook-signature").contains(' '), "one secret, one signature");
        assert!(verifies(&request, SECRET_A));
        assert!(!verifies(&request, SECRET_B));
    }

    #[tokio::test]
    async fn during_rotation_both_secrets_verify() {
        let sink = Sink::start().await;
        let url = format!("{}/ok", sink.base());
        let hook = Webhook::new(config(&url, &[SECRET_B, SECRET_A])).unwrap();
        hook.send(&message()).await.unwrap();
        let [request]: [Recorded; 1] = sink.requests().try_into().unwrap();
        assert_eq!(request.header("webhook-signature").split(' ').count(), 2);
        assert!(verifies(&request, SECRET_A), "a receiver with the old secret");
        assert!(verifies(&request, SECRET_B), "a receiver with the new secret");
    }

    #[tokio::test]
    async fn private_addresses_are_refused_unless_allowed() {
        let sink = Sink::start().await;
        let port = sink.addr.port();
        for url in [
            format!("http://127.0.0.1:{port}/ok"),
            format!("http://localhost:{port}/ok"),
            format!("http://[::1]:{port}/ok"),
            format!("http://[::ffff:127.0.0.1]:{port}/ok"),
            format!("http://2130706433:{port}/ok"),
        ] {
            let mut cfg = config(&url, &[SECRET_A]);
            cfg.allow_private = false;
            let err = Webhook::new(cfg).unwrap().send(&message()).await.unwrap_err();
            let SendError::Permanent { reason } = &err else { panic!("{url}: {err:?}") };
            assert!(reason.contains("loopback"), "{reason}");
            assert!(reason.contains("allow_private"), "{reason}");
        }
        assert!(sink.requests().is_empty(), "nothing reached the receiver");

        let allowed = Webhook::new(config(&format!("http://localhost:{port}/ok"), &[])).unwrap();
        allowed.send(&message()).await.unwrap();
        assert_eq!(sink.requests().len(), 1);
        assert_eq!(sink.requests()[0].header("webhook-signature"), "", "unsigned");
    }

    #[test]
    fn config_checks() {
        let mut cfg = config("ftp://x", &["whsec_not*base64", "whsec_c2hvcnQ="]);
        cfg.name = String::new();
        cfg.headers.insert("webhook-signature".into(), Secret::new("forged"));
        let err = Webhook::new(cfg).unwrap_err();
        for expected in [
            "name: required",
            "url:",
            "secrets[0]: not a signing secret",
            "secrets[1]: 5 bytes is too short",
            "headers.webhook-signature: set by Tocsin",
        ] {
            assert!(err.contains(expected), "{expected}: {err}");
        }
        assert!(!err.contains("forged"));
        let unknown: Result<WebhookConfig, _> = serde_json::from_value(
            serde_json::json!({ "name": "a", "url": "http://x", "secret": "s" }),
        );
        assert!(unknown.is_err());
        let defaults: WebhookConfig =
            serde_json::from_value(serde_json::json!({ "name": "a", "url": "https://x" })).unwrap();
        assert_eq!(defaults.format, WebhookFormat::Tocsin);
        assert!(!defaults.allow_private);
        assert_eq!(defaults.timeout, Duration::from_secs(10));
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let cfg = config(
            "https://hooks.example.com/services/T0/B0/pathsecret123?k=querysecret1",
            &[SECRET_A],
        );
        let shown = format!("{cfg:?} {:?}", Webhook::new(cfg.clone()).unwrap());
        for secret in [SECRET_A, HEADER_TOKEN, "pathsecret123", "querysecret1"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}
