//! The JSON Schemas of `GET /api/v1/events/schema` hold what the service writes: every event of
//! the scenarios touching every context (the claims lifecycle included) validates against its
//! type's schema (its data) and the envelope's (the whole event, as NATS and the audit API carry
//! it), on both backends; and every event type an event enum can produce has a schema, none
//! missing, none extra.

use std::collections::{BTreeMap, BTreeSet};

use careledger_events::claims::{self as c, Amount, ClaimEvent};
use careledger_events::codes::{CodeEvent, CodeFormat, HolderType};
use careledger_events::insurees::{EnrolledPolicy, InsureeEvent, RegisteredInsuree};
use careledger_events::registry::*;
use careledger_events::requisitions::{EntityType, RequisitionEvent};
use careledger_events::{CONTEXTS, DomainEvent, schema};
use careledger_tests::scenario::{every_claims_event_type, every_event_type};
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
    every_claims_event_type(&s).await;
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
    assert_eq!(log.len(), 17 + 42, "the scenarios write 17 events, the claims lifecycle 36 and its enrolment 6");
    let mut seen = BTreeSet::new();
    for event in &log {
        let key = (careledger_events::stream_context(&event.stream).to_string(), event.event_type.clone());
        let schema = validators.get(&key).unwrap_or_else(|| panic!("no schema for {key:?}"));
        assert_eq!(errors(schema, &event.data), Vec::<String>::new(), "{key:?} at {}: {}", event.position, event.data);
        let whole = serde_json::to_value(event).unwrap();
        assert_eq!(errors(&envelope, &whole), Vec::<String>::new(), "the envelope of {}", event.position);
        seen.insert(key);
    }
    // the sync's own events come from two servers syncing: tests/tests/sync_over_http.rs makes
    // them and checks them against this catalogue (`events_match_their_schemas`)
    let sync_only = [("claims", "OutcomeReceived"), ("claims", "ConflictRecorded")];
    let all: BTreeSet<_> = validators
        .keys()
        .filter(|(context, name)| !sync_only.contains(&(context.as_str(), name.as_str())))
        .cloned()
        .collect();
    assert_eq!(seen, all, "the scenarios must make (and so check) every event type");

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
            for_server: Some("urn:uuid:node".into()),
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
    out.extend(of(claims_samples()));
    let insuree = RegisteredInsuree {
        insuree_id: id(),
        chfid: "100000011".into(),
        last_name: "Mwangi".into(),
        other_names: "Amani".into(),
        birth_date: NaiveDate::from_ymd_opt(1990, 1, 31).unwrap(),
        gender: c::Gender::Female,
        phone: Some("+255 712 345 678".into()),
        family_head: Some(id()),
        location: Some("R1D1".into()),
        holder_type: HolderType::EnrolmentOfficer,
        holder_code: "EO-1".into(),
        identifiers: vec![careledger_events::Identifier { system: "urn:uuid:node".into(), value: "7".into() }],
    };
    let day = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    let policy = EnrolledPolicy {
        policy_id: id(),
        insuree_id: insuree.insuree_id,
        product_code: "P1".into(),
        enrol_date: day,
        effective_date: day,
        expiry_date: NaiveDate::from_ymd_opt(2027, 11, 30).unwrap(),
        identifiers: vec![],
    };
    out.extend(of(vec![
        InsureeEvent::InsureeRegistered { insuree, at: at() },
        InsureeEvent::PolicyEnrolled { policy, at: at() },
    ]));
    out
}

