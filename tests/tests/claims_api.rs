//! openIMIS claims over real HTTP on both backends: reference data upserts, entry (create, update,
//! delete, unique codes), submission with every rejection reason, feedback and review transitions
//! allowed and refused, processing, valuation, restore, attachments, printing, the per-stage
//! report, permissions (403), facility scoping, bad input (422 with the entry path), and a
//! rebuild that gives identical tables.

use std::time::Duration;

use careledger_gateway::RunningServer;
use careledger_projections::{Projections, dump_tables};
use careledger_tests::{Answer, CLAIMS, Kind, TestServer, both_backends, token_at_facility, token_for};
use chrono::{Days, NaiveDate, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

const TABLES: [&str; 11] = [
    "claims_health_facilities",
    "claims_medical_register",
    "claims_price_lists",
    "claims_insurees",
    "claims_products",
    "claims_product_coverage",
    "claims_policies",
    "claims",
    "claim_lines",
    "claim_attachments",
    "claim_valuation_runs",
];

const ADULT: &str = "100000001";
const CHILD: &str = "100000002";
const UNINSURED: &str = "100000003";

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn days_ago(n: u64) -> String {
    (today() - Days::new(n)).to_string()
}

fn days_ahead(n: u64) -> String {
    (today() + Days::new(n)).to_string()
}

fn admin() -> String {
    token_for("admin", CLAIMS, None)
}

async fn wait(s: &TestServer, a: &Answer) {
    assert!(s.state().projections.wait_for(a.position(), Duration::from_secs(10)).await, "read models behind");
}

async fn upsert(s: &TestServer, path: &str, entries: Value) -> Answer {
    let a = s.post(path, &admin(), json!({ "entries": entries })).await;
    assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.text);
    wait(s, &a).await;
    a
}

/// The register, price lists, insurees, product and policies every test claims against.
///
/// Items: I1 (8, limit 5 for adults), I2 (in-patient only), I3 (frequency 30 days), I4 (not in
/// HF1's price list), I5 (not covered), I6 (in the list until last year only), I7 (24 months'
/// waiting period), I8 (no child may have it). Services: S1 (40, HF1 lists it at 45,
/// consultation), S2 (relative price), S3 (surgery).
async fn reference(s: &TestServer) {
    upsert(
        s,
        "/api/v1/health-facilities",
        json!([
            { "code": "HF1", "name": "District hospital", "care_type": "B" },
            { "code": "HF2", "name": "Health centre", "care_type": "O" },
        ]),
    )
    .await;
    let item = |code: &str, price: f64| json!({ "code": code, "name": format!("Item {code}"), "price": price });
    let mut items = vec![item("I1", 8.0), item("I2", 3.0), item("I3", 2.5), item("I4", 1.0), item("I5", 1.0)];
    items[1]["care_type"] = json!("I");
    items[2]["frequency_days"] = json!(30);
    items.extend([item("I6", 1.0), item("I7", 1.0), item("I8", 1.0)]);
    upsert(s, "/api/v1/medical-items", json!(items)).await;
    upsert(
        s,
        "/api/v1/medical-services",
        json!([
            { "code": "S1", "name": "Consultation", "price": 40, "category": "C" },
            { "code": "S2", "name": "Laboratory", "price": 5 },
            { "code": "S3", "name": "Appendectomy", "price": 300, "category": "S" },
        ]),
    )
    .await;
    let listed = |code: &str| json!({ "code": code, "valid_from": "2020-01-01" });
    let mut hf1_items: Vec<Value> = ["I1", "I2", "I3", "I5", "I7", "I8"].iter().map(|c| listed(c)).collect();
    hf1_items.push(json!({ "code": "I6", "valid_from": "2020-01-01", "valid_to": days_ago(400) }));
    upsert(
        s,
        "/api/v1/price-lists",
        json!([
            { "health_facility": "HF1", "items": hf1_items,
              "services": [{ "code": "S1", "price": 45, "valid_from": "2020-01-01" }, listed("S2"), listed("S3")] },
            { "health_facility": "HF2", "items": [listed("I1")], "services": [listed("S1")] },
        ]),
    )
    .await;
    let (adult, child, uninsured) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    upsert(
        s,
        "/api/v1/insurees",
        json!([
            { "uuid": adult, "chfid": ADULT, "birth_date": "1980-05-05", "gender": "F" },
            { "uuid": child, "chfid": CHILD, "birth_date": days_ago(365 * 5), "gender": "M" },
            { "uuid": uninsured, "chfid": UNINSURED, "birth_date": "1990-01-01", "gender": "O" },
        ]),
    )
    .await;
    let covered = |code: &str| json!({ "code": code });
    upsert(
        s,
        "/api/v1/products",
        json!([{
            "code": "P1", "name": "Basic",
            "items": [
                { "code": "I1", "limit_adult": 5 }, covered("I2"), covered("I3"), covered("I4"), covered("I6"),
                { "code": "I7", "waiting_period_adult": 24, "waiting_period_child": 24 },
                { "code": "I8", "limit_child": 0 },
            ],
            "services": [covered("S1"), { "code": "S2", "price_origin": "R" }, covered("S3")],
        }]),
    )
    .await;
    upsert(
        s,
        "/api/v1/policies",
        json!([
            { "uuid": Uuid::now_v7(), "insuree": adult, "product": "P1",
              "effective_date": days_ago(300), "expiry_date": days_ahead(60) },
            { "uuid": Uuid::now_v7(), "insuree": child, "product": "P1",
              "effective_date": days_ago(300), "expiry_date": days_ahead(60) },
            { "uuid": Uuid::now_v7(), "insuree": uninsured, "product": "P1",
              "effective_date": days_ago(900), "expiry_date": days_ago(500) },
        ]),
    )
    .await;
}

fn line(code: &str, qty: f64, price: f64) -> Value {
    json!({ "code": code, "qty_provided": qty, "price_asked": price })
}

fn claim(code: &str, insuree: &str, items: Vec<Value>, services: Vec<Value>) -> Value {
    json!({
        "code": code,
        "health_facility": "HF1",
        "insuree": insuree,
        "date_from": days_ago(5),
        "date_claimed": days_ago(4),
        "icd": "A00",
        "icd_1": "B01",
        "visit_type": "O",
        "items": items,
        "services": services,
    })
}

async fn create(s: &TestServer, body: Value) -> String {
    let a = s.post("/api/v1/claims", &admin(), body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    wait(s, &a).await;
    a.data()["uuid"].as_str().unwrap().to_string()
}

/// Runs a bulk command on one claim and returns its entry of the answer.
async fn bulk(s: &TestServer, path: &str, token: &str, uuid: &str) -> Value {
    let a = s.post(path, token, json!({ "uuids": [uuid] })).await;
    assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.text);
    wait(s, &a).await;
    a.data()[0].clone()
}

