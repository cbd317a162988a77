//! The daemon's sense of "now", injectable so that escalation timers, notice deadlines and
//! drills can be driven by a simulated clock while the rest of the pipeline stays real.
//!
//! Everything that stamps or schedules (ingest's `received_at`, the journal writer, delivery
//! claims and backoffs, the timer scheduler) asks a [`Clock`] instead of calling
//! `Timestamp::now()`. The daemon runs on [`SystemClock`]; tests and drills use a
//! [`ManualClock`] that moves only when told to.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use jiff::{SignedDuration, Timestamp};

pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Timestamp;

    /// A manual clock, if this is one: the `/-/clock` endpoint moves only those.
    fn manual(&self) -> Option<&ManualClock> {
        None
    }
}

pub type SharedClock = Arc<dyn Clock>;

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that stands still until set or advanced, with microsecond resolution. Never goes
/// backwards: `set` to an earlier time is refused.
#[derive(Debug)]
pub struct ManualClock {
    micros: AtomicI64,
    moved: tokio::sync::Notify,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            micros: AtomicI64::new(start.as_microsecond()),
            moved: tokio::sync::Notify::new(),
        }
    }

    /// Moves the clock forward by `by` (which must not be negative); returns the new time.
    pub fn advance(&self, by: SignedDuration) -> Result<Timestamp, String> {
        if by.is_negative() {
            return Err(format!("a clock only moves forward; cannot advance by {by:#}"));
        }
        let by = i64::try_from(by.as_micros()).map_err(|_| "advance too large".to_string())?;
        let now = self.micros.fetch_add(by, Ordering::SeqCst) + by;
        self.moved.notify_waiters();
        Timestamp::from_microsecond(now).map_err(|e| e.to_string())
    }

    /// Sets the clock to `to`, which must not be before the current time.
    pub fn set(&self, to: Timestamp) -> Result<Timestamp, String> {
        let target = to.as_microsecond();
        let mut current = self.micros.load(Ordering::SeqCst);
        loop {
            if target < current {
                return Err(format!(
                    "a clock only moves forward; {to} is before the current {}",
                    Timestamp::from_microsecond(current).unwrap_or_default()
                ));
            }
            match self.micros.compare_exchange(current, target, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        self.moved.notify_waiters();
        Ok(to)
    }

    /// Completes the next time the clock moves.
    pub async fn moved(&self) {
        self.moved.notified().await;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_microsecond(self.micros.load(Ordering::SeqCst)).unwrap_or_default()
    }

    fn manual(&self) -> Option<&ManualClock> {
        Some(self)
    }
}

/// The clock the daemon runs on: the system clock, or — for tests and rehearsals only — a
/// manual clock starting at `TOCSIN_FAKE_CLOCK` (an RFC 3339 time) that moves through
/// `POST /-/clock`.
pub fn from_env() -> anyhow::Result<SharedClock> {
    match std::env::var("TOCSIN_FAKE_CLOCK") {
        Ok(start) if !start.is_empty() => {
            let start: Timestamp = start.parse().map_err(|e| {
                anyhow::anyhow!(
                    "TOCSIN_FAKE_CLOCK must be an RFC 3339 time such as 2026-01-01T00:00:00Z: {e}"
                )
            })?;
            tracing::warn!(%start, "running on a MANUAL clock (TOCSIN_FAKE_CLOCK): time moves only through POST /-/clock; never use this in production");
            Ok(Arc::new(ManualClock::new(start)))
        }
        _ => Ok(Arc::new(SystemClock)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward() {
        let t0: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        let c = ManualClock::new(t0);
        assert_eq!(c.now(), t0);
        let t1 = c.advance(SignedDuration::from_mins(5)).unwrap();
        assert_eq!(t1, "2026-03-01T00:05:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(c.now(), t1);
        assert!(c.advance(SignedDuration::from_secs(-1)).is_err());
        assert!(c.set(t0).is_err());
        assert_eq!(c.now(), t1);
        let t2: Timestamp = "2026-03-02T00:00:00Z".parse().unwrap();
        assert_eq!(c.set(t2).unwrap(), t2);
        assert_eq!(c.now(), t2);
    }
}
