//! Read models of the eHealth registry: legal entities, divisions, equipment with its ACTIVE
//! division link, every link an equipment had, and its status history.

mod projector;
mod queries;

pub use projector::RegistryProjector;
pub use queries::{
    ActiveLink, EquipmentDetail, EquipmentFilter, EquipmentView, LinkView, RegistryQueries, StatusHistoryEntry,
};
