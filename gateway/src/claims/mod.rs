//! openIMIS claims over HTTP: reference data upserts, the claim lifecycle's commands, queries, the
//! per-stage report, attachments and printing.
//!
//! A token with a `health_facility` claim acts only on that facility's claims: another
//! facility's claim is a 403 (in a bulk command, that claim's answer), and lists show only the
//! facility's claims. Bulk commands (`{"uuids": [...]}`) answer 200 with one entry per claim, in
//! the order asked: `{"uuid", "done": true, "claim": ...}` or `{"uuid", "done": false, "error":
//! {...}}`; each claim is its own append, so one refused claim takes nothing of the others.

mod attachments;
mod entry;
mod print;
mod process;
mod queries;
mod reference;
mod review;
mod submit;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, patch, post};
use careledger_domain::claims::{Claim, ClaimError, ClaimFacts, LineState};
use careledger_domain::{Aggregate, Ctx};
use careledger_events::claims::{ClaimEvent, claim_stream};
use careledger_store::{AppendRequest, ExpectedVersion, KeyClaim, StoreError, StreamAppend};
use chrono::Utc;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::auth::User;
pub(crate) use crate::handler::counted;
use crate::handler::{CommandCtx, CommitError, MAX_ATTEMPTS, catch_up};
use crate::http::body::Fields;
use crate::http::envelope::{ApiError, Envelope, Invalid};
use crate::state::AppState;

/// Set-invariant scope: the code of a live claim (`<facility>\u{1f}<code>` when codes are unique
/// per facility).
pub const CLAIM_CODE_SCOPE: &str = "claim-code";

/// Most claims one bulk command names.
pub const MAX_BULK: usize = 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/health-facilities", post(reference::facilities))
        .route("/api/v1/medical-items", post(reference::items))
        .route("/api/v1/medical-services", post(reference::services))
        .route("/api/v1/price-lists", post(reference::price_lists))
        .route("/api/v1/insurees", post(reference::insurees))
        .route("/api/v1/products", post(reference::products))
        .route("/api/v1/policies", post(reference::policies))
        .route("/api/v1/claims", post(entry::create).get(queries::list))
        .route("/api/v1/claims/{uuid}", get(queries::one).put(entry::update))
        .route("/api/v1/claims/delete", post(entry::delete))
        .route("/api/v1/claims/{uuid}/restore", post(entry::restore))
        .route("/api/v1/claims/submit", post(submit::submit))
        .route("/api/v1/claims/feedback/{action}", post(review::feedback_step))
        .route("/api/v1/claims/review/{action}", post(review::review_step))
        .route("/api/v1/claims/{uuid}/feedback", post(review::deliver_feedback))
        .route("/api/v1/claims/{uuid}/review", post(review::save_review))
        .route("/api/v1/claims/process", post(process::process))
        .route("/api/v1/claims/valuations", post(process::valuate))
        .route("/api/v1/claims/{uuid}/attachments", post(attachments::add))
        .route(
            "/api/v1/claims/{uuid}/attachments/{id}",
            patch(attachments::update).delete(attachments::delete).get(attachments::download),
        )
        .route("/api/v1/claims/{uuid}/print", get(print::print))
        .route("/api/v1/reports/claims-by-stage", get(queries::by_stage))
}

/// A refused claim command as an answer (an invalid entry keeps its JSON path).
fn refused(e: ClaimError) -> ApiError {
    match e.entry() {
        Some(entry) => ApiError::invalid(vec![Invalid::field(entry, "invalid", e.to_string())]),
        None => ApiError::refused(e.refusal(), e.to_string()),
    }
}

fn decision_ctx() -> Ctx {
    Ctx { now: Utc::now(), seed: rand::random() }
}

/// A UUID from the path, or 422 on the path parameter.
fn path_uuid(raw: &str, name: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid(vec![Invalid::path(name, "format", "expected a UUID")]))
}

