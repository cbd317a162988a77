//! HTTP-facing errors: one enum of what can go wrong with a request, each with a stable
//! machine-readable code, a status, and a message that says what was wrong and what to do.
//!
//! Every handler returns `Result<_, ApiError>`; the body is always JSON
//! `{"error": code, "message": …}` (plus `field` / `errors` where known).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A problem in an operator's file (a rule script, a template), with where it is. `Display`
/// is `file:line:column: message`, the form editors and terminals link to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedError {
    pub file: std::path::PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for LocatedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for LocatedError {}

/// Most characters of a sender's value an error message quotes (cut with a `…` after that).
pub const QUOTED_CHARS: usize = 64;

/// A problem with one field of a request body, found during normalization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON path of the field, e.g. `alerts[2].labels` or `payload.severity`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON, or not the JSON shape the endpoint takes (400).
    #[error("{message}")]
    Malformed { message: String, errors: Vec<FieldError> },
    /// The body is well-formed but a value is not acceptable (422).
    #[error("{message}")]
    Invalid { message: String, errors: Vec<FieldError> },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The path exists, the method does not (the answer's `Allow` header lists those that do).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request conflicts with the current state (acknowledging a resolved incident).
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body was not received within {0:?}")]
    Timeout(std::time::Duration),
    /// `limit` completes "rate limit for …": `source checkout`, `SMS replies`.
    #[error("rate limit for {limit} exceeded; retry after {retry_after_secs} s")]
    RateLimited { limit: String, retry_after_secs: u64 },
    /// The event could not be made durable right now (store error, disk full, writer overloaded).
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn malformed(message: impl Into<String>) -> Self {
        ApiError::Malformed { message: message.into(), errors: Vec::new() }
    }

    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let message = summarize(&errors);
        ApiError::Invalid { message, errors }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Malformed { .. } => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable code for the `error` field and the `reason` label of the rejection metric.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Malformed { .. } => "malformed",
            ApiError::Invalid { .. } => "invalid",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Timeout(_) => "timeout",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
        }
    }

    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            ApiError::Malformed { errors, .. } | ApiError::Invalid { errors, .. } => errors,
            _ => &[],
        }
    }
}

/// The `error` code for a status, for answers that did not come from an [`ApiError`] (the
/// HTTP framework's own refusals); the same words [`ApiError::code`] uses.
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "malformed",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    }
}

/// One message naming every bad field, so a human reading only `message` sees them all.
pub fn summarize(errors: &[FieldError]) -> String {
    match errors {
        [] => "request is invalid".to_string(),
        [one] => one.to_string(),
        many => {
            let parts: Vec<String> = many.iter().map(ToString::to_string).collect();
            format!("{} problems: {}", many.len(), parts.join("; "))
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let errors = self.field_errors();
        let body = Body {
            error: self.code(),
            message: self.to_string(),
            field: errors.first().map(|e| e.field.as_str()),
            errors,
        };
        let mut resp = (self.status(), axum::Json(&body)).into_response();
        match &self {
            ApiError::RateLimited { retry_after_secs, .. } => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::Unauthorized(_) => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Unavailable(_) => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // The rest of the body was not read, so the server closes the connection: saying
            // so keeps a client's pool from sending its next request into a closing socket.
            ApiError::TooLarge { .. } => {
                resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }
}

/// "a" or "an" before `word` in a message, by how it is said: by its first letter ("an
/// admin", "an unspecified address", "a loopback address"), except for acronyms said letter by
/// letter ("an SMS", "an HTTP", "a URL": the first letter's name decides), words whose `u` or
/// `eu` sounds like "you" ("a unique", "a user", "a European") or whose `o` sounds like "w"
/// ("a one-time"), and a silent `h` ("an hour", "an honest").
pub fn a_or_an(word: &str) -> &'static str {
    let lower = word.to_ascii_lowercase();
    let letters: String = word.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    // An all-capital acronym of two or more letters (SMS, HTTP, API, URL): the first letter's
    // name decides (JSON, YAML are said as words, but start with a consonant either way).
    if letters.len() >= 2 && letters.chars().all(|c| c.is_ascii_uppercase()) {
        let first = letters.chars().next().unwrap_or('x');
        // The names of A E F H I L M N O R S X start with a vowel sound.
        return if "AEFHILMNORSX".contains(first) { "an" } else { "a" };
    }
    const YOU: [&str; 9] = ["uni", "use", "usu", "uti", "ure", "uri", "euro", "eu", "ubiq"];
    const SILENT_H: [&str; 4] = ["hour", "honest", "honor", "heir"];
    const WUN: [&str; 2] = ["one", "once"];
    if YOU.iter().any(|p| lower.starts_with(p))
        || WUN.iter().any(|p| lower.starts_with(p))
        || lower.starts_with("user")
    {
        return "a";
    }
    if SILENT_H.iter().any(|p| lower.starts_with(p)) {
        return "an";
    }
    match lower.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

#[cfg(test)]
mod article_tests {
    use super::a_or_an;

    #[test]
    fn articles_follow_the_first_letter() {
        assert_eq!(a_or_an("admin"), "an");
        assert_eq!(a_or_an("unspecified"), "an");
        assert_eq!(a_or_an("viewer"), "a");
        assert_eq!(a_or_an("loopback"), "a");
    }

    #[test]
    fn articles_follow_the_sound() {
        for (word, article) in [
            ("SMS", "an"),
            ("HTTP", "an"),
            ("HTTPS", "an"),
            ("API", "an"),
            ("MX", "an"),
            ("URL", "a"),
            ("JSON", "a"),
            ("TLS", "a"),
            ("unique", "a"),
            ("user", "a"),
            ("unknown", "an"),
            ("unspecified", "an"),
            ("hour", "an"),
            ("honest", "an"),
            ("host", "a"),
            ("one-time", "a"),
            ("open", "an"),
            ("email", "an"),
            ("webhook", "a"),
        ] {
            assert_eq!(a_or_an(word), article, "{word}");
        }
    }
}
