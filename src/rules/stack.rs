//! The stack scripts run on. A stack overflow aborts the whole process (Rust cannot catch it),
//! so no script may come near the end of its stack, whatever it builds.
//!
//! Two kinds of recursion happen while a script runs:
//! - the interpreter's own: nested expressions, function calls, and native functions that call
//!   back into the engine for each element (`==`, `contains`, `to_string` on nested arrays).
//!   Every step of it passes through the engine's progress callback, which halts the script
//!   once less than [`HEADROOM`] of the stack is left ([`exhausted`]);
//! - plain Rust recursion over a value (dropping, cloning, hashing, formatting, measuring a
//!   nested array or map), which no callback sees. Its depth is the value's nesting, which the
//!   sandbox bounds: arrays and maps count every nested element against `max_array_size` and
//!   `max_map_size`, and closures that capture variables and `curry` (the one way to nest
//!   values that Rhai does not count) are refused when a rule loads. [`HEADROOM`] is sized for
//!   the deepest such value (see `tests.rs`, `the_deepest_values_fit_the_headroom`).
//!
//! Rules run on threads with a [`STACK_SIZE`] stack (the daemon's rule threads, see
//! [`super::threads`]); an evaluation called on any other thread (tests, `tocsin test`, drills,
//! the fuzzer) gets a fresh stack segment of that size on the same thread ([`on_rule_stack`]).

/// Reserved below the interpreter's deepest point for plain Rust recursion over the deepest
/// value the limits allow (20,000 levels of arrays and maps). Measured in a debug build (whose
/// frames are the larger): 16–20 MiB for dropping, cloning, hashing and formatting such a
/// value; about three times that is reserved.
pub(super) const HEADROOM: usize = if cfg!(debug_assertions) { 64 << 20 } else { 32 << 20 };

/// A rule thread's stack. Only the pages a script touches are ever backed by memory.
pub const STACK_SIZE: usize = HEADROOM * 2;

/// Runs `f` with at least a rule thread's stack: here, when this is a rule thread (or as deep
/// a stack), else on a new segment of [`STACK_SIZE`] on this same thread, so thread-local state
/// (the rule memo) stays.
pub(super) fn on_rule_stack<T>(f: impl FnOnce() -> T) -> T {
    // A rule thread has used a few KiB of its stack when it evaluates.
    stacker::maybe_grow(STACK_SIZE - (1 << 20), STACK_SIZE, f)
}

/// Whether the running script must stop before it recurses further: less than [`HEADROOM`] of
/// the stack is left.
pub(super) fn exhausted() -> bool {
    stacker::remaining_stack().is_some_and(|left| left < HEADROOM)
}
