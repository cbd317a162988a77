//! Redaction: keeping customers' personal data out of places it must not reach.
//!
//! A [`Redactor`] is built from the `redaction:` section of the config (see [`Policy`]) and
//! lives in the reloadable [`crate::runtime::Runtime`]. It works in two ways:
//!
//! - **Fields**: dotted paths into the canonical event (`customer.email`, `labels.user`,
//!   `annotations.*`). In an event's JSON the value at the path is replaced by a marker; the
//!   values found there are also remembered as *known values* ([`Known`]) and replaced wherever
//!   they appear in free text about the same event (its incident's summary, a notification,
//!   an error message quoting the body), even when no pattern would recognise them (a name).
//! - **Patterns**: detectors run over free text: e-mail addresses, phone numbers (E.164 and
//!   common national formats), payment card numbers (13–19 digits, a known issuer prefix and
//!   a valid Luhn check digit) and the operator's own regular expressions. UUIDs and
//!   timestamps are never touched, so ids and times stay readable.
//!
//! Everything redacted becomes a stable marker, `[redacted:LABEL]`: the pattern's name
//! (`email`, `phone`, `card`, an operator regex's name) or the field's last path segment.
//!
//! Where it applies (see the README, "Redaction and the `pii` permission"):
//! - logs, always, at every level: the log writer passes every line through the built-in
//!   patterns and the operator's regexes ([`for_log`]), and call sites that handle event
//!   content redact it with the event's known values first;
//! - notifications to the audiences and channels the policy names ([`Redactor::applies_to`],
//!   [`Redactor::rendered`]), before the message is stored in the outbox;
//! - API answers (and the dashboard) for users without the `pii` permission ([`View`]);
//! - 4xx error bodies that quote the request body ([`Redactor::api_error`]).
//!
//! The stored event keeps the original, for users allowed to see it.
//!
//! ## For the dashboard
//! ```ignore
//! let rt = app.runtime.load_full();
//! let user = rt.auth.user_with_role(&headers, Role::Viewer)?;
//! let view = rt.redactor.view(user);          // View::Original for `pii` users
//! view.event(&mut event_json);                // an Event as JSON
//! view.incident(&mut incident_json, opening); // incident (+ timeline, notifications) JSON,
//!                                             // `opening`: Option<&Event> (incident.opened_by)
//! let line = view.text(&note, &known);        // free text; `known` from Known::of_event
//! ```

pub mod config;

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;
use regex::Regex;
use serde_json::Value;

use crate::auth::UserEntry;
use crate::config::UserPermission;
use crate::error::{ApiError, FieldError};
use crate::event::Event;
use crate::notify::Channel;
use crate::outbox::Rendered;

/// A built-in detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Builtin {
    Email,
    Phone,
    Card,
}

impl Builtin {
    pub const ALL: [Builtin; 3] = [Builtin::Email, Builtin::Phone, Builtin::Card];

    pub fn as_str(self) -> &'static str {
        match self {
            Builtin::Email => "email",
            Builtin::Phone => "phone",
            Builtin::Card => "card",
        }
    }

    pub fn parse(word: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.as_str() == word)
    }
}

/// An operator's own pattern: `{name, regex}`. The name is the marker's label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRegex {
    pub name: String,
    pub regex: String,
}

/// The validated `redaction:` section of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Dotted paths into the event; `*` matches every key (or item) at its level.
    pub fields: Vec<Vec<String>>,
    /// Built-in detectors for API answers, notifications and error bodies (logs use all).
    pub patterns: BTreeSet<Builtin>,
    pub regexes: Vec<NamedRegex>,
    /// Notifications to these audiences are redacted…
    pub notify_audiences: BTreeSet<String>,
    /// …and so is everything sent through these channels.
    pub notify_channels: BTreeSet<Channel>,
}

/// The fields redacted when the config names none.
pub const DEFAULT_FIELDS: [&str; 4] =
    ["customer.name", "customer.email", "customer.phone", "details.reporter.email"];

