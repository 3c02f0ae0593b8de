//! openIMIS claims: a claim's life from entry to valuation, with the status rules openIMIS leaves
//! to its web client enforced here, so that no client can move a claim into an impossible state.
//!
//! One aggregate, [`Claim`], one stream per claim. Submission reads reference data (the facility,
//! the register, the facility's price list, the insuree with its policies and products, the
//! insuree's earlier claim lines) that the command handler loads from the read models and passes
//! in as [`SubmitFacts`]; the decision stays pure. That a claim code is unique among live claims
//! is a set invariant the store enforces in the append's transaction.
//!
//! Rejection reasons are openIMIS' codes ([`reason`]); the checks of a submission run in the order
//! the issue lists them and the first that fails is the line's reason.

mod claim;
mod entry;
mod error;
mod process;
mod review;
mod submit;
mod sync;

pub use claim::{Claim, ClaimFacts, LineState};
pub use entry::{AttachmentChange, ChangeAttachment, CreateClaim, DeleteClaim, RestoreClaim, UpdateClaim};
pub use error::ClaimError;
pub use process::{ProcessClaim, ValuateClaim, relative_value};
pub use review::{DeliverFeedback, SaveReview, Step, StepAction, StepChange};
pub use submit::{PastLine, SubmitClaim, SubmitFacts, covered_by};
pub use sync::{ReceiveOutcome, TakeNodeChange, TakeNodeDeletion};

use careledger_events::claims::{Amount, LineKind};

/// openIMIS' rejection reasons of claim lines (and of claims).
pub mod reason {
    pub const NOT_IN_REGISTER: i32 = 1;
    pub const NOT_IN_PRICE_LIST: i32 = 2;
    pub const NOT_COVERED: i32 = 3;
    pub const FREQUENCY: i32 = 5;
    pub const INSUREE: i32 = 7;
    pub const TARGET_DATE: i32 = 9;
    pub const CARE_TYPE: i32 = 10;
    pub const QUANTITY_LIMIT: i32 = 16;
    pub const WAITING_PERIOD: i32 = 17;
    /// Rejected by the reviewer (openIMIS' -1).
    pub const REVIEW: i32 = -1;
}

/// Most secondary diagnoses a claim carries.
pub const MAX_SECONDARY_ICD: usize = 4;

/// Most items (and most services) one claim has.
pub const MAX_LINES: usize = 100;

/// openIMIS' rule: a service given more than once needs an explanation. The one statement of it:
/// transports read bodies with it (one 422 naming every field), and the domain keeps it whatever
/// brought the claim.
pub fn explanation_required(kind: LineKind, qty_provided: Amount) -> bool {
    kind == LineKind::Service && qty_provided > Amount::units(1)
}

/// Age (in whole years at the target date) from which an insuree is an adult.
pub const ADULT_AGE: u32 = 18;

#[cfg(test)]
mod tests;
