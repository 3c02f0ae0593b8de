//! Bad input harms nothing but its own request (issue #23): text PostgreSQL cannot store is a 422
//! at the edge, one refused append never fails the others of its group commit, a position no
//! append has reached is a 422 at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use careledger_store::{AppendRequest, ExpectedVersion, NewEvent};
use careledger_tests::{ALL, Kind, TestDb, TestServer, both_backends};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

fn event(data: Value) -> NewEvent {
    careledger_tests::raw_event("TestHappened", data, "Test")
}

both_backends!(nul_text_is_refused_at_the_edge_with_its_path, nul_on);
async fn nul_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = s.token(ALL);
    let a = s.post("/api/v1/code-batches", &t, json!({ "holder_type": 1, "holder_code": "P\u{0}", "number": 3 })).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(a.invalid_entries(), vec!["$.holder_code"]);
    // nested, and in a key
    let a = s
        .post(
            "/api/v1/code-batches",
            &t,
            json!({ "holder_type": 1, "holder_code": "P", "number": 3,
                                                   "extra": [{ "a\u{0}": 1 }, "x\u{0}"] }),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    let mut entries = a.invalid_entries();
    entries.sort();
    assert_eq!(entries, vec!["$.extra[0].a\u{0}", "$.extra[1]"]);
    // in the query and the path
    let a = s.get("/api/v1/code-batches?holder_code=P%00", &t).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(a.body["error"]["invalid"][0]["entry_type"], "query_parameter");
    assert_eq!(a.invalid_entries(), vec!["holder_code"]);
    let a = s.get("/api/v1/requisitions/AB%00C", &t).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(s.state().store.count().await.unwrap(), 0, "nothing appended");
    // and the service goes on
    let a = s.post("/api/v1/code-batches", &t, json!({ "holder_type": 1, "holder_code": "P", "number": 3 })).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
}

both_backends!(one_refused_append_fails_alone_in_its_group_commit, alone_on);
/// The store, below the edge: appends PostgreSQL cannot store (a NUL in JSONB) sent among many
/// good ones. Before, the group commit's batch failed whole and innocent appends got errors.
async fn alone_on(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = Arc::new(db.store().await);
    let mut tasks = Vec::new();
    for i in 0..300 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let poisoned = i % 15 == 0;
            let data = if poisoned { json!({ "text": "P\u{0}" }) } else { json!({ "n": i }) };
            let request = AppendRequest::single(format!("t-{i}"), ExpectedVersion::Exact(0), vec![event(data)]);
            (poisoned, store.append(&request).await)
        }));
    }
    let mut good = 0;
    for task in tasks {
        let (poisoned, result) = task.await.unwrap();
        if !poisoned {
            assert!(result.is_ok(), "an innocent append failed: {result:?}");
            good += 1;
        } else if kind == Kind::Postgres {
            assert!(result.is_err(), "PostgreSQL cannot store a NUL in JSONB");
        }
    }
    assert_eq!(good, 280);
}

both_backends!(a_position_no_append_reached_is_refused_at_once, beyond_on);
async fn beyond_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = s.token(ALL);
    let made = s.post("/api/v1/code-batches", &t, json!({ "holder_type": 1, "holder_code": "P", "number": 3 })).await;
    assert_eq!(made.status, StatusCode::CREATED);
    let started = Instant::now();
    let a = s.get(&format!("/api/v1/code-batches?holder_type=1&holder_code=P&after_position={}", i64::MAX), &t).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(a.invalid_entries(), vec!["after_position"]);
    assert!(started.elapsed() < Duration::from_secs(2), "answered at once, not after the wait");
    // a position that exists is waited for and answered
    let a = s
        .get(&format!("/api/v1/code-batches?holder_type=1&holder_code=P&after_position={}", made.position()), &t)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
}

both_backends!(a_stuck_projector_shows_where_and_why, stuck_on);
/// An event the claims projector cannot read (written below the edge, as an older release or a
/// bug could): `/ready` says `degraded` and names it with its position and error, the CLI of
/// another process shows it, a metric counts the failures; the other read models go on.
async fn stuck_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = s.token(ALL);
    let poison = NewEvent { event_type: "ClaimCreated".into(), ..event(json!({ "not": "a claim" })) };
    let claim = format!("claims-claim-{}", Uuid::now_v7());
    let written =
        s.state().store.append(&AppendRequest::single(claim, ExpectedVersion::Exact(0), vec![poison])).await.unwrap();
    let made = s.post("/api/v1/code-batches", &t, json!({ "holder_type": 1, "holder_code": "P", "number": 3 })).await;
    assert_eq!(made.status, StatusCode::CREATED);

    let deadline = Instant::now() + Duration::from_secs(20);
    let ready = loop {
        let r = s.get("/ready", &t).await;
        if r.body["status"] == "degraded"
            && r.body["projections"].as_array().unwrap().iter().any(|p| p["failures"].as_i64() > Some(1))
        {
            break r;
        }
        assert!(Instant::now() < deadline, "never degraded: {}", r.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["stuck_projections"], json!(["claims"]), "{}", ready.text);
    let claims = ready.body["projections"].as_array().unwrap().iter().find(|p| p["name"] == "claims").unwrap().clone();
    assert!(claims["position"].as_i64().unwrap() < written.last_position(), "{claims}");
    assert!(claims["error"].as_str().unwrap().contains("ClaimCreated"), "{claims}");
    // the others applied what came after it
    for other in ["codes", "requisitions", "registry", "audit"] {
        assert!(s.state().projections.wait_for_one(other, made.position(), Duration::from_secs(5)).await, "{other}");
    }
    let metrics = s.get("/metrics", &t).await;
    assert!(metrics.text.contains("careledger_projector_failures_total{projector=\"claims\"}"), "{}", metrics.text);

    let out = std::process::Command::new(careledger_tests::careledger_binary())
        .args(["projections", "status"])
        .env("DATABASE_URL", &s.db.url)
        .output()
        .expect("run careledger");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = printed.lines().find(|l| l.starts_with("claims")).unwrap_or_default();
    assert!(line.contains("STUCK") && line.contains("ClaimCreated"), "{printed}");
}
