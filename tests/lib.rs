//! Support for the end-to-end tests: a fresh database per test on either backend.
//!
//! PostgreSQL tests need a server; `CARELEDGER_TEST_PG` names an admin URL (default
//! `postgres://postgres@127.0.0.1:5432/test`). Each test gets its own database, dropped after.

use std::path::PathBuf;

use careledger_store::{EventStore, StoreOptions};
use sqlx::Connection;
use uuid::Uuid;

pub fn pg_admin_url() -> String {
    std::env::var("CARELEDGER_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Which backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A database that exists for one test.
pub struct TestDb {
    pub url: String,
    pub dir: PathBuf,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new(kind: Kind) -> TestDb {
        let dir = std::env::temp_dir().join(format!("careledger-test-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        match kind {
            Kind::Sqlite => {
                let url = format!("sqlite://{}", dir.join("careledger.db").display());
                TestDb { url, dir, pg_name: None }
            }
            Kind::Postgres => {
                let name = format!("careledger_test_{}", Uuid::now_v7().simple());
                let admin = pg_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is needed for this test: {e}"));
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin);
                TestDb { url: format!("{base}/{name}"), dir, pg_name: Some(name) }
            }
        }
    }

    /// An opened and migrated store on this database.
    pub async fn store(&self) -> EventStore {
        let mut options = StoreOptions::new(&self.url);
        options.max_connections = 24;
        let store = EventStore::open(&options).await.expect("open store");
        store.migrate().await.expect("migrate");
        store
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(name) = self.pg_name.take() {
            // Drop runs outside async context: a short-lived runtime on its own thread.
            let admin = pg_admin_url();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                rt.block_on(async {
                    let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .execute(&mut conn)
                        .await
                        .ok()
                })
            })
            .join();
        }
    }
}

/// Runs an async test body once per backend, sqlite first.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$body($crate::Kind::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$body($crate::Kind::Postgres).await
            }
        }
    };
}

/// The store's head once it has reached `position` (or what it is after 10 s).
pub async fn eventually_head(store: &EventStore, position: i64) -> i64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let head = store.head().await.expect("head");
        if head >= position || std::time::Instant::now() > deadline {
            return head;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

use careledger_gateway::{Config, RunningServer};
use reqwest::StatusCode;
use serde_json::Value;

pub const SECRET: &str = "test-secret-of-the-careledger-suite";
/// Every permission the code pool and the audit trail use.
pub const ALL: &str = "111101 111102 101102 audit:read";

/// A running server on a fresh database, and an HTTP client for it.
pub struct TestServer {
    pub server: Option<RunningServer>,
    pub base: String,
    pub client: reqwest::Client,
    pub db: TestDb,
}

/// An answer: status, headers, JSON body (Null when not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn position(&self) -> i64 {
        self.headers
            .get("careledger-position")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no careledger-position header on {} {}", self.status, self.text))
    }

    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    pub fn error_type(&self) -> &str {
        self.body["error"]["type"].as_str().unwrap_or("")
    }

    /// The `entry` of every invalid item of a 422.
    pub fn invalid_entries(&self) -> Vec<String> {
        self.body["error"]["invalid"]
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["entry"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    }
}

impl TestServer {
    pub async fn start(kind: Kind) -> TestServer {
        Self::start_with(kind, |_| {}).await
    }

    pub async fn start_with(kind: Kind, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let db = TestDb::new(kind).await;
        let server = Self::serve(&db.url, adjust).await;
        let base = format!("http://{}", server.addr);
        TestServer { server: Some(server), base, client: reqwest::Client::new(), db }
    }

    /// Another server process-alike on the same database (shared PostgreSQL, restarts).
    pub async fn serve(url: &str, adjust: impl FnOnce(&mut Config)) -> RunningServer {
        let mut config = Config::for_database(url, SECRET);
        config.db_connections = 8;
        config.poll_interval = std::time::Duration::from_millis(10);
        adjust(&mut config);
        careledger_gateway::start(config).await.expect("server starts")
    }

    pub fn state(&self) -> &careledger_gateway::state::AppState {
        &self.server.as_ref().expect("running").state
    }

    pub fn token(&self, scope: &str) -> String {
        token(scope)
    }

    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Answer {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let response = req.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, headers, body, text }
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.request(reqwest::Method::POST, path, Some(token), Some(&body.to_string())).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.request(reqwest::Method::GET, path, Some(token), None).await
    }
}

/// A token for the suite's secret.
pub fn token(scope: &str) -> String {
    careledger_gateway::auth::Keys::new(SECRET).mint("user-1", scope, Some("le-1"), 3600).expect("token")
}

/// Every permission of the eHealth registry (reference data, equipment) and the audit trail.
pub const REGISTRY: &str = "legal_entity:write division:write equipment:write equipment:read audit:read";

/// A token for the suite's secret acting for `client_id` (a legal entity), or for none.
pub fn token_for(sub: &str, scope: &str, client_id: Option<&str>) -> String {
    careledger_gateway::auth::Keys::new(SECRET).mint(sub, scope, client_id, 3600).expect("token")
}
