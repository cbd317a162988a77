//! Composing messages: an incident, a channel and an audience → the rendered message stored
//! in the outbox row; and several waiting messages for one recipient → one bundle.
//!
//! Called by the journal writer when it creates notifications (so the row holds what will be
//! sent) and by the delivery workers when they bundle. Templates come from the runtime's
//! template library; whatever happens there, a message comes out.

use crate::incident::Incident;
use crate::notify::{Channel, Message};
use crate::outbox::{Notification, Reason, Rendered};
use crate::templates::{NoticeKind, RenderContext};

/// What the approved `customer` email template says about the incident as it stands: the
/// communications lead's draft.
pub fn customer_draft(
    rt: &crate::runtime::Runtime,
    incident: &Incident,
    reason: Reason,
    now: jiff::Timestamp,
) -> Rendered {
    let to_customers = crate::policy::Delivery {
        channel: Channel::Email,
        recipient: crate::outbox::Recipient { person: None, address: "customers".into() },
        audience: "customer".into(),
    };
    render(rt, incident, reason, &to_customers, now).0
}

/// Where links in messages point.
#[derive(Debug, Clone, Default)]
pub struct Links {
    pub dashboard_url: Option<String>,
}

/// The built-in plain message: what every channel sends when no template applies or a
/// template fails. Short enough for one or two SMS segments.
pub fn plain(incident: &Incident, reason: Reason, links: &Links) -> Rendered {
    let d = &incident.decision;
    let what = match reason {
        Reason::New => "New incident",
        Reason::Resolved => "Resolved",
        Reason::Escalated => "Escalated: incident",
        Reason::Reminder => "Reminder: incident",
    };
    let service = incident.service.as_deref().map(|s| format!(" [{s}]")).unwrap_or_default();
    let drill = if incident.drill { "[DRILL] " } else { "" };
    let subject =
        format!("{drill}[{}] {what} #{}: {}{service}", d.severity, incident.id, incident.summary);
    let mut text = format!(
        "{drill}{what} #{} ({}, score {}){service}: {}\nStatus: {}. Source: {}. First seen {}; {} occurrence(s).",
        incident.id,
        d.severity,
        d.score,
        incident.summary,
        incident.status.as_str(),
        incident.source,
        incident.first_seen,
        incident.count,
    );
    if let Some(url) = &links.dashboard_url {
        text.push_str(&format!("\n{url}/incidents/{}", incident.id));
    }
    let payload = serde_json::json!({
        "version": "1",
        "kind": format!("incident.{}", reason.as_str()),
        "incident": {
            "id": incident.id,
            "status": incident.status.as_str(),
            "severity": d.severity,
            "score": d.score,
            "summary": incident.summary,
            "service": incident.service,
            "source": incident.source,
            "dedup_key": incident.dedup_key,
            "tags": d.tags,
            "sensitivity": d.sensitivity.as_str(),
            "customer_facing": d.customer_facing,
            "first_seen": incident.first_seen,
            "last_seen": incident.last_seen,
            "count": incident.count,
        },
        "drill": incident.drill,
    });
    Rendered { subject, text, html: None, payload }
}

/// Renders the message a delivery calls for, at `now` on the daemon's clock (an acknowledge
/// link in it expires counted from then). Returns the message and, when a template failed and
/// the plain built-in message was used instead, why.
pub fn render(
    rt: &crate::runtime::Runtime,
    incident: &Incident,
    reason: Reason,
    delivery: &crate::policy::Delivery,
    now: jiff::Timestamp,
) -> (Rendered, Option<String>) {
    let kind = match reason {
        Reason::New | Reason::Escalated => NoticeKind::New,
        Reason::Resolved => NoticeKind::Resolved,
        Reason::Reminder => NoticeKind::Reminder,
    };
    let mut ctx = RenderContext::new(incident, kind);
    ctx.drill = incident.drill;
    ctx.dashboard_url = rt
        .config
        .notifications
        .dashboard_url
        .as_ref()
        .map(|u| format!("{u}/incidents/{}", incident.id));
    ctx.ack_url = ack_url(rt, incident, reason, delivery, now);
    ctx.recipient_name = delivery
        .recipient
        .person
        .as_ref()
        .and_then(|id| rt.config.policies.people.get(id))
        .map(|p| p.name.clone());
    ctx.zone = delivery.recipient.person.as_ref().map(|id| rt.config.roster.zone(id));
    let language = language(rt, delivery);
    let r = rt.templates.render_in(delivery.channel, &delivery.audience, language, &ctx);
    let mut payload = r.payload;
    // Receivers built for Alertmanager get its webhook body instead of Tocsin's.
    if delivery.channel == Channel::Webhook
        && rt.config.notifications.webhooks.iter().any(|w| {
            w.name == delivery.recipient.address
                && w.format == crate::notify::WebhookFormat::Alertmanager
        })
    {
        let receiver = &delivery.recipient.address;
        payload = crate::templates::alertmanager_payload(incident, receiver, &delivery.audience);
    }
    (Rendered { subject: r.subject, text: r.text, html: r.html, payload }, r.fallback)
}

/// The language a delivery goes out in: the recipient person's `language` (default `en`);
/// for other recipients (webhooks, the log), `notifications.audience_languages` for the
/// audience (or for its base before a hyphen: `customer` for `customer-apology`), else `en`.
pub fn language<'a>(
    rt: &'a crate::runtime::Runtime,
    delivery: &crate::policy::Delivery,
) -> &'a str {
    if let Some(person) = &delivery.recipient.person {
        return rt.config.roster.language(person);
    }
    let langs = &rt.config.notifications.audience_languages;
    let audience = delivery.audience.as_str();
    let base = audience.split_once('-').map_or(audience, |(b, _)| b);
    langs
        .get(audience)
        .or_else(|| langs.get(base))
        .map_or(crate::templates::DEFAULT_LANGUAGE, String::as_str)
}

