//! The outbox: notifications, their due, dead-letter and per-incident indexes, and the webhook
//! endpoints disabled after a 410 Gone.

use jiff::Timestamp;
use redb::{ReadableTable, TableDefinition};

use super::StoreError;
use super::codec::{decode_notification, decode_timer};
use super::shell::{Batch, Store, caught};
use super::timers::TIMERS;
use crate::incident::IncidentId;
use crate::outbox::{Notification, NotificationId, State};

/// Notification id → notification as JSON (the outbox).
pub(super) const NOTIFICATIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("notifications");
/// (due time in ms since the epoch, notification id) → (): the pending notifications in the
/// order they are due; a claimed one is keyed by its lease's end, so it is due again if the
/// process dies mid-send.
pub(super) const DUE: TableDefinition<(i64, u64), ()> = TableDefinition::new("notifications_due");
/// (incident id, notification id) → (): an incident's notifications.
pub(super) const INCIDENT_NOTIFICATIONS: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("incident_notifications");
/// (channel, notification id) → (): the dead-lettered notifications, so that the dashboard's
/// delivery health and queue page find them without reading the whole outbox history. Kept in
/// step by [`Batch::put_notification`]; built once from the outbox by [`Store::open`] for a
/// file written before it existed (meta `dead_index`).
pub(super) const DEAD: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("notifications_dead");
/// Webhook endpoint name → why it was disabled (it answered 410 Gone).
pub(super) const DISABLED_ENDPOINTS: TableDefinition<&str, &str> =
    TableDefinition::new("disabled_endpoints");

/// What the outbox holds right now, for metrics and the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Pending notifications (queued, retrying or being sent), by channel.
    pub pending: std::collections::BTreeMap<String, u64>,
    /// When the longest-waiting pending notification was created.
    pub oldest: Option<Timestamp>,
    /// Notice deadlines still pending (the notice is not marked as sent, the deadline has not
    /// fired yet).
    pub notice_deadlines: u64,
}

/// Reading the outbox, each call from one committed snapshot: one notification, pages of
/// them (all, dead-lettered, pending), an incident's, the queue's state for health and metrics.
pub trait OutboxReader {
    /// One notification by id.
    fn notification(&self, id: NotificationId) -> Result<Option<Notification>, StoreError>;

    /// Notifications newest first that pass `keep`, paged by `before`.
    fn notifications(
        &self,
        before: Option<NotificationId>,
        limit: usize,
        keep: impl Fn(&Notification) -> bool,
    ) -> Result<Vec<Notification>, StoreError>;

    /// Dead-lettered notifications older than `before` that pass `keep`, newest first, at most
    /// `limit` (from the dead-letter index, not the whole outbox).
    fn dead_notifications(
        &self,
        before: Option<NotificationId>,
        limit: usize,
        keep: impl Fn(&Notification) -> bool,
    ) -> Result<Vec<Notification>, StoreError>;

    /// Pending notifications (queued, sending, retrying) older than `before` that pass `keep`,
    /// newest first, at most `limit` (from the due index, not the whole outbox).
    fn pending_notifications(
        &self,
        before: Option<NotificationId>,
        limit: usize,
        keep: impl Fn(&Notification) -> bool,
    ) -> Result<Vec<Notification>, StoreError>;

    /// What delivery health needs, from the indexes rather than the whole outbox history:
    /// `pending` sees every pending notification, `dead` the channel of every dead one.
    fn delivery_health(
        &self,
        pending: impl FnMut(&Notification),
        dead: impl FnMut(&str),
    ) -> Result<(), StoreError>;

    /// Notifications newest first while `more` holds for each one read (ids grow with creation
    /// time, so a caller looking for recent ones stops at the first that is too old).
    fn recent_notifications(
        &self,
        more: impl Fn(&Notification) -> bool,
    ) -> Result<Vec<Notification>, StoreError>;

    /// An incident's notifications, oldest first.
    fn incident_notifications(&self, incident: IncidentId)
    -> Result<Vec<Notification>, StoreError>;

    /// The earliest due time of any pending notification.
    fn next_due(&self) -> Result<Option<Timestamp>, StoreError>;

