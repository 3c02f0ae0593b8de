//! The master's register in the sync (issue #21: "the central server sends reference data"):
//! health facilities, medical items and services, price lists and products, each the `Basic`
//! of `careledger_fhir::register_entry` holding one entry in the upsert API's form (see there
//! why). Exported from the upsert events; imported through the upsert API's own readers, so an
//! entry is bounded and checked exactly as `POST /api/v1/<kind>` checks it.

use base64::Engine;
use careledger_app::claims::ReferenceEntry;
use careledger_events::RecordedEvent;
use careledger_events::claims::{ClaimEvent, Coverage, LineKind, PriceListEntry};
use serde_json::{Map, Value, json};

/// Whether an event upserts an entry of the register the sync carries (insurees and policies
/// upserted as reference data travel as `Patient` and `Coverage`).
pub fn is_register(event: &RecordedEvent) -> bool {
    matches!(
        event.event_type.as_str(),
        "HealthFacilityUpserted" | "MedicalEntryUpserted" | "PriceListUpserted" | "ProductUpserted"
    )
}

/// The namespace of the register entries' ids (UUIDv5 of their streams).
const REGISTER_IDS: uuid::Uuid = uuid::Uuid::from_u128(0x0190_f3a0_7e61_7000_8000_c0de_0000_0001);

/// The id of a register entry's `Basic`: one per entry (its stream), whichever upsert it is now,
/// so that a resource sent again in a later page replaces the earlier one where pages are joined
/// (a sync file) instead of naming the entry twice.
pub fn entry_id(stream: &str) -> String {
    uuid::Uuid::new_v5(&REGISTER_IDS, stream.as_bytes()).to_string()
}

/// The entry an upsert event holds, as its `Basic`.
pub fn resource(event: &RecordedEvent, systems: &careledger_fhir::Systems) -> Option<Value> {
    let (kind, entry) = api_entry(&event.decode::<ClaimEvent>().ok()?)?;
    Some(careledger_fhir::register_entry(&entry_id(&event.stream), kind, &entry, event.position, systems))
}

/// The kind and the upsert API's form of the entry an event upserted.
fn api_entry(event: &ClaimEvent) -> Option<(&'static str, Value)> {
    fn put(object: &mut Value, name: &str, value: Option<Value>) {
        if let Some(value) = value {
            object[name] = value;
        }
    }
    fn priced(entries: &[PriceListEntry], kind: LineKind) -> Vec<Value> {
        let mut priced = vec![];
        for e in entries.iter().filter(|e| e.kind == kind) {
            let mut p = json!({ "code": e.code, "valid_from": e.valid_from });
            put(&mut p, "price", e.price.map(|a| json!(a)));
            put(&mut p, "valid_to", e.valid_to.map(|d| json!(d)));
            priced.push(p);
        }
        priced
    }
    fn covered(coverage: &[Coverage], kind: LineKind) -> Vec<Value> {
        let mut covered = vec![];
        for c in coverage.iter().filter(|c| c.kind == kind) {
            let mut v = json!({
                "code": c.code,
                "waiting_period_adult": c.waiting_period_adult,
                "waiting_period_child": c.waiting_period_child,
                "price_origin": c.price_origin.name(),
            });
            put(&mut v, "limit_adult", c.limit_adult.map(|a| json!(a)));
            put(&mut v, "limit_child", c.limit_child.map(|a| json!(a)));
            covered.push(v);
        }
        covered
    }
    Some(match event {
        ClaimEvent::HealthFacilityUpserted { facility: f, .. } => {
            ("health-facilities", json!({ "code": f.code, "name": f.name, "care_type": f.care_type.name() }))
        }
        ClaimEvent::MedicalEntryUpserted { entry: e, .. } => {
            let mut entry =
                json!({ "code": e.code, "name": e.name, "price": e.price, "care_type": e.care_type.name() });
            put(&mut entry, "frequency_days", e.frequency_days.map(|d| json!(d)));
            put(&mut entry, "maximum_amount", e.maximum_amount.map(|a| json!(a)));
            put(&mut entry, "category", e.category.map(|c| json!(c.name())));
            match e.kind {
                LineKind::Item => ("medical-items", entry),
                LineKind::Service => ("medical-services", entry),
            }
        }
        ClaimEvent::PriceListUpserted { health_facility, entries, .. } => (
            "price-lists",
            json!({
                "health_facility": health_facility,
                "items": priced(entries, LineKind::Item),
                "services": priced(entries, LineKind::Service),
            }),
        ),
        ClaimEvent::ProductUpserted { product: p, .. } => (
            "products",
            json!({
                "code": p.code,
                "name": p.name,
                "items": covered(&p.coverage, LineKind::Item),
                "services": covered(&p.coverage, LineKind::Service),
            }),
        ),
        _ => return None,
    })
}