async fn submit(s: &TestServer, uuid: &str) -> Value {
    bulk(s, "/api/v1/claims/submit", &admin(), uuid).await
}

async fn detail(s: &TestServer, uuid: &str) -> Value {
    let a = s.get(&format!("/api/v1/claims/{uuid}"), &admin()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.data().clone()
}

/// (claim status, claim rejection reason, every line's reason: items then services)
async fn outcome(s: &TestServer, uuid: &str) -> (i64, Option<i64>, Vec<i64>) {
    let d = detail(s, uuid).await;
    let reasons = ["items", "services"]
        .iter()
        .flat_map(|k| {
            d[*k].as_array().unwrap().iter().map(|l| l["rejection_reason"].as_i64().unwrap()).collect::<Vec<_>>()
        })
        .collect();
    (d["status"].as_i64().unwrap(), d["rejection_reason"].as_i64(), reasons)
}

fn error_message(entry: &Value) -> String {
    entry["error"]["message"].as_str().unwrap_or("").to_string()
}

both_backends!(reference_data_upserts, reference_on);
async fn reference_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let before = s.state().store.count().await.unwrap();
    reference(&s).await;
    // one event per entry: 2 facilities, 8 items, 3 services, 2 price lists, 3 insurees, 1 product, 3 policies
    assert_eq!(s.state().store.count().await.unwrap() - before, 22);
    // an upsert replaces: HF2's care type
    let a =
        upsert(&s, "/api/v1/health-facilities", json!([{ "code": "HF2", "name": "Centre", "care_type": "B" }])).await;
    assert_eq!(a.data()["upserted"], 1);
    let no_right = token_for("clerk", "111001", None);
    let denied = s.post("/api/v1/medical-items", &no_right, json!({ "entries": [] })).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let bad = s
        .post(
            "/api/v1/medical-items",
            &admin(),
            json!({ "entries": [
                { "code": "X1", "name": "ok", "price": 1 },
                { "code": "X2", "name": "bad price", "price": -1, "care_type": "Z" },
                { "code": "X1", "name": "again", "price": 2.345 },
                "nope",
            ], "extra": true }),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bad.invalid_entries(),
        vec!["$.extra", "$.entries[1].price", "$.entries[1].care_type", "$.entries[2].price", "$.entries[3]"]
    );
    let dup = s
        .post(
            "/api/v1/policies",
            &admin(),
            json!({ "entries": [
                { "uuid": Uuid::nil(), "insuree": Uuid::nil(), "product": "P", "effective_date": "2026-01-01", "expiry_date": "2025-01-01" },
            ] }),
        )
        .await;
    assert_eq!(dup.invalid_entries(), vec!["$.entries[0].expiry_date"]);
    let lists = s
        .post(
            "/api/v1/price-lists",
            &admin(),
            json!({ "entries": [{ "health_facility": "HF9", "items": [
                { "code": "A", "valid_from": "2020-01-01" }, { "code": "A", "valid_from": "2020-01-01" }] }] }),
        )
        .await;
    assert_eq!(lists.invalid_entries(), vec!["$.entries[0].items[1].code"]);
    assert_eq!(s.state().store.count().await.unwrap() - before, 23, "bad input appends nothing");
}

both_backends!(claim_entry, entry_on);
async fn entry_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = admin();
    let body = claim("C-1", ADULT, vec![line("I1", 2.0, 10.0)], vec![line("S1", 1.0, 50.5)]);
    let a = s.post("/api/v1/claims", &t, body.clone()).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!((a.data()["status"].as_i64(), a.data()["claimed"].as_f64()), (Some(2), Some(70.5)));
    let uuid = a.data()["uuid"].as_str().unwrap().to_string();
    let d = s.get(&format!("/api/v1/claims/{uuid}?after_position={}", a.position()), &t).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    let d = d.data().clone();
    assert_eq!((d["code"].as_str(), d["icd_secondary"][0].as_str()), (Some("C-1"), Some("B01")));
    assert_eq!(
        (d["items"][0]["qty_provided"].as_f64(), d["services"][0]["price_asked"].as_f64()),
        (Some(2.0), Some(50.5))
    );
    assert_eq!(
        (d["stage_value"].as_f64(), d["feedback_status"].as_i64(), d["review_status"].as_i64()),
        (Some(70.5), Some(1), Some(1))
    );
    // the code is taken among live claims
    let clash = s.post("/api/v1/claims", &t, body.clone()).await;
    assert_eq!((clash.status, clash.error_type()), (StatusCode::CONFLICT, "request_conflict"));
    // bad input: every invalid field with its path, nothing appended
    let count = s.state().store.count().await.unwrap();
    let bad = s
        .post(
            "/api/v1/claims",
            &t,
            json!({
                "code": "", "health_facility": "HF1", "insuree": ADULT, "date_from": "2026-13-01", "icd": "A00",
                "visit_type": "X", "care_type": "B", "nope": 1,
                "items": [{ "code": "I1", "qty_provided": 0, "price_asked": -1 }],
                "services": [{ "code": "S1", "qty_provided": 2, "price_asked": 1 }],
            }),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bad.invalid_entries(),
        vec![
            "$.nope",
            "$.code",
            "$.date_from",
            "$.visit_type",
            "$.care_type",
            "$.items[0].qty_provided",
            "$.items[0].price_asked",
            "$.services[0].explanation"
        ]
    );
    let malformed = s.request(Method::POST, "/api/v1/claims", Some(&t), Some("{\"code\":")).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.state().store.count().await.unwrap(), count);
    // update while ENTERED recomputes claimed
    let mut changed = body.clone();
    changed["items"] = json!([line("I1", 3.0, 10.0)]);
    let u = s.request(Method::PUT, &format!("/api/v1/claims/{uuid}"), Some(&t), Some(&changed.to_string())).await;
    assert_eq!((u.status, u.data()["claimed"].as_f64()), (StatusCode::OK, Some(80.5)), "{}", u.text);
    let unknown = s
        .request(Method::PUT, &format!("/api/v1/claims/{}", Uuid::now_v7()), Some(&t), Some(&changed.to_string()))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let bad_path = s.request(Method::PUT, "/api/v1/claims/nope", Some(&t), Some(&changed.to_string())).await;
    assert_eq!(bad_path.invalid_entries(), vec!["uuid"]);
    // delete answers per claim; the code is free again
    let other = create(&s, claim("C-2", ADULT, vec![line("I1", 1.0, 1.0)], vec![])).await;
    let missing = Uuid::now_v7().to_string();
    let del = s.post("/api/v1/claims/delete", &t, json!({ "uuids": [uuid, missing] })).await;
    assert_eq!(del.status, StatusCode::OK, "{}", del.text);
    assert_eq!((del.data()[0]["done"].as_bool(), del.data()[1]["done"].as_bool()), (Some(true), Some(false)));
    assert_eq!(del.data()[1]["error"]["code"], 404);
    wait(&s, &del).await;
    assert_eq!(s.get(&format!("/api/v1/claims/{uuid}"), &t).await.status, StatusCode::NOT_FOUND);
    let again = s.post("/api/v1/claims", &t, body.clone()).await;
    assert_eq!(again.status, StatusCode::CREATED, "a deleted claim's code is free: {}", again.text);
    // a code changed by an update is free too
    let mut renamed = claim("C-3", ADULT, vec![line("I1", 1.0, 1.0)], vec![]);
    let u = s.request(Method::PUT, &format!("/api/v1/claims/{other}"), Some(&t), Some(&renamed.to_string())).await;
    assert_eq!(u.status, StatusCode::OK, "{}", u.text);
    renamed["code"] = json!("C-2");
    assert_eq!(s.post("/api/v1/claims", &t, renamed).await.status, StatusCode::CREATED);
    // nothing but ENTERED claims may be updated or deleted
    reference(&s).await;
    let checked = create(&s, claim("C-4", ADULT, vec![line("I1", 1.0, 8.0)], vec![])).await;
    assert_eq!(submit(&s, &checked).await["claim"]["status"], 4);
    let u = s.request(Method::PUT, &format!("/api/v1/claims/{checked}"), Some(&t), Some(&changed.to_string())).await;
    assert_eq!(u.status, StatusCode::CONFLICT);
    let del = bulk(&s, "/api/v1/claims/delete", &t, &checked).await;
    assert_eq!((del["done"].as_bool(), del["error"]["code"].as_i64()), (Some(false), Some(409)));
    assert!(error_message(&del).contains("ENTERED"), "{del}");
    // bulk input
    let bad = s.post("/api/v1/claims/submit", &t, json!({ "uuids": ["x", checked, checked] })).await;
    assert_eq!(bad.invalid_entries(), vec!["$.uuids[0]", "$.uuids[2]"]);
    let empty = s.post("/api/v1/claims/submit", &t, json!({ "uuids": [] })).await;
    assert_eq!(empty.invalid_entries(), vec!["$.uuids"]);
}

