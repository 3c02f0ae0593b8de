//! Entering claims over HTTP: create (111002), update while ENTERED (111010), delete while
//! ENTERED (111004, bulk), restore a REJECTED claim as a new one (111012). The bodies are read
//! here into `ClaimData`; the commands run in `careledger_app::claims`.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use careledger_domain::claims::{MAX_SECONDARY_ICD, explanation_required};
use careledger_events::claims::{Amount, CareType, ClaimData, LineInput, LineKind, VisitType};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{MAX_LINES, bulk_envelope, bulk_uuids, context, counted, path_uuid};
use crate::auth::User;
use crate::handler::{canonical, command_ctx};
use crate::http::body::{Fields, JsonBody};
use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

/// The lines of `items` or `services`, each checked (`$.services[0].qty_provided`, ...).
fn lines(f: &mut Fields<'_>, name: &str, services: bool) -> Vec<LineInput> {
    f.objects(name, false, MAX_LINES, |l, _| {
        l.only(&["code", "qty_provided", "price_asked", "explanation"]);
        let code = l.string("code", true, 50);
        let qty_provided = l.amount("qty_provided", true, Amount(1), Amount::MAX_QUANTITY);
        let price_asked = l.amount("price_asked", true, Amount::ZERO, Amount::MAX_PRICE);
        let explanation = l.string("explanation", false, 2000);
        let kind = if services { LineKind::Service } else { LineKind::Item };
        if qty_provided.is_some_and(|q| explanation_required(kind, q)) && explanation.is_none() {
            l.reject("explanation", "required", "required for a service with a quantity above 1");
        }
        Some(LineInput { code: code?, qty_provided: qty_provided?, price_asked: price_asked?, explanation })
    })
}

/// A claim's data from a create or update body, or 422 with every invalid field. `uuid` is allowed
/// when `with_uuid` (a client's own id for a new claim).
pub(crate) fn claim_data(body: &Map<String, Value>, with_uuid: bool) -> Result<(Option<Uuid>, ClaimData), ApiError> {
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
    let data = f.finish_with(|| {
        Some(ClaimData {
            code: code?,
            health_facility: health_facility?,
            insuree: insuree?,
            date_from: date_from?,
            date_to,
            date_claimed: date_claimed.unwrap_or_else(|| chrono::Utc::now().date_naive()),
            icd: icd?,
            icd_secondary,
            visit_type: visit_type.unwrap_or(VisitType::Other),
            care_type,
            admin,
            explanation,
            guarantee_id,
            items,
            services,
        })
    })?;
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
        let ctx = command_ctx(&state, "CreateClaim", &user, &headers, "/api/v1/claims", &bytes)?;
        let (uuid, data) = claim_data(&body, true)?;
        let claim_id = uuid.unwrap_or_else(Uuid::now_v7);
        Ok(context(&state).create(&ctx, claim_id, data).await?.into())
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
        let path = format!("/api/v1/claims/{}", canonical(&uuid));
        let ctx = command_ctx(&state, "UpdateClaim", &user, &headers, &path, &bytes)?;
        let claim_id = path_uuid(&uuid, "uuid")?;
        let (_, data) = claim_data(&body, false)?;
        Ok(context(&state).update(&ctx, claim_id, data).await?.into())
    })
    .await
}

/// `POST /api/v1/claims/delete` `{uuids}`: each ENTERED claim deleted.
pub async fn delete(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("DeleteClaims", async {
        let ctx = command_ctx(&state, "DeleteClaims", &user, &headers, "/api/v1/claims/delete", &bytes)?;
        let uuids = bulk_uuids(&body)?;
        Ok(bulk_envelope(context(&state).delete(ctx, uuids).await?))
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
        let path = format!("/api/v1/claims/{}/restore", canonical(&uuid));
        let ctx = command_ctx(&state, "RestoreClaim", &user, &headers, &path, &bytes)?;
        let claim_id = path_uuid(&uuid, "uuid")?;
        Fields::new(&body).only(&[]).is_valid().then_some(()).ok_or_else(|| {
            ApiError::invalid(vec![crate::http::envelope::Invalid::field("$", "schema", "expected an empty object")])
        })?;
        Ok(context(&state).restore(&ctx, claim_id).await?.into())
    })
    .await
}
