//! `drills:`: who hears about drill incidents (see [`super::live`]).

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::{Notifications, Validator};
use crate::policy::config::RawPolicyEntry;

/// `drills:`: `notify: recipients | policy`, and the recipients (policy notify entries).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrills {
    pub notify: Option<Spanned<String>>,
    #[serde(default)]
    pub recipients: Vec<Spanned<RawPolicyEntry>>,
}

/// `drills:`: the mode and the recipients that replace a policy's for drill incidents.
pub fn validate(
    cx: &mut Validator<'_>,
    raw: Option<Spanned<RawDrills>>,
    policies: &crate::policy::Policies,
    notifications: &Notifications,
    known_roles: &BTreeSet<String>,
) -> crate::drill::live::Drills {
    use crate::drill::live::{DrillNotify, Drills, Recipient};
    let mut out = Drills::default();
    let Some(raw) = raw else { return out };
    if let Some(mode) = raw.value.notify {
        out.notify = match mode.value.as_str() {
            "recipients" => DrillNotify::Recipients,
            "policy" => DrillNotify::Policy,
            other => {
                cx.err(
                    mode.referenced,
                    "drills.notify",
                    format!("`{other}` is not one of recipients, policy"),
                );
                DrillNotify::Recipients
            }
        };
    }
    for (i, e) in raw.value.recipients.into_iter().enumerate() {
        let path = format!("drills.recipients[{i}]");
        if e.value.role.is_some() {
            // A role is held by real on-call people: a drill must not page them this way.
            cx.err(
                e.referenced,
                &format!("{path}.role"),
                "drill recipients are people, webhooks or the log, not roles (a role is held by whoever is really on call)",
            );
            continue;
        }
        let audience = e.value.audience.clone();
        if let Some(entry) =
            crate::policy::config::entry(cx, &policies.people, e, &path, notifications, known_roles)
        {
            out.recipients.push(Recipient { entry, audience });
        }
    }
    out
}
