//! SubmitClaim (111007, bulk) over HTTP: `{uuids}` read here, each claim submitted in
//! `careledger_app::claims` (which says what a claim is checked against, and how it is read).

use axum::extract::State;
use axum::http::HeaderMap;

use super::{bulk_envelope, bulk_uuids, context, counted};
use crate::auth::User;
use crate::handler::command_ctx;
use crate::http::body::JsonBody;
use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

/// `POST /api/v1/claims/submit` `{uuids}`
pub async fn submit(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("SubmitClaims", async {
        let ctx = command_ctx(&state, "SubmitClaims", &user, &headers, "/api/v1/claims/submit", &bytes)?;
        let uuids = bulk_uuids(&body)?;
        Ok(bulk_envelope(context(&state).submit(ctx, uuids).await?))
    })
    .await
}
