//! Remembered script outcomes.
//!
//! In an alert storm the same alerts arrive again and again, and most scripts look only at
//! fields that do not change between repeats (a label, the kind, the sender's severity). A
//! script's outcome is a function of what it reads: the `event` and `incident` fields its text
//! names, and the decision so far (through the `decision` getters). When a script's text shows
//! every read of `event` and `incident` as a plain property path (`event.labels.service`), its
//! outcome is kept per thread under (script, decision so far, the values at those paths) and
//! reused for the next event with the same values, without running the script.
//!
//! A script is not remembered (it runs every time) when it:
//! - uses `event` or `incident` other than through a property path (`let e = event;`,
//!   `f(event)`, `event[name]`, `event.keys()`): it could read anything;
//! - reads a field that differs for every event or every repeat (`event.id`,
//!   `incident.last_seen`, and `incident.count` and `incident.age_seconds` other than as
//!   below): it would never match;
//! - calls `print` or `debug` (their log lines would be lost), `timestamp` (not a function of
//!   its input), or `Fn`, `call` or `curry` (a call the text does not name);
//! - calls a clock helper (`local_hour`, …) with a zone computed at run time. With the zone
//!   written as a literal, the helper's answer for the event's arrival time joins the key
//!   instead (like a comparison's result below): reused while the hour is the same;
//! - contains what the analysis does not look into (a `break` with a value).
//!
//! `incident.count` and `incident.age_seconds` may be read when every read is compared with an
//! integer literal (`incident.count >= 10`, `600 > incident.age_seconds`): the script then sees
//! only the comparisons' results, so those results, not the values, go into the key, and
//! `count >= 10` is remembered as "true" for the 10th repeat and every one after.
//!
//! A run that failed is never remembered. The memo belongs to one compiled rule set, severity
//! table and service catalog; a reload starts a new one.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use jiff::Timestamp;
use rhai::{AST, ASTNode, Array, Dynamic, Expr, ImmutableString, Map, Stmt};

use super::clock::Helper;
use super::decision::State;
use super::view;
use super::{IncidentView, Threshold};
use crate::catalog::Catalog;
use crate::event::Event;

/// Outcomes kept per thread before the memo starts over.
const ENTRIES: usize = 4096;

const UNREMEMBERED_CALLS: [&str; 7] =
    ["print", "debug", "timestamp", "Fn", "call", "curry", "eval"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Root {
    Event,
    Incident,
    /// A clock helper's answer: `names` is `[helper, time zone]`.
    Clock,
}

/// A property path a script reads (`event.labels.service` → `Event`, `[labels, service]`),
/// with its first name resolved to the view's field when the script is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Path {
    pub(super) root: Root,
    /// Never empty.
    pub(super) names: Vec<ImmutableString>,
    start: Start,
    /// Only this comparison's result is read (see [`Test`]), not the value.
    pub(super) test: Option<Test>,
}

/// `value OP constant`, for a volatile integer field that a script only compares with integer
/// literals. (`constant OP value` is stored flipped.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Test {
    op: Cmp,
    constant: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Cmp {
    fn parse(op: &str) -> Option<Cmp> {
        Some(match op {
            "<" => Cmp::Lt,
            "<=" => Cmp::Le,
            ">" => Cmp::Gt,
            ">=" => Cmp::Ge,
            "==" => Cmp::Eq,
            "!=" => Cmp::Ne,
            _ => return None,
        })
    }

    /// The same test with the operands swapped: `c < v` is `v > c`.
    fn flipped(self) -> Cmp {
        match self {
            Cmp::Lt => Cmp::Gt,
            Cmp::Le => Cmp::Ge,
            Cmp::Gt => Cmp::Lt,
            Cmp::Ge => Cmp::Le,
            other => other,
        }
    }

    fn holds(self, value: i64, constant: i64) -> bool {
        match self {
            Cmp::Lt => value < constant,
            Cmp::Le => value <= constant,
            Cmp::Gt => value > constant,
            Cmp::Ge => value >= constant,
            Cmp::Eq => value == constant,
            Cmp::Ne => value != constant,
        }
    }
}

