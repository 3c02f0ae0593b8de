//! An equipment as folded from its stream: what it was registered with, and where it is now
//! (its division and ACTIVE link, its status and availability).

use careledger_events::registry::{AvailabilityStatus, EquipmentRegistration, EquipmentStatus, RegistryEvent};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::RegistryError;
use crate::Aggregate;

#[derive(Debug, Clone, PartialEq)]
pub struct EquipmentFacts {
    /// As registered; `division_id`/`link_id`/`availability_status` there are the first ones.
    pub registration: EquipmentRegistration,
    pub division_id: Uuid,
    /// The one ACTIVE division link.
    pub link_id: Uuid,
    pub linked_at: DateTime<Utc>,
    pub status: EquipmentStatus,
    pub status_reason: Option<String>,
    pub availability_status: AvailabilityStatus,
    pub updated_at: DateTime<Utc>,
}

impl EquipmentFacts {
    pub fn id(&self) -> Uuid {
        self.registration.equipment_id
    }

    pub fn legal_entity_id(&self) -> Uuid {
        self.registration.legal_entity_id
    }
}

/// An equipment (`None` until registered).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Equipment(pub Option<EquipmentFacts>);

impl Equipment {
    /// The equipment, if it exists and belongs to the caller's legal entity: 404, then 403.
    pub fn owned_by(&self, legal_entity_id: Uuid) -> Result<&EquipmentFacts, RegistryError> {
        let facts = self.0.as_ref().ok_or(RegistryError::EquipmentNotFound)?;
        if facts.legal_entity_id() != legal_entity_id {
            return Err(RegistryError::ForeignEquipment);
        }
        Ok(facts)
    }
}

impl Aggregate for Equipment {
    type Event = RegistryEvent;

    fn evolve(mut self, event: &RegistryEvent) -> Self {
        if let RegistryEvent::EquipmentRegistered(registration) = event {
            self.0 = Some(EquipmentFacts {
                division_id: registration.division_id,
                link_id: registration.link_id,
                linked_at: registration.registered_at,
                status: EquipmentStatus::Active,
                status_reason: None,
                availability_status: registration.availability_status,
                updated_at: registration.registered_at,
                registration: (**registration).clone(),
            });
            return self;
        }
        let Some(facts) = &mut self.0 else { return self };
        match event {
            RegistryEvent::EquipmentDivisionLinked { link_id, division_id, linked_at, .. } => {
                facts.link_id = *link_id;
                facts.division_id = *division_id;
                facts.linked_at = *linked_at;
                facts.updated_at = *linked_at;
            }
            RegistryEvent::EquipmentStatusChanged { status, reason, changed_at, .. } => {
                facts.status = *status;
                facts.status_reason = reason.clone();
                facts.updated_at = *changed_at;
            }
            RegistryEvent::EquipmentAvailabilityChanged { availability_status, changed_at, .. } => {
                facts.availability_status = *availability_status;
                facts.updated_at = *changed_at;
            }
            _ => {}
        }
        self
    }
}