/// Reads the entry a `Basic` of kind `register-entry` holds (`kind` and the attachment's
/// `data`) with the upsert API's reader. `Err`: what is wrong, in the API's words.
pub fn read_entry(kind: &str, data: &str) -> Result<ReferenceEntry, String> {
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(data).map_err(|e| format!("the entry is not base64: {e}"))?;
    let entry: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|e| format!("the entry is not a JSON object: {e}"))?;
    let body = Map::from_iter([("entries".to_string(), Value::Array(vec![Value::Object(entry)]))]);
    let read = crate::claims::reference::read(kind, &body).map_err(|e| match e.invalid.first() {
        Some(invalid) => {
            let at = invalid.entry.trim_start_matches("$.entries[0]").trim_start_matches('.');
            let why = invalid.rules.first().map(|r| r.description.as_str()).unwrap_or("invalid");
            format!("the entry's {at}: {why}")
        }
        None => e.message,
    })?;
    read.into_iter().next().ok_or_else(|| "the entry is empty".to_string())
}

#[cfg(test)]
mod tests {
    use careledger_events::claims::{
        Amount, CareType, HealthFacility, MedicalEntry, PriceOrigin, Product, ServiceCategory,
    };

    use super::*;

    /// Every kind goes out in the API's form and comes back as the same entry.
    #[test]
    fn an_entry_read_back_is_the_entry_sent() {
        let at = chrono::Utc::now();
        let date = |d: &str| d.parse().unwrap();
        let cases = vec![
            ClaimEvent::HealthFacilityUpserted {
                facility: HealthFacility {
                    code: "HF1".into(), name: "Лікарня".into(), care_type: CareType::Both
                },
                at,
            },
            ClaimEvent::MedicalEntryUpserted {
                entry: MedicalEntry {
                    kind: LineKind::Service,
                    code: "S1".into(),
                    name: "Consultation".into(),
                    price: Amount(1250),
                    care_type: CareType::OutPatient,
                    frequency_days: Some(30),
                    maximum_amount: Some(Amount(300)),
                    category: Some(ServiceCategory::Surgery),
                },
                at,
            },
            ClaimEvent::PriceListUpserted {
                health_facility: "HF1".into(),
                entries: vec![
                    PriceListEntry {
                        kind: LineKind::Item,
                        code: "I1".into(),
                        price: Some(Amount(400)),
                        valid_from: date("2026-01-01"),
                        valid_to: Some(date("2026-12-31")),
                    },
                    PriceListEntry {
                        kind: LineKind::Service,
                        code: "S1".into(),
                        price: None,
                        valid_from: date("2026-01-01"),
                        valid_to: None,
                    },
                ],
                at,
            },
            ClaimEvent::ProductUpserted {
                product: Product {
                    code: "P1".into(),
                    name: "Basic".into(),
                    coverage: vec![Coverage {
                        kind: LineKind::Item,
                        code: "I1".into(),
                        limit_adult: Some(Amount(1000)),
                        limit_child: None,
                        waiting_period_adult: 3,
                        waiting_period_child: 0,
                        price_origin: PriceOrigin::Relative,
                    }],
                },
                at,
            },
        ];
        for event in cases {
            let (kind, entry) = api_entry(&event).unwrap();
            let data = base64::engine::general_purpose::STANDARD.encode(entry.to_string());
            let read = read_entry(kind, &data).unwrap();
            let expected = match &event {
                ClaimEvent::HealthFacilityUpserted { facility, .. } => ReferenceEntry::Facility(facility.clone()),
                ClaimEvent::MedicalEntryUpserted { entry, .. } => ReferenceEntry::Medical(entry.clone()),
                ClaimEvent::PriceListUpserted { health_facility, entries, .. } => {
                    ReferenceEntry::PriceList { health_facility: health_facility.clone(), entries: entries.clone() }
                }
                ClaimEvent::ProductUpserted { product, .. } => ReferenceEntry::Product(product.clone()),
                _ => unreachable!(),
            };
            assert_eq!(read, expected, "{kind}");
        }
    }

    #[test]
    fn a_bad_entry_is_refused_in_the_api_words() {
        let data = |v: Value| base64::engine::general_purpose::STANDARD.encode(v.to_string());
        let err = read_entry("medical-items", &data(json!({ "code": "I1", "name": "x", "price": -1 }))).unwrap_err();
        assert!(err.starts_with("the entry's price:"), "{err}");
        assert!(read_entry("medical-items", "%%").unwrap_err().contains("base64"));
        assert!(read_entry("claims", &data(json!({}))).unwrap_err().contains("not a kind"));
    }
}
