//! The requisition state of one encounter, folded from its events.

use std::collections::BTreeSet;

use careledger_events::requisitions::{EntityType, RequisitionEvent};
use uuid::Uuid;

use crate::Aggregate;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncounterRequisition {
    pub encounter_id: Option<Uuid>,
    /// The grouped number, once issued.
    pub requisition: Option<String>,
    /// What made the number unique (empty when the unsalted one was free).
    pub salt: String,
    /// The entities sharing the number.
    pub entities: BTreeSet<(EntityType, Uuid)>,
}

impl EncounterRequisition {
    pub fn has(&self, entity_type: EntityType, entity_id: Uuid) -> bool {
        self.entities.contains(&(entity_type, entity_id))
    }
}

impl Aggregate for EncounterRequisition {
    type Event = RequisitionEvent;

    fn evolve(mut self, event: &RequisitionEvent) -> Self {
        match event {
            RequisitionEvent::RequisitionIssued { encounter_id, requisition, salt, entity_type, entity_id, .. } => {
                self.encounter_id = Some(*encounter_id);
                self.requisition = Some(requisition.clone());
                self.salt = salt.clone();
                self.entities.insert((*entity_type, *entity_id));
            }
            RequisitionEvent::RequisitionEntityAdded { entity_type, entity_id, .. } => {
                self.entities.insert((*entity_type, *entity_id));
            }
        }
        self
    }
}
