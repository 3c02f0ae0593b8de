//! Requisition numbers over real HTTP on both backends: the issue's two example numbers, one
//! number per encounter, every refusal (400/401/403/404/422), a number taken by another encounter,
//! uniqueness under concurrent requests, and a rebuild of the read model giving identical tables.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use careledger_domain::requisitions::{RequisitionKey, RequisitionNumber};
use careledger_events::requisitions::{EntityType, RequisitionEvent, encounter_stream};
use careledger_events::{DomainEvent, EventMetadata, NewEvent};
use careledger_projections::{Projections, dump_tables};
use careledger_store::{AppendRequest, ExpectedVersion, KeyClaim, StreamAppend};
use careledger_tests::{Kind, REQUISITIONS, TestServer, both_backends};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

const EXAMPLE: &str = "7a1419b0-c53d-4df2-9c22-07de28d96ac0";
const NIL: &str = "00000000-0000-0000-0000-000000000000";
const TABLES: [&str; 2] = ["requisitions", "requisition_entities"];

fn body(encounter: &str, entity: Uuid) -> Value {
    json!({ "encounter_id": encounter, "entity_type": "service_request", "entity_id": entity })
}

async fn issue(s: &TestServer, encounter: &str, entity: Uuid) -> careledger_tests::Answer {
    s.post("/api/v1/requisitions", &s.token(REQUISITIONS), body(encounter, entity)).await
}

/// The events of an encounter's stream, decoded.
async fn events_of(s: &TestServer, encounter: &str) -> Vec<RequisitionEvent> {
    let stream = encounter_stream(Uuid::parse_str(encounter).unwrap());
    let recorded = s.state().store.read_stream(&stream, 0, 1000).await.unwrap();
    recorded.iter().map(|e| e.decode::<RequisitionEvent>().unwrap()).collect()
}

/// Makes `number` another encounter's, as if that encounter's digest had come out the same: a
/// RequisitionIssued on its stream with the claim, appended through the store.
async fn take_number(s: &TestServer, number: &str) -> Uuid {
    let other = Uuid::now_v7();
    let stream = encounter_stream(other);
    let event = RequisitionEvent::RequisitionIssued {
        encounter_id: other,
        requisition: number.to_string(),
        salt: String::new(),
        entity_type: EntityType::ServiceRequest,
        entity_id: Uuid::now_v7(),
        issued_at: chrono::Utc::now(),
    };
    let request = AppendRequest {
        streams: vec![StreamAppend {
            stream: stream.clone(),
            expected: ExpectedVersion::Exact(0),
            events: vec![NewEvent {
                event_id: Uuid::now_v7(),
                event_type: event.event_type().into(),
                data: event.to_data(),
                metadata: EventMetadata {
                    correlation_id: Uuid::now_v7(),
                    causation_id: None,
                    actor: Default::default(),
                    command: "IssueRequisition".into(),
                    origin: None,
                },
            }],
        }],
        claims: vec![KeyClaim { scope: "requisition".into(), keys: vec![number.to_string()], owner: stream }],
        idempotency: None,
    };
    s.state().store.append(&request).await.unwrap();
    other
}

fn unsalted(encounter: &str) -> String {
    RequisitionKey::default().number(encounter, "").text()
}

both_backends!(the_issues_example_numbers, examples_on);
async fn examples_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = s.token(REQUISITIONS);
    let entity = Uuid::now_v7();
    let a = issue(&s, EXAMPLE, entity).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(a.body["meta"]["code"], 201);
    assert_eq!(
        a.data(),
        &json!({ "requisition": "01CX-IHHT-TX63-02PI", "encounter_id": EXAMPLE,
                 "entity_type": "service_request", "entity_id": entity })
    );
    let b = issue(&s, NIL, Uuid::now_v7()).await;
    assert_eq!((b.status, b.data()["requisition"].as_str()), (StatusCode::CREATED, Some("0288-PE58-5XB5-2C1P")));

    // the lookup, read after the write; lower case is the same number
    let l = s.get(&format!("/api/v1/requisitions/01CX-IHHT-TX63-02PI?after_position={}", b.position()), &t).await;
    assert_eq!(l.status, StatusCode::OK, "{}", l.text);
    assert_eq!(l.data()["requisition"], "01CX-IHHT-TX63-02PI");
    assert_eq!(l.data()["encounter_id"], EXAMPLE);
    assert!(l.data()["issued_at"].as_str().unwrap().ends_with('Z'));
    let entities = l.data()["entities"].as_array().unwrap();
    assert_eq!(entities.len(), 1);
    assert_eq!(entities[0]["entity_type"], "service_request");
    assert_eq!(entities[0]["entity_id"], entity.to_string());
    let lower = s.get("/api/v1/requisitions/0288-pe58-5xb5-2c1p", &t).await;
    assert_eq!((lower.status, lower.data()["encounter_id"].as_str()), (StatusCode::OK, Some(NIL)));

    // an encounter id in upper case is the same encounter, hashed in its canonical form
    let upper = issue(&s, &EXAMPLE.to_uppercase(), Uuid::now_v7()).await;
    assert_eq!((upper.status, upper.data()["requisition"].as_str()), (StatusCode::OK, Some("01CX-IHHT-TX63-02PI")));
    assert_eq!(upper.data()["encounter_id"], EXAMPLE);
}

