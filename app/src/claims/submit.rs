//! SubmitClaim (111007, bulk): each ENTERED claim checked against the reference data and CHECKED or
//! REJECTED, every line with its rejection reason.
//!
//! What a claim is checked against is read per claim, never per line: the insuree with its policies
//! and its passed lines of the claim's codes in one statement from the read models, the facility,
//! its price list, the register and the products' coverage from the copy this process keeps
//! ([`Claims::reference`]), which that statement tells whether it is still current.

use std::sync::Mutex;

use careledger_domain::claims::{ClaimError, SubmitClaim};
use careledger_events::claims::claim_stream;
use careledger_projections::claims::ClaimQueries;
use chrono::Utc;
use uuid::Uuid;

use super::{BulkAnswer, Claims, OnClaim, alone, bulk, refused};
use crate::{Answer, AppError, CommandCtx};

impl Claims<'_> {
    /// SubmitClaims: each claim named submitted.
    pub async fn submit(&self, ctx: CommandCtx, uuids: Vec<Uuid>) -> Result<BulkAnswer, AppError> {
        let ctx = ctx.without_idempotency();
        bulk(uuids, |id| self.submit_one(&ctx, id)).await
    }

    /// The claim's data names the reference data to read, which is read outside the claim's lock:
    /// from the state this process holds (no read of the log), or else under the lock. When the
    /// claim is found changed at the decision (another process updated it), the data is read
    /// again once.
    async fn submit_one(&self, ctx: &CommandCtx, claim_id: Uuid) -> Result<Answer, AppError> {
        let scope = ctx.caller.health_facility.as_deref();
        let stream = claim_stream(claim_id);
        let mut data = match self.claims.peek(&stream) {
            Some(claim) => claim.visible_to(scope).map_err(refused)?.data.clone(),
            None => self.claims.lock(self.store, &stream).await?.state.visible_to(scope).map_err(refused)?.data.clone(),
        };
        let command = SubmitClaim { facility: ctx.caller.health_facility.clone(), today: Utc::now().date_naive() };
        for _ in 0..2 {
            let mut codes: Vec<String> = data.lines().map(|(_, _, l)| l.code.clone()).collect();
            codes.sort();
            codes.dedup();
            let facts = ClaimQueries(self.store.db())
                .submit_facts(self.reference, claim_id, &data.health_facility, &data.insuree, &codes)
                .await?;
            let changed = Mutex::new(None);
            let result = self
                .on_claim(
                    OnClaim::new(claim_id, ctx),
                    alone(|claim, decision| {
                        // what the last decision found (on_claim may decide again on the claim as read)
                        let newer = claim.0.as_ref().filter(|f| f.data != data).map(|f| f.data.clone());
                        let found = newer.is_some();
                        *changed.lock().unwrap_or_else(|p| p.into_inner()) = newer;
                        if found {
                            return Err(ClaimError::Changed);
                        }
                        command.decide(claim, &facts, decision)
                    }),
                )
                .await;
            match changed.into_inner().unwrap_or_else(|p| p.into_inner()) {
                Some(newer) => data = newer,
                None => return result,
            }
        }
        Err(refused(ClaimError::Changed))
    }
}
