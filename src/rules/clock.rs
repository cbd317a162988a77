//! Time-of-day helpers for rules: `local_hour(tz)`, `local_weekday(tz)`,
//! `is_business_hours(tz)` and `is_night(tz)`, so that a rule need not work out a zone's hour
//! from UTC itself.
//!
//! "Now" is the event's arrival time (`received_at`), as for `incident.age_seconds`: the
//! daemon's clock when it arrived (a manual clock under `TOCSIN_FAKE_CLOCK`, the simulated one
//! in drills, a case's `at` in `tocsin test`), so replaying an event gives the same answer.
//! Business hours and night are the config's `rules.business_hours` and `rules.night`.
//!
//! The rule memo keys a remembered outcome by each helper call's result when the time zone
//! is a string literal (see `memo`), so a script that reads the hour is run again when the
//! hour changes, not served a stale outcome. A zone named by a literal is checked when the
//! rule loads.

use std::cell::RefCell;
use std::collections::HashMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use rhai::Dynamic;

/// Working days and hours, and the night, in the time zone a rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    /// Monday first.
    pub business_days: [bool; 7],
    /// Minutes after local midnight: business hours are `from` ≤ t < `to` on a business day.
    pub business_from: u16,
    pub business_to: u16,
    /// Night is `from` ≤ t or t < `to` when `from` > `to` (across midnight), else between.
    pub night_from: u16,
    pub night_to: u16,
}

impl Default for Hours {
    /// Monday to Friday 09:00–17:00; night 22:00–07:00.
    fn default() -> Self {
        Hours {
            business_days: [true, true, true, true, true, false, false],
            business_from: 9 * 60,
            business_to: 17 * 60,
            night_from: 22 * 60,
            night_to: 7 * 60,
        }
    }
}

/// The helpers, by the name scripts call them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Helper {
    LocalHour,
    LocalWeekday,
    IsBusinessHours,
    IsNight,
}

impl Helper {
    pub(super) const ALL: [Helper; 4] =
        [Helper::LocalHour, Helper::LocalWeekday, Helper::IsBusinessHours, Helper::IsNight];

    pub(super) fn name(self) -> &'static str {
        match self {
            Helper::LocalHour => "local_hour",
            Helper::LocalWeekday => "local_weekday",
            Helper::IsBusinessHours => "is_business_hours",
            Helper::IsNight => "is_night",
        }
    }

    pub(super) fn parse(name: &str) -> Option<Helper> {
        Helper::ALL.into_iter().find(|h| h.name() == name)
    }

    /// The helper's answer at `now` in the zone named `tz`.
    pub(super) fn answer(self, tz: &str, now: Timestamp, hours: &Hours) -> Result<Dynamic, String> {
        let local = now.to_zoned_datetime(zone(tz)?);
        let minute = u16::try_from(i32::from(local.hour()) * 60 + i32::from(local.minute()))
            .unwrap_or_default();
        let weekday = local.weekday().to_monday_one_offset();
        Ok(match self {
            Helper::LocalHour => Dynamic::from(i64::from(local.hour())),
            Helper::LocalWeekday => Dynamic::from(i64::from(weekday)),
            Helper::IsBusinessHours => {
                let day =
                    usize::try_from(weekday - 1).ok().and_then(|d| hours.business_days.get(d));
                let open = minute >= hours.business_from && minute < hours.business_to;
                Dynamic::from(day.copied().unwrap_or(false) && open)
            }
            Helper::IsNight => Dynamic::from(if hours.night_from > hours.night_to {
                minute >= hours.night_from || minute < hours.night_to
            } else {
                minute >= hours.night_from && minute < hours.night_to
            }),
        })
    }
}

/// Zones looked up per thread before the cache starts over (a rule names a handful).
const ZONES: usize = 64;

/// The time zone named `name` (IANA, e.g. `Europe/Berlin`), or why not. Kept per thread: a
/// lookup in the time-zone database parses its rules.
pub(super) fn zone(name: &str) -> Result<TimeZone, String> {
    thread_local! {
        static CACHE: RefCell<HashMap<String, TimeZone>> = RefCell::new(HashMap::new());
    }
    if let Some(tz) = CACHE.with_borrow(|c| c.get(name).cloned()) {
        return Ok(tz);
    }
    // A name is at most a few dozen characters; a longer text is not one (and is not copied
    // into the message whole).
    let known = (name.len() <= 64).then(|| TimeZone::get(name).ok()).flatten();
    let tz = known.ok_or_else(|| {
        let shown: String = name.chars().take(64).collect();
        format!(
            "{shown:?} is not a time zone; use an IANA name such as \"Europe/Berlin\" or \
             \"America/New_York\""
        )
    })?;
    CACHE.with_borrow_mut(|c| {
        if c.len() >= ZONES {
            c.clear();
        }
        c.insert(name.to_owned(), tz.clone());
    });
    Ok(tz)
}
