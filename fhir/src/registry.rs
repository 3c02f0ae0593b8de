//! Organizations and devices, read-only: openIMIS' health facilities and eHealth's legal entities
//! as `Organization`s, eHealth's equipment as `Device`s. They are this server's reference data and
//! do not travel in the sync (a node gets the facilities it needs as register entries, whole).

use careledger_projections::registry::{EquipmentView, OrganizationKind, OrganizationRow};
use serde_json::{Value, json};

use crate::Systems;
use crate::identifier::code_identifier;

/// FHIR's organization types (`Organization.type`, extensible).
const ORGANIZATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/organization-type";

/// The care type of a health facility (openIMIS: I in-patient, O out-patient, B both).
pub const CARE_TYPE: &str = "urn:careledger:fhir:extension:care-type";

/// The availability of a device (eHealth's `availability_status`: `AVAILABLE`, ...), which R4's
/// `Device` has no element for.
pub const AVAILABILITY_STATUS: &str = "urn:careledger:fhir:extension:availability-status";

/// A business identifier without a system, its kind in `type.text` (an EDRPOU, an external id).
fn named_identifier(kind: &str, value: &str) -> Value {
    json!({ "use": "usual", "type": { "text": kind }, "value": value })
}

/// A health facility or a legal entity as an `Organization`: a facility by its code (its id here,
/// typed `Code` as openIMIS' IG types it) with its care type; a legal entity by its UUID and its
/// EDRPOU, active while its status is `ACTIVE`. Both are healthcare providers (`prov`).
pub fn organization(row: &OrganizationRow, systems: &Systems) -> Value {
    let provider =
        json!({ "coding": [{ "system": ORGANIZATION_TYPE, "code": "prov", "display": "Healthcare Provider" }] });
    let (identifier, active, extension, kind) = match row.kind {
        OrganizationKind::HealthFacility => (
            code_identifier(&row.code),
            true,
            Some(json!([{ "url": CARE_TYPE, "valueCode": row.org_type }])),
            "health facility",
        ),
        OrganizationKind::LegalEntity => {
            (named_identifier("EDRPOU", &row.code), row.status.as_deref() == Some("ACTIVE"), None, "legal entity")
        }
    };
    let mut organization = json!({
        "resourceType": "Organization",
        "id": row.id,
        "meta": { "lastUpdated": row.updated_at },
        "identifier": [systems.own_id(&row.id), identifier],
        "active": active,
        "type": [provider, { "text": format!("{kind}: {}", row.org_type) }],
        "name": row.name,
    });
    if let Some(extension) = extension {
        organization["extension"] = extension;
    }
    organization
}

/// eHealth's equipment statuses as FHIR's `device-status`.
fn device_status(status: &str) -> &'static str {
    match status {
        "ACTIVE" => "active",
        "INACTIVE" => "inactive",
        "ENTERED_IN_ERROR" => "entered-in-error",
        _ => "unknown",
    }
}

/// An equipment as a `Device`: its id and `external_id`, what identifies the device itself
/// (serial, lot, model, UDIs), its status, availability (an extension), its legal entity as owner
/// (an `Organization` served here) and its division as location (by identifier: divisions are not
/// served as `Location`s).
pub fn device(e: &EquipmentView, systems: &Systems) -> Value {
    let udi: Vec<Value> = e
        .udi
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| {
            let value = u.get("value")?.as_str()?;
            let mut carrier = json!({ "deviceIdentifier": value });
            if let Some(issuer) = u.get("assigner_name").and_then(Value::as_str) {
                carrier["issuer"] = json!(issuer);
            }
            Some(carrier)
        })
        .collect();
    let mut device = json!({
        "resourceType": "Device",
        "id": e.id,
        "meta": { "lastUpdated": e.updated_at },
        "identifier": [systems.own_id(&e.id), named_identifier("external_id", &e.external_id)],
        "status": device_status(&e.status),
        "deviceName": [{ "name": e.name, "type": "user-friendly-name" }],
        "type": { "coding": [{ "code": e.equipment_type }], "text": e.equipment_type },
        "owner": { "reference": format!("Organization/{}", e.legal_entity_id), "type": "Organization",
                   "identifier": systems.own_id(&e.legal_entity_id) },
        "location": { "type": "Location", "identifier": systems.own_id(&e.division_id) },
        "extension": [{ "url": AVAILABILITY_STATUS, "valueCode": e.availability_status }],
    });
    if !udi.is_empty() {
        device["udiCarrier"] = Value::Array(udi);
    }
    if let Some(reason) = &e.status_reason {
        device["statusReason"] = json!([{ "text": reason }]);
    }
    for (element, value) in [
        ("serialNumber", &e.serial_number),
        ("manufacturer", &e.manufacturer),
        ("modelNumber", &e.model_number),
        ("lotNumber", &e.lot_number),
        ("manufactureDate", &e.manufacture_date),
        ("expirationDate", &e.expiration_date),
    ] {
        if let Some(value) = value {
            device[element] = json!(value);
        }
    }
    if let Some(note) = &e.note {
        device["note"] = json!([{ "text": note }]);
    }
    device
}
