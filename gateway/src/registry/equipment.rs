//! RegisterEquipment, LinkDivision, ChangeEquipmentStatus, ChangeAvailability over HTTP: the
//! requests are read here, the commands run in `careledger_app::registry`.
//!
//! Checks run in eHealth's order: token (401), scope (403), the token's legal entity (403 without
//! one), the request's schema (422, every invalid field), then the domain's: legal entity (409),
//! division (422 on `$.division_id`), the equipment's own state, and last the store's set invariant
//! (`external_id` unique within the legal entity, 409 "Duplicated equipment").

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use careledger_events::registry::{AvailabilityStatus, EquipmentRegistration, EquipmentStatus, Udi};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{path_id, registry};
use crate::auth::User;
use crate::handler::{canonical, command_ctx, counted};
use crate::http::body::{Fields, JsonBody};
use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

/// Most UDIs one equipment carries.
const MAX_UDI: usize = 20;

/// The UDIs of the body, each item checked like a body of its own (`$.udi[0].value`, ...).
fn udi_list(f: &mut Fields<'_>, items: &[Value]) -> Vec<Udi> {
    let mut list = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(object) = item else {
            f.reject(&format!("udi[{i}]"), "cast", "expected an object");
            continue;
        };
        let mut u = Fields::nested(object, format!("$.udi[{i}]"));
        u.only(&["type", "value", "assigner_name"]);
        let udi_type = u.string("type", true, 100);
        let value = u.string("value", true, 255);
        let assigner_name = u.string("assigner_name", false, 255);
        f.absorb(u);
        if let (Some(udi_type), Some(value)) = (udi_type, value) {
            list.push(Udi { udi_type, value, assigner_name });
        }
    }
    list
}

/// The registration a body describes, or 422 with every invalid field.
fn registration(body: &Map<String, Value>, legal_entity_id: Uuid) -> Result<EquipmentRegistration, ApiError> {
    let mut f = Fields::new(body);
    f.only(&[
        "division_id",
        "type",
        "external_id",
        "name",
        "serial_number",
        "manufacturer",
        "model_number",
        "lot_number",
        "udi",
        "manufacture_date",
        "expiration_date",
        "note",
        "availability_status",
    ]);
    let division_id = f.uuid("division_id", true);
    let equipment_type = f.string("type", true, 100);
    let external_id = f.string("external_id", true, 100);
    let name = f.string("name", true, 255);
    let serial_number = f.string("serial_number", false, 255);
    let manufacturer = f.string("manufacturer", false, 255);
    let model_number = f.string("model_number", false, 255);
    let lot_number = f.string("lot_number", false, 255);
    let udi = f.array("udi", false, MAX_UDI).map(|items| udi_list(&mut f, items)).unwrap_or_default();
    let manufacture_date = f.date("manufacture_date", false);
    let expiration_date = f.date("expiration_date", false);
    if let (Some(made), Some(expires)) = (manufacture_date, expiration_date)
        && expires < made
    {
        f.reject("expiration_date", "date", "must not be before manufacture_date");
    }
    let note = f.string("note", false, 2000);
    let availability_status =
        f.one_of("availability_status", false, AvailabilityStatus::from_name, &AvailabilityStatus::names());
    f.finish_with(|| {
        Some(EquipmentRegistration {
            equipment_id: Uuid::now_v7(),
            legal_entity_id,
            division_id: division_id?,
            link_id: Uuid::now_v7(),
            equipment_type: equipment_type?,
            external_id: external_id?,
            name: name?,
            serial_number,
            manufacturer,
            model_number,
            lot_number,
            udi,
            manufacture_date,
            expiration_date,
            note,
            availability_status: availability_status.unwrap_or(AvailabilityStatus::Available),
            // the decision sets it
            registered_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        })
    })
}

/// `POST /api/v1/equipment`
pub async fn register(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("RegisterEquipment", async {
        let ctx = command_ctx(&state, "RegisterEquipment", &user, &headers, "/api/v1/equipment", &bytes)?;
        let registration = registration(&body, user.equipment_legal_entity()?)?;
        Ok(registry(&state).register_equipment(&ctx, registration).await?.into())
    })
    .await
}

/// `POST /api/v1/equipment/{id}/division-links` `{division_id}`
pub async fn link_division(
    State(state): State<AppState>,
    Path(id): Path<String>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("LinkDivision", async {
        let path = format!("/api/v1/equipment/{}/division-links", canonical(&id));
        let ctx = command_ctx(&state, "LinkDivision", &user, &headers, &path, &bytes)?;
        user.equipment_legal_entity()?;
        let id = path_id(&id)?;
        let mut f = Fields::new(&body);
        f.only(&["division_id"]);
        let division_id = f.uuid("division_id", true);
        let division_id = f.finish_with(|| division_id)?;
        Ok(registry(&state).link_division(&ctx, id, division_id).await?.into())
    })
    .await
}

/// `PATCH /api/v1/equipment/{id}/status` `{status: INACTIVE | ENTERED_IN_ERROR, reason}`
pub async fn change_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("ChangeEquipmentStatus", async {
        let path = format!("/api/v1/equipment/{}/status", canonical(&id));
        let ctx = command_ctx(&state, "ChangeEquipmentStatus", &user, &headers, &path, &bytes)?;
        user.equipment_legal_entity()?;
        let id = path_id(&id)?;
        let mut f = Fields::new(&body);
        f.only(&["status", "reason"]);
        let settable = |name: &str| EquipmentStatus::from_name(name).filter(|s| *s != EquipmentStatus::Active);
        let status = f.one_of("status", true, settable, "INACTIVE, ENTERED_IN_ERROR");
        let reason = f.string("reason", false, 2000);
        if status == Some(EquipmentStatus::EnteredInError) && body.get("reason").is_none_or(Value::is_null) {
            f.reject("reason", "required", "a reason is required to set ENTERED_IN_ERROR");
        }
        let status = f.finish_with(|| status)?;
        Ok(registry(&state).change_equipment_status(&ctx, id, status, reason).await?.into())
    })
    .await
}

/// `PATCH /api/v1/equipment/{id}/availability` `{availability_status}`
pub async fn change_availability(
    State(state): State<AppState>,
    Path(id): Path<String>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("ChangeAvailability", async {
        let path = format!("/api/v1/equipment/{}/availability", canonical(&id));
        let ctx = command_ctx(&state, "ChangeAvailability", &user, &headers, &path, &bytes)?;
        user.equipment_legal_entity()?;
        let id = path_id(&id)?;
        let mut f = Fields::new(&body);
        f.only(&["availability_status"]);
        let availability_status =
            f.one_of("availability_status", true, AvailabilityStatus::from_name, &AvailabilityStatus::names());
        let availability_status = f.finish_with(|| availability_status)?;
        Ok(registry(&state).change_availability(&ctx, id, availability_status).await?.into())
    })
    .await
}
