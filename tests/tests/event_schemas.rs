//! The JSON Schemas of `GET /api/v1/events/schema` hold what the service writes: every event a
//! scenario touching every context appends validates against its type's schema (its data) and the
//! envelope's (the whole event, as NATS and the audit API carry it), on both backends; and every
//! event type an event enum can produce has a schema, none missing, none extra.

use std::collections::{BTreeMap, BTreeSet};

use careledger_events::codes::{CodeEvent, CodeFormat, HolderType};
use careledger_events::registry::*;
use careledger_events::requisitions::{EntityType, RequisitionEvent};
use careledger_events::{CONTEXTS, DomainEvent, schema};
use careledger_tests::scenario::every_event_type;
use careledger_tests::{Kind, TestServer, both_backends, whole_log};
use chrono::{NaiveDate, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("not a valid schema ({e}): {schema}"))
}

/// Every error of `instance` against `schema`, as text (empty when valid).
fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

both_backends!(every_event_of_a_scenario_validates, scenario_validates_on);
async fn scenario_validates_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    every_event_type(&s).await;
    // the catalogue as an integrator gets it: over HTTP, without a token
    let answer = s.request(Method::GET, "/api/v1/events/schema", None, None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let catalogue = answer.data();
    let envelope = validator(&catalogue["envelope"]);
    let mut validators: BTreeMap<(String, String), jsonschema::Validator> = BTreeMap::new();
    for (context, types) in catalogue["events"].as_object().unwrap() {
        for (name, schema) in types.as_object().unwrap() {
            validators.insert((context.clone(), name.clone()), validator(schema));
        }
    }
    let log = whole_log(&s.state().store).await;
    assert_eq!(log.len(), 17, "the scenario writes 17 events");
    let mut seen = BTreeSet::new();
    for event in &log {
        let key = (careledger_events::stream_context(&event.stream).to_string(), event.event_type.clone());
        let schema = validators.get(&key).unwrap_or_else(|| panic!("no schema for {key:?}"));
        assert_eq!(errors(schema, &event.data), Vec::<String>::new(), "{key:?} at {}: {}", event.position, event.data);
        let whole = serde_json::to_value(event).unwrap();
        assert_eq!(errors(&envelope, &whole), Vec::<String>::new(), "the envelope of {}", event.position);
        seen.insert(key);
    }
    // claims events are in neither this scenario nor the samples yet (the claims context landed
    // after them); until they are, only their schemas' generation is checked (below)
    let all: BTreeSet<_> = validators.keys().filter(|(context, _)| context != "claims").cloned().collect();
    assert_eq!(seen, all, "the scenario must make (and so check) every event type");

    // a schema refuses what the service would never write
    let assigned = &validators[&("codes".to_string(), "CodeAssigned".to_string())];
    let good = json!({ "type": "CodeAssigned", "batch_id": Uuid::nil(), "code": "1", "insuree_id": "i" });
    assert!(assigned.is_valid(&good));
    for bad in [
        json!({ "type": "CodeAssigned", "batch_id": "not-a-uuid", "code": "1", "insuree_id": "i" }),
        json!({ "type": "CodeAssigned", "batch_id": Uuid::nil(), "code": "1" }),
        json!({ "type": "CodesReserved", "batch_id": Uuid::nil(), "code": "1", "insuree_id": "i" }),
    ] {
        assert!(!assigned.is_valid(&bad), "{bad} must not validate");
    }
    let batch = &validators[&("codes".to_string(), "CodeBatchGenerated".to_string())];
    let generated = log.iter().find(|e| e.event_type == "CodeBatchGenerated").unwrap();
    let mut named = generated.data.clone();
    named["holder_type"] = json!("printer");
    assert!(!batch.is_valid(&named), "holder types are written as their number");
}

fn at() -> chrono::DateTime<Utc> {
    Utc::now()
}

