//! Read models of requisition numbers: each number with its encounter, and the entities sharing
//! it (the number -> entity lookup).

mod projector;
mod queries;

pub use projector::RequisitionsProjector;
pub use queries::{RequisitionEntity, RequisitionQueries, RequisitionView, ServiceRequestRow};
