//! What people administer and the id counters: maintenance windows, rotation overrides, meta.

use redb::{ReadableTable, TableDefinition};

use super::StoreError;
use super::codec::decode_override;
use super::shell::{Batch, Store, caught};
use crate::escalation::Window;
use crate::oncall::Override;

/// Maintenance window id → window as JSON: the windows people opened through the API.
pub(super) const MAINTENANCE: TableDefinition<u64, &[u8]> =
    TableDefinition::new("maintenance_windows");
/// Override id → rotation override as JSON (see [`crate::oncall::Override`]). Ids are
/// allocated in order, so the highest covering id is the override created last.
pub(super) const ROTATION_OVERRIDES: TableDefinition<u64, &[u8]> =
    TableDefinition::new("rotation_overrides");
/// Counters: `next_incident_id`, `next_notification_id`, `next_timer_id`, `next_window_id`,
/// `next_override_id`.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Reading what people administer: maintenance windows and rotation overrides.
pub trait AdminReader {
    /// The maintenance windows opened through the API, oldest first.
    fn maintenance_windows(&self) -> Result<Vec<Window>, StoreError>;

    /// Every stored rotation override, oldest first: read at start-up into the writer's
    /// in-memory [`crate::oncall::OverrideSet`].
    fn overrides(&self) -> Result<Vec<Override>, StoreError>;
}

impl AdminReader for Store {
    fn maintenance_windows(&self) -> Result<Vec<Window>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(MAINTENANCE)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, raw) = entry?;
            out.push(
                serde_json::from_slice(raw.value())
                    .map_err(|source| StoreError::DecodeNotification { id: key.value(), source })?,
            );
        }
        Ok(out)
    }

    fn overrides(&self) -> Result<Vec<Override>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(ROTATION_OVERRIDES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (id, raw) = entry?;
            out.push(decode_override(id.value(), raw.value())?);
        }
        Ok(out)
    }
}

/// Maintenance windows and rotation overrides inside the writer's transaction; their ids are
/// allocated durably with the batch.
pub trait AdminRows {
    /// Allocates the next maintenance window id (1, 2, …), durable with the batch.
    fn next_window_id(&mut self) -> Result<u64, StoreError>;

    /// Stores a maintenance window (its id from [`AdminRows::next_window_id`]).
    fn put_window(&mut self, id: u64, window: &Window) -> Result<(), StoreError>;

    /// Deletes a maintenance window; answers whether it existed.
    fn remove_window(&mut self, id: u64) -> Result<bool, StoreError>;

    /// Allocates the next rotation override id (1, 2, …), durable with the batch.
    fn next_override_id(&mut self) -> Result<u64, StoreError>;

    /// Stores a rotation override (its id from [`AdminRows::next_override_id`]).
    fn put_override(&mut self, o: &Override) -> Result<(), StoreError>;

    /// One rotation override as of this batch.
    fn rotation_override(&self, id: u64) -> Result<Option<Override>, StoreError>;

    /// Deletes an override; returns it if it existed.
    fn delete_override(&mut self, id: u64) -> Result<Option<Override>, StoreError>;
}

impl Batch<'_> {
    /// Counters are read on first use in a batch and written once at its end (an alert storm
    /// allocates thousands of incident ids per batch: one read and one write instead of one each
    /// per incident).
    pub(super) fn next_id(&mut self, counter: &'static str) -> Result<u64, StoreError> {
        caught(|| {
            let slot = match self.counters.iter().position(|(name, _)| *name == counter) {
                Some(i) => i,
                None => {
                    let next = self.meta.get(counter)?.map(|v| v.value()).unwrap_or(1);
                    self.counters.push((counter, next));
                    self.counters.len() - 1
                }
            };
            let next = self.counters[slot].1;
            self.counters[slot].1 = next + 1;
            Ok(next)
        })
    }

    /// Writes the counters this batch advanced (see [`Batch::next_id`]).
    pub(super) fn save_counters(&mut self) -> Result<(), StoreError> {
        caught(|| {
            for (name, next) in std::mem::take(&mut self.counters) {
                self.meta.insert(name, next)?;
            }
            Ok(())
        })
    }
}

impl AdminRows for Batch<'_> {
    fn next_window_id(&mut self) -> Result<u64, StoreError> {
        caught(|| self.next_id("next_window_id"))
    }

    fn put_window(&mut self, id: u64, window: &Window) -> Result<(), StoreError> {
        caught(|| {
            let bytes = serde_json::to_vec(window)
                .map_err(|source| StoreError::EncodeIncident { id: 0, source })?;
            self.maintenance.insert(id, bytes.as_slice())?;
            Ok(())
        })
    }

    fn remove_window(&mut self, id: u64) -> Result<bool, StoreError> {
        caught(|| Ok(self.maintenance.remove(id)?.is_some()))
    }

    fn next_override_id(&mut self) -> Result<u64, StoreError> {
        caught(|| self.next_id("next_override_id"))
    }

    fn put_override(&mut self, o: &Override) -> Result<(), StoreError> {
        caught(|| {
            let bytes = serde_json::to_vec(o)
                .map_err(|source| StoreError::Override { id: o.id, source })?;
            self.overrides.insert(o.id, bytes.as_slice())?;
            Ok(())
        })
    }

    fn rotation_override(&self, id: u64) -> Result<Option<Override>, StoreError> {
        caught(|| match self.overrides.get(id)? {
            Some(raw) => decode_override(id, raw.value()).map(Some),
            None => Ok(None),
        })
    }

    fn delete_override(&mut self, id: u64) -> Result<Option<Override>, StoreError> {
        caught(|| {
            let old = self.rotation_override(id)?;
            if old.is_some() {
                self.overrides.remove(id)?;
            }
            Ok(old)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::*;

    fn o(id: u64, person: &str) -> Override {
        Override {
            id,
            rotation: "primary".into(),
            person: person.into(),
            from: "2026-01-01T00:00:00Z".parse().unwrap(),
            until: "2026-01-02T00:00:00Z".parse().unwrap(),
            by: "user:t".into(),
            reason: Some("swap".into()),
            created_at: "2025-12-31T00:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn overrides_are_stored_listed_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ids = store
            .write(|b| {
                let a = b.next_override_id()?;
                let c = b.next_override_id()?;
                b.put_override(&o(a, "ann"))?;
                b.put_override(&o(c, "cid"))?;
                Ok((a, c))
            })
            .unwrap();
        assert_eq!(ids, (1, 2));
        assert_eq!(store.overrides().unwrap(), [o(1, "ann"), o(2, "cid")]);
        let gone = store.write(|b| b.delete_override(1)).unwrap();
        assert_eq!(gone, Some(o(1, "ann")));
        assert_eq!(store.write(|b| b.delete_override(1)).unwrap(), None);
        drop(store);
        // Reopened: the remaining one is there and ids keep growing.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.overrides().unwrap(), [o(2, "cid")]);
        assert_eq!(store.write(|b| b.next_override_id()).unwrap(), 3);
    }
}
