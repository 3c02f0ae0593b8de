//! The PostgreSQL backend: positions from transaction ids, reads below the visibility horizon.
//! See `migrations/postgres/0001_event_log.sql` for why this never skips an event, and
//! `0015_read_with_horizon.sql` for the horizon (`careledger_horizon`, which was the `HORIZON`
//! query of this file before) and the reads that take it in the same round trip.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::{AppendOutcome, AppendRequest, ExpectedVersion, RecordedEvent, StoreError, Tx};

/// Positions are `txid << INDEX_BITS | index of the event in its append`.
const INDEX_BITS: u32 = 20;

/// An append as `careledger_append` takes it (JSON), serialised by the caller's task.
pub(crate) struct WireAppend {
    json: String,
    bytes: usize,
    event_ids: Vec<Uuid>,
}

impl WireAppend {
    pub(crate) fn new(request: &AppendRequest) -> Self {
        #[derive(serde::Serialize)]
        struct Append<'a> {
            streams: Vec<Stream<'a>>,
            claims: Vec<Claim<'a>>,
            idempotency: Option<Idempotency<'a>>,
        }
        #[derive(serde::Serialize)]
        struct Stream<'a> {
            stream: &'a str,
            expected: i64,
            events: Vec<Event<'a>>,
        }
        #[derive(serde::Serialize)]
        struct Event<'a> {
            id: Uuid,
            #[serde(rename = "type")]
            event_type: &'a str,
            data: &'a serde_json::Value,
            metadata: &'a crate::EventMetadata,
        }
        #[derive(serde::Serialize)]
        struct Claim<'a> {
            scope: &'a str,
            owner: &'a str,
            keys: &'a [String],
        }
        #[derive(serde::Serialize)]
        struct Idempotency<'a> {
            key: &'a str,
            hash: &'a str,
            status: u16,
            body: &'a str,
        }
        let wire = Append {
            streams: request
                .streams
                .iter()
                .map(|s| Stream {
                    stream: &s.stream,
                    expected: match s.expected {
                        ExpectedVersion::Any => -1,
                        ExpectedVersion::Exact(v) => v,
                    },
                    events: s
                        .events
                        .iter()
                        .map(|e| Event {
                            id: e.event_id,
                            event_type: &e.event_type,
                            data: &e.data,
                            metadata: &e.metadata,
                        })
                        .collect(),
                })
                .collect(),
            claims: request.claims.iter().map(|c| Claim { scope: &c.scope, owner: &c.owner, keys: &c.keys }).collect(),
            idempotency: request.idempotency.as_ref().map(|r| Idempotency {
                key: &r.key,
                hash: &r.request_hash,
                status: r.status,
                body: &r.body,
            }),
        };
        let json = serde_json::to_string(&wire).unwrap_or_default();
        let event_ids = request.streams.iter().flat_map(|s| s.events.iter().map(|e| e.event_id)).collect();
        WireAppend { bytes: json.len(), json, event_ids }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn events(&self) -> usize {
        self.event_ids.len()
    }
}

/// Writes `appends` with one `careledger_append` call on `conn`, which commits them when it is
/// not inside a transaction. Each append gets its own answer; an `Err` of the whole call means
/// none of them was written.
pub(crate) async fn append_batch(
    pool: &PgPool,
    conn: &mut PgConnection,
    appends: &[&WireAppend],
) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
    let mut json = String::with_capacity(appends.iter().map(|a| a.bytes + 1).sum::<usize>() + 2);
    json.push('[');
    for (i, a) in appends.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&a.json);
    }
    json.push(']');
    let rows = sqlx::query("SELECT txid, first_index, versions, refusal, detail FROM careledger_append($1::jsonb, $2)")
        .bind(json)
        .bind(Utc::now())
        .fetch_all(&mut *conn)
        .await?;
    if rows.len() != appends.len() {
        return Err(StoreError::Backend(format!(
            "careledger_append answered {} of {} appends",
            rows.len(),
            appends.len()
        )));
    }
    let mut answers = Vec::with_capacity(rows.len());
    for (row, append) in rows.iter().zip(appends) {
        let refusal: Option<String> = row.try_get(3)?;
        let answer = match refusal {
            None => {
                let txid: i64 = row.try_get(0)?;
                let first: i32 = row.try_get(1)?;
                let versions: Vec<i64> = row.try_get(2)?;
                let base = (txid << INDEX_BITS) | i64::from(first);
                let positions = (0..append.event_ids.len() as i64).map(|i| base + i).collect();
                Ok(AppendOutcome { positions, versions })
            }
            Some(code) => Err(refused(pool, &code, &row.try_get::<String, _>(4)?, append).await),
        };
        answers.push(answer);
    }
    Ok(answers)
}

