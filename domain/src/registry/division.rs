//! A division of a legal entity: where equipment is kept. Reference data like the legal entity.
//!
//! `is_active` false means the division was removed from the register: for the equipment checks it
//! no longer exists ("Division not found"), whatever its status.

use careledger_events::registry::{DivisionStatus, DivisionType, RegistryEvent};
use uuid::Uuid;

use super::{LegalEntity, MAX_NAME, RegistryError, text_ok};
use crate::{Aggregate, Ctx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DivisionFacts {
    pub id: Uuid,
    pub legal_entity_id: Uuid,
    pub name: String,
    pub division_type: DivisionType,
    pub status: DivisionStatus,
    pub is_active: bool,
}

/// A division as folded from its stream (`None` until registered).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Division(pub Option<DivisionFacts>);

impl Aggregate for Division {
    type Event = RegistryEvent;

    fn evolve(mut self, event: &RegistryEvent) -> Self {
        match event {
            RegistryEvent::DivisionRegistered { division_id, legal_entity_id, name, division_type, status, .. } => {
                self.0 = Some(DivisionFacts {
                    id: *division_id,
                    legal_entity_id: *legal_entity_id,
                    name: name.clone(),
                    division_type: *division_type,
                    status: *status,
                    is_active: true,
                });
            }
            RegistryEvent::DivisionStatusChanged { status, is_active, .. } => {
                if let Some(facts) = &mut self.0 {
                    facts.status = *status;
                    facts.is_active = *is_active;
                }
            }
            _ => {}
        }
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterDivision {
    pub division_id: Uuid,
    pub legal_entity_id: Uuid,
    pub name: String,
    pub division_type: DivisionType,
    pub status: DivisionStatus,
}

impl RegisterDivision {
    /// The division's legal entity must be in the register; the same division again decides nothing.
    pub fn decide(
        &self,
        state: &Division,
        legal_entity: &LegalEntity,
        ctx: &Ctx,
    ) -> Result<Vec<RegistryEvent>, RegistryError> {
        if !text_ok(&self.name, MAX_NAME) {
            return Err(RegistryError::Invalid { entry: "$.name", reason: "expected 1 to 255 characters" });
        }
        if legal_entity.0.as_ref().map(|le| le.id) != Some(self.legal_entity_id) {
            return Err(RegistryError::UnknownLegalEntityOfDivision);
        }
        let facts = DivisionFacts {
            id: self.division_id,
            legal_entity_id: self.legal_entity_id,
            name: self.name.clone(),
            division_type: self.division_type,
            status: self.status,
            is_active: true,
        };
        match &state.0 {
            Some(existing) if *existing == facts => Ok(vec![]),
            Some(_) => Err(RegistryError::DivisionExists),
            None => Ok(vec![RegistryEvent::DivisionRegistered {
                division_id: self.division_id,
                legal_entity_id: self.legal_entity_id,
                name: self.name.clone(),
                division_type: self.division_type,
                status: self.status,
                registered_at: ctx.now,
            }]),
        }
    }
}

/// A new status and/or `is_active` for the division; what is not given stays. Nothing changed
/// decides nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeDivisionStatus {
    pub status: Option<DivisionStatus>,
    pub is_active: Option<bool>,
    /// The legal entity the caller acts for, when it acts for one: only its own divisions.
    pub acting_for: Option<Uuid>,
}

impl ChangeDivisionStatus {
    pub fn decide(&self, state: &Division, ctx: &Ctx) -> Result<Vec<RegistryEvent>, RegistryError> {
        let facts = state.0.as_ref().ok_or(RegistryError::UnknownDivision)?;
        if self.acting_for.is_some_and(|own| own != facts.legal_entity_id) {
            return Err(RegistryError::ForeignDivision);
        }
        let status = self.status.unwrap_or(facts.status);
        let is_active = self.is_active.unwrap_or(facts.is_active);
        if status == facts.status && is_active == facts.is_active {
            return Ok(vec![]);
        }
        Ok(vec![RegistryEvent::DivisionStatusChanged { division_id: facts.id, status, is_active, changed_at: ctx.now }])
    }
}
