//! `GET /fhir/$changes?_since=P&_count=N`: what changed on this server after log position `P`, as
//! a FHIR `transaction` Bundle a peer imports (issue #21, the export side of the sync).
//!
//! Why log positions rather than `_lastUpdated`: a read model's time is when the projector wrote
//! the row, and rows are written out of commit order across transactions; a position is the log's
//! own order and never skips (DESIGN rule 2). The events after `P` name the streams that changed;
//! each becomes its resource as the read models hold it now (so a resource changed twice is sent
//! once, current). The Bundle's `next` link carries the position it reached: a peer that imported
//! the Bundle asks from there next time, and one that failed asks again from `P` and gets the same
//! resources (at least: newer changes are included, never fewer).
//!
//! Each entry is a conditional update by this server's identifier of the resource
//! (`PUT Patient?identifier=<system>|<id>`): the receiver creates what it does not know and
//! updates what it got before, matching by identifiers, never by its own ids. A claim deleted
//! here is a conditional delete (`DELETE Claim?identifier=<system>|<id>`, no resource). The Bundle's
//! `identifier` (this server's system, `changes-<from>-<to>`) names it, so that importing it twice
//! can be recognised.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use careledger_app::Operation;
use careledger_events::RecordedEvent;
use careledger_fhir::IssueType;
use careledger_projections::claims::{ClaimDetail, ClaimQueries, Select};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::{FhirError, FhirText, Served, base_url, systems};
use crate::auth::User;
use crate::http::envelope::ApiError;
use crate::state::AppState;

/// Resources per Bundle unless `_count` says otherwise, and the most it may say.
const DEFAULT_COUNT: usize = 100;
const MAX_COUNT: usize = 1000;
/// Events read from the log per round trip while looking for changed resources.
const SCAN_PAGE: i64 = 1000;

/// The resource a stream is, if it is one the sync carries.
fn resource_of(stream: &str) -> Option<(Served, &str)> {
    let (kind, id) = stream.split_once('-').and_then(|(_, rest)| rest.split_once('-'))?;
    let context = stream.split('-').next()?;
    match (context, kind) {
        ("insurees" | "claims", "insuree") => Some((Served::Patient, id)),
        ("insurees" | "claims", "policy") => Some((Served::Coverage, id)),
        ("claims", "claim") => Some((Served::Claim, id)),
        _ => None,
    }
}

/// What changed: a resource (a stream the read models render), or codes reserved for the peer
/// asking (an event, sent as it is: a reservation never changes).
enum Changed {
    /// A resource, by its id, with its version: the position of the last change of its stream
    /// the page read (`meta.versionId`, so that a receiver never takes an older version after a
    /// newer one: a late sync file, a page asked again).
    Resource(Served, String, i64),
    Reservation(Box<RecordedEvent>),
    /// An entry of the register as last upserted in the page (sent as the event holds it).
    Register(Box<RecordedEvent>),
}

/// The changes a page holds: in the order they first changed after `since`, and the position the
/// page reached (the next page's `since`).
struct Changes {
    resources: Vec<Changed>,
    reached: i64,
}

/// Codes reserved for `peer` (an offline node, by its system): only that node is sent them.
fn reserved_for(event: &RecordedEvent, peer: &str) -> bool {
    event.event_type == "CodesReserved" && event.data["for_server"].as_str() == Some(peer)
}

