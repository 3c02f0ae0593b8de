//! Queries on the registry's read models. Equipment is always asked for within one legal entity
//! (the caller's): another legal entity's equipment is found only to be refused.

use careledger_events::registry::LinkStatus;
use careledger_store::{Db, sql_fetch_all, sql_fetch_one, sql_fetch_optional};
use serde::Serialize;

use crate::ProjectionError;

/// The ACTIVE link of an equipment to its division.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveLink {
    pub id: String,
    pub division_id: String,
    pub status: String,
    pub inserted_at: String,
}

/// An equipment as every answer shows it (commands answer the same shape from their state).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EquipmentView {
    pub id: String,
    #[serde(rename = "type")]
    pub equipment_type: String,
    pub external_id: String,
    pub name: String,
    pub serial_number: Option<String>,
    pub manufacturer: Option<String>,
    pub model_number: Option<String>,
    pub lot_number: Option<String>,
    pub udi: serde_json::Value,
    pub manufacture_date: Option<String>,
    pub expiration_date: Option<String>,
    pub note: Option<String>,
    pub legal_entity_id: String,
    pub division_id: String,
    pub division_link: ActiveLink,
    pub status: String,
    pub status_reason: Option<String>,
    pub availability_status: String,
    pub is_active: bool,
    pub inserted_at: String,
    pub inserted_by: Option<String>,
    pub updated_at: String,
    pub updated_by: Option<String>,
}

/// One link an equipment had or has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkView {
    pub id: String,
    pub division_id: String,
    pub status: String,
    pub inserted_at: String,
    pub inserted_by: Option<String>,
    pub updated_at: String,
    pub updated_by: Option<String>,
}

/// One status an equipment had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusHistoryEntry {
    pub status: String,
    pub reason: Option<String>,
    pub inserted_at: String,
    pub inserted_by: Option<String>,
}

/// An equipment with every division link and every status it had, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EquipmentDetail {
    #[serde(flatten)]
    pub equipment: EquipmentView,
    pub division_links: Vec<LinkView>,
    pub status_history: Vec<StatusHistoryEntry>,
}

/// List filters; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EquipmentFilter {
    pub division_id: Option<String>,
    pub equipment_type: Option<String>,
    pub external_id: Option<String>,
    pub status: Option<String>,
    pub availability_status: Option<String>,
}

const EQUIPMENT_SELECT: &str =
    "SELECT equipment_id, type, external_id, name, serial_number, manufacturer, model_number,
        lot_number, udi, manufacture_date, expiration_date, note, legal_entity_id, division_id, division_link_id,
        linked_at, status, status_reason, availability_status, is_active, inserted_at, inserted_by, updated_at,
        updated_by
     FROM equipment";

/// Read access to the registry's tables.
pub struct RegistryQueries<'a>(pub &'a Db);

