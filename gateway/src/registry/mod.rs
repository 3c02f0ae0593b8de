//! The eHealth registry over HTTP: legal entities and divisions (reference data), equipment
//! registration, moves between divisions, status and availability changes, and equipment queries.
//!
//! Equipment commands act for the token's `client_id` (the legal entity) and `sub` (the user). A
//! token without `client_id` acts for no legal entity: 403 (an authorisation matter, answered right
//! after the scope check), never a guess.

mod equipment;
mod queries;
mod reference;
mod remembered;

pub use remembered::RegistryReferences;
pub(crate) use remembered::{Read, reference as load_reference};

use axum::Router;
use axum::routing::{get, patch, post};
use careledger_domain::registry::RegistryError;
use careledger_domain::{Aggregate, Ctx};
use careledger_events::registry::RegistryEvent;
use careledger_store::{AppendRequest, ExpectedVersion, KeyClaim, StoreError, StreamAppend};
use chrono::Utc;
use serde_json::Value;
use uuid::Uuid;

use crate::auth::User;
pub(crate) use crate::handler::counted;
use crate::handler::{CommandCtx, CommitError, MAX_ATTEMPTS};
use crate::http::envelope::{ApiError, Envelope, Invalid};
use crate::state::AppState;

/// Set-invariant scope: an equipment's `external_id` within its legal entity, as
/// `<legal_entity_id>/<external_id>` (the UUID's fixed length keeps the pair unambiguous).
pub const EXTERNAL_ID_SCOPE: &str = "equipment-external-id";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/legal-entities", post(reference::register_legal_entity))
        .route("/api/v1/legal-entities/{id}", patch(reference::change_legal_entity_status))
        .route("/api/v1/divisions", post(reference::register_division))
        .route("/api/v1/divisions/{id}", patch(reference::change_division_status))
        .route("/api/v1/equipment", post(equipment::register).get(queries::list))
        .route("/api/v1/equipment/{id}", get(queries::one))
        .route("/api/v1/equipment/{id}/division-links", post(equipment::link_division))
        .route("/api/v1/equipment/{id}/status", patch(equipment::change_status))
        .route("/api/v1/equipment/{id}/availability", patch(equipment::change_availability))
}

fn refused(e: RegistryError) -> ApiError {
    ApiError::refused(e.refusal(), e.to_string())
}

/// The decision's clock and seed.
fn decision_ctx() -> Ctx {
    Ctx { now: Utc::now(), seed: rand::random() }
}

/// The legal entity the caller acts for (the token's `client_id`); 403 without one. A `client_id`
/// that is not a UUID names no legal entity of the register: it becomes the nil UUID, which no
/// legal entity may have, so the legal entity checks refuse it as unknown.
fn caller_legal_entity(user: &User) -> Result<Uuid, ApiError> {
    let client_id = user.legal_entity_id.as_deref().ok_or_else(|| {
        ApiError::forbidden("Access denied. The token acts for no legal entity (client_id is missing)")
    })?;
    Ok(Uuid::parse_str(client_id).unwrap_or(Uuid::nil()))
}

/// A UUID from the path, or 422 on the path parameter.
fn path_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid(vec![Invalid::path("id", "format", "expected a UUID")]))
}

/// An aggregate folded from its whole stream, with who wrote its first and its last event.
#[derive(Clone)]
pub(crate) struct Folded<A> {
    pub state: A,
    pub version: i64,
    pub inserted_by: Option<String>,
    pub updated_by: Option<String>,
}

impl<A: Aggregate<Event = RegistryEvent>> Folded<A> {
    fn empty() -> Self {
        Folded { state: A::default(), version: 0, inserted_by: None, updated_by: None }
    }

    /// Folds events this command appended as `user` (the stream is now at `version`).
    fn advance(&mut self, events: &[RegistryEvent], version: i64, user: Option<&str>) {
        if events.is_empty() {
            return;
        }
        if self.version == 0 {
            self.inserted_by = user.map(String::from);
        }
        self.updated_by = user.map(String::from);
        let state = std::mem::take(&mut self.state);
        self.state = events.iter().fold(state, A::evolve);
        self.version = version;
    }
}

/// Events read from a stream per round trip.
const PAGE: i64 = 1000;

/// Reads and folds a whole stream (registry streams are short: an equipment's life is a few events).
pub(crate) async fn load<A: Aggregate<Event = RegistryEvent>>(
    state: &AppState,
    stream: &str,
) -> Result<Folded<A>, ApiError> {
    let mut folded: Folded<A> = Folded::empty();
    loop {
        let events = state.store.read_stream(stream, folded.version, PAGE).await?;
        let Some(last) = events.last() else { break };
        let more = events.len() as i64 == PAGE;
        if folded.version == 0 {
            folded.inserted_by = events[0].metadata.actor.user_id.clone();
        }
        folded.updated_by = last.metadata.actor.user_id.clone();
        folded.version = last.version;
        for e in &events {
            let event = e.decode::<RegistryEvent>().map_err(|e| ApiError::internal(e.to_string()))?;
            folded.state = std::mem::take(&mut folded.state).evolve(&event);
        }
        if !more {
            // a short page is the end of the stream: no round trip to be told so
            break;
        }
    }
    Ok(folded)
}

/// How a command on one stream runs.
pub(crate) struct OnStream<'a> {
    stream: String,
    /// The stream is known to be new (a fresh UUIDv7): skip reading it on the first attempt.
    fresh: bool,
    /// The command creates a resource: when it appends, the answer is a 201.
    creates: bool,
    /// Set-invariant keys the events take.
    claims: Vec<KeyClaim>,
    ctx: &'a CommandCtx,
}

