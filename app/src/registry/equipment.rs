//! RegisterEquipment, LinkDivision, ChangeEquipmentStatus, ChangeAvailability.
//!
//! The domain checks in eHealth's order: legal entity (409), division (422 on `$.division_id`),
//! the equipment's own state; last the store's set invariant (`external_id` unique within the
//! legal entity, 409 "Duplicated equipment"). Every command acts for the caller's legal entity.

use careledger_domain::Ctx;
use careledger_domain::registry::{
    ChangeAvailability, ChangeEquipmentStatus, Division, Equipment, LegalEntity, LinkDivision, RegisterEquipment,
    RegistryError,
};
use careledger_events::registry::{
    AvailabilityStatus, EquipmentRegistration, EquipmentStatus, LinkStatus, RegistryEvent, division_stream,
    equipment_stream, legal_entity_stream,
};
use careledger_projections::registry::{ActiveLink, EquipmentView};
use careledger_projections::time::text;
use careledger_store::KeyClaim;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{EXTERNAL_ID_SCOPE, Folded, OnStream, Read, References, Registry};
use crate::{Answer, AppError, CommandCtx};

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

impl Registry<'_> {
    /// The caller's legal entity and a division, read together.
    async fn legal_entity_and_division(
        &self,
        legal_entity_id: Uuid,
        division_id: Uuid,
        read: Read,
    ) -> Result<References<(LegalEntity, Division)>, AppError> {
        let (le_stream, division_stream) = (legal_entity_stream(legal_entity_id), division_stream(division_id));
        let (legal_entity, division) = tokio::try_join!(
            self.reference::<LegalEntity>(&le_stream, read),
            self.reference::<Division>(&division_stream, read)
        )?;
        Ok(References::new((legal_entity.state, division.state))
            .guard(le_stream, legal_entity.version)
            .guard(division_stream, division.version))
    }

    /// Runs an equipment command decided on the caller's legal entity and a division of it (read
    /// together, remembered, and guarding the append: see `remembered`).
    async fn in_division(
        &self,
        run: OnStream<'_>,
        legal_entity_id: Uuid,
        division_id: Uuid,
        decide: impl Fn(&Equipment, &LegalEntity, &Division, &Ctx) -> Result<Vec<RegistryEvent>, RegistryError>,
    ) -> Result<Answer, AppError> {
        self.execute_with(
            run,
            |read| self.legal_entity_and_division(legal_entity_id, division_id, read),
            |eq, (legal_entity, division), decision| decide(eq, legal_entity, division, decision),
            equipment_view,
        )
        .await
    }

    /// RegisterEquipment for the caller's legal entity (whatever `registration` names); its
    /// `external_id` is unique within the legal entity.
    pub async fn register_equipment(
        &self,
        ctx: &CommandCtx,
        mut registration: EquipmentRegistration,
    ) -> Result<Answer, AppError> {
        let legal_entity_id = ctx.caller.equipment_legal_entity()?;
        registration.legal_entity_id = legal_entity_id;
        let division_id = registration.division_id;
        let stream = equipment_stream(registration.equipment_id);
        let claim = KeyClaim {
            scope: EXTERNAL_ID_SCOPE.into(),
            keys: vec![format!("{legal_entity_id}/{}", registration.external_id)],
            owner: stream.clone(),
        };
        let command = RegisterEquipment { registration };
        let run = OnStream::new(stream, ctx).fresh().creating().claiming(claim);
        let decide = |eq: &Equipment, le: &LegalEntity, d: &Division, c: &Ctx| command.decide(eq, le, d, c);
        self.in_division(run, legal_entity_id, division_id, decide).await
    }

    /// LinkDivision: moves equipment `id` to another division of the caller's legal entity (a new
    /// link is a created resource: 201, although the equipment's stream exists).
    pub async fn link_division(&self, ctx: &CommandCtx, id: Uuid, division_id: Uuid) -> Result<Answer, AppError> {
        let legal_entity_id = ctx.caller.equipment_legal_entity()?;
        let command = LinkDivision { legal_entity_id, division_id, link_id: Uuid::now_v7() };
        let run = OnStream::new(equipment_stream(id), ctx).creating();
        let decide = |eq: &Equipment, le: &LegalEntity, d: &Division, c: &Ctx| command.decide(eq, le, d, c);
        self.in_division(run, legal_entity_id, division_id, decide).await
    }

    /// ChangeEquipmentStatus of equipment `id` (INACTIVE or ENTERED_IN_ERROR, the latter with a reason).
    pub async fn change_equipment_status(
        &self,
        ctx: &CommandCtx,
        id: Uuid,
        status: EquipmentStatus,
        reason: Option<String>,
    ) -> Result<Answer, AppError> {
        let command = ChangeEquipmentStatus { legal_entity_id: ctx.caller.equipment_legal_entity()?, status, reason };
        let run = OnStream::new(equipment_stream(id), ctx);
        self.execute(run, |eq, decision| command.decide(eq, decision), equipment_view).await
    }

    /// ChangeAvailability of equipment `id`.
    pub async fn change_availability(
        &self,
        ctx: &CommandCtx,
        id: Uuid,
        availability_status: AvailabilityStatus,
    ) -> Result<Answer, AppError> {
        let command = ChangeAvailability { legal_entity_id: ctx.caller.equipment_legal_entity()?, availability_status };
        let run = OnStream::new(equipment_stream(id), ctx);
        self.execute(run, |eq, decision| command.decide(eq, decision), equipment_view).await
    }
}
