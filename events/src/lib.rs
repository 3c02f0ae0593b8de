//! The event catalogue of careledger.
//!
//! Everything that ever happened in the service is one of the events defined here, wrapped in the
//! [`RecordedEvent`] envelope the log gives it. This crate depends on serde (and the id and time
//! types) only, so that integrators can decode what they receive from NATS or the audit API with the
//! very types the service wrote.
//!
//! Events are facts: named in the past tense, and their shape never changes. A new shape is a new
//! event type (e.g. `CodesGeneratedV2`) decoded next to the old one; [`codes::CodeEvent::decode`] is
//! where such an upcaster belongs.

/// An enumeration written as its upper-case name (`PRIMARY_CARE`) in JSON and in the read
/// models, with the list of every value. (Defined before the modules so that each can use it.)
macro_rules! value_list {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The value of an exact name (`"ACTIVE"`), if it is one.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.name() == name)
            }

            /// Every name, for messages and documentation: `"ACTIVE, SUSPENDED"`.
            pub fn names() -> String {
                Self::ALL.iter().map(|v| v.name()).collect::<Vec<_>>().join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

pub mod claims;
pub mod codes;
mod envelope;
mod identifier;
pub mod insurees;
pub mod registry;
pub mod requisitions;
pub mod schema;

pub use envelope::{Actor, EventMetadata, NewEvent, Origin, RecordedEvent};
pub use identifier::Identifier;

/// The bounded contexts whose events the log holds: the first part of every stream name and of
/// every NATS subject `careledger.<context>.<EventType>`.
pub const CONTEXTS: [&str; 6] = ["codes", "claims", "insurees", "registry", "requisitions", "sync"];

/// An event of one bounded context: knows its type name and how to become/come back from JSON.
/// Every such enum describes itself as a JSON Schema (see [`schema`]): an event type without a
/// published schema cannot be written.
/// Every event enum is `#[serde(tag = "type")]`, so the data and decoding are the same for all:
/// [`tagged_data`] and [`decode_tagged`].
pub trait DomainEvent: Sized + schemars::JsonSchema + serde::Serialize + serde::de::DeserializeOwned {
    /// The bounded context, first part of the NATS subject `careledger.<context>.<EventType>`.
    const CONTEXT: &'static str;

    /// The event type name stored beside the data and used in subjects, e.g. `CodesReserved`.
    fn event_type(&self) -> &'static str;

    /// The JSON data stored in the log (the type name is kept in it as its tag).
    fn to_data(&self) -> serde_json::Value {
        tagged_data(self)
    }

    /// Decodes a stored event; unknown types or shapes are an error, never a silent skip.
    fn decode(event_type: &str, data: &serde_json::Value) -> Result<Self, DecodeError> {
        decode_tagged(event_type, data)
    }
}

/// The data of an event enum tagged with `#[serde(tag = "type")]`. The tag is kept in the data
/// too: a consumer holding only the data still knows its type.
pub fn tagged_data<E: serde::Serialize>(event: &E) -> serde_json::Value {
    serde_json::to_value(event).unwrap_or(serde_json::Value::Null)
}

/// Decodes a tagged event enum's data, refusing data whose tag is not `event_type`.
pub fn decode_tagged<E: DomainEvent + serde::de::DeserializeOwned>(
    event_type: &str,
    data: &serde_json::Value,
) -> Result<E, DecodeError> {
    let event: E = serde_json::from_value(data.clone())
        .map_err(|e| DecodeError { event_type: event_type.to_string(), reason: e.to_string() })?;
    if event.event_type() != event_type {
        return Err(DecodeError {
            event_type: event_type.to_string(),
            reason: format!("data holds a {}", event.event_type()),
        });
    }
    Ok(event)
}

/// A stored event could not be decoded into the catalogue's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub event_type: String,
    pub reason: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot decode event {}: {}", self.event_type, self.reason)
    }
}

impl std::error::Error for DecodeError {}

/// The context a stream belongs to, read from its name `<context>-<aggregate>-<id>`.
pub fn stream_context(stream: &str) -> &str {
    stream.split('-').next().unwrap_or(stream)
}
