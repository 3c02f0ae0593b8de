//! The registers of insurees, policies and claims as rows, found by id, by business code and by
//! when they last changed, a page at a time in id order: what the FHIR face (`/fhir/Patient`,
//! `/fhir/Coverage`, `/fhir/Claim`) and the coming sync read.

use careledger_events::Identifier;
use careledger_store::{Db, sql_fetch_all};

use super::queries::code_in;
use crate::ProjectionError;

/// Which rows of a register, a page at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Select {
    /// This server's id of the row.
    pub id: Option<String>,
    /// The row's business code (an insuree's CHFID).
    pub code: Option<String>,
    /// `id` or `code`, either (a FHIR identifier searched without a system).
    pub id_or_code: Option<String>,
    /// Only rows changed at or after this time (RFC 3339, UTC).
    pub updated_since: Option<String>,
    /// Only rows whose id sorts after this one (the previous page's last).
    pub after: Option<String>,
    /// Only these ids (the sync's export reads a page of changed rows in one query).
    pub ids: Option<Vec<String>>,
    /// Only rows with an identifier another server gave them: of this system, and of this value
    /// when one is given (FHIR's `identifier=system|` and `system|value`).
    pub foreign: Option<(String, Option<String>)>,
    pub limit: i64,
}

/// An insuree as the register holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsureeRow {
    pub insuree_id: String,
    pub chfid: String,
    pub birth_date: String,
    /// openIMIS' letter: M, F or O.
    pub gender: String,
    /// What a registration here says (none for insurees upserted as reference data).
    pub enrolment: Option<Enrolment>,
    /// The ids other servers gave it (an insuree imported from a node keeps the node's id).
    pub identifiers: Vec<Identifier>,
    pub updated_at: String,
}

/// What an insuree's registration on this server says beyond the reference data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    pub last_name: String,
    pub other_names: String,
    pub phone: Option<String>,
    /// The family head's id; none when the insuree heads its family.
    pub family_head: Option<String>,
    pub location: Option<String>,
}

/// A policy: an insuree covered by a product for a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    pub policy_id: String,
    pub insuree_id: String,
    pub product_code: String,
    /// When it was enrolled; none for policies upserted as reference data.
    pub enrol_date: Option<String>,
    pub effective_date: String,
    pub expiry_date: String,
    pub identifiers: Vec<Identifier>,
    pub updated_at: String,
}

/// The identifiers column: a JSON array, NULL for none.
fn identifiers(text: Option<String>) -> Vec<Identifier> {
    text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

/// The condition "has an identifier of system `$system` (of value `$value` unless NULL)" on a
/// resource type's id column.
fn foreign(resource_type: &str, id_column: &str, system: u32, value: u32) -> String {
    format!(
        "(${system} IS NULL OR {id_column} IN (SELECT local_id FROM fhir_identifiers
             WHERE resource_type = '{resource_type}' AND system = ${system} AND (${value} IS NULL OR value = ${value})))"
    )
}

/// The registers' queries.
pub struct Registers<'a>(pub &'a Db);

