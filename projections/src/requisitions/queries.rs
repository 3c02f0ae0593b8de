//! Queries on the requisition read models.

use careledger_store::{Db, sql_fetch_all, sql_fetch_optional};
use serde::Serialize;

use crate::ProjectionError;

/// An entity sharing a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequisitionEntity {
    pub entity_type: String,
    pub entity_id: String,
    pub added_at: String,
}

/// A number with its encounter and entities (the lookup eHealth's users do by number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequisitionView {
    pub requisition: String,
    pub encounter_id: String,
    pub issued_at: String,
    pub entities: Vec<RequisitionEntity>,
}

/// A service request with the number it shares (the FHIR face's `ServiceRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequestRow {
    pub service_request_id: String,
    pub requisition: String,
    pub encounter_id: String,
    pub added_at: String,
}

/// Read access to the requisition tables.
pub struct RequisitionQueries<'a>(pub &'a Db);

impl RequisitionQueries<'_> {
    /// The number's encounter and entities (oldest first), if the number was issued.
    pub async fn requisition(&self, requisition: &str) -> Result<Option<RequisitionView>, ProjectionError> {
        let mut conn = self.0.acquire().await?;
        let found = sql_fetch_optional!(
            conn.exec(),
            "SELECT encounter_id, issued_at FROM requisitions WHERE requisition = $1",
            [requisition],
            |row| Ok((row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?))
        )?;
        let Some((encounter_id, issued_at)) = found else { return Ok(None) };
        let entities = sql_fetch_all!(
            conn.exec(),
            "SELECT entity_type, entity_id, added_at FROM requisition_entities WHERE requisition = $1
             ORDER BY position, entity_type, entity_id",
            [requisition],
            |row| Ok(RequisitionEntity {
                entity_type: row.try_get(0)?,
                entity_id: row.try_get(1)?,
                added_at: row.try_get(2)?,
            })
        )?;
        Ok(Some(RequisitionView { requisition: requisition.to_string(), encounter_id, issued_at, entities }))
    }

    /// Service requests matching `select` (they have no business code: `code` matches none),
    /// with number `requisition` when given, in id order. An entity added under two encounters'
    /// numbers shows with the first it was given. None is imported from another server.
    pub async fn service_requests(
        &self,
        select: &crate::claims::Select,
        requisition: Option<&str>,
    ) -> Result<Vec<ServiceRequestRow>, ProjectionError> {
        let s = select;
        if s.foreign.is_some() || s.ids.is_some() || s.code.is_some() {
            return Ok(vec![]);
        }
        let mut conn = self.0.acquire().await?;
        Ok(sql_fetch_all!(
            conn.exec(),
            "SELECT e.entity_id, e.requisition, r.encounter_id, e.added_at
             FROM requisition_entities e JOIN requisitions r ON r.requisition = e.requisition
             WHERE e.entity_type = 'service_request'
                 AND e.position = (SELECT MIN(f.position) FROM requisition_entities f
                                   WHERE f.entity_type = e.entity_type AND f.entity_id = e.entity_id)
                 AND ($1 IS NULL OR e.entity_id = $1) AND ($2 IS NULL OR e.entity_id = $2)
                 AND ($3 IS NULL OR e.added_at >= $3) AND ($4 IS NULL OR e.entity_id > $4)
                 AND ($5 IS NULL OR e.requisition = $5)
             ORDER BY e.entity_id LIMIT $6",
            [
                s.id.as_deref(),
                s.id_or_code.as_deref(),
                s.updated_since.as_deref(),
                s.after.as_deref(),
                requisition,
                s.limit
            ],
            |row| Ok(ServiceRequestRow {
                service_request_id: row.try_get(0)?,
                requisition: row.try_get(1)?,
                encounter_id: row.try_get(2)?,
                added_at: row.try_get(3)?,
            })
        )?)
    }
}
