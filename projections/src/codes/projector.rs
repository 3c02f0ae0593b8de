//! Folds the codes context's events into `code_batches`, `codes` and `code_history`.
//!
//! Chunks of generated codes are inserted with one statement each, the codes passed as one JSON
//! array (SQLite `json_each`, PostgreSQL `jsonb_array_elements_text`): a million codes are a
//! hundred statements, not a million.

use std::sync::Arc;

use careledger_events::codes::CodeEvent;
use careledger_events::{DomainEvent, RecordedEvent};
use careledger_store::{Backend, Tx, sql_exec, sql_fetch_all};
use futures::future::BoxFuture;

use crate::time::text;
use crate::{ProjectionError, Projector};

pub struct CodesProjector;

impl Projector for CodesProjector {
    fn name(&self) -> &'static str {
        "codes"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["code_batches", "codes", "code_history"]
    }

    fn handles(&self, event: &RecordedEvent) -> bool {
        careledger_events::stream_context(&event.stream) == CodeEvent::CONTEXT
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut Tx,
        events: &'a [Arc<RecordedEvent>],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            // consecutive assignments are applied together: a few statements for the run instead
            // of four round trips each (at 1,000 assignments/s the projector fell behind)
            // (and the control-number links among them)
            let mut run: Vec<(&RecordedEvent, CodeEvent)> = Vec::new();
            for event in events {
                if !self.handles(event) {
                    continue;
                }
                let decoded = event.decode::<CodeEvent>()?;
                let batched = matches!(decoded, CodeEvent::CodeAssigned { .. } | CodeEvent::ControlNumberLinked { .. });
                if batched {
                    run.push((event, decoded));
                    continue;
                }
                apply_run(tx, &std::mem::take(&mut run)).await?;
                apply_one(tx, event, &decoded).await?;
            }
            apply_run(tx, &run).await
        })
    }
}

async fn apply_one(tx: &mut Tx, recorded: &RecordedEvent, event: &CodeEvent) -> Result<(), ProjectionError> {
    let pg = tx.backend() == Backend::Postgres;
    match event {
        CodeEvent::CodeBatchGenerated { batch_id, holder_type, holder_code, number, created_at, .. } => {
            let actor = &recorded.metadata.actor;
            sql_exec!(
                tx.exec(),
                "INSERT INTO code_batches (batch_id, holder_type, holder_code, number, created_at,
                     available, reserved, assigned, generated_position, generated_by, generated_for, correlation_id)
                 VALUES ($1, $2, $3, $4, $5, 0, 0, 0, $6, $7, $8, $9)",
                [
                    batch_id.to_string(),
                    holder_type.code(),
                    holder_code.as_str(),
                    i64::from(*number),
                    text(created_at),
                    recorded.position,
                    actor.user_id.as_deref(),
                    actor.legal_entity_id.as_deref(),
                    recorded.metadata.correlation_id.to_string(),
                ]
            )?;
        }
        CodeEvent::CodesGenerated { batch_id, chunk, codes } => {
            let first_seq = i64::from(*chunk) * careledger_events::codes::CODES_PER_CHUNK as i64;
            let json = serde_json::to_string(codes).unwrap_or_default();
            let sql = if pg {
                "INSERT INTO codes (code, batch_id, seq, status)
                 SELECT c, $1, $2 + o - 1, 'available' FROM jsonb_array_elements_text($3::jsonb) WITH ORDINALITY AS t(c, o)"
            } else {
                "INSERT INTO codes (code, batch_id, seq, status)
                 SELECT value, $1, $2 + key, 'available' FROM json_each($3)"
            };
            sql_exec!(tx.exec(), sql, [batch_id.to_string(), first_seq, json])?;
            bump(tx, &batch_id.to_string(), codes.len() as i64, 0, 0).await?;
        }
        CodeEvent::CodesReserved { batch_id, codes, reservation_id, .. } => {
            let json = serde_json::to_string(codes).unwrap_or_default();
            let update = if pg {
                "UPDATE codes SET status = 'reserved', reservation_id = $2
                 WHERE code IN (SELECT jsonb_array_elements_text($1::jsonb))"
            } else {
                "UPDATE codes SET status = 'reserved', reservation_id = $2 WHERE code IN (SELECT value FROM json_each($1))"
            };
            sql_exec!(tx.exec(), update, [json.as_str(), reservation_id.to_string()])?;
            bump(tx, &batch_id.to_string(), -(codes.len() as i64), codes.len() as i64, 0).await?;
            let detail = serde_json::json!({ "reservation_id": reservation_id });
            history(tx, recorded, &json, detail).await?;
        }
        CodeEvent::CodeAssigned { .. } => assign_all(tx, &[(recorded, event.clone())]).await?,
        CodeEvent::ControlNumberLinked { .. } => link_all(tx, &[(recorded, event.clone())]).await?,
    }
    Ok(())
}

