//! Live drills: an event marked as a drill goes through the real pipeline, and everything it
//! would notify goes to the configured drill recipients instead of the policy's targets.
//!
//! The journal writer asks [`route`] for every set of deliveries it is about to queue for an
//! incident (escalation steps, roles the triage brings in, reminders). For a real incident, or
//! with `drills.notify: policy`, the deliveries pass unchanged; for a drill incident they are
//! replaced by one delivery per drill recipient and audience, so the drill mailbox sees the
//! same templates (responder, legal, …) the real people would have got. With no recipients
//! configured a drill notifies nobody: a drill never pages real on-call unless configured to.

use crate::incident::Incident;
use crate::policy::{Delivery, Entry, Policies};

/// `drills.notify`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DrillNotify {
    /// Drill incidents notify `drills.recipients` only (nobody when the list is empty).
    #[default]
    Recipients,
    /// Drill incidents notify whoever the policy names, like real ones (still labelled as
    /// drills): a full-scale exercise.
    Policy,
}

/// One drill recipient: a person, webhook or the log, with the audience it gets (`None`: the
/// audience the real recipient would have had).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub entry: Entry,
    pub audience: Option<String>,
}

/// The `drills:` config section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drills {
    pub notify: DrillNotify,
    pub recipients: Vec<Recipient>,
}

/// The deliveries to queue for `incident` instead of `deliveries`, and a timeline line saying
/// what the drill routing did (`None` when it changed nothing).
pub fn route(
    drills: &Drills,
    policies: &Policies,
    incident: &Incident,
    deliveries: Vec<Delivery>,
    log_path: Option<&str>,
) -> (Vec<Delivery>, Option<String>) {
    if !incident.drill || drills.notify == DrillNotify::Policy || deliveries.is_empty() {
        return (deliveries, None);
    }
    let mut out: Vec<Delivery> = Vec::new();
    for d in &deliveries {
        for r in &drills.recipients {
            let mut entry = r.entry.clone();
            entry.audience = r.audience.clone().unwrap_or_else(|| d.audience.clone());
            let roles = Default::default();
            for nd in policies.deliveries(std::slice::from_ref(&entry), &roles, log_path).0 {
                let same = |o: &Delivery| {
                    o.channel == nd.channel
                        && o.recipient == nd.recipient
                        && o.audience == nd.audience
                };
                if !out.iter().any(same) {
                    out.push(nd);
                }
            }
        }
    }
    let instead: Vec<String> = deliveries.iter().map(describe).collect();
    let note = if out.is_empty() {
        format!(
            "drill: held back {} notification(s) the policy calls for ({}); no drills.recipients are configured, so nobody is told",
            deliveries.len(),
            instead.join(", ")
        )
    } else {
        format!(
            "drill: {} notification(s) the policy calls for ({}) go to the drill recipients instead",
            deliveries.len(),
            instead.join(", ")
        )
    };
    (out, Some(note))
}

fn describe(d: &Delivery) -> String {
    let who = d.recipient.person.as_deref().unwrap_or(&d.recipient.address);
    format!("{} to {who} ({})", d.channel.as_str(), d.audience)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Channel;
    use crate::outbox::Recipient as To;
    use crate::policy::{Person, Target};

    fn policies() -> Policies {
        let mut p = Policies::default();
        for id in ["ana", "box"] {
            p.people.insert(
                id.into(),
                Person {
                    id: id.into(),
                    name: id.into(),
                    email: Some(format!("{id}@example.com")),
                    phone: None,
                },
            );
        }
        p
    }

    fn to_ana(audience: &str) -> Delivery {
        Delivery {
            channel: Channel::Email,
            recipient: To { person: Some("ana".into()), address: "ana@example.com".into() },
            audience: audience.into(),
        }
    }

    fn incident(drill: bool) -> Incident {
        let ctx = crate::normalize::Context::new("s", jiff::Timestamp::UNIX_EPOCH);
        let event =
            crate::normalize::canonical(br#"{"summary": "x"}"#, ctx).unwrap().events[0].clone();
        let triage = crate::rules::Triage::default();
        let rules = crate::rules::RuleSet::empty(&triage.limits);
        let eval = rules.evaluate(&event, &crate::incident::new_view(&event), &triage);
        match crate::incident::apply(None, &event, &eval, || 1) {
            crate::incident::Outcome::Opened(mut i, _) => {
                i.drill = drill;
                i
            }
            _ => unreachable!("a trigger opens an incident"),
        }
    }

    #[test]
    fn drill_deliveries_go_to_the_drill_recipients_keeping_the_audience() {
        let drills = Drills {
            notify: DrillNotify::Recipients,
            recipients: vec![Recipient {
                entry: Entry {
                    target: Target::Person("box".into()),
                    channels: vec![Channel::Email],
                    audience: "responder".into(),
                },
                audience: None,
            }],
        };
        let p = policies();
        let all = vec![to_ana("responder"), to_ana("legal")];
        let (out, note) = route(&drills, &p, &incident(true), all.clone(), None);
        let got: Vec<_> =
            out.iter().map(|d| (d.recipient.address.as_str(), d.audience.as_str())).collect();
        assert_eq!(got, [("box@example.com", "responder"), ("box@example.com", "legal")]);
        assert!(note.unwrap().contains("email to ana (legal)"));
        // A real incident and `notify: policy` keep the policy's deliveries.
        assert_eq!(route(&drills, &p, &incident(false), all.clone(), None).0, all);
        let full = Drills { notify: DrillNotify::Policy, ..drills };
        assert_eq!(route(&full, &p, &incident(true), all.clone(), None).0, all);
        // Nobody configured: nobody is told.
        let (out, note) = route(&Drills::default(), &p, &incident(true), all, None);
        assert!(out.is_empty());
        assert!(note.unwrap().contains("held back 2"));
    }
}
