//! Read models of the insuree code pool: batches with their counters, codes with their status,
//! and each code's history after generation.

mod projector;
mod queries;

pub use projector::CodesProjector;
pub use queries::{BatchSummary, CodeDetail, CodeHistoryEntry, CodeQueries, CodeRow, CodeSelection, SelectionCursor};
