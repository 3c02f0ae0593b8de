//! The gateway's side of the application layer (`careledger-app`): a command's context read from
//! HTTP headers (and NATS headers, which the intake turns into the same request) and metrics per
//! command. Handlers read the request, build the context here, call the app crate's function for
//! the command and render its answer or error as the envelope; the machinery itself (aggregate
//! caches, idempotency, appends, conflicts) and every decision live in the app crate, which knows
//! no HTTP.

use axum::http::HeaderMap;
use careledger_app::{CommandCtx, RequestMeta};
use uuid::Uuid;

pub use careledger_app::AggregateCache;

use crate::auth::User;
use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
pub const CORRELATION_HEADER: &str = "careledger-correlation-id";

/// What the request's headers say about it: its correlation id (a new one when it has none or
/// not a UUID), its cause (the request id, when a UUID) and its idempotency key.
pub fn request_meta(headers: &HeaderMap) -> RequestMeta {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    RequestMeta {
        correlation_id: header(CORRELATION_HEADER).and_then(|v| Uuid::parse_str(v).ok()),
        causation_id: Uuid::parse_str(&crate::http::envelope::request_id()).ok(),
        idempotency_key: header(IDEMPOTENCY_HEADER).map(str::to_string),
    }
}

/// A path parameter as the idempotency record names it: a UUID in its one written form (however
/// the caller wrote it: upper case, braces, `urn:uuid:`), anything else as it came. Built before
/// the parameter is checked, so that a caller without the permission hears 403 first, and the
/// same request written two ways is one request.
pub fn canonical(raw: &str) -> String {
    Uuid::parse_str(raw).map(|id| id.to_string()).unwrap_or_else(|_| raw.to_string())
}

/// A command's context (see [`careledger_app::CommandCtx`]) for an HTTP request: 403 unless
/// `user` may run the command (its operation's permission as this server configures it), 422 on a
/// malformed idempotency key; correlation and idempotency read from the headers, and `body` hashed
/// so that a key reused for another request is refused instead of answered with the wrong result.
pub fn command_ctx(
    state: &AppState,
    command: &'static str,
    user: &User,
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
) -> Result<CommandCtx, ApiError> {
    Ok(CommandCtx::new(command, user, &state.config.permissions, &request_meta(headers), path, body)?)
}

/// Runs a handler, counting its outcome and time under the command's name.
pub async fn counted(
    command: &'static str,
    handler: impl Future<Output = Result<Envelope, ApiError>>,
) -> Result<Envelope, ApiError> {
    debug_assert!(careledger_app::commands::named(command).is_some(), "{command} is not in the table of commands");
    let started = std::time::Instant::now();
    let result = handler.await;
    record_outcome(command, &result, started);
    result
}

/// Counts a finished command by outcome.
fn record_outcome(command: &'static str, result: &Result<Envelope, ApiError>, started: std::time::Instant) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) if e.status.is_client_error() => "refused",
        Err(_) => "failed",
    };
    metrics::counter!("careledger_commands_total", "command" => command, "outcome" => outcome).increment(1);
    metrics::histogram!("careledger_command_seconds", "command" => command).record(started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn a_uuid_written_any_way_is_one_path() {
        let id = "0190f3a0-1111-7000-8000-00000000001e";
        for written in [id.to_uppercase(), format!("{{{id}}}"), format!("urn:uuid:{id}"), id.replace('-', "")] {
            assert_eq!(canonical(&written), id, "{written}");
        }
        assert_eq!(canonical("not-a-uuid"), "not-a-uuid");
    }
}
