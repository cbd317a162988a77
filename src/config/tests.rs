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