/// Reads the log after `since` up to `head` until `count` resources changed.
async fn changed(state: &AppState, peer: &str, since: i64, head: i64, count: usize) -> Result<Changes, FhirError> {
    let mut changes = Changes { resources: vec![], reached: since };
    // where each resource is in the page: a later change of it raises its version there
    let mut seen: HashMap<(Served, String), usize> = HashMap::new();
    // where each register stream's entry is in the page: a later upsert replaces it there
    let mut register_at: HashMap<String, usize> = HashMap::new();
    let mut after = since;
    while after < head {
        let events: Vec<RecordedEvent> = state.store.read_all(after, SCAN_PAGE).await.map_err(ApiError::from)?;
        let Some(last) = events.last() else { break };
        after = last.position;
        for event in events.iter().filter(|e| e.position <= head) {
            changes.reached = event.position;
            if reserved_for(event, peer) {
                changes.resources.push(Changed::Reservation(Box::new(event.clone())));
            } else if super::register::is_register(event) {
                // the register goes out from where it is kept: not back to the peer it came from
                if event.metadata.origin.as_ref().is_some_and(|o| o.peer == peer) {
                    continue;
                }
                let entry = Changed::Register(Box::new(event.clone()));
                match register_at.get(&event.stream) {
                    Some(&i) => {
                        changes.resources[i] = entry;
                        continue;
                    }
                    None => {
                        register_at.insert(event.stream.clone(), changes.resources.len());
                        changes.resources.push(entry);
                    }
                }
            } else if let Some((served, id)) = resource_of(&event.stream) {
                let key = (served, id.to_string());
                if let Some(&i) = seen.get(&key) {
                    if let Changed::Resource(_, _, version) = &mut changes.resources[i] {
                        *version = event.position;
                    }
                    continue;
                }
                seen.insert(key, changes.resources.len());
                changes.resources.push(Changed::Resource(served, id.to_string(), event.position));
            } else {
                continue;
            }
            if changes.resources.len() == count {
                return Ok(changes);
            }
        }
    }
    // every event up to the head was read: the next page starts after it
    changes.reached = head.max(since);
    Ok(changes)
}

/// `GET /fhir/$changes`
pub async fn changes(
    State(state): State<AppState>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    user: Result<User, ApiError>,
) -> Result<FhirText, FhirError> {
    let user = user?;
    let sync = state.config.permissions.of(Operation::SyncRead);
    if !user.holds(sync) {
        return Err(FhirError::new(
            StatusCode::FORBIDDEN,
            IssueType::Forbidden,
            format!("Your scope does not allow to access this resource. Missing allowances: {sync}"),
        ));
    }
    let (mut since, mut count) = (0i64, DEFAULT_COUNT);
    let mut seen = std::collections::HashSet::new();
    for (name, value) in &params {
        if !seen.insert(name.as_str()) {
            return Err(FhirError::parameter(name, format!("{name} is given more than once")));
        }
        match name.as_str() {
            "_since" => {
                since = value
                    .parse()
                    .ok()
                    .filter(|p: &i64| *p >= 0)
                    .ok_or_else(|| FhirError::parameter(name, "expected a log position (an integer from 0)"))?;
            }
            "_count" => {
                count =
                    value.parse().ok().filter(|c| (1..=MAX_COUNT).contains(c)).ok_or_else(|| {
                        FhirError::parameter(name, format!("expected an integer from 1 to {MAX_COUNT}"))
                    })?;
            }
            other => return Err(FhirError::parameter(other, format!("{other} is not a parameter of $changes"))),
        }
    }
    // the resources are rendered from the claims read model (which also folds enrolment):
    // once it holds every change to be sent
    let head = state.store.head().await.map_err(ApiError::from)?;
    if !state.projections.wait_for_one("claims", head, state.config.query_wait).await {
        return Err(FhirError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            IssueType::Transient,
            format!("read models have not reached position {head} yet; retry"),
        ));
    }
    let page = changed(&state, &user.id, since, head, count).await?;
    let systems = systems(&state);
    let base = base_url(&headers);
    let entries: Vec<Entry> = rendered(&state, &user, &systems, page.resources)
        .await?
        .into_iter()
        .map(|resource| entry(&base, &systems.own, resource))
        .collect();
    let bundle = Transaction {
        resource_type: "Bundle",
        identifier: BundleIdentifier { system: &systems.own, value: format!("changes-{since}-{}", page.reached) },
        kind: "transaction",
        timestamp: careledger_projections::time::text(&chrono::Utc::now()),
        link: [
            Link { relation: "self", url: format!("{base}/$changes?_since={since}&_count={count}") },
            Link { relation: "next", url: format!("{base}/$changes?_since={}&_count={count}", page.reached) },
        ],
        entry: entries,
    };
    let body = serde_json::to_vec(&bundle).map_err(|e| FhirError::from(ApiError::internal(e.to_string())))?;
    Ok(FhirText(StatusCode::OK, body))
}

