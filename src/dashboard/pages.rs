//! HTML for the dashboard pages: plain functions from data to markup.
//!
//! Escaping: every value that did not come from this file goes through [`esc`] (text and
//! attribute values alike: it escapes `< > & " '`), and anything that may hold customer data
//! goes through the page's [`Redaction`] first (the API's redaction for the signed-in user). Markup is built with `format!` rather than a template engine so
//! that each interpolation is visible where it happens and checked by the compiler; there is
//! no `|safe` filter to misuse and no template file to drift from the data.

use std::collections::BTreeMap;
use std::fmt::Write;

use jiff::{SignedDuration, Timestamp};

use crate::config::Role;
use crate::escalation::{Timer, TimerKind};
use crate::event::Event;
use crate::incident::{Entry, EntryKind, Incident, Status};
use crate::outbox::{Notification, State as OutboxState};
use crate::review::ActionState;

use super::customer::Redaction;
use super::session::Viewer;

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    crate::templates::escape_html_into(&mut out, text);
    out
}

/// Free text about incident `id` that may hold customer data, redacted for the page's user
/// and escaped.
fn text(r: &Redaction, id: u64, s: &str) -> String {
    esc(&r.text(id, s))
}

/// The whole page around `body`. `viewer` is `None` on the sign-in page.
pub fn layout(viewer: Option<&Viewer>, title: &str, now: Timestamp, body: &str) -> String {
    let nav = match viewer {
        None => String::new(),
        Some(v) => {
            let declare =
                if v.may(Role::Responder) { "<a href=\"/declare\">Declare</a>" } else { "" };
            let admin = if v.may(Role::Admin) {
                format!(
                    "<a href=\"/queue\">Queue</a>\
                     <form method=\"post\" action=\"/reload\" class=\"inline\">{}<button type=\"submit\">Reload config</button></form>",
                    csrf_field(v)
                )
            } else {
                String::new()
            };
            format!(
                "<nav><a href=\"/\" class=\"brand\">Tocsin</a><a href=\"/\">Overview</a><a href=\"/incidents\">Incidents</a><a href=\"/figures\">Figures</a>{declare}{admin}\
                 <span class=\"who\">{} <span class=\"role\">{}</span></span>\
                 <form method=\"post\" action=\"/logout\" class=\"inline\">{}<button type=\"submit\">Sign out</button></form></nav>",
                esc(&v.name),
                role_name(v.role),
                csrf_field(v)
            )
        }
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex, nofollow\">\
         <title>{title} · Tocsin</title>\
         <link rel=\"stylesheet\" href=\"/assets/dashboard.css\">\
         <script src=\"/assets/dashboard.js\" defer></script>\
         </head><body data-now=\"{now}\">{nav}<main>\n<h1>{title}</h1>\n{body}\n</main></body></html>\n",
        title = esc(title),
        now = now,
    )
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Viewer => "viewer",
        Role::Responder => "responder",
        Role::Admin => "admin",
    }
}

fn csrf_field(v: &Viewer) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(&v.csrf))
}

