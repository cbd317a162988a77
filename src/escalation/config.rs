//! `escalation:`, `notices:`, `communications:` and `maintenance:` → [`super::Settings`]
//! (`reviews:` is checked by [`crate::review::config`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{NoticeRule, Settings, Window};
use crate::config::{Notifications, Validator};
use crate::notify::Channel;
use crate::rules::Sensitivity;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEscalation {
    /// Channels for roles the triage brings in (legal liaison, communications lead, …).
    pub involve_channels: Option<Spanned<Vec<String>>>,
    /// `severity_policies` are a floor a rule's policy cannot go below.
    pub severity_floor: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotice {
    pub name: Spanned<String>,
    pub when: Option<Spanned<RawNoticeWhen>>,
    pub deadline: Spanned<String>,
    pub mandatory: Option<bool>,
    pub reminders: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNoticeWhen {
    pub sensitivity: Option<Vec<String>>,
    pub customer_facing: Option<bool>,
    pub severity: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommunications {
    /// Severity → interval between status-update reminders.
    #[serde(default)]
    pub update_every: BTreeMap<String, Spanned<String>>,
    /// Remind only for customer-facing incidents (default true).
    pub customer_facing_only: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    pub name: Spanned<String>,
    pub starts: Spanned<String>,
    pub ends: Spanned<String>,
    pub source: Option<String>,
    pub service: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The escalation settings from their five sections, in this order.
#[allow(clippy::too_many_arguments)]
pub fn validate(
    cx: &mut Validator<'_>,
    raw: Option<Spanned<RawEscalation>>,
    notices: Vec<Spanned<RawNotice>>,
    communications: Option<Spanned<RawCommunications>>,
    reviews: Option<Spanned<crate::review::config::RawReviews>>,
    maintenance: Vec<Spanned<RawMaintenance>>,
    triage: &crate::rules::Triage,
    notifications: &Notifications,
) -> Settings {
    let mut out = Settings::default();
    let known_severity = |name: &str| triage.severities.iter().any(|t| t.name == name);
    let raw = raw.map(|r| r.value);
    if let Some(floor) = raw.as_ref().and_then(|r| r.severity_floor) {
        out.severity_floor = floor;
    }
    let channels = raw.and_then(|r| r.involve_channels);
    involve_channels(cx, channels, notifications, &mut out.involve_channels);
    out.notices = notice_rules(cx, notices, &known_severity);
    self::communications(cx, communications, &known_severity, &mut out);
    crate::review::config::validate(
        cx,
        reviews,
        &known_severity,
        &mut out.review_severities,
        &mut out.action_remind_every,
    );
    out.maintenance = windows(cx, maintenance);
    out
}

/// `escalation.involve_channels`: how roles the triage brings in are reached.
fn involve_channels(
    cx: &mut Validator<'_>,
    raw: Option<Spanned<Vec<String>>>,
    notifications: &Notifications,
    out: &mut Vec<Channel>,
) {
    if let Some(channels) = raw {
        out.clear();
        for w in &channels.value {
            match w.as_str() {
                "email" if notifications.email.is_some() => out.push(Channel::Email),
                "sms" if notifications.sms.is_some() => out.push(Channel::Sms),
                "email" | "sms" => cx.err(
                    channels.referenced,
                    "escalation.involve_channels",
                    format!("uses {w}, but notifications.{w} is not configured"),
                ),
                _ => cx.err(
                    channels.referenced,
                    "escalation.involve_channels",
                    format!("`{w}` is not a channel for people; allowed: email, sms"),
                ),
            }
        }
    }
}

/// `notices:`: legally mandated notices, their deadlines and reminders.
fn notice_rules(
    cx: &mut Validator<'_>,
    notices: Vec<Spanned<RawNotice>>,
    known_severity: &dyn Fn(&str) -> bool,
) -> Vec<NoticeRule> {
    let mut rules = Vec::new();
    for (i, n) in notices.into_iter().enumerate() {
        let path = format!("notices[{i}]");
        let raw = n.value;
        let name = raw.name.value.trim().to_string();
        if name.is_empty() {
            cx.err(raw.name.referenced, &format!("{path}.name"), "must not be empty");
        }
        let deadline_at = raw.deadline.referenced;
        let deadline = cx.duration(Some(raw.deadline), &format!("{path}.deadline"), Duration::ZERO);
        if deadline.is_zero() {
            cx.err(deadline_at, &format!("{path}.deadline"), "must be longer than 0s");
        }
        let mut reminders = Vec::new();
        for (j, r) in raw.reminders.unwrap_or_default().into_iter().enumerate() {
            let at = r.referenced;
            let d = cx.duration(Some(r), &format!("{path}.reminders[{j}]"), Duration::ZERO);
            if !deadline.is_zero() && d >= deadline {
                cx.err(
                    at,
                    &format!("{path}.reminders[{j}]"),
                    "a reminder must come before the deadline",
                );
            }
            reminders.push(d);
        }
        let (when, when_at) = match raw.when {
            Some(w) => (w.value, w.referenced),
            None => (RawNoticeWhen::default(), raw.name.referenced),
        };
        let mut sensitivity = Vec::new();
        for word in when.sensitivity.unwrap_or_default() {
            match Sensitivity::parse(&word) {
                Some(level) => sensitivity.push(level),
                None => cx.err(
                    when_at,
                    &format!("{path}.when.sensitivity"),
                    format!(
                        "unknown sensitivity `{word}`; expected one of {}",
                        Sensitivity::ALL.map(|s| s.as_str()).join(", ")
                    ),
                ),
            }
        }
        let severities = when.severity.unwrap_or_default();
        for sev in &severities {
            if !known_severity(sev) {
                cx.err(
                    when_at,
                    &format!("{path}.when.severity"),
                    format!("`{sev}` is not a severity in triage.severities"),
                );
            }
        }
        rules.push(NoticeRule {
            name,
            sensitivity,
            customer_facing: when.customer_facing,
            severities,
            tags: when.tags.unwrap_or_default(),
            deadline,
            mandatory: raw.mandatory.unwrap_or(true),
            reminders,
        });
    }
    rules
}

/// `communications:`: status-update reminders for the communications lead.
fn communications(
    cx: &mut Validator<'_>,
    raw: Option<Spanned<RawCommunications>>,
    known_severity: &dyn Fn(&str) -> bool,
    out: &mut Settings,
) {
    if let Some(c) = raw {
        if let Some(only) = c.value.customer_facing_only {
            out.comms_customer_facing_only = only;
        }
        for (severity, every) in c.value.update_every {
            let path = format!("communications.update_every.{severity}");
            if !known_severity(&severity) {
                cx.err(every.referenced, &path, "is not a severity in triage.severities");
            }
            let at = every.referenced;
            let d = cx.duration(Some(every), &path, Duration::ZERO);
            if d < Duration::from_secs(60) {
                cx.err(at, &path, "must be at least 1m");
            } else {
                out.comms_every.insert(severity, d);
            }
        }
    }
}

/// `maintenance:`: windows during which matching alerts open no incident.
fn windows(cx: &mut Validator<'_>, maintenance: Vec<Spanned<RawMaintenance>>) -> Vec<Window> {
    let mut windows = Vec::new();
    for (i, m) in maintenance.into_iter().enumerate() {
        let path = format!("maintenance[{i}]");
        let raw = m.value;
        let time =
            |this: &mut Validator<'_>, v: Spanned<String>, key: &str| -> Option<jiff::Timestamp> {
                match v.value.parse::<jiff::Timestamp>() {
                    Ok(t) => Some(t),
                    Err(e) => {
                        this.err(
                            v.referenced,
                            &format!("{path}.{key}"),
                            format!("not an RFC 3339 time such as 2026-05-01T22:00:00Z: {e}"),
                        );
                        None
                    }
                }
            };
        let ends_at = raw.ends.referenced;
        let (Some(starts), Some(ends)) =
            (time(cx, raw.starts, "starts"), time(cx, raw.ends, "ends"))
        else {
            continue;
        };
        if ends <= starts {
            cx.err(ends_at, &format!("{path}.ends"), "must be after starts");
            continue;
        }
        windows.push(Window {
            id: None,
            created: None,
            name: raw.name.value,
            starts,
            ends,
            source: raw.source,
            service: raw.service,
            labels: raw.labels,
        });
    }
    windows
}
