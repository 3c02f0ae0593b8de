//! Events of eHealth's human-readable requisition numbers: one number per encounter, shared by
//! every service request of that encounter.
//!
//! An encounter is one stream, `requisitions-encounter-<encounter_id>`. Its first event issues the
//! number (and records the salt that made it unique, so the same encounter always keeps the same
//! number); each further entity of the encounter is added to it.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::DomainEvent;

/// What a requisition number is shared by. The one place the accepted kinds are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityType {
    /// eHealth's use: every service request authorised within one encounter.
    ServiceRequest,
}

impl EntityType {
    pub const ALL: [EntityType; 1] = [EntityType::ServiceRequest];

    pub fn name(self) -> &'static str {
        match self {
            EntityType::ServiceRequest => "service_request",
        }
    }

    /// The exact name, as eHealth writes it (`service_request`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl Serialize for EntityType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl JsonSchema for EntityType {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EntityType".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = EntityType::ALL.iter().map(|t| t.name()).collect();
        schemars::json_schema!({ "type": "string", "enum": names })
    }
}

impl<'de> Deserialize<'de> for EntityType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        EntityType::from_name(&name).ok_or_else(|| serde::de::Error::custom(format!("invalid entity type {name}")))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum RequisitionEvent {
    /// The encounter got its number, made from the encounter id and `salt` (empty unless the
    /// unsalted number was already another encounter's), for its first entity.
    RequisitionIssued {
        encounter_id: Uuid,
        requisition: String,
        salt: String,
        entity_type: EntityType,
        entity_id: Uuid,
        issued_at: DateTime<Utc>,
    },
    /// Another entity of the encounter shares its number.
    RequisitionEntityAdded {
        encounter_id: Uuid,
        requisition: String,
        entity_type: EntityType,
        entity_id: Uuid,
        added_at: DateTime<Utc>,
    },
}

impl RequisitionEvent {
    pub fn encounter_id(&self) -> Uuid {
        match self {
            RequisitionEvent::RequisitionIssued { encounter_id, .. }
            | RequisitionEvent::RequisitionEntityAdded { encounter_id, .. } => *encounter_id,
        }
    }

    pub fn requisition(&self) -> &str {
        match self {
            RequisitionEvent::RequisitionIssued { requisition, .. }
            | RequisitionEvent::RequisitionEntityAdded { requisition, .. } => requisition,
        }
    }
}

/// The stream of an encounter's requisition number.
pub fn encounter_stream(encounter_id: Uuid) -> String {
    format!("requisitions-encounter-{encounter_id}")
}

impl DomainEvent for RequisitionEvent {
    const CONTEXT: &'static str = "requisitions";

    fn event_type(&self) -> &'static str {
        match self {
            RequisitionEvent::RequisitionIssued { .. } => "RequisitionIssued",
            RequisitionEvent::RequisitionEntityAdded { .. } => "RequisitionEntityAdded",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_types_are_their_exact_names() {
        assert_eq!(serde_json::to_string(&EntityType::ServiceRequest).unwrap(), "\"service_request\"");
        assert_eq!(serde_json::from_str::<EntityType>("\"service_request\"").unwrap(), EntityType::ServiceRequest);
        assert!(serde_json::from_str::<EntityType>("\"Service_Request\"").is_err());
        assert!(serde_json::from_str::<EntityType>("\"episode\"").is_err());
        assert!(serde_json::from_str::<EntityType>("1").is_err());
    }

    #[test]
    fn events_round_trip_through_type_and_data() {
        let e = RequisitionEvent::RequisitionIssued {
            encounter_id: Uuid::nil(),
            requisition: "0288-PE58-5XB5-2C1P".into(),
            salt: String::new(),
            entity_type: EntityType::ServiceRequest,
            entity_id: Uuid::from_u128(7),
            issued_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        };
        let data = e.to_data();
        assert_eq!(data["type"], "RequisitionIssued");
        assert_eq!(data["entity_type"], "service_request");
        assert_eq!(RequisitionEvent::decode("RequisitionIssued", &data).unwrap(), e);
        assert!(RequisitionEvent::decode("RequisitionEntityAdded", &data).is_err());
        assert_eq!(e.requisition(), "0288-PE58-5XB5-2C1P");
        assert_eq!(encounter_stream(e.encounter_id()), "requisitions-encounter-00000000-0000-0000-0000-000000000000");
    }
}
