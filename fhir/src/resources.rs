//! The resources served: read-model rows as FHIR R4 JSON.

use careledger_projections::claims::{InsureeRow, PolicyRow};
use serde_json::{Value, json};

use crate::Systems;
use crate::identifier::code_identifier;

/// A reference to a resource of this server: its literal reference (`Patient/<id>`) and, for a
/// receiver that knows the resource by another id, its id on this server as an identifier.
fn reference(systems: &Systems, resource_type: &str, id: &str) -> Value {
    json!({
        "reference": format!("{resource_type}/{id}"),
        "type": resource_type,
        "identifier": systems.own_id(id),
    })
}

fn administrative_gender(gender: &str) -> &'static str {
    match gender {
        "M" => "male",
        "F" => "female",
        "O" => "other",
        _ => "unknown",
    }
}

/// An insuree as a `Patient` (openIMIS' IG: its UUID and its CHFID, typed `Code`); one
/// registered here also has its name, phone, whether it heads its family (the IG's
/// `patient-is-head`) and where it lives.
pub fn patient(row: &InsureeRow, systems: &Systems) -> Value {
    let mut patient = json!({
        "resourceType": "Patient",
        "id": row.insuree_id,
        "meta": { "lastUpdated": row.updated_at },
        "identifier": identifiers(vec![systems.own_id(&row.insuree_id), code_identifier(&row.chfid)], &row.identifiers),
        "gender": administrative_gender(&row.gender),
        "birthDate": row.birth_date,
    });
    if let Some(e) = &row.enrolment {
        patient["name"] = json!([{ "use": "official", "family": e.last_name, "given": [e.other_names] }]);
        let mut extensions = vec![json!({ "url": IS_HEAD, "valueBoolean": e.family_head.is_none() })];
        if let Some(head) = &e.family_head {
            extensions.push(json!({ "url": FAMILY_HEAD, "valueReference": reference(systems, "Patient", head) }));
        }
        patient["extension"] = Value::Array(extensions);
        if let Some(phone) = &e.phone {
            patient["telecom"] = json!([{ "system": "phone", "value": phone }]);
        }
        if let Some(location) = &e.location {
            patient["address"] = json!([{ "use": "home", "type": "physical", "text": location }]);
        }
    }
    patient
}

/// A resource's identifiers: its own and its business code, then the ids other servers gave it
/// (an imported resource keeps the sender's id under the sender's system).
fn identifiers(mut own: Vec<Value>, foreign: &[careledger_events::Identifier]) -> Value {
    own.extend(foreign.iter().map(|i| json!({ "use": "secondary", "system": i.system, "value": i.value })));
    Value::Array(own)
}

/// openIMIS' IG extension saying whether a patient heads its family.
const IS_HEAD: &str = "https://openimis.github.io/openimis_fhir_r4_ig/StructureDefinition/patient-is-head";

/// The head of the family a patient belongs to (careledger's own: R4's `Patient.link` links
/// records of one person, and openIMIS' IG carries families as `Group`s, which the sync does not
/// send yet). Its reference carries the head's identifier, so a peer translates it.
pub const FAMILY_HEAD: &str = "urn:careledger:fhir:extension:family-head";

/// When a policy was enrolled (R4's `Coverage` has no element for it; openIMIS' policy has).
pub const ENROL_DATE: &str = "urn:careledger:fhir:extension:enrol-date";

/// A policy as a `Coverage`: its insuree the beneficiary, its product the plan, its period, and
/// when it was enrolled (an extension), where it was enrolled rather than upserted.
pub fn coverage(row: &PolicyRow, systems: &Systems) -> Value {
    let mut coverage = json!({
        "resourceType": "Coverage",
        "id": row.policy_id,
        "meta": { "lastUpdated": row.updated_at },
        "identifier": identifiers(vec![systems.own_id(&row.policy_id)], &row.identifiers),
        "status": "active",
        "beneficiary": reference(systems, "Patient", &row.insuree_id),
        "payor": [{ "display": "the scheme of this server" }],
        "period": { "start": row.effective_date, "end": row.expiry_date },
        "class": [{
            "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": "plan" }] },
            "value": row.product_code,
            "name": "product",
        }],
    });
    if let Some(enrolled) = &row.enrol_date {
        coverage["extension"] = json!([{ "url": ENROL_DATE, "valueDate": enrolled }]);
    }
    coverage
}
