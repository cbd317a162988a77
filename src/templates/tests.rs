use std::path::Path;

use serde_json::json;

use super::context::sample;
use super::*;
use crate::incident::Incident;

const AUDIENCES: [&str; 7] =
    ["responder", "legal", "communications", "executive", "customer", "default", "security"];

fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/templates")
}

/// A template directory holding `files` (`(path under the dir, source)`).
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, source) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, source).unwrap();
    }
    dir
}

fn load(files: &[(&str, &str)]) -> Templates {
    let dir = dir_with(files);
    Templates::load(dir.path()).unwrap_or_else(|errors| panic!("{errors:?}"))
}

fn with_severity(severity: &str) -> Incident {
    let mut incident = sample::full(NoticeKind::New, 42);
    incident.decision.severity = severity.into();
    incident
}

#[test]
fn severity_specific_beats_audience_beats_default() {
    let templates = load(&[
        ("sms/responder.sev1.text.j2", "responder sev1"),
        ("sms/responder.text.j2", "responder"),
        ("sms/default.sev1.text.j2", "default sev1"),
        ("sms/default.text.j2", "default"),
    ]);
    let text = |audience: &str, severity: &str| {
        let incident = with_severity(severity);
        let rendered = templates.render(
            Channel::Sms,
            audience,
            &RenderContext::new(&incident, NoticeKind::New),
        );
        assert_eq!(rendered.fallback, None);
        rendered.text
    };
    assert_eq!(text("responder", "sev1"), "responder sev1");
    assert_eq!(text("responder", "sev2"), "responder");
    assert_eq!(text("legal", "sev1"), "default sev1");
    assert_eq!(text("legal", "sev2"), "default");
}

#[test]
fn no_template_in_the_chain_gives_the_plain_message_without_a_fallback_reason() {
    let templates = load(&[("sms/legal.text.j2", "legal")]);
    let incident = sample::full(NoticeKind::New, 42);
    let ctx = RenderContext::new(&incident, NoticeKind::New);
    let rendered = templates.render(Channel::Email, "responder", &ctx);
    assert_eq!(rendered.fallback, None);
    assert_eq!(
        rendered.subject,
        "[sev1] New incident #42: Checkout error rate above 5% for 10 minutes"
    );
    assert!(rendered.text.contains("Service: checkout"), "{}", rendered.text);
    assert_eq!(rendered.html, None, "no html template: a text-only email");
    assert_eq!(rendered.payload, serde_json::Value::Null);
}

#[test]
fn load_reports_every_error_with_file_and_line() {
    let dir = dir_with(&[
        ("email/default.subject.j2", "fine"),
        ("email/legal.text.j2", "line one\nline two {{ incident.id | }}\nline three"),
        ("sms/default.text.j2", "{% if drill %}\nno end"),
        ("sms/default.txt.j2", "misspelt part"),
        ("pager/default.text.j2", "unknown channel"),
        ("stray.j2", "outside a channel"),
        ("README.md", "ignored"),
        ("email/notes.md", "ignored"),
    ]);
    let errors = Templates::load(dir.path()).unwrap_err();
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 5, "{shown:#?}");

    let syntax = errors.iter().find(|e| e.file.ends_with("email/legal.text.j2")).unwrap();
    assert_eq!((syntax.line, syntax.column), (Some(2), Some(27)), "{shown:#?}");
    assert!(shown.iter().any(|s| s.contains("email/legal.text.j2:2")), "{shown:#?}");
    let unclosed = errors.iter().find(|e| e.file.ends_with("sms/default.text.j2")).unwrap();
    assert!(unclosed.line.is_some(), "{shown:#?}");
    assert!(shown.iter().any(|s| s.contains("default.txt.j2") && s.contains("\"txt\"")));
    assert!(shown.iter().any(|s| s.contains("pager") && s.contains("unknown channel")));
    assert!(shown.iter().any(|s| s.contains("stray.j2") && s.contains("channel directory")));
}

#[test]
fn a_missing_directory_is_an_error_naming_it() {
    let errors = Templates::load(Path::new("/nonexistent/templates")).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().starts_with("/nonexistent/templates: cannot read"));
}

#[test]
fn a_render_error_falls_back_for_that_part_and_says_why() {
    let templates = load(&[
        ("email/default.subject.j2", "Incident {{ incident.id }}"),
        ("email/default.text.j2", "Hello\n{{ incident.labels.missing_label }}\n"),
    ]);
    let incident = sample::full(NoticeKind::New, 42);
    let rendered = templates.render(
        Channel::Email,
        "responder",
        &RenderContext::new(&incident, NoticeKind::New),
    );
    assert_eq!(rendered.subject, "Incident 42", "the subject template still applies");
    assert!(rendered.text.starts_with("New incident #42 [sev1, score 95]"), "{}", rendered.text);
    let reason = rendered.fallback.expect("the failure is reported");
    assert!(reason.starts_with("email/default.text.j2:2: "), "{reason}");
    assert!(reason.contains("undefined"), "{reason}");
}