impl RegistryQueries<'_> {
    /// The equipment (of any legal entity: the caller decides whether it may see it).
    pub async fn equipment(&self, equipment_id: &str) -> Result<Option<EquipmentView>, ProjectionError> {
        let mut conn = self.0.acquire().await?;
        let sql = format!("{EQUIPMENT_SELECT} WHERE equipment_id = $1");
        Ok(sql_fetch_optional!(conn.exec(), sqlx::AssertSqlSafe(sql), [equipment_id], |row| equipment_row(row))?)
    }

    /// The equipment with its links and status history.
    pub async fn equipment_detail(&self, equipment_id: &str) -> Result<Option<EquipmentDetail>, ProjectionError> {
        let Some(equipment) = self.equipment(equipment_id).await? else { return Ok(None) };
        let mut conn = self.0.acquire().await?;
        let division_links = sql_fetch_all!(
            conn.exec(),
            "SELECT link_id, division_id, status, inserted_at, inserted_by, updated_at, updated_by
             FROM equipment_division_links WHERE equipment_id = $1 ORDER BY inserted_at, link_id",
            [equipment_id],
            |row| Ok(LinkView {
                id: row.try_get(0)?,
                division_id: row.try_get(1)?,
                status: row.try_get(2)?,
                inserted_at: row.try_get(3)?,
                inserted_by: row.try_get(4)?,
                updated_at: row.try_get(5)?,
                updated_by: row.try_get(6)?,
            })
        )?;
        let status_history = sql_fetch_all!(
            conn.exec(),
            "SELECT status, reason, inserted_at, inserted_by FROM equipment_status_history
             WHERE equipment_id = $1 ORDER BY position",
            [equipment_id],
            |row| Ok(StatusHistoryEntry {
                status: row.try_get(0)?,
                reason: row.try_get(1)?,
                inserted_at: row.try_get(2)?,
                inserted_by: row.try_get(3)?,
            })
        )?;
        Ok(Some(EquipmentDetail { equipment, division_links, status_history }))
    }

    /// Equipment matching `select` (`code` its `external_id`), of one legal entity when
    /// `legal_entity_id` is given, in id order: the FHIR face's `Device`. Equipment is reference
    /// data of this server, never imported: a search by another server's system finds none.
    pub async fn devices(
        &self,
        select: &crate::claims::Select,
        legal_entity_id: Option<&str>,
    ) -> Result<Vec<EquipmentView>, ProjectionError> {
        let s = select;
        if s.foreign.is_some() || s.ids.is_some() {
            return Ok(vec![]);
        }
        let mut conn = self.0.acquire().await?;
        let sql = format!(
            "{EQUIPMENT_SELECT} WHERE ($1 IS NULL OR equipment_id = $1) AND ($2 IS NULL OR external_id = $2)
                 AND ($3 IS NULL OR equipment_id = $3 OR external_id = $3) AND ($4 IS NULL OR updated_at >= $4)
                 AND ($5 IS NULL OR equipment_id > $5) AND ($6 IS NULL OR legal_entity_id = $6)
             ORDER BY equipment_id LIMIT $7"
        );
        Ok(sql_fetch_all!(
            conn.exec(),
            sqlx::AssertSqlSafe(sql),
            [
                s.id.as_deref(),
                s.code.as_deref(),
                s.id_or_code.as_deref(),
                s.updated_since.as_deref(),
                s.after.as_deref(),
                legal_entity_id,
                s.limit
            ],
            |row| equipment_row(row)
        )?)
    }

    /// A legal entity's equipment matching the filter, oldest first, and how many match.
    pub async fn equipment_list(
        &self,
        legal_entity_id: &str,
        filter: &EquipmentFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<EquipmentView>, i64), ProjectionError> {
        const WHERE: &str = "WHERE legal_entity_id = $1 AND ($2 IS NULL OR division_id = $2)
             AND ($3 IS NULL OR type = $3) AND ($4 IS NULL OR external_id = $4) AND ($5 IS NULL OR status = $5)
             AND ($6 IS NULL OR availability_status = $6)";
        let f = filter;
        let mut conn = self.0.acquire().await?;
        let sql = format!("{EQUIPMENT_SELECT} {WHERE} ORDER BY inserted_at, equipment_id LIMIT $7 OFFSET $8");
        let rows = sql_fetch_all!(
            conn.exec(),
            sqlx::AssertSqlSafe(sql),
            [
                legal_entity_id,
                f.division_id.as_deref(),
                f.equipment_type.as_deref(),
                f.external_id.as_deref(),
                f.status.as_deref(),
                f.availability_status.as_deref(),
                limit,
                offset
            ],
            |row| equipment_row(row)
        )?;
        let total = sql_fetch_one!(
            conn.exec(),
            sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM equipment {WHERE}")),
            [
                legal_entity_id,
                f.division_id.as_deref(),
                f.equipment_type.as_deref(),
                f.external_id.as_deref(),
                f.status.as_deref(),
                f.availability_status.as_deref()
            ],
            |row| row.try_get::<i64, _>(0)
        )?;
        Ok((rows, total))
    }
}

fn equipment_row<R: sqlx::Row>(row: &R) -> Result<EquipmentView, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let udi: String = row.try_get(8)?;
    let id: String = row.try_get(0)?;
    let division_id: String = row.try_get(13)?;
    Ok(EquipmentView {
        equipment_type: row.try_get(1)?,
        external_id: row.try_get(2)?,
        name: row.try_get(3)?,
        serial_number: row.try_get(4)?,
        manufacturer: row.try_get(5)?,
        model_number: row.try_get(6)?,
        lot_number: row.try_get(7)?,
        udi: serde_json::from_str(&udi).unwrap_or(serde_json::Value::Array(vec![])),
        manufacture_date: row.try_get(9)?,
        expiration_date: row.try_get(10)?,
        note: row.try_get(11)?,
        legal_entity_id: row.try_get(12)?,
        division_link: ActiveLink {
            id: row.try_get(14)?,
            division_id: division_id.clone(),
            status: LinkStatus::Active.name().into(),
            inserted_at: row.try_get(15)?,
        },
        division_id,
        status: row.try_get(16)?,
        status_reason: row.try_get(17)?,
        availability_status: row.try_get(18)?,
        is_active: row.try_get(19)?,
        inserted_at: row.try_get(20)?,
        inserted_by: row.try_get(21)?,
        updated_at: row.try_get(22)?,
        updated_by: row.try_get(23)?,
        id,
    })
}
