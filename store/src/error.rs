//! What can go wrong with the log.

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
        StoreError::Database(e)
    }
}
