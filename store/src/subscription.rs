//! Catch-up then follow: the way projectors and the relay read the log.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::tail::{Served, Tail};
use crate::{EventStore, RecordedEvent, StoreError};

type Read = JoinHandle<Result<Vec<RecordedEvent>, StoreError>>;

/// Reads the global log from a position on, waiting for new events when it has read them all.
/// Wakes at once for appends of this process and polls for those of other processes.
///
/// Near the head of the log, the events come from the process's shared [`Tail`] (read from the
/// database once for every subscription, and shared with them: hence the [`Arc`]s); further
/// behind, from the database.
///
/// While catching up (a batch came back full, so more is probably waiting), the next batch is
/// read in the background while the caller handles this one: the database's time and the
/// reader's overlap instead of adding up (the relay's catch-up, a projector's rebuild).
pub struct Subscription {
    store: EventStore,
    position: i64,
    batch_size: i64,
    appended: watch::Receiver<i64>,
    /// The shared tail's position.
    read_to: watch::Receiver<i64>,
    poll_interval: Duration,
    /// The read of the batch after `position`, started early.
    ahead: Option<Read>,
}

impl Subscription {
    pub(crate) fn new(store: EventStore, position: i64, batch_size: i64, poll_interval: Duration) -> Self {
        let appended = store.appended();
        let read_to = Tail::follow(&store);
        Subscription { store, position, batch_size, appended, read_to, poll_interval, ahead: None }
    }

    /// The position of the last event handed out.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// Moves the subscription (e.g. after a rebuild reset its reader's checkpoint).
    pub fn seek(&mut self, position: i64) {
        self.cancel_ahead();
        self.position = position;
    }

    /// The next events, waiting until there is at least one.
    ///
    /// Cancel-safe: dropped before it returns, it hands out nothing and loses nothing (a read
    /// started ahead stays with the subscription for the next call).
    pub async fn next_batch(&mut self) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        loop {
            let (events, from_database) = match self.ahead.as_mut() {
                Some(read) => {
                    let result = read.await;
                    self.ahead = None;
                    let events = result.map_err(|e| StoreError::Backend(format!("read ahead of the log: {e}")))??;
                    (shared(events), true)
                }
                None => {
                    // changes of the tail from here on wake the waits below
                    self.read_to.borrow_and_update();
                    match self.store.tail.serve(self.position, self.batch_size) {
                        Served::Events(events) => (events, false),
                        Served::Elsewhere => {
                            // appends from here on wake the wait below, whatever this read sees
                            self.appended.borrow_and_update();
                            (shared(self.store.read_all(self.position, self.batch_size).await?), true)
                        }
                    }
                }
            };
            if let Some(last) = events.last() {
                self.position = last.position;
                if from_database && events.len() as i64 >= self.batch_size {
                    let (store, after, limit) = (self.store.clone(), self.position, self.batch_size);
                    self.ahead = Some(tokio::spawn(async move { store.read_all(after, limit).await }));
                }
                return Ok(events);
            }
            tokio::select! {
                _ = self.read_to.changed(), if !from_database => {}
                _ = self.appended.changed(), if from_database => {}
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }

    fn cancel_ahead(&mut self) {
        if let Some(read) = self.ahead.take() {
            read.abort();
        }
    }
}

fn shared(events: Vec<RecordedEvent>) -> Vec<Arc<RecordedEvent>> {
    events.into_iter().map(Arc::new).collect()
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cancel_ahead();
    }
}
