//! Scoring rules: operator-written Rhai scripts that turn an event and its incident into a
//! triage [`Decision`] (score, severity, policy, tags, sensitivity, roles, suppression).
//!
//! Sits between dedup/incident and escalation: the incident owner calls
//! [`RuleSet::evaluate`] for every event, and the escalation plan reads the decision.
//!
//! Operators put `*.rhai` files in a rules directory; [`RuleSet::load`] compiles all of them
//! once (reporting every compile error with file, line and column), and every event then runs
//! them in file-name order. Each script sees `event`, `incident` and the `decision` so far, and
//! changes the decision only through `decision`'s methods. A script that fails or overruns its
//! budget changes nothing: it runs on a copy of the decision that is kept only on success, and
//! it is listed in [`Evaluation::failures`]. `rules/README.md` documents the script API.

mod clock;
pub mod config;
mod decision;
mod engine;
mod memo;
mod stack;
pub mod threads;
mod view;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use rhai::{AST, Engine, EvalAltResult, ImmutableString, Scope};

pub use clock::Hours;
pub use decision::{Decision, Sensitivity};
use decision::{Draft, State};
pub use stack::STACK_SIZE;

use crate::event::{Event, Kind};

/// The triage settings from the config: severity thresholds, base scores and sandbox limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Triage {
    /// Most severe first; an event gets the first one whose `min_score` its score reaches.
    pub severities: Vec<Threshold>,
    /// The sender's severity word (`critical`, `warning`, …) → an alert's base score.
    pub base_scores: BTreeMap<String, i64>,
    /// Base score of an alert with no severity word, or one not in `base_scores`.
    pub default_base_score: i64,
    /// Base score of a customer report the support desk verified.
    pub verified_report_score: i64,
    pub unverified_report_score: i64,
    /// Passed to [`RuleSet::load`]; a rule set keeps the limits it was loaded with.
    pub limits: RuleLimits,
    /// The service catalog the rule functions `dependents`, `owner`, … read.
    pub catalog: Arc<crate::catalog::Catalog>,
    /// Business hours and night for `is_business_hours(tz)` and `is_night(tz)`.
    pub hours: Hours,
}

impl Default for Triage {
    fn default() -> Self {
        let threshold = |name: &str, min_score| Threshold { name: name.to_owned(), min_score };
        Triage {
            severities: vec![
                threshold("sev1", 80),
                threshold("sev2", 60),
                threshold("sev3", 40),
                threshold("sev4", 0),
            ],
            base_scores: [("critical", 80), ("error", 60), ("warning", 40), ("info", 10)]
                .into_iter()
                .map(|(word, score)| (word.to_owned(), score))
                .collect(),
            default_base_score: 20,
            verified_report_score: 60,
            unverified_report_score: 30,
            limits: RuleLimits::default(),
            catalog: Arc::default(),
            hours: Hours::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threshold {
    pub name: String,
    pub min_score: i64,
}

/// What one script may consume. Every limit is set explicitly on the engine because Rhai's own
/// defaults differ between debug and release builds and several are unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleLimits {
    /// CPU time (of the evaluating thread) all scripts together may spend on one event. Script k of n must finish
    /// by start + budget·k/n, so time a script leaves unused carries forward and a runaway
    /// script cannot starve the scripts after it.
    pub time_budget: Duration,
    /// Rhai operations per script run.
    pub max_operations: u64,
    /// Nested calls of script-defined functions.
    pub max_call_levels: usize,
    /// Nesting of statements and expressions at top level, and inside functions.
    pub max_expr_depth: usize,
    pub max_function_expr_depth: usize,
    /// Bytes in one string, and in all the strings inside one array or map. At least the largest
    /// string an event may carry, or scripts fail when they call methods on it.
    pub max_string_size: usize,
    /// Elements in one array, counting nested arrays.
    pub max_array_size: usize,
    /// Entries in one map, counting nested maps (`event.details` included).
    pub max_map_size: usize,
    /// Variables alive at once, counting `event`, `incident` and `decision`.
    pub max_variables: usize,
    /// Functions one script may define.
    pub max_functions: usize,
}

impl Default for RuleLimits {
    fn default() -> Self {
        RuleLimits {
            time_budget: Duration::from_millis(10),
            max_operations: 200_000,
            max_call_levels: 16,
            max_expr_depth: 32,
            max_function_expr_depth: 16,
            max_string_size: 1 << 20,
            max_array_size: 10_000,
            max_map_size: 10_000,
            max_variables: 64,
            max_functions: 32,
        }
    }
}

/// What the incident owner knows about the incident an event belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentView {
    pub id: u64,
    /// This event opened the incident.
    pub is_new: bool,
    /// `triggered`, `acknowledged` or `resolved`.
    pub status: String,
    /// Events in the incident, this one included.
    pub count: u64,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// The incident's severity and score before this event, if it was scored before.
    pub severity: Option<String>,
    pub score: Option<i64>,
}

/// A rules file that could not be read or compiled.
pub type RuleError = crate::error::LocatedError;

/// A script that failed for one event; its changes were dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFailure {
    /// The file name, e.g. `10-payments.rhai`.
    pub rule: String,
    pub error: String,
    /// This failure disabled the rule (see [`RuleSet::disabled`]); reported once per rule.
    pub disabled: bool,
}

