//! The one envelope of every answer (eHealth's): `meta` with the status and request id, then
//! `data` (and `paging` on lists) or `error`. All errors of all crates become an [`ApiError`] here.

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

/// One invalid part of a request: where, and which rule it breaks.
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
}

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub invalid: Vec<Invalid>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), invalid: vec![] }
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

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 422 with every invalid entry.
    pub fn invalid(invalid: Vec<Invalid>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: "Validation failed. You can find validators description at our API Manifest: \
                      /api/v1/openapi.json"
                .into(),
            invalid,
        }
    }

    /// A refused domain command, answered as its [`Refusal`] says.
    pub fn refused(refusal: Refusal, message: String) -> Self {
        match refusal {
            Refusal::Invalid { entry } => ApiError::invalid(vec![Invalid::field(entry, "invalid", message)]),
            Refusal::NotFound => ApiError::not_found(message),
            Refusal::Conflict => ApiError::conflict(message),
            Refusal::Forbidden => ApiError::forbidden(message),
        }
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

    pub fn body(&self) -> Value {
        let mut error = json!({ "type": self.kind(), "message": self.message });
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
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, message = %self.message, "request failed");
        }
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<careledger_store::StoreError> for ApiError {
    fn from(e: careledger_store::StoreError) -> Self {
        use careledger_store::StoreError::*;
        match e {
            WrongExpectedVersion { .. } | KeysTaken { .. } | IdempotencyKeyTaken(_) => {
                ApiError::conflict(e.to_string())
            }
            DuplicateEvent(_) => ApiError::conflict(e.to_string()),
            TooManyEvents(_) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl From<careledger_projections::ProjectionError> for ApiError {
    fn from(e: careledger_projections::ProjectionError) -> Self {
        match e {
            careledger_projections::ProjectionError::Behind(p) => {
                ApiError::unavailable(format!("read models have not reached position {p} yet; retry"))
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

/// A success answer: `{"meta": ..., "data": ...}` (plus `paging` on lists).
pub struct Envelope {
    status: StatusCode,
    data: Value,
    paging: Option<Value>,
    position: Option<i64>,
}

impl Envelope {
    pub fn ok(data: impl Serialize) -> Self {
        Envelope { status: StatusCode::OK, data: json!(data), paging: None, position: None }
    }

    pub fn created(data: impl Serialize) -> Self {
        Envelope { status: StatusCode::CREATED, ..Envelope::ok(data) }
    }

    pub fn list(data: impl Serialize, paging: Value) -> Self {
        Envelope { paging: Some(paging), ..Envelope::ok(data) }
    }

    /// Adds the `Careledger-Position` header: the log position the command reached.
    pub fn at(mut self, position: i64) -> Self {
        self.position = Some(position);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn data(&self) -> &Value {
        &self.data
    }

    /// The log position a command reached, when it says.
    pub fn position(&self) -> Option<i64> {
        self.position
    }

    /// The body as stored for an idempotent repeat (without the request id, which is per request).
    pub fn body_without_meta(&self) -> Value {
        let mut body = json!({ "data": self.data });
        if let Some(paging) = &self.paging {
            body["paging"] = paging.clone();
        }
        body
    }

    /// Rebuilds an answer from a stored body.
    pub fn from_stored(status: StatusCode, body: Value, position: i64) -> Self {
        Envelope {
            status,
            data: body.get("data").cloned().unwrap_or(Value::Null),
            paging: body.get("paging").cloned(),
            position: Some(position),
        }
    }
}

impl IntoResponse for Envelope {
    fn into_response(self) -> Response {
        let mut body =
            json!({ "meta": { "code": self.status.as_u16(), "request_id": request_id() }, "data": self.data });
        if let Some(paging) = self.paging {
            body["paging"] = paging;
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(position) = self.position
            && let Ok(value) = HeaderValue::from_str(&position.to_string())
        {
            response.headers_mut().insert(POSITION_HEADER, value);
        }
        response
    }
}
