//! GenerateCodes, ReserveCodes, AssignCode, LinkControlNumber.

use std::collections::HashSet;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use careledger_domain::Ctx;
use careledger_domain::codes::{
    AssignCode, CodeBatch, CodeError, CodeFormatExt, GenerateCodes, LinkControlNumber, ReserveCodes,
};
use careledger_events::codes::{CodeEvent, batch_stream};
use careledger_projections::codes::CodeQueries;
use careledger_store::{AppendRequest, ExpectedVersion, KeyClaim, StoreError, StreamAppend};
use chrono::Utc;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{CODE_SCOPE, INSUREE_SCOPE};
use crate::auth::User;
use crate::handler::{CommandCtx, CommitError, MAX_ATTEMPTS, counted};
use crate::http::body::{Fields, JsonBody};
use crate::http::envelope::{ApiError, Envelope, Invalid};
use crate::state::AppState;

/// Generation retries: each attempt replaces only the codes found taken, so the set shrinks
/// geometrically even in a pool that is largely used.
const GENERATE_ATTEMPTS: usize = 40;

fn refused(e: CodeError) -> ApiError {
    ApiError::refused(e.refusal(), e.to_string())
}

fn too_busy(command: &str) -> ApiError {
    ApiError::conflict(format!("{command} kept conflicting with concurrent writers; retry"))
}

