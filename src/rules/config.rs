//! `rules:` and `triage:`: the scripts' directory and sandbox limits, business hours and night
//! for the time-of-day functions, severity thresholds and base scores → [`super::Triage`].

use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::Validator;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    pub dir: Option<Spanned<String>>,
    pub watch: Option<Spanned<bool>>,
    pub time_budget: Option<Spanned<String>>,
    pub max_operations: Option<Spanned<u64>>,
    pub business_hours: Option<Spanned<RawBusinessHours>>,
    pub night: Option<Spanned<RawNight>>,
}

/// `rules.business_hours`: what `is_business_hours(tz)` answers for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBusinessHours {
    pub days: Option<Spanned<Vec<Spanned<String>>>>,
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
}

/// `rules.night`: what `is_night(tz)` answers for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNight {
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTriage {
    pub severities: Option<Spanned<Vec<Spanned<RawThreshold>>>>,
    pub base_scores: Option<Spanned<std::collections::BTreeMap<String, i64>>>,
    pub default_base_score: Option<Spanned<i64>>,
    pub verified_report_score: Option<Spanned<i64>>,
    pub unverified_report_score: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThreshold {
    pub name: Spanned<String>,
    pub min_score: Spanned<i64>,
}

/// A local time of day `HH:MM` as minutes after midnight (`24:00` for the end of a day).
fn minute_of_day(
    cx: &mut Validator<'_>,
    raw: Option<Spanned<String>>,
    path: &str,
    default: u16,
) -> u16 {
    let Some(raw) = raw else { return default };
    let t = raw.value.trim();
    let parsed = (t.len() == 5 && t.as_bytes()[2] == b':')
        .then(|| Some((t[..2].parse::<u16>().ok()?, t[3..].parse::<u16>().ok()?)))
        .flatten()
        .filter(|&(h, m)| (h < 24 && m < 60) || (h, m) == (24, 0));
    match parsed {
        Some((h, m)) => h * 60 + m,
        None => {
            cx.err(
                raw.referenced,
                path,
                format!(
                    "`{}` is not a time of day; write HH:MM (24-hour), e.g. \"09:00\"",
                    t.escape_debug()
                ),
            );
            default
        }
    }
}

fn hours(
    cx: &mut Validator<'_>,
    business: Option<Spanned<RawBusinessHours>>,
    night: Option<Spanned<RawNight>>,
) -> crate::rules::Hours {
    let mut hours = crate::rules::Hours::default();
    if let Some(b) = business {
        let b = b.value;
        if let Some(days) = b.days {
            const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
            hours.business_days = [false; 7];
            for (i, day) in days.value.iter().enumerate() {
                let name = day.value.trim().to_ascii_lowercase();
                match NAMES.iter().position(|n| name.starts_with(n) && name.len() <= 9) {
                    Some(d) => hours.business_days[d] = true,
                    None => cx.err(
                        day.referenced,
                        &format!("rules.business_hours.days[{i}]"),
                        format!(
                            "`{}` is not a day; use mon, tue, wed, thu, fri, sat or sun",
                            day.value.escape_debug()
                        ),
                    ),
                }
            }
        }
        let from_at = b.from.as_ref().map(|f| f.referenced);
        hours.business_from =
            minute_of_day(cx, b.from, "rules.business_hours.from", hours.business_from);
        hours.business_to = minute_of_day(cx, b.to, "rules.business_hours.to", hours.business_to);
        if hours.business_from >= hours.business_to
            && let Some(at) = from_at
        {
            cx.err(at, "rules.business_hours", "`from` must be before `to` (within one day)");
        }
    }
    if let Some(n) = night {
        let n = n.value;
        hours.night_from = minute_of_day(cx, n.from, "rules.night.from", hours.night_from);
        hours.night_to = minute_of_day(cx, n.to, "rules.night.to", hours.night_to);
    }
    hours
}

/// `rules:` sandbox limits and hours, and `triage:` severities and scores.
pub fn triage(
    cx: &mut Validator<'_>,
    raw: Option<Spanned<RawTriage>>,
    rules: Option<Spanned<RawRules>>,
) -> crate::rules::Triage {
    let mut triage = crate::rules::Triage::default();
    if let Some(rules) = rules.map(|r| r.value) {
        triage.hours = hours(cx, rules.business_hours, rules.night);
        triage.limits.time_budget =
            cx.duration(rules.time_budget, "rules.time_budget", triage.limits.time_budget);
        if let Some(ops) = rules.max_operations {
            if ops.value == 0 || ops.value > 100_000_000 {
                cx.err(
                    ops.referenced,
                    "rules.max_operations",
                    format!("must be from 1 to 100000000, not {}", ops.value),
                );
            } else {
                triage.limits.max_operations = ops.value;
            }
        }
    }
    let Some(raw) = raw.map(|s| s.value) else { return triage };
    if let Some(list) = raw.severities {
        if list.value.is_empty() {
            cx.err(list.referenced, "triage.severities", "needs at least one severity");
        } else {
            let mut seen = std::collections::BTreeSet::new();
            let mut previous: Option<i64> = None;
            let mut severities = Vec::new();
            for (i, t) in list.value.into_iter().enumerate() {
                let path = format!("triage.severities[{i}]");
                let name = t.value.name.value.trim().to_string();
                if name.is_empty() || name.len() > 64 || name.chars().any(char::is_whitespace) {
                    cx.err(
                        t.value.name.referenced,
                        &format!("{path}.name"),
                        "must be 1 to 64 characters without spaces",
                    );
                } else if !seen.insert(name.clone()) {
                    cx.err(
                        t.value.name.referenced,
                        &format!("{path}.name"),
                        format!("`{name}` is listed twice"),
                    );
                }
                let min = t.value.min_score.value;
                if previous.is_some_and(|p| min >= p) {
                    cx.err(
                        t.value.min_score.referenced,
                        &format!("{path}.min_score"),
                        format!("must be lower than the severity before it ({}): list the most severe first", previous.unwrap_or_default()),
                    );
                }
                previous = Some(min);
                severities.push(crate::rules::Threshold { name, min_score: min });
            }
            triage.severities = severities;
        }
    }
    if let Some(scores) = raw.base_scores {
        let mut table = std::collections::BTreeMap::new();
        for (word, score) in scores.value {
            if word.is_empty() || word != word.to_lowercase() {
                cx.err(
                    scores.referenced,
                    "triage.base_scores",
                    format!(
                        "`{word}`: severity words are matched lower-cased; write them in lower case"
                    ),
                );
            }
            table.insert(word, score);
        }
        triage.base_scores = table;
    }
    if let Some(v) = raw.default_base_score {
        triage.default_base_score = v.value;
    }
    if let Some(v) = raw.verified_report_score {
        triage.verified_report_score = v.value;
    }
    if let Some(v) = raw.unverified_report_score {
        triage.unverified_report_score = v.value;
    }
    triage
}

/// `rules.dir` (`None`: run no scripts) and `rules.watch` (default on).
pub fn dir_and_watch(
    cx: &mut Validator<'_>,
    rules: Option<&Spanned<RawRules>>,
) -> (Option<PathBuf>, bool) {
    let dir = rules.and_then(|r| r.value.dir.as_ref()).and_then(|d| {
        if d.value.trim().is_empty() {
            cx.err(d.referenced, "rules.dir", "must not be empty; leave it out to run no rules");
            None
        } else {
            Some(PathBuf::from(&d.value))
        }
    });
    let watch = rules.and_then(|r| r.value.watch.as_ref()).is_none_or(|w| w.value);
    (dir, watch)
}
