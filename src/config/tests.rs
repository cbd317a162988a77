//! The shell's own tests: loading, tokens, overrides, secrets and the error format. Each
//! section's tests live beside its validation.

use super::*;
use std::os::unix::fs::PermissionsExt;

use super::testing::{env_of, find, load_text};

const TOKEN: &str = "s3cret-token-value";

#[test]
fn embedded_default_loads_with_token_from_env() {
    let env = env_of(&[("TOCSIN_TOKEN", TOKEN)]);
    let config = load(&ConfigOrigin::Embedded, &env, TokenFallback::Placeholder).unwrap();

    assert_eq!(config.listen, "127.0.0.1:9797");
    assert_eq!(config.data_dir, PathBuf::from("./tocsin-data"));
    assert_eq!(config.log_format, LogFormat::Text);
    assert_eq!(config.limits, Limits::default());
    assert_eq!(config.journal, Journal::default());
    assert_eq!(config.generated_token, None);
    let [source] = config.sources.as_slice() else { panic!("one source") };
    assert_eq!(source.name, "default");
    assert_eq!(source.token.expose(), TOKEN);
    assert_eq!(source.routing_key.as_ref().map(Secret::expose), Some(TOKEN));
    assert_eq!(source.allow, Permission::ALL.into_iter().collect());
    assert_eq!(source.rate_limit, RateLimit { per_second: 200_000, burst: 400_000 });
    let [user] = config.users.as_slice() else { panic!("one user") };
    assert_eq!(user.name, "admin");
    assert_eq!(user.token.expose(), TOKEN);
    assert_eq!(user.roles, BTreeSet::from([Role::Admin]));
}

#[test]
fn empty_file_gives_defaults() {
    let config = load_text("{}\n", &env_of(&[])).unwrap();
    assert_eq!(config.listen, "127.0.0.1:9797");
    assert_eq!(config.limits, Limits::default());
    assert!(config.sources.is_empty());
    assert!(config.users.is_empty());
}

#[test]
fn placeholder_token_touches_no_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let env = env_of(&[("TOCSIN_DATA_DIR", data_dir.to_str().unwrap())]);
    let config = load(&ConfigOrigin::Embedded, &env, TokenFallback::Placeholder).unwrap();
    assert!(!data_dir.exists());
    assert_eq!(config.generated_token, None);
    assert!(!config.sources[0].token.expose().is_empty());
}

#[test]
fn many_mistakes_are_reported_together_with_locations() {
    let text = r#"listen: "localhost"
log_format: xml
limits:
  max_body_bytes: 0
  request_timeout: 0s
  header_read_timeout: soon
journal: { queue_capacity: 0 }
sources:
  - name: alpha
    token: "${A}"
    allow: [alerts, pages]
    rate_limit: { per_second: 0, burst: 10 }
  - name: alpha
    token: "${A}"
  - name: ""
    token: "${NOPE}"
  - name: beta
users:
  - name: ""
    token: t1
    roles: [root]
  - name: bob
    token: t2
"#;
    let errors = load_text(text, &env_of(&[("A", "tok-a")])).unwrap_err();
    let at = |path: &str| find(&errors, path).position.map(|p| p.line);

    assert_eq!(at("listen"), Some(1));
    assert_eq!(at("log_format"), Some(2));
    assert_eq!(at("limits.max_body_bytes"), Some(4));
    assert_eq!(at("limits.request_timeout"), Some(5));
    assert_eq!(at("limits.header_read_timeout"), Some(6));
    assert_eq!(at("journal.queue_capacity"), Some(7));
    assert_eq!(at("sources[0].allow[1]"), Some(11));
    assert_eq!(at("sources[0].rate_limit.per_second"), Some(12));
    assert_eq!(at("sources[1].name"), Some(13));
    assert!(find(&errors, "sources[1].name").message.contains("already defined"));
    assert_eq!(at("sources[1].token"), Some(14));
    assert!(find(&errors, "sources[1].token").message.contains("sources[0].token"));
    assert_eq!(at("sources[2].name"), Some(15));
    assert_eq!(at("sources[2].token"), Some(16));
    assert!(find(&errors, "sources[2].token").message.contains("NOPE is not set"));
    assert_eq!(at("sources[3].token"), Some(17));
    assert!(find(&errors, "sources[3].token").message.contains("missing"));
    assert_eq!(at("users[0].name"), Some(19));
    assert_eq!(at("users[0].roles[0]"), Some(21));
    assert_eq!(at("users[1].roles"), Some(22));
    assert_eq!(errors.errors.len(), 16, "{errors}");

    // One line per error, each `file:line:col: path: message`.
    let shown = errors.to_string();
    assert_eq!(shown.lines().count(), errors.errors.len());
    assert!(shown.lines().all(|l| l.starts_with("test.yaml:")), "{shown}");
    assert!(shown.contains("test.yaml:12:"), "{shown}");
    assert!(shown.contains(": sources[0].rate_limit.per_second: must be from 1"), "{shown}");
    assert!(!shown.contains("tok-a"), "a secret leaked into:\n{shown}");
}

