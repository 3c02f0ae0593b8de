//! Feedback and review: select / skip / bypass (111010, bulk), deliver feedback (111009), save and
//! deliver a review (111008). The transitions are the domain's (see `careledger_domain::claims`).

use careledger_domain::claims::{DeliverFeedback, SaveReview, Step, StepAction, StepChange};
use careledger_events::claims::{Feedback, LineReview};
use uuid::Uuid;

use super::{BulkAnswer, Claims};
use crate::{Answer, AppError, CommandCtx};

/// Each step and action is a command of its own (openIMIS' mutations, the NATS subjects): its
/// name in the table of commands.
pub fn step_command(step: Step, action: StepAction) -> &'static str {
    match (step, action) {
        (Step::Feedback, StepAction::Select) => "SelectClaimsForFeedback",
        (Step::Feedback, StepAction::Skip) => "SkipClaimsFeedback",
        (Step::Feedback, StepAction::Bypass) => "BypassClaimsFeedback",
        (Step::Review, StepAction::Select) => "SelectClaimsForReview",
        (Step::Review, StepAction::Skip) => "SkipClaimsReview",
        (Step::Review, StepAction::Bypass) => "BypassClaimsReview",
    }
}

impl Claims<'_> {
    /// Selects, skips or bypasses the feedback or review step of each claim named (`ctx` is of
    /// the command [`step_command`] names).
    pub async fn step(
        &self,
        ctx: CommandCtx,
        step: Step,
        action: StepAction,
        uuids: Vec<Uuid>,
    ) -> Result<BulkAnswer, AppError> {
        self.masters_only(ctx.command)?;
        let change = StepChange { step, action, facility: ctx.caller.health_facility.clone() };
        self.bulk_command(ctx, uuids, |c, d| change.decide(c, d)).await
    }

    /// DeliverFeedback on a claim selected for feedback.
    pub async fn deliver_feedback(
        &self,
        ctx: &CommandCtx,
        claim_id: Uuid,
        feedback: Feedback,
    ) -> Result<Answer, AppError> {
        self.masters_only(ctx.command)?;
        let command = DeliverFeedback { feedback, facility: ctx.caller.health_facility.clone() };
        self.on_one_claim(ctx, claim_id, |c, d| command.decide(c, d)).await
    }

    /// SaveReview: the reviewed lines of a claim selected for review, delivered when `deliver`.
    pub async fn save_review(
        &self,
        ctx: &CommandCtx,
        claim_id: Uuid,
        lines: Vec<LineReview>,
        deliver: bool,
    ) -> Result<Answer, AppError> {
        self.masters_only(ctx.command)?;
        let command = SaveReview { lines, deliver, facility: ctx.caller.health_facility.clone() };
        self.on_one_claim(ctx, claim_id, |c, d| command.decide(c, d)).await
    }
}