#[test]
fn a_bad_filter_argument_falls_back() {
    let templates = load(&[("sms/default.text.j2", "{{ incident.summary | truncate('x') }}")]);
    let incident = sample::full(NoticeKind::New, 42);
    let rendered =
        templates.render(Channel::Sms, "legal", &RenderContext::new(&incident, NoticeKind::New));
    assert!(rendered.fallback.unwrap().starts_with("sms/default.text.j2:1: "));
    assert!(rendered.text.starts_with("[sev1] New incident #42"), "{}", rendered.text);
}

#[test]
fn fuel_exhaustion_falls_back() {
    let templates = load(&[(
        "log/default.text.j2",
        "{% for a in range(1000) %}{% for b in range(1000) %}.{% endfor %}{% endfor %}",
    )]);
    let incident = sample::full(NoticeKind::New, 42);
    let rendered = templates.render(
        Channel::Log,
        "responder",
        &RenderContext::new(&incident, NoticeKind::New),
    );
    let reason = rendered.fallback.unwrap();
    assert!(reason.contains(&format!("stopped after {FUEL} steps")), "{reason}");
    assert!(rendered.text.starts_with("[sev1] New incident #42"));
}

#[test]
fn output_over_the_limit_falls_back() {
    let templates = load(&[("log/default.text.j2", "{{ 'x' * 2000000 }}")]);
    let incident = sample::full(NoticeKind::New, 42);
    let rendered = templates.render(
        Channel::Log,
        "responder",
        &RenderContext::new(&incident, NoticeKind::New),
    );
    assert!(rendered.fallback.unwrap().contains("limit"));
    assert!(rendered.text.len() < 1000);
}

#[test]
fn a_json_template_that_is_not_json_falls_back_to_the_built_in_payload() {
    let templates = load(&[("webhook/default.json.j2", "{\"id\": {{ incident.id }},}")]);
    let incident = sample::full(NoticeKind::New, 42);
    let ctx = RenderContext::new(&incident, NoticeKind::New);
    let rendered = templates.render(Channel::Webhook, "responder", &ctx);
    assert_eq!(rendered.payload, tocsin_payload(&ctx));
    let reason = rendered.fallback.unwrap();
    assert!(reason.contains("webhook/default.json.j2") && reason.contains("JSON"), "{reason}");
}

#[test]
fn json_templates_escape_values_as_json() {
    let templates = load(&[(
        "webhook/default.json.j2",
        r#"{"text": {{ incident.summary }}, "service": {{ incident.service }}, "tags": {{ incident.tags }}}"#,
    )]);
    let mut incident = sample::full(NoticeKind::New, 42);
    incident.summary = r#"quote " and </script> and \ backslash"#.into();
    incident.service = None;
    let rendered = templates.render(
        Channel::Webhook,
        "responder",
        &RenderContext::new(&incident, NoticeKind::New),
    );
    assert_eq!(rendered.fallback, None);
    assert_eq!(
        rendered.payload,
        json!({"text": incident.summary, "service": null, "tags": ["payments", "pci"]})
    );
}

#[test]
fn html_escaping_applies_to_html_templates_only() {
    let source = "{{ incident.summary }}";
    let templates = load(&[
        ("email/default.subject.j2", source),
        ("email/default.text.j2", source),
        ("email/default.html.j2", source),
        ("sms/default.text.j2", source),
    ]);
    let mut incident = sample::full(NoticeKind::New, 42);
    incident.summary = "<b>5xx</b> & \"rising\"".into();
    let ctx = RenderContext::new(&incident, NoticeKind::New);
    let email = templates.render(Channel::Email, "responder", &ctx);
    assert_eq!(email.subject, incident.summary);
    assert_eq!(email.text, incident.summary);
    assert_eq!(email.html.unwrap(), "&lt;b&gt;5xx&lt;/b&gt; &amp; &quot;rising&quot;");
    let sms = templates.render(Channel::Sms, "responder", &ctx);
    assert_eq!(sms.text, incident.summary);
}

#[test]
fn a_failed_html_part_falls_back_to_escaped_plain_text() {
    let templates = load(&[("email/default.html.j2", "{{ nope }}")]);
    let mut incident = sample::full(NoticeKind::New, 42);
    incident.summary = "<script>".into();
    let rendered = templates.render(
        Channel::Email,
        "responder",
        &RenderContext::new(&incident, NoticeKind::New),
    );
    let html = rendered.html.unwrap();
    assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"), "{html}");
    assert!(rendered.fallback.unwrap().starts_with("email/default.html.j2:1: "));
}

#[test]
fn subjects_are_one_line_and_none_prints_as_nothing() {
    let templates = load(&[(
        "email/default.subject.j2",
        "Incident\n{{ incident.id }}\r\nBcc: someone@example.com [{{ incident.service }}]",
    )]);
    let mut incident = sample::full(NoticeKind::New, 42);
    incident.service = None;
    let rendered = templates.render(
        Channel::Email,
        "responder",
        &RenderContext::new(&incident, NoticeKind::New),
    );
    assert_eq!(rendered.subject, "Incident 42 Bcc: someone@example.com []");
}

