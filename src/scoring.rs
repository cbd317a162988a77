//! Scoring: the rules' verdict on each event, taken before the journal writer sees it.
//!
//! Ingest, declarations and drills all score here (ingest → normalize → **score** → journal),
//! so none of them imports another's handler to do it. The rules run against each event's
//! incident as of the last commit ([`OpenIndex`]), on the rule threads, and the event is
//! encoded for the store here too, in parallel, rather than on the single writer's thread.

use std::sync::Arc;

use crate::error::ApiError;
use crate::event::Event;
use crate::journal::{OpenIndex, Scored};
use crate::runtime::Runtime;
use crate::store::Encoded;

/// [`score`]s the events on a rule thread (see [`crate::rules::threads`]), so that rules never
/// run on the async workers that answer health checks and other senders. Without rules there
/// is nothing to run: scored here.
pub async fn score_on_rule_threads(
    runtime: &Arc<Runtime>,
    open: &Arc<OpenIndex>,
    events: Vec<Event>,
) -> Result<Vec<Scored>, ApiError> {
    if runtime.rules.is_empty() {
        return score(runtime, open, events);
    }
    let (rt, open) = (runtime.clone(), open.clone());
    crate::rules::threads::run(move || score(&rt, &open, events))
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
}

/// Evaluates the rules for each event against its incident as of the last commit, and encodes
/// it for the store (here, in parallel, rather than on the single writer's thread).
pub fn score(
    runtime: &Runtime,
    open: &OpenIndex,
    events: Vec<Event>,
) -> Result<Vec<Scored>, ApiError> {
    events
        .into_iter()
        .map(|event| {
            let view = open.view(&event);
            let evaluation = runtime.rules.evaluate(&event, &view, runtime.triage());
            let encoded = Encoded::new(event).map_err(|e| {
                ApiError::Unavailable(format!("the event could not be encoded: {e}"))
            })?;
            Ok(Scored::new(encoded, evaluation))
        })
        .collect()
}