/// The volatile fields a script may read through comparisons only: integers in the view.
fn comparable(root: Root, field: &str) -> bool {
    root == Root::Incident && matches!(field, "count" | "age_seconds")
}

/// The test when `dot` (`incident.count`) is an operand of a comparison with an integer
/// literal, `parent` being the expression around it.
fn test_of(parent: Option<&ASTNode>, dot: &Expr) -> Option<Test> {
    let Some(ASTNode::Expr(Expr::FnCall(f, _))) = parent else { return None };
    let op = Cmp::parse(f.name.as_str())?;
    if f.op_token.is_none() || f.args.len() != 2 {
        return None;
    }
    match (&f.args[0], &f.args[1]) {
        (lhs, Expr::IntegerConstant(c, _)) if std::ptr::eq(lhs, dot) => {
            Some(Test { op, constant: *c })
        }
        (Expr::IntegerConstant(c, _), rhs) if std::ptr::eq(rhs, dot) => {
            Some(Test { op: op.flipped(), constant: *c })
        }
        _ => None,
    }
}

/// Where a path's value is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(unpredictable_function_pointer_comparisons)] // compared in tests only; each is a distinct fn
enum Start {
    /// One label or annotation (`names[1]`), read from the event itself: the map scripts see
    /// holds each value as a string, and building the whole map to read one of them is the
    /// cost the memo is there to avoid.
    Label,
    Annotation,
    /// A text field of `event` read whole (`event.summary`), read without building a Rhai
    /// string; written as [`encode`] writes the string (or unit).
    Text(fn(&Event) -> Option<&str>),
    /// One value of `event.details` (`names[1]`), converted alone instead of the whole map.
    Detail,
    /// A field of the view's `event` or `incident` table, by index.
    Event(usize),
    Incident(usize),
    /// A name the view does not have: Rhai reads it as unit.
    Unknown,
    /// `local_hour("Europe/Berlin")` and the like: the answer for the event's arrival time.
    Clock(Helper),
}

impl Path {
    fn new(root: Root, names: Vec<ImmutableString>) -> Path {
        let start = match (root, names.first().map(ImmutableString::as_str), names.len()) {
            (Root::Event, Some("labels"), 2..) => Start::Label,
            (Root::Event, Some("annotations"), 2..) => Start::Annotation,
            (Root::Event, Some("details"), 2..) => Start::Detail,
            (Root::Event, Some(name), len) => match view::event_text(name).filter(|_| len == 1) {
                Some(read) => Start::Text(read),
                None => view::event_field_index(name).map_or(Start::Unknown, Start::Event),
            },
            (Root::Incident, Some(name), _) => {
                view::incident_field_index(name).map_or(Start::Unknown, Start::Incident)
            }
            (Root::Clock, Some(name), _) => {
                Helper::parse(name).map_or(Start::Unknown, Start::Clock)
            }
            (_, None, _) => Start::Unknown,
        };
        Path { root, names, start, test: None }
    }
}

/// What one script reads, from its compiled text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reads {
    /// The property paths that determine its outcome; `None`: not remembered.
    pub(super) paths: Option<Vec<Path>>,
    /// The top-level fields of `event` it reads, when it reads it only through property paths
    /// (`None`: it may read any, so the whole map is bound).
    pub(super) event_fields: Option<BTreeSet<ImmutableString>>,
    pub(super) incident_fields: Option<BTreeSet<ImmutableString>>,
}

impl Reads {
    /// It names `event` (so the evaluation must bind it before the script runs): every use
    /// either adds a field or makes the set `None`.
    pub(super) fn event(&self) -> bool {
        self.event_fields.as_ref().is_none_or(|f| !f.is_empty())
    }

    pub(super) fn incident(&self) -> bool {
        self.incident_fields.as_ref().is_none_or(|f| !f.is_empty())
    }
}

fn volatile(root: Root, field: &str) -> bool {
    match root {
        Root::Event => field == "id",
        Root::Incident => matches!(field, "count" | "age_seconds" | "last_seen"),
        Root::Clock => false,
    }
}

