//! Reading requests: the body within its size limit and deadline, its content type, JSON
//! bodies and query strings, and the limits on what one request may hold or ask for.

use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::http::{HeaderMap, header};
use http_body_util::BodyExt;
use jiff::Timestamp;
use serde::de::DeserializeOwned;

use crate::config::Limits;
use crate::error::{ApiError, FieldError};

/// Most items one page may hold.
pub const MAX_PAGE: usize = 1000;

/// Longest note, title or review field, in bytes.
pub const MAX_TEXT: usize = 16 * 1024;

/// Checks the content type and reads the body within the size limit and the request deadline.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limits: &Limits,
) -> Result<Bytes, ApiError> {
    require_json(headers)?;
    let limit = limits.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        drain(body).await;
        return Err(ApiError::TooLarge { limit });
    }
    let read = async {
        let mut body = body;
        let mut out = Vec::with_capacity(declared.map_or(0, |n| n as usize));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                ApiError::malformed(format!("could not read the request body: {e}"))
            })?;
            if let Some(data) = frame.data_ref() {
                if out.len() + data.len() > limit {
                    drain(body).await;
                    return Err(ApiError::TooLarge { limit });
                }
                out.extend_from_slice(data);
            }
        }
        Ok(Bytes::from(out))
    };
    match tokio::time::timeout(limits.request_timeout, read).await {
        Err(_) => Err(ApiError::Timeout(limits.request_timeout)),
        Ok(result) => result,
    }
}

/// What [`drain`] reads of a refused body at most, and for how long.
const DRAIN_BYTES: usize = 8 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and discards the rest of a body refused as too large (up to [`DRAIN_BYTES`] and
/// [`DRAIN_TIME`]), so that a client still sending it can finish and read the 413. Closing
/// with its bytes unread would reset the connection, and the client would see a broken pipe
/// instead of the answer.
async fn drain(mut body: Body) {
    let mut left = DRAIN_BYTES;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len());
            if n >= left {
                break;
            }
            left -= n;
        }
    })
    .await;
}

pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType(
            "missing Content-Type; send `Content-Type: application/json`".into(),
        ));
    };
    let mime = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {mime:?} is not supported; send `Content-Type: application/json`"
        )))
    }
}

/// The body as JSON of type `T`, after checking the content type.
pub fn json_body<T: DeserializeOwned>(headers: &HeaderMap, bytes: &Bytes) -> Result<T, ApiError> {
    require_json(headers)?;
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::malformed(format!("invalid JSON body: {e}")))
}

/// The query string as `T`; a query that does not parse is 400.
pub fn query<T>(
    q: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| ApiError::malformed(e.body_text()))
}

/// A text field: not empty, at most [`MAX_TEXT`] bytes.
pub fn text(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid(vec![FieldError::new(field, "must not be empty")]));
    }
    if value.len() > MAX_TEXT {
        return Err(ApiError::invalid(vec![FieldError::new(
            field,
            format!("at most {MAX_TEXT} bytes"),
        )]));
    }
    Ok(())
}

/// An RFC 3339 time, or a date meaning the end of that day in UTC.
pub fn when(field: &str, raw: &str) -> Result<Timestamp, ApiError> {
    if let Ok(t) = raw.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(d) = raw.parse::<jiff::civil::Date>()
        && let Ok(t) = format!("{d}T23:59:59Z").parse::<Timestamp>()
    {
        return Ok(t);
    }
    Err(ApiError::invalid(vec![FieldError::new(
        field,
        format!(
            "{raw:?} is neither an RFC 3339 time (2026-05-01T17:00:00Z) nor a date (2026-05-01)"
        ),
    )]))
}
