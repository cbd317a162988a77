//! Who is on call: rotations, temporary overrides, and the incident-command roles they fill.
//!
//! Pure: every question takes the time `at` and the current overrides as arguments, so the
//! escalation engine (on the journal writer thread), the API and tests all get the same answer
//! for the same inputs. The config builds a [`Roster`]; overrides are rows in the store, written
//! only by the journal writer and mirrored in memory by [`OverrideSet`].
//!
//! Shifts:
//! - Day-based shifts ([`Shift::Daily`], [`Shift::Weekly`], [`Shift::Days`]) hand off at the
//!   civil `handoff` time in the rotation's `zone` on civil days, so a 09:00 handoff stays at
//!   09:00 local time across daylight-saving changes (that shift lasts 23 or 25 hours). A
//!   handoff time that does not exist on a day (inside a spring-forward gap) happens at the
//!   first instant after the gap, the "compatible" rule RFC 5545 and Temporal use; one that
//!   occurs twice (fall back) happens at its first occurrence.
//! - Hour-based shifts ([`Shift::Hours`]) are fixed durations counted from the first handoff
//!   (`start` at `handoff` in `zone`), whatever the clocks do.
//! - Before the first handoff the first member is on call: a rotation always has someone.
//!
//! Overrides: the override covering `at` (`from <= at < until`) with the highest id wins; ids
//! are allocated in creation order, so that is the one created last.

pub mod config;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::RwLock;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp};
use serde::{Deserialize, Serialize};

/// The roles every incident has, filled or not. Operators may add more in `roles:`.
pub const BUILTIN_ROLES: [&str; 4] =
    ["incident_lead", "technical_lead", "legal_liaison", "communications_lead"];

/// How long one member's turn lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shift {
    /// One civil day, handing off at `handoff` local time.
    Daily,
    /// Seven civil days.
    Weekly,
    /// `n` civil days (n ≥ 1).
    Days(u32),
    /// `n` hours of elapsed time (n ≥ 1), counted from the first handoff.
    Hours(u32),
}

/// Longest shift accepted: a year of days, or of hours.
pub const MAX_SHIFT_DAYS: u32 = 366;
pub const MAX_SHIFT_HOURS: u32 = 366 * 24;

impl Shift {
    /// Parses the config syntax: `daily`, `weekly`, `Nd` (days), `Nw` (weeks) or `Nh` (hours).
    pub fn parse(text: &str) -> Result<Shift, String> {
        let t = text.trim();
        let bad = || {
            format!(
                "`{}` is not a shift length; write daily, weekly, or a number with d (days), \
                 w (weeks) or h (hours), e.g. 3d, 2w, 12h",
                text.escape_debug()
            )
        };
        match t {
            "daily" => return Ok(Shift::Daily),
            "weekly" => return Ok(Shift::Weekly),
            _ => {}
        }
        let (digits, unit) = t.split_at(t.len().saturating_sub(1));
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u32 = digits.parse().map_err(|_| bad())?;
        let (shift, days, max) = match unit {
            "d" => (Shift::Days(n), n, MAX_SHIFT_DAYS),
            "w" => (Shift::Days(n.saturating_mul(7)), n.saturating_mul(7), MAX_SHIFT_DAYS),
            "h" => (Shift::Hours(n), n, MAX_SHIFT_HOURS),
            _ => return Err(bad()),
        };
        if days == 0 || days > max {
            return Err(format!(
                "`{t}` is out of range: a shift is at least 1 and at most {MAX_SHIFT_DAYS} days \
                 ({MAX_SHIFT_HOURS} hours)"
            ));
        }
        Ok(shift)
    }

    /// Civil days per shift, for day-based shifts.
    fn days(self) -> Option<i64> {
        match self {
            Shift::Daily => Some(1),
            Shift::Weekly => Some(7),
            Shift::Days(n) => Some(i64::from(n.max(1))),
            Shift::Hours(_) => None,
        }
    }
}

impl fmt::Display for Shift {
    /// The config syntax, so that it round-trips through [`Shift::parse`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shift::Daily => f.write_str("daily"),
            Shift::Weekly => f.write_str("weekly"),
            Shift::Days(n) => write!(f, "{n}d"),
            Shift::Hours(n) => write!(f, "{n}h"),
        }
    }
}