/// One append committed on its own: one statement, one round trip.
pub(crate) async fn append(pool: &PgPool, append: &WireAppend) -> Result<AppendOutcome, StoreError> {
    let mut conn = pool.acquire().await?;
    let mut answers = append_batch(pool, &mut conn, &[append]).await?;
    answers.pop().unwrap_or_else(|| Err(StoreError::Backend("no answer".into())))
}

/// An append written in a transaction left open for the caller to commit.
pub(crate) async fn begin_append(pool: &PgPool, request: &AppendRequest) -> Result<(Tx, AppendOutcome), StoreError> {
    let wire = WireAppend::new(request);
    let mut tx = pool.begin().await?;
    let mut answers = append_batch(pool, &mut tx, &[&wire]).await?;
    let outcome = answers.pop().unwrap_or_else(|| Err(StoreError::Backend("no answer".into())))?;
    Ok((Tx::Postgres(tx), outcome))
}

/// What a refusal of `careledger_append` means for the caller.
async fn refused(pool: &PgPool, code: &str, detail: &str, append: &WireAppend) -> StoreError {
    let d = serde_json::from_str::<serde_json::Value>(detail).unwrap_or_default();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    match code {
        "CL001" => StoreError::WrongExpectedVersion {
            stream: text(&d["stream"]),
            expected: d["expected"].as_i64().unwrap_or(0),
            actual: d["actual"].as_i64().unwrap_or(0),
        },
        "CL002" => StoreError::KeysTaken {
            scope: text(&d["scope"]),
            keys: d["keys"].as_array().map(|k| k.iter().map(text).collect()).unwrap_or_default(),
        },
        "CL003" => StoreError::IdempotencyKeyTaken(text(&d["key"])),
        _ => match sqlx::query_scalar::<_, Uuid>("SELECT event_id FROM events WHERE event_id = ANY($1)")
            .bind(&append.event_ids)
            .fetch_all(pool)
            .await
        {
            Ok(taken) => StoreError::DuplicateEvent(taken.first().copied().unwrap_or_default()),
            Err(e) => e.into(),
        },
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
    // the horizon and the read in one round trip, each with its own snapshot, on the primary-key
    // walk (migrations/postgres/0006, 0015)
    let rows = sqlx::query("SELECT * FROM careledger_read_after($1, $2)")
        .bind(after)
        .bind(limit.clamp(0, i64::from(i32::MAX)) as i32)
        .fetch_all(pool)
        .await?;
    rows.iter().map(decode).collect()
}

pub(crate) async fn read_positions(pool: &PgPool, positions: &[i64]) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT position, event_id, stream, version, event_type, data::text, metadata::text, recorded_at
         FROM events WHERE position = ANY($1) ORDER BY position",
    )
    .bind(positions)
    .fetch_all(pool)
    .await?;
    rows.iter().map(decode).collect()
}

pub(crate) async fn head(pool: &PgPool) -> Result<i64, StoreError> {
    let head: Option<i64> = sqlx::query_scalar("SELECT careledger_head_now()").fetch_one(pool).await?;
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
