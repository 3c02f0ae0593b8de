//! The insuree code pool over HTTP: generate batches, reserve, assign, link control numbers,
//! the openIMIS queries (getInsuranceCodesBatch, getInsuranceCodes) with each code's history, and
//! the card printer's order of a batch or a reservation.

mod commands;
mod order;
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
        // export.csv, order.xlsx, qr-codes.zip
        .route("/api/v1/code-batches/{batch_id}/{document}", get(order::batch))
        .route("/api/v1/codes/reservations", post(commands::reserve))
        // order.xlsx, qr-codes.zip
        .route("/api/v1/codes/reservations/{reservation_id}/{document}", get(order::reservation))
        .route("/api/v1/codes/{code}/assignment", post(commands::assign))
        .route("/api/v1/codes/{code}/control-number", post(commands::link_control_number))
        .route("/api/v1/codes/{code}", get(queries::code))
}
