//! The event log: the truth of careledger.
//!
//! [`EventStore`] appends events to streams with optimistic concurrency (expected version), unique
//! event ids, set-invariant keys and idempotency records in one transaction, and reads them back
//! by stream or in global order. The global order never skips an event, even when concurrent
//! transactions commit out of order (see `migrations/postgres/0001_event_log.sql` for how).
//!
//! Two backends: SQLite (embedded default, one writer connection, WAL) and PostgreSQL.
//! Projections share the database: [`Db`] gives them connections and [`Tx`] transactions, and the
//! `sql_*` macros run one SQL text on either backend.

mod error;
mod exec;
mod group_commit;
mod postgres;
mod sqlite;
mod subscription;
mod tail;

use std::time::Duration;

pub use careledger_events::{Actor, EventMetadata, NewEvent, RecordedEvent};
pub use error::{StoreError, is_unreachable};
pub use exec::{Backend, Db, Exec, Tx};
/// The SQLite query that finds keys held by another owner (exposed for its query-plan test).
pub use sqlite::TAKEN_KEYS as SQLITE_TAKEN_KEYS;
pub use subscription::Subscription;
use tokio::sync::watch;

/// What the appender believes the stream's version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the version (no concurrency check).
    Any,
    /// The stream must be at exactly this version; 0 means it must not exist yet.
    Exact(i64),
}

/// Events for one stream within an append. With no events and an exact version it is a guard:
/// nothing is written to that stream, but the whole append is refused
/// ([`StoreError::WrongExpectedVersion`]) unless the stream is at that version when it commits (a
/// decision made on another aggregate as read, e.g. equipment registered to a division).
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// Keys of a set invariant the append takes for `owner`. If another owner holds any of them the
/// whole append is refused with [`StoreError::KeysTaken`].
#[derive(Debug, Clone)]
pub struct KeyClaim {
    pub scope: String,
    pub keys: Vec<String>,
    pub owner: String,
}

/// The first answer to an idempotent command, stored with its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: String,
    pub request_hash: String,
    pub status: u16,
    pub body: String,
}

/// A stored idempotency record and where the log was when it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub request_hash: String,
    pub status: u16,
    pub body: String,
    pub position: i64,
}

/// One atomic append: all of it commits, or none of it.
#[derive(Debug, Clone, Default)]
pub struct AppendRequest {
    pub streams: Vec<StreamAppend>,
    pub claims: Vec<KeyClaim>,
    pub idempotency: Option<IdempotencyRecord>,
}

impl AppendRequest {
    pub fn single(stream: impl Into<String>, expected: ExpectedVersion, events: Vec<NewEvent>) -> Self {
        AppendRequest { streams: vec![StreamAppend { stream: stream.into(), expected, events }], ..Default::default() }
    }

    fn event_count(&self) -> usize {
        self.streams.iter().map(|s| s.events.len()).sum()
    }
}

/// Where an append put its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The position of every appended event, in request order.
    pub positions: Vec<i64>,
    /// The new version of every stream, in request order.
    pub versions: Vec<i64>,
}

impl AppendOutcome {
    /// The position a reader must reach to see this append (0 when nothing was appended).
    pub fn last_position(&self) -> i64 {
        self.positions.last().copied().unwrap_or(0)
    }
}

/// An append written but not committed yet.
pub struct PendingAppend {
    tx: Tx,
    outcome: AppendOutcome,
    appended: watch::Sender<i64>,
}

impl PendingAppend {
    pub fn outcome(&self) -> &AppendOutcome {
        &self.outcome
    }

    pub async fn commit(self) -> Result<AppendOutcome, StoreError> {
        self.tx.commit().await?;
        if !self.outcome.positions.is_empty() {
            self.appended.send_replace(self.outcome.last_position());
        }
        Ok(self.outcome)
    }
}

/// At most this many events in one append (the low bits of a PostgreSQL position).
pub const MAX_EVENTS_PER_APPEND: usize = 1 << 20;

/// How the store was opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite://path/to/file.db` or `postgres://...`.
    pub url: String,
    /// Connections for readers (PostgreSQL: for everything).
    pub max_connections: u32,
    /// How often a subscription looks for events written by other processes.
    pub poll_interval: Duration,
    /// PostgreSQL: tasks writing queued appends, each batch in one transaction (group commit);
    /// 0 writes every append in its own transaction from the caller's task.
    pub committers: usize,
    /// Subscriptions near the head share one reader of the log (see `tail.rs`); false makes each
    /// read the database itself. Default true; `CARELEDGER_SHARED_TAIL=0` turns it off (to
    /// compare, or should the shared reader ever misbehave).
    pub shared_tail: bool,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            max_connections: 16,
            poll_interval: Duration::from_millis(20),
            committers: 2,
            shared_tail: std::env::var("CARELEDGER_SHARED_TAIL").map_or(true, |v| v != "0"),
        }
    }
}

