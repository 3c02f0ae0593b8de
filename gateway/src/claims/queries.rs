//! Claim queries (111001): lists with filters and paging, one claim with its lines and the amount
//! of every stage, and the per-stage report. A caller scoped to a health facility sees only its
//! claims (another facility's claim is a 403).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use careledger_events::claims::{Amount, ClaimStatus, StepStatus};
use careledger_projections::claims::{ClaimFilter, ClaimQueries};

use super::path_uuid;
use crate::auth::User;
use crate::http::body::{Params, paging};
use crate::http::envelope::{ApiError, Envelope};
use crate::http::read_after;
use crate::state::AppState;

/// The claim, 404 when unknown (or deleted), 403 when of another facility than the caller's.
pub(crate) async fn visible_claim(
    state: &AppState,
    user: &User,
    uuid: &str,
) -> Result<careledger_projections::claims::ClaimDetail, ApiError> {
    let claim_id = path_uuid(uuid, "uuid")?;
    let detail = ClaimQueries(state.store.db())
        .claim_detail(&claim_id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("Claim not found"))?;
    if user.health_facility.as_deref().is_some_and(|hf| hf != detail.claim.health_facility) {
        return Err(ApiError::forbidden("The claim belongs to another health facility"));
    }
    Ok(detail)
}

/// `GET /api/v1/claims/{uuid}`
pub async fn one(
    State(state): State<AppState>,
    Path(uuid): Path<String>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Envelope, ApiError> {
    user.require(state.config.permissions.of(careledger_app::Operation::ReadClaims))?;
    let mut p = Params::new(&params);
    read_after(&state, &mut p).await?;
    p.finish()?;
    Ok(Envelope::ok(visible_claim(&state, &user, &uuid).await?))
}

/// A status code parameter of one of `codes`.
fn status(p: &mut Params<'_>, name: &str, parse: impl Fn(i64) -> bool, codes: &str) -> Option<i32> {
    let raw = p.string(name, false)?;
    match raw.parse::<i64>() {
        Ok(code) if parse(code) => Some(code as i32),
        _ => {
            p.fail(name, "inclusion", format!("expected one of {codes}"));
            None
        }
    }
}

fn amount(p: &mut Params<'_>, name: &str) -> Option<i64> {
    let raw = p.string(name, false)?;
    match raw.parse::<f64>().ok().and_then(Amount::from_f64) {
        Some(a) => Some(a.0),
        None => {
            p.fail(name, "number", "expected a number");
            None
        }
    }
}

fn date(p: &mut Params<'_>, name: &str) -> Option<String> {
    let raw = p.string(name, false)?;
    match crate::http::body::parse_date(&raw) {
        Some(d) => Some(d.to_string()),
        None => {
            p.fail(name, "format", "expected a date YYYY-MM-DD");
            None
        }
    }
}

/// `GET /api/v1/claims?status=&feedback_status=&review_status=&health_facility=&insuree=&code=
/// &date_from=&date_to=&claimed_min=&claimed_max=&approved_min=&approved_max=&limit=&offset=`
pub async fn list(
    State(state): State<AppState>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Envelope, ApiError> {
    user.require(state.config.permissions.of(careledger_app::Operation::ReadClaims))?;
    let mut p = Params::new(&params);
    let steps = StepStatus::codes();
    let filter = ClaimFilter {
        status: status(&mut p, "status", |c| ClaimStatus::from_code(c).is_some(), &ClaimStatus::codes()),
        feedback_status: status(&mut p, "feedback_status", |c| StepStatus::from_code(c).is_some(), &steps),
        review_status: status(&mut p, "review_status", |c| StepStatus::from_code(c).is_some(), &steps),
        health_facility: p.string("health_facility", false),
        insuree: p.string("insuree", false),
        code: p.string("code", false),
        date_from: date(&mut p, "date_from"),
        date_to: date(&mut p, "date_to"),
        claimed_min: amount(&mut p, "claimed_min"),
        claimed_max: amount(&mut p, "claimed_max"),
        approved_min: amount(&mut p, "approved_min"),
        approved_max: amount(&mut p, "approved_max"),
    };
    let limit = p.integer("limit", 50, 1, 500);
    let offset = p.integer("offset", 0, 0, i64::MAX);
    read_after(&state, &mut p).await?;
    p.finish()?;
    let scope = user.health_facility.as_deref();
    let (rows, total) = ClaimQueries(state.store.db()).claims(scope, &filter, limit, offset).await?;
    Ok(Envelope::list(rows, paging(limit, offset, total)))
}

/// `GET /api/v1/reports/claims-by-stage?facility=&from=&to=`: claims and amounts per status.
pub async fn by_stage(
    State(state): State<AppState>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Envelope, ApiError> {
    user.require(state.config.permissions.of(careledger_app::Operation::ReadClaims))?;
    let mut p = Params::new(&params);
    let facility = p.string("facility", false);
    let from = date(&mut p, "from");
    let to = date(&mut p, "to");
    read_after(&state, &mut p).await?;
    p.finish()?;
    if let (Some(scope), Some(asked)) = (&user.health_facility, &facility)
        && scope != asked
    {
        return Err(ApiError::forbidden("The report asks for another health facility's claims"));
    }
    let facility = user.health_facility.clone().or(facility);
    let rows = ClaimQueries(state.store.db()).by_stage(facility.as_deref(), from.as_deref(), to.as_deref()).await?;
    Ok(Envelope::ok(rows))
}
