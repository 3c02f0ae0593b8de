//! Events of the eHealth registry: legal entities and their divisions (reference data), and the
//! equipment a legal entity registers in one of its divisions.
//!
//! Streams: `registry-legalentity-<id>`, `registry-division-<id>`, `registry-equipment-<id>`. An
//! equipment's stream holds its whole life: registration (with its first division link), every
//! move to another division (closing the old link and opening the new one in one event), every
//! status and availability change. The read models' status history and division links are folds
//! of these events.
//!
//! Every list of allowed values of the context is here, once ([`LegalEntityType::ALL`], ...): the
//! domain, the gateway's request checks and the OpenAPI description all follow these lists.

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::DomainEvent;

value_list!(
    /// eHealth's legal entity types.
    LegalEntityType {
        Msp => "MSP",
        Pharmacy => "PHARMACY",
        MspPharmacy => "MSP_PHARMACY",
        Outpatient => "OUTPATIENT",
        PrimaryCare => "PRIMARY_CARE",
        Emergency => "EMERGENCY",
        Mis => "MIS",
        Nhs => "NHS",
    }
);

value_list!(
    /// A legal entity's status in the register.
    LegalEntityStatus {
        Active => "ACTIVE",
        Suspended => "SUSPENDED",
        Closed => "CLOSED",
        Reorganized => "REORGANIZED",
    }
);

value_list!(
    /// eHealth's division types.
    DivisionType {
        Clinic => "CLINIC",
        AmbulantClinic => "AMBULANT_CLINIC",
        Fap => "FAP",
        Drugstore => "DRUGSTORE",
        DrugstorePoint => "DRUGSTORE_POINT",
        LicensedUnit => "LICENSED_UNIT",
    }
);

value_list!(
    /// A division's status.
    DivisionStatus {
        Active => "ACTIVE",
        Inactive => "INACTIVE",
    }
);

value_list!(
    /// An equipment's status (eHealth's newer status model): ACTIVE when registered, INACTIVE once
    /// taken out of use, ENTERED_IN_ERROR (final) when it should never have been registered.
    EquipmentStatus {
        Active => "ACTIVE",
        Inactive => "INACTIVE",
        EnteredInError => "ENTERED_IN_ERROR",
    }
);

value_list!(
    /// Whether the equipment can be used (FHIR `Device.availabilityStatus`, which eHealth follows).
    AvailabilityStatus {
        Available => "AVAILABLE",
        Damaged => "DAMAGED",
        Destroyed => "DESTROYED",
        Lost => "LOST",
    }
);

value_list!(
    /// The state of a link between an equipment and a division: one ACTIVE link per equipment.
    LinkStatus {
        Active => "ACTIVE",
        Inactive => "INACTIVE",
    }
);

/// A unique device identifier of the equipment (eHealth `udi`: `[{type, value, assigner_name}]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Udi {
    /// The identifier's kind, a dictionary code (eHealth's example: `default`).
    #[serde(rename = "type")]
    pub udi_type: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigner_name: Option<String>,
}

/// Everything an equipment is registered with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EquipmentRegistration {
    pub equipment_id: Uuid,
    /// The legal entity of the registering user (the token's `client_id`).
    pub legal_entity_id: Uuid,
    pub division_id: Uuid,
    /// The first division link, ACTIVE from now on.
    pub link_id: Uuid,
    /// The equipment type, a dictionary code.
    pub equipment_type: String,
    /// The legal entity's own identifier of the equipment: unique within the legal entity.
    pub external_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot_number: Option<String>,
    #[serde(default)]
    pub udi: Vec<Udi>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacture_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub availability_status: AvailabilityStatus,
    pub registered_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum RegistryEvent {
    /// A legal entity entered the register (reference data for the equipment checks).
    LegalEntityRegistered {
        legal_entity_id: Uuid,
        name: String,
        edrpou: String,
        legal_entity_type: LegalEntityType,
        status: LegalEntityStatus,
        registered_at: DateTime<Utc>,
    },
    LegalEntityStatusChanged {
        legal_entity_id: Uuid,
        status: LegalEntityStatus,
        changed_at: DateTime<Utc>,
    },
    /// A division of a legal entity entered the register.
    DivisionRegistered {
        division_id: Uuid,
        legal_entity_id: Uuid,
        name: String,
        division_type: DivisionType,
        status: DivisionStatus,
        registered_at: DateTime<Utc>,
    },
    /// The division's status and whether it still exists (`is_active` false: removed).
    DivisionStatusChanged {
        division_id: Uuid,
        status: DivisionStatus,
        is_active: bool,
        changed_at: DateTime<Utc>,
    },
    /// An equipment was registered, ACTIVE, linked to its division.
    /// (Boxed: the largest event by far; the JSON is the registration's fields beside `type`.)
    EquipmentRegistered(Box<EquipmentRegistration>),
    /// The equipment moved: the old link is closed and the new one opened by this one event.
    EquipmentDivisionLinked {
        equipment_id: Uuid,
        link_id: Uuid,
        division_id: Uuid,
        previous_link_id: Uuid,
        previous_division_id: Uuid,
        linked_at: DateTime<Utc>,
    },
    EquipmentStatusChanged {
        equipment_id: Uuid,
        status: EquipmentStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        changed_at: DateTime<Utc>,
    },
    EquipmentAvailabilityChanged {
        equipment_id: Uuid,
        availability_status: AvailabilityStatus,
        changed_at: DateTime<Utc>,
    },
}