#[test]
fn listen_must_be_host_and_port() {
    for good in ["127.0.0.1:0", "0.0.0.0:9797", "[::1]:9797", "localhost:80"] {
        assert_eq!(check_listen(good), Ok(()), "{good}");
    }
    for bad in ["localhost", ":9797", "host:99999", "::1:80", "a b:80", ""] {
        assert!(check_listen(bad).is_err(), "{bad}");
    }
}

#[test]
fn body_limit_above_64_mib_is_rejected() {
    let errors = load_text("limits: { max_body_bytes: 67108865 }\n", &env_of(&[])).unwrap_err();
    assert!(find(&errors, "limits.max_body_bytes").message.contains("64 MiB"));
    let ok = load_text("limits: { max_body_bytes: 67108864 }\n", &env_of(&[])).unwrap();
    assert_eq!(ok.limits.max_body_bytes, 64 * 1024 * 1024);
}

#[test]
fn unknown_field_is_rejected_with_its_line() {
    let text = "listen: \"127.0.0.1:1\"\nsources:\n  - name: a\n    tokn: x\n";
    let errors = load_text(text, &env_of(&[])).unwrap_err();
    let [error] = errors.errors.as_slice() else { panic!("one error: {errors}") };
    assert_eq!(error.position.map(|p| p.line), Some(4), "{errors}");
    assert!(error.message.contains("tokn"), "{errors}");
    assert!(errors.to_string().starts_with("test.yaml:4:"), "{errors}");
}

#[test]
fn yaml_syntax_error_has_a_position() {
    let errors = load_text("listen: [unclosed\n", &env_of(&[])).unwrap_err();
    assert!(errors.errors[0].position.is_some(), "{errors}");
}

#[test]
fn env_values_cannot_inject_yaml() {
    let text = "sources:\n  - name: a\n    token: ${T}\n";
    let env = env_of(&[("T", "x\n  - name: evil\n    token: y")]);
    let errors = load_text(text, &env).unwrap_err();
    assert!(find(&errors, "sources[0].token").message.contains("whitespace"), "{errors}");

    let env = env_of(&[("T", "x}]},{name:evil")]);
    let config = load_text(text, &env).unwrap();
    assert_eq!(config.sources.len(), 1);
    assert_eq!(config.sources[0].token.expose(), "x}]},{name:evil");
}

#[test]
fn unquoted_references_and_partial_rate_limit() {
    let text = "sources:\n  - name: a\n    token: ${T}\n    routing_key: rk-${T}\n    \
                rate_limit: { per_second: 10 }\n";
    let config = load_text(text, &env_of(&[("T", "v")])).unwrap();
    let source = &config.sources[0];
    assert_eq!(source.token.expose(), "v");
    assert_eq!(source.routing_key.as_ref().map(Secret::expose), Some("rk-v"));
    assert_eq!(source.rate_limit, RateLimit { per_second: 10, burst: 20 });
}

#[test]
fn internal_gateway_and_webhook_addresses_are_config_errors_without_allow_private() {
    let text = r#"
notifications:
  sms: { provider: json, url: "http://127.0.0.1:8080/send", body: '{"t": "{{text}}"}' }
  webhooks:
    - { name: a, url: "http://localhost:9000/hook" }
    - { name: b, url: "http://[::ffff:10.0.0.1]/hook" }
    - { name: c, url: "http://198.18.0.1/hook" }
    - { name: d, url: "http://127.0.0.1/hook", allow_private: true }
    - { name: e, url: "https://hooks.example.com/hook" }
"#;
    let errors = load_text(text, &env_of(&[])).unwrap_err();
    let sms = find(&errors, "notifications.sms.url");
    assert!(sms.message.contains("loopback") && sms.message.contains("allow_private"), "{errors}");
    assert_eq!(sms.position.map(|p| p.line), Some(3), "{errors}");
    assert!(find(&errors, "notifications.webhooks[0].url").message.contains("localhost"));
    assert!(find(&errors, "notifications.webhooks[1].url").message.contains("private-use"));
    assert!(find(&errors, "notifications.webhooks[2].url").message.contains("benchmarking"));
    assert_eq!(errors.errors.len(), 4, "{errors}");
    let allowed = text.replace("body: '{", "allow_private: true, body: '{").replace(
        "    - { name: a, url: \"http://localhost:9000/hook\" }\n    - { name: b, url: \"http://[::ffff:10.0.0.1]/hook\" }\n    - { name: c, url: \"http://198.18.0.1/hook\" }\n",
        "",
    );
    load_text(&allowed, &env_of(&[])).unwrap();
}