/// The first segments a field path may start with: the canonical event's fields.
pub const EVENT_FIELDS: [&str; 9] = [
    "customer",
    "labels",
    "annotations",
    "details",
    "summary",
    "service",
    "dedup_key",
    "links",
    "severity",
];

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            fields: DEFAULT_FIELDS.iter().map(|f| split_path(f)).collect(),
            patterns: Builtin::ALL.into_iter().collect(),
            regexes: Vec::new(),
            notify_audiences: BTreeSet::new(),
            notify_channels: BTreeSet::new(),
        }
    }
}

/// The customer fields of a verified customer report: always redacted, whatever
/// `redaction.fields` names (a card number has no field; the `card` pattern finds it).
pub const CUSTOMER_FIELDS: [&str; 3] = ["customer.name", "customer.email", "customer.phone"];

/// A valid path's segments (see [`parse_path`]); panics on an invalid one (for constants).
pub fn split_path(path: &str) -> Vec<String> {
    parse_path(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A field path's segments: dot-separated; a segment holding a dot (or starting with `"`) is
/// written in double quotes, `labels."customer.email"` (`\"` and `\\` inside). Refused: an
/// empty segment, an unclosed quote, and a path that can match nothing in an event: a first
/// segment that is no event field, a path going below a text field (`summary.x`,
/// `labels.a.b`, `customer.email.x`), a customer field other than `id`, `name`, `email`,
/// `phone`, a link field other than `href`, `text`.
pub fn parse_path(path: &str) -> Result<Vec<String>, String> {
    let mut segments = Vec::new();
    let mut chars = path.chars().peekable();
    loop {
        let mut seg = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("has a quote that is not closed".into()),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '\\')) => seg.push(c),
                        _ => return Err("has `\\` not followed by `\"` or `\\` in quotes".into()),
                    },
                    Some(c) => seg.push(c),
                }
            }
            if seg.is_empty() {
                return Err("has an empty quoted segment".into());
            }
            match chars.next() {
                None => {
                    segments.push(seg);
                    break;
                }
                Some('.') => segments.push(seg),
                Some(_) => {
                    return Err("has text right after a closing quote; put a `.` there".into());
                }
            }
        } else {
            let mut ended = true;
            for c in chars.by_ref() {
                match c {
                    '.' => {
                        ended = false;
                        break;
                    }
                    '"' => {
                        return Err("has a quote inside a segment; quote the whole segment".into());
                    }
                    c => seg.push(c),
                }
            }
            if seg.is_empty() {
                return Err("has an empty segment".into());
            }
            segments.push(seg);
            if ended {
                break;
            }
        }
    }
    let depth = |max: usize| -> Result<(), String> {
        if segments.len() > max {
            Err(format!("goes below a text field (`{}` holds text)", segments[..max].join(".")))
        } else {
            Ok(())
        }
    };
    match segments[0].as_str() {
        "summary" | "service" | "dedup_key" | "severity" => depth(1)?,
        "labels" | "annotations" => depth(2)?,
        "details" => {}
        "customer" => {
            depth(2)?;
            if let Some(f) = segments.get(1)
                && !matches!(f.as_str(), "*" | "id" | "name" | "email" | "phone")
            {
                return Err(format!(
                    "names no customer field (`{f}`); use id, name, email or phone"
                ));
            }
        }
        "links" => {
            depth(2)?;
            if let Some(f) = segments.get(1)
                && !matches!(f.as_str(), "*" | "href" | "text")
            {
                return Err(format!("names no link field (`{f}`); use href or text"));
            }
        }
        other => {
            return Err(format!(
                "does not start with an event field (`{other}`); use one of: {}",
                EVENT_FIELDS.join(", ")
            ));
        }
    }
    Ok(segments)
}

/// Whether a user may see personal data unredacted: only with the `pii` permission (roles,
/// even admin, do not imply it).
pub fn allows_pii(user: &UserEntry) -> bool {
    user.permissions.contains(&UserPermission::Pii)
}

/// Values known to be personal data in one context (an event's configured fields), each with
/// its marker label; matched ASCII-case-insensitively in free text.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// (lower-cased value, label, where it counts), longest first once [`Known::sorted`].
    values: Vec<(String, String, Match)>,
    seen: std::collections::HashSet<String>,
}

/// Where a known value is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    /// Wherever it occurs: a configured field's value is personal data whatever surrounds it.
    Anywhere,
    /// Only where the text quotes it (`"…"` or `` `…` ``): any string of a refused body, which
    /// an error message only ever contains quoted. Elsewhere the same letters are the
    /// message's own words ("is required to trigger", "critical, error, warning, info", a
    /// field path) and stay readable.
    Quoted,
}

