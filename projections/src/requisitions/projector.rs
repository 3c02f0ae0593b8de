//! Folds the requisitions context's events into `requisitions` and `requisition_entities`.
//!
//! A batch is at most two statements, whatever its size: the numbers it issued go in as one JSON
//! array, then the entities of every number (those issued with it and those added later), as the
//! claims projector writes its runs (`bulk`). At thousands of numbers a second, two statements per
//! event were a large part of what the database did for each number.

use std::sync::Arc;

use careledger_events::requisitions::{EntityType, RequisitionEvent};
use careledger_events::{DomainEvent, RecordedEvent};
use careledger_store::Tx;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::bulk::{self, Column};
use crate::time::text;
use crate::{ProjectionError, Projector};

pub struct RequisitionsProjector;

const REQUISITION: [Column; 8] = [
    Column::Text("requisition"),
    Column::Text("encounter_id"),
    Column::Text("salt"),
    Column::Text("issued_at"),
    Column::BigInt("issued_position"),
    Column::Text("issued_by"),
    Column::Text("issued_for"),
    Column::Text("correlation_id"),
];

const ENTITY: [Column; 5] = [
    Column::Text("requisition"),
    Column::Text("entity_type"),
    Column::Text("entity_id"),
    Column::Text("added_at"),
    Column::BigInt("position"),
];

impl Projector for RequisitionsProjector {
    fn name(&self) -> &'static str {
        "requisitions"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["requisitions", "requisition_entities"]
    }

    fn handles(&self, event: &RecordedEvent) -> bool {
        careledger_events::stream_context(&event.stream) == RequisitionEvent::CONTEXT
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut Tx,
        events: &'a [Arc<RecordedEvent>],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let (mut numbers, mut entities) = (Vec::new(), Vec::new());
            for recorded in events.iter().filter(|e| self.handles(e)) {
                match recorded.decode::<RequisitionEvent>()? {
                    RequisitionEvent::RequisitionIssued {
                        encounter_id,
                        requisition,
                        salt,
                        entity_type,
                        entity_id,
                        issued_at,
                        ..
                    } => {
                        let actor = &recorded.metadata.actor;
                        numbers.push(json!({
                            "requisition": requisition,
                            "encounter_id": encounter_id.to_string(),
                            "salt": salt,
                            "issued_at": text(&issued_at),
                            "issued_position": recorded.position,
                            "issued_by": actor.user_id,
                            "issued_for": actor.legal_entity_id,
                            "correlation_id": recorded.metadata.correlation_id.to_string(),
                        }));
                        entities.push(entity(recorded, &requisition, entity_type, &entity_id, &issued_at));
                    }
                    RequisitionEvent::RequisitionEntityAdded {
                        requisition, entity_type, entity_id, added_at, ..
                    } => {
                        entities.push(entity(recorded, &requisition, entity_type, &entity_id, &added_at));
                    }
                }
            }
            // the numbers first: an entity added in this batch may belong to a number issued in it
            for (table, columns, rows) in
                [("requisitions", &REQUISITION[..], numbers), ("requisition_entities", &ENTITY[..], entities)]
            {
                bulk::write(tx, bulk::insert(tx.backend(), table, columns), rows).await?;
            }
            Ok(())
        })
    }
}

fn entity(
    recorded: &RecordedEvent,
    requisition: &str,
    entity_type: EntityType,
    entity_id: &Uuid,
    added_at: &DateTime<Utc>,
) -> Value {
    json!({
        "requisition": requisition,
        "entity_type": entity_type.name(),
        "entity_id": entity_id.to_string(),
        "added_at": text(added_at),
        "position": recorded.position,
    })
}
