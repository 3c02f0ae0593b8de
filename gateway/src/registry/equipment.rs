//! RegisterEquipment, LinkDivision, ChangeEquipmentStatus, ChangeAvailability.
//!
//! Checks run in eHealth's order: token (401), scope (403), the token's legal entity (403 without
//! one), the request's schema (422, every invalid field), then the domain's: legal entity (409),
//! division (422 on `$.division_id`), the equipment's own state, and last the store's set invariant
//! (`external_id` unique within the legal entity, 409 "Duplicated equipment").

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use careledger_domain::registry::{
    ChangeAvailability, ChangeEquipmentStatus, Division, Equipment, LegalEntity, LinkDivision, RegisterEquipment,
};
use careledger_events::registry::{
    AvailabilityStatus, EquipmentRegistration, EquipmentStatus, LinkStatus, Udi, division_stream, equipment_stream,
    legal_entity_stream,
};
use careledger_projections::registry::{ActiveLink, EquipmentView};
use careledger_projections::time::text;
use careledger_store::KeyClaim;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{
    EXTERNAL_ID_SCOPE, Folded, OnStream, Read, References, caller_legal_entity, counted, execute, execute_with,
    load_reference, path_id,
};
use crate::auth::User;
use crate::handler::CommandCtx;
use crate::http::body::{Fields, JsonBody};
use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

/// Most UDIs one equipment carries.
const MAX_UDI: usize = 20;

