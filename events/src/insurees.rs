//! Events of enrolment: insurees registered with an insurance number (CHFID) from the codes
//! reserved to who enrols them, and insurees enrolled in policies (openIMIS' `insuree` and
//! `policy` modules, and the offline enrolment of the sync seed).
//!
//! An insuree is one stream, `insurees-insuree-<insuree_id>`; a policy one stream,
//! `insurees-policy-<policy_id>`. The code an insuree is registered with is assigned in the same
//! append, on its batch's stream (`codes`' `CodeAssigned`), so a number is handed out once even by
//! two offline nodes: each draws only from codes the central server reserved to its holder.
//!
//! Claims check submissions against insurees and policies: the claims read model folds these events
//! as it folds the reference data an integration upserts (`claims`' `InsureeUpserted`,
//! `PolicyUpserted`).

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::claims::Gender;
use crate::codes::HolderType;
use crate::{DomainEvent, Identifier};

/// An insuree as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RegisteredInsuree {
    pub insuree_id: Uuid,
    /// The insurance number, a code of `holder`'s reserved codes.
    pub chfid: String,
    pub last_name: String,
    pub other_names: String,
    pub birth_date: NaiveDate,
    pub gender: Gender,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The head of the insuree's family; none when the insuree heads a family of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_head: Option<Uuid>,
    /// Where the insuree lives (a location code of the scheme).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Whose reserved codes the number came from: the enrolment officer or health facility that
    /// enrolled the insuree. Empty `holder_code` on a node for an insuree its sync master
    /// registered (the number is of the master's pool; the node keeps the master's register).
    pub holder_type: HolderType,
    pub holder_code: String,
    /// The ids other servers gave the insuree (an insuree enrolled offline and imported keeps
    /// the node's id under the node's system).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<Identifier>,
}

/// A policy as enrolled: the insuree covered by a product for a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EnrolledPolicy {
    pub policy_id: Uuid,
    pub insuree_id: Uuid,
    pub product_code: String,
    pub enrol_date: NaiveDate,
    pub effective_date: NaiveDate,
    pub expiry_date: NaiveDate,
    /// The ids other servers gave the policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<Identifier>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum InsureeEvent {
    /// The insuree was registered under the insurance number `insuree.chfid`.
    InsureeRegistered { insuree: RegisteredInsuree, at: DateTime<Utc> },
    /// The insuree was enrolled in a policy.
    PolicyEnrolled { policy: EnrolledPolicy, at: DateTime<Utc> },
}

/// The stream of an insuree.
pub fn insuree_stream(insuree_id: Uuid) -> String {
    format!("insurees-insuree-{insuree_id}")
}

/// The stream of a policy.
pub fn policy_stream(policy_id: Uuid) -> String {
    format!("insurees-policy-{policy_id}")
}

impl DomainEvent for InsureeEvent {
    const CONTEXT: &'static str = "insurees";

    fn event_type(&self) -> &'static str {
        match self {
            InsureeEvent::InsureeRegistered { .. } => "InsureeRegistered",
            InsureeEvent::PolicyEnrolled { .. } => "PolicyEnrolled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_type_and_data() {
        let e = InsureeEvent::InsureeRegistered {
            insuree: RegisteredInsuree {
                insuree_id: Uuid::from_u128(1),
                chfid: "000000019".into(),
                last_name: "Шевченко".into(),
                other_names: "Олена".into(),
                birth_date: NaiveDate::from_ymd_opt(1990, 4, 2).unwrap(),
                gender: Gender::Female,
                phone: None,
                family_head: None,
                location: Some("R1D1M1V1".into()),
                holder_type: HolderType::EnrolmentOfficer,
                holder_code: "E0001".into(),
                identifiers: vec![],
            },
            at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        };
        let data = e.to_data();
        assert_eq!(data["type"], "InsureeRegistered");
        assert_eq!(data["insuree"]["holder_type"], 2);
        assert!(data["insuree"].get("phone").is_none());
        assert_eq!(InsureeEvent::decode("InsureeRegistered", &data).unwrap(), e);
        assert!(InsureeEvent::decode("PolicyEnrolled", &data).is_err());
        assert_eq!(insuree_stream(Uuid::nil()), "insurees-insuree-00000000-0000-0000-0000-000000000000");
    }
}
