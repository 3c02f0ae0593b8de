//! Command handling shared by every context: aggregates kept folded in memory, appends with
//! metadata and metrics, conflicts retried, idempotency keys answered from the log's records.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, StatusCode};
use blake2::{Blake2b, Digest, digest::consts::U32};
use careledger_domain::Aggregate;
use careledger_events::{Actor, DomainEvent, EventMetadata, NewEvent};
use careledger_store::{AppendOutcome, AppendRequest, EventStore, IdempotencyRecord, StoreError};
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

/// How often a command is decided again after a concurrent writer won.
pub const MAX_ATTEMPTS: usize = 8;

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
    pub async fn lock(&self, store: &EventStore, stream: &str) -> Result<OwnedMutexGuard<Loaded<A>>, ApiError> {
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
    ) -> Result<(OwnedMutexGuard<Loaded<A>>, bool), ApiError> {
        let mut loaded = self.entry(stream).await;
        if loaded.version > 0 {
            return Ok((loaded, false));
        }
        catch_up(&mut loaded, store, stream).await?;
        Ok((loaded, true))
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

/// Events read from a stream per round trip when catching up.
const CATCH_UP_PAGE: i64 = 1000;

/// Folds the events appended to the stream since the version held: true when there were any.
pub async fn catch_up<A>(loaded: &mut Loaded<A>, store: &EventStore, stream: &str) -> Result<bool, ApiError>
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
        let decoded = events
            .iter()
            .map(|e| e.decode::<A::Event>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        loaded.advance(&decoded, version);
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

/// Who sent a command, under which correlation, with which idempotency key.
pub struct CommandCtx {
    pub command: &'static str,
    pub actor: Actor,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    idempotency: Option<(String, String)>,
}

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
pub const CORRELATION_HEADER: &str = "careledger-correlation-id";

impl CommandCtx {
    /// Reads correlation and idempotency headers; `body` is hashed so that a key reused for
    /// another request is refused instead of answered with the wrong result.
    pub fn new(
        command: &'static str,
        actor: Actor,
        headers: &HeaderMap,
        path: &str,
        body: &[u8],
    ) -> Result<Self, ApiError> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let correlation_id =
            header(CORRELATION_HEADER).and_then(|v| Uuid::parse_str(v).ok()).unwrap_or_else(Uuid::now_v7);
        let causation_id = Uuid::parse_str(&crate::http::envelope::request_id()).ok();
        let idempotency = match header(IDEMPOTENCY_HEADER) {
            None => None,
            Some(key) if key.is_empty() || key.len() > 200 => {
                return Err(ApiError::invalid(vec![crate::http::envelope::Invalid {
                    entry_type: "header",
                    ..crate::http::envelope::Invalid::field("Idempotency-Key", "length", "expected 1 to 200 characters")
                }]));
            }
            Some(key) => {
                let mut hasher = Blake2b::<U32>::new();
                hasher.update(command.as_bytes());
                hasher.update([0]);
                hasher.update(path.as_bytes());
                hasher.update([0]);
                hasher.update(body);
                let hash: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
                let user = actor.user_id.clone().unwrap_or_default();
                Some((format!("{user}\u{1f}{key}"), hash))
            }
        };
        Ok(CommandCtx { command, actor, correlation_id, causation_id, idempotency })
    }

    /// The answer given the first time this idempotency key was used, if it was.
    pub async fn earlier_answer(&self, store: &EventStore) -> Result<Option<Envelope>, ApiError> {
        let Some((key, hash)) = &self.idempotency else { return Ok(None) };
        let Some(stored) = store.idempotent_response(key).await? else { return Ok(None) };
        if stored.request_hash != *hash {
            return Err(ApiError::invalid(vec![crate::http::envelope::Invalid {
                entry_type: "header",
                ..crate::http::envelope::Invalid::field(
                    "Idempotency-Key",
                    "unique",
                    "this key was already used for a different request",
                )
            }]));
        }
        let body = serde_json::from_str(&stored.body).unwrap_or_default();
        let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
        Ok(Some(Envelope::from_stored(status, body, stored.position)))
    }

    /// New events with this command's metadata.
    pub fn events<E: DomainEvent>(&self, events: &[E]) -> Vec<NewEvent> {
        events
            .iter()
            .map(|e| NewEvent {
                event_id: Uuid::now_v7(),
                event_type: e.event_type().to_string(),
                data: e.to_data(),
                metadata: EventMetadata {
                    correlation_id: self.correlation_id,
                    causation_id: self.causation_id,
                    actor: self.actor.clone(),
                    command: self.command.to_string(),
                },
            })
            .collect()
    }

    /// Appends with the answer attached as the idempotency record; returns the answer with its
    /// position. If a concurrent request with the same key won, returns that one's answer.
    pub async fn commit(
        &self,
        state: &AppState,
        mut request: AppendRequest,
        answer: Envelope,
    ) -> Result<(AppendOutcome, Envelope), CommitError> {
        if let Some((key, hash)) = &self.idempotency {
            request.idempotency = Some(IdempotencyRecord {
                key: key.clone(),
                request_hash: hash.clone(),
                status: answer.status().as_u16(),
                body: answer.body_without_meta().to_string(),
            });
        }
        let started = std::time::Instant::now();
        match state.store.append(&request).await {
            Ok(outcome) => {
                let events = outcome.positions.len() as u64;
                metrics::counter!("careledger_appends_total", "backend" => state.store.backend().name()).increment(1);
                metrics::counter!("careledger_appended_events_total", "backend" => state.store.backend().name())
                    .increment(events);
                metrics::histogram!("careledger_append_seconds", "backend" => state.store.backend().name())
                    .record(started.elapsed().as_secs_f64());
                let position = outcome.last_position();
                Ok((outcome, answer.at(position)))
            }
            Err(StoreError::IdempotencyKeyTaken(_)) => match self.earlier_answer(&state.store).await {
                Ok(Some(earlier)) => Err(CommitError::Answered(earlier)),
                Ok(None) => Err(CommitError::Failed(ApiError::conflict("idempotency key in use"))),
                Err(e) => Err(CommitError::Failed(e)),
            },
            Err(e) if e.is_retryable() => Err(CommitError::Retry(e)),
            Err(e) => Err(CommitError::Failed(e.into())),
        }
    }
}

/// Why a commit did not give this command's answer.
pub enum CommitError {
    /// A concurrent writer won: reload and decide again.
    Retry(StoreError),
    /// The same idempotency key was answered by a concurrent request: give its answer.
    Answered(Envelope),
    Failed(ApiError),
}

/// Runs a handler, counting its outcome and time under the command's name.
pub async fn counted(
    command: &'static str,
    handler: impl Future<Output = Result<Envelope, ApiError>>,
) -> Result<Envelope, ApiError> {
    let started = std::time::Instant::now();
    let result = handler.await;
    record_outcome(command, &result, started);
    result
}

/// Counts a finished command by outcome.
fn record_outcome(command: &'static str, result: &Result<Envelope, ApiError>, started: std::time::Instant) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) if e.status.is_client_error() => "refused",
        Err(_) => "failed",
    };
    metrics::counter!("careledger_commands_total", "command" => command, "outcome" => outcome).increment(1);
    metrics::histogram!("careledger_command_seconds", "command" => command).record(started.elapsed().as_secs_f64());
}
