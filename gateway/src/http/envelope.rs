//! The one envelope of every answer (eHealth's): `meta` with the status and request id, then
//! `data` (and `paging` on lists) or `error`. All errors of all crates become an [`ApiError`] here.
//!
//! A 5xx tells the caller no internals: its message (database errors, SQL, connection details)
//! is logged with the request id, and the answer says only what happened in general and which
//! request id to quote ("Internal error; quote request id X"). The exceptions are 5xx whose
//! message was written for the caller ([`ApiError::unavailable`], [`ApiError::internal_explained`]).
//! A database that cannot be reached is a 503, not a 500: it passes by itself (a PostgreSQL
//! restart under load caught 11 requests in the outage, issue #23), so every 503 carries
//! `Retry-After` ([`RETRY_AFTER_SECONDS`]).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use careledger_domain::Refusal;
use serde::Serialize;
use serde_json::{Value, json};

tokio::task_local! {
    /// The id of the request being served, set by the request-id middleware.
    pub static REQUEST_ID: String;
}

pub fn request_id() -> String {
    REQUEST_ID.try_with(|id| id.clone()).unwrap_or_default()
}

/// The name of the header carrying the log position a command reached.
pub const POSITION_HEADER: &str = "careledger-position";

/// Invalid entries are the application layer's (one vocabulary for every transport).
pub use careledger_app::{Invalid, Rule};

/// Seconds a 503 asks the caller to wait before trying again (`Retry-After`): about as long as a
/// PostgreSQL restart or a short lag of the read models takes, and as long as a query with
/// `after_position` waits by default before it answers 503.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// What a 5xx whose message must not be sent says instead (before "; quote request id X").
const INTERNAL: &str = "Internal error";
const UNREACHABLE: &str = "Service unavailable: the database cannot be reached, retry later";

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    /// What went wrong, in full: sent to the caller for 4xx (those are written for them), only
    /// logged for 5xx unless `public` is `None` (see [`ApiError::shown_message`]).
    pub message: String,
    pub invalid: Vec<Invalid>,
    /// For a 5xx: what the caller is told instead of `message`. `None`: `message` itself.
    public: Option<&'static str>,
}

impl ApiError {
    /// An answer with `status`; a 5xx made so tells the caller "Internal error" and its request
    /// id, `message` being logged only.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let public = status.is_server_error().then_some(INTERNAL);
        ApiError { status, message: message.into(), invalid: vec![], public }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 500: `message` is logged with the request id; the caller reads "Internal error; quote
    /// request id X".
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 500 whose `message` is written for the caller and sent as it is (it must name no
    /// internals), e.g. that a command was executed but its answer could not be delivered.
    pub fn internal_explained(message: impl Into<String>) -> Self {
        ApiError { public: None, ..Self::internal(message) }
    }

    /// 503 whose `message` is written for the caller and sent as it is (it must name no
    /// internals), e.g. that the read models have not reached a position yet.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError { public: None, ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message) }
    }

    /// 503: the database cannot be reached. `detail` (the driver's error) is logged with the
    /// request id; the caller reads that the database cannot be reached and to retry.
    pub fn database_unreachable(detail: impl Into<String>) -> Self {
        ApiError { public: Some(UNREACHABLE), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, detail) }
    }

    /// 422 with every invalid entry.
    pub fn invalid(invalid: Vec<Invalid>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: "Validation failed. You can find validators description at our API Manifest: \
                      /api/v1/openapi.json"
                .into(),
            invalid,
            public: None,
        }
    }

    /// A refused domain command, answered as its [`Refusal`] says.
    pub fn refused(refusal: Refusal, message: String) -> Self {
        careledger_app::AppError::refused(refusal, message).into()
    }

    pub fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            400 => "request_malformed",
            401 => "access_denied",
            403 => "forbidden",
            404 => "not_found",
            405 => "method_not_allowed",
            409 => "request_conflict",
            413 => "request_too_large",
            415 => "request_malformed",
            422 => "validation_failed",
            _ => "internal_error",
        }
    }

    /// The message the caller reads: `message`, or for a 5xx that must not show it, a general
    /// one with the request id to quote (the log has `message` under that id).
    pub fn shown_message(&self) -> String {
        match self.public {
            Some(general) => format!("{general}; quote request id {}", request_id()),
            None => self.message.clone(),
        }
    }

    /// The envelope of this error, as the caller reads it (see [`ApiError::shown_message`]).
    pub fn body(&self) -> Value {
        let mut error = json!({ "type": self.kind(), "message": self.shown_message() });
        if !self.invalid.is_empty() {
            error["invalid"] = json!(self.invalid);
        }
        json!({ "meta": { "code": self.status.as_u16(), "request_id": request_id() }, "error": error })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // the full message goes to the log only, under the request id the caller is told to quote
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(status = %self.status, request_id = %request_id(), message = %self.message, "request failed");
        } else if self.status.is_server_error() {
            tracing::error!(status = %self.status, request_id = %request_id(), message = %self.message, "request failed");
        }
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

