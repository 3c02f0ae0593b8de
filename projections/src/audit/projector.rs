//! Folds every event's metadata into `audit_events`, whatever its context.
//!
//! A batch of events is one statement: the rows go in as one JSON array (SQLite `json_each`,
//! PostgreSQL `jsonb_array_elements`), as the codes projector does with runs of assignments, so
//! catching up with a log of a million events is a few thousand statements, not a million.

use std::sync::Arc;

use careledger_events::RecordedEvent;
use careledger_store::{Backend, Tx, sql_exec};
use futures::future::BoxFuture;
use serde::Serialize;
use uuid::Uuid;

use crate::time::text;
use crate::{ProjectionError, Projector};

pub struct AuditProjector;

impl Projector for AuditProjector {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["audit_events"]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut Tx,
        events: &'a [Arc<RecordedEvent>],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(());
            }
            let rows = serde_json::to_string(&events.iter().map(|e| Row::of(e)).collect::<Vec<_>>())?;
            let sql = match tx.backend() {
                Backend::Postgres => {
                    "INSERT INTO audit_events (position, event_id, stream, version, context, event_type, recorded_at,
                         user_id, legal_entity_id, command, correlation_id, causation_id)
                     SELECT (r->>'position')::bigint, r->>'event_id', r->>'stream', (r->>'version')::bigint,
                            r->>'context', r->>'event_type', r->>'recorded_at', r->>'user_id',
                            r->>'legal_entity_id', r->>'command', r->>'correlation_id', r->>'causation_id'
                     FROM jsonb_array_elements($1::jsonb) r"
                }
                Backend::Sqlite => {
                    "INSERT INTO audit_events (position, event_id, stream, version, context, event_type, recorded_at,
                         user_id, legal_entity_id, command, correlation_id, causation_id)
                     SELECT json_extract(value, '$.position'), json_extract(value, '$.event_id'),
                            json_extract(value, '$.stream'), json_extract(value, '$.version'),
                            json_extract(value, '$.context'), json_extract(value, '$.event_type'),
                            json_extract(value, '$.recorded_at'), json_extract(value, '$.user_id'),
                            json_extract(value, '$.legal_entity_id'), json_extract(value, '$.command'),
                            json_extract(value, '$.correlation_id'), json_extract(value, '$.causation_id')
                     FROM json_each($1) WHERE true"
                }
            };
            sql_exec!(tx.exec(), sql, [rows])?;
            Ok(())
        })
    }
}

/// An event's row as the insert takes it, serialised straight from the event's fields (a
/// `serde_json::Value` per row cost a map and a dozen strings allocated for each event).
#[derive(Serialize)]
struct Row<'a> {
    position: i64,
    event_id: Uuid,
    stream: &'a str,
    version: i64,
    context: &'a str,
    event_type: &'a str,
    recorded_at: String,
    user_id: Option<&'a str>,
    legal_entity_id: Option<&'a str>,
    command: &'a str,
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
}

impl<'a> Row<'a> {
    fn of(event: &'a RecordedEvent) -> Self {
        let m = &event.metadata;
        Row {
            position: event.position,
            event_id: event.event_id,
            stream: &event.stream,
            version: event.version,
            context: careledger_events::stream_context(&event.stream),
            event_type: &event.event_type,
            recorded_at: text(&event.recorded_at),
            user_id: m.actor.user_id.as_deref(),
            legal_entity_id: m.actor.legal_entity_id.as_deref(),
            command: &m.command,
            correlation_id: m.correlation_id,
            causation_id: m.causation_id,
        }
    }
}