both_backends!(codes_unique_per_facility_when_configured, per_facility_on);
async fn per_facility_on(kind: Kind) {
    let s = TestServer::start_with(kind, |c| c.claim_code_per_facility = true).await;
    create(&s, claim("C-1", ADULT, vec![line("I1", 1.0, 1.0)], vec![])).await;
    let mut elsewhere = claim("C-1", ADULT, vec![line("I1", 1.0, 1.0)], vec![]);
    elsewhere["health_facility"] = json!("HF2");
    create(&s, elsewhere.clone()).await;
    assert_eq!(s.post("/api/v1/claims", &admin(), elsewhere).await.status, StatusCode::CONFLICT);
}

both_backends!(submission_checks_every_rule, submission_on);
async fn submission_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    reference(&s).await;
    // everything passes: the service at HF1's price 45, the item at the register's 8
    let ok = create(&s, claim("OK", ADULT, vec![line("I1", 2.0, 10.0)], vec![line("S1", 1.0, 50.0)])).await;
    let answer = submit(&s, &ok).await;
    assert_eq!((answer["done"].as_bool(), answer["claim"]["status"].as_i64()), (Some(true), Some(4)), "{answer}");
    let d = detail(&s, &ok).await;
    assert_eq!(
        (d["status"].as_i64(), d["approved"].as_f64(), d["adjusted"].as_f64()),
        (Some(4), Some(61.0), Some(61.0))
    );
    assert_eq!(
        (d["category"].as_str(), d["claimed"].as_f64(), d["stage_value"].as_f64()),
        (Some("C"), Some(70.0), Some(70.0))
    );
    assert_eq!(
        (d["items"][0]["price_adjusted"].as_f64(), d["services"][0]["price_adjusted"].as_f64()),
        (Some(8.0), Some(45.0))
    );
    assert_eq!((d["items"][0]["latest_price"].as_f64(), d["items"][0]["status"].as_i64()), (Some(8.0), Some(1)));
    // submitting twice is refused for that claim only
    let a = s.post("/api/v1/claims/submit", &admin(), json!({ "uuids": [ok] })).await;
    assert_eq!((a.data()[0]["done"].as_bool(), a.data()[0]["error"]["code"].as_i64()), (Some(false), Some(409)));

    // claim-level: 9 the target date, 7 the insuree
    let mut future = claim("R9", ADULT, vec![line("I1", 1.0, 8.0)], vec![line("S1", 1.0, 45.0)]);
    future["date_from"] = json!(days_ahead(3));
    future["date_claimed"] = json!(days_ahead(3));
    let r9 = create(&s, future).await;
    submit(&s, &r9).await;
    assert_eq!(outcome(&s, &r9).await, (1, Some(9), vec![9, 9]));
    for (code, insuree) in [("R7a", "999999999"), ("R7b", UNINSURED)] {
        let r7 = create(&s, claim(code, insuree, vec![line("I1", 1.0, 8.0)], vec![])).await;
        submit(&s, &r7).await;
        assert_eq!(outcome(&s, &r7).await, (1, Some(7), vec![7]), "{code}");
    }
    // line-level: 1 register, 2 price list (absent, expired), 10 care type, 3 coverage, 17 waiting
    let lines = vec![
        line("NOPE", 1.0, 1.0),
        line("I4", 1.0, 1.0),
        line("I6", 1.0, 1.0),
        line("I2", 1.0, 1.0),
        line("I5", 1.0, 1.0),
        line("I7", 1.0, 1.0),
    ];
    let mixed = create(&s, claim("LINES", ADULT, lines, vec![line("S3", 1.0, 300.0)])).await;
    submit(&s, &mixed).await;
    assert_eq!(outcome(&s, &mixed).await, (4, None, vec![1, 2, 2, 10, 3, 17, 0]));
    assert_eq!(detail(&s, &mixed).await["category"], "S");
    // every line rejected: REJECTED with reason 1
    let none = create(&s, claim("NONE", ADULT, vec![line("NOPE", 1.0, 1.0), line("I5", 1.0, 1.0)], vec![])).await;
    assert_eq!(submit(&s, &none).await["claim"]["status"], 1);
    assert_eq!(outcome(&s, &none).await, (1, Some(1), vec![1, 3]));
    // 5 frequency: I3 was given 5 days ago on a checked claim
    let first = create(&s, claim("F1", ADULT, vec![line("I3", 1.0, 2.5)], vec![])).await;
    submit(&s, &first).await;
    let mut soon = claim("F2", ADULT, vec![line("I3", 1.0, 2.5), line("I1", 1.0, 8.0)], vec![]);
    soon["date_from"] = json!(days_ago(1));
    soon["date_claimed"] = json!(days_ago(1));
    let second = create(&s, soon).await;
    submit(&s, &second).await;
    assert_eq!(outcome(&s, &second).await, (4, None, vec![5, 0]));
    // 16 quantity limits: I1 limit 5 for adults; 2 given on OK, 1 on F2: 2 remain, 3 asked -> trimmed
    let trimmed = create(&s, claim("T1", ADULT, vec![line("I1", 3.0, 8.0)], vec![])).await;
    submit(&s, &trimmed).await;
    let d = detail(&s, &trimmed).await;
    assert_eq!((d["items"][0]["status"].as_i64(), d["items"][0]["qty_approved"].as_f64()), (Some(1), Some(2.0)));
    assert_eq!(d["approved"].as_f64(), Some(16.0));
    let used_up = create(&s, claim("T2", ADULT, vec![line("I1", 1.0, 8.0), line("I2", 1.0, 3.0)], vec![])).await;
    submit(&s, &used_up).await;
    assert_eq!(outcome(&s, &used_up).await, (1, Some(1), vec![16, 10]), "every line rejected");
    // children: I8 has a child limit of 0
    let child = create(&s, claim("K1", CHILD, vec![line("I8", 1.0, 1.0), line("I1", 1.0, 8.0)], vec![])).await;
    submit(&s, &child).await;
    assert_eq!(outcome(&s, &child).await, (4, None, vec![16, 0]));
    // nothing claimed: refused
    let zero = create(&s, claim("Z", ADULT, vec![line("I1", 1.0, 0.0)], vec![])).await;
    let z = submit(&s, &zero).await;
    assert_eq!((z["done"].as_bool(), z["error"]["code"].as_i64()), (Some(false), Some(409)));
    // filters and paging
    let t = admin();
    let list = s.get("/api/v1/claims?status=1&limit=2", &t).await;
    assert_eq!((list.body["paging"]["total"].as_i64(), list.data().as_array().unwrap().len()), (Some(5), 2));
    let list = s.get("/api/v1/claims?code=T1", &t).await;
    assert_eq!(list.data()[0]["uuid"].as_str(), Some(trimmed.as_str()));
    let list = s.get(&format!("/api/v1/claims?insuree={CHILD}&approved_min=8&approved_max=8"), &t).await;
    assert_eq!(list.body["paging"]["total"], 1);
    let list = s.get("/api/v1/claims?claimed_min=100", &t).await;
    assert_eq!(list.body["paging"]["total"], 1, "only LINES claims 306");
    let bad = s.get("/api/v1/claims?status=3&date_from=yesterday&claimed_min=x&limit=0", &t).await;
    assert_eq!(bad.invalid_entries(), vec!["status", "date_from", "claimed_min", "limit"]);
}