/// The rendered message for an audience or channel the redaction policy names
/// (`redaction.notify_audiences` / `notify_channels`): the values of the configured fields of
/// the incident's opening event and the patterns are replaced in the subject, text, HTML and
/// webhook body, before the message is stored in the outbox row.
pub fn redacted(
    rt: &crate::runtime::Runtime,
    message: Rendered,
    opening: Option<&crate::event::Event>,
) -> Rendered {
    let known =
        opening.map(|e| crate::redact::Known::of_event(&rt.redactor, e)).unwrap_or_default();
    rt.redactor.rendered(message, &known)
}

/// Puts a fixed line from Tocsin itself (why this escalation or reminder is being sent) at the
/// top of a rendered message: the subject gains `lead: `, the text and HTML open with `line`,
/// and a webhook payload carries it as `"note"`. The approved template renders the rest.
pub fn with_note(mut r: Rendered, lead: &str, line: &str) -> Rendered {
    r.subject = format!("{lead}: {}", r.subject);
    r.text = format!("{line}\n\n{}", r.text);
    if let Some(html) = &r.html {
        r.html = Some(format!("<p><strong>{}</strong></p>\n{html}", escape_html(line)));
    }
    if let serde_json::Value::Object(map) = &mut r.payload {
        map.insert("note".into(), serde_json::Value::String(line.to_string()));
    }
    r
}

/// Appends the approved customer wording (`draft`, rendered from the `customer` template) to a
/// message for the communications lead, so that what they publish starts from approved words:
/// in the text and HTML, and as `"draft": {subject, text}` in a webhook payload. For email and
/// webhooks: an SMS gets [`with_draft_in_email`] at most.
pub fn with_draft(mut r: Rendered, draft: &Rendered) -> Rendered {
    let body = format!("{}\n{}", draft.subject, draft.text.trim_end());
    r.text = format!(
        "{}\n\nDraft from the approved customer template:\n---\n{body}\n---",
        r.text.trim_end()
    );
    if let Some(html) = &r.html {
        let block = format!(
            "<p><strong>Draft from the approved customer template:</strong></p>\n<pre style=\"font-family: sans-serif; border-left: 3px solid #888; padding-left: 8px\">{}</pre>\n",
            escape_html(&body)
        );
        r.html = Some(match html.rfind("</body>") {
            Some(at) => format!("{}{block}{}", &html[..at], &html[at..]),
            None => format!("{html}\n{block}"),
        });
    }
    if let serde_json::Value::Object(map) = &mut r.payload {
        map.insert(
            "draft".into(),
            serde_json::json!({"subject": draft.subject, "text": draft.text}),
        );
    }
    r
}

/// Points a short message (an SMS to the communications lead) at the draft in the email that
/// goes with it: the whole draft would not fit two SMS segments.
pub fn with_draft_in_email(mut r: Rendered) -> Rendered {
    r.text = format!("{} Customer draft: in your email.", r.text.trim_end());
    r
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The signed one-click acknowledge link for this delivery, when it may carry one: an open
/// incident, by email or SMS, to a person from `people` in an internal audience, with
/// `notifications.dashboard_url` set. Resolution notices, webhooks, the log and the customer
/// and communications audiences never get one (their messages may be forwarded outside).
pub fn ack_url(
    rt: &crate::runtime::Runtime,
    incident: &Incident,
    reason: Reason,
    delivery: &crate::policy::Delivery,
    now: jiff::Timestamp,
) -> Option<String> {
    let links = rt.ack_links.as_ref()?;
    let person = delivery.recipient.person.as_ref()?;
    let person_addressed = matches!(delivery.channel, Channel::Email | Channel::Sms);
    // Every notice about an open incident (new, and later escalation steps and reminders);
    // a resolution notice has nothing left to acknowledge.
    if reason == Reason::Resolved
        || !person_addressed
        || !incident.status.is_open()
        || crate::templates::is_external(&delivery.audience)
    {
        return None;
    }
    links.url(incident.id, person, now)
}

/// The message for one notification as stored, with its idempotency id.
pub fn message(n: &Notification) -> Message {
    Message {
        idempotency_id: n.idempotency_id.clone(),
        subject: n.message.subject.clone(),
        text: n.message.text.clone(),
        html: n.message.html.clone(),
        payload: n.message.payload.clone(),
    }
}

/// One message for several notifications waiting for the same recipient on one channel
/// (rate-limited), so they arrive together instead of being dropped or sent one per minute.
pub fn bundle(items: &[Notification]) -> Message {
    debug_assert!(!items.is_empty());
    let head = &items[0];
    if items.len() == 1 {
        return message(head);
    }
    let drill = if items.iter().all(|n| n.drill) { "[DRILL] " } else { "" };
    let subject = format!("{drill}{} notifications from Tocsin", items.len());
    let mut text = format!("{} notifications:\n", items.len());
    for n in items {
        text.push_str("- ");
        text.push_str(&n.message.subject);
        text.push('\n');
    }
    let payload = match head.channel {
        Channel::Webhook => serde_json::json!({
            "version": "1",
            "kind": "bundle",
            "notifications": items.iter().map(|n| &n.message.payload).collect::<Vec<_>>(),
        }),
        _ => serde_json::Value::Null,
    };
    Message {
        // Stable for the same bundle head, distinct from the head sent alone.
        idempotency_id: format!("{}-bundle{}", head.idempotency_id, items.len()),
        subject,
        text,
        html: None,
        payload,
    }
}
