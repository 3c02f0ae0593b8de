//! One handle over both backends, so that projections and queries are written once.
//!
//! The SQL is shared where the dialects agree (`$1` parameters work on both); where they differ
//! (bulk JSON arrays, upserts of counters) callers pick a text per [`Backend`]. The `sql_*`
//! macros expand a query for each backend and run the one the connection belongs to; values bound
//! must be encodable on both (text, integers, floats, booleans, bytes, options of these, UTC time).

use std::str::FromStr;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction};

use crate::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The database behind the log and the read models.
#[derive(Clone, Debug)]
pub enum Db {
    /// One writer connection (SQLite takes one writer at a time; queuing in the pool is cheaper
    /// than busy retries) and a pool of readers.
    Sqlite {
        writer: SqlitePool,
        reader: SqlitePool,
    },
    Postgres(PgPool),
}

/// A borrowed connection of either backend.
pub enum Exec<'a> {
    Sqlite(&'a mut SqliteConnection),
    Postgres(&'a mut PgConnection),
}

/// A connection taken from a pool.
pub enum Conn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl Conn {
    pub fn exec(&mut self) -> Exec<'_> {
        match self {
            Conn::Sqlite(c) => Exec::Sqlite(c),
            Conn::Postgres(c) => Exec::Postgres(c),
        }
    }
}

/// A write transaction of either backend.
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    pub fn exec(&mut self) -> Exec<'_> {
        match self {
            Tx::Sqlite(t) => Exec::Sqlite(t),
            Tx::Postgres(t) => Exec::Postgres(t),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Postgres(_) => Backend::Postgres,
        }
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => t.rollback().await?,
            Tx::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }
}

impl Db {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a committed event survives a power cut, not only a killed process.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true)
                .pragma("temp_store", "memory")
                .pragma("cache_size", "-65536");
            let writer =
                SqlitePoolOptions::new().max_connections(1).min_connections(1).connect_with(options.clone()).await?;
            let reader = SqlitePoolOptions::new().max_connections(max_connections.max(2)).connect_with(options).await?;
            Ok(Db::Sqlite { writer, reader })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            // The service runs short OLTP statements: JIT compilation (on by default above a cost)
            // only ever costs them, hundreds of milliseconds when a plan's cost is misestimated
            // (stale statistics right after a bulk import). A URL's own `options` still wins.
            let options = PgConnectOptions::from_str(url)?;
            let sets_jit = url.contains("jit=") || url.contains("jit%3D") || url.contains("jit%3d");
            let options = if sets_jit { options } else { options.options([("jit", "off")]) };
            // Reads of the log take the horizon and then the events in one call, each statement
            // with its own snapshot, which only READ COMMITTED gives (migrations/postgres/0015):
            // a server or database whose default is stricter must not change that for us.
            let options = options.options([("default_transaction_isolation", "read committed")]);
            // sqlx tests every connection with a round trip as it goes back to the pool and, by
            // default, again as it is taken out. Under load a connection goes back and out again
            // within milliseconds, so the second test only doubled the round trips of every short
            // transaction; a connection idle for more than a second (long enough for the server
            // to have restarted) is still tested before it is used.
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(30))
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for > Duration::from_secs(1) {
                            sqlx::Connection::ping(conn).await?;
                        }
                        Ok(true)
                    })
                })
                .connect_with(options)
                .await?;
            Ok(Db::Postgres(pool))
        } else {
            Err(StoreError::UnsupportedUrl(url.to_string()))
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Db::Sqlite { writer, .. } => sqlx::migrate!("../migrations/sqlite").run(writer).await?,
            Db::Postgres(pool) => {
                // Several processes may start together: one migrates, the others wait for it.
                let mut conn = pool.acquire().await?;
                sqlx::query("SELECT pg_advisory_lock(7240517)").execute(&mut *conn).await?;
                let result = sqlx::migrate!("../migrations/postgres").run(&mut *conn).await;
                sqlx::query("SELECT pg_advisory_unlock(7240517)").execute(&mut *conn).await?;
                result?
            }
        }
        Ok(())
    }

    /// A connection for reading.
    pub async fn acquire(&self) -> Result<Conn, StoreError> {
        Ok(match self {
            Db::Sqlite { reader, .. } => Conn::Sqlite(reader.acquire().await?),
            Db::Postgres(pool) => Conn::Postgres(pool.acquire().await?),
        })
    }

    /// A write transaction (SQLite: `BEGIN IMMEDIATE` on the writer, so it never upgrades late).
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Db::Sqlite { writer, .. } => Tx::Sqlite(writer.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// A write transaction of derived state: read models, projector and relay checkpoints. On
    /// PostgreSQL its commit does not wait for the WAL flush (`synchronous_commit = off` for this
    /// transaction only). A crash of the database server may then lose its last fraction of a
    /// second, always whole transactions, so a read model and its checkpoint go back together and
    /// the projector applies those events again; no event is lost (appends keep waiting for
    /// their flush). Those flushes were most of the WAL waits of a command's whole path: five
    /// projectors each paid one per batch, queued on the same WAL lock as the appends.
    pub async fn begin_derived(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Db::Sqlite { .. } => self.begin().await?,
            Db::Postgres(pool) => Tx::Postgres(pool.begin_with("BEGIN; SET LOCAL synchronous_commit = off").await?),
        })
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite { writer, reader } => {
                reader.close().await;
                writer.close().await;
            }
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

