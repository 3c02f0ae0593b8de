//! The eHealth registry over real HTTP on both backends: reference data, every answer of equipment
//! registration (401/403/409/422/201) in eHealth's order of checks, division links, status and
//! availability, queries scoped to the caller's legal entity, duplicates under concurrency, and a
//! rebuild that gives identical tables.

use std::time::Duration;

use careledger_projections::{Projections, dump_tables};
use careledger_tests::{Answer, Kind, REGISTRY, SECRET, TestServer, both_backends, token_for};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

const TABLES: [&str; 5] =
    ["legal_entities", "divisions", "equipment", "equipment_division_links", "equipment_status_history"];

/// Two legal entities, each with active divisions, and tokens acting for them.
struct World {
    le: String,
    div: String,
    div2: String,
    other_le: String,
    other_div: String,
    /// Registers reference data (acts for no legal entity).
    admin: String,
    /// Acts for `le`.
    user: String,
    /// Acts for `other_le`.
    other_user: String,
}

fn id() -> String {
    Uuid::now_v7().to_string()
}

async fn patch(s: &TestServer, path: &str, token: &str, body: Value) -> Answer {
    s.request(Method::PATCH, path, Some(token), Some(&body.to_string())).await
}

async fn legal_entity(s: &TestServer, admin: &str, le_type: &str, status: &str) -> String {
    let le = id();
    let a = s
        .post(
            "/api/v1/legal-entities",
            admin,
            json!({ "id": le, "name": "Clinic", "edrpou": "12345678", "type": le_type, "status": status }),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    le
}

async fn division(s: &TestServer, admin: &str, le: &str, status: &str) -> String {
    let div = id();
    let a = s
        .post(
            "/api/v1/divisions",
            admin,
            json!({ "id": div, "legal_entity_id": le, "name": "Ward", "type": "CLINIC", "status": status }),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    div
}

async fn world(s: &TestServer) -> World {
    let admin = token_for("admin", REGISTRY, None);
    let le = legal_entity(s, &admin, "PRIMARY_CARE", "ACTIVE").await;
    let other_le = legal_entity(s, &admin, "MSP", "ACTIVE").await;
    let div = division(s, &admin, &le, "ACTIVE").await;
    let div2 = division(s, &admin, &le, "ACTIVE").await;
    let other_div = division(s, &admin, &other_le, "ACTIVE").await;
    let user = token_for("user-1", "equipment:write equipment:read", Some(&le));
    let other_user = token_for("user-2", "equipment:write equipment:read", Some(&other_le));
    World { le, div, div2, other_le, other_div, admin, user, other_user }
}

fn equipment(division_id: &str, external_id: &str) -> Value {
    json!({
        "division_id": division_id,
        "type": "23143534",
        "external_id": external_id,
        "name": "Ultrasound scanner",
        "serial_number": "SN-0001",
        "manufacturer": "GlobalMed, Inc",
        "model_number": "GM-7",
        "lot_number": "RZ12345678",
        "udi": [{ "type": "default", "value": "IMEI 49015420323751", "assigner_name": "Ukrainian center of the certification" }],
        "manufacture_date": "2024-02-01",
        "expiration_date": "2034-02-01",
        "note": "ward 3",
    })
}

async fn register(s: &TestServer, token: &str, body: Value) -> Answer {
    s.post("/api/v1/equipment", token, body).await
}

async fn registered(s: &TestServer, w: &World, external_id: &str) -> (String, i64) {
    let a = register(s, &w.user, equipment(&w.div, external_id)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    (a.data()["id"].as_str().unwrap().to_string(), a.position())
}

fn message(a: &Answer) -> &str {
    a.body["error"]["message"].as_str().unwrap_or("")
}

/// The `description` of the first rule of every invalid entry.
fn descriptions(a: &Answer) -> Vec<(String, String)> {
    a.body["error"]["invalid"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    (
                        i["entry"].as_str().unwrap_or("").to_string(),
                        i["rules"][0]["description"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

both_backends!(reference_data_commands, reference_data_on);
async fn reference_data_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let admin = token_for("admin", REGISTRY, None);
    let le = id();
    let body =
        json!({ "id": le, "name": "City clinic", "edrpou": "12345678", "type": "OUTPATIENT", "status": "ACTIVE" });
    let a = s.post("/api/v1/legal-entities", &admin, body.clone()).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(
        (a.data()["id"].as_str(), a.data()["type"].as_str(), a.data()["status"].as_str()),
        (Some(le.as_str()), Some("OUTPATIENT"), Some("ACTIVE"))
    );
    assert_eq!(a.data()["inserted_by"], "admin");
    // the same fact again: 200, nothing appended; other data under the id: 409
    let count = s.state().store.count().await.unwrap();
    let again = s.post("/api/v1/legal-entities", &admin, body.clone()).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(s.state().store.count().await.unwrap(), count);
    let mut other = body.clone();
    other["name"] = json!("Another clinic");
    let clash = s.post("/api/v1/legal-entities", &admin, other).await;
    assert_eq!((clash.status, message(&clash)), (StatusCode::CONFLICT, "Legal entity already exists with other data"));
    let bad = s
        .post(
            "/api/v1/legal-entities",
            &admin,
            json!({ "id": "nope", "name": "", "edrpou": "12", "type": "HOSPITAL", "status": "OPEN", "extra": 1 }),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.invalid_entries(), vec!["$.extra", "$.id", "$.name", "$.type", "$.status"]);
    let bad = s
        .post("/api/v1/legal-entities", &admin, json!({ "id": id(), "name": "X", "edrpou": "12ab5678", "type": "MSP" }))
        .await;
    assert_eq!(bad.invalid_entries(), vec!["$.edrpou"]);
    let nil = s
        .post(
            "/api/v1/legal-entities",
            &admin,
            json!({ "id": Uuid::nil(), "name": "X", "edrpou": "12345678", "type": "MSP" }),
        )
        .await;
    assert_eq!(nil.invalid_entries(), vec!["$.id"]);

    // PATCH status
    let p = patch(&s, &format!("/api/v1/legal-entities/{le}"), &admin, json!({ "status": "SUSPENDED" })).await;
    assert_eq!((p.status, p.data()["status"].as_str()), (StatusCode::OK, Some("SUSPENDED")), "{}", p.text);
    let p = patch(&s, &format!("/api/v1/legal-entities/{}", id()), &admin, json!({ "status": "CLOSED" })).await;
    assert_eq!((p.status, message(&p)), (StatusCode::NOT_FOUND, "Legal entity not found"));
    let p = patch(&s, &format!("/api/v1/legal-entities/{le}"), &admin, json!({ "status": "GONE" })).await;
    assert_eq!(p.invalid_entries(), vec!["$.status"]);

    // divisions
    let div = id();
    let body = json!({ "id": div, "legal_entity_id": le, "name": "Surgery", "type": "CLINIC" });
    let unknown = s
        .post(
            "/api/v1/divisions",
            &admin,
            json!({ "id": div, "legal_entity_id": id(), "name": "Surgery", "type": "CLINIC" }),
        )
        .await;
    assert_eq!(descriptions(&unknown), vec![("$.legal_entity_id".to_string(), "Legal entity not found".to_string())]);
    let d = s.post("/api/v1/divisions", &admin, body.clone()).await;
    assert_eq!(d.status, StatusCode::CREATED, "{}", d.text);
    assert_eq!(
        (d.data()["status"].as_str(), d.data()["is_active"].as_bool(), d.data()["legal_entity_id"].as_str()),
        (Some("ACTIVE"), Some(true), Some(le.as_str()))
    );
    assert_eq!(s.post("/api/v1/divisions", &admin, body.clone()).await.status, StatusCode::OK);
    let mut moved = body.clone();
    moved["type"] = json!("FAP");
    assert_eq!(s.post("/api/v1/divisions", &admin, moved).await.status, StatusCode::CONFLICT);
    let bad = s.post("/api/v1/divisions", &admin, json!({ "type": "CASTLE" })).await;
    assert_eq!(bad.invalid_entries(), vec!["$.id", "$.legal_entity_id", "$.name", "$.type"]);
    let p = patch(&s, &format!("/api/v1/divisions/{div}"), &admin, json!({ "status": "INACTIVE" })).await;
    assert_eq!((p.status, p.data()["status"].as_str()), (StatusCode::OK, Some("INACTIVE")), "{}", p.text);
    let p = patch(&s, &format!("/api/v1/divisions/{div}"), &admin, json!({ "is_active": false })).await;
    assert_eq!((p.data()["status"].as_str(), p.data()["is_active"].as_bool()), (Some("INACTIVE"), Some(false)));
    let p = patch(&s, &format!("/api/v1/divisions/{div}"), &admin, json!({})).await;
    assert_eq!(p.invalid_entries(), vec!["$.status"]);
    let p = patch(&s, &format!("/api/v1/divisions/{div}"), &admin, json!({ "is_active": "no" })).await;
    assert_eq!(p.invalid_entries(), vec!["$.is_active"]);
    let p = patch(&s, &format!("/api/v1/divisions/{}", id()), &admin, json!({ "status": "ACTIVE" })).await;
    assert_eq!((p.status, message(&p)), (StatusCode::NOT_FOUND, "Division not found"));
    let p = patch(&s, "/api/v1/divisions/not-a-uuid", &admin, json!({ "status": "ACTIVE" })).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);

    // permissions: legal_entity:write and division:write
    let equipment_only = token_for("u", "equipment:write", None);
    for (method, path) in
        [(Method::POST, "/api/v1/legal-entities".to_string()), (Method::PATCH, format!("/api/v1/legal-entities/{le}"))]
    {
        let a = s.request(method, &path, Some(&equipment_only), Some("{}")).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        assert_eq!(
            message(&a),
            "Your scope does not allow to access this resource. Missing allowances: legal_entity:write"
        );
    }
    for (method, path) in
        [(Method::POST, "/api/v1/divisions".to_string()), (Method::PATCH, format!("/api/v1/divisions/{div}"))]
    {
        let a = s.request(method, &path, Some(&equipment_only), Some("{}")).await;
        assert_eq!(
            message(&a),
            "Your scope does not allow to access this resource. Missing allowances: division:write"
        );
    }
    // the events, with who did it
    let events = s.get(&format!("/api/v1/streams/registry-division-{div}/events"), &admin).await;
    let types: Vec<&str> =
        events.data().as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["DivisionRegistered", "DivisionStatusChanged", "DivisionStatusChanged"]);
    assert_eq!(events.data()[0]["metadata"]["actor"]["user_id"], "admin");
}

both_backends!(registration_answers_in_ehealth_order, registration_on);
async fn registration_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let w = world(&s).await;
    let before = s.state().store.count().await.unwrap();
    let body = equipment(&w.div, "EQ-1");
    let text = body.to_string();

    // 401: missing, forged, expired token
    let none = s.request(Method::POST, "/api/v1/equipment", None, Some(&text)).await;
    assert_eq!(
        (none.status, message(&none), none.error_type()),
        (StatusCode::UNAUTHORIZED, "Invalid access token", "access_denied")
    );
    let forged = careledger_gateway::auth::Keys::new("another").mint("u", "equipment:write", Some(&w.le), 60).unwrap();
    let a = s.request(Method::POST, "/api/v1/equipment", Some(&forged), Some(&text)).await;
    assert_eq!((a.status, message(&a)), (StatusCode::UNAUTHORIZED, "Invalid access token"));
    let expired = careledger_gateway::auth::Keys::new(SECRET).mint("u", "equipment:write", Some(&w.le), 0).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = s.request(Method::POST, "/api/v1/equipment", Some(&expired), Some(&text)).await;
    assert_eq!((a.status, message(&a)), (StatusCode::UNAUTHORIZED, "Invalid access token"));
    // 403: the scope, then a token acting for no legal entity
    let reader = token_for("u", "equipment:read", Some(&w.le));
    let a = register(&s, &reader, body.clone()).await;
    assert_eq!((a.status, a.error_type()), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!(message(&a), "Your scope does not allow to access this resource. Missing allowances: equipment:write");
    let nobody = token_for("u", "equipment:write", None);
    let a = register(&s, &nobody, body.clone()).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);

    // 422: the schema, every invalid field with its path (and before the legal entity is looked at)
    let unknown_le = token_for("u", "equipment:write", Some(&id()));
    let a = register(
        &s,
        &unknown_le,
        json!({
            "division_id": "x", "type": "", "name": 7, "colour": "red",
            "udi": [{ "type": "default" }, 5, { "type": "gs1", "value": "01", "issuer": "?" }],
            "manufacture_date": "2024-13-01", "note": "n".repeat(2001), "availability_status": "BROKEN",
            "serial_number": ["SN"],
        }),
    )
    .await;
    assert_eq!((a.status, a.error_type()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    assert_eq!(
        a.invalid_entries(),
        vec![
            "$.colour",
            "$.division_id",
            "$.type",
            "$.external_id",
            "$.name",
            "$.serial_number",
            "$.udi[0].value",
            "$.udi[1]",
            "$.udi[2].issuer",
            "$.manufacture_date",
            "$.note",
            "$.availability_status",
        ]
    );
    assert_eq!(a.body["error"]["invalid"][0]["entry_type"], "json_data_property");
    let mut dates = body.clone();
    dates["expiration_date"] = json!("2020-01-01");
    assert_eq!(register(&s, &w.user, dates).await.invalid_entries(), vec!["$.expiration_date"]);
    let a = s.request(Method::POST, "/api/v1/equipment", Some(&w.user), Some("{\"division_id\":")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    // 409: the legal entity (unknown, not ACTIVE/SUSPENDED, a type that holds no equipment)
    let a = register(&s, &unknown_le, body.clone()).await;
    assert_eq!((a.status, message(&a)), (StatusCode::CONFLICT, "Legal entity must be ACTIVE or SUSPENDED"));
    let odd = token_for("u", "equipment:write", Some("le-not-a-uuid"));
    assert_eq!(message(&register(&s, &odd, body.clone()).await), "Legal entity must be ACTIVE or SUSPENDED");
    for status in ["CLOSED", "REORGANIZED"] {
        let le = legal_entity(&s, &w.admin, "MSP", status).await;
        let t = token_for("u", "equipment:write", Some(&le));
        let a = register(&s, &t, equipment(&w.div, "EQ-1")).await;
        assert_eq!((a.status, message(&a)), (StatusCode::CONFLICT, "Legal entity must be ACTIVE or SUSPENDED"));
    }
    let pharmacy = legal_entity(&s, &w.admin, "PHARMACY", "ACTIVE").await;
    let pharmacy_div = division(&s, &w.admin, &pharmacy, "ACTIVE").await;
    let t = token_for("u", "equipment:write", Some(&pharmacy));
    let a = register(&s, &t, equipment(&pharmacy_div, "EQ-1")).await;
    assert_eq!((a.status, message(&a)), (StatusCode::CONFLICT, "Action is not allowed for the legal entity"));

    // 422 on $.division_id: not found (missing, removed), another legal entity's, not active
    let removed = division(&s, &w.admin, &w.le, "ACTIVE").await;
    patch(&s, &format!("/api/v1/divisions/{removed}"), &w.admin, json!({ "is_active": false })).await;
    let inactive = division(&s, &w.admin, &w.le, "INACTIVE").await;
    for (division_id, description) in [
        (id(), "Division not found"),
        (removed.clone(), "Division not found"),
        (w.other_div.clone(), "Division is not within current legal entity"),
        (inactive.clone(), "Division is not active"),
    ] {
        let a = register(&s, &w.user, equipment(&division_id, "EQ-1")).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
        assert_eq!(descriptions(&a), vec![("$.division_id".to_string(), description.to_string())]);
        assert_eq!(a.body["error"]["invalid"][0]["rules"][0]["rule"], "invalid");
    }
    let refused = s.state().store.count().await.unwrap();
    assert_eq!(refused - before, 7, "only the reference data of this test was appended: no refusal appends");

    // 201 with the equipment
    let a = register(&s, &w.user, body.clone()).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(a.body["meta"]["code"], 201);
    let d = a.data();
    let eq = d["id"].as_str().unwrap();
    assert!(Uuid::parse_str(eq).is_ok());
    for (field, want) in [
        ("type", "23143534"),
        ("external_id", "EQ-1"),
        ("name", "Ultrasound scanner"),
        ("serial_number", "SN-0001"),
        ("manufacturer", "GlobalMed, Inc"),
        ("model_number", "GM-7"),
        ("lot_number", "RZ12345678"),
        ("manufacture_date", "2024-02-01"),
        ("expiration_date", "2034-02-01"),
        ("note", "ward 3"),
        ("legal_entity_id", w.le.as_str()),
        ("division_id", w.div.as_str()),
        ("status", "ACTIVE"),
        ("availability_status", "AVAILABLE"),
        ("inserted_by", "user-1"),
        ("updated_by", "user-1"),
    ] {
        assert_eq!(d[field].as_str(), Some(want), "{field} in {d}");
    }
    assert_eq!(d["is_active"], true);
    assert_eq!(d["udi"], body["udi"]);
    assert_eq!(d["inserted_at"], d["updated_at"]);
    assert!(d["inserted_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        (d["division_link"]["division_id"].as_str(), d["division_link"]["status"].as_str()),
        (Some(w.div.as_str()), Some("ACTIVE"))
    );
    // the read model answers the same equipment
    let got = s.get(&format!("/api/v1/equipment/{eq}?after_position={}", a.position()), &w.user).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    for (k, v) in d.as_object().unwrap() {
        assert_eq!(&got.data()[k], v, "{k}");
    }
    // the event carries the first division link and who registered
    let events =
        s.get(&format!("/api/v1/streams/registry-equipment-{eq}/events"), &token_for("a", "audit:read", None)).await;
    let e = &events.data()[0];
    assert_eq!(
        (e["event_type"].as_str(), e["metadata"]["command"].as_str()),
        (Some("EquipmentRegistered"), Some("RegisterEquipment"))
    );
    assert_eq!(e["data"]["link_id"], d["division_link"]["id"]);
    assert_eq!(
        (e["metadata"]["actor"]["user_id"].as_str(), e["metadata"]["actor"]["legal_entity_id"].as_str()),
        (Some("user-1"), Some(w.le.as_str()))
    );

    // 409: the same external_id within the legal entity; another legal entity may use it
    let dup = register(&s, &w.user, body.clone()).await;
    assert_eq!(
        (dup.status, message(&dup), dup.error_type()),
        (StatusCode::CONFLICT, "Duplicated equipment", "request_conflict")
    );
    // a bad division is answered before the duplicate
    let a = register(&s, &w.user, equipment(&inactive, "EQ-1")).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(register(&s, &w.other_user, equipment(&w.other_div, "EQ-1")).await.status, StatusCode::CREATED);
    // suspended legal entities still register
    patch(&s, &format!("/api/v1/legal-entities/{}", w.le), &w.admin, json!({ "status": "SUSPENDED" })).await;
    let a = register(&s, &w.user, json!({ "division_id": w.div, "type": "X1", "external_id": "EQ-2", "name": "Scale", "availability_status": "LOST" })).await;
    assert_eq!((a.status, a.data()["availability_status"].as_str()), (StatusCode::CREATED, Some("LOST")), "{}", a.text);
    assert_eq!(a.data()["udi"], json!([]));
}

both_backends!(idempotent_registration, idempotent_registration_on);
async fn idempotent_registration_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let w = world(&s).await;
    let (s, w) = (&s, &w);
    let send_with = |key: &'static str, external_id: &'static str| async move {
        let r = s
            .client
            .post(format!("{}/api/v1/equipment", s.base))
            .bearer_auth(&w.user)
            .header("Idempotency-Key", key)
            .json(&equipment(&w.div, external_id))
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    let (s1, b1) = send_with("reg-1", "IDEM-1").await;
    let (s2, b2) = send_with("reg-1", "IDEM-1").await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(b1["data"], b2["data"], "a repeat answers the first answer, not a duplicate");
    // concurrent repeats of a new key: both answer the one registration
    let ((s1, b1), (s2, b2)) = tokio::join!(send_with("reg-2", "IDEM-2"), send_with("reg-2", "IDEM-2"));
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED), "{b1} {b2}");
    assert_eq!(b1["data"]["id"], b2["data"]["id"]);
    // the same key for another request: 422
    let (s3, b3) = send_with("reg-1", "IDEM-3").await;
    assert_eq!(s3, StatusCode::UNPROCESSABLE_ENTITY, "{b3}");
}

both_backends!(division_links, division_links_on);
async fn division_links_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let w = world(&s).await;
    let (eq, _) = registered(&s, &w, "LINK-1").await;
    let first_link = s
        .get(&format!("/api/v1/equipment/{eq}?after_position={}", s.state().store.head().await.unwrap()), &w.user)
        .await
        .data()["division_link"]["id"]
        .clone();
    let path = format!("/api/v1/equipment/{eq}/division-links");
    let a = s.post(&path, &w.user, json!({ "division_id": w.div2 })).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(a.data()["division_id"], w.div2.as_str());
    assert_ne!(a.data()["division_link"]["id"], first_link);
    let d = s.get(&format!("/api/v1/equipment/{eq}?after_position={}", a.position()), &w.user).await;
    let d = d.data();
    assert_eq!(d["division_id"], w.div2.as_str());
    let links = d["division_links"].as_array().unwrap();
    assert_eq!(links.len(), 2);
    assert_eq!(
        (links[0]["id"].clone(), links[0]["status"].as_str(), links[0]["division_id"].as_str()),
        (first_link, Some("INACTIVE"), Some(w.div.as_str()))
    );
    assert_eq!(
        (links[1]["status"].as_str(), links[1]["division_id"].as_str()),
        (Some("ACTIVE"), Some(w.div2.as_str()))
    );
    assert_eq!(links.iter().filter(|l| l["status"] == "ACTIVE").count(), 1, "one ACTIVE link");
    assert_eq!(links[0]["updated_at"], links[1]["inserted_at"], "closed as the new one opened");
    // one append: one event both closes and opens
    let events =
        s.get(&format!("/api/v1/streams/registry-equipment-{eq}/events"), &token_for("a", "audit:read", None)).await;
    let e = &events.data()[1];
    assert_eq!(e["event_type"], "EquipmentDivisionLinked");
    assert_eq!(
        (e["data"]["previous_division_id"].as_str(), e["data"]["division_id"].as_str()),
        (Some(w.div.as_str()), Some(w.div2.as_str()))
    );

    // the division it already has: 409; the division checks of a registration: 422
    let a = s.post(&path, &w.user, json!({ "division_id": w.div2 })).await;
    assert_eq!((a.status, message(&a)), (StatusCode::CONFLICT, "Equipment is already linked to this division"));
    let inactive = division(&s, &w.admin, &w.le, "INACTIVE").await;
    for (division_id, description) in [
        (id(), "Division not found"),
        (w.other_div.clone(), "Division is not within current legal entity"),
        (inactive, "Division is not active"),
    ] {
        let a = s.post(&path, &w.user, json!({ "division_id": division_id })).await;
        assert_eq!(descriptions(&a), vec![("$.division_id".to_string(), description.to_string())]);
    }
    let a = s.post(&path, &w.user, json!({ "division": w.div })).await;
    assert_eq!(a.invalid_entries(), vec!["$.division", "$.division_id"]);
    // unknown equipment 404, another legal entity's 403, no scope 403
    let a =
        s.post(&format!("/api/v1/equipment/{}/division-links", id()), &w.user, json!({ "division_id": w.div })).await;
    assert_eq!((a.status, message(&a)), (StatusCode::NOT_FOUND, "Equipment not found"));
    let a = s.post(&path, &w.other_user, json!({ "division_id": w.other_div })).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    let a = s.post(&path, &token_for("u", "equipment:read", Some(&w.le)), json!({ "division_id": w.div })).await;
    assert_eq!(message(&a), "Your scope does not allow to access this resource. Missing allowances: equipment:write");
    // a closed legal entity moves nothing
    patch(&s, &format!("/api/v1/legal-entities/{}", w.le), &w.admin, json!({ "status": "CLOSED" })).await;
    let a = s.post(&path, &w.user, json!({ "division_id": w.div })).await;
    assert_eq!((a.status, message(&a)), (StatusCode::CONFLICT, "Legal entity must be ACTIVE or SUSPENDED"));
}

both_backends!(status_and_availability, status_and_availability_on);
async fn status_and_availability_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let w = world(&s).await;
    let (eq, _) = registered(&s, &w, "ST-1").await;
    let status = format!("/api/v1/equipment/{eq}/status");
    let availability = format!("/api/v1/equipment/{eq}/availability");

    let a = patch(&s, &status, &w.user, json!({ "status": "INACTIVE" })).await;
    assert_eq!(
        (a.status, message(&a)),
        (StatusCode::CONFLICT, "It is prohibited to change status for equipment with availability status = AVAILABLE")
    );
    let a = patch(&s, &availability, &w.user, json!({ "availability_status": "DAMAGED" })).await;
    assert_eq!((a.status, a.data()["availability_status"].as_str()), (StatusCode::OK, Some("DAMAGED")), "{}", a.text);
    let a = patch(&s, &availability, &w.user, json!({ "availability_status": "DAMAGED" })).await;
    assert_eq!((a.status, message(&a)), (StatusCode::CONFLICT, "Equipment already has availability status DAMAGED"));
    let a = patch(&s, &status, &w.user, json!({ "status": "INACTIVE", "reason": "broken screen" })).await;
    assert_eq!((a.status, a.data()["status"].as_str()), (StatusCode::OK, Some("INACTIVE")), "{}", a.text);
    let a = patch(&s, &availability, &w.user, json!({ "availability_status": "AVAILABLE" })).await;
    assert_eq!(
        (a.status, message(&a)),
        (StatusCode::CONFLICT, "It is prohibited to set availability status AVAILABLE for INACTIVE equipment")
    );
    let a = patch(&s, &status, &w.user, json!({ "status": "INACTIVE" })).await;
    assert_eq!((a.status, message(&a)), (StatusCode::CONFLICT, "Invalid transition. Equipment is in final status"));
    // the schema: only INACTIVE or ENTERED_IN_ERROR, the latter with a reason
    let a = patch(&s, &status, &w.user, json!({ "status": "ACTIVE" })).await;
    assert_eq!(a.invalid_entries(), vec!["$.status"]);
    let a = patch(&s, &status, &w.user, json!({ "status": "ENTERED_IN_ERROR" })).await;
    assert_eq!(a.invalid_entries(), vec!["$.reason"]);
    let a = patch(&s, &availability, &w.user, json!({ "availability_status": "FINE" })).await;
    assert_eq!(a.invalid_entries(), vec!["$.availability_status"]);
    // another legal entity's equipment: 403; unknown: 404
    let a = patch(&s, &status, &w.other_user, json!({ "status": "ENTERED_IN_ERROR", "reason": "x" })).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = patch(&s, &availability, &w.other_user, json!({ "availability_status": "LOST" })).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = patch(&s, &format!("/api/v1/equipment/{}/status", id()), &w.user, json!({ "status": "INACTIVE" })).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    let a = patch(&s, &status, &w.user, json!({ "status": "ENTERED_IN_ERROR", "reason": "registered twice" })).await;
    assert_eq!(
        (a.status, a.data()["status_reason"].as_str()),
        (StatusCode::OK, Some("registered twice")),
        "{}",
        a.text
    );
    // final: nothing moves any more
    for (path, body) in [
        (&status, json!({ "status": "INACTIVE" })),
        (&status, json!({ "status": "ENTERED_IN_ERROR", "reason": "again" })),
        (&availability, json!({ "availability_status": "LOST" })),
    ] {
        let a = patch(&s, path, &w.user, body).await;
        assert_eq!((a.status, message(&a)), (StatusCode::CONFLICT, "Invalid transition. Equipment is in final status"));
    }
    let a = s.post(&format!("/api/v1/equipment/{eq}/division-links"), &w.user, json!({ "division_id": w.div2 })).await;
    assert_eq!((a.status, message(&a)), (StatusCode::CONFLICT, "Invalid transition. Equipment is in final status"));

    // the status history, with reasons and who
    let d = s
        .get(&format!("/api/v1/equipment/{eq}?after_position={}", s.state().store.head().await.unwrap()), &w.user)
        .await;
    let history: Vec<(&str, Option<&str>)> = d.data()["status_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["status"].as_str().unwrap(), h["reason"].as_str()))
        .collect();
    assert_eq!(
        history,
        vec![("ACTIVE", None), ("INACTIVE", Some("broken screen")), ("ENTERED_IN_ERROR", Some("registered twice"))]
    );
    assert!(d.data()["status_history"].as_array().unwrap().iter().all(|h| h["inserted_by"] == "user-1"));
    assert_eq!(
        (d.data()["status"].as_str(), d.data()["availability_status"].as_str()),
        (Some("ENTERED_IN_ERROR"), Some("DAMAGED"))
    );
    // DESTROYED is never left
    let (eq2, _) = registered(&s, &w, "ST-2").await;
    let a2 = format!("/api/v1/equipment/{eq2}/availability");
    assert_eq!(patch(&s, &a2, &w.user, json!({ "availability_status": "DESTROYED" })).await.status, StatusCode::OK);
    let a = patch(&s, &a2, &w.user, json!({ "availability_status": "AVAILABLE" })).await;
    assert_eq!(
        (a.status, message(&a)),
        (StatusCode::CONFLICT, "Invalid transition. Availability status DESTROYED is final")
    );
}

both_backends!(queries_answer_the_callers_own_equipment, queries_on);
async fn queries_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let w = world(&s).await;
    let mut ids = Vec::new();
    for (i, division) in [&w.div, &w.div, &w.div2, &w.div2, &w.div2].into_iter().enumerate() {
        let mut body = equipment(division, &format!("Q-{i}"));
        body["type"] = json!(if i % 2 == 0 { "ULTRASOUND" } else { "SCALE" });
        let a = register(&s, &w.user, body).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        ids.push(a.data()["id"].as_str().unwrap().to_string());
    }
    let theirs = register(&s, &w.other_user, equipment(&w.other_div, "Q-0")).await;
    let theirs_id = theirs.data()["id"].as_str().unwrap().to_string();
    patch(&s, &format!("/api/v1/equipment/{}/availability", ids[4]), &w.user, json!({ "availability_status": "LOST" }))
        .await;
    let last =
        patch(&s, &format!("/api/v1/equipment/{}/status", ids[4]), &w.user, json!({ "status": "INACTIVE" })).await;
    let after = last.position();

    let list = |query: String| {
        let s = &s;
        let t = w.user.clone();
        async move {
            let a = s.get(&format!("/api/v1/equipment?after_position={after}&{query}"), &t).await;
            assert_eq!(a.status, StatusCode::OK, "{query}: {}", a.text);
            let got: Vec<String> =
                a.data().as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
            (got, a.body["paging"].clone())
        }
    };
    let (all, paging) = list(String::new()).await;
    assert_eq!(all, ids, "only the caller's legal entity, oldest first");
    assert_eq!(paging, json!({ "limit": 50, "offset": 0, "total": 5 }));
    assert_eq!(list(format!("division_id={}", w.div)).await.0, ids[..2].to_vec());
    assert_eq!(list("type=SCALE".into()).await.0, vec![ids[1].clone(), ids[3].clone()]);
    assert_eq!(list("external_id=Q-3".into()).await.0, vec![ids[3].clone()]);
    assert_eq!(list("status=INACTIVE".into()).await.0, vec![ids[4].clone()]);
    assert_eq!(list(format!("status=ACTIVE&division_id={}&type=ULTRASOUND", w.div2)).await.0, vec![ids[2].clone()]);
    assert_eq!(list("availability_status=LOST".into()).await.0, vec![ids[4].clone()]);
    let (page, paging) = list("limit=2&offset=2".into()).await;
    assert_eq!((page, paging), (ids[2..4].to_vec(), json!({ "limit": 2, "offset": 2, "total": 5 })));
    assert_eq!(
        list(format!("division_id={}", w.other_div)).await.0,
        Vec::<String>::new(),
        "another legal entity's division shows nothing"
    );
    let theirs_list = s.get(&format!("/api/v1/equipment?after_position={after}"), &w.other_user).await;
    assert_eq!(theirs_list.body["paging"]["total"], 1);
    let bad = s.get("/api/v1/equipment?division_id=x&status=BROKEN&availability_status=OK&limit=0", &w.user).await;
    assert_eq!(bad.invalid_entries(), vec!["division_id", "status", "availability_status", "limit"]);
    assert_eq!(bad.body["error"]["invalid"][0]["entry_type"], "query_parameter");

    // one: its own 200 with the active link; another's 403; unknown 404; not a UUID 422
    let one = s.get(&format!("/api/v1/equipment/{}", ids[2]), &w.user).await;
    assert_eq!(
        (one.data()["division_link"]["division_id"].as_str(), one.data()["external_id"].as_str()),
        (Some(w.div2.as_str()), Some("Q-2"))
    );
    let a = s.get(&format!("/api/v1/equipment/{theirs_id}"), &w.user).await;
    assert_eq!((a.status, a.error_type()), (StatusCode::FORBIDDEN, "forbidden"));
    let a = s.get(&format!("/api/v1/equipment/{}", id()), &w.user).await;
    assert_eq!((a.status, message(&a)), (StatusCode::NOT_FOUND, "Equipment not found"));
    assert_eq!(s.get("/api/v1/equipment/x", &w.user).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    // equipment:read, and a legal entity
    let writer = token_for("u", "equipment:write", Some(&w.le));
    for path in ["/api/v1/equipment".to_string(), format!("/api/v1/equipment/{}", ids[0])] {
        let a = s.get(&path, &writer).await;
        assert_eq!(
            message(&a),
            "Your scope does not allow to access this resource. Missing allowances: equipment:read"
        );
        assert_eq!(s.get(&path, &token_for("u", "equipment:read", None)).await.status, StatusCode::FORBIDDEN);
    }
}

// Sixteen concurrent registrations of one external_id: one 201, fifteen 409, one stream.
both_backends!(concurrent_duplicates, concurrent_duplicates_on);
async fn concurrent_duplicates_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let w = world(&s).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (client, url, token) = (s.client.clone(), format!("{}/api/v1/equipment", s.base), w.user.clone());
        let mut body = equipment(if i % 2 == 0 { &w.div } else { &w.div2 }, "SAME-1");
        body["name"] = json!(format!("attempt {i}"));
        tasks.push(tokio::spawn(async move {
            let r = client.post(url).bearer_auth(token).json(&body).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }));
    }
    let (mut created, mut duplicated) = (Vec::new(), 0);
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            StatusCode::CREATED => created.push(body["data"]["id"].as_str().unwrap().to_string()),
            StatusCode::CONFLICT => {
                assert_eq!(body["error"]["message"], "Duplicated equipment");
                duplicated += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((created.len(), duplicated), (1, 15));
    let mut conn = s.state().store.db().acquire().await.unwrap();
    let streams = careledger_store::sql_fetch_all!(
        conn.exec(),
        "SELECT DISTINCT stream FROM events WHERE event_type = 'EquipmentRegistered'",
        [],
        |row| row.try_get::<String, _>(0)
    )
    .unwrap();
    assert_eq!(streams, vec![format!("registry-equipment-{}", created[0])]);
    let owner = s.state().store.key_owner("equipment-external-id", &format!("{}/SAME-1", w.le)).await.unwrap();
    assert_eq!(owner, Some(streams[0].clone()));
    // and the read model holds one
    let head = s.state().store.head().await.unwrap();
    let list = s.get(&format!("/api/v1/equipment?external_id=SAME-1&after_position={head}"), &w.user).await;
    assert_eq!(list.body["paging"]["total"], 1);

    // many distinct external_ids at once all register
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (client, url, token) = (s.client.clone(), format!("{}/api/v1/equipment", s.base), w.user.clone());
        let body = equipment(&w.div, &format!("MANY-{i}"));
        tasks.push(tokio::spawn(async move {
            client.post(url).bearer_auth(token).json(&body).send().await.unwrap().status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::CREATED);
    }
}

both_backends!(references_changed_by_another_gateway, references_changed_elsewhere_on);
/// A gateway decides a registration on the legal entity and division it remembers; another
/// gateway on the same database changes them. The first must never answer on its stale memory:
/// a registration on a division deactivated elsewhere is refused (the append's guard finds it
/// moved), and one on a division reactivated elsewhere is accepted (a refusal is checked again
/// on a fresh read), and likewise for the legal entity.
async fn references_changed_elsewhere_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let w = world(&s).await;
    let elsewhere = TestServer::serve(&s.db.url, |_| {}).await;
    let other = format!("http://{}", elsewhere.addr);
    let patch_elsewhere = |path: String, body: Value| {
        let request = s.client.patch(format!("{other}{path}")).bearer_auth(&w.admin).json(&body);
        async move {
            let r = request.send().await.expect("request sent");
            assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap_or_default());
        }
    };
    // this gateway reads (and remembers) both references
    registered(&s, &w, "EQ-REMEMBERED-1").await;

    patch_elsewhere(format!("/api/v1/divisions/{}", w.div), json!({ "status": "INACTIVE" })).await;
    let a = register(&s, &w.user, equipment(&w.div, "EQ-REMEMBERED-2")).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(descriptions(&a), vec![("$.division_id".to_string(), "Division is not active".to_string())]);

    patch_elsewhere(format!("/api/v1/divisions/{}", w.div), json!({ "status": "ACTIVE" })).await;
    registered(&s, &w, "EQ-REMEMBERED-3").await;

    patch_elsewhere(format!("/api/v1/legal-entities/{}", w.le), json!({ "status": "CLOSED" })).await;
    let a = register(&s, &w.user, equipment(&w.div, "EQ-REMEMBERED-4")).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert_eq!(message(&a), "Legal entity must be ACTIVE or SUSPENDED");
    elsewhere.stop().await;
}

both_backends!(rebuild_gives_identical_tables, rebuild_on);
async fn rebuild_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let w = world(&s).await;
    let mut registered = Vec::new();
    for i in 0..12 {
        let division = if i % 3 == 0 { &w.div2 } else { &w.div };
        let a = register(&s, &w.user, equipment(division, &format!("R-{i}"))).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        registered.push((a.data()["id"].as_str().unwrap().to_string(), division.clone()));
    }
    register(&s, &w.other_user, equipment(&w.other_div, "R-0")).await;
    let mut last = 0;
    for (n, (eq, division)) in registered.iter().take(5).enumerate() {
        let elsewhere = if *division == w.div { &w.div2 } else { &w.div };
        let a = s
            .post(&format!("/api/v1/equipment/{eq}/division-links"), &w.user, json!({ "division_id": elsewhere }))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        patch(
            &s,
            &format!("/api/v1/equipment/{eq}/availability"),
            &w.user,
            json!({ "availability_status": "DAMAGED" }),
        )
        .await;
        let a = patch(
            &s,
            &format!("/api/v1/equipment/{eq}/status"),
            &w.user,
            json!({ "status": "INACTIVE", "reason": format!("r{n}") }),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        last = a.position();
    }
    patch(&s, &format!("/api/v1/divisions/{}", w.div2), &w.admin, json!({ "status": "INACTIVE" })).await;
    let a =
        patch(&s, &format!("/api/v1/legal-entities/{}", w.other_le), &w.admin, json!({ "status": "SUSPENDED" })).await;
    last = last.max(a.position());
    assert!(s.state().projections.wait_for(last, Duration::from_secs(10)).await);
    let db = s.state().store.db().clone();
    let before = dump_tables(&db, &TABLES).await.unwrap();
    assert!(before.contains("## equipment (13 rows)"), "{before}");
    assert!(before.contains("## equipment_division_links (18 rows)"), "{before}");
    assert!(before.contains("## equipment_status_history (18 rows)"), "{before}");
    assert!(before.contains("## divisions (3 rows)"));
    let projections = Projections::new(s.state().store.clone(), careledger_projections::all());
    assert!(projections.rebuild("registry", &|_, _| {}).await.unwrap() >= last);
    let after = dump_tables(&db, &TABLES).await.unwrap();
    assert_eq!(before, after, "a rebuild must give identical tables");
}

#[tokio::test]
async fn openapi_describes_every_registry_endpoint() {
    let spec: Value = serde_json::from_str(careledger_gateway::http::ops::OPENAPI).unwrap();
    for (path, method) in [
        ("/api/v1/legal-entities", "post"),
        ("/api/v1/legal-entities/{id}", "patch"),
        ("/api/v1/divisions", "post"),
        ("/api/v1/divisions/{id}", "patch"),
        ("/api/v1/equipment", "post"),
        ("/api/v1/equipment", "get"),
        ("/api/v1/equipment/{id}", "get"),
        ("/api/v1/equipment/{id}/division-links", "post"),
        ("/api/v1/equipment/{id}/status", "patch"),
        ("/api/v1/equipment/{id}/availability", "patch"),
    ] {
        assert!(spec["paths"][path].get(method).is_some(), "openapi.json does not describe {method} {path}");
    }
}