#[test]
fn check_variables_flags_a_misspelt_variable_even_inside_a_test() {
    let templates = load(&[
        ("email/default.subject.j2", "{{ incident.id }}"),
        ("email/default.text.j2", "Hello\n{% if incident.servce %}x{% endif %}\n"),
        ("sms/default.text.j2", "{{ ack_link }}"),
        ("log/default.text.j2", "{% for i in bundle %}{{ i.summray }}{% endfor %}"),
        ("sms/legal.text.j2", "{{ incident.labels.team }}"),
    ]);
    let errors = templates.check_variables();
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 4, "{shown:#?}");
    let text = errors.iter().find(|e| e.file.ends_with("email/default.text.j2")).unwrap();
    assert_eq!((text.line, text.column), (Some(2), Some(7)), "{shown:#?}");
    assert!(text.message.contains("`incident.servce`"), "{shown:#?}");
    assert!(
        shown.iter().any(|s| s.contains("sms/default.text.j2:1:4: unknown variable `ack_link`"))
    );
    // Loop variables are only known at render time: the sample bundle catches them.
    let looped = errors.iter().find(|e| e.file.ends_with("log/default.text.j2")).unwrap();
    assert!(looped.message.contains("fails for a sample incident"), "{shown:#?}");
    // A label some incidents lack fails on the sample that has no labels.
    assert!(errors.iter().any(|e| e.file.ends_with("sms/legal.text.j2")), "{shown:#?}");
}

#[test]
fn check_variables_flags_a_json_template_that_does_not_render_json() {
    let templates = load(&[("webhook/default.json.j2", "\"{{ incident.summary }}\"")]);
    let errors = templates.check_variables();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].message.contains("valid JSON"), "{}", errors[0]);
}

#[test]
fn the_variable_lists_match_what_templates_get() {
    let incident = sample::full(NoticeKind::Bundle, 42);
    let ctx = RenderContext::new(&incident, NoticeKind::Bundle);
    let view = serde_json::to_value(View::new(&ctx, Channel::Email, "responder")).unwrap();
    let roots: Vec<&str> = view.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = ROOT_NAMES.to_vec();
    expected.sort();
    assert_eq!(roots, expected);
    let fields: Vec<&str> =
        view["incident"].as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = INCIDENT_FIELDS.to_vec();
    expected.sort();
    assert_eq!(fields, expected);
}

// --- The shipped library -------------------------------------------------------------------

#[test]
fn the_embedded_list_matches_the_shipped_directory() {
    let on_disk = Templates::load(&shipped_dir()).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(on_disk.names(), Templates::builtin().names());
    for (name, source) in builtin::FILES {
        let file = std::fs::read_to_string(shipped_dir().join(name)).unwrap();
        assert_eq!(&file, source, "{name}");
    }
}

#[test]
fn every_shipped_template_passes_check_variables() {
    let errors = Templates::builtin().check_variables();
    assert!(errors.is_empty(), "{:#?}", errors.iter().map(ToString::to_string).collect::<Vec<_>>());
}

#[test]
fn every_shipped_template_renders_every_kind_without_fallback() {
    let templates = Templates::builtin();
    for sample in samples() {
        let ctx = sample.ctx();
        for channel in CHANNELS {
            for audience in AUDIENCES {
                let rendered = templates.render(channel, audience, &ctx);
                let at =
                    format!("{}/{audience} {:?} full={}", channel.as_str(), ctx.kind, sample.full);
                assert_eq!(rendered.fallback, None, "{at}");
                assert!(!rendered.subject.is_empty() && !rendered.text.is_empty(), "{at}");
                assert!(!rendered.subject.contains('\n'), "{at}");
                assert!(
                    !rendered.text.contains("\n\n\n"),
                    "{at}: stray blank lines\n{}",
                    rendered.text
                );
                let marked = |s: &str| s.contains("DRILL") || s.contains("TEST");
                if ctx.drill {
                    assert!(marked(&rendered.text), "{at}: drill not marked\n{}", rendered.text);
                    if channel == Channel::Email {
                        assert!(marked(&rendered.subject), "{at}");
                        assert!(marked(rendered.html.as_deref().unwrap()), "{at}");
                    }
                } else {
                    assert!(!marked(&rendered.text) && !marked(&rendered.subject), "{at}");
                }
                match channel {
                    Channel::Email => assert!(rendered.html.is_some(), "{at}"),
                    Channel::Webhook => assert!(rendered.payload.is_object(), "{at}"),
                    Channel::Sms | Channel::Log => {}
                }
            }
        }
    }
}

