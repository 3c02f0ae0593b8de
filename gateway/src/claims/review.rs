//! Feedback and review over HTTP: select / skip / bypass (111010, bulk), deliver feedback (111009),
//! save and deliver a review (111008). The bodies are read here; the commands run in
//! `careledger_app::claims`.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use careledger_app::claims::step_command;
use careledger_domain::claims::{Step, StepAction};
use careledger_events::claims::{Amount, Feedback, LineKind, LineReview};

use super::{MAX_LINES, bulk_envelope, bulk_uuids, context, counted, path_uuid};
use crate::auth::User;
use crate::handler::{canonical, command_ctx};
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
    (body, bytes): (serde_json::Map<String, serde_json::Value>, axum::body::Bytes),
    step: Step,
    raw_action: String,
) -> Result<Envelope, ApiError> {
    let action = action(&raw_action)?;
    let command = step_command(step, action);
    counted(command, async {
        let path = format!("/api/v1/claims/{}/{raw_action}", step.name());
        let ctx = command_ctx(&state, command, &user, &headers, &path, &bytes)?;
        let uuids = bulk_uuids(&body)?;
        Ok(bulk_envelope(context(&state).step(ctx, step, action, uuids).await?))
    })
    .await
}

/// `POST /api/v1/claims/feedback/{select|skip|bypass}` `{uuids}`
pub async fn feedback_step(
    State(state): State<AppState>,
    Path(action): Path<String>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    step(state, user, headers, (body, bytes), Step::Feedback, action).await
}

/// `POST /api/v1/claims/review/{select|skip|bypass}` `{uuids}`
pub async fn review_step(
    State(state): State<AppState>,
    Path(action): Path<String>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    step(state, user, headers, (body, bytes), Step::Review, action).await
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
        let path = format!("/api/v1/claims/{}/feedback", canonical(&uuid));
        let ctx = command_ctx(&state, "DeliverFeedback", &user, &headers, &path, &bytes)?;
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
        let [care_rendered, payment_asked, drug_prescribed, drug_received] =
            ["care_rendered", "payment_asked", "drug_prescribed", "drug_received"].map(|n| f.boolean(n, true));
        let assessment = f.integer("assessment", true, 0, 5);
        let officer = f.string("officer", false, 50);
        let feedback_date = f.date("feedback_date", false);
        let feedback = f.finish_with(|| {
            Some(Feedback {
                care_rendered: care_rendered?,
                payment_asked: payment_asked?,
                drug_prescribed: drug_prescribed?,
                drug_received: drug_received?,
                assessment: assessment? as u8,
                officer,
                feedback_date: feedback_date.unwrap_or_else(|| chrono::Utc::now().date_naive()),
            })
        })?;
        Ok(context(&state).deliver_feedback(&ctx, claim_id, feedback).await?.into())
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
        let path = format!("/api/v1/claims/{}/review", canonical(&uuid));
        let ctx = command_ctx(&state, "SaveReview", &user, &headers, &path, &bytes)?;
        let claim_id = path_uuid(&uuid, "uuid")?;
        let mut f = Fields::new(&body);
        f.only(&["lines", "deliver"]);
        let lines = f.objects("lines", false, 2 * MAX_LINES, |l, _| {
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
        Ok(context(&state).save_review(&ctx, claim_id, lines, deliver).await?.into())
    })
    .await
}
