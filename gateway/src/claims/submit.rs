//! SubmitClaim (111007, bulk): each ENTERED claim checked against the reference data and CHECKED or
//! REJECTED, every line with its rejection reason.
//!
//! What a claim is checked against is read per claim, never per line: the insuree with its policies
//! and its passed lines of the claim's codes in one statement from the read models, the facility,
//! its price list, the register and the products' coverage from the copy this process keeps
//! (`AppState::claims_reference`), which that statement tells whether it is still current.

use std::sync::Mutex;

use axum::extract::State;
use axum::http::HeaderMap;
use careledger_domain::claims::{ClaimError, SubmitClaim};
use careledger_events::claims::claim_stream;
use careledger_projections::claims::ClaimQueries;
use chrono::Utc;
use uuid::Uuid;

use super::{OnClaim, alone, bulk, bulk_ctx, bulk_uuids, counted, on_claim, refused};
use crate::auth::User;
use crate::handler::CommandCtx;
use crate::http::body::JsonBody;
use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

/// `POST /api/v1/claims/submit` `{uuids}`
pub async fn submit(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, _): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("SubmitClaims", async {
        user.require(state.config.permissions.of(careledger_app::Operation::SubmitClaim))?;
        let uuids = bulk_uuids(&body)?;
        let ctx = bulk_ctx("SubmitClaims", &user, &headers, "/api/v1/claims/submit")?;
        bulk(uuids, |id| submit_one(&state, &ctx, &user, id)).await
    })
    .await
}

/// The claim's data names the reference data to read, which is read outside the claim's lock: from
/// the state this process holds (no read of the log), or else under the lock. When the claim is
/// found changed at the decision (another process updated it), the data is read again once.
async fn submit_one(state: &AppState, ctx: &CommandCtx, user: &User, claim_id: Uuid) -> Result<Envelope, ApiError> {
    let scope = user.health_facility.as_deref();
    let stream = claim_stream(claim_id);
    let mut data = match state.claims.peek(&stream) {
        Some(claim) => claim.visible_to(scope).map_err(refused)?.data.clone(),
        None => state.claims.lock(&state.store, &stream).await?.state.visible_to(scope).map_err(refused)?.data.clone(),
    };
    let command = SubmitClaim { facility: user.health_facility.clone(), today: Utc::now().date_naive() };
    for _ in 0..2 {
        let mut codes: Vec<String> = data.lines().map(|(_, _, l)| l.code.clone()).collect();
        codes.sort();
        codes.dedup();
        let facts = ClaimQueries(state.store.db())
            .submit_facts(&state.claims_reference, claim_id, &data.health_facility, &data.insuree, &codes)
            .await?;
        let changed = Mutex::new(None);
        let result = on_claim(
            state,
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