// The reference data a gateway keeps in process for submissions changes with the read model: a
// submission after an upsert's position was applied is checked against the upsert (the price
// list, the register, a product's coverage), though an earlier submission read the older data.
both_backends!(a_reference_upsert_is_seen_by_the_next_submission, reference_seen_on);
async fn reference_seen_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    reference(&s).await;
    let lines =
        || (vec![line("I1", 1.0, 8.0), line("I3", 1.0, 2.5)], vec![line("S1", 1.0, 45.0), line("S3", 1.0, 300.0)]);
    let (items, services) = lines();
    let before = create(&s, claim("RC-1", ADULT, items, services)).await;
    submit(&s, &before).await;
    assert_eq!(outcome(&s, &before).await, (4, None, vec![0, 0, 0, 0]));
    // S1 leaves HF1's price list, I3 becomes in-patient only, the product no longer covers I1
    let listed = |code: &str| json!({ "code": code, "valid_from": "2020-01-01" });
    upsert(
        &s,
        "/api/v1/price-lists",
        json!([{ "health_facility": "HF1", "items": [listed("I1"), listed("I3")], "services": [listed("S3")] }]),
    )
    .await;
    upsert(
        &s,
        "/api/v1/medical-items",
        json!([{ "code": "I3", "name": "Item I3", "price": 2.5, "care_type": "I", "frequency_days": 30 }]),
    )
    .await;
    upsert(
        &s,
        "/api/v1/products",
        json!([{ "code": "P1", "name": "Basic", "items": [{ "code": "I3" }], "services": [{ "code": "S1" }, { "code": "S3" }] }]),
    )
    .await;
    let (items, services) = lines();
    let after = create(&s, claim("RC-2", CHILD, items, services)).await;
    submit(&s, &after).await;
    assert_eq!(outcome(&s, &after).await, (4, None, vec![3, 10, 2, 0]));
}

/// Two gateways on one PostgreSQL database, with the reference data.
async fn two_gateways() -> (TestServer, RunningServer) {
    let s = TestServer::start(Kind::Postgres).await;
    let other = TestServer::serve(&s.db.url, |_| {}).await;
    reference(&s).await;
    (s, other)
}

