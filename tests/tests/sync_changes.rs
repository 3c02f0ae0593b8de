//! The export side of the sync (issue #21): `GET /fhir/$changes?_since=P`, what changed after log
//! position P as a FHIR `transaction` Bundle of conditional updates by identifier, with the
//! position reached in its `next` link; checked by an independent FHIR library.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use careledger_tests::{Answer, Kind, TestServer, both_backends, token_for, valid_fhir};
use reqwest::StatusCode;
use serde_json::{Value, json};

const OFFICER: &str = "111101 111102 101102 101202 reference:write 111002";

async fn ok(s: &TestServer, path: &str, token: &str, body: Value) -> Answer {
    let a = s.post(path, token, body).await;
    assert!(a.status.is_success(), "{path}: {}", a.text);
    assert!(s.state().projections.wait_for(a.position(), Duration::from_secs(10)).await);
    a
}

async fn register(s: &TestServer, t: &str, name: &str) -> String {
    let body = json!({ "last_name": name, "other_names": "A", "birth_date": "1990-01-31", "gender": "M",
                       "holder_type": 2, "holder_code": "EO-1" });
    ok(s, "/api/v1/enrolment/insurees", t, body).await.data()["insuree_id"].as_str().unwrap().to_string()
}

/// GET of a `$changes` URL (absolute, as the Bundle's links give it) or path.
async fn changes(s: &TestServer, url: &str, token: &str) -> Answer {
    let path = url.find("/fhir/").map(|i| &url[i..]).unwrap_or(url);
    let a = s.get(path, token).await;
    assert_eq!(a.headers["content-type"], "application/fhir+json", "{path}");
    a
}

fn next(bundle: &Value) -> String {
    let links = bundle["link"].as_array().unwrap();
    links.iter().find(|l| l["relation"] == "next").unwrap()["url"].as_str().unwrap().to_string()
}

