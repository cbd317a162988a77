//! Signed one-click acknowledge links: a token that binds one incident, one person and an
//! expiry time, so the link in an email or SMS is the credential for exactly that action.
//!
//! Pure: no I/O and no clock (the caller passes `now`). The HTTP side is in [`crate::http::ack`].
//!
//! Token layout (version 1), base64url without padding:
//!
//! ```text
//! payload = 0x01 | incident id (u64, big-endian) | expires (unix seconds, u64, big-endian) | person id (UTF-8)
//! token   = base64url(payload | tag)
//! tag     = first 16 bytes of HMAC-SHA256(key, "tocsin/ack/v1\0" | payload)
//! ```
//!
//! The tag is checked (in constant time) before anything in the payload is believed, so a
//! changed byte anywhere is a bad signature, not a confusing parse error. 128 bits of tag keep
//! SMS links short and are far beyond guessing over HTTP.

pub mod config;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use jiff::Timestamp;
use sha2::Sha256;

use crate::incident::IncidentId;

const VERSION: u8 = 1;
/// Separates these MACs from anything else the same key might ever sign.
const DOMAIN: &[u8] = b"tocsin/ack/v1\0";
const TAG_LEN: usize = 16;
/// Version, incident id, expiry.
const HEADER_LEN: usize = 1 + 8 + 8;
/// Longest person id a token carries (config ids are short; this bounds the token).
pub const MAX_PERSON_LEN: usize = 128;
/// Longest token text accepted; anything longer is refused before decoding.
pub const MAX_TOKEN_LEN: usize = (HEADER_LEN + MAX_PERSON_LEN + TAG_LEN).div_ceil(3) * 4;

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub incident: IncidentId,
    pub person: String,
    /// Unix seconds after which the link no longer works.
    pub expires: i64,
}

impl Claim {
    pub fn expires_at(&self) -> Option<Timestamp> {
        Timestamp::from_second(self.expires).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a token this daemon could have issued (bad characters, wrong length).
    #[error("this is not a valid acknowledge link (it may have been cut off when copied)")]
    Malformed,
    /// Decodes, but the signature does not match: altered, or signed with another key.
    #[error("this acknowledge link is not valid: its signature does not match")]
    BadSignature,
    #[error("this acknowledge link expired at {}", fmt_expiry(*.0))]
    Expired(i64),
}

fn fmt_expiry(secs: i64) -> String {
    Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |t| t.to_string())
}

/// The signing key. `Debug` never shows it.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl Key {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Key {
        Key(bytes.into())
    }

    fn mac(&self) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any size");
        mac.update(DOMAIN);
        mac
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Mints a token for `claim`, or `None` if the person id is empty or longer than
/// [`MAX_PERSON_LEN`] bytes (no link then; the message still goes out).
pub fn mint(key: &Key, claim: &Claim) -> Option<String> {
    if claim.person.is_empty() || claim.person.len() > MAX_PERSON_LEN || claim.expires < 0 {
        return None;
    }
    let mut bytes = Vec::with_capacity(HEADER_LEN + claim.person.len() + TAG_LEN);
    bytes.push(VERSION);
    bytes.extend_from_slice(&claim.incident.to_be_bytes());
    bytes.extend_from_slice(&(claim.expires as u64).to_be_bytes());
    bytes.extend_from_slice(claim.person.as_bytes());
    let mut mac = key.mac();
    mac.update(&bytes);
    let tag = mac.finalize().into_bytes();
    bytes.extend_from_slice(&tag[..TAG_LEN]);
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// Checks a token's signature, then its expiry against `now`.
pub fn verify(key: &Key, token: &str, now: Timestamp) -> Result<Claim, LinkError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(LinkError::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| LinkError::Malformed)?;
    if bytes.len() < HEADER_LEN + 1 + TAG_LEN {
        return Err(LinkError::Malformed);
    }
    let (payload, tag) = bytes.split_at(bytes.len() - TAG_LEN);
    let mut mac = key.mac();
    mac.update(payload);
    mac.verify_truncated_left(tag).map_err(|_| LinkError::BadSignature)?;
    // Signed by us: the payload is ours, but stay defensive about versions.
    if payload[0] != VERSION {
        return Err(LinkError::Malformed);
    }
    let incident = u64::from_be_bytes(payload[1..9].try_into().expect("8 bytes"));
    let expires = u64::from_be_bytes(payload[9..17].try_into().expect("8 bytes"));
    let expires = i64::try_from(expires).map_err(|_| LinkError::Malformed)?;
    let person = std::str::from_utf8(&payload[HEADER_LEN..]).map_err(|_| LinkError::Malformed)?;
    if now.as_second() >= expires {
        return Err(LinkError::Expired(expires));
    }
    Ok(Claim { incident, person: person.to_string(), expires })
}

