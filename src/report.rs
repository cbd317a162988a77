//! The operator's figures: MTTD, MTTA and MTTR by severity, kind and service, recurrence,
//! customer report volume, notifications per incident and after-action items.
//!
//! Pure: [`compute`] takes the incidents (read by [`Store::report_data`](crate::store::Store::report_data)
//! or from the store file by `tocsin report`), the number of notifications of each, and "now",
//! and returns a [`Report`]. `GET /api/v1/report`, `tocsin report` and the dashboard all show
//! this one struct, so they cannot disagree. [`Report::table`] and [`Report::csv`] render it.
//!
//! Definitions (the README repeats them):
//! - The period is `[from, now]`; an incident belongs to it when its first event arrived in it.
//! - TTD (time to detect) = first event − the sender's start time (`detected_at`), for
//!   incidents whose sender gave one no later than the first event.
//! - TTA = acknowledgement − first event; TTR = resolve − first event. Incidents not yet
//!   acknowledged (or resolved) give no sample; one resolved without an acknowledgement gives a
//!   TTR and no TTA.
//! - Mean, median (the middle value, or the mean of the two middle ones) and p90 (nearest rank:
//!   the ⌈0.9·n⌉-th smallest) in seconds.
//! - A recurrence is an incident whose previous incident with the same (source, dedup key) was
//!   resolved no more than the recurrence window before it opened; the rate is recurrences
//!   divided by incidents in the period.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::event::Kind;
use crate::incident::{Incident, IncidentId};
use crate::review::ActionState;

/// What a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub from: Timestamp,
    pub now: Timestamp,
    pub recurrence_window: SignedDuration,
}

/// Default period of `tocsin report` and `GET /api/v1/report`.
pub const DEFAULT_SINCE: &str = "30d";
/// Default recurrence window.
pub const DEFAULT_RECURRENCE_WINDOW: &str = "24h";

impl Options {
    /// Options from the `since` and `recurrence_window` texts of the CLI and the API: `since`
    /// is a duration back from `now` (`7d`, `12h`) or an RFC 3339 time; the window a duration.
    /// Errors name the field.
    pub fn parse(
        since: Option<&str>,
        recurrence_window: Option<&str>,
        now: Timestamp,
    ) -> Result<Options, (&'static str, String)> {
        let since = since.unwrap_or(DEFAULT_SINCE);
        let from = match since.parse::<Timestamp>() {
            Ok(t) => t,
            Err(_) => {
                let d = crate::vocab::parse_duration(since).map_err(|e| ("since", e))?;
                SignedDuration::try_from(d)
                    .ok()
                    .and_then(|d| now.checked_sub(d).ok())
                    .ok_or_else(|| ("since", format!("`{since}` reaches too far back")))?
            }
        };
        if from > now {
            return Err(("since", format!("{from} is in the future (now is {now})")));
        }
        let window = recurrence_window.unwrap_or(DEFAULT_RECURRENCE_WINDOW);
        let window = crate::vocab::parse_duration(window)
            .ok()
            .and_then(|d| SignedDuration::try_from(d).ok())
            .ok_or_else(|| {
                (
                    "recurrence_window",
                    format!("`{window}` is not a positive duration; write e.g. 30m, 24h or 7d"),
                )
            })?;
        Ok(Options { from, now, recurrence_window: window })
    }

    /// The earliest first-seen time the report must read: incidents before the period matter
    /// only as predecessors of a recurrence.
    pub fn read_from(&self) -> Timestamp {
        self.from.checked_sub(self.recurrence_window).unwrap_or(self.from)
    }
}

/// Mean, median and p90 of one duration, in seconds; `None` without samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// Number of samples.
    pub count: u64,
    pub mean_seconds: Option<f64>,
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
}

impl Stat {
    pub fn of(mut samples: Vec<f64>) -> Stat {
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        if n == 0 {
            return Stat { count: 0, mean_seconds: None, median_seconds: None, p90_seconds: None };
        }
        let mean = samples.iter().sum::<f64>() / n as f64;
        let median =
            if n % 2 == 1 { samples[n / 2] } else { (samples[n / 2 - 1] + samples[n / 2]) / 2.0 };
        // Nearest rank: the ⌈0.9·n⌉-th smallest (1-based), in integers to avoid 0.9·10 = 9.000…1.
        let rank = (9 * n).div_ceil(10).max(1);
        Stat {
            count: n as u64,
            mean_seconds: Some(mean),
            median_seconds: Some(median),
            p90_seconds: Some(samples[rank - 1]),
        }
    }
}