/// The event log. Cheap to clone: clones share pools and the append notifier.
#[derive(Clone)]
pub struct EventStore {
    db: Db,
    appended: watch::Sender<i64>,
    poll_interval: Duration,
    group_commit: Option<std::sync::Arc<group_commit::GroupCommit>>,
    /// The newest events, read once for every subscription of this process.
    tail: std::sync::Arc<tail::Tail>,
}

impl EventStore {
    /// Opens (and for SQLite creates) the database. Does not migrate: call [`EventStore::migrate`].
    pub async fn open(options: &StoreOptions) -> Result<Self, StoreError> {
        let db = Db::connect(&options.url, options.max_connections).await?;
        let (appended, _) = watch::channel(0);
        let group_commit = match &db {
            Db::Postgres(pool) if options.committers > 0 => Some(std::sync::Arc::new(
                group_commit::GroupCommit::start(pool.clone(), appended.clone(), options.committers),
            )),
            _ => None,
        };
        Ok(EventStore {
            db,
            appended,
            poll_interval: options.poll_interval,
            group_commit,
            tail: tail::Tail::new(options.shared_tail),
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.db.migrate().await
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// Appends atomically; on success wakes local subscribers.
    pub async fn append(&self, request: &AppendRequest) -> Result<AppendOutcome, StoreError> {
        if request.event_count() > MAX_EVENTS_PER_APPEND {
            return Err(StoreError::TooManyEvents(request.event_count()));
        }
        match (&self.group_commit, &self.db) {
            // serialised here, in the caller's task; written with the appends of other writers
            (Some(group), _) => group.append(postgres::WireAppend::new(request)).await,
            // one append, one statement committing on its own (one round trip)
            (None, Db::Postgres(pool)) => {
                let outcome = postgres::append(pool, &postgres::WireAppend::new(request)).await?;
                if !outcome.positions.is_empty() {
                    self.appended.send_modify(|seen| *seen = (*seen).max(outcome.last_position()));
                }
                Ok(outcome)
            }
            (None, Db::Sqlite { .. }) => self.begin_append(request).await?.commit().await,
        }
    }

    /// Writes an append inside a transaction left open: nothing is visible until
    /// [`PendingAppend::commit`]; dropping it rolls back. (SQLite: holds the writer meanwhile.)
    pub async fn begin_append(&self, request: &AppendRequest) -> Result<PendingAppend, StoreError> {
        if request.event_count() > MAX_EVENTS_PER_APPEND {
            return Err(StoreError::TooManyEvents(request.event_count()));
        }
        let (tx, outcome) = match &self.db {
            Db::Sqlite { writer, .. } => sqlite::begin_append(writer, request).await?,
            Db::Postgres(pool) => postgres::begin_append(pool, request).await?,
        };
        Ok(PendingAppend { tx, outcome, appended: self.appended.clone() })
    }

    /// Events of one stream with a version above `after_version`, oldest first.
    pub async fn read_stream(
        &self,
        stream: &str,
        after_version: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match &self.db {
            Db::Sqlite { reader, .. } => sqlite::read_stream(reader, stream, after_version, limit).await,
            Db::Postgres(pool) => postgres::read_stream(pool, stream, after_version, limit).await,
        }
    }

    /// The current version of a stream (0 when it does not exist).
    pub async fn stream_version(&self, stream: &str) -> Result<i64, StoreError> {
        match &self.db {
            Db::Sqlite { reader, .. } => sqlite::stream_version(reader, stream).await,
            Db::Postgres(pool) => postgres::stream_version(pool, stream).await,
        }
    }

    /// Events of the global log after `after_position`, in global order. Only events no earlier
    /// event can still join are returned, so a reader that moves its position past them never
    /// misses one.
    pub async fn read_all(&self, after_position: i64, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        match &self.db {
            Db::Sqlite { reader, .. } => sqlite::read_all(reader, after_position, limit).await,
            Db::Postgres(pool) => postgres::read_all(pool, after_position, limit).await,
        }
    }

    /// The events at these positions (positions a reader has already seen, e.g. from a read
    /// model), in position order; positions holding no event are left out.
    pub async fn read_positions(&self, positions: &[i64]) -> Result<Vec<RecordedEvent>, StoreError> {
        if positions.is_empty() {
            return Ok(vec![]);
        }
        match &self.db {
            Db::Sqlite { reader, .. } => sqlite::read_positions(reader, positions).await,
            Db::Postgres(pool) => postgres::read_positions(pool, positions).await,
        }
    }

    /// The position of the newest event readers may read (0 for an empty log).
    pub async fn head(&self) -> Result<i64, StoreError> {
        match &self.db {
            Db::Sqlite { reader, .. } => sqlite::head(reader).await,
            Db::Postgres(pool) => postgres::head(pool).await,
        }
    }

    /// The highest position any committed append has reached. Unlike [`Self::head`] it does not
    /// wait for the visibility horizon (PostgreSQL): a position a caller was given is never above
    /// it, which is what tells a position that will never come from one not applied yet.
    pub async fn highest_position(&self) -> Result<i64, StoreError> {
        let mut conn = self.db.acquire().await?;
        Ok(sql_fetch_one!(conn.exec(), "SELECT COALESCE(MAX(position), 0) FROM events", [], |row| row
            .try_get::<i64, _>(0))?)
    }

    /// How many events the log holds.
    pub async fn count(&self) -> Result<i64, StoreError> {
        let mut conn = self.db.acquire().await?;
        Ok(sql_fetch_one!(conn.exec(), "SELECT COUNT(*) FROM events", [], |row| row.try_get::<i64, _>(0))?)
    }

    /// Catch up from `after_position`, then follow new events as they commit.
    pub fn subscribe(&self, after_position: i64, batch_size: i64) -> Subscription {
        Subscription::new(self.clone(), after_position, batch_size, self.poll_interval)
    }

    /// A receiver that changes whenever this process appends.
    pub fn appended(&self) -> watch::Receiver<i64> {
        self.appended.subscribe()
    }

    /// The stream that holds a unique key, if any.
    pub async fn key_owner(&self, scope: &str, key: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.db.acquire().await?;
        let owner = sql_fetch_optional!(
            conn.exec(),
            "SELECT owner FROM unique_keys WHERE scope = $1 AND key = $2",
            [scope, key],
            |row| row.try_get::<String, _>(0)
        )?;
        Ok(owner)
    }

    /// The owners of those of `keys` held in `scope`, in one query however many keys (an import
    /// matches a Bundle's thousands of identifiers at once): the JSON array is probed by the
    /// primary key (scope, key), an element at a time.
    pub async fn key_owners(
        &self,
        scope: &str,
        keys: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        if keys.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        let list = serde_json::Value::from(keys).to_string();
        let sql = match self.backend() {
            Backend::Sqlite => {
                "SELECT key, owner FROM unique_keys WHERE scope = $1 AND key IN (SELECT value FROM json_each($2))"
            }
            Backend::Postgres => {
                "SELECT key, owner FROM unique_keys
                 WHERE scope = $1 AND key = ANY(ARRAY(SELECT jsonb_array_elements_text($2::jsonb)))"
            }
        };
        let mut conn = self.db.acquire().await?;
        let rows = sql_fetch_all!(conn.exec(), sql, [scope, list.as_str()], |row| Ok((
            row.try_get::<String, _>(0)?,
            row.try_get::<String, _>(1)?
        )))?;
        Ok(rows.into_iter().collect())
    }

    /// Those of `streams` that hold an event, in one query however many streams.
    pub async fn existing_streams(&self, streams: &[String]) -> Result<std::collections::HashSet<String>, StoreError> {
        if streams.is_empty() {
            return Ok(std::collections::HashSet::new());
        }
        let list = serde_json::Value::from(streams).to_string();
        let sql = match self.backend() {
            Backend::Sqlite => "SELECT DISTINCT stream FROM events WHERE stream IN (SELECT value FROM json_each($1))",
            Backend::Postgres => {
                "SELECT stream FROM streams
                 WHERE stream = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb))) AND version > 0"
            }
        };
        let mut conn = self.db.acquire().await?;
        let rows = sql_fetch_all!(conn.exec(), sql, [list.as_str()], |row| row.try_get::<String, _>(0))?;
        Ok(rows.into_iter().collect())
    }

    /// Frees a unique key if `owner` still holds it; true when it did. Only for owners that can
    /// never claim it again (a deleted claim): a concurrent claim by another stream then either
    /// finds the key held by the dead owner (and is refused) or free (and takes it), never both.
    pub async fn release_key(&self, scope: &str, key: &str, owner: &str) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let released = sql_exec!(
            tx.exec(),
            "DELETE FROM unique_keys WHERE scope = $1 AND key = $2 AND owner = $3",
            [scope, key, owner]
        )?;
        tx.commit().await?;
        Ok(released > 0)
    }

    /// The stored answer to an idempotency key, if the key was used.
    pub async fn idempotent_response(&self, key: &str) -> Result<Option<StoredResponse>, StoreError> {
        let mut conn = self.db.acquire().await?;
        let found = sql_fetch_optional!(
            conn.exec(),
            "SELECT request_hash, status, body, position FROM idempotency_keys WHERE key = $1",
            [key],
            |row| Ok(StoredResponse {
                request_hash: row.try_get(0)?,
                status: row.try_get::<i32, _>(1)? as u16,
                body: row.try_get(2)?,
                position: row.try_get(3)?,
            })
        )?;
        Ok(found)
    }
}
