//! Why a claim command was refused.

use careledger_events::claims::{ClaimStatus, StepStatus};

use crate::Refusal;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// A field breaks a rule of its own (the entry is its JSON path).
    #[error("{reason}")]
    Invalid { entry: String, reason: &'static str },
    #[error("Claim not found")]
    NotFound,
    #[error("Claim already exists")]
    Exists,
    #[error("The claim belongs to another health facility")]
    OtherFacility,
    #[error("Claim code already used by another claim")]
    DuplicateCode,
    #[error("Claim is {0}; this needs it {1}")]
    WrongStatus(ClaimStatus, &'static str),
    #[error("Claim has no claimed amount")]
    NothingClaimed,
    #[error("The {step} is {status}; this needs it {needed}")]
    WrongStepStatus { step: &'static str, status: StepStatus, needed: &'static str },
    #[error("Claim was already restored")]
    AlreadyRestored,
    #[error("Attachment not found")]
    AttachmentNotFound,
    #[error("No claim of the product and period waits for valuation")]
    NothingToValuate,
    #[error("The claim changed while it was being checked; retry")]
    Changed,
}

impl ClaimError {
    pub fn invalid(entry: impl Into<String>, reason: &'static str) -> Self {
        ClaimError::Invalid { entry: entry.into(), reason }
    }

    /// How the gateway answers it. An invalid entry's path is in [`ClaimError::entry`].
    pub fn refusal(&self) -> Refusal {
        use ClaimError::*;
        match self {
            Invalid { .. } => Refusal::Invalid { entry: "$" },
            NotFound | AttachmentNotFound => Refusal::NotFound,
            OtherFacility => Refusal::Forbidden,
            Exists
            | DuplicateCode
            | WrongStatus(..)
            | NothingClaimed
            | WrongStepStatus { .. }
            | AlreadyRestored
            | NothingToValuate
            | Changed => Refusal::Conflict,
        }
    }

    /// The JSON path of an invalid entry.
    pub fn entry(&self) -> Option<&str> {
        match self {
            ClaimError::Invalid { entry, .. } => Some(entry),
            _ => None,
        }
    }
}
