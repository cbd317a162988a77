use super::*;

fn r() -> Redactor {
    Redactor::default()
}

fn red(text: &str) -> String {
    r().text(text, &Known::none()).into_owned()
}

#[test]
fn emails() {
    assert_eq!(
        red("write to jo.example+tag@mail.example.org now"),
        "write to [redacted:email] now"
    );
    assert_eq!(red("<Jo@Example.COM>"), "<[redacted:email]>");
    assert_eq!(red("a@b.co, c_d@e-f.io"), "[redacted:email], [redacted:email]");
    // Not addresses.
    for keep in ["user:admin", "@channel", "x@y", "foo@localhost"] {
        assert_eq!(red(keep), keep);
    }
}

#[test]
fn phones_e164_and_common_formats() {
    for phone in [
        "+442079460958",
        "+44 20 7946 0958",
        "+1 (415) 555-0100",
        "+1-415-555-0100",
        "+49 30 123456789",
        "(415) 555-0100",
        "415-555-0100",
        "415.555.0100",
        "020 7946 0958",
    ] {
        assert_eq!(red(&format!("call {phone} now")), "call [redacted:phone] now", "{phone}");
    }
}

#[test]
fn cards_need_a_valid_luhn_digit_and_issuer() {
    for card in
        ["4111 1111 1111 1111", "4111-1111-1111-1111", "5555555555554444", "378282246310005"]
    {
        assert_eq!(red(&format!("card {card}.")), "card [redacted:card].", "{card}");
    }
    // Wrong check digit: not a card (and too long for a phone number).
    assert_eq!(red("ref 4111111111111112"), "ref 4111111111111112");
    // Epoch milliseconds and nanoseconds: digits that could pass Luhn, but no issuer starts with 1.
    for n in ["1740825600000", "1700000000000000000"] {
        assert_eq!(red(n), n);
    }
    assert!(luhn(b"79927398713"));
    assert!(!luhn(b"79927398710"));
}

#[test]
fn no_false_positives_on_ids_and_times() {
    for keep in [
        "incident #42 opened; notification #1234 queued",
        "0190c3a4-5b6e-7f00-8a1b-2c3d4e5f6a7b",
        "12345678-1234-1234-1234-123456789012",
        "0190c3a45b6e7f008a1b2c3d4e5f6a7b",
        "2025-03-01T10:40:00Z",
        "2025-03-01T10:40:00.123456789+01:00",
        "2025-03-01 10:40:00",
        "2026-11-27T05:24:32.123456Z  INFO tocsin: started",
        "at 10:40:00.123456789",
        "127.0.0.1:9797 and 192.168.100.200",
        "version 1.13.2, score 85, count 1048576",
        "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "event 01937a1f-0000-7000-8000-000000000001 stored",
        "took 1h 30m; retry after 3600 s",
        "SUP-88121",
    ] {
        assert_eq!(red(keep), keep, "{keep}");
    }
}

#[test]
fn known_values_follow_the_configured_fields() {
    let r = r();
    let event = serde_json::json!({
        "summary": "Jo Canary cannot pay",
        "customer": {"name": "Jo Canary", "email": "jo@example.org", "id": "C-1"},
        "details": {"reporter": {"name": "Dana", "email": "dana@desk.example.com"}},
    });
    let known = r.known_in(&event);
    assert_eq!(r.text("JO CANARY wrote", &known), "[redacted:name] wrote");
    let mut v = event;
    r.redact_json(&mut v);
    assert_eq!(v["customer"]["name"], "[redacted:name]");
    assert_eq!(v["customer"]["email"], "[redacted:email]");
    assert_eq!(v["customer"]["id"], "C-1", "not a configured field");
    assert_eq!(v["summary"], "[redacted:name] cannot pay");
    assert_eq!(v["details"]["reporter"]["email"], "[redacted:email]");
    assert_eq!(v["details"]["reporter"]["name"], "Dana");
    // HTML-escaped forms too.
    let known = r.known_in(&serde_json::json!({"customer": {"name": "Jo O'Brien"}}));
    assert_eq!(r.text("<b>Jo O&#x27;Brien</b>", &known), "<b>[redacted:name]</b>");
}

#[test]
fn wildcard_paths_and_operator_regexes() {
    let mut policy = Policy::default();
    policy.fields.push(split_path("annotations.*"));
    policy.regexes.push(NamedRegex { name: "employee".into(), regex: r"EMP-\d{6}".into() });
    let r = Redactor::new(policy).unwrap();
    let mut v = serde_json::json!({"annotations": {"who": "Sam Canary"}, "summary": "EMP-123456 and Sam Canary"});
    r.redact_json(&mut v);
    assert_eq!(v["annotations"]["who"], "[redacted:who]");
    assert_eq!(v["summary"], "[redacted:employee] and [redacted:who]");
}