/// An ordered list of people taking turns.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub name: String,
    /// Person ids in turn order; never empty in a validated config.
    pub members: Vec<String>,
    pub shift: Shift,
    /// Local time of day at which shifts change (and the first one starts).
    pub handoff: Time,
    /// The zone `handoff` and `start` are in.
    pub zone: TimeZone,
    /// The civil date of the first handoff: the first member's first shift starts at
    /// `start` `handoff` in `zone`.
    pub start: Date,
}

/// A temporary replacement in one rotation: `person` is on call from `from` until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// Allocated in creation order by the store.
    pub id: u64,
    pub rotation: String,
    pub person: String,
    pub from: Timestamp,
    /// Exclusive end.
    pub until: Timestamp,
    /// Who created it, e.g. `user:alice`.
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: Timestamp,
}

impl Override {
    pub fn covers(&self, at: Timestamp) -> bool {
        self.from <= at && at < self.until
    }
}

/// The override in force for `rotation` at `at`: the covering one created last (highest id).
pub fn override_at<'a>(
    rotation: &str,
    at: Timestamp,
    overrides: &'a [Override],
) -> Option<&'a Override> {
    overrides.iter().filter(|o| o.rotation == rotation && o.covers(at)).max_by_key(|o| o.id)
}

impl Rotation {
    /// Who is on call at `at`: the override in force, else the scheduled member.
    pub fn on_call<'a>(&'a self, at: Timestamp, overrides: &'a [Override]) -> Option<&'a str> {
        match override_at(&self.name, at, overrides) {
            Some(o) => Some(o.person.as_str()),
            None => self.scheduled(at),
        }
    }

    /// The member the schedule puts on call at `at`, ignoring overrides.
    pub fn scheduled(&self, at: Timestamp) -> Option<&str> {
        if self.members.is_empty() {
            return None;
        }
        let n = self.members.len() as u64;
        let index = (self.shift_index(at) % n) as usize;
        Some(self.members[index].as_str())
    }

    /// The first handoff: `start` at `handoff` in `zone`.
    pub fn first_handoff(&self) -> Timestamp {
        self.handoff_on(self.start)
    }

    /// The next shift change strictly after `at`, ignoring overrides. Before the first
    /// handoff the first member's pre-start time runs into their first shift, so this is the
    /// end of that first shift. `None` only past the end of representable time.
    pub fn next_handoff(&self, at: Timestamp) -> Option<Timestamp> {
        let next = self.shift_index(at).checked_add(1)?;
        self.shift_start(next)
    }

    /// Which shift (0, 1, …) covers `at`; 0 before the first handoff too.
    pub fn shift_index(&self, at: Timestamp) -> u64 {
        match self.shift.days() {
            Some(per_shift) => {
                let day = self.shift_day(at);
                let days = day.duration_since(self.start).as_secs().div_euclid(86_400);
                if days < 0 { 0 } else { (days / per_shift) as u64 }
            }
            None => {
                let hours = match self.shift {
                    Shift::Hours(h) => i64::from(h.max(1)),
                    _ => 1,
                };
                let elapsed = at.duration_since(self.first_handoff()).as_secs();
                if elapsed < 0 { 0 } else { (elapsed / (hours * 3600)) as u64 }
            }
        }
    }

    /// When shift `index` begins (`index` 0: the first handoff).
    pub fn shift_start(&self, index: u64) -> Option<Timestamp> {
        let index = i64::try_from(index).ok()?;
        match self.shift.days() {
            Some(per_shift) => {
                let days = index.checked_mul(per_shift)?;
                let date = self.start.checked_add(Span::new().try_days(days).ok()?).ok()?;
                Some(self.handoff_on(date))
            }
            None => {
                let hours = match self.shift {
                    Shift::Hours(h) => i64::from(h.max(1)),
                    _ => 1,
                };
                let d = SignedDuration::try_from_hours(index.checked_mul(hours)?)?;
                self.first_handoff().checked_add(d).ok()
            }
        }
    }

    /// The instant of the handoff on civil date `date` (compatible rule for gaps and folds).
    fn handoff_on(&self, date: Date) -> Timestamp {
        self.zone.to_timestamp(date.to_datetime(self.handoff)).unwrap_or(if date < self.start {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        })
    }

