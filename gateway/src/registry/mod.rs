//! The eHealth registry over HTTP: legal entities and divisions (reference data), equipment
//! registration, moves between divisions, status and availability changes, and equipment queries.
//! The requests are read here; the commands run in the application layer
//! (`careledger_app::registry`), as they would from any other transport.
//!
//! Equipment commands act for the token's `client_id` (the legal entity) and `sub` (the user). A
//! token without `client_id` acts for no legal entity: 403 (an authorisation matter, answered right
//! after the scope check), never a guess.

mod equipment;
mod queries;
mod reference;

pub use careledger_app::registry::{EXTERNAL_ID_SCOPE, RegistryReferences};

use axum::Router;
use axum::routing::{get, patch, post};
use careledger_app::registry::Registry;
use uuid::Uuid;

use crate::http::envelope::{ApiError, Invalid};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/legal-entities", post(reference::register_legal_entity))
        .route("/api/v1/legal-entities/{id}", patch(reference::change_legal_entity_status))
        .route("/api/v1/divisions", post(reference::register_division))
        .route("/api/v1/divisions/{id}", patch(reference::change_division_status))
        .route("/api/v1/equipment", post(equipment::register).get(queries::list))
        .route("/api/v1/equipment/{id}", get(queries::one))
        .route("/api/v1/equipment/{id}/division-links", post(equipment::link_division))
        .route("/api/v1/equipment/{id}/status", patch(equipment::change_status))
        .route("/api/v1/equipment/{id}/availability", patch(equipment::change_availability))
}

/// The registry as the application layer runs it, on this server's services.
fn registry(state: &AppState) -> Registry<'_> {
    Registry { store: &state.store, references: &state.registry }
}

/// A UUID from the path, or 422 on the path parameter.
fn path_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid(vec![Invalid::path("id", "format", "expected a UUID")]))
}