#[test]
fn error_messages_lose_quoted_input() {
    let body = br#"{"customer": {"name": "Jo Canary"}, "verified": "Jo Canary"}"#;
    let e = ApiError::malformed(
        "request body is not a Tocsin report: invalid type: string \"Jo Canary\", expected a boolean at line 1 column 60",
    );
    let msg = r().api_error(e, body).to_string();
    assert!(!msg.contains("Canary"), "{msg}");
    assert!(msg.contains("expected a boolean"), "{msg}");
}

#[test]
fn error_messages_keep_the_protocols_own_words() {
    // Values of the body that are also words of the messages: the action, a severity word in
    // a label, a region that is part of "least", a field's name.
    let body = br#"{"routing_key": "k", "event_action": "acknowledge", "dedup_key": "",
        "payload": {"severity": "sev1", "source": "east", "summary": "summary",
                    "custom_details": {"level": "error", "state": "trigger"}}}"#;
    let e = ApiError::Malformed {
        message: "invalid PagerDuty event: 2 problems".into(),
        errors: vec![
            FieldError::new("dedup_key", "is required to acknowledge"),
            FieldError::new(
                "payload.severity",
                "\"sev1\" is not one of critical, error, warning, info",
            ),
            FieldError::new("payload.summary", "must be at least one character"),
            FieldError::new(
                "payload",
                "is required for a trigger (with summary, source and severity)",
            ),
        ],
    };
    let before: Vec<String> = e.field_errors().iter().map(ToString::to_string).collect();
    let after = r().api_error(e, body);
    let after: Vec<String> = after.field_errors().iter().map(ToString::to_string).collect();
    assert_eq!(after, before);
}

#[test]
fn error_messages_still_lose_what_they_quote_of_the_body() {
    let long = format!("Jo Canary {}", "x".repeat(80));
    let body = serde_json::json!({
        "action": "Jo Canary", "kind": long, "severity": "Ann", "service": "Al",
    })
    .to_string();
    let quote = |v: &str| format!("{:?} is not one of trigger, acknowledge, resolve", v);
    // As normalize's `shorten` writes a long value: 63 characters and a `…`.
    let cut: String = long.chars().take(63).chain(['…']).collect();
    let e = ApiError::invalid(vec![
        FieldError::new("action", quote("Jo Canary")),
        FieldError::new("kind", quote(&cut)),
        FieldError::new("service", quote("Al")),
        // One word under a protocol key is the protocol's, and quoted back.
        FieldError::new("severity", quote("Ann")),
    ]);
    let msg = r().api_error(e, body.as_bytes()).to_string();
    assert!(!msg.contains("Canary") && !msg.contains("\"Al\""), "{msg}");
    assert!(msg.contains("\"[redacted:action]\" is not one of trigger, acknowledge"), "{msg}");
    assert!(msg.contains("\"[redacted:kind]\""), "{msg}");
    assert!(msg.contains("\"Ann\" is not one of"), "{msg}");
}

#[test]
fn notifications_redacted_for_named_audiences_and_channels() {
    let mut policy = Policy::default();
    policy.notify_audiences.insert("executive".into());
    policy.notify_channels.insert(Channel::Sms);
    let r = Redactor::new(policy).unwrap();
    assert!(r.applies_to(Channel::Email, "executive"));
    assert!(r.applies_to(Channel::Sms, "responder"));
    assert!(!r.applies_to(Channel::Email, "responder"));
}

fn config(text: &str) -> Result<crate::config::Config, String> {
    let raw = crate::config::parse(text, "t.yaml").map_err(|e| e.to_string())?;
    crate::config::validate(raw, "t.yaml", &|_| None).map_err(|e| e.to_string())
}

#[test]
fn config_policy_and_pii_permission() {
    let text = r#"
users:
  - { name: lee, token: "0123456789abcdef-lee", roles: [viewer], permissions: [pii] }
  - { name: max, token: "0123456789abcdef-max", roles: [admin] }
redaction:
  fields: [customer.email, "annotations.*"]
  patterns: [email, card]
  regexes:
    - { name: employee, regex: "EMP-[0-9]{6}" }
  notify_audiences: [executive, customer]
  notify_channels: [sms]
"#;
    let c = config(text).unwrap();
    let p = &c.redaction;
    // The customer fields stay, whatever the list says.
    assert_eq!(
        p.fields,
        ["customer.name", "customer.email", "customer.phone", "annotations.*"]
            .map(split_path)
            .to_vec()
    );
    assert_eq!(p.patterns, BTreeSet::from([Builtin::Email, Builtin::Card]));
    assert_eq!(p.regexes[0].name, "employee");
    assert!(p.notify_audiences.contains("executive") && p.notify_channels.contains(&Channel::Sms));
    assert_eq!(c.users[0].permissions, BTreeSet::from([UserPermission::Pii]));
    assert!(c.users[1].permissions.is_empty(), "admin does not imply pii");
    // Without the section: the default fields and every pattern; nothing for notifications.
    let c = config("users: []\n").unwrap();
    assert_eq!(c.redaction, Policy::default());
}

