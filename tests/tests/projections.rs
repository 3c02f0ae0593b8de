//! Read models are disposable and exact: a rebuild from the log gives identical tables, a
//! restart resumes from the checkpoint, and the CLI drives both on the real binary.

use std::process::Command;
use std::time::Duration;

use careledger_projections::{Projections, dump_tables};
use careledger_tests::{ALL, Kind, TestServer, both_backends};
use reqwest::StatusCode;
use serde_json::json;

const TABLES: [&str; 3] = ["code_batches", "codes", "code_history"];

/// Some of every kind of event: generations, reservations, assignments, CN links.
async fn activity(s: &TestServer) -> i64 {
    let t = s.token(ALL);
    let mut last = 0;
    for (holder, n) in [("A", 40), ("B", 25), ("A", 15)] {
        let a =
            s.post("/api/v1/code-batches", &t, json!({ "holder_type": 2, "holder_code": holder, "number": n })).await;
        assert_eq!(a.status, StatusCode::CREATED);
        last = a.position();
    }
    s.state().projections.wait_for(last, Duration::from_secs(10)).await;
    let r =
        s.post("/api/v1/codes/reservations", &t, json!({ "holder_type": 2, "holder_code": "A", "number": 45 })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let codes: Vec<String> = r.data()["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().into()).collect();
    for (i, code) in codes.iter().take(10).enumerate() {
        let a =
            s.post(&format!("/api/v1/codes/{code}/assignment"), &t, json!({ "insuree_id": format!("ins-{i}") })).await;
        assert_eq!(a.status, StatusCode::OK);
        let c = s
            .post(&format!("/api/v1/codes/{code}/control-number"), &t, json!({ "control_number": format!("CN-{i}") }))
            .await;
        last = c.position();
    }
    assert!(s.state().projections.wait_for(last, Duration::from_secs(10)).await);
    last
}

both_backends!(rebuild_gives_identical_tables, rebuild_on);
async fn rebuild_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    activity(&s).await;
    let db = s.state().store.db().clone();
    let before = dump_tables(&db, &TABLES).await.unwrap();
    assert!(before.contains("## codes (80 rows)"), "{}", &before[..200.min(before.len())]);
    assert!(before.contains("## code_history (65 rows)"));
    let projections = Projections::new(s.state().store.clone(), careledger_projections::all());
    let position = projections.rebuild("codes", &|_, _| {}).await.unwrap();
    assert!(position > 0);
    let after = dump_tables(&db, &TABLES).await.unwrap();
    assert_eq!(before, after, "a rebuild must give identical tables");
}

// The audit read model too: every context's events, rebuilt to identical rows.
both_backends!(audit_rebuild_gives_identical_tables, audit_rebuild_on);
async fn audit_rebuild_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let scenario = careledger_tests::scenario::every_event_type(&s).await;
    assert!(s.state().projections.wait_for(scenario.last, Duration::from_secs(10)).await);
    let db = s.state().store.db().clone();
    let before = dump_tables(&db, &["audit_events"]).await.unwrap();
    let events = s.state().store.count().await.unwrap();
    assert!(before.starts_with(&format!("## audit_events ({events} rows)")), "{}", &before[..200.min(before.len())]);
    let projections = Projections::new(s.state().store.clone(), careledger_projections::all());
    projections.rebuild("audit", &|_, _| {}).await.unwrap();
    let after = dump_tables(&db, &["audit_events"]).await.unwrap();
    assert_eq!(before, after, "a rebuild must give identical tables");
}

both_backends!(a_restart_resumes_from_the_checkpoint, restart_on);
async fn restart_on(kind: Kind) {
    let mut s = TestServer::start(kind).await;
    let last = activity(&s).await;
    let before = dump_tables(s.state().store.db(), &TABLES).await.unwrap();
    s.stop().await;
    let server = TestServer::serve(&s.db.url, |_| {}).await;
    let checkpoint = server.state.projections.checkpoint("codes").await.unwrap();
    assert!(checkpoint >= last, "checkpoint {checkpoint} was lost (last {last})");
    let after = dump_tables(server.state.store.db(), &TABLES).await.unwrap();
    assert_eq!(before, after, "no event applied twice or skipped across a restart");
    server.stop().await;
}