#[test]
fn shipped_sms_fit_two_gsm_segments() {
    let templates = Templates::builtin();
    let mut incident = sample::full(NoticeKind::New, 123_456);
    incident.summary = "Checkout error rate above 5% ".repeat(10);
    incident.service = Some("checkout-payments-gateway".into());
    let claim = crate::links::Claim {
        incident: incident.id,
        person: "ana.lopez-oncall".into(),
        expires: 1_800_000_000,
    };
    let token = crate::links::mint(&crate::links::Key::new(vec![7; 32]), &claim).unwrap();
    assert_eq!(token.len(), 66);
    for kind in NoticeKind::ALL {
        let bundle = vec![incident.clone(); 3];
        let ctx = RenderContext {
            bundle: if kind == NoticeKind::Bundle { &bundle } else { &[] },
            // A real link, for a person id of 16 characters.
            ack_url: Some(format!("https://tocsin.example.com/ack/{token}")),
            dashboard_url: Some("https://tocsin.example.com/incidents/123456".into()),
            drill: true,
            ..RenderContext::new(&incident, kind)
        };
        for audience in AUDIENCES {
            let text = templates.render(Channel::Sms, audience, &ctx).text;
            assert!(text.len() <= 306, "{audience} {kind:?}: {} chars: {text}", text.len());
            assert!(text.is_ascii(), "{audience} {kind:?}: non-GSM character in {text}");
        }
    }
}

#[test]
fn shipped_external_templates_leave_out_internal_and_personal_data() {
    let templates = Templates::builtin();
    for sample in samples() {
        let ctx = sample.ctx();
        let incident = ctx.incident;
        for channel in CHANNELS {
            for audience in ["customer", "communications"] {
                let r = templates.render(channel, audience, &ctx);
                let all = format!(
                    "{}\n{}\n{}\n{}",
                    r.subject,
                    r.text,
                    r.html.unwrap_or_default(),
                    r.payload
                );
                let mut secrets = vec![incident.summary.as_str(), incident.dedup_key.as_str()];
                secrets.extend(incident.labels.values().map(String::as_str));
                secrets.extend(incident.decision.tags.iter().map(String::as_str));
                if let Some(ack) = &ctx.ack_url {
                    secrets.push(ack);
                }
                for secret in secrets {
                    assert!(
                        !all.contains(secret),
                        "{}/{audience}: leaks {secret:?}:\n{all}",
                        channel.as_str()
                    );
                }
                // Severity names are internal jargon for people (the payload keeps the severity
                // for machines, e.g. a status page mapping it to an impact level).
                let words = format!("{}\n{}", r.subject, r.text);
                if audience == "customer" {
                    assert!(!words.contains(&incident.decision.severity), "{words}");
                    assert!(!all.contains("prometheus"), "{all}");
                }
            }
        }
    }
}

#[test]
fn shipped_legal_templates_mention_sensitivity_and_a_possible_deadline() {
    let templates = Templates::builtin();
    let incident = sample::full(NoticeKind::New, 42);
    let ctx = RenderContext::new(&incident, NoticeKind::New);
    for channel in [Channel::Email, Channel::Sms, Channel::Log] {
        let r = templates.render(channel, "legal", &ctx);
        assert!(r.text.contains("personal"), "{}: {}", channel.as_str(), r.text);
        // The SMS names the attached notice instead, when there is one (below).
        if channel != Channel::Sms {
            assert!(r.text.contains("deadline may apply"), "{}: {}", channel.as_str(), r.text);
        }
    }
    let mut none = incident.clone();
    none.notices.clear();
    let r = templates.render(Channel::Sms, "legal", &RenderContext::new(&none, NoticeKind::New));
    assert!(r.text.contains("deadline may apply"), "{}", r.text);
}

#[test]
fn the_legal_liaisons_first_message_states_each_notice_and_its_deadline_in_their_zone() {
    let templates = Templates::builtin();
    let mut incident = sample::full(NoticeKind::New, 42);
    let mut voluntary = incident.notices[0].clone();
    voluntary.name = "Card scheme notice".into();
    voluntary.mandatory = false;
    incident.notices.push(voluntary);
    let ctx = RenderContext {
        zone: Some(jiff::tz::TimeZone::get("America/New_York").unwrap()),
        ..RenderContext::new(&incident, NoticeKind::New)
    };
    let r = templates.render(Channel::Email, "legal", &ctx);
    for text in [r.text.as_str(), r.html.as_deref().unwrap()] {
        assert!(
            text.contains("GDPR Art. 33 supervisory authority notice</strong> (mandatory): due <strong>2026-11-29 22:09 EST</strong> (America/New_York), that is 2026-11-30T03:09:00Z in UTC")
                || text.contains("- GDPR Art. 33 supervisory authority notice (mandatory): due 2026-11-29 22:09 EST (America/New_York), that is 2026-11-30T03:09:00Z in UTC"),
            "{text}"
        );
        assert!(text.contains("Card scheme notice"), "{text}");
        assert!(text.contains("(voluntary)"), "{text}");
    }
    let sms = templates.render(Channel::Sms, "legal", &ctx).text;
    assert!(
        sms.contains("Notice \"GDPR Art. 33 supervisory authority notice\" (mandatory) due 2026-11-30T03:09:00Z UTC (+1 more)"),
        "{sms}"
    );
    // In UTC the local and the UTC time agree, and the zone is not repeated.
    let r =
        templates.render(Channel::Email, "legal", &RenderContext::new(&incident, NoticeKind::New));
    assert!(
        r.text.contains("due 2026-11-30 03:09 UTC, that is 2026-11-30T03:09:00Z in UTC"),
        "{}",
        r.text
    );
}

