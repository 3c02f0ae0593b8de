//! The PostgreSQL backend: positions from transaction ids, reads below the visibility horizon.
//! See `migrations/postgres/0001_event_log.sql` for why this never skips an event.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::{AppendOutcome, AppendRequest, ExpectedVersion, RecordedEvent, StoreError, Tx};

/// Positions are `txid << INDEX_BITS | index of the event in its append`.
const INDEX_BITS: u32 = 20;

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

/// An append committed on its own: one round trip (the statement is its own transaction).
pub(crate) async fn append(pool: &PgPool, request: &AppendRequest) -> Result<AppendOutcome, StoreError> {
    let mut conn = pool.acquire().await?;
    call_append(pool, &mut conn, request).await
}

/// An append written in a transaction left open for the caller to commit.
pub(crate) async fn begin_append(pool: &PgPool, request: &AppendRequest) -> Result<(Tx, AppendOutcome), StoreError> {
    let mut tx = pool.begin().await?;
    let outcome = call_append(pool, &mut tx, request).await?;
    Ok((Tx::Postgres(tx), outcome))
}

/// Calls `careledger_append` (migrations/postgres/0001_event_log.sql) and decodes its refusals.
async fn call_append(
    pool: &PgPool,
    conn: &mut PgConnection,
    request: &AppendRequest,
) -> Result<AppendOutcome, StoreError> {
    let count = request.event_count();
    let (mut streams, mut expected, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ids, mut types, mut data, mut metadata) =
        (Vec::with_capacity(count), Vec::with_capacity(count), Vec::with_capacity(count), Vec::with_capacity(count));
    for append in &request.streams {
        streams.push(append.stream.as_str());
        expected.push(match append.expected {
            ExpectedVersion::Any => -1,
            ExpectedVersion::Exact(v) => v,
        });
        counts.push(append.events.len() as i32);
        for event in &append.events {
            ids.push(event.event_id);
            types.push(event.event_type.as_str());
            data.push(event.data.to_string());
            metadata.push(serde_json::to_string(&event.metadata).unwrap_or_default());
        }
    }
    let (mut scopes, mut owners, mut claim_counts, mut keys) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for claim in &request.claims {
        scopes.push(claim.scope.as_str());
        owners.push(claim.owner.as_str());
        claim_counts.push(claim.keys.len() as i32);
        keys.extend(claim.keys.iter().map(String::as_str));
    }
    let idem = request.idempotency.as_ref();
    let row = sqlx::query(
        "SELECT txid, versions FROM careledger_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(&streams)
    .bind(&expected)
    .bind(&counts)
    .bind(&ids)
    .bind(&types)
    .bind(&data)
    .bind(&metadata)
    .bind(&scopes)
    .bind(&owners)
    .bind(&claim_counts)
    .bind(&keys)
    .bind(idem.map(|r| r.key.as_str()))
    .bind(idem.map(|r| r.request_hash.as_str()))
    .bind(idem.map(|r| i32::from(r.status)))
    .bind(idem.map(|r| r.body.as_str()))
    .bind(Utc::now())
    .fetch_one(&mut *conn)
    .await;
    let row = match row {
        Ok(row) => row,
        Err(e) => return Err(refusal(pool, e, &ids).await),
    };
    let txid: i64 = row.try_get(0)?;
    let versions: Vec<i64> = row.try_get(1)?;
    let base = txid << INDEX_BITS;
    Ok(AppendOutcome { positions: (0..count as i64).map(|i| base | i).collect(), versions })
}

/// What a failed `careledger_append` means for the caller.
async fn refusal(pool: &PgPool, e: sqlx::Error, ids: &[Uuid]) -> StoreError {
    let sqlx::Error::Database(db) = &e else { return e.into() };
    let detail = || serde_json::from_str::<serde_json::Value>(db.message()).unwrap_or_default();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    match db.code().as_deref() {
        Some("CL001") => {
            let d = detail();
            StoreError::WrongExpectedVersion {
                stream: text(&d["stream"]),
                expected: d["expected"].as_i64().unwrap_or(0),
                actual: d["actual"].as_i64().unwrap_or(0),
            }
        }
        Some("CL002") => {
            let d = detail();
            let keys = d["keys"].as_array().map(|k| k.iter().map(text).collect()).unwrap_or_default();
            StoreError::KeysTaken { scope: text(&d["scope"]), keys }
        }
        Some("CL003") => StoreError::IdempotencyKeyTaken(text(&detail()["key"])),
        _ if db.is_unique_violation() && db.constraint() == Some("events_event_id_key") => {
            match sqlx::query_scalar::<_, Uuid>("SELECT event_id FROM events WHERE event_id = ANY($1)")
                .bind(ids)
                .fetch_all(pool)
                .await
            {
                Ok(taken) => StoreError::DuplicateEvent(taken.first().copied().unwrap_or_default()),
                Err(e) => e.into(),
            }
        }
        _ => e.into(),
    }
}

async fn current_version(conn: &mut PgConnection, stream: &str) -> Result<i64, StoreError> {
    let version: Option<i64> =
        sqlx::query_scalar("SELECT version FROM streams WHERE stream = $1").bind(stream).fetch_optional(conn).await?;
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
