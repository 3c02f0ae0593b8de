//! The HTTP API: one router built from each context's routes, wrapped in the layers every request
//! passes (request id, tracing, body limit, panic catching) and answered in one envelope.

pub mod audit;
pub mod audit_search;
pub mod body;
pub mod envelope;
pub mod event_schema;
pub mod ops;
pub mod stream;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use uuid::Uuid;

use crate::state::AppState;
use body::Params;
use envelope::{ApiError, REQUEST_ID};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    Router::new()
        .merge(crate::codes::routes())
        .merge(crate::requisitions::routes())
        .merge(crate::registry::routes())
        .merge(crate::claims::routes())
        .merge(crate::insurees::routes())
        .merge(crate::fhir::routes())
        .merge(crate::sync_conflicts::routes())
        .merge(audit::routes())
        .merge(audit_search::routes())
        .merge(event_schema::routes())
        .merge(ops::routes())
        .fallback(|| async { ApiError::not_found("No such resource") })
        .method_not_allowed_fallback(|| async { ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed") })
        .layer(axum::middleware::from_fn(refuse_malformed))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal("internal error").into_response()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(axum::middleware::from_fn(request_id))
        .with_state(state)
}

/// Takes the caller's `x-request-id` (or makes one), makes it visible to the envelope, and
/// returns it on the answer.
async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(str::to_string)
        .unwrap_or_else(|| Uuid::now_v7().to_string());
    if let Ok(value) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID_HEADER, value.clone());
        let mut response = REQUEST_ID.scope(id, next.run(req)).await;
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
        response
    } else {
        REQUEST_ID.scope(id, next.run(req)).await
    }
}

/// What every request is checked for before a handler runs (one layer: each costs a boxed future
/// per request): NUL in the path or query, malformed command headers.
async fn refuse_malformed(req: Request, next: Next) -> Response {
    if let Some(refusal) = nul_in_uri(&req).or_else(|| malformed_command_headers(&req)) {
        return refusal;
    }
    next.run(req).await
}

/// A NUL character in the path or the query is a 422: no database can take it as text (see
/// `body::find_nul` for bodies), and a handler should not have to know.
fn nul_in_uri(req: &Request) -> Option<Response> {
    let uri = req.uri();
    if body::has_nul(uri.path()) {
        return Some(
            ApiError::invalid(vec![envelope::Invalid::path("path", "format", "must not contain %00")]).into_response(),
        );
    }
    if let Some(query) = uri.query()
        && body::has_nul(query)
    {
        let name = query
            .split('&')
            .find(|pair| body::has_nul(pair))
            .map(|pair| pair.split('=').next().unwrap_or(pair).to_string())
            .unwrap_or_default();
        return Some(
            ApiError::invalid(vec![envelope::Invalid::query(name, "format", "must not contain %00")]).into_response(),
        );
    }
    None
}

/// A command's `Idempotency-Key` or `Careledger-Correlation-Id` that is there but malformed is a
/// 422 naming the header, before any handler runs, instead of being taken as absent: a key that is
/// not visible ASCII (bytes the header cannot carry as text) would otherwise be dropped silently
/// and the command run without the idempotency its caller asked for, and a correlation id that is
/// not a UUID replaced by a new one the caller never learns. Its length (1 to 200 characters, not
/// counting surrounding spaces, which HTTP drops) is checked with the command's other input.
/// Queries carry neither header and are not concerned.
fn malformed_command_headers(req: &Request) -> Option<Response> {
    use axum::http::Method;
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let headers = req.headers();
    let mut invalid = Vec::new();
    if let Some(key) = headers.get(crate::handler::IDEMPOTENCY_HEADER)
        && key.to_str().is_err()
    {
        invalid.push(envelope::Invalid::header(
            "Idempotency-Key",
            "format",
            "expected visible ASCII characters (and spaces)",
        ));
    }
    if let Some(id) = headers.get(crate::handler::CORRELATION_HEADER) {
        let text = id.to_str().map(str::trim).unwrap_or("");
        // the hyphenated form only, as `format: uuid` is written (not the simple, braced or URN forms)
        if text.len() != 36 || Uuid::parse_str(text).is_err() {
            invalid.push(envelope::Invalid::header("Careledger-Correlation-Id", "format", "expected a UUID"));
        }
    }
    (!invalid.is_empty()).then(|| ApiError::invalid(invalid).into_response())
}

/// `?after_position=N`: waits until the read models have applied position N (read your writes).
/// A position no append has reached is a 422 at once: nothing will ever be applied there for
/// this caller to wait for (positions given to callers are committed, so they are never past the
/// log's highest committed position).
pub async fn read_after(state: &AppState, params: &mut Params<'_>) -> Result<(), ApiError> {
    let position = params.integer("after_position", 0, 0, i64::MAX);
    if position <= 0 || state.projections.reached(position) {
        return Ok(());
    }
    if position > state.store.highest_position().await? {
        params.fail("after_position", "number", "no event of the log has reached this position");
        return Ok(());
    }
    if !state.projections.wait_for(position, state.config.query_wait).await {
        return Err(careledger_projections::ProjectionError::Behind(position).into());
    }
    Ok(())
}
