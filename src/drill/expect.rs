//! Checking a run against the scenario's expectations. Every failure is one line that says
//! what was expected, where in the scenario, and what happened instead.

use super::scenario::{ExpectIncident, ExpectNotification, Scenario, show};
use super::sim::{Run, Sent, find};
use crate::incident::Incident;

/// Whether `s` has every property `e` asks for, time aside.
fn fits(e: &ExpectNotification, s: &Sent) -> bool {
    e.to.as_ref().is_none_or(|t| s.person.as_deref() == Some(t.as_str()) || s.address == *t)
        && e.channel.is_none_or(|c| c == s.channel)
        && e.audience.as_ref().is_none_or(|a| *a == s.audience)
        && e.reason.is_none_or(|r| r == s.reason)
        && e.template.as_ref().is_none_or(|t| {
            s.template == *t
                || s.template.strip_prefix(t.as_str()).is_some_and(|r| r.starts_with('.'))
        })
        && e.incident.is_none_or(|i| i == s.incident)
        && e.subject_contains.as_ref().is_none_or(|t| s.subject.contains(t.as_str()))
        && e.text_contains.as_ref().is_none_or(|t| s.text.contains(t.as_str()))
        && e.drill.is_none_or(|d| d == s.drill)
        && e.bundled.is_none_or(|b| b == s.bundle.is_some())
}

fn in_time(e: &ExpectNotification, s: &Sent) -> bool {
    match e.at {
        None => true,
        Some(at) => (s.at - at).abs() <= e.within,
    }
}

/// `email to ana (responder, escalated, incident #1) at +5m ±30s`
pub fn describe(e: &ExpectNotification) -> String {
    describe_as(e, "a notification")
}

/// `any`: the words for a notification on any channel ("a notification", or "notification"
/// after "no").
fn describe_as(e: &ExpectNotification, any: &str) -> String {
    let mut props = Vec::new();
    props.extend(e.audience.clone());
    props.extend(e.reason.map(|r| r.as_str().to_string()));
    props.extend(e.incident.map(|i| format!("incident #{i}")));
    props.extend(e.template.as_ref().map(|t| format!("template {t}")));
    props.extend(e.subject_contains.as_ref().map(|t| format!("subject containing {t:?}")));
    props.extend(e.text_contains.as_ref().map(|t| format!("text containing {t:?}")));
    props.extend(e.drill.map(|d| if d { "drill" } else { "not a drill" }.to_string()));
    props.extend(e.bundled.map(|b| if b { "bundled" } else { "not bundled" }.to_string()));
    let mut out = format!(
        "{} to {}",
        e.channel.map(|c| c.as_str()).unwrap_or(any),
        e.to.as_deref().unwrap_or("anyone")
    );
    if !props.is_empty() {
        out.push_str(&format!(" ({})", props.join(", ")));
    }
    if let Some(at) = e.at {
        out.push_str(&format!(" at {}", show(at)));
        if !e.within.is_zero() {
            out.push_str(&format!(" ±{}", show(e.within).trim_start_matches('+')));
        }
    }
    out
}

fn times(sent: &[&Sent]) -> String {
    let mut parts: Vec<String> = sent.iter().take(6).map(|s| show(s.at)).collect();
    if sent.len() > 6 {
        parts.push(format!("… ({} in all)", sent.len()));
    }
    parts.join(", ")
}

/// Every failed expectation, as lines.
pub fn check(scenario: &Scenario, run: &Run, source: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let mut used = vec![false; run.sent.len()];
    // Expectations with a time first: they are the most specific, so a time-less "ana is told"
    // does not take the message a timed one needs.
    let mut order: Vec<&ExpectNotification> =
        scenario.notifications.iter().filter(|e| !e.never).collect();
    order.sort_by_key(|e| e.at.is_none());
    for e in order {
        let mut got = 0u32;
        for (i, s) in run.sent.iter().enumerate() {
            if got < e.count && !used[i] && fits(e, s) && in_time(e, s) {
                used[i] = true;
                got += 1;
            }
        }
        if got < e.count {
            let elsewhere: Vec<&Sent> = run
                .sent
                .iter()
                .enumerate()
                .filter(|(i, s)| !used[*i] && fits(e, s))
                .map(|(_, s)| s)
                .collect();
            let wanted =
                if e.count > 1 { format!("{} × {}", e.count, describe(e)) } else { describe(e) };
            let got_text = match (got, elsewhere.is_empty()) {
                (0, true) => "never".to_string(),
                (0, false) => format!("got it at {}", times(&elsewhere)),
                (n, true) => format!("got {n}"),
                (n, false) => format!("got {n} in time, and others at {}", times(&elsewhere)),
            };
            let near =
                if got == 0 && elsewhere.is_empty() { near_misses(e, run) } else { String::new() };
            failures.push(format!("{}: expected {wanted}, {got_text}{near}", e.location));
        }
    }
    for e in scenario.notifications.iter().filter(|e| e.never) {
        let hits: Vec<&Sent> = run.sent.iter().filter(|s| fits(e, s) && in_time(e, s)).collect();
        if let Some(first) = hits.first() {
            failures.push(format!(
                "{}: expected no {}, got {} ({}: {:?})",
                e.location,
                describe_as(e, "notification"),
                if hits.len() == 1 { "one".to_string() } else { format!("{}", hits.len()) },
                times(&hits),
                first.subject
            ));
        }
    }
    if scenario.exact {
        for (s, _) in run.sent.iter().zip(&used).filter(|(_, u)| !**u) {
            failures.push(format!(
                "{}: unexpected (expect.exact: nobody else): {} {}: {:?}",
                scenario.file.display(),
                show(s.at),
                s.describe(),
                s.subject
            ));
        }
    }
    if let Some(n) = scenario.incident_count
        && run.incidents.len() as u64 != n
    {
        failures.push(format!(
            "{}: expected {n} incident(s), got {}",
            scenario.file.display(),
            run.incidents.len()
        ));
    }
    for x in &scenario.incidents {
        let (all, when) = match x.at {
            Some(at) => (run.snapshots.get(&at).map(Vec::as_slice).unwrap_or(&[]), show(at)),
            None => (run.incidents.as_slice(), format!("the end ({})", show(run.ended))),
        };
        match find(all, &x.incident, source) {
            None => failures.push(format!(
                "{}: expected incident {} at {when}, but there is none",
                x.location, x.incident
            )),
            Some(i) => failures.extend(
                incident_mismatches(x, i)
                    .into_iter()
                    .map(|m| format!("{}: incident #{} at {when}: {m}", x.location, i.id)),
            ),
        }
    }
    failures
}