/// Shorter values are not searched for in free text (a two-letter name would blank out every
/// word containing it); the field itself is still redacted.
const MIN_KNOWN_CHARS: usize = 3;
/// Quoted values are matched only between quotes, so two letters suffice (a short name); a
/// single character is left alone (`only "4" is`).
const MIN_QUOTED_CHARS: usize = 2;

impl Known {
    pub fn none() -> Known {
        Known::default()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn add(&mut self, value: &str, label: &str) {
        self.add_as(value, label, Match::Anywhere);
    }

    fn add_as(&mut self, value: &str, label: &str, how: Match) {
        // Free text may pad a value; a quoted one is exactly what was sent.
        let value = if how == Match::Anywhere { value.trim() } else { value };
        // Between quotes even a two-letter name is found without blanking other words.
        let min = if how == Match::Quoted { MIN_QUOTED_CHARS } else { MIN_KNOWN_CHARS };
        if value.chars().count() < min {
            return;
        }
        let mut push = |v: String| {
            if self.seen.insert(v.clone()) {
                self.values.push((v, label.to_string(), how));
            }
        };
        if how == Match::Quoted {
            // As an error message quotes it: Rust's `{:?}` (`"a\"b"`), cut after
            // `QUOTED_CHARS` characters with a `…` when longer.
            let debug = format!("{value:?}");
            push(debug[1..debug.len() - 1].to_ascii_lowercase());
            if value.chars().nth(crate::error::QUOTED_CHARS).is_some() {
                let cut: String = value.chars().take(crate::error::QUOTED_CHARS - 1).collect();
                let debug = format!("{:?}", format!("{cut}…"));
                push(debug[1..debug.len() - 1].to_ascii_lowercase());
            }
        }
        push(value.to_ascii_lowercase());
        // As an HTML template or a JSON encoder would have written it.
        let escaped = escape_html(value).to_ascii_lowercase();
        if escaped != value.to_ascii_lowercase() {
            push(escaped);
        }
        if let Ok(json) = serde_json::to_string(value) {
            let inner = json[1..json.len() - 1].to_ascii_lowercase();
            if inner != value.to_ascii_lowercase() {
                push(inner);
            }
        }
    }

    /// Longest first, so that a full name wins over a part of it. (Once, after adding: an
    /// error body may hold tens of thousands of strings.)
    fn sorted(mut self) -> Known {
        self.values.sort_by_key(|(v, _, _)| std::cmp::Reverse(v.len()));
        self
    }

    /// These known values and `other`'s (for text about several events, such as a report).
    pub fn merge(mut self, other: Known) -> Known {
        for (value, label, how) in other.values {
            if self.seen.insert(value.clone()) {
                self.values.push((value, label, how));
            }
        }
        self.sorted()
    }

    /// The values at the configured fields of an event.
    pub fn of_event(redactor: &Redactor, event: &Event) -> Known {
        match serde_json::to_value(event) {
            Ok(v) => redactor.known_in(&v),
            Err(_) => Known::none(),
        }
    }
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[a-z0-9][a-z0-9._%+\-]*@[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)*\.[a-z]{2,}\b")
        .expect("email regex")
});
/// 13–19 digits, optionally grouped by single spaces or hyphens.
static CARD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d(?:[ \-]?\d){12,18}\b").expect("card regex"));
/// `+` and a country code, then digit groups (a trunk prefix in parentheses allowed).
static PHONE_INTL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\+\d{1,4}(?:[ .\-]?\(\d{1,5}\)|[ .\-]?\d{1,6}){1,6}\b").expect("phone regex")
});
/// National formats: `(415) 555-0100`, `415-555-0100`, `020 7946 0958`, `415.555.0100`.
static PHONE_NATIONAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\(\d{2,5}\)[ .\-]?|\b\d{2,5}[ .\-])\d{2,5}(?:[ .\-]\d{2,5}){0,3}\b")
        .expect("phone regex")
});
/// Never redacted by a pattern: ids and times must stay readable.
static PROTECTED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
        r"|\b[0-9a-f]{32,128}\b",
        r"|\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+\-]\d{2}:?\d{2})?)?",
        r"|\b\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\b",
        r"|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b",
    ))
    .expect("protected regex")
});
/// How serde quotes a value from the input in its error messages.
static SERDE_QUOTED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(string|variant|map key|char) (?:"(?:[^"\\]|\\.)*"|`[^`]*`)"#)
        .expect("serde regex")
});

