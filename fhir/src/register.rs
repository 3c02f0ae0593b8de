//! The master's register as the sync carries it to its nodes: health facilities, medical items
//! and services, price lists and products, the reference data a node's claims are checked
//! against. Each is a FHIR `Basic` resource of kind [`REGISTER_ENTRY_CODE`], holding one entry
//! exactly as careledger's upsert API takes it (`POST /api/v1/<kind>`, one of `entries`), as a
//! JSON attachment.
//!
//! Why not FHIR's own resources: R4 has none for a facility's price list or for the limits and
//! waiting periods of a product's coverage that the claim rules read (openIMIS' IG maps items to
//! `Medication`, services to `ActivityDefinition`, products to `InsurancePlan`, and leaves out
//! what careledger's rules need). Between careledger servers the entry travels whole, so a node
//! checks its claims against exactly what the master holds, and the receiver reads it with the
//! very reader (and bounds) of the upsert API.

use base64::Engine;
use serde_json::{Value, json};

use crate::Systems;
use crate::reservation::RESOURCE_KINDS;

/// `Basic.code`'s code for a register entry (system [`RESOURCE_KINDS`]).
pub const REGISTER_ENTRY_CODE: &str = "register-entry";
/// The extension holding it: `kind` (a `valueCode`, the upsert API's path) and `entry` (a
/// `valueAttachment`, `application/json`).
pub const REGISTER_ENTRY: &str = "urn:careledger:fhir:extension:register-entry";
/// The kinds, as the upsert API names its paths.
pub const REGISTER_KINDS: [&str; 5] =
    ["health-facilities", "medical-items", "medical-services", "price-lists", "products"];

/// The `Basic` of one register entry: `id` the entry's (one per entry), `kind` one of
/// [`REGISTER_KINDS`], `entry` the upsert API's form of it, `position` the sender's log position
/// of the upsert it is (as `meta.versionId`: each upsert is a version of the entry, and a later
/// one has a higher position, so a receiver never takes an older version after a newer one).
pub fn register_entry(id: &str, kind: &str, entry: &Value, position: i64, systems: &Systems) -> Value {
    let data = base64::engine::general_purpose::STANDARD.encode(entry.to_string());
    json!({
        "resourceType": "Basic",
        "id": id,
        "meta": { "versionId": position.to_string() },
        "identifier": [systems.own_id(id)],
        "code": {
            "coding": [{ "system": RESOURCE_KINDS, "code": REGISTER_ENTRY_CODE }],
            "text": "an entry of the master's register (reference data the claim rules read)",
        },
        "extension": [{ "url": REGISTER_ENTRY, "extension": [
            { "url": "kind", "valueCode": kind },
            { "url": "entry", "valueAttachment": { "contentType": "application/json", "data": data } },
        ] }],
    })
}