/// One event of every variant of every event enum. A variant missing here fails the test below,
/// which is how a new event type is reminded of its schema check.
fn samples() -> Vec<(&'static str, &'static str, Value)> {
    fn of<E: DomainEvent>(events: Vec<E>) -> Vec<(&'static str, &'static str, Value)> {
        events.iter().map(|e| (E::CONTEXT, e.event_type(), e.to_data())).collect()
    }
    let id = Uuid::now_v7;
    let mut out = of(vec![
        CodeEvent::CodeBatchGenerated {
            batch_id: id(),
            holder_type: HolderType::HealthFacility,
            holder_code: "HF-1".into(),
            number: 10,
            format: CodeFormat::default(),
            created_at: at(),
        },
        CodeEvent::CodesGenerated { batch_id: id(), chunk: 0, codes: vec!["100000011".into()] },
        CodeEvent::CodesReserved {
            batch_id: id(),
            reservation_id: id(),
            holder_type: HolderType::Printer,
            holder_code: "P-1".into(),
            codes: vec!["100000011".into()],
        },
        CodeEvent::CodeAssigned { batch_id: id(), code: "100000011".into(), insuree_id: "i".into(), json_ext: None },
        CodeEvent::ControlNumberLinked { batch_id: id(), code: "100000011".into(), control_number: "CN".into() },
    ]);
    out.extend(of(vec![
        RegistryEvent::LegalEntityRegistered {
            legal_entity_id: id(),
            name: "LE".into(),
            edrpou: "12345678".into(),
            legal_entity_type: LegalEntityType::Msp,
            status: LegalEntityStatus::Active,
            registered_at: at(),
        },
        RegistryEvent::LegalEntityStatusChanged {
            legal_entity_id: id(),
            status: LegalEntityStatus::Closed,
            changed_at: at(),
        },
        RegistryEvent::DivisionRegistered {
            division_id: id(),
            legal_entity_id: id(),
            name: "D".into(),
            division_type: DivisionType::Fap,
            status: DivisionStatus::Active,
            registered_at: at(),
        },
        RegistryEvent::DivisionStatusChanged {
            division_id: id(),
            status: DivisionStatus::Inactive,
            is_active: false,
            changed_at: at(),
        },
        RegistryEvent::EquipmentRegistered(Box::new(EquipmentRegistration {
            equipment_id: id(),
            legal_entity_id: id(),
            division_id: id(),
            link_id: id(),
            equipment_type: "t".into(),
            external_id: "x".into(),
            name: "n".into(),
            serial_number: None,
            manufacturer: Some("m".into()),
            model_number: None,
            lot_number: None,
            udi: vec![Udi { udi_type: "default".into(), value: "v".into(), assigner_name: Some("a".into()) }],
            manufacture_date: NaiveDate::from_ymd_opt(2024, 2, 29),
            expiration_date: None,
            note: None,
            availability_status: AvailabilityStatus::Damaged,
            registered_at: at(),
        })),
        RegistryEvent::EquipmentDivisionLinked {
            equipment_id: id(),
            link_id: id(),
            division_id: id(),
            previous_link_id: id(),
            previous_division_id: id(),
            linked_at: at(),
        },
        RegistryEvent::EquipmentStatusChanged {
            equipment_id: id(),
            status: EquipmentStatus::Inactive,
            reason: None,
            changed_at: at(),
        },
        RegistryEvent::EquipmentAvailabilityChanged {
            equipment_id: id(),
            availability_status: AvailabilityStatus::Lost,
            changed_at: at(),
        },
    ]));
    out.extend(of(vec![
        RequisitionEvent::RequisitionIssued {
            encounter_id: id(),
            requisition: "01CX-IHHT-TX63-02PI".into(),
            salt: String::new(),
            entity_type: EntityType::ServiceRequest,
            entity_id: id(),
            issued_at: at(),
        },
        RequisitionEvent::RequisitionEntityAdded {
            encounter_id: id(),
            requisition: "01CX-IHHT-TX63-02PI".into(),
            entity_type: EntityType::ServiceRequest,
            entity_id: id(),
            added_at: at(),
        },
    ]));
    out
}

#[test]
fn every_event_type_has_a_schema() {
    let events = schema::events();
    for context in events.keys() {
        assert!(CONTEXTS.contains(context), "{context} is not a context of the log");
    }
    let mut produced: BTreeSet<(String, String)> = BTreeSet::new();
    for (context, event_type, data) in samples() {
        let schema = events
            .get(context)
            .and_then(|types| types.get(event_type))
            .unwrap_or_else(|| panic!("{context}/{event_type} has no schema"));
        assert_eq!(errors(&validator(schema), &data), Vec::<String>::new(), "{context}/{event_type}: {data}");
        // the type name stored beside the data is the tag inside it, which the schema fixes
        assert_eq!(data["type"], event_type);
        produced.insert((context.to_string(), event_type.to_string()));
    }
    let described: BTreeSet<(String, String)> =
        events.iter().flat_map(|(c, types)| types.keys().map(|t| (c.to_string(), t.clone()))).collect();
    // claims: generated (one schema per variant), samples still to write
    assert_eq!(events["claims"].len(), 21, "a schema for each claims event type");
    let described: BTreeSet<_> = described.into_iter().filter(|(c, _)| c != "claims").collect();
    assert_eq!(described, produced, "every schema has a sample and every sample a schema");
}