/// "3m 20s", "2h 5m", "4d 1h".
pub fn span(d: SignedDuration) -> String {
    let s = d.as_secs().unsigned_abs();
    let (d_, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d_ > 0 {
        format!("{d_}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {sec}s")
    } else {
        format!("{sec}s")
    }
}

fn at(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A time with its distance from now, kept current by the page's script.
fn countdown(t: Timestamp, now: Timestamp) -> String {
    let d = t.duration_since(now);
    let rel = if d.is_negative() { format!("{} ago", span(d)) } else { format!("in {}", span(d)) };
    format!("<time class=\"countdown\" datetime=\"{t}\" title=\"{}\">{rel}</time>", at(t))
}

fn status_badge(s: Status) -> String {
    format!("<span class=\"badge status-{0}\">{0}</span>", s.as_str())
}

fn severity_badge(sev: &str) -> String {
    format!("<span class=\"badge sev sev-{0}\">{0}</span>", esc(sev))
}

// ---------------------------------------------------------------------------------------------
// Sign-in
// ---------------------------------------------------------------------------------------------

pub fn login(message: Option<&str>, name: &str, next: &str) -> String {
    let message = message.map(|m| format!("<p class=\"error\">{}</p>", esc(m))).unwrap_or_default();
    format!(
        "{message}<form method=\"post\" action=\"/login\" class=\"card login\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label>User name <input name=\"name\" id=\"name\" autocomplete=\"username\" required value=\"{}\"></label>\
         <label>Token <input name=\"token\" id=\"token\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\" id=\"sign-in\">Sign in</button>\
         <p class=\"small\">Use your Tocsin user name and API token.</p></form>",
        esc(next),
        esc(name)
    )
}

// ---------------------------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------------------------

/// Notifications per channel and state, for the delivery-health table.
#[derive(Debug, Default)]
pub struct Health {
    /// channel → (queued, sending, retrying, dead)
    pub by_channel: BTreeMap<String, [u64; 4]>,
    pub oldest_pending: Option<Timestamp>,
}

impl Health {
    /// Counts a pending notification.
    pub fn count(&mut self, n: &Notification) {
        let slot = match n.state {
            OutboxState::Queued => 0,
            OutboxState::Sending => 1,
            OutboxState::Retrying => 2,
            OutboxState::Dead | OutboxState::Delivered => return,
        };
        self.slot(n.channel.as_str())[slot] += 1;
        self.oldest_pending =
            Some(self.oldest_pending.map_or(n.created_at, |o| o.min(n.created_at)));
    }

    /// Counts a dead-lettered notification on `channel`.
    pub fn dead(&mut self, channel: &str) {
        self.slot(channel)[3] += 1;
    }

    fn slot(&mut self, channel: &str) -> &mut [u64; 4] {
        self.by_channel.entry(channel.to_owned()).or_default()
    }
}

/// A deadline or action item due later (from the timers table).
pub struct Due {
    pub timer: Timer,
    pub incident: Incident,
}

pub struct Overview {
    /// The open incidents shown (the oldest few of each severity) with their pending timers.
    pub open: Vec<(Incident, Vec<Timer>)>,
    /// How many incidents of each severity are open, shown or not.
    pub open_counts: Vec<(String, usize)>,
    pub due: Vec<Due>,
    pub health: Health,
}

pub fn overview(r: &Redaction, data: &Overview, severities: &[String], now: Timestamp) -> String {
    let mut out = String::new();
    // Open incidents, grouped by severity in the configured order, then any other.
    let total: usize = data.open_counts.iter().map(|(_, n)| n).sum();
    let _ = write!(out, "<section><h2>Open incidents ({total})</h2>");
    if total == 0 {
        out.push_str("<p class=\"quiet\">No open incidents.</p>");
    }
    let mut order: Vec<&str> = severities.iter().map(String::as_str).collect();
    for (sev, _) in &data.open_counts {
        if !order.contains(&sev.as_str()) {
            order.push(sev);
        }
    }
    for sev in order {
        let count = data.open_counts.iter().find(|(s, _)| s == sev).map_or(0, |(_, n)| *n);
        if count == 0 {
            continue;
        }
        let group: Vec<&(Incident, Vec<Timer>)> =
            data.open.iter().filter(|(i, _)| i.decision.severity == sev).collect();
        let _ = write!(
            out,
            "<div class=\"group\"><h3>{} <span class=\"count\">{count}</span></h3>",
            severity_badge(sev),
        );
        for (i, timers) in &group {
            out.push_str(&incident_card(r, i, timers, now));
        }
        if count > group.len() {
            let _ = write!(
                out,
                "<p class=\"more\">The {} that opened first are shown. <a href=\"/incidents?status=open&amp;severity={}\">All {count} open {} incidents →</a></p>",
                group.len(),
                esc(&super::url_encode(sev)),
                esc(sev),
            );
        }
        out.push_str("</div>");
    }
    out.push_str("</section>");

    // Deadlines and action items still owed (open or not).
    out.push_str("<section><h2>Deadlines and action items</h2>");
    if data.due.is_empty() {
        out.push_str("<p class=\"quiet\">Nothing due.</p>");
    } else {
        out.push_str(
            "<table class=\"list\"><thead><tr><th>Due</th><th>What</th><th>Incident</th></tr></thead><tbody>",
        );
        for d in &data.due {
            // An action item's timer is its next reminder; once the item is overdue that is
            // not when it is due: show the due time, and the reminder beside it.
            let mut when = countdown(d.timer.due_at, now);
            let what = match &d.timer.kind {
                TimerKind::NoticeDeadline { notice } => {
                    match d.incident.notices.get(*notice as usize) {
                        Some(n) => format!(
                            "notice <strong>{}</strong>{}",
                            esc(&n.name),
                            if n.mandatory { " (mandatory)" } else { "" }
                        ),
                        None => esc(&d.timer.kind.describe()),
                    }
                }
                TimerKind::ActionDue { action } => match d
                    .incident
                    .review
                    .as_ref()
                    .and_then(|r| r.actions.iter().find(|a| a.id == *action))
                {
                    Some(a) => {
                        if a.overdue(now) {
                            when = format!(
                                "{} <span class=\"badge late\">overdue</span> <span class=\"meta\">next reminder {}</span>",
                                countdown(a.due, now),
                                countdown(d.timer.due_at, now)
                            );
                        }
                        format!(
                            "action item <strong>{}</strong> (owner {})",
                            text(r, d.incident.id, &a.title),
                            esc(&a.owner)
                        )
                    }
                    None => esc(&d.timer.kind.describe()),
                },
                other => esc(&other.describe()),
            };
            let _ = write!(
                out,
                "<tr><td>{when}</td><td>{what}</td><td><a href=\"/incidents/{id}\">#{id}</a> {}</td></tr>",
                text(r, d.incident.id, &d.incident.summary),
                id = d.incident.id,
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");

    out.push_str(&health(&data.health, now));
    out
}

fn incident_card(r: &Redaction, i: &Incident, timers: &[Timer], now: Timestamp) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<article class=\"card incident\" data-incident=\"{id}\"><header><a href=\"/incidents/{id}\">#{id} {}</a> {}</header>\
         <p class=\"meta\">opened {} · {} event(s) · source {}{}</p>",
        text(r, i.id, &i.summary),
        status_badge(i.status),
        countdown(i.first_seen, now),
        i.count,
        esc(&i.source),
        i.service
            .as_deref()
            .map(|s| format!(" · service {}", text(r, i.id, s)))
            .unwrap_or_default(),
        id = i.id,
    );
    if let Some(a) = &i.acknowledged {
        let _ = write!(
            out,
            "<p class=\"meta\">acknowledged by {} {}</p>",
            esc(&a.by),
            countdown(a.at, now)
        );
    }
    if !i.roles.is_empty() {
        out.push_str("<p class=\"roles\">");
        for (role, person) in &i.roles {
            let _ = write!(
                out,
                "<span class=\"role-holder\">{}: <strong>{}</strong></span> ",
                esc(role),
                esc(person)
            );
        }
        out.push_str("</p>");
    }
    let step = timers
        .iter()
        .find(|t| matches!(t.kind, TimerKind::Step { .. } | TimerKind::AckExpired { .. }));
    match (step, &i.escalation) {
        (Some(t), _) => {
            let _ = write!(
                out,
                "<p class=\"next\">Next: {} {}</p>",
                esc(&t.kind.describe()),
                countdown(t.due_at, now)
            );
        }
        (None, Some(e)) if e.stopped.is_some() => {
            let _ = write!(
                out,
                "<p class=\"meta\">Escalation stopped: {}</p>",
                esc(e.stopped.as_deref().unwrap_or_default())
            );
        }
        _ => {}
    }
    for n in &i.notices {
        out.push_str(&notice_line(n, now));
    }
    out.push_str("</article>");
    out
}

fn notice_line(n: &crate::escalation::Notice, now: Timestamp) -> String {
    let state = match (&n.sent, n.missed) {
        (Some(s), _) => {
            format!("<span class=\"badge ok\">sent</span> by {} at {}", esc(&s.by), at(s.at))
        }
        (None, true) => "<span class=\"badge late\">missed</span>".to_string(),
        (None, false) => "<span class=\"badge due\">due</span>".to_string(),
    };
    format!(
        "<p class=\"notice\">Notice <strong>{}</strong>{} {state} · deadline {}</p>",
        esc(&n.name),
        if n.mandatory { " (mandatory)" } else { "" },
        countdown(n.due_at, now)
    )
}

fn health(h: &Health, now: Timestamp) -> String {
    let mut out = String::from("<section><h2>Delivery health</h2>");
    if h.by_channel.is_empty() {
        out.push_str("<p class=\"quiet\">Nothing queued, retrying or dead-lettered.</p>");
    } else {
        out.push_str(
            "<table class=\"list health\"><thead><tr><th>Channel</th><th>Queued</th><th>Sending</th><th>Retrying</th><th>Dead letters</th></tr></thead><tbody>",
        );
        for (channel, [q, s, r, d]) in &h.by_channel {
            let dead =
                if *d > 0 { format!("<strong class=\"late\">{d}</strong>") } else { "0".into() };
            let _ = write!(
                out,
                "<tr data-channel=\"{c}\"><td>{c}</td><td>{q}</td><td>{s}</td><td>{r}</td><td>{dead}</td></tr>",
                c = esc(channel)
            );
        }
        out.push_str("</tbody></table>");
    }
    if let Some(o) = h.oldest_pending {
        let _ = write!(
            out,
            "<p class=\"meta\">Oldest pending notification created {}</p>",
            countdown(o, now)
        );
    }
    out.push_str("</section>");
    out
}

// ---------------------------------------------------------------------------------------------
// Incident list
// ---------------------------------------------------------------------------------------------

pub struct ListQuery<'a> {
    pub status: &'a str,
    pub severity: &'a str,
    pub q: &'a str,
}

pub fn list(
    r: &Redaction,
    query: &ListQuery,
    severities: &[String],
    found: &[Incident],
    next: Option<String>,
    now: Timestamp,
) -> String {
    let mut out = String::from("<form method=\"get\" action=\"/incidents\" class=\"filters\">");
    out.push_str("<label>Status <select name=\"status\">");
    for s in ["open", "triggered", "acknowledged", "resolved", "all"] {
        let sel = if s == query.status { " selected" } else { "" };
        let _ = write!(out, "<option{sel}>{s}</option>");
    }
    out.push_str("</select></label><label>Severity <select name=\"severity\"><option value=\"\">any</option>");
    for s in severities {
        let sel = if s == query.severity { " selected" } else { "" };
        let _ = write!(out, "<option{sel}>{}</option>", esc(s));
    }
    let _ = write!(
        out,
        "</select></label><label>Search <input type=\"search\" name=\"q\" id=\"q\" value=\"{}\" placeholder=\"summary, service, source, key\"></label>\
         <button type=\"submit\" id=\"search\">Search</button></form>",
        esc(query.q)
    );
    if found.is_empty() {
        out.push_str("<p class=\"quiet\">No incidents match.</p>");
        return out;
    }
    out.push_str(
        "<table class=\"list incidents\"><thead><tr><th>#</th><th>Severity</th><th>Status</th><th>Summary</th><th>Opened</th></tr></thead><tbody>",
    );
    for i in found {
        let _ = write!(
            out,
            "<tr><td><a href=\"/incidents/{id}\">#{id}</a></td><td>{}</td><td>{}</td><td><a href=\"/incidents/{id}\">{}</a>{}</td><td>{}</td></tr>",
            severity_badge(&i.decision.severity),
            status_badge(i.status),
            text(r, i.id, &i.summary),
            i.service
                .as_deref()
                .map(|s| format!(" <span class=\"meta\">{}</span>", text(r, i.id, s)))
                .unwrap_or_default(),
            countdown(i.first_seen, now),
            id = i.id
        );
    }
    out.push_str("</tbody></table>");
    if let Some(next) = next {
        let _ = write!(out, "<p><a href=\"{}\">Older incidents →</a></p>", esc(&next));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// One incident
// ---------------------------------------------------------------------------------------------

pub struct IncidentPage {
    pub incident: Incident,
    pub event: Option<Event>,
    pub timeline: Vec<Entry>,
    pub notifications: Vec<Notification>,
    pub timers: Vec<Timer>,
    /// The configured people (id, name), for the role and action-owner choices.
    pub people: Vec<(String, String)>,
    /// Every role name the config knows (the built-in ones and those under `roles:`).
    pub role_names: Vec<String>,
}

/// `<option>`s for the configured people.
fn person_options(people: &[(String, String)]) -> String {
    let mut out = String::new();
    for (id, name) in people {
        let _ = write!(out, "<option value=\"{}\">{} ({})</option>", esc(id), esc(name), esc(id));
    }
    out
}

#[expect(
    clippy::too_many_lines,
    reason = "the incident page, section by section; to split by section"
)]
pub fn incident(
    v: &Viewer,
    r: &Redaction,
    p: &IncidentPage,
    now: Timestamp,
    flash: Option<&str>,
) -> String {
    let i = &p.incident;
    let mut out = String::new();
    if let Some(f) = flash {
        let _ = write!(out, "<p class=\"error\">{}</p>", esc(f));
    }
    let _ = write!(
        out,
        "<p class=\"summary\" id=\"summary\">{} {} {}</p>",
        severity_badge(&i.decision.severity),
        status_badge(i.status),
        text(r, i.id, &i.summary)
    );
    let _ = write!(
        out,
        "<table class=\"facts\"><tr><th>Source</th><td>{}</td></tr><tr><th>Kind</th><td>{}</td></tr>{}\
         <tr><th>Opened</th><td>{} ({})</td></tr><tr><th>Last event</th><td>{}</td></tr><tr><th>Events</th><td>{}</td></tr>\
         <tr><th>Score</th><td>{}</td></tr>",
        esc(&i.source),
        i.kind.as_str(),
        i.service
            .as_deref()
            .map(|s| format!("<tr><th>Service</th><td>{}</td></tr>", text(r, i.id, s)))
            .unwrap_or_default(),
        at(i.first_seen),
        countdown(i.first_seen, now),
        at(i.last_seen),
        i.count,
        i.decision.score,
    );
    if let Some(c) = &i.policy_choice {
        // Which policy escalates and what chose it: a rule's pick is never a silent one.
        let _ = write!(
            out,
            "<tr><th>Policy</th><td id=\"policy\">{} <span class=\"quiet\">({})</span></td></tr>",
            esc(c.policy.as_deref().unwrap_or("none")),
            esc(&c.why)
        );
    } else if let Some(policy) =
        i.escalation.as_ref().map(|e| e.policy.as_str()).or(i.decision.policy.as_deref())
    {
        // Incidents stored before the choice was recorded: the policy that escalated, else the
        // one the rules named.
        let _ = write!(
            out,
            "<tr><th>Policy</th><td id=\"policy\">{} <span class=\"quiet\">(opened before Tocsin recorded what chose the policy)</span></td></tr>",
            esc(policy)
        );
    }
    // Resolved incidents have neither (older data may still carry them).
    if let Some(h) = &i.held_by
        && i.status.is_open()
    {
        let _ = write!(
            out,
            "<tr><th>Held back</th><td>by maintenance window {} until {}; it pages then if still open</td></tr>",
            esc(&h.window),
            at(h.until)
        );
    }
    if let Some(e) = &i.expiry
        && i.status.is_open()
    {
        let _ = write!(
            out,
            "<tr><th>Ends</th><td>resolves at {} unless its sender refreshes it (endsAt)</td></tr>",
            at(e.due(i.last_seen))
        );
    }
    for link in &i.links {
        let what = match link.kind.as_str() {
            "runbook" => "Runbook",
            "dashboard" => "Dashboard",
            "source" => "Source",
            _ => "Link",
        };
        let shown = link.text.as_deref().unwrap_or(link.href.as_str());
        // A link is masked like the rest of the page for viewers without `pii` (a customer
        // report's ticket link may name the requester: `?requester=jane@example.com`, also
        // percent-encoded). A masked href would lead nowhere: its masked text shows, unlinked.
        let masks = |s: &str| r.text(i.id, s) != s;
        let decoded = link.href.replace("%40", "@");
        if masks(&decoded) || masks(shown) {
            let masked = text(r, i.id, if link.text.is_some() { shown } else { &decoded });
            let _ = write!(
                out,
                "<tr><th>{what}</th><td class=\"incident-link\">{masked} <span class=\"quiet\">(the link holds personal data: users with the pii permission see it)</span></td></tr>"
            );
            continue;
        }
        // Only http(s) links are kept on an incident (see `incident::links_of`).
        let _ = write!(
            out,
            "<tr><th>{what}</th><td><a class=\"incident-link\" href=\"{}\" rel=\"noopener noreferrer\">{}</a></td></tr>",
            esc(&link.href),
            esc(shown)
        );
    }
    if let Some(a) = &i.acknowledged {
        let _ =
            write!(out, "<tr><th>Acknowledged</th><td>by {} at {}</td></tr>", esc(&a.by), at(a.at));
    }
    if let Some(r) = &i.resolved {
        let _ = write!(out, "<tr><th>Resolved</th><td>by {} at {}</td></tr>", esc(&r.by), at(r.at));
    }
    out.push_str("</table>");

    // Actions for responders.
    if v.may(Role::Responder) && i.status.is_open() {
        out.push_str("<div class=\"actions\">");
        if i.status == Status::Triggered {
            let _ = write!(
                out,
                "<form method=\"post\" action=\"/incidents/{}/ack\" class=\"inline\">{}<button type=\"submit\" id=\"acknowledge\" class=\"primary\">Acknowledge</button></form>",
                i.id,
                csrf_field(v)
            );
        }
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/incidents/{}/resolve\" class=\"inline\">{}<button type=\"submit\" id=\"resolve\">Resolve</button></form></div>",
            i.id,
            csrf_field(v)
        );
    }

    // Customer (reports).
    if let Some(e) = &p.event {
        out.push_str(&customer_section(r, e));
    }

    // Roles.
    out.push_str("<section><h2>Roles</h2>");
    if i.roles.is_empty() {
        out.push_str("<p class=\"quiet\">No roles held.</p>");
    } else {
        out.push_str("<table class=\"list\"><tbody>");
        for (role, person) in &i.roles {
            let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(role), esc(person));
        }
        out.push_str("</tbody></table>");
    }
    if v.may(Role::Responder) {
        let mut roles = String::new();
        for r in &p.role_names {
            let _ = write!(roles, "<option value=\"{0}\">{0}</option>", esc(r));
        }
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/incidents/{}/roles\" class=\"change-form\">{}\
             <label>Role <select name=\"role\" id=\"role-name\">{roles}</select></label> \
             <label>Person <select name=\"person\" id=\"role-person\"><option value=\"\">nobody (take the role away)</option>{}</select></label> \
             <button type=\"submit\" id=\"hand-role\">Hand over</button></form>",
            i.id,
            csrf_field(v),
            person_options(&p.people),
        );
    }
    out.push_str("</section>");

    // Pending timers.
    out.push_str("<section><h2>Pending escalation and reminders</h2>");
    if p.timers.is_empty() {
        out.push_str("<p class=\"quiet\">Nothing scheduled.</p>");
    } else {
        out.push_str("<ul class=\"timers\">");
        for t in &p.timers {
            let _ =
                write!(out, "<li>{} {}</li>", esc(&t.kind.describe()), countdown(t.due_at, now));
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>");

    // Notices.
    if !i.notices.is_empty() {
        out.push_str("<section><h2>Notices</h2>");
        for (k, n) in i.notices.iter().enumerate() {
            out.push_str(&notice_line(n, now));
            if v.may(Role::Responder) && n.sent.is_none() {
                let _ = write!(
                    out,
                    "<form method=\"post\" action=\"/incidents/{}/notices/{k}/sent\" class=\"change-form\">{}\
                     <label>Reference <input name=\"reference\" id=\"notice-{k}-reference\" maxlength=\"16384\" placeholder=\"case number, link to the filed notice\"></label> \
                     <button type=\"submit\" id=\"notice-{k}-sent\">Mark sent now</button></form>",
                    i.id,
                    csrf_field(v),
                );
            }
        }
        if let Some(a) = &i.awareness {
            let _ = write!(
                out,
                "<p class=\"awareness\">Aware since {}, recorded by {}{}</p>",
                at(a.at),
                esc(&a.by),
                a.note.as_deref().map(|n| format!(": {}", text(r, i.id, n))).unwrap_or_default(),
            );
        }
        if v.may(Role::Responder) {
            let _ = write!(
                out,
                "<form method=\"post\" action=\"/incidents/{}/awareness\" class=\"change-form\">{}\
                 <label>Aware since (UTC) <input type=\"datetime-local\" name=\"at\" id=\"aware-at\" required></label> \
                 <label>How <input name=\"note\" id=\"aware-note\" maxlength=\"16384\"></label> \
                 <button type=\"submit\" id=\"record-awareness\">Record awareness</button></form>\
                 <p class=\"quiet\">Unsent notices count their deadline and reminders from the awareness time.</p>",
                i.id,
                csrf_field(v),
            );
        }
        out.push_str("</section>");
    }

    // Notes.
    out.push_str("<section><h2>Notes</h2>");
    let notes: Vec<&Entry> = p.timeline.iter().filter(|e| e.kind == EntryKind::Note).collect();
    if notes.is_empty() {
        out.push_str("<p class=\"quiet\">No notes yet.</p>");
    }
    for n in notes {
        let _ = write!(
            out,
            "<blockquote class=\"note\"><p>{}</p><footer>{} · {}</footer></blockquote>",
            text(r, i.id, &n.message),
            esc(&n.actor),
            at(n.at)
        );
    }
    if v.may(Role::Responder) {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/incidents/{}/notes\" class=\"note-form\">{}\
             <label>Add a note <textarea name=\"text\" id=\"note\" rows=\"3\" maxlength=\"16384\" required></textarea></label>\
             <button type=\"submit\" id=\"add-note\">Add note</button></form>",
            i.id,
            csrf_field(v)
        );
    }
    out.push_str("</section>");

    // Review.
    if let Some(review) = &i.review {
        out.push_str("<section><h2>After-action review</h2>");
        for (label, value) in [
            ("Summary", &review.summary),
            ("Went well", &review.went_well),
            ("Went badly", &review.went_badly),
        ] {
            if !value.is_empty() {
                let _ = write!(out, "<h3>{label}</h3><p>{}</p>", text(r, i.id, value));
            }
        }
        if review.actions.is_empty() {
            out.push_str("<p class=\"quiet\">No action items.</p>");
        } else {
            out.push_str(
                "<table class=\"list\"><thead><tr><th>#</th><th>Action</th><th>Owner</th><th>Due</th><th>State</th></tr></thead><tbody>",
            );
            for a in &review.actions {
                let due =
                    if a.state == ActionState::Open { countdown(a.due, now) } else { at(a.due) };
                let overdue =
                    if a.overdue(now) { " <span class=\"badge late\">overdue</span>" } else { "" };
                let mut change = String::new();
                if v.may(Role::Responder) {
                    let mut states = String::new();
                    for st in [ActionState::Open, ActionState::Done, ActionState::Dropped] {
                        let sel = if st == a.state { " selected" } else { "" };
                        let _ = write!(states, "<option{sel}>{}</option>", st.as_str());
                    }
                    let _ = write!(
                        change,
                        " <form method=\"post\" action=\"/incidents/{}/actions/{}\" class=\"inline\">{}\
                         <select name=\"state\" id=\"action-{}-state\">{states}</select> \
                         <button type=\"submit\" id=\"action-{}-update\">Set</button></form>",
                        i.id,
                        a.id,
                        csrf_field(v),
                        a.id,
                        a.id,
                    );
                }
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{due}</td><td>{}{overdue}{change}</td></tr>",
                    a.id,
                    text(r, i.id, &a.title),
                    esc(&a.owner),
                    a.state.as_str()
                );
            }
            out.push_str("</tbody></table>");
        }
        if v.may(Role::Responder) {
            let _ = write!(
                out,
                "<form method=\"post\" action=\"/incidents/{}/actions\" class=\"change-form\">{}\
                 <label>New action item <input name=\"title\" id=\"action-title\" maxlength=\"16384\" required></label> \
                 <label>Owner <select name=\"owner\" id=\"action-owner\">{}</select></label> \
                 <label>Due <input type=\"date\" name=\"due\" id=\"action-due\" required></label> \
                 <button type=\"submit\" id=\"add-action\">Add</button></form>",
                i.id,
                csrf_field(v),
                person_options(&p.people),
            );
            let _ = write!(
                out,
                "<form method=\"post\" action=\"/incidents/{}/review\" class=\"review-form\">{}",
                i.id,
                csrf_field(v),
            );
            // Prefilled only for people who see customer data: a redacted copy saved back would
            // overwrite the original. An empty field keeps its text either way.
            for (name, label, value) in [
                ("summary", "Summary", &review.summary),
                ("went_well", "Went well", &review.went_well),
                ("went_badly", "Went badly", &review.went_badly),
            ] {
                let current = if v.pii { esc(value) } else { String::new() };
                let _ = write!(
                    out,
                    "<label>{label} <textarea name=\"{name}\" id=\"review-{name}\" rows=\"3\" maxlength=\"16384\" placeholder=\"empty: unchanged\">{current}</textarea></label>",
                );
            }
            out.push_str("<button type=\"submit\" id=\"save-review\">Save review</button></form>");
        }
        out.push_str("</section>");
    }

    // Notifications.
    let _ = write!(out, "<section><h2>Notifications ({})</h2>", p.notifications.len());
    if !p.notifications.is_empty() {
        out.push_str(
            "<table class=\"list\"><thead><tr><th>#</th><th>To</th><th>Channel</th><th>Why</th><th>State</th><th>Subject</th></tr></thead><tbody>",
        );
        for n in &p.notifications {
            out.push_str(&notification_row(r, n, now, None));
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");

    // Timeline.
    out.push_str("<section><h2>Timeline</h2><ol class=\"timeline\">");
    for e in &p.timeline {
        let _ = write!(
            out,
            "<li class=\"entry kind-{kind}\"><span class=\"when\">{}</span> <span class=\"badge\">{kind}</span> <span class=\"actor\">{}</span> {}</li>",
            at(e.at),
            esc(&e.actor),
            text(r, i.id, &crate::links::redact(&e.message)),
            kind = entry_kind(e.kind),
        );
    }
    out.push_str("</ol></section>");
    out
}

fn entry_kind(k: EntryKind) -> &'static str {
    match k {
        EntryKind::Opened => "opened",
        EntryKind::SeverityChanged => "severity",
        EntryKind::RuleFailed => "rule-failed",
        EntryKind::Acknowledged => "acknowledged",
        EntryKind::Resolved => "resolved",
        EntryKind::Note => "note",
        EntryKind::Suppressed => "suppressed",
        EntryKind::Notification => "notification",
        EntryKind::Escalated => "escalated",
        EntryKind::RoleChanged => "role",
        EntryKind::Notice => "notice",
        EntryKind::Review => "review",
    }
}

