//! Folds the registry's events into `legal_entities`, `divisions`, `equipment`,
//! `equipment_division_links` and `equipment_status_history`.
//!
//! Registrations dominate the log of this context (the benchmark registers thousands a second), so
//! consecutive `EquipmentRegistered` events of a batch are written with three statements in all
//! (equipment, first links, first status history rows), the rows passed as one JSON array; every
//! other event is a statement or three of its own. Order is kept: a run of registrations is
//! written before the next event of another kind is applied.

use std::sync::Arc;

use careledger_events::registry::{EquipmentRegistration, EquipmentStatus, LinkStatus, RegistryEvent};
use careledger_events::{DomainEvent, RecordedEvent};
use careledger_store::{Tx, sql_exec};
use futures::future::BoxFuture;
use serde_json::{Value, json};

use crate::bulk::{self, Column};
use crate::time::text;
use crate::{ProjectionError, Projector};

pub struct RegistryProjector;

impl Projector for RegistryProjector {
    fn name(&self) -> &'static str {
        "registry"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["legal_entities", "divisions", "equipment", "equipment_division_links", "equipment_status_history"]
    }

    fn handles(&self, event: &RecordedEvent) -> bool {
        careledger_events::stream_context(&event.stream) == RegistryEvent::CONTEXT
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut Tx,
        events: &'a [Arc<RecordedEvent>],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let mut registrations = Registrations::default();
            for recorded in events {
                if !self.handles(recorded) {
                    continue;
                }
                match recorded.decode::<RegistryEvent>()? {
                    RegistryEvent::EquipmentRegistered(r) => registrations.push(recorded, &r),
                    event => {
                        registrations.flush(tx).await?;
                        apply_one(tx, recorded, &event).await?;
                    }
                }
            }
            registrations.flush(tx).await
        })
    }
}

/// Who did it: the token's `sub` recorded with the event.
fn by(recorded: &RecordedEvent) -> Option<&str> {
    recorded.metadata.actor.user_id.as_deref()
}

/// Rows of a run of registrations, written together.
#[derive(Default)]
struct Registrations {
    equipment: Vec<Value>,
    links: Vec<Value>,
    history: Vec<Value>,
}

const EQUIPMENT_COLUMNS: [Column; 24] = [
    Column::Text("equipment_id"),
    Column::Text("legal_entity_id"),
    Column::Text("division_id"),
    Column::Text("division_link_id"),
    Column::Text("linked_at"),
    Column::Text("type"),
    Column::Text("external_id"),
    Column::Text("name"),
    Column::Text("serial_number"),
    Column::Text("manufacturer"),
    Column::Text("model_number"),
    Column::Text("lot_number"),
    Column::Text("udi"),
    Column::Text("manufacture_date"),
    Column::Text("expiration_date"),
    Column::Text("note"),
    Column::Text("status"),
    Column::Text("status_reason"),
    Column::Text("availability_status"),
    Column::True("is_active"),
    Column::Text("inserted_at"),
    Column::Text("inserted_by"),
    Column::Text("updated_at"),
    Column::Text("updated_by"),
];

const LINK_COLUMNS: [Column; 8] = [
    Column::Text("link_id"),
    Column::Text("equipment_id"),
    Column::Text("division_id"),
    Column::Text("status"),
    Column::Text("inserted_at"),
    Column::Text("inserted_by"),
    Column::Text("updated_at"),
    Column::Text("updated_by"),
];

const HISTORY_COLUMNS: [Column; 6] = [
    Column::Text("equipment_id"),
    Column::BigInt("position"),
    Column::Text("status"),
    Column::Text("reason"),
    Column::Text("inserted_at"),
    Column::Text("inserted_by"),
];

impl Registrations {
    fn push(&mut self, recorded: &RecordedEvent, r: &EquipmentRegistration) {
        let at = text(&r.registered_at);
        let by = by(recorded);
        let date = |d: &Option<chrono::NaiveDate>| d.map(|d| d.to_string());
        self.equipment.push(json!({
            "equipment_id": r.equipment_id.to_string(),
            "legal_entity_id": r.legal_entity_id.to_string(),
            "division_id": r.division_id.to_string(),
            "division_link_id": r.link_id.to_string(),
            "linked_at": at,
            "type": r.equipment_type,
            "external_id": r.external_id,
            "name": r.name,
            "serial_number": r.serial_number,
            "manufacturer": r.manufacturer,
            "model_number": r.model_number,
            "lot_number": r.lot_number,
            "udi": serde_json::to_string(&r.udi).unwrap_or_else(|_| "[]".into()),
            "manufacture_date": date(&r.manufacture_date),
            "expiration_date": date(&r.expiration_date),
            "note": r.note,
            "status": EquipmentStatus::Active.name(),
            "status_reason": Value::Null,
            "availability_status": r.availability_status.name(),
            "inserted_at": at,
            "inserted_by": by,
            "updated_at": at,
            "updated_by": by,
        }));
        self.links.push(json!({
            "link_id": r.link_id.to_string(),
            "equipment_id": r.equipment_id.to_string(),
            "division_id": r.division_id.to_string(),
            "status": LinkStatus::Active.name(),
            "inserted_at": at,
            "inserted_by": by,
            "updated_at": at,
            "updated_by": by,
        }));
        self.history.push(json!({
            "equipment_id": r.equipment_id.to_string(),
            "position": recorded.position,
            "status": EquipmentStatus::Active.name(),
            "reason": Value::Null,
            "inserted_at": at,
            "inserted_by": by,
        }));
    }

