//! Claims as `Claim` (what the facility asked) and `ClaimResponse` (what the scheme decided), as
//! openIMIS' FHIR R4 module shapes them (see `fhir/README.md`): items and services by their code
//! as text, the claim's status as the adjudication category, the rejection reason as its reason.

//!
//! Why typed structures here and JSON values elsewhere: a sync export renders thousands of claims
//! a Bundle, and building each as a `serde_json::Value` (a map per object, a string per key)
//! spent more than the database did; these serialise straight to text ([`claim_raw`]).

use std::borrow::Cow;

use careledger_events::claims::Amount;
use careledger_projections::claims::{ClaimDetail, ClaimView, LineView};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::Systems;
use crate::identifier::OPENIMIS_IDENTIFIERS;

const CLAIM_STATUS: &str = "https://openimis.github.io/openimis_fhir_r4_ig/CodeSystem/claim-status";
const REJECTION_REASONS: &str = "https://openimis.github.io/openimis_fhir_r4_ig/CodeSystem/claim-rejection-reasons";
const ICD: &str = "https://openimis.github.io/openimis_fhir_r4_ig/CodeSystem/diagnosis-ICD10-level1";
const ITEM_CATEGORY: &str = "https://openimis.github.io/openimis_fhir_r4_ig/CodeSystem/claim-item-category";
const SUPPORTING_INFO: &str =
    "https://openimis.github.io/openimis_fhir_r4_ig/CodeSystem/claim-supporting-info-category";
const VISIT_TYPE: &str = "https://openimis.github.io/openimis_fhir_r4_ig/CodeSystem/claim-visit-type";
const CLAIM_TYPE: &str = "http://terminology.hl7.org/CodeSystem/claim-type";
const PRIORITY: &str = "http://terminology.hl7.org/CodeSystem/processpriority";

/// The system of careledger's figures of a claim in a `ClaimResponse` (each stage's amounts and a
/// line's status), beside openIMIS' status category: what an offline node needs to mirror the
/// master's decision whole.
pub const AMOUNTS: &str = "urn:careledger:fhir:claim-amounts";
/// The claim's rejection reason (openIMIS' code) and its category (S, D, A, H, C, O, V).
pub const REJECTION_REASON: &str = "urn:careledger:fhir:extension:rejection-reason";
pub const CLAIM_CATEGORY: &str = "urn:careledger:fhir:extension:claim-category";

/// A claim line's explanation (FHIR's `Claim.item` has no element for it).
pub const LINE_EXPLANATION: &str = "urn:careledger:fhir:extension:line-explanation";

// FHIR's data types, as far as claims use them (empty options are left out, as FHIR wants)

#[derive(Serialize)]
struct Coding<'a> {
    system: &'a str,
    code: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display: Option<&'a str>,
}

#[derive(Serialize)]
struct Concept<'a> {
    coding: [Coding<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

fn concept<'a>(system: &'a str, code: &'a str) -> Concept<'a> {
    Concept { coding: [Coding { system, code: Cow::Borrowed(code), display: None }], text: None }
}

#[derive(Serialize)]
struct IdentifierType<'a> {
    coding: [Coding<'a>; 1],
}

#[derive(Serialize)]
struct Identifier<'a> {
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    use_: Option<&'static str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<IdentifierType<'static>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    value: &'a str,
}

fn typed(code: &'static str) -> Option<IdentifierType<'static>> {
    Some(IdentifierType { coding: [Coding { system: OPENIMIS_IDENTIFIERS, code: Cow::Borrowed(code), display: None }] })
}

/// This server's id (as `Systems::own_id` writes it).
fn own<'a>(systems: &'a Systems, id: &'a str) -> Identifier<'a> {
    Identifier { use_: Some("official"), kind: typed("UUID"), system: Some(&systems.own), value: id }
}

/// A business code (as `identifier::code_identifier` writes it).
fn code(value: &str) -> Identifier<'_> {
    Identifier { use_: Some("usual"), kind: typed("Code"), system: None, value }
}

/// A reference by identifier (a logical reference), or also by id.
#[derive(Serialize)]
struct Reference<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
    identifier: Identifier<'a>,
}

#[derive(Serialize)]
struct Display {
    display: &'static str,
}

