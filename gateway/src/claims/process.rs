//! ProcessClaim (111011, bulk) and the valuation batch run of a product and period (111011).

use axum::extract::State;
use axum::http::HeaderMap;
use careledger_domain::claims::{ClaimError, ProcessClaim, ValuateClaim, relative_value};
use careledger_events::claims::{Amount, ClaimEvent, batch_run_stream, claim_stream};
use careledger_projections::claims::ClaimQueries;
use careledger_store::{AppendRequest, ExpectedVersion, StreamAppend};
use serde_json::json;
use uuid::Uuid;

use super::{bulk_command, counted, decision_ctx, refused};
use crate::auth::User;
use crate::handler::{CommandCtx, CommitError, MAX_ATTEMPTS};
use crate::http::body::{Fields, JsonBody};
use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

/// `POST /api/v1/claims/process` `{uuids}`
pub async fn process(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, _): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("ProcessClaims", async {
        user.require(state.config.permissions.of(careledger_app::Operation::ProcessClaim))?;
        let command = ProcessClaim { facility: user.health_facility.clone() };
        let path = "/api/v1/claims/process";
        bulk_command(&state, &user, &headers, &body, "ProcessClaims", path, |c, d| command.decide(c, d)).await
    })
    .await
}

/// `POST /api/v1/claims/valuations` `{product, from, to, amount}`: the PROCESSED claims with
/// relative lines of the product and a target date in the period are valued together (one
/// append with the run's record): index = amount / Σ their approved value. 201 with the run; 409
/// when no claim waits.
pub async fn valuate(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("ValuateClaims", async {
        user.require(state.config.permissions.of(careledger_app::Operation::ValuateClaims))?;
        // A run distributes a product's allocation over every facility's claims of the period
        // (the index is amount / their total): run for one facility, it would pay that
        // facility's lines as if they were all. So a facility-scoped token cannot start one.
        if let Some(facility) = &user.health_facility {
            return Err(ApiError::forbidden(format!(
                "A valuation runs over the claims of every health facility; a token scoped to health \
                 facility {facility} cannot start one"
            )));
        }
        let mut f = Fields::new(&body);
        f.only(&["product", "from", "to", "amount"]);
        let product = f.string("product", true, 50);
        let from = f.date("from", true);
        let to = f.date("to", true);
        let amount = f.amount("amount", true, Amount::ZERO, Amount::MAX_ALLOCATION);
        if let (Some(from), Some(to)) = (from, to)
            && to < from
        {
            f.reject("to", "date", "must not be before from");
        }
        f.finish()?;
        let (Some(product), Some(from), Some(to), Some(amount)) = (product, from, to, amount) else {
            return Err(ApiError::internal("validated fields missing"));
        };
        let ctx = CommandCtx::new("ValuateClaims", user.actor(), &headers, "/api/v1/claims/valuations", &bytes)?;
        let batch_run_id = Uuid::now_v7();
        let decision = decision_ctx();
        // The claims to value are found in the read model: let it see every claim processed
        // before the run started (the claims themselves are then read from their streams).
        let started_at = state.store.highest_position().await?;
        if !state.projections.wait_for_one("claims", started_at, state.config.query_wait).await {
            return Err(careledger_projections::ProjectionError::Behind(started_at).into());
        }
        for _ in 0..MAX_ATTEMPTS {
            if let Some(answer) = ctx.earlier_answer(&state.store).await? {
                return Ok(answer);
            }
            let ids =
                ClaimQueries(state.store.db()).claims_to_valuate(&product, &from.to_string(), &to.to_string()).await?;
            // locked in id order (the query's): two runs never wait for each other in a circle
            let mut guards = Vec::with_capacity(ids.len());
            for id in &ids {
                guards.push(state.claims.lock(&state.store, &claim_stream(parse(id)?)).await?);
            }
            let relative_total: Amount =
                guards.iter().filter_map(|g| g.state.0.as_ref()).map(|f| relative_value(f, &product)).sum();
            let command = ValuateClaim { batch_run_id, product: product.clone(), amount, relative_total };
            let mut streams = Vec::new();
            let mut decided = Vec::new();
            for g in &guards {
                match command.decide(&g.state, &decision) {
                    Ok(events) => {
                        streams.push(StreamAppend {
                            stream: claim_stream(g.state.0.as_ref().map(|f| f.id).unwrap_or_default()),
                            expected: ExpectedVersion::Exact(g.version),
                            events: ctx.events(&events),
                        });
                        decided.push(events);
                    }
                    // the read model was behind: this claim no longer waits
                    Err(_) => decided.push(vec![]),
                }
            }
            let claims: Vec<Uuid> = guards
                .iter()
                .zip(&decided)
                .filter(|(_, e)| !e.is_empty())
                .filter_map(|(g, _)| g.state.0.as_ref().map(|f| f.id))
                .collect();
            if claims.is_empty() {
                return Err(refused(ClaimError::NothingToValuate));
            }
            let run = ClaimEvent::ValuationRun {
                batch_run_id,
                product: product.clone(),
                from,
                to,
                amount,
                relative_total,
                claims: claims.clone(),
                at: decision.now,
            };
            streams.push(StreamAppend {
                stream: batch_run_stream(batch_run_id),
                expected: ExpectedVersion::Exact(0),
                events: ctx.events(&[run]),
            });
            let answer = Envelope::created(json!({
                "batch_run_id": batch_run_id,
                "product": product,
                "from": from,
                "to": to,
                "amount": amount,
                "relative_total": relative_total,
                "index": if relative_total.0 == 0 { 0.0 } else { amount.to_f64() / relative_total.to_f64() },
                "claims": claims,
            }));
            match ctx.commit(&state, AppendRequest { streams, claims: vec![], idempotency: None }, answer).await {
                Ok((outcome, answer)) => {
                    // versions are those of the streams appended: the claims that were valued, in order
                    let mut versions = outcome.versions.iter();
                    for (g, events) in guards.iter_mut().zip(&decided).filter(|(_, e)| !e.is_empty()) {
                        if let Some(version) = versions.next() {
                            g.advance(events, *version);
                        }
                    }
                    return Ok(answer);
                }
                Err(CommitError::Retry(_)) => guards.iter_mut().for_each(|g| g.reset()),
                Err(CommitError::Answered(answer)) => return Ok(answer),
                Err(CommitError::Failed(e)) => {
                    guards.iter_mut().for_each(|g| g.reset());
                    return Err(e);
                }
            }
        }
        Err(ApiError::conflict("ValuateClaims kept conflicting with concurrent writers; retry"))
    })
    .await
}

fn parse(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|e| ApiError::internal(e.to_string()))
}