/// When nothing fits at all, the closest candidates: those to the same recipient.
fn near_misses(e: &ExpectNotification, run: &Run) -> String {
    let Some(to) = &e.to else { return String::new() };
    let same: Vec<String> = run
        .sent
        .iter()
        .filter(|s| s.person.as_deref() == Some(to.as_str()) || s.address == *to)
        .take(4)
        .map(|s| format!("{} {} [{}]", show(s.at), s.describe(), s.template))
        .collect();
    if same.is_empty() {
        format!("; {to} was told nothing")
    } else {
        format!("; {to} got: {}", same.join("; "))
    }
}

fn incident_mismatches(x: &ExpectIncident, i: &Incident) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |what: &str, want: Option<String>, got: Option<String>| {
        if let Some(w) = want
            && got.as_deref() != Some(w.as_str())
        {
            out.push(format!(
                "expected {what} {w}, got {}",
                got.unwrap_or_else(|| "none".to_string())
            ));
        }
    };
    cmp("status", x.status.clone(), Some(i.status.as_str().to_string()));
    cmp("severity", x.severity.clone(), Some(i.decision.severity.clone()));
    cmp(
        "acknowledged_by",
        x.acknowledged_by.clone(),
        i.acknowledged.as_ref().map(|a| a.by.clone()),
    );
    cmp("resolved_by", x.resolved_by.clone(), i.resolved.as_ref().map(|a| a.by.clone()));
    cmp("drill", x.drill.map(|d| d.to_string()), Some(i.drill.to_string()));
    cmp("count", x.count.map(|c| c.to_string()), Some(i.count.to_string()));
    cmp(
        "escalation_step",
        x.escalation_step.map(|s| s.to_string()),
        i.escalation.as_ref().map(|e| (e.step + 1).to_string()),
    );
    cmp(
        "sensitivity",
        x.sensitivity.map(|s| s.as_str().to_string()),
        Some(i.decision.sensitivity.as_str().to_string()),
    );
    cmp(
        "customer_facing",
        x.customer_facing.map(|c| c.to_string()),
        Some(i.decision.customer_facing.to_string()),
    );
    // Sets: the order a list is written in says nothing.
    let mut same_set = |what: &str, want: &Option<Vec<String>>, got: Vec<&String>| {
        let Some(want) = want else { return };
        let want: std::collections::BTreeSet<&String> = want.iter().collect();
        let got: std::collections::BTreeSet<&String> = got.into_iter().collect();
        if want != got {
            let show = |s: &std::collections::BTreeSet<&String>| {
                format!("[{}]", s.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "))
            };
            out.push(format!("expected {what} {}, got {}", show(&want), show(&got)));
        }
    };
    same_set("scope", &x.scope, i.scope.iter().collect());
    same_set("tags", &x.tags, i.decision.tags.iter().collect());
    if let Some(roles) = &x.roles {
        for (role, person) in roles {
            let got = i.roles.get(role);
            if got != Some(person) {
                out.push(format!(
                    "expected role {role} held by {person}, got {}",
                    got.map(String::as_str).unwrap_or("nobody")
                ));
            }
        }
    }
    if let Some(names) = &x.notices {
        let got: Vec<&str> = i.notices.iter().map(|n| n.name.as_str()).collect();
        if got != names.iter().map(String::as_str).collect::<Vec<_>>() {
            out.push(format!("expected notices {names:?}, got {got:?}"));
        }
    }
    out
}