impl<'a> OnStream<'a> {
    pub fn new(stream: String, ctx: &'a CommandCtx) -> Self {
        OnStream { stream, fresh: false, creates: false, claims: vec![], ctx }
    }

    pub fn fresh(self) -> Self {
        OnStream { fresh: true, ..self }
    }

    pub fn creating(self) -> Self {
        OnStream { creates: true, ..self }
    }

    pub fn claiming(mut self, claim: KeyClaim) -> Self {
        self.claims.push(claim);
        self
    }
}

/// What a decision read besides its own stream: the value, and each stream it was folded from
/// with the version read. The append carries those versions as guards (streams appended with no
/// events at an exact version), so if a reference changed meanwhile (a division deactivated while
/// equipment was being registered to it) the append is refused and the command decided again on
/// fresh references, instead of recording a decision made on a stale fact.
pub(crate) struct References<R> {
    pub value: R,
    guards: Vec<(String, i64)>,
}

impl<R> References<R> {
    pub fn new(value: R) -> Self {
        References { value, guards: vec![] }
    }

    /// Whether the decision read other streams (which may have come from memory).
    fn guarded(&self) -> bool {
        !self.guards.is_empty()
    }

    /// Guards the decision with a stream as read, at `version`.
    pub fn guard(mut self, stream: String, version: i64) -> Self {
        self.guards.push((stream, version));
        self
    }
}

/// Runs a decision that reads only its own stream (see [`execute_with`]).
pub(crate) async fn execute<A>(
    state: &AppState,
    run: OnStream<'_>,
    decide: impl Fn(&A, &Ctx) -> Result<Vec<RegistryEvent>, RegistryError>,
    answer: impl Fn(&Folded<A>) -> Value,
) -> Result<Envelope, ApiError>
where
    A: Aggregate<Event = RegistryEvent>,
{
    let nothing = |_: Read| std::future::ready(Ok(References::new(())));
    execute_with(state, run, nothing, |a, _: &(), ctx| decide(a, ctx), answer).await
}

/// Runs a decision on one stream: answer a repeated idempotency key with its first answer, else
/// load the stream and the references, decide, append at the versions read, retry when a
/// concurrent writer won. `answer` renders the state after the command; a command that creates
/// something answers 201 when it appended, every other answer is a 200. A claim taken by another
/// stream is [`RegistryError::DuplicatedEquipment`] (the only claim of the context).
pub(crate) async fn execute_with<A, R, F>(
    state: &AppState,
    run: OnStream<'_>,
    references: impl Fn(Read) -> F,
    decide: impl Fn(&A, &R, &Ctx) -> Result<Vec<RegistryEvent>, RegistryError>,
    answer: impl Fn(&Folded<A>) -> Value,
) -> Result<Envelope, ApiError>
where
    A: Aggregate<Event = RegistryEvent>,
    F: Future<Output = Result<References<R>, ApiError>>,
{
    let user = run.ctx.actor.user_id.clone();
    let decision = decision_ctx();
    // references from memory on the first try only (see `remembered`)
    let mut read = Read::Remembered;
    let mut attempt = 0;
    while attempt < MAX_ATTEMPTS {
        attempt += 1;
        // on a retry too: the writer that won may be a concurrent repeat of this very request
        if let Some(answer) = run.ctx.earlier_answer(&state.store).await? {
            return Ok(answer);
        }
        let (refs, mut folded) = if run.fresh && attempt == 1 {
            (references(read).await?, Folded::empty())
        } else {
            tokio::try_join!(references(read), load::<A>(state, &run.stream))?
        };
        let events = match decide(&folded.state, &refs.value, &decision) {
            Ok(events) => events,
            Err(_) if read == Read::Remembered && refs.guarded() => {
                // a refusal has no guard: it is answered only on references read from the log
                read = Read::Fresh;
                attempt -= 1;
                continue;
            }
            Err(e) => return Err(refused(e)),
        };
        read = Read::Fresh;
        if events.is_empty() {
            // nothing to record: the answer is the current state, at the log's head
            return Ok(Envelope::ok(answer(&folded)).at(state.store.head().await?));
        }
        let version = folded.version;
        folded.advance(&events, version + events.len() as i64, user.as_deref());
        let body = answer(&folded);
        let envelope = if run.creates { Envelope::created(body) } else { Envelope::ok(body) };
        let mut streams = vec![StreamAppend {
            stream: run.stream.clone(),
            expected: ExpectedVersion::Exact(version),
            events: run.ctx.events(&events),
        }];
        streams.extend(refs.guards.into_iter().map(|(stream, version)| StreamAppend {
            stream,
            expected: ExpectedVersion::Exact(version),
            events: vec![],
        }));
        let request = AppendRequest { streams, claims: run.claims.clone(), idempotency: None };
        match run.ctx.commit(state, request, envelope).await {
            Ok((_, answer)) => return Ok(answer),
            Err(CommitError::Retry(StoreError::KeysTaken { .. })) => {
                // a concurrent repeat of this very request took the key first
                if let Some(answer) = run.ctx.earlier_answer(&state.store).await? {
                    return Ok(answer);
                }
                return Err(refused(RegistryError::DuplicatedEquipment));
            }
            Err(CommitError::Retry(_)) => continue,
            Err(CommitError::Answered(answer)) => return Ok(answer),
            Err(CommitError::Failed(e)) => return Err(e),
        }
    }
    Err(ApiError::conflict(format!("{} kept conflicting with concurrent writers; retry", run.ctx.command)))
}
