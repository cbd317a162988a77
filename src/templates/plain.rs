//! The plain built-in message: plain Rust, so it cannot fail. Used for a part that has no
//! template anywhere in its fallback chain, and for a part whose template failed to render.
//!
//! Audiences outside the incident team ([`is_external`]) get a redacted form with no summary,
//! labels or service: a fallback must never leak what the approved template would have left
//! out.

use std::fmt::Write as _;

use super::context::{NoticeKind, RenderContext, time};
use crate::incident::{Incident, Status};
use crate::notify::Channel;

/// Audiences whose messages may leave the company (customers, and the communications team who
/// forward them), with any tone after a hyphen (`customer-apology`, `customer-status`). Their
/// built-in messages and payloads are redacted.
pub fn is_external(audience: &str) -> bool {
    let base = audience.split_once('-').map_or(audience, |(base, _)| base);
    matches!(base, "customer" | "communications")
}

/// The communications team's audiences (`communications`, `communications-…`): their first
/// message carries the customer draft.
pub fn is_communications(audience: &str) -> bool {
    audience.split_once('-').map_or(audience, |(base, _)| base) == "communications"
}

/// Most incidents a bundle message lists one by one; the rest are counted.
const BUNDLE_LINES: usize = 20;
/// Longest summary in a subject, SMS or log line, in characters.
const SHORT_SUMMARY: usize = 100;

pub(crate) fn subject(ctx: &RenderContext, audience: &str) -> String {
    let drill = if ctx.drill { "[DRILL] " } else { "" };
    let incident = ctx.incident;
    if is_external(audience) {
        let what = match ctx.kind {
            NoticeKind::Bundle => "Service incidents".to_owned(),
            _ => format!("Service incident {}", incident.id),
        };
        return format!("{drill}{what}: {}", external_status(incident));
    }
    let severity = &incident.decision.severity;
    match ctx.kind {
        NoticeKind::Bundle => format!("{drill}[{severity}] {}", bundle_title(ctx)),
        _ => format!(
            "{drill}[{severity}] {} #{}: {}",
            heading(ctx.kind, incident.status),
            incident.id,
            truncate(&incident.summary, SHORT_SUMMARY)
        ),
    }
}

pub(crate) fn text(channel: Channel, ctx: &RenderContext, audience: &str) -> String {
    match channel {
        // One line that fits one or two SMS segments before the link.
        Channel::Sms | Channel::Log => {
            let mut line = subject(ctx, audience);
            if channel == Channel::Sms
                && !is_external(audience)
                && let Some(url) = &ctx.ack_url
            {
                let _ = write!(line, "\nAck: {url}");
            }
            line
        }
        Channel::Email | Channel::Webhook if is_external(audience) => external_text(ctx),
        Channel::Email | Channel::Webhook => detailed_text(ctx),
    }
}

/// The text, escaped into a `<pre>` so the HTML part says the same as the text part.
pub(crate) fn html(ctx: &RenderContext, audience: &str) -> String {
    let text = text(Channel::Email, ctx, audience);
    let mut html = String::with_capacity(text.len() + 64);
    html.push_str("<!DOCTYPE html>\n<html><body><pre style=\"font-family: sans-serif\">");
    escape_html_into(&mut html, &text);
    html.push_str("</pre></body></html>\n");
    html
}

/// Escapes the five characters that matter in HTML text and quoted attributes. Not `/`
/// (minijinja's escaping writes `&#x2f;`, which turns every link into `https:&#x2f;&#x2f;…`:
/// valid, but spam filters score obfuscated URLs).
pub(crate) fn escape_html_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
}