#[test]
fn notification_channels_are_kept_with_their_secrets_expanded() {
    let text = r#"
people:
  - { id: ana, email: ana@example.com, phone: "+15551234567" }
policies:
  - name: main
    notify: [{ person: ana }, { webhook: hook }]
notifications:
  email: { relay: smtp.example.com, from: tocsin@example.com, username: u, password: "${PW}" }
  sms: { provider: twilio, account_sid: AC1, auth_token: "${TW}", from: "+15005550006" }
  webhooks:
    - { name: hook, url: "https://hooks.example.com/x", secrets: ["${HOOK}"] }
"#;
    let env = env_of(&[("PW", "pw-1"), ("TW", "tw-2"), ("HOOK", "whsec_abc")]);
    let config = load_text(text, &env).unwrap();
    let n = &config.notifications;
    let email = n.email.as_ref().expect("email kept");
    assert_eq!(email.password.as_ref().map(Secret::expose), Some("pw-1"));
    let sms = n.sms.as_ref().expect("sms kept");
    assert_eq!(sms.auth_token.as_ref().map(Secret::expose), Some("tw-2"));
    let [hook] = n.webhooks.as_slice() else { panic!("one webhook: {n:?}") };
    assert_eq!(hook.name, "hook");
    assert_eq!(hook.secrets[0].expose(), "whsec_abc");

    // An unset variable, a webhook defined twice, and a policy naming a missing webhook.
    let text = text.replace(
        "notify: [{ person: ana }, { webhook: hook }]",
        "notify: [{ person: ana }, { webhook: hook }, { webhook: nowhere }]",
    ) + "    - { name: hook, url: \"https://other.example.com/\" }\n";
    let errors = load_text(&text, &env_of(&[("PW", "pw-1"), ("TW", "tw-2")])).unwrap_err();
    assert!(find(&errors, "notifications.webhooks[0]").message.contains("HOOK"), "{errors}");
    assert!(find(&errors, "notifications.webhooks[1].name").message.contains("twice"));
    assert!(find(&errors, "policies[0].notify[2].webhook").message.contains("nowhere"));
    assert_eq!(errors.errors.len(), 3, "{errors}");
}

#[test]
fn rotations_roles_and_people_zones() {
    let text = r#"
people:
  - { id: alice, zone: Europe/Berlin, language: de }
  - { id: bob, zone: America/New_York }
  - { id: carol }
rotations:
  - name: primary
    members: [alice, bob]
    shift: weekly
    handoff: 09:00
    zone: Europe/Berlin
    start: 2026-01-05
  - { name: secondary, members: [carol, bob, alice], shift: 12h, start: "2026-01-01" }
roles:
  incident_lead: { rotation: primary }
  legal_liaison: { person: carol }
  scribe: {}
"#;
    let config = load_text(text, &env_of(&[])).unwrap();
    let roster = &config.roster;
    assert_eq!(roster.people["alice"].zone.iana_name(), Some("Europe/Berlin"));
    assert_eq!(roster.people["alice"].language, "de");
    assert_eq!(roster.people["bob"].language, "en");
    assert_eq!(roster.people["carol"].zone.iana_name(), Some("UTC"));
    let primary = &roster.rotations["primary"];
    assert_eq!(primary.shift, crate::oncall::Shift::Weekly);
    assert_eq!(primary.handoff, jiff::civil::time(9, 0, 0, 0));
    assert_eq!(primary.start, jiff::civil::date(2026, 1, 5));
    let secondary = &roster.rotations["secondary"];
    assert_eq!(secondary.shift, crate::oncall::Shift::Hours(12));
    assert_eq!(secondary.zone.iana_name(), Some("UTC"));
    assert_eq!(secondary.handoff, jiff::civil::time(9, 0, 0, 0), "default handoff");
    assert_eq!(secondary.members, ["carol", "bob", "alice"]);
    use crate::oncall::RoleFill;
    assert_eq!(roster.roles["incident_lead"], Some(RoleFill::Rotation("primary".into())));
    assert_eq!(roster.roles["legal_liaison"], Some(RoleFill::Person("carol".into())));
    assert_eq!(roster.roles["scribe"], None);
    assert_eq!(roster.roles["technical_lead"], None, "built-in roles always exist");
    assert_eq!(roster.roles["communications_lead"], None);
    // 2026-01-06 10:00 Berlin: alice's first week.
    let at: jiff::Timestamp = "2026-01-06T09:00:00Z".parse().unwrap();
    let holders = roster.holders(at, &[]);
    assert_eq!(holders.get("incident_lead").map(String::as_str), Some("alice"));
    assert_eq!(holders.get("legal_liaison").map(String::as_str), Some("carol"));
    assert_eq!(holders.len(), 2);
}