    /// The civil date whose handoff began the day `at` falls in: today's date in `zone` if
    /// today's handoff has passed, else yesterday's.
    fn shift_day(&self, at: Timestamp) -> Date {
        let mut day = self.zone.to_datetime(at).date();
        // At most a step or two: the local date and the handoff instant can disagree only
        // around a handoff inside a clock change.
        for _ in 0..3 {
            if self.handoff_on(day) > at {
                match day.yesterday() {
                    Ok(d) => day = d,
                    Err(_) => break,
                }
            } else {
                break;
            }
        }
        for _ in 0..3 {
            match day.tomorrow() {
                Ok(next) if self.handoff_on(next) <= at => day = next,
                _ => break,
            }
        }
        day
    }
}

/// What fills a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleFill {
    /// Always this person (by id).
    Person(String),
    /// Whoever is on call for this rotation (by name).
    Rotation(String),
}

/// Role name → what fills it; `None`: the role exists but nobody fills it.
pub type Roles = BTreeMap<String, Option<RoleFill>>;

/// Who holds each filled role at `at`: role → person id. Unfilled roles, and roles filled by a
/// rotation that is unknown or has no members, are left out.
pub fn resolve_roles(
    roles: &Roles,
    rotations: &BTreeMap<String, Rotation>,
    overrides: &[Override],
    at: Timestamp,
) -> BTreeMap<String, String> {
    roles
        .iter()
        .filter_map(|(role, fill)| {
            let person = match fill.as_ref()? {
                RoleFill::Person(id) => id.as_str(),
                RoleFill::Rotation(name) => rotations.get(name)?.on_call(at, overrides)?,
            };
            Some((role.clone(), person.to_string()))
        })
        .collect()
}

/// One person's on-call settings.
#[derive(Debug, Clone)]
pub struct PersonPrefs {
    /// Their time zone (IANA name in the config); UTC unless given.
    pub zone: TimeZone,
    /// Preferred message language (a tag such as `en` or `de`); `en` unless given.
    pub language: String,
}

impl Default for PersonPrefs {
    fn default() -> Self {
        PersonPrefs { zone: TimeZone::UTC, language: "en".to_string() }
    }
}

/// The validated on-call part of the config: rotations, roles, and people's zones and
/// languages. Held by [`crate::config::Config::roster`].
#[derive(Debug, Clone)]
pub struct Roster {
    pub rotations: BTreeMap<String, Rotation>,
    /// Every role: the built-in ones (possibly unfilled) and any the config adds.
    pub roles: Roles,
    /// Person id → zone and language, for every person in `people`.
    pub people: BTreeMap<String, PersonPrefs>,
}

impl Default for Roster {
    fn default() -> Self {
        Roster {
            rotations: BTreeMap::new(),
            roles: BUILTIN_ROLES.iter().map(|r| (r.to_string(), None)).collect(),
            people: BTreeMap::new(),
        }
    }
}

impl Roster {
    /// Who holds each filled role at `at` (role → person id), for an incident that opens now.
    /// Overrides naming someone no longer in `people` (the config changed since) are ignored.
    /// On the journal writer: `self.overrides.with(|o| rt.config.roster.holders(now, o))`;
    /// elsewhere `journal.overrides.with(..)` — neither copies the override list.
    pub fn holders(&self, at: Timestamp, overrides: &[Override]) -> BTreeMap<String, String> {
        let usable = self.usable(overrides);
        resolve_roles(&self.roles, &self.rotations, &usable, at)
    }

    /// Who holds one role at `at`; `None` for an unknown or unfilled role.
    pub fn holder(&self, role: &str, at: Timestamp, overrides: &[Override]) -> Option<String> {
        let usable = self.usable(overrides);
        match self.roles.get(role)?.as_ref()? {
            RoleFill::Person(id) => Some(id.clone()),
            RoleFill::Rotation(name) => {
                self.rotations.get(name)?.on_call(at, &usable).map(str::to_string)
            }
        }
    }

    /// Who is on call for rotation `name` at `at`; `None` for an unknown rotation.
    pub fn on_call(&self, name: &str, at: Timestamp, overrides: &[Override]) -> Option<String> {
        let usable = self.usable(overrides);
        self.rotations.get(name)?.on_call(at, &usable).map(str::to_string)
    }

    /// A person's zone (UTC for unknown people).
    pub fn zone(&self, person: &str) -> TimeZone {
        self.people.get(person).map(|p| p.zone.clone()).unwrap_or(TimeZone::UTC)
    }

    /// A person's language (`en` for unknown people).
    pub fn language(&self, person: &str) -> &str {
        self.people.get(person).map(|p| p.language.as_str()).unwrap_or("en")
    }