impl fmt::Display for RuleFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.error)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub decision: Decision,
    /// Scripts that errored or overran their budget, in the order they ran.
    pub failures: Vec<RuleFailure>,
    /// Scripts that ran, and scripts whose remembered outcome was used instead (see [`memo`]).
    pub ran: u32,
    pub reused: u32,
}

struct Rule {
    /// Arc so that arming a script's run (which logs its `print` output under this name) does
    /// not allocate.
    name: Arc<str>,
    ast: AST,
    /// What it reads of `event` and `incident`, and whether its outcomes are remembered.
    reads: memo::Reads,
    /// Why it no longer runs: it was halted for nesting too deeply, or panicked. Such a rule
    /// would fail the same way for the next event, so it stays off until the rules are
    /// reloaded (a reload compiles a new set).
    disabled: std::sync::OnceLock<String>,
}

/// Compiled scoring scripts. Compiled once at load; `Send + Sync`, so one rule set is shared
/// (through an `Arc`) by every thread that evaluates events.
pub struct RuleSet {
    engine: Engine,
    rules: Vec<Rule>,
    limits: RuleLimits,
    /// Unique per compiled set: remembered outcomes (see [`memo`]) belong to one set.
    id: u64,
    /// The fields of `event` and `incident` the scripts read, as indexes into the view's field
    /// tables; `None`: some script may read any, so the whole map is bound.
    event_fields: Option<Vec<usize>>,
    incident_fields: Option<Vec<usize>>,
}

/// Adds a script's fields to the set's (`None` wins: then the whole map is bound).
fn widen(
    set: &mut Option<Vec<usize>>,
    script: Option<&std::collections::BTreeSet<rhai::ImmutableString>>,
    index: fn(&str) -> Option<usize>,
) {
    match (set.as_mut(), script) {
        (Some(set), Some(fields)) => {
            // A name the map does not have reads as unit either way.
            set.extend(fields.iter().filter_map(|f| index(f)));
            set.sort_unstable();
            set.dedup();
        }
        _ => *set = None,
    }
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.names())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Bound names are declared (as variables, not constants, so the optimizer cannot fold the
/// placeholder values) for strict-variables mode to accept them.
fn declared_names() -> Scope<'static> {
    let mut declared = Scope::new();
    for name in engine::BOUND_NAMES {
        declared.push(name, ());
    }
    declared
}

