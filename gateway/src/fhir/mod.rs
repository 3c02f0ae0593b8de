//! The FHIR R4 face over HTTP (`/fhir`, issue #21): `GET /fhir/metadata`, read
//! `GET /fhir/{type}/{id}` and search `GET /fhir/{type}?identifier=...`, answered as
//! `application/fhir+json`, errors as `OperationOutcome`s. The resources are made by
//! `careledger-fhir` from the read models; this module reads the request and picks the rows.
//!
//! Served: `Patient` (insurees), `Coverage` (policies), `Claim` and `ClaimResponse` (a claim as
//! entered, and as decided), and read-only `Organization` (health facilities and legal entities),
//! `Device` (equipment) and `ServiceRequest` (the service requests sharing a requisition number).
//! Reads need the right to read that data (openIMIS' insuree search `101101` for `Patient`, policy
//! search `101201` for `Coverage`, claims' `111001` for `Claim` and `ClaimResponse`, claims' or
//! `equipment:read` for `Organization`, `equipment:read` for `Device`, `service_request:read` for
//! `ServiceRequest`) or `sync:read` (a sync peer's token); a token scoped to a health facility
//! finds only that facility's claims, and one acting for a legal entity only its equipment, as in
//! their APIs.

mod changes;
mod import;
mod register;
mod search;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use careledger_app::Operation;
use careledger_fhir::{FHIR_JSON, IssueType, Systems, operation_outcome};
use careledger_projections::claims::{ClaimQueries, Registers, Select};
use careledger_projections::registry::RegistryQueries;
use careledger_projections::requisitions::RequisitionQueries;
use serde_json::Value;

use crate::auth::User;
use crate::http::envelope::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/fhir", post(import::import).layer(import::body_limit()))
        .route("/fhir/metadata", get(metadata))
        .route("/fhir/$changes", get(changes::changes))
        .route("/fhir/{resource_type}", get(search::search))
        .route("/fhir/{resource_type}/{id}", get(read))
}

/// A FHIR answer: the resource (or Bundle) as `application/fhir+json`.
pub struct Fhir(StatusCode, Value);

impl IntoResponse for Fhir {
    fn into_response(self) -> Response {
        FhirText(self.0, serde_json::to_vec(&self.1).unwrap_or_default()).into_response()
    }
}

/// A FHIR answer already written as JSON text.
pub struct FhirText(StatusCode, Vec<u8>);

impl IntoResponse for FhirText {
    fn into_response(self) -> Response {
        (self.0, [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))], self.1).into_response()
    }
}

/// An error under `/fhir`: an `OperationOutcome` with the status it goes with.
#[derive(Debug)]
pub struct FhirError {
    status: StatusCode,
    issue: IssueType,
    message: String,
    location: Option<String>,
}

impl FhirError {
    fn new(status: StatusCode, issue: IssueType, message: impl Into<String>) -> Self {
        FhirError { status, issue, message: message.into(), location: None }
    }

    /// 400: a search parameter that is not one, named.
    fn parameter(name: &str, message: impl Into<String>) -> Self {
        FhirError {
            location: Some(name.to_string()),
            ..Self::new(StatusCode::BAD_REQUEST, IssueType::Invalid, message)
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, IssueType::NotFound, message)
    }
}

/// The service's errors (a database gone, an expired token) told as an `OperationOutcome`, with
/// the same status and the same message the envelope would give (a 5xx shows no internals).
impl From<ApiError> for FhirError {
    fn from(e: ApiError) -> Self {
        let issue = match e.status.as_u16() {
            401 => IssueType::Security,
            403 => IssueType::Forbidden,
            404 => IssueType::NotFound,
            409 => IssueType::Conflict,
            400 | 413 | 415 | 422 => IssueType::Invalid,
            503 => IssueType::Transient,
            _ => IssueType::Exception,
        };
        let mut error = FhirError::new(e.status, issue, e.shown_message());
        if let Some(first) = e.invalid.first() {
            error.location = Some(first.entry.clone());
        }
        error
    }
}