fn customer_section(r: &Redaction, e: &Event) -> String {
    // The event as the API shows it to this user: configured fields replaced, their values and
    // the patterns redacted from the rest.
    let shown = r.event(e);
    let description = shown["details"]["description"].as_str();
    let customer = shown["customer"].as_object();
    if customer.is_none() && description.is_none() {
        return String::new();
    }
    let mut out =
        String::from("<section><h2>Customer report</h2><table class=\"facts\" id=\"customer\">");
    if let Some(c) = customer {
        let fields = [
            ("Customer id", "id", "customer-id"),
            ("Name", "name", "customer-name"),
            ("Email", "email", "customer-email"),
            ("Phone", "phone", "customer-phone"),
        ];
        for (label, key, id) in fields {
            if let Some(value) = c.get(key).and_then(|v| v.as_str()) {
                let _ = write!(out, "<tr><th>{label}</th><td id=\"{id}\">{}</td></tr>", esc(value));
            }
        }
    }
    let _ =
        write!(out, "<tr><th>Verified</th><td>{}</td></tr>", if e.verified { "yes" } else { "no" });
    if let Some(d) = description {
        let _ = write!(
            out,
            "<tr><th>Description</th><td id=\"customer-description\">{}</td></tr>",
            esc(d)
        );
    }
    out.push_str("</table></section>");
    out
}

