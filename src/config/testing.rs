//! Test helpers shared by the config shell's tests and each domain's config tests.

use std::collections::HashMap;

use super::{Config, ConfigError, ConfigErrors, parse, validate};

/// An environment that holds exactly `pairs`.
pub(crate) fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> =
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| map.get(name).cloned()
}

/// Parses and validates `text` as `test.yaml`, with `TOCSIN_LISTEN`/`TOCSIN_DATA_DIR` from `env`.
pub(crate) fn load_text(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut raw = parse(text, "test.yaml")?;
    raw.apply_env_overrides(env);
    validate(raw, "test.yaml", env)
}

/// The error reported at `path`; panics listing every error when there is none.
pub(crate) fn find<'a>(errors: &'a ConfigErrors, path: &str) -> &'a ConfigError {
    errors
        .errors
        .iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("no error at {path} in:\n{errors}"))
}