both_backends!(another_key_gives_other_numbers, another_key_on);
async fn another_key_on(kind: Kind) {
    let s = TestServer::start_with(kind, |c| c.requisition_key = RequisitionKey::new("not-random").unwrap()).await;
    let a = issue(&s, EXAMPLE, Uuid::now_v7()).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let want = RequisitionKey::new("not-random").unwrap().number(EXAMPLE, "").text();
    assert_eq!(a.data()["requisition"], want.as_str());
    assert_ne!(want, "01CX-IHHT-TX63-02PI");
}

both_backends!(one_number_per_encounter, one_number_on);
async fn one_number_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = s.token(REQUISITIONS);
    let encounter = Uuid::now_v7().to_string();
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    let a = issue(&s, &encounter, first).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let number = a.data()["requisition"].as_str().unwrap().to_string();
    assert_eq!(number, unsalted(&encounter));

    // a second service request of the encounter shares the number
    let b = issue(&s, &encounter, second).await;
    assert_eq!((b.status, b.data()["requisition"].as_str()), (StatusCode::OK, Some(number.as_str())));
    assert_eq!(b.data()["entity_id"], second.to_string());
    assert!(b.position() > a.position());

    // the same one again changes nothing, and points at the encounter's last event (read-your-writes)
    let count = s.state().store.count().await.unwrap();
    let again = issue(&s, &encounter, first).await;
    assert_eq!((again.status, again.data()["requisition"].as_str()), (StatusCode::OK, Some(number.as_str())));
    assert_eq!(again.position(), b.position());
    assert_eq!(s.state().store.count().await.unwrap(), count, "nothing was appended");
    let events = events_of(&s, &encounter).await;
    assert!(matches!(
        &events[..],
        [RequisitionEvent::RequisitionIssued { .. }, RequisitionEvent::RequisitionEntityAdded { entity_id, .. }]
            if *entity_id == second
    ));

    let l = s.get(&format!("/api/v1/requisitions/{number}?after_position={}", b.position()), &t).await;
    let ids: Vec<&str> =
        l.data()["entities"].as_array().unwrap().iter().map(|e| e["entity_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![first.to_string(), second.to_string()]);

    // an Idempotency-Key repeats the first answer and appends nothing
    let send = |key: &'static str, entity: Uuid| {
        let (s, t, encounter) = (&s, t.clone(), encounter.clone());
        async move {
            let r = s
                .client
                .post(format!("{}/api/v1/requisitions", s.base))
                .bearer_auth(t)
                .header("Idempotency-Key", key)
                .json(&body(&encounter, entity))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let third = Uuid::now_v7();
    let (s1, b1) = send("req-1", third).await;
    let count = s.state().store.count().await.unwrap();
    let (s2, b2) = send("req-1", third).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(b1["data"], b2["data"]);
    assert_eq!(s.state().store.count().await.unwrap(), count);
    let (s3, _) = send("req-1", Uuid::now_v7()).await;
    assert_eq!(s3, StatusCode::UNPROCESSABLE_ENTITY);
}

both_backends!(authentication_and_permissions, authentication_on);
async fn authentication_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let post = body(EXAMPLE, Uuid::now_v7()).to_string();
    let none = s.request(reqwest::Method::POST, "/api/v1/requisitions", None, Some(&post)).await;
    assert_eq!((none.status, none.error_type()), (StatusCode::UNAUTHORIZED, "access_denied"));
    let forged = careledger_gateway::auth::Keys::new("another-secret").mint("u", REQUISITIONS, None, 60).unwrap();
    let bad = s.request(reqwest::Method::POST, "/api/v1/requisitions", Some(&forged), Some(&post)).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let none = s.request(reqwest::Method::GET, "/api/v1/requisitions/01CX-IHHT-TX63-02PI", None, None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let bad = s.request(reqwest::Method::GET, "/api/v1/requisitions/01CX-IHHT-TX63-02PI", Some("x.y.z"), None).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);

    let reader = s.token("service_request:read 111101");
    let denied = s.request(reqwest::Method::POST, "/api/v1/requisitions", Some(&reader), Some(&post)).await;
    assert_eq!((denied.status, denied.error_type()), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!(
        denied.body["error"]["message"],
        "Your scope does not allow to access this resource. Missing allowances: service_request:write"
    );
    let writer = s.token("service_request:write");
    let denied = s.get("/api/v1/requisitions/01CX-IHHT-TX63-02PI", &writer).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(
        denied.body["error"]["message"],
        "Your scope does not allow to access this resource. Missing allowances: service_request:read"
    );
    assert_eq!(s.state().store.count().await.unwrap(), 0, "nothing was appended");
}

both_backends!(bad_input_is_refused_and_loses_nothing, bad_input_on);
async fn bad_input_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = s.token(REQUISITIONS);
    let post = |body: &'static str| {
        let (s, t) = (&s, t.clone());
        async move { s.request(reqwest::Method::POST, "/api/v1/requisitions", Some(&t), Some(body)).await }
    };
    let a = post("{\"encounter_id\": ").await;
    assert_eq!((a.status, a.error_type()), (StatusCode::BAD_REQUEST, "request_malformed"));
    let a = post("[]").await;
    assert_eq!((a.status, a.invalid_entries()), (StatusCode::UNPROCESSABLE_ENTITY, vec!["$".to_string()]));
    let a = post("{}").await;
    assert_eq!(a.invalid_entries(), vec!["$.encounter_id", "$.entity_type", "$.entity_id"]);
    assert_eq!(a.body["error"]["invalid"][0]["rules"][0]["rule"], "required");
    let a = post(
        "{\"encounter_id\": \"7a1419b0\", \"entity_type\": \"episode\", \"entity_id\": 5, \"requisition\": \"x\"}",
    )
    .await;
    assert_eq!((a.status, a.error_type()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    assert_eq!(a.invalid_entries(), vec!["$.requisition", "$.encounter_id", "$.entity_type", "$.entity_id"]);
    assert_eq!(a.body["error"]["invalid"][0]["entry_type"], "json_data_property");
    assert_eq!(a.body["error"]["invalid"][2]["rules"][0]["description"], "expected one of: service_request");
    let a = post(
        "{\"encounter_id\": \"7a1419b0-c53d-4df2-9c22-07de28d96ac0\", \"entity_type\": \"SERVICE_REQUEST\", \"entity_id\": \"7a1419b0-c53d-4df2-9c22-07de28d96ac0\"}",
    )
    .await;
    assert_eq!(a.invalid_entries(), vec!["$.entity_type"]);

    // lookups: malformed numbers are 422 naming the path parameter, unknown ones 404
    for malformed in
        ["ABC", "01CX-IHHT-TX63-02PD", "01CXIHHTTX6302PI", "1000-0000-0000-0000", "01CX-IHHT-TX63-02P%C3%A9"]
    {
        let a = s.get(&format!("/api/v1/requisitions/{malformed}"), &t).await;
        assert_eq!(
            (a.status, a.invalid_entries()),
            (StatusCode::UNPROCESSABLE_ENTITY, vec!["requisition".to_string()]),
            "{malformed}: {}",
            a.text
        );
        assert_eq!(a.body["error"]["invalid"][0]["entry_type"], "path_parameter");
    }
    let a = s.get("/api/v1/requisitions/01CX-IHHT-TX63-02PI", &t).await;
    assert_eq!((a.status, a.error_type()), (StatusCode::NOT_FOUND, "not_found"));
    let a = s.get("/api/v1/requisitions/01CX-IHHT-TX63-02PI?after_position=x", &t).await;
    assert_eq!(a.invalid_entries(), vec!["after_position"]);
    let a = s.request(reqwest::Method::DELETE, "/api/v1/requisitions/01CX-IHHT-TX63-02PI", Some(&t), None).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(s.state().store.count().await.unwrap(), 0, "nothing was appended");
    // and the service keeps serving
    assert_eq!(issue(&s, EXAMPLE, Uuid::now_v7()).await.status, StatusCode::CREATED);
}

both_backends!(a_taken_number_is_replaced_by_a_salted_one, taken_number_on);
async fn taken_number_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = s.token(REQUISITIONS);
    let b = Uuid::now_v7().to_string();
    let plain = unsalted(&b);
    let holder = take_number(&s, &plain).await;

    let a = issue(&s, &b, Uuid::now_v7()).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let salted = a.data()["requisition"].as_str().unwrap().to_string();
    assert_ne!(salted, plain);
    assert!(RequisitionNumber::parse(&salted).is_ok());
    let [RequisitionEvent::RequisitionIssued { salt, requisition, .. }] = &events_of(&s, &b).await[..] else {
        panic!("one RequisitionIssued expected");
    };
    assert!(!salt.is_empty());
    assert_eq!(requisition, &salted);
    assert_eq!(RequisitionKey::default().number(&b, salt).text(), salted, "the stored salt makes the number");

    // the encounter keeps its salted number
    let again = issue(&s, &b, Uuid::now_v7()).await;
    assert_eq!((again.status, again.data()["requisition"].as_str()), (StatusCode::OK, Some(salted.as_str())));
    let p = again.position();
    let mine = s.get(&format!("/api/v1/requisitions/{salted}?after_position={p}"), &t).await;
    assert_eq!(mine.data()["encounter_id"], b.as_str());
    assert_eq!(mine.data()["entities"].as_array().unwrap().len(), 2);
    let theirs = s.get(&format!("/api/v1/requisitions/{plain}"), &t).await;
    assert_eq!(theirs.data()["encounter_id"], holder.to_string());
}

both_backends!(numbers_are_unique_under_concurrent_requests, concurrency_on);
async fn concurrency_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = s.token(REQUISITIONS);
    let encounters: Vec<String> = (0..32).map(|_| Uuid::now_v7().to_string()).collect();
    // a quarter of them find their unsalted number taken: they are decided again concurrently
    for e in encounters.iter().step_by(4) {
        take_number(&s, &unsalted(e)).await;
    }
    let shared = Uuid::now_v7().to_string();
    let requests: Vec<(String, Uuid)> = encounters
        .iter()
        .map(|e| (e.clone(), Uuid::now_v7()))
        .chain((0..16).map(|_| (shared.clone(), Uuid::now_v7())))
        .collect();
    let mut tasks = Vec::new();
    for (encounter, entity) in requests {
        let (client, url, t) = (s.client.clone(), format!("{}/api/v1/requisitions", s.base), t.clone());
        tasks.push(tokio::spawn(async move {
            let r = client.post(url).bearer_auth(t).json(&body(&encounter, entity)).send().await.unwrap();
            let status = r.status();
            let position: i64 = r.headers()["careledger-position"].to_str().unwrap().parse().unwrap();
            let body: Value = r.json().await.unwrap();
            assert!(status.is_success(), "{status}: {body}");
            (encounter, status, body["data"]["requisition"].as_str().unwrap().to_string(), position)
        }));
    }
    let mut numbers: HashMap<String, HashSet<String>> = HashMap::new();
    let mut created_for_shared = 0;
    let mut last = 0;
    for task in tasks {
        let (encounter, status, number, position) = task.await.unwrap();
        if encounter == shared && status == StatusCode::CREATED {
            created_for_shared += 1;
        }
        numbers.entry(encounter).or_default().insert(number);
        last = last.max(position);
    }
    assert_eq!(numbers.len(), 33);
    assert!(numbers.values().all(|n| n.len() == 1), "an encounter got two numbers: {numbers:?}");
    let distinct: HashSet<&String> = numbers.values().flatten().collect();
    assert_eq!(distinct.len(), 33, "two encounters share a number");
    for (i, e) in encounters.iter().enumerate() {
        let number = numbers[e].iter().next().unwrap();
        assert_eq!(*number == unsalted(e), i % 4 != 0, "{e}: {number}");
    }
    assert_eq!(created_for_shared, 1, "one request issued the shared encounter's number");
    let events = events_of(&s, &shared).await;
    assert_eq!(events.len(), 16);
    let issued = events.iter().filter(|e| matches!(e, RequisitionEvent::RequisitionIssued { .. })).count();
    assert_eq!(issued, 1, "exactly one RequisitionIssued for the shared encounter");

    let shared_number = numbers[&shared].iter().next().unwrap();
    let l = s.get(&format!("/api/v1/requisitions/{shared_number}?after_position={last}"), &t).await;
    assert_eq!(l.data()["entities"].as_array().unwrap().len(), 16);
    let mut conn = s.state().store.db().acquire().await.unwrap();
    let keys = careledger_store::sql_fetch_one!(
        conn.exec(),
        "SELECT COUNT(*) FROM unique_keys WHERE scope = 'requisition'",
        [],
        |row| row.try_get::<i64, _>(0)
    )
    .unwrap();
    assert_eq!(keys, 33 + 8);
}

