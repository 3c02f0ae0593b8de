//! The organizations of the FHIR face (`/fhir/Organization`, issue #21): the claims context's
//! health facilities (found by their code, which is also their FHIR id) and the registry's legal
//! entities (by their UUID, or their EDRPOU as business code), one page in one id order.

use careledger_store::{Db, sql_fetch_all};

use crate::ProjectionError;
use crate::claims::Select;

/// Which register an organization comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrganizationKind {
    /// An openIMIS health facility (claims' reference data): its code, care type I, O or B.
    HealthFacility,
    /// An eHealth legal entity: its EDRPOU, its type (`PRIMARY_CARE`, `MSP`, ...) and status.
    LegalEntity,
}

/// A health facility or a legal entity, in the columns both have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationRow {
    pub kind: OrganizationKind,
    /// The facility's code or the legal entity's UUID.
    pub id: String,
    pub name: String,
    /// The facility's code or the legal entity's EDRPOU.
    pub code: String,
    /// The facility's care type or the legal entity's type.
    pub org_type: String,
    /// The legal entity's status; a facility has none (every facility in the register is in use).
    pub status: Option<String>,
    pub updated_at: String,
}

/// Organizations matching `select`, in id order. None has an identifier from another server (they
/// are reference data of this one), so a search by another server's system finds none.
pub async fn organizations(db: &Db, select: &Select) -> Result<Vec<OrganizationRow>, ProjectionError> {
    let s = select;
    if s.foreign.is_some() || s.ids.is_some() {
        return Ok(vec![]);
    }
    let mut conn = db.acquire().await?;
    Ok(sql_fetch_all!(
        conn.exec(),
        "SELECT kind, id, name, code, org_type, status, updated_at FROM (
             SELECT 'F' AS kind, code AS id, name, code, care_type AS org_type, CAST(NULL AS TEXT) AS status,
                 updated_at
             FROM claims_health_facilities
             UNION ALL
             SELECT 'L', legal_entity_id, name, edrpou, type, status, updated_at FROM legal_entities
         ) o
         WHERE ($1 IS NULL OR id = $1) AND ($2 IS NULL OR code = $2) AND ($3 IS NULL OR id = $3 OR code = $3)
             AND ($4 IS NULL OR updated_at >= $4) AND ($5 IS NULL OR id > $5)
         ORDER BY id, kind LIMIT $6",
        [
            s.id.as_deref(),
            s.code.as_deref(),
            s.id_or_code.as_deref(),
            s.updated_since.as_deref(),
            s.after.as_deref(),
            s.limit
        ],
        |row| Ok(OrganizationRow {
            kind: if row.try_get::<String, _>(0)? == "F" {
                OrganizationKind::HealthFacility
            } else {
                OrganizationKind::LegalEntity
            },
            id: row.try_get(1)?,
            name: row.try_get(2)?,
            code: row.try_get(3)?,
            org_type: row.try_get(4)?,
            status: row.try_get(5)?,
            updated_at: row.try_get(6)?,
        })
    )?)
}
