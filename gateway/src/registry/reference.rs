//! Legal entities and divisions over HTTP: the requests are read here, the commands run in
//! `careledger_app::registry` (which says who may change which legal entity).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use careledger_domain::registry::{ChangeLegalEntityStatus, RegisterDivision, RegisterLegalEntity};
use careledger_events::registry::{DivisionStatus, DivisionType, LegalEntityStatus, LegalEntityType};
use serde_json::Value;
use uuid::Uuid;

use super::{path_id, registry};
use crate::auth::User;
use crate::handler::{canonical, command_ctx, counted};
use crate::http::body::{Fields, JsonBody};
use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

/// An id chosen by the caller: a UUID other than the nil one (which stands for "no legal entity").
fn new_id(f: &mut Fields<'_>, name: &str) -> Option<Uuid> {
    let id = f.uuid(name, true)?;
    if id.is_nil() {
        f.reject(name, "format", "the nil UUID is not an id");
        return None;
    }
    Some(id)
}

/// `POST /api/v1/legal-entities` `{id, name, edrpou, type, status}`
pub async fn register_legal_entity(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("RegisterLegalEntity", async {
        let ctx = command_ctx(&state, "RegisterLegalEntity", &user, &headers, "/api/v1/legal-entities", &bytes)?;
        let mut f = Fields::new(&body);
        f.only(&["id", "name", "edrpou", "type", "status"]);
        let id = new_id(&mut f, "id");
        let name = f.string("name", true, 255);
        let edrpou = f.string("edrpou", true, 10);
        let legal_entity_type = f.one_of("type", true, LegalEntityType::from_name, &LegalEntityType::names());
        let status = f.one_of("status", false, LegalEntityStatus::from_name, &LegalEntityStatus::names());
        let command = f.finish_with(|| {
            Some(RegisterLegalEntity {
                legal_entity_id: id?,
                name: name?,
                edrpou: edrpou?,
                legal_entity_type: legal_entity_type?,
                status: status.unwrap_or(LegalEntityStatus::Active),
            })
        })?;
        Ok(registry(&state).register_legal_entity(&ctx, command).await?.into())
    })
    .await
}

/// `PATCH /api/v1/legal-entities/{id}` `{status}`
pub async fn change_legal_entity_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("ChangeLegalEntityStatus", async {
        let path = format!("/api/v1/legal-entities/{}", canonical(&id));
        let ctx = command_ctx(&state, "ChangeLegalEntityStatus", &user, &headers, &path, &bytes)?;
        let id = path_id(&id)?;
        // before the body, as eHealth answers: another legal entity's data is not the caller's to see
        user.owns_legal_entity(id)?;
        let mut f = Fields::new(&body);
        f.only(&["status"]);
        let status = f.one_of("status", true, LegalEntityStatus::from_name, &LegalEntityStatus::names());
        let command = f.finish_with(|| Some(ChangeLegalEntityStatus { status: status? }))?;
        Ok(registry(&state).change_legal_entity_status(&ctx, id, command).await?.into())
    })
    .await
}

/// `POST /api/v1/divisions` `{id, legal_entity_id, name, type, status}`
pub async fn register_division(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("RegisterDivision", async {
        let ctx = command_ctx(&state, "RegisterDivision", &user, &headers, "/api/v1/divisions", &bytes)?;
        let mut f = Fields::new(&body);
        f.only(&["id", "legal_entity_id", "name", "type", "status"]);
        let id = new_id(&mut f, "id");
        let legal_entity_id = f.uuid("legal_entity_id", true);
        let name = f.string("name", true, 255);
        let division_type = f.one_of("type", true, DivisionType::from_name, &DivisionType::names());
        let status = f.one_of("status", false, DivisionStatus::from_name, &DivisionStatus::names());
        let command = f.finish_with(|| {
            Some(RegisterDivision {
                division_id: id?,
                legal_entity_id: legal_entity_id?,
                name: name?,
                division_type: division_type?,
                status: status.unwrap_or(DivisionStatus::Active),
            })
        })?;
        Ok(registry(&state).register_division(&ctx, command).await?.into())
    })
    .await
}

/// `PATCH /api/v1/divisions/{id}` `{status, is_active}` (either or both)
pub async fn change_division_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("ChangeDivisionStatus", async {
        let path = format!("/api/v1/divisions/{}", canonical(&id));
        let ctx = command_ctx(&state, "ChangeDivisionStatus", &user, &headers, &path, &bytes)?;
        let id = path_id(&id)?;
        let mut f = Fields::new(&body);
        f.only(&["status", "is_active"]);
        let status = f.one_of("status", false, DivisionStatus::from_name, &DivisionStatus::names());
        let is_active = f.boolean("is_active", false);
        if ["status", "is_active"].iter().all(|k| body.get(*k).is_none_or(Value::is_null)) {
            f.reject("status", "required", "status or is_active is required");
        }
        f.finish()?;
        Ok(registry(&state).change_division_status(&ctx, id, status, is_active).await?.into())
    })
    .await
}