/// The application's errors, answered: the one place their statuses are chosen.
impl From<careledger_app::AppError> for ApiError {
    fn from(e: careledger_app::AppError) -> Self {
        use careledger_app::AppError::*;
        match e {
            Invalid(invalid) => ApiError::invalid(invalid),
            Forbidden(m) => ApiError::forbidden(m),
            NotFound(m) => ApiError::not_found(m),
            Conflict(m) => ApiError::conflict(m),
            TooLarge(m) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, m),
            e @ Behind(_) => ApiError::unavailable(e.to_string()),
            Unavailable(detail) => ApiError::database_unreachable(detail),
            Internal(detail) => ApiError::internal(detail),
        }
    }
}

impl From<careledger_store::StoreError> for ApiError {
    fn from(e: careledger_store::StoreError) -> Self {
        careledger_app::AppError::from(e).into()
    }
}

impl From<careledger_projections::ProjectionError> for ApiError {
    fn from(e: careledger_projections::ProjectionError) -> Self {
        careledger_app::AppError::from(e).into()
    }
}

/// Whether a read of the read models failed because the database cannot be reached.
pub fn is_database_unreachable(e: &careledger_projections::ProjectionError) -> bool {
    use careledger_projections::ProjectionError;
    match e {
        ProjectionError::Store(careledger_store::StoreError::Unavailable(_)) => true,
        ProjectionError::Database(e) => careledger_store::is_unreachable(e),
        _ => false,
    }
}

/// A success answer: `{"meta": ..., "data": ...}` (plus `paging` on lists): the application
/// layer's [`careledger_app::Answer`], rendered as the HTTP envelope.
pub struct Envelope(careledger_app::Answer);

impl Envelope {
    pub fn ok(data: impl Serialize) -> Self {
        Envelope(careledger_app::Answer::ok(data))
    }

    pub fn created(data: impl Serialize) -> Self {
        Envelope(careledger_app::Answer::created(data))
    }

    pub fn list(data: impl Serialize, paging: Value) -> Self {
        Envelope(careledger_app::Answer::list(data, paging))
    }

    /// Adds the `Careledger-Position` header: the log position the command reached.
    pub fn at(self, position: i64) -> Self {
        Envelope(self.0.at(position))
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::OK)
    }

    pub fn data(&self) -> &Value {
        &self.0.data
    }

    /// The log position a command reached, when it says.
    pub fn position(&self) -> Option<i64> {
        self.0.position
    }

    /// The answer as the application layer holds it (for an idempotency record).
    pub fn into_answer(self) -> careledger_app::Answer {
        self.0
    }
}

impl From<careledger_app::Answer> for Envelope {
    fn from(a: careledger_app::Answer) -> Self {
        Envelope(a)
    }
}

impl IntoResponse for Envelope {
    fn into_response(self) -> Response {
        let status = self.status();
        let careledger_app::Answer { data, paging, position, .. } = self.0;
        let mut body = json!({ "meta": { "code": status.as_u16(), "request_id": request_id() }, "data": data });
        if let Some(paging) = paging {
            body["paging"] = paging;
        }
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(position) = position
            && let Ok(value) = HeaderValue::from_str(&position.to_string())
        {
            response.headers_mut().insert(POSITION_HEADER, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(error: ApiError) -> (Value, Response) {
        REQUEST_ID.sync_scope("req-7".to_string(), || (error.body(), error.clone().into_response()))
    }

    #[test]
    fn a_500_tells_the_request_id_and_no_internals() {
        let (body, response) = answered(ApiError::internal("database: relation \"code_batches\" does not exist"));
        assert_eq!(body["error"]["message"], "Internal error; quote request id req-7");
        assert_eq!(body["error"]["type"], "internal_error");
        assert_eq!(body["meta"]["request_id"], "req-7");
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn an_unreachable_database_is_a_503_to_retry() {
        let store = careledger_store::StoreError::from(sqlx::Error::PoolTimedOut);
        let (body, response) = answered(store.into());
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["type"], "internal_error");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("database cannot be reached") && message.ends_with("req-7"), "{message}");
        assert!(!message.contains("pool"), "{message}");
        assert_eq!(response.headers()[header::RETRY_AFTER], RETRY_AFTER_SECONDS.to_string().as_str());
    }

    #[test]
    fn messages_written_for_the_caller_are_kept() {
        let behind = careledger_projections::ProjectionError::Behind(42);
        let (body, response) = answered(behind.into());
        assert_eq!(body["error"]["message"], "read models have not reached position 42 yet; retry");
        assert!(response.headers().get(header::RETRY_AFTER).is_some());
        let (body, _) = answered(ApiError::internal_explained("the command was executed"));
        assert_eq!(body["error"]["message"], "the command was executed");
        let (body, _) = answered(ApiError::conflict("stream x is at version 2, expected 1"));
        assert_eq!(body["error"]["message"], "stream x is at version 2, expected 1");
    }
}
