//! The SQLite backend. All appends go through the single writer connection inside
//! `BEGIN IMMEDIATE`, so positions (rowids) are handed out in commit order.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};
use uuid::Uuid;

use crate::{AppendOutcome, AppendRequest, ExpectedVersion, RecordedEvent, StoreError, Tx};

pub(crate) async fn begin_append(
    writer: &SqlitePool,
    request: &AppendRequest,
) -> Result<(Tx, AppendOutcome), StoreError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let now = Utc::now();
    let mut positions = Vec::with_capacity(request.event_count());
    let mut versions = Vec::with_capacity(request.streams.len());
    for append in &request.streams {
        let actual = version_of(&mut tx, &append.stream).await?;
        if let ExpectedVersion::Exact(expected) = append.expected
            && expected != actual
        {
            return Err(StoreError::WrongExpectedVersion { stream: append.stream.clone(), expected, actual });
        }
        let mut version = actual;
        for event in &append.events {
            version += 1;
            let metadata = serde_json::to_string(&event.metadata).unwrap_or_default();
            let inserted = sqlx::query(
                "INSERT INTO events (event_id, stream, version, event_type, data, metadata, recorded_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING position",
            )
            .bind(event.event_id.to_string())
            .bind(&append.stream)
            .bind(version)
            .bind(&event.event_type)
            .bind(event.data.to_string())
            .bind(metadata)
            .bind(now)
            .fetch_one(&mut *tx)
            .await;
            match inserted {
                Ok(row) => positions.push(row.try_get::<i64, _>(0)?),
                Err(e) if is_unique_violation(&e, "events.event_id") => {
                    return Err(StoreError::DuplicateEvent(event.event_id));
                }
                Err(e) if is_unique_violation(&e, "events.stream") => {
                    let actual = version_of(&mut tx, &append.stream).await?;
                    return Err(StoreError::WrongExpectedVersion {
                        stream: append.stream.clone(),
                        expected: version - 1,
                        actual,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        versions.push(version);
    }
    for claim in &request.claims {
        let keys = serde_json::to_string(&claim.keys).unwrap_or_default();
        let inserted = sqlx::query(
            "INSERT INTO unique_keys (scope, key, owner)
             SELECT $1, value, $2 FROM json_each($3) WHERE true ON CONFLICT DO NOTHING",
        )
        .bind(&claim.scope)
        .bind(&claim.owner)
        .bind(&keys)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted < claim.keys.len() as u64 {
            // `IN (SELECT ... json_each)` probes the primary key once per key asked for; the join
            // it replaces let SQLite's planner put the table outside and scan json_each for each
            // of the scope's rows, which with a pool of a million codes took minutes (#19);
            // tests/tests/event_log.rs keeps the plan checked
            let taken: Vec<String> = sqlx::query_scalar(TAKEN_KEYS)
                .bind(&claim.scope)
                .bind(&claim.owner)
                .bind(&keys)
                .fetch_all(&mut *tx)
                .await?;
            if !taken.is_empty() {
                return Err(StoreError::KeysTaken { scope: claim.scope.clone(), keys: taken });
            }
        }
    }
    if let Some(record) = &request.idempotency {
        let position = positions.last().copied().unwrap_or(0);
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (key, request_hash, status, body, position, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&record.key)
        .bind(&record.request_hash)
        .bind(i32::from(record.status))
        .bind(&record.body)
        .bind(position)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::IdempotencyKeyTaken(record.key.clone()));
        }
    }
    Ok((Tx::Sqlite(tx), AppendOutcome { positions, versions }))
}

/// The keys of a claim already held by another owner (see `begin_append`).
pub const TAKEN_KEYS: &str = "SELECT key FROM unique_keys
     WHERE scope = $1 AND key IN (SELECT value FROM json_each($3)) AND owner <> $2";

async fn version_of(conn: &mut SqliteConnection, stream: &str) -> Result<i64, StoreError> {
    let version: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM events WHERE stream = $1").bind(stream).fetch_one(conn).await?;
    Ok(version.unwrap_or(0))
}

fn is_unique_violation(error: &sqlx::Error, column: &str) -> bool {
    match error {
        sqlx::Error::Database(db) => db.is_unique_violation() && db.message().contains(column),
        _ => false,
    }
}

pub(crate) async fn read_stream(
    reader: &SqlitePool,
    stream: &str,
    after_version: i64,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT position, event_id, stream, version, event_type, data, metadata, recorded_at FROM events
         WHERE stream = $1 AND version > $2 ORDER BY version LIMIT $3",
    )
    .bind(stream)
    .bind(after_version)
    .bind(limit)
    .fetch_all(reader)
    .await?;
    rows.iter().map(decode).collect()
}

pub(crate) async fn stream_version(reader: &SqlitePool, stream: &str) -> Result<i64, StoreError> {
    let mut conn = reader.acquire().await?;
    version_of(&mut conn, stream).await
}

pub(crate) async fn read_all(reader: &SqlitePool, after: i64, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT position, event_id, stream, version, event_type, data, metadata, recorded_at FROM events
         WHERE position > $1 ORDER BY position LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(reader)
    .await?;
    rows.iter().map(decode).collect()
}

pub(crate) async fn read_positions(reader: &SqlitePool, positions: &[i64]) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT position, event_id, stream, version, event_type, data, metadata, recorded_at FROM events
         WHERE position IN (SELECT value FROM json_each($1)) ORDER BY position",
    )
    .bind(serde_json::to_string(positions).unwrap_or_default())
    .fetch_all(reader)
    .await?;
    rows.iter().map(decode).collect()
}

pub(crate) async fn head(reader: &SqlitePool) -> Result<i64, StoreError> {
    let head: Option<i64> = sqlx::query_scalar("SELECT MAX(position) FROM events").fetch_one(reader).await?;
    Ok(head.unwrap_or(0))
}

fn decode(row: &SqliteRow) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.try_get(0)?;
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    let event_id: String = row.try_get(1)?;
    let data: String = row.try_get(5)?;
    let metadata: String = row.try_get(6)?;
    let recorded_at: DateTime<Utc> = row.try_get(7)?;
    Ok(RecordedEvent {
        position,
        event_id: Uuid::parse_str(&event_id).map_err(|e| corrupt(e.to_string()))?,
        stream: row.try_get(2)?,
        version: row.try_get(3)?,
        event_type: row.try_get(4)?,
        data: serde_json::from_str(&data).map_err(|e| corrupt(e.to_string()))?,
        metadata: serde_json::from_str(&metadata).map_err(|e| corrupt(e.to_string()))?,
        recorded_at,
    })
}
