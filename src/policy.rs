//! Who hears about an incident: people, escalation policies, and how a decision picks one.
//!
//! Sits after the rules: the journal writer asks [`Policies::deliveries`] which (channel,
//! recipient, audience) triples each escalation step calls for, and writes one outbox row each.
//! A policy is a list of timed steps (see [`crate::escalation`] for how they fire).

pub mod config;

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

    /// How many escalation steps it fires, at most, while nobody acknowledges (its steps,
    /// repeats counted): what "escalates less" means for `escalation.severity_floor`.
    pub fn pages(&self) -> u64 {
        self.steps.len() as u64 * (u64::from(self.repeat) + 1)
    }
}

/// Which policy an incident escalates by, and what chose it: shown on the incident so that a
/// rule's choice is never a silent one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Choice {
    /// The policy escalation follows; `None`: no policy notifies anyone.
    pub policy: Option<String>,
    /// What chose it: `rule`, `severity` (`severity_policies`), `default` (`default_policy`),
    /// `floor` (the severity's, kept over a rule's weaker one) or `none`.
    pub by: String,
    /// The rule that named a policy, when a rule did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The rule's policy when the severity floor kept the severity's: its first step is paged
    /// as well, so the team the rule routes to still hears at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub also: Option<String>,
    /// One sentence for people.
    pub why: String,
}

