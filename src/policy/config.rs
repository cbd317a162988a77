//! `people:`, `policies:`, `default_policy:` and `severity_policies:` → [`super::Policies`]:
//! each step's notify entries checked against people, roles, channels and webhooks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use serde_saphyr::Location;

use super::{Entry, Person, Policies, Policy, Step, Target};
use crate::config::{Notifications, Validator};
use crate::notify::Channel;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPerson {
    pub id: Spanned<String>,
    pub name: Option<String>,
    pub email: Option<Spanned<String>>,
    pub phone: Option<Spanned<String>>,
    /// IANA time zone name; UTC when left out.
    pub zone: Option<Spanned<String>>,
    /// Preferred message language tag; `en` when left out.
    pub language: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub name: Spanned<String>,
    /// Shorthand for a policy of one step.
    pub notify: Option<Vec<Spanned<RawPolicyEntry>>>,
    pub steps: Option<Vec<Spanned<RawStep>>>,
    pub repeat: Option<Spanned<u32>>,
    pub reescalate_after: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub notify: Vec<Spanned<RawPolicyEntry>>,
    pub wait: Option<Spanned<String>>,
}

/// One of `person`, `role`, `webhook` or `log: true`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicyEntry {
    pub person: Option<String>,
    pub role: Option<String>,
    pub webhook: Option<String>,
    #[serde(default)]
    pub log: bool,
    pub channels: Option<Vec<String>>,
    pub audience: Option<String>,
}

/// `people:` and `policies:`, then `default_policy` and `severity_policies` checked against
/// them; `known_roles` are the roles a notify entry may name.
#[allow(clippy::too_many_arguments)]
pub fn validate(
    cx: &mut Validator<'_>,
    people: Vec<Spanned<RawPerson>>,
    policies: Vec<Spanned<RawPolicy>>,
    default_policy: Option<Spanned<String>>,
    severity_policies: Option<Spanned<BTreeMap<String, String>>>,
    triage: &crate::rules::Triage,
    notifications: &Notifications,
    known_roles: &BTreeSet<String>,
) -> Policies {
    let mut out = Policies { people: self::people(cx, people), ..Policies::default() };
    for (i, p) in policies.into_iter().enumerate() {
        if let Some(policy) = policy(cx, i, p, &out, notifications, known_roles) {
            out.policies.insert(policy.name.clone(), policy);
        }
    }
    if let Some(d) = default_policy {
        if !out.policies.contains_key(&d.value) {
            cx.err(d.referenced, "default_policy", format!("no policy named `{}`", d.value));
        }
        out.default = Some(d.value);
    }
    if let Some(map) = severity_policies {
        for (severity, policy) in map.value {
            if !triage.severities.iter().any(|t| t.name == severity) {
                cx.err(
                    map.referenced,
                    &format!("severity_policies.{severity}"),
                    "is not a severity in triage.severities",
                );
            }
            if !out.policies.contains_key(&policy) {
                cx.err(
                    map.referenced,
                    &format!("severity_policies.{severity}"),
                    format!("no policy named `{policy}`"),
                );
            }
            out.by_severity.insert(severity, policy);
        }
    }
    out
}

/// `people:`: ids unique and non-empty, email and phone in a usable form.
fn people(cx: &mut Validator<'_>, raw: Vec<Spanned<RawPerson>>) -> BTreeMap<String, Person> {
    let mut people = BTreeMap::new();
    for (i, p) in raw.into_iter().enumerate() {
        let path = format!("people[{i}]");
        let raw = p.value;
        let id = raw.id.value.trim().to_string();
        if id.is_empty() {
            cx.err(raw.id.referenced, &format!("{path}.id"), "must not be empty");
            continue;
        }
        if people.contains_key(&id) {
            cx.err(
                raw.id.referenced,
                &format!("{path}.id"),
                format!("person `{id}` is defined twice"),
            );
            continue;
        }
        if let Some(e) = &raw.email
            && !e.value.contains('@')
        {
            cx.err(
                e.referenced,
                &format!("{path}.email"),
                format!("`{}` is not an email address", e.value),
            );
        }
        if let Some(ph) = &raw.phone
            && !(ph.value.starts_with('+')
                && ph.value.len() > 4
                && ph.value[1..].chars().all(|c| c.is_ascii_digit()))
        {
            cx.err(
                ph.referenced,
                &format!("{path}.phone"),
                "write phone numbers in E.164 form, e.g. +4915112345678",
            );
        }
        people.insert(
            id.clone(),
            Person {
                name: raw.name.unwrap_or_else(|| id.clone()),
                id,
                email: raw.email.map(|e| e.value),
                phone: raw.phone.map(|p| p.value),
            },
        );
    }
    people
}

