//! The gateway's side of the application layer (`careledger-app`): a command's context read from
//! HTTP headers (and NATS headers, which the intake turns into the same request), answers and
//! errors turned into the envelope, and metrics per command. The machinery itself (aggregate
//! caches, idempotency, appends, conflicts) lives in the app crate, which knows no HTTP.

use std::ops::Deref;

use axum::http::HeaderMap;
use careledger_app::RequestMeta;
use careledger_events::{Actor, DomainEvent, NewEvent};
use careledger_store::{AppendOutcome, AppendRequest, EventStore, StoreError};
use uuid::Uuid;

pub use careledger_app::{AggregateCache, Loaded, MAX_ATTEMPTS, catch_up};

use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
pub const CORRELATION_HEADER: &str = "careledger-correlation-id";

/// What the request's headers say about it: its correlation id (a new one when it has none or
/// not a UUID), its cause (the request id, when a UUID) and its idempotency key.
pub fn request_meta(headers: &HeaderMap) -> RequestMeta {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    RequestMeta {
        correlation_id: header(CORRELATION_HEADER).and_then(|v| Uuid::parse_str(v).ok()),
        causation_id: Uuid::parse_str(&crate::http::envelope::request_id()).ok(),
        idempotency_key: header(IDEMPOTENCY_HEADER).map(str::to_string),
    }
}

/// A command's context (see [`careledger_app::CommandCtx`]) built from an HTTP request.
pub struct CommandCtx(careledger_app::CommandCtx);

impl Deref for CommandCtx {
    type Target = careledger_app::CommandCtx;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

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
        Ok(CommandCtx(careledger_app::CommandCtx::new(command, actor, &request_meta(headers), path, body)?))
    }

    /// The same context without its idempotency key (a bulk command's claims each answer alone).
    pub fn without_idempotency(self) -> Self {
        CommandCtx(self.0.without_idempotency())
    }

    /// The answer given the first time this idempotency key was used, if it was.
    pub async fn earlier_answer(&self, store: &EventStore) -> Result<Option<Envelope>, ApiError> {
        Ok(self.0.earlier_answer(store).await?.map(Envelope::from))
    }

    /// New events with this command's metadata.
    pub fn events<E: DomainEvent>(&self, events: &[E]) -> Vec<NewEvent> {
        self.0.events(events)
    }

    /// Appends with the answer attached as the idempotency record; returns the answer with its
    /// position. If a concurrent request with the same key won, returns that one's answer.
    pub async fn commit(
        &self,
        state: &AppState,
        request: AppendRequest,
        answer: Envelope,
    ) -> Result<(AppendOutcome, Envelope), CommitError> {
        use careledger_app::CommitError as App;
        match self.0.commit(&state.store, request, answer.into_answer()).await {
            Ok((outcome, answer)) => Ok((outcome, answer.into())),
            Err(App::Retry(e)) => Err(CommitError::Retry(e)),
            Err(App::Answered(answer)) => Err(CommitError::Answered(answer.into())),
            Err(App::Failed(e)) => Err(CommitError::Failed(e.into())),
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
    debug_assert!(careledger_app::commands::named(command).is_some(), "{command} is not in the table of commands");
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
