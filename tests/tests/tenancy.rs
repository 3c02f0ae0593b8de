//! Tenancy (DESIGN rule 12, issue #23 findings 6, 7, 8, 11): a token acting for a legal entity or
//! a health facility sees and changes only that tenant's data, unless it holds an explicit
//! all-tenants permission.

use careledger_tests::scenario::{CLAIMS_ADMIN, claims_lifecycle, http_of};
use careledger_tests::{CLAIMS, Kind, REGISTRY, TestServer, both_backends, token_at_facility, token_for};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

fn id() -> String {
    Uuid::now_v7().to_string()
}

async fn legal_entity(s: &TestServer, token: &str, le: &str) -> StatusCode {
    let body = json!({ "id": le, "name": "Clinic", "edrpou": "12345678", "type": "MSP", "status": "ACTIVE" });
    s.post("/api/v1/legal-entities", token, body).await.status
}

async fn division(s: &TestServer, token: &str, le: &str, div: &str) -> StatusCode {
    let body = json!({ "id": div, "legal_entity_id": le, "name": "Ward", "type": "CLINIC", "status": "ACTIVE" });
    s.post("/api/v1/divisions", token, body).await.status
}

both_backends!(reference_data_of_another_legal_entity_is_refused, reference_on);
async fn reference_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let admin = token_for("registry", REGISTRY, None);
    let (le, other) = (id(), id());
    assert_eq!(legal_entity(&s, &admin, &le).await, StatusCode::CREATED);
    assert_eq!(legal_entity(&s, &admin, &other).await, StatusCode::CREATED);
    let (div, other_div) = (id(), id());
    assert_eq!(division(&s, &admin, &le, &div).await, StatusCode::CREATED);
    assert_eq!(division(&s, &admin, &other, &other_div).await, StatusCode::CREATED);

    let user = token_for("clerk", REGISTRY, Some(&le));
    let patch = |path: String, body: Value| {
        let s = &s;
        let user = user.clone();
        async move { s.request(Method::PATCH, &path, Some(&user), Some(&body.to_string())).await }
    };
    // another legal entity's division, status and divisions: refused, nothing appended
    let count = s.state().store.count().await.unwrap();
    let a = patch(format!("/api/v1/divisions/{other_div}"), json!({ "is_active": false })).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    let a = patch(format!("/api/v1/legal-entities/{other}"), json!({ "status": "SUSPENDED" })).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    assert_eq!(division(&s, &user, &other, &id()).await, StatusCode::FORBIDDEN);
    assert_eq!(legal_entity(&s, &user, &id()).await, StatusCode::FORBIDDEN);
    assert_eq!(s.state().store.count().await.unwrap(), count);
    // its own: allowed
    let a = patch(format!("/api/v1/divisions/{div}"), json!({ "is_active": false })).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(division(&s, &user, &le, &id()).await, StatusCode::CREATED);
}

both_backends!(audit_is_scoped_to_the_callers_tenant, audit_on);
async fn audit_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let admin = token_for("registry", REGISTRY, None);
    let (le, other) = (id(), id());
    assert_eq!(legal_entity(&s, &admin, &le).await, StatusCode::CREATED);
    assert_eq!(legal_entity(&s, &admin, &other).await, StatusCode::CREATED);
    // each legal entity's own user registers a division
    let mine = token_for("clerk-1", REGISTRY, Some(&le));
    let theirs = token_for("clerk-2", REGISTRY, Some(&other));
    assert_eq!(division(&s, &mine, &le, &id()).await, StatusCode::CREATED);
    assert_eq!(division(&s, &theirs, &other, &id()).await, StatusCode::CREATED);
    let head = s.state().store.head().await.unwrap();
    assert!(s.state().projections.wait_for(head, std::time::Duration::from_secs(10)).await);

    let entities = |a: &careledger_tests::Answer| -> Vec<String> {
        a.data()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["metadata"]["actor"]["legal_entity_id"].as_str().unwrap_or("none").to_string())
            .collect()
    };
    for path in ["/api/v1/audit", "/api/v1/events"] {
        let a = s.get(path, &mine).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        assert_eq!(entities(&a), vec![le.clone()], "{path}: only its own legal entity's events");
        let all = s.get(path, &admin).await;
        assert_eq!(all.data().as_array().unwrap().len(), 4, "{path}: a token acting for no tenant reads all");
        let wide = token_for("auditor", "audit:read audit:read_all", Some(&le));
        assert_eq!(s.get(path, &wide).await.data().as_array().unwrap().len(), 4, "{path}: the all-tenants permission");
    }
    let a = s.get(&format!("/api/v1/audit?legal_entity={other}"), &mine).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    // another tenant's stream is not found
    let streams = s.get("/api/v1/events", &admin).await;
    let foreign = streams
        .data()
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["metadata"]["actor"]["legal_entity_id"] == json!(other))
        .unwrap()["stream"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.get(&format!("/api/v1/streams/{foreign}/events"), &mine).await.status, StatusCode::NOT_FOUND);
    // the log records no facility: a facility-scoped token is refused
    let facility = token_at_facility("admin-hf1", "audit:read", "HF1");
    assert_eq!(s.get("/api/v1/audit", &facility).await.status, StatusCode::FORBIDDEN);
}

both_backends!(valuation_is_not_for_a_facility_and_sees_every_processed_claim, valuation_on);
async fn valuation_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let today = chrono::Utc::now().date_naive();
    let run = json!({ "product": "P1", "from": today - chrono::Days::new(30), "to": today, "amount": 100 });
    let facility = token_at_facility("admin-hf1", CLAIMS, "HF1");
    let a = s.post("/api/v1/claims/valuations", &facility, run.clone()).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);

    // the lifecycle up to processing, then the run at once, without waiting for the read model
    // of the last step: the run must see the claim processed just before it
    let t = token_for(CLAIMS_ADMIN, CLAIMS, None);
    let mut last_status = 0;
    claims_lifecycle(async |step| {
        if step.command == "ValuateClaims" {
            let (method, path) = http_of(step.command, &step.params);
            let a = s.request(method, &path, Some(&t), Some(&step.body.to_string())).await;
            last_status = a.status.as_u16();
            assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
            return a.body;
        }
        let (method, path) = http_of(step.command, &step.params);
        let a = s.request(method, &path, Some(&t), Some(&step.body.to_string())).await;
        assert_eq!(a.status.as_u16(), step.status, "{} {path}: {}", step.command, a.text);
        if step.command != "ProcessClaims" {
            assert!(s.state().projections.wait_for(a.position(), std::time::Duration::from_secs(10)).await);
        }
        a.body
    })
    .await;
    assert_eq!(last_status, 201);
}