/// A run of assignments and control-number links, in log order. The two commute: an assignment
/// sets status, insuree and json_ext, a link only the control number, and history rows are keyed by
/// position; so the run is applied as all its assignments, then all its links.
async fn apply_run(tx: &mut Tx, run: &[(&RecordedEvent, CodeEvent)]) -> Result<(), ProjectionError> {
    let (assignments, links): (Vec<_>, Vec<_>) =
        run.iter().cloned().partition(|(_, e)| matches!(e, CodeEvent::CodeAssigned { .. }));
    assign_all(tx, &assignments).await?;
    link_all(tx, &links).await
}

/// A run of `ControlNumberLinked` events. A code linked twice in one run keeps the later number:
/// the rows are deduplicated keeping the last, as applying them one by one would.
async fn link_all(tx: &mut Tx, run: &[(&RecordedEvent, CodeEvent)]) -> Result<(), ProjectionError> {
    if run.is_empty() {
        return Ok(());
    }
    let mut latest: std::collections::HashMap<&str, &str> = Default::default();
    let mut history_rows = Vec::with_capacity(run.len());
    for (recorded, event) in run {
        if let CodeEvent::ControlNumberLinked { code, control_number, .. } = event {
            latest.insert(code.as_str(), control_number.as_str());
            history_rows.push(history_row(recorded, code, serde_json::json!({ "control_number": control_number })));
        }
    }
    let rows: Vec<serde_json::Value> =
        latest.into_iter().map(|(code, cn)| serde_json::json!({ "code": code, "control_number": cn })).collect();
    let update = if tx.backend() == Backend::Postgres {
        "UPDATE codes c SET control_number = r->>'control_number'
         FROM jsonb_array_elements($1::jsonb) r WHERE c.code = r->>'code'"
    } else {
        "UPDATE codes SET control_number = r.control_number
         FROM (SELECT json_extract(value, '$.code') AS code, json_extract(value, '$.control_number') AS control_number
               FROM json_each($1)) AS r
         WHERE codes.code = r.code"
    };
    sql_exec!(tx.exec(), update, [serde_json::Value::Array(rows).to_string()])?;
    insert_history(tx, &history_rows).await
}

/// A run of `CodeAssigned` events (each code at most once: a code is assigned once).
async fn assign_all(tx: &mut Tx, run: &[(&RecordedEvent, CodeEvent)]) -> Result<(), ProjectionError> {
    if run.is_empty() {
        return Ok(());
    }
    let pg = tx.backend() == Backend::Postgres;
    let mut rows = Vec::with_capacity(run.len());
    let mut history_rows = Vec::with_capacity(run.len());
    for (recorded, event) in run {
        if let CodeEvent::CodeAssigned { code, insuree_id, json_ext, .. } = event {
            rows.push(serde_json::json!({
                "code": code, "insuree_id": insuree_id, "json_ext": json_ext.as_ref().map(|j| j.to_string()),
            }));
            history_rows.push(history_row(recorded, code, serde_json::json!({ "insuree_id": insuree_id })));
        }
    }
    let rows = serde_json::Value::Array(rows).to_string();
    // the counters move by the status each code had before
    let before_sql = if pg {
        "SELECT c.code, c.status FROM codes c JOIN jsonb_array_elements($1::jsonb) r ON c.code = r->>'code'"
    } else {
        "SELECT c.code, c.status FROM codes c JOIN json_each($1) r ON c.code = json_extract(r.value, '$.code')"
    };
    let before: std::collections::HashMap<String, String> =
        sql_fetch_all!(tx.exec(), before_sql, [rows.as_str()], |row| Ok((row.try_get(0)?, row.try_get(1)?)))?
            .into_iter()
            .collect();
    let update = if pg {
        "UPDATE codes c SET status = 'assigned', insuree_id = r->>'insuree_id', json_ext = r->>'json_ext'
         FROM jsonb_array_elements($1::jsonb) r WHERE c.code = r->>'code'"
    } else {
        "UPDATE codes SET status = 'assigned', insuree_id = r.insuree_id, json_ext = r.json_ext
         FROM (SELECT json_extract(value, '$.code') AS code, json_extract(value, '$.insuree_id') AS insuree_id,
                      json_extract(value, '$.json_ext') AS json_ext FROM json_each($1)) AS r
         WHERE codes.code = r.code"
    };
    sql_exec!(tx.exec(), update, [rows.as_str()])?;
    let mut counters: std::collections::BTreeMap<String, (i64, i64, i64)> = Default::default();
    for (_, event) in run {
        if let CodeEvent::CodeAssigned { batch_id, code, .. } = event {
            let c = counters.entry(batch_id.to_string()).or_default();
            match before.get(code.as_str()).map(String::as_str) {
                Some("available") => c.0 -= 1,
                Some("reserved") => c.1 -= 1,
                _ => {}
            }
            c.2 += 1;
        }
    }
    for (batch_id, (available, reserved, assigned)) in counters {
        bump(tx, &batch_id, available, reserved, assigned).await?;
    }
    insert_history(tx, &history_rows).await
}

