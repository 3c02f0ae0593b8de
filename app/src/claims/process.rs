//! ProcessClaim (111011, bulk) and the valuation batch run of a product and period (111011).

use careledger_domain::claims::{ClaimError, ProcessClaim, ValuateClaim, relative_value};
use careledger_events::claims::{Amount, ClaimEvent, batch_run_stream, claim_stream};
use careledger_projections::ProjectionError;
use careledger_projections::claims::ClaimQueries;
use careledger_store::{AppendRequest, ExpectedVersion, StreamAppend};
use chrono::NaiveDate;
use serde_json::json;
use uuid::Uuid;

use super::{BulkAnswer, Claims, decision_ctx, refused};
use crate::{Answer, AppError, CommandCtx, MAX_ATTEMPTS};

/// A valuation run's input, checked by the transport (`from` ≤ `to`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValuationInput {
    pub product: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// What the product's allocation for the period is to pay.
    pub amount: Amount,
}

fn parse(id: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(id).map_err(|e| AppError::Internal(e.to_string()))
}

impl Claims<'_> {
    /// ProcessClaims: each claim named processed.
    pub async fn process(&self, ctx: CommandCtx, uuids: Vec<Uuid>) -> Result<BulkAnswer, AppError> {
        self.masters_only(ctx.command)?;
        let command = ProcessClaim { facility: ctx.caller.health_facility.clone() };
        self.bulk_command(ctx, uuids, |c, d| command.decide(c, d)).await
    }

    /// ValuateClaims: the PROCESSED claims with relative lines of the product and a target date
    /// in the period are valued together (one append with the run's record): index = amount / Σ
    /// their approved value. 201 with the run; 409 when no claim waits.
    pub async fn valuate(&self, ctx: &CommandCtx, input: ValuationInput) -> Result<Answer, AppError> {
        self.masters_only(ctx.command)?;
        // A run distributes a product's allocation over every facility's claims of the period
        // (the index is amount / their total): run for one facility, it would pay that
        // facility's lines as if they were all. So a facility-scoped caller cannot start one.
        if let Some(facility) = &ctx.caller.health_facility {
            return Err(AppError::Forbidden(format!(
                "A valuation runs over the claims of every health facility; a token scoped to health \
                 facility {facility} cannot start one"
            )));
        }
        let ValuationInput { product, from, to, amount } = input;
        let batch_run_id = Uuid::now_v7();
        let decision = decision_ctx();
        // The claims to value are found in the read model: let it see every claim processed
        // before the run started (the claims themselves are then read from their streams).
        let started_at = self.store.highest_position().await?;
        if !self.projections.wait_for_one("claims", started_at, self.query_wait).await {
            return Err(ProjectionError::Behind(started_at).into());
        }
        for _ in 0..MAX_ATTEMPTS {
            if let Some(answer) = ctx.earlier_answer(self.store).await? {
                return Ok(answer);
            }
            let ids =
                ClaimQueries(self.store.db()).claims_to_valuate(&product, &from.to_string(), &to.to_string()).await?;
            // locked in id order (the query's): two runs never wait for each other in a circle
            let mut guards = Vec::with_capacity(ids.len());
            for id in &ids {
                guards.push(self.claims.lock(self.store, &claim_stream(parse(id)?)).await?);
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
            let answer = Answer::created(json!({
                "batch_run_id": batch_run_id,
                "product": product,
                "from": from,
                "to": to,
                "amount": amount,
                "relative_total": relative_total,
                "index": if relative_total.0 == 0 { 0.0 } else { amount.to_f64() / relative_total.to_f64() },
                "claims": claims,
            }));
            match ctx.commit(self.store, AppendRequest { streams, claims: vec![], idempotency: None }, answer).await {
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
                Err(other) => {
                    guards.iter_mut().for_each(|g| g.reset());
                    if let Some(answer) = other.settled() {
                        return answer;
                    }
                }
            }
        }
        Err(AppError::Conflict("ValuateClaims kept conflicting with concurrent writers; retry".into()))
    }
}
