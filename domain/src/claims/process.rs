//! Processing a CHECKED claim, and valuing processed claims' relative lines in a batch run.
//!
//! Processing values every passed line with a fixed price at its approved price (price origin P
//! or O); a claim with a relative line (price origin R) waits PROCESSED for its product's batch
//! run, the others are VALUATED at once with `remunerated` = `valuated`. Feedback and review still
//! SELECTED (never delivered) become BYPASSED.
//!
//! A batch run of a product and period distributes an allocated amount over the relative lines of
//! that product: index = amount / Σ their approved value, each line's `price_valuated` = its
//! approved price × index.

use careledger_events::claims::{Amount, ClaimEvent, ClaimStatus, LineValuation, PriceOrigin, StepStatus};
use uuid::Uuid;

use super::{Claim, ClaimError, ClaimFacts, LineState};
use crate::Ctx;

fn bypass_if_selected(status: StepStatus) -> StepStatus {
    if status == StepStatus::Selected { StepStatus::Bypassed } else { status }
}

/// Σ quantity × price_valuated of the passed lines, once all are valued.
fn valuated_total(lines: &[LineState]) -> Amount {
    lines.iter().filter(|l| l.passed()).map(|l| l.quantity().times(l.price_valuated.unwrap_or_default())).sum()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessClaim {
    pub facility: Option<String>,
}

impl ProcessClaim {
    pub fn decide(&self, state: &Claim, ctx: &Ctx) -> Result<Vec<ClaimEvent>, ClaimError> {
        let claim = state.visible_to(self.facility.as_deref())?;
        claim.require(&[ClaimStatus::Checked], "CHECKED")?;
        let mut after = claim.clone();
        let mut lines = Vec::new();
        for line in after.lines.iter_mut().filter(|l| l.passed()) {
            if line.price_origin == Some(PriceOrigin::Relative) {
                continue;
            }
            let price_valuated = line.approved_price();
            line.price_valuated = Some(price_valuated);
            lines.push(LineValuation { kind: line.kind, index: line.index, price_valuated });
        }
        let waits = after.lines.iter().any(LineState::waits_for_valuation);
        let (status, valuated) = if waits {
            (ClaimStatus::Processed, None)
        } else {
            (ClaimStatus::Valuated, Some(valuated_total(&after.lines)))
        };
        Ok(vec![ClaimEvent::ClaimProcessed {
            claim_id: claim.id,
            status,
            lines,
            valuated,
            remunerated: valuated,
            feedback_status: bypass_if_selected(claim.feedback_status),
            review_status: bypass_if_selected(claim.review_status),
            at: ctx.now,
        }])
    }
}

/// Σ approved value of a processed claim's lines waiting for `product`'s batch run.
pub fn relative_value(claim: &ClaimFacts, product: &str) -> Amount {
    claim
        .lines
        .iter()
        .filter(|l| l.waits_for_valuation() && l.product.as_deref() == Some(product))
        .map(LineState::approved_value)
        .sum()
}

/// Value a PROCESSED claim's relative lines of `product` at index `amount / relative_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValuateClaim {
    pub batch_run_id: Uuid,
    pub product: String,
    pub amount: Amount,
    pub relative_total: Amount,
}

impl ValuateClaim {
    pub fn decide(&self, state: &Claim, ctx: &Ctx) -> Result<Vec<ClaimEvent>, ClaimError> {
        let claim = state.visible_to(None)?;
        claim.require(&[ClaimStatus::Processed], "PROCESSED")?;
        let mut after = claim.clone();
        let mut lines = Vec::new();
        for line in after.lines.iter_mut() {
            if !(line.waits_for_valuation() && line.product.as_deref() == Some(self.product.as_str())) {
                continue;
            }
            let price_valuated = line.approved_price().scaled(self.amount, self.relative_total);
            line.price_valuated = Some(price_valuated);
            lines.push(LineValuation { kind: line.kind, index: line.index, price_valuated });
        }
        if lines.is_empty() {
            return Err(ClaimError::NothingToValuate);
        }
        let waits = after.lines.iter().any(LineState::waits_for_valuation);
        let status = if waits { ClaimStatus::Processed } else { ClaimStatus::Valuated };
        let valuated = valuated_total(&after.lines);
        Ok(vec![ClaimEvent::ClaimValuated {
            claim_id: claim.id,
            batch_run_id: self.batch_run_id,
            status,
            lines,
            valuated,
            remunerated: valuated,
            at: ctx.now,
        }])
    }
}
