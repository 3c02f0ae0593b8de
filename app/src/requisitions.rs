//! IssueRequisition (eHealth's requisition numbers), whichever transport brought it.
//!
//! Most requests are an encounter's first, so the command is first decided against an empty
//! encounter and appended expecting the stream not to exist: one round trip, nothing read. If the
//! encounter has a number already, that append is refused (expected version 0) and the command is
//! decided again against the stream, under the encounter's lock so that this process's requests
//! for one encounter take turns. A number another encounter holds is refused by the store in the
//! same transaction (`unique_keys`), and decided again with a salt.

use std::collections::HashSet;

use careledger_domain::Ctx;
use careledger_domain::requisitions::{
    EncounterRequisition, IssueRequisition, RequisitionError, RequisitionKey, SALT_DRAWS,
};
use careledger_events::requisitions::{EntityType, RequisitionEvent, encounter_stream};
use careledger_store::{AppendRequest, EventStore, ExpectedVersion, KeyClaim, StoreError, StreamAppend};
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use crate::{AggregateCache, Answer, AppError, CommandCtx, CommitError, MAX_ATTEMPTS};

/// The set-invariant scope of requisition numbers: a number is held by one encounter.
pub const REQUISITION_SCOPE: &str = "requisition";

/// What the requisitions context needs to run its commands.
pub struct Requisitions<'a> {
    pub store: &'a EventStore,
    /// Encounters asked for again, folded: this process's requests for one encounter take turns.
    pub encounters: &'a AggregateCache<EncounterRequisition>,
    /// The key numbers are derived with (eHealth's algorithm).
    pub key: &'a RequisitionKey,
}

/// IssueRequisition's input, checked by the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueInput {
    pub encounter_id: Uuid,
    pub entity_type: EntityType,
    pub entity_id: Uuid,
}

fn refused(e: RequisitionError) -> AppError {
    AppError::refused(e.refusal(), e.to_string())
}

/// The answer: 201 when this request issued the number, 200 when the encounter had it already.
fn answer(command: &IssueRequisition, requisition: &str, events: &[RequisitionEvent]) -> Answer {
    let data = json!({
        "requisition": requisition,
        "encounter_id": command.encounter_id,
        "entity_type": command.entity_type.name(),
        "entity_id": command.entity_id,
    });
    match events.first() {
        Some(RequisitionEvent::RequisitionIssued { .. }) => Answer::created(data),
        _ => Answer::ok(data),
    }
}

impl Requisitions<'_> {
    /// Issues the encounter's number for the entity (or answers the one it has).
    pub async fn issue(&self, ctx: &CommandCtx, input: IssueInput) -> Result<Answer, AppError> {
        if let Some(answer) = ctx.earlier_answer(self.store).await? {
            return Ok(answer);
        }
        let IssueInput { encounter_id, entity_type, entity_id } = input;
        let mut command = IssueRequisition { encounter_id, entity_type, entity_id, avoid: HashSet::new() };
        let stream = encounter_stream(command.encounter_id);
        // one seed for every attempt: deciding again after a collision only skips further salts
        let decision_ctx = Ctx { now: Utc::now(), seed: rand::random() };
        let unknown = EncounterRequisition::default();
        let mut exists = false;
        // conflicts are bounded by MAX_ATTEMPTS, taken numbers by the domain's SALT_DRAWS
        for _ in 0..MAX_ATTEMPTS + SALT_DRAWS {
            let mut guard = if exists { Some(self.encounters.lock(self.store, &stream).await?) } else { None };
            let (current, version) = guard.as_ref().map(|g| (&g.state, g.version)).unwrap_or((&unknown, 0));
            let events = command.decide(current, self.key, &decision_ctx).map_err(refused)?;
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
            match ctx.commit(self.store, request, answer).await {
                Ok((outcome, answer)) => {
                    if let Some(g) = guard.as_mut() {
                        g.advance(&events, outcome.versions.first().copied().unwrap_or(version));
                    }
                    if events.is_empty() {
                        // nothing appended: point at the encounter's last event, which includes
                        // this entity, so that a read after it sees what the answer says
                        return Ok(answer.at(self.last_position(&stream, version).await?));
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
        Err(AppError::Conflict("IssueRequisition kept conflicting with concurrent writers; retry".into()))
    }

    /// The position of the stream's event at `version` (its last, as the caller has folded it).
    async fn last_position(&self, stream: &str, version: i64) -> Result<i64, AppError> {
        let events = self.store.read_stream(stream, version - 1, 1).await?;
        Ok(events.first().map(|e| e.position).unwrap_or(0))
    }
}