#[test]
fn no_shipped_template_calls_a_resolved_incident_open_or_an_acknowledged_one_unacknowledged() {
    use crate::incident::{Stamp, Status};
    let templates = Templates::builtin();
    let at = |t: &str| t.parse::<jiff::Timestamp>().unwrap();
    let mut acknowledged = sample::full(NoticeKind::Reminder, 42);
    acknowledged.status = Status::Acknowledged;
    acknowledged.acknowledged =
        Some(Stamp { by: "user:ana".into(), at: at("2026-11-27T03:12:00Z") });
    let mut resolved = acknowledged.clone();
    resolved.status = Status::Resolved;
    resolved.resolved = Some(Stamp { by: "user:ana".into(), at: at("2026-11-27T03:40:00Z") });
    let open_words =
        ["still open", "STILL OPEN", "noch offen", "NOCH OFFEN", "Still open", "Noch offen"];
    let unacked_words = ["nobody has acknowledged", "NOT ACKED", "niemand hat", "NICHT BEST"];
    for (incident, banned) in [
        (&resolved, [&open_words[..], &unacked_words[..]].concat()),
        (&acknowledged, unacked_words.to_vec()),
    ] {
        for kind in [NoticeKind::Reminder, NoticeKind::Update] {
            let ctx = RenderContext::new(incident, kind);
            for language in ["en", "de"] {
                for channel in CHANNELS {
                    for audience in AUDIENCES {
                        let r = templates.render_in(channel, audience, language, &ctx);
                        let all =
                            format!("{}\n{}\n{}", r.subject, r.text, r.html.unwrap_or_default());
                        for word in &banned {
                            assert!(
                                !all.contains(word),
                                "{language}/{}/{audience} {kind:?} about a {} incident says {word:?}:\n{all}",
                                channel.as_str(),
                                incident.status.as_str()
                            );
                        }
                    }
                }
            }
        }
    }
    let r = templates.render(
        Channel::Email,
        "responder",
        &RenderContext::new(&resolved, NoticeKind::Reminder),
    );
    assert!(r.text.contains("which was resolved at 2026-11-27T03:40:00Z"), "{}", r.text);
    let r = templates.render(
        Channel::Email,
        "responder",
        &RenderContext::new(&acknowledged, NoticeKind::Reminder),
    );
    assert!(
        r.text.contains("still open; user:ana acknowledged it at 2026-11-27T03:12:00Z"),
        "{}",
        r.text
    );
}

#[test]
fn runbook_and_dashboard_links_reach_responders_on_every_channel_that_fits() {
    let templates = Templates::builtin();
    let mut incident = sample::full(NoticeKind::New, 42);
    incident.summary = "Disk full".into();
    let ctx = RenderContext::new(&incident, NoticeKind::New);
    let runbook = "https://wiki.example.com/runbooks/checkout-errors";
    let email = templates.render(Channel::Email, "responder", &ctx);
    assert!(email.text.contains(&format!("  Runbook: {runbook}\n")), "{}", email.text);
    assert!(
        email
            .text
            .contains("  Dashboard: https://grafana.example.com/d/checkout (Checkout overview)"),
        "{}",
        email.text
    );
    assert!(email.html.unwrap().contains(&format!("<a href=\"{runbook}\">Runbook</a>")));
    for language in ["en", "de"] {
        let sms = templates.render_in(Channel::Sms, "responder", language, &ctx).text;
        assert!(sms.ends_with(&format!("\nRunbook: {runbook}")), "{language}: {sms}");
    }
    let hook = templates.render(Channel::Webhook, "responder", &ctx).payload;
    assert_eq!(hook["incident"]["links"][0]["href"], runbook);
    let am = alertmanager_payload(&incident, "r", "responder");
    assert_eq!(am["commonAnnotations"]["runbook_url"], runbook);
}

#[test]
fn customers_and_communications_never_see_internal_links() {
    let templates = Templates::builtin();
    let mut incident = sample::full(NoticeKind::New, 42);
    incident.links.push(crate::incident::IncidentLink {
        kind: "source".into(),
        href: "http://prometheus.example.com/graph?g0.expr=up".into(),
        text: None,
    });
    let hrefs: Vec<&str> = incident.links.iter().map(|l| l.href.as_str()).collect();
    assert_eq!(hrefs.len(), 3, "a runbook, a dashboard and a source link");
    let external = ["customer", "customer-apology", "customer-status", "communications"];
    for kind in [NoticeKind::New, NoticeKind::Update, NoticeKind::Resolved, NoticeKind::Reminder] {
        let ctx = RenderContext::new(&incident, kind);
        for audience in external {
            for language in ["en", "de"] {
                // Not the log: Tocsin's own file, read by operators, never delivered outside.
                for channel in [Channel::Email, Channel::Sms, Channel::Webhook] {
                    let r = templates.render_in(channel, audience, language, &ctx);
                    if channel == Channel::Webhook {
                        // A body to look into, not `null`.
                        assert!(r.payload["incident"].is_object(), "{}", r.payload);
                    }
                    let html = r.html.unwrap_or_default();
                    let all = format!("{}\n{}\n{html}\n{}", r.subject, r.text, r.payload);
                    for href in &hrefs {
                        assert!(
                            !all.contains(href),
                            "{language}/{}/{audience} {kind:?} shows {href}:\n{all}",
                            channel.as_str()
                        );
                    }
                }
            }
            // Receivers that speak Alertmanager get its body instead (src/compose.rs).
            let am = alertmanager_payload(&incident, "status-page", audience);
            assert_eq!(am["alerts"][0]["generatorURL"], "", "{audience}");
            for href in &hrefs {
                assert!(!am.to_string().contains(href), "{audience} {kind:?} shows {href}: {am}");
            }
        }
    }
    // The incident team's bodies carry them, where Prometheus rules put them.
    let am = alertmanager_payload(&incident, "oncall", "responder");
    assert_eq!(am["alerts"][0]["annotations"]["runbook_url"], hrefs[0]);
    assert_eq!(am["alerts"][0]["annotations"]["dashboard_url"], hrefs[1]);
    assert_eq!(am["alerts"][0]["generatorURL"], hrefs[2]);
}

