//! Claims as `Claim` (what the facility asked) and `ClaimResponse` (what the scheme decided), as
//! openIMIS' FHIR R4 module shapes them (see `fhir/README.md`): items and services by their code
//! as text, the claim's status as the adjudication category, the rejection reason as its reason.

use careledger_projections::claims::{ClaimDetail, LineView};
use serde_json::{Value, json};

use crate::Systems;
use crate::identifier::code_identifier;

const IG: &str = "https://openimis.github.io/openimis_fhir_r4_ig/CodeSystem";

/// The system of careledger's figures of a claim in a `ClaimResponse` (each stage's amounts and a
/// line's status), beside openIMIS' status category: what an offline node needs to mirror the
/// master's decision whole.
pub const AMOUNTS: &str = "urn:careledger:fhir:claim-amounts";
/// The claim's rejection reason (openIMIS' code) and its category (S, D, A, H, C, O, V).
pub const REJECTION_REASON: &str = "urn:careledger:fhir:extension:rejection-reason";
pub const CLAIM_CATEGORY: &str = "urn:careledger:fhir:extension:claim-category";

/// A claim line's explanation (FHIR's `Claim.item` has no element for it).
pub const LINE_EXPLANATION: &str = "urn:careledger:fhir:extension:line-explanation";

/// The claim's type: in-patient care is institutional, out-patient professional.
fn claim_type(detail: &ClaimDetail) -> Value {
    let code = if detail.claim.care_type.as_deref() == Some("I") { "institutional" } else { "professional" };
    json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": code }] })
}

/// The insuree, by the CHFID the claim names (a logical reference: the receiver finds its
/// Patient by that identifier).
fn patient(detail: &ClaimDetail) -> Value {
    json!({ "type": "Patient", "identifier": code_identifier(&detail.claim.insuree) })
}

fn status_concept(status: i32) -> Value {
    let display = match status {
        1 => "rejected",
        2 => "entered",
        4 => "checked",
        8 => "processed",
        16 => "valuated",
        _ => "unknown",
    };
    json!({ "coding": [{ "system": format!("{IG}/claim-status"), "code": status.to_string(), "display": display }] })
}

/// Every line, items first then services, numbered from 1 as FHIR numbers them.
fn lines(detail: &ClaimDetail) -> impl Iterator<Item = (usize, &'static str, &LineView)> {
    let items = detail.items.iter().map(|l| ("item", l));
    let services = detail.services.iter().map(|l| ("service", l));
    items.chain(services).enumerate().map(|(i, (kind, line))| (i + 1, kind, line))
}

/// What the facility claimed.
pub fn claim(detail: &ClaimDetail, systems: &Systems) -> Value {
    let c = &detail.claim;
    let diagnoses: Vec<Value> = std::iter::once(&c.icd)
        .chain(&c.icd_secondary)
        .enumerate()
        .map(|(i, icd)| {
            json!({
                "sequence": i + 1,
                "diagnosisCodeableConcept": { "coding": [{ "system": format!("{IG}/diagnosis-ICD10-level1"), "code": icd }] },
            })
        })
        .collect();
    let items: Vec<Value> = lines(detail)
        .map(|(sequence, kind, line)| {
            let mut item = json!({
                "sequence": sequence,
                "category": { "coding": [{ "system": format!("{IG}/claim-item-category"), "code": kind }], "text": kind },
                "productOrService": { "text": line.code },
                "quantity": { "value": line.qty_provided },
                "unitPrice": { "value": line.price_asked },
            });
            if let Some(explanation) = &line.explanation {
                item["extension"] = json!([{ "url": LINE_EXPLANATION, "valueString": explanation }]);
            }
            item
        })
        .collect();
    let mut period = json!({ "start": c.date_from });
    if let Some(to) = &c.date_to {
        period["end"] = json!(to);
    }
    // the explanation and the guarantee as openIMIS' R4 module sends them
    let supporting: Vec<Value> = [("explanation", &c.explanation), ("guarantee", &c.guarantee_id)]
        .into_iter()
        .filter_map(|(category, value)| value.as_ref().map(|v| (category, v)))
        .enumerate()
        .map(|(i, (category, value))| {
            json!({
                "sequence": i + 1,
                "category": { "coding": [{ "system": format!("{IG}/claim-supporting-info-category"), "code": category }] },
                "valueString": value,
            })
        })
        .collect();
    let mut resource = json!({
        "resourceType": "Claim",
        "id": c.uuid,
        "meta": { "lastUpdated": c.updated_at },
        "identifier": identifiers(c, systems),
        "status": "active",
        "type": claim_type(detail),
        "subType": { "coding": [{ "system": format!("{IG}/claim-visit-type"), "code": c.visit_type }] },
        "use": "claim",
        "patient": patient(detail),
        "billablePeriod": period,
        "created": c.date_claimed,
        "provider": { "type": "Organization", "identifier": code_identifier(&c.health_facility) },
        "priority": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal" }] },
        "diagnosis": diagnoses,
        "insurance": [{ "sequence": 1, "focal": true, "coverage": { "display": "the insuree's policies of the claim's dates" } }],
        "item": items,
        "total": { "value": c.claimed },
    });
    if !supporting.is_empty() {
        resource["supportingInfo"] = json!(supporting);
    }
    if let Some(admin) = &c.admin {
        // the claim administrator who entered it, by code (a logical reference)
        resource["enterer"] = json!({ "type": "Practitioner", "identifier": code_identifier(admin) });
    }
    resource
}

