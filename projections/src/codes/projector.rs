//! Folds the codes context's events into `code_batches`, `codes` and `code_history`.
//!
//! Chunks of generated codes are inserted with one statement each, the codes passed as one JSON
//! array (SQLite `json_each`, PostgreSQL `jsonb_array_elements_text`): a million codes are a
//! hundred statements, not a million.

use careledger_events::codes::CodeEvent;
use careledger_events::{DomainEvent, RecordedEvent};
use careledger_store::{Backend, Tx, sql_exec, sql_fetch_optional};
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

    fn apply<'a>(&'a self, tx: &'a mut Tx, events: &'a [RecordedEvent]) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            for event in events {
                if careledger_events::stream_context(&event.stream) != CodeEvent::CONTEXT {
                    continue;
                }
                apply_one(tx, event, &event.decode::<CodeEvent>()?).await?;
            }
            Ok(())
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
                "UPDATE codes SET status = 'reserved' WHERE code IN (SELECT jsonb_array_elements_text($1::jsonb))"
            } else {
                "UPDATE codes SET status = 'reserved' WHERE code IN (SELECT value FROM json_each($1))"
            };
            sql_exec!(tx.exec(), update, [json.as_str()])?;
            bump(tx, &batch_id.to_string(), -(codes.len() as i64), codes.len() as i64, 0).await?;
            let detail = serde_json::json!({ "reservation_id": reservation_id });
            history(tx, recorded, &json, detail).await?;
        }
        CodeEvent::CodeAssigned { batch_id, code, insuree_id, json_ext } => {
            let before =
                sql_fetch_optional!(tx.exec(), "SELECT status FROM codes WHERE code = $1", [code.as_str()], |row| row
                    .try_get::<String, _>(0))?;
            sql_exec!(
                tx.exec(),
                "UPDATE codes SET status = 'assigned', insuree_id = $2, json_ext = $3 WHERE code = $1",
                [code.as_str(), insuree_id.as_str(), json_ext.as_ref().map(|j| j.to_string())]
            )?;
            let (available, reserved) = match before.as_deref() {
                Some("available") => (-1, 0),
                Some("reserved") => (0, -1),
                _ => (0, 0),
            };
            bump(tx, &batch_id.to_string(), available, reserved, 1).await?;
            let detail = serde_json::json!({ "insuree_id": insuree_id });
            history(tx, recorded, &serde_json::to_string(&[code]).unwrap_or_default(), detail).await?;
        }
        CodeEvent::ControlNumberLinked { code, control_number, .. } => {
            sql_exec!(
                tx.exec(),
                "UPDATE codes SET control_number = $2 WHERE code = $1",
                [code.as_str(), control_number.as_str()]
            )?;
            let detail = serde_json::json!({ "control_number": control_number });
            history(tx, recorded, &serde_json::to_string(&[code]).unwrap_or_default(), detail).await?;
        }
    }
    Ok(())
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
