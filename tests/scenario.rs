//! A scenario that makes every event type of the catalogue over real HTTP: codes (generation,
//! reservation, assignment with `json_ext`, control number), the registry (legal entity, divisions,
//! equipment through its whole life) and requisitions (a number issued, an entity added), each
//! context by its own actor. The audit and event-schema tests read the log it leaves.
//!
//! The claims context has a lifecycle of its own ([`claims_lifecycle`]): every claims command once,
//! every claims event type, written as commands of the NATS table so that it can be sent over HTTP
//! ([`every_claims_event_type`]) or over NATS (the command intake's tests).

use careledger_gateway::intake::commands::{COMMANDS, NatsCommand};
use chrono::{Days, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{ALL, CLAIMS, REGISTRY, REQUISITIONS, TestServer, token_for};

/// What the scenario did, for the assertions on it.
pub struct Scenario {
    /// The legal entity equipment was registered for (its actors' `client_id`).
    pub legal_entity: String,
    /// The equipment's stream.
    pub equipment_stream: String,
    /// The code batch's stream.
    pub batch_stream: String,
    /// The position every read model must reach to hold the whole scenario.
    pub last: i64,
}

/// The users of the scenario (`sub` of their tokens).
pub const CODES_USER: &str = "user-1";
pub const REGISTRY_ADMIN: &str = "registry-admin";
pub const EQUIPMENT_USER: &str = "equipment-user";
pub const REQUISITIONS_USER: &str = "requisitions-user";

pub async fn every_event_type(s: &TestServer) -> Scenario {
    let expect = |a: &crate::Answer, status: StatusCode| {
        assert_eq!(a.status, status, "{}", a.text);
        a.position()
    };
    let patch = |path: String, token: String, body: serde_json::Value| async move {
        s.request(Method::PATCH, &path, Some(&token), Some(&body.to_string())).await
    };

    // codes, as user-1 for le-1
    let t = s.token(ALL);
    let a = s.post("/api/v1/code-batches", &t, json!({ "holder_type": 1, "holder_code": "SCN", "number": 5 })).await;
    expect(&a, StatusCode::CREATED);
    let batch_stream = format!("codes-batch-{}", a.data()["batch_id"].as_str().unwrap());
    let a =
        s.post("/api/v1/codes/reservations", &t, json!({ "holder_type": 1, "holder_code": "SCN", "number": 3 })).await;
    expect(&a, StatusCode::CREATED);
    let code = a.data()["codes"][0].as_str().unwrap().to_string();
    let a = s
        .post(
            &format!("/api/v1/codes/{code}/assignment"),
            &t,
            json!({ "insuree_id": "ins-1", "json_ext": { "village": "Kilosa" } }),
        )
        .await;
    expect(&a, StatusCode::OK);
    let a = s.post(&format!("/api/v1/codes/{code}/control-number"), &t, json!({ "control_number": "CN-1" })).await;
    expect(&a, StatusCode::OK);

    // registry reference data, as an administrator acting for no legal entity
    let admin = token_for(REGISTRY_ADMIN, REGISTRY, None);
    let le = Uuid::now_v7().to_string();
    let a = s
        .post(
            "/api/v1/legal-entities",
            &admin,
            json!({ "id": le, "name": "Clinic", "edrpou": "12345678", "type": "PRIMARY_CARE", "status": "ACTIVE" }),
        )
        .await;
    expect(&a, StatusCode::CREATED);
    let mut divisions = Vec::new();
    for _ in 0..3 {
        let div = Uuid::now_v7().to_string();
        let a = s
            .post(
                "/api/v1/divisions",
                &admin,
                json!({ "id": div, "legal_entity_id": le, "name": "Ward", "type": "CLINIC", "status": "ACTIVE" }),
            )
            .await;
        expect(&a, StatusCode::CREATED);
        divisions.push(div);
    }
    let a = patch(format!("/api/v1/divisions/{}", divisions[2]), admin.clone(), json!({ "is_active": false })).await;
    expect(&a, StatusCode::OK);

    // equipment through its whole life, as a user of the legal entity
    let user = token_for(EQUIPMENT_USER, "equipment:write equipment:read", Some(&le));
    let a = s
        .post(
            "/api/v1/equipment",
            &user,
            json!({
                "division_id": divisions[0], "type": "23143534", "external_id": "EQ-1", "name": "Ultrasound",
                "serial_number": "SN-1", "udi": [{ "type": "default", "value": "IMEI 49015420323751" }],
                "manufacture_date": "2024-02-01",
            }),
        )
        .await;
    expect(&a, StatusCode::CREATED);
    let eq = a.data()["id"].as_str().unwrap().to_string();
    let a =
        s.post(&format!("/api/v1/equipment/{eq}/division-links"), &user, json!({ "division_id": divisions[1] })).await;
    expect(&a, StatusCode::CREATED);
    let a =
        patch(format!("/api/v1/equipment/{eq}/availability"), user.clone(), json!({ "availability_status": "LOST" }))
            .await;
    expect(&a, StatusCode::OK);
    let a = patch(
        format!("/api/v1/equipment/{eq}/status"),
        user.clone(),
        json!({ "status": "ENTERED_IN_ERROR", "reason": "registered twice" }),
    )
    .await;
    expect(&a, StatusCode::OK);
    let a = patch(format!("/api/v1/legal-entities/{le}"), admin.clone(), json!({ "status": "SUSPENDED" })).await;
    expect(&a, StatusCode::OK);

    // requisitions: one encounter, two service requests
    let t = token_for(REQUISITIONS_USER, REQUISITIONS, Some(&le));
    let encounter = Uuid::now_v7();
    let mut last = 0;
    for (i, status) in [StatusCode::CREATED, StatusCode::OK].into_iter().enumerate() {
        let body = json!({ "encounter_id": encounter, "entity_type": "service_request", "entity_id": Uuid::from_u128(i as u128 + 1) });
        last = expect(&s.post("/api/v1/requisitions", &t, body).await, status);
    }
    Scenario { legal_entity: le, equipment_stream: format!("registry-equipment-{eq}"), batch_stream, last }
}

/// The claims administrator of [`every_claims_event_type`] (`sub` of its token).
pub const CLAIMS_ADMIN: &str = "claims-admin";

/// One claims command of [`claims_lifecycle`], as the NATS command table names it.
#[derive(Debug, Clone)]
pub struct ClaimsStep {
    pub command: &'static str,
    /// Path parameters by their header (`Careledger-Uuid`, `Careledger-Id`).
    pub params: Vec<(&'static str, String)>,
    pub body: Value,
    /// The status it must answer.
    pub status: u16,
    /// A bulk command (`{"uuids": [...]}`): it takes no idempotency key.
    pub bulk: bool,
}

impl ClaimsStep {
    fn new(command: &'static str, status: u16, body: Value) -> Self {
        ClaimsStep { command, params: vec![], body, status, bulk: false }
    }

    fn on(mut self, header: &'static str, value: impl ToString) -> Self {
        self.params.push((header, value.to_string()));
        self
    }

    fn bulk(command: &'static str, uuids: &[Uuid]) -> Self {
        ClaimsStep { bulk: true, ..Self::new(command, 200, json!({ "uuids": uuids })) }
    }
}

/// The HTTP method and path of a command of the NATS table, its path parameters filled from
/// `params` (by header name, as over NATS).
pub fn http_of(command: &str, params: &[(&'static str, String)]) -> (Method, String) {
    let command = COMMANDS.iter().find(|c| c.name == command).expect("a command of the table");
    let path = command.path_with(|parameter| {
        let header = NatsCommand::header_of(parameter);
        params.iter().find(|(name, _)| *name == header).map(|(_, value)| value.clone())
    });
    (command.method.clone(), path.expect("every path parameter given"))
}

/// A claim of the lifecycle at HF1 for the insured adult, its items and services given.
fn claim_body(code: &str, items: Value, services: Value) -> Value {
    json!({
        "code": code, "health_facility": "HF1", "insuree": "100000001",
        "date_from": Utc::now().date_naive() - Days::new(5), "icd": "A00", "visit_type": "O",
        "items": items, "services": services,
    })
}

/// Every claims command once, making every claims event type: the reference data, three claims
/// (A through every stage to VALUATED by a batch run, B bypassed and VALUATED at processing, D
/// REJECTED, restored, its copy deleted) and an attachment added, updated and deleted. `send`
/// runs a step and answers its body; it must wait for the read models to hold what the step
/// appended (submission and valuation read them).
pub async fn claims_lifecycle(mut send: impl AsyncFnMut(ClaimsStep) -> Value) {
    let today = Utc::now().date_naive();
    let upsert = |command, entries: Value| ClaimsStep::new(command, 200, json!({ "entries": entries }));
    let (insuree, policy) = (Uuid::now_v7(), Uuid::now_v7());
    for step in [
        upsert("UpsertHealthFacilities", json!([{ "code": "HF1", "name": "District hospital", "care_type": "B" }])),
        upsert("UpsertMedicalItems", json!([{ "code": "I1", "name": "Paracetamol", "price": 8 }])),
        upsert("UpsertMedicalServices", json!([{ "code": "S2", "name": "Laboratory", "price": 5 }])),
        upsert(
            "UpsertPriceLists",
            json!([{ "health_facility": "HF1", "items": [{ "code": "I1", "valid_from": "2020-01-01" }],
                     "services": [{ "code": "S2", "valid_from": "2020-01-01" }] }]),
        ),
        upsert(
            "UpsertInsurees",
            json!([{ "uuid": insuree, "chfid": "100000001", "birth_date": "1980-05-05", "gender": "F" }]),
        ),
        upsert(
            "UpsertProducts",
            json!([{ "code": "P1", "name": "Basic", "items": [{ "code": "I1" }],
                     "services": [{ "code": "S2", "price_origin": "R" }] }]),
        ),
        upsert(
            "UpsertPolicies",
            json!([{ "uuid": policy, "insuree": insuree, "product": "P1",
                     "effective_date": today - Days::new(300), "expiry_date": today + Days::new(60) }]),
        ),
    ] {
        send(step).await;
    }

    let (a, b, d) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let line = |code: &str, price: u32| json!([{ "code": code, "qty_provided": 1, "price_asked": price }]);
    for (id, code, items, services) in [
        (a, "C-A", line("I1", 8), line("S2", 5)),
        (b, "C-B", line("I1", 8), json!([])),
        (d, "C-D", line("I9", 1), json!([])),
    ] {
        let mut body = claim_body(code, items, services);
        body["uuid"] = json!(id);
        send(ClaimsStep::new("CreateClaim", 201, body)).await;
    }
    let mut updated = claim_body("C-A", line("I1", 8), line("S2", 5));
    updated["explanation"] = json!("lab test added at discharge");
    send(ClaimsStep::new("UpdateClaim", 200, updated).on("Careledger-Uuid", a)).await;

    // a file attached (base64 "scan"), renamed, removed
    let attachment = json!({ "title": "Scan", "document": "c2Nhbg==", "filename": "scan.txt", "mime": "text/plain" });
    let added = send(ClaimsStep::new("AddAttachment", 201, attachment).on("Careledger-Uuid", a)).await;
    let attachment_id = added["data"]["attachments"][0]["attachment_id"].as_str().expect("an attachment").to_string();
    for (command, body) in [("UpdateAttachment", json!({ "title": "Scan, page 1" })), ("DeleteAttachment", json!({}))] {
        send(ClaimsStep::new(command, 200, body).on("Careledger-Uuid", a).on("Careledger-Id", &attachment_id)).await;
    }

    // A and B CHECKED, D REJECTED (I9 is in no register)
    let submitted = send(ClaimsStep::bulk("SubmitClaims", &[a, b, d])).await;
    let statuses: Vec<_> = (0..3).map(|i| submitted["data"][i]["claim"]["status"].as_i64()).collect();
    assert_eq!(statuses, [Some(4), Some(4), Some(1)], "{submitted}");
    for (skip, select, bypass) in [
        ("SkipClaimsFeedback", "SelectClaimsForFeedback", "BypassClaimsFeedback"),
        ("SkipClaimsReview", "SelectClaimsForReview", "BypassClaimsReview"),
    ] {
        for s in [ClaimsStep::bulk(skip, &[a, b]), ClaimsStep::bulk(select, &[a, b]), ClaimsStep::bulk(bypass, &[b])] {
            let answer = send(s).await;
            assert!(answer["data"].as_array().expect("entries").iter().all(|e| e["done"] == true), "{answer}");
        }
    }
    let feedback = json!({ "care_rendered": true, "payment_asked": false, "drug_prescribed": true,
                           "drug_received": true, "assessment": 4 });
    send(ClaimsStep::new("DeliverFeedback", 200, feedback).on("Careledger-Uuid", a)).await;
    let review =
        json!({ "lines": [{ "kind": "item", "index": 0, "qty_approved": 1, "price_approved": 7 }], "deliver": true });
    send(ClaimsStep::new("SaveReview", 200, review).on("Careledger-Uuid", a)).await;
    // A waits for the batch run (S2's relative price), B is VALUATED at once
    let processed = send(ClaimsStep::bulk("ProcessClaims", &[a, b])).await;
    let statuses: Vec<_> = (0..2).map(|i| processed["data"][i]["claim"]["status"].as_i64()).collect();
    assert_eq!(statuses, [Some(8), Some(16)], "{processed}");
    let run = json!({ "product": "P1", "from": today - Days::new(30), "to": today, "amount": 100 });
    send(ClaimsStep::new("ValuateClaims", 201, run)).await;

    let restored = send(ClaimsStep::new("RestoreClaim", 201, json!({})).on("Careledger-Uuid", d)).await;
    let copy: Uuid = restored["data"]["uuid"].as_str().and_then(|u| u.parse().ok()).expect("the restored claim");
    send(ClaimsStep::bulk("DeleteClaims", &[copy])).await;

    // enrolment, checked against the same register: an officer's codes, an insuree registered
    // with one and enrolled in P1
    let (officer, registered) = (json!({ "holder_type": 2, "holder_code": "EO-1" }), Uuid::now_v7());
    let with = |mut body: Value, more: Value| {
        body.as_object_mut().expect("an object").extend(more.as_object().expect("an object").clone());
        body
    };
    for step in [
        ClaimsStep::new("GenerateCodes", 201, with(officer.clone(), json!({ "number": 5 }))),
        ClaimsStep::new("ReserveCodes", 201, with(officer.clone(), json!({ "number": 2 }))),
        ClaimsStep::new(
            "RegisterInsuree",
            201,
            with(
                officer,
                json!({ "insuree_id": registered, "last_name": "Mwangi", "other_names": "Amani",
                        "birth_date": "1990-01-31", "gender": "F" }),
            ),
        ),
        ClaimsStep::new(
            "EnrolInPolicy",
            201,
            json!({ "insuree_id": registered, "product_code": "P1", "enrol_date": today,
                    "expiry_date": today + Days::new(365) }),
        ),
    ] {
        send(step).await;
    }
}

/// [`claims_lifecycle`] over HTTP as [`CLAIMS_ADMIN`]; the position of its last event.
pub async fn every_claims_event_type(s: &TestServer) -> i64 {
    let t = token_for(CLAIMS_ADMIN, CLAIMS, None);
    let mut last = 0;
    claims_lifecycle(async |step: ClaimsStep| {
        let (method, path) = http_of(step.command, &step.params);
        let a = s.request(method, &path, Some(&t), Some(&step.body.to_string())).await;
        assert_eq!(a.status.as_u16(), step.status, "{} {path}: {}", step.command, a.text);
        last = a.position();
        assert!(s.state().projections.wait_for(last, std::time::Duration::from_secs(10)).await, "read models behind");
        a.body
    })
    .await;
    last
}
