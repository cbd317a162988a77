//! Timers: escalation steps, notice reminders and deadlines, status-update and action-item
//! reminders, by due time and by incident.

use jiff::Timestamp;
use redb::{ReadableTable, TableDefinition};

use super::StoreError;
use super::codec::decode_timer;
use super::shell::{Batch, Store, caught};
use crate::escalation::Timer;
use crate::incident::IncidentId;

/// (due time in ms since the epoch, timer id) → timer as JSON: escalation steps, notice
/// reminders and deadlines, status-update and action-item reminders, soonest first.
pub(super) const TIMERS: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("timers");
/// (incident id, timer id) → its due time in ms: an incident's pending timers, so that an
/// acknowledgement or a resolve can cancel them without a scan.
pub(super) const INCIDENT_TIMERS: TableDefinition<(u64, u64), i64> =
    TableDefinition::new("incident_timers");

/// Reading pending timers, each call from one committed snapshot.
pub trait TimerReader {
    /// The earliest due time of any timer.
    fn next_timer_due(&self) -> Result<Option<Timestamp>, StoreError>;

    /// An incident's pending timers, soonest first.
    fn incident_timers(&self, incident: IncidentId) -> Result<Vec<Timer>, StoreError>;

    /// Every pending timer, soonest first, up to `limit` (for the dashboard and tests).
    fn timers(&self, limit: usize) -> Result<Vec<Timer>, StoreError>;
}

impl TimerReader for Store {
    fn next_timer_due(&self) -> Result<Option<Timestamp>, StoreError> {
        self.first_due(TIMERS)
    }

    fn incident_timers(&self, incident: IncidentId) -> Result<Vec<Timer>, StoreError> {
        let txn = self.read_txn()?;
        let index = txn.open_table(INCIDENT_TIMERS)?;
        let timers = txn.open_table(TIMERS)?;
        let mut out = Vec::new();
        for entry in index.range((incident, 0)..=(incident, u64::MAX))? {
            let (key, due) = entry?;
            if let Some(raw) = timers.get((due.value(), key.value().1))? {
                out.push(decode_timer(key.value().1, raw.value())?);
            }
        }
        out.sort_by_key(|t| (t.due_at, t.id));
        Ok(out)
    }

    fn timers(&self, limit: usize) -> Result<Vec<Timer>, StoreError> {
        let txn = self.read_txn()?;
        let timers = txn.open_table(TIMERS)?;
        let mut out = Vec::new();
        for entry in timers.iter()?.take(limit) {
            let (key, raw) = entry?;
            out.push(decode_timer(key.value().1, raw.value())?);
        }
        Ok(out)
    }
}

/// Timers inside the writer's transaction: scheduled, fired and cancelled with the change that
/// caused them.
pub trait TimerRows {
    /// Allocates the next timer id (1, 2, …), durable with the batch.
    fn next_timer_id(&mut self) -> Result<u64, StoreError>;

    /// Schedules a timer (its id from [`Batch::next_timer_id`]).
    fn put_timer(&mut self, timer: &Timer) -> Result<(), StoreError>;

    /// Cancels a timer, or removes one that fired.
    fn remove_timer(&mut self, timer: &Timer) -> Result<(), StoreError>;

    /// Timers due at or before `now`, soonest first.
    fn due_timers(&self, now: Timestamp, limit: usize) -> Result<Vec<Timer>, StoreError>;

    /// The timers due exactly at `at` (to the millisecond, as they are keyed).
    fn timers_at(&self, at: Timestamp) -> Result<Vec<Timer>, StoreError>;

    /// An incident's pending timers.
    fn incident_timers(&self, incident: IncidentId) -> Result<Vec<Timer>, StoreError>;
}

impl TimerRows for Batch<'_> {
    fn next_timer_id(&mut self) -> Result<u64, StoreError> {
        caught(|| self.next_id("next_timer_id"))
    }

    fn put_timer(&mut self, timer: &Timer) -> Result<(), StoreError> {
        caught(|| {
            let bytes = serde_json::to_vec(timer)
                .map_err(|source| StoreError::EncodeIncident { id: timer.incident, source })?;
            let due = timer.due_at.as_millisecond();
            self.timers.insert((due, timer.id), bytes.as_slice())?;
            self.incident_timers.insert((timer.incident, timer.id), due)?;
            Ok(())
        })
    }

    fn remove_timer(&mut self, timer: &Timer) -> Result<(), StoreError> {
        caught(|| {
            self.timers.remove((timer.due_at.as_millisecond(), timer.id))?;
            self.incident_timers.remove((timer.incident, timer.id))?;
            Ok(())
        })
    }

    fn due_timers(&self, now: Timestamp, limit: usize) -> Result<Vec<Timer>, StoreError> {
        caught(|| {
            let mut out = Vec::new();
            for entry in self.timers.range(..=(now.as_millisecond(), u64::MAX))?.take(limit) {
                let (key, raw) = entry?;
                out.push(decode_timer(key.value().1, raw.value())?);
            }
            Ok(out)
        })
    }

    fn timers_at(&self, at: Timestamp) -> Result<Vec<Timer>, StoreError> {
        caught(|| {
            let due = at.as_millisecond();
            let mut out = Vec::new();
            for entry in self.timers.range((due, 0)..=(due, u64::MAX))? {
                let (key, raw) = entry?;
                out.push(decode_timer(key.value().1, raw.value())?);
            }
            Ok(out)
        })
    }

    fn incident_timers(&self, incident: IncidentId) -> Result<Vec<Timer>, StoreError> {
        caught(|| {
            let mut out = Vec::new();
            for entry in self.incident_timers.range((incident, 0)..=(incident, u64::MAX))? {
                let (key, due) = entry?;
                if let Some(raw) = self.timers.get((due.value(), key.value().1))? {
                    out.push(decode_timer(key.value().1, raw.value())?);
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::*;

    #[test]
    fn queue_stats_count_the_notice_deadlines_still_pending() {
        use crate::escalation::TimerKind;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.queue_stats().unwrap().notice_deadlines, 0);
        let timer = |id, kind| Timer { id, incident: 1, due_at: Timestamp::UNIX_EPOCH, kind };
        let deadline = timer(2, TimerKind::NoticeDeadline { notice: 0 });
        store
            .write(|b| {
                b.put_timer(&timer(1, TimerKind::NoticeReminder { notice: 0 }))?;
                b.put_timer(&deadline)?;
                b.put_timer(&timer(3, TimerKind::NoticeDeadline { notice: 1 }))?;
                b.put_timer(&timer(4, TimerKind::CommsUpdate))
            })
            .unwrap();
        assert_eq!(store.queue_stats().unwrap().notice_deadlines, 2);
        // Sent (its timer cancelled) or fired: no longer pending.
        store.write(|b| b.remove_timer(&deadline)).unwrap();
        assert_eq!(store.queue_stats().unwrap().notice_deadlines, 1);
    }
}