#[derive(Serialize)]
struct Meta<'a> {
    #[serde(rename = "versionId", skip_serializing_if = "Option::is_none")]
    version_id: Option<String>,
    #[serde(rename = "lastUpdated")]
    last_updated: &'a str,
}

#[derive(Serialize)]
struct Money {
    value: Amount,
}

#[derive(Serialize)]
struct Quantity {
    value: Amount,
}

#[derive(Serialize)]
struct Period<'a> {
    start: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<&'a str>,
}

#[derive(Serialize)]
struct Extension<'a> {
    url: &'static str,
    #[serde(rename = "valueString", skip_serializing_if = "Option::is_none")]
    string: Option<&'a str>,
    #[serde(rename = "valueInteger", skip_serializing_if = "Option::is_none")]
    integer: Option<i32>,
    #[serde(rename = "valueCode", skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
}

fn extension(url: &'static str) -> Extension<'static> {
    Extension { url, string: None, integer: None, code: None }
}

/// The claim's type: in-patient care is institutional, out-patient professional.
fn claim_type(claim: &ClaimView) -> Concept<'static> {
    concept(CLAIM_TYPE, if claim.care_type.as_deref() == Some("I") { "institutional" } else { "professional" })
}

/// The insuree, by the CHFID the claim names (a logical reference: the receiver finds its
/// Patient by that identifier).
fn patient(claim: &ClaimView) -> Reference<'_> {
    Reference { reference: None, kind: "Patient", identifier: code(&claim.insuree) }
}

fn status_concept(status: i32) -> Concept<'static> {
    let display = match status {
        1 => "rejected",
        2 => "entered",
        4 => "checked",
        8 => "processed",
        16 => "valuated",
        _ => "unknown",
    };
    Concept {
        coding: [Coding { system: CLAIM_STATUS, code: Cow::Owned(status.to_string()), display: Some(display) }],
        text: None,
    }
}

/// Every line, items first then services, numbered from 1 as FHIR numbers them.
fn lines(detail: &ClaimDetail) -> impl Iterator<Item = (usize, &'static str, &LineView)> {
    let items = detail.items.iter().map(|l| ("item", l));
    let services = detail.services.iter().map(|l| ("service", l));
    items.chain(services).enumerate().map(|(i, (kind, line))| (i + 1, kind, line))
}

/// A claim's identifiers: its id here, the ids other servers gave it, its code.
fn identifiers<'a>(c: &'a ClaimView, systems: &'a Systems) -> Vec<Identifier<'a>> {
    let mut identifiers = vec![own(systems, &c.uuid)];
    identifiers.extend(c.identifiers.iter().map(|i| Identifier {
        use_: None,
        kind: None,
        system: Some(&i.system),
        value: &i.value,
    }));
    identifiers.push(code(&c.code));
    identifiers
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Diagnosis<'a> {
    sequence: usize,
    diagnosis_codeable_concept: Concept<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Item<'a> {
    sequence: usize,
    category: Concept<'a>,
    product_or_service: Text<'a>,
    quantity: Quantity,
    unit_price: Money,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    extension: Vec<Extension<'a>>,
}

#[derive(Serialize)]
struct Text<'a> {
    text: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SupportingInfo<'a> {
    sequence: usize,
    category: Concept<'a>,
    value_string: &'a str,
}

#[derive(Serialize)]
struct Insurance {
    sequence: usize,
    focal: bool,
    coverage: Display,
}

/// What the facility claimed, as FHIR's `Claim`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClaimResource<'a> {
    resource_type: &'static str,
    id: &'a str,
    meta: Meta<'a>,
    identifier: Vec<Identifier<'a>>,
    status: &'static str,
    #[serde(rename = "type")]
    kind: Concept<'static>,
    sub_type: Concept<'a>,
    #[serde(rename = "use")]
    use_: &'static str,
    patient: Reference<'a>,
    billable_period: Period<'a>,
    created: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    enterer: Option<Reference<'a>>,
    provider: Reference<'a>,
    priority: Concept<'static>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    supporting_info: Vec<SupportingInfo<'a>>,
    diagnosis: Vec<Diagnosis<'a>>,
    insurance: [Insurance; 1],
    item: Vec<Item<'a>>,
    total: Money,
}

