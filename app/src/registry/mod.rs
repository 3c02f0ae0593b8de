//! The eHealth registry's commands (legal entities and divisions as reference data, equipment
//! registration, moves between divisions, status and availability changes), whichever transport
//! brought them.
//!
//! Equipment commands act for the caller's legal entity ([`crate::Caller::equipment_legal_entity`]):
//! a caller acting for none is refused (403), never guessed. Reference data is changed by the
//! register's integration (a caller acting for no legal entity) or by a legal entity for itself.

mod equipment;
mod reference;
mod remembered;

use remembered::Read;
pub use remembered::RegistryReferences;

use careledger_domain::registry::RegistryError;
use careledger_domain::{Aggregate, Ctx};
use careledger_events::registry::RegistryEvent;
use careledger_store::{AppendRequest, EventStore, ExpectedVersion, KeyClaim, StoreError, StreamAppend};
use chrono::Utc;
use serde_json::Value;

use crate::{Answer, AppError, CommandCtx, CommitError, MAX_ATTEMPTS};

/// Set-invariant scope: an equipment's `external_id` within its legal entity, as
/// `<legal_entity_id>/<external_id>` (the UUID's fixed length keeps the pair unambiguous).
pub const EXTERNAL_ID_SCOPE: &str = "equipment-external-id";

/// What the registry needs to run its commands.
pub struct Registry<'a> {
    pub store: &'a EventStore,
    /// Legal entities and divisions this process last read (see [`RegistryReferences`]).
    pub references: &'a RegistryReferences,
}

fn refused(e: RegistryError) -> AppError {
    AppError::refused(e.refusal(), e.to_string())
}

/// The decision's clock and seed.
fn decision_ctx() -> Ctx {
    Ctx { now: Utc::now(), seed: rand::random() }
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
    store: &EventStore,
    stream: &str,
) -> Result<Folded<A>, AppError> {
    let mut folded: Folded<A> = Folded::empty();
    loop {
        let events = store.read_stream(stream, folded.version, PAGE).await?;
        let Some(last) = events.last() else { break };
        let more = events.len() as i64 == PAGE;
        if folded.version == 0 {
            folded.inserted_by = events[0].metadata.actor.user_id.clone();
        }
        folded.updated_by = last.metadata.actor.user_id.clone();
        folded.version = last.version;
        for e in &events {
            let event = e.decode::<RegistryEvent>().map_err(|e| AppError::Internal(e.to_string()))?;
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
struct OnStream<'a> {
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
    fn new(stream: String, ctx: &'a CommandCtx) -> Self {
        OnStream { stream, fresh: false, creates: false, claims: vec![], ctx }
    }

    fn fresh(self) -> Self {
        OnStream { fresh: true, ..self }
    }

    fn creating(self) -> Self {
        OnStream { creates: true, ..self }
    }

    fn claiming(mut self, claim: KeyClaim) -> Self {
        self.claims.push(claim);
        self
    }
}

/// What a decision read besides its own stream: the value, and each stream it was folded from
/// with the version read. The append carries those versions as guards (streams appended with no
/// events at an exact version), so if a reference changed meanwhile (a division deactivated while
/// equipment was being registered to it) the append is refused and the command decided again on
/// fresh references, instead of recording a decision made on a stale fact.
struct References<R> {
    value: R,
    guards: Vec<(String, i64)>,
}

impl<R> References<R> {
    fn new(value: R) -> Self {
        References { value, guards: vec![] }
    }

    /// Whether the decision read other streams (which may have come from memory).
    fn guarded(&self) -> bool {
        !self.guards.is_empty()
    }

    /// Guards the decision with a stream as read, at `version`.
    fn guard(mut self, stream: String, version: i64) -> Self {
        self.guards.push((stream, version));
        self
    }
}

impl Registry<'_> {
    /// A reference stream folded, from this process's memory when `read` allows it.
    async fn reference<A: remembered::Reference>(&self, stream: &str, read: Read) -> Result<Folded<A>, AppError> {
        remembered::reference(self.store, self.references, stream, read).await
    }

    /// Runs a decision that reads only its own stream (see [`Registry::execute_with`]).
    async fn execute<A>(
        &self,
        run: OnStream<'_>,
        decide: impl Fn(&A, &Ctx) -> Result<Vec<RegistryEvent>, RegistryError>,
        answer: impl Fn(&Folded<A>) -> Value,
    ) -> Result<Answer, AppError>
    where
        A: Aggregate<Event = RegistryEvent>,
    {
        let nothing = |_: Read| std::future::ready(Ok(References::new(())));
        self.execute_with(run, nothing, |a, _: &(), ctx| decide(a, ctx), answer).await
    }

    /// Runs a decision on one stream: answer a repeated idempotency key with its first answer, else
    /// load the stream and the references, decide, append at the versions read, retry when a
    /// concurrent writer won. `answer` renders the state after the command; a command that creates
    /// something answers 201 when it appended, every other answer is a 200. A claim taken by another
    /// stream is [`RegistryError::DuplicatedEquipment`] (the only claim of the context).
    async fn execute_with<A, R, F>(
        &self,
        run: OnStream<'_>,
        references: impl Fn(Read) -> F,
        decide: impl Fn(&A, &R, &Ctx) -> Result<Vec<RegistryEvent>, RegistryError>,
        answer: impl Fn(&Folded<A>) -> Value,
    ) -> Result<Answer, AppError>
    where
        A: Aggregate<Event = RegistryEvent>,
        F: Future<Output = Result<References<R>, AppError>>,
    {
        let user = run.ctx.actor.user_id.clone();
        let decision = decision_ctx();
        // references from memory on the first try only (see `remembered`)
        let mut read = Read::Remembered;
        let mut attempt = 0;
        while attempt < MAX_ATTEMPTS {
            attempt += 1;
            // on a retry too: the writer that won may be a concurrent repeat of this very request
            if let Some(answer) = run.ctx.earlier_answer(self.store).await? {
                return Ok(answer);
            }
            let (refs, mut folded) = if run.fresh && attempt == 1 {
                (references(read).await?, Folded::empty())
            } else {
                tokio::try_join!(references(read), load::<A>(self.store, &run.stream))?
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
                return Ok(Answer::ok(answer(&folded)).at(self.store.head().await?));
            }
            let version = folded.version;
            folded.advance(&events, version + events.len() as i64, user.as_deref());
            let body = answer(&folded);
            let answer = if run.creates { Answer::created(body) } else { Answer::ok(body) };
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
            match run.ctx.commit(self.store, request, answer).await {
                Ok((_, answer)) => return Ok(answer),
                Err(CommitError::Retry(StoreError::KeysTaken { .. })) => {
                    // a concurrent repeat of this very request took the key first
                    if let Some(answer) = run.ctx.earlier_answer(self.store).await? {
                        return Ok(answer);
                    }
                    return Err(refused(RegistryError::DuplicatedEquipment));
                }
                Err(other) => {
                    if let Some(answer) = other.settled() {
                        return answer;
                    }
                }
            }
        }
        Err(AppError::Conflict(format!("{} kept conflicting with concurrent writers; retry", run.ctx.command)))
    }
}
