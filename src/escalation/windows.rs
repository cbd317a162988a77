//! Maintenance windows that hold incidents back: re-checking a hold when the windows changed
//! under it (a reload of `maintenance:`, or a hold an earlier version kept no timer for).
//!
//! Plain functions of (the windows, the hold, now): the journal writer moves the incident's
//! window-end timer and writes the line they return.

use jiff::Timestamp;

use super::{Held, Window};

/// An incident an earlier version held back for window `name` (ending `until`, as its
/// suppression text said) without a timer for the window's end: the hold as it stands in
/// the config's and the API's windows, and the timeline line that says so.
pub fn legacy_hold(
    config: &[Window],
    api: &[Window],
    name: &str,
    until: Option<Timestamp>,
    now: Timestamp,
) -> (Held, String) {
    let named: Vec<&Window> = config.iter().chain(api).filter(|w| w.name == name).collect();
    let window = named.iter().find(|w| Some(w.ends) == until).or(named.first());
    let held = match window {
        Some(w) => w.held(),
        // Gone from the config (and not an API window): over.
        None => Held {
            window: name.to_string(),
            id: None,
            until: until.filter(|u| *u <= now).unwrap_or(now),
        },
    };
    let line = if held.until > now {
        format!(
            "maintenance window `{}` holds this incident back until {} (held by an earlier version, which kept no timer for the window's end): it pages then if still triggered",
            held.window, held.until
        )
    } else {
        format!(
            "maintenance window `{}` held this incident back and ended at {} (held by an earlier version, which did not page when a window ended): it pages now if still triggered",
            held.window, held.until
        )
    };
    (held, line)
}

/// An incident held by a config window (`was`), after the config's windows changed: the new
/// hold and its timeline line when the window now ends at another time or is gone; `None`
/// when nothing changed for it (or its timer is due already).
pub fn config_hold_moved(config: &[Window], was: &Held, now: Timestamp) -> Option<(Held, String)> {
    let named = || config.iter().filter(|w| w.name == was.window);
    match named().find(|w| w.ends == was.until).or_else(|| named().next()) {
        Some(w) if w.ends == was.until => None,
        Some(w) if w.ends > now => Some((
            w.held(),
            format!(
                "maintenance window `{}` now ends at {} (the config changed; it was to end at {}): held back until then, it pages then if still triggered",
                w.name, w.ends, was.until
            ),
        )),
        // Its timer is due already.
        _ if was.until <= now => None,
        Some(w) => Some((
            Held { until: now, ..w.held() },
            format!(
                "maintenance window `{}` ended at {} (the config changed; it was to end at {}): it pages now if still triggered",
                w.name, w.ends, was.until
            ),
        )),
        None => Some((
            Held { until: now, ..was.clone() },
            format!(
                "maintenance window `{}` is no longer in the config (it was to end at {}): it pages now if still triggered",
                was.window, was.until
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escalation::testing::*;

    fn window(name: &str, ends: Timestamp) -> Window {
        Window {
            id: None,
            created: None,
            name: name.into(),
            starts: t0(),
            ends,
            source: None,
            service: None,
            labels: Default::default(),
        }
    }

    #[test]
    fn a_legacy_hold_keeps_its_window_or_ends_now_when_the_window_is_gone() {
        let config = [window("db", mins(60))];
        let (held, line) = legacy_hold(&config, &[], "db", Some(mins(60)), mins(10));
        assert_eq!(held.until, mins(60));
        assert!(line.contains("pages then"));
        let (held, line) = legacy_hold(&[], &[], "gone", Some(mins(60)), mins(10));
        assert_eq!(held.until, mins(10));
        assert!(line.contains("pages now"));
    }

    #[test]
    fn a_config_hold_follows_its_window_when_the_config_moves_or_drops_it() {
        let was = window("db", mins(60)).held();
        assert_eq!(config_hold_moved(&[window("db", mins(60))], &was, mins(10)), None);
        let (held, _) = config_hold_moved(&[window("db", mins(90))], &was, mins(10)).unwrap();
        assert_eq!(held.until, mins(90));
        let (held, line) = config_hold_moved(&[window("db", mins(5))], &was, mins(10)).unwrap();
        assert_eq!(held.until, mins(10));
        assert!(line.contains("ended at"));
        let (held, line) = config_hold_moved(&[], &was, mins(10)).unwrap();
        assert_eq!(held.until, mins(10));
        assert!(line.contains("no longer in the config"));
    }
}
