//! RegisterEquipment, and the checks of the caller's legal entity and of a division that linking
//! to another division repeats.

use careledger_events::registry::{
    DivisionStatus, EquipmentRegistration, LegalEntityStatus, LegalEntityType, RegistryEvent,
};
use uuid::Uuid;

use super::{Division, Equipment, LegalEntity, MAX_CODE, MAX_NAME, MAX_NOTE, RegistryError, text_ok};
use crate::Ctx;

/// The legal entity types that may hold equipment.
pub const EQUIPMENT_LEGAL_ENTITY_TYPES: [LegalEntityType; 4] =
    [LegalEntityType::Msp, LegalEntityType::Outpatient, LegalEntityType::PrimaryCare, LegalEntityType::Emergency];

/// The caller's legal entity (the token's `client_id`) may act on equipment: it is in the register,
/// ACTIVE or SUSPENDED (409 otherwise), and of a type that holds equipment (409 otherwise).
pub(super) fn admit_legal_entity(legal_entity: &LegalEntity, caller: Uuid) -> Result<(), RegistryError> {
    let facts = match &legal_entity.0 {
        Some(facts) if facts.id == caller => facts,
        _ => return Err(RegistryError::LegalEntityNotActive),
    };
    if !matches!(facts.status, LegalEntityStatus::Active | LegalEntityStatus::Suspended) {
        return Err(RegistryError::LegalEntityNotActive);
    }
    if !EQUIPMENT_LEGAL_ENTITY_TYPES.contains(&facts.legal_entity_type) {
        return Err(RegistryError::ActionNotAllowed);
    }
    Ok(())
}

/// The division may receive the caller's equipment: it exists and was not removed, belongs to the
/// caller's legal entity and is ACTIVE (each a 422 on `$.division_id`, in that order).
pub(super) fn admit_division(division: &Division, division_id: Uuid, caller: Uuid) -> Result<(), RegistryError> {
    let facts = match &division.0 {
        Some(facts) if facts.id == division_id && facts.is_active => facts,
        _ => return Err(RegistryError::DivisionNotFound),
    };
    if facts.legal_entity_id != caller {
        return Err(RegistryError::DivisionNotWithinLegalEntity);
    }
    if facts.status != DivisionStatus::Active {
        return Err(RegistryError::DivisionNotActive);
    }
    Ok(())
}

fn invalid(entry: &'static str, reason: &'static str) -> RegistryError {
    RegistryError::Invalid { entry, reason }
}

fn optional_ok(value: &Option<String>, max: usize) -> bool {
    value.as_deref().is_none_or(|v| text_ok(v, max))
}

/// Register an equipment of the caller's legal entity (`registration.legal_entity_id`, from the
/// token) in one of its divisions. `registration.registered_at` is set from the decision's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterEquipment {
    pub registration: EquipmentRegistration,
}

impl RegisterEquipment {
    /// Checks, in eHealth's order: the request's own rules, the legal entity, the division. That
    /// `external_id` is new within the legal entity is checked by the store when the event is appended.
    pub fn decide(
        &self,
        state: &Equipment,
        legal_entity: &LegalEntity,
        division: &Division,
        ctx: &Ctx,
    ) -> Result<Vec<RegistryEvent>, RegistryError> {
        self.check_fields()?;
        let r = &self.registration;
        admit_legal_entity(legal_entity, r.legal_entity_id)?;
        admit_division(division, r.division_id, r.legal_entity_id)?;
        if state.0.is_some() {
            return Err(RegistryError::EquipmentExists);
        }
        let mut registration = r.clone();
        registration.registered_at = ctx.now;
        Ok(vec![RegistryEvent::EquipmentRegistered(Box::new(registration))])
    }

    fn check_fields(&self) -> Result<(), RegistryError> {
        let r = &self.registration;
        if !text_ok(&r.equipment_type, MAX_CODE) {
            return Err(invalid("$.type", "expected a dictionary code of 1 to 100 characters"));
        }
        if !text_ok(&r.external_id, MAX_CODE) {
            return Err(invalid("$.external_id", "expected 1 to 100 characters"));
        }
        if !text_ok(&r.name, MAX_NAME) {
            return Err(invalid("$.name", "expected 1 to 255 characters"));
        }
        for (entry, value) in [
            ("$.serial_number", &r.serial_number),
            ("$.manufacturer", &r.manufacturer),
            ("$.model_number", &r.model_number),
            ("$.lot_number", &r.lot_number),
        ] {
            if !optional_ok(value, MAX_NAME) {
                return Err(invalid(entry, "expected 1 to 255 characters"));
            }
        }
        if !optional_ok(&r.note, MAX_NOTE) {
            return Err(invalid("$.note", "expected 1 to 2000 characters"));
        }
        let udi_ok = |u: &careledger_events::registry::Udi| {
            text_ok(&u.udi_type, MAX_CODE) && text_ok(&u.value, MAX_NAME) && optional_ok(&u.assigner_name, MAX_NAME)
        };
        if !r.udi.iter().all(udi_ok) {
            return Err(invalid("$.udi", "every UDI needs a type and a value"));
        }
        if let (Some(made), Some(expires)) = (r.manufacture_date, r.expiration_date)
            && expires < made
        {
            return Err(invalid("$.expiration_date", "must not be before manufacture_date"));
        }
        Ok(())
    }
}