fn claim_resource<'a>(detail: &'a ClaimDetail, systems: &'a Systems, version: Option<i64>) -> ClaimResource<'a> {
    let c = &detail.claim;
    let diagnosis = std::iter::once(&c.icd)
        .chain(&c.icd_secondary)
        .enumerate()
        .map(|(i, icd)| Diagnosis { sequence: i + 1, diagnosis_codeable_concept: concept(ICD, icd) })
        .collect();
    let item = lines(detail)
        .map(|(sequence, kind, line)| Item {
            sequence,
            category: Concept { text: Some(kind), ..concept(ITEM_CATEGORY, kind) },
            product_or_service: Text { text: &line.code },
            quantity: Quantity { value: line.qty_provided },
            unit_price: Money { value: line.price_asked },
            extension: line
                .explanation
                .as_deref()
                .map(|e| Extension { string: Some(e), ..extension(LINE_EXPLANATION) })
                .into_iter()
                .collect(),
        })
        .collect();
    // the explanation and the guarantee as openIMIS' R4 module sends them
    let supporting_info = [("explanation", &c.explanation), ("guarantee", &c.guarantee_id)]
        .into_iter()
        .filter_map(|(category, value)| value.as_deref().map(|v| (category, v)))
        .enumerate()
        .map(|(i, (category, value))| SupportingInfo {
            sequence: i + 1,
            category: concept(SUPPORTING_INFO, category),
            value_string: value,
        })
        .collect();
    ClaimResource {
        resource_type: "Claim",
        id: &c.uuid,
        meta: Meta { version_id: version.map(|v| v.to_string()), last_updated: &c.updated_at },
        identifier: identifiers(c, systems),
        status: "active",
        kind: claim_type(c),
        sub_type: concept(VISIT_TYPE, &c.visit_type),
        use_: "claim",
        patient: patient(c),
        billable_period: Period { start: &c.date_from, end: c.date_to.as_deref() },
        created: &c.date_claimed,
        // the claim administrator who entered it, by code (a logical reference)
        enterer: c.admin.as_deref().map(|admin| Reference {
            reference: None,
            kind: "Practitioner",
            identifier: code(admin),
        }),
        provider: Reference { reference: None, kind: "Organization", identifier: code(&c.health_facility) },
        priority: concept(PRIORITY, "normal"),
        supporting_info,
        diagnosis,
        insurance: [Insurance {
            sequence: 1,
            focal: true,
            coverage: Display { display: "the insuree's policies of the claim's dates" },
        }],
        item,
        total: Money { value: c.claimed },
    }
}

/// What the facility claimed.
pub fn claim(detail: &ClaimDetail, systems: &Systems) -> Value {
    serde_json::to_value(claim_resource(detail, systems, None)).expect("a claim serialises")
}

/// What the facility claimed, as JSON text (for a Bundle of many), with `version` (this server's
/// log position of the claim's last change) as `meta.versionId`.
pub fn claim_raw(detail: &ClaimDetail, systems: &Systems, version: i64) -> Box<RawValue> {
    serde_json::value::to_raw_value(&claim_resource(detail, systems, Some(version))).expect("a claim serialises")
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

/// One adjudication of a line or total: openIMIS' (the status, with reason, amount and value)
/// or one of careledger's own figures.
#[derive(Serialize)]
struct Adjudication<'a> {
    category: Concept<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<Concept<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Number>,
}

/// An adjudication's `value`: a quantity, or a line's status.
#[derive(Serialize)]
#[serde(untagged)]
enum Number {
    Amount(Amount),
    Integer(i32),
}

fn figure(code: &'static str) -> Adjudication<'static> {
    Adjudication { category: amount_concept(code), reason: None, amount: None, value: None }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseItem<'a> {
    item_sequence: usize,
    adjudication: Vec<Adjudication<'a>>,
}

#[derive(Serialize)]
struct Total<'a> {
    category: Concept<'a>,
    amount: Money,
}