both_backends!(rebuild_gives_identical_tables, rebuild_on);
async fn rebuild_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let mut last = 0;
    for encounter in [EXAMPLE, NIL] {
        for _ in 0..3 {
            last = issue(&s, encounter, Uuid::now_v7()).await.position();
        }
    }
    let salted = Uuid::now_v7().to_string();
    take_number(&s, &unsalted(&salted)).await;
    last = last.max(issue(&s, &salted, Uuid::now_v7()).await.position());
    assert!(s.state().projections.wait_for(last, Duration::from_secs(10)).await);
    let db = s.state().store.db().clone();
    let before = dump_tables(&db, &TABLES).await.unwrap();
    assert!(before.contains("## requisitions (4 rows)"), "{before}");
    assert!(before.contains("## requisition_entities (8 rows)"), "{before}");
    let projections = Projections::new(s.state().store.clone(), careledger_projections::all());
    assert!(projections.rebuild("requisitions", &|_, _| {}).await.unwrap() > 0);
    let after = dump_tables(&db, &TABLES).await.unwrap();
    assert_eq!(before, after, "a rebuild must give identical tables");
}

#[tokio::test]
async fn openapi_describes_both_endpoints() {
    let s = TestServer::start(Kind::Sqlite).await;
    let spec = s.request(reqwest::Method::GET, "/api/v1/openapi.json", None, None).await;
    assert!(spec.body["paths"]["/api/v1/requisitions"]["post"].is_object(), "POST /api/v1/requisitions");
    assert!(spec.body["paths"]["/api/v1/requisitions/{requisition}"]["get"].is_object());
}

