//! Who hears about an incident: people, escalation policies, and how a decision picks one.
//!
//! Sits after the rules: the journal writer asks [`Policies::deliveries`] which (channel,
//! recipient, audience) triples a new incident's policy calls for, and writes one outbox row
//! each. A policy is the first step of what escalation grows into (timed steps, roles and
//! rotations come later); its targets are already a list of structured entries.

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub target: Target,
    pub channels: Vec<Channel>,
    /// Whose templates render the message: responder, legal, communications, executive,
    /// customer, or any name the template library has.
    pub audience: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub notify: Vec<Entry>,
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

    /// Expands a policy into one delivery per (channel, recipient), deduplicated.
    pub fn deliveries(&self, policy: &Policy, log_path: Option<&str>) -> Vec<Delivery> {
        let mut out: Vec<Delivery> = Vec::new();
        for entry in &policy.notify {
            for channel in &entry.channels {
                let recipient = match (&entry.target, channel) {
                    (Target::Person(id), Channel::Email) => self.people.get(id).and_then(|p| {
                        p.email
                            .as_ref()
                            .map(|a| Recipient { person: Some(id.clone()), address: a.clone() })
                    }),
                    (Target::Person(id), Channel::Sms) => self.people.get(id).and_then(|p| {
                        p.phone
                            .as_ref()
                            .map(|a| Recipient { person: Some(id.clone()), address: a.clone() })
                    }),
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
        out
    }
}