/// The compiled policy.
#[derive(Debug, Clone)]
pub struct Redactor {
    policy: Policy,
    regexes: Vec<(String, Regex)>,
    /// Detectors for API answers, notifications and error bodies; logs always use every one.
    patterns: BTreeSet<Builtin>,
}

impl Default for Redactor {
    fn default() -> Redactor {
        Redactor::new(Policy::default()).expect("the default policy compiles")
    }
}

#[derive(Clone, Copy)]
struct Hit<'l> {
    start: usize,
    end: usize,
    label: &'l str,
}

fn overlaps(hits: &[Hit<'_>], start: usize, end: usize) -> bool {
    hits.iter().any(|h| start < h.end && h.start < end)
}

/// Luhn check over ASCII digits.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut n = u32::from(d - b'0');
        if i % 2 == 1 {
            n *= 2;
            if n > 9 {
                n -= 9;
            }
        }
        sum += n;
    }
    sum % 10 == 0
}

fn is_card(candidate: &str) -> bool {
    let digits: Vec<u8> = candidate.bytes().filter(u8::is_ascii_digit).collect();
    // Issuer prefixes: 2 (Mastercard 2-series), 3 (Amex, Diners, JCB), 4 (Visa), 5
    // (Mastercard), 6 (Discover, UnionPay, Maestro). Ids, epoch times (1…) and zero-padded
    // numbers never qualify.
    (13..=19).contains(&digits.len())
        && matches!(digits[0], b'2'..=b'6')
        && luhn(&digits)
        && separators_consistent(candidate)
}

/// A card written in groups uses one separator throughout.
fn separators_consistent(s: &str) -> bool {
    let seps: BTreeSet<u8> = s.bytes().filter(|b| !b.is_ascii_digit()).collect();
    seps.len() <= 1
}

fn digit_count(s: &str) -> usize {
    s.bytes().filter(u8::is_ascii_digit).count()
}

/// The context around a phone candidate must not make it part of something else: a version,
/// an address, an id (`#123 456 7890`), a decimal.
fn phone_context_ok(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let after2 = text[end..].chars().nth(1);
    if before.is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | '/' | '#' | '_' | '-' | ':'))
    {
        return false;
    }
    if matches!(after, Some('.' | ':' | ',' | '-' | '/'))
        && after2.is_some_and(|c| c.is_ascii_digit())
    {
        return false;
    }
    true
}

fn is_national_phone(m: &str) -> bool {
    let n = digit_count(m);
    if !(9..=13).contains(&n) {
        return false;
    }
    // Dotted groups of at most three digits are addresses or versions, not numbers.
    let groups: Vec<&str> = m.split([' ', '.', '-', '(', ')']).filter(|g| !g.is_empty()).collect();
    let dotted_only = !m.contains([' ', '-', '(']);
    !(dotted_only && groups.iter().all(|g| g.len() <= 3))
}

impl Redactor {
    /// Compiles the policy. The config's validation already compiled every regex, so this
    /// fails only for a policy that did not come through it.
    pub fn new(policy: Policy) -> Result<Redactor, String> {
        let mut regexes = Vec::new();
        for r in &policy.regexes {
            let re =
                Regex::new(&r.regex).map_err(|e| format!("redaction.regexes `{}`: {e}", r.name))?;
            regexes.push((r.name.clone(), re));
        }
        Ok(Redactor { patterns: policy.patterns.clone(), policy, regexes })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Whether the top-level event field `field` (`service`, `dedup_key`) is a configured
    /// field as a whole: its values are then replaced by `[redacted:FIELD]` wherever shown.
    pub fn redacts_field(&self, field: &str) -> bool {
        self.policy.fields.iter().any(|p| p.len() == 1 && p[0] == field)
    }

    /// What a user may see: the original with `pii`, else the redacted view.
    pub fn view(&self, user: &UserEntry) -> View<'_> {
        if allows_pii(user) { View::Original } else { View::Redacted(self) }
    }

