//! The audit read model: every event's metadata (who, for which legal entity, which command, under
//! which request, when), indexed for the audit queries. It holds no event data: answers read the
//! events themselves from the log by position, so what an auditor sees is exactly what the log
//! holds, and the read model stays small enough to keep up with a log of millions of events.

mod projector;
mod queries;

pub use projector::AuditProjector;
pub use queries::{AuditFilter, AuditQueries};