/// The rule that set the decision's policy to `name`: its reason line reads `RULE: policy NAME`.
fn rule_that_chose(decision: &Decision, name: &str) -> Option<String> {
    let said = format!(": policy {name}");
    decision.reasons.iter().rev().find_map(|r| {
        let (rule, rest) = r.split_once(": ")?;
        let rest = format!(": {rest}");
        (rest == said || rest.starts_with(&format!("{said} ("))).then(|| rule.to_string())
    })
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

impl Delivery {
    /// `email to ana (responder)`: for timeline entries.
    pub fn describe(&self) -> String {
        let who = self.recipient.person.as_deref().unwrap_or(&self.recipient.address);
        format!("{} to {who} ({})", self.channel.as_str(), self.audience)
    }
}

impl Policies {
    /// Picks the incident's policy for its decision (recording the choice, and why, on the
    /// incident) and returns it. `floor`: the config's `escalation.severity_floor`.
    pub fn choose_for(
        &self,
        incident: &mut crate::incident::Incident,
        floor: bool,
    ) -> Option<Policy> {
        let choice = self.choice(&incident.decision, floor);
        let policy = choice.policy.as_ref().and_then(|n| self.policies.get(n)).cloned();
        incident.policy_choice = Some(choice);
        policy
    }

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
                    ));
                }
            }
        }
        let name = self.by_severity.get(&decision.severity).or(self.default.as_ref());
        (name.and_then(|n| self.policies.get(n)), note)
    }

    /// The policy for a decision, and why: the one a rule chose, else the severity's
    /// (`severity_policies`), else `default_policy`. With `floor` (`escalation.severity_floor`)
    /// a rule cannot go below the severity's policy: when the rule's fires fewer steps
    /// ([`Policy::pages`]), the severity's escalates and the rule's first step joins the first
    /// page. A rule naming an unknown policy falls back rather than notifying nobody.
    pub fn choice(&self, decision: &Decision, floor: bool) -> Choice {
        let severity = &decision.severity;
        let by_severity = self.by_severity.get(severity);
        let mut unknown = String::new();
        if let Some(name) = &decision.policy {
            let rule = rule_that_chose(decision, name);
            let chooser = match &rule {
                Some(r) => format!("rule {r}"),
                None => "the rules".to_string(),
            };
            match self.policies.get(name) {
                None => {
                    unknown = format!(
                        "{chooser} chose policy `{name}`, which the config does not define; "
                    );
                }
                Some(p) => {
                    if let Some(base_name) = by_severity.filter(|b| *b != name)
                        && let Some(base) = self.policies.get(base_name)
                    {
                        if floor && p.pages() < base.pages() {
                            return Choice {
                                policy: Some(base_name.clone()),
                                by: "floor".into(),
                                rule,
                                also: Some(name.clone()),
                                why: format!(
                                    "{chooser} chose `{name}` ({} escalation step(s)), which escalates less than severity_policies.{severity} `{base_name}` ({}); severity policies are a floor (escalation.severity_floor), so `{base_name}` escalates and `{name}`'s first step is paged with its first",
                                    p.pages(),
                                    base.pages()
                                ),
                            };
                        }
                        return Choice {
                            policy: Some(name.clone()),
                            by: "rule".into(),
                            rule,
                            also: None,
                            why: format!(
                                "chosen by {chooser}, instead of severity_policies.{severity} `{base_name}`"
                            ),
                        };
                    }
                    return Choice {
                        policy: Some(name.clone()),
                        by: "rule".into(),
                        rule,
                        also: None,
                        why: format!("chosen by {chooser}"),
                    };
                }
            }
        }
        let (policy, by, why) = match (by_severity, &self.default) {
            (Some(p), _) => {
                (Some(p.clone()), "severity", format!("severity_policies.{severity} for a {severity} incident"))
            }
            (None, Some(p)) => (Some(p.clone()), "default", "default_policy".to_string()),
            (None, None) => (
                None,
                "none",
                "no default_policy, severity_policies entry or rule-chosen policy: nobody is notified"
                    .to_string(),
            ),
        };
        let policy = policy.filter(|p| self.policies.contains_key(p));
        Choice { policy, by: by.into(), rule: None, also: None, why: format!("{unknown}{why}") }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, steps: usize, repeat: u32) -> Policy {
        let step = Step {
            notify: vec![Entry {
                target: Target::Person(name.into()),
                channels: vec![Channel::Email],
                audience: "responder".into(),
            }],
            wait: Some(std::time::Duration::from_secs(300)),
        };
        Policy { name: name.into(), steps: vec![step; steps], repeat, reescalate_after: None }
    }

    fn policies() -> Policies {
        let mut p = Policies::default();
        for pol in [policy("payments", 1, 0), policy("oncall", 2, 1), policy("wide", 3, 1)] {
            p.policies.insert(pol.name.clone(), pol);
        }
        p.by_severity.insert("sev1".into(), "oncall".into());
        p.default = Some("payments".into());
        p
    }

    fn decision(severity: &str, policy: Option<&str>) -> Decision {
        let mut d = Decision {
            score: 90,
            base_score: 80,
            severity: severity.into(),
            policy: policy.map(String::from),
            tags: Default::default(),
            sensitivity: crate::rules::Sensitivity::None,
            customer_facing: false,
            roles: Default::default(),
            suppressed: None,
            rules_fired: Vec::new(),
            reasons: Vec::new(),
        };
        if let Some(p) = policy {
            d.reasons.push("05-other.rhai: tag x".into());
            d.reasons.push(format!("10-service-weight.rhai: policy {p} (revenue path)"));
        }
        d
    }

    #[test]
    fn the_choice_names_what_chose_the_policy() {
        let p = policies();
        let c = p.choice(&decision("sev1", None), false);
        assert_eq!((c.policy.as_deref(), c.by.as_str()), (Some("oncall"), "severity"));
        assert_eq!(c.why, "severity_policies.sev1 for a sev1 incident");
        let c = p.choice(&decision("sev3", None), true);
        assert_eq!((c.policy.as_deref(), c.by.as_str()), (Some("payments"), "default"));
        let c = p.choice(&decision("sev1", Some("payments")), false);
        assert_eq!((c.policy.as_deref(), c.by.as_str()), (Some("payments"), "rule"));
        assert_eq!(c.rule.as_deref(), Some("10-service-weight.rhai"));
        assert_eq!(
            c.why,
            "chosen by rule 10-service-weight.rhai, instead of severity_policies.sev1 `oncall`"
        );
        let c = p.choice(&decision("sev1", Some("nope")), true);
        assert_eq!((c.policy.as_deref(), c.by.as_str()), (Some("oncall"), "severity"));
        assert!(c.why.starts_with("rule 10-service-weight.rhai chose policy `nope`, which the config does not define; "), "{}", c.why);
    }

    #[test]
    fn with_the_floor_a_rule_cannot_pick_a_policy_that_escalates_less() {
        let p = policies();
        assert_eq!((p.policies["payments"].pages(), p.policies["oncall"].pages()), (1, 4));
        let c = p.choice(&decision("sev1", Some("payments")), true);
        assert_eq!((c.policy.as_deref(), c.by.as_str()), (Some("oncall"), "floor"));
        assert_eq!(c.also.as_deref(), Some("payments"));
        assert!(
            c.why.contains("which escalates less than severity_policies.sev1 `oncall` (4)"),
            "{}",
            c.why
        );
        // One that escalates at least as much is the rule's to pick.
        let c = p.choice(&decision("sev1", Some("wide")), true);
        assert_eq!((c.policy.as_deref(), c.by.as_str(), c.also), (Some("wide"), "rule", None));
        // No severity policy: nothing to be a floor.
        let c = p.choice(&decision("sev2", Some("payments")), true);
        assert_eq!((c.policy.as_deref(), c.by.as_str()), (Some("payments"), "rule"));
    }
}