    /// Whether a notification to this audience through this channel is redacted.
    pub fn applies_to(&self, channel: Channel, audience: &str) -> bool {
        self.policy.notify_channels.contains(&channel)
            || self.policy.notify_audiences.contains(audience)
    }

    /// Free text with known values and the policy's patterns replaced.
    pub fn text<'t>(&self, text: &'t str, known: &Known) -> Cow<'t, str> {
        self.text_with(text, known, &self.patterns)
    }

    fn text_with<'t>(
        &self,
        text: &'t str,
        known: &Known,
        patterns: &BTreeSet<Builtin>,
    ) -> Cow<'t, str> {
        let may_match_builtin = text.bytes().any(|b| b.is_ascii_digit() || b == b'@');
        if known.is_empty() && self.regexes.is_empty() && !may_match_builtin {
            return Cow::Borrowed(text);
        }
        let mut hits: Vec<Hit<'_>> = Vec::new();
        if !known.is_empty() {
            let lower = text.to_ascii_lowercase();
            for (value, label, how) in &known.values {
                for (start, _) in lower.match_indices(value.as_str()) {
                    let end = start + value.len();
                    if *how == Match::Quoted && !quoted(&lower, start, end) {
                        continue;
                    }
                    if !overlaps(&hits, start, end) {
                        hits.push(Hit { start, end, label });
                    }
                }
            }
        }
        if may_match_builtin {
            let protected: Vec<Hit<'_>> = PROTECTED
                .find_iter(text)
                .map(|m| Hit { start: m.start(), end: m.end(), label: "" })
                .collect();
            let free = |hits: &[Hit<'_>], s: usize, e: usize| {
                !overlaps(hits, s, e) && !overlaps(&protected, s, e)
            };
            if patterns.contains(&Builtin::Email) {
                for m in EMAIL.find_iter(text) {
                    if !overlaps(&hits, m.start(), m.end()) {
                        hits.push(Hit { start: m.start(), end: m.end(), label: "email" });
                    }
                }
            }
            if patterns.contains(&Builtin::Card) {
                for m in CARD.find_iter(text) {
                    if free(&hits, m.start(), m.end()) && is_card(m.as_str()) {
                        hits.push(Hit { start: m.start(), end: m.end(), label: "card" });
                    }
                }
            }
            if patterns.contains(&Builtin::Phone) {
                for m in PHONE_INTL.find_iter(text) {
                    let n = digit_count(m.as_str());
                    if (8..=15).contains(&n)
                        && free(&hits, m.start(), m.end())
                        && phone_context_ok(text, m.start(), m.end())
                    {
                        hits.push(Hit { start: m.start(), end: m.end(), label: "phone" });
                    }
                }
                for m in PHONE_NATIONAL.find_iter(text) {
                    if is_national_phone(m.as_str())
                        && free(&hits, m.start(), m.end())
                        && phone_context_ok(text, m.start(), m.end())
                    {
                        hits.push(Hit { start: m.start(), end: m.end(), label: "phone" });
                    }
                }
            }
        }
        for (name, re) in &self.regexes {
            for m in re.find_iter(text) {
                if m.start() < m.end() && !overlaps(&hits, m.start(), m.end()) {
                    hits.push(Hit { start: m.start(), end: m.end(), label: name });
                }
            }
        }
        if hits.is_empty() {
            return Cow::Borrowed(text);
        }
        hits.sort_by_key(|h| h.start);
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for h in hits {
            out.push_str(&text[at..h.start]);
            out.push_str("[redacted:");
            out.push_str(h.label);
            out.push(']');
            at = h.end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }

    /// For the log: every built-in pattern and the operator's regexes, whatever the policy's
    /// `patterns` say.
    pub fn log_text<'t>(&self, text: &'t str, known: &Known) -> Cow<'t, str> {
        static ALL: LazyLock<BTreeSet<Builtin>> = LazyLock::new(|| Builtin::ALL.into());
        self.text_with(text, known, &ALL)
    }

    /// The values at the configured field paths of an event-shaped JSON value.
    pub fn known_in(&self, v: &Value) -> Known {
        let mut known = Known::none();
        for path in &self.policy.fields {
            visit_path(v, path, "", &mut |leaf, label| collect_strings(leaf, label, &mut known));
        }
        known.sorted()
    }

    /// Replaces the values at the configured field paths with markers.
    pub fn redact_fields(&self, v: &mut Value) {
        for path in &self.policy.fields {
            visit_path_mut(v, path, "", &mut |leaf, label| {
                *leaf = marker_for(leaf, label);
            });
        }
    }

    /// Every string value in `v` (not object keys) through [`Redactor::text`].
    pub fn redact_strings(&self, v: &mut Value, known: &Known) {
        self.redact_strings_except(v, known, &[]);
    }

    /// Like [`Redactor::redact_strings`], leaving the values of objects under `skip` keys alone.
    fn redact_strings_except(&self, v: &mut Value, known: &Known, skip: &[&str]) {
        match v {
            Value::String(s) => {
                if let Cow::Owned(r) = self.text(s, known) {
                    *s = r;
                }
            }
            Value::Array(items) => {
                items.iter_mut().for_each(|i| self.redact_strings_except(i, known, skip));
            }
            Value::Object(map) => {
                for (k, i) in map.iter_mut() {
                    if !skip.contains(&k.as_str()) {
                        self.redact_strings_except(i, known, skip);
                    }
                }
            }
            _ => {}
        }
    }

    /// An event (as JSON) the way a user without `pii` sees it: configured fields replaced,
    /// their values and the patterns redacted from every other string.
    pub fn redact_json(&self, v: &mut Value) {
        let known = self.known_in(v);
        self.redact_fields(v);
        self.redact_strings(v, &known);
    }

    /// A rendered notification for a redacted audience or channel.
    pub fn rendered(&self, mut r: Rendered, known: &Known) -> Rendered {
        if let Cow::Owned(s) = self.text(&r.subject, known) {
            r.subject = s;
        }
        if let Cow::Owned(s) = self.text(&r.text, known) {
            r.text = s;
        }
        if let Some(html) = &r.html
            && let Cow::Owned(s) = self.text(html, known)
        {
            r.html = Some(s);
        }
        self.redact_strings(&mut r.payload, known);
        r
    }

    /// A 4xx error about a request body, without the personal data it may quote: no string
    /// value of the body (when it is JSON at all) is quoted back — each becomes
    /// `[redacted:KEY]` (the key it was sent under, `value` for array items) — nor anything serde quotes from
    /// the input; the patterns catch the rest (a body that is not JSON, object keys).
    pub fn api_error(&self, e: ApiError, body: &[u8]) -> ApiError {
        let known = serde_json::from_slice::<Value>(body)
            .map(|v| {
                let mut known = self.known_in(&v);
                // Batch formats: each item is event-shaped enough for `labels.*` paths.
                if let Value::Array(items) = &v {
                    for item in items {
                        let mut fields = Known::none();
                        for path in &self.policy.fields {
                            visit_path(item, path, "", &mut |leaf, label| {
                                collect_strings(leaf, label, &mut fields);
                            });
                        }
                        for (value, label, how) in fields.values {
                            if known.seen.insert(value.clone()) {
                                known.values.push((value, label, how));
                            }
                        }
                    }
                }
                // An error never needs to quote a value back to its sender (the field path
                // says where the problem is), and any value may be personal data in the
                // wrong place (a name sent as `action`) — except one word of a protocol's
                // vocabulary (`"sev1" is not one of critical, …`).
                collect_body_strings(&v, "value", &mut known);
                known.sorted()
            })
            .unwrap_or_default();
        self.api_error_known(e, &known)
    }

    pub fn api_error_known(&self, e: ApiError, known: &Known) -> ApiError {
        let clean = |s: &str| -> String {
            let unquoted = SERDE_QUOTED.replace_all(s, "$1 [redacted]");
            self.log_text(&unquoted, known).into_owned()
        };
        let fields = |errors: Vec<FieldError>| -> Vec<FieldError> {
            errors
                .into_iter()
                .map(|f| FieldError { field: clean(&f.field), message: clean(&f.message) })
                .collect()
        };
        match e {
            ApiError::Malformed { message, errors } => {
                ApiError::Malformed { message: clean(&message), errors: fields(errors) }
            }
            ApiError::Invalid { message, errors } => {
                ApiError::Invalid { message: clean(&message), errors: fields(errors) }
            }
            ApiError::Unauthorized(m) => ApiError::Unauthorized(clean(&m)),
            ApiError::Forbidden(m) => ApiError::Forbidden(clean(&m)),
            ApiError::NotFound(m) => ApiError::NotFound(clean(&m)),
            ApiError::Conflict(m) => ApiError::Conflict(clean(&m)),
            ApiError::UnsupportedMediaType(m) => ApiError::UnsupportedMediaType(clean(&m)),
            ApiError::Unavailable(m) => ApiError::Unavailable(clean(&m)),
            other => other,
        }
    }

    /// Field errors of a batch (items refused while others were stored), cleaned the same way.
    pub fn field_errors(&self, errors: Vec<FieldError>, body: &[u8]) -> Vec<FieldError> {
        match self.api_error(ApiError::Invalid { message: String::new(), errors }, body) {
            ApiError::Invalid { errors, .. } => errors,
            _ => Vec::new(),
        }
    }
}

