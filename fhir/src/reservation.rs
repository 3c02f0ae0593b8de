//! Codes reserved to a holder for an offline node, as the sync carries them to that node: a FHIR
//! `Basic` resource (R4 has no resource for a block of pre-generated identifiers), typed by
//! [`RESERVATION_CODE`], its content in one complex extension ([`RESERVATION`]) of careledger's
//! own (`urn:careledger:` URIs: nothing else defines these elements).

use serde_json::{Value, json};

use crate::Systems;

/// The extension holding a reservation: `batch`, `reservation`, `holder-type`, `holder-code`,
/// `for-server`, the batch's code format (`length`, `modulo`, `prefix`) and one `code` per code.
pub const RESERVATION: &str = "urn:careledger:fhir:extension:code-reservation";
/// `Basic.code`'s system and code for a reservation.
pub const RESOURCE_KINDS: &str = "urn:careledger:fhir:basic-kind";
pub const RESERVATION_CODE: &str = "code-reservation";

/// A reservation as the events of the central server record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The `CodesReserved` event's id: the resource's id.
    pub id: String,
    pub batch_id: String,
    pub reservation_id: String,
    pub holder_type: i64,
    pub holder_code: String,
    pub for_server: String,
    pub length: i64,
    pub modulo: i64,
    pub prefix: String,
    pub codes: Vec<String>,
}

pub fn reservation(r: &Reservation, systems: &Systems) -> Value {
    let mut parts = vec![
        json!({ "url": "batch", "valueString": r.batch_id }),
        json!({ "url": "reservation", "valueString": r.reservation_id }),
        json!({ "url": "holder-type", "valueInteger": r.holder_type }),
        json!({ "url": "holder-code", "valueString": r.holder_code }),
        json!({ "url": "for-server", "valueUri": r.for_server }),
        json!({ "url": "length", "valueInteger": r.length }),
        json!({ "url": "modulo", "valueInteger": r.modulo }),
    ];
    // FHIR has no empty strings: no prefix is no element
    if !r.prefix.is_empty() {
        parts.push(json!({ "url": "prefix", "valueString": r.prefix }));
    }
    parts.extend(r.codes.iter().map(|c| json!({ "url": "code", "valueString": c })));
    json!({
        "resourceType": "Basic",
        "id": r.id,
        "identifier": [systems.own_id(&r.id)],
        "code": {
            "coding": [{ "system": RESOURCE_KINDS, "code": RESERVATION_CODE }],
            "text": "insurance numbers reserved to a holder, for an offline node",
        },
        "extension": [{ "url": RESERVATION, "extension": parts }],
    })
}