#[test]
fn roster_mistakes_are_reported_with_locations() {
    let text = r#"people:
  - { id: alice, zone: Mars/Olympus, language: "e n" }
rotations:
  - name: primary
    members: [alice, nobody]
    shift: fortnightly
    handoff: "9am"
    zone: Europe/Berlinn
    start: 2026-13-01
  - { name: primary, members: [], shift: daily, start: 2026-01-01 }
  - { name: late, members: [alice], shift: daily }
roles:
  incident_lead: { rotation: tertiary }
  legal_liaison: { person: zed }
  Bad-Role: { person: alice }
  technical_lead: { person: alice, rotation: primary }
  communications_lead: { rotation: late }
"#;
    let errors = load_text(text, &env_of(&[])).unwrap_err();
    let at = |path: &str| find(&errors, path).position.map(|p| (p.line, p.column));
    assert_eq!(at("people[0].zone"), Some((2, 24)));
    assert!(find(&errors, "people[0].zone").message.contains("Mars/Olympus"));
    assert_eq!(at("people[0].language").map(|p| p.0), Some(2));
    assert_eq!(at("rotations[0].members[1]"), Some((5, 22)));
    assert!(find(&errors, "rotations[0].members[1]").message.contains("no person `nobody`"));
    assert_eq!(at("rotations[0].shift").map(|p| p.0), Some(6));
    assert_eq!(at("rotations[0].handoff").map(|p| p.0), Some(7));
    assert_eq!(at("rotations[0].zone").map(|p| p.0), Some(8));
    assert_eq!(at("rotations[0].start").map(|p| p.0), Some(9));
    assert!(find(&errors, "rotations[1].name").message.contains("twice"));
    assert_eq!(at("rotations[1].members").map(|p| p.0), Some(10));
    assert_eq!(at("rotations[2].start").map(|p| p.0), Some(11));
    assert_eq!(at("roles.incident_lead.rotation"), Some((13, 30)));
    assert!(find(&errors, "roles.incident_lead.rotation").message.contains("tertiary"));
    assert_eq!(at("roles.legal_liaison.person").map(|p| p.0), Some(14));
    assert_eq!(at("roles.Bad-Role").map(|p| p.0), Some(15));
    assert!(find(&errors, "roles.technical_lead").message.contains("not both"));
    // `late` is declared (if broken): only its own error, not the role's.
    assert!(errors.errors.iter().all(|e| e.path != "roles.communications_lead.rotation"));
    assert_eq!(errors.errors.len(), 14, "{errors}");
    assert!(errors.to_string().contains("test.yaml:13:30: roles.incident_lead.rotation: "));
}

#[test]
fn escaped_reference_is_not_a_token_reference() {
    let text = "users:\n  - name: a\n    token: \"$${TOCSIN_TOKEN}\"\n    roles: [viewer]\n";
    let raw = parse(text, "test.yaml").unwrap();
    assert!(!raw.references_var("TOCSIN_TOKEN"));
    let config = validate(raw, "test.yaml", &env_of(&[])).unwrap();
    assert_eq!(config.users[0].token.expose(), "${TOCSIN_TOKEN}");
}