/// One outbox row; `manage` adds the admin's retry/drop buttons (with the CSRF field).
pub fn notification_row(
    r: &Redaction,
    n: &Notification,
    now: Timestamp,
    manage: Option<&str>,
) -> String {
    let subject = crate::links::redact(&n.message.subject);
    let error = n
        .last_error
        .as_deref()
        .map(|e| {
            format!(
                "<br><span class=\"meta\">{}</span>",
                text(r, n.incident_id, &crate::links::redact(e))
            )
        })
        .unwrap_or_default();
    let when = match n.state {
        OutboxState::Delivered => n.delivered_at.map(at).unwrap_or_default(),
        OutboxState::Dead => String::new(),
        _ => format!("due {}", countdown(n.due_at, now)),
    };
    let to = n.recipient.person.clone().unwrap_or_else(|| n.recipient.address.clone());
    let drill = if n.drill { " <span class=\"badge\">drill</span>" } else { "" };
    let manage = manage.unwrap_or_default();
    format!(
        "<tr data-notification=\"{id}\"><td>{id}</td><td>{}</td><td>{}</td><td>{} ({})</td><td><span class=\"badge state-{st}\">{st}</span>{drill} {} attempt(s) {when}{error}</td><td>{}</td>{manage}</tr>",
        esc(&to),
        n.channel.as_str(),
        n.reason.as_str(),
        esc(&n.audience),
        n.attempts,
        text(r, n.incident_id, &subject),
        id = n.id,
        st = n.state.as_str(),
    )
}

