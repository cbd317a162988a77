//! `reviews:`: which severities open an after-action review on resolve, and how often an
//! overdue action item reminds its owner.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::Validator;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReviews {
    pub severities: Option<Spanned<Vec<String>>>,
    pub remind_every: Option<Spanned<String>>,
}

/// `reviews:` into the escalation settings' `severities` and `remind_every` (each left as it
/// is when its key is left out).
pub fn validate(
    cx: &mut Validator<'_>,
    raw: Option<Spanned<RawReviews>>,
    known_severity: &dyn Fn(&str) -> bool,
    severities: &mut Vec<String>,
    remind_every: &mut Duration,
) {
    if let Some(r) = raw {
        if let Some(sevs) = r.value.severities {
            for sev in &sevs.value {
                if !known_severity(sev) {
                    cx.err(
                        sevs.referenced,
                        "reviews.severities",
                        format!("`{sev}` is not a severity in triage.severities"),
                    );
                }
            }
            *severities = sevs.value;
        }
        if let Some(every) = r.value.remind_every {
            let at = every.referenced;
            let d = cx.duration(Some(every), "reviews.remind_every", *remind_every);
            if d < Duration::from_secs(60) {
                cx.err(at, "reviews.remind_every", "must be at least 1m");
            } else {
                *remind_every = d;
            }
        }
    }
}