/// The time figures of one slice of the incidents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// `all`, `severity`, `kind` or `service`.
    pub dimension: String,
    /// The severity, kind (`alert`, `report`) or service (`(none)` when the sender named
    /// none); `all` for the whole period.
    pub value: String,
    pub incidents: u64,
    pub acknowledged: u64,
    pub resolved: u64,
    /// Time to detect: first event − sender's start time.
    pub mttd: Stat,
    /// Time to acknowledge: acknowledgement − first event.
    pub mtta: Stat,
    /// Time to resolve: resolve − first event.
    pub mttr: Stat,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recurrence {
    pub window_seconds: i64,
    /// Incidents in the period that are recurrences.
    pub recurrences: u64,
    /// recurrences / incidents in the period (`None` without incidents).
    pub rate: Option<f64>,
    /// The keys that recurred, most recurrences first.
    pub keys: Vec<RecurringKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecurringKey {
    pub source: String,
    pub dedup_key: String,
    pub recurrences: u64,
}

/// Customer reports about one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReports {
    pub service: String,
    /// Report incidents opened in the period.
    pub incidents: u64,
    /// Report events that opened or joined them (a ticket reported twice counts twice).
    pub reports: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notifications {
    /// Notifications of the period's incidents (every channel and state).
    pub total: u64,
    pub per_incident_mean: Option<f64>,
    pub per_incident_median: Option<f64>,
    pub per_incident_max: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionItems {
    /// Action items of the period's incidents' reviews.
    pub total: u64,
    pub open: u64,
    /// Open with their due time passed.
    pub overdue: u64,
    pub done: u64,
    pub dropped: u64,
    /// The overdue items, longest overdue first.
    pub overdue_items: Vec<OverdueItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverdueItem {
    pub incident: IncidentId,
    pub action: u32,
    pub title: String,
    pub owner: String,
    pub due: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub from: Timestamp,
    pub now: Timestamp,
    /// Incidents opened in the period.
    pub incidents: u64,
    /// Of those, still triggered or acknowledged.
    pub open: u64,
    /// `all` first, then by severity, kind and service.
    pub groups: Vec<Group>,
    pub recurrence: Recurrence,
    /// Customer report volume by service, most reports first.
    pub customer_reports: Vec<ServiceReports>,
    pub notifications: Notifications,
    pub action_items: ActionItems,
}

impl Report {
    /// The report as a user without the `pii` permission sees it: every text that comes from
    /// events or people (services, recurring dedup keys, overdue action items' titles) through
    /// the redactor's patterns and `known` (the field values of the events that opened the
    /// incidents shown); a service or dedup key that is a configured field becomes its marker.
    /// Groups keep their figures; two hidden values may then read alike.
    pub fn redact(&mut self, redactor: &crate::redact::Redactor, known: &crate::redact::Known) {
        let field = |name: &str, value: &mut String| {
            if redactor.redacts_field(name) {
                *value = format!("[redacted:{name}]");
            } else if let std::borrow::Cow::Owned(r) = redactor.text(value, known) {
                *value = r;
            }
        };
        for g in self.groups.iter_mut().filter(|g| g.dimension == "service") {
            if g.value != NO_SERVICE {
                field("service", &mut g.value);
            }
        }
        for s in self.customer_reports.iter_mut().filter(|s| s.service != NO_SERVICE) {
            field("service", &mut s.service);
        }
        for k in &mut self.recurrence.keys {
            field("dedup_key", &mut k.dedup_key);
        }
        for a in &mut self.action_items.overdue_items {
            if let std::borrow::Cow::Owned(r) = redactor.text(&a.title, known) {
                a.title = r;
            }
        }
    }
}

fn secs(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64()
}

fn group<'a>(dimension: &str, value: &str, incidents: impl Iterator<Item = &'a Incident>) -> Group {
    let (mut n, mut acked, mut resolved) = (0, 0, 0);
    let (mut ttd, mut tta, mut ttr) = (Vec::new(), Vec::new(), Vec::new());
    for i in incidents {
        n += 1;
        if let Some(d) = i.detected_at.filter(|d| *d <= i.first_seen) {
            ttd.push(secs(d, i.first_seen));
        }
        if let Some(a) = &i.acknowledged {
            acked += 1;
            tta.push(secs(i.first_seen, a.at).max(0.0));
        }
        if let Some(r) = &i.resolved {
            resolved += 1;
            ttr.push(secs(i.first_seen, r.at).max(0.0));
        }
    }
    Group {
        dimension: dimension.into(),
        value: value.into(),
        incidents: n,
        acknowledged: acked,
        resolved,
        mttd: Stat::of(ttd),
        mtta: Stat::of(tta),
        mttr: Stat::of(ttr),
    }
}

const NO_SERVICE: &str = "(none)";

fn service(i: &Incident) -> &str {
    i.service.as_deref().unwrap_or(NO_SERVICE)
}

/// The report over `incidents` (any order; those that opened before `options.from` count only
/// as predecessors of recurrences). `notifications`: incident id → its notifications (missing
/// means none).
pub fn compute(
    incidents: &[Incident],
    notifications: &BTreeMap<IncidentId, u64>,
    options: &Options,
) -> Report {
    let Options { from, now, recurrence_window } = *options;
    // Live drills rehearse the response; they are kept out of every figure.
    let mut all: Vec<&Incident> =
        incidents.iter().filter(|i| i.first_seen <= now && !i.drill).collect();
    all.sort_by_key(|i| (i.first_seen, i.id));
    let period: Vec<&Incident> = all.iter().copied().filter(|i| i.first_seen >= from).collect();

    let mut groups = vec![group("all", "all", period.iter().copied())];
    let mut dimension = |name: &str, key: fn(&Incident) -> String| {
        let mut values: Vec<String> = period.iter().map(|i| key(i)).collect();
        values.sort();
        values.dedup();
        for v in values {
            groups.push(group(name, &v, period.iter().copied().filter(|i| key(i) == v)));
        }
    };
    dimension("severity", |i| i.decision.severity.clone());
    dimension("kind", |i| i.kind.as_str().to_owned());
    dimension("service", |i| service(i).to_owned());

    // Recurrence: walk every key's incidents in opening order.
    let mut last_resolved: BTreeMap<(&str, &str), Option<Timestamp>> = BTreeMap::new();
    let mut recurring: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut recurrences = 0;
    for i in &all {
        let key = (i.source.as_str(), i.dedup_key.as_str());
        let previous = last_resolved.insert(key, i.resolved.as_ref().map(|r| r.at));
        if i.first_seen < from {
            continue;
        }
        if let Some(Some(resolved)) = previous
            && resolved <= i.first_seen
            && i.first_seen.duration_since(resolved) <= recurrence_window
        {
            recurrences += 1;
            *recurring.entry(key).or_default() += 1;
        }
    }
    let mut keys: Vec<RecurringKey> = recurring
        .into_iter()
        .map(|((source, key), n)| RecurringKey {
            source: source.into(),
            dedup_key: key.into(),
            recurrences: n,
        })
        .collect();
    keys.sort_by_key(|k| std::cmp::Reverse(k.recurrences));

    let mut by_service: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for i in period.iter().filter(|i| i.kind == Kind::Report) {
        let e = by_service.entry(service(i)).or_default();
        e.0 += 1;
        e.1 += i.count;
    }
    let mut customer_reports: Vec<ServiceReports> = by_service
        .into_iter()
        .map(|(s, (incidents, reports))| ServiceReports { service: s.into(), incidents, reports })
        .collect();
    customer_reports.sort_by_key(|s| std::cmp::Reverse(s.reports));

    let counts: Vec<u64> =
        period.iter().map(|i| notifications.get(&i.id).copied().unwrap_or(0)).collect();
    let count_stat = Stat::of(counts.iter().map(|&c| c as f64).collect());
    let notifications = Notifications {
        total: counts.iter().sum(),
        per_incident_mean: count_stat.mean_seconds,
        per_incident_median: count_stat.median_seconds,
        per_incident_max: counts.iter().copied().max(),
    };

    let mut actions = ActionItems {
        total: 0,
        open: 0,
        overdue: 0,
        done: 0,
        dropped: 0,
        overdue_items: Vec::new(),
    };
    for i in &period {
        for a in i.review.iter().flat_map(|r| &r.actions) {
            actions.total += 1;
            match a.state {
                ActionState::Open => actions.open += 1,
                ActionState::Done => actions.done += 1,
                ActionState::Dropped => actions.dropped += 1,
            }
            if a.overdue(now) {
                actions.overdue += 1;
                actions.overdue_items.push(OverdueItem {
                    incident: i.id,
                    action: a.id,
                    title: a.title.clone(),
                    owner: a.owner.clone(),
                    due: a.due,
                });
            }
        }
    }
    actions.overdue_items.sort_by_key(|a| (a.due, a.incident, a.action));

    Report {
        from,
        now,
        incidents: period.len() as u64,
        open: period.iter().filter(|i| i.status.is_open()).count() as u64,
        groups,
        recurrence: Recurrence {
            window_seconds: recurrence_window.as_secs(),
            recurrences,
            rate: (!period.is_empty()).then(|| recurrences as f64 / period.len() as f64),
            keys,
        },
        customer_reports,
        notifications,
        action_items: actions,
    }
}

/// A duration for people: `45s`, `4m 10s`, `2h 05m`, `3d 4h`; `-` for none.
pub fn human(seconds: Option<f64>) -> String {
    let Some(s) = seconds else { return "-".into() };
    let s = s.round() as i64;
    match s {
        ..60 => format!("{s}s"),
        60..3600 if s % 60 == 0 => format!("{}m", s / 60),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ if s % 86400 < 3600 => format!("{}d", s / 86400),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

fn triple(s: &Stat) -> String {
    if s.count == 0 {
        return "-".into();
    }
    format!("{} / {} / {}", human(s.mean_seconds), human(s.median_seconds), human(s.p90_seconds))
}

fn ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}")).unwrap_or_else(|| "-".into())
}

impl Report {
    /// Aligned columns for a terminal.
    #[expect(clippy::too_many_lines, reason = "one table, section by section; to split by section")]
    pub fn table(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, s: String| {
            out.push_str(s.trim_end());
            out.push('\n');
        };
        line(&mut out, format!("Incidents opened {} → {}", self.from, self.now));
        line(&mut out, format!("{} incidents, {} still open", self.incidents, self.open));
        line(&mut out, String::new());
        let header = [
            "BREAKDOWN".to_string(),
            "INCIDENTS".into(),
            "ACKED".into(),
            "RESOLVED".into(),
            "STARTS".into(),
            "MTTD mean / median / p90".into(),
            "MTTA mean / median / p90".into(),
            "MTTR mean / median / p90".into(),
        ];
        let mut rows = vec![header];
        for g in &self.groups {
            let name = if g.dimension == "all" {
                "all".to_string()
            } else {
                format!("{} {}", g.dimension, g.value)
            };
            rows.push([
                name,
                g.incidents.to_string(),
                g.acknowledged.to_string(),
                g.resolved.to_string(),
                g.mttd.count.to_string(),
                triple(&g.mttd),
                triple(&g.mtta),
                triple(&g.mttr),
            ]);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for r in &rows {
            let mut s = String::new();
            for (c, cell) in r.iter().enumerate() {
                let pad = widths[c] - cell.chars().count();
                // Counts right-aligned, text left-aligned.
                if (1..=4).contains(&c) {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(cell);
                } else {
                    s.push_str(cell);
                    s.push_str(&" ".repeat(pad));
                }
                s.push_str("   ");
            }
            line(&mut out, s);
        }
        line(
            &mut out,
            "Times from the first event: TTD back to the sender's start time (STARTS: incidents \
             that gave one), TTA to the acknowledgement, TTR to the resolve."
                .into(),
        );
        line(&mut out, String::new());
        let r = &self.recurrence;
        line(
            &mut out,
            format!(
                "Recurrence (reopened within {}): {} of {} incidents, rate {}",
                human(Some(r.window_seconds as f64)),
                r.recurrences,
                self.incidents,
                ratio(r.rate)
            ),
        );
        for k in &r.keys {
            line(&mut out, format!("  {:>4}×  {} / {}", k.recurrences, k.source, k.dedup_key));
        }
        line(&mut out, "Customer reports by service:".into());
        if self.customer_reports.is_empty() {
            line(&mut out, "  none".into());
        }
        let width = self.customer_reports.iter().map(|s| s.service.chars().count()).max();
        for s in &self.customer_reports {
            line(
                &mut out,
                format!(
                    "  {:<w$}  {:>5} reports in {} incidents",
                    s.service,
                    s.reports,
                    s.incidents,
                    w = width.unwrap_or(0)
                ),
            );
        }
        let n = &self.notifications;
        line(
            &mut out,
            format!(
                "Notifications: {} total; per incident mean {}, median {}, max {}",
                n.total,
                ratio(n.per_incident_mean),
                ratio(n.per_incident_median),
                n.per_incident_max.map(|m| m.to_string()).unwrap_or_else(|| "-".into())
            ),
        );
        let a = &self.action_items;
        line(
            &mut out,
            format!(
                "Action items: {} open ({} OVERDUE), {} done, {} dropped",
                a.open, a.overdue, a.done, a.dropped
            ),
        );
        for o in &a.overdue_items {
            line(
                &mut out,
                format!(
                    "  OVERDUE since {}: incident #{} item #{} ({}): {}",
                    o.due, o.incident, o.action, o.owner, o.title
                ),
            );
        }
        out
    }

    /// Long-format CSV: `section,dimension,key,metric,value`, one figure per row; an empty
    /// value where there is no sample.
    pub fn csv(&self) -> String {
        let mut out = String::from("section,dimension,key,metric,value\n");
        let mut row = |section: &str, dimension: &str, key: &str, metric: &str, value: String| {
            // Keys come from senders (services, dedup keys): never let a spreadsheet read one
            // as a formula.
            let key = if key.starts_with(['=', '+', '-', '@']) {
                format!("'{key}")
            } else {
                key.to_string()
            };
            for (i, cell) in
                [section, dimension, key.as_str(), metric, value.as_str()].iter().enumerate()
            {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&csv_cell(cell));
            }
            out.push('\n');
        };
        let f = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
        row("period", "all", "all", "from", self.from.to_string());
        row("period", "all", "all", "now", self.now.to_string());
        row("period", "all", "all", "incidents", self.incidents.to_string());
        row("period", "all", "all", "open", self.open.to_string());
        for g in &self.groups {
            let (d, k) = (g.dimension.as_str(), g.value.as_str());
            row("times", d, k, "incidents", g.incidents.to_string());
            row("times", d, k, "acknowledged", g.acknowledged.to_string());
            row("times", d, k, "resolved", g.resolved.to_string());
            for (name, s) in [("mttd", &g.mttd), ("mtta", &g.mtta), ("mttr", &g.mttr)] {
                row("times", d, k, &format!("{name}_count"), s.count.to_string());
                row("times", d, k, &format!("{name}_mean_seconds"), f(s.mean_seconds));
                row("times", d, k, &format!("{name}_median_seconds"), f(s.median_seconds));
                row("times", d, k, &format!("{name}_p90_seconds"), f(s.p90_seconds));
            }
        }
        let r = &self.recurrence;
        row("recurrence", "all", "all", "window_seconds", r.window_seconds.to_string());
        row("recurrence", "all", "all", "recurrences", r.recurrences.to_string());
        row("recurrence", "all", "all", "rate", f(r.rate));
        for k in &r.keys {
            let key = format!("{}/{}", k.source, k.dedup_key);
            row("recurrence", "key", &key, "recurrences", k.recurrences.to_string());
        }
        for s in &self.customer_reports {
            row("customer_reports", "service", &s.service, "incidents", s.incidents.to_string());
            row("customer_reports", "service", &s.service, "reports", s.reports.to_string());
        }
        let n = &self.notifications;
        row("notifications", "all", "all", "total", n.total.to_string());
        row("notifications", "all", "all", "per_incident_mean", f(n.per_incident_mean));
        row("notifications", "all", "all", "per_incident_median", f(n.per_incident_median));
        row(
            "notifications",
            "all",
            "all",
            "per_incident_max",
            n.per_incident_max.map(|m| m.to_string()).unwrap_or_default(),
        );
        let a = &self.action_items;
        for (metric, v) in [
            ("total", a.total),
            ("open", a.open),
            ("overdue", a.overdue),
            ("done", a.done),
            ("dropped", a.dropped),
        ] {
            row("action_items", "all", "all", metric, v.to_string());
        }
        out
    }
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::{Stamp, Status};
    use crate::review::{ActionItem, Review};
    use crate::rules::{Decision, Sensitivity};

    const T0: &str = "2026-03-02T09:00:00Z";

    /// T0 + `m` minutes + `s` seconds.
    fn at(m: i64, s: i64) -> Timestamp {
        T0.parse::<Timestamp>().unwrap() + SignedDuration::from_secs(m * 60 + s)
    }

    fn stamp(t: Timestamp) -> Option<Stamp> {
        Some(Stamp { by: "user:admin".into(), at: t })
    }

    struct Spec {
        id: IncidentId,
        key: &'static str,
        kind: Kind,
        severity: &'static str,
        service: Option<&'static str>,
        opened: Timestamp,
        detected: Option<Timestamp>,
        acked: Option<Timestamp>,
        resolved: Option<Timestamp>,
        count: u64,
    }

    fn incident(s: Spec) -> Incident {
        Incident {
            id: s.id,
            source: "default".into(),
            dedup_key: s.key.into(),
            kind: s.kind,
            status: if s.resolved.is_some() {
                Status::Resolved
            } else if s.acked.is_some() {
                Status::Acknowledged
            } else {
                Status::Triggered
            },
            summary: format!("{} broke", s.key),
            service: s.service.map(Into::into),
            labels: BTreeMap::new(),
            decision: Decision {
                score: 0,
                base_score: 0,
                severity: s.severity.into(),
                policy: None,
                tags: Default::default(),
                sensitivity: Sensitivity::None,
                customer_facing: false,
                roles: Default::default(),
                suppressed: None,
                rules_fired: vec![],
                reasons: vec![],
            },
            first_seen: s.opened,
            last_seen: s.opened,
            detected_at: s.detected,
            count: s.count,
            opened_by: uuid::Uuid::nil(),
            acknowledged: s.acked.and_then(stamp),
            resolved: s.resolved.and_then(stamp),
            roles: BTreeMap::new(),
            escalation: None,
            notices: vec![],
            review: None,
            awareness: None,
            expiry: None,
            held_by: None,
            links: Vec::new(),
            policy_choice: None,
            drill: false,
            scope: Vec::new(),
        }
    }

    fn spec(id: IncidentId, key: &'static str, severity: &'static str, opened: Timestamp) -> Spec {
        Spec {
            id,
            key,
            kind: Kind::Alert,
            severity,
            service: None,
            opened,
            detected: None,
            acked: None,
            resolved: None,
            count: 1,
        }
    }

    fn item(id: u32, due: Timestamp, state: ActionState) -> ActionItem {
        ActionItem {
            id,
            title: format!("fix #{id}"),
            owner: "ana".into(),
            due,
            state,
            created: Stamp { by: "user:admin".into(), at: at(0, 0) },
            closed: None,
        }
    }

    /// Five incidents in the period and one before it:
    ///
    /// | id | key  | kind   | sev  | service  | opened | start  | ack    | resolve | notifs |
    /// |----|------|--------|------|----------|--------|--------|--------|---------|--------|
    /// | 1  | db   | alert  | sev1 | db       | -30h   |        | -29h   | -28h    | 9      |
    /// | 2  | db   | alert  | sev1 | db       | 0      | -2m    | 4m     | 30m     | 3      |
    /// | 3  | SUP  | report | sev2 | checkout | 0      | -10m   | 2m     | 20m     | 2      |
    /// | 4  | api  | alert  | sev3 | api      | 10m    |        |        | 70m     | 1      |
    /// | 5  | db   | alert  | sev1 | db       | 40m    | 41m!   | 45m    | 50m     | 4      |
    /// | 6  | SUP2 | report | sev4 | checkout | 55m    |        |        |         | 0      |
    ///
    /// Period from -24h to now = 80m. Incident 1 is before it. Incident 5's start time is after
    /// its first event (a sender clock ahead): no TTD sample.
    fn fixture() -> (Vec<Incident>, BTreeMap<IncidentId, u64>, Options) {
        let mut i1 = spec(1, "db", "sev1", at(-30 * 60, 0));
        (i1.service, i1.acked, i1.resolved) =
            (Some("db"), Some(at(-29 * 60, 0)), Some(at(-28 * 60, 0)));
        let mut i2 = spec(2, "db", "sev1", at(0, 0));
        (i2.service, i2.detected, i2.acked, i2.resolved) =
            (Some("db"), Some(at(-2, 0)), Some(at(4, 0)), Some(at(30, 0)));
        let mut i3 = spec(3, "SUP-1", "sev2", at(0, 0));
        (i3.kind, i3.service, i3.detected, i3.acked, i3.resolved, i3.count) =
            (Kind::Report, Some("checkout"), Some(at(-10, 0)), Some(at(2, 0)), Some(at(20, 0)), 3);
        let mut i4 = spec(4, "api", "sev3", at(10, 0));
        (i4.service, i4.resolved) = (Some("api"), Some(at(70, 0)));
        let mut i5 = spec(5, "db", "sev1", at(40, 0));
        (i5.service, i5.detected, i5.acked, i5.resolved) =
            (Some("db"), Some(at(41, 0)), Some(at(45, 0)), Some(at(50, 0)));
        let mut i6 = spec(6, "SUP-2", "sev4", at(55, 0));
        (i6.kind, i6.service) = (Kind::Report, Some("checkout"));
        let mut incidents: Vec<Incident> = [i1, i2, i3, i4, i5, i6].map(incident).into();
        let mut review = Review::new(at(30, 0));
        review.actions = vec![
            item(1, at(60, 0), ActionState::Open),    // overdue at 80m
            item(2, at(120, 0), ActionState::Open),   // not yet due
            item(3, at(10, 0), ActionState::Done),    // done: never overdue
            item(4, at(20, 0), ActionState::Dropped), // dropped
        ];
        incidents[1].review = Some(review);
        let mut old = Review::new(at(-28 * 60, 0));
        old.actions = vec![item(1, at(-27 * 60, 0), ActionState::Open)];
        incidents[0].review = Some(old); // before the period: not counted
        let notifications = BTreeMap::from([(1, 9), (2, 3), (3, 2), (4, 1), (5, 4)]);
        let options = Options {
            from: at(80 - 24 * 60, 0),
            now: at(80, 0),
            recurrence_window: SignedDuration::from_hours(24),
        };
        (incidents, notifications, options)
    }

    fn group<'a>(r: &'a Report, dimension: &str, value: &str) -> &'a Group {
        r.groups
            .iter()
            .find(|g| g.dimension == dimension && g.value == value)
            .unwrap_or_else(|| panic!("no group {dimension} {value}: {:?}", r.groups))
    }

    fn stat(count: u64, mean: f64, median: f64, p90: f64) -> Stat {
        Stat {
            count,
            mean_seconds: Some(mean),
            median_seconds: Some(median),
            p90_seconds: Some(p90),
        }
    }

    #[test]
    fn figures_match_the_hand_computed_ones() {
        let (incidents, notifications, options) = fixture();
        // Shuffled input: order must not matter.
        let mut shuffled = incidents;
        shuffled.reverse();
        let r = compute(&shuffled, &notifications, &options);
        assert_eq!((r.incidents, r.open), (5, 1));

        let all = group(&r, "all", "all");
        assert_eq!((all.incidents, all.acknowledged, all.resolved), (5, 3, 4));
        // TTD: #2 120 s, #3 600 s (#5 started "after" its first event: no sample).
        // mean 360, median (120+600)/2 = 360, p90 rank ⌈1.8⌉ = 2 → 600.
        assert_eq!(all.mttd, stat(2, 360.0, 360.0, 600.0));
        // TTA: #2 240, #3 120, #5 300 → sorted 120 240 300: mean 660/3 = 220, median 240,
        // p90 rank ⌈2.7⌉ = 3 → 300.
        assert_eq!(all.mtta, stat(3, 220.0, 240.0, 300.0));
        // TTR: #2 1800, #3 1200, #4 3600 (resolved unacknowledged), #5 600 → sorted 600 1200
        // 1800 3600: mean 7200/4 = 1800, median (1200+1800)/2 = 1500, p90 rank ⌈3.6⌉ = 4 → 3600.
        assert_eq!(all.mttr, stat(4, 1800.0, 1500.0, 3600.0));

        // sev1: #2 and #5 → TTD 120 only; TTA 240, 300 → mean 270, median 270, p90 rank 2 →
        // 300; TTR 1800, 600 → mean 1200, median 1200, p90 1800.
        let sev1 = group(&r, "severity", "sev1");
        assert_eq!((sev1.incidents, sev1.acknowledged, sev1.resolved), (2, 2, 2));
        assert_eq!(sev1.mttd, stat(1, 120.0, 120.0, 120.0));
        assert_eq!(sev1.mtta, stat(2, 270.0, 270.0, 300.0));
        assert_eq!(sev1.mttr, stat(2, 1200.0, 1200.0, 1800.0));
        let sev3 = group(&r, "severity", "sev3");
        assert_eq!(sev3.mtta.count, 0);
        assert_eq!(sev3.mtta.mean_seconds, None);
        assert_eq!(sev3.mttr, stat(1, 3600.0, 3600.0, 3600.0));
        let sev4 = group(&r, "severity", "sev4");
        assert_eq!((sev4.incidents, sev4.mttr.count), (1, 0));
        let severities: Vec<&str> = r
            .groups
            .iter()
            .filter(|g| g.dimension == "severity")
            .map(|g| g.value.as_str())
            .collect();
        assert_eq!(severities, ["sev1", "sev2", "sev3", "sev4"]);

        // Kind: alerts #2 #4 #5 → TTR 1800, 3600, 600: mean 2000, median 1800, p90 rank
        // ⌈2.7⌉ = 3 → 3600. Reports #3 #6 → TTA 120 only, TTD 600 only.
        let alert = group(&r, "kind", "alert");
        assert_eq!(alert.incidents, 3);
        assert_eq!(alert.mttr, stat(3, 2000.0, 1800.0, 3600.0));
        let report = group(&r, "kind", "report");
        assert_eq!((report.incidents, report.acknowledged, report.resolved), (2, 1, 1));
        assert_eq!(report.mtta, stat(1, 120.0, 120.0, 120.0));
        assert_eq!(report.mttd, stat(1, 600.0, 600.0, 600.0));

        // Service: db #2 #5 (same as sev1), checkout #3 #6, api #4.
        assert_eq!(group(&r, "service", "db").mttr, sev1.mttr);
        assert_eq!(group(&r, "service", "checkout").incidents, 2);
        assert_eq!(group(&r, "service", "api").mttr.count, 1);

        // Recurrence: #2 opened 28h after #1 resolved (> 24h): not one. #5 opened 10 min after
        // #2 resolved: one. 1 of 5 → 0.2.
        assert_eq!(r.recurrence.recurrences, 1);
        assert_eq!(r.recurrence.rate, Some(0.2));
        assert_eq!(r.recurrence.window_seconds, 86400);
        assert_eq!(
            r.recurrence.keys,
            [RecurringKey { source: "default".into(), dedup_key: "db".into(), recurrences: 1 }]
        );

        // Customer reports: checkout has #3 (3 reports) and #6 (1): 2 incidents, 4 reports.
        assert_eq!(
            r.customer_reports,
            [ServiceReports { service: "checkout".into(), incidents: 2, reports: 4 }]
        );

        // Notifications of #2..#6: 3, 2, 1, 4, 0 → total 10, mean 2, sorted 0 1 2 3 4 →
        // median 2, max 4 (#1's 9 is before the period).
        assert_eq!(
            r.notifications,
            Notifications {
                total: 10,
                per_incident_mean: Some(2.0),
                per_incident_median: Some(2.0),
                per_incident_max: Some(4),
            }
        );

        // Action items of #2: 2 open (one overdue at 80m), 1 done, 1 dropped; #1's is outside.
        let a = &r.action_items;
        assert_eq!((a.total, a.open, a.overdue, a.done, a.dropped), (4, 2, 1, 1, 1));
        assert_eq!(
            a.overdue_items,
            [OverdueItem {
                incident: 2,
                action: 1,
                title: "fix #1".into(),
                owner: "ana".into(),
                due: at(60, 0)
            }]
        );
    }

    #[test]
    fn a_shorter_window_or_period_changes_the_figures() {
        let (incidents, notifications, mut options) = fixture();
        // A 5-minute window: #5 came 10 minutes after #2's resolve, so no recurrence.
        options.recurrence_window = SignedDuration::from_mins(5);
        let r = compute(&incidents, &notifications, &options);
        assert_eq!((r.recurrence.recurrences, r.recurrence.rate), (0, Some(0.0)));
        // A period from 30m: #5 (40m) and #6 (55m) only; #5 is still a recurrence of #2 with
        // the 24h window although #2 opened before the period.
        options.recurrence_window = SignedDuration::from_hours(24);
        options.from = at(30, 0);
        let r = compute(&incidents, &notifications, &options);
        assert_eq!(r.incidents, 2);
        assert_eq!(r.recurrence.rate, Some(0.5));
        assert_eq!(r.action_items.total, 0);
        // An empty period: counts are zero, averages absent.
        options.from = at(80, 0);
        let r = compute(&incidents, &notifications, &options);
        assert_eq!(r.incidents, 0);
        assert_eq!(r.recurrence.rate, None);
        assert_eq!(r.notifications.per_incident_mean, None);
        assert_eq!(group(&r, "all", "all").mtta.count, 0);
        assert!(r.table().contains("0 incidents"), "{}", r.table());
    }

    #[test]
    fn stats_use_the_middle_values_and_the_nearest_rank() {
        assert_eq!(Stat::of(vec![5.0]), stat(1, 5.0, 5.0, 5.0));
        // 1..=10: mean 5.5, median (5+6)/2, p90 rank 9 → 9.
        assert_eq!(Stat::of((1..=10).map(f64::from).collect()), stat(10, 5.5, 5.5, 9.0));
        // 1..=11: p90 rank ⌈9.9⌉ = 10 → 10; median the 6th → 6.
        assert_eq!(Stat::of((1..=11).rev().map(f64::from).collect()), stat(11, 6.0, 6.0, 10.0));
    }

    #[test]
    fn options_parse_durations_and_times_and_name_bad_fields() {
        let now = at(0, 0);
        let o = Options::parse(Some("7d"), Some("30m"), now).unwrap();
        assert_eq!(o.from, at(-7 * 24 * 60, 0));
        assert_eq!(o.recurrence_window, SignedDuration::from_mins(30));
        assert_eq!(o.read_from(), at(-7 * 24 * 60 - 30, 0));
        let o = Options::parse(Some("2026-03-01T00:00:00Z"), None, now).unwrap();
        assert_eq!(o.from, "2026-03-01T00:00:00Z".parse().unwrap());
        assert_eq!(o.recurrence_window, SignedDuration::from_hours(24));
        assert_eq!(Options::parse(None, None, now).unwrap().from, at(-30 * 24 * 60, 0));
        assert_eq!(Options::parse(Some("soon"), None, now).unwrap_err().0, "since");
        assert_eq!(Options::parse(Some("2027-01-01T00:00:00Z"), None, now).unwrap_err().0, "since");
        assert_eq!(Options::parse(None, Some("0s"), now).unwrap_err().0, "recurrence_window");
    }

    #[test]
    fn drill_incidents_are_kept_out_of_the_figures() {
        let (mut incidents, notifications, options) = fixture();
        let real = compute(&incidents, &notifications, &options);
        let mut drill = incidents[0].clone();
        drill.id = 99;
        drill.dedup_key = "drill-db".into();
        drill.drill = true;
        incidents.push(drill);
        let with_drill = compute(&incidents, &notifications, &options);
        assert_eq!(with_drill.incidents, real.incidents);
        assert_eq!(
            serde_json::to_value(&with_drill.groups).unwrap(),
            serde_json::to_value(&real.groups).unwrap()
        );
    }

    #[test]
    fn table_and_csv_show_the_figures() {
        let (incidents, notifications, options) = fixture();
        let r = compute(&incidents, &notifications, &options);
        let table = r.table();
        // The `all` row: 5 incidents, 3 acked, 4 resolved, TTD 6m/6m/10m, TTA 3m 40s/4m/5m,
        // TTR 30m/25m/1h 00m.
        let all = table.lines().find(|l| l.starts_with("all ")).expect(&table);
        let cells: Vec<&str> = all.split("   ").map(str::trim).filter(|c| !c.is_empty()).collect();
        assert_eq!(
            cells,
            ["all", "5", "3", "4", "2", "6m / 6m / 10m", "3m 40s / 4m / 5m", "30m / 25m / 1h 00m"],
            "{table}"
        );
        assert!(table.contains("1 of 5 incidents, rate 0.20"), "{table}");
        assert!(table.contains("checkout      4 reports in 2 incidents"), "{table}");
        assert!(table.contains("1 OVERDUE"), "{table}");
        // Columns line up: every row of the breakdown starts its MTTA cell at the same place.
        let header = table.lines().find(|l| l.starts_with("BREAKDOWN")).unwrap();
        let col = header.find("MTTA").unwrap();
        let sev3 = table.lines().find(|l| l.starts_with("severity sev3")).unwrap();
        assert_eq!(&sev3[col..col + 1], "-", "{table}");

        let csv = r.csv();
        assert!(csv.starts_with("section,dimension,key,metric,value\n"));
        assert!(csv.contains("\ntimes,all,all,mtta_mean_seconds,220\n"), "{csv}");
        assert!(csv.contains("\ntimes,severity,sev3,mtta_mean_seconds,\n"), "{csv}");
        assert!(csv.contains("\nrecurrence,all,all,rate,0.2\n"), "{csv}");
        assert!(csv.contains("\ncustomer_reports,service,checkout,reports,4\n"), "{csv}");
        assert!(csv.contains("\naction_items,all,all,overdue,1\n"), "{csv}");
        assert!(csv.lines().all(|l| l.split(',').count() == 5), "{csv}");
        assert_eq!(csv_cell("a,\"b\""), "\"a,\"\"b\"\"\"");
        let mut formula = r.clone();
        formula.customer_reports[0].service = "=HYPERLINK(\"x\")".into();
        assert!(
            formula
                .csv()
                .contains("\ncustomer_reports,service,\"'=HYPERLINK(\"\"x\"\")\",reports,4\n"),
            "{}",
            formula.csv()
        );

        // JSON round-trips (the CLI renders the daemon's answer with these same functions).
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), r);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(None), "-");
        assert_eq!(human(Some(45.4)), "45s");
        assert_eq!(human(Some(250.0)), "4m 10s");
        assert_eq!(human(Some(300.0)), "5m");
        assert_eq!(human(Some(7500.0)), "2h 05m");
        assert_eq!(human(Some(3.0 * 86400.0 + 4.0 * 3600.0)), "3d 4h");
        assert_eq!(human(Some(86400.0)), "1d");
    }
}
