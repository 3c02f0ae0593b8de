//! Read models: projectors fold the event log into SQL tables that queries read.
//!
//! Each projector has a name and a checkpoint (its position in the log). The [`Projections`]
//! runner applies a batch of events and moves the checkpoint in one transaction, so a restart
//! resumes exactly where the last commit left off, and several processes sharing one PostgreSQL
//! never apply an event twice (the checkpoint row is locked and compared before applying).
//! Read models are disposable: [`Projections::rebuild`] empties them and replays from zero.

pub mod audit;
mod bulk;
pub mod claims;
pub mod codes;
mod error;
pub mod registry;
pub mod requisitions;
mod runner;
pub mod time;

pub use error::ProjectionError;
pub use runner::{Projections, Projector, ProjectorStatus, dump_tables};

/// Every projector of the service, in the order they are listed and rebuilt.
pub fn all() -> Vec<std::sync::Arc<dyn Projector>> {
    vec![
        std::sync::Arc::new(codes::CodesProjector),
        std::sync::Arc::new(requisitions::RequisitionsProjector),
        std::sync::Arc::new(registry::RegistryProjector),
        std::sync::Arc::new(claims::ClaimsProjector),
        std::sync::Arc::new(audit::AuditProjector),
    ]
}
