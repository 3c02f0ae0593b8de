//! Enrolment over real HTTP on both backends (issue #21, "What an offline node can do"): insurees
//! registered with the codes reserved to who enrols them (assigned in the same append, never
//! twice, 409 with none left), enrolled in policies of the server's products, then claimed for as
//! any insuree of the register, and served on the FHIR face with their names.

use std::collections::HashSet;
use std::time::Duration;

use careledger_tests::{Answer, Kind, TestServer, both_backends, token_at_facility, token_for};
use chrono::{Days, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

/// Codes (generate, reserve, read), enrolment (register, enrol), insuree and policy search,
/// reference data and claims (create, submit, read).
const ENROL: &str = "111101 111102 101102 101202 101101 101201 reference:write 111001 111002 111007";

fn officer() -> String {
    token_for("officer", ENROL, None)
}

async fn wait(s: &TestServer, a: &Answer) {
    assert!(s.state().projections.wait_for(a.position(), Duration::from_secs(10)).await, "read models behind");
}

/// A batch of `number` codes for the holder, `reserved` of them reserved; the reserved codes.
async fn reserved_codes(s: &TestServer, holder_type: i64, holder: &str, number: i64, reserved: i64) -> Vec<String> {
    let t = officer();
    let body = json!({ "holder_type": holder_type, "holder_code": holder, "number": number });
    let a = s.post("/api/v1/code-batches", &t, body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let body = json!({ "holder_type": holder_type, "holder_code": holder, "number": reserved });
    let a = s.post("/api/v1/codes/reservations", &t, body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    wait(s, &a).await;
    a.data()["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect()
}

fn person(last_name: &str) -> Value {
    json!({ "last_name": last_name, "other_names": "Amani", "birth_date": "1990-01-31", "gender": "F",
            "phone": "+255 712 345 678", "location": "R1D1M1V1" })
}

fn by_officer(mut body: Value, holder: &str) -> Value {
    body["holder_type"] = json!("enrolment_officer");
    body["holder_code"] = json!(holder);
    body
}

async fn register(s: &TestServer, token: &str, body: Value) -> Answer {
    s.post("/api/v1/enrolment/insurees", token, body).await
}

async fn head(s: &TestServer) -> i64 {
    s.state().store.head().await.unwrap()
}

both_backends!(registration_numbers_insurees_with_their_holders_reserved_codes, numbering_on);
async fn numbering_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = officer();
    let reserved = reserved_codes(&s, 2, "E01", 10, 3).await;

    // three insurees take the three reserved codes, oldest first; the available ones are not
    // the officer's to hand out
    let mut ids = vec![];
    let mut chfids = vec![];
    for name in ["Mwangi", "Otieno", "Njeri"] {
        let a = register(&s, &t, by_officer(person(name), "E01")).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        assert_eq!(a.data()["last_name"], name);
        assert_eq!(a.data()["holder_type"], 2);
        ids.push(a.data()["insuree_id"].as_str().unwrap().to_string());
        chfids.push(a.data()["chfid"].as_str().unwrap().to_string());
        wait(&s, &a).await;
    }
    assert_eq!(chfids, reserved, "the reserved codes, in the order they were reserved");

    // each code is assigned to its insuree, by the same append
    for (chfid, id) in chfids.iter().zip(&ids) {
        let code = s.get(&format!("/api/v1/codes/{chfid}"), &t).await;
        assert_eq!(code.status, StatusCode::OK, "{}", code.text);
        assert_eq!(
            (code.data()["status"].as_str(), code.data()["insuree_id"].as_str()),
            (Some("assigned"), Some(id.as_str()))
        );
        let history: Vec<&str> =
            code.data()["history"].as_array().unwrap().iter().map(|h| h["command"].as_str().unwrap()).collect();
        assert_eq!(history.last(), Some(&"RegisterInsuree"), "{}", code.text);
    }

    // none left: 409 saying so, nothing appended
    let before = head(&s).await;
    let a = register(&s, &t, by_officer(person("Kamau"), "E01")).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert!(a.text.contains("remaining 0"), "{}", a.text);
    assert_eq!(head(&s).await, before);
    // another holder's codes are not this one's
    let a = register(&s, &t, by_officer(person("Kamau"), "E02")).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);

    // a health facility's token draws from the facility's codes, and names no other holder
    let hf_codes = reserved_codes(&s, 3, "HF1", 5, 2).await;
    let clerk = token_at_facility("clerk", ENROL, "HF1");
    let a = register(&s, &clerk, person("Wanjiru")).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(a.data()["chfid"], hf_codes[0].as_str());
    assert_eq!((a.data()["holder_type"].as_i64(), a.data()["holder_code"].as_str()), (Some(3), Some("HF1")));
    let a = register(&s, &clerk, by_officer(person("Wanjiru"), "E01")).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    // a caller acting for no facility must say whose codes
    let a = register(&s, &t, person("Wanjiru")).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert!(a.invalid_entries().contains(&"$.holder_code".to_string()), "{}", a.text);
    // without the right to add insurees
    let reader = token_for("reader", "111101 111102 101101", None);
    let a = register(&s, &reader, by_officer(person("Wanjiru"), "E01")).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
}

both_backends!(bad_registrations_are_refused_and_take_no_code, refusals_on);
async fn refusals_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = officer();
    reserved_codes(&s, 2, "E01", 5, 3).await;
    let before = head(&s).await;
    let tomorrow = (Utc::now().date_naive() + Days::new(1)).to_string();
    let cases: Vec<(Value, &str)> = vec![
        (json!({ "other_names": "A", "birth_date": "1990-01-01", "gender": "F" }), "$.last_name"),
        (json!({ "last_name": "B", "other_names": "A", "birth_date": tomorrow, "gender": "F" }), "$.birth_date"),
        (json!({ "last_name": "B", "other_names": "A", "birth_date": "1990-02-30", "gender": "F" }), "$.birth_date"),
        (json!({ "last_name": "B", "other_names": "A", "birth_date": "1990-01-01", "gender": "X" }), "$.gender"),
        (
            json!({ "last_name": "B", "other_names": "A", "birth_date": "1990-01-01", "gender": "F", "phone": "call me" }),
            "$.phone",
        ),
        (
            json!({ "last_name": "B", "other_names": "A", "birth_date": "1990-01-01", "gender": "F",
                 "family_head": Uuid::now_v7() }),
            "$.family_head",
        ),
        (
            json!({ "last_name": "B\u{0}", "other_names": "A", "birth_date": "1990-01-01", "gender": "F" }),
            "$.last_name",
        ),
        (
            json!({ "last_name": "B", "other_names": "A", "birth_date": "1990-01-01", "gender": "F", "nickname": "x" }),
            "$.nickname",
        ),
        (
            json!({ "last_name": "B", "other_names": "A", "birth_date": "1990-01-01", "gender": "F", "holder_type": 9,
                 "holder_code": "E01" }),
            "$.holder_type",
        ),
    ];
    for (body, entry) in cases {
        let body = if body.get("holder_type").is_some() { body } else { by_officer(body, "E01") };
        let a = register(&s, &t, body.clone()).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", a.text);
        assert!(a.invalid_entries().contains(&entry.to_string()), "{body}: {}", a.text);
    }
    let malformed =
        s.request(reqwest::Method::POST, "/api/v1/enrolment/insurees", Some(&t), Some("{\"last_name\":")).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST, "{}", malformed.text);
    assert_eq!(head(&s).await, before, "no refused registration appended anything");

    // a family: its head, a member; a member heads nobody
    let a = register(&s, &t, by_officer(person("Mwangi"), "E01")).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let head_id = a.data()["insuree_id"].as_str().unwrap().to_string();
    let mut member = by_officer(person("Mwangi"), "E01");
    member["family_head"] = json!(head_id);
    let a = register(&s, &t, member.clone()).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let member_id = a.data()["insuree_id"].as_str().unwrap().to_string();
    member["family_head"] = json!(member_id);
    let a = register(&s, &t, member).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    // an insuree the register holds as reference data is not registered again under a new
    // number; one registered here and upserted later keeps what its registration said
    let upserted = Uuid::now_v7();
    let entry = json!({ "uuid": upserted, "chfid": "100000001", "birth_date": "1980-05-05", "gender": "F" });
    let a = s.post("/api/v1/insurees", &t, json!({ "entries": [entry] })).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let mut same = by_officer(person("Otieno"), "E01");
    same["insuree_id"] = json!(upserted);
    let a = register(&s, &t, same).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    let entry = json!({ "uuid": head_id, "chfid": "100000002", "birth_date": "1990-01-31", "gender": "F" });
    let a = s.post("/api/v1/insurees", &t, json!({ "entries": [entry] })).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    wait(&s, &a).await;
    let patient = s.get(&format!("/fhir/Patient/{head_id}"), &t).await;
    assert_eq!(patient.body["name"][0]["family"], "Mwangi", "{}", patient.text);

    // an id already registered, and the same request again with its key: one insuree
    let mut again = by_officer(person("Otieno"), "E01");
    again["insuree_id"] = json!(head_id);
    assert_eq!(register(&s, &t, again).await.status, StatusCode::CONFLICT);
    let keyed = by_officer(person("Otieno"), "E01");
    let first = s.post_with("/api/v1/enrolment/insurees", &t, &keyed, &[("Idempotency-Key", "reg-1")]).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let repeat = s.post_with("/api/v1/enrolment/insurees", &t, &keyed, &[("Idempotency-Key", "reg-1")]).await;
    assert_eq!(repeat.status, StatusCode::CREATED, "{}", repeat.text);
    assert_eq!(repeat.data()["chfid"], first.data()["chfid"]);
    assert_eq!(repeat.data()["insuree_id"], first.data()["insuree_id"]);
}

