//! Legal entities and divisions: the reference data the equipment checks need. Commands are the
//! only way in (facts from another register would be turned into these same commands).
//!
//! Registering an id again with the same data answers 200 with it and appends nothing (a fact
//! delivered twice); with other data it is a 409.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use careledger_domain::registry::{
    ChangeDivisionStatus, ChangeLegalEntityStatus, Division, LegalEntity, RegisterDivision, RegisterLegalEntity,
};
use careledger_events::registry::{
    DivisionStatus, DivisionType, LegalEntityStatus, LegalEntityType, division_stream, legal_entity_stream,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Folded, OnStream, References, counted, execute, execute_with, load_reference, path_id};
use crate::auth::User;
use crate::handler::CommandCtx;
use crate::http::body::{Fields, JsonBody};
use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

fn legal_entity_view(folded: &Folded<LegalEntity>) -> Value {
    match &folded.state.0 {
        Some(le) => json!({
            "id": le.id,
            "name": le.name,
            "edrpou": le.edrpou,
            "type": le.legal_entity_type,
            "status": le.status,
            "inserted_by": folded.inserted_by,
            "updated_by": folded.updated_by,
        }),
        None => Value::Null,
    }
}

fn division_view(folded: &Folded<Division>) -> Value {
    match &folded.state.0 {
        Some(d) => json!({
            "id": d.id,
            "legal_entity_id": d.legal_entity_id,
            "name": d.name,
            "type": d.division_type,
            "status": d.status,
            "is_active": d.is_active,
            "inserted_by": folded.inserted_by,
            "updated_by": folded.updated_by,
        }),
        None => Value::Null,
    }
}

/// Who may change reference data (DESIGN rule 12): a caller acting for no legal entity (the
/// register's integration) changes any; a caller acting for one (its token's `client_id`) only
/// that legal entity and its divisions. The legal entity it acts for, when it does.
fn acting_for(user: &User) -> Result<Option<Uuid>, ApiError> {
    match &user.legal_entity_id {
        None => Ok(None),
        Some(own) => Uuid::parse_str(own)
            .map(Some)
            .map_err(|_| ApiError::forbidden("The token's client_id is not a legal entity id")),
    }
}

/// 403 unless the caller may change legal entity `id`'s reference data (see [`acting_for`]).
fn own_legal_entity(user: &User, id: Uuid) -> Result<(), ApiError> {
    match acting_for(user)? {
        Some(own) if own != id => {
            Err(ApiError::forbidden("A token acting for a legal entity changes only that legal entity's data"))
        }
        _ => Ok(()),
    }
}

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
        user.require(state.config.permissions.of(careledger_app::Operation::WriteLegalEntity))?;
        let mut f = Fields::new(&body);
        f.only(&["id", "name", "edrpou", "type", "status"]);
        let id = new_id(&mut f, "id");
        let name = f.string("name", true, 255);
        let edrpou = f.string("edrpou", true, 10);
        let legal_entity_type = f.one_of("type", true, LegalEntityType::from_name, &LegalEntityType::names());
        let status = f.one_of("status", false, LegalEntityStatus::from_name, &LegalEntityStatus::names());
        f.finish()?;
        let (Some(id), Some(name), Some(edrpou), Some(legal_entity_type)) = (id, name, edrpou, legal_entity_type)
        else {
            return Err(ApiError::internal("validated fields missing"));
        };
        own_legal_entity(&user, id)?;
        let ctx = CommandCtx::new("RegisterLegalEntity", user.actor(), &headers, "/api/v1/legal-entities", &bytes)?;
        let command = RegisterLegalEntity {
            legal_entity_id: id,
            name,
            edrpou,
            legal_entity_type,
            status: status.unwrap_or(LegalEntityStatus::Active),
        };
        let run = OnStream::new(legal_entity_stream(id), &ctx).creating();
        execute(&state, run, |le, decision| command.decide(le, decision), legal_entity_view).await
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
        user.require(state.config.permissions.of(careledger_app::Operation::WriteLegalEntity))?;
        let id = path_id(&id)?;
        own_legal_entity(&user, id)?;
        let mut f = Fields::new(&body);
        f.only(&["status"]);
        let status = f.one_of("status", true, LegalEntityStatus::from_name, &LegalEntityStatus::names());
        f.finish()?;
        let status = status.ok_or_else(|| ApiError::internal("validated fields missing"))?;
        let path = format!("/api/v1/legal-entities/{id}");
        let ctx = CommandCtx::new("ChangeLegalEntityStatus", user.actor(), &headers, &path, &bytes)?;
        let command = ChangeLegalEntityStatus { status };
        let run = OnStream::new(legal_entity_stream(id), &ctx);
        execute(&state, run, |le, decision| command.decide(le, decision), legal_entity_view).await
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
        user.require(state.config.permissions.of(careledger_app::Operation::WriteDivision))?;
        let mut f = Fields::new(&body);
        f.only(&["id", "legal_entity_id", "name", "type", "status"]);
        let id = new_id(&mut f, "id");
        let legal_entity_id = f.uuid("legal_entity_id", true);
        let name = f.string("name", true, 255);
        let division_type = f.one_of("type", true, DivisionType::from_name, &DivisionType::names());
        let status = f.one_of("status", false, DivisionStatus::from_name, &DivisionStatus::names());
        f.finish()?;
        let (Some(id), Some(legal_entity_id), Some(name), Some(division_type)) =
            (id, legal_entity_id, name, division_type)
        else {
            return Err(ApiError::internal("validated fields missing"));
        };
        own_legal_entity(&user, legal_entity_id)?;
        let ctx = CommandCtx::new("RegisterDivision", user.actor(), &headers, "/api/v1/divisions", &bytes)?;
        let command = RegisterDivision {
            division_id: id,
            legal_entity_id,
            name,
            division_type,
            status: status.unwrap_or(DivisionStatus::Active),
        };
        let run = OnStream::new(division_stream(id), &ctx).creating();
        let state = &state;
        let legal_entity = move |read| async move {
            let stream = legal_entity_stream(legal_entity_id);
            let folded = load_reference::<LegalEntity>(state, &stream, read).await?;
            Ok(References::new(folded.state).guard(stream, folded.version))
        };
        execute_with(state, run, legal_entity, |d, le, decision| command.decide(d, le, decision), division_view).await
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
        user.require(state.config.permissions.of(careledger_app::Operation::WriteDivision))?;
        let id = path_id(&id)?;
        let mut f = Fields::new(&body);
        f.only(&["status", "is_active"]);
        let status = f.one_of("status", false, DivisionStatus::from_name, &DivisionStatus::names());
        let is_active = f.boolean("is_active", false);
        if ["status", "is_active"].iter().all(|k| body.get(*k).is_none_or(Value::is_null)) {
            f.reject("status", "required", "status or is_active is required");
        }
        f.finish()?;
        let path = format!("/api/v1/divisions/{id}");
        let ctx = CommandCtx::new("ChangeDivisionStatus", user.actor(), &headers, &path, &bytes)?;
        let command = ChangeDivisionStatus { status, is_active, acting_for: acting_for(&user)? };
        let run = OnStream::new(division_stream(id), &ctx);
        execute(&state, run, |d, decision| command.decide(d, decision), division_view).await
    })
    .await
}
