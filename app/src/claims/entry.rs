//! Entering claims: create (111002), update while ENTERED (111010), delete while ENTERED (111004,
//! bulk), restore a REJECTED claim as a new one (111012).

use careledger_domain::claims::{CreateClaim, DeleteClaim, RestoreClaim, UpdateClaim};
use careledger_events::claims::{ClaimData, claim_stream};
use uuid::Uuid;

use super::{BulkAnswer, Claims, OnClaim, alone};
use crate::{Answer, AppError, CommandCtx};

impl Claims<'_> {
    /// CreateClaim: a new ENTERED claim (201) with the id the caller chose, its code unique
    /// among live claims (409).
    pub async fn create(&self, ctx: &CommandCtx, claim_id: Uuid, data: ClaimData) -> Result<Answer, AppError> {
        let command = CreateClaim { claim_id, data, facility: ctx.caller.health_facility.clone() };
        self.on_claim(OnClaim::new(claim_id, ctx).creating(), alone(|c, d| command.decide(c, d))).await
    }

    /// UpdateClaim: the ENTERED claim's data replaced.
    pub async fn update(&self, ctx: &CommandCtx, claim_id: Uuid, data: ClaimData) -> Result<Answer, AppError> {
        let command = UpdateClaim { data, facility: ctx.caller.health_facility.clone() };
        self.on_one_claim(ctx, claim_id, |c, d| command.decide(c, d)).await
    }

    /// DeleteClaims: each ENTERED claim deleted.
    pub async fn delete(&self, ctx: CommandCtx, uuids: Vec<Uuid>) -> Result<BulkAnswer, AppError> {
        let command = DeleteClaim { facility: ctx.caller.health_facility.clone() };
        self.bulk_command(ctx, uuids, |c, d| command.decide(c, d)).await
    }

    /// RestoreClaim: the REJECTED claim copied as a new ENTERED claim (201, the new claim), which
    /// takes over its code.
    pub async fn restore(&self, ctx: &CommandCtx, claim_id: Uuid) -> Result<Answer, AppError> {
        let new_claim_id = Uuid::now_v7();
        let command = RestoreClaim { new_claim_id, facility: ctx.caller.health_facility.clone() };
        let run = OnClaim::new(claim_id, ctx).with_new_stream(claim_stream(new_claim_id));
        self.on_claim(run, |c, d| command.decide(c, d)).await
    }
}
