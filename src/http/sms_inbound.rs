//! `POST /api/v1/sms/inbound`: acknowledging by SMS reply, through Twilio's incoming-message
//! webhook.
//!
//! A person replies `ACK 42` to the number the page came from; Twilio posts the message here
//! (form-encoded, signed with the account's auth token in `X-Twilio-Signature`). The
//! signature is the credential: HMAC-SHA1 over the URL Twilio called (taken as
//! `notifications.dashboard_url` + `/api/v1/sms/inbound` + the query, since a proxy may sit in
//! front) followed by every form parameter, name then value, sorted by name. The sender's
//! number must be a person's `phone`, and that person must have been notified about the
//! incident; the acknowledgement is recorded as `sms:<person>`. The answer to a message Twilio
//! signed is TwiML: a short reply to a known person, nothing to unknown numbers (no texts to
//! strangers, no cost). Refusals (not enabled, a body that is not a form, a bad signature, too
//! many requests) are Tocsin's JSON errors, like every other route's: Twilio only logs a
//! non-2xx answer (its error 11200) and texts nobody, and whoever debugs the webhook reads why.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use crate::error::ApiError;
use crate::http::app::App;
use crate::incident::IncidentId;
use crate::journal::{ActError, PersonAction};
use crate::notify::SmsProvider;
use crate::store::OutboxReader;

/// The path Twilio's messaging webhook must be set to (under `notifications.dashboard_url`).
pub const PATH: &str = "/api/v1/sms/inbound";
/// Largest reply body taken (413 beyond): Twilio's form for one message of up to 1600
/// characters, percent-encoded, fits with room to spare; far below the ingest limit, as the
/// route is open to anyone who can reach it.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Whether `signature` (the `X-Twilio-Signature` header) is Twilio's signature of `url` and
/// `params` under `auth_token`. Constant-time.
pub fn twilio_signature_valid(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> bool {
    let Ok(given) = BASE64.decode(signature.trim()) else { return false };
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac =
        Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac.verify_slice(&given).is_ok()
}

/// Decodes an `application/x-www-form-urlencoded` body (`+` is a space, `%XX` a byte).
/// `None` if a name or value is not UTF-8 once decoded.
pub fn parse_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    fn decode(raw: &[u8]) -> Option<String> {
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            match raw[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < raw.len() => {
                    let hex = std::str::from_utf8(&raw[i + 1..i + 3]).ok()?;
                    match u8::from_str_radix(hex, 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).ok()
    }
    body.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &b""[..]),
            };
            Some((decode(name)?, decode(value)?))
        })
        .collect()
}

/// What a reply asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ack(IncidentId),
    /// Anything else: answered with how to acknowledge.
    Unknown,
}

/// `ACK 42`, `ack #42`, `Ack 42.`: case-insensitive, the incident number required.
pub fn parse_command(body: &str) -> Command {
    let mut words = body.split_whitespace();
    let verb = words.next().unwrap_or_default();
    if !(verb.eq_ignore_ascii_case("ack") || verb.eq_ignore_ascii_case("acknowledge")) {
        return Command::Unknown;
    }
    let Some(id) = words.next() else { return Command::Unknown };
    if words.next().is_some() {
        return Command::Unknown;
    }
    let id = id.trim_start_matches('#').trim_end_matches(['.', '!']);
    id.parse().map_or(Command::Unknown, Command::Ack)
}