/// `policies[i]`; `None` (after reporting why) when it cannot be used at all.
fn policy(
    cx: &mut Validator<'_>,
    i: usize,
    p: Spanned<RawPolicy>,
    policies: &Policies,
    notifications: &Notifications,
    known_roles: &BTreeSet<String>,
) -> Option<Policy> {
    let path = format!("policies[{i}]");
    let raw = p.value;
    let name = raw.name.value.trim().to_string();
    if name.is_empty() || policies.policies.contains_key(&name) {
        cx.err(
            raw.name.referenced,
            &format!("{path}.name"),
            format!("policy name `{name}` is empty or defined twice"),
        );
        return None;
    }
    let mut steps = Vec::new();
    type RawSteps = Vec<(String, Vec<Spanned<RawPolicyEntry>>, Option<Spanned<String>>)>;
    let one_step_form = raw.notify.is_some();
    let raw_steps: RawSteps = match (raw.notify, raw.steps) {
        (Some(notify), None) => vec![(path.clone(), notify, None)],
        (None, Some(list)) if !list.is_empty() => list
            .into_iter()
            .enumerate()
            .map(|(k, st)| (format!("{path}.steps[{k}]"), st.value.notify, st.value.wait))
            .collect(),
        _ => {
            cx.err(
                raw.name.referenced,
                &path,
                "give either `notify` (one step) or a non-empty list of `steps`",
            );
            return None;
        }
    };
    let count = raw_steps.len();
    let repeat = raw.repeat.as_ref().map(|r| r.value).unwrap_or(0);
    if repeat > 100 {
        cx.err(
            raw.repeat.as_ref().map(|r| r.referenced).unwrap_or(raw.name.referenced),
            &format!("{path}.repeat"),
            "at most 100",
        );
    }
    for (k, (spath, notify, wait)) in raw_steps.into_iter().enumerate() {
        let mut entries = Vec::new();
        for (j, e) in notify.into_iter().enumerate() {
            let epath = format!("{spath}.notify[{j}]");
            if let Some(entry) = entry(cx, &policies.people, e, &epath, notifications, known_roles)
            {
                entries.push(entry);
            }
        }
        let last = k + 1 == count;
        let repeat_at = raw.repeat.as_ref().map_or(raw.name.referenced, |r| r.referenced);
        let round = Round { last, repeat, one_step_form, repeat_at, name_at: raw.name.referenced };
        let wait = step_wait(cx, wait, &spath, &round);
        steps.push(Step { notify: entries, wait });
    }
    let reescalate_after = raw
        .reescalate_after
        .map(|r| cx.duration(Some(r), &format!("{path}.reescalate_after"), Duration::ZERO));
    Some(Policy {
        name,
        steps,
        repeat,
        reescalate_after: reescalate_after.filter(|d| !d.is_zero()),
    })
}

/// Where a step sits in its policy, for what its `wait` must be.
#[derive(Clone, Copy)]
struct Round {
    last: bool,
    repeat: u32,
    one_step_form: bool,
    repeat_at: Location,
    name_at: Location,
}

/// A step's `wait`: required on every step but the last, and on the last when it repeats.
fn step_wait(
    cx: &mut Validator<'_>,
    wait: Option<Spanned<String>>,
    spath: &str,
    round: &Round,
) -> Option<Duration> {
    let Round { last, repeat, one_step_form, repeat_at, name_at } = *round;
    match wait {
        Some(w) => {
            let at = w.referenced;
            let d = cx.duration(Some(w), &format!("{spath}.wait"), Duration::ZERO);
            if d.is_zero() {
                cx.err(at, &format!("{spath}.wait"), "must be longer than 0s");
            }
            Some(d)
        }
        None if last && repeat == 0 => None,
        // The list runs again after its last step: that step's `wait` is how long
        // the next round waits, so a repeating policy needs it too.
        None if last => {
            let how = if one_step_form {
                "; write the one step as `steps: [{notify: [...], wait: 5m}]`"
            } else {
                ""
            };
            cx.err(
                        repeat_at,
                        &format!("{spath}.wait"),
                        format!(
                            "`repeat: {repeat}` runs the steps again, so the last step needs a `wait` too: how long to wait for an acknowledgement before the first step fires again{how}"
                        ),
                    );
            None
        }
        None => {
            cx.err(
                        name_at,
                        &format!("{spath}.wait"),
                        "every step but the last needs a `wait`: how long to wait for an acknowledgement before the next step",
                    );
            None
        }
    }
}

