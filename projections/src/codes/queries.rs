//! Queries on the code pool's read models.

use careledger_store::{Db, sql_fetch_all, sql_fetch_one, sql_fetch_optional};
use serde::Serialize;

use crate::ProjectionError;

/// A batch with its counters (openIMIS getInsuranceCodesBatch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchSummary {
    pub batch_id: String,
    pub holder_type: i64,
    pub holder_code: String,
    pub created_at: String,
    pub number: i64,
    pub available: i64,
    pub reserved: i64,
    pub assigned: i64,
}

/// A code of a batch (openIMIS getInsuranceCodes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodeRow {
    pub code: String,
    pub status: String,
    pub insuree_id: Option<String>,
    pub control_number: Option<String>,
    pub json_ext: Option<serde_json::Value>,
}

/// One thing that happened to a code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodeHistoryEntry {
    pub position: i64,
    pub event_type: String,
    pub recorded_at: String,
    pub actor: serde_json::Value,
    pub command: String,
    pub correlation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// A code with its holder, batch, links and history (the follow-up of a generated id).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodeDetail {
    pub code: String,
    pub status: String,
    pub holder_type: i64,
    pub holder_code: String,
    pub batch_id: String,
    pub insuree_id: Option<String>,
    pub control_number: Option<String>,
    pub json_ext: Option<serde_json::Value>,
    pub history: Vec<CodeHistoryEntry>,
}

fn json(text: Option<String>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

fn actor(user_id: Option<String>, legal_entity_id: Option<String>) -> serde_json::Value {
    serde_json::json!({ "user_id": user_id, "legal_entity_id": legal_entity_id })
}

/// Codes read together for a document: a batch's (those of one status, or all), or those one
/// reservation reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeSelection {
    Batch { batch_id: String, status: Option<String> },
    Reservation(String),
}

/// Where the reading of a [`CodeSelection`] is: after which `seq` (a batch, up to `last_seq`) or
/// code (a reservation), and whether it is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionCursor {
    seq: i64,
    last_seq: Option<i64>,
    code: String,
    pub done: bool,
}

impl Default for SelectionCursor {
    fn default() -> Self {
        SelectionCursor { seq: -1, last_seq: None, code: String::new(), done: false }
    }
}

/// Read access to the code pool's tables.
pub struct CodeQueries<'a>(pub &'a Db);