/// `POST /api/v1/sms/inbound`.
pub async fn inbound(
    State(app): State<Arc<App>>,
    client: crate::http::clients::Client,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let too_many = |secs: u64| {
        ApiError::RateLimited { limit: "SMS replies".into(), retry_after_secs: secs }
            .into_response()
    };
    // Unsigned or forged replies are charged to their client, signed ones never: a flood of
    // bad requests cannot make Twilio's real ones answer 429.
    let from_client = crate::http::connections::AddrKey::of(client.0);
    if let Some(wait) = app.failures.blocked(&from_client) {
        return too_many(crate::http::clients::retry_after_secs(wait));
    }
    let rt = app.runtime.load();
    let n = &rt.config.notifications;
    let (Some(base), Some(sms)) = (&n.dashboard_url, &n.sms) else {
        return not_enabled();
    };
    let Some(auth_token) = sms.auth_token.as_ref().filter(|_| sms.provider == SmsProvider::Twilio)
    else {
        return not_enabled();
    };
    let mut url = format!("{base}{PATH}");
    if let Some(q) = uri.query() {
        url.push('?');
        url.push_str(q);
    }
    let Some(params) = parse_form(&body) else {
        app.failures.fail(from_client);
        return ApiError::malformed(
            "the body is not a form (application/x-www-form-urlencoded, UTF-8 once decoded)",
        )
        .into_response();
    };
    let signature =
        headers.get("x-twilio-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !twilio_signature_valid(auth_token.expose(), &url, &params, signature) {
        tracing::info!(client = %client.0, "SMS reply refused: X-Twilio-Signature missing or wrong");
        app.failures.fail(from_client);
        return ApiError::Forbidden("X-Twilio-Signature is missing or does not match".into())
            .into_response();
    }
    if app.sms_limiter.check().is_err() {
        return too_many(2);
    }
    let field = |name: &str| {
        params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
    };
    let from = field("From");
    let Some(person) =
        rt.config.policies.people.values().find(|p| p.phone.as_deref() == Some(from)).cloned()
    else {
        tracing::info!("SMS reply from a number not in people; ignored");
        return twiml(None);
    };
    let id = match parse_command(field("Body")) {
        Command::Ack(id) => id,
        Command::Unknown => {
            return twiml(Some(
                "To acknowledge, reply ACK followed by the incident number, e.g. ACK 42.",
            ));
        }
    };
    // Only incidents this person was paged about: a reply is as narrow as a link.
    let store = app.store.clone();
    let who = person.id.clone();
    let paged = tokio::task::spawn_blocking(move || {
        store
            .incident_notifications(id)
            .map(|list| list.iter().any(|n| n.recipient.person.as_deref() == Some(who.as_str())))
    })
    .await;
    match paged {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            return twiml(Some(&format!(
                "Incident #{id} was not sent to you; acknowledge it in Tocsin instead."
            )));
        }
        _ => return twiml(Some("Tocsin could not record that right now; please try again.")),
    }
    let by = format!("sms:{}", person.id);
    let reply = match app.journal.act(id, PersonAction::Acknowledge, by.clone()).await {
        Ok(Ok(_)) => {
            tracing::info!(incident = id, by, "acknowledged by SMS reply");
            format!("Acknowledged #{id}. Thank you.")
        }
        Ok(Err(ActError::Refused(e))) => format!("#{id} not acknowledged: {e}."),
        Ok(Err(ActError::Invalid(e))) => format!("#{id} not acknowledged: {e}."),
        Ok(Err(ActError::NotFound(_))) => format!("There is no incident #{id}."),
        Err(_) => "Tocsin could not record that right now; please try again.".to_string(),
    };
    twiml(Some(&reply))
}

fn not_enabled() -> Response {
    ApiError::NotFound(
        "SMS replies need notifications.sms with provider twilio and notifications.dashboard_url"
            .into(),
    )
    .into_response()
}

/// A TwiML answer: one reply message, or none.
fn twiml(message: Option<&str>) -> Response {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>");
    if let Some(text) = message {
        xml.push_str("<Message>");
        for c in text.chars() {
            match c {
                '<' => xml.push_str("&lt;"),
                '>' => xml.push_str("&gt;"),
                '&' => xml.push_str("&amp;"),
                '"' => xml.push_str("&quot;"),
                '\'' => xml.push_str("&apos;"),
                c => xml.push(c),
            }
        }
        xml.push_str("</Message>");
    }
    xml.push_str("</Response>\n");
    let mut r = (StatusCode::OK, xml).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml; charset=utf-8"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn twilio_signature_matches_an_independent_computation() {
        // Computed with Python: base64(hmac.new(b"12345", url + "Body" + "ACK 42" + "From" +
        // "+15551234567" + "To" + "+15005550006", sha1).digest()).
        let url = "https://tocsin.example.com/api/v1/sms/inbound";
        let params = pairs(&[("To", "+15005550006"), ("From", "+15551234567"), ("Body", "ACK 42")]);
        let expected = "Ew1u5S2NNI4YpOuoviWnbqLuPxo=";
        assert!(twilio_signature_valid("12345", url, &params, expected));
        assert!(!twilio_signature_valid("12346", url, &params, expected));
        assert!(!twilio_signature_valid("12345", &format!("{url}?x=1"), &params, expected));
        let mut changed = params.clone();
        changed[2].1 = "ACK 43".into();
        assert!(!twilio_signature_valid("12345", url, &changed, expected));
        assert!(!twilio_signature_valid("12345", url, &params, ""));
        assert!(!twilio_signature_valid("12345", url, &params, "not base64!"));
    }

    #[test]
    fn forms_decode() {
        assert_eq!(
            parse_form(b"Body=ACK+42&From=%2B15551234567&Empty=&Flag").unwrap(),
            pairs(&[("Body", "ACK 42"), ("From", "+15551234567"), ("Empty", ""), ("Flag", "")])
        );
        assert_eq!(parse_form(b"a=%zz&b=%4").unwrap(), pairs(&[("a", "%zz"), ("b", "%4")]));
        assert_eq!(parse_form(b"a=%C3%A9").unwrap(), pairs(&[("a", "\u{e9}")]));
        assert_eq!(parse_form(b"a=%FF"), None);
        assert_eq!(parse_form(b"").unwrap(), vec![]);
    }

    #[test]
    fn commands() {
        for ok in ["ACK 42", "ack 42", " Ack #42 ", "ACK 42.", "acknowledge 42"] {
            assert_eq!(parse_command(ok), Command::Ack(42), "{ok:?}");
        }
        for bad in ["", "ACK", "ACK forty", "42", "ACK 42 43", "STOP", "ACKNOWLEDGED 42"] {
            assert_eq!(parse_command(bad), Command::Unknown, "{bad:?}");
        }
    }
}