/// The property names of a chain after a variable: `.labels.service` → `[labels, service]`.
/// Stops at the first step that is not a plain property (an index, a method call): the value
/// reached so far then stands for everything read below it.
fn chain(expr: &Expr, out: &mut Vec<ImmutableString>) {
    match expr {
        Expr::Property(p, _) => out.push(p.2.clone()),
        Expr::Dot(b, ..) => match &b.lhs {
            Expr::Property(p, _) => {
                out.push(p.2.clone());
                chain(&b.rhs, out);
            }
            Expr::Index(i, ..) => {
                if let Expr::Property(p, _) = &i.lhs {
                    out.push(p.2.clone());
                }
            }
            _ => {}
        },
        Expr::Index(b, ..) => {
            if let Expr::Property(p, _) = &b.lhs {
                out.push(p.2.clone());
            }
        }
        _ => {}
    }
}

pub(super) fn analyze(ast: &AST) -> Reads {
    let mut reads = Reads {
        paths: Some(Vec::new()),
        event_fields: Some(BTreeSet::new()),
        incident_fields: Some(BTreeSet::new()),
    };
    let mut remembered = true;
    // Whether the walk saw every expression (so that `event` and `incident` are bound only for
    // the scripts that name them).
    let mut complete = true;
    let mut paths = Vec::new();
    ast.walk(&mut |nodes: &[ASTNode]| {
        let Some(node) = nodes.last() else { return true };
        match node {
            ASTNode::Stmt(Stmt::BreakLoop(Some(_), ..)) | ASTNode::Expr(Expr::Custom(..)) => {
                (remembered, complete) = (false, false);
            }
            ASTNode::Expr(Expr::FnCall(f, _) | Expr::MethodCall(f, _))
            | ASTNode::Stmt(Stmt::FnCall(f, _))
                if UNREMEMBERED_CALLS.contains(&f.name.as_str()) =>
            {
                remembered = false;
            }
            // A clock helper reads the arrival time, which no property path shows: with the zone
            // written out, its answer joins the key (the hour, not the time, so an outcome is
            // reused until the hour changes); with a computed zone, the script always runs.
            ASTNode::Expr(Expr::FnCall(f, _) | Expr::MethodCall(f, _))
            | ASTNode::Stmt(Stmt::FnCall(f, _))
                if Helper::parse(&f.name).is_some() =>
            {
                match f.args.first() {
                    Some(Expr::StringConstant(tz, _)) if f.args.len() == 1 => {
                        paths.push((Root::Clock, vec![f.name.clone(), tz.clone()], None));
                    }
                    _ => remembered = false,
                }
            }
            ASTNode::Expr(var @ Expr::Variable(x, ..)) => {
                let root = match x.1.as_str() {
                    "event" => Root::Event,
                    "incident" => Root::Incident,
                    _ => return true,
                };
                let fields = match root {
                    Root::Event => &mut reads.event_fields,
                    Root::Incident => &mut reads.incident_fields,
                    Root::Clock => return true,
                };
                let mut path = Vec::new();
                let mut test = None;
                if let Some(ASTNode::Expr(dot @ Expr::Dot(b, ..))) =
                    nodes.len().checked_sub(2).map(|i| &nodes[i])
                    && std::ptr::eq(&b.lhs, *var)
                {
                    chain(&b.rhs, &mut path);
                    if let Expr::Property(..) = &b.rhs {
                        test = test_of(nodes.len().checked_sub(3).map(|i| &nodes[i]), dot);
                    }
                }
                match (path.first(), fields.as_mut()) {
                    (Some(field), Some(fields)) => {
                        fields.insert(field.clone());
                    }
                    (Some(_), None) => {}
                    // Used whole: every field may be read.
                    (None, _) => *fields = None,
                }
                match (path.first(), test) {
                    (Some(field), _) if !volatile(root, field) => paths.push((root, path, None)),
                    (Some(field), Some(test)) if comparable(root, field) => {
                        paths.push((root, path, Some(test)));
                    }
                    _ => remembered = false,
                }
            }
            _ => {}
        }
        true
    });
    if !complete {
        // Bind both: a script the analysis does not follow may name either.
        return Reads { paths: None, event_fields: None, incident_fields: None };
    }
    if remembered {
        paths.sort_by(|a: &(Root, Vec<ImmutableString>, Option<Test>), b| {
            (a.0 as u8, &a.1, a.2).cmp(&(b.0 as u8, &b.1, b.2))
        });
        paths.dedup();
        let paths =
            paths.into_iter().map(|(root, names, test)| Path { test, ..Path::new(root, names) });
        reads.paths = Some(paths.collect());
    } else {
        reads.paths = None;
    }
    reads
}