/// Three gateways on one PostgreSQL (their in-process locks do not see each other): concurrent
/// requests for one encounter still agree on one number through the stream's expected version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_gateways_agree_on_one_number_per_encounter() {
    let s = TestServer::start(Kind::Postgres).await;
    let mut others = Vec::new();
    for _ in 0..2 {
        others.push(TestServer::serve(&s.db.url, |_| {}).await);
    }
    let bases: Vec<String> =
        std::iter::once(s.base.clone()).chain(others.iter().map(|o| format!("http://{}", o.addr))).collect();
    let t = s.token(REQUISITIONS);
    let shared = Uuid::now_v7().to_string();
    let mut tasks = Vec::new();
    for (i, base) in bases.iter().cycle().take(36).enumerate() {
        // every other request is for the shared encounter, the rest for encounters of their own
        let encounter = if i % 2 == 0 { shared.clone() } else { Uuid::now_v7().to_string() };
        let (client, url, t) = (s.client.clone(), format!("{base}/api/v1/requisitions"), t.clone());
        tasks.push(tokio::spawn(async move {
            let r = client.post(url).bearer_auth(t).json(&body(&encounter, Uuid::now_v7())).send().await.unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            assert!(status.is_success(), "{status}: {body}");
            (encounter, body["data"]["requisition"].as_str().unwrap().to_string())
        }));
    }
    let mut numbers: HashMap<String, HashSet<String>> = HashMap::new();
    for task in tasks {
        let (encounter, number) = task.await.unwrap();
        numbers.entry(encounter).or_default().insert(number);
    }
    assert_eq!(numbers.len(), 19);
    assert!(numbers.values().all(|n| n.len() == 1), "an encounter got two numbers: {numbers:?}");
    assert_eq!(numbers.values().flatten().collect::<HashSet<_>>().len(), 19);
    let events = events_of(&s, &shared).await;
    assert_eq!(events.len(), 18);
    assert_eq!(events.iter().filter(|e| matches!(e, RequisitionEvent::RequisitionIssued { .. })).count(), 1);
    for o in others {
        o.stop().await;
    }
}

/// The real binary refuses to start with a key BLAKE2b cannot take, saying which setting is wrong.
#[test]
fn serve_refuses_a_requisition_key_over_64_bytes() {
    // target/<profile>/deps/<this test> -> target/<profile>/careledger
    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().and_then(|p| p.parent()).unwrap().join("careledger");
    let dir = std::env::temp_dir().join(format!("careledger-key-{}", Uuid::now_v7().simple()));
    let out = std::process::Command::new(binary)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("CARELEDGER_DATA_DIR", &dir)
        .env("CARELEDGER_REQUISITION_KEY", "k".repeat(65))
        .env_remove("DATABASE_URL")
        .output()
        .expect("run careledger (build it with `cargo build -p careledger-gateway`)");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("CARELEDGER_REQUISITION_KEY") && err.contains("at most 64 bytes"), "{err}");
}
