//! Support for the end-to-end tests: a fresh database per test on either backend.
//!
//! PostgreSQL tests need a server; `CARELEDGER_TEST_PG` names an admin URL (default
//! `postgres://postgres@127.0.0.1:5432/test`). Each test gets its own database, dropped after.

pub mod scenario;

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
        // every test starts here: its reqwest clients need the process's TLS provider
        careledger_gateway::http_client::install_crypto_provider();
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
    /// A response as the suite reads it.
    pub async fn of(response: reqwest::Response) -> Answer {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, headers, body, text }
    }

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
        careledger_gateway::http_client::install_crypto_provider();
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
        Answer::of(req.send().await.expect("request sent")).await
    }

    /// A POST with more headers (an idempotency key).
    pub async fn post_with(&self, path: &str, token: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
        let mut req = self.client.post(format!("{}{}", self.base, path)).bearer_auth(token).json(body);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        Answer::of(req.send().await.expect("request sent")).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.request(reqwest::Method::POST, path, Some(token), Some(&body.to_string())).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.request(reqwest::Method::GET, path, Some(token), None).await
    }

    /// Waits until the read models hold everything appended so far; the log's head.
    pub async fn settled(&self) -> i64 {
        let head = self.state().store.head().await.expect("head");
        assert!(
            self.state().projections.wait_for(head, std::time::Duration::from_secs(10)).await,
            "read models behind"
        );
        head
    }

    /// A medical item `I1` and a product `P1` covering it: what a policy is enrolled in.
    /// Item I1 (8), product P1 covering it, facility HF1 listing it: enough to enrol and claim.
    /// A batch of `batch` codes of enrolment officer E01, and `number` of them reserved for the
    /// node whose FHIR system is `node`: the codes reserved.
    pub async fn codes_for_node(&self, batch: u32, number: u32, node: &str) -> Vec<String> {
        let t = token_for("operator", "111101", None);
        let body = serde_json::json!({ "holder_type": 2, "holder_code": "E01", "number": batch });
        let a = self.post("/api/v1/code-batches", &t, body).await;
        assert_eq!(a.status, reqwest::StatusCode::CREATED, "{}", a.text);
        let body = serde_json::json!({ "holder_type": 2, "holder_code": "E01", "number": number, "for_server": node });
        let a = self.post("/api/v1/codes/reservations", &t, body).await;
        assert_eq!(a.status, reqwest::StatusCode::CREATED, "{}", a.text);
        a.data()["codes"].as_array().expect("codes").iter().map(|c| c.as_str().expect("a code").to_string()).collect()
    }

    pub async fn small_register(&self) {
        let t = token_for("operator", "reference:write", None);
        for (path, entries) in [
            ("/api/v1/medical-items", serde_json::json!([{ "code": "I1", "name": "Paracetamol", "price": 8 }])),
            ("/api/v1/products", serde_json::json!([{ "code": "P1", "name": "Basic", "items": [{ "code": "I1" }] }])),
            (
                "/api/v1/health-facilities",
                serde_json::json!([{ "code": "HF1", "name": "Dispensary", "care_type": "B" }]),
            ),
            (
                "/api/v1/price-lists",
                serde_json::json!([{ "health_facility": "HF1", "items": [{ "code": "I1", "valid_from": "2020-01-01" }] }]),
            ),
        ] {
            let a = self.post(path, &t, serde_json::json!({ "entries": entries })).await;
            assert_eq!(a.status, reqwest::StatusCode::OK, "{path}: {}", a.text);
        }
    }
}

/// A token for the suite's secret.
pub fn token(scope: &str) -> String {
    careledger_gateway::auth::Keys::new(SECRET).mint("user-1", scope, Some("le-1"), 3600).expect("token")
}

/// A private nats-server with JetStream on a free port, for the relay's fault tests. Killed on drop.
pub struct NatsServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<std::process::Child>,
}

impl NatsServer {
    pub async fn start() -> NatsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let dir = std::env::temp_dir().join(format!("careledger-nats-{}", Uuid::now_v7().simple()));
        let mut server = NatsServer { port, dir, child: None };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again), on the same port and store directory.
    pub async fn restart(&mut self) {
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nats-server");
        let child = std::process::Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("nats-server is needed for this test (tests/run installs it): {e}"));
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("nats-server did not come up on port {}", self.port);
    }

    /// SIGKILL: the server dies mid-stream, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One message of the relay's JetStream stream, as a durable consumer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub msg_id: String,
    pub stream: String,
    pub position: i64,
    pub subject: String,
}

/// Everything the stream holds, read through a new durable pull consumer (each message acked).
pub async fn consume_all(url: &str, stream: &str, durable: &str) -> Vec<Relayed> {
    use async_nats::jetstream::consumer::pull;
    use futures::StreamExt;
    let client = async_nats::connect(url).await.expect("connect to nats");
    let js = async_nats::jetstream::new(client);
    let mut nats_stream = js.get_stream(stream).await.expect("the relay's stream exists");
    let total = nats_stream.info().await.expect("stream info").state.messages as usize;
    let consumer = nats_stream
        .get_or_create_consumer(durable, pull::Config { durable_name: Some(durable.to_string()), ..Default::default() })
        .await
        .expect("durable consumer");
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .expires(std::time::Duration::from_secs(2))
            .messages()
            .await
            .expect("fetch");
        let before = out.len();
        while let Some(message) = batch.next().await {
            let message = message.expect("message");
            let header = |name: &str| {
                message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string()).unwrap_or_default()
            };
            out.push(Relayed {
                msg_id: header("Nats-Msg-Id"),
                stream: header("Careledger-Stream"),
                position: header("Careledger-Position").parse().unwrap_or(-1),
                subject: message.subject.to_string(),
            });
            message.ack().await.expect("ack");
        }
        assert!(out.len() > before, "the consumer stopped receiving at {} of {total}", out.len());
    }
    out
}