/// Writes `value` so that two values write the same bytes only if they are equal. `false` for
/// a type it does not know (the script is then run).
fn encode(value: &Dynamic, out: &mut Vec<u8>) -> bool {
    if value.is_unit() {
        out.push(0);
    } else if let Ok(b) = value.as_bool() {
        out.extend_from_slice(&[1, u8::from(b)]);
    } else if let Ok(i) = value.as_int() {
        out.push(2);
        out.extend_from_slice(&i.to_le_bytes());
    } else if let Ok(f) = value.as_float() {
        out.push(3);
        out.extend_from_slice(&f.to_bits().to_le_bytes());
    } else if let Ok(c) = value.as_char() {
        out.push(4);
        out.extend_from_slice(&u32::from(c).to_le_bytes());
    } else if let Some(s) = value.read_lock::<ImmutableString>() {
        bytes(STRING, s.as_bytes(), out);
    } else if let Some(items) = value.read_lock::<Array>() {
        out.push(6);
        out.extend_from_slice(&(items.len() as u64).to_le_bytes());
        return items.iter().all(|item| encode(item, out));
    } else if let Some(map) = value.read_lock::<Map>() {
        out.push(7);
        out.extend_from_slice(&(map.len() as u64).to_le_bytes());
        for (k, v) in map.iter() {
            bytes(8, k.as_bytes(), out);
            if !encode(v, out) {
                return false;
            }
        }
    } else {
        return false;
    }
    true
}

/// A tagged, length-prefixed run of bytes.
fn bytes(tag: u8, b: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(b);
}

const STRING: u8 = 5;

/// A key field absent from its map (what Rhai reads as unit, kept apart from a unit value).
const MISSING: u8 = 9;

/// Writes the values at `paths` for this event and incident; `false` if one cannot be written.
pub(super) fn key(
    paths: &[Path],
    event: &Event,
    incident: &IncidentView,
    now: Timestamp,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    for path in paths {
        out.push(path.root as u8);
        let mut rest = &path.names[1..];
        let mut value = match path.start {
            Start::Clock(helper) => {
                let Some((now, hours)) = super::engine::now() else { return false };
                let Ok(answer) = helper.answer(path.names[1].as_str(), now, &hours) else {
                    return false;
                };
                if !encode(&answer, out) {
                    return false;
                }
                continue;
            }
            Start::Text(read) => {
                match read(event) {
                    Some(s) => bytes(STRING, s.as_bytes(), out),
                    None => out.push(0),
                }
                continue;
            }
            Start::Detail => match view::detail(event, path.names[1].as_str()) {
                Some(v) => {
                    rest = &path.names[2..];
                    v
                }
                None => {
                    out.push(MISSING);
                    continue;
                }
            },
            Start::Label | Start::Annotation => {
                let map =
                    if path.start == Start::Label { &event.labels } else { &event.annotations };
                match map.get(path.names[1].as_str()) {
                    Some(v) => bytes(STRING, v.as_bytes(), out),
                    None => out.push(MISSING),
                }
                continue;
            }
            Start::Event(i) => view::event_field_at(event, i),
            Start::Incident(i) => view::incident_field_at(incident, now, i),
            Start::Unknown => Dynamic::UNIT,
        };
        if let Some(test) = path.test {
            // Only comparable fields (integers) get a test.
            let Ok(value) = value.as_int() else { return false };
            out.push(u8::from(test.op.holds(value, test.constant)));
            continue;
        }
        let mut missing = false;
        for name in rest {
            let next = value.read_lock::<Map>().map(|map| map.get(name.as_str()).cloned());
            match next {
                Some(Some(v)) => value = v,
                Some(None) => {
                    missing = true;
                    break;
                }
                // Not a map: its whole value decides what is read below it.
                None => break,
            }
        }
        if missing {
            out.push(MISSING);
        } else if !encode(&value, out) {
            return false;
        }
    }
    true
}