/// Two gateways on one PostgreSQL: a gateway that holds a claim as it created it (ENTERED) is asked
/// for a step the claim, submitted through the other since, now allows: the refusal its own copy
/// would give is not answered, the claim is read and the step done.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_is_not_refused_on_a_claim_another_gateway_changed() {
    let (s, other) = two_gateways().await;
    let t = admin();
    let uuid = create(&s, claim("MP-2", ADULT, vec![line("I1", 1.0, 8.0)], vec![])).await;
    let r = s
        .client
        .post(format!("http://{}/api/v1/claims/submit", other.addr))
        .bearer_auth(&t)
        .json(&json!({ "uuids": [uuid] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let selected = bulk(&s, "/api/v1/claims/feedback/select", &t, &uuid).await;
    assert_eq!(selected["done"], true, "selected on the claim as submitted: {selected}");
    assert_eq!(selected["claim"]["feedback_status"], 4, "{selected}");
    other.stop().await;
}

/// Two gateways on one PostgreSQL: reference data upserted through one (and applied by whichever
/// process's projector) is seen by the other's next submission, though the other holds a copy it
/// read for an earlier submission.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reference_upsert_through_one_gateway_is_seen_by_another_ones_submissions() {
    let (s, other) = two_gateways().await;
    let t = admin();
    let submit_there = |uuid: String| {
        let (client, t) = (s.client.clone(), t.clone());
        let url = format!("http://{}/api/v1/claims/submit", other.addr);
        async move {
            let r = client.post(url).bearer_auth(&t).json(&json!({ "uuids": [uuid] })).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let body: Value = r.json().await.unwrap();
            body["data"][0]["claim"].clone()
        }
    };
    let before = create(&s, claim("MR-1", ADULT, vec![line("I1", 1.0, 8.0)], vec![line("S1", 1.0, 45.0)])).await;
    let answer = submit_there(before).await;
    assert_eq!(answer["status"], 4, "{answer}");
    let listed = |code: &str| json!({ "code": code, "valid_from": "2020-01-01" });
    upsert(&s, "/api/v1/price-lists", json!([{ "health_facility": "HF1", "items": [listed("I1")], "services": [] }]))
        .await;
    let after = create(&s, claim("MR-2", ADULT, vec![line("I1", 1.0, 8.0)], vec![line("S1", 1.0, 45.0)])).await;
    let answer = submit_there(after).await;
    assert_eq!(answer["services"][0]["rejection_reason"], 2, "S1 left HF1's price list: {answer}");
    assert_eq!(answer["items"][0]["rejection_reason"], 0, "{answer}");
    other.stop().await;
}

both_backends!(feedback_review_and_processing, steps_on);
async fn steps_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    reference(&s).await;
    let t = admin();
    let uuid = create(&s, claim("S-1", ADULT, vec![line("I1", 2.0, 10.0)], vec![line("S1", 1.0, 50.0)])).await;
    // nothing but CHECKED claims
    let early = bulk(&s, "/api/v1/claims/feedback/select", &t, &uuid).await;
    assert_eq!((early["done"].as_bool(), early["error"]["code"].as_i64()), (Some(false), Some(409)));
    submit(&s, &uuid).await;
    // feedback: bypass refused from IDLE, skip, select, deliver; nothing after DELIVERED
    for (action, done, status) in
        [("bypass", false, 1), ("skip", true, 2), ("skip", false, 2), ("select", true, 4), ("select", false, 4)]
    {
        let a = bulk(&s, &format!("/api/v1/claims/feedback/{action}"), &t, &uuid).await;
        assert_eq!(a["done"].as_bool(), Some(done), "feedback {action}: {a}");
        assert_eq!(detail(&s, &uuid).await["feedback_status"].as_i64(), Some(status), "after {action}");
    }
    let nope = s.post("/api/v1/claims/feedback/approve", &t, json!({ "uuids": [uuid] })).await;
    assert_eq!(nope.invalid_entries(), vec!["action"]);
    let feedback = json!({ "care_rendered": true, "payment_asked": false, "drug_prescribed": true,
                           "drug_received": true, "assessment": 4 });
    let bad = s.post(&format!("/api/v1/claims/{uuid}/feedback"), &t, json!({ "assessment": 9 })).await;
    assert_eq!(bad.invalid_entries().len(), 5, "{}", bad.text);
    let f = s.post(&format!("/api/v1/claims/{uuid}/feedback"), &t, feedback.clone()).await;
    assert_eq!((f.status, f.data()["feedback_status"].as_i64()), (StatusCode::OK, Some(8)), "{}", f.text);
    let again = s.post(&format!("/api/v1/claims/{uuid}/feedback"), &t, feedback.clone()).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(bulk(&s, "/api/v1/claims/feedback/bypass", &t, &uuid).await["done"], false);
    wait(&s, &f).await;
    assert_eq!(detail(&s, &uuid).await["feedback"]["assessment"], 4);
    // review: select, save (adjust), deliver rejecting the service
    let review = |lines: Value, deliver: bool| json!({ "lines": lines, "deliver": deliver });
    let early = s.post(&format!("/api/v1/claims/{uuid}/review"), &t, review(json!([]), false)).await;
    assert_eq!(early.status, StatusCode::CONFLICT);
    assert_eq!(bulk(&s, "/api/v1/claims/review/select", &t, &uuid).await["done"], true);
    let bad = s
        .post(&format!("/api/v1/claims/{uuid}/review"), &t, review(json!([{ "kind": "item", "index": 7 }]), false))
        .await;
    assert_eq!(bad.invalid_entries(), vec!["$.lines[0].index"]);
    let saved = s
        .post(
            &format!("/api/v1/claims/{uuid}/review"),
            &t,
            review(json!([{ "kind": "item", "index": 0, "qty_approved": 1, "price_approved": 7, "justification": "one box" }]), false),
        )
        .await;
    assert_eq!((saved.status, saved.data()["approved"].as_f64()), (StatusCode::OK, Some(52.0)), "{}", saved.text);
    assert_eq!(saved.data()["review_status"], 4);
    let delivered = s
        .post(
            &format!("/api/v1/claims/{uuid}/review"),
            &t,
            review(json!([{ "kind": "service", "index": 0, "rejected": true }]), true),
        )
        .await;
    assert_eq!(
        (delivered.data()["approved"].as_f64(), delivered.data()["review_status"].as_i64()),
        (Some(7.0), Some(8))
    );
    wait(&s, &delivered).await;
    let d = detail(&s, &uuid).await;
    assert_eq!((d["stage_value"].as_f64(), d["services"][0]["rejection_reason"].as_i64()), (Some(7.0), Some(-1)));
    assert_eq!((d["items"][0]["latest_qty"].as_f64(), d["items"][0]["latest_price"].as_f64()), (Some(1.0), Some(7.0)));
    // process: fixed prices, VALUATED at once
    let p = bulk(&s, "/api/v1/claims/process", &t, &uuid).await;
    assert_eq!(p["claim"]["status"], 16, "{p}");
    let d = detail(&s, &uuid).await;
    assert_eq!(
        (d["valuated"].as_f64(), d["remunerated"].as_f64(), d["stage_value"].as_f64()),
        (Some(7.0), Some(7.0), Some(7.0))
    );
    assert_eq!(d["items"][0]["price_valuated"].as_f64(), Some(7.0));
    assert_eq!(bulk(&s, "/api/v1/claims/process", &t, &uuid).await["done"], false);

    // a review that leaves no line passed rejects the claim; select + process bypasses
    let second = create(&s, claim("S-2", ADULT, vec![line("I1", 1.0, 8.0)], vec![])).await;
    submit(&s, &second).await;
    bulk(&s, "/api/v1/claims/review/select", &t, &second).await;
    bulk(&s, "/api/v1/claims/feedback/select", &t, &second).await;
    let third = create(&s, claim("S-3", ADULT, vec![line("I1", 1.0, 8.0)], vec![])).await;
    submit(&s, &third).await;
    bulk(&s, "/api/v1/claims/review/select", &t, &third).await;
    let p = bulk(&s, "/api/v1/claims/process", &t, &third).await;
    assert_eq!((p["claim"]["status"].as_i64(), p["claim"]["review_status"].as_i64()), (Some(16), Some(16)));
    let r = s
        .post(
            &format!("/api/v1/claims/{second}/review"),
            &t,
            review(json!([{ "kind": "item", "index": 0, "rejected": true }]), true),
        )
        .await;
    assert_eq!((r.data()["status"].as_i64(), r.data()["rejection_reason"].as_i64()), (Some(1), Some(-1)), "{}", r.text);

    // relative prices: PROCESSED until the batch run values them
    let rel = create(
        &s,
        claim(
            "REL-1",
            ADULT,
            vec![],
            vec![
                line("S2", 2.0, 6.0)
                    .as_object()
                    .map(|o| {
                        let mut o = o.clone();
                        o.insert("explanation".into(), json!("two tests"));
                        Value::Object(o)
                    })
                    .unwrap(),
            ],
        ),
    )
    .await;
    let rel2 = create(&s, claim("REL-2", ADULT, vec![line("I1", 1.0, 8.0)], vec![line("S2", 1.0, 5.0)])).await;
    for id in [&rel, &rel2] {
        submit(&s, id).await;
        assert_eq!(bulk(&s, "/api/v1/claims/process", &t, id).await["claim"]["status"], 8);
    }
    let d = detail(&s, &rel2).await;
    assert_eq!((d["stage_value"].as_f64(), d["valuated"].as_f64()), (Some(13.0), None));
    let bad = s
        .post(
            "/api/v1/claims/valuations",
            &t,
            json!({ "product": "P1", "from": days_ago(1), "to": days_ago(30), "amount": 30 }),
        )
        .await;
    assert_eq!(bad.invalid_entries(), vec!["$.to"]);
    let none = s
        .post(
            "/api/v1/claims/valuations",
            &t,
            json!({ "product": "P9", "from": days_ago(30), "to": days_ago(0), "amount": 30 }),
        )
        .await;
    assert_eq!(none.status, StatusCode::CONFLICT);
    let run = s
        .post(
            "/api/v1/claims/valuations",
            &t,
            json!({ "product": "P1", "from": days_ago(30), "to": days_ago(0), "amount": 30 }),
        )
        .await;
    assert_eq!(run.status, StatusCode::CREATED, "{}", run.text);
    // relative value 2×5 + 1×5 = 15: index 2
    assert_eq!((run.data()["relative_total"].as_f64(), run.data()["index"].as_f64()), (Some(15.0), Some(2.0)));
    assert_eq!(run.data()["claims"].as_array().unwrap().len(), 2);
    wait(&s, &run).await;
    let d = detail(&s, &rel2).await;
    assert_eq!((d["status"].as_i64(), d["services"][0]["price_valuated"].as_f64()), (Some(16), Some(10.0)));
    assert_eq!((d["valuated"].as_f64(), d["remunerated"].as_f64()), (Some(18.0), Some(18.0)));
    assert_eq!(detail(&s, &rel).await["valuated"].as_f64(), Some(20.0));

    // the report: counts and amounts per stage
    let report = s.get("/api/v1/reports/claims-by-stage?facility=HF1", &t).await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.text);
    let stage = |code: i64| report.data().as_array().unwrap().iter().find(|r| r["status"] == code).unwrap().clone();
    assert_eq!(
        (stage(16)["claims"].as_i64(), stage(16)["valuated"].as_f64()),
        (Some(4), Some(7.0 + 8.0 + 20.0 + 18.0))
    );
    assert_eq!(stage(1)["claims"], 1);
    assert_eq!(stage(2)["claims"], 0);
    let other = s.get("/api/v1/reports/claims-by-stage?facility=HF2", &t).await;
    assert!(other.data().as_array().unwrap().iter().all(|r| r["claims"] == 0));
}