#[test]
fn shipped_executive_text_is_three_lines() {
    let templates = Templates::builtin();
    for sample in samples() {
        let text = templates.render(Channel::Email, "executive", &sample.ctx()).text;
        assert_eq!(text.lines().count(), 3, "{text}");
    }
}

#[test]
fn shipped_responder_email_reads_as_intended() {
    let templates = Templates::builtin();
    let incident = sample::full(NoticeKind::New, 42);
    let ctx = RenderContext {
        ack_url: Some("https://t.example/ack/1".into()),
        recipient_name: Some("Ana".into()),
        ..RenderContext::new(&incident, NoticeKind::New)
    };
    let r = templates.render(Channel::Email, "responder", &ctx);
    assert_eq!(r.subject, "[SEV1] New #42: Checkout error rate above 5% for 10 minutes (checkout)");
    assert!(
        r.text.starts_with("Hi Ana,\n\nA new incident needs a responder.\n\nIncident:"),
        "{}",
        r.text
    );
    assert!(r.text.contains("  team=payments\n"), "{}", r.text);
    assert!(r.text.ends_with("Acknowledge: https://t.example/ack/1"), "{}", r.text);
}

// --- Payloads --------------------------------------------------------------------------------

#[test]
fn tocsin_payload_has_the_documented_shape() {
    let incident = sample::full(NoticeKind::New, 42);
    let ctx = RenderContext {
        dashboard_url: Some("https://t.example/incidents/42".into()),
        ..RenderContext::new(&incident, NoticeKind::New)
    };
    assert_eq!(
        tocsin_payload(&ctx),
        json!({
            "version": "1",
            "kind": "incident.new",
            "incident": {
                "id": 42,
                "status": "triggered",
                "severity": "sev1",
                "score": 95,
                "summary": "Checkout error rate above 5% for 10 minutes",
                "service": "checkout",
                "source": "prometheus",
                "dedup_key": "checkout-errors-42",
                "tags": ["payments", "pci"],
                "sensitivity": "personal",
                "customer_facing": true,
                "first_seen": "2026-11-27T03:09:00Z",
                "last_seen": "2026-11-27T03:19:30Z",
                "count": 7,
                "url": "https://t.example/incidents/42",
                "links": [
                    {"kind": "runbook", "href": "https://wiki.example.com/runbooks/checkout-errors"},
                    {"kind": "dashboard", "href": "https://grafana.example.com/d/checkout", "text": "Checkout overview"},
                ],
            },
            "drill": false,
        })
    );
    let bundle = [incident.clone(), sample::sparse(NoticeKind::Bundle, 43)];
    let ctx =
        RenderContext { bundle: &bundle, ..RenderContext::new(&incident, NoticeKind::Bundle) };
    let body = tocsin_payload(&ctx);
    assert_eq!(body["kind"], "incident.bundle");
    assert_eq!(body["incidents"][1]["id"], 43);
    assert_eq!(body["incidents"][1]["service"], serde_json::Value::Null);
}

#[test]
fn external_audiences_get_a_redacted_built_in_payload() {
    let incident = sample::full(NoticeKind::New, 42);
    let ctx = RenderContext::new(&incident, NoticeKind::New);
    let body = Templates::builtin().render(Channel::Webhook, "customer", &ctx).payload;
    assert_eq!(body["incident"]["id"], 42);
    assert!(body["incident"].get("summary").is_none() && body["incident"].get("tags").is_none());
    let body = Templates::builtin().render(Channel::Webhook, "responder", &ctx).payload;
    assert_eq!(body, tocsin_payload(&ctx));
}