both_backends!(concurrent_registrations_never_share_a_code, concurrent_on);
async fn concurrent_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = officer();
    // two batches of the holder: registrations move on to the second when the first is used up
    let mut reserved: HashSet<String> = reserved_codes(&s, 2, "E01", 12, 12).await.into_iter().collect();
    reserved.extend(reserved_codes(&s, 2, "E01", 12, 12).await);
    let attempts = 30;
    let answers = futures::future::join_all(
        (0..attempts).map(|i| register(&s, &t, by_officer(person(&format!("Insuree {i}")), "E01"))),
    )
    .await;
    let mut given = HashSet::new();
    for a in &answers {
        match a.status {
            StatusCode::CREATED => {
                assert!(given.insert(a.data()["chfid"].as_str().unwrap().to_string()), "a code twice")
            }
            StatusCode::CONFLICT => assert!(a.text.contains("remaining 0"), "{}", a.text),
            other => panic!("{other}: {}", a.text),
        }
    }
    assert_eq!(given.len(), 24, "every reserved code, once");
    assert_eq!(given, reserved);
}

both_backends!(enrolled_insurees_are_claimed_for_and_served_as_fhir, enrolled_on);
async fn enrolled_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = officer();
    let today = Utc::now().date_naive();
    for (path, entries) in [
        ("/api/v1/health-facilities", json!([{ "code": "HF1", "name": "District hospital", "care_type": "B" }])),
        ("/api/v1/medical-items", json!([{ "code": "I1", "name": "Paracetamol", "price": 8 }])),
        (
            "/api/v1/price-lists",
            json!([{ "health_facility": "HF1", "items": [{ "code": "I1", "valid_from": "2020-01-01" }] }]),
        ),
        ("/api/v1/products", json!([{ "code": "P1", "name": "Basic", "items": [{ "code": "I1" }] }])),
    ] {
        let a = s.post(path, &t, json!({ "entries": entries })).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.text);
        wait(&s, &a).await;
    }
    reserved_codes(&s, 2, "E01", 5, 2).await;
    let a = register(&s, &t, by_officer(person("Mwangi"), "E01")).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let insuree = a.data()["insuree_id"].as_str().unwrap().to_string();
    let chfid = a.data()["chfid"].as_str().unwrap().to_string();

    let policy = |insuree: &str, product: &str| {
        json!({ "insuree_id": insuree, "product_code": product, "enrol_date": today - Days::new(40),
                "expiry_date": today + Days::new(325) })
    };
    let before = head(&s).await;
    for (body, entry) in [
        (policy(&Uuid::now_v7().to_string(), "P1"), "$.insuree_id"),
        (policy(&insuree, "P9"), "$.product_code"),
        (
            json!({ "insuree_id": insuree, "product_code": "P1", "enrol_date": "2026-01-01", "expiry_date": "2025-12-31" }),
            "$.expiry_date",
        ),
    ] {
        let a = s.post("/api/v1/enrolment/policies", &t, body.clone()).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", a.text);
        assert!(a.invalid_entries().contains(&entry.to_string()), "{body}: {}", a.text);
    }
    assert_eq!(head(&s).await, before);
    let a = s.post("/api/v1/enrolment/policies", &t, policy(&insuree, "P1")).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(a.data()["effective_date"], (today - Days::new(40)).to_string());
    let policy_id = a.data()["policy_id"].as_str().unwrap().to_string();
    wait(&s, &a).await;

    // a claim for the new insuree passes the insuree's checks (7: unknown or not covered)
    let claim = json!({
        "code": "C-1", "health_facility": "HF1", "insuree": chfid, "date_from": today - Days::new(5),
        "date_claimed": today - Days::new(4), "icd": "A00", "visit_type": "O",
        "items": [{ "code": "I1", "qty_provided": 1, "price_asked": 8 }], "services": [],
    });
    let a = s.post("/api/v1/claims", &t, claim).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    wait(&s, &a).await;
    let uuid = a.data()["uuid"].as_str().unwrap().to_string();
    let a = s.post("/api/v1/claims/submit", &t, json!({ "uuids": [uuid] })).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.data()[0]["claim"]["status"], 4, "checked, not rejected: {}", a.text);

    // the FHIR face has the registered insuree's name, phone and family, and the policy
    let patient = s.get(&format!("/fhir/Patient/{insuree}"), &t).await;
    assert_eq!(patient.status, StatusCode::OK, "{}", patient.text);
    assert_eq!(patient.body["name"][0]["family"], "Mwangi", "{}", patient.text);
    assert_eq!(patient.body["name"][0]["given"][0], "Amani");
    assert_eq!(patient.body["telecom"][0]["value"], "+255 712 345 678");
    assert_eq!(patient.body["extension"][0]["valueBoolean"], true);
    let coverage = s.get(&format!("/fhir/Coverage/{policy_id}"), &t).await;
    assert_eq!(coverage.status, StatusCode::OK, "{}", coverage.text);
    assert_eq!(coverage.body["beneficiary"]["reference"], format!("Patient/{insuree}"));
    careledger_tests::valid_fhir(&[patient.body.clone(), coverage.body.clone()]);
}