impl Registers<'_> {
    /// Insurees matching `select`, in id order.
    pub async fn insurees(&self, select: &Select) -> Result<Vec<InsureeRow>, ProjectionError> {
        let s = select;
        let ids = s.ids.as_ref().map(serde_json::to_string).transpose()?;
        let sql = format!(
            "SELECT insuree_id, chfid, birth_date, gender, updated_at, last_name, other_names, phone, family_head,
                 location, identifiers
             FROM claims_insurees
             WHERE ($1 IS NULL OR insuree_id = $1) AND ($2 IS NULL OR chfid = $2)
                 AND ($3 IS NULL OR insuree_id = $3 OR chfid = $3)
                 AND ($4 IS NULL OR updated_at >= $4) AND ($5 IS NULL OR insuree_id > $5)
                 AND ($7 IS NULL OR {}) AND {}
             ORDER BY insuree_id LIMIT $6",
            code_in(self.0.backend(), "insuree_id", 7),
            foreign("Patient", "insuree_id", 8, 9)
        );
        let (system, value) = s.foreign.clone().map_or((None, None), |(s, v)| (Some(s), v));
        let mut conn = self.0.acquire().await?;
        Ok(sql_fetch_all!(
            conn.exec(),
            sqlx::AssertSqlSafe(sql),
            [
                s.id.as_deref(),
                s.code.as_deref(),
                s.id_or_code.as_deref(),
                s.updated_since.as_deref(),
                s.after.as_deref(),
                s.limit,
                ids.as_deref(),
                system.as_deref(),
                value.as_deref()
            ],
            |row| Ok(InsureeRow {
                insuree_id: row.try_get(0)?,
                chfid: row.try_get(1)?,
                birth_date: row.try_get(2)?,
                gender: row.try_get(3)?,
                updated_at: row.try_get(4)?,
                enrolment: match (row.try_get::<Option<String>, _>(5)?, row.try_get::<Option<String>, _>(6)?) {
                    (Some(last_name), Some(other_names)) => Some(Enrolment {
                        last_name,
                        other_names,
                        phone: row.try_get(7)?,
                        family_head: row.try_get(8)?,
                        location: row.try_get(9)?,
                    }),
                    _ => None,
                },
                identifiers: identifiers(row.try_get(10)?),
            })
        )?)
    }

    /// The ids of the claims matching `select` (`code` the claim's code), of one health facility
    /// when `facility` is given, in id order. Deleted claims have left the read model.
    pub async fn claim_ids(&self, select: &Select, facility: Option<&str>) -> Result<Vec<String>, ProjectionError> {
        let s = select;
        let sql = format!(
            "SELECT claim_id FROM claims
             WHERE ($1 IS NULL OR claim_id = $1) AND ($2 IS NULL OR code = $2)
                 AND ($3 IS NULL OR claim_id = $3 OR code = $3)
                 AND ($4 IS NULL OR updated_at >= $4) AND ($5 IS NULL OR claim_id > $5)
                 AND ($6 IS NULL OR health_facility = $6) AND {}
             ORDER BY claim_id LIMIT $7",
            foreign("Claim", "claim_id", 8, 9)
        );
        let (system, value) = s.foreign.clone().map_or((None, None), |(s, v)| (Some(s), v));
        let mut conn = self.0.acquire().await?;
        Ok(sql_fetch_all!(
            conn.exec(),
            sqlx::AssertSqlSafe(sql),
            [
                s.id.as_deref(),
                s.code.as_deref(),
                s.id_or_code.as_deref(),
                s.updated_since.as_deref(),
                s.after.as_deref(),
                facility,
                s.limit,
                system,
                value
            ],
            |row| row.try_get::<String, _>(0)
        )?)
    }

    /// Whether the register holds the insuree (registered here, or upserted as reference data).
    pub async fn insuree_exists(&self, insuree_id: &str) -> Result<bool, ProjectionError> {
        let select = Select { id: Some(insuree_id.to_string()), limit: 1, ..Select::default() };
        Ok(!self.insurees(&select).await?.is_empty())
    }

    /// Whether the register holds the product.
    pub async fn product_exists(&self, code: &str) -> Result<bool, ProjectionError> {
        let mut conn = self.0.acquire().await?;
        let found = sql_fetch_all!(conn.exec(), "SELECT 1 FROM claims_products WHERE code = $1", [code], |row| row
            .try_get::<i32, _>(0))?;
        Ok(!found.is_empty())
    }

    /// Policies matching `select` (a policy has no business code: `code` matches none), in id order.
    pub async fn policies(&self, select: &Select) -> Result<Vec<PolicyRow>, ProjectionError> {
        if select.code.is_some() {
            return Ok(vec![]);
        }
        let s = select;
        let ids = s.ids.as_ref().map(serde_json::to_string).transpose()?;
        let sql = format!(
            "SELECT policy_id, insuree_id, product_code, effective_date, expiry_date, updated_at, identifiers,
                 enrol_date
             FROM claims_policies
             WHERE ($1 IS NULL OR policy_id = $1) AND ($2 IS NULL OR policy_id = $2)
                 AND ($3 IS NULL OR updated_at >= $3) AND ($4 IS NULL OR policy_id > $4)
                 AND ($6 IS NULL OR {}) AND {}
             ORDER BY policy_id LIMIT $5",
            code_in(self.0.backend(), "policy_id", 6),
            foreign("Coverage", "policy_id", 7, 8)
        );
        let (system, value) = s.foreign.clone().map_or((None, None), |(s, v)| (Some(s), v));
        let mut conn = self.0.acquire().await?;
        Ok(sql_fetch_all!(
            conn.exec(),
            sqlx::AssertSqlSafe(sql),
            [
                s.id.as_deref(),
                s.id_or_code.as_deref(),
                s.updated_since.as_deref(),
                s.after.as_deref(),
                s.limit,
                ids.as_deref(),
                system.as_deref(),
                value.as_deref()
            ],
            |row| Ok(PolicyRow {
                policy_id: row.try_get(0)?,
                insuree_id: row.try_get(1)?,
                product_code: row.try_get(2)?,
                effective_date: row.try_get(3)?,
                expiry_date: row.try_get(4)?,
                updated_at: row.try_get(5)?,
                identifiers: identifiers(row.try_get(6)?),
                enrol_date: row.try_get(7)?,
            })
        )?)
    }
}