impl From<careledger_projections::ProjectionError> for FhirError {
    fn from(e: careledger_projections::ProjectionError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, message = %self.message, "fhir request failed");
        }
        Fhir(self.status, operation_outcome(self.issue, &self.message, self.location.as_deref())).into_response()
    }
}

/// The resource types served, and how each is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Served {
    Patient,
    Coverage,
    Claim,
    ClaimResponse,
    Organization,
    Device,
    ServiceRequest,
}

impl Served {
    fn of(name: &str) -> Result<Served, FhirError> {
        match name {
            "Patient" => Ok(Served::Patient),
            "Coverage" => Ok(Served::Coverage),
            "Claim" => Ok(Served::Claim),
            "ClaimResponse" => Ok(Served::ClaimResponse),
            "Organization" => Ok(Served::Organization),
            "Device" => Ok(Served::Device),
            "ServiceRequest" => Ok(Served::ServiceRequest),
            other => Err(FhirError::new(
                StatusCode::NOT_FOUND,
                IssueType::NotSupported,
                format!("resource type {other} is not served here (see /fhir/metadata)"),
            )),
        }
    }

    /// The operations whose permission reads this type (besides `sync_read`): organizations are
    /// the facilities claims name and the legal entities equipment belongs to.
    fn operations(self) -> &'static [Operation] {
        match self {
            Served::Patient => &[Operation::ReadInsurees],
            Served::Coverage => &[Operation::ReadPolicies],
            Served::Claim | Served::ClaimResponse => &[Operation::ReadClaims],
            Served::Organization => &[Operation::ReadClaims, Operation::ReadEquipment],
            Served::Device => &[Operation::ReadEquipment],
            Served::ServiceRequest => &[Operation::ReadRequisition],
        }
    }

    /// The resources `select` finds, as FHIR JSON, and the last id the page read (a page that
    /// read `select.limit` rows may have a next one, even when some of them were not shown).
    /// `requisition` is `ServiceRequest`'s own search parameter (`requisition=<number>`).
    async fn find(
        self,
        state: &AppState,
        user: &User,
        select: &Select,
        requisition: Option<&str>,
    ) -> Result<Found, FhirError> {
        let systems = systems(state);
        let db = state.store.db();
        let registers = Registers(db);
        let mut found = Found::default();
        match self {
            Served::Organization => {
                for row in careledger_projections::registry::organizations(db, select).await? {
                    // a facility code that is not a FHIR id (a space, an underscore, 65
                    // characters) cannot be one's id: it is counted and not shown (README)
                    let shown = careledger_fhir::is_id(&row.id).then(|| careledger_fhir::organization(&row, &systems));
                    found.read(&row.id, shown);
                }
            }
            Served::Device => {
                let legal_entity = device_scope(state, user)?;
                for e in RegistryQueries(db).devices(select, legal_entity).await? {
                    found.read(&e.id, Some(careledger_fhir::device(&e, &systems)));
                }
            }
            Served::ServiceRequest => {
                for row in RequisitionQueries(db).service_requests(select, requisition).await? {
                    found.read(&row.service_request_id, Some(careledger_fhir::service_request(&row, &systems)));
                }
            }
            Served::Patient => {
                for row in registers.insurees(select).await? {
                    found.read(&row.insuree_id, Some(careledger_fhir::patient(&row, &systems)));
                }
            }
            Served::Coverage => {
                for row in registers.policies(select).await? {
                    found.read(&row.policy_id, Some(careledger_fhir::coverage(&row, &systems)));
                }
            }
            Served::Claim | Served::ClaimResponse => {
                let facility = user.health_facility.as_deref();
                for id in registers.claim_ids(select, facility).await? {
                    let resource = visible_claim(state, user, &id).await?.map(|detail| match self {
                        Served::Claim => careledger_fhir::claim(&detail, &systems),
                        _ => careledger_fhir::claim_response(&detail, &systems),
                    });
                    found.read(&id, resource);
                }
            }
        }
        Ok(found)
    }
}

