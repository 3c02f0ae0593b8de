//! Legal entities and divisions: the reference data the equipment checks need. Commands are the
//! only way in (facts from another register are turned into these same commands).
//!
//! Registering an id again with the same data answers 200 with it and appends nothing (a fact
//! delivered twice); with other data it is a 409. Who may change which legal entity is
//! [`crate::Caller::owns_legal_entity`]'s rule.

use careledger_domain::registry::{
    ChangeDivisionStatus, ChangeLegalEntityStatus, Division, LegalEntity, RegisterDivision, RegisterLegalEntity,
};
use careledger_events::registry::{DivisionStatus, division_stream, legal_entity_stream};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Folded, OnStream, Read, References, Registry};
use crate::{Answer, AppError, CommandCtx};

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

impl Registry<'_> {
    /// RegisterLegalEntity: 201 with it, 200 when it is registered with the same data.
    pub async fn register_legal_entity(
        &self,
        ctx: &CommandCtx,
        command: RegisterLegalEntity,
    ) -> Result<Answer, AppError> {
        ctx.caller.owns_legal_entity(command.legal_entity_id)?;
        let run = OnStream::new(legal_entity_stream(command.legal_entity_id), ctx).creating();
        self.execute(run, |le, decision| command.decide(le, decision), legal_entity_view).await
    }

    /// ChangeLegalEntityStatus of legal entity `id`.
    pub async fn change_legal_entity_status(
        &self,
        ctx: &CommandCtx,
        id: Uuid,
        command: ChangeLegalEntityStatus,
    ) -> Result<Answer, AppError> {
        ctx.caller.owns_legal_entity(id)?;
        let run = OnStream::new(legal_entity_stream(id), ctx);
        self.execute(run, |le, decision| command.decide(le, decision), legal_entity_view).await
    }

    /// RegisterDivision of a registered legal entity.
    pub async fn register_division(&self, ctx: &CommandCtx, command: RegisterDivision) -> Result<Answer, AppError> {
        ctx.caller.owns_legal_entity(command.legal_entity_id)?;
        let run = OnStream::new(division_stream(command.division_id), ctx).creating();
        let legal_entity_id = command.legal_entity_id;
        let legal_entity = |read: Read| async move {
            let stream = legal_entity_stream(legal_entity_id);
            let folded = self.reference::<LegalEntity>(&stream, read).await?;
            Ok(References::new(folded.state).guard(stream, folded.version))
        };
        self.execute_with(run, legal_entity, |d, le, decision| command.decide(d, le, decision), division_view).await
    }

    /// ChangeDivisionStatus of division `id`: its status, its `is_active`, or both. A caller acting
    /// for a legal entity changes only that legal entity's divisions (the domain checks it, as the
    /// division's legal entity is known only from its stream).
    pub async fn change_division_status(
        &self,
        ctx: &CommandCtx,
        id: Uuid,
        status: Option<DivisionStatus>,
        is_active: Option<bool>,
    ) -> Result<Answer, AppError> {
        let command = ChangeDivisionStatus { status, is_active, acting_for: ctx.caller.acting_for()? };
        let run = OnStream::new(division_stream(id), ctx);
        self.execute(run, |d, decision| command.decide(d, decision), division_view).await
    }
}
