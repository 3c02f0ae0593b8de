//! For operators: liveness, readiness, Prometheus metrics, the OpenAPI description. These answer
//! without a token: a `/ready` that cannot read the database (503) says why in a few words
//! ("database unreachable") and logs the driver's error under its request id.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::http::envelope::{RETRY_AFTER_SECONDS, is_database_unreachable, request_id};
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

/// Ready when the database answers; says where each projector is. When it does not: 503 with
/// `"status": "unavailable"`, a short `reason` ("database unreachable" while the database cannot
/// be reached) and `Retry-After`.
async fn ready(State(state): State<AppState>) -> Response {
    match state.projections.status().await {
        Ok(projections) => {
            let head = projections.first().map(|p| p.head).unwrap_or(0);
            // A stuck projector makes the service "degraded", still 200: writes and the other
            // read models work, and a failure on an event is the same on every replica, so a 503
            // would take them all out of service for what only one read model suffers. Each
            // projector's `failures`, `error` and `failed_at` say which and why.
            let stuck: Vec<&str> = projections.iter().filter(|p| p.is_stuck()).map(|p| p.name.as_str()).collect();
            let mut warnings: Vec<String> = code_space_warning(&state).await.into_iter().collect();
            // a node offline is what a node is for: said, but still ready
            if let Some(sync) = state.sync.as_ref().map(|r| r.borrow().clone())
                && sync.failures > 0
            {
                warnings.push(format!(
                    "the last {1} sync rounds with {0} failed (next try at {2}); see sync.last_error",
                    sync.peer,
                    sync.failures,
                    sync.next_attempt_at.unwrap_or_default()
                ));
            }
            axum::Json(json!({
                "status": if stuck.is_empty() { "ready" } else { "degraded" },
                "stuck_projections": stuck,
                "warnings": warnings,
                "database": state.store.backend().name(),
                "head": head,
                "projections": projections,
                "relay": state.relay.as_ref().map(|r| r.borrow().clone()),
                "commands": state.intake.as_ref().map(|r| r.borrow().clone()),
                "sync": state.sync.as_ref().map(|r| r.borrow().clone()),
            }))
            .into_response()
        }
        Err(e) => {
            // the details (driver errors, hosts) go to the log under the request id, not to the
            // caller: /ready answers anyone who can reach the port
            let reason =
                if is_database_unreachable(&e) { "database unreachable" } else { "read models cannot be read" };
            tracing::warn!(request_id = %request_id(), error = %e, reason, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS))],
                axum::Json(json!({
                    "status": "unavailable",
                    "database": state.store.backend().name(),
                    "reason": reason,
                    "request_id": request_id(),
                })),
            )
                .into_response()
        }
    }
}

/// How much of the code space remains unissued, as a gauge and, below the configured share
/// (`CARELEDGER_CODES_LOW_PERCENT`), a warning: a scheme must order a longer format or another
/// prefix before GenerateCodes starts answering 409 (README "The code pool"). None when the
/// batches' read model cannot be read (the readiness answer says so otherwise).
async fn code_space_warning(state: &AppState) -> Option<String> {
    use careledger_domain::codes::CodeFormatExt;
    let issued = careledger_projections::codes::CodeQueries(state.store.db()).issued().await.ok()?.max(0) as u64;
    let space = state.config.code_format.space();
    let remaining = space.saturating_sub(issued);
    let ratio = if space == 0 { 0.0 } else { remaining as f64 / space as f64 };
    metrics::gauge!("careledger_code_space_remaining").set(remaining as f64);
    metrics::gauge!("careledger_code_space_remaining_ratio").set(ratio);
    (ratio * 100.0 < f64::from(state.config.codes_low_percent)).then(|| {
        format!(
            "the insuree code space is running out: {remaining} of {space} codes remain unissued (below {}%)",
            state.config.codes_low_percent
        )
    })
}

async fn metrics(State(state): State<AppState>) -> Response {
    if let Ok(head) = state.store.head().await {
        metrics::gauge!("careledger_log_head_position").set(head as f64);
    }
    // the code space's gauges, fresh for every scrape (not only when /ready is asked)
    let _ = code_space_warning(&state).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
