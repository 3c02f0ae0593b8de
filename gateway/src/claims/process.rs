//! ProcessClaim (111011, bulk) and the valuation batch run of a product and period (111011) over
//! HTTP: the bodies are read here, the commands run in `careledger_app::claims`.

use axum::extract::State;
use axum::http::HeaderMap;
use careledger_app::claims::ValuationInput;
use careledger_events::claims::Amount;

use super::{bulk_envelope, bulk_uuids, context, counted};
use crate::auth::User;
use crate::handler::command_ctx;
use crate::http::body::{Fields, JsonBody};
use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

/// `POST /api/v1/claims/process` `{uuids}`
pub async fn process(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("ProcessClaims", async {
        let ctx = command_ctx(&state, "ProcessClaims", &user, &headers, "/api/v1/claims/process", &bytes)?;
        let uuids = bulk_uuids(&body)?;
        Ok(bulk_envelope(context(&state).process(ctx, uuids).await?))
    })
    .await
}

/// `POST /api/v1/claims/valuations` `{product, from, to, amount}`: the PROCESSED claims with
/// relative lines of the product and a target date in the period are valued together. 201 with
/// the run; 409 when no claim waits; 403 for a facility-scoped token (a run is every facility's).
pub async fn valuate(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("ValuateClaims", async {
        let ctx = command_ctx(&state, "ValuateClaims", &user, &headers, "/api/v1/claims/valuations", &bytes)?;
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
        let input =
            f.finish_with(|| Some(ValuationInput { product: product?, from: from?, to: to?, amount: amount? }))?;
        Ok(context(&state).valuate(&ctx, input).await?.into())
    })
    .await
}