both_backends!(restore_attachments_and_print, restore_on);
async fn restore_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    reference(&s).await;
    let t = admin();
    let rejected = create(&s, claim("RST", "999999999", vec![line("I1", 1.0, 8.0)], vec![])).await;
    let entered = create(&s, claim("RST-2", ADULT, vec![line("I1", 1.0, 8.0)], vec![])).await;
    let refused = s.post(&format!("/api/v1/claims/{entered}/restore"), &t, json!({})).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    submit(&s, &rejected).await;
    let r = s.post(&format!("/api/v1/claims/{rejected}/restore"), &t, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let copy = r.data()["uuid"].as_str().unwrap().to_string();
    assert_eq!((r.data()["code"].as_str(), r.data()["status"].as_i64()), (Some("RST"), Some(2)));
    assert_eq!(r.data()["restored_from"].as_str(), Some(rejected.as_str()));
    wait(&s, &r).await;
    assert_eq!(detail(&s, &rejected).await["restored_as"].as_str(), Some(copy.as_str()));
    assert_eq!(s.post(&format!("/api/v1/claims/{rejected}/restore"), &t, json!({})).await.status, StatusCode::CONFLICT);
    assert_eq!(
        s.post("/api/v1/claims", &t, claim("RST", ADULT, vec![line("I1", 1.0, 8.0)], vec![])).await.status,
        StatusCode::CONFLICT,
        "the copy holds the code"
    );

    // attachments: a URL, a file; update, download, delete
    let url = s
        .post(
            &format!("/api/v1/claims/{copy}/attachments"),
            &t,
            json!({ "title": "Referral", "url": "https://example.org/r.pdf" }),
        )
        .await;
    assert_eq!(url.status, StatusCode::CREATED, "{}", url.text);
    let file = s
        .post(
            &format!("/api/v1/claims/{copy}/attachments"),
            &t,
            json!({ "title": "Invoice", "filename": "invoice.txt", "mime": "text/plain", "document": "aW52b2ljZSAjMQ==" }),
        )
        .await;
    assert_eq!(file.status, StatusCode::CREATED, "{}", file.text);
    let attachments = file.data()["attachments"].as_array().unwrap().clone();
    let (url_id, file_id) =
        (attachments[0]["attachment_id"].as_str().unwrap(), attachments[1]["attachment_id"].as_str().unwrap());
    assert_eq!(attachments[1]["size"], 10);
    let bad =
        s.post(&format!("/api/v1/claims/{copy}/attachments"), &t, json!({ "title": "x", "document": "%%%" })).await;
    assert_eq!(bad.invalid_entries(), vec!["$.document"]);
    let none = s.post(&format!("/api/v1/claims/{copy}/attachments"), &t, json!({ "title": "x" })).await;
    assert_eq!(none.invalid_entries(), vec!["$.url"]);
    let big = "A".repeat(800 * 1024);
    let too_big =
        s.post(&format!("/api/v1/claims/{copy}/attachments"), &t, json!({ "title": "x", "document": big })).await;
    assert_eq!(too_big.invalid_entries(), vec!["$.document"]);
    let p = s
        .request(
            Method::PATCH,
            &format!("/api/v1/claims/{copy}/attachments/{file_id}"),
            Some(&t),
            Some(&json!({ "title": "Invoice 1" }).to_string()),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    wait(&s, &p).await;
    let d = detail(&s, &copy).await;
    assert_eq!(d["attachments"][1]["title"], "Invoice 1");
    let download = s
        .client
        .get(format!("{}/api/v1/claims/{copy}/attachments/{file_id}", s.base))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(download.headers()["content-type"], "text/plain");
    assert_eq!(download.text().await.unwrap(), "invoice #1");
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let link = no_redirect
        .get(format!("{}/api/v1/claims/{copy}/attachments/{url_id}", s.base))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (link.status(), link.headers()["location"].to_str().unwrap()),
        (StatusCode::FOUND, "https://example.org/r.pdf")
    );
    let del = s.request(Method::DELETE, &format!("/api/v1/claims/{copy}/attachments/{url_id}"), Some(&t), None).await;
    assert_eq!(del.status, StatusCode::OK, "{}", del.text);
    let del = s.request(Method::DELETE, &format!("/api/v1/claims/{copy}/attachments/{url_id}"), Some(&t), None).await;
    assert_eq!(del.status, StatusCode::NOT_FOUND);

    // print
    let pdf = s.client.get(format!("{}/api/v1/claims/{copy}/print", s.base)).bearer_auth(&t).send().await.unwrap();
    assert_eq!(pdf.status(), StatusCode::OK);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    let text = pdf_text(&pdf.bytes().await.unwrap());
    assert!(text.contains("Claim RST") && text.contains("Invoice 1"), "{text}");
    let no_right = token_for("clerk", "111001", None);
    let denied = s.get(&format!("/api/v1/claims/{copy}/print"), &no_right).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
}

