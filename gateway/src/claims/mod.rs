//! openIMIS claims over HTTP: reference data upserts, the claim lifecycle's commands, queries, the
//! per-stage report, attachments and printing. The requests are read here; the commands run in
//! the application layer (`careledger_app::claims`), as they would from any other transport.
//!
//! A token with a `health_facility` claim acts only on that facility's claims: another
//! facility's claim is a 403 (in a bulk command, that claim's answer), and lists show only the
//! facility's claims. Bulk commands (`{"uuids": [...]}`) answer 200 with one entry per claim, in
//! the order asked: `{"uuid", "done": true, "claim": ...}` or `{"uuid", "done": false, "error":
//! {...}}`; each claim is its own append, so one refused claim takes nothing of the others.

mod attachments;
mod entry;
mod print;
mod process;
mod queries;
pub(crate) mod reference;
mod review;
mod submit;

pub use careledger_app::claims::{CLAIM_CODE_SCOPE, MAX_BULK, MAX_LINES};

use axum::Router;
use axum::routing::{get, patch, post};
use careledger_app::claims::{BulkAnswer, Claims};
use serde_json::{Map, Value, json};
use uuid::Uuid;

pub(crate) use crate::handler::counted;
use crate::http::body::Fields;
use crate::http::envelope::{ApiError, Envelope, Invalid};
use crate::state::AppState;
pub(crate) use entry::claim_data;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/health-facilities", post(reference::facilities))
        .route("/api/v1/medical-items", post(reference::items))
        .route("/api/v1/medical-services", post(reference::services))
        .route("/api/v1/price-lists", post(reference::price_lists))
        .route("/api/v1/insurees", post(reference::insurees))
        .route("/api/v1/products", post(reference::products))
        .route("/api/v1/policies", post(reference::policies))
        .route("/api/v1/claims", post(entry::create).get(queries::list))
        .route("/api/v1/claims/{uuid}", get(queries::one).put(entry::update))
        .route("/api/v1/claims/delete", post(entry::delete))
        .route("/api/v1/claims/{uuid}/restore", post(entry::restore))
        .route("/api/v1/claims/submit", post(submit::submit))
        .route("/api/v1/claims/feedback/{action}", post(review::feedback_step))
        .route("/api/v1/claims/review/{action}", post(review::review_step))
        .route("/api/v1/claims/{uuid}/feedback", post(review::deliver_feedback))
        .route("/api/v1/claims/{uuid}/review", post(review::save_review))
        .route("/api/v1/claims/process", post(process::process))
        .route("/api/v1/claims/valuations", post(process::valuate))
        .route("/api/v1/claims/{uuid}/attachments", post(attachments::add))
        .route(
            "/api/v1/claims/{uuid}/attachments/{id}",
            patch(attachments::update).delete(attachments::delete).get(attachments::download),
        )
        .route("/api/v1/claims/{uuid}/print", get(print::print))
        .route("/api/v1/reports/claims-by-stage", get(queries::by_stage))
}

/// The claims context as the application layer runs it, on this server's services.
pub(crate) fn context(state: &AppState) -> Claims<'_> {
    Claims {
        store: &state.store,
        projections: &state.projections,
        claims: &state.claims,
        reference: &state.claims_reference,
        code_per_facility: state.config.claim_code_per_facility,
        offline_node: state.config.sync_master.is_some(),
        query_wait: state.config.query_wait,
    }
}

/// A UUID from the path, or 422 on the path parameter.
fn path_uuid(raw: &str, name: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid(vec![Invalid::path(name, "format", "expected a UUID")]))
}

/// The claims a bulk command names: `{"uuids": [...]}` (1 to 1000 UUIDs, no repeats).
fn bulk_uuids(body: &Map<String, Value>) -> Result<Vec<Uuid>, ApiError> {
    let mut f = Fields::new(body);
    f.only(&["uuids"]);
    let mut uuids = Vec::new();
    if let Some(items) = f.array("uuids", true, MAX_BULK) {
        if items.is_empty() {
            f.reject("uuids", "length", "expected 1 to 1000 UUIDs");
        }
        for (i, item) in items.iter().enumerate() {
            match item.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
                Some(id) if uuids.contains(&id) => f.reject(&format!("uuids[{i}]"), "unique", "named twice"),
                Some(id) => uuids.push(id),
                None => f.reject(&format!("uuids[{i}]"), "format", "expected a UUID"),
            }
        }
    }
    f.finish()?;
    Ok(uuids)
}

/// A bulk command's answer: each claim done with the claim, or why not (the error as the
/// envelope would give it alone).
fn bulk_envelope(answer: BulkAnswer) -> Envelope {
    let answers: Vec<Value> = answer
        .claims
        .into_iter()
        .map(|(uuid, result)| match result {
            Ok(done) => json!({ "uuid": uuid, "done": true, "claim": done.data }),
            Err(e) => {
                let e = ApiError::from(e);
                let mut error = json!({ "code": e.status.as_u16(), "type": e.kind(), "message": e.message });
                if !e.invalid.is_empty() {
                    error["invalid"] = json!(e.invalid);
                }
                json!({ "uuid": uuid, "done": false, "error": error })
            }
        })
        .collect();
    Envelope::ok(answers).at(answer.position)
}
