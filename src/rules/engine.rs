//! The Rhai sandbox scoring scripts run in, and the `decision` API registered into it.
//!
//! Built once per rule set: a raw engine with only the standard package, every limit set
//! explicitly (Rhai's defaults differ between debug and release builds, and several are
//! unlimited), no module loading, no `eval`, and a deadline in the evaluating thread's CPU time
//! checked from `on_progress`. The rule set arms the deadline around each script run; see
//! [`arm`].
//!
//! CPU time rather than wall-clock time: on a busy machine (an alert storm, a shared host) a
//! thread waits for a core for milliseconds at a time, and a wall-clock budget would then cut
//! well-behaved rules short and change decisions. The CPU time a script used is what it did;
//! a runaway script still spends its budget within a few milliseconds of work.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Duration;

use rhai::module_resolvers::DummyModuleResolver;
use rhai::packages::{Package, StandardPackage};
use rhai::{
    AST, ASTNode, Array, Dynamic, Engine, EvalAltResult, Expr, FuncRegistration, ImmutableString,
    OptimizationLevel, Position, Stmt,
};

use jiff::Timestamp;

use super::RuleLimits;
use super::clock::{Helper, Hours};
use super::decision::Draft;
use crate::catalog::Catalog;

/// Names the rule set binds for every script; scripts may not declare variables that shadow them.
pub(super) const BOUND_NAMES: [&str; 3] = ["event", "incident", "decision"];

/// How many Rhai operations run between clock reads: reading the thread's CPU clock is a system
/// call (about as costly as a hundred operations), so reading it on every operation would cost
/// more than the operations themselves.
const CLOCK_EVERY_OPS: u64 = 256;

/// CPU time the calling thread has used so far.
pub(super) fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), u32::try_from(t.tv_nsec).unwrap_or(0))
}

/// The values `on_progress` halts a script with (`RuleSet::describe` words the failure).
pub(super) const HALTED_BY_DEADLINE: &str = "time budget spent";
pub(super) const HALTED_BY_STACK: &str = "nested too deeply";

thread_local! {
    // Thread-locals rather than engine state: one compiled rule set is shared by every thread
    // that evaluates events, and each evaluation arms its own deadline on its own thread.
    // The running script's share of the budget, counted from `STARTED`.
    static DEADLINE: Cell<Option<Duration>> = const { Cell::new(None) };
    // The evaluation's start in this thread's CPU time (`thread_cpu_time`), read at the first
    // clock check rather than before the first script: most evaluations never reach a check
    // (`CLOCK_EVERY_OPS`), and reading the clock is a system call.
    static STARTED: Cell<Option<Duration>> = const { Cell::new(None) };
    static RULE: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
    // The catalog of the evaluation running on this thread (a rule set is compiled once and
    // shared; the catalog comes with the config the event is evaluated under).
    static CATALOG: RefCell<Option<Arc<Catalog>>> = const { RefCell::new(None) };
    // The evaluated event's arrival time and the configured hours, for the clock helpers.
    static NOW: Cell<Option<(Timestamp, Hours)>> = const { Cell::new(None) };
}

/// While alive, the catalog functions (`dependents`, `owner`, …) read `catalog`, and the
/// clock helpers (`local_hour`, …) answer for `now` with `hours`.
pub(super) struct ContextArmed(());

pub(super) fn arm_context(catalog: &Arc<Catalog>, now: Timestamp, hours: Hours) -> ContextArmed {
    CATALOG.set(Some(Arc::clone(catalog)));
    NOW.set(Some((now, hours)));
    ContextArmed(())
}

impl Drop for ContextArmed {
    fn drop(&mut self) {
        CATALOG.set(None);
        NOW.set(None);
    }
}

/// The armed evaluation's time and hours (the memo computes clock keys with them).
pub(super) fn now() -> Option<(Timestamp, Hours)> {
    NOW.get()
}

/// `local_hour(tz)`, `local_weekday(tz)`, `is_business_hours(tz)`, `is_night(tz)`.
fn register_clock(engine: &mut Engine) {
    for helper in Helper::ALL {
        engine.register_fn(helper.name(), move |tz: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            let (now, hours) = NOW.get().unwrap_or((Timestamp::UNIX_EPOCH, Hours::default()));
            helper.answer(tz, now, &hours).map_err(Into::into)
        });
    }
}

