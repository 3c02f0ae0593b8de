//! The insuree code pool's commands (GenerateCodes, ReserveCodes, AssignCode, LinkControlNumber),
//! whichever transport brought them.
//!
//! A batch is one stream; the codes it holds are claimed in `unique_keys` (scope [`CODE_SCOPE`]) in
//! the same transaction, so a code is never issued twice, and an insuree holds one code (scope
//! [`INSUREE_SCOPE`]). Generation draws again only the codes the store reports taken; a
//! reservation takes the oldest available codes of the holder's batches, deciding on the batches'
//! own streams (the read model only proposes them).

use std::collections::HashSet;
use std::time::Duration;

use careledger_domain::Ctx;
use careledger_domain::codes::{
    AssignCode, CodeBatch, CodeError, CodeFormatExt, GenerateCodes, LinkControlNumber, ReserveCodes,
};
use careledger_events::codes::{CodeEvent, CodeFormat, HolderType, batch_stream};
use careledger_projections::Projections;
use careledger_projections::codes::CodeQueries;
use careledger_store::{AppendRequest, EventStore, ExpectedVersion, KeyClaim, StoreError, StreamAppend};
use chrono::Utc;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{AggregateCache, Answer, AppError, CommandCtx, CommitError, Invalid, MAX_ATTEMPTS};

/// Set-invariant scopes of this context (see `unique_keys`).
pub const CODE_SCOPE: &str = "chfid";
pub const INSUREE_SCOPE: &str = "insuree-code";

/// Generation retries: each attempt replaces only the codes found taken, so the set shrinks
/// geometrically even in a pool that is largely used.
const GENERATE_ATTEMPTS: usize = 40;

/// What the codes context needs to run its commands.
pub struct Codes<'a> {
    pub store: &'a EventStore,
    pub projections: &'a Projections,
    /// Recently used batches, kept folded so a command on a big batch reads only new events.
    pub batches: &'a AggregateCache<CodeBatch>,
    pub format: &'a CodeFormat,
    /// How long a reservation waits for the read model that proposes the holder's batches.
    pub query_wait: Duration,
}

/// GenerateCodes' input, checked by the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateInput {
    pub holder_type: HolderType,
    pub holder_code: String,
    pub number: u32,
}

/// ReserveCodes' input, checked by the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveInput {
    pub holder_type: HolderType,
    pub holder_code: String,
    pub number: usize,
    /// One batch to reserve from, or (None) the holder's batches, oldest first.
    pub batch_id: Option<Uuid>,
    /// The offline node (its FHIR system) the codes are for; None: handed out here.
    pub for_server: Option<String>,
}

fn refused(e: CodeError) -> AppError {
    AppError::refused(e.refusal(), e.to_string())
}

fn too_busy(command: &str) -> AppError {
    AppError::Conflict(format!("{command} kept conflicting with concurrent writers; retry"))
}

/// What a command answers about one code, from the batch's state.
fn code_view(batch: &CodeBatch, code: &str) -> Value {
    let slot = batch.slot(code);
    json!({
        "code": code,
        "status": slot.map(|s| s.status.name()),
        "holder_type": batch.holder_type.map(|h| h.code()),
        "holder_code": batch.holder_code,
        "batch_id": batch.batch_id,
        "insuree_id": slot.and_then(|s| s.insuree_id.clone()),
        "control_number": slot.and_then(|s| s.control_number.clone()),
        "json_ext": slot.and_then(|s| s.json_ext.clone()),
    })
}

