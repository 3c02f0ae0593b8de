//! Issue #23, findings 9, 12 and 13, over real HTTP: a token is refused before its `nbf`; a JWT
//! secret shorter than 32 bytes (or an empty `jwt-secret` file) stops the service from starting;
//! a 500 names no internals, only the request id to quote; a PostgreSQL database that cannot be
//! reached is a 503 with `Retry-After` (and `/ready` says so) until it is back, then the service
//! answers again by itself.

use std::time::Duration;

use careledger_gateway::auth::{Claims, Keys};
use careledger_gateway::config::StorageArgs;
use careledger_tests::{ALL, Answer, Kind, SECRET, TestServer, both_backends, pg_admin_url};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::Connection;

fn now() -> u64 {
    chrono::Utc::now().timestamp() as u64
}

fn signed(nbf: Option<u64>) -> String {
    let claims = Claims {
        sub: "user-1".into(),
        client_id: Some("le-1".into()),
        scope: ALL.into(),
        health_facility: None,
        exp: now() + 7200,
        nbf,
    };
    Keys::new(SECRET).sign(&claims).expect("token")
}

/// A token whose `nbf` is an hour away is refused (401) until then; one already valid works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_not_valid_yet_is_refused() {
    let s = TestServer::start(Kind::Sqlite).await;
    let early = s.get("/api/v1/code-batches?holder_type=1&holder_code=NBF", &signed(Some(now() + 3600))).await;
    assert_eq!((early.status, early.error_type()), (StatusCode::UNAUTHORIZED, "access_denied"), "{}", early.text);
    assert_eq!(early.body["error"]["message"], "Invalid access token");
    let valid = s.get("/api/v1/code-batches?holder_type=1&holder_code=NBF", &signed(Some(now() - 60))).await;
    assert_eq!(valid.status, StatusCode::OK, "{}", valid.text);
}

fn storage(dir: &std::path::Path, secret: Option<&str>) -> StorageArgs {
    StorageArgs { data_dir: dir.to_path_buf(), database_url: None, jwt_secret: secret.map(String::from) }
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("careledger-secret-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The configured secret has at least 32 bytes; so has a `jwt-secret` file, which must not be
/// empty; a generated one is 32 random bytes, kept and used again.
#[test]
fn a_secret_shorter_than_32_bytes_refuses_to_start() {
    let dir = temp_dir();
    let short = "s".repeat(31);
    let refused = storage(&dir, Some(&short)).jwt_secret().expect_err("a 31-byte secret is refused");
    assert!(refused.contains("CARELEDGER_JWT_SECRET") && refused.contains("32"), "{refused}");
    assert!(!refused.contains(&short), "the message does not show the secret: {refused}");
    let enough = "s".repeat(32);
    assert_eq!(storage(&dir, Some(&enough)).jwt_secret().as_deref(), Ok(enough.as_str()));
    assert!(storage(&dir, Some("")).jwt_secret().is_err(), "an empty secret is refused");

    let file = dir.join("jwt-secret");
    std::fs::write(&file, "\n").expect("write");
    let empty = storage(&dir, None).jwt_secret().expect_err("an empty jwt-secret file is refused");
    assert!(empty.contains("empty") && empty.contains("jwt-secret"), "{empty}");
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "\n", "the file is left for the operator");
    std::fs::write(&file, "0123456789abcdef").expect("write");
    let short = storage(&dir, None).jwt_secret().expect_err("a 16-byte jwt-secret file is refused");
    assert!(short.contains("16 bytes") && !short.contains("0123456789abcdef"), "{short}");

    std::fs::remove_file(&file).expect("remove");
    let generated = storage(&dir, None).jwt_secret().expect("a secret is generated");
    assert!(generated.len() >= 64 && generated.chars().all(|c| c.is_ascii_hexdigit()), "32 random bytes in hex");
    assert_eq!(storage(&dir, None).jwt_secret().as_deref(), Ok(generated.as_str()), "kept and used again");
    let other = temp_dir();
    assert_ne!(storage(&other, None).jwt_secret().expect("another"), generated);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other);
}

/// The request id the answer carries, which its 5xx message must quote.
fn request_id(a: &Answer) -> String {
    a.headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// Runs one statement on the test's database, whichever the backend.
async fn execute(kind: Kind, url: &str, sql: &str) {
    match kind {
        Kind::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect sqlite");
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut conn).await.expect(sql);
        }
        Kind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect postgres");
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut conn).await.expect(sql);
        }
    }
}

