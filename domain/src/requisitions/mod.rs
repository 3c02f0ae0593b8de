//! eHealth's human-readable requisition numbers: one number per encounter, shared by every
//! service request authorised within it, unique among encounters, not a sequence.
//!
//! The aggregate is the encounter ([`EncounterRequisition`], stream
//! `requisitions-encounter-<id>`): its first entity issues the number, later ones share it, so
//! concurrent requests for one encounter agree through the stream's expected version. Uniqueness
//! *across* encounters is a set invariant the store enforces when the number is appended; a number
//! found taken is decided again with a salt ([`IssueRequisition::avoid`]).

mod encounter;
mod error;
mod issue;
mod number;

pub use encounter::EncounterRequisition;
pub use error::RequisitionError;
pub use issue::{IssueRequisition, SALT_DRAWS};
pub use number::{ALPHABET, DEFAULT_KEY, KeyError, NumberError, RequisitionKey, RequisitionNumber};