#[test]
fn config_errors_have_positions() {
    let text = "redaction:\n  fields: [\"customer..email\", ticket]\n  patterns: [email, ssn]\n  regexes:\n    - { name: Bad-Name, regex: \"(\" }\n    - { name: empty, regex: \"x*\" }\n  notify_channels: [pager]\nusers:\n  - { name: a, token: \"0123456789abcdef-a\", roles: [viewer], permissions: [root] }\n";
    let e = config(text).unwrap_err();
    for expected in [
        "t.yaml:2:12: redaction.fields[0]",
        "t.yaml:2:31: redaction.fields[1]: `ticket` does not start with an event field",
        "t.yaml:3:21: redaction.patterns[1]: `ssn` is not one of",
        "t.yaml:5:15: redaction.regexes[0].name: `Bad-Name` must be lower-case",
        "t.yaml:5:32: redaction.regexes[0].regex: is not a valid regular expression",
        "t.yaml:6:29: redaction.regexes[1].regex: matches the empty string",
        "t.yaml:7:21: redaction.notify_channels[0]: `pager` is not one of: email, sms, webhook, log",
        "users[0].permissions[0]: `root` is not one of: pii",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
    }
}

#[test]
fn large_error_bodies_stay_cheap() {
    // A 10 000-item batch with distinct strings: gathering them must not be quadratic.
    let items: Vec<serde_json::Value> = (0..10_000)
        .map(|i| serde_json::json!({"labels": {"alertname": format!("alert-{i}"), "who": format!("person {i}")}}))
        .collect();
    let body = serde_json::to_vec(&items).unwrap();
    let start = std::time::Instant::now();
    let e = r().api_error(
        ApiError::invalid(vec![FieldError::new("alerts[7].labels", "label \"person 7\" is odd")]),
        &body,
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(5), "{:?}", start.elapsed());
    assert_eq!(e.field_errors()[0].message, "label \"[redacted:who]\" is odd");
}

#[test]
fn quoted_path_segments_name_keys_with_dots() {
    assert_eq!(parse_path(r#"labels."customer.email""#).unwrap(), ["labels", "customer.email"]);
    assert_eq!(parse_path(r#"details."a\"b".c"#).unwrap(), ["details", "a\"b", "c"]);
    let mut r = Policy::default();
    r.fields.push(split_path(r#"labels."customer.email""#));
    let r = Redactor::new(r).unwrap();
    let mut v = serde_json::json!({"labels": {"customer.email": "kim@x.example", "job": "web"},
        "summary": "for kim@x.example"});
    r.redact_json(&mut v);
    assert_eq!(v["labels"]["customer.email"], "[redacted:customer.email]");
    assert_eq!(v["labels"]["job"], "web");
    assert!(!v.to_string().contains("kim@"), "{v}");
}

#[test]
fn paths_that_cannot_match_are_refused() {
    for bad in [
        "labels.customer.email",
        r#"labels."customer.email"#,
        r#"labels."customer"email"#,
        "summary.text",
        "customer.email.domain",
        "customer.card",
        "links.url",
        "user.email",
        "labels..x",
        r#"labels."""#,
        "",
    ] {
        assert!(parse_path(bad).is_err(), "{bad}");
    }
    for good in ["customer.*", "annotations.*", "details.reporter.email", "links.href", "service"] {
        assert!(parse_path(good).is_ok(), "{good}");
    }
}

#[test]
fn customer_fields_are_redacted_whatever_the_config_names() {
    let text = r#"
redaction:
  fields: [labels.user]
"#;
    let c = config(text).unwrap();
    let r = Redactor::new(c.redaction).unwrap();
    let mut v = serde_json::json!({"customer": {"name": "Kim Doe", "email": "kim@x.example",
        "phone": "+15551230000"}, "labels": {"user": "kd"}});
    r.redact_json(&mut v);
    for f in ["name", "email", "phone"] {
        assert_eq!(v["customer"][f], format!("[redacted:{f}]"), "{v}");
    }
    assert_eq!(v["labels"]["user"], "[redacted:user]");
}

#[test]
fn a_malformed_field_path_is_refused_with_its_line() {
    let text =
        "users: []\nredaction:\n  fields:\n    - customer.email\n    - labels.customer.email\n";
    let e = config(text).unwrap_err();
    assert!(e.contains(":5:") && e.contains("redaction.fields[1]"), "{e}");
}
