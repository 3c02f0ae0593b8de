//! Folds the requisitions context's events into `requisitions` and `requisition_entities`.

use careledger_events::requisitions::{EntityType, RequisitionEvent};
use careledger_events::{DomainEvent, RecordedEvent};
use careledger_store::{Tx, sql_exec};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use uuid::Uuid;

use crate::time::text;
use crate::{ProjectionError, Projector};

pub struct RequisitionsProjector;

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

    fn apply<'a>(&'a self, tx: &'a mut Tx, events: &'a [RecordedEvent]) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            for event in events {
                if !self.handles(event) {
                    continue;
                }
                apply_one(tx, event, &event.decode::<RequisitionEvent>()?).await?;
            }
            Ok(())
        })
    }
}

async fn apply_one(tx: &mut Tx, recorded: &RecordedEvent, event: &RequisitionEvent) -> Result<(), ProjectionError> {
    match event {
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
            sql_exec!(
                tx.exec(),
                "INSERT INTO requisitions (requisition, encounter_id, salt, issued_at, issued_position,
                     issued_by, issued_for, correlation_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                [
                    requisition.as_str(),
                    encounter_id.to_string(),
                    salt.as_str(),
                    text(issued_at),
                    recorded.position,
                    actor.user_id.as_deref(),
                    actor.legal_entity_id.as_deref(),
                    recorded.metadata.correlation_id.to_string(),
                ]
            )?;
            entity(tx, recorded, requisition, *entity_type, entity_id, issued_at).await?;
        }
        RequisitionEvent::RequisitionEntityAdded { requisition, entity_type, entity_id, added_at, .. } => {
            entity(tx, recorded, requisition, *entity_type, entity_id, added_at).await?;
        }
    }
    Ok(())
}

async fn entity(
    tx: &mut Tx,
    recorded: &RecordedEvent,
    requisition: &str,
    entity_type: EntityType,
    entity_id: &Uuid,
    added_at: &DateTime<Utc>,
) -> Result<(), ProjectionError> {
    sql_exec!(
        tx.exec(),
        "INSERT INTO requisition_entities (requisition, entity_type, entity_id, added_at, position)
         VALUES ($1, $2, $3, $4, $5)",
        [requisition, entity_type.name(), entity_id.to_string(), text(added_at), recorded.position]
    )?;
    Ok(())
}