#[test]
fn alertmanager_payload_has_the_v4_shape() {
    let incident = sample::full(NoticeKind::New, 42);
    let body = alertmanager_payload(&incident, "tocsin-bridge", "responder");
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["receiver"], "tocsin-bridge");
    assert_eq!(body["groupKey"], "{}:{tocsin_incident=\"42\"}");
    assert_eq!(body["truncatedAlerts"], 0);
    assert_eq!(body["groupLabels"], json!({"tocsin_incident": "42"}));
    for key in ["commonLabels", "commonAnnotations", "externalURL"] {
        assert!(body.get(key).is_some(), "{key}");
    }
    let alerts = body["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    let alert = &alerts[0];
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["labels"]["alertname"], "CheckoutErrorRate");
    assert_eq!(alert["labels"]["team"], "payments");
    assert_eq!(alert["labels"]["service"], "checkout");
    assert_eq!(alert["labels"]["tocsin_severity"], "sev1");
    assert_eq!(alert["annotations"]["summary"], incident.summary);
    assert_eq!(alert["startsAt"], "2026-11-27T03:05:00Z");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(alert["generatorURL"], "");
    let fingerprint = alert["fingerprint"].as_str().unwrap();
    assert_eq!(fingerprint.len(), 16);
    assert!(fingerprint.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(body["commonLabels"], alert["labels"]);

    // It reads back through Tocsin's own Alertmanager webhook normalizer.
    let resolved = sample::full(NoticeKind::Resolved, 42);
    let body = alertmanager_payload(&resolved, "r", "responder");
    assert_eq!(body["status"], "resolved");
    assert_eq!(body["alerts"][0]["status"], "resolved");
    assert_eq!(body["alerts"][0]["endsAt"], "2026-11-27T03:40:00Z");

    let sparse = sample::sparse(NoticeKind::New, 7);
    let labels = &alertmanager_payload(&sparse, "r", "responder")["alerts"][0]["labels"];
    assert_eq!(labels["alertname"], "TocsinIncident");
    assert!(labels.get("service").is_none());
}

#[test]
fn external_plain_fallback_leaves_out_the_summary() {
    let templates = load(&[("email/default.text.j2", "{{ broken }}")]);
    let incident = sample::full(NoticeKind::New, 42);
    let ctx = RenderContext::new(&incident, NoticeKind::New);
    let r = templates.render(Channel::Email, "customer", &ctx);
    assert!(r.fallback.is_some());
    assert!(!r.text.contains(&incident.summary) && !r.subject.contains(&incident.summary));
    assert!(r.text.contains("reference 42"), "{}", r.text);
}

#[test]
fn templates_are_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<Templates>();
}

#[test]
fn a_large_bundle_renders_within_fuel() {
    let templates = Templates::builtin();
    let bundle: Vec<Incident> = (1..=500).map(|id| sample::full(NoticeKind::Bundle, id)).collect();
    let ctx =
        RenderContext { bundle: &bundle, ..RenderContext::new(&bundle[0], NoticeKind::Bundle) };
    for channel in CHANNELS {
        for audience in AUDIENCES {
            let rendered = templates.render(channel, audience, &ctx);
            assert_eq!(rendered.fallback, None, "{}/{audience}", channel.as_str());
        }
    }
}

#[test]
fn check_variables_accepts_loop_variables_globals_and_optional_labels() {
    let templates = load(&[(
        "log/default.text.j2",
        "{% set ns = namespace(n=0) %}{% for i in bundle %}{{ loop.index }}:{{ i.id }} \
         {% endfor %}{{ range(3) | length }}{% if incident.labels.team %}x{% endif %}\
         {{ incident.labels.owner | default(\"-\") }}",
    )]);
    let errors = templates.check_variables();
    assert!(errors.is_empty(), "{:#?}", errors.iter().map(ToString::to_string).collect::<Vec<_>>());
}

#[test]
fn shipped_responder_and_default_messages_carry_the_ack_link_while_open() {
    let templates = Templates::builtin();
    let ack = "https://t.example/ack/AQAAAAAAAAAqAAAAAGlAYWFuYQ";
    for kind in [NoticeKind::New, NoticeKind::Reminder, NoticeKind::Resolved] {
        let incident = sample::full(kind, 42);
        let ctx =
            RenderContext { ack_url: Some(ack.into()), ..RenderContext::new(&incident, kind) };
        for (channel, audience) in [
            (Channel::Email, "responder"),
            (Channel::Email, "default"),
            (Channel::Sms, "responder"),
            (Channel::Sms, "default"),
        ] {
            let r = templates.render(channel, audience, &ctx);
            let at = format!("{}/{audience} {kind:?}", channel.as_str());
            assert!(r.fallback.is_none(), "{at}: {:?}", r.fallback);
            // A resolved incident has nothing left to acknowledge.
            let want = kind != NoticeKind::Resolved;
            assert_eq!(r.text.contains(ack), want, "{at}: {}", r.text);
            if let Some(html) = r.html {
                assert_eq!(html.contains(&format!("href=\"{ack}\"")), want, "{at}: {html}");
            }
        }
    }
}

// --- Languages and tones ---------------------------------------------------------------------

