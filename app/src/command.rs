//! What every command does around its decision: who sent it under which correlation and
//! idempotency key ([`CommandCtx`]), the answer already given to a repeated key, the append with
//! its metadata, the idempotency record and metrics, and what a failed append means
//! ([`CommitError`]).

use blake2::{Blake2b, Digest, digest::consts::U32};
use careledger_events::{Actor, DomainEvent, EventMetadata, NewEvent, Origin};
use careledger_store::{AppendOutcome, AppendRequest, EventStore, IdempotencyRecord, StoreError};
use uuid::Uuid;

use crate::{Answer, AppError, Caller, Invalid, Permissions};

/// How often a command is decided again after a concurrent writer won.
pub const MAX_ATTEMPTS: usize = 8;

/// The longest idempotency key taken.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// What a transport says about a request besides its inputs (HTTP and NATS read them from
/// headers; a sync bundle from its entries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    /// The caller's correlation id, when it gave one (a new one otherwise).
    pub correlation_id: Option<Uuid>,
    /// The message this command was caused by (the request's id, when it is a UUID).
    pub causation_id: Option<Uuid>,
    /// The caller's idempotency key, when it gave one (trimmed; checked by [`CommandCtx::new`]).
    pub idempotency_key: Option<String>,
}

/// Who sent a command, under which correlation, with which idempotency key. Only a caller who may
/// run the command gets one: [`CommandCtx::new`] checks the permission of its operation in the
/// table of commands, whichever transport asks.
pub struct CommandCtx {
    /// Its name in [`crate::COMMANDS`]: recorded in every event it appends and counted in metrics.
    pub command: &'static str,
    /// Who acts: the commands' tenancy rules read it (the legal entity, the health facility).
    pub caller: Caller,
    pub actor: Actor,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    idempotency: Option<(String, String)>,
    /// The peer and Bundle an import's events come from (recorded in their metadata).
    origin: Option<Origin>,
}

impl CommandCtx {
    /// A command's context: 403 unless `caller` holds the permission of the command's operation
    /// (as `permissions` configure it), 422 on a malformed idempotency key. `path` and `input`
    /// identify the request for its idempotency key: a key reused for another request is refused
    /// instead of answered with the wrong result.
    pub fn new(
        command: &'static str,
        caller: &Caller,
        permissions: &Permissions,
        meta: &RequestMeta,
        path: &str,
        input: &[u8],
    ) -> Result<Self, AppError> {
        let Some(entry) = crate::commands::named(command) else {
            return Err(AppError::Internal(format!("{command} is not in the table of commands")));
        };
        caller.may(permissions, entry.operation)?;
        let actor = caller.actor();
        let idempotency = match meta.idempotency_key.as_deref() {
            None => None,
            Some(key) if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY => {
                return Err(AppError::Invalid(vec![Invalid::header(
                    "Idempotency-Key",
                    "length",
                    "expected 1 to 200 characters",
                )]));
            }
            Some(key) => {
                let mut hasher = Blake2b::<U32>::new();
                hasher.update(command.as_bytes());
                hasher.update([0]);
                hasher.update(path.as_bytes());
                hasher.update([0]);
                hasher.update(input);
                let hash: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
                let user = actor.user_id.clone().unwrap_or_default();
                Some((format!("{user}\u{1f}{key}"), hash))
            }
        };
        Ok(CommandCtx {
            command,
            caller: caller.clone(),
            actor,
            correlation_id: meta.correlation_id.unwrap_or_else(Uuid::now_v7),
            causation_id: meta.causation_id,
            idempotency,
            origin: None,
        })
    }

    /// The same context without its idempotency key (each claim of a bulk command answers for
    /// itself: a repeat is refused claim by claim as already done).
    pub fn without_idempotency(mut self) -> Self {
        self.idempotency = None;
        self
    }

