//! Why a command on the code pool was refused.

use crate::Refusal;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("holder_code must be 1 to 50 characters")]
    InvalidHolderCode,
    #[error("number must be at least 1")]
    InvalidNumber,
    #[error("the code format cannot make {requested} distinct codes sparsely enough (at most {limit})")]
    CodeSpaceTooSmall { requested: u64, limit: u64 },
    /// The format's space has fewer free codes than asked for (README "The code pool").
    #[error("{requested} codes requested but only {remaining} codes of the format remain unissued")]
    SpaceExhausted { requested: u64, remaining: u64 },
    #[error("invalid code format: {0}")]
    InvalidFormat(#[from] super::format::FormatError),
    #[error("batch {0} already exists")]
    BatchExists(uuid::Uuid),
    #[error("batch not found")]
    BatchNotFound,
    #[error("the batch belongs to another holder")]
    HolderMismatch,
    #[error("{requested} codes requested but only {available} are available")]
    NotEnoughCodes { requested: usize, available: usize },
    #[error("the code is not a valid insuree code")]
    InvalidCode,
    #[error("code not found")]
    UnknownCode,
    #[error("insuree_id must be 1 to 100 characters")]
    InvalidInsuree,
    #[error("the code is already assigned to another insuree")]
    AlreadyAssigned,
    #[error("control_number must be 1 to 50 characters")]
    InvalidControlNumber,
    #[error("the code is already linked to another control number")]
    ControlNumberAlreadyLinked,
}

impl CodeError {
    pub fn refusal(&self) -> Refusal {
        use CodeError::*;
        match self {
            InvalidHolderCode => Refusal::Invalid { entry: "$.holder_code" },
            InvalidNumber | CodeSpaceTooSmall { .. } => Refusal::Invalid { entry: "$.number" },
            InvalidFormat(_) => Refusal::Invalid { entry: "$.format" },
            HolderMismatch => Refusal::Invalid { entry: "$.batch_id" },
            InvalidCode => Refusal::Invalid { entry: "$.code" },
            InvalidInsuree => Refusal::Invalid { entry: "$.insuree_id" },
            InvalidControlNumber => Refusal::Invalid { entry: "$.control_number" },
            BatchNotFound | UnknownCode => Refusal::NotFound,
            BatchExists(_)
            | NotEnoughCodes { .. }
            | SpaceExhausted { .. }
            | AlreadyAssigned
            | ControlNumberAlreadyLinked => Refusal::Conflict,
        }
    }
}
