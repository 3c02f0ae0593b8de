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
use serde::Serialize;
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
                        entities.push(Entity::of(recorded, requisition.clone(), entity_type, entity_id, &issued_at));
                        numbers.push(Number {
                            requisition,
                            encounter_id,
                            salt,
                            issued_at: text(&issued_at),
                            issued_position: recorded.position,
                            issued_by: actor.user_id.clone(),
                            issued_for: actor.legal_entity_id.clone(),
                            correlation_id: recorded.metadata.correlation_id,
                        });
                    }
                    RequisitionEvent::RequisitionEntityAdded {
                        requisition, entity_type, entity_id, added_at, ..
                    } => {
                        entities.push(Entity::of(recorded, requisition, entity_type, entity_id, &added_at));
                    }
                }
            }
            // the numbers first: an entity added in this batch may belong to a number issued in it
            bulk::write(tx, bulk::insert(tx.backend(), "requisitions", &REQUISITION), numbers).await?;
            bulk::write(tx, bulk::insert(tx.backend(), "requisition_entities", &ENTITY), entities).await?;
            Ok(())
        })
    }
}

/// A row of `requisitions`, serialised as the insert takes it (the columns of [`REQUISITION`]).
#[derive(Serialize)]
struct Number {
    requisition: String,
    encounter_id: Uuid,
    salt: String,
    issued_at: String,
    issued_position: i64,
    issued_by: Option<String>,
    issued_for: Option<String>,
    correlation_id: Uuid,
}

/// A row of `requisition_entities` (the columns of [`ENTITY`]).
#[derive(Serialize)]
struct Entity {
    requisition: String,
    entity_type: &'static str,
    entity_id: Uuid,
    added_at: String,
    position: i64,
}

impl Entity {
    fn of(
        recorded: &RecordedEvent,
        requisition: String,
        entity_type: EntityType,
        entity_id: Uuid,
        added_at: &DateTime<Utc>,
    ) -> Self {
        Entity {
            requisition,
            entity_type: entity_type.name(),
            entity_id,
            added_at: text(added_at),
            position: recorded.position,
        }
    }
}