    /// The overrides that can apply: for a configured rotation and a configured person
    /// (an override outlives a config change that removes either; it is then ignored).
    pub fn usable_overrides(&self, overrides: &[Override]) -> Vec<Override> {
        self.usable(overrides).into_owned()
    }

    /// Borrows when every override is usable (the usual case), so a lookup copies nothing.
    fn usable<'a>(&self, overrides: &'a [Override]) -> std::borrow::Cow<'a, [Override]> {
        let ok = |o: &Override| {
            self.people.contains_key(&o.person) && self.rotations.contains_key(&o.rotation)
        };
        if overrides.iter().all(ok) {
            std::borrow::Cow::Borrowed(overrides)
        } else {
            std::borrow::Cow::Owned(overrides.iter().filter(|o| ok(o)).cloned().collect())
        }
    }
}

/// The overrides in the store, mirrored in memory as of the last commit.
///
/// Only the journal writer changes it, after the commit that stored the change, so a reader
/// never sees an override that is not on disk. std `RwLock`: never held across an await.
#[derive(Debug, Default)]
pub struct OverrideSet {
    list: RwLock<Vec<Override>>,
}

/// One committed change to the override set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverrideChange {
    Added(Override),
    Removed(u64),
}

impl OverrideSet {
    pub fn new(list: Vec<Override>) -> OverrideSet {
        OverrideSet { list: RwLock::new(list) }
    }

