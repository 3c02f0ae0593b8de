//! Requisition numbers over HTTP: issue an encounter's number for one of its service requests,
//! and look a number up (the encounter and the entities sharing it).

mod issue;
mod lookup;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

/// The set-invariant scope of requisition numbers (the application layer's).
pub use careledger_app::requisitions::REQUISITION_SCOPE;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/requisitions", post(issue::issue))
        .route("/api/v1/requisitions/{requisition}", get(lookup::lookup))
}