fn with_catalog<T>(f: impl FnOnce(&Catalog) -> T) -> T {
    CATALOG.with_borrow(|c| match c {
        Some(c) => f(c),
        None => f(&Catalog::default()),
    })
}

/// Read-only questions about the service catalog. Each also takes `()` (what `event.service`
/// is when the sender named none) and answers as for an unknown service.
fn register_catalog(engine: &mut Engine) {
    engine.register_fn("dependents", |s: &str| -> Array {
        with_catalog(|c| c.dependents(s).into_iter().map(Dynamic::from).collect())
    });
    engine.register_fn("dependents", |_: ()| Array::new());
    engine.register_fn("depends_on", |s: &str| -> Array {
        with_catalog(|c| c.depends_on(s).into_iter().map(Dynamic::from).collect())
    });
    engine.register_fn("depends_on", |_: ()| Array::new());
    engine.register_fn("is_customer_facing_downstream", |s: &str| {
        with_catalog(|c| c.is_customer_facing_downstream(s))
    });
    engine.register_fn("is_customer_facing_downstream", |_: ()| false);
    engine.register_fn("is_customer_facing", |s: &str| {
        with_catalog(|c| c.get(s).is_some_and(|s| s.customer_facing))
    });
    engine.register_fn("is_customer_facing", |_: ()| false);
    engine.register_fn("is_vendor", |s: &str| with_catalog(|c| c.get(s).is_some_and(|s| s.vendor)));
    engine.register_fn("is_vendor", |_: ()| false);
    engine.register_fn("owner", |s: &str| {
        with_catalog(|c| c.owner(s).map_or(Dynamic::UNIT, |o| Dynamic::from(o.name().to_owned())))
    });
    engine.register_fn("owner", |_: ()| Dynamic::UNIT);
}

/// Starts an evaluation's clock: its scripts' deadlines count from the first clock check after
/// this (the CPU time before it is what fewer than `CLOCK_EVERY_OPS` operations per script
/// took).
pub(super) fn begin_evaluation() {
    STARTED.set(None);
}

/// While alive, scripts on this thread stop once `deadline` (CPU time since the evaluation's
/// start, see [`begin_evaluation`]) is spent, and their `print`/`debug` output is logged under
/// `rule`. Dropping it disarms both.
pub(super) struct Armed(());

pub(super) fn arm(deadline: Option<Duration>, rule: &Arc<str>) -> Armed {
    DEADLINE.set(deadline);
    RULE.set(Some(Arc::clone(rule)));
    Armed(())
}

impl Drop for Armed {
    fn drop(&mut self) {
        DEADLINE.set(None);
        RULE.set(None);
    }
}

fn current_rule() -> Arc<str> {
    RULE.with_borrow(|rule| rule.clone()).unwrap_or_else(|| Arc::from("?"))
}

pub(super) fn build(limits: &RuleLimits) -> Engine {
    let mut engine = Engine::new_raw();
    engine.register_global_module(StandardPackage::new().as_shared_module());

    // `import` would read other files; `eval` would compile text at run time, outside the load
    // checks. Disabled keywords fail at load with their position.
    engine.set_module_resolver(DummyModuleResolver::new());
    engine.disable_symbol("import");
    engine.disable_symbol("eval");

    engine
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_levels)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_function_expr_depth)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_max_variables(limits.max_variables)
        .set_max_functions(limits.max_functions)
        .set_max_modules(0);

    // A misspelt variable (`evnet.summary`) is a load error rather than a () at run time.
    engine.set_strict_variables(true);
    // Simple folds constants; Full would also run native functions at load time.
    engine.set_optimization_level(OptimizationLevel::Simple);

    engine.on_progress(|ops| {
        // Every step, not every `CLOCK_EVERY_OPS`: a native function recursing into the engine
        // goes deeper with every step (see `stack`). Reading the stack pointer is cheap.
        if super::stack::exhausted() {
            return Some(HALTED_BY_STACK.into());
        }
        if ops % CLOCK_EVERY_OPS != 0 {
            return None;
        }
        let deadline = DEADLINE.get()?;
        let now = thread_cpu_time();
        let started = STARTED.get().unwrap_or_else(|| {
            STARTED.set(Some(now));
            now
        });
        (now >= started.saturating_add(deadline)).then(|| HALTED_BY_DEADLINE.into())
    });
    // A script may print event fields: redacted with the event's known values (the scope set
    // in `RuleSet::evaluate`) as well as the patterns, before the log writer sees them.
    engine.on_print(
        |text| tracing::debug!(rule = %current_rule(), "print: {}", crate::redact::for_log(text)),
    );
    engine.on_debug(|text, _source, pos| {
        tracing::debug!(rule = %current_rule(), position = %pos, "debug: {}", crate::redact::for_log(text));
    });

    // The callback is marked deprecated only as "volatile API"; it is the one way to reject a
    // shadowing `let decision = …` at load time.
    #[allow(deprecated)]
    engine.on_def_var(|_, var, _| Ok(!BOUND_NAMES.contains(&var.name())));

    // `sleep` blocks the thread in native code, where no deadline can interrupt it.
    engine.register_fn("sleep", |_: i64| -> Result<(), Box<EvalAltResult>> {
        Err("sleep is not available in rules".into())
    });
    engine.register_fn("sleep", |_: f64| -> Result<(), Box<EvalAltResult>> {
        Err("sleep is not available in rules".into())
    });

    // Matching words in people's text is the common need of report rules; natively it is one
    // call instead of a loop, a script function and a lower-cased copy of the text.
    engine.register_fn("mentions_any", |text: &str, words: Array| mentions_any(text, &words));

    register_decision(&mut engine);
    register_catalog(&mut engine);
    register_clock(&mut engine);
    engine
}