/// Several gateways on one PostgreSQL, generating concurrently in a small code space (6 digits:
/// 90,000 codes) so that random draws collide: every code must still be issued once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_gateways_never_issue_a_code_twice() {
    let s = TestServer::start_with(Kind::Postgres, |c| c.code_format.length = 6).await;
    let mut others = Vec::new();
    for _ in 0..2 {
        others.push(TestServer::serve(&s.db.url, |c| c.code_format.length = 6).await);
    }
    let bases: Vec<String> =
        std::iter::once(s.base.clone()).chain(others.iter().map(|o| format!("http://{}", o.addr))).collect();
    let t = s.token(ALL);
    let mut tasks = Vec::new();
    for (i, base) in bases.iter().cycle().take(12).enumerate() {
        let (client, base, t) = (s.client.clone(), base.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            // a 409 says "kept conflicting with concurrent writers; retry": a client retries
            // (what is under test is that no code is issued twice, not that nobody waits)
            let mut r;
            let mut tries = 0;
            loop {
                tries += 1;
                r = client
                    .post(format!("{base}/api/v1/code-batches"))
                    .bearer_auth(&t)
                    .json(&json!({ "holder_type": 1, "holder_code": format!("P{}", i % 3), "number": 3000 }))
                    .send()
                    .await
                    .unwrap();
                if r.status() != StatusCode::CONFLICT || tries == 3 {
                    break;
                }
            }
            let status = r.status();
            let position = r.headers().get("careledger-position").map(|v| v.to_str().unwrap().to_string());
            assert_eq!(status, StatusCode::CREATED, "{}", r.text().await.unwrap());
            position.unwrap().parse::<i64>().unwrap()
        }));
    }
    let mut last = 0;
    for task in tasks {
        last = last.max(task.await.unwrap());
    }
    assert!(s.state().projections.wait_for(last, Duration::from_secs(30)).await);
    let mut conn = s.state().store.db().acquire().await.unwrap();
    let (codes, distinct): (i64, i64) = careledger_store::sql_fetch_one!(
        conn.exec(),
        "SELECT COUNT(*), COUNT(DISTINCT code) FROM codes",
        [],
        |row| Ok((row.try_get(0)?, row.try_get(1)?))
    )
    .unwrap();
    assert_eq!((codes, distinct), (36_000, 36_000));
    let keys = careledger_store::sql_fetch_one!(
        conn.exec(),
        "SELECT COUNT(*) FROM unique_keys WHERE scope = 'chfid'",
        [],
        |row| row.try_get::<i64, _>(0)
    )
    .unwrap();
    assert_eq!(keys, 36_000);
    for o in others {
        o.stop().await;
    }
}

fn binary() -> std::path::PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/careledger
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|p| p.parent()).unwrap().join("careledger")
}

fn careledger(data_dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary())
        .args(args)
        .env("CARELEDGER_DATA_DIR", data_dir)
        .env_remove("DATABASE_URL")
        .env_remove("CARELEDGER_JWT_SECRET")
        .output()
        .expect("run careledger (build it with `cargo build -p careledger-gateway`)");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// The real binary: serve on the embedded default, mint a token, generate, stop (SIGTERM, graceful),
/// then `projections status` and `projections rebuild` on the same data directory.
#[tokio::test]
async fn the_cli_serves_mints_tokens_and_rebuilds() {
    let dir = std::env::temp_dir().join(format!("careledger-cli-{}", uuid::Uuid::now_v7().simple()));
    let (ok, out, err) = careledger(&dir, &["migrate"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("migrated sqlite://"), "{out}");
    let (ok, token, err) = careledger(&dir, &["token", "--sub", "cli-user", "--scope", ALL, "--ttl", "600"]);
    assert!(ok, "{err}");
    let token = token.trim().to_string();
    assert!(dir.join("jwt-secret").exists(), "the secret is kept in the data directory");

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(binary())
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .env("CARELEDGER_DATA_DIR", &dir)
        .env_remove("DATABASE_URL")
        .env_remove("CARELEDGER_JWT_SECRET")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    careledger_gateway::http_client::install_crypto_provider();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..100 {
        if client.get(format!("{base}/health")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "careledger serve did not come up");
    let r = client
        .post(format!("{base}/api/v1/code-batches"))
        .bearer_auth(&token)
        .json(&json!({ "holder_type": 1, "holder_code": "CLI", "number": 20 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let position: i64 = r.headers()["careledger-position"].to_str().unwrap().parse().unwrap();
    let r = client
        .get(format!("{base}/api/v1/code-batches?holder_type=1&holder_code=CLI&after_position={position}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["data"][0]["available"], 20);
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");

    let (ok, out, err) = careledger(&dir, &["projections", "status"]);
    assert!(ok, "{err}");
    assert!(out.contains("codes") && out.contains("caught up"), "{out}");
    let (ok, out, err) = careledger(&dir, &["projections", "rebuild"]);
    assert!(ok, "{err}");
    assert!(out.contains("codes: rebuilt to position 2"), "{out}");
    assert!(out.contains("audit: rebuilt to position 2"), "{out}");
    let (ok, _, err) = careledger(&dir, &["projections", "rebuild", "nope"]);
    assert!(!ok && err.contains("no projector named nope"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
