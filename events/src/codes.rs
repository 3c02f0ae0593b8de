//! Events of the insuree code (CHFID) pool: batches generated for a holder, codes reserved for
//! sending to that holder, assigned to an insuree, linked to a payment control number.
//!
//! A batch is one stream, `codes-batch-<batch_id>`. Its codes arrive in chunks
//! ([`CODES_PER_CHUNK`]) so that a batch of a million codes is a hundred events of ~100 KiB each,
//! not one 10 MiB event nor a million tiny ones.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::DomainEvent;

/// How many codes one `CodesGenerated` event carries at most.
pub const CODES_PER_CHUNK: usize = 10_000;

/// Who a batch of codes is generated for (openIMIS `holder_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HolderType {
    Printer = 1,
    EnrolmentOfficer = 2,
    HealthFacility = 3,
    Location = 4,
}

impl HolderType {
    pub const ALL: [HolderType; 4] =
        [HolderType::Printer, HolderType::EnrolmentOfficer, HolderType::HealthFacility, HolderType::Location];

    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn name(self) -> &'static str {
        match self {
            HolderType::Printer => "printer",
            HolderType::EnrolmentOfficer => "enrolment_officer",
            HolderType::HealthFacility => "health_facility",
            HolderType::Location => "location",
        }
    }

    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.code() == code)
    }

    /// Accepts the name (`printer`, `enrolment_officer`, `health_facility`, `location`, also with
    /// `-`, spaces or upper case, and the short forms `eo`, `hf`) or the number as text.
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        match n.as_str() {
            "printer" => Some(HolderType::Printer),
            "enrolment_officer" | "enrollment_officer" | "eo" => Some(HolderType::EnrolmentOfficer),
            "health_facility" | "hf" => Some(HolderType::HealthFacility),
            "location" => Some(HolderType::Location),
            other => other.parse().ok().and_then(Self::from_code),
        }
    }
}

impl Serialize for HolderType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.code())
    }
}

/// As written: the number (names are accepted on reading, but never written).
impl JsonSchema for HolderType {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HolderType".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let codes: Vec<i64> = HolderType::ALL.iter().map(|h| h.code()).collect();
        schemars::json_schema!({
            "description": "1 printer, 2 enrolment officer, 3 health facility, 4 location",
            "type": "integer",
            "enum": codes,
        })
    }
}

impl<'de> Deserialize<'de> for HolderType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let parsed = match &v {
            serde_json::Value::Number(n) => n.as_i64().and_then(HolderType::from_code),
            serde_json::Value::String(s) => HolderType::from_name(s),
            _ => None,
        };
        parsed.ok_or_else(|| serde::de::Error::custom(format!("invalid holder type {v}")))
    }
}

/// The CHFID scheme the codes of a batch follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CodeFormat {
    /// Digits in a code, check digit included (default 9).
    pub length: u32,
    /// The check digit is the number before it modulo this root (7 by default; 10 is the openIMIS
    /// variant where it is a Luhn check digit).
    pub modulo: u32,
    /// Text put before the digits, e.g. a region letter; empty by default.
    #[serde(default)]
    pub prefix: String,
}

impl Default for CodeFormat {
    fn default() -> Self {
        CodeFormat { length: 9, modulo: 7, prefix: String::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum CodeEvent {
    /// A batch was ordered: its codes follow in `CodesGenerated` events of the same stream.
    CodeBatchGenerated {
        batch_id: Uuid,
        holder_type: HolderType,
        holder_code: String,
        number: u32,
        format: CodeFormat,
        created_at: DateTime<Utc>,
    },
    /// One chunk (numbered from 0) of a batch's codes, each available from now on.
    CodesGenerated { batch_id: Uuid, chunk: u32, codes: Vec<String> },
    /// Codes taken out of the available pool to be sent to the batch's holder.
    CodesReserved {
        batch_id: Uuid,
        reservation_id: Uuid,
        holder_type: HolderType,
        holder_code: String,
        codes: Vec<String>,
        /// The server (its FHIR identifier system) the codes are sent to: an offline node of the
        /// holder, which hands them out there and nowhere else. None: handed out here.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        for_server: Option<String>,
    },
    /// A code now identifies this insuree.
    CodeAssigned {
        batch_id: Uuid,
        code: String,
        insuree_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        json_ext: Option<serde_json::Value>,
    },
    /// The code is linked to a payment control number (CN).
    ControlNumberLinked { batch_id: Uuid, code: String, control_number: String },
}

impl CodeEvent {
    pub fn batch_id(&self) -> Uuid {
        match self {
            CodeEvent::CodeBatchGenerated { batch_id, .. }
            | CodeEvent::CodesGenerated { batch_id, .. }
            | CodeEvent::CodesReserved { batch_id, .. }
            | CodeEvent::CodeAssigned { batch_id, .. }
            | CodeEvent::ControlNumberLinked { batch_id, .. } => *batch_id,
        }
    }
}

/// The stream of a batch of codes.
pub fn batch_stream(batch_id: Uuid) -> String {
    format!("codes-batch-{batch_id}")
}

impl DomainEvent for CodeEvent {
    const CONTEXT: &'static str = "codes";

    fn event_type(&self) -> &'static str {
        match self {
            CodeEvent::CodeBatchGenerated { .. } => "CodeBatchGenerated",
            CodeEvent::CodesGenerated { .. } => "CodesGenerated",
            CodeEvent::CodesReserved { .. } => "CodesReserved",
            CodeEvent::CodeAssigned { .. } => "CodeAssigned",
            CodeEvent::ControlNumberLinked { .. } => "ControlNumberLinked",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_type_reads_numbers_and_names_and_writes_numbers() {
        for (json, want) in [
            ("1", HolderType::Printer),
            ("\"enrolment_officer\"", HolderType::EnrolmentOfficer),
            ("\"HF\"", HolderType::HealthFacility),
            ("\"4\"", HolderType::Location),
        ] {
            let h: HolderType = serde_json::from_str(json).unwrap();
            assert_eq!(h, want);
        }
        assert!(serde_json::from_str::<HolderType>("5").is_err());
        assert!(serde_json::from_str::<HolderType>("\"nurse\"").is_err());
        assert_eq!(serde_json::to_string(&HolderType::Location).unwrap(), "4");
    }

    #[test]
    fn events_round_trip_through_type_and_data() {
        let e = CodeEvent::CodeAssigned {
            batch_id: Uuid::nil(),
            code: "100000011".into(),
            insuree_id: "i-1".into(),
            json_ext: None,
        };
        let data = e.to_data();
        assert_eq!(data["type"], "CodeAssigned");
        assert_eq!(CodeEvent::decode("CodeAssigned", &data).unwrap(), e);
        assert!(CodeEvent::decode("CodesReserved", &data).is_err());
    }
}