    /// Runs `f` on the current overrides without copying them.
    pub fn with<R>(&self, f: impl FnOnce(&[Override]) -> R) -> R {
        f(&self.list.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// A copy of the current overrides.
    pub fn snapshot(&self) -> Vec<Override> {
        self.with(<[Override]>::to_vec)
    }

    /// Applies committed changes, in order.
    pub fn apply(&self, changes: &[OverrideChange]) {
        if changes.is_empty() {
            return;
        }
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        for change in changes {
            match change {
                OverrideChange::Added(o) => {
                    list.retain(|x| x.id != o.id);
                    list.push(o.clone());
                }
                OverrideChange::Removed(id) => list.retain(|x| x.id != *id),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, time};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn rotation(
        members: &[&str],
        shift: Shift,
        handoff: Time,
        zone: &str,
        start: Date,
    ) -> Rotation {
        Rotation {
            name: "primary".into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            shift,
            handoff,
            zone: TimeZone::get(zone).unwrap(),
            start,
        }
    }

    fn ov(id: u64, person: &str, from: &str, until: &str) -> Override {
        Override {
            id,
            rotation: "primary".into(),
            person: person.into(),
            from: ts(from),
            until: ts(until),
            by: "user:test".into(),
            reason: None,
            created_at: ts("2026-01-01T00:00:00Z"),
        }
    }

    #[test]
    fn shift_syntax_round_trips() {
        for (text, shift) in [
            ("daily", Shift::Daily),
            ("weekly", Shift::Weekly),
            ("3d", Shift::Days(3)),
            ("2w", Shift::Days(14)),
            ("12h", Shift::Hours(12)),
        ] {
            assert_eq!(Shift::parse(text), Ok(shift), "{text}");
        }
        assert_eq!(Shift::Days(3).to_string(), "3d");
        assert_eq!(Shift::parse(&Shift::Hours(8).to_string()), Ok(Shift::Hours(8)));
        for bad in ["", "d", "0d", "0h", "367d", "-1d", "3x", "1.5d", "fortnightly", "3 d"] {
            assert!(Shift::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bundled_time_zone_database_has_the_zones() {
        // Built with jiff's `tzdb-bundle-always`: works on a machine without tzdata.
        let db = jiff::tz::TimeZoneDatabase::bundled();
        for name in ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC"] {
            assert!(db.get(name).is_ok(), "{name} missing from the bundled database");
        }
    }

    /// New York, weekly from Monday 2026-03-02 09:00 EST; DST starts Sunday 2026-03-08 at
    /// 02:00 (EST -5 → EDT -4). The handoff on Monday 2026-03-09 is 09:00 EDT = 13:00 UTC,
    /// where it was 14:00 UTC the week before.
    #[test]
    fn weekly_handoff_stays_at_local_nine_across_dst() {
        let r = rotation(
            &["alice", "bob", "carol"],
            Shift::Weekly,
            time(9, 0, 0, 0),
            "America/New_York",
            date(2026, 3, 2),
        );
        assert_eq!(r.first_handoff(), ts("2026-03-02T14:00:00Z"));
        assert_eq!(r.on_call(ts("2026-03-02T13:59:59Z"), &[]), Some("alice"), "before start");
        assert_eq!(r.on_call(ts("2026-03-02T14:00:00Z"), &[]), Some("alice"));
        // 08:59 EDT on the DST week's Monday: still alice.
        assert_eq!(r.on_call(ts("2026-03-09T12:59:00Z"), &[]), Some("alice"));
        // 09:00 EDT: bob — an hour earlier in UTC than a week before.
        assert_eq!(r.on_call(ts("2026-03-09T13:00:00Z"), &[]), Some("bob"));
        assert_eq!(r.next_handoff(ts("2026-03-02T14:00:00Z")), Some(ts("2026-03-09T13:00:00Z")));
        // Alice's shift across the change lasted 7 days minus an hour.
        assert_eq!(
            ts("2026-03-09T13:00:00Z").duration_since(r.first_handoff()),
            SignedDuration::from_hours(7 * 24 - 1)
        );
        // Wraps around the members in order.
        assert_eq!(r.on_call(ts("2026-03-16T13:00:00Z"), &[]), Some("carol"));
        assert_eq!(r.on_call(ts("2026-03-23T13:00:00Z"), &[]), Some("alice"));
    }

    /// Berlin, daily at 09:00 from 2026-03-27. DST starts Sunday 2026-03-29 at 02:00 CET →
    /// 03:00 CEST. Saturday's handoff is 08:00 UTC, Sunday's 07:00 UTC.
    #[test]
    fn daily_handoff_on_the_dst_change_day() {
        let r = rotation(
            &["anna", "ben"],
            Shift::Daily,
            time(9, 0, 0, 0),
            "Europe/Berlin",
            date(2026, 3, 27),
        );
        // Fri anna, Sat ben, Sun anna, Mon ben.
        assert_eq!(r.on_call(ts("2026-03-28T08:00:00Z"), &[]), Some("ben"));
        // Sunday 08:59:59 CEST = 06:59:59 UTC: still Saturday's shift (ben).
        assert_eq!(r.on_call(ts("2026-03-29T06:59:59Z"), &[]), Some("ben"));
        // Sunday 09:00 CEST = 07:00 UTC: anna. (At 08:00 UTC — Saturday's handoff time in UTC —
        // anna has been on for an hour already.)
        assert_eq!(r.on_call(ts("2026-03-29T07:00:00Z"), &[]), Some("anna"));
        assert_eq!(r.next_handoff(ts("2026-03-28T12:00:00Z")), Some(ts("2026-03-29T07:00:00Z")));
        assert_eq!(r.next_handoff(ts("2026-03-29T07:00:00Z")), Some(ts("2026-03-30T07:00:00Z")));
        // Autumn: DST ends Sunday 2026-10-25 03:00 CEST → 02:00 CET; the 25-hour day.
        let sat = r.shift_start(r.shift_index(ts("2026-10-24T12:00:00Z"))).unwrap();
        assert_eq!(sat, ts("2026-10-24T07:00:00Z"));
        assert_eq!(r.next_handoff(sat), Some(ts("2026-10-25T08:00:00Z")));
    }

    /// A query whose UTC date is not the local date: 2026-03-10 01:30 UTC is still
    /// 2026-03-09 21:30 EDT in New York, and 2026-03-10 07:00 in Kolkata (+05:30).
    #[test]
    fn local_date_not_utc_date_decides() {
        let ny = rotation(
            &["a", "b"],
            Shift::Daily,
            time(22, 0, 0, 0),
            "America/New_York",
            date(2026, 3, 9),
        );
        // First shift starts 2026-03-09 22:00 EDT = 2026-03-10 02:00 UTC.
        assert_eq!(ny.first_handoff(), ts("2026-03-10T02:00:00Z"));
        assert_eq!(ny.on_call(ts("2026-03-10T01:30:00Z"), &[]), Some("a"), "before start");
        assert_eq!(ny.on_call(ts("2026-03-11T01:59:00Z"), &[]), Some("a"));
        assert_eq!(ny.on_call(ts("2026-03-11T02:00:00Z"), &[]), Some("b"));

        let india =
            rotation(&["a", "b"], Shift::Daily, time(6, 0, 0, 0), "Asia/Kolkata", date(2026, 3, 9));
        // 2026-03-10 00:15 UTC = 05:45 IST on the 10th: before the 10th's 06:00 handoff, so
        // still the 9th's shift (a), though the UTC date is already the 10th.
        assert_eq!(india.on_call(ts("2026-03-10T00:15:00Z"), &[]), Some("a"));
        // 2026-03-10 00:30 UTC = 06:00 IST: b.
        assert_eq!(india.on_call(ts("2026-03-10T00:30:00Z"), &[]), Some("b"));
        // 2026-03-09 23:00 UTC = 04:30 IST on the 10th, after midnight local but before the
        // handoff: a.
        assert_eq!(india.on_call(ts("2026-03-09T23:00:00Z"), &[]), Some("a"));
    }

    #[test]
    fn handoff_inside_a_gap_happens_after_it() {
        // 02:30 does not exist in New York on 2026-03-08: that handoff is at 03:30 EDT.
        let r = rotation(
            &["x", "y"],
            Shift::Daily,
            time(2, 30, 0, 0),
            "America/New_York",
            date(2026, 3, 7),
        );
        assert_eq!(r.next_handoff(ts("2026-03-07T12:00:00Z")), Some(ts("2026-03-08T07:30:00Z")));
        assert_eq!(r.on_call(ts("2026-03-08T07:29:59Z"), &[]), Some("x"));
        assert_eq!(r.on_call(ts("2026-03-08T07:30:00Z"), &[]), Some("y"));
    }

    #[test]
    fn custom_day_and_hour_shifts() {
        let three =
            rotation(&["a", "b"], Shift::Days(3), time(9, 0, 0, 0), "UTC", date(2026, 1, 1));
        assert_eq!(three.on_call(ts("2026-01-03T23:00:00Z"), &[]), Some("a"));
        assert_eq!(three.on_call(ts("2026-01-04T08:59:59Z"), &[]), Some("a"));
        assert_eq!(three.on_call(ts("2026-01-04T09:00:00Z"), &[]), Some("b"));
        assert_eq!(three.on_call(ts("2026-01-07T09:00:00Z"), &[]), Some("a"));
        assert_eq!(
            three.next_handoff(ts("2026-01-04T09:00:00Z")),
            Some(ts("2026-01-07T09:00:00Z"))
        );

        // 12-hour shifts from 08:00 Berlin are fixed durations: after the spring change they
        // hand off at 09:00 and 21:00 local.
        let twelve = rotation(
            &["day", "night"],
            Shift::Hours(12),
            time(8, 0, 0, 0),
            "Europe/Berlin",
            date(2026, 3, 28),
        );
        assert_eq!(twelve.first_handoff(), ts("2026-03-28T07:00:00Z"));
        assert_eq!(twelve.on_call(ts("2026-03-28T18:59:59Z"), &[]), Some("day"));
        assert_eq!(twelve.on_call(ts("2026-03-28T19:00:00Z"), &[]), Some("night"));
        assert_eq!(twelve.on_call(ts("2026-03-29T07:00:00Z"), &[]), Some("day"));
        assert_eq!(
            twelve.next_handoff(ts("2026-03-29T07:00:00Z")),
            Some(ts("2026-03-29T19:00:00Z"))
        );
        // Before the start: the first member, and the next handoff ends their first shift.
        assert_eq!(twelve.on_call(ts("2026-01-01T00:00:00Z"), &[]), Some("day"));
        assert_eq!(
            twelve.next_handoff(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-03-28T19:00:00Z"))
        );
    }

    #[test]
    fn member_order_is_the_turn_order() {
        let r = rotation(&["c", "a", "b"], Shift::Daily, time(0, 0, 0, 0), "UTC", date(2026, 1, 1));
        let order: Vec<&str> = (1..=6)
            .map(|d| r.on_call(ts(&format!("2026-01-{d:02}T12:00:00Z")), &[]).unwrap())
            .collect();
        assert_eq!(order, ["c", "a", "b", "c", "a", "b"]);
        let one = rotation(&["solo"], Shift::Weekly, time(9, 0, 0, 0), "UTC", date(2026, 1, 1));
        assert_eq!(one.on_call(ts("2030-06-01T00:00:00Z"), &[]), Some("solo"));
        let none = rotation(&[], Shift::Weekly, time(9, 0, 0, 0), "UTC", date(2026, 1, 1));
        assert_eq!(none.on_call(ts("2030-06-01T00:00:00Z"), &[]), None);
    }

    #[test]
    fn overrides_win_while_they_last_and_the_latest_wins() {
        let r =
            rotation(&["alice", "bob"], Shift::Weekly, time(9, 0, 0, 0), "UTC", date(2026, 1, 5));
        let overrides = [
            ov(1, "carol", "2026-01-06T00:00:00Z", "2026-01-08T00:00:00Z"),
            ov(2, "dave", "2026-01-07T00:00:00Z", "2026-01-07T12:00:00Z"),
            // Another rotation's override never applies here.
            Override {
                rotation: "secondary".into(),
                ..ov(3, "erin", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z")
            },
        ];
        assert_eq!(r.on_call(ts("2026-01-05T23:59:59Z"), &overrides), Some("alice"));
        assert_eq!(r.on_call(ts("2026-01-06T00:00:00Z"), &overrides), Some("carol"));
        // Both cover: the later-created one (higher id) wins.
        assert_eq!(r.on_call(ts("2026-01-07T06:00:00Z"), &overrides), Some("dave"));
        assert_eq!(r.on_call(ts("2026-01-07T12:00:00Z"), &overrides), Some("carol"));
        // `until` is exclusive: the schedule is back.
        assert_eq!(r.on_call(ts("2026-01-08T00:00:00Z"), &overrides), Some("alice"));
        // The order in the slice does not matter, only the id.
        let reversed: Vec<Override> = overrides.iter().rev().cloned().collect();
        assert_eq!(r.on_call(ts("2026-01-07T06:00:00Z"), &reversed), Some("dave"));
        // next_handoff follows the schedule, not overrides.
        assert_eq!(r.next_handoff(ts("2026-01-07T06:00:00Z")), Some(ts("2026-01-12T09:00:00Z")));
    }

    #[test]
    fn roles_resolve_through_people_and_rotations() {
        let primary =
            rotation(&["alice", "bob"], Shift::Daily, time(9, 0, 0, 0), "UTC", date(2026, 1, 1));
        let mut roster = Roster::default();
        for p in ["alice", "bob", "carol", "dave"] {
            roster.people.insert(p.into(), PersonPrefs::default());
        }
        roster.rotations.insert("primary".into(), primary);
        roster.roles.insert("incident_lead".into(), Some(RoleFill::Rotation("primary".into())));
        roster.roles.insert("legal_liaison".into(), Some(RoleFill::Person("carol".into())));
        roster.roles.insert("scribe".into(), None);
        let at = ts("2026-01-02T10:00:00Z");
        let holders = roster.holders(at, &[]);
        assert_eq!(
            holders,
            BTreeMap::from([
                ("incident_lead".to_string(), "bob".to_string()),
                ("legal_liaison".to_string(), "carol".to_string()),
            ])
        );
        // Built-in roles exist though unfilled.
        assert!(BUILTIN_ROLES.iter().all(|r| roster.roles.contains_key(*r)));
        assert_eq!(roster.holder("technical_lead", at, &[]), None);
        assert_eq!(roster.holder("nope", at, &[]), None);
        // An override moves the role; one naming a person since removed from the config is
        // ignored.
        let o = ov(7, "dave", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z");
        assert_eq!(
            roster.holder("incident_lead", at, std::slice::from_ref(&o)).as_deref(),
            Some("dave")
        );
        let ghost = Override { person: "mallory".into(), ..o.clone() };
        assert_eq!(roster.holder("incident_lead", at, &[ghost]).as_deref(), Some("bob"));
        assert_eq!(roster.on_call("primary", at, &[o]).as_deref(), Some("dave"));
        assert_eq!(roster.on_call("absent", at, &[]), None);
        assert_eq!(roster.zone("nobody").iana_name(), Some("UTC"));
        assert_eq!(roster.language("alice"), "en");
    }

    #[test]
    fn override_set_applies_committed_changes() {
        let set =
            OverrideSet::new(vec![ov(1, "a", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")]);
        set.apply(&[
            OverrideChange::Added(ov(2, "b", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")),
            OverrideChange::Removed(1),
        ]);
        let ids: Vec<u64> = set.snapshot().iter().map(|o| o.id).collect();
        assert_eq!(ids, [2]);
        assert_eq!(set.with(|l| l.len()), 1);
    }
}
