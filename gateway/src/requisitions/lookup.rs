//! `GET /api/v1/requisitions/{requisition}`: the encounter a number belongs to and the entities
//! sharing it, from the read model.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use careledger_domain::requisitions::RequisitionNumber;
use careledger_projections::requisitions::RequisitionQueries;

use crate::auth::User;
use crate::http::body::Params;
use crate::http::envelope::{ApiError, Envelope, Invalid};
use crate::http::read_after;
use crate::state::AppState;

pub async fn lookup(
    State(state): State<AppState>,
    Path(requisition): Path<String>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Envelope, ApiError> {
    user.require(state.config.permissions.of(careledger_app::Operation::ReadRequisition))?;
    // malformed is 422, not 404: the caller misread or mistyped, and should be told so
    let number = RequisitionNumber::parse(&requisition)
        .map_err(|e| ApiError::invalid(vec![Invalid::path("requisition", "format", e.to_string())]))?;
    let mut p = Params::new(&params);
    read_after(&state, &mut p).await?;
    p.finish()?;
    match RequisitionQueries(state.store.db()).requisition(&number.text()).await? {
        Some(view) => Ok(Envelope::ok(view)),
        None => Err(ApiError::not_found("Requisition not found")),
    }
}
