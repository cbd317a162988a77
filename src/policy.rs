//! Who hears about an incident: people, escalation policies, and how a decision picks one.
//!
//! Sits after the rules: the journal writer asks [`Policies::deliveries`] which (channel,
//! recipient, audience) triples each escalation step calls for, and writes one outbox row each.
//! A policy is a list of timed steps (see [`crate::escalation`] for how they fire).

use std::collections::BTreeMap;

use crate::notify::Channel;
use crate::outbox::Recipient;
use crate::rules::Decision;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// Whom one entry of a policy notifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A person from `people`, by id: email and/or SMS.
    Person(String),
    /// A webhook endpoint from `notifications.webhooks`, by name.
    Webhook(String),
    /// The notification log file (`notifications.log`).
    Log,
    /// Whoever holds this incident role (`incident_lead`, `legal_liaison`, …) on the incident:
    /// filled from the config's roles and rotations when it opened, changeable by people.
    Role(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub target: Target,
    pub channels: Vec<Channel>,
    /// Whose templates render the message: responder, legal, communications, executive,
    /// customer, or any name the template library has.
    pub audience: String,
}

/// One escalation step: whom to notify, then how long to wait for an acknowledgement before
/// the next step fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub notify: Vec<Entry>,
    /// `None` only on the last step of a policy that does not repeat.
    pub wait: Option<std::time::Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    /// At least one step. The first fires when the incident opens.
    pub steps: Vec<Step>,
    /// How many more times the whole list runs after the first pass while nobody acknowledges.
    pub repeat: u32,
    /// After an acknowledgement, escalate again (from the first step) if the incident is not
    /// resolved within this long. `None`: an acknowledgement stops escalation for good.
    pub reescalate_after: Option<std::time::Duration>,
}

impl Policy {
    /// The step after (`step`, `round`), if the policy has one.
    pub fn next(&self, step: u32, round: u32) -> Option<(u32, u32)> {
        if (step as usize) + 1 < self.steps.len() {
            Some((step + 1, round))
        } else if round < self.repeat {
            Some((0, round + 1))
        } else {
            None
        }
    }

    pub fn step(&self, step: u32) -> Option<&Step> {
        self.steps.get(step as usize)
    }
}

/// The validated people and policies of a config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policies {
    pub people: BTreeMap<String, Person>,
    pub policies: BTreeMap<String, Policy>,
    /// Severity name → policy, for decisions that name none.
    pub by_severity: BTreeMap<String, String>,
    /// The policy when neither the decision nor the severity names one.
    pub default: Option<String>,
}

/// One notification a policy calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub channel: Channel,
    pub recipient: Recipient,
    pub audience: String,
}

impl Policies {
    /// The policy for a decision: the one the rules chose, else the severity's, else the
    /// default. A rule naming an unknown policy falls back (and says so in the second value)
    /// rather than notifying nobody.
    pub fn choose(&self, decision: &Decision) -> (Option<&Policy>, Option<String>) {
        let mut note = None;
        if let Some(name) = &decision.policy {
            match self.policies.get(name) {
                Some(p) => return (Some(p), None),
                None => {
                    note = Some(format!(
                        "the rules chose policy `{name}`, which the config does not define; using the severity's default"
                    ))
                }
            }
        }
        let name = self.by_severity.get(&decision.severity).or(self.default.as_ref());
        (name.and_then(|n| self.policies.get(n)), note)
    }

    /// Expands one step's entries into one delivery per (channel, recipient), deduplicated.
    /// Role targets go to whoever holds the role in `roles` (role → person id); the roles
    /// nobody holds are returned second, so the caller can put them on the timeline.
    pub fn deliveries(
        &self,
        entries: &[Entry],
        roles: &BTreeMap<String, String>,
        log_path: Option<&str>,
    ) -> (Vec<Delivery>, Vec<String>) {
        let mut out: Vec<Delivery> = Vec::new();
        let mut unfilled = Vec::new();
        for entry in entries {
            let person = match &entry.target {
                Target::Person(id) => Some(id),
                Target::Role(role) => match roles.get(role) {
                    Some(id) => Some(id),
                    None => {
                        if !unfilled.contains(role) {
                            unfilled.push(role.clone());
                        }
                        continue;
                    }
                },
                _ => None,
            };
            for channel in &entry.channels {
                let recipient = match (&entry.target, channel) {
                    (Target::Person(_) | Target::Role(_), Channel::Email) => {
                        person.and_then(|id| self.people.get(id)).and_then(|p| {
                            p.email.as_ref().map(|a| Recipient {
                                person: Some(p.id.clone()),
                                address: a.clone(),
                            })
                        })
                    }
                    (Target::Person(_) | Target::Role(_), Channel::Sms) => {
                        person.and_then(|id| self.people.get(id)).and_then(|p| {
                            p.phone.as_ref().map(|a| Recipient {
                                person: Some(p.id.clone()),
                                address: a.clone(),
                            })
                        })
                    }
                    (Target::Webhook(name), Channel::Webhook) => {
                        Some(Recipient { person: None, address: name.clone() })
                    }
                    (Target::Log, Channel::Log) => {
                        log_path.map(|p| Recipient { person: None, address: p.to_string() })
                    }
                    // Validation refuses these combinations; nothing to send if one slips by.
                    _ => None,
                };
                if let Some(recipient) = recipient {
                    let d =
                        Delivery { channel: *channel, recipient, audience: entry.audience.clone() };
                    if !out.iter().any(|o| o.channel == d.channel && o.recipient == d.recipient) {
                        out.push(d);
                    }
                }
            }
        }
        (out, unfilled)
    }
}
