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
}