    /// Pending notifications by channel and the oldest one's age (scans the due index).
    fn queue_stats(&self) -> Result<QueueStats, StoreError>;

    /// Webhook endpoint name → why it was disabled, for every disabled endpoint.
    fn disabled_endpoints(&self) -> Result<std::collections::BTreeMap<String, String>, StoreError>;
}

/// The two outbox indexes that list some notifications by id; one paging helper serves both.
#[derive(Debug, Clone, Copy)]
pub(super) enum Listed {
    /// [`DEAD`]: the dead-lettered notifications.
    Dead,
    /// [`DUE`]: the pending ones (queued, sending, retrying).
    Pending,
}

impl Store {
    /// A page of the notifications `listed` names, read from its index rather than the whole
    /// outbox (see [`newest_page`]).
    pub(super) fn listed_page(
        &self,
        listed: Listed,
        before: Option<NotificationId>,
        limit: usize,
        keep: impl Fn(&Notification) -> bool,
    ) -> Result<Vec<Notification>, StoreError> {
        let txn = self.read_txn()?;
        let ids = match listed {
            Listed::Dead => txn
                .open_table(DEAD)?
                .iter()?
                .map(|e| Ok(e?.0.value().1))
                .collect::<Result<_, StoreError>>()?,
            Listed::Pending => txn
                .open_table(DUE)?
                .iter()?
                .map(|e| Ok(e?.0.value().1))
                .collect::<Result<_, StoreError>>()?,
        };
        let table = txn.open_table(NOTIFICATIONS)?;
        let fetch = |id| match table.get(id)? {
            Some(raw) => decode_notification(id, raw.value()).map(Some),
            None => Ok(None),
        };
        newest_page(ids, before, limit, fetch, keep)
    }
}

/// Up to `limit` items that pass `keep`, newest (highest id) first, of those among `ids`
/// below `before`; an id `fetch` does not find is skipped.
pub(super) fn newest_page<T>(
    mut ids: Vec<u64>,
    before: Option<u64>,
    limit: usize,
    mut fetch: impl FnMut(u64) -> Result<Option<T>, StoreError>,
    keep: impl Fn(&T) -> bool,
) -> Result<Vec<T>, StoreError> {
    ids.retain(|id| before.is_none_or(|b| *id < b));
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let mut out = Vec::new();
    for id in ids {
        if out.len() >= limit {
            break;
        }
        if let Some(item) = fetch(id)?
            && keep(&item)
        {
            out.push(item);
        }
    }
    Ok(out)
}

impl OutboxReader for Store {
    fn notification(&self, id: NotificationId) -> Result<Option<Notification>, StoreError> {
        self.get(NOTIFICATIONS, id, decode_notification)
    }

    fn notifications(
        &self,
        before: Option<NotificationId>,
        limit: usize,
        keep: impl Fn(&Notification) -> bool,
    ) -> Result<Vec<Notification>, StoreError> {
        self.page(NOTIFICATIONS, before, limit, decode_notification, keep)
    }

    fn dead_notifications(
        &self,
        before: Option<NotificationId>,
        limit: usize,
        keep: impl Fn(&Notification) -> bool,
    ) -> Result<Vec<Notification>, StoreError> {
        self.listed_page(Listed::Dead, before, limit, keep)
    }

    fn pending_notifications(
        &self,
        before: Option<NotificationId>,
        limit: usize,
        keep: impl Fn(&Notification) -> bool,
    ) -> Result<Vec<Notification>, StoreError> {
        self.listed_page(Listed::Pending, before, limit, keep)
    }

    fn delivery_health(
        &self,
        mut pending: impl FnMut(&Notification),
        mut dead: impl FnMut(&str),
    ) -> Result<(), StoreError> {
        let txn = self.read_txn()?;
        each_pending(&txn, |n| pending(&n))?;
        for entry in txn.open_table(DEAD)?.iter()? {
            dead(entry?.0.value().0);
        }
        Ok(())
    }

