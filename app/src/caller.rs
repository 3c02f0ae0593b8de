//! Who acts: the user, the legal entity or health facility they act for, and their permissions.
//! Each transport proves it its own way (HTTP and NATS by a bearer JWT, the coming sync by the
//! peer's signed bundle) and hands the application this one type; the rules about what a caller
//! may touch (DESIGN rule 12, README "Tenancy") are here, once.

use std::collections::HashSet;
use std::sync::Arc;

use careledger_events::Actor;
use uuid::Uuid;

use crate::{AppError, Operation, Permissions};

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: String,
    /// The legal entity the caller acts for (a JWT's `client_id`), when it acts for one.
    pub legal_entity_id: Option<String>,
    /// The health facility whose claims alone this caller acts on (a JWT's `health_facility`).
    pub health_facility: Option<String>,
    permissions: Arc<HashSet<String>>,
}

/// Whose audit a caller may read (DESIGN rule 12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditScope {
    /// Every tenant's: a caller acting for no tenant, or holding the all-tenants permission.
    All,
    /// The events made by the callers of one legal entity (the token's `client_id`).
    LegalEntity(String),
}

impl Caller {
    pub fn new(
        id: impl Into<String>,
        legal_entity_id: Option<String>,
        health_facility: Option<String>,
        permissions: impl IntoIterator<Item = String>,
    ) -> Self {
        Caller {
            id: id.into(),
            legal_entity_id,
            health_facility,
            permissions: Arc::new(permissions.into_iter().collect()),
        }
    }

    /// Whether the caller holds `permission` (an empty one is held by nobody).
    pub fn holds(&self, permission: &str) -> bool {
        !permission.is_empty() && self.permissions.contains(permission)
    }

    /// 403 unless the caller holds `permission`.
    pub fn require(&self, permission: &str) -> Result<(), AppError> {
        if self.permissions.contains(permission) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "Your scope does not allow to access this resource. Missing allowances: {permission}"
            )))
        }
    }

    /// 403 unless the caller may do `operation` (its permission as configured).
    pub fn may(&self, permissions: &Permissions, operation: Operation) -> Result<(), AppError> {
        self.require(permissions.of(operation))
    }

    /// Who the events this caller's commands append record.
    pub fn actor(&self) -> Actor {
        Actor { user_id: Some(self.id.clone()), legal_entity_id: self.legal_entity_id.clone() }
    }

    /// The audit this caller may read. The log records each event's legal entity (its actor's
    /// `client_id`) but no health facility, so a facility-scoped caller without the all-tenants
    /// permission is refused rather than shown more than its facility.
    pub fn audit_scope(&self, all_tenants: &str) -> Result<AuditScope, AppError> {
        if self.holds(all_tenants) {
            return Ok(AuditScope::All);
        }
        match (&self.legal_entity_id, &self.health_facility) {
            (_, Some(facility)) => Err(AppError::Forbidden(format!(
                "The audit records no health facility: a token scoped to health facility {facility} cannot read \
                 it without {all_tenants}"
            ))),
            (Some(legal_entity), None) => Ok(AuditScope::LegalEntity(legal_entity.clone())),
            (None, None) => Ok(AuditScope::All),
        }
    }

    /// The legal entity equipment commands act for; 403 without one. A `client_id` that is not a
    /// UUID names no legal entity of the register: it becomes the nil UUID, which no legal entity
    /// may have, so the legal entity checks refuse it as unknown.
    pub fn equipment_legal_entity(&self) -> Result<Uuid, AppError> {
        let client_id = self.legal_entity_id.as_deref().ok_or_else(|| {
            AppError::Forbidden("Access denied. The token acts for no legal entity (client_id is missing)".into())
        })?;
        Ok(Uuid::parse_str(client_id).unwrap_or(Uuid::nil()))
    }

    /// Who may change reference data (DESIGN rule 12): a caller acting for no legal entity (the
    /// register's integration) changes any; a caller acting for one only that legal entity and
    /// its divisions. The legal entity it acts for, when it does.
    pub fn acting_for(&self) -> Result<Option<Uuid>, AppError> {
        match &self.legal_entity_id {
            None => Ok(None),
            Some(own) => Uuid::parse_str(own)
                .map(Some)
                .map_err(|_| AppError::Forbidden("The token's client_id is not a legal entity id".into())),
        }
    }

    /// 403 unless the caller may change legal entity `id`'s reference data (see [`Caller::acting_for`]).
    pub fn owns_legal_entity(&self, id: Uuid) -> Result<(), AppError> {
        match self.acting_for()? {
            Some(own) if own != id => Err(AppError::Forbidden(
                "A token acting for a legal entity changes only that legal entity's data".into(),
            )),
            _ => Ok(()),
        }
    }
}
