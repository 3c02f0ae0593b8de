//! Whatever `decide` can emit, every projector can apply (DESIGN rule 9, issue #23 finding 1).
//!
//! Claims whose amounts are drawn at and between the bounds of README "Bounds" go through the
//! whole lifecycle (entry, submission, review, processing, a valuation run of the largest
//! allocation) over HTTP, so the domain decides every amount; every projector must then reach
//! the log's head, the read model must show what the domain decided, and the report's sums must
//! answer. Before the bounds, one claim of 10^12 × 10^12 stopped the claims projector for good.

use std::time::Duration;

use careledger_events::claims::Amount;
use careledger_tests::scenario::{CLAIMS_ADMIN, http_of};
use careledger_tests::{CLAIMS, Kind, TestServer, both_backends, token_for};
use chrono::{Days, Utc};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

/// Claims per backend: each is a whole lifecycle of up to 200 lines.
const CASES: usize = 4;

fn amount(a: Amount) -> Value {
    json!(a.to_f64())
}

/// A quantity: the smallest, the largest, or any between (two decimals).
fn quantity() -> impl Strategy<Value = Amount> {
    proptest::prop_oneof![
        proptest::strategy::Just(Amount(1)),
        proptest::strategy::Just(Amount::MAX_QUANTITY),
        (1..=Amount::MAX_QUANTITY.0).prop_map(Amount),
    ]
}

/// A price: none, the largest, or any between.
fn price() -> impl Strategy<Value = Amount> {
    proptest::prop_oneof![
        proptest::strategy::Just(Amount::ZERO),
        proptest::strategy::Just(Amount::MAX_PRICE),
        (0..=Amount::MAX_PRICE.0).prop_map(Amount),
    ]
}

/// A line within the bounds: the price lowered until quantity × price fits a line's value.
fn line() -> impl Strategy<Value = (Amount, Amount)> {
    (quantity(), price()).prop_map(|(q, p)| {
        let p =
            if q.times(p) > Amount::MAX_LINE_VALUE { Amount::MAX_LINE_VALUE.scaled(Amount::units(1), q) } else { p };
        let p = if q.times(p) > Amount::MAX_LINE_VALUE { Amount(p.0 - 1) } else { p };
        (q, p)
    })
}

/// A claim's lines: (quantity, price) of its items and of its services.
type Lines = Vec<(Amount, Amount)>;

fn lines() -> impl Strategy<Value = (Lines, Lines)> {
    (proptest::collection::vec(line(), 1..=100), proptest::collection::vec(line(), 0..=100))
}

