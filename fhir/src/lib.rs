//! careledger's FHIR R4 face (issue #21): the resources of its contexts as FHIR R4 JSON, each with
//! its identifiers, the search by identifier, `searchset` Bundles, `OperationOutcome`s and the
//! `CapabilityStatement`. Pure functions of read-model rows: the gateway serves them under `/fhir`,
//! and the offline sync builds its Bundles from them.
//!
//! Why by hand and not from a FHIR model crate: the crates that generate R4's models are either
//! without R4 (fhir-sdk: R4B, R5), unmaintained (fhirbolt, last release 2023) or generated from the
//! whole specification behind proc-macros (helios-fhir), costing minutes of every CI build for the
//! handful of resources served here. What is emitted is checked instead by an independent FHIR
//! library, `fhir.resources` from PyPI (`tests/fhir_valid.py`, run by `tests/tests/fhir_api.rs`).
//!
//! Identifiers (the seed `offline-sync-fhir-identifiers.txt`): every resource carries its id on
//! this server as an identifier of this server's system ([`Systems::own`],
//! `CARELEDGER_FHIR_SYSTEM`), typed `UUID` as openIMIS' IG types it, and its business code (an
//! insuree's CHFID, typed `Code`, without a system as openIMIS emits it).

mod bundle;
mod capability;
mod claims;
mod identifier;
mod outcome;
mod register;
mod registry;
mod requisition;
mod reservation;
mod resources;

pub use bundle::{Page, searchset};
pub use capability::{SERVER_SYSTEM, capability_statement};
pub use claims::{
    AMOUNTS, CLAIM_CATEGORY, LINE_EXPLANATION, REJECTION_REASON, claim, claim_raw, claim_response, claim_response_raw,
};
pub use identifier::{OPENIMIS_IDENTIFIERS, Systems, Token, TokenError};
pub use outcome::{IssueType, operation_outcome};
pub use register::{REGISTER_ENTRY, REGISTER_ENTRY_CODE, REGISTER_KINDS, register_entry};
pub use registry::{AVAILABILITY_STATUS, CARE_TYPE, device, organization};
pub use requisition::service_request;
pub use reservation::{RESERVATION, RESERVATION_CODE, RESOURCE_KINDS, Reservation, reservation};
pub use resources::{ENROL_DATE, FAMILY_HEAD, coverage, patient};

/// The media type of every answer under `/fhir`.
pub const FHIR_JSON: &str = "application/fhir+json";

/// The FHIR version served.
pub const FHIR_VERSION: &str = "4.0.1";

/// Whether `id` is a FHIR id: 1 to 64 of `A-Z a-z 0-9 - .`.
pub fn is_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}