    /// The context of a command this one leads to (an import's submissions): the same caller,
    /// correlation and origin, without the idempotency key (each answers for itself).
    pub fn continued(&self) -> Self {
        CommandCtx {
            command: self.command,
            caller: self.caller.clone(),
            actor: self.actor.clone(),
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            idempotency: None,
            origin: self.origin.clone(),
        }
    }

    /// The context of an import: its events say which peer and Bundle they came from, and the
    /// Bundle (its sender, identifier and bytes, whoever sends it: a Bundle is the peer's, not a
    /// user's) is the idempotency key, so importing a Bundle again answers as the first time and
    /// appends nothing. The bytes are part of the key, not checked against it: a peer's
    /// `changes-<from>-<to>` read again later holds the same resources as they are then (a
    /// `timestamp`, a claim changed since), and is imported on its own, its resources matched by
    /// their identifiers.
    pub fn imported(mut self, origin: Origin, bundle: &[u8]) -> Self {
        let mut hasher = Blake2b::<U32>::new();
        hasher.update(bundle);
        let hash: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let key = format!("bundle\u{1f}{}\u{1f}{}\u{1f}{hash}", origin.peer, origin.bundle);
        self.idempotency = Some((key, hash));
        self.origin = Some(origin);
        self
    }

    /// The answer given the first time this idempotency key was used, if it was.
    pub async fn earlier_answer(&self, store: &EventStore) -> Result<Option<Answer>, AppError> {
        let Some((key, hash)) = &self.idempotency else { return Ok(None) };
        let Some(stored) = store.idempotent_response(key).await? else { return Ok(None) };
        if stored.request_hash != *hash {
            return Err(AppError::Invalid(vec![Invalid::header(
                "Idempotency-Key",
                "unique",
                "this key was already used for a different request",
            )]));
        }
        let body = serde_json::from_str(&stored.body).unwrap_or_default();
        Ok(Some(Answer::from_stored(stored.status, body, stored.position)))
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
                    origin: self.origin.clone(),
                },
            })
            .collect()
    }

    /// Appends with the answer attached as the idempotency record; returns the answer with its
    /// position. If a concurrent request with the same key won, returns that one's answer.
    pub async fn commit(
        &self,
        store: &EventStore,
        mut request: AppendRequest,
        answer: Answer,
    ) -> Result<(AppendOutcome, Answer), CommitError> {
        if let Some((key, hash)) = &self.idempotency {
            request.idempotency = Some(IdempotencyRecord {
                key: key.clone(),
                request_hash: hash.clone(),
                status: answer.status,
                body: answer.body_without_meta().to_string(),
            });
        }
        let started = std::time::Instant::now();
        match store.append(&request).await {
            Ok(outcome) => {
                let backend = store.backend().name();
                metrics::counter!("careledger_appends_total", "backend" => backend).increment(1);
                metrics::counter!("careledger_appended_events_total", "backend" => backend)
                    .increment(outcome.positions.len() as u64);
                metrics::histogram!("careledger_append_seconds", "backend" => backend)
                    .record(started.elapsed().as_secs_f64());
                let position = outcome.last_position();
                Ok((outcome, answer.at(position)))
            }
            Err(StoreError::IdempotencyKeyTaken(_)) => match self.earlier_answer(store).await {
                Ok(Some(earlier)) => Err(CommitError::Answered(earlier)),
                Ok(None) => Err(CommitError::Failed(AppError::Conflict("idempotency key in use".into()))),
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
    Answered(Answer),
    Failed(AppError),
}

impl CommitError {
    /// What the command answers now, unless it is to decide again (`None`, a [`CommitError::Retry`]):
    /// the concurrent request's answer, or the failure. Every command's retry loop ends this way
    /// once it has looked at the refusals it handles itself (a key taken).
    pub fn settled(self) -> Option<Result<Answer, AppError>> {
        match self {
            CommitError::Retry(_) => None,
            CommitError::Answered(answer) => Some(Ok(answer)),
            CommitError::Failed(e) => Some(Err(e)),
        }
    }
}