/// Everything needed to put acknowledge links into messages: the key, how long a link lives,
/// and the public base URL. Present in the runtime only when `notifications.dashboard_url` is
/// set and `notifications.ack_links.enabled` is true.
#[derive(Debug, Clone)]
pub struct AckLinks {
    pub key: Key,
    pub ttl: Duration,
    /// The public base URL, without a trailing `/`.
    pub base_url: String,
}

impl AckLinks {
    /// `{base_url}/ack/{token}` for `person` acknowledging `incident`, valid from `now` for
    /// the configured time.
    pub fn url(&self, incident: IncidentId, person: &str, now: Timestamp) -> Option<String> {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let expires = now.as_second().saturating_add(ttl.max(1));
        let token = mint(&self.key, &Claim { incident, person: person.to_string(), expires })?;
        Some(format!("{}/ack/{token}", self.base_url))
    }

    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Claim, LinkError> {
        verify(&self.key, token, now)
    }
}

/// `text` with the token of every `/ack/<token>` replaced by `<redacted>`: for log lines, for
/// a send error before it is stored (a gateway's answer may echo the message it got), and for
/// showing stored messages through the API. A viewer must not be able to pick up someone's
/// link and act as them.
///
/// The link is found however it was escaped on its way: percent-encoded (`%2Fack%2F`, also
/// twice: `%252F`), JSON-escaped (`\/ack\/`, `\u002f`), HTML-escaped (`&#x2f;`, `&#47;`,
/// `&sol;`, `&amp;#x2f;`), quoted-printable (`=2F`, and soft line breaks `=\r\n` anywhere in
/// the token, also as a log or a snippet shows them: `=\\r\\n`, `=  `).
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let b = text.as_bytes();
    // Every way of writing the first `/` starts with one of these.
    if !b.iter().any(|c| matches!(c, b'/' | b'\\' | b'%' | b'&' | b'=')) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !matches!(b[i], b'/' | b'\\' | b'%' | b'&' | b'=')
            || cuts.last().is_some_and(|&(_, end)| i < end)
        {
            i += 1;
            continue;
        }
        match token_after_mark(b, i) {
            Some((start, end)) => {
                cuts.push((start, end));
                i = end;
            }
            None => i += 1,
        }
    }
    if cuts.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in cuts {
        // Cuts fall on ASCII bytes (token characters, escapes), so on char boundaries.
        out.push_str(&text[at..start]);
        out.push_str("<redacted>");
        at = end;
    }
    out.push_str(&text[at..]);
    std::borrow::Cow::Owned(out)
}

/// One character of an escaped text: a decoded byte, or a soft line break (nothing).
enum Unit {
    Byte(u8),
    SoftBreak,
}

