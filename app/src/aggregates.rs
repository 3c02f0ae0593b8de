//! Aggregates kept folded in memory, by stream: commands on one stream in this process take
//! turns behind its lock, and each turn first reads only the events appended since (by other
//! processes too), so a million-code batch is not refolded per command.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use careledger_domain::Aggregate;
use careledger_events::DomainEvent;
use careledger_store::EventStore;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::AppError;

/// An aggregate as folded up to a stream version.
pub struct Loaded<A> {
    pub version: i64,
    pub state: A,
    last_used: u64,
}

impl<A: Aggregate> Loaded<A> {
    /// Folds events this process just appended (the stream is now at `version`).
    pub fn advance(&mut self, events: &[A::Event], version: i64) {
        let state = std::mem::take(&mut self.state);
        self.state = events.iter().fold(state, A::evolve);
        self.version = version;
    }

    /// Forgets the state (after a failed append left it unknown); the next lock reloads.
    pub fn reset(&mut self) {
        self.state = A::default();
        self.version = 0;
    }
}

/// Aggregates by stream, each behind an async lock: commands on one stream in this process take
/// turns (no self-inflicted conflicts), and each turn first reads only the events appended since
/// (by other processes too), so a million-code batch is not refolded per command.
pub struct AggregateCache<A> {
    entries: std::sync::Mutex<HashMap<String, Arc<Mutex<Loaded<A>>>>>,
    capacity: usize,
    tick: AtomicU64,
}

impl<A> AggregateCache<A>
where
    A: Aggregate + Send + 'static,
    A::Event: DomainEvent,
{
    pub fn new(capacity: usize) -> Self {
        AggregateCache { entries: Default::default(), capacity, tick: AtomicU64::new(0) }
    }

    /// The stream's aggregate, locked and brought up to date with the log.
    pub async fn lock(&self, store: &EventStore, stream: &str) -> Result<OwnedMutexGuard<Loaded<A>>, AppError> {
        let mut loaded = self.entry(stream).await;
        catch_up(&mut loaded, store, stream).await?;
        Ok(loaded)
    }

    /// The stream's aggregate, locked, as this process last folded it when it holds it (true when
    /// it was read from the log instead). Another process may have appended since: a decision
    /// appended at its version is refused then (the expected version), so the caller that appends
    /// needs no read first; an answer given without an append needs [`catch_up`] first.
    pub async fn lock_held(
        &self,
        store: &EventStore,
        stream: &str,
    ) -> Result<(OwnedMutexGuard<Loaded<A>>, bool), AppError> {
        let mut loaded = self.entry(stream).await;
        if loaded.version > 0 {
            return Ok((loaded, false));
        }
        catch_up(&mut loaded, store, stream).await?;
        Ok((loaded, true))
    }

    /// Forgets what this process folded of the stream, if it holds it (another writer appended
    /// to it): the next lock reads it from the log. A stream not held costs nothing.
    pub async fn forget(&self, stream: &str) {
        let held = self.entries.lock().unwrap_or_else(|p| p.into_inner()).get(stream).cloned();
        if let Some(entry) = held {
            entry.lock_owned().await.reset();
        }
    }

    async fn entry(&self, stream: &str) -> OwnedMutexGuard<Loaded<A>> {
        let entry = {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if entries.len() >= self.capacity && !entries.contains_key(stream) {
                evict(&mut entries, self.capacity / 2);
            }
            entries
                .entry(stream.to_string())
                .or_insert_with(|| Arc::new(Mutex::new(Loaded { version: 0, state: A::default(), last_used: 0 })))
                .clone()
        };
        let mut loaded = entry.lock_owned().await;
        loaded.last_used = self.tick.fetch_add(1, Ordering::Relaxed);
        loaded
    }
}

/// A stream's aggregate folded from the log, outside any cache: for short streams a command reads
/// once (an insuree, a policy).
pub async fn load<A>(store: &EventStore, stream: &str) -> Result<Loaded<A>, AppError>
where
    A: Aggregate,
    A::Event: DomainEvent,
{
    let mut loaded = Loaded { version: 0, state: A::default(), last_used: 0 };
    catch_up(&mut loaded, store, stream).await?;
    Ok(loaded)
}

/// An aggregate folded from a stream's events the caller has read whole (and needs for more than
/// the state: the sync reads the versions its peers' events took).
pub fn fold<A>(events: &[careledger_events::RecordedEvent]) -> Result<Loaded<A>, AppError>
where
    A: Aggregate,
    A::Event: DomainEvent,
{
    let mut loaded = Loaded { version: 0, state: A::default(), last_used: 0 };
    loaded.advance(&decoded::<A>(events)?, events.last().map_or(0, |e| e.version));
    Ok(loaded)
}

fn decoded<A>(events: &[careledger_events::RecordedEvent]) -> Result<Vec<A::Event>, AppError>
where
    A: Aggregate,
    A::Event: DomainEvent,
{
    events
        .iter()
        .map(|e| e.decode::<A::Event>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AppError::Internal(e.to_string()))
}

/// Events read from a stream per round trip when catching up.
const CATCH_UP_PAGE: i64 = 1000;

/// Folds the events appended to the stream since the version held: true when there were any.
pub async fn catch_up<A>(loaded: &mut Loaded<A>, store: &EventStore, stream: &str) -> Result<bool, AppError>
where
    A: Aggregate,
    A::Event: DomainEvent,
{
    let mut moved = false;
    loop {
        let events = store.read_stream(stream, loaded.version, CATCH_UP_PAGE).await?;
        let Some(last) = events.last() else { return Ok(moved) };
        let version = last.version;
        let more = events.len() as i64 == CATCH_UP_PAGE;
        loaded.advance(&decoded::<A>(&events)?, version);
        moved = true;
        if !more {
            // a short page is the end of the stream: no round trip to be told so
            return Ok(moved);
        }
    }
}

impl<A: Aggregate + Clone> AggregateCache<A> {
    /// The state as this process last folded it, without reading the log: None when the stream is
    /// not cached or a command holds it. It may be behind another process's writes: a decision
    /// made on it must be checked again under [`AggregateCache::lock`].
    pub fn peek(&self, stream: &str) -> Option<A> {
        let entry = self.entries.lock().unwrap_or_else(|p| p.into_inner()).get(stream)?.clone();
        let loaded = entry.try_lock().ok()?;
        (loaded.version > 0).then(|| loaded.state.clone())
    }
}

fn evict<T>(entries: &mut HashMap<String, Arc<Mutex<Loaded<T>>>>, keep: usize) {
    // drop the least recently used entries nobody holds
    let mut idle: Vec<(u64, String)> = entries
        .iter()
        .filter(|(_, e)| Arc::strong_count(e) == 1)
        .filter_map(|(k, e)| e.try_lock().ok().map(|l| (l.last_used, k.clone())))
        .collect();
    idle.sort();
    let excess = entries.len().saturating_sub(keep);
    for (_, key) in idle.into_iter().take(excess) {
        entries.remove(&key);
    }
}