pub fn legal_entity_stream(legal_entity_id: Uuid) -> String {
    format!("registry-legalentity-{legal_entity_id}")
}

pub fn division_stream(division_id: Uuid) -> String {
    format!("registry-division-{division_id}")
}

pub fn equipment_stream(equipment_id: Uuid) -> String {
    format!("registry-equipment-{equipment_id}")
}

impl DomainEvent for RegistryEvent {
    const CONTEXT: &'static str = "registry";

    fn event_type(&self) -> &'static str {
        match self {
            RegistryEvent::LegalEntityRegistered { .. } => "LegalEntityRegistered",
            RegistryEvent::LegalEntityStatusChanged { .. } => "LegalEntityStatusChanged",
            RegistryEvent::DivisionRegistered { .. } => "DivisionRegistered",
            RegistryEvent::DivisionStatusChanged { .. } => "DivisionStatusChanged",
            RegistryEvent::EquipmentRegistered(_) => "EquipmentRegistered",
            RegistryEvent::EquipmentDivisionLinked { .. } => "EquipmentDivisionLinked",
            RegistryEvent::EquipmentStatusChanged { .. } => "EquipmentStatusChanged",
            RegistryEvent::EquipmentAvailabilityChanged { .. } => "EquipmentAvailabilityChanged",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration() -> EquipmentRegistration {
        EquipmentRegistration {
            equipment_id: Uuid::from_u128(1),
            legal_entity_id: Uuid::from_u128(2),
            division_id: Uuid::from_u128(3),
            link_id: Uuid::from_u128(4),
            equipment_type: "23143534".into(),
            external_id: "123-ASD-#1".into(),
            name: "Ultrasound".into(),
            serial_number: Some("SN-1".into()),
            manufacturer: None,
            model_number: None,
            lot_number: None,
            udi: vec![Udi { udi_type: "default".into(), value: "IMEI 49015420323751".into(), assigner_name: None }],
            manufacture_date: NaiveDate::from_ymd_opt(2020, 1, 31),
            expiration_date: None,
            note: None,
            availability_status: AvailabilityStatus::Available,
            registered_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    #[test]
    fn values_are_written_as_their_ehealth_names() {
        assert_eq!(serde_json::to_string(&LegalEntityType::PrimaryCare).unwrap(), "\"PRIMARY_CARE\"");
        assert_eq!(EquipmentStatus::from_name("ENTERED_IN_ERROR"), Some(EquipmentStatus::EnteredInError));
        assert_eq!(EquipmentStatus::from_name("entered_in_error"), None);
        assert_eq!(AvailabilityStatus::names(), "AVAILABLE, DAMAGED, DESTROYED, LOST");
        assert!(serde_json::from_str::<DivisionStatus>("\"CLOSED\"").is_err());
    }

    #[test]
    fn events_round_trip_through_type_and_data() {
        let e = RegistryEvent::EquipmentRegistered(Box::new(registration()));
        let data = e.to_data();
        assert_eq!(data["type"], "EquipmentRegistered");
        assert_eq!(data["udi"][0]["type"], "default");
        assert_eq!(data["manufacture_date"], "2020-01-31");
        assert_eq!(RegistryEvent::decode("EquipmentRegistered", &data).unwrap(), e);
        assert!(RegistryEvent::decode("EquipmentStatusChanged", &data).is_err());
        assert_eq!(crate::stream_context(&equipment_stream(Uuid::nil())), "registry");
        assert_eq!(crate::stream_context(&legal_entity_stream(Uuid::nil())), "registry");
    }
}