impl RuleSet {
    /// Compiles every `*.rhai` file in `dir` (not recursively; names starting with `.`, such as
    /// editor lock files, are skipped), ordered by file name. Reports every unreadable file and
    /// every compile error at once, each with its file and, for compile errors, line and column.
    pub fn load(dir: &Path, limits: &RuleLimits) -> Result<RuleSet, Vec<RuleError>> {
        let unreadable = |file: &Path, err: std::io::Error| RuleError {
            file: file.to_owned(),
            line: None,
            column: None,
            message: format!("cannot read: {err}"),
        };
        let entries = std::fs::read_dir(dir).map_err(|err| vec![unreadable(dir, err)])?;
        let mut paths = Vec::new();
        let mut errors = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => {
                    let path = entry.path();
                    let name = entry.file_name();
                    let visible = !name.to_string_lossy().starts_with('.');
                    if visible
                        && path.extension().is_some_and(|ext| ext == "rhai")
                        && path.is_file()
                    {
                        paths.push(path);
                    }
                }
                Err(err) => errors.push(unreadable(dir, err)),
            }
        }
        paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));

        let mut set = RuleSet::empty(limits);
        let declared = declared_names();
        for path in paths {
            let source = match std::fs::read_to_string(&path) {
                Ok(source) => source,
                Err(err) => {
                    errors.push(unreadable(&path, err));
                    continue;
                }
            };
            if let Err(err) = set.add(&declared, path, &source) {
                errors.push(err);
            }
        }
        if errors.is_empty() { Ok(set) } else { Err(errors) }
    }

    /// Compiles one script from source, exactly as [`RuleSet::load`] compiles a file named
    /// `name` (the fuzz target's entry point; no file system involved).
    pub fn from_source(
        name: &str,
        source: &str,
        limits: &RuleLimits,
    ) -> Result<RuleSet, RuleError> {
        let mut set = RuleSet::empty(limits);
        set.add(&declared_names(), PathBuf::from(name), source)?;
        Ok(set)
    }

    fn add(&mut self, declared: &Scope, path: PathBuf, source: &str) -> Result<(), RuleError> {
        match self.engine.compile_with_scope(declared, source) {
            Ok(ast) => {
                if let Some((message, pos)) = engine::refused(&ast) {
                    return Err(RuleError {
                        file: path,
                        line: pos.line(),
                        column: pos.position(),
                        message,
                    });
                }
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let reads = memo::analyze(&ast);
                if reads.event() {
                    let fields = reads.event_fields.as_ref();
                    widen(&mut self.event_fields, fields, view::event_field_index);
                }
                if reads.incident() {
                    let fields = reads.incident_fields.as_ref();
                    widen(&mut self.incident_fields, fields, view::incident_field_index);
                }
                self.rules.push(Rule {
                    name: Arc::from(name.as_ref()),
                    ast,
                    reads,
                    disabled: std::sync::OnceLock::new(),
                });
                Ok(())
            }
            Err(err) => {
                let pos = err.position();
                Err(RuleError {
                    file: path,
                    line: pos.line(),
                    column: pos.position(),
                    message: err.err_type().to_string(),
                })
            }
        }
    }

    /// A rule set with no scripts: every event gets its base-score decision.
    pub fn empty(limits: &RuleLimits) -> RuleSet {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        RuleSet {
            engine: engine::build(limits),
            rules: Vec::new(),
            limits: limits.clone(),
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            event_fields: Some(Vec::new()),
            incident_fields: Some(Vec::new()),
        }
    }

    /// No scripts: every evaluation is the base-score decision (cheap, on any thread).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// File names of the scripts, in the order they run.
    pub fn names(&self) -> Vec<String> {
        self.rules.iter().map(|r| String::from(&*r.name)).collect()
    }

    /// The rules that were disabled since the set was loaded, with why.
    pub fn disabled(&self) -> Vec<(String, String)> {
        let disabled = self.rules.iter().filter_map(|r| Some((&r.name, r.disabled.get()?)));
        disabled.map(|(name, why)| (String::from(&**name), why.clone())).collect()
    }

    /// Runs every script against `event` and `incident` and returns the decision. Never fails:
    /// a script that errors or overruns is listed in the failures and its changes are dropped.
    /// Runs on a rule thread's stack (see [`stack`]), whatever thread calls it.
    pub fn evaluate(&self, event: &Event, incident: &IncidentView, triage: &Triage) -> Evaluation {
        stack::on_rule_stack(|| self.evaluate_here(event, incident, triage))
    }

    #[expect(
        clippy::too_many_lines,
        reason = "the memo lookup, the run and the memo store in one place; to split"
    )]
    fn evaluate_here(&self, event: &Event, incident: &IncidentView, triage: &Triage) -> Evaluation {
        let severities = shared_thresholds(&triage.severities);
        let mut reasons = Vec::new();
        let mut state = Arc::new(initial_state(event, triage, &mut reasons));
        let mut rules_fired = Vec::new();
        let _context = engine::arm_context(&triage.catalog, event.received_at, triage.hours);
        let mut failures = Vec::new();

        let mut scope = Scope::new();
        // Only when script output can reach the log: gathering known values costs a copy.
        let _known = (!self.rules.is_empty()
            && tracing::enabled!(target: "tocsin::rules::engine", tracing::Level::DEBUG))
        .then(|| crate::redact::scope(event));
        // `event` and `incident` are bound for the first script that runs and reads them: when
        // every script that reads `event` is remembered, its map is never built.
        let (mut event_bound, mut incident_bound) = (false, false);
        let (mut ran, mut reused) = (0, 0);
        let mut values = Vec::new();
        // `state`'s digest, computed when a remembered script first needs it.
        let mut digest: Option<u64> = None;
        if !self.rules.is_empty() {
            memo::begin(self.id, &severities, &triage.catalog);
            engine::begin_evaluation();
        }

        for (k, rule) in self.rules.iter().enumerate() {
            if rule.disabled.get().is_some() {
                continue;
            }
            let keyed = rule.reads.paths.as_deref().is_some_and(|paths| {
                memo::key(paths, event, incident, event.received_at, &mut values)
            });
            // The digest of the decision this script starts from (`None`: not remembered).
            let from = keyed.then(|| *digest.get_or_insert_with(|| memo::digest(&state)));
            let probe = |digest| memo::Probe { rule: k, state: &state, digest, values: &values };
            if let Some((kept, kept_digest, notes)) = from.and_then(|d| memo::get(&probe(d))) {
                if !notes.is_empty() {
                    rules_fired.push(String::from(&*rule.name));
                    reasons.extend(notes);
                }
                state = kept;
                digest = Some(kept_digest);
                reused += 1;
                continue;
            }
            let key = from.map(|d| probe(d).key());
            // Only the fields some script reads (no script reads the rest).
            if rule.reads.event() && !event_bound {
                let map = match &self.event_fields {
                    Some(fields) => view::event_partial(event, fields),
                    None => view::event(event),
                };
                scope.push_constant_dynamic("event", map);
                event_bound = true;
            }
            if rule.reads.incident() && !incident_bound {
                let now = event.received_at;
                let map = match &self.incident_fields {
                    Some(fields) => view::incident_partial(incident, now, fields),
                    None => view::incident(incident, now),
                };
                scope.push_constant_dynamic("incident", map);
                incident_bound = true;
            }
            let bound = scope.len();
            ran += 1;
            let draft =
                Draft::new(Arc::clone(&severities), Arc::clone(&rule.name), Arc::clone(&state));
            scope.push("decision", draft);
            let run = {
                let _armed = engine::arm(Some(self.share(k + 1)), &rule.name);
                // A panic in the interpreter or a native function is this rule's failure, not
                // the evaluating thread's end.
                let run = || self.engine.run_ast_with_scope(&mut scope, &rule.ast);
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
            };
            let outcome = match run {
                Ok(Ok(())) => take_draft(&mut scope).map_err(Failed::Error),
                Ok(Err(err)) => Err(self.describe(&err)),
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(Failed::Disable(format!("the interpreter panicked: {}", clip(&what))))
                }
            };
            // Drop the script's variables and its draft: the next script starts clean.
            scope.rewind(bound);
            match outcome {
                Ok(draft) => {
                    if !Arc::ptr_eq(&draft.state, &state) {
                        digest = None;
                    }
                    if let Some(key) = key {
                        let d = *digest.get_or_insert_with(|| memo::digest(&draft.state));
                        memo::put(key, (Arc::clone(&draft.state), d, draft.notes.clone()));
                    }
                    if !draft.notes.is_empty() {
                        rules_fired.push(String::from(&*rule.name));
                        reasons.extend(draft.notes);
                    }
                    state = draft.state;
                }
                Err(Failed::Error(error)) => failures.push(RuleFailure {
                    rule: String::from(&*rule.name),
                    error,
                    disabled: false,
                }),
                Err(Failed::Disable(error)) => {
                    let disabled = rule.disabled.set(error.clone()).is_ok();
                    if disabled {
                        tracing::error!(
                            rule = %rule.name,
                            error = %error,
                            "rule disabled until the rules are reloaded"
                        );
                    }
                    failures.push(RuleFailure {
                        rule: String::from(&*rule.name),
                        error: format!(
                            "{error}; the rule is disabled until the rules are reloaded"
                        ),
                        disabled,
                    });
                }
            }
        }

        Evaluation {
            decision: decision::finish(&triage.severities, state, rules_fired, reasons),
            failures,
            ran,
            reused,
        }
    }

    /// How much of the evaluation's CPU time the `done`-th script may have used when it
    /// finishes: its share of the budget plus whatever the scripts before it left unused.
    fn share(&self, done: usize) -> Duration {
        let total = self.rules.len().max(1) as u128;
        let nanos = self.limits.time_budget.as_nanos() * done as u128 / total;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn describe(&self, err: &EvalAltResult) -> Failed {
        let at = match err.position().line() {
            Some(line) => format!(" (at line {line})"),
            None => String::new(),
        };
        // Halted inside a script function: the reason is the innermost error.
        if let EvalAltResult::ErrorTerminated(why, _) = err.unwrap_inner()
            && why
                .read_lock::<ImmutableString>()
                .is_some_and(|w| w.as_str() == engine::HALTED_BY_STACK)
        {
            return Failed::Disable(format!(
                "stopped: nested too deeply (it would have overflowed the stack){at}"
            ));
        }
        Failed::Error(match err.unwrap_inner() {
            EvalAltResult::ErrorTerminated(..) => format!(
                "stopped after its share of the {:?} time budget{at}",
                self.limits.time_budget
            ),
            EvalAltResult::ErrorTooManyOperations(..) => {
                format!("stopped after {} operations{at}", self.limits.max_operations)
            }
            EvalAltResult::ErrorStackOverflow(..) => format!(
                "stopped: function calls nested deeper than {}{at}",
                self.limits.max_call_levels
            ),
            // A thrown value may be large: the message goes into the incident's timeline.
            _ => clip(&err.to_string()),
        })
    }
}