    fn recent_notifications(
        &self,
        more: impl Fn(&Notification) -> bool,
    ) -> Result<Vec<Notification>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(NOTIFICATIONS)?;
        let mut out = Vec::new();
        for entry in table.iter()?.rev() {
            let (id, raw) = entry?;
            let n = decode_notification(id.value(), raw.value())?;
            if !more(&n) {
                break;
            }
            out.push(n);
        }
        Ok(out)
    }

    fn incident_notifications(
        &self,
        incident: IncidentId,
    ) -> Result<Vec<Notification>, StoreError> {
        let txn = self.read_txn()?;
        let index = txn.open_table(INCIDENT_NOTIFICATIONS)?;
        let table = txn.open_table(NOTIFICATIONS)?;
        let mut out = Vec::new();
        for entry in index.range((incident, 0)..=(incident, u64::MAX))? {
            let (key, _) = entry?;
            let id = key.value().1;
            if let Some(raw) = table.get(id)? {
                out.push(decode_notification(id, raw.value())?);
            }
        }
        Ok(out)
    }

    fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        self.first_due(DUE)
    }

    fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let txn = self.read_txn()?;
        let mut stats = QueueStats::default();
        each_pending(&txn, |n| {
            *stats.pending.entry(n.channel.as_str().to_string()).or_default() += 1;
            stats.oldest =
                Some(stats.oldest.map_or(n.created_at, |o: Timestamp| o.min(n.created_at)));
        })?;
        // Marking a notice sent cancels its deadline timer, so every deadline timer left is a
        // notice still owed.
        for entry in txn.open_table(TIMERS)?.iter()? {
            let (key, raw) = entry?;
            if matches!(
                decode_timer(key.value().1, raw.value())?.kind,
                crate::escalation::TimerKind::NoticeDeadline { .. }
            ) {
                stats.notice_deadlines += 1;
            }
        }
        Ok(stats)
    }

    fn disabled_endpoints(&self) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        let txn = self.read_txn()?;
        let table = txn.open_table(DISABLED_ENDPOINTS)?;
        let mut out = std::collections::BTreeMap::new();
        for entry in table.iter()? {
            let (name, why) = entry?;
            out.insert(name.value().to_string(), why.value().to_string());
        }
        Ok(out)
    }
}

/// The outbox inside the writer's transaction: a notification is written in the same commit
/// as the incident change that caused it, and its due and dead-letter indexes move with it.
pub trait OutboxRows {
    /// Allocates the next notification id (1, 2, …), durable with the batch.
    fn next_notification_id(&mut self) -> Result<NotificationId, StoreError>;

    /// One notification as of this batch.
    fn notification(&self, id: NotificationId) -> Result<Option<Notification>, StoreError>;

    /// Stores a notification and keeps the due and dead indexes in step with its state and due
    /// time.
    fn put_notification(&mut self, n: &Notification) -> Result<(), StoreError>;

    /// Pending notifications due at or before `now`, soonest first.
    fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<Notification>, StoreError>;

    /// An incident's notifications as of this batch, oldest first.
    fn incident_notifications(&self, incident: IncidentId)
    -> Result<Vec<Notification>, StoreError>;

    /// Disables a webhook endpoint (it answered 410 Gone), saying why.
    fn disable_endpoint(&mut self, name: &str, reason: &str) -> Result<(), StoreError>;

    /// Re-enables a webhook endpoint; returns why it had been disabled (`None`: it was not).
    fn enable_endpoint(&mut self, name: &str) -> Result<Option<String>, StoreError>;

    /// Why a webhook endpoint is disabled (`None`: it is not).
    fn disabled_endpoint(&self, name: &str) -> Result<Option<String>, StoreError>;
}

impl Batch<'_> {
    /// Builds the dead-letter index from the outbox, once per file (a file from before the
    /// index existed); answers how many it found.
    pub(super) fn index_dead(&mut self) -> Result<u64, StoreError> {
        caught(|| {
            const BUILT: &str = "dead_index";
            if self.meta.get(BUILT)?.is_some() {
                return Ok(0);
            }
            let mut dead = Vec::new();
            for entry in self.notifications.iter()? {
                let (id, raw) = entry?;
                let n = decode_notification(id.value(), raw.value())?;
                if n.state == State::Dead {
                    dead.push((n.channel, n.id));
                }
            }
            for (channel, id) in &dead {
                self.dead.insert((channel.as_str(), *id), ())?;
            }
            self.meta.insert(BUILT, 1)?;
            Ok(dead.len() as u64)
        })
    }
}