/// One event of every claims variant, optional fields filled where the service fills them.
fn claims_samples() -> Vec<ClaimEvent> {
    let id = Uuid::now_v7;
    let day = NaiveDate::from_ymd_opt(2026, 5, 4).unwrap();
    let text = |s: &str| Some(s.to_string());
    let record = c::ClaimRecord {
        claim_id: id(),
        data: c::ClaimData {
            code: "C-1".into(),
            health_facility: "HF1".into(),
            insuree: "100000001".into(),
            date_from: day,
            date_to: Some(day),
            date_claimed: day,
            icd: "A00".into(),
            icd_secondary: vec!["B01".into()],
            visit_type: c::VisitType::Referral,
            care_type: Some(c::CareType::OutPatient),
            admin: text("ADM-1"),
            explanation: text("follow-up"),
            guarantee_id: None,
            items: vec![c::LineInput {
                code: "I1".into(),
                qty_provided: Amount::units(2),
                price_asked: Amount(1250),
                explanation: None,
            }],
            services: vec![],
        },
        claimed: Amount(2500),
        restored_from: Some(id()),
        identifiers: vec![careledger_events::Identifier { system: "urn:uuid:node".into(), value: "n-1".into() }],
        at: at(),
    };
    let outcome_data = record.data.clone();
    let conflict_data = record.data.clone();
    let valued = vec![c::LineValuation { kind: c::LineKind::Service, index: 0, price_valuated: Amount(1050) }];
    let attachment = c::Attachment {
        attachment_id: id(),
        title: "Scan".into(),
        attachment_type: text("referral"),
        date: Some(day),
        url: None,
        filename: text("scan.pdf"),
        mime: text("application/pdf"),
        hash: Some("ab".repeat(32)),
        size: Some(4),
    };
    let (claim_id, batch_run_id) = (id(), id());
    vec![
        ClaimEvent::HealthFacilityUpserted {
            facility: c::HealthFacility { code: "HF1".into(), name: "Hospital".into(), care_type: c::CareType::Both },
            at: at(),
        },
        ClaimEvent::MedicalEntryUpserted {
            entry: c::MedicalEntry {
                kind: c::LineKind::Service,
                code: "S1".into(),
                name: "Consultation".into(),
                price: Amount::units(40),
                care_type: c::CareType::OutPatient,
                frequency_days: Some(30),
                maximum_amount: Some(Amount::units(2)),
                category: Some(c::ServiceCategory::Consultation),
            },
            at: at(),
        },
        ClaimEvent::PriceListUpserted {
            health_facility: "HF1".into(),
            entries: vec![c::PriceListEntry {
                kind: c::LineKind::Item,
                code: "I1".into(),
                price: Some(Amount(750)),
                valid_from: day,
                valid_to: Some(day),
            }],
            at: at(),
        },
        ClaimEvent::InsureeUpserted {
            insuree: c::Insuree {
                insuree_id: id(),
                chfid: "100000001".into(),
                birth_date: day,
                gender: c::Gender::Female,
            },
            at: at(),
        },
        ClaimEvent::ProductUpserted {
            product: c::Product {
                code: "P1".into(),
                name: "Basic".into(),
                coverage: vec![c::Coverage {
                    kind: c::LineKind::Service,
                    code: "S2".into(),
                    limit_adult: Some(Amount::units(5)),
                    limit_child: None,
                    waiting_period_adult: 24,
                    waiting_period_child: 0,
                    price_origin: c::PriceOrigin::Relative,
                }],
            },
            at: at(),
        },
        ClaimEvent::PolicyUpserted {
            policy: c::Policy {
                policy_id: id(),
                insuree_id: id(),
                product_code: "P1".into(),
                effective_date: day,
                expiry_date: day,
            },
            at: at(),
        },
        ClaimEvent::ClaimCreated(Box::new(record.clone())),
        ClaimEvent::ClaimUpdated(Box::new(record)),
        ClaimEvent::ClaimDeleted { claim_id, at: at() },
        ClaimEvent::ClaimSubmitted {
            claim_id,
            status: c::ClaimStatus::Checked,
            rejection_reason: None,
            lines: vec![c::LineAssessment {
                kind: c::LineKind::Item,
                index: 0,
                status: c::LineStatus::Passed,
                rejection_reason: 0,
                qty_approved: Some(Amount::units(2)),
                price_adjusted: Some(Amount(1250)),
                product: text("P1"),
                price_origin: Some(c::PriceOrigin::PriceList),
            }],
            approved: Some(Amount(2500)),
            category: Some(c::ServiceCategory::Visit),
            at: at(),
        },
        ClaimEvent::FeedbackStatusChanged { claim_id, feedback_status: c::StepStatus::Selected, at: at() },
        ClaimEvent::FeedbackDelivered {
            claim_id,
            feedback: c::Feedback {
                care_rendered: true,
                payment_asked: false,
                drug_prescribed: true,
                drug_received: false,
                assessment: 4,
                officer: text("E-1"),
                feedback_date: day,
            },
            at: at(),
        },
        ClaimEvent::ReviewStatusChanged { claim_id, review_status: c::StepStatus::NotSelected, at: at() },
        ClaimEvent::ReviewSaved {
            claim_id,
            lines: vec![c::LineReview {
                kind: c::LineKind::Item,
                index: 0,
                qty_approved: Some(Amount::units(1)),
                price_approved: Some(Amount(700)),
                justification: text("one box"),
                rejected: false,
            }],
            approved: Amount(700),
            status: c::ClaimStatus::Checked,
            delivered: true,
            at: at(),
        },
        ClaimEvent::ClaimProcessed {
            claim_id,
            status: c::ClaimStatus::Processed,
            lines: valued.clone(),
            valuated: None,
            remunerated: None,
            feedback_status: c::StepStatus::Bypassed,
            review_status: c::StepStatus::Delivered,
            at: at(),
        },
        ClaimEvent::ClaimValuated {
            claim_id,
            batch_run_id,
            status: c::ClaimStatus::Valuated,
            lines: valued,
            valuated: Amount(1750),
            remunerated: Amount(1750),
            at: at(),
        },
        ClaimEvent::ValuationRun {
            batch_run_id,
            product: "P1".into(),
            from: day,
            to: day,
            amount: Amount::units(100),
            relative_total: Amount::units(10),
            claims: vec![claim_id],
            at: at(),
        },
        ClaimEvent::ClaimRestored { claim_id, restored_as: id(), at: at() },
        ClaimEvent::AttachmentAdded { claim_id, attachment: attachment.clone(), at: at() },
        ClaimEvent::AttachmentUpdated { claim_id, attachment: attachment.clone(), at: at() },
        ClaimEvent::AttachmentDeleted { claim_id, attachment_id: attachment.attachment_id, at: at() },
        ClaimEvent::OutcomeReceived(Box::new(c::ClaimOutcome {
            claim_id,
            data: outcome_data,
            status: c::ClaimStatus::Rejected,
            rejection_reason: Some(7),
            category: Some(c::ServiceCategory::Visit),
            claimed: Amount(2500),
            approved: Some(Amount(0)),
            valuated: None,
            remunerated: None,
            lines: vec![c::LineOutcome {
                kind: c::LineKind::Item,
                index: 0,
                status: Some(c::LineStatus::Rejected),
                rejection_reason: 7,
                qty_approved: Some(Amount(100)),
                price_adjusted: Some(Amount(1200)),
                price_approved: None,
                price_valuated: None,
            }],
            at: at(),
        })),
        ClaimEvent::ConflictRecorded(Box::new(c::SyncConflict {
            claim_id,
            peer: "urn:uuid:node".into(),
            rule: c::ConflictRule::DecidedHere,
            status: c::ClaimStatus::Valuated,
            data: conflict_data,
            at: at(),
        })),
    ]
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
    assert_eq!(events["claims"].len(), 23, "a schema for each claims event type");
    assert_eq!(described, produced, "every schema has a sample and every sample a schema");
}
