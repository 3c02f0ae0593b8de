//! LinkDivision: the equipment moves to another division of its legal entity.

use careledger_events::registry::{EquipmentStatus, RegistryEvent};
use uuid::Uuid;

use super::registration::{admit_division, admit_legal_entity};
use super::{Division, Equipment, LegalEntity, RegistryError};
use crate::Ctx;

/// Link the equipment to `division_id`, closing its current link. The new division passes the
/// checks of a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkDivision {
    /// The caller's legal entity (the token's `client_id`).
    pub legal_entity_id: Uuid,
    pub division_id: Uuid,
    /// The id of the link this opens.
    pub link_id: Uuid,
}

impl LinkDivision {
    /// Checks in order: the legal entity (409), the equipment (404, another legal entity's 403,
    /// ENTERED_IN_ERROR 409), the division (422s), the same division again (409). INACTIVE equipment
    /// may move (to a repair shop's division, say).
    pub fn decide(
        &self,
        state: &Equipment,
        legal_entity: &LegalEntity,
        division: &Division,
        ctx: &Ctx,
    ) -> Result<Vec<RegistryEvent>, RegistryError> {
        admit_legal_entity(legal_entity, self.legal_entity_id)?;
        let facts = state.owned_by(self.legal_entity_id)?;
        if facts.status == EquipmentStatus::EnteredInError {
            return Err(RegistryError::FinalStatus);
        }
        admit_division(division, self.division_id, self.legal_entity_id)?;
        if facts.division_id == self.division_id {
            return Err(RegistryError::AlreadyLinked);
        }
        Ok(vec![RegistryEvent::EquipmentDivisionLinked {
            equipment_id: facts.id(),
            link_id: self.link_id,
            division_id: self.division_id,
            previous_link_id: facts.link_id,
            previous_division_id: facts.division_id,
            linked_at: ctx.now,
        }])
    }
}