    async fn flush(&mut self, tx: &mut Tx) -> Result<(), ProjectionError> {
        if self.equipment.is_empty() {
            return Ok(());
        }
        let backend = tx.backend();
        for (table, columns, rows) in [
            ("equipment", &EQUIPMENT_COLUMNS[..], &mut self.equipment),
            ("equipment_division_links", &LINK_COLUMNS[..], &mut self.links),
            ("equipment_status_history", &HISTORY_COLUMNS[..], &mut self.history),
        ] {
            let sql = bulk::insert(backend, table, columns);
            let array = Value::Array(std::mem::take(rows)).to_string();
            // the statement is built from this module's constants only, never from input
            sql_exec!(tx.exec(), sqlx::AssertSqlSafe(sql), [array])?;
        }
        Ok(())
    }
}

async fn apply_one(tx: &mut Tx, recorded: &RecordedEvent, event: &RegistryEvent) -> Result<(), ProjectionError> {
    let by = by(recorded);
    match event {
        RegistryEvent::LegalEntityRegistered {
            legal_entity_id,
            name,
            edrpou,
            legal_entity_type,
            status,
            registered_at,
        } => {
            let at = text(registered_at);
            sql_exec!(
                tx.exec(),
                "INSERT INTO legal_entities (legal_entity_id, name, edrpou, type, status, inserted_at, inserted_by,
                     updated_at, updated_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $6, $7)",
                [
                    legal_entity_id.to_string(),
                    name.as_str(),
                    edrpou.as_str(),
                    legal_entity_type.name(),
                    status.name(),
                    at,
                    by
                ]
            )?;
        }
        RegistryEvent::LegalEntityStatusChanged { legal_entity_id, status, changed_at } => {
            sql_exec!(
                tx.exec(),
                "UPDATE legal_entities SET status = $2, updated_at = $3, updated_by = $4 WHERE legal_entity_id = $1",
                [legal_entity_id.to_string(), status.name(), text(changed_at), by]
            )?;
        }
        RegistryEvent::DivisionRegistered {
            division_id,
            legal_entity_id,
            name,
            division_type,
            status,
            registered_at,
        } => {
            let at = text(registered_at);
            sql_exec!(
                tx.exec(),
                "INSERT INTO divisions (division_id, legal_entity_id, name, type, status, is_active, inserted_at,
                     inserted_by, updated_at, updated_by)
                 VALUES ($1, $2, $3, $4, $5, TRUE, $6, $7, $6, $7)",
                [
                    division_id.to_string(),
                    legal_entity_id.to_string(),
                    name.as_str(),
                    division_type.name(),
                    status.name(),
                    at,
                    by
                ]
            )?;
        }
        RegistryEvent::DivisionStatusChanged { division_id, status, is_active, changed_at } => {
            sql_exec!(
                tx.exec(),
                "UPDATE divisions SET status = $2, is_active = $3, updated_at = $4, updated_by = $5
                 WHERE division_id = $1",
                [division_id.to_string(), status.name(), *is_active, text(changed_at), by]
            )?;
        }
        RegistryEvent::EquipmentRegistered(_) => {
            // written in runs by `Registrations`
        }
        RegistryEvent::EquipmentDivisionLinked {
            equipment_id,
            link_id,
            division_id,
            previous_link_id,
            linked_at,
            ..
        } => {
            let at = text(linked_at);
            sql_exec!(
                tx.exec(),
                "UPDATE equipment_division_links SET status = $2, updated_at = $3, updated_by = $4 WHERE link_id = $1",
                [previous_link_id.to_string(), LinkStatus::Inactive.name(), at.as_str(), by]
            )?;
            sql_exec!(
                tx.exec(),
                "INSERT INTO equipment_division_links (link_id, equipment_id, division_id, status, inserted_at,
                     inserted_by, updated_at, updated_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $5, $6)",
                [
                    link_id.to_string(),
                    equipment_id.to_string(),
                    division_id.to_string(),
                    LinkStatus::Active.name(),
                    at.as_str(),
                    by
                ]
            )?;
            sql_exec!(
                tx.exec(),
                "UPDATE equipment SET division_id = $2, division_link_id = $3, linked_at = $4, updated_at = $4,
                     updated_by = $5
                 WHERE equipment_id = $1",
                [equipment_id.to_string(), division_id.to_string(), link_id.to_string(), at.as_str(), by]
            )?;
        }
        RegistryEvent::EquipmentStatusChanged { equipment_id, status, reason, changed_at } => {
            let at = text(changed_at);
            sql_exec!(
                tx.exec(),
                "UPDATE equipment SET status = $2, status_reason = $3, updated_at = $4, updated_by = $5
                 WHERE equipment_id = $1",
                [equipment_id.to_string(), status.name(), reason.as_deref(), at.as_str(), by]
            )?;
            sql_exec!(
                tx.exec(),
                "INSERT INTO equipment_status_history (equipment_id, position, status, reason, inserted_at, inserted_by)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                [equipment_id.to_string(), recorded.position, status.name(), reason.as_deref(), at.as_str(), by]
            )?;
        }
        RegistryEvent::EquipmentAvailabilityChanged { equipment_id, availability_status, changed_at } => {
            sql_exec!(
                tx.exec(),
                "UPDATE equipment SET availability_status = $2, updated_at = $3, updated_by = $4
                 WHERE equipment_id = $1",
                [equipment_id.to_string(), availability_status.name(), text(changed_at), by]
            )?;
        }
    }
    Ok(())
}