fn marker_for(leaf: &Value, label: &str) -> Value {
    match leaf {
        Value::Null => Value::Null,
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), marker_for(v, k)))
                .collect::<serde_json::Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| marker_for(v, label)).collect()),
        _ => Value::String(format!("[redacted:{label}]")),
    }
}

/// Keys whose values are words of a wire protocol (an action, a severity, a status, a kind, a
/// version), not data about anyone.
const PROTOCOL_KEYS: [&str; 6] =
    ["event_action", "action", "kind", "severity", "status", "version"];

/// A value an error may quote back: one short word (letters, digits, `_ - .`) under a
/// [`PROTOCOL_KEYS`] key. A name sent as `action` has a space and stays redacted, and the
/// patterns still run over the message.
fn is_protocol_word(key: &str, value: &str) -> bool {
    PROTOCOL_KEYS.contains(&key)
        && (1..=32).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Every string and number of a refused body, to be replaced where an error quotes it.
fn collect_body_strings(v: &Value, label: &str, known: &mut Known) {
    match v {
        Value::String(s) if is_protocol_word(label, s) => {}
        Value::String(s) => known.add_as(s, label, Match::Quoted),
        Value::Number(n) => known.add_as(&n.to_string(), label, Match::Quoted),
        Value::Array(items) => items.iter().for_each(|i| collect_body_strings(i, label, known)),
        Value::Object(map) => map.iter().for_each(|(k, i)| collect_body_strings(i, k, known)),
        _ => {}
    }
}

/// Whether `text[start..end]` stands between quotes (`"` or a backtick) as a whole.
fn quoted(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    matches!((before, after), (Some('"'), Some('"')) | (Some('`'), Some('`')))
}

fn collect_strings(v: &Value, label: &str, known: &mut Known) {
    match v {
        Value::String(s) => known.add(s, label),
        Value::Number(n) => known.add(&n.to_string(), label),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, label, known)),
        Value::Object(map) => map.iter().for_each(|(k, i)| collect_strings(i, k, known)),
        _ => {}
    }
}

