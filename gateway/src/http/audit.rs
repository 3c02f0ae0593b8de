//! The audit trail: the log itself, by stream or in global order, with every event's metadata.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use serde_json::json;

use crate::auth::{AuditScope, User};
use crate::http::body::Params;
use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/streams/{stream}/events", get(stream_events)).route("/api/v1/events", get(all_events))
}

/// `GET /api/v1/streams/{stream}/events?after_version=&limit=`
async fn stream_events(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Envelope, ApiError> {
    user.require(state.config.permissions.of(careledger_app::Operation::Audit))?;
    let scope = user.audit_scope(state.config.permissions.of(careledger_app::Operation::AuditAllTenants))?;
    let mut p = Params::new(&params);
    let after_version = p.integer("after_version", 0, 0, i64::MAX);
    let limit = p.integer("limit", 100, 1, 1000);
    p.finish()?;
    let events = state.store.read_stream(&stream, after_version, limit).await?;
    let next = events.last().map(|e| e.version).unwrap_or(after_version);
    let events = visible(events, &scope);
    if events.is_empty() && after_version == 0 {
        return Err(ApiError::not_found("Stream not found"));
    }
    Ok(Envelope::list(events, json!({ "limit": limit, "after_version": after_version, "next_version": next })))
}

/// `GET /api/v1/events?after=&limit=`
async fn all_events(
    State(state): State<AppState>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Envelope, ApiError> {
    user.require(state.config.permissions.of(careledger_app::Operation::Audit))?;
    let scope = user.audit_scope(state.config.permissions.of(careledger_app::Operation::AuditAllTenants))?;
    let mut p = Params::new(&params);
    let after = p.integer("after", 0, 0, i64::MAX);
    let limit = p.integer("limit", 100, 1, 1000);
    p.finish()?;
    let events = state.store.read_all(after, limit).await?;
    // `next` is where the page's read ended: a tenant's page may hold fewer events than `limit`
    // (others' events are left out), and the next page goes on from there
    let next = events.last().map(|e| e.position).unwrap_or(after);
    Ok(Envelope::list(visible(events, &scope), json!({ "limit": limit, "after": after, "next": next })))
}

/// The events of `events` a caller of `scope` may read: a legal entity's callers read what
/// callers of that legal entity did (the actor recorded with each event).
fn visible(events: Vec<careledger_events::RecordedEvent>, scope: &AuditScope) -> Vec<careledger_events::RecordedEvent> {
    match scope {
        AuditScope::All => events,
        AuditScope::LegalEntity(own) => {
            events.into_iter().filter(|e| e.metadata.actor.legal_entity_id.as_deref() == Some(own.as_str())).collect()
        }
    }
}