/// How a script run failed: for this event only, or so that the rule is disabled.
enum Failed {
    Error(String),
    Disable(String),
}

/// Failure messages longer than this many characters are cut.
const MAX_ERROR_CHARS: usize = 1000;

fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The thresholds as the drafts hold them. Kept per thread and reused while the triage config is
/// unchanged, so an evaluation does not copy every threshold name.
fn shared_thresholds(thresholds: &[Threshold]) -> Arc<[Threshold]> {
    thread_local! {
        static LAST: RefCell<Option<Arc<[Threshold]>>> = const { RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some(shared) if **shared == *thresholds => Arc::clone(shared),
        _ => Arc::clone(last.insert(thresholds.into())),
    })
}

/// The `decision` a script left in scope, if it is still a decision.
fn take_draft(scope: &mut Scope) -> Result<Draft, String> {
    let value = scope.get_mut("decision").map(std::mem::take).unwrap_or_default();
    let type_name = value.type_name();
    value.try_cast::<Draft>().ok_or_else(|| {
        format!(
            "`decision` was replaced by {} {type_name}; change it only through its methods",
            crate::error::a_or_an(type_name)
        )
    })
}

/// The decision before any script runs. A declaration starts from its assessment: the
/// declared severity is a floor (its threshold's `min_score` the base score; without one, the
/// verified-report score), and its data sensitivity and customer impact are already marked.
fn initial_state(event: &Event, triage: &Triage, reasons: &mut Vec<String>) -> State {
    let Some(a) = event.assessment.as_ref().filter(|_| event.kind == Kind::Declaration) else {
        return State::new(base_score(event, triage));
    };
    let floor = a
        .severity
        .as_deref()
        .and_then(|name| triage.severities.iter().position(|t| t.name == name));
    let base = floor
        .and_then(|i| triage.severities.get(i))
        .map_or(triage.verified_report_score, |t| t.min_score);
    reasons.push(format!(
        "declaration: declared by user:{}{}; data sensitivity {}; customer impact {}",
        a.declared_by,
        a.severity
            .as_deref()
            .map(|s| format!(" at {s} (rules may raise it, not lower it)"))
            .unwrap_or_default(),
        a.data_sensitivity,
        if a.customer_impact { "yes" } else { "no" },
    ));
    State::declared(base, floor, a.data_sensitivity, a.customer_impact)
}

fn base_score(event: &Event, triage: &Triage) -> i64 {
    match event.kind {
        Kind::Declaration => triage.verified_report_score,
        Kind::Report if event.verified => triage.verified_report_score,
        Kind::Report => triage.unverified_report_score,
        Kind::Alert => event
            .severity
            .as_deref()
            .and_then(|word| triage.base_scores.get(word))
            .copied()
            .unwrap_or(triage.default_base_score),
    }
}
