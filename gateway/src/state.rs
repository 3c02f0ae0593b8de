//! What every handler shares.

use std::sync::Arc;

use careledger_domain::claims::Claim;
use careledger_domain::codes::CodeBatch;
use careledger_domain::requisitions::EncounterRequisition;
use careledger_projections::Projections;
use careledger_projections::claims::ReferenceCache;
use careledger_store::EventStore;

use crate::Config;
use crate::auth::Keys;
use crate::handler::AggregateCache;

/// Cloned for every request (axum's `State`), so it is one `Arc`: cloning the services one by one
/// took a dozen atomic increments and two allocations (the JWT keys' bytes) per request.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// What every handler shares, behind [`AppState`].
pub struct Services {
    pub store: EventStore,
    pub projections: Arc<Projections>,
    pub config: Arc<Config>,
    pub keys: Keys,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Recently used code batches, kept folded so a command on a big batch reads only new events.
    pub batches: Arc<AggregateCache<CodeBatch>>,
    /// The relay's state, when one runs (`NATS_URL`).
    pub relay: Option<tokio::sync::watch::Receiver<crate::relay::RelayStatus>>,
    /// The command intake's state, when one runs (`NATS_URL`).
    pub intake: Option<tokio::sync::watch::Receiver<crate::intake::IntakeStatus>>,
    /// The background sync's state, when one runs (`CARELEDGER_SYNC_PEER`).
    pub sync: Option<tokio::sync::watch::Receiver<crate::sync_peer::SyncStatus>>,
    /// Encounters whose requisition was asked for again, so that concurrent requests for one
    /// encounter in this process take turns instead of conflicting.
    pub encounters: Arc<AggregateCache<EncounterRequisition>>,
    /// Recently used claims, kept folded: a claim's commands take turns in this process.
    pub claims: Arc<AggregateCache<Claim>>,
    /// Legal entities and divisions equipment commands read, kept folded.
    pub registry: Arc<crate::registry::RegistryReferences>,
    /// The reference data submissions are checked against, as of a version of the read model
    /// (see `ReferenceCache` for why a submission never sees it older than the read model).
    pub claims_reference: Arc<ReferenceCache>,
}