/// The admin's queue page: dead letters (retry) and pending notifications (drop).
pub fn queue(
    v: &Viewer,
    r: &Redaction,
    dead: &[Notification],
    pending: &[Notification],
    now: Timestamp,
) -> String {
    let mut out = String::new();
    let head = "<table class=\"list\"><thead><tr><th>#</th><th>To</th><th>Channel</th><th>Why</th><th>State</th><th>Subject</th><th></th></tr></thead><tbody>";
    let _ = write!(out, "<section><h2>Dead letters ({})</h2>", dead.len());
    if dead.is_empty() {
        out.push_str("<p class=\"quiet\">No dead letters.</p>");
    } else {
        out.push_str(head);
        for n in dead {
            let button = format!(
                "<td><form method=\"post\" action=\"/queue/{}/retry\" class=\"inline\">{}<button type=\"submit\">Retry</button></form></td>",
                n.id,
                csrf_field(v)
            );
            out.push_str(&notification_row(r, n, now, Some(&button)));
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");
    let _ = write!(out, "<section><h2>Pending ({})</h2>", pending.len());
    if pending.is_empty() {
        out.push_str("<p class=\"quiet\">Nothing pending.</p>");
    } else {
        out.push_str(head);
        for n in pending {
            let button = format!(
                "<td><form method=\"post\" action=\"/queue/{}/drop\" class=\"inline\">{}<button type=\"submit\">Drop</button></form></td>",
                n.id,
                csrf_field(v)
            );
            out.push_str(&notification_row(r, n, now, Some(&button)));
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");
    out
}

/// A short page saying what happened (an error, a reload's result).
pub fn message(text: &str, details: &[String], back: &str) -> String {
    let mut out = format!("<p>{}</p>", esc(text));
    if !details.is_empty() {
        out.push_str("<ul class=\"errors\">");
        for d in details {
            let _ = write!(out, "<li><code>{}</code></li>", esc(d));
        }
        out.push_str("</ul>");
    }
    let _ = write!(out, "<p><a href=\"{}\">Back</a></p>", esc(back));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    /// An incident as the version before `policy_choice` and `links` stored it.
    fn stored_incident() -> Incident {
        serde_json::from_value(serde_json::json!({
            "id": 7,
            "source": "default",
            "dedup_key": "k",
            "kind": "alert",
            "status": "triggered",
            "summary": "Checkout errors",
            "decision": {
                "score": 80, "base_score": 80, "severity": "sev1", "policy": "payments",
                "tags": [], "sensitivity": "none", "customer_facing": false, "roles": [],
                "suppressed": null, "rules_fired": [], "reasons": []
            },
            "first_seen": "2026-03-02T09:00:00Z",
            "last_seen": "2026-03-02T09:00:00Z",
            "count": 1,
            "opened_by": "01890000-0000-7000-8000-000000000000"
        }))
        .unwrap()
    }

    fn page_of(v: &Viewer, incident: Incident) -> String {
        let page = IncidentPage {
            incident,
            event: None,
            timeline: Vec::new(),
            notifications: Vec::new(),
            timers: Vec::new(),
            people: Vec::new(),
            role_names: Vec::new(),
        };
        let r = Redaction::new(v, &std::sync::Arc::new(crate::redact::Redactor::default()));
        self::incident(v, &r, &page, "2026-03-02T09:05:00Z".parse().unwrap(), None)
    }

    fn viewer(pii: bool) -> Viewer {
        Viewer { name: "vic".into(), role: Role::Viewer, csrf: "c".into(), pii }
    }

    #[test]
    fn an_incident_stored_without_a_policy_choice_still_shows_its_policy() {
        let mut old = stored_incident();
        let html = page_of(&viewer(false), old.clone());
        assert!(html.contains("<td id=\"policy\">payments <span"), "{html}");
        old.escalation = Some(crate::escalation::EscalationState {
            policy: "sev1-page".into(),
            step: 0,
            round: 0,
            next_at: None,
            stopped: None,
        });
        let html = page_of(&viewer(false), old);
        assert!(html.contains("<td id=\"policy\">sev1-page <span"), "what escalated: {html}");
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(SignedDuration::from_secs(42)), "42s");
        assert_eq!(span(SignedDuration::from_secs(200)), "3m 20s");
        assert_eq!(span(SignedDuration::from_secs(-7500)), "2h 5m");
        assert_eq!(span(SignedDuration::from_secs(90_000)), "1d 1h");
    }
}
