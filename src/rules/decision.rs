//! The triage [`Decision`] and the draft that scripts change on its way there.
//!
//! A [`Draft`] is what a script sees as `decision`: its methods validate their arguments, change
//! the draft and note why. The rule set gives each script its own copy of the draft and keeps
//! the copy only when the script finishes, so a failing script changes nothing. [`finish`] turns
//! the last kept draft into the [`Decision`] the escalation stage reads.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use rhai::ImmutableString;
use serde::{Deserialize, Serialize};

use super::Threshold;

/// How sensitive the data around an incident is. Ordered: marking keeps the highest level seen,
/// so a later rule cannot lower what an earlier one found.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    #[default]
    None,
    Internal,
    Personal,
    Financial,
}

impl Sensitivity {
    /// Every level, least sensitive first: the names scripts may pass to `set_sensitivity`.
    pub const ALL: [Sensitivity; 4] =
        [Sensitivity::None, Sensitivity::Internal, Sensitivity::Personal, Sensitivity::Financial];

    pub fn as_str(self) -> &'static str {
        match self {
            Sensitivity::None => "none",
            Sensitivity::Internal => "internal",
            Sensitivity::Personal => "personal",
            Sensitivity::Financial => "financial",
        }
    }

    pub fn parse(name: &str) -> Option<Sensitivity> {
        Sensitivity::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Sensitivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the rules decided about one event: how urgent it is and who must know.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Hash)]
pub struct Decision {
    /// The base score plus every script's adjustments.
    pub score: i64,
    /// The score before any script ran: from the sender's severity word, or the report score.
    pub base_score: i64,
    /// A threshold name from the triage config (`sev1` …).
    pub severity: String,
    /// The escalation policy a script chose; `None` leaves it to the source's default.
    pub policy: Option<String>,
    pub tags: BTreeSet<String>,
    pub sensitivity: Sensitivity,
    pub customer_facing: bool,
    /// Roles to involve beyond the responders, e.g. `legal_liaison`, `communications_lead`.
    pub roles: BTreeSet<String>,
    /// Why nobody should be notified, when a script suppressed the event.
    pub suppressed: Option<String>,
    /// The files whose changes were kept, in the order they ran.
    pub rules_fired: Vec<String>,
    /// One line per change, prefixed with its file: `10-payments.rhai: +30 payment path`.
    pub reasons: Vec<String>,
}

/// Bounds on what one script may add, so a loop in a rule cannot bloat every stored decision.
/// Reaching one is a runtime error in that script (and so rolls its changes back).
const MAX_TAGS: usize = 32;
const MAX_ROLES: usize = 16;
const MAX_NOTES_PER_RULE: usize = 32;
/// Longest tag, role or policy name, in bytes.
const MAX_NAME_LEN: usize = 64;
/// Longer reasons are cut (not refused): a reason built from an event's summary must not fail
/// the rule just because the summary was long.
const MAX_REASON_CHARS: usize = 200;

/// The decision so far, as scripts change it. Severities are kept as indexes into the triage
/// thresholds so that forcing and capping compare by position (0 = most severe).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct State {
    pub(super) score: i64,
    pub(super) base_score: i64,
    forced: Option<usize>,
    cap: Option<usize>,
    /// A declared incident's severity: rules may raise the severity above it, never lower it
    /// (neither by score, `set_severity` nor `cap_severity`).
    floor: Option<usize>,
    // Rhai strings (reference-counted): storing a script's argument, and copying the state for
    // rollback, then costs no allocation per name.
    policy: Option<ImmutableString>,
    tags: BTreeSet<ImmutableString>,
    sensitivity: Sensitivity,
    customer_facing: bool,
    roles: BTreeSet<ImmutableString>,
    suppressed: Option<String>,
}

impl State {
    pub(super) fn new(base_score: i64) -> State {
        State {
            score: base_score,
            base_score,
            forced: None,
            cap: None,
            floor: None,
            policy: None,
            tags: BTreeSet::new(),
            sensitivity: Sensitivity::None,
            customer_facing: false,
            roles: BTreeSet::new(),
            suppressed: None,
        }
    }
}

impl State {
    /// The starting state for a declared incident: the declarer's severity as a floor (and
    /// its threshold as the base score), their data sensitivity and customer impact.
    pub(super) fn declared(
        base_score: i64,
        floor: Option<usize>,
        sensitivity: Sensitivity,
        customer_facing: bool,
    ) -> State {
        State { floor, sensitivity, customer_facing, ..State::new(base_score) }
    }
}

