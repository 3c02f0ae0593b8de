//! The envelope every event travels in: what the log adds (position, version, time) and what the
//! command that caused it adds (who, why, in answer to what).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who caused an event: the token's `sub` and, where the caller acts for one, its legal entity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Actor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_entity_id: Option<String>,
}

/// What the command handler records with every event it appends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EventMetadata {
    /// Shared by every event caused, directly or not, by one request.
    pub correlation_id: Uuid,
    /// The message (request or event) that caused this one, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    #[serde(default)]
    pub actor: Actor,
    /// The command that decided this event, e.g. `GenerateCodes`.
    pub command: String,
    /// Where an imported event came from: the peer server and the FHIR Bundle (issue #21). None
    /// for what was decided here from a request of this server's own users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// The peer and Bundle an import came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Origin {
    /// The peer's identifier system (the system of the ids it gives).
    pub peer: String,
    /// The Bundle's identifier value (unique within the peer's system).
    pub bundle: String,
    /// The change's position in the peer's log, where the peer says it (a register entry's
    /// `meta.versionId`): an older change that arrives after a newer one (a late sync file, a
    /// page asked again) is then known to be older and not taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// UUIDv7, unique in the store: appending the same id twice is refused.
    pub event_id: Uuid,
    pub event_type: String,
    pub data: serde_json::Value,
    pub metadata: EventMetadata,
}

/// An event as the log holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RecordedEvent {
    /// Place in the global log. Increasing in the order readers see events; not dense.
    pub position: i64,
    pub event_id: Uuid,
    pub stream: String,
    /// 1 for the first event of a stream, then +1 per event.
    pub version: i64,
    pub event_type: String,
    pub data: serde_json::Value,
    pub metadata: EventMetadata,
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// Decodes the data into a context's event type.
    pub fn decode<E: crate::DomainEvent>(&self) -> Result<E, crate::DecodeError> {
        E::decode(&self.event_type, &self.data)
    }

    /// The NATS subject this event is published on.
    pub fn subject(&self) -> String {
        format!("careledger.{}.{}", crate::stream_context(&self.stream), self.event_type)
    }
}