async fn bump(
    tx: &mut Tx,
    batch_id: &str,
    available: i64,
    reserved: i64,
    assigned: i64,
) -> Result<(), ProjectionError> {
    sql_exec!(
        tx.exec(),
        "UPDATE code_batches SET available = available + $2, reserved = reserved + $3, assigned = assigned + $4
         WHERE batch_id = $1",
        [batch_id, available, reserved, assigned]
    )?;
    Ok(())
}

/// A history row as `insert_history` takes it.
fn history_row(recorded: &RecordedEvent, code: &str, detail: serde_json::Value) -> serde_json::Value {
    let m = &recorded.metadata;
    serde_json::json!({
        "code": code, "position": recorded.position, "event_type": recorded.event_type,
        "recorded_at": text(&recorded.recorded_at), "user_id": m.actor.user_id, "legal_entity_id": m.actor.legal_entity_id,
        "command": m.command, "correlation_id": m.correlation_id.to_string(), "detail": detail.to_string(),
    })
}

/// History rows of several events in one statement.
async fn insert_history(tx: &mut Tx, rows: &[serde_json::Value]) -> Result<(), ProjectionError> {
    let sql = match tx.backend() {
        Backend::Postgres => {
            "INSERT INTO code_history (code, position, event_type, recorded_at, user_id, legal_entity_id, command, correlation_id, detail)
             SELECT r->>'code', (r->>'position')::bigint, r->>'event_type', r->>'recorded_at', r->>'user_id',
                    r->>'legal_entity_id', r->>'command', r->>'correlation_id', r->>'detail'
             FROM jsonb_array_elements($1::jsonb) r"
        }
        Backend::Sqlite => {
            "INSERT INTO code_history (code, position, event_type, recorded_at, user_id, legal_entity_id, command, correlation_id, detail)
             SELECT json_extract(value, '$.code'), json_extract(value, '$.position'), json_extract(value, '$.event_type'),
                    json_extract(value, '$.recorded_at'), json_extract(value, '$.user_id'),
                    json_extract(value, '$.legal_entity_id'), json_extract(value, '$.command'),
                    json_extract(value, '$.correlation_id'), json_extract(value, '$.detail')
             FROM json_each($1) WHERE true"
        }
    };
    sql_exec!(tx.exec(), sql, [serde_json::Value::Array(rows.to_vec()).to_string()])?;
    Ok(())
}

/// One history row per code of a JSON array of codes.
async fn history(
    tx: &mut Tx,
    recorded: &RecordedEvent,
    codes: &str,
    detail: serde_json::Value,
) -> Result<(), ProjectionError> {
    let sql = match tx.backend() {
        Backend::Postgres => {
            "INSERT INTO code_history (code, position, event_type, recorded_at, user_id, legal_entity_id, command, correlation_id, detail)
             SELECT c, $2, $3, $4, $5, $6, $7, $8, $9 FROM jsonb_array_elements_text($1::jsonb) AS t(c)"
        }
        Backend::Sqlite => {
            "INSERT INTO code_history (code, position, event_type, recorded_at, user_id, legal_entity_id, command, correlation_id, detail)
             SELECT value, $2, $3, $4, $5, $6, $7, $8, $9 FROM json_each($1)"
        }
    };
    let m = &recorded.metadata;
    sql_exec!(
        tx.exec(),
        sql,
        [
            codes,
            recorded.position,
            recorded.event_type.as_str(),
            text(&recorded.recorded_at),
            m.actor.user_id.as_deref(),
            m.actor.legal_entity_id.as_deref(),
            m.command.as_str(),
            m.correlation_id.to_string(),
            detail.to_string(),
        ]
    )?;
    Ok(())
}