/// One `notify` entry of a policy step, checked against people, channels and webhooks.
pub fn entry(
    cx: &mut Validator<'_>,
    people: &BTreeMap<String, Person>,
    e: Spanned<RawPolicyEntry>,
    epath: &str,
    notifications: &Notifications,
    known_roles: &BTreeSet<String>,
) -> Option<Entry> {
    let at = e.referenced;
    let e = e.value;
    let (target, allowed, default_channels) =
        target(cx, &e, at, epath, people, notifications, known_roles)?;
    let channels = match e.channels {
        None => default_channels,
        Some(words) => {
            let mut chosen = Vec::new();
            for w in words {
                match allowed.iter().find(|c| c.as_str() == w) {
                    Some(c) => chosen.push(*c),
                    None => cx.err(
                        at,
                        &format!("{epath}.channels"),
                        format!(
                            "`{w}` is not a channel for this target; allowed: {}",
                            allowed.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    ),
                }
            }
            chosen
        }
    };
    for c in &channels {
        let configured = match c {
            Channel::Email => notifications.email.is_some(),
            Channel::Sms => notifications.sms.is_some(),
            _ => true,
        };
        if !configured {
            cx.err(
                at,
                &format!("{epath}.channels"),
                format!("uses {}, but notifications.{} is not configured", c.as_str(), c.as_str()),
            );
        }
    }
    if let Target::Person(id) = &target
        && let Some(person) = people.get(id)
    {
        for c in &channels {
            let missing = match c {
                Channel::Email => person.email.is_none(),
                Channel::Sms => person.phone.is_none(),
                _ => false,
            };
            if missing {
                cx.err(
                    at,
                    &format!("{epath}.channels"),
                    format!("person `{id}` has no {} address", c.as_str()),
                );
            }
        }
    }
    let audience = match (&e.audience, &target) {
        (Some(a), _) => a.clone(),
        (None, Target::Role(role)) => crate::escalation::role_audience(role).to_string(),
        (None, _) => "responder".to_string(),
    };
    Some(Entry { target, channels, audience })
}

/// Who a `notify` entry names (exactly one of person, role, webhook, `log: true`), the
/// channels allowed for it and those used when the entry names none.
fn target(
    cx: &mut Validator<'_>,
    e: &RawPolicyEntry,
    at: Location,
    epath: &str,
    people: &BTreeMap<String, Person>,
    notifications: &Notifications,
    known_roles: &BTreeSet<String>,
) -> Option<(Target, &'static [Channel], Vec<Channel>)> {
    let have_log = notifications.log_path.is_some();
    let found: (Target, &'static [Channel], Vec<Channel>) = match (
        e.person.clone(),
        e.webhook.clone(),
        e.log,
        e.role.clone(),
    ) {
        (None, None, false, Some(role)) => {
            if !known_roles.contains(&role) {
                cx.err(
                        at,
                        &format!("{epath}.role"),
                        format!(
                            "no role `{role}`: the built-in roles are {}; declare others under `roles:`",
                            crate::oncall::BUILTIN_ROLES.join(", ")
                        ),
                    );
            } else if !crate::escalation::valid_role_name(&role) {
                cx.err(
                    at,
                    &format!("{epath}.role"),
                    format!("`{role}` is not a role name: use lowercase letters, digits and `_`"),
                );
            }
            // Whoever holds the role is only known when an incident opens: email by
            // default, SMS when asked for (skipped for a holder without a phone).
            (Target::Role(role), &[Channel::Email, Channel::Sms], vec![Channel::Email])
        }
        (Some(person), None, false, None) => {
            let defaults = match people.get(&person) {
                None => {
                    cx.err(
                        at,
                        &format!("{epath}.person"),
                        format!("no person `{person}` in people"),
                    );
                    Vec::new()
                }
                Some(p) => [(p.email.is_some(), Channel::Email), (p.phone.is_some(), Channel::Sms)]
                    .into_iter()
                    .filter_map(|(has, c)| has.then_some(c))
                    .collect(),
            };
            (Target::Person(person), &[Channel::Email, Channel::Sms], defaults)
        }
        (None, Some(webhook), false, None) => {
            if !notifications.webhooks.iter().any(|w| w.name == webhook) {
                cx.err(
                    at,
                    &format!("{epath}.webhook"),
                    format!("no webhook `{webhook}` in notifications.webhooks"),
                );
            }
            (Target::Webhook(webhook), &[Channel::Webhook], vec![Channel::Webhook])
        }
        (None, None, true, None) => {
            if !have_log {
                cx.err(at, epath, "notifies the log, but notifications.log is not configured");
            }
            (Target::Log, &[Channel::Log], vec![Channel::Log])
        }
        _ => {
            cx.err(at, epath, "give exactly one of: person, role, webhook, log: true");
            return None;
        }
    };
    Some(found)
}
