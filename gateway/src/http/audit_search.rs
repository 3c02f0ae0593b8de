//! `GET /api/v1/audit`: who did what, when, under which request, from the audit read model
//! (`careledger_projections::audit`). Filters on the actor, its legal entity, the correlation id,
//! the stream, the context, the event type and the recorded time; pages follow the log's order
//! with a cursor (`after` = the previous page's `next`), so a page costs the same at the end of a
//! million events as at the start. Each entry is the event as the log holds it (metadata and data)
//! with its context.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use careledger_events::RecordedEvent;
use careledger_projections::audit::{AuditFilter, AuditQueries};
use careledger_projections::time::text;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::auth::{AuditScope, User};
use crate::http::body::Params;
use crate::http::envelope::{ApiError, Envelope};
use crate::http::event_schema::is_event_type;
use crate::http::read_after;
use crate::state::AppState;

/// Every parameter the query takes: any other is refused, so a misspelt filter never silently
/// widens an audit to everything.
const PARAMETERS: [&str; 11] = [
    "actor",
    "legal_entity",
    "correlation_id",
    "stream",
    "context",
    "type",
    "from",
    "to",
    "after",
    "limit",
    "after_position",
];

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/audit", get(search))
}

/// One answer entry: the event as the log holds it, and its context.
#[derive(Serialize)]
struct AuditEntry {
    #[serde(flatten)]
    event: RecordedEvent,
    context: String,
}

/// `GET /api/v1/audit?actor=&legal_entity=&correlation_id=&stream=&context=&type=&from=&to=&after=&limit=`
async fn search(
    State(state): State<AppState>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Envelope, ApiError> {
    user.require(state.config.permissions.of(careledger_app::Operation::Audit))?;
    let scope = user.audit_scope(state.config.permissions.of(careledger_app::Operation::AuditAllTenants))?;
    let mut p = Params::new(&params);
    p.only(&PARAMETERS);
    let correlation_id = p.uuid("correlation_id").map(|id| id.to_string());
    let context = p.string("context", false);
    if let Some(c) = &context
        && !careledger_events::CONTEXTS.contains(&c.as_str())
    {
        p.fail("context", "inclusion", format!("expected one of {}", careledger_events::CONTEXTS.join(", ")));
    }
    let event_type = p.string("type", false);
    if let Some(t) = &event_type
        && !is_event_type(t)
    {
        p.fail("type", "inclusion", "not an event type (see /api/v1/events/schema)");
    }
    let from = timestamp(&mut p, "from");
    let to = timestamp(&mut p, "to");
    if let (Some(from), Some(to)) = (from, to)
        && to <= from
    {
        p.fail("to", "range", "expected a time after `from`");
    }
    let filter = AuditFilter {
        after: p.integer("after", 0, 0, i64::MAX),
        user_id: p.string("actor", false),
        legal_entity_id: p.string("legal_entity", false),
        correlation_id,
        stream: p.string("stream", false),
        context,
        event_type,
        from: from.as_ref().map(text),
        to: to.as_ref().map(text),
    };
    let limit = p.integer("limit", 100, 1, 1000);
    read_after(&state, &mut p).await?;
    p.finish()?;
    let mut filter = filter;
    if let AuditScope::LegalEntity(own) = scope {
        // a tenant's caller reads its own legal entity's events, whatever it asks for
        if filter.legal_entity_id.as_ref().is_some_and(|asked| *asked != own) {
            return Err(ApiError::forbidden("A token acting for a legal entity reads only that legal entity's audit"));
        }
        filter.legal_entity_id = Some(own);
    }
    let page = AuditQueries(&state.store).page(&filter, limit).await?;
    let next = page.events.last().map(|e| e.position).unwrap_or(filter.after);
    let entries: Vec<AuditEntry> = page
        .events
        .into_iter()
        .map(|event| AuditEntry { context: careledger_events::stream_context(&event.stream).to_string(), event })
        .collect();
    Ok(Envelope::list(
        entries,
        json!({ "limit": limit, "after": filter.after, "next": next, "has_more": page.has_more }),
    ))
}

/// An RFC 3339 time, e.g. `2026-05-01T00:00:00Z`. An unencoded `+` of an offset arrives as a
/// space in a query string: it is read back as the `+` it was.
fn timestamp(p: &mut Params<'_>, name: &str) -> Option<DateTime<Utc>> {
    let raw = p.string(name, false)?;
    match DateTime::parse_from_rfc3339(&raw.replace(' ', "+")) {
        Ok(t) => Some(t.to_utc()),
        Err(_) => {
            p.fail(name, "format", "expected an RFC 3339 time, e.g. 2026-05-01T00:00:00Z");
            None
        }
    }
}
