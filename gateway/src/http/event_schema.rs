//! `GET /api/v1/events/schema`: the JSON Schema of every event type and of the envelope, generated
//! from the event catalogue's own types (`careledger_events::schema`), so integrators in other
//! languages can validate what they receive. Public like the OpenAPI description: it describes
//! shapes, never data.

use std::sync::OnceLock;

use axum::Router;
use axum::routing::get;
use serde_json::Value;

use crate::http::envelope::Envelope;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/events/schema", get(schema))
}

/// The catalogue, generated once: the types cannot change while the process runs.
pub fn catalogue() -> &'static Value {
    static CATALOGUE: OnceLock<Value> = OnceLock::new();
    CATALOGUE.get_or_init(careledger_events::schema::catalogue)
}

/// Whether `event_type` is the name of an event type of any context.
pub fn is_event_type(event_type: &str) -> bool {
    catalogue()["events"]
        .as_object()
        .is_some_and(|contexts| contexts.values().any(|types| types.get(event_type).is_some()))
}

async fn schema() -> Envelope {
    Envelope::ok(catalogue())
}
