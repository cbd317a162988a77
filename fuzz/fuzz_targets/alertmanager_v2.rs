//! `POST /api/v2/alerts`: the Alertmanager v2 alert array parser and normalizer.
//! Any input must give `Ok` or a 400/422 `ApiError`, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tocsin::normalize::Context;

/// A fixed arrival time, so that a crash reproduces exactly.
fn ctx() -> Context<'static> {
    Context::new("fuzz", "2026-11-27T12:00:00Z".parse::<jiff::Timestamp>().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let _ = tocsin::normalize::alertmanager_v2(data, ctx());
});
