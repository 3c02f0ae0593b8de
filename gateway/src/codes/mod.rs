//! The insuree code pool over HTTP: generate batches, reserve, assign, link control numbers,
//! and the openIMIS queries (getInsuranceCodesBatch, getInsuranceCodes) with each code's history.

mod commands;
mod queries;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

/// Set-invariant scopes of this context (the application layer's; see `unique_keys`).
pub use careledger_app::codes::{CODE_SCOPE, INSUREE_SCOPE};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/code-batches", post(commands::generate).get(queries::batches))
        .route("/api/v1/code-batches/{batch_id}/codes", get(queries::codes))
        .route("/api/v1/code-batches/{batch_id}/export.csv", get(queries::export))
        .route("/api/v1/codes/reservations", post(commands::reserve))
        .route("/api/v1/codes/{code}/assignment", post(commands::assign))
        .route("/api/v1/codes/{code}/control-number", post(commands::link_control_number))
        .route("/api/v1/codes/{code}", get(queries::code))
}
