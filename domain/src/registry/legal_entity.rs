//! A legal entity of the register: reference data the equipment checks read (its status and type).
//!
//! Registering the same legal entity again with the same data decides nothing (the same fact
//! arriving twice, e.g. replayed from another system); with other data it is refused.

use careledger_events::registry::{LegalEntityStatus, LegalEntityType, RegistryEvent};
use uuid::Uuid;

use super::{MAX_NAME, RegistryError, text_ok};
use crate::{Aggregate, Ctx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalEntityFacts {
    pub id: Uuid,
    pub name: String,
    pub edrpou: String,
    pub legal_entity_type: LegalEntityType,
    pub status: LegalEntityStatus,
}

/// A legal entity as folded from its stream (`None` until registered).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegalEntity(pub Option<LegalEntityFacts>);

impl Aggregate for LegalEntity {
    type Event = RegistryEvent;

    fn evolve(mut self, event: &RegistryEvent) -> Self {
        match event {
            RegistryEvent::LegalEntityRegistered {
                legal_entity_id, name, edrpou, legal_entity_type, status, ..
            } => {
                self.0 = Some(LegalEntityFacts {
                    id: *legal_entity_id,
                    name: name.clone(),
                    edrpou: edrpou.clone(),
                    legal_entity_type: *legal_entity_type,
                    status: *status,
                });
            }
            RegistryEvent::LegalEntityStatusChanged { status, .. } => {
                if let Some(facts) = &mut self.0 {
                    facts.status = *status;
                }
            }
            _ => {}
        }
        self
    }
}

/// EDRPOU: 8 digits for an organisation, 10 (the RNOKPP) for a sole proprietor.
fn edrpou_ok(edrpou: &str) -> bool {
    matches!(edrpou.len(), 8 | 10) && edrpou.bytes().all(|b| b.is_ascii_digit())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterLegalEntity {
    pub legal_entity_id: Uuid,
    pub name: String,
    pub edrpou: String,
    pub legal_entity_type: LegalEntityType,
    pub status: LegalEntityStatus,
}

impl RegisterLegalEntity {
    pub fn decide(&self, state: &LegalEntity, ctx: &Ctx) -> Result<Vec<RegistryEvent>, RegistryError> {
        if !text_ok(&self.name, MAX_NAME) {
            return Err(RegistryError::Invalid { entry: "$.name", reason: "expected 1 to 255 characters" });
        }
        if !edrpou_ok(&self.edrpou) {
            return Err(RegistryError::Invalid { entry: "$.edrpou", reason: "expected 8 or 10 digits" });
        }
        let facts = LegalEntityFacts {
            id: self.legal_entity_id,
            name: self.name.clone(),
            edrpou: self.edrpou.clone(),
            legal_entity_type: self.legal_entity_type,
            status: self.status,
        };
        match &state.0 {
            Some(existing) if *existing == facts => Ok(vec![]),
            Some(_) => Err(RegistryError::LegalEntityExists),
            None => Ok(vec![RegistryEvent::LegalEntityRegistered {
                legal_entity_id: self.legal_entity_id,
                name: self.name.clone(),
                edrpou: self.edrpou.clone(),
                legal_entity_type: self.legal_entity_type,
                status: self.status,
                registered_at: ctx.now,
            }]),
        }
    }
}

/// The register's word on the legal entity's status: every move between the four statuses is
/// recorded (the register that owns legal entities decides them); the same status decides nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeLegalEntityStatus {
    pub status: LegalEntityStatus,
}

impl ChangeLegalEntityStatus {
    pub fn decide(&self, state: &LegalEntity, ctx: &Ctx) -> Result<Vec<RegistryEvent>, RegistryError> {
        let facts = state.0.as_ref().ok_or(RegistryError::LegalEntityNotFound)?;
        if facts.status == self.status {
            return Ok(vec![]);
        }
        Ok(vec![RegistryEvent::LegalEntityStatusChanged {
            legal_entity_id: facts.id,
            status: self.status,
            changed_at: ctx.now,
        }])
    }
}