/// Whose equipment a caller finds as `Device`s: its legal entity's (a token's `client_id`, as in
/// the equipment API), or every legal entity's for a sync peer's token acting for none.
fn device_scope<'u>(state: &AppState, user: &'u User) -> Result<Option<&'u str>, FhirError> {
    match user.legal_entity_id.as_deref() {
        Some(own) => Ok(Some(own)),
        None if user.holds(state.config.permissions.of(Operation::SyncRead)) => Ok(None),
        None => Err(FhirError::new(
            StatusCode::FORBIDDEN,
            IssueType::Forbidden,
            "Access denied. The token acts for no legal entity (client_id is missing)",
        )),
    }
}

/// The claim with its lines as the read model holds it, if the caller may see it: a claim deleted
/// since it was found has left, and one moved to another facility is no longer a facility-scoped
/// caller's.
async fn visible_claim(
    state: &AppState,
    user: &User,
    id: &str,
) -> Result<Option<careledger_projections::claims::ClaimDetail>, FhirError> {
    let facility = user.health_facility.as_deref();
    let detail = ClaimQueries(state.store.db()).claim_detail(id).await?;
    Ok(detail.filter(|d| facility.is_none_or(|f| d.claim.health_facility == f)))
}

/// What a search read: the resources to show, how many rows it read and the last one's id.
#[derive(Default)]
struct Found {
    resources: Vec<Value>,
    rows: i64,
    last_id: Option<String>,
}

impl Found {
    fn read(&mut self, id: &str, resource: Option<Value>) {
        self.rows += 1;
        self.last_id = Some(id.to_string());
        self.resources.extend(resource);
    }
}

fn systems(state: &AppState) -> Systems {
    Systems { own: state.config.fhir_system.clone() }
}

/// 401 without a valid token, 403 unless it may read `served`'s data or is a sync peer's.
fn may_read(state: &AppState, user: Result<User, ApiError>, served: Served) -> Result<User, FhirError> {
    let user = user?;
    let permissions = &state.config.permissions;
    let mut allowed: Vec<&str> = served.operations().iter().map(|o| permissions.of(*o)).collect();
    allowed.push(permissions.of(Operation::SyncRead));
    if allowed.iter().any(|p| user.holds(p)) {
        return Ok(user);
    }
    Err(FhirError::new(
        StatusCode::FORBIDDEN,
        IssueType::Forbidden,
        format!("Your scope does not allow to access this resource. Missing allowances: {}", allowed.join(" or ")),
    ))
}

/// This server's FHIR base URL, as the caller reached it.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let proto = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or("http");
    format!("{proto}://{host}/fhir")
}

/// `GET /fhir/metadata`: the CapabilityStatement (no token needed, as FHIR clients expect).
async fn metadata(State(state): State<AppState>, headers: HeaderMap) -> Fhir {
    let date = careledger_projections::time::text(&chrono::Utc::now());
    let (base, system) = (base_url(&headers), &state.config.fhir_system);
    Fhir(StatusCode::OK, careledger_fhir::capability_statement(&base, system, &date, env!("CARGO_PKG_VERSION")))
}

/// `GET /fhir/{type}/{id}`
async fn read(
    State(state): State<AppState>,
    Path((resource_type, id)): Path<(String, String)>,
    user: Result<User, ApiError>,
) -> Result<Fhir, FhirError> {
    let served = Served::of(&resource_type)?;
    let user = may_read(&state, user, served)?;
    let not_found = || FhirError::not_found(format!("{resource_type}/{id} is not known here"));
    if !careledger_fhir::is_id(&id) {
        return Err(not_found());
    }
    let select = Select { id: Some(id.clone()), limit: 1, ..Select::default() };
    let resource =
        served.find(&state, &user, &select, None).await?.resources.into_iter().next().ok_or_else(not_found)?;
    Ok(Fhir(StatusCode::OK, resource))
}