/// A hash of the decision so far, computed once per decision rather than at every lookup. A
/// fixed seed, so that equal decisions give equal digests on every thread; keys still compare
/// the decisions themselves, so a collision cannot make one reuse another's outcome.
pub(super) fn digest(state: &State) -> u64 {
    foldhash::fast::FixedState::with_seed(0x746f_6373_696e).hash_one(state)
}

/// The memo's key: script, decision so far (with its [`digest`]) and the values at the
/// script's paths.
#[derive(Debug)]
pub(super) struct Key {
    rule: usize,
    state: Arc<State>,
    digest: u64,
    values: Box<[u8]>,
}

/// A key as the evaluation has it at hand (borrowed, so a lookup allocates nothing).
pub(super) struct Probe<'a> {
    pub(super) rule: usize,
    pub(super) state: &'a Arc<State>,
    pub(super) digest: u64,
    pub(super) values: &'a [u8],
}

impl Probe<'_> {
    pub(super) fn key(&self) -> Key {
        Key {
            rule: self.rule,
            state: Arc::clone(self.state),
            digest: self.digest,
            values: self.values.into(),
        }
    }

    fn hash_parts<H: Hasher>(rule: usize, digest: u64, values: &[u8], h: &mut H) {
        h.write_usize(rule);
        h.write_u64(digest);
        values.hash(h);
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        Probe::hash_parts(self.rule, self.digest, &self.values, h);
    }
}

impl Hash for Probe<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        Probe::hash_parts(self.rule, self.digest, self.values, h);
    }
}

impl hashbrown::Equivalent<Key> for Probe<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.rule == key.rule
            && self.digest == key.digest
            && *self.values == *key.values
            && (Arc::ptr_eq(self.state, &key.state) || self.state == &key.state)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        hashbrown::Equivalent::equivalent(
            &Probe {
                rule: self.rule,
                state: &self.state,
                digest: self.digest,
                values: &self.values,
            },
            other,
        )
    }
}

impl Eq for Key {}

/// What a script's successful run left: the decision (with its digest) and its reason lines.
pub(super) type Outcome = (Arc<State>, u64, Vec<String>);

struct Memo {
    /// The rule set, severities and catalog the outcomes were computed with (held, so that
    /// none of them can be freed and another take its address).
    owner: Option<(u64, Arc<[Threshold]>, Arc<Catalog>)>,
    /// hashbrown for lookups by [`Probe`]; its default hasher is foldhash with a seed per map.
    outcomes: hashbrown::HashMap<Key, Outcome>,
}

thread_local! {
    static MEMO: RefCell<Memo> =
        RefCell::new(Memo { owner: None, outcomes: hashbrown::HashMap::default() });
}

#[cfg(test)]
thread_local! {
    static HITS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Outcomes reused on this thread so far (tests).
#[cfg(test)]
pub(super) fn hits() -> u64 {
    HITS.get()
}

/// Starts an evaluation: the memo is kept only while the rule set, severities and catalog stay.
pub(super) fn begin(set: u64, severities: &Arc<[Threshold]>, catalog: &Arc<Catalog>) {
    MEMO.with_borrow_mut(|memo| {
        let same = memo.owner.as_ref().is_some_and(|(id, s, c)| {
            *id == set && Arc::ptr_eq(s, severities) && Arc::ptr_eq(c, catalog)
        });
        if !same {
            memo.outcomes.clear();
            memo.owner = Some((set, Arc::clone(severities), Arc::clone(catalog)));
        }
    });
}

pub(super) fn get(key: &Probe<'_>) -> Option<Outcome> {
    let found = MEMO.with_borrow(|memo| memo.outcomes.get(key).cloned());
    #[cfg(test)]
    if found.is_some() {
        HITS.set(HITS.get() + 1);
    }
    found
}

pub(super) fn put(key: Key, outcome: Outcome) {
    MEMO.with_borrow_mut(|memo| {
        if memo.outcomes.len() >= ENTRIES {
            memo.outcomes.clear();
        }
        memo.outcomes.insert(key, outcome);
    });
}
