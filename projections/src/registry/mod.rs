//! Read models of the eHealth registry: legal entities, divisions, equipment with its ACTIVE
//! division link, every link an equipment had, and its status history.

mod organizations;
mod projector;
mod queries;

pub use organizations::{OrganizationKind, OrganizationRow, organizations};
pub use projector::RegistryProjector;
pub use queries::{
    ActiveLink, EquipmentDetail, EquipmentFilter, EquipmentView, LinkView, RegistryQueries, StatusHistoryEntry,
};