/// The equipment as every command answers it (the shape of the read model's answers).
fn equipment_view(folded: &Folded<Equipment>) -> Value {
    let Some(f) = &folded.state.0 else { return Value::Null };
    let r = &f.registration;
    let view = EquipmentView {
        id: r.equipment_id.to_string(),
        equipment_type: r.equipment_type.clone(),
        external_id: r.external_id.clone(),
        name: r.name.clone(),
        serial_number: r.serial_number.clone(),
        manufacturer: r.manufacturer.clone(),
        model_number: r.model_number.clone(),
        lot_number: r.lot_number.clone(),
        udi: json!(r.udi),
        manufacture_date: r.manufacture_date.map(|d| d.to_string()),
        expiration_date: r.expiration_date.map(|d| d.to_string()),
        note: r.note.clone(),
        legal_entity_id: r.legal_entity_id.to_string(),
        division_id: f.division_id.to_string(),
        division_link: ActiveLink {
            id: f.link_id.to_string(),
            division_id: f.division_id.to_string(),
            status: LinkStatus::Active.name().into(),
            inserted_at: text(&f.linked_at),
        },
        status: f.status.name().into(),
        status_reason: f.status_reason.clone(),
        availability_status: f.availability_status.name().into(),
        is_active: true,
        inserted_at: text(&r.registered_at),
        inserted_by: folded.inserted_by.clone(),
        updated_at: text(&f.updated_at),
        updated_by: folded.updated_by.clone(),
    };
    json!(view)
}

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
    f.finish()?;
    let (Some(division_id), Some(equipment_type), Some(external_id), Some(name)) =
        (division_id, equipment_type, external_id, name)
    else {
        return Err(ApiError::internal("validated fields missing"));
    };
    Ok(EquipmentRegistration {
        equipment_id: Uuid::now_v7(),
        legal_entity_id,
        division_id,
        link_id: Uuid::now_v7(),
        equipment_type,
        external_id,
        name,
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
}

/// The caller's legal entity and a division, read together.
async fn references(
    state: &AppState,
    legal_entity_id: Uuid,
    division_id: Uuid,
    read: Read,
) -> Result<References<(LegalEntity, Division)>, ApiError> {
    let (le_stream, division_stream) = (legal_entity_stream(legal_entity_id), division_stream(division_id));
    let (legal_entity, division) = tokio::try_join!(
        load_reference::<LegalEntity>(state, &le_stream, read),
        load_reference::<Division>(state, &division_stream, read)
    )?;
    Ok(References::new((legal_entity.state, division.state))
        .guard(le_stream, legal_entity.version)
        .guard(division_stream, division.version))
}

/// `POST /api/v1/equipment`
pub async fn register(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("RegisterEquipment", async {
        user.require(state.config.permissions.of(careledger_app::Operation::WriteEquipment))?;
        let legal_entity_id = caller_legal_entity(&user)?;
        let registration = registration(&body, legal_entity_id)?;
        let ctx = CommandCtx::new("RegisterEquipment", user.actor(), &headers, "/api/v1/equipment", &bytes)?;
        let division_id = registration.division_id;
        let stream = equipment_stream(registration.equipment_id);
        let claim = KeyClaim {
            scope: EXTERNAL_ID_SCOPE.into(),
            keys: vec![format!("{legal_entity_id}/{}", registration.external_id)],
            owner: stream.clone(),
        };
        let command = RegisterEquipment { registration };
        let run = OnStream::new(stream, &ctx).fresh().creating().claiming(claim);
        execute_with(
            &state,
            run,
            |read| references(&state, legal_entity_id, division_id, read),
            |eq, (legal_entity, division), decision| command.decide(eq, legal_entity, division, decision),
            equipment_view,
        )
        .await
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
        user.require(state.config.permissions.of(careledger_app::Operation::WriteEquipment))?;
        let legal_entity_id = caller_legal_entity(&user)?;
        let id = path_id(&id)?;
        let mut f = Fields::new(&body);
        f.only(&["division_id"]);
        let division_id = f.uuid("division_id", true);
        f.finish()?;
        let division_id = division_id.ok_or_else(|| ApiError::internal("validated fields missing"))?;
        let path = format!("/api/v1/equipment/{id}/division-links");
        let ctx = CommandCtx::new("LinkDivision", user.actor(), &headers, &path, &bytes)?;
        let command = LinkDivision { legal_entity_id, division_id, link_id: Uuid::now_v7() };
        // a new link is a created resource, although the equipment's stream already exists
        let run = OnStream::new(equipment_stream(id), &ctx).creating();
        execute_with(
            &state,
            run,
            |read| references(&state, legal_entity_id, division_id, read),
            |eq, (legal_entity, division), decision| command.decide(eq, legal_entity, division, decision),
            equipment_view,
        )
        .await
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
        user.require(state.config.permissions.of(careledger_app::Operation::WriteEquipment))?;
        let legal_entity_id = caller_legal_entity(&user)?;
        let id = path_id(&id)?;
        let mut f = Fields::new(&body);
        f.only(&["status", "reason"]);
        let settable = |name: &str| EquipmentStatus::from_name(name).filter(|s| *s != EquipmentStatus::Active);
        let status = f.one_of("status", true, settable, "INACTIVE, ENTERED_IN_ERROR");
        let reason = f.string("reason", false, 2000);
        if status == Some(EquipmentStatus::EnteredInError) && body.get("reason").is_none_or(Value::is_null) {
            f.reject("reason", "required", "a reason is required to set ENTERED_IN_ERROR");
        }
        f.finish()?;
        let status = status.ok_or_else(|| ApiError::internal("validated fields missing"))?;
        let path = format!("/api/v1/equipment/{id}/status");
        let ctx = CommandCtx::new("ChangeEquipmentStatus", user.actor(), &headers, &path, &bytes)?;
        let command = ChangeEquipmentStatus { legal_entity_id, status, reason };
        let run = OnStream::new(equipment_stream(id), &ctx);
        execute(&state, run, |eq, decision| command.decide(eq, decision), equipment_view).await
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
        user.require(state.config.permissions.of(careledger_app::Operation::WriteEquipment))?;
        let legal_entity_id = caller_legal_entity(&user)?;
        let id = path_id(&id)?;
        let mut f = Fields::new(&body);
        f.only(&["availability_status"]);
        let availability_status =
            f.one_of("availability_status", true, AvailabilityStatus::from_name, &AvailabilityStatus::names());
        f.finish()?;
        let availability_status = availability_status.ok_or_else(|| ApiError::internal("validated fields missing"))?;
        let path = format!("/api/v1/equipment/{id}/availability");
        let ctx = CommandCtx::new("ChangeAvailability", user.actor(), &headers, &path, &bytes)?;
        let command = ChangeAvailability { legal_entity_id, availability_status };
        let run = OnStream::new(equipment_stream(id), &ctx);
        execute(&state, run, |eq, decision| command.decide(eq, decision), equipment_view).await
    })
    .await
}
