//! eHealth's service requests as `ServiceRequest`s, read-only, with the requisition number they
//! share on `requisition` (R4's element for "the id of the request group all of these belong to").

use careledger_projections::requisitions::ServiceRequestRow;
use serde_json::{Value, json};

use crate::Systems;

/// FHIR's extension for an element that must be there but whose value is not known.
const DATA_ABSENT_REASON: &str = "http://hl7.org/fhir/StructureDefinition/data-absent-reason";

/// A service request as careledger knows it: its id, the number it shares, its encounter (by the id
/// it was issued for: encounters are not served here) and when it was added. Its patient, status and what it asks
/// for are eHealth's, not held here: `subject` (required) says its value is unknown, `status` is
/// `unknown`.
pub fn service_request(row: &ServiceRequestRow, systems: &Systems) -> Value {
    json!({
        "resourceType": "ServiceRequest",
        "id": row.service_request_id,
        "meta": { "lastUpdated": row.added_at },
        "identifier": [systems.own_id(&row.service_request_id)],
        "requisition": { "use": "official", "type": { "text": "requisition number" }, "value": row.requisition },
        "status": "unknown",
        "intent": "order",
        "subject": { "extension": [{ "url": DATA_ABSENT_REASON, "valueCode": "unknown" }] },
        "encounter": { "type": "Encounter", "identifier": { "type": { "text": "encounter id" }, "value": row.encounter_id } },
        "authoredOn": row.added_at,
    })
}