/// Runs a statement on an [`Exec`]; evaluates to `Result<u64 /* rows affected */, sqlx::Error>`.
#[macro_export]
macro_rules! sql_exec {
    ($exec:expr, $sql:expr, [$($arg:expr),* $(,)?]) => {
        match $exec {
            $crate::Exec::Sqlite(c) => ::sqlx::query($sql)$(.bind($arg))*.execute(&mut *c).await.map(|r| r.rows_affected()),
            $crate::Exec::Postgres(c) => ::sqlx::query($sql)$(.bind($arg))*.execute(&mut *c).await.map(|r| r.rows_affected()),
        }
    };
}

/// Fetches all rows, mapping each with `|row| expr` (expr: `Result<T, sqlx::Error>`).
#[macro_export]
macro_rules! sql_fetch_all {
    ($exec:expr, $sql:expr, [$($arg:expr),* $(,)?], |$row:ident| $body:expr) => {
        match $exec {
            $crate::Exec::Sqlite(c) => ::sqlx::query($sql)$(.bind($arg))*.fetch_all(&mut *c).await
                .and_then(|rows| rows.iter().map(|$row| { #[allow(unused_imports)] use ::sqlx::Row; $body }).collect::<Result<Vec<_>, ::sqlx::Error>>()),
            $crate::Exec::Postgres(c) => ::sqlx::query($sql)$(.bind($arg))*.fetch_all(&mut *c).await
                .and_then(|rows| rows.iter().map(|$row| { #[allow(unused_imports)] use ::sqlx::Row; $body }).collect::<Result<Vec<_>, ::sqlx::Error>>()),
        }
    };
}

/// Fetches at most one row, mapped with `|row| expr`.
#[macro_export]
macro_rules! sql_fetch_optional {
    ($exec:expr, $sql:expr, [$($arg:expr),* $(,)?], |$row:ident| $body:expr) => {
        match $exec {
            $crate::Exec::Sqlite(c) => ::sqlx::query($sql)$(.bind($arg))*.fetch_optional(&mut *c).await
                .and_then(|row| row.as_ref().map(|$row| { #[allow(unused_imports)] use ::sqlx::Row; $body }).transpose()),
            $crate::Exec::Postgres(c) => ::sqlx::query($sql)$(.bind($arg))*.fetch_optional(&mut *c).await
                .and_then(|row| row.as_ref().map(|$row| { #[allow(unused_imports)] use ::sqlx::Row; $body }).transpose()),
        }
    };
}

/// Fetches exactly one row, mapped with `|row| expr`.
#[macro_export]
macro_rules! sql_fetch_one {
    ($exec:expr, $sql:expr, [$($arg:expr),* $(,)?], |$row:ident| $body:expr) => {
        match $exec {
            $crate::Exec::Sqlite(c) => ::sqlx::query($sql)$(.bind($arg))*.fetch_one(&mut *c).await
                .and_then(|$row| { #[allow(unused_imports)] use ::sqlx::Row; $body }),
            $crate::Exec::Postgres(c) => ::sqlx::query($sql)$(.bind($arg))*.fetch_one(&mut *c).await
                .and_then(|$row| { #[allow(unused_imports)] use ::sqlx::Row; $body }),
        }
    };
}