/// The Bundle `$changes` answers, written straight to text: a page holds thousands of resources,
/// already serialised each (see `careledger_fhir::claim_raw`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Transaction<'a> {
    resource_type: &'static str,
    identifier: BundleIdentifier<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    link: [Link; 2],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<Entry>,
}

#[derive(Serialize)]
struct BundleIdentifier<'a> {
    system: &'a str,
    value: String,
}

#[derive(Serialize)]
struct Link {
    relation: &'static str,
    url: String,
}

/// A transaction entry: the resource, updated where the receiver knows it by this server's
/// identifier, created where it does not.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    full_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<Box<RawValue>>,
    request: Request,
}

#[derive(Serialize)]
struct Request {
    method: &'static str,
    url: String,
    #[serde(rename = "ifMatch", skip_serializing_if = "Option::is_none")]
    if_match: Option<String>,
}

/// A resource rendered for a Bundle: its type, its id, its JSON text (none: deleted here) and its
/// version (this server's log position of its last change, where it has one).
struct Rendered {
    kind: &'static str,
    id: String,
    json: Option<Box<RawValue>>,
    /// Carried by a deletion (a resource carries its own in `meta.versionId`).
    version: Option<i64>,
}

impl Rendered {
    /// A resource built as a JSON value.
    fn of(resource: Value) -> Result<Rendered, FhirError> {
        let kind = match resource["resourceType"].as_str() {
            Some("Patient") => "Patient",
            Some("Coverage") => "Coverage",
            Some("Basic") => "Basic",
            other => return Err(ApiError::internal(format!("$changes does not send {other:?}")).into()),
        };
        let id = resource["id"].as_str().unwrap_or_default().to_string();
        let json = serde_json::value::to_raw_value(&resource).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Rendered { kind, id, json: Some(json), version: None })
    }
}

/// The resources the changed streams are now, in the order they changed: a claim as entered and
/// as decided, or its deletion when it left the read model (deleted here). Each kind
/// is read in one go for the page (a resource at a time spent most of an export waiting for the
/// database).
async fn rendered(
    state: &AppState,
    user: &User,
    systems: &careledger_fhir::Systems,
    resources: Vec<Changed>,
) -> Result<Vec<Rendered>, FhirError> {
    let of = |kind: Served| -> Vec<String> {
        resources
            .iter()
            .filter_map(|c| match c {
                Changed::Resource(served, id, _) if *served == kind => Some(id.clone()),
                _ => None,
            })
            .collect()
    };
    let facility = user.health_facility.as_deref();
    let details = ClaimQueries(state.store.db()).claim_details(&of(Served::Claim)).await.map_err(ApiError::from)?;
    // a claim whose stream changed and that the read model no longer holds was deleted
    let held: std::collections::HashSet<String> = details.iter().map(|d| d.claim.uuid.clone()).collect();
    let mut claims: HashMap<String, ClaimDetail> = details
        .into_iter()
        .filter(|d| facility.is_none_or(|f| d.claim.health_facility == f))
        .map(|d| (d.claim.uuid.clone(), d))
        .collect();
    let mut registers: HashMap<(Served, String), Value> = HashMap::new();
    for kind in [Served::Patient, Served::Coverage] {
        let ids = of(kind);
        if ids.is_empty() {
            continue;
        }
        let select = Select { limit: ids.len() as i64, ids: Some(ids), ..Select::default() };
        for resource in kind.find(state, user, &select, None).await?.resources {
            let id = resource["id"].as_str().unwrap_or_default().to_string();
            registers.insert((kind, id), resource);
        }
    }
    let mut formats: HashMap<String, Value> = HashMap::new();
    let mut rendered = Vec::with_capacity(resources.len() + claims.len());
    for changed in resources {
        match changed {
            Changed::Resource(Served::Claim, id, version) => {
                if let Some(detail) = claims.remove(&id) {
                    let id = detail.claim.uuid.clone();
                    let claim = careledger_fhir::claim_raw(&detail, systems, version);
                    rendered.push(Rendered { kind: "Claim", id: id.clone(), json: Some(claim), version: None });
                    let response = careledger_fhir::claim_response_raw(&detail, systems, version);
                    rendered.push(Rendered { kind: "ClaimResponse", id, json: Some(response), version: None });
                } else if !held.contains(&id) && facility.is_none() {
                    // deleted here (a caller scoped to a facility is not told of deletions: the
                    // claim's facility has left the read model with it)
                    rendered.push(Rendered { kind: "Claim", id, json: None, version: Some(version) });
                }
            }
            Changed::Resource(served, id, version) => {
                if let Some(mut resource) = registers.remove(&(served, id)) {
                    resource["meta"]["versionId"] = Value::String(version.to_string());
                    rendered.push(Rendered::of(resource)?);
                }
            }
            Changed::Register(event) => {
                if let Some(resource) = super::register::resource(&event, systems) {
                    rendered.push(Rendered::of(resource)?);
                }
            }
            Changed::Reservation(event) => {
                // a batch's format, read once for all the page's reservations of that batch
                if !formats.contains_key(&event.stream) {
                    let generated = state.store.read_stream(&event.stream, 0, 1).await.map_err(ApiError::from)?;
                    let format = generated.first().map(|e| e.data["format"].clone()).unwrap_or_default();
                    formats.insert(event.stream.clone(), format);
                }
                rendered.push(Rendered::of(reservation(&event, &formats[&event.stream], systems))?);
            }
        }
    }
    Ok(rendered)
}

