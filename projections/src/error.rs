//! What can go wrong while projecting or querying read models.

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] careledger_store::StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Decode(#[from] careledger_events::DecodeError),
    #[error("encoding rows: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("no projector named {0}")]
    UnknownProjector(String),
    #[error("read models did not reach position {0} in time")]
    Behind(i64),
}