/// Why a compiled script is refused although it compiles, and where: closures that capture
/// variables, `curry`, and an unknown time zone given to a clock helper. A value held in a closure (or curried) is not counted against the
/// size limits, and shares its variable, so a loop can nest such values without bound (each
/// level costs a few operations, and dropping the result recurses once per level: deep enough,
/// that overflows the stack) or store a closure in the variable it captured (a cycle that is
/// never freed). Closures that capture nothing (`|x| x > 2`) and `Fn("name")` stay available.
pub(super) fn refused(ast: &AST) -> Option<(String, Position)> {
    let mut found = None;
    ast.walk(&mut |nodes: &[ASTNode]| {
        let Some(node) = nodes.last() else { return true };
        found = match node {
            ASTNode::Stmt(Stmt::Share(vars)) => vars.first().map(|(var, _)| {
                let names: Vec<String> =
                    vars.iter().map(|(v, _)| format!("`{}`", v.name)).collect();
                let message = format!(
                    "a closure in a rule may not capture variables (here {}): what it captures is \
                     not counted against the rule limits; use a `for` loop instead",
                    names.join(", ")
                );
                (message, var.pos)
            }),
            ASTNode::Expr(Expr::FnCall(f, pos) | Expr::MethodCall(f, pos))
                if f.name == KEYWORD_CURRY =>
            {
                Some(("`curry` is not available in rules".to_owned(), *pos))
            }
            ASTNode::Stmt(Stmt::FnCall(f, pos)) if f.name == KEYWORD_CURRY => {
                Some(("`curry` is not available in rules".to_owned(), *pos))
            }
            // A time zone written out is checked now rather than when an event arrives.
            ASTNode::Expr(Expr::FnCall(f, pos)) | ASTNode::Stmt(Stmt::FnCall(f, pos))
                if Helper::parse(&f.name).is_some() =>
            {
                match f.args.first() {
                    Some(Expr::StringConstant(tz, _)) if f.args.len() == 1 => {
                        super::clock::zone(tz).err().map(|e| (e, *pos))
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        found.is_none()
    });
    found
}

const KEYWORD_CURRY: &str = "curry";

/// Byte comparisons up to which `mentions_any` compares at every position of the text (the
/// common case, a report's text and a few short words: no automaton to build).
const NAIVE_MENTIONS: usize = 1 << 16;

/// Whether `text` contains any of the words (ASCII case ignored). A native function runs to
/// its end whatever the rule's budget, so it must be cheap for any input: comparing at every
/// position costs text × word, 1 MiB × 128 KiB took seconds; beyond small inputs the words
/// go into one Aho-Corasick automaton, linear in the text plus the words (both bounded by
/// `max_string_size`).
pub(super) fn mentions_any(text: &str, words: &Array) -> bool {
    let words: Vec<_> = words.iter().filter_map(|w| w.read_lock::<ImmutableString>()).collect();
    let cost = words.iter().map(|w| w.len().saturating_mul(text.len())).sum::<usize>();
    if cost <= NAIVE_MENTIONS {
        return words.iter().any(|w| contains_ignoring_ascii_case(text, w));
    }
    // A noncontiguous NFA: built in time linear in the words (a DFA, which the builder may
    // pick for few words, has 256 transitions per state: a 128 KiB word took minutes).
    let automaton = aho_corasick::AhoCorasick::builder()
        .kind(Some(aho_corasick::AhoCorasickKind::NoncontiguousNFA))
        .ascii_case_insensitive(true)
        .build(words.iter().map(|w| w.as_bytes()));
    match automaton {
        Ok(a) => a.is_match(text),
        // Too many states for the automaton's id space: far beyond what the limits let a script
        // pass. One word at a time, each linear.
        Err(_) => {
            let lower = text.to_ascii_lowercase();
            words.iter().any(|w| lower.contains(&w.to_ascii_lowercase()))
        }
    }
}

fn contains_ignoring_ascii_case(text: &str, word: &str) -> bool {
    let (text, word) = (text.as_bytes(), word.as_bytes());
    word.is_empty() || text.windows(word.len()).any(|w| w.eq_ignore_ascii_case(word))
}

type Unit = Result<(), Box<EvalAltResult>>;

fn lift(outcome: Result<(), String>) -> Unit {
    outcome.map_err(Into::into)
}

/// Registers a method that changes the draft. Rhai assumes registered functions are pure (do not
/// change their first argument) unless told otherwise; these do, so say so. A macro because the
/// bounds a generic function would need (`rhai::Variant`) are not public.
macro_rules! mutator {
    ($engine:expr, $name:expr, $func:expr $(,)?) => {
        FuncRegistration::new($name).with_purity(false).register_into_engine($engine, $func);
    };
}

fn string_array(items: &std::collections::BTreeSet<ImmutableString>) -> Array {
    items.iter().map(|s| s.clone().into()).collect()
}

fn register_decision(engine: &mut Engine) {
    engine.register_type_with_name::<Draft>("Decision");

    // Each of these takes an optional reason as a last argument.
    macro_rules! with_optional_reason {
        ($name:literal, $method:ident) => {
            mutator!(engine, $name, |d: &mut Draft, arg: ImmutableString| {
                lift(d.$method(arg, None))
            });
            mutator!(engine, $name, |d: &mut Draft,
                                     arg: ImmutableString,
                                     reason: ImmutableString| {
                lift(d.$method(arg, Some(&reason)))
            },);
        };
    }
    with_optional_reason!("set_severity", set_severity);
    with_optional_reason!("cap_severity", cap_severity);
    with_optional_reason!("set_policy", set_policy);
    with_optional_reason!("tag", tag);
    with_optional_reason!("set_sensitivity", set_sensitivity);
    with_optional_reason!("involve", involve);

    mutator!(engine, "add_score", |d: &mut Draft, points: i64, reason: ImmutableString| lift(
        d.add_score(points, &reason)
    ),);
    mutator!(engine, "set_customer_facing", |d: &mut Draft| { lift(d.set_customer_facing(None)) });
    mutator!(engine, "set_customer_facing", |d: &mut Draft, reason: ImmutableString| lift(
        d.set_customer_facing(Some(&reason))
    ),);
    mutator!(engine, "suppress", |d: &mut Draft, reason: ImmutableString| {
        lift(d.suppress(&reason))
    });

    engine
        .register_get("score", |d: &mut Draft| d.state.score)
        .register_get("base_score", |d: &mut Draft| d.state.base_score)
        .register_get("severity", |d: &mut Draft| d.severity().to_owned())
        .register_get("policy", |d: &mut Draft| {
            d.policy().map_or(Dynamic::UNIT, |p| p.clone().into())
        })
        .register_get("tags", |d: &mut Draft| string_array(d.tags()))
        .register_get("sensitivity", |d: &mut Draft| d.sensitivity().as_str().to_owned())
        .register_get("customer_facing", |d: &mut Draft| d.customer_facing())
        .register_get("roles", |d: &mut Draft| string_array(d.roles()))
        .register_get("suppressed", |d: &mut Draft| d.is_suppressed())
        .register_fn("to_string", |d: &mut Draft| d.to_string())
        .register_fn("to_debug", |d: &mut Draft| d.to_string());
}