/// The key a claim's code takes in [`CLAIM_CODE_SCOPE`].
fn code_key(state: &AppState, facility: &str, code: &str) -> String {
    if state.config.claim_code_per_facility { format!("{facility}\u{1f}{code}") } else { code.to_string() }
}

fn amount(a: Option<careledger_events::claims::Amount>) -> Value {
    a.map_or(Value::Null, |a| json!(a))
}

fn line_summary(l: &LineState) -> Value {
    json!({
        "index": l.index,
        "code": l.input.code,
        "qty_provided": l.input.qty_provided,
        "price_asked": l.input.price_asked,
        "status": l.status.map(|s| s.code()),
        "rejection_reason": l.status.map(|_| l.rejection_reason),
        "qty_approved": amount(l.qty_approved),
        "price_adjusted": amount(l.price_adjusted),
        "price_approved": amount(l.price_approved),
        "price_valuated": amount(l.price_valuated),
    })
}

/// What a command answers about a claim, from its state after the command.
fn claim_summary(facts: &ClaimFacts) -> Value {
    let lines = |kind| facts.lines.iter().filter(|l| l.kind == kind).map(line_summary).collect::<Vec<_>>();
    json!({
        "uuid": facts.id,
        "code": facts.data.code,
        "health_facility": facts.data.health_facility,
        "insuree": facts.data.insuree,
        "status": facts.status.code(),
        "feedback_status": facts.feedback_status.code(),
        "review_status": facts.review_status.code(),
        "rejection_reason": facts.rejection_reason,
        "category": facts.category.map(|c| c.name()),
        "claimed": facts.claimed,
        "approved": amount(facts.approved),
        "valuated": amount(facts.valuated),
        "remunerated": amount(facts.remunerated),
        "restored_from": facts.restored_from,
        "restored_as": facts.restored_as,
        "items": lines(careledger_events::claims::LineKind::Item),
        "services": lines(careledger_events::claims::LineKind::Service),
        "attachments": facts.attachments,
    })
}

fn summary(claim: &Claim) -> Value {
    claim.0.as_ref().map_or(Value::Null, claim_summary)
}

/// How a command on one claim runs.
pub(crate) struct OnClaim<'a> {
    claim_id: Uuid,
    ctx: &'a CommandCtx,
    /// The command creates the claim: 201 when it appended.
    creates: bool,
    /// Another stream appended together with the claim's, and its events (restore).
    companion: Option<(String, ExpectedVersion)>,
}

impl<'a> OnClaim<'a> {
    pub fn new(claim_id: Uuid, ctx: &'a CommandCtx) -> Self {
        OnClaim { claim_id, ctx, creates: false, companion: None }
    }

    pub fn creating(self) -> Self {
        OnClaim { creates: true, ..self }
    }

    /// The events decided for a second stream go to `stream`, which must be new.
    pub fn with_new_stream(self, stream: String) -> Self {
        OnClaim { companion: Some((stream, ExpectedVersion::Exact(0))), ..self }
    }
}

/// The code key the events take, if they create or update a claim.
fn taken_code(state: &AppState, events: &[ClaimEvent]) -> Option<String> {
    events.iter().rev().find_map(|e| match e {
        ClaimEvent::ClaimCreated(r) | ClaimEvent::ClaimUpdated(r) => {
            Some(code_key(state, &r.data.health_facility, &r.data.code))
        }
        _ => None,
    })
}

/// Frees `key` if the claim holding it no longer uses it (deleted, restored, or its code changed):
/// true when freed, so that the command may try again.
async fn free_stale_code(state: &AppState, key: &str) -> Result<bool, ApiError> {
    let Some(owner) = state.store.key_owner(CLAIM_CODE_SCOPE, key).await? else { return Ok(true) };
    let holder = state.claims.lock(&state.store, &owner).await?;
    let still_used = holder
        .state
        .0
        .as_ref()
        .is_some_and(|f| f.is_live() && code_key(state, &f.data.health_facility, &f.data.code) == key);
    drop(holder);
    if still_used {
        return Ok(false);
    }
    state.store.release_key(CLAIM_CODE_SCOPE, key, &owner).await?;
    Ok(true)
}