impl CodeQueries<'_> {
    /// A holder's batches, newest first, and how many there are.
    pub async fn batches(
        &self,
        holder_type: i64,
        holder_code: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<BatchSummary>, i64), ProjectionError> {
        let mut conn = self.0.acquire().await?;
        let rows = sql_fetch_all!(
            conn.exec(),
            "SELECT batch_id, holder_type, holder_code, created_at, number, available, reserved, assigned
             FROM code_batches WHERE holder_type = $1 AND holder_code = $2
             ORDER BY created_at DESC, batch_id DESC LIMIT $3 OFFSET $4",
            [holder_type, holder_code, limit, offset],
            |row| batch_row(row)
        )?;
        let total = sql_fetch_one!(
            conn.exec(),
            "SELECT COUNT(*) FROM code_batches WHERE holder_type = $1 AND holder_code = $2",
            [holder_type, holder_code],
            |row| row.try_get::<i64, _>(0)
        )?;
        Ok((rows, total))
    }

    /// A holder's batches that still have available codes, oldest first: where reservations
    /// take codes from.
    /// How many codes every batch together was generated with (the code space's used part).
    pub async fn issued(&self) -> Result<i64, ProjectionError> {
        let mut conn = self.0.acquire().await?;
        Ok(sql_fetch_one!(
            conn.exec(),
            "SELECT CAST(COALESCE(SUM(number), 0) AS BIGINT) FROM code_batches",
            [],
            |row| row.try_get::<i64, _>(0)
        )?)
    }

    pub async fn batches_with_available(
        &self,
        holder_type: i64,
        holder_code: &str,
    ) -> Result<Vec<String>, ProjectionError> {
        self.batches_holding(holder_type, holder_code, "available").await
    }

    /// A holder's batches that still have reserved codes, oldest first: where a registration by
    /// that holder takes its insurance number from.
    pub async fn batches_with_reserved(
        &self,
        holder_type: i64,
        holder_code: &str,
    ) -> Result<Vec<String>, ProjectionError> {
        self.batches_holding(holder_type, holder_code, "reserved").await
    }

    /// A holder's batches with codes of `status` (`available` or `reserved`), oldest first.
    async fn batches_holding(
        &self,
        holder_type: i64,
        holder_code: &str,
        status: &str,
    ) -> Result<Vec<String>, ProjectionError> {
        let mut conn = self.0.acquire().await?;
        Ok(sql_fetch_all!(
            conn.exec(),
            "SELECT batch_id FROM code_batches WHERE holder_type = $1 AND holder_code = $2
                 AND CASE $3 WHEN 'reserved' THEN reserved ELSE available END > 0
             ORDER BY created_at, batch_id",
            [holder_type, holder_code, status],
            |row| row.try_get::<String, _>(0)
        )?)
    }

    pub async fn batch(&self, batch_id: &str) -> Result<Option<BatchSummary>, ProjectionError> {
        let mut conn = self.0.acquire().await?;
        Ok(sql_fetch_optional!(
            conn.exec(),
            "SELECT batch_id, holder_type, holder_code, created_at, number, available, reserved, assigned
             FROM code_batches WHERE batch_id = $1",
            [batch_id],
            |row| batch_row(row)
        )?)
    }

    /// A batch's codes in generation order, optionally of one status, and how many there are.
    pub async fn codes(
        &self,
        batch_id: &str,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<CodeRow>, i64), ProjectionError> {
        let mut conn = self.0.acquire().await?;
        let rows = sql_fetch_all!(
            conn.exec(),
            "SELECT code, status, insuree_id, control_number, json_ext FROM codes
             WHERE batch_id = $1 AND ($2 IS NULL OR status = $2) ORDER BY seq LIMIT $3 OFFSET $4",
            [batch_id, status, limit, offset],
            |row| Ok(CodeRow {
                code: row.try_get(0)?,
                status: row.try_get(1)?,
                insuree_id: row.try_get(2)?,
                control_number: row.try_get(3)?,
                json_ext: json(row.try_get(4)?),
            })
        )?;
        let total = sql_fetch_one!(
            conn.exec(),
            "SELECT COUNT(*) FROM codes WHERE batch_id = $1 AND ($2 IS NULL OR status = $2)",
            [batch_id, status],
            |row| row.try_get::<i64, _>(0)
        )?;
        Ok((rows, total))
    }

    /// The next page of a selection's codes, at most `size` of them (fewer, even none, where a
    /// batch's window holds codes of another status or none): the printer's order and the CSV
    /// export read a selection page by page, so that a million codes are never held at once. A
    /// batch's codes come in generation order a window of `seq` at a time, up to the largest
    /// `seq` the batch had when the reading began (a node's copy of a batch has gaps: each
    /// reservation it receives is a chunk of its own). A window bounds each query whatever plan
    /// the database picks: right after a batch is generated PostgreSQL has no statistics on its
    /// rows yet, and a `seq > $n ORDER BY seq LIMIT` then sorted the whole rest of the batch for
    /// every page (12 s for a million codes instead of 2). A reservation's codes come in code
    /// order, after the last one read.
    pub async fn selection_page(
        &self,
        selection: &CodeSelection,
        cursor: &mut SelectionCursor,
        size: i64,
    ) -> Result<Vec<String>, ProjectionError> {
        let mut conn = self.0.acquire().await?;
        match selection {
            CodeSelection::Batch { batch_id, status } => {
                let last = match cursor.last_seq {
                    Some(last) => last,
                    None => {
                        let last = sql_fetch_one!(
                            conn.exec(),
                            "SELECT COALESCE(MAX(seq), -1) FROM codes WHERE batch_id = $1",
                            [batch_id.as_str()],
                            |row| row.try_get::<i64, _>(0)
                        )?;
                        *cursor.last_seq.insert(last)
                    }
                };
                let codes = sql_fetch_all!(
                    conn.exec(),
                    "SELECT code FROM codes WHERE batch_id = $1 AND seq > $2 AND seq <= $3
                     AND ($4 IS NULL OR status = $4) ORDER BY seq",
                    [batch_id.as_str(), cursor.seq, cursor.seq + size, status.as_deref()],
                    |row| row.try_get::<String, _>(0)
                )?;
                cursor.seq += size;
                cursor.done = cursor.seq >= last;
                Ok(codes)
            }
            CodeSelection::Reservation(reservation_id) => {
                let codes = sql_fetch_all!(
                    conn.exec(),
                    "SELECT code FROM codes WHERE reservation_id = $1 AND code > $2 ORDER BY code LIMIT $3",
                    [reservation_id.as_str(), cursor.code.as_str(), size],
                    |row| row.try_get::<String, _>(0)
                )?;
                cursor.done = (codes.len() as i64) < size;
                if let Some(last) = codes.last() {
                    cursor.code = last.clone();
                }
                Ok(codes)
            }
        }
    }

    /// Every code of a batch, in generation order, at once (the benchmarks; the service streams
    /// with [`CodeQueries::selection_page`]).
    pub async fn all_codes(&self, batch_id: &str) -> Result<Vec<String>, ProjectionError> {
        let mut conn = self.0.acquire().await?;
        Ok(sql_fetch_all!(conn.exec(), "SELECT code FROM codes WHERE batch_id = $1 ORDER BY seq", [batch_id], |row| {
            row.try_get::<String, _>(0)
        })?)
    }

    /// Whether a reservation reserved any code.
    pub async fn reservation_exists(&self, reservation_id: &str) -> Result<bool, ProjectionError> {
        let mut conn = self.0.acquire().await?;
        Ok(sql_fetch_optional!(
            conn.exec(),
            "SELECT 1 FROM codes WHERE reservation_id = $1 LIMIT 1",
            [reservation_id],
            |row| row.try_get::<i32, _>(0)
        )?
        .is_some())
    }

    pub async fn code(&self, code: &str) -> Result<Option<CodeDetail>, ProjectionError> {
        let mut conn = self.0.acquire().await?;
        let found = sql_fetch_optional!(
            conn.exec(),
            "SELECT c.code, c.status, b.holder_type, b.holder_code, c.batch_id, c.insuree_id, c.control_number,
                    c.json_ext, b.generated_position, b.created_at, b.generated_by, b.generated_for, b.correlation_id
             FROM codes c JOIN code_batches b ON b.batch_id = c.batch_id WHERE c.code = $1",
            [code],
            |row| {
                let generated = CodeHistoryEntry {
                    position: row.try_get(8)?,
                    event_type: "CodeBatchGenerated".into(),
                    recorded_at: row.try_get(9)?,
                    actor: actor(row.try_get(10)?, row.try_get(11)?),
                    command: "GenerateCodes".into(),
                    correlation_id: row.try_get(12)?,
                    detail: None,
                };
                Ok(CodeDetail {
                    code: row.try_get(0)?,
                    status: row.try_get(1)?,
                    holder_type: row.try_get(2)?,
                    holder_code: row.try_get(3)?,
                    batch_id: row.try_get(4)?,
                    insuree_id: row.try_get(5)?,
                    control_number: row.try_get(6)?,
                    json_ext: json(row.try_get(7)?),
                    history: vec![generated],
                })
            }
        )?;
        let Some(mut detail) = found else { return Ok(None) };
        let later = sql_fetch_all!(
            conn.exec(),
            "SELECT position, event_type, recorded_at, user_id, legal_entity_id, command, correlation_id, detail
             FROM code_history WHERE code = $1 ORDER BY position",
            [code],
            |row| Ok(CodeHistoryEntry {
                position: row.try_get(0)?,
                event_type: row.try_get(1)?,
                recorded_at: row.try_get(2)?,
                actor: actor(row.try_get(3)?, row.try_get(4)?),
                command: row.try_get(5)?,
                correlation_id: row.try_get(6)?,
                detail: json(row.try_get(7)?),
            })
        )?;
        detail.history.extend(later);
        Ok(Some(detail))
    }
}

fn batch_row<R: sqlx::Row>(row: &R) -> Result<BatchSummary, sqlx::Error>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    Ok(BatchSummary {
        batch_id: row.try_get(0)?,
        holder_type: row.try_get(1)?,
        holder_code: row.try_get(2)?,
        created_at: row.try_get(3)?,
        number: row.try_get(4)?,
        available: row.try_get(5)?,
        reserved: row.try_get(6)?,
        assigned: row.try_get(7)?,
    })
}
