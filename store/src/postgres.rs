//! The PostgreSQL backend: positions from transaction ids, reads below the visibility horizon.
//! See `migrations/postgres/0001_event_log.sql` for why this never skips an event.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::{Tx, AppendOutcome, AppendRequest, ExpectedVersion, RecordedEvent, StoreError};

/// Positions are `txid << INDEX_BITS | index of the event in its append`.
const INDEX_BITS: u32 = 20;

/// Marks the transaction as an appender (a shared advisory lock, key `'CARE'`, 1) and returns its id.
const APPENDER_TXID: &str = "SELECT pg_current_xact_id()::text::bigint
     FROM (SELECT pg_advisory_xact_lock_shared(1128354373, 1) OFFSET 0) AS appender";

/// The reading horizon: the lowest transaction id of an appender of this database still running,
/// or the next transaction id when none runs. Every transaction below it has ended, so a read in a
/// later statement sees all their events. Only appenders count (their advisory lock says who they
/// are): a long transaction of a projector, of a rebuild or of another database on the same server
/// never holds readers back. `backend_xid` is 32 bits: it is widened to 64 as the id nearest to the
/// snapshot's xmax (running ids are within 2^31 of it).
const HORIZON: &str = "WITH s AS (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS n)
     SELECT LEAST(s.n, COALESCE((
         SELECT min(s.n + (((a.backend_xid::text::bigint - (s.n & 4294967295)) % 4294967296
                                  + 6442450944) % 4294967296 - 2147483648))
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND l.classid = 1128354373::oid AND l.objid = 1::oid AND l.objsubid = 2
           AND a.backend_xid IS NOT NULL), s.n))
     FROM s";

/// See [`HORIZON`]; the events read must be read by a later statement than this one.
async fn horizon(pool: &PgPool) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(HORIZON).fetch_one(pool).await?)
}

pub(crate) async fn begin_append(pool: &PgPool, request: &AppendRequest) -> Result<(Tx, AppendOutcome), StoreError> {
    let mut tx = pool.begin().await?;
    // The appender lock is taken before the transaction id exists (the OFFSET 0 subquery runs
    // first), so a reader computing its horizon sees every appender that holds an older id.
    let txid: i64 = sqlx::query_scalar(APPENDER_TXID).fetch_one(&mut *tx).await?;
    let base = txid << INDEX_BITS;
    let now = Utc::now();
    let count = request.event_count();
    let (mut positions, mut event_ids, mut streams, mut versions_col, mut types, mut data, mut metadata) = (
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
    );
    let mut versions = Vec::with_capacity(request.streams.len());
    for append in &request.streams {
        let n = append.events.len() as i64;
        let new_version = if n == 0 {
            current_version(&mut tx, &append.stream).await?
        } else {
            move_stream(&mut tx, &append.stream, append.expected, n, txid).await?
        };
        for (i, event) in append.events.iter().enumerate() {
            positions.push(base | positions.len() as i64);
            event_ids.push(event.event_id);
            streams.push(append.stream.clone());
            versions_col.push(new_version - n + 1 + i as i64);
            types.push(event.event_type.clone());
            data.push(event.data.to_string());
            metadata.push(serde_json::to_string(&event.metadata).unwrap_or_default());
        }
        versions.push(new_version);
    }
    if !positions.is_empty() {
        let inserted = sqlx::query(
            "INSERT INTO events (position, event_id, stream, version, event_type, data, metadata, recorded_at)
             SELECT p, i, s, v, t, d::jsonb, m::jsonb, $8
             FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[])
                  AS e(p, i, s, v, t, d, m)",
        )
        .bind(&positions)
        .bind(&event_ids)
        .bind(&streams)
        .bind(&versions_col)
        .bind(&types)
        .bind(&data)
        .bind(&metadata)
        .bind(now)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            if let sqlx::Error::Database(db) = &e
                && db.is_unique_violation()
                && db.constraint() == Some("events_event_id_key")
            {
                let taken: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM events WHERE event_id = ANY($1)")
                    .bind(&event_ids)
                    .fetch_all(pool)
                    .await?;
                return Err(StoreError::DuplicateEvent(taken.first().copied().unwrap_or_default()));
            }
            return Err(e.into());
        }
    }
    for claim in &request.claims {
        let inserted = sqlx::query(
            "INSERT INTO unique_keys (scope, key, owner)
             SELECT $1, k, $2 FROM UNNEST($3::text[]) AS u(k) ORDER BY k ON CONFLICT DO NOTHING",
        )
        .bind(&claim.scope)
        .bind(&claim.owner)
        .bind(&claim.keys)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted < claim.keys.len() as u64 {
            let taken: Vec<String> = sqlx::query_scalar(
                "SELECT k.key FROM unique_keys k WHERE k.scope = $1 AND k.key = ANY($3) AND k.owner <> $2",
            )
            .bind(&claim.scope)
            .bind(&claim.owner)
            .bind(&claim.keys)
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
    Ok((Tx::Postgres(tx), AppendOutcome { positions, versions }))
}

/// Moves the stream's version by `n` if the expectation holds, locking its row until commit.
/// Refused too when a younger transaction already wrote the stream: the global order of a stream's
/// events must be their version order.
async fn move_stream(
    tx: &mut PgConnection,
    stream: &str,
    expected: ExpectedVersion,
    n: i64,
    txid: i64,
) -> Result<i64, StoreError> {
    let moved: Option<i64> = match expected {
        ExpectedVersion::Exact(0) => {
            sqlx::query_scalar(
                "INSERT INTO streams (stream, version, last_transaction_id)
                 VALUES ($1, $2, pg_current_xact_id()) ON CONFLICT DO NOTHING RETURNING version",
            )
            .bind(stream)
            .bind(n)
            .fetch_optional(&mut *tx)
            .await?
        }
        ExpectedVersion::Exact(v) => {
            sqlx::query_scalar(
                "UPDATE streams SET version = version + $3, last_transaction_id = pg_current_xact_id()
                 WHERE stream = $1 AND version = $2 AND last_transaction_id <= pg_current_xact_id()
                 RETURNING version",
            )
            .bind(stream)
            .bind(v)
            .bind(n)
            .fetch_optional(&mut *tx)
            .await?
        }
        ExpectedVersion::Any => {
            sqlx::query_scalar(
                "INSERT INTO streams (stream, version, last_transaction_id) VALUES ($1, $2, pg_current_xact_id())
                 ON CONFLICT (stream) DO UPDATE SET version = streams.version + $2,
                     last_transaction_id = pg_current_xact_id()
                 WHERE streams.last_transaction_id <= pg_current_xact_id()
                 RETURNING version",
            )
            .bind(stream)
            .bind(n)
            .fetch_optional(&mut *tx)
            .await?
        }
    };
    match moved {
        Some(version) => Ok(version),
        None => {
            let actual = current_version(tx, stream).await?;
            let expected = match expected {
                ExpectedVersion::Exact(v) => v,
                ExpectedVersion::Any => actual,
            };
            tracing::debug!(stream, expected, actual, txid, "append conflict");
            Err(StoreError::WrongExpectedVersion { stream: stream.to_string(), expected, actual })
        }
    }
}

async fn current_version(conn: &mut PgConnection, stream: &str) -> Result<i64, StoreError> {
    let version: Option<i64> = sqlx::query_scalar("SELECT version FROM streams WHERE stream = $1")
        .bind(stream)
        .fetch_optional(conn)
        .await?;
    Ok(version.unwrap_or(0))
}

pub(crate) async fn read_stream(
    pool: &PgPool,
    stream: &str,
    after_version: i64,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT position, event_id, stream, version, event_type, data::text, metadata::text, recorded_at
         FROM events WHERE stream = $1 AND version > $2 ORDER BY version LIMIT $3",
    )
    .bind(stream)
    .bind(after_version)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(decode).collect()
}