/// The script-facing `decision` (registered with Rhai under the type name `Decision`).
#[derive(Debug, Clone)]
pub(super) struct Draft {
    /// Shared by every script of one evaluation: cloning a draft must stay cheap.
    severities: Arc<[Threshold]>,
    /// The running script's file name, which prefixes its notes.
    rule: Arc<str>,
    /// Shared with the evaluation's copy until the script first changes something: most
    /// scripts change nothing for most events, and then keeping a copy to roll back to is free.
    pub(super) state: Arc<State>,
    /// What this script changed, one finished reason line each: `10-x.rhai: +30 payment path`.
    pub(super) notes: Vec<String>,
}

type Outcome = Result<(), String>;

impl Draft {
    pub(super) fn new(severities: Arc<[Threshold]>, rule: Arc<str>, state: Arc<State>) -> Draft {
        Draft { severities, rule, state, notes: Vec::new() }
    }

    fn state_mut(&mut self) -> &mut State {
        Arc::make_mut(&mut self.state)
    }

    /// Records `rule: what… (reason)`. Called before the change it describes, so that a script
    /// catching the "too many changes" error cannot keep a change without its reason. Built by hand rather than with `format!`: this runs for
    /// every change of every event, and the formatting machinery was a visible share of it.
    fn note(&mut self, what: &[&str], reason: Option<&str>) -> Outcome {
        if self.notes.len() >= MAX_NOTES_PER_RULE {
            return Err(format!(
                "a rule may change the decision at most {MAX_NOTES_PER_RULE} times per event"
            ));
        }
        let reason = reason.map(str::trim).filter(|r| !r.is_empty()).map(clip);
        let len = what.iter().map(|w| w.len()).sum::<usize>()
            + reason.as_ref().map_or(0, |r| r.len() + 3);
        let mut line = String::with_capacity(self.rule.len() + 2 + len);
        line.push_str(&self.rule);
        line.push_str(": ");
        what.iter().for_each(|w| line.push_str(w));
        if let Some(reason) = reason {
            line.push_str(" (");
            line.push_str(&reason);
            line.push(')');
        }
        self.notes.push(line);
        Ok(())
    }

    fn severity_index(&self, name: &str) -> Result<usize, String> {
        self.severities.iter().position(|t| t.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.severities.iter().map(|t| t.name.as_str()).collect();
            format!("unknown severity {name:?}: expected one of {}", names.join(", "))
        })
    }

    /// The severity the event would get if no further script ran.
    pub(super) fn severity(&self) -> &str {
        severity_name(&self.severities, &self.state)
    }

    pub(super) fn add_score(&mut self, points: i64, reason: &str) -> Outcome {
        if points == 0 {
            return Ok(());
        }
        let signed = format!("{points:+}");
        match clip(reason.trim()) {
            reason if reason.is_empty() => self.note(&[&signed], None)?,
            reason => self.note(&[&signed, " ", &reason], None)?,
        }
        let score = self.state.score.saturating_add(points);
        self.state_mut().score = score;
        Ok(())
    }

    pub(super) fn set_severity(&mut self, name: ImmutableString, reason: Option<&str>) -> Outcome {
        let index = self.severity_index(&name)?;
        if self.state.forced == Some(index) {
            return Ok(());
        }
        self.note(&["severity set to ", &name], reason)?;
        self.state_mut().forced = Some(index);
        Ok(())
    }

    pub(super) fn cap_severity(&mut self, name: ImmutableString, reason: Option<&str>) -> Outcome {
        let index = self.severity_index(&name)?;
        // Two caps both hold only at the less severe one (the larger index).
        if self.state.cap.is_some_and(|cap| cap >= index) {
            return Ok(());
        }
        self.note(&["severity capped at ", &name], reason)?;
        self.state_mut().cap = Some(index);
        Ok(())
    }

    pub(super) fn set_policy(&mut self, name: ImmutableString, reason: Option<&str>) -> Outcome {
        check_name("policy", &name)?;
        if self.state.policy.as_ref() == Some(&name) {
            return Ok(());
        }
        self.note(&["policy ", &name], reason)?;
        self.state_mut().policy = Some(name);
        Ok(())
    }

    pub(super) fn tag(&mut self, name: ImmutableString, reason: Option<&str>) -> Outcome {
        check_name("tag", &name)?;
        if self.state.tags.contains(&name) {
            return Ok(());
        }
        if self.state.tags.len() >= MAX_TAGS {
            return Err(format!("a decision may carry at most {MAX_TAGS} tags"));
        }
        self.note(&["tag ", &name], reason)?;
        self.state_mut().tags.insert(name);
        Ok(())
    }

    pub(super) fn set_sensitivity(
        &mut self,
        level: ImmutableString,
        reason: Option<&str>,
    ) -> Outcome {
        let level = Sensitivity::parse(&level).ok_or_else(|| {
            let names: Vec<&str> = Sensitivity::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown sensitivity {level:?}: expected one of {}", names.join(", "))
        })?;
        if level <= self.state.sensitivity {
            return Ok(());
        }
        self.note(&["sensitivity ", level.as_str()], reason)?;
        self.state_mut().sensitivity = level;
        Ok(())
    }

    pub(super) fn set_customer_facing(&mut self, reason: Option<&str>) -> Outcome {
        if self.state.customer_facing {
            return Ok(());
        }
        self.note(&["customer-facing"], reason)?;
        self.state_mut().customer_facing = true;
        Ok(())
    }

    pub(super) fn involve(&mut self, role: ImmutableString, reason: Option<&str>) -> Outcome {
        check_name("role", &role)?;
        if self.state.roles.contains(&role) {
            return Ok(());
        }
        if self.state.roles.len() >= MAX_ROLES {
            return Err(format!("a decision may involve at most {MAX_ROLES} roles"));
        }
        self.note(&["involve ", &role], reason)?;
        self.state_mut().roles.insert(role);
        Ok(())
    }

    pub(super) fn suppress(&mut self, reason: &str) -> Outcome {
        let reason = clip(reason.trim());
        if reason.is_empty() {
            return Err("suppress needs a reason, e.g. suppress(\"maintenance window\")".into());
        }
        if self.state.suppressed.as_deref() == Some(&*reason) {
            return Ok(());
        }
        self.note(&["suppressed: ", &reason], None)?;
        self.state_mut().suppressed = Some(reason.into_owned());
        Ok(())
    }

    pub(super) fn policy(&self) -> Option<&ImmutableString> {
        self.state.policy.as_ref()
    }
    pub(super) fn tags(&self) -> &BTreeSet<ImmutableString> {
        &self.state.tags
    }
    pub(super) fn sensitivity(&self) -> Sensitivity {
        self.state.sensitivity
    }
    pub(super) fn customer_facing(&self) -> bool {
        self.state.customer_facing
    }
    pub(super) fn roles(&self) -> &BTreeSet<ImmutableString> {
        &self.state.roles
    }
    pub(super) fn is_suppressed(&self) -> bool {
        self.state.suppressed.is_some()
    }
}

