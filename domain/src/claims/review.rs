//! Feedback and review of a CHECKED claim, with the transitions openIMIS' client allows:
//! select only from IDLE or NOT_SELECTED, skip (NOT_SELECTED) only from IDLE or SELECTED, bypass
//! and deliver only when SELECTED. Saving a review needs it SELECTED too; a review that leaves no
//! passed line rejects the claim.

use careledger_events::claims::{Amount, ClaimEvent, ClaimStatus, Feedback, LineReview, StepStatus};

use super::{Claim, ClaimError, ClaimFacts};
use crate::Ctx;

/// Feedback (from the insuree) or review (by a medical officer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Feedback,
    Review,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Feedback => "feedback",
            Step::Review => "review",
        }
    }

    fn status(self, claim: &ClaimFacts) -> StepStatus {
        match self {
            Step::Feedback => claim.feedback_status,
            Step::Review => claim.review_status,
        }
    }

    /// Refused unless the claim is CHECKED and the step in one of `allowed`.
    fn require(self, claim: &ClaimFacts, allowed: &[StepStatus], needed: &'static str) -> Result<(), ClaimError> {
        claim.require(&[ClaimStatus::Checked], "CHECKED")?;
        let status = self.status(claim);
        if !allowed.contains(&status) {
            return Err(ClaimError::WrongStepStatus { step: self.name(), status, needed });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepAction {
    Select,
    Skip,
    Bypass,
}

impl StepAction {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "select" => Some(StepAction::Select),
            "skip" => Some(StepAction::Skip),
            "bypass" => Some(StepAction::Bypass),
            _ => None,
        }
    }
}

/// Select, skip or bypass the feedback or the review of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepChange {
    pub step: Step,
    pub action: StepAction,
    pub facility: Option<String>,
}

impl StepChange {
    pub fn decide(&self, state: &Claim, ctx: &Ctx) -> Result<Vec<ClaimEvent>, ClaimError> {
        use StepStatus::*;
        let claim = state.visible_to(self.facility.as_deref())?;
        let (allowed, needed, to): (&[StepStatus], _, _) = match self.action {
            StepAction::Select => (&[Idle, NotSelected], "IDLE or NOT_SELECTED", Selected),
            StepAction::Skip => (&[Idle, Selected], "IDLE or SELECTED", NotSelected),
            StepAction::Bypass => (&[Selected], "SELECTED", Bypassed),
        };
        self.step.require(claim, allowed, needed)?;
        let claim_id = claim.id;
        Ok(vec![match self.step {
            Step::Feedback => ClaimEvent::FeedbackStatusChanged { claim_id, feedback_status: to, at: ctx.now },
            Step::Review => ClaimEvent::ReviewStatusChanged { claim_id, review_status: to, at: ctx.now },
        }])
    }
}

/// Deliver the insuree's feedback on a claim whose feedback is SELECTED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverFeedback {
    pub feedback: Feedback,
    pub facility: Option<String>,
}

impl DeliverFeedback {
    pub fn decide(&self, state: &Claim, ctx: &Ctx) -> Result<Vec<ClaimEvent>, ClaimError> {
        let claim = state.visible_to(self.facility.as_deref())?;
        Step::Feedback.require(claim, &[StepStatus::Selected], "SELECTED")?;
        if self.feedback.assessment > 5 {
            return Err(ClaimError::invalid("$.assessment", "expected 0 to 5"));
        }
        Ok(vec![ClaimEvent::FeedbackDelivered { claim_id: claim.id, feedback: self.feedback.clone(), at: ctx.now }])
    }
}

/// Save a review of passed lines (and deliver it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveReview {
    pub lines: Vec<LineReview>,
    pub deliver: bool,
    pub facility: Option<String>,
}

impl SaveReview {
    pub fn decide(&self, state: &Claim, ctx: &Ctx) -> Result<Vec<ClaimEvent>, ClaimError> {
        let claim = state.visible_to(self.facility.as_deref())?;
        Step::Review.require(claim, &[StepStatus::Selected], "SELECTED")?;
        let mut after = claim.clone();
        for (i, r) in self.lines.iter().enumerate() {
            let entry = |field: &str| format!("$.lines[{i}]{field}");
            let line = match after.line_mut(r.kind, r.index) {
                Some(line) if line.passed() => line,
                Some(_) => return Err(ClaimError::invalid(entry(""), "only a passed line can be reviewed")),
                None => return Err(ClaimError::invalid(entry(".index"), "the claim has no such line")),
            };
            if r.qty_approved.is_some_and(|q| q.0 < 0) {
                return Err(ClaimError::invalid(entry(".qty_approved"), "must not be negative"));
            }
            if r.price_approved.is_some_and(|p| p.0 < 0) {
                return Err(ClaimError::invalid(entry(".price_approved"), "must not be negative"));
            }
            line.qty_approved = r.qty_approved.or(line.qty_approved);
            line.price_approved = r.price_approved;
            let field = |f: &str| match f {
                "qty_provided" => entry(".qty_approved"),
                _ => entry(".price_approved"),
            };
            if r.qty_approved.is_some() || r.price_approved.is_some() {
                super::entry::check_bounds(line.quantity(), line.approved_price(), field)?;
            }
            if r.rejected {
                line.status = Some(careledger_events::claims::LineStatus::Rejected);
            }
        }
        let any_passed = after.lines.iter().any(|l| l.passed());
        let approved = if any_passed { after.approved_total() } else { Amount::ZERO };
        let status = if any_passed { ClaimStatus::Checked } else { ClaimStatus::Rejected };
        Ok(vec![ClaimEvent::ReviewSaved {
            claim_id: claim.id,
            lines: self.lines.clone(),
            approved,
            status,
            delivered: self.deliver,
            at: ctx.now,
        }])
    }
}