pub(crate) async fn stream_version(pool: &PgPool, stream: &str) -> Result<i64, StoreError> {
    let mut conn = pool.acquire().await?;
    current_version(&mut conn, stream).await
}

pub(crate) async fn read_all(pool: &PgPool, after: i64, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
    let horizon = horizon(pool).await?;
    let rows = sqlx::query(
        "SELECT position, event_id, stream, version, event_type, data::text, metadata::text, recorded_at
         FROM events
         WHERE position > $1 AND position < $3 AND transaction_id < $4::text::xid8
         ORDER BY position LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .bind(horizon << INDEX_BITS)
    .bind(horizon)
    .fetch_all(pool)
    .await?;
    rows.iter().map(decode).collect()
}

pub(crate) async fn head(pool: &PgPool) -> Result<i64, StoreError> {
    let horizon = horizon(pool).await?;
    let head: Option<i64> = sqlx::query_scalar(
        "SELECT position FROM events WHERE position < $1 AND transaction_id < $2::text::xid8
         ORDER BY position DESC LIMIT 1",
    )
    .bind(horizon << INDEX_BITS)
    .bind(horizon)
    .fetch_optional(pool)
    .await?;
    Ok(head.unwrap_or(0))
}

fn decode(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.try_get(0)?;
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    let data: String = row.try_get(5)?;
    let metadata: String = row.try_get(6)?;
    let recorded_at: DateTime<Utc> = row.try_get(7)?;
    Ok(RecordedEvent {
        position,
        event_id: row.try_get(1)?,
        stream: row.try_get(2)?,
        version: row.try_get(3)?,
        event_type: row.try_get(4)?,
        data: serde_json::from_str(&data).map_err(|e| corrupt(e.to_string()))?,
        metadata: serde_json::from_str(&metadata).map_err(|e| corrupt(e.to_string()))?,
        recorded_at,
    })
}
