//! IssueRequisition over HTTP: `POST /api/v1/requisitions`. The request is read here; the
//! command runs in the application layer (`careledger_app::requisitions`), as it would from any
//! other transport.

use axum::extract::State;
use axum::http::HeaderMap;
use careledger_app::requisitions::{IssueInput, Requisitions};

use crate::auth::User;
use crate::handler::{command_ctx, counted};
use crate::http::body::{Fields, JsonBody};
use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

/// `POST /api/v1/requisitions` `{encounter_id, entity_type, entity_id}`
pub async fn issue(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("IssueRequisition", async {
        let ctx = command_ctx(&state, "IssueRequisition", &user, &headers, "/api/v1/requisitions", &bytes)?;
        let mut f = Fields::new(&body);
        f.only(&["encounter_id", "entity_type", "entity_id"]);
        let encounter_id = f.uuid("encounter_id", true);
        let entity_type = f.entity_type("entity_type");
        let entity_id = f.uuid("entity_id", true);
        let input = f.finish_with(|| {
            Some(IssueInput { encounter_id: encounter_id?, entity_type: entity_type?, entity_id: entity_id? })
        })?;
        let requisitions =
            Requisitions { store: &state.store, encounters: &state.encounters, key: &state.config.requisition_key };
        let answer = requisitions.issue(&ctx, input).await?;
        Ok(answer.into())
    })
    .await
}