/// If `/ack/` (escaped any way) starts at `at` and a token follows, the byte range of the
/// token in `b` (soft breaks inside it included, none after it).
fn token_after_mark(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut i = at;
    for (n, want) in b"/ack/".iter().enumerate() {
        loop {
            let (unit, len) = decode_unit(b, i)?;
            i += len;
            match unit {
                Unit::SoftBreak if n > 0 => continue,
                Unit::SoftBreak => return None,
                Unit::Byte(c) if c.eq_ignore_ascii_case(want) => break,
                Unit::Byte(_) => return None,
            }
        }
    }
    let start = i;
    let mut end = i;
    while let Some((unit, len)) = decode_unit(b, i) {
        match unit {
            Unit::Byte(c) if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' => {
                i += len;
                end = i;
            }
            Unit::SoftBreak => i += len,
            Unit::Byte(_) => break,
        }
    }
    (end > start).then_some((start, end))
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// The unit at `b[i..]` and how many bytes it takes; `None` at the end.
fn decode_unit(b: &[u8], i: usize) -> Option<(Unit, usize)> {
    let c = *b.get(i)?;
    let at = |k: usize| b.get(i + k).copied();
    match c {
        // `\/`, `\\/`, `\u002f`: JSON (also JSON inside JSON).
        b'\\' => {
            let mut k = 1;
            while at(k) == Some(b'\\') {
                k += 1;
            }
            match at(k) {
                Some(b'/') => Some((Unit::Byte(b'/'), k + 1)),
                Some(b'u') => {
                    let digits = b.get(i + k + 1..i + k + 5)?;
                    let v = digits.iter().try_fold(0u32, |v, &d| Some(v * 16 + u32::from(hex(d)?)));
                    match v {
                        Some(v) if v < 0x80 => Some((Unit::Byte(v as u8), k + 5)),
                        _ => Some((Unit::Byte(c), 1)),
                    }
                }
                _ => Some((Unit::Byte(c), 1)),
            }
        }
        // `%2F`, and `%252F` (encoded twice).
        b'%' => {
            let mut k = 1;
            while at(k) == Some(b'2')
                && at(k + 1) == Some(b'5')
                && at(k + 2).and_then(hex).is_some()
                && at(k + 3).and_then(hex).is_some()
            {
                k += 2;
            }
            match (at(k).and_then(hex), at(k + 1).and_then(hex)) {
                (Some(h), Some(l)) => Some((Unit::Byte(h * 16 + l), k + 2)),
                _ => Some((Unit::Byte(c), 1)),
            }
        }
        // `&#x2f;`, `&#47;`, `&sol;`, and each once more escaped (`&amp;#x2f;`).
        b'&' => {
            let mut k = 1;
            while b.get(i + k..i + k + 4) == Some(b"amp;") {
                k += 4;
            }
            let rest = &b[(i + k).min(b.len())..];
            if rest.len() >= 4 && rest[..4].eq_ignore_ascii_case(b"sol;") {
                return Some((Unit::Byte(b'/'), k + 4));
            }
            if rest.first() == Some(&b'#') {
                let (radix, skip) = match rest.get(1) {
                    Some(b'x' | b'X') => (16, 2),
                    _ => (10, 1),
                };
                let digits: Vec<u8> = rest[skip..]
                    .iter()
                    .take_while(|d| (**d as char).is_digit(radix))
                    .copied()
                    .collect();
                if !digits.is_empty()
                    && digits.len() <= 6
                    && rest.get(skip + digits.len()) == Some(&b';')
                {
                    let v = u32::from_str_radix(std::str::from_utf8(&digits).ok()?, radix).ok()?;
                    if v < 0x80 {
                        return Some((Unit::Byte(v as u8), k + skip + digits.len() + 1));
                    }
                }
            }
            Some((Unit::Byte(c), 1))
        }
        // Quoted-printable: `=2F`, and a soft line break `=` + line end. A log shows the line
        // end escaped (`\r\n`), a one-line snippet as spaces.
        b'=' => {
            if let (Some(h), Some(l)) = (at(1).and_then(hex), at(2).and_then(hex)) {
                return Some((Unit::Byte(h * 16 + l), 3));
            }
            let mut k = 1;
            loop {
                match at(k) {
                    Some(b' ' | b'\t' | b'\r' | b'\n') => k += 1,
                    Some(b'\\') => {
                        let mut j = k;
                        while at(j) == Some(b'\\') {
                            j += 1;
                        }
                        if matches!(at(j), Some(b'r' | b'n')) {
                            k = j + 1;
                        } else {
                            break;
                        }
                    }
                    _ => break,
                }
            }
            if k > 1 { Some((Unit::SoftBreak, k)) } else { Some((Unit::Byte(c), 1)) }
        }
        _ => Some((Unit::Byte(c), 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::new(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    fn now() -> Timestamp {
        "2026-11-27T04:00:00Z".parse().unwrap()
    }

    fn claim(incident: IncidentId) -> Claim {
        Claim { incident, person: "ana".into(), expires: now().as_second() + 3600 }
    }

    #[test]
    fn roundtrip() {
        let token = mint(&key(), &claim(42)).unwrap();
        assert!(token.len() <= MAX_TOKEN_LEN);
        assert!(token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(verify(&key(), &token, now()), Ok(claim(42)));
    }

    #[test]
    fn any_changed_byte_is_a_bad_signature() {
        let token = mint(&key(), &claim(42)).unwrap();
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut changed = bytes.clone();
                changed[i] ^= flip;
                let forged = URL_SAFE_NO_PAD.encode(&changed);
                assert_eq!(verify(&key(), &forged, now()), Err(LinkError::BadSignature), "{i}");
            }
        }
        // Cut short or lengthened: the tag no longer covers what is there.
        let short = URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() - 1]);
        assert_eq!(verify(&key(), &short, now()), Err(LinkError::BadSignature));
        let mut long = bytes;
        long.push(0);
        assert_eq!(
            verify(&key(), &URL_SAFE_NO_PAD.encode(&long), now()),
            Err(LinkError::BadSignature)
        );
    }

    #[test]
    fn another_key_is_a_bad_signature() {
        let token = mint(&key(), &claim(42)).unwrap();
        let other = Key::new(b"another key, also long enough...".to_vec());
        assert_eq!(verify(&other, &token, now()), Err(LinkError::BadSignature));
    }

    #[test]
    fn expired() {
        let token = mint(&key(), &claim(42)).unwrap();
        let exp = claim(42).expires;
        let at = |s| Timestamp::from_second(s).unwrap();
        assert!(verify(&key(), &token, at(exp - 1)).is_ok());
        assert_eq!(verify(&key(), &token, at(exp)), Err(LinkError::Expired(exp)));
        assert_eq!(verify(&key(), &token, at(exp + 86_400)), Err(LinkError::Expired(exp)));
    }

    #[test]
    fn a_token_for_one_incident_never_names_another() {
        let one = mint(&key(), &claim(1)).unwrap();
        let two = mint(&key(), &claim(2)).unwrap();
        assert_ne!(one, two);
        assert_eq!(verify(&key(), &one, now()).unwrap().incident, 1);
        // Splicing incident 2 into token 1's payload breaks the signature.
        let mut bytes = URL_SAFE_NO_PAD.decode(&one).unwrap();
        bytes[1..9].copy_from_slice(&2u64.to_be_bytes());
        let forged = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(verify(&key(), &forged, now()), Err(LinkError::BadSignature));
        // So does moving the person.
        let mut bytes = URL_SAFE_NO_PAD.decode(&one).unwrap();
        let n = bytes.len() - TAG_LEN;
        bytes[n - 3..n].copy_from_slice(b"bob");
        let forged = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(verify(&key(), &forged, now()), Err(LinkError::BadSignature));
    }

    #[test]
    fn malformed() {
        for bad in ["", "abc", "not a token!", "%2e%2e", &"A".repeat(MAX_TOKEN_LEN + 4)] {
            assert_eq!(verify(&key(), bad, now()), Err(LinkError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn person_ids_too_long_or_empty_get_no_token() {
        let mut c = claim(1);
        c.person = "x".repeat(MAX_PERSON_LEN);
        let token = mint(&key(), &c).unwrap();
        assert!(token.len() <= MAX_TOKEN_LEN);
        assert_eq!(verify(&key(), &token, now()), Ok(c.clone()));
        c.person.push('x');
        assert_eq!(mint(&key(), &c), None);
        c.person.clear();
        assert_eq!(mint(&key(), &c), None);
    }

    #[test]
    fn ack_links_build_urls_that_verify() {
        let links = AckLinks {
            key: key(),
            ttl: Duration::from_secs(60),
            base_url: "https://t.example".into(),
        };
        let url = links.url(7, "ana", now()).unwrap();
        let token = url.strip_prefix("https://t.example/ack/").unwrap();
        let c = links.verify(token, now()).unwrap();
        assert_eq!((c.incident, c.person.as_str(), c.expires), (7, "ana", now().as_second() + 60));
        assert!(format!("{links:?}").contains("***"));
    }

    #[test]
    fn redact_hides_tokens_only() {
        assert_eq!(redact("no links"), "no links");
        assert_eq!(
            redact("Ack: https://t.example/ack/AbC-_9\nDetails: https://t.example/incidents/4"),
            "Ack: https://t.example/ack/<redacted>\nDetails: https://t.example/incidents/4"
        );
        assert_eq!(
            redact("<a href=\"https://t/ack/xyz\">x</a> /ack/"),
            "<a href=\"https://t/ack/<redacted>\">x</a> /ack/"
        );
    }

    #[test]
    fn redact_finds_tokens_however_escaped() {
        let token = "AQAAAAAAAAAqAAAAAGlAYWFuYVx3Zm9vYmFy-_Q";
        let (a, b) = token.split_at(20);
        for text in [
            format!("https://t.example/ack/{token}"),
            format!("Body=Ack%3A+https%3A%2F%2Ft.example%2Fack%2F{token}&To=%2B1"),
            format!("https%253A%252F%252Ft.example%252Fack%252F{token}"),
            format!(r#"{{"echo":"https:\/\/t.example\/ack\/{token}"}}"#),
            format!(r#"{{"echo":"https:\\/\\/t.example\\/ack\\/{token}"}}"#),
            format!(r"https:\u002f\u002ft.example\u002Fack\u002f{token}"),
            format!("https://t.example/ack/{a}=\r\n{b}"),
            format!("https://t.example/ack/{a}=\n{b}"),
            format!("https://t.example/a=\r\nck/{a}=\r\n{b}"),
            format!(r"https://t.example/ack/{a}=\r\n{b}"),
            format!("https://t.example/ack/{a}=  {b}"),
            format!("https:=2F=2Ft.example=2Fack=2F{token}"),
            format!("<a href=\"https:&#x2F;&#x2F;t.example&#x2F;ack&#x2F;{token}\">"),
            format!("https:&#47;&#47;t.example&#47;ack&#47;{token}"),
            format!("https:&sol;&sol;t.example&sol;ack&sol;{token}"),
            format!("https:&amp;#x2f;&amp;#x2f;t.example&amp;#x2f;ack&amp;#x2f;{token}"),
        ] {
            let clean = redact(&text);
            assert!(!clean.contains(a) && !clean.contains(b), "{text} -> {clean}");
            assert!(clean.contains("<redacted>"), "{text} -> {clean}");
        }
        // What surrounds a token stays; other text stays whole.
        assert_eq!(redact(&format!("x %2Fack%2F{token}&y=1")), "x %2Fack%2F<redacted>&y=1");
        for plain in ["a = b", "50% off", "&amp; /ackno/", "\\/ac", "/ack/ x", "q=1&r=%2F"] {
            assert_eq!(redact(plain), plain);
        }
        assert_eq!(redact("/ack/é"), "/ack/é");
        assert_eq!(redact("é/ack/x"), "é/ack/<redacted>");
    }

    // --- Config and key file -----------------------------------------------------------------

    fn config(text: &str, env: &[(&str, &str)]) -> Result<crate::config::Config, String> {
        let env: Vec<(String, String)> =
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let raw = crate::config::parse(text, "t.yaml").map_err(|e| e.to_string())?;
        crate::config::validate(raw, "t.yaml", &lookup).map_err(|e| e.to_string())
    }

    #[test]
    fn config_defaults_and_errors() {
        let c = config("{}\n", &[]).unwrap();
        assert_eq!(c.notifications.ack_links, crate::config::AckLinks::default());
        assert_eq!(c.notifications.ack_links.ttl, Duration::from_secs(86_400));

        let text = "notifications:\n  ack_links: {secret: \"${S}\", ttl: 2h}\n";
        let secret = "k".repeat(32);
        let c = config(text, &[("S", &secret)]).unwrap();
        let links = &c.notifications.ack_links;
        assert_eq!(links.secret.as_ref().map(|s| s.expose()), Some(secret.as_str()));
        assert_eq!(links.ttl, Duration::from_secs(7200));
        assert!(!format!("{c:?}").contains(&secret), "the secret is never in Debug");

        let short = config(text, &[("S", "too-short")]).unwrap_err();
        assert!(short.contains("t.yaml:2:") && short.contains("at least 32 bytes"), "{short}");
        assert!(!short.contains("too-short"), "never the value: {short}");
        let unset = config(text, &[]).unwrap_err();
        assert!(unset.contains("environment variable S is not set"), "{unset}");
        let zero = config("notifications:\n  ack_links: {ttl: 500ms}\n", &[]).unwrap_err();
        assert!(zero.contains("notifications.ack_links.ttl: must be from 1s"), "{zero}");
        let long = config("notifications:\n  ack_links: {ttl: 1000h}\n", &[]).unwrap_err();
        assert!(long.contains("30 days"), "{long}");
        let typo = config("notifications:\n  ack_links: {ttl: 1h, secert: x}\n", &[]).unwrap_err();
        assert!(typo.contains("secert"), "{typo}");
    }

    #[test]
    fn without_a_secret_the_key_is_generated_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let text = format!(
            "data_dir: \"{}\"\nnotifications:\n  dashboard_url: \"https://t.example/\"\n",
            data.display()
        );
        // `tocsin check` (dry run) writes nothing.
        let rt = crate::runtime::build(config(&text, &[]).unwrap(), true).unwrap();
        assert!(rt.ack_links.is_some());
        assert!(!data.join("link.key").exists());

        let first = crate::runtime::build(config(&text, &[]).unwrap(), false).unwrap();
        let links = first.ack_links.unwrap();
        assert_eq!(links.base_url, "https://t.example");
        let mode = std::fs::metadata(data.join("link.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let url = links.url(3, "ana", now()).unwrap();
        let token = url.rsplit('/').next().unwrap();
        // After a restart (a new runtime from the same files) old links still verify.
        let second = crate::runtime::build(config(&text, &[]).unwrap(), false).unwrap();
        assert_eq!(second.ack_links.unwrap().verify(token, now()).unwrap().incident, 3);

        // No dashboard_url, or switched off: no links at all.
        let off = format!("data_dir: \"{}\"\n", data.display());
        assert!(
            crate::runtime::build(config(&off, &[]).unwrap(), false).unwrap().ack_links.is_none()
        );
        let disabled = format!("{text}  ack_links: {{enabled: false}}\n");
        assert!(
            crate::runtime::build(config(&disabled, &[]).unwrap(), false)
                .unwrap()
                .ack_links
                .is_none()
        );
    }
}
