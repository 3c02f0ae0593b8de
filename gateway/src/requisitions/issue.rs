//! IssueRequisition over HTTP: `POST /api/v1/requisitions`. The request is read here; the
//! command runs in the application layer (`careledger_app::requisitions`), as it would from any
//! other transport.

use axum::extract::State;
use axum::http::HeaderMap;
use careledger_app::requisitions::{IssueInput, Requisitions};

use crate::auth::User;
use crate::handler::{CommandCtx, counted};
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
        user.require(state.config.permissions.of(careledger_app::Operation::IssueRequisition))?;
        let mut f = Fields::new(&body);
        f.only(&["encounter_id", "entity_type", "entity_id"]);
        let encounter_id = f.uuid("encounter_id", true);
        let entity_type = f.entity_type("entity_type");
        let entity_id = f.uuid("entity_id", true);
        f.finish()?;
        let (Some(encounter_id), Some(entity_type), Some(entity_id)) = (encounter_id, entity_type, entity_id) else {
            return Err(ApiError::internal("validated fields missing"));
        };
        let ctx = CommandCtx::new("IssueRequisition", user.actor(), &headers, "/api/v1/requisitions", &bytes)?;
        let requisitions =
            Requisitions { store: &state.store, encounters: &state.encounters, key: &state.config.requisition_key };
        let answer = requisitions.issue(&ctx, IssueInput { encounter_id, entity_type, entity_id }).await?;
        Ok(answer.into())
    })
    .await
}
