//! The `CapabilityStatement` (`GET /fhir/metadata`): what this server serves under `/fhir`.

use serde_json::{Value, json};

use crate::{FHIR_JSON, FHIR_VERSION};

/// The search parameters every resource type served takes.
fn search_params() -> Value {
    json!([
        { "name": "identifier", "type": "token",
          "documentation": "system|value, value (any system), |value (no system) or system| (every value of the system)" },
        { "name": "_id", "type": "token" },
        { "name": "_lastUpdated", "type": "date", "documentation": "ge<instant> or gt<instant>: changed at or after" },
        { "name": "_count", "type": "number", "documentation": "1 to 1000, 100 by default" },
    ])
}

fn resource(resource_type: &str, profile: Option<&str>) -> Value {
    let mut params = search_params();
    if resource_type == "ServiceRequest" {
        params.as_array_mut().into_iter().for_each(|p| {
            p.push(json!({ "name": "requisition", "type": "token",
                           "documentation": "the requisition number the service request shares (either scheme's form)" }))
        });
    }
    let mut r = json!({
        "type": resource_type,
        "interaction": [{ "code": "read" }, { "code": "search-type" }],
        "versioning": "no-version",
        "readHistory": false,
        "searchParam": params,
    });
    if let Some(profile) = profile {
        r["supportedProfile"] = json!([profile]);
    }
    r
}

/// The extension of `CapabilityStatement.implementation` naming the server's own identifier system
/// (`CARELEDGER_FHIR_SYSTEM`): a peer learns from it whom its Bundles come from.
pub const SERVER_SYSTEM: &str = "urn:careledger:fhir:server-system";

/// The statement, with `base` this server's FHIR base URL, `system` its identifier system and
/// `date` when it was made.
pub fn capability_statement(base: &str, system: &str, date: &str, version: &str) -> Value {
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "kind": "instance",
        "software": { "name": "careledger", "version": version },
        "implementation": {
            "description": "careledger's FHIR R4 face",
            "url": base,
            "extension": [{ "url": SERVER_SYSTEM, "valueUri": system }],
        },
        "fhirVersion": FHIR_VERSION,
        "format": [FHIR_JSON, "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Bearer JWT holding the right to read the data (openIMIS' insuree search 101101 for Patient, policy search 101201 for Coverage, claims 111001 for Claim and ClaimResponse, 111001 or equipment:read for Organization, equipment:read for Device (a token acting for a legal entity finds its own), service_request:read for ServiceRequest) or sync:read. Errors are OperationOutcomes.",
            "resource": [
                // not yet openIMIS' Patient profile: insurees upserted as reference data have no
                // names, and registered ones no structured address (fhir/README.md)
                resource("Patient", None),
                resource("Coverage", None),
                resource("Claim", None),
                resource("ClaimResponse", None),
                // read-only reference data of this server: not sent by the sync
                resource("Organization", None),
                resource("Device", None),
                resource("ServiceRequest", None),
            ],
            // the sync's import: POST [base] with a peer's transaction Bundle
            "interaction": [{
                "code": "transaction",
                "documentation": "A peer's transaction Bundle of Patients, Coverages, code reservations, the master's register entries, Claims and ClaimResponses (conditional updates by identifier), and the claims the sender deleted (conditional deletes by the sender's identifier), imported all or nothing and once per Bundle.identifier; resources are matched by identifiers, new ones keep the sender's id where free, references are translated through identifiers. Needs sync:write, and a token issued to the sender (its subject is Bundle.identifier.system).",
            }],
            // the sync's export: GET [base]/$changes?_since=<log position>&_count=<n>, a
            // transaction Bundle of conditional updates by identifier, its next link the cursor
            "operation": [{
                "name": "changes",
                "definition": "urn:careledger:OperationDefinition/changes",
                "documentation": "What changed after a log position (_since, 0 for everything; _count resources a Bundle, 1 to 1000, 100 by default), as a transaction Bundle of conditional updates by this server's identifiers; its next link carries the position reached. Needs sync:read.",
            }],
        }],
    })
}