/// Runs a decision on one claim: lock its stream (commands on a claim take turns), decide on the
/// claim as this process holds it (no read of the log when it holds it), append at the version
/// decided on with the code key its events take, retry when a concurrent writer won (the retry
/// reads the log). `decide` also returns the events of a companion stream (restore's new claim).
/// The answer is the claim after the command: 201 for a command that creates and appended, else 200.
pub(crate) async fn on_claim(
    state: &AppState,
    run: OnClaim<'_>,
    decide: impl Fn(&Claim, &Ctx) -> Result<(Vec<ClaimEvent>, Vec<ClaimEvent>), ClaimError>,
) -> Result<Envelope, ApiError> {
    let stream = claim_stream(run.claim_id);
    let decision = decision_ctx();
    for _ in 0..MAX_ATTEMPTS {
        if let Some(answer) = run.ctx.earlier_answer(&state.store).await? {
            return Ok(answer);
        }
        // the claim as held: a decision that appends is checked by the append's expected version
        let (mut guard, read) = state.claims.lock_held(&state.store, &stream).await?;
        let mut decided = decide(&guard.state, &decision);
        let appends = matches!(&decided, Ok((events, companion)) if !events.is_empty() || !companion.is_empty());
        if !appends && !read && catch_up(&mut *guard, &state.store, &stream).await? {
            // a refusal or an answer without an append is of the claim as it is in the log
            decided = decide(&guard.state, &decision);
        }
        let (events, companion) = decided.map_err(refused)?;
        if events.is_empty() && companion.is_empty() {
            return Ok(Envelope::ok(summary(&guard.state)).at(state.store.head().await?));
        }
        let version = guard.version;
        let mut streams = vec![StreamAppend {
            stream: stream.clone(),
            expected: ExpectedVersion::Exact(version),
            events: run.ctx.events(&events),
        }];
        // the claim that answers: the companion (a restored copy) when there is one
        let (answer_claim, owner, code) = match &run.companion {
            Some((other, expected)) => {
                streams.push(StreamAppend {
                    stream: other.clone(),
                    expected: *expected,
                    events: run.ctx.events(&companion),
                });
                (Claim::from_events(&companion), other.clone(), taken_code(state, &companion))
            }
            None => {
                let mut after = guard.state.clone();
                after = events.iter().fold(after, |c, e| c.evolve(e));
                (after, stream.clone(), taken_code(state, &events))
            }
        };
        let claims = code.iter().map(|key| KeyClaim {
            scope: CLAIM_CODE_SCOPE.into(),
            keys: vec![key.clone()],
            owner: owner.clone(),
        });
        if let (Some(_), Some(key)) = (&run.companion, &code) {
            // restore: the rejected claim hands its code to its copy in this very append
            state.store.release_key(CLAIM_CODE_SCOPE, key, &stream).await?;
        }
        let request = AppendRequest { streams, claims: claims.collect(), idempotency: None };
        let body = summary(&answer_claim);
        let envelope =
            if run.creates || run.companion.is_some() { Envelope::created(body) } else { Envelope::ok(body) };
        match run.ctx.commit(state, request, envelope).await {
            Ok((outcome, answer)) => {
                let version = outcome.versions.first().copied().unwrap_or(version);
                guard.advance(&events, version);
                return Ok(answer);
            }
            Err(CommitError::Retry(StoreError::KeysTaken { .. })) => {
                guard.reset();
                drop(guard);
                let key = code.unwrap_or_default();
                if !free_stale_code(state, &key).await? {
                    if let Some(answer) = run.ctx.earlier_answer(&state.store).await? {
                        return Ok(answer);
                    }
                    return Err(refused(ClaimError::DuplicateCode));
                }
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
    Err(ApiError::conflict(format!("{} kept conflicting with concurrent writers; retry", run.ctx.command)))
}

/// Runs a command on one claim decided on its own stream, answering a repeated idempotency key
/// with its first answer.
#[allow(clippy::too_many_arguments)]
async fn on_one_claim(
    state: &AppState,
    user: &User,
    headers: &HeaderMap,
    bytes: &[u8],
    command: &'static str,
    claim_id: Uuid,
    path: &str,
    decide: impl Fn(&Claim, &Ctx) -> Result<Vec<ClaimEvent>, ClaimError>,
) -> Result<Envelope, ApiError> {
    let ctx = CommandCtx::new(command, user.actor(), headers, path, bytes)?;
    on_claim(state, OnClaim::new(claim_id, &ctx), alone(decide)).await
}

/// A decision of the claim's own stream only.
fn alone(
    decide: impl Fn(&Claim, &Ctx) -> Result<Vec<ClaimEvent>, ClaimError>,
) -> impl Fn(&Claim, &Ctx) -> Result<(Vec<ClaimEvent>, Vec<ClaimEvent>), ClaimError> {
    move |claim, ctx| decide(claim, ctx).map(|events| (events, vec![]))
}

/// The claims a bulk command names: `{"uuids": [...]}` (1 to 1000 UUIDs, no repeats).
fn bulk_uuids(body: &Map<String, Value>) -> Result<Vec<Uuid>, ApiError> {
    let mut f = Fields::new(body);
    f.only(&["uuids"]);
    let mut uuids = Vec::new();
    if let Some(items) = f.array("uuids", true, MAX_BULK) {
        if items.is_empty() {
            f.reject("uuids", "length", "expected 1 to 1000 UUIDs");
        }
        for (i, item) in items.iter().enumerate() {
            match item.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
                Some(id) if uuids.contains(&id) => f.reject(&format!("uuids[{i}]"), "unique", "named twice"),
                Some(id) => uuids.push(id),
                None => f.reject(&format!("uuids[{i}]"), "format", "expected a UUID"),
            }
        }
    }
    f.finish()?;
    Ok(uuids)
}

/// Correlation and actor of a bulk command; no idempotency key (each claim answers for itself: a
/// repeat is refused claim by claim as already done).
fn bulk_ctx(command: &'static str, user: &User, headers: &HeaderMap, path: &str) -> Result<CommandCtx, ApiError> {
    Ok(CommandCtx::new(command, user.actor(), headers, path, &[])?.without_idempotency())
}

/// A bulk command whose claims are each decided on their own stream alone.
async fn bulk_command(
    state: &AppState,
    user: &User,
    headers: &HeaderMap,
    body: &Map<String, Value>,
    command: &'static str,
    path: &str,
    decide: impl Fn(&Claim, &Ctx) -> Result<Vec<ClaimEvent>, ClaimError>,
) -> Result<Envelope, ApiError> {
    let uuids = bulk_uuids(body)?;
    let ctx = bulk_ctx(command, user, headers, path)?;
    bulk(uuids, |id| on_claim(state, OnClaim::new(id, &ctx), alone(&decide))).await
}

/// Runs `one` for every claim named and answers each: done with the claim, or why not.
async fn bulk<F, Fut>(uuids: Vec<Uuid>, mut one: F) -> Result<Envelope, ApiError>
where
    F: FnMut(Uuid) -> Fut,
    Fut: Future<Output = Result<Envelope, ApiError>>,
{
    let mut answers = Vec::with_capacity(uuids.len());
    let mut position = 0;
    for uuid in uuids {
        match one(uuid).await {
            Ok(done) => {
                position = position.max(done.position().unwrap_or(0));
                answers.push(json!({ "uuid": uuid, "done": true, "claim": done.data() }));
            }
            // a failure of the service itself is not a claim's answer
            Err(e) if e.status.is_server_error() => return Err(e),
            Err(e) => {
                let mut error = json!({ "code": e.status.as_u16(), "type": e.kind(), "message": e.message });
                if !e.invalid.is_empty() {
                    error["invalid"] = json!(e.invalid);
                }
                answers.push(json!({ "uuid": uuid, "done": false, "error": error }));
            }
        }
    }
    Ok(Envelope::ok(answers).at(position))
}
