//! Requisition numbers over HTTP: issue an encounter's number for one of its service requests,
//! and look a number up (the encounter and the entities sharing it).

mod issue;
mod lookup;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

/// Set-invariant scope of this context (see `unique_keys`): a number belongs to one encounter.
pub const REQUISITION_SCOPE: &str = "requisition";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/requisitions", post(issue::issue))
        .route("/api/v1/requisitions/{requisition}", get(lookup::lookup))
}