#[test]
fn a_missing_language_falls_back_to_english_and_audience_beats_language() {
    let templates = load(&[
        ("email/responder.subject.j2", "EN responder {{ incident.id }}"),
        ("email/customer.subject.j2", "EN customer {{ incident.id }}"),
        ("de/email/default.subject.j2", "DE default {{ incident.id }}"),
        ("de/email/legal.subject.j2", "DE legal {{ incident.id }}"),
        ("pt/sms/responder.text.j2", "PT responder {{ incident.id }}"),
    ]);
    let incident = sample::full(NoticeKind::New, 42);
    let ctx = RenderContext::new(&incident, NoticeKind::New);
    let subject = |audience: &str, lang: &str| {
        let r = templates.render_in(Channel::Email, audience, lang, &ctx);
        assert_eq!(r.fallback, None);
        r.subject
    };
    assert_eq!(subject("legal", "de"), "DE legal 42");
    assert_eq!(
        subject("legal", "en"),
        "[sev1] New incident #42: Checkout error rate above 5% for 10 minutes"
    );
    // No German responder template: the English one, not the German default.
    assert_eq!(subject("responder", "de"), "EN responder 42");
    // The customer's own approved words win over a generic default in the reader's language.
    assert_eq!(subject("customer", "de"), "EN customer 42");
    assert_eq!(subject("executive", "de"), "DE default 42");
    assert_eq!(
        subject("legal", "fr"),
        "[sev1] New incident #42: Checkout error rate above 5% for 10 minutes"
    );
    let sms = templates.render_in(Channel::Sms, "responder", "pt-BR", &ctx);
    assert_eq!(sms.text, "PT responder 42");
    assert_eq!(templates.languages(), ["de", "pt"]);
}

#[test]
fn check_reports_a_variable_one_language_uses_and_another_lacks() {
    let templates = load(&[
        ("email/customer.text.j2", "Ref {{ incident.id }} for {{ incident.service }}"),
        ("de/email/customer.text.j2", "Referenz {{ incident.id }}"),
        ("sms/customer.text.j2", "Ref {{ incident.id }}"),
        ("de/sms/customer.text.j2", "Ref. {{ incident.id }}"),
    ]);
    let errors = templates.check_variables();
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "{shown:#?}");
    assert!(errors[0].file.ends_with("de/email/customer.text.j2"), "{shown:#?}");
    assert!(shown[0].contains("`incident.service`"), "{shown:#?}");
    assert!(shown[0].contains("email/customer.text.j2 uses"), "{shown:#?}");
}

#[test]
fn language_directories_hold_channel_directories_only() {
    let dir = dir_with(&[
        ("de/email/customer.subject.j2", "ok"),
        ("de/pager/x.text.j2", "not a channel"),
        ("en/email/customer.subject.j2", "the default language has no directory"),
        ("German/email/customer.subject.j2", "not a language tag"),
    ]);
    let errors = Templates::load(dir.path()).unwrap_err();
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 3, "{shown:#?}");
    assert!(shown.iter().any(|s| s.contains("de/pager") && s.contains("channel directories only")));
    assert!(shown.iter().any(|s| s.contains("default language")));
    assert!(shown.iter().any(|s| s.contains("German") && s.contains("unknown channel")));
}

#[test]
fn shipped_german_templates_render_in_german_for_every_kind() {
    let templates = Templates::builtin();
    assert_eq!(templates.languages(), ["de"]);
    for sample in samples() {
        let ctx = sample.ctx();
        for (channel, audience) in [
            (Channel::Email, "responder"),
            (Channel::Sms, "responder"),
            (Channel::Email, "customer"),
            (Channel::Sms, "customer"),
            (Channel::Email, "customer-apology"),
            (Channel::Sms, "customer-apology"),
            (Channel::Email, "customer-status"),
            (Channel::Sms, "customer-status"),
        ] {
            let at = format!("{}/{audience} {:?} full={}", channel.as_str(), ctx.kind, sample.full);
            let de = templates.render_in(channel, audience, "de", &ctx);
            let en = templates.render_in(channel, audience, "en", &ctx);
            assert_eq!(de.fallback, None, "{at}");
            assert_eq!(en.fallback, None, "{at}");
            assert_ne!(de.text, en.text, "{at}: not translated");
            if ctx.drill {
                let marked = de.text.contains("DRILL") || de.text.contains("TEST");
                assert!(marked, "{at}: drill not marked\n{}", de.text);
            }
            if audience.starts_with("customer") {
                assert!(!de.text.contains(&ctx.incident.summary), "{at}: leaks the summary");
            }
        }
    }
}

#[test]
fn tones_are_audiences_and_customer_tones_are_external() {
    assert!(is_external("customer-apology") && is_external("customer-status"));
    assert!(!is_external("responder") && !is_external("customers"));
    let templates = Templates::builtin();
    let incident = sample::full(NoticeKind::Resolved, 42);
    let ctx = RenderContext::new(&incident, NoticeKind::Resolved);
    let apology = templates.render(Channel::Email, "customer-apology", &ctx);
    let status = templates.render(Channel::Email, "customer-status", &ctx);
    assert!(apology.subject.starts_with("We are sorry"), "{}", apology.subject);
    assert_eq!(status.subject, "Service status (reference 42): resolved");
    assert!(apology.html.is_some() && status.html.is_some());
}
