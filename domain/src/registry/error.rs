//! Why a registry command was refused, with eHealth's messages.

use careledger_events::registry::AvailabilityStatus;

use crate::Refusal;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// A field breaks a rule of its own (the gateway's schema checks catch most before).
    #[error("{reason}")]
    Invalid { entry: &'static str, reason: &'static str },
    #[error("Legal entity not found")]
    LegalEntityNotFound,
    /// A division names a legal entity the register does not hold.
    #[error("Legal entity not found")]
    UnknownLegalEntityOfDivision,
    #[error("Legal entity already exists with other data")]
    LegalEntityExists,
    #[error("Division not found")]
    UnknownDivision,
    #[error("Division already exists with other data")]
    DivisionExists,
    #[error("Legal entity must be ACTIVE or SUSPENDED")]
    LegalEntityNotActive,
    #[error("Action is not allowed for the legal entity")]
    ActionNotAllowed,
    #[error("Division not found")]
    DivisionNotFound,
    #[error("Division is not within current legal entity")]
    DivisionNotWithinLegalEntity,
    #[error("Division is not active")]
    DivisionNotActive,
    #[error("Duplicated equipment")]
    DuplicatedEquipment,
    #[error("Equipment already exists")]
    EquipmentExists,
    #[error("Equipment not found")]
    EquipmentNotFound,
    #[error("Equipment belongs to another legal entity")]
    ForeignEquipment,
    /// A caller acting for one legal entity changes only its own reference data.
    #[error("Division belongs to another legal entity")]
    ForeignDivision,
    #[error("Invalid transition. Equipment is in final status")]
    FinalStatus,
    #[error("It is prohibited to change status for equipment with availability status = {0}")]
    AvailabilityForbidsStatus(AvailabilityStatus),
    #[error("Equipment is already linked to this division")]
    AlreadyLinked,
    #[error("Equipment already has availability status {0}")]
    SameAvailability(AvailabilityStatus),
    #[error("Invalid transition. Availability status DESTROYED is final")]
    Destroyed,
    #[error("It is prohibited to set availability status AVAILABLE for INACTIVE equipment")]
    InactiveCannotBeAvailable,
}

impl RegistryError {
    pub fn refusal(&self) -> Refusal {
        use RegistryError::*;
        match self {
            Invalid { entry, .. } => Refusal::Invalid { entry },
            UnknownLegalEntityOfDivision => Refusal::Invalid { entry: "$.legal_entity_id" },
            DivisionNotFound | DivisionNotWithinLegalEntity | DivisionNotActive => {
                Refusal::Invalid { entry: "$.division_id" }
            }
            LegalEntityNotFound | UnknownDivision | EquipmentNotFound => Refusal::NotFound,
            ForeignEquipment | ForeignDivision => Refusal::Forbidden,
            LegalEntityExists
            | DivisionExists
            | LegalEntityNotActive
            | ActionNotAllowed
            | DuplicatedEquipment
            | EquipmentExists
            | FinalStatus
            | AvailabilityForbidsStatus(_)
            | AlreadyLinked
            | SameAvailability(_)
            | Destroyed
            | InactiveCannotBeAvailable => Refusal::Conflict,
        }
    }
}
