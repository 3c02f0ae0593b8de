//! Entering claims: create (111002), update while ENTERED (111010), delete while ENTERED (111004,
//! bulk), restore a REJECTED claim as a new one (111012).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use careledger_domain::claims::{CreateClaim, DeleteClaim, MAX_SECONDARY_ICD, RestoreClaim, UpdateClaim};
use careledger_events::claims::{Amount, CareType, ClaimData, LineInput, VisitType, claim_stream};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{OnClaim, alone, bulk_command, counted, on_claim, on_one_claim, path_uuid};
use crate::auth::User;
use crate::handler::CommandCtx;
use crate::http::body::{Fields, JsonBody};
use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

/// Most items (and most services) one claim has.
pub const MAX_LINES: usize = 100;

/// The lines of `items` or `services`, each checked (`$.services[0].qty_provided`, ...).
fn lines(f: &mut Fields<'_>, name: &str, services: bool) -> Vec<LineInput> {
    f.objects(name, false, MAX_LINES, |l, _| {
        l.only(&["code", "qty_provided", "price_asked", "explanation"]);
        let code = l.string("code", true, 50);
        let qty_provided = l.amount("qty_provided", true, Amount(1), Amount::MAX_QUANTITY);
        let price_asked = l.amount("price_asked", true, Amount::ZERO, Amount::MAX_PRICE);
        let explanation = l.string("explanation", false, 2000);
        if services && qty_provided.is_some_and(|q| q > Amount::units(1)) && explanation.is_none() {
            l.reject("explanation", "required", "required for a service with a quantity above 1");
        }
        Some(LineInput { code: code?, qty_provided: qty_provided?, price_asked: price_asked?, explanation })
    })
}

/// A claim's data from a create or update body, or 422 with every invalid field. `uuid` is allowed
/// when `with_uuid` (a client's own id for a new claim).
fn claim_data(body: &Map<String, Value>, with_uuid: bool) -> Result<(Option<Uuid>, ClaimData), ApiError> {
    let mut f = Fields::new(body);
    let mut allowed = vec![
        "code",
        "health_facility",
        "insuree",
        "date_from",
        "date_to",
        "date_claimed",
        "icd",
        "icd_1",
        "icd_2",
        "icd_3",
        "icd_4",
        "visit_type",
        "care_type",
        "admin",
        "explanation",
        "guarantee_id",
        "items",
        "services",
    ];
    if with_uuid {
        allowed.push("uuid");
    }
    f.only(&allowed);
    let uuid = if with_uuid { f.uuid("uuid", false) } else { None };
    let code = f.string("code", true, 50);
    let health_facility = f.string("health_facility", true, 50);
    let insuree = f.string("insuree", true, 50);
    let date_from = f.date("date_from", true);
    let date_to = f.date("date_to", false);
    let date_claimed = f.date("date_claimed", false);
    let icd = f.string("icd", true, 20);
    let icd_secondary: Vec<String> =
        (1..=MAX_SECONDARY_ICD).filter_map(|i| f.string(&format!("icd_{i}"), false, 20)).collect();
    let visit_type = f.one_of("visit_type", false, VisitType::from_name, &VisitType::names());
    let claim_care = |name: &str| CareType::from_name(name).filter(|c| *c != CareType::Both);
    let care_type = f.one_of("care_type", false, claim_care, "I, O");
    let admin = f.string("admin", false, 50);
    let explanation = f.string("explanation", false, 2000);
    let guarantee_id = f.string("guarantee_id", false, 50);
    let items = lines(&mut f, "items", false);
    let services = lines(&mut f, "services", true);
    f.finish()?;
    let (Some(code), Some(health_facility), Some(insuree), Some(date_from), Some(icd)) =
        (code, health_facility, insuree, date_from, icd)
    else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let data = ClaimData {
        code,
        health_facility,
        insuree,
        date_from,
        date_to,
        date_claimed: date_claimed.unwrap_or_else(|| chrono::Utc::now().date_naive()),
        icd,
        icd_secondary,
        visit_type: visit_type.unwrap_or(VisitType::Other),
        care_type,
        admin,
        explanation,
        guarantee_id,
        items,
        services,
    };
    Ok((uuid, data))
}

/// `POST /api/v1/claims`: a new ENTERED claim (201), its code unique among live claims (409).
pub async fn create(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("CreateClaim", async {
        user.require(state.config.permissions.of(careledger_app::Operation::CreateClaim))?;
        let (uuid, data) = claim_data(&body, true)?;
        let ctx = CommandCtx::new("CreateClaim", user.actor(), &headers, "/api/v1/claims", &bytes)?;
        let claim_id = uuid.unwrap_or_else(Uuid::now_v7);
        let command = CreateClaim { claim_id, data, facility: user.health_facility.clone() };
        on_claim(&state, OnClaim::new(claim_id, &ctx).creating(), alone(|c, d| command.decide(c, d))).await
    })
    .await
}

/// `PUT /api/v1/claims/{uuid}`: the ENTERED claim's data replaced.
pub async fn update(
    State(state): State<AppState>,
    Path(uuid): Path<String>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("UpdateClaim", async {
        user.require(state.config.permissions.of(careledger_app::Operation::UpdateClaim))?;
        let claim_id = path_uuid(&uuid, "uuid")?;
        let (_, data) = claim_data(&body, false)?;
        let path = format!("/api/v1/claims/{claim_id}");
        let command = UpdateClaim { data, facility: user.health_facility.clone() };
        on_one_claim(&state, &user, &headers, &bytes, "UpdateClaim", claim_id, &path, |c, d| command.decide(c, d)).await
    })
    .await
}

/// `POST /api/v1/claims/delete` `{uuids}`: each ENTERED claim deleted.
pub async fn delete(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, _): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("DeleteClaims", async {
        user.require(state.config.permissions.of(careledger_app::Operation::DeleteClaim))?;
        let command = DeleteClaim { facility: user.health_facility.clone() };
        let path = "/api/v1/claims/delete";
        bulk_command(&state, &user, &headers, &body, "DeleteClaims", path, |c, d| command.decide(c, d)).await
    })
    .await
}

/// `POST /api/v1/claims/{uuid}/restore`: the REJECTED claim copied as a new ENTERED claim (201,
/// the new claim), which takes over its code.
pub async fn restore(
    State(state): State<AppState>,
    Path(uuid): Path<String>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("RestoreClaim", async {
        user.require(state.config.permissions.of(careledger_app::Operation::RestoreClaim))?;
        let claim_id = path_uuid(&uuid, "uuid")?;
        Fields::new(&body).only(&[]).is_valid().then_some(()).ok_or_else(|| {
            ApiError::invalid(vec![crate::http::envelope::Invalid::field("$", "schema", "expected an empty object")])
        })?;
        let path = format!("/api/v1/claims/{claim_id}/restore");
        let ctx = CommandCtx::new("RestoreClaim", user.actor(), &headers, &path, &bytes)?;
        let new_claim_id = Uuid::now_v7();
        let command = RestoreClaim { new_claim_id, facility: user.health_facility.clone() };
        let run = OnClaim::new(claim_id, &ctx).with_new_stream(claim_stream(new_claim_id));
        on_claim(&state, run, |c, d| command.decide(c, d)).await
    })
    .await
}