impl OutboxRows for Batch<'_> {
    fn next_notification_id(&mut self) -> Result<NotificationId, StoreError> {
        caught(|| self.next_id("next_notification_id"))
    }

    fn notification(&self, id: NotificationId) -> Result<Option<Notification>, StoreError> {
        caught(|| match self.notifications.get(id)? {
            Some(raw) => decode_notification(id, raw.value()).map(Some),
            None => Ok(None),
        })
    }

    fn put_notification(&mut self, n: &Notification) -> Result<(), StoreError> {
        caught(|| {
            let old = self.notification(n.id)?;
            match &old {
                Some(old) if old.state.is_pending() => {
                    self.due.remove((old.due_at.as_millisecond(), n.id))?;
                }
                _ => {
                    self.incident_notifications.insert((n.incident_id, n.id), ())?;
                }
            }
            let was_dead = old.as_ref().filter(|o| o.state == State::Dead);
            if let Some(o) = was_dead
                && (n.state != State::Dead || o.channel != n.channel)
            {
                self.dead.remove((o.channel.as_str(), n.id))?;
            }
            if n.state == State::Dead && was_dead.is_none_or(|o| o.channel != n.channel) {
                self.dead.insert((n.channel.as_str(), n.id), ())?;
            }
            let bytes = serde_json::to_vec(n)
                .map_err(|source| StoreError::EncodeIncident { id: n.incident_id, source })?;
            self.notifications.insert(n.id, bytes.as_slice())?;
            if n.state.is_pending() {
                self.due.insert((n.due_at.as_millisecond(), n.id), ())?;
            }
            Ok(())
        })
    }

    fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<Notification>, StoreError> {
        caught(|| {
            let mut out = Vec::new();
            for entry in self.due.range(..=(now.as_millisecond(), u64::MAX))?.take(limit) {
                let (key, _) = entry?;
                if let Some(n) = self.notification(key.value().1)? {
                    out.push(n);
                }
            }
            Ok(out)
        })
    }

    fn incident_notifications(
        &self,
        incident: IncidentId,
    ) -> Result<Vec<Notification>, StoreError> {
        caught(|| {
            let mut out = Vec::new();
            for entry in self.incident_notifications.range((incident, 0)..=(incident, u64::MAX))? {
                let (key, _) = entry?;
                if let Some(n) = self.notification(key.value().1)? {
                    out.push(n);
                }
            }
            Ok(out)
        })
    }

    fn disable_endpoint(&mut self, name: &str, reason: &str) -> Result<(), StoreError> {
        caught(|| {
            self.disabled.insert(name, reason)?;
            Ok(())
        })
    }

    fn enable_endpoint(&mut self, name: &str) -> Result<Option<String>, StoreError> {
        caught(|| Ok(self.disabled.remove(name)?.map(|v| v.value().to_string())))
    }

    fn disabled_endpoint(&self, name: &str) -> Result<Option<String>, StoreError> {
        caught(|| Ok(self.disabled.get(name)?.map(|v| v.value().to_string())))
    }
}

