//! Feedback and review: select / skip / bypass (111010, bulk), deliver feedback (111009), save and
//! deliver a review (111008). The transitions are the domain's (see `careledger_domain::claims`).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use careledger_domain::claims::{DeliverFeedback, SaveReview, Step, StepAction, StepChange};
use careledger_events::claims::{Amount, Feedback, LineKind, LineReview};

use super::{bulk_command, counted, on_one_claim, path_uuid};
use crate::auth::User;
use crate::http::body::{Fields, JsonBody};
use crate::http::envelope::{ApiError, Envelope, Invalid};
use crate::state::AppState;

fn action(raw: &str) -> Result<StepAction, ApiError> {
    StepAction::from_name(raw)
        .ok_or_else(|| ApiError::invalid(vec![Invalid::path("action", "inclusion", "expected select, skip or bypass")]))
}

async fn step(
    state: AppState,
    user: User,
    headers: HeaderMap,
    body: serde_json::Map<String, serde_json::Value>,
    step: Step,
    raw_action: String,
) -> Result<Envelope, ApiError> {
    let action = action(&raw_action)?;
    // each step and action is a command of its own (openIMIS' mutations, the NATS subjects)
    let command = match (step, action) {
        (Step::Feedback, StepAction::Select) => "SelectClaimsForFeedback",
        (Step::Feedback, StepAction::Skip) => "SkipClaimsFeedback",
        (Step::Feedback, StepAction::Bypass) => "BypassClaimsFeedback",
        (Step::Review, StepAction::Select) => "SelectClaimsForReview",
        (Step::Review, StepAction::Skip) => "SkipClaimsReview",
        (Step::Review, StepAction::Bypass) => "BypassClaimsReview",
    };
    counted(command, async {
        user.require(state.config.permissions.of(careledger_app::Operation::SelectClaimSteps))?;
        let path = format!("/api/v1/claims/{}/{raw_action}", step.name());
        let change = StepChange { step, action, facility: user.health_facility.clone() };
        bulk_command(&state, &user, &headers, &body, command, &path, |c, d| change.decide(c, d)).await
    })
    .await
}

/// `POST /api/v1/claims/feedback/{select|skip|bypass}` `{uuids}`
pub async fn feedback_step(
    State(state): State<AppState>,
    Path(action): Path<String>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, _): JsonBody,
) -> Result<Envelope, ApiError> {
    step(state, user, headers, body, Step::Feedback, action).await
}

/// `POST /api/v1/claims/review/{select|skip|bypass}` `{uuids}`
pub async fn review_step(
    State(state): State<AppState>,
    Path(action): Path<String>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, _): JsonBody,
) -> Result<Envelope, ApiError> {
    step(state, user, headers, body, Step::Review, action).await
}

/// `POST /api/v1/claims/{uuid}/feedback` `{care_rendered, payment_asked, drug_prescribed,
/// drug_received, assessment, officer, feedback_date}`
pub async fn deliver_feedback(
    State(state): State<AppState>,
    Path(uuid): Path<String>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("DeliverFeedback", async {
        user.require(state.config.permissions.of(careledger_app::Operation::DeliverFeedback))?;
        let claim_id = path_uuid(&uuid, "uuid")?;
        let mut f = Fields::new(&body);
        f.only(&[
            "care_rendered",
            "payment_asked",
            "drug_prescribed",
            "drug_received",
            "assessment",
            "officer",
            "feedback_date",
        ]);
        let flags = ["care_rendered", "payment_asked", "drug_prescribed", "drug_received"].map(|n| f.boolean(n, true));
        let assessment = f.integer("assessment", true, 0, 5);
        let officer = f.string("officer", false, 50);
        let feedback_date = f.date("feedback_date", false);
        f.finish()?;
        let ([Some(care_rendered), Some(payment_asked), Some(drug_prescribed), Some(drug_received)], Some(assessment)) =
            (flags, assessment)
        else {
            return Err(ApiError::internal("validated fields missing"));
        };
        let feedback = Feedback {
            care_rendered,
            payment_asked,
            drug_prescribed,
            drug_received,
            assessment: assessment as u8,
            officer,
            feedback_date: feedback_date.unwrap_or_else(|| chrono::Utc::now().date_naive()),
        };
        let path = format!("/api/v1/claims/{claim_id}/feedback");
        let command = DeliverFeedback { feedback, facility: user.health_facility.clone() };
        on_one_claim(&state, &user, &headers, &bytes, "DeliverFeedback", claim_id, &path, |c, d| command.decide(c, d))
            .await
    })
    .await
}

/// `POST /api/v1/claims/{uuid}/review` `{lines: [{kind, index, qty_approved, price_approved,
/// justification, rejected}], deliver}`
pub async fn save_review(
    State(state): State<AppState>,
    Path(uuid): Path<String>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("SaveReview", async {
        user.require(state.config.permissions.of(careledger_app::Operation::ReviewClaim))?;
        let claim_id = path_uuid(&uuid, "uuid")?;
        let mut f = Fields::new(&body);
        f.only(&["lines", "deliver"]);
        let lines = f.objects("lines", false, 2 * super::entry::MAX_LINES, |l, _| {
            l.only(&["kind", "index", "qty_approved", "price_approved", "justification", "rejected"]);
            let kind = l.one_of("kind", true, LineKind::from_name, &LineKind::names());
            let index = l.integer("index", true, 0, 10_000);
            let qty_approved = l.amount("qty_approved", false, Amount::ZERO, Amount::MAX_QUANTITY);
            let price_approved = l.amount("price_approved", false, Amount::ZERO, Amount::MAX_PRICE);
            let justification = l.string("justification", false, 2000);
            let rejected = l.boolean("rejected", false);
            Some(LineReview {
                kind: kind?,
                index: index? as usize,
                qty_approved,
                price_approved,
                justification,
                rejected: rejected.unwrap_or(false),
            })
        });
        let deliver = f.boolean("deliver", false).unwrap_or(false);
        f.finish()?;
        let path = format!("/api/v1/claims/{claim_id}/review");
        let command = SaveReview { lines, deliver, facility: user.health_facility.clone() };
        on_one_claim(&state, &user, &headers, &bytes, "SaveReview", claim_id, &path, |c, d| command.decide(c, d)).await
    })
    .await
}
