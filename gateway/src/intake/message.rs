//! A NATS command message as the HTTP request it stands for, and an HTTP answer as the reply.
//!
//! Only the headers a command reads over HTTP are carried over (`Authorization`,
//! `Idempotency-Key`, `Careledger-Correlation-Id`, `X-Request-Id`), matched without regard to case
//! as HTTP does. The reply's payload is the HTTP body, byte for byte; its headers are the HTTP
//! answer's (`Careledger-Position`, `X-Request-Id`, ...) plus `Careledger-Status`, the status code.

use async_nats::HeaderMap;
use axum::body::{Body, Bytes};
use axum::http::{self, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::commands::{NatsCommand, ParameterError};
use crate::handler::{CORRELATION_HEADER, IDEMPOTENCY_HEADER};
use crate::http::REQUEST_ID_HEADER;
use crate::http::envelope::{ApiError, Invalid, REQUEST_ID};

/// The header of a reply that carries the HTTP status code.
pub const STATUS_HEADER: &str = "Careledger-Status";

/// Headers of the message that reach the router.
const CARRIED: [&str; 4] = ["authorization", IDEMPOTENCY_HEADER, CORRELATION_HEADER, REQUEST_ID_HEADER];

/// A header of the message, whatever the case of its name.
pub fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers?
        .iter()
        .find(|(n, _)| AsRef::<str>::as_ref(*n).eq_ignore_ascii_case(name))
        .and_then(|(_, values)| values.first())
        .map(|v| v.as_str())
}

/// The HTTP request a command message stands for; a 422 naming every path parameter header
/// missing or not one path segment.
pub fn request(
    command: &NatsCommand,
    headers: Option<&HeaderMap>,
    payload: Bytes,
) -> Result<http::Request<Body>, ApiError> {
    let path = command
        .path_with(|parameter| header(headers, &NatsCommand::header_of(parameter)).map(String::from))
        .map_err(|errors| {
            ApiError::invalid(
                errors
                    .into_iter()
                    .map(|(p, error)| {
                        let (rule, description) = match error {
                            ParameterError::Missing => ("required", format!("the {{{p}}} of {}", command.path)),
                            ParameterError::NotASegment => (
                                "format",
                                format!("the {{{p}}} of {}: one path segment, without / and not . or ..", command.path),
                            ),
                            ParameterError::NotAUuid => ("format", format!("the {{{p}}} of {}: a UUID", command.path)),
                        };
                        Invalid::header(NatsCommand::header_of(p), rule, description)
                    })
                    .collect(),
            )
        })?;
    let mut builder = http::Request::builder()
        .method(command.method.clone())
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json");
    for name in CARRIED {
        if let Some(value) = header(headers, name).and_then(|v| HeaderValue::from_str(v).ok()) {
            builder = builder.header(name, value);
        }
    }
    builder.body(Body::from(payload)).map_err(|e| ApiError::malformed(format!("Cannot make a request of it: {e}")))
}

/// A refusal made before the router (unknown command, bad path parameter header), as the router's
/// own refusals look: the envelope, with the caller's request id or a new one.
pub fn refusal(error: &ApiError, headers: Option<&HeaderMap>) -> (StatusCode, HeaderMap, Bytes) {
    let id = header(headers, REQUEST_ID_HEADER)
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let body = REQUEST_ID.sync_scope(id.clone(), || error.body());
    let mut reply = HeaderMap::new();
    reply.insert(STATUS_HEADER, error.status.as_str());
    reply.insert("Content-Type", "application/json");
    reply.insert(title_case(REQUEST_ID_HEADER).as_str(), id.as_str());
    (error.status, reply, Bytes::from(body.to_string()))
}

/// The reply to a message: the answer's status, headers and body.
pub async fn reply(response: Response) -> (StatusCode, HeaderMap, Bytes) {
    let status = response.status();
    let mut reply = HeaderMap::new();
    reply.insert(STATUS_HEADER, status.as_str());
    for (name, value) in response.headers() {
        if let Ok(value) = value.to_str()
            && name != header::CONTENT_LENGTH
        {
            reply.insert(title_case(name.as_str()).as_str(), value);
        }
    }
    // the router's bodies are small JSON documents, already limited on the way in
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap_or_default();
    (status, reply, body)
}

/// `careledger-position` as `Careledger-Position`: NATS clients look headers up by exact name,
/// and these are the names the README gives.
pub(super) fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}
