//! ChangeEquipmentStatus and ChangeAvailability, following eHealth's newer equipment status model.
//!
//! Status: ACTIVE -> INACTIVE (only when the equipment is DAMAGED, DESTROYED or LOST), ACTIVE or
//! INACTIVE -> ENTERED_IN_ERROR (with a reason). Every other move is "Invalid transition. Equipment
//! is in final status" (eHealth answers every refused transition so).
//!
//! Availability (eHealth gives no rules; these are what a user would expect): not on ENTERED_IN_ERROR
//! equipment (final), never out of DESTROYED, never AVAILABLE while INACTIVE (the status change
//! requires the opposite), and not to the value it already has.

use careledger_events::registry::{AvailabilityStatus, EquipmentStatus, RegistryEvent};
use uuid::Uuid;

use super::{Equipment, MAX_NOTE, RegistryError, text_ok};
use crate::Ctx;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEquipmentStatus {
    /// The caller's legal entity (the token's `client_id`).
    pub legal_entity_id: Uuid,
    pub status: EquipmentStatus,
    pub reason: Option<String>,
}

impl ChangeEquipmentStatus {
    pub fn decide(&self, state: &Equipment, ctx: &Ctx) -> Result<Vec<RegistryEvent>, RegistryError> {
        let reason_ok = self.reason.as_deref().is_none_or(|r| text_ok(r, MAX_NOTE));
        if !reason_ok {
            return Err(RegistryError::Invalid { entry: "$.reason", reason: "expected 1 to 2000 characters" });
        }
        if self.status == EquipmentStatus::EnteredInError && self.reason.is_none() {
            return Err(RegistryError::Invalid {
                entry: "$.reason",
                reason: "a reason is required to set ENTERED_IN_ERROR",
            });
        }
        let facts = state.owned_by(self.legal_entity_id)?;
        let allowed = match self.status {
            EquipmentStatus::Inactive => facts.status == EquipmentStatus::Active,
            EquipmentStatus::EnteredInError => {
                matches!(facts.status, EquipmentStatus::Active | EquipmentStatus::Inactive)
            }
            // reactivation is another command (eHealth's activate), not a status change
            EquipmentStatus::Active => false,
        };
        if !allowed {
            return Err(RegistryError::FinalStatus);
        }
        if self.status == EquipmentStatus::Inactive && facts.availability_status == AvailabilityStatus::Available {
            return Err(RegistryError::AvailabilityForbidsStatus(facts.availability_status));
        }
        Ok(vec![RegistryEvent::EquipmentStatusChanged {
            equipment_id: facts.id(),
            status: self.status,
            reason: self.reason.clone(),
            changed_at: ctx.now,
        }])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeAvailability {
    /// The caller's legal entity (the token's `client_id`).
    pub legal_entity_id: Uuid,
    pub availability_status: AvailabilityStatus,
}

impl ChangeAvailability {
    pub fn decide(&self, state: &Equipment, ctx: &Ctx) -> Result<Vec<RegistryEvent>, RegistryError> {
        let facts = state.owned_by(self.legal_entity_id)?;
        if facts.status == EquipmentStatus::EnteredInError {
            return Err(RegistryError::FinalStatus);
        }
        if facts.availability_status == self.availability_status {
            return Err(RegistryError::SameAvailability(self.availability_status));
        }
        if facts.availability_status == AvailabilityStatus::Destroyed {
            return Err(RegistryError::Destroyed);
        }
        if facts.status == EquipmentStatus::Inactive && self.availability_status == AvailabilityStatus::Available {
            return Err(RegistryError::InactiveCannotBeAvailable);
        }
        Ok(vec![RegistryEvent::EquipmentAvailabilityChanged {
            equipment_id: facts.id(),
            availability_status: self.availability_status,
            changed_at: ctx.now,
        }])
    }
}
