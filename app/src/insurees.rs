//! Enrolment's commands (RegisterInsuree, EnrolInPolicy), whichever transport brought them: what
//! an enrolment officer or a health facility does, on the central server or offline on a node.
//!
//! A registration takes the oldest code reserved to the holder (the enrolment officer or health
//! facility enrolling) and appends, in one transaction, the insuree's `InsureeRegistered` (its
//! stream expected new) and the batch's `CodeAssigned` (the batch at the version the decision
//! saw), and claims the insuree's one code in `unique_keys`: a code is handed out once, however
//! many registrations race, and a node can only hand out the codes the central server reserved to
//! its holder. The read model only proposes the holder's batches; the batches' streams decide.

use std::time::Duration;

use careledger_domain::Ctx;
use careledger_domain::codes::CodeBatch;
use careledger_domain::insurees::{EnrolInPolicy, Insuree, InsureeError, Policy, RegisterInsuree};
use careledger_events::claims::Gender;
use careledger_events::codes::{HolderType, batch_stream};
use careledger_events::insurees::{InsureeEvent, insuree_stream, policy_stream};
use careledger_projections::Projections;
use careledger_projections::claims::Registers;
use careledger_projections::codes::CodeQueries;
use careledger_store::{AppendRequest, EventStore, ExpectedVersion, KeyClaim, StoreError, StreamAppend};
use chrono::{NaiveDate, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::codes::INSUREE_SCOPE;
use crate::{AggregateCache, Answer, AppError, Caller, CommandCtx, CommitError, MAX_ATTEMPTS, load};

/// What the enrolment context needs to run its commands.
pub struct Insurees<'a> {
    pub store: &'a EventStore,
    pub projections: &'a Projections,
    /// The code batches, kept folded (shared with the codes context).
    pub batches: &'a AggregateCache<CodeBatch>,
    /// How long a command waits for the read models that propose batches and hold the reference.
    pub query_wait: Duration,
}

/// Whose reserved codes a registration draws from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub holder_type: HolderType,
    pub code: String,
}

/// RegisterInsuree's input, checked by the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterInput {
    /// The insuree's id; a new one when absent.
    pub insuree_id: Option<Uuid>,
    pub last_name: String,
    pub other_names: String,
    pub birth_date: NaiveDate,
    pub gender: Gender,
    pub phone: Option<String>,
    pub family_head: Option<Uuid>,
    pub location: Option<String>,
    /// The holder named by the request; the caller's health facility when absent.
    pub holder: Option<Holder>,
}

/// EnrolInPolicy's input, checked by the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolInput {
    pub policy_id: Option<Uuid>,
    pub insuree_id: Uuid,
    pub product_code: String,
    pub enrol_date: NaiveDate,
    pub effective_date: NaiveDate,
    pub expiry_date: NaiveDate,
}

fn refused(e: InsureeError) -> AppError {
    AppError::refused(e.refusal(), e.to_string())
}

/// Whose codes the caller registers with (DESIGN rule 12): a caller acting for a health facility
/// draws from that facility's codes and names no other holder; any other caller names the holder
/// (an enrolment officer, a facility) it enrols for.
pub fn holder_for(caller: &Caller, named: Option<Holder>) -> Result<Holder, AppError> {
    match (&caller.health_facility, named) {
        (Some(own), None) => Ok(Holder { holder_type: HolderType::HealthFacility, code: own.clone() }),
        (Some(own), Some(h)) if h.holder_type == HolderType::HealthFacility && h.code == *own => Ok(h),
        (Some(own), Some(_)) => Err(AppError::Forbidden(format!(
            "A token acting for health facility {own} registers insurees with that facility's codes only"
        ))),
        (None, Some(h)) => Ok(h),
        (None, None) => Err(AppError::Invalid(vec![crate::Invalid::field(
            "$.holder_code",
            "required",
            "name the holder (holder_type and holder_code) whose reserved codes number the insuree",
        )])),
    }
}

fn insuree_view(event: &InsureeEvent) -> Value {
    match event {
        InsureeEvent::InsureeRegistered { insuree, at } => {
            let mut view = json!(insuree);
            view["registered_at"] = json!(careledger_projections::time::text(at));
            view
        }
        InsureeEvent::PolicyEnrolled { policy, at } => {
            let mut view = json!(policy);
            view["enrolled_at"] = json!(careledger_projections::time::text(at));
            view
        }
    }
}