impl Codes<'_> {
    /// Pre-generate a batch of codes for a holder.
    pub async fn generate(&self, ctx: &CommandCtx, input: GenerateInput) -> Result<Answer, AppError> {
        if let Some(answer) = ctx.earlier_answer(self.store).await? {
            return Ok(answer);
        }
        let GenerateInput { holder_type, holder_code, number } = input;
        let batch_id = Uuid::now_v7();
        let stream = batch_stream(batch_id);
        let mut command = GenerateCodes {
            batch_id,
            holder_type,
            holder_code: holder_code.clone(),
            number,
            format: self.format.clone(),
            avoid: HashSet::new(),
            issued: CodeQueries(self.store.db()).issued().await?.max(0) as u64,
        };
        let decision_ctx = Ctx { now: Utc::now(), seed: rand::random() };
        for _ in 0..GENERATE_ATTEMPTS {
            let events = command.decide(&CodeBatch::default(), &decision_ctx).map_err(refused)?;
            let codes: Vec<String> = events
                .iter()
                .flat_map(|e| match e {
                    CodeEvent::CodesGenerated { codes, .. } => codes.clone(),
                    _ => vec![],
                })
                .collect();
            let request = AppendRequest {
                streams: vec![StreamAppend {
                    stream: stream.clone(),
                    expected: ExpectedVersion::Exact(0),
                    events: ctx.events(&events),
                }],
                claims: vec![KeyClaim { scope: CODE_SCOPE.into(), keys: codes, owner: stream.clone() }],
                idempotency: None,
            };
            let answer = Answer::created(json!({
                "batch_id": batch_id,
                "holder_type": holder_type.code(),
                "holder_code": holder_code,
                "created_at": careledger_projections::time::text(&decision_ctx.now),
                "number": command.number,
            }));
            match ctx.commit(self.store, request, answer).await {
                Ok((_, answer)) => return Ok(answer),
                // codes another batch holds: draw again without them
                Err(CommitError::Retry(StoreError::KeysTaken { keys, .. })) => command.avoid.extend(keys),
                // a lock cycle with other large appends: let them finish before trying again
                Err(CommitError::Retry(_)) => {
                    tokio::time::sleep(Duration::from_millis(rand::random_range(5..50))).await;
                }
                Err(CommitError::Answered(answer)) => return Ok(answer),
                Err(CommitError::Failed(e)) => return Err(e),
            }
        }
        Err(too_busy("GenerateCodes"))
    }

    /// Reserve the oldest available codes of the holder's batches (or of one batch).
    pub async fn reserve(&self, ctx: &CommandCtx, input: ReserveInput) -> Result<Answer, AppError> {
        if let Some(answer) = ctx.earlier_answer(self.store).await? {
            return Ok(answer);
        }
        let ReserveInput { holder_type, holder_code, number, batch_id, for_server } = input;
        let command = ReserveCodes {
            reservation_id: Uuid::now_v7(),
            holder_type,
            holder_code: holder_code.clone(),
            number,
            for_server: for_server.clone(),
        };
        let streams: Vec<String> = match batch_id {
            Some(id) => vec![batch_stream(id)],
            None => {
                // The read model only proposes candidate batches (made current first); the
                // batches' own streams decide, so a stale proposal cannot hand out a code twice.
                let head = self.store.head().await?;
                self.projections.wait_for(head, self.query_wait).await;
                CodeQueries(self.store.db())
                    .batches_with_available(holder_type.code(), &holder_code)
                    .await?
                    .into_iter()
                    .filter_map(|id| Uuid::parse_str(&id).ok().map(batch_stream))
                    .collect()
            }
        };
        if streams.is_empty() {
            return Err(refused(CodeError::NotEnoughCodes { requested: command.number, available: 0 }));
        }
        // lock in name order (no deadlock between two reservations), decide in age order
        let mut lock_order: Vec<usize> = (0..streams.len()).collect();
        lock_order.sort_by(|a, b| streams[*a].cmp(&streams[*b]));
        for _ in 0..MAX_ATTEMPTS {
            let mut guards = Vec::with_capacity(streams.len());
            for &i in &lock_order {
                guards.push((i, self.batches.lock(self.store, &streams[i]).await?));
            }
            guards.sort_by_key(|(i, _)| *i);
            if batch_id.is_some() && !guards[0].1.state.exists() {
                return Err(refused(CodeError::BatchNotFound));
            }
            let states: Vec<&CodeBatch> = guards.iter().map(|(_, g)| &g.state).collect();
            let plan = command.decide(&states).map_err(refused)?;
            let mut request = AppendRequest::default();
            let mut codes = Vec::new();
            let mut per_batch = Vec::new();
            for (id, events) in &plan {
                let stream = batch_stream(*id);
                let version = guards.iter().find(|(i, _)| streams[*i] == stream).map(|(_, g)| g.version).unwrap_or(0);
                for e in events {
                    if let CodeEvent::CodesReserved { codes: c, .. } = e {
                        per_batch.push(json!({ "batch_id": id, "codes": c.len() }));
                        codes.extend(c.iter().cloned());
                    }
                }
                request.streams.push(StreamAppend {
                    stream,
                    expected: ExpectedVersion::Exact(version),
                    events: ctx.events(events),
                });
            }
            let answer = Answer::created(json!({
                "reservation_id": command.reservation_id,
                "holder_type": holder_type.code(),
                "holder_code": holder_code,
                "codes": codes,
                "batches": per_batch,
            }));
            match ctx.commit(self.store, request, answer).await {
                Ok((outcome, answer)) => {
                    for ((id, events), version) in plan.iter().zip(outcome.versions) {
                        let stream = batch_stream(*id);
                        if let Some((_, g)) = guards.iter_mut().find(|(i, _)| streams[*i] == stream) {
                            g.advance(events, version);
                        }
                    }
                    return Ok(answer);
                }
                Err(other) => {
                    if let Some(answer) = other.settled() {
                        return answer;
                    }
                }
            }
        }
        Err(too_busy("ReserveCodes"))
    }

    /// The code now identifies the insuree (an insuree holds one code).
    pub async fn assign(
        &self,
        ctx: &CommandCtx,
        code: &str,
        insuree_id: String,
        json_ext: Option<Value>,
    ) -> Result<Answer, AppError> {
        if let Some(answer) = ctx.earlier_answer(self.store).await? {
            return Ok(answer);
        }
        let command = AssignCode { code: code.to_string(), insuree_id: insuree_id.clone(), json_ext };
        // an insuree holds one code: the claim refuses a second one in the same transaction
        let claims = |events: &[CodeEvent]| {
            if events.is_empty() {
                vec![]
            } else {
                vec![KeyClaim { scope: INSUREE_SCOPE.into(), keys: vec![insuree_id.clone()], owner: code.to_string() }]
            }
        };
        self.on_code(ctx, code, |batch| command.decide(batch), claims).await
    }

    /// Links the code to a payment control number.
    pub async fn link_control_number(
        &self,
        ctx: &CommandCtx,
        code: &str,
        control_number: String,
    ) -> Result<Answer, AppError> {
        if let Some(answer) = ctx.earlier_answer(self.store).await? {
            return Ok(answer);
        }
        let command = LinkControlNumber { code: code.to_string(), control_number };
        self.on_code(ctx, code, |batch| command.decide(batch), |_| vec![]).await
    }

    /// The stream of the batch holding `code`; 404 for a valid but unknown code, 422 for an
    /// invalid one.
    async fn batch_of(&self, code: &str) -> Result<String, AppError> {
        match self.store.key_owner(CODE_SCOPE, code).await? {
            Some(stream) => Ok(stream),
            None if self.format.is_valid(code) => Err(refused(CodeError::UnknownCode)),
            None => Err(AppError::Invalid(vec![Invalid::path(
                "code",
                "format",
                "not a valid insuree code (length, prefix or check digit)",
            )])),
        }
    }

    /// Runs a command on the batch holding `code`: lock, decide, commit, retry on conflict.
    async fn on_code(
        &self,
        ctx: &CommandCtx,
        code: &str,
        decide: impl Fn(&CodeBatch) -> Result<Vec<CodeEvent>, CodeError>,
        claims: impl Fn(&[CodeEvent]) -> Vec<KeyClaim>,
    ) -> Result<Answer, AppError> {
        let stream = self.batch_of(code).await?;
        for _ in 0..MAX_ATTEMPTS {
            let mut guard = self.batches.lock(self.store, &stream).await?;
            let events = decide(&guard.state).map_err(refused)?;
            let version = guard.version;
            // answer from the state the events lead to; forgotten again if the append fails
            guard.advance(&events, version);
            let answer = Answer::ok(code_view(&guard.state, code));
            let request = AppendRequest {
                streams: vec![StreamAppend {
                    stream: stream.clone(),
                    expected: ExpectedVersion::Exact(version),
                    events: ctx.events(&events),
                }],
                claims: claims(&events),
                idempotency: None,
            };
            match ctx.commit(self.store, request, answer).await {
                Ok((outcome, answer)) => {
                    guard.advance(&[], outcome.versions.first().copied().unwrap_or(version));
                    if events.is_empty() {
                        // nothing appended: point at the log's head, which includes the earlier change
                        return Ok(answer.at(self.store.head().await?));
                    }
                    return Ok(answer);
                }
                Err(CommitError::Retry(StoreError::KeysTaken { scope, .. })) if scope == INSUREE_SCOPE => {
                    guard.reset();
                    return Err(AppError::Conflict("the insuree already has another code".into()));
                }
                Err(other) => {
                    guard.reset();
                    if let Some(answer) = other.settled() {
                        return answer;
                    }
                }
            }
        }
        Err(too_busy(ctx.command))
    }
}