fn visit_path(v: &Value, path: &[String], label: &str, f: &mut dyn FnMut(&Value, &str)) {
    let Some((head, rest)) = path.split_first() else {
        f(v, label);
        return;
    };
    match v {
        Value::Object(map) if head == "*" => {
            for (k, child) in map {
                visit_path(child, rest, k, f);
            }
        }
        Value::Object(map) => {
            if let Some(child) = map.get(head) {
                visit_path(child, rest, head, f);
            }
        }
        Value::Array(items) => {
            // `links.href`: every item of a list.
            for item in items {
                visit_path(item, path, label, f);
            }
        }
        _ => {}
    }
}

fn visit_path_mut(
    v: &mut Value,
    path: &[String],
    label: &str,
    f: &mut dyn FnMut(&mut Value, &str),
) {
    let Some((head, rest)) = path.split_first() else {
        f(v, label);
        return;
    };
    match v {
        Value::Object(map) if head == "*" => {
            for (k, child) in map.iter_mut() {
                visit_path_mut(child, rest, k, f);
            }
        }
        Value::Object(map) => {
            if let Some(child) = map.get_mut(head) {
                visit_path_mut(child, rest, head, f);
            }
        }
        Value::Array(items) => {
            for item in items {
                visit_path_mut(item, path, label, f);
            }
        }
        _ => {}
    }
}

