//! Why an enrolment command was refused.

use crate::Refusal;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InsureeError {
    #[error("last_name must be 1 to 100 characters")]
    InvalidLastName,
    #[error("other_names must be 1 to 100 characters")]
    InvalidOtherNames,
    #[error("phone must be 1 to 50 characters of digits, spaces, +, -, ( and )")]
    InvalidPhone,
    #[error("location must be 1 to 50 characters")]
    InvalidLocation,
    #[error("holder_code must be 1 to 50 characters")]
    InvalidHolderCode,
    #[error("birth_date must be between 1900-01-01 and today")]
    InvalidBirthDate,
    #[error("an insuree with this id is already registered")]
    InsureeExists,
    #[error("the family head is not a registered insuree")]
    UnknownFamilyHead,
    #[error("the family head belongs to another family: name that family's head")]
    HeadNotHead,
    /// Tried batch by batch: the application looks further when one batch has none left.
    #[error("the batch holds no reserved code")]
    NoReservedCodeInBatch,
    #[error("the batch belongs to another holder")]
    HolderMismatch,
    #[error(
        "no insurance number is left among the codes reserved to {holder}: remaining 0; reserve more codes for \
         this holder on the central server and sync"
    )]
    NoCodesLeft { holder: String },
    #[error("insurance number {code} is not a code of this server")]
    UnknownCode { code: String },
    #[error("insurance number {code} was never reserved to a holder, so no node could give it")]
    CodeNotReserved { code: String },
    #[error("insurance number {code} is already assigned to another insuree")]
    CodeAssigned { code: String },
    #[error("the insuree is not registered")]
    UnknownInsuree,
    #[error("a policy with this id already exists")]
    PolicyExists,
    #[error("product_code must be 1 to 50 characters")]
    InvalidProduct,
    #[error("the product is not known to this server")]
    UnknownProduct,
    #[error("expiry_date must be after effective_date, and at most {years} years after it")]
    InvalidPeriod { years: i32 },
    #[error("effective_date must not be before enrol_date")]
    EffectiveBeforeEnrolment,
}

impl InsureeError {
    pub fn refusal(&self) -> Refusal {
        use InsureeError::*;
        match self {
            InvalidLastName => Refusal::Invalid { entry: "$.last_name" },
            InvalidOtherNames => Refusal::Invalid { entry: "$.other_names" },
            InvalidPhone => Refusal::Invalid { entry: "$.phone" },
            InvalidLocation => Refusal::Invalid { entry: "$.location" },
            InvalidHolderCode => Refusal::Invalid { entry: "$.holder_code" },
            InvalidBirthDate => Refusal::Invalid { entry: "$.birth_date" },
            UnknownFamilyHead | HeadNotHead => Refusal::Invalid { entry: "$.family_head" },
            InvalidProduct | UnknownProduct => Refusal::Invalid { entry: "$.product_code" },
            InvalidPeriod { .. } => Refusal::Invalid { entry: "$.expiry_date" },
            EffectiveBeforeEnrolment => Refusal::Invalid { entry: "$.effective_date" },
            UnknownInsuree => Refusal::Invalid { entry: "$.insuree_id" },
            HolderMismatch => Refusal::Forbidden,
            UnknownCode { .. } | CodeNotReserved { .. } => Refusal::Invalid { entry: "$.chfid" },
            InsureeExists | PolicyExists | NoReservedCodeInBatch | NoCodesLeft { .. } | CodeAssigned { .. } => {
                Refusal::Conflict
            }
        }
    }
}