/// The text of a PDF as `pdftotext` (poppler, an independent reader) extracts it, in reading order.
fn pdf_text(pdf: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("careledger-claim-{}.pdf", Uuid::now_v7()));
    std::fs::write(&path, pdf).unwrap();
    let out = std::process::Command::new("pdftotext").args(["-layout", "-enc", "UTF-8"]).arg(&path).arg("-").output();
    std::fs::remove_file(&path).ok();
    let out = out.expect("pdftotext (Debian poppler-utils; tests/run installs it)");
    assert!(out.status.success(), "pdftotext: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 text")
}

both_backends!(a_claim_prints_as_a_form_in_any_script, print_on);
async fn print_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    reference(&s).await;
    let services: Vec<Value> = (0..70)
        .map(|i| json!({ "code": "S1", "qty_provided": 1, "price_asked": 15 + i, "explanation": format!("Огляд {i}") }))
        .collect();
    let mut body = claim("ПР-7", ADULT, vec![line("I1", 2.0, 8.0)], services);
    body["explanation"] = json!("Пацієнт скерований до лікаря загальної практики; Ελληνικά; Ökonomie");
    let uuid = create(&s, body).await;
    submit(&s, &uuid).await;
    let pdf = s.client.get(format!("{}/api/v1/claims/{uuid}/print", s.base)).bearer_auth(admin()).send().await.unwrap();
    assert_eq!(pdf.status(), StatusCode::OK);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    assert_eq!(pdf.headers()["content-disposition"], format!("inline; filename=\"claim-{uuid}.pdf\""));
    let text = pdf_text(&pdf.bytes().await.unwrap());
    for expected in [
        "Claim ПР-7",
        "Пацієнт скерований до лікаря загальної практики; Ελληνικά; Ökonomie",
        "Огляд 0",
        "Огляд 69",
        ADULT,
        "HF1",
        "Amounts per stage",
        "Page 1 of 3",
        "Page 3 of 3",
    ] {
        assert!(text.contains(expected), "{expected:?} is not in the printed claim:\n{text}");
    }
    // the claimed amount (2 × 8 and the services' 15 to 84) and the claim's status after submission
    let claimed = 16 + (15..85).sum::<i64>();
    let d = detail(&s, &uuid).await;
    assert_eq!(d["claimed"].as_f64(), Some(claimed as f64), "{d}");
    let status = if d["status"] == 1 { "REJECTED" } else { "CHECKED" };
    assert!(text.contains(status), "{status}: {text}");
    let amounts = text.lines().find(|l| l.trim_start().starts_with("Claimed ")).unwrap_or_default();
    assert!(amounts.contains(&claimed.to_string()), "{amounts:?}");
}

both_backends!(permissions_and_facility_scoping, scoping_on);
async fn scoping_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    reference(&s).await;
    let t = admin();
    let hf1 = create(&s, claim("H1", ADULT, vec![line("I1", 1.0, 8.0)], vec![])).await;
    let mut at_hf2 = claim("H2", ADULT, vec![line("I1", 1.0, 8.0)], vec![]);
    at_hf2["health_facility"] = json!("HF2");
    let hf2 = create(&s, at_hf2.clone()).await;
    // every command and query needs its right
    let nobody = token_for("nobody", "audit:read", None);
    let uuids = json!({ "uuids": [hf1] });
    for (method, path, body) in [
        (Method::POST, "/api/v1/claims".to_string(), at_hf2.clone()),
        (Method::PUT, format!("/api/v1/claims/{hf1}"), at_hf2.clone()),
        (Method::GET, "/api/v1/claims".to_string(), Value::Null),
        (Method::GET, format!("/api/v1/claims/{hf1}"), Value::Null),
        (Method::POST, "/api/v1/claims/submit".to_string(), uuids.clone()),
        (Method::POST, "/api/v1/claims/delete".to_string(), uuids.clone()),
        (Method::POST, "/api/v1/claims/feedback/select".to_string(), uuids.clone()),
        (Method::POST, "/api/v1/claims/review/skip".to_string(), uuids.clone()),
        (Method::POST, format!("/api/v1/claims/{hf1}/feedback"), json!({})),
        (Method::POST, format!("/api/v1/claims/{hf1}/review"), json!({})),
        (Method::POST, "/api/v1/claims/process".to_string(), uuids.clone()),
        (Method::POST, "/api/v1/claims/valuations".to_string(), json!({})),
        (Method::POST, format!("/api/v1/claims/{hf1}/restore"), json!({})),
        (Method::POST, format!("/api/v1/claims/{hf1}/attachments"), json!({})),
        (Method::GET, format!("/api/v1/claims/{hf1}/print"), Value::Null),
        (Method::GET, "/api/v1/reports/claims-by-stage".to_string(), Value::Null),
        (Method::POST, "/api/v1/insurees".to_string(), json!({ "entries": [] })),
    ] {
        let body = (!body.is_null()).then(|| body.to_string());
        let a = s.request(method.clone(), &path, Some(&nobody), body.as_deref()).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{method} {path}: {}", a.text);
    }
    assert_eq!(s.request(Method::GET, "/api/v1/claims", None, None).await.status, StatusCode::UNAUTHORIZED);

    // a claim administrator of HF1 acts on HF1's claims only
    let clerk = token_at_facility("clerk", CLAIMS, "HF1");
    assert_eq!(s.post("/api/v1/claims", &clerk, at_hf2.clone()).await.status, StatusCode::FORBIDDEN);
    let list = s.get("/api/v1/claims", &clerk).await;
    assert_eq!((list.body["paging"]["total"].as_i64(), list.data()[0]["uuid"].as_str()), (Some(1), Some(hf1.as_str())));
    assert_eq!(s.get(&format!("/api/v1/claims/{hf2}"), &clerk).await.status, StatusCode::FORBIDDEN);
    assert_eq!(s.get(&format!("/api/v1/claims/{hf2}/print"), &clerk).await.status, StatusCode::FORBIDDEN);
    let put = s.request(Method::PUT, &format!("/api/v1/claims/{hf2}"), Some(&clerk), Some(&at_hf2.to_string())).await;
    assert_eq!(put.status, StatusCode::FORBIDDEN);
    // moving its own claim to another facility is refused too
    let put = s.request(Method::PUT, &format!("/api/v1/claims/{hf1}"), Some(&clerk), Some(&at_hf2.to_string())).await;
    assert_eq!(put.status, StatusCode::FORBIDDEN);
    let a = s.post("/api/v1/claims/submit", &clerk, json!({ "uuids": [hf1, hf2] })).await;
    assert_eq!(
        (a.data()[0]["done"].as_bool(), a.data()[1]["error"]["code"].as_i64()),
        (Some(true), Some(403)),
        "{}",
        a.text
    );
    let report = s.get("/api/v1/reports/claims-by-stage?facility=HF2", &clerk).await;
    assert_eq!(report.status, StatusCode::FORBIDDEN);
    wait(&s, &a).await;
    let report = s.get("/api/v1/reports/claims-by-stage", &clerk).await;
    let total: i64 = report.data().as_array().unwrap().iter().map(|r| r["claims"].as_i64().unwrap()).sum();
    assert_eq!(total, 1, "the report counts the facility's claims only");
    assert_eq!(s.get("/api/v1/claims", &t).await.body["paging"]["total"], 2);
}

