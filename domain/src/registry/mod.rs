//! The eHealth registry: legal entities and divisions (reference data), and equipment registered
//! by a legal entity in one of its divisions.
//!
//! Three aggregates, one stream each: [`LegalEntity`], [`Division`], [`Equipment`]. An equipment
//! decision reads the legal entity's and the division's states, which the command handler loads
//! from their streams and passes in (the decision stays pure). That `external_id` is unique within
//! a legal entity is a set invariant the store enforces in the append's transaction; the domain
//! only names the refusal ([`RegistryError::DuplicatedEquipment`]).
//!
//! The checks of a command run in eHealth's order (schema, legal entity, division, then the
//! equipment's own state); the first that fails is the answer.

mod division;
mod division_link;
mod equipment;
mod error;
mod legal_entity;
mod registration;
mod status;

pub use division::{ChangeDivisionStatus, Division, DivisionFacts, RegisterDivision};
pub use division_link::LinkDivision;
pub use equipment::{Equipment, EquipmentFacts};
pub use error::RegistryError;
pub use legal_entity::{ChangeLegalEntityStatus, LegalEntity, LegalEntityFacts, RegisterLegalEntity};
pub use registration::{EQUIPMENT_LEGAL_ENTITY_TYPES, RegisterEquipment};
pub use status::{ChangeAvailability, ChangeEquipmentStatus};

/// Longest name, note or identifier text the registry keeps.
pub const MAX_NAME: usize = 255;
pub const MAX_CODE: usize = 100;
pub const MAX_NOTE: usize = 2000;

/// A text of 1 to `max` characters without surrounding blanks.
fn text_ok(value: &str, max: usize) -> bool {
    let len = value.chars().count();
    len >= 1 && len <= max && value.trim() == value
}

#[cfg(test)]
mod tests;