/// `POST /api/v1/code-batches`
pub async fn generate(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("GenerateCodes", async {
        user.require(state.config.permissions.of(careledger_app::Operation::GenerateCodes))?;
        let mut f = Fields::new(&body);
        f.only(&["holder_type", "holder_code", "number"]);
        let holder_type = f.holder_type("holder_type");
        let holder_code = f.string("holder_code", true, 50);
        let number = f.integer("number", false, 1, state.config.codes_max_number.into());
        f.finish()?;
        let (Some(holder_type), Some(holder_code)) = (holder_type, holder_code) else {
            return Err(ApiError::internal("validated fields missing"));
        };
        let ctx = CommandCtx::new("GenerateCodes", user.actor(), &headers, "/api/v1/code-batches", &bytes)?;
        if let Some(answer) = ctx.earlier_answer(&state.store).await? {
            return Ok(answer);
        }
        let batch_id = Uuid::now_v7();
        let stream = batch_stream(batch_id);
        let mut command = GenerateCodes {
            batch_id,
            holder_type,
            holder_code: holder_code.clone(),
            number: number.map(|n| n as u32).unwrap_or(state.config.codes_default_number),
            format: state.config.code_format.clone(),
            avoid: HashSet::new(),
            issued: CodeQueries(state.store.db()).issued().await?.max(0) as u64,
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
            let answer = Envelope::created(json!({
                "batch_id": batch_id,
                "holder_type": holder_type.code(),
                "holder_code": holder_code,
                "created_at": careledger_projections::time::text(&decision_ctx.now),
                "number": command.number,
            }));
            match ctx.commit(&state, request, answer).await {
                Ok((_, answer)) => return Ok(answer),
                // codes another batch holds: draw again without them
                Err(CommitError::Retry(StoreError::KeysTaken { keys, .. })) => command.avoid.extend(keys),
                // a lock cycle with other large appends: let them finish before trying again
                Err(CommitError::Retry(e)) => {
                    tracing::debug!(error = %e, "GenerateCodes collided; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(rand::random_range(5..50))).await;
                }
                Err(CommitError::Answered(answer)) => return Ok(answer),
                Err(CommitError::Failed(e)) => return Err(e),
            }
        }
        Err(too_busy("GenerateCodes"))
    })
    .await
}

/// `POST /api/v1/codes/reservations`
pub async fn reserve(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("ReserveCodes", async {
        user.require(state.config.permissions.of(careledger_app::Operation::ReserveCodes))?;
        let mut f = Fields::new(&body);
        f.only(&["holder_type", "holder_code", "number", "batch_id"]);
        let holder_type = f.holder_type("holder_type");
        let holder_code = f.string("holder_code", true, 50);
        let number = f.integer("number", true, 1, state.config.codes_max_number.into());
        let batch_id = f.uuid("batch_id", false);
        f.finish()?;
        let (Some(holder_type), Some(holder_code), Some(number)) = (holder_type, holder_code, number) else {
            return Err(ApiError::internal("validated fields missing"));
        };
        let ctx = CommandCtx::new("ReserveCodes", user.actor(), &headers, "/api/v1/codes/reservations", &bytes)?;
        if let Some(answer) = ctx.earlier_answer(&state.store).await? {
            return Ok(answer);
        }
        let command = ReserveCodes {
            reservation_id: Uuid::now_v7(),
            holder_type,
            holder_code: holder_code.clone(),
            number: number as usize,
        };
        let streams: Vec<String> = match batch_id {
            Some(id) => vec![batch_stream(id)],
            None => {
                // The read model only proposes candidate batches (made current first); the
                // batches' own streams decide, so a stale proposal cannot hand out a code twice.
                let head = state.store.head().await?;
                state.projections.wait_for(head, state.config.query_wait).await;
                CodeQueries(state.store.db())
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
                guards.push((i, state.batches.lock(&state.store, &streams[i]).await?));
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
            let answer = Envelope::created(json!({
                "reservation_id": command.reservation_id,
                "holder_type": holder_type.code(),
                "holder_code": holder_code,
                "codes": codes,
                "batches": per_batch,
            }));
            match ctx.commit(&state, request, answer).await {
                Ok((outcome, answer)) => {
                    for ((id, events), version) in plan.iter().zip(outcome.versions) {
                        let stream = batch_stream(*id);
                        if let Some((_, g)) = guards.iter_mut().find(|(i, _)| streams[*i] == stream) {
                            g.advance(events, version);
                        }
                    }
                    return Ok(answer);
                }
                Err(CommitError::Retry(_)) => continue,
                Err(CommitError::Answered(answer)) => return Ok(answer),
                Err(CommitError::Failed(e)) => return Err(e),
            }
        }
        Err(too_busy("ReserveCodes"))
    })
    .await
}

/// The stream of the batch holding `code`; 404 for a valid but unknown code, 422 for an invalid one.
async fn batch_of(state: &AppState, code: &str) -> Result<String, ApiError> {
    match state.store.key_owner(CODE_SCOPE, code).await? {
        Some(stream) => Ok(stream),
        None if state.config.code_format.is_valid(code) => Err(refused(CodeError::UnknownCode)),
        None => Err(ApiError::invalid(vec![Invalid::path(
            "code",
            "format",
            "not a valid insuree code (length, prefix or check digit)",
        )])),
    }
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

/// Runs a command on the batch holding `code`: lock, decide, commit, retry on conflict.
async fn on_code(
    state: &AppState,
    ctx: &CommandCtx,
    code: &str,
    decide: impl Fn(&CodeBatch) -> Result<Vec<CodeEvent>, CodeError>,
    claims: impl Fn(&[CodeEvent]) -> Vec<KeyClaim>,
) -> Result<Envelope, ApiError> {
    let stream = batch_of(state, code).await?;
    for _ in 0..MAX_ATTEMPTS {
        let mut guard = state.batches.lock(&state.store, &stream).await?;
        let events = decide(&guard.state).map_err(refused)?;
        let version = guard.version;
        // answer from the state the events lead to; forgotten again if the append fails
        guard.advance(&events, version);
        let answer = Envelope::ok(code_view(&guard.state, code));
        let request = AppendRequest {
            streams: vec![StreamAppend {
                stream: stream.clone(),
                expected: ExpectedVersion::Exact(version),
                events: ctx.events(&events),
            }],
            claims: claims(&events),
            idempotency: None,
        };
        match ctx.commit(state, request, answer).await {
            Ok((outcome, answer)) => {
                guard.advance(&[], outcome.versions.first().copied().unwrap_or(version));
                if events.is_empty() {
                    // nothing appended: point at the log's head, which includes the earlier change
                    return Ok(answer.at(state.store.head().await?));
                }
                return Ok(answer);
            }
            Err(CommitError::Retry(StoreError::KeysTaken { scope, .. })) if scope == INSUREE_SCOPE => {
                guard.reset();
                return Err(ApiError::conflict("the insuree already has another code"));
            }
            Err(CommitError::Retry(_)) => guard.reset(),
            Err(CommitError::Answered(answer)) => {
                guard.reset();
                return Ok(answer);
            }
            Err(CommitError::Failed(e)) => {
                guard.reset();
                return Err(e);
            }
        }
    }
    Err(too_busy(ctx.command))
}

/// `POST /api/v1/codes/{code}/assignment`
pub async fn assign(
    State(state): State<AppState>,
    Path(code): Path<String>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("AssignCode", async {
        user.require(state.config.permissions.of(careledger_app::Operation::AssignCode))?;
        let mut f = Fields::new(&body);
        f.only(&["insuree_id", "json_ext"]);
        let insuree_id = f.string("insuree_id", true, 100);
        let json_ext = f.object("json_ext");
        f.finish()?;
        let insuree_id = insuree_id.ok_or_else(|| ApiError::internal("validated fields missing"))?;
        let path = format!("/api/v1/codes/{code}/assignment");
        let ctx = CommandCtx::new("AssignCode", user.actor(), &headers, &path, &bytes)?;
        if let Some(answer) = ctx.earlier_answer(&state.store).await? {
            return Ok(answer);
        }
        let command = AssignCode { code: code.clone(), insuree_id: insuree_id.clone(), json_ext };
        // an insuree holds one code: the claim refuses a second one in the same transaction
        let claims = |events: &[CodeEvent]| {
            if events.is_empty() {
                vec![]
            } else {
                vec![KeyClaim { scope: INSUREE_SCOPE.into(), keys: vec![insuree_id.clone()], owner: code.clone() }]
            }
        };
        on_code(&state, &ctx, &code, |batch| command.decide(batch), claims).await
    })
    .await
}

/// `POST /api/v1/codes/{code}/control-number`
pub async fn link_control_number(
    State(state): State<AppState>,
    Path(code): Path<String>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("LinkControlNumber", async {
        user.require(state.config.permissions.of(careledger_app::Operation::LinkControlNumber))?;
        let mut f = Fields::new(&body);
        f.only(&["control_number"]);
        let control_number = f.string("control_number", true, 50);
        f.finish()?;
        let control_number = control_number.ok_or_else(|| ApiError::internal("validated fields missing"))?;
        let path = format!("/api/v1/codes/{code}/control-number");
        let ctx = CommandCtx::new("LinkControlNumber", user.actor(), &headers, &path, &bytes)?;
        if let Some(answer) = ctx.earlier_answer(&state.store).await? {
            return Ok(answer);
        }
        let command = LinkControlNumber { code: code.clone(), control_number };
        on_code(&state, &ctx, &code, |batch| command.decide(batch), |_| vec![]).await
    })
    .await
}
