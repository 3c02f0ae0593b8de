//! Why a requisition command was refused.

use crate::Refusal;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequisitionError {
    /// Every salt tried gave a number other encounters hold: with 2^64 numbers this means the
    /// store keeps refusing for another reason, so the caller should retry later.
    #[error("no free requisition number was found for the encounter after {0} salts")]
    NumbersExhausted(usize),
    /// The state given is another encounter's (a handler bug, never the caller's input).
    #[error("the requisition state belongs to encounter {0}")]
    WrongEncounter(uuid::Uuid),
}

impl RequisitionError {
    pub fn refusal(&self) -> Refusal {
        match self {
            RequisitionError::NumbersExhausted(_) => Refusal::Conflict,
            RequisitionError::WrongEncounter(_) => Refusal::Invalid { entry: "$.encounter_id" },
        }
    }
}
