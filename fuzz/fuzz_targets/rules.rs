//! The rule compiler: Rhai source → a compiled `RuleSet`, with the sandbox's limits, as a
//! `*.rhai` file in the rules directory is compiled at load and reload. Compile errors are
//! fine (they carry line and column); panics and hangs are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tocsin::rules::{RuleLimits, RuleSet};

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    match RuleSet::from_source("fuzz.rhai", source, &RuleLimits::default()) {
        Ok(set) => assert_eq!(set.names(), ["fuzz.rhai"]),
        Err(err) => {
            let _ = err.to_string();
        }
    }
});