/// Waits until the relay's stream `CARELEDGER` holds `count` messages (or 60 s have passed).
pub async fn wait_for_messages(url: &str, count: usize, diagnose: impl Fn() -> String) {
    let client = async_nats::connect(url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut held = 0;
    loop {
        if let Ok(mut stream) = js.get_stream("CARELEDGER").await
            && let Ok(info) = stream.info().await
        {
            held = info.state.messages as usize;
            if held >= count {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stream holds {held} of {count} messages after 60 s; {}",
            diagnose()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The `careledger` binary next to the test binary (built by `cargo build --workspace --bins`).
pub fn careledger_binary() -> PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/careledger
    let exe = std::env::current_exe().expect("test binary");
    exe.parent().and_then(|p| p.parent()).expect("target dir").join("careledger")
}

/// Every event of the log, in log order.
pub async fn whole_log(store: &EventStore) -> Vec<careledger_store::RecordedEvent> {
    let mut out = Vec::new();
    loop {
        let page = store
            .read_all(out.last().map(|e: &careledger_store::RecordedEvent| e.position).unwrap_or(0), 1000)
            .await
            .expect("read the log");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}
/// Both permissions of requisition numbers (eHealth scopes).
pub const REQUISITIONS: &str = "service_request:write service_request:read";
/// Every permission of the eHealth registry (reference data, equipment) and the audit trail.
pub const REGISTRY: &str = "legal_entity:write division:write equipment:write equipment:read audit:read";

/// A token for the suite's secret acting for `client_id` (a legal entity), or for none.
pub fn token_for(sub: &str, scope: &str, client_id: Option<&str>) -> String {
    careledger_gateway::auth::Keys::new(SECRET).mint(sub, scope, client_id, 3600).expect("token")
}
/// Every permission of the claim context: reference data, claims (openIMIS rights) and the audit trail.
/// With the rights to enrol (codes generated and reserved, insurees registered, policies): the
/// claims lifecycle of `scenario` ends with an enrolment checked against the same register.
pub const CLAIMS: &str = "reference:write 111001 111002 111010 111004 111007 111009 111008 111011 111012 111006 \
     audit:read 111101 101102 101202";

/// A token for the suite's secret acting only on `health_facility`'s claims (a claim administrator).
pub fn token_at_facility(sub: &str, scope: &str, health_facility: &str) -> String {
    careledger_gateway::auth::Keys::new(SECRET)
        .mint_scoped(sub, scope, None, Some(health_facility), 3600)
        .expect("token")
}

/// An event to append straight to the store, below the API (as an older release or a bug could
/// have written it): `command` is recorded as the command that made it.
pub fn raw_event(event_type: &str, data: Value, command: &str) -> careledger_store::NewEvent {
    careledger_store::NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: event_type.into(),
        data,
        metadata: careledger_store::EventMetadata {
            correlation_id: uuid::Uuid::now_v7(),
            causation_id: None,
            actor: Default::default(),
            command: command.into(),
            origin: None,
        },
    }
}

/// A command that runs one of the tests' Python scripts (`tests/NAME`) with the independent tools
/// of `tests/requirements.txt`, in the virtual environment `tests/python.sh` makes once.
pub fn python(script: &str) -> std::process::Command {
    let mut command = std::process::Command::new("bash");
    command.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/python.sh"));
    command.arg(format!("{}/{script}", env!("CARGO_MANIFEST_DIR")));
    command
}

/// Asserts that every document of `seen` is valid FHIR R4, as an independent library says
/// (`tests/fhir_valid.py`: fhir.resources from PyPI, run by `tests/python.sh`).
pub fn valid_fhir(seen: &[Value]) {
    let dir = std::env::temp_dir().join(format!("careledger-fhir-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let paths: Vec<_> = seen
        .iter()
        .enumerate()
        .map(|(i, doc)| {
            let path = dir.join(format!("{i}.json"));
            std::fs::write(&path, serde_json::to_vec(doc).unwrap()).unwrap();
            path
        })
        .collect();
    let out = python("fhir_valid.py").args(&paths).output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).ok();
    assert!(out.status.success(), "fhir.resources refused what was served:\n{report}");
    assert!(report.contains(&format!("{} of {} valid", seen.len(), seen.len())), "{report}");
}

/// Every event of the server's log validates against its type's schema in the catalogue the
/// server serves (`GET /api/v1/events/schema`); answers the event types seen.
pub async fn events_match_their_schemas(server: &TestServer) -> std::collections::BTreeSet<String> {
    let answer = server.request(reqwest::Method::GET, "/api/v1/events/schema", None, None).await;
    assert_eq!(answer.status, reqwest::StatusCode::OK, "{}", answer.text);
    let mut seen = std::collections::BTreeSet::new();
    for event in whole_log(&server.state().store).await {
        let context = careledger_events::stream_context(&event.stream).to_string();
        let schema = &answer.data()["events"][&context][&event.event_type];
        assert!(schema.is_object(), "no schema for {context}/{}", event.event_type);
        let validator = jsonschema::options().should_validate_formats(true).build(schema).expect("a schema");
        let errors: Vec<String> =
            validator.iter_errors(&event.data).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert_eq!(
            errors,
            Vec::<String>::new(),
            "{context}/{} at {}: {}",
            event.event_type,
            event.position,
            event.data
        );
        seen.insert(event.event_type.clone());
    }
    seen
}