/// A `CodesReserved` event for a node as the `Basic` resource the node imports, with its batch's
/// code `format` (from the batch's first event).
fn reservation(event: &RecordedEvent, format: &Value, systems: &careledger_fhir::Systems) -> Value {
    let d = &event.data;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let r = careledger_fhir::Reservation {
        id: event.event_id.to_string(),
        batch_id: text(&d["batch_id"]),
        reservation_id: text(&d["reservation_id"]),
        holder_type: d["holder_type"].as_i64().unwrap_or_default(),
        holder_code: text(&d["holder_code"]),
        for_server: text(&d["for_server"]),
        length: format["length"].as_i64().unwrap_or_default(),
        modulo: format["modulo"].as_i64().unwrap_or_default(),
        prefix: text(&format["prefix"]),
        codes: d["codes"].as_array().into_iter().flatten().map(text).collect(),
    };
    careledger_fhir::reservation(&r, systems)
}

/// A resource deleted here (a claim) is a conditional delete by this server's identifier.
fn entry(base: &str, own_system: &str, resource: Rendered) -> Entry {
    let Rendered { kind, id, json, version } = resource;
    let url = format!("{kind}?identifier={own_system}|{id}");
    let request = match json {
        Some(_) => Request { method: "PUT", url, if_match: None },
        // the deletion's version, as a resource's is its meta.versionId
        None => Request { method: "DELETE", url, if_match: version.map(|v| format!("W/\"{v}\"")) },
    };
    Entry { full_url: format!("{base}/{kind}/{id}"), request, resource: json }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_name_the_resources_the_sync_carries() {
        let id = "0190f3a0-1111-7000-8000-00000000001e";
        assert_eq!(resource_of(&format!("insurees-insuree-{id}")), Some((Served::Patient, id)));
        assert_eq!(resource_of(&format!("claims-insuree-{id}")), Some((Served::Patient, id)));
        assert_eq!(resource_of(&format!("insurees-policy-{id}")), Some((Served::Coverage, id)));
        assert_eq!(resource_of(&format!("claims-claim-{id}")), Some((Served::Claim, id)));
        assert_eq!(resource_of(&format!("codes-batch-{id}")), None);
        assert_eq!(resource_of("claims-facility-HF1"), None);
        assert_eq!(resource_of("claims"), None);
    }
}
