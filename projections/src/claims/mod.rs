//! Read models of the claim context: the reference data submissions are checked against, claims
//! with the amount of every stage, their lines, attachments and valuation runs; and the queries
//! on them (lists, one claim, the per-stage report, what a submission or a batch run needs).

mod projector;
mod queries;
mod reference;
mod registers;

pub use projector::ClaimsProjector;
pub use queries::{
    AttachmentView, ClaimDetail, ClaimFilter, ClaimQueries, ClaimView, LineView, StageTotals, stage_value,
};
pub use reference::ReferenceCache;
pub use registers::{Enrolment, InsureeRow, PolicyRow, Registers, Select};
