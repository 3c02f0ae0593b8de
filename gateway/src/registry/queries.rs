//! Equipment queries: one equipment with its links and status history, and a legal entity's list.
//! Only the caller's legal entity's equipment is ever answered.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use careledger_events::registry::{AvailabilityStatus, EquipmentStatus};
use careledger_projections::registry::{EquipmentFilter, RegistryQueries};
use uuid::Uuid;

use super::path_id;
use crate::auth::User;
use crate::http::body::{Params, paging};
use crate::http::envelope::{ApiError, Envelope};
use crate::http::read_after;
use crate::state::AppState;

/// `GET /api/v1/equipment/{id}`: 404 when unknown, 403 when another legal entity's.
pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Envelope, ApiError> {
    user.require(state.config.permissions.of(careledger_app::Operation::ReadEquipment))?;
    let legal_entity_id = user.equipment_legal_entity()?;
    let id = path_id(&id)?;
    let mut p = Params::new(&params);
    read_after(&state, &mut p).await?;
    p.finish()?;
    let detail = RegistryQueries(state.store.db())
        .equipment_detail(&id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("Equipment not found"))?;
    if detail.equipment.legal_entity_id != legal_entity_id.to_string() {
        return Err(ApiError::forbidden("Equipment belongs to another legal entity"));
    }
    Ok(Envelope::ok(detail))
}

/// `GET /api/v1/equipment?division_id=&type=&external_id=&status=&availability_status=&limit=&offset=`
pub async fn list(
    State(state): State<AppState>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Envelope, ApiError> {
    user.require(state.config.permissions.of(careledger_app::Operation::ReadEquipment))?;
    let legal_entity_id = user.equipment_legal_entity()?;
    let mut p = Params::new(&params);
    let division_id = p.string("division_id", false);
    if let Some(d) = &division_id
        && Uuid::parse_str(d).is_err()
    {
        p.fail("division_id", "format", "expected a UUID");
    }
    let equipment_type = p.string("type", false);
    let external_id = p.string("external_id", false);
    let status = p.string("status", false);
    if let Some(s) = &status
        && EquipmentStatus::from_name(s).is_none()
    {
        p.fail("status", "inclusion", format!("expected one of {}", EquipmentStatus::names()));
    }
    let availability_status = p.string("availability_status", false);
    if let Some(a) = &availability_status
        && AvailabilityStatus::from_name(a).is_none()
    {
        p.fail("availability_status", "inclusion", format!("expected one of {}", AvailabilityStatus::names()));
    }
    let limit = p.integer("limit", 50, 1, 500);
    let offset = p.integer("offset", 0, 0, i64::MAX);
    read_after(&state, &mut p).await?;
    p.finish()?;
    let filter = EquipmentFilter {
        // as the read model writes it
        division_id: division_id.and_then(|d| Uuid::parse_str(&d).ok()).map(|d| d.to_string()),
        equipment_type,
        external_id,
        status,
        availability_status,
    };
    let (rows, total) =
        RegistryQueries(state.store.db()).equipment_list(&legal_entity_id.to_string(), &filter, limit, offset).await?;
    Ok(Envelope::list(rows, paging(limit, offset, total)))
}