async fn send(s: &TestServer, t: &str, command: &str, params: &[(&'static str, String)], body: Value) -> Value {
    let (method, path) = http_of(command, params);
    let a = s.request(method, &path, Some(t), Some(&body.to_string())).await;
    assert!(a.status.is_success(), "{command} {path}: {} {}", a.status, a.text);
    let position = a.position();
    if position > 0 {
        caught_up(s, position).await;
    }
    a.body
}

async fn caught_up(s: &TestServer, position: i64) {
    if !s.state().projections.wait_for(position, Duration::from_secs(20)).await {
        let status = s.state().projections.status().await.map(|p| format!("{p:?}")).unwrap_or_default();
        panic!("the read models did not reach {position}: {status}");
    }
}

both_backends!(claims_at_the_bounds_fold_into_every_read_model, bounds_on);
async fn bounds_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = token_for(CLAIMS_ADMIN, CLAIMS, None);
    let today = Utc::now().date_naive();
    let insuree = Uuid::now_v7();
    let max = amount(Amount::MAX_PRICE);
    for (command, entries) in [
        ("UpsertHealthFacilities", json!([{ "code": "HF1", "name": "District hospital", "care_type": "B" }])),
        ("UpsertMedicalItems", json!([{ "code": "I1", "name": "Dearest drug", "price": max }])),
        ("UpsertMedicalServices", json!([{ "code": "S2", "name": "Dearest service", "price": max }])),
        (
            "UpsertPriceLists",
            json!([{ "health_facility": "HF1", "items": [{ "code": "I1", "valid_from": "2020-01-01" }],
                     "services": [{ "code": "S2", "valid_from": "2020-01-01" }] }]),
        ),
        (
            "UpsertInsurees",
            json!([{ "uuid": insuree, "chfid": "100000001", "birth_date": "1980-05-05", "gender": "F" }]),
        ),
        (
            "UpsertProducts",
            json!([{ "code": "P1", "name": "Basic", "items": [{ "code": "I1" }],
                     "services": [{ "code": "S2", "price_origin": "R" }] }]),
        ),
        (
            "UpsertPolicies",
            json!([{ "uuid": Uuid::now_v7(), "insuree": insuree, "product": "P1",
                     "effective_date": today - Days::new(300), "expiry_date": today + Days::new(60) }]),
        ),
    ] {
        send(&s, &t, command, &[], json!({ "entries": entries })).await;
    }

    let mut runner = TestRunner::new(Config { cases: CASES as u32, ..Config::default() });
    for case in 0..CASES {
        let (items, services) = lines().new_tree(&mut runner).expect("a case").current();
        let body_of = |lines: &[(Amount, Amount)], code: &str| -> Value {
            lines
                .iter()
                .map(|(q, p)| {
                    json!({ "code": code, "qty_provided": amount(*q), "price_asked": amount(*p),
                                      "explanation": "at the bounds" })
                })
                .collect()
        };
        let id = Uuid::now_v7();
        let claimed: Amount = items.iter().chain(&services).map(|(q, p)| q.times(*p)).sum();
        let created = send(
            &s,
            &t,
            "CreateClaim",
            &[],
            json!({ "uuid": id, "code": format!("B-{case}"), "health_facility": "HF1", "insuree": "100000001",
                    "date_from": today - Days::new(1), "icd": "A00", "visit_type": "O",
                    "items": body_of(&items, "I1"), "services": body_of(&services, "S2") }),
        )
        .await;
        assert_eq!(created["data"]["claimed"].as_f64(), Some(claimed.to_f64()), "case {case}");
        send(&s, &t, "SubmitClaims", &[], json!({ "uuids": [id] })).await;
        send(&s, &t, "SelectClaimsForReview", &[], json!({ "uuids": [id] })).await;
        // the reviewer approves the first item at the largest price its quantity allows
        let (q, _) = items[0];
        let approved =
            if q.times(Amount::MAX_PRICE) > Amount::MAX_LINE_VALUE { Amount::units(1) } else { Amount::MAX_PRICE };
        let review =
            json!({ "lines": [{ "kind": "item", "index": 0, "price_approved": amount(approved) }], "deliver": true });
        send(&s, &t, "SaveReview", &[("Careledger-Uuid", id.to_string())], review).await;
        send(&s, &t, "ProcessClaims", &[], json!({ "uuids": [id] })).await;
        if !services.is_empty() {
            let run = json!({ "product": "P1", "from": today - Days::new(30), "to": today,
                              "amount": amount(Amount::MAX_ALLOCATION) });
            let a = s.post("/api/v1/claims/valuations", &t, run).await;
            // a run finds nothing to value when every relative line was worth 0
            assert!(a.status == StatusCode::CREATED || a.status == StatusCode::CONFLICT, "{}", a.text);
            if a.status == StatusCode::CREATED {
                caught_up(&s, a.position()).await;
            }
        }
        let read = s.get(&format!("/api/v1/claims/{id}"), &t).await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.text);
        assert_eq!(
            read.data()["claimed"].as_f64(),
            Some(claimed.to_f64()),
            "case {case}: the read model shows what was decided"
        );
    }
    let head = s.state().store.head().await.unwrap();
    caught_up(&s, head).await;
    assert!(s.state().projections.reached(head));
    for p in s.state().projections.status().await.unwrap() {
        assert_eq!(p.failures, 0, "{p:?}");
    }
    let report = s.get("/api/v1/reports/claims-by-stage", &t).await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.text);
}

both_backends!(amounts_past_the_bounds_are_refused_where_they_are_read, refused_on);
async fn refused_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = token_for(CLAIMS_ADMIN, CLAIMS, None);
    let claim = |qty: f64, price: f64| {
        json!({ "code": "X", "health_facility": "HF1", "insuree": "100000001", "date_from": "2026-01-01",
                "icd": "A00", "visit_type": "O",
                "items": [{ "code": "I1", "qty_provided": qty, "price_asked": price }] })
    };
    for (qty, price, entry) in [
        (1e12, 1e12, "$.items[0].qty_provided"),
        (100_000.01, 1.0, "$.items[0].qty_provided"),
        (1.0, 1_000_000_000.01, "$.items[0].price_asked"),
        (100_000.0, 1_000_000_000.0, "$.items[0].price_asked"),
    ] {
        let a = s.post("/api/v1/claims", &t, claim(qty, price)).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{qty} × {price}: {}", a.text);
        assert!(a.invalid_entries().contains(&entry.to_string()), "{qty} × {price}: {}", a.text);
    }
    assert_eq!(s.state().store.count().await.unwrap(), 0, "nothing appended");
}