/// A reminder's heading says the incident's state as it is: reminders also go out about
/// resolved incidents (notice deadlines, action items).
fn heading(kind: NoticeKind, status: Status) -> &'static str {
    match (kind, status) {
        (NoticeKind::New, _) => "New incident",
        (NoticeKind::Update, _) => "Update on incident",
        (NoticeKind::Resolved, _) => "Resolved incident",
        (NoticeKind::Reminder, Status::Triggered) => "Still open, not acknowledged: incident",
        (NoticeKind::Reminder, Status::Acknowledged) => "Still open, acknowledged: incident",
        (NoticeKind::Reminder, Status::Resolved) => "Reminder about resolved incident",
        (NoticeKind::Bundle, _) => "Incidents",
    }
}

fn bundle_title(ctx: &RenderContext) -> String {
    match ctx.bundle.len() {
        0 | 1 => "1 new incident".to_owned(),
        n => format!("{n} new incidents"),
    }
}

fn external_status(incident: &Incident) -> &'static str {
    match incident.status {
        Status::Resolved => "resolved",
        Status::Triggered | Status::Acknowledged => "investigating",
    }
}

fn detailed_text(ctx: &RenderContext) -> String {
    let incident = ctx.incident;
    let mut out = String::new();
    if ctx.drill {
        out.push_str("THIS IS A DRILL: no real incident is happening.\n\n");
    }
    if ctx.kind == NoticeKind::Bundle {
        let _ = writeln!(out, "{}:", bundle_title(ctx));
        for item in ctx.bundle.iter().take(BUNDLE_LINES) {
            let _ = writeln!(
                out,
                "- #{} [{}] {}",
                item.id,
                item.decision.severity,
                truncate(&item.summary, SHORT_SUMMARY)
            );
        }
        if ctx.bundle.len() > BUNDLE_LINES {
            let _ = writeln!(out, "- and {} more", ctx.bundle.len() - BUNDLE_LINES);
        }
    } else {
        let decision = &incident.decision;
        let _ = writeln!(
            out,
            "{} #{} [{}, score {}]",
            heading(ctx.kind, incident.status),
            incident.id,
            decision.severity,
            decision.score
        );
        let _ = writeln!(out, "{}", incident.summary);
        if let Some(service) = &incident.service {
            let _ = writeln!(out, "Service: {service}");
        }
        let _ = writeln!(
            out,
            "Status: {}; first seen {}; last seen {}; {} occurrence(s)",
            incident.status.as_str(),
            time(incident.first_seen),
            time(incident.last_seen),
            incident.count
        );
    }
    if ctx.kind != NoticeKind::Bundle {
        for link in &incident.links {
            let what = match link.kind.as_str() {
                "runbook" => "Runbook",
                "dashboard" => "Dashboard",
                "source" => "Source",
                _ => "Link",
            };
            let _ = writeln!(out, "{what}: {}", link.href);
        }
    }
    if let Some(url) = &ctx.ack_url {
        let _ = writeln!(out, "Acknowledge: {url}");
    }
    if let Some(url) = &ctx.dashboard_url {
        let _ = writeln!(out, "Details: {url}");
    }
    out
}

fn external_text(ctx: &RenderContext) -> String {
    let mut out = String::new();
    if ctx.drill {
        out.push_str("THIS IS A DRILL: no real incident is happening.\n\n");
    }
    let incident = ctx.incident;
    let _ = match (ctx.kind, incident.status) {
        (_, Status::Resolved) => {
            writeln!(out, "The service incident with reference {} has been resolved.", incident.id)
        }
        (NoticeKind::Bundle, _) => {
            writeln!(out, "We are investigating issues affecting some of our services.")
        }
        _ => writeln!(out, "We are investigating a service incident (reference {}).", incident.id),
    };
    out
}

/// At most `max` characters of `text`, ending in `...` when cut. ASCII dots, not `…`: one
/// non-GSM character makes an SMS fall back to UCS-2 and halves what fits in a segment.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some(_) => {
            let keep = max.saturating_sub(3);
            let cut = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
            format!("{}...", text[..cut].trim_end())
        }
        None => text.to_owned(),
    }
}