/// Keys whose values come from the config, not from events: left alone in incident JSON.
const NOT_CUSTOMER_DATA: [&str; 1] = ["recipient"];

/// What one user sees: the original (`pii`) or the redacted view. The API and the dashboard
/// take one per request from [`Redactor::view`].
#[derive(Debug, Clone, Copy)]
pub enum View<'a> {
    Original,
    Redacted(&'a Redactor),
}

impl View<'_> {
    pub fn is_redacted(&self) -> bool {
        matches!(self, View::Redacted(_))
    }

    /// An event as JSON.
    pub fn event(&self, v: &mut Value) {
        if let View::Redacted(r) = self {
            r.redact_json(v);
        }
    }

    /// The known values to redact from anything about an incident: its opening event's.
    pub fn known(&self, opening: Option<&Event>) -> Known {
        match (self, opening) {
            (View::Redacted(r), Some(e)) => Known::of_event(r, e),
            _ => Known::none(),
        }
    }

    /// An incident as JSON (with whatever was added to it: timeline, notifications, pending),
    /// or a list of notifications or timeline entries: every string through the patterns and
    /// the opening event's known values.
    pub fn incident(&self, v: &mut Value, opening: Option<&Event>) {
        self.json(v, &self.known(opening));
    }

    /// Any JSON about incidents with known values already gathered. A notification's
    /// `recipient` (a person's address from the config, not customer data) is left as is.
    pub fn json(&self, v: &mut Value, known: &Known) {
        if let View::Redacted(r) = self {
            r.redact_strings_except(v, known, &NOT_CUSTOMER_DATA);
        }
    }

    /// Free text (a note, a timeline line) for this user.
    pub fn text<'t>(&self, s: &'t str, known: &Known) -> Cow<'t, str> {
        match self {
            View::Original => Cow::Borrowed(s),
            View::Redacted(r) => r.text(s, known),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The log
// ---------------------------------------------------------------------------------------------

static LOG_REDACTOR: LazyLock<ArcSwap<Redactor>> =
    LazyLock::new(|| ArcSwap::from_pointee(Redactor::default()));

/// Makes `r` the redactor the log writer uses (at start and on every reload).
pub fn set_log_redactor(r: Arc<Redactor>) {
    LOG_REDACTOR.store(r);
}

/// The redactor the log uses now.
pub fn log_redactor() -> Arc<Redactor> {
    LOG_REDACTOR.load_full()
}

thread_local! {
    /// Known values of the event being scored on this thread, for rule `print`/`debug` output.
    static CURRENT: std::cell::RefCell<Option<Known>> = const { std::cell::RefCell::new(None) };
}

/// A log line (or part of one) through the log redactor: every built-in pattern, the
/// operator's regexes, and the known values of the event being scored on this thread.
pub fn for_log(text: &str) -> Cow<'_, str> {
    let r = LOG_REDACTOR.load();
    CURRENT.with_borrow(|known| match known {
        Some(k) => r.log_text(text, k).into_owned().into(),
        None => match r.log_text(text, &Known::none()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(s) => Cow::Owned(s),
        },
    })
}

/// While alive, [`for_log`] on this thread also redacts `event`'s known values.
pub struct Scope(());

pub fn scope(event: &Event) -> Scope {
    let known = Known::of_event(&LOG_REDACTOR.load(), event);
    CURRENT.set(Some(known));
    Scope(())
}

impl Drop for Scope {
    fn drop(&mut self) {
        CURRENT.set(None);
    }
}

/// The `tracing` writer: each formatted line goes through [`for_log`] before it reaches
/// stderr, whatever crate logged it.
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter hands over one whole line per call (`write_all` of its buffer).
        let text = String::from_utf8_lossy(buf);
        let clean = for_log(&text);
        // A working acknowledge link is a credential: no line keeps one, whoever wrote it.
        let clean = crate::links::redact(&clean);
        std::io::stderr().write_all(clean.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriterFactory {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

/// Hands out [`LogWriter`]s to the subscriber.
pub struct LogWriterFactory;

#[cfg(test)]
mod tests;
