//! `notifications.ack_links`: whether person-addressed messages carry signed acknowledge links,
//! their key and lifetime.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::{LINK_KEY_FILE, Validator, expand_secret};
use crate::vocab::Secret;

/// `notifications.ack_links`: signed one-click acknowledge links.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAckLinks {
    pub enabled: Option<bool>,
    pub secret: Option<Spanned<Secret>>,
    pub ttl: Option<Spanned<String>>,
}

/// `notifications.ack_links`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckLinks {
    pub enabled: bool,
    /// The HMAC key; `None`: the daemon's generated `<data_dir>/link.key`.
    pub secret: Option<Secret>,
    /// How long a link works after the message is composed.
    pub ttl: Duration,
}

/// Shortest configured link secret, in bytes: 256 bits if written as random hex or base64.
pub const MIN_LINK_SECRET_BYTES: usize = 32;

/// Longest link lifetime: a link in an old mail must not work forever.
pub const MAX_LINK_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

impl Default for AckLinks {
    fn default() -> Self {
        AckLinks { enabled: true, secret: None, ttl: Duration::from_secs(24 * 3600) }
    }
}

/// `notifications.ack_links`: the secret at least [`MIN_LINK_SECRET_BYTES`] long, the
/// lifetime from 1s to [`MAX_LINK_TTL`].
pub fn validate(cx: &mut Validator<'_>, raw: Spanned<RawAckLinks>) -> AckLinks {
    let (at, raw) = (raw.referenced, raw.value);
    let mut links = AckLinks::default();
    if let Some(enabled) = raw.enabled {
        links.enabled = enabled;
    }
    if let Some(secret) = raw.secret {
        let mut value = secret.value;
        match expand_secret(&mut value, cx.env()) {
            Err(problems) => {
                problems
                    .into_iter()
                    .for_each(|p| cx.err(secret.referenced, "notifications.ack_links.secret", p));
            }
            Ok(()) if value.expose().len() < MIN_LINK_SECRET_BYTES => cx.err(
                secret.referenced,
                "notifications.ack_links.secret",
                format!(
                    "must be at least {MIN_LINK_SECRET_BYTES} bytes (e.g. `openssl rand -base64 32`); leave it out to have one generated in data_dir/{LINK_KEY_FILE}"
                ),
            ),
            Ok(()) => links.secret = Some(value),
        }
    }
    let ttl_at = raw.ttl.as_ref().map_or(at, |t| t.referenced);
    links.ttl = cx.duration(raw.ttl, "notifications.ack_links.ttl", links.ttl);
    if links.ttl < Duration::from_secs(1) || links.ttl > MAX_LINK_TTL {
        cx.err(ttl_at, "notifications.ack_links.ttl", "must be from 1s to 30 days");
        links.ttl = AckLinks::default().ttl;
    }
    links
}