/// openIMIS' outcome of a claim's status: rejected and valuated are complete, entered is queued,
/// checked and processed are partial.
fn outcome(status: i32) -> &'static str {
    match status {
        2 => "queued",
        4 | 8 => "partial",
        _ => "complete",
    }
}

/// A claim's identifiers: its id here, the ids other servers gave it, its code.
fn identifiers(c: &careledger_projections::claims::ClaimView, systems: &Systems) -> Vec<Value> {
    let mut identifiers = vec![systems.own_id(&c.uuid)];
    identifiers.extend(c.identifiers.iter().map(|i| json!({ "system": i.system, "value": i.value })));
    identifiers.push(code_identifier(&c.code));
    identifiers
}

/// What the scheme decided: the claim's status, each line's and the amounts of its stage.
pub fn claim_response(detail: &ClaimDetail, systems: &Systems) -> Value {
    let c = &detail.claim;
    let items: Vec<Value> = lines(detail)
        .map(|(sequence, _, line)| {
            // openIMIS' way: every line's category is the claim's status, its reason the line's own
            let mut adjudication = json!({ "category": status_concept(c.status) });
            if let Some(reason) = line.rejection_reason {
                adjudication["reason"] =
                    json!({ "coding": [{ "system": format!("{IG}/claim-rejection-reasons"), "code": reason.to_string() }] });
            }
            adjudication["amount"] = json!({ "value": line.latest_price });
            adjudication["value"] = json!(line.latest_qty);
            // and every stage's own figure, so that a node mirrors the line whole
            let mut adjudications = vec![adjudication];
            if let Some(status) = line.status {
                adjudications.push(json!({ "category": amount_concept("line-status"), "value": status }));
            }
            if let Some(quantity) = line.qty_approved {
                adjudications.push(json!({ "category": amount_concept("qty-approved"), "value": quantity }));
            }
            for (code, price) in [
                ("price-adjusted", line.price_adjusted),
                ("price-approved", line.price_approved),
                ("price-valuated", line.price_valuated),
            ] {
                adjudications.extend(price.map(|p| json!({ "category": amount_concept(code), "amount": { "value": p } })));
            }
            json!({ "itemSequence": sequence, "adjudication": adjudications })
        })
        .collect();
    let mut response = json!({
        "resourceType": "ClaimResponse",
        "id": c.uuid,
        "meta": { "lastUpdated": c.updated_at },
        "identifier": identifiers(c, systems),
        "status": "active",
        "type": claim_type(detail),
        "use": "claim",
        "patient": patient(detail),
        "created": c.updated_at,
        "insurer": { "display": "the scheme of this server" },
        "request": { "reference": format!("Claim/{}", c.uuid), "type": "Claim", "identifier": systems.own_id(&c.uuid) },
        "outcome": outcome(c.status),
        "item": items,
    });
    let mut totals: Vec<Value> = c
        .stage_value
        .map(|value| json!({ "category": status_concept(c.status), "amount": { "value": value } }))
        .into_iter()
        .collect();
    for (code, value) in [
        ("claimed", Some(c.claimed)),
        ("approved", c.approved),
        ("valuated", c.valuated),
        ("remunerated", c.remunerated),
    ] {
        totals.extend(value.map(|v| json!({ "category": amount_concept(code), "amount": { "value": v } })));
    }
    response["total"] = json!(totals);
    let mut extensions = vec![];
    if let Some(reason) = c.rejection_reason {
        response["disposition"] = json!(format!("rejected, reason {reason}"));
        extensions.push(json!({ "url": REJECTION_REASON, "valueInteger": reason }));
    }
    if let Some(category) = &c.category {
        extensions.push(json!({ "url": CLAIM_CATEGORY, "valueCode": category }));
    }
    if !extensions.is_empty() {
        response["extension"] = json!(extensions);
    }
    response
}

/// A figure of careledger's own (a stage's quantity or price of a line, an amount of the claim).
fn amount_concept(code: &str) -> Value {
    json!({ "coding": [{ "system": AMOUNTS, "code": code }] })
}
