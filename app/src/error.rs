//! Why a command or query did not answer as asked, in the application's terms. Each transport
//! maps it once: the gateway to its envelope (`gateway/src/http/envelope.rs`), the NATS intake to
//! the same envelope, the coming sync to FHIR `OperationOutcome`s. Messages of
//! [`AppError::Unavailable`] and [`AppError::Internal`] are details for the log, never for the
//! caller; the others are written for the caller.

use careledger_domain::Refusal;
use careledger_projections::ProjectionError;
use careledger_store::StoreError;
use serde::Serialize;
use serde_json::Value;

/// One invalid part of a request: where (a JSON path, a parameter or header name), and which rule
/// it breaks. Transports name where it was (`entry_type`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Invalid {
    pub entry_type: &'static str,
    pub entry: String,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub rule: &'static str,
    pub description: String,
    pub params: Vec<Value>,
}

impl Invalid {
    /// A property of the JSON body, by its path (`$.items[0].qty_provided`).
    pub fn field(entry: impl Into<String>, rule: &'static str, description: impl Into<String>) -> Self {
        Invalid {
            entry_type: "json_data_property",
            entry: entry.into(),
            rules: vec![Rule { rule, description: description.into(), params: vec![] }],
        }
    }

    pub fn query(entry: impl Into<String>, rule: &'static str, description: impl Into<String>) -> Self {
        Invalid { entry_type: "query_parameter", ..Invalid::field(entry, rule, description) }
    }

    pub fn path(entry: impl Into<String>, rule: &'static str, description: impl Into<String>) -> Self {
        Invalid { entry_type: "path_parameter", ..Invalid::field(entry, rule, description) }
    }

    /// A header of the request's metadata (the idempotency key).
    pub fn header(entry: impl Into<String>, rule: &'static str, description: impl Into<String>) -> Self {
        Invalid { entry_type: "header", ..Invalid::field(entry, rule, description) }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AppError {
    /// Input breaks rules of its own: every invalid entry at once (422).
    #[error("validation failed: {0:?}")]
    Invalid(Vec<Invalid>),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The command conflicts with the state it found (409).
    #[error("{0}")]
    Conflict(String),
    /// More than one append takes (413).
    #[error("{0}")]
    TooLarge(String),
    /// The read models have not reached a position yet: retry.
    #[error("read models have not reached position {0} yet; retry")]
    Behind(i64),
    /// The database cannot be reached; the detail is for the log.
    #[error("database unreachable: {0}")]
    Unavailable(String),
    /// Anything else; the detail is for the log.
    #[error("{0}")]
    Internal(String),
}

impl AppError {
    /// Whether the service failed rather than the request (the database, the read models, a
    /// bug): in a bulk command this ends the command instead of being one claim's answer.
    pub fn is_failure(&self) -> bool {
        matches!(self, AppError::Behind(_) | AppError::Unavailable(_) | AppError::Internal(_))
    }

    /// A refused domain command, as its [`Refusal`] says.
    pub fn refused(refusal: Refusal, message: String) -> Self {
        match refusal {
            Refusal::Invalid { entry } => AppError::Invalid(vec![Invalid::field(entry, "invalid", message)]),
            Refusal::NotFound => AppError::NotFound(message),
            Refusal::Conflict => AppError::Conflict(message),
            Refusal::Forbidden => AppError::Forbidden(message),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        use StoreError::*;
        match e {
            WrongExpectedVersion { .. } | KeysTaken { .. } | IdempotencyKeyTaken(_) | DuplicateEvent(_) => {
                AppError::Conflict(e.to_string())
            }
            TooManyEvents(_) => AppError::TooLarge(e.to_string()),
            Unavailable(_) => AppError::Unavailable(e.to_string()),
            _ => AppError::Internal(e.to_string()),
        }
    }
}

impl From<ProjectionError> for AppError {
    fn from(e: ProjectionError) -> Self {
        match e {
            ProjectionError::Behind(p) => AppError::Behind(p),
            ProjectionError::Store(e) => e.into(),
            ProjectionError::Database(e) if careledger_store::is_unreachable(&e) => {
                AppError::Unavailable(e.to_string())
            }
            other => AppError::Internal(other.to_string()),
        }
    }
}
