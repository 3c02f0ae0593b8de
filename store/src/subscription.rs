//! Catch-up then follow: the way projectors and the relay read the log.

use std::time::Duration;

use tokio::sync::watch;

use crate::{EventStore, RecordedEvent, StoreError};

/// Reads the global log from a position on, waiting for new events when it has read them all.
/// Wakes at once for appends of this process and polls for those of other processes.
pub struct Subscription {
    store: EventStore,
    position: i64,
    batch_size: i64,
    appended: watch::Receiver<i64>,
    poll_interval: Duration,
}

impl Subscription {
    pub(crate) fn new(store: EventStore, position: i64, batch_size: i64, poll_interval: Duration) -> Self {
        let appended = store.appended();
        Subscription { store, position, batch_size, appended, poll_interval }
    }

    /// The position of the last event handed out.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// Moves the subscription (e.g. after a rebuild reset its reader's checkpoint).
    pub fn seek(&mut self, position: i64) {
        self.position = position;
    }

    /// The next events, waiting until there is at least one.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        loop {
            self.appended.borrow_and_update();
            let events = self.store.read_all(self.position, self.batch_size).await?;
            if let Some(last) = events.last() {
                self.position = last.position;
                return Ok(events);
            }
            tokio::select! {
                _ = self.appended.changed() => {}
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }
}