both_backends!(rebuild_gives_identical_tables, rebuild_on);
async fn rebuild_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    reference(&s).await;
    let t = admin();
    let mut last = 0;
    for i in 0..6 {
        let uuid =
            create(&s, claim(&format!("RB-{i}"), ADULT, vec![line("I1", 1.0, 8.0)], vec![line("S2", 1.0, 5.0)])).await;
        if i % 3 != 0 {
            submit(&s, &uuid).await;
        }
        if i % 3 == 2 {
            last = s.post("/api/v1/claims/process", &t, json!({ "uuids": [uuid] })).await.position();
        }
    }
    let run = s
        .post(
            "/api/v1/claims/valuations",
            &t,
            json!({ "product": "P1", "from": days_ago(30), "to": days_ago(0), "amount": 10 }),
        )
        .await;
    assert_eq!(run.status, StatusCode::CREATED, "{}", run.text);
    let a = s
        .post(
            &format!("/api/v1/claims/{}/attachments", Uuid::now_v7()),
            &t,
            json!({ "title": "x", "url": "https://example.org/u" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(s.state().projections.wait_for(run.position().max(last), Duration::from_secs(10)).await);
    let db = s.state().store.db().clone();
    let before = dump_tables(&db, &TABLES).await.unwrap();
    assert!(before.contains("## claims (6 rows)") && before.contains("## claim_valuation_runs (1 rows)"), "{before}");
    let projections = Projections::new(s.state().store.clone(), careledger_projections::all());
    projections.rebuild("claims", &|_, _| {}).await.unwrap();
    let after = dump_tables(&db, &TABLES).await.unwrap();
    assert_eq!(before, after, "a rebuild must give identical tables");
}

#[tokio::test]
async fn openapi_describes_every_claims_endpoint() {
    let spec: Value = serde_json::from_str(careledger_gateway::http::ops::OPENAPI).unwrap();
    for (method, path) in [
        ("post", "/api/v1/health-facilities"),
        ("post", "/api/v1/medical-items"),
        ("post", "/api/v1/medical-services"),
        ("post", "/api/v1/price-lists"),
        ("post", "/api/v1/insurees"),
        ("post", "/api/v1/products"),
        ("post", "/api/v1/policies"),
        ("post", "/api/v1/claims"),
        ("get", "/api/v1/claims"),
        ("get", "/api/v1/claims/{uuid}"),
        ("put", "/api/v1/claims/{uuid}"),
        ("post", "/api/v1/claims/delete"),
        ("post", "/api/v1/claims/{uuid}/restore"),
        ("post", "/api/v1/claims/submit"),
        ("post", "/api/v1/claims/feedback/{action}"),
        ("post", "/api/v1/claims/review/{action}"),
        ("post", "/api/v1/claims/{uuid}/feedback"),
        ("post", "/api/v1/claims/{uuid}/review"),
        ("post", "/api/v1/claims/process"),
        ("post", "/api/v1/claims/valuations"),
        ("post", "/api/v1/claims/{uuid}/attachments"),
        ("patch", "/api/v1/claims/{uuid}/attachments/{id}"),
        ("delete", "/api/v1/claims/{uuid}/attachments/{id}"),
        ("get", "/api/v1/claims/{uuid}/attachments/{id}"),
        ("get", "/api/v1/claims/{uuid}/print"),
        ("get", "/api/v1/reports/claims-by-stage"),
    ] {
        assert!(spec["paths"][path].get(method).is_some(), "openapi.json does not describe {method} {path}");
    }
}

both_backends!(concurrent_creates_take_a_code_once, concurrent_on);
async fn concurrent_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = admin();
    let body = claim("SAME", ADULT, vec![line("I1", 1.0, 8.0)], vec![]);
    let send = |body: Value, key: Option<&str>| {
        let mut request = s.client.post(format!("{}/api/v1/claims", s.base)).bearer_auth(&t).json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send()
    };
    let answers = futures::future::join_all((0..8).map(|_| send(body.clone(), None))).await;
    let statuses: Vec<StatusCode> = answers.into_iter().map(|a| a.unwrap().status()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count(), 7, "{statuses:?}");
    // a repeated Idempotency-Key answers the first answer and creates nothing
    let other = claim("ONCE", ADULT, vec![line("I1", 1.0, 8.0)], vec![]);
    let first: Value = send(other.clone(), Some("k-1")).await.unwrap().json().await.unwrap();
    let count = s.state().store.count().await.unwrap();
    let again = send(other.clone(), Some("k-1")).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["data"]["uuid"], first["data"]["uuid"]);
    assert_eq!(s.state().store.count().await.unwrap(), count);
    let mut changed = other;
    changed["code"] = json!("TWICE");
    assert_eq!(send(changed, Some("k-1")).await.unwrap().status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// Two gateways on one PostgreSQL: a claim updated through one is submitted through the other,
/// which still holds the older data; the submission is checked against the claim as it is now.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_submission_checks_the_claim_as_another_gateway_left_it() {
    let (s, other) = two_gateways().await;
    let t = admin();
    // this gateway creates the claim, so it holds it folded as created
    let uuid = create(&s, claim("MP-1", ADULT, vec![line("NOPE", 1.0, 8.0)], vec![])).await;
    let fixed = claim("MP-1", ADULT, vec![line("I1", 1.0, 8.0)], vec![]);
    let r = s
        .client
        .put(format!("http://{}/api/v1/claims/{uuid}", other.addr))
        .bearer_auth(&t)
        .json(&fixed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let a = submit(&s, &uuid).await;
    assert_eq!(a["claim"]["status"], 4, "checked with the updated line: {a}");
    assert_eq!(a["claim"]["items"][0]["code"], "I1");
    other.stop().await;
}