#[test]
fn secrets_never_show_in_debug() {
    assert_eq!(format!("{:?}", Secret::new(TOKEN)), "***");
    assert_eq!(format!("{}", Secret::new(TOKEN)), "***");

    let env = env_of(&[("TOCSIN_TOKEN", TOKEN)]);
    let config = load(&ConfigOrigin::Embedded, &env, TokenFallback::Placeholder).unwrap();
    let shown = format!("{config:?} {config:#?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains("***"));

    let raw = parse("sources:\n  - name: a\n    token: literal-secret\n", "t").unwrap();
    assert!(!format!("{raw:?}").contains("literal-secret"));
}

#[test]
fn listen_and_data_dir_overrides_win_over_the_file() {
    let env = env_of(&[
        ("TOCSIN_TOKEN", TOKEN),
        ("TOCSIN_LISTEN", "0.0.0.0:0"),
        ("TOCSIN_DATA_DIR", "/var/lib/tocsin"),
    ]);
    let config = load(&ConfigOrigin::Embedded, &env, TokenFallback::Placeholder).unwrap();
    assert_eq!(config.listen, "0.0.0.0:0");
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/tocsin"));

    // Empty counts as unset.
    let env = env_of(&[("TOCSIN_TOKEN", TOKEN), ("TOCSIN_LISTEN", "")]);
    let config = load(&ConfigOrigin::Embedded, &env, TokenFallback::Placeholder).unwrap();
    assert_eq!(config.listen, "127.0.0.1:9797");

    // A bad override is blamed on the variable, not on the file's line.
    let env = env_of(&[("TOCSIN_TOKEN", TOKEN), ("TOCSIN_LISTEN", "nonsense")]);
    let errors = load(&ConfigOrigin::Embedded, &env, TokenFallback::Placeholder).unwrap_err();
    let error = find(&errors, "listen (from TOCSIN_LISTEN)");
    assert_eq!(error.position, None);
}

#[test]
fn generated_token_is_private_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested/data");
    let env = env_of(&[("TOCSIN_DATA_DIR", data_dir.to_str().unwrap())]);

    let first = load(&ConfigOrigin::Embedded, &env, TokenFallback::Generate).unwrap();
    let token_path = data_dir.join("token");
    assert_eq!(first.generated_token.as_deref(), Some(token_path.as_path()));
    let mode = std::fs::metadata(&token_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = first.sources[0].token.expose().to_string();
    assert_eq!(token.len(), 43, "32 bytes in unpadded base64url");
    assert_eq!(std::fs::read_to_string(&token_path).unwrap().trim(), token);
    assert_eq!(first.users[0].token.expose(), token);

    let second = load(&ConfigOrigin::Embedded, &env, TokenFallback::Generate).unwrap();
    assert_eq!(second.sources[0].token.expose(), token);
    assert_eq!(second.generated_token, first.generated_token);

    // An explicit TOCSIN_TOKEN wins and the file is not consulted.
    let env = env_of(&[("TOCSIN_DATA_DIR", data_dir.to_str().unwrap()), ("TOCSIN_TOKEN", TOKEN)]);
    let third = load(&ConfigOrigin::Embedded, &env, TokenFallback::Generate).unwrap();
    assert_eq!(third.sources[0].token.expose(), TOKEN);
    assert_eq!(third.generated_token, None);
}

#[test]
fn token_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "abc\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let env = env_of(&[("TOCSIN_DATA_DIR", dir.path().to_str().unwrap())]);
    let errors = load(&ConfigOrigin::Embedded, &env, TokenFallback::Generate).unwrap_err();
    assert!(errors.to_string().contains("chmod 600"), "{errors}");
}

#[test]
fn missing_file_names_path_and_os_error() {
    let origin = ConfigOrigin::File(PathBuf::from("/nonexistent/tocsin.yaml"));
    let errors = load(&origin, &env_of(&[]), TokenFallback::Placeholder).unwrap_err();
    let shown = errors.to_string();
    assert!(shown.starts_with("/nonexistent/tocsin.yaml: "), "{shown}");
    assert!(shown.contains("No such file"), "{shown}");
}

#[test]
fn resolve_origin_prefers_explicit_path() {
    let path = Path::new("/etc/tocsin.yaml");
    assert_eq!(resolve_origin(Some(path)), ConfigOrigin::File(path.to_path_buf()));
}

#[test]
fn shipped_example_loads() {
    // The shipped example is what `tocsin serve` uses from the repository root, so it must
    // run with nothing but the (possibly generated) admin token in the environment.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/tocsin.yaml");
    let config = load(
        &ConfigOrigin::File(path.clone()),
        &env_of(&[("TOCSIN_TOKEN", TOKEN)]),
        TokenFallback::Placeholder,
    )
    .unwrap();
    let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["default"]);
    assert_eq!(config.sources[0].allow, BTreeSet::from(Permission::ALL));
    assert_eq!(config.sources[0].routing_key.as_ref().map(Secret::expose), Some(TOKEN));
    let roles: Vec<_> = config.users.iter().map(|u| u.roles.clone()).collect();
    assert_eq!(roles, [BTreeSet::from([Role::Admin])]);
    // Without TOCSIN_TOKEN it still loads: serve generates the token.
    load(&ConfigOrigin::File(path), &env_of(&[]), TokenFallback::Placeholder).unwrap();
}
