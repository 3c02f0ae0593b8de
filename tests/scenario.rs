//! A scenario that makes every event type of the catalogue over real HTTP: codes (generation,
//! reservation, assignment with `json_ext`, control number), the registry (legal entity, divisions,
//! equipment through its whole life) and requisitions (a number issued, an entity added), each
//! context by its own actor. The audit and event-schema tests read the log it leaves.

use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::{ALL, REGISTRY, REQUISITIONS, TestServer, token_for};

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
