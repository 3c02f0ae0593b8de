//! IssueRequisition: `POST /api/v1/requisitions`.
//!
//! Most requests are an encounter's first, so the handler first decides against an empty
//! encounter and appends expecting the stream not to exist: one round trip, nothing read. If the
//! encounter has a number already, that append is refused (expected version 0) and the request is
//! decided again against the stream, under the encounter's lock so that this process's requests
//! for one encounter take turns. A number another encounter holds is refused by the store in the
//! same transaction (`unique_keys`), and decided again with a salt.

use std::collections::HashSet;

use axum::extract::State;
use axum::http::HeaderMap;
use careledger_domain::Ctx;
use careledger_domain::requisitions::{EncounterRequisition, IssueRequisition, RequisitionError, SALT_DRAWS};
use careledger_events::requisitions::{RequisitionEvent, encounter_stream};
use careledger_store::{AppendRequest, ExpectedVersion, KeyClaim, StoreError, StreamAppend};
use chrono::Utc;
use serde_json::json;

use super::REQUISITION_SCOPE;
use crate::auth::User;
use crate::handler::{CommandCtx, CommitError, MAX_ATTEMPTS, counted};
use crate::http::body::{Fields, JsonBody};
use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

fn refused(e: RequisitionError) -> ApiError {
    ApiError::refused(e.refusal(), e.to_string())
}

/// `POST /api/v1/requisitions` `{encounter_id, entity_type, entity_id}`
pub async fn issue(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("IssueRequisition", async {
        user.require(state.config.permissions.of(careledger_app::Operation::IssueRequisition))?;
        let mut f = Fields::new(&body);
        f.only(&["encounter_id", "entity_type", "entity_id"]);
        let encounter_id = f.uuid("encounter_id", true);
        let entity_type = f.entity_type("entity_type");
        let entity_id = f.uuid("entity_id", true);
        f.finish()?;
        let (Some(encounter_id), Some(entity_type), Some(entity_id)) = (encounter_id, entity_type, entity_id) else {
            return Err(ApiError::internal("validated fields missing"));
        };
        let ctx = CommandCtx::new("IssueRequisition", user.actor(), &headers, "/api/v1/requisitions", &bytes)?;
        if let Some(answer) = ctx.earlier_answer(&state.store).await? {
            return Ok(answer);
        }
        let command = IssueRequisition { encounter_id, entity_type, entity_id, avoid: HashSet::new() };
        decide_and_commit(&state, &ctx, command).await
    })
    .await
}

/// The answer: 201 when this request issued the number, 200 when the encounter had it already.
fn answer(command: &IssueRequisition, requisition: &str, events: &[RequisitionEvent]) -> Envelope {
    let data = json!({
        "requisition": requisition,
        "encounter_id": command.encounter_id,
        "entity_type": command.entity_type.name(),
        "entity_id": command.entity_id,
    });
    match events.first() {
        Some(RequisitionEvent::RequisitionIssued { .. }) => Envelope::created(data),
        _ => Envelope::ok(data),
    }
}

async fn decide_and_commit(
    state: &AppState,
    ctx: &CommandCtx,
    mut command: IssueRequisition,
) -> Result<Envelope, ApiError> {
    let stream = encounter_stream(command.encounter_id);
    let key = &state.config.requisition_key;
    // one seed for every attempt: deciding again after a collision only skips further salts
    let decision_ctx = Ctx { now: Utc::now(), seed: rand::random() };
    let unknown = EncounterRequisition::default();
    let mut exists = false;
    // conflicts are bounded by MAX_ATTEMPTS, taken numbers by the domain's SALT_DRAWS
    for _ in 0..MAX_ATTEMPTS + SALT_DRAWS {
        let mut guard = if exists { Some(state.encounters.lock(&state.store, &stream).await?) } else { None };
        let (current, version) = guard.as_ref().map(|g| (&g.state, g.version)).unwrap_or((&unknown, 0));
        let events = command.decide(current, key, &decision_ctx).map_err(refused)?;
        let requisition = events.first().map(|e| e.requisition()).or(current.requisition.as_deref()).unwrap_or("");
        let answer = answer(&command, requisition, &events);
        let claims = match events.first() {
            Some(RequisitionEvent::RequisitionIssued { requisition, .. }) => vec![KeyClaim {
                scope: REQUISITION_SCOPE.into(),
                keys: vec![requisition.clone()],
                owner: stream.clone(),
            }],
            _ => vec![],
        };
        let request = AppendRequest {
            streams: vec![StreamAppend {
                stream: stream.clone(),
                expected: ExpectedVersion::Exact(version),
                events: ctx.events(&events),
            }],
            claims,
            idempotency: None,
        };
        match ctx.commit(state, request, answer).await {
            Ok((outcome, answer)) => {
                if let Some(g) = guard.as_mut() {
                    g.advance(&events, outcome.versions.first().copied().unwrap_or(version));
                }
                if events.is_empty() {
                    // nothing appended: point at the encounter's last event, which includes this
                    // entity, so that a read after it sees what the answer says
                    return Ok(answer.at(last_position(state, &stream, version).await?));
                }
                return Ok(answer);
            }
            // the number is another encounter's: decide again without it (a salt)
            Err(CommitError::Retry(StoreError::KeysTaken { keys, .. })) => command.avoid.extend(keys),
            Err(CommitError::Retry(e)) => {
                if let Some(g) = guard.as_mut() {
                    g.reset();
                }
                if matches!(e, StoreError::WrongExpectedVersion { .. }) {
                    exists = true;
                }
            }
            Err(CommitError::Answered(answer)) => return Ok(answer),
            Err(CommitError::Failed(e)) => {
                if let Some(g) = guard.as_mut() {
                    g.reset();
                }
                return Err(e);
            }
        }
    }
    Err(ApiError::conflict("IssueRequisition kept conflicting with concurrent writers; retry"))
}

/// The position of the stream's event at `version` (its last, as the caller has folded it).
async fn last_position(state: &AppState, stream: &str, version: i64) -> Result<i64, ApiError> {
    let events = state.store.read_stream(stream, version - 1, 1).await?;
    Ok(events.first().map(|e| e.position).unwrap_or(0))
}
