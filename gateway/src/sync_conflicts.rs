//! `GET /api/v1/sync/conflicts`: the changes a sync did not take as sent (issue #21, "never lose a
//! change silently"), each recorded on its claim as `ConflictRecorded` with the change's data, in
//! log order: an operator (or a peer's token) sees what the sync decided over and why.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use careledger_app::Operation;
use careledger_projections::claims::ClaimQueries;
use serde_json::json;

use crate::auth::User;
use crate::http::body::Params;
use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/sync/conflicts", get(conflicts))
}

/// `GET /api/v1/sync/conflicts?after=&limit=&peer=` (`sync:read`); a caller scoped to a health
/// facility sees its facility's claims' only.
async fn conflicts(
    State(state): State<AppState>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Envelope, ApiError> {
    user.require(state.config.permissions.of(Operation::SyncRead))?;
    let mut p = Params::new(&params);
    p.only(&["after", "limit", "peer"]);
    let after = p.integer("after", 0, 0, i64::MAX);
    let limit = p.integer("limit", 100, 1, 1000);
    let peer = p.string("peer", false);
    if peer.as_deref().is_some_and(|s| s.chars().count() > 500 || s.chars().any(char::is_control)) {
        p.fail("peer", "length", "expected a FHIR system of at most 500 characters, without control characters");
    }
    p.finish()?;
    let facility = user.health_facility.as_deref();
    let rows = ClaimQueries(state.store.db()).conflicts(after, peer.as_deref(), facility, limit).await?;
    let next = rows.last().map(|r| r.position).unwrap_or(after);
    Ok(Envelope::list(rows, json!({ "limit": limit, "after": after, "next": next })))
}