/// Each entry's resource type and id; a register entry as `register` and its kind.
fn entries(bundle: &Value) -> Vec<(String, String)> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| {
                    let r = &e["resource"];
                    if r["code"]["coding"][0]["code"] == "register-entry" {
                        // the version is the upsert's log position here
                        let version = r["meta"]["versionId"].as_str().and_then(|v| v.parse::<i64>().ok());
                        assert!(version.is_some_and(|v| v > 0), "{r}");
                        ("register".into(), r["extension"][0]["extension"][0]["valueCode"].as_str().unwrap().into())
                    } else {
                        (r["resourceType"].as_str().unwrap().into(), r["id"].as_str().unwrap().into())
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

both_backends!(changes_are_a_transaction_bundle_with_a_cursor, changes_on);
async fn changes_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = token_for("officer", OFFICER, None);
    let peer = token_for("central", "sync:read", None);
    let own = s.state().config.fhir_system.clone();
    for (path, entries) in [
        ("/api/v1/health-facilities", json!([{ "code": "HF1", "name": "District hospital", "care_type": "B" }])),
        ("/api/v1/medical-items", json!([{ "code": "I1", "name": "Paracetamol", "price": 8 }])),
        ("/api/v1/products", json!([{ "code": "P1", "name": "Basic", "items": [{ "code": "I1" }] }])),
    ] {
        ok(&s, path, &t, json!({ "entries": entries })).await;
    }
    ok(&s, "/api/v1/code-batches", &t, json!({ "holder_type": 2, "holder_code": "EO-1", "number": 10 })).await;
    ok(&s, "/api/v1/codes/reservations", &t, json!({ "holder_type": 2, "holder_code": "EO-1", "number": 5 })).await;
    let (a, b) = (register(&s, &t, "Mwangi").await, register(&s, &t, "Otieno").await);
    let policy = ok(
        &s,
        "/api/v1/enrolment/policies",
        &t,
        json!({ "insuree_id": a, "product_code": "P1", "enrol_date": "2026-01-01", "expiry_date": "2026-12-31" }),
    )
    .await
    .data()["policy_id"]
        .as_str()
        .unwrap()
        .to_string();
    let claim = json!({ "code": "C-1", "health_facility": "HF1", "insuree": "100000001", "date_from": "2026-11-01",
                        "date_claimed": "2026-11-02", "icd": "A00", "visit_type": "O",
                        "items": [{ "code": "I1", "qty_provided": 1, "price_asked": 8 }], "services": [] });
    let claim = ok(&s, "/api/v1/claims", &t, claim).await.data()["uuid"].as_str().unwrap().to_string();
    let head = s.state().store.head().await.unwrap();

    // everything since the start: the resources in the order they changed, each a conditional
    // update by this server's identifier
    let all = changes(&s, "/fhir/$changes?_since=0", &peer).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!((all.body["resourceType"].as_str(), all.body["type"].as_str()), (Some("Bundle"), Some("transaction")));
    let (facilities, items, products) =
        ("health-facilities".to_string(), "medical-items".to_string(), "products".to_string());
    let expected = [
        ("register", &facilities),
        ("register", &items),
        ("register", &products),
        ("Patient", &a),
        ("Patient", &b),
        ("Coverage", &policy),
        ("Claim", &claim),
        ("ClaimResponse", &claim),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(t, id)| (t.to_string(), id.to_string())).collect();
    assert_eq!(entries(&all.body), expected, "{}", all.text);
    for entry in all.body["entry"].as_array().unwrap() {
        let (kind, id) =
            (entry["resource"]["resourceType"].as_str().unwrap(), entry["resource"]["id"].as_str().unwrap());
        assert_eq!(entry["request"], json!({ "method": "PUT", "url": format!("{kind}?identifier={own}|{id}") }));
    }
    assert_eq!(all.body["identifier"], json!({ "system": own, "value": format!("changes-0-{head}") }));
    assert!(next(&all.body).ends_with(&format!("/fhir/$changes?_since={head}&_count=100")), "{}", all.text);
    let patient = &all.body["entry"][3]["resource"];
    assert_eq!(patient["name"][0]["family"], "Mwangi");
    // the register entry whole, in the upsert API's form
    let facility = &all.body["entry"][0]["resource"]["extension"][0]["extension"][1]["valueAttachment"];
    assert_eq!(facility["contentType"], "application/json");
    let data = base64::engine::general_purpose::STANDARD.decode(facility["data"].as_str().unwrap()).unwrap();
    let data: Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(data, json!({ "code": "HF1", "name": "District hospital", "care_type": "B" }));

    // nothing new: an empty Bundle, the cursor where it was
    let again = changes(&s, &next(&all.body), &peer).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert!(again.body.get("entry").is_none(), "{}", again.text);
    assert_eq!(next(&again.body), next(&all.body));

    // a change after the cursor is all the next Bundle holds
    let c = register(&s, &t, "Njeri").await;
    let newer = changes(&s, &next(&again.body), &peer).await;
    assert_eq!(entries(&newer.body), [("Patient".to_string(), c.clone())], "{}", newer.text);

    // a page at a time: every resource once, the last page's cursor at the head
    let mut url = "/fhir/$changes?_since=0&_count=2".to_string();
    let mut paged = vec![];
    loop {
        let page = changes(&s, &url, &peer).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let got = entries(&page.body);
        assert!(got.len() <= 3, "two resources (a claim with its response) a page: {}", page.text);
        if got.is_empty() {
            break;
        }
        paged.extend(got);
        url = next(&page.body);
    }
    let all_now: BTreeSet<_> = expected.iter().cloned().chain([("Patient".to_string(), c)]).collect();
    assert_eq!(paged.iter().cloned().collect::<BTreeSet<_>>(), all_now);
    assert_eq!(paged.len(), all_now.len(), "each once");

    valid_fhir(&[all.body.clone(), again.body.clone(), newer.body.clone()]);

    // a peer's right, and parameters as documented
    let reader = token_for("reader", "101101 101201 111001", None);
    let refused = changes(&s, "/fhir/$changes?_since=0", &reader).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert_eq!(refused.body["resourceType"], "OperationOutcome");
    for bad in ["_since=-1", "_since=x", "_count=0", "_count=1001", "_since=1&_since=2", "identifier=x"] {
        let a = changes(&s, &format!("/fhir/$changes?{bad}"), &peer).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}: {}", a.text);
        assert_eq!(a.body["resourceType"], "OperationOutcome", "{bad}");
    }
    let anonymous = s.request(reqwest::Method::GET, "/fhir/$changes", None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{}", anonymous.text);

    // a register entry upserted again is the same resource (its id is the entry's), as it is now:
    // a sync file joining pages keeps it once
    let facility_id = all.body["entry"][0]["resource"]["id"].clone();
    let from = next(&all.body);
    let renamed = json!([{ "code": "HF1", "name": "Regional hospital", "care_type": "B" }]);
    ok(&s, "/api/v1/health-facilities", &t, json!({ "entries": renamed })).await;
    let later = changes(&s, &from, &peer).await;
    let entry = later.body["entry"].as_array().unwrap().iter().find(|e| e["resource"]["id"] == facility_id).cloned();
    let entry = entry.unwrap_or_else(|| panic!("the facility again, under its id: {}", later.text));
    let data = entry["resource"]["extension"][0]["extension"][1]["valueAttachment"]["data"].as_str().unwrap();
    let data: Value = serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(data).unwrap()).unwrap();
    assert_eq!(data["name"], "Regional hospital");
}
