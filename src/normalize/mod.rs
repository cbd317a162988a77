//! Normalization: every ingest wire format becomes canonical [`Event`]s here, one file per
//! format. Pure functions of (body, source, clock): no I/O, no shared state.
//!
//! Second stage of the flow: HTTP ingest → **normalize** → journal.
//!
//! INTERFACE SKELETON — being written.

use jiff::Timestamp;

use crate::error::FieldError;
use crate::event::Event;

/// Who sent the body and when it arrived: the parts of an event that never come from the body.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub source: &'a str,
    pub now: Timestamp,
}

/// The outcome of normalizing one request body that was at least well-formed.
#[derive(Debug, Default)]
pub struct Normalized {
    /// Events to store, in the order they appeared in the body.
    pub events: Vec<Event>,
    /// Items of a batch that were rejected, each naming its index and field, e.g.
    /// `alerts[3].labels: must not be empty`. The valid items are still stored.
    pub rejected: Vec<FieldError>,
}
// SHIM
use crate::error::ApiError;
pub fn alertmanager_v2(_b: &[u8], _c: Context) -> Result<Normalized, ApiError> {
    todo!()
}
pub fn alertmanager_webhook(_b: &[u8], _c: Context) -> Result<Normalized, ApiError> {
    todo!()
}
pub fn report(_b: &[u8], _c: Context) -> Result<Normalized, ApiError> {
    todo!()
}
pub fn canonical(_b: &[u8], _c: Context) -> Result<Normalized, ApiError> {
    todo!()
}
pub struct PagerdutyEvent;
impl PagerdutyEvent {
    pub fn routing_key(&self) -> &str {
        ""
    }
    pub fn into_normalized(self, _c: Context) -> Result<Normalized, ApiError> {
        todo!()
    }
}
pub fn parse_pagerduty(_b: &[u8]) -> Result<PagerdutyEvent, ApiError> {
    todo!()
}