impl fmt::Display for Draft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "decision(score {}, severity {}, sensitivity {}",
            self.state.score,
            self.severity(),
            self.state.sensitivity
        )?;
        if let Some(policy) = &self.state.policy {
            write!(f, ", policy {policy}")?;
        }
        if !self.state.tags.is_empty() {
            write!(f, ", tags {:?}", self.state.tags)?;
        }
        if !self.state.roles.is_empty() {
            write!(f, ", roles {:?}", self.state.roles)?;
        }
        if self.state.customer_facing {
            f.write_str(", customer-facing")?;
        }
        if let Some(reason) = &self.state.suppressed {
            write!(f, ", suppressed: {reason}")?;
        }
        f.write_str(")")
    }
}

/// Forced severity or the first threshold the score reaches (the last if it reaches none),
/// then no more severe than the cap. Empty when the triage config has no thresholds at all.
fn severity_name<'a>(severities: &'a [Threshold], state: &State) -> &'a str {
    let by_score = severities
        .iter()
        .position(|t| t.min_score <= state.score)
        .unwrap_or(severities.len().saturating_sub(1));
    let mut index = state.forced.unwrap_or(by_score).max(state.cap.unwrap_or(0));
    if let Some(floor) = state.floor {
        index = index.min(floor);
    }
    severities.get(index).map_or("", |t| t.name.as_str())
}

/// The decision after the last script: severity resolved against the thresholds.
pub(super) fn finish(
    severities: &[Threshold],
    state: Arc<State>,
    rules_fired: Vec<String>,
    reasons: Vec<String>,
) -> Decision {
    let severity = severity_name(severities, &state).to_owned();
    let state = Arc::unwrap_or_clone(state);
    Decision {
        score: state.score,
        base_score: state.base_score,
        severity,
        policy: state.policy.map(ImmutableString::into_owned),
        tags: state.tags.into_iter().map(ImmutableString::into_owned).collect(),
        sensitivity: state.sensitivity,
        customer_facing: state.customer_facing,
        roles: state.roles.into_iter().map(ImmutableString::into_owned).collect(),
        suppressed: state.suppressed,
        rules_fired,
        reasons,
    }
}

/// Tags, roles and policies end up in URLs, metric labels and config lookups: keep them to a
/// plain alphabet.
fn check_name(what: &str, name: &str) -> Outcome {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(plain) {
        return Err(format!(
            "invalid {what} {name:?}: use 1 to {MAX_NAME_LEN} letters, digits, '_', '-', '.' or ':'"
        ));
    }
    Ok(())
}

fn clip(text: &str) -> Cow<'_, str> {
    // No character count needed when even the byte length is short enough.
    if text.len() <= MAX_REASON_CHARS {
        return Cow::Borrowed(text);
    }
    match text.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
        None => Cow::Borrowed(text),
    }
}
