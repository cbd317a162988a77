//! The config loader: YAML text → `RawConfig` (syntax, shape, unknown and duplicate keys) →
//! validated `Config`, as `tocsin check` and `serve` run it. Every `${VAR}` expands to a fixed
//! value so that validation goes past secrets. Errors are fine; panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(raw) = tocsin::config::parse(text, "fuzz.yaml") else { return };
    let env = |_: &str| Some("fuzz-value-0123456789".to_string());
    if let Err(errors) = tocsin::config::validate(raw, "fuzz.yaml", &env) {
        // Rendering the errors is part of what `tocsin check` does.
        let _ = errors.to_string();
    }
});