both_backends!(a_500_names_no_internals, a_500_names_no_internals_on);
async fn a_500_names_no_internals_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = s.token(ALL);
    let list = "/api/v1/code-batches?holder_type=1&holder_code=GONE";
    assert_eq!(s.get(list, &t).await.status, StatusCode::OK);
    // the read model's table goes away under the running server: its query fails inside
    execute(kind, &s.db.url, "ALTER TABLE code_batches RENAME TO code_batches_away").await;
    let failed = s.get(list, &t).await;
    assert_eq!((failed.status, failed.error_type()), (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"));
    let id = request_id(&failed);
    assert!(!id.is_empty());
    assert_eq!(failed.body["error"]["message"], format!("Internal error; quote request id {id}"), "{}", failed.text);
    assert_eq!(failed.body["meta"]["request_id"], id.as_str());
    for internal in ["code_batches", "relation", "no such table", "database", "SELECT", "error returned"] {
        assert!(!failed.text.contains(internal), "the 500 shows {internal:?}: {}", failed.text);
    }
    assert!(failed.headers.get("retry-after").is_none(), "a 500 is not worth retrying as such");
    execute(kind, &s.db.url, "ALTER TABLE code_batches_away RENAME TO code_batches").await;
    assert_eq!(s.get(list, &t).await.status, StatusCode::OK);
}

/// Closes the test database to new sessions and ends those it has (the server's), as a crash and
/// restart of PostgreSQL would; `open` lets sessions in again.
async fn close_database(name: &str, open: bool) {
    let mut admin = sqlx::PgConnection::connect(&pg_admin_url()).await.expect("admin connection");
    let allow = if open { "true" } else { "false" };
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}")))
        .execute(&mut admin)
        .await
        .expect("alter database");
    if !open {
        // again a few times: a session that was being opened as the database closed may show late
        for _ in 0..3 {
            sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
                .bind(name)
                .execute(&mut admin)
                .await
                .expect("terminate sessions");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn assert_unreachable_answer(a: &Answer, name: &str) {
    assert_eq!((a.status, a.error_type()), (StatusCode::SERVICE_UNAVAILABLE, "internal_error"), "{}", a.text);
    assert_eq!(a.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));
    let message = a.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("the database cannot be reached"), "{message}");
    assert!(message.ends_with(&format!("quote request id {}", request_id(a))), "{message}");
    for internal in [name, "accepting connections", "terminating", "57P01", "55000", "pool", "returned from"] {
        assert!(!message.contains(internal), "the 503 shows {internal:?}: {message}");
    }
}

/// PostgreSQL out of reach: commands and queries answer 503 with `Retry-After` and no internals,
/// `/ready` says "database unreachable"; once the database takes sessions again, both answer as
/// before without a restart of the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_is_a_503_until_it_is_back() {
    let s = TestServer::start(Kind::Postgres).await;
    let name = s.db.url.rsplit('/').next().expect("database name").to_string();
    let t = s.token(ALL);
    let generate = json!({ "holder_type": 1, "holder_code": "OUT", "number": 5 });
    assert_eq!(s.post("/api/v1/code-batches", &t, generate.clone()).await.status, StatusCode::CREATED);

    close_database(&name, false).await;
    for _ in 0..3 {
        assert_unreachable_answer(&s.post("/api/v1/code-batches", &t, generate.clone()).await, &name);
        assert_unreachable_answer(&s.get("/api/v1/code-batches?holder_type=1&holder_code=OUT", &t).await, &name);
    }
    let ready = s.request(reqwest::Method::GET, "/ready", None, None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{}", ready.text);
    assert_eq!(ready.body["status"], "unavailable");
    assert_eq!(ready.body["reason"], "database unreachable");
    assert!(ready.headers.get("retry-after").is_some());
    for internal in [name.as_str(), "accepting connections", "error"] {
        assert!(!ready.text.contains(internal), "/ready shows {internal:?}: {}", ready.text);
    }

    close_database(&name, true).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let created = loop {
        let a = s.post("/api/v1/code-batches", &t, generate.clone()).await;
        if a.status == StatusCode::CREATED || std::time::Instant::now() > deadline {
            break a;
        }
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "only 503 while it comes back: {}", a.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    // the projectors failed while the database was away and retry with a backoff: wait for them
    assert!(s.state().projections.wait_for(created.position(), Duration::from_secs(30)).await, "projectors caught up");
    let listed = s.get("/api/v1/code-batches?holder_type=1&holder_code=OUT", &t).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(listed.body["paging"]["total"], 2, "the batch before and the one after; none from the outage");
    let ready = s.request(reqwest::Method::GET, "/ready", None, None).await;
    assert_eq!((ready.status, ready.body["status"].as_str()), (StatusCode::OK, Some("ready")), "{}", ready.text);
}
