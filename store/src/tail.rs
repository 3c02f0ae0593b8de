//! One reader of the log's newest events for every subscription of this process.
//!
//! Each projector and the relay follow the log with their own subscription. Read on their own,
//! the newest events would be read, sent and decoded once per subscription (six times with five
//! projectors and the relay) on every append. The tail reads them once and keeps the newest
//! [`CAPACITY`] in memory: a subscription at or past the start of what it keeps is served from
//! memory, one further behind (a rebuild, a relay catching up after an outage) reads the database.
//!
//! Why nothing is skipped: the tail reads with [`EventStore::read_all`], which only returns events
//! below the reading horizon, so when a read returns events up to `p`, no event at or below `p`
//! can still appear. The ring therefore holds *every* event in `(base, tail]`, and a subscription
//! at `position >= base` finds all its next events there.
//!
//! The events are kept behind [`Arc`]s and handed out as such: every subscription shares one copy
//! of each event instead of cloning its data (five deep clones and drops of every event's JSON:
//! ~5% of the server's CPU on requisitions with glibc's allocator, 0.6% of the machine's with
//! mimalloc).
//!
//! The reader task runs while subscriptions exist (it stops once the last is dropped, and the
//! next subscription starts it again, continuing after the tail it had read).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::{EventStore, RecordedEvent};

/// Events kept in memory at most.
const CAPACITY: usize = 8192;
/// Events one read of the database takes at most.
const READ: i64 = 1000;
/// After a read that found events, the next read waits until this long after it began: under
/// load every commit wakes the tail, and reading after each of them (hundreds of reads a second,
/// a few events each) cost a fifth of PostgreSQL's statement time on requisitions. A quiet log is
/// still read as soon as an append wakes the tail.
const BUSY_GAP: std::time::Duration = std::time::Duration::from_millis(8);

/// What the tail can do for a subscription at a position.
pub(crate) enum Served {
    /// The next events after the position (empty: it is at the tail; wait for `read_to`).
    Events(Vec<Arc<RecordedEvent>>),
    /// The position is not covered (before the ring, past its tail, or the tail has not read
    /// yet): read the database.
    Elsewhere,
}

#[derive(Default)]
struct Ring {
    /// Every event in `(base, tail]` is in `events`, in order; `None` until the first read.
    span: Option<(i64, i64)>,
    events: VecDeque<Arc<RecordedEvent>>,
    running: bool,
}

pub(crate) struct Tail {
    /// False: the tail serves nothing and reads nothing (`StoreOptions::shared_tail`).
    enabled: bool,
    ring: Mutex<Ring>,
    /// The tail's position, for subscriptions waiting at it.
    read_to: watch::Sender<i64>,
}

impl Tail {
    pub(crate) fn new(enabled: bool) -> Arc<Tail> {
        Arc::new(Tail { enabled, ring: Mutex::new(Ring::default()), read_to: watch::channel(0).0 })
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver of the tail's position for a new subscription, starting the reader if it is
    /// not running.
    pub(crate) fn follow(store: &EventStore) -> watch::Receiver<i64> {
        let tail = &store.tail;
        let mut ring = tail.ring();
        let receiver = tail.read_to.subscribe();
        if tail.enabled && !ring.running {
            ring.running = true;
            tokio::spawn(read(store.clone()));
        }
        receiver
    }

    /// The events after `position`, `limit` at most, if the ring covers `position`.
    pub(crate) fn serve(&self, position: i64, limit: i64) -> Served {
        let ring = self.ring();
        let Some((base, tail)) = ring.span else { return Served::Elsewhere };
        if position < base || position > tail {
            return Served::Elsewhere;
        }
        let start = ring.events.partition_point(|e| e.position <= position);
        let end = (start + limit.max(1) as usize).min(ring.events.len());
        Served::Events(ring.events.range(start..end).cloned().collect())
    }

    fn push(&self, events: Vec<RecordedEvent>) {
        let mut ring = self.ring();
        let Some((mut base, mut tail)) = ring.span else { return };
        for event in events {
            tail = event.position;
            ring.events.push_back(Arc::new(event));
        }
        while ring.events.len() > CAPACITY {
            if let Some(oldest) = ring.events.pop_front() {
                base = oldest.position;
            }
        }
        ring.span = Some((base, tail));
        drop(ring);
        self.read_to.send_replace(tail);
    }
}

/// The reader: follows the log from the ring's tail (at first, the log's head) and stops when no
/// subscription is left.
async fn read(store: EventStore) {
    /// Says the reader stopped however it ends (also when its runtime drops it), so that the next
    /// subscription starts another.
    struct Running(Arc<Tail>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.ring().running = false;
        }
    }
    let tail = store.tail.clone();
    let _running = Running(tail.clone());
    let mut appended = store.appended();
    // when the last read that found events began
    let mut busy_since: Option<tokio::time::Instant> = None;
    loop {
        if tail.read_to.receiver_count() == 0 {
            // under the ring's lock, which `follow` takes to subscribe: no subscription can
            // arrive between this check and `running = false`
            let mut ring = tail.ring();
            if tail.read_to.receiver_count() == 0 {
                ring.running = false;
                drop(ring); // before `_running`'s drop takes the lock again
                return;
            }
        }
        if let Some(began) = busy_since.take() {
            tokio::time::sleep_until(began + BUSY_GAP).await;
        }
        appended.borrow_and_update();
        let began = tokio::time::Instant::now();
        let span = tail.ring().span;
        let from = match span {
            Some((_, to)) => Ok(to),
            None => store.head().await,
        };
        let read = match from {
            Ok(from) => {
                tail.ring().span.get_or_insert((from, from));
                store.read_all(from, READ).await
            }
            Err(e) => Err(e),
        };
        let full = match read {
            Ok(events) => {
                let full = events.len() as i64 >= READ;
                if !events.is_empty() {
                    tail.push(events);
                    busy_since = Some(began);
                }
                full
            }
            Err(e) => {
                tracing::warn!(error = %e, "the log's tail could not be read; trying again");
                false
            }
        };
        if !full {
            tokio::select! {
                _ = appended.changed() => {}
                _ = tokio::time::sleep(store.poll_interval) => {}
            }
        }
    }
}