/// What the scheme decided, as FHIR's `ClaimResponse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClaimResponseResource<'a> {
    resource_type: &'static str,
    id: &'a str,
    meta: Meta<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    extension: Vec<Extension<'a>>,
    identifier: Vec<Identifier<'a>>,
    status: &'static str,
    #[serde(rename = "type")]
    kind: Concept<'static>,
    #[serde(rename = "use")]
    use_: &'static str,
    patient: Reference<'a>,
    created: &'a str,
    insurer: Display,
    request: Reference<'a>,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    disposition: Option<String>,
    item: Vec<ResponseItem<'a>>,
    total: Vec<Total<'a>>,
}

fn claim_response_resource<'a>(
    detail: &'a ClaimDetail,
    systems: &'a Systems,
    version: Option<i64>,
) -> ClaimResponseResource<'a> {
    let c = &detail.claim;
    let item = lines(detail)
        .map(|(sequence, _, line)| {
            // openIMIS' way: every line's category is the claim's status, its reason the line's own
            let reason = line.rejection_reason.map(|reason| Concept {
                coding: [Coding { system: REJECTION_REASONS, code: Cow::Owned(reason.to_string()), display: None }],
                text: None,
            });
            let mut adjudication = vec![Adjudication {
                category: status_concept(c.status),
                reason,
                amount: Some(Money { value: line.latest_price }),
                value: Some(Number::Amount(line.latest_qty)),
            }];
            // and every stage's own figure, so that a node mirrors the line whole
            if let Some(status) = line.status {
                adjudication.push(Adjudication { value: Some(Number::Integer(status)), ..figure("line-status") });
            }
            if let Some(quantity) = line.qty_approved {
                adjudication.push(Adjudication { value: Some(Number::Amount(quantity)), ..figure("qty-approved") });
            }
            for (code, price) in [
                ("price-adjusted", line.price_adjusted),
                ("price-approved", line.price_approved),
                ("price-valuated", line.price_valuated),
            ] {
                adjudication.extend(price.map(|p| Adjudication { amount: Some(Money { value: p }), ..figure(code) }));
            }
            ResponseItem { item_sequence: sequence, adjudication }
        })
        .collect();
    let mut total: Vec<Total> = c
        .stage_value
        .map(|value| Total { category: status_concept(c.status), amount: Money { value } })
        .into_iter()
        .collect();
    for (code, value) in [
        ("claimed", Some(c.claimed)),
        ("approved", c.approved),
        ("valuated", c.valuated),
        ("remunerated", c.remunerated),
    ] {
        total.extend(value.map(|v| Total { category: amount_concept(code), amount: Money { value: v } }));
    }
    let mut extension = vec![];
    if let Some(reason) = c.rejection_reason {
        extension.push(Extension { integer: Some(reason), ..self::extension(REJECTION_REASON) });
    }
    if let Some(category) = &c.category {
        extension.push(Extension { code: Some(category), ..self::extension(CLAIM_CATEGORY) });
    }
    ClaimResponseResource {
        resource_type: "ClaimResponse",
        id: &c.uuid,
        meta: Meta { version_id: version.map(|v| v.to_string()), last_updated: &c.updated_at },
        extension,
        identifier: identifiers(c, systems),
        status: "active",
        kind: claim_type(c),
        use_: "claim",
        patient: patient(c),
        created: &c.updated_at,
        insurer: Display { display: "the scheme of this server" },
        request: Reference {
            reference: Some(format!("Claim/{}", c.uuid)),
            kind: "Claim",
            identifier: own(systems, &c.uuid),
        },
        outcome: outcome(c.status),
        disposition: c.rejection_reason.map(|reason| format!("rejected, reason {reason}")),
        item,
        total,
    }
}

/// What the scheme decided: the claim's status, each line's and the amounts of its stage.
pub fn claim_response(detail: &ClaimDetail, systems: &Systems) -> Value {
    serde_json::to_value(claim_response_resource(detail, systems, None)).expect("a claim response serialises")
}

/// What the scheme decided, as JSON text (for a Bundle of many), with `version` as
/// [`claim_raw`]'s.
pub fn claim_response_raw(detail: &ClaimDetail, systems: &Systems, version: i64) -> Box<RawValue> {
    serde_json::value::to_raw_value(&claim_response_resource(detail, systems, Some(version)))
        .expect("a claim response serialises")
}

/// A figure of careledger's own (a stage's quantity or price of a line, an amount of the claim).
fn amount_concept(code: &'static str) -> Concept<'static> {
    concept(AMOUNTS, code)
}
