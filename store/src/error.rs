//! What can go wrong with the log.
//!
//! One distinction matters to callers beyond the refusals: a database that cannot be reached
//! (down, restarting, refusing connections, the connection lost) is [`StoreError::Unavailable`],
//! told apart by [`is_unreachable`], because it passes by itself and the gateway answers it 503
//! with `Retry-After` rather than 500. Under a PostgreSQL crash and restart with 8 writers, the
//! requests caught in the outage got 500 with the connection error in the body (issue #23, 13).

use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer changed the stream since the caller read it: reload, decide again.
    #[error("stream {stream} is at version {actual}, expected {expected}")]
    WrongExpectedVersion { stream: String, expected: i64, actual: i64 },
    /// Keys of a set invariant are held by another owner.
    #[error("{} key(s) of {scope} are already taken", keys.len())]
    KeysTaken { scope: String, keys: Vec<String> },
    #[error("event {0} is already in the log")]
    DuplicateEvent(Uuid),
    /// A concurrent request with the same idempotency key committed first.
    #[error("idempotency key {0} was used concurrently")]
    IdempotencyKeyTaken(String),
    #[error("{0} events in one append is more than the store takes")]
    TooManyEvents(usize),
    #[error("unsupported database url {0} (use sqlite://... or postgres://...)")]
    UnsupportedUrl(String),
    #[error("stored event at position {position} is unreadable: {reason}")]
    Corrupt { position: i64, reason: String },
    /// PostgreSQL broke a lock cycle or serialisation conflict by aborting this append.
    #[error("the append collided with a concurrent one ({0}); retry")]
    Contention(String),
    #[error("database: {0}")]
    Database(sqlx::Error),
    /// The database cannot be reached (see [`is_unreachable`]); it may be again in a moment. An
    /// append that failed so may or may not have committed (the connection can drop during the
    /// commit): a retry with the same idempotency key or event ids is safe.
    #[error("database unreachable: {0}")]
    Unavailable(String),
    /// A database failure shared by several appends of one group commit (none was written).
    #[error("database: {0}")]
    Backend(String),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// A conflict the command handler should answer by reloading and deciding again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::WrongExpectedVersion { .. } | StoreError::KeysTaken { .. } | StoreError::Contention(_)
        )
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // 40P01 deadlock_detected, 40001 serialization_failure: nothing was written, try again
        if let sqlx::Error::Database(db) = &e
            && matches!(db.code().as_deref(), Some("40P01") | Some("40001"))
        {
            return StoreError::Contention(db.message().to_string());
        }
        if is_unreachable(&e) {
            return StoreError::Unavailable(e.to_string());
        }
        StoreError::Database(e)
    }
}

/// Whether `e` says the database cannot be reached, rather than that a statement failed: the
/// connection could not be made or was lost (I/O, TLS, no connection within the pool's timeout,
/// a closed pool), or PostgreSQL ended the session: SQLSTATE class 08 (connection exception),
/// `57P01` admin_shutdown, `57P02` crash_shutdown, `57P03` cannot_connect_now (starting up),
/// `53300` too_many_connections, or any error of severity FATAL or PANIC (PostgreSQL sends those
/// only as it closes the session, e.g. "database is not currently accepting connections" with
/// the generic `55000`). Ordinary errors of statements are of severity ERROR and are not matched.
pub fn is_unreachable(e: &sqlx::Error) -> bool {
    use sqlx::postgres::{PgDatabaseError, PgSeverity};
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => match db.try_downcast_ref::<PgDatabaseError>() {
            Some(pg) => {
                let code = pg.code();
                code.starts_with("08")
                    || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
                    || matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic)
            }
            // SQLite has no server to lose: its errors are about the statement or the file
            None => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_connections_are_unreachable_and_statement_errors_are_not() {
        let refused = || sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(is_unreachable(&refused()));
        assert!(is_unreachable(&sqlx::Error::PoolTimedOut));
        assert!(is_unreachable(&sqlx::Error::PoolClosed));
        assert!(!is_unreachable(&sqlx::Error::RowNotFound));
        assert!(!is_unreachable(&sqlx::Error::Protocol("unexpected message".into())));
        assert!(matches!(StoreError::from(refused()), StoreError::Unavailable(_)));
        assert!(matches!(StoreError::from(sqlx::Error::RowNotFound), StoreError::Database(_)));
    }
}
