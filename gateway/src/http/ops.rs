//! For operators: liveness, readiness, Prometheus metrics, the OpenAPI description.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::state::AppState;

/// The OpenAPI description, kept beside the code (`gateway/openapi.json`).
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
}

async fn health() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// Ready when the database answers; says where each projector is.
async fn ready(State(state): State<AppState>) -> Response {
    match state.projections.status().await {
        Ok(projections) => {
            let head = projections.first().map(|p| p.head).unwrap_or(0);
            axum::Json(json!({
                "status": "ready",
                "database": state.store.backend().name(),
                "head": head,
                "projections": projections,
                "relay": state.relay.as_ref().map(|r| r.borrow().clone()),
                "commands": state.intake.as_ref().map(|r| r.borrow().clone()),
            }))
            .into_response()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                json!({ "status": "unavailable", "database": state.store.backend().name(), "error": e.to_string() }),
            ),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    if let Ok(head) = state.store.head().await {
        metrics::gauge!("careledger_log_head_position").set(head as f64);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
