//! getInsuranceCodesBatch, getInsuranceCodes and a code's follow-up.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};

use careledger_domain::codes::{CodeFormatExt, CodeStatus};
use careledger_projections::codes::CodeQueries;
use uuid::Uuid;

use crate::auth::User;
use crate::http::body::{Params, paging};
use crate::http::envelope::{ApiError, Envelope, Invalid};
use crate::http::read_after;
use crate::state::AppState;

/// `?status=`: available, reserved or assigned.
pub(super) fn status_param(p: &mut Params) -> Option<String> {
    let status = p.string("status", false);
    if let Some(s) = &status
        && CodeStatus::from_name(s).is_none()
    {
        p.fail("status", "inclusion", "expected available, reserved or assigned");
    }
    status
}

pub(super) fn batch_id_of(raw: &str) -> Result<String, ApiError> {
    Uuid::parse_str(raw)
        .map(|id| id.to_string())
        .map_err(|_| ApiError::invalid(vec![Invalid::path("batch_id", "format", "expected a UUID")]))
}

/// `GET /api/v1/code-batches?holder_type=&holder_code=`
pub async fn batches(
    State(state): State<AppState>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Envelope, ApiError> {
    user.require(state.config.permissions.of(careledger_app::Operation::ReadCodes))?;
    let mut p = Params::new(&params);
    let holder_type = p.holder_type("holder_type");
    let holder_code = p.string("holder_code", true);
    let limit = p.integer("limit", 100, 1, 1000);
    let offset = p.integer("offset", 0, 0, i64::MAX);
    read_after(&state, &mut p).await?;
    p.finish()?;
    let (Some(holder_type), Some(holder_code)) = (holder_type, holder_code) else {
        return Err(ApiError::internal("validated parameters missing"));
    };
    let (rows, total) = CodeQueries(state.store.db()).batches(holder_type.code(), &holder_code, limit, offset).await?;
    Ok(Envelope::list(rows, paging(limit, offset, total)))
}

/// `GET /api/v1/code-batches/{batch_id}/codes?status=`
pub async fn codes(
    State(state): State<AppState>,
    Path(batch_id): Path<String>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Envelope, ApiError> {
    user.require(state.config.permissions.of(careledger_app::Operation::ReadCodes))?;
    let batch_id = batch_id_of(&batch_id)?;
    let mut p = Params::new(&params);
    let status = status_param(&mut p);
    let limit = p.integer("limit", 100, 1, 1000);
    let offset = p.integer("offset", 0, 0, i64::MAX);
    read_after(&state, &mut p).await?;
    p.finish()?;
    let queries = CodeQueries(state.store.db());
    if queries.batch(&batch_id).await?.is_none() {
        return Err(ApiError::not_found("Batch not found"));
    }
    let (rows, total) = queries.codes(&batch_id, status.as_deref(), limit, offset).await?;
    Ok(Envelope::list(rows, paging(limit, offset, total)))
}

/// `GET /api/v1/codes/{code}`: status, holder, batch, insuree, CN and the whole history.
pub async fn code(
    State(state): State<AppState>,
    Path(code): Path<String>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Envelope, ApiError> {
    user.require(state.config.permissions.of(careledger_app::Operation::ReadCodes))?;
    let mut p = Params::new(&params);
    read_after(&state, &mut p).await?;
    p.finish()?;
    match CodeQueries(state.store.db()).code(&code).await? {
        Some(detail) => Ok(Envelope::ok(detail)),
        None if state.config.code_format.is_valid(&code) => Err(ApiError::not_found("Code not found")),
        None => Err(ApiError::invalid(vec![Invalid::path(
            "code",
            "format",
            "not a valid insuree code (length, prefix or check digit)",
        )])),
    }
}