impl Insurees<'_> {
    /// Registers an insuree with the oldest code reserved to the holder.
    pub async fn register(&self, ctx: &CommandCtx, caller: &Caller, input: RegisterInput) -> Result<Answer, AppError> {
        if let Some(answer) = ctx.earlier_answer(self.store).await? {
            return Ok(answer);
        }
        let holder = holder_for(caller, input.holder)?;
        let command = RegisterInsuree {
            insuree_id: input.insuree_id.unwrap_or_else(Uuid::now_v7),
            last_name: input.last_name,
            other_names: input.other_names,
            birth_date: input.birth_date,
            gender: input.gender,
            phone: input.phone,
            family_head: input.family_head,
            location: input.location,
            holder_type: holder.holder_type,
            holder_code: holder.code.clone(),
            identifiers: vec![],
        };
        let decision_ctx = Ctx { now: Utc::now(), seed: 0 };
        let stream = insuree_stream(command.insuree_id);
        // an insuree upserted as reference data has the id already (on the claims context's
        // stream): refused, and the append guards that stream so that an upsert meanwhile is seen
        let reference = careledger_events::claims::insuree_stream(command.insuree_id);
        for _ in 0..MAX_ATTEMPTS {
            if self.store.stream_version(&reference).await? > 0 {
                return Err(refused(InsureeError::InsureeExists));
            }
            let insuree = load::<Insuree>(self.store, &stream).await?;
            let head = match command.family_head {
                Some(h) => Some(load::<Insuree>(self.store, &insuree_stream(h)).await?.state),
                None => None,
            };
            command.check(&insuree.state, head.as_ref(), &decision_ctx).map_err(refused)?;
            // the batches are proposed by the codes read model: once it holds every reservation
            // committed before this request
            let started_at = self.store.highest_position().await?;
            if !self.projections.wait_for_one("codes", started_at, self.query_wait).await {
                return Err(AppError::Behind(started_at));
            }
            let candidates =
                CodeQueries(self.store.db()).batches_with_reserved(holder.holder_type.code(), &holder.code).await?;
            let mut conflicted = false;
            for batch_id in candidates.iter().filter_map(|id| Uuid::parse_str(id).ok()) {
                let batch = batch_stream(batch_id);
                let mut guard = self.batches.lock(self.store, &batch).await?;
                let registration = match command.decide(&insuree.state, head.as_ref(), &guard.state, &decision_ctx) {
                    Ok(r) => r,
                    // the read model was behind this batch: try the holder's next one
                    Err(InsureeError::NoReservedCodeInBatch) => continue,
                    Err(e) => return Err(refused(e)),
                };
                let request = AppendRequest {
                    streams: vec![
                        StreamAppend {
                            stream: batch.clone(),
                            expected: ExpectedVersion::Exact(guard.version),
                            events: ctx.events(std::slice::from_ref(&registration.code)),
                        },
                        StreamAppend {
                            stream: stream.clone(),
                            expected: ExpectedVersion::Exact(insuree.version),
                            events: ctx.events(std::slice::from_ref(&registration.insuree)),
                        },
                        StreamAppend { stream: reference.clone(), expected: ExpectedVersion::Exact(0), events: vec![] },
                    ],
                    claims: vec![KeyClaim {
                        scope: INSUREE_SCOPE.into(),
                        keys: vec![command.insuree_id.to_string()],
                        owner: registration.chfid().to_string(),
                    }],
                    idempotency: None,
                };
                let answer = Answer::created(insuree_view(&registration.insuree));
                match ctx.commit(self.store, request, answer).await {
                    Ok((outcome, answer)) => {
                        let version = outcome.versions.first().copied().unwrap_or(guard.version + 1);
                        guard.advance(std::slice::from_ref(&registration.code), version);
                        return Ok(answer);
                    }
                    Err(CommitError::Retry(StoreError::KeysTaken { scope, .. })) if scope == INSUREE_SCOPE => {
                        return Err(AppError::Conflict("the insuree already holds an insurance number".into()));
                    }
                    Err(other) => {
                        guard.reset();
                        if let Some(answer) = other.settled() {
                            return answer;
                        }
                        conflicted = true;
                        break;
                    }
                }
            }
            if !conflicted {
                let holder = format!("{} {}", holder.holder_type.name(), holder.code);
                return Err(refused(InsureeError::NoCodesLeft { holder }));
            }
        }
        Err(AppError::Conflict("RegisterInsuree kept conflicting with concurrent writers; retry".into()))
    }

    /// Enrols an insuree this server holds in a policy of a product it holds.
    pub async fn enrol(&self, ctx: &CommandCtx, input: EnrolInput) -> Result<Answer, AppError> {
        if let Some(answer) = ctx.earlier_answer(self.store).await? {
            return Ok(answer);
        }
        let command = EnrolInPolicy {
            policy_id: input.policy_id.unwrap_or_else(Uuid::now_v7),
            insuree_id: input.insuree_id,
            product_code: input.product_code,
            enrol_date: input.enrol_date,
            effective_date: input.effective_date,
            expiry_date: input.expiry_date,
            identifiers: vec![],
        };
        let decision_ctx = Ctx { now: Utc::now(), seed: 0 };
        let stream = policy_stream(command.policy_id);
        // the insuree and the product are read from the register, once it includes what was
        // appended before this request (an insuree or product never leaves the register)
        let started_at = self.store.highest_position().await?;
        if !self.projections.wait_for_one("claims", started_at, self.query_wait).await {
            return Err(AppError::Behind(started_at));
        }
        let registers = Registers(self.store.db());
        let insuree_known = registers.insuree_exists(&command.insuree_id.to_string()).await?;
        let product_known = registers.product_exists(&command.product_code).await?;
        for _ in 0..MAX_ATTEMPTS {
            let policy = load::<Policy>(self.store, &stream).await?;
            let events = command.decide(&policy.state, insuree_known, product_known, &decision_ctx).map_err(refused)?;
            let request = AppendRequest {
                streams: vec![StreamAppend {
                    stream: stream.clone(),
                    expected: ExpectedVersion::Exact(policy.version),
                    events: ctx.events(&events),
                }],
                claims: vec![],
                idempotency: None,
            };
            let answer = Answer::created(events.first().map(insuree_view).unwrap_or_default());
            match ctx.commit(self.store, request, answer).await {
                Ok((_, answer)) => return Ok(answer),
                Err(other) => {
                    if let Some(answer) = other.settled() {
                        return answer;
                    }
                }
            }
        }
        Err(AppError::Conflict("EnrolInPolicy kept conflicting with concurrent writers; retry".into()))
    }
}