/// Every notification the due index lists that is still pending (queued, sending, retrying).
pub(super) fn each_pending(
    txn: &redb::ReadTransaction,
    mut f: impl FnMut(Notification),
) -> Result<(), StoreError> {
    let table = txn.open_table(NOTIFICATIONS)?;
    for entry in txn.open_table(DUE)?.iter()? {
        let id = entry?.0.value().1;
        if let Some(raw) = table.get(id)? {
            let n = decode_notification(id, raw.value())?;
            if n.state.is_pending() {
                f(n);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::admin::META;
    use crate::store::testing::*;

    #[test]
    fn the_dead_letter_index_follows_every_state_change_and_is_built_for_an_older_file() {
        use crate::notify::Channel;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ids = |list: Vec<Notification>| list.iter().map(|n| n.id).collect::<Vec<_>>();
        let dead_channels = |store: &Store| {
            let mut seen = Vec::new();
            store.delivery_health(|_| {}, |c| seen.push(c.to_owned())).unwrap();
            seen
        };
        let mut n = crate::outbox::tests::notification(Channel::Webhook, 0, Timestamp::UNIX_EPOCH);
        let put = |n: &Notification| store.write(|b| b.put_notification(n)).unwrap();

        n.state = State::Queued;
        put(&n);
        n.state = State::Dead;
        put(&n);
        put(&n); // written again dead (an operator's note, say): still one entry
        let mut mail = crate::outbox::tests::notification(Channel::Email, 3, Timestamp::UNIX_EPOCH);
        mail.id = 2;
        mail.state = State::Dead;
        put(&mail);
        assert_eq!(
            ids(store.dead_notifications(None, 10, |_| true).unwrap()),
            [2, 1],
            "newest first"
        );
        assert_eq!(ids(store.dead_notifications(None, 1, |_| true).unwrap()), [2]);
        assert_eq!(ids(store.dead_notifications(Some(2), 10, |_| true).unwrap()), [1]);
        let webhooks = |n: &Notification| n.channel == Channel::Webhook;
        assert_eq!(ids(store.dead_notifications(None, 10, webhooks).unwrap()), [1]);
        assert_eq!(dead_channels(&store), ["email", "webhook"]);
        assert!(store.pending_notifications(None, 10, |_| true).unwrap().is_empty());

        // Retried: pending again, no longer dead; then delivered: neither.
        n.state = State::Queued;
        put(&n);
        assert_eq!(ids(store.dead_notifications(None, 10, |_| true).unwrap()), [2]);
        assert_eq!(ids(store.pending_notifications(None, 10, |_| true).unwrap()), [1]);
        n.state = State::Delivered;
        put(&n);
        assert!(store.pending_notifications(None, 10, |_| true).unwrap().is_empty());
        assert_eq!(dead_channels(&store), ["email"]);

        // A file from before the index: entries and flag gone; the next open rebuilds it.
        drop(store);
        {
            let db = raw_db(dir.path());
            let txn = db.begin_write().unwrap();
            {
                let mut dead = txn.open_table(DEAD).unwrap();
                dead.retain(|_, _| false).unwrap();
                txn.open_table(META).unwrap().remove("dead_index").unwrap();
            }
            txn.commit().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(ids(store.dead_notifications(None, 10, |_| true).unwrap()), [2]);
        assert_eq!(dead_channels(&store), ["email"]);
    }

    #[test]
    fn a_listed_page_is_newest_first_below_the_cursor_skipping_missing_and_unkept_ids() {
        let stored = |id: u64| Ok((id != 7).then_some(id * 10));
        let page = |ids: &[u64], before, limit, keep: fn(&u64) -> bool| {
            newest_page(ids.to_vec(), before, limit, stored, keep).unwrap()
        };
        let ids = [3, 9, 1, 7, 5, 8];
        // Id order, not index order; 7 is listed but gone from the outbox.
        assert_eq!(page(&ids, None, 10, |_| true), [90, 80, 50, 30, 10]);
        assert_eq!(page(&ids, None, 2, |_| true), [90, 80]);
        assert_eq!(page(&ids, Some(8), 2, |_| true), [50, 30], "strictly below the cursor");
        assert_eq!(page(&ids, Some(1), 10, |_| true), Vec::<u64>::new());
        // The limit counts kept items: those filtered out do not use it up.
        assert_eq!(page(&ids, None, 2, |n| *n < 60), [50, 30]);
        assert_eq!(page(&ids, None, 0, |_| true), Vec::<u64>::new());
        assert_eq!(page(&[], None, 10, |_| true), Vec::<u64>::new());
        // A fetch error ends the page with it.
        let failing = |_| Err(StoreError::Reopening("test".into()));
        assert!(newest_page(vec![1], None, 1, failing, |_: &u64| true).is_err());
    }
}
