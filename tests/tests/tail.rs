//! `careledger tail`, the real binary, against a private nats-server fed by the relay: the JSON
//! lines it prints, a durable consumer resuming after a restart without repeats or gaps, `--new`,
//! and clean exits on SIGINT and on a closed stdout.

use std::process::Stdio;
use std::time::Duration;

use careledger_gateway::relay::RelayConfig;
use careledger_store::RecordedEvent;
use careledger_tests::{
    ALL, Kind, NatsServer, REGISTRY, TestServer, both_backends, careledger_binary, token_for, wait_for_messages,
    whole_log,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

struct Tail {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Tail {
    fn spawn(nats: &NatsServer, args: &[&str]) -> Tail {
        let mut child = Command::new(careledger_binary())
            .arg("tail")
            .args(args)
            .env("NATS_URL", nats.url())
            .env_remove("CARELEDGER_NATS_STREAM")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("run careledger tail (build it with `cargo build --workspace --bins`)");
        let stdout = child.stdout.take().expect("stdout");
        Tail { child, lines: BufReader::new(stdout).lines() }
    }

    async fn line(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(20), self.lines.next_line())
            .await
            .expect("a line within 20 s")
            .expect("read stdout")
            .expect("tail is still printing");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line: {line}: {e}"))
    }

    /// Nothing more is printed for a while.
    async fn quiet(&mut self) {
        if let Ok(line) = tokio::time::timeout(Duration::from_millis(1500), self.lines.next_line()).await {
            panic!("tail printed more than expected: {line:?}");
        }
    }

    /// SIGINT, then it must exit with success.
    async fn interrupt(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill").args(["-INT", &pid]).status().expect("kill -INT");
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("tail exits within 10 s of SIGINT")
            .expect("wait");
        assert!(exit.success(), "tail exits cleanly on SIGINT: {exit}");
    }
}

/// The line of an event: subject and headers from the message, the event's envelope as `event`.
fn assert_line_is(line: &Value, event: &RecordedEvent) {
    assert_eq!(line["subject"], event.subject(), "{line}");
    assert_eq!(line["stream"], event.stream.as_str(), "{line}");
    assert_eq!(line["position"], event.position, "{line}");
    assert_eq!(line["version"], event.version, "{line}");
    assert_eq!(line["event"]["event_id"], event.event_id.to_string(), "{line}");
    assert_eq!(line["event"]["event_type"], event.event_type.as_str(), "{line}");
    assert_eq!(line["event"]["data"], event.data, "{line}");
}

async fn generate(s: &TestServer, holder: &str) {
    let a = s
        .post("/api/v1/code-batches", &s.token(ALL), json!({ "holder_type": 1, "holder_code": holder, "number": 2 }))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
}

/// The log's events so far, once the relay has published every one of them.
async fn relayed(s: &TestServer, nats: &NatsServer) -> Vec<RecordedEvent> {
    let log = whole_log(&s.state().store).await;
    wait_for_messages(&nats.url(), log.len(), String::new).await;
    log
}

both_backends!(a_durable_tail_resumes_where_it_stopped, durable_on);
async fn durable_on(kind: Kind) {
    let nats = NatsServer::start().await;
    let s = TestServer::start_with(kind, |c| c.relay = Some(RelayConfig::new(nats.url()))).await;
    for holder in ["T-1", "T-2", "T-3"] {
        generate(&s, holder).await;
    }
    let log = relayed(&s, &nats).await;
    assert!(log.len() >= 3);

    let mut tail = Tail::spawn(&nats, &["--durable", "scripts", "--subject", "careledger.codes.>"]);
    for event in &log {
        assert_line_is(&tail.line().await, event);
    }
    tail.quiet().await;
    tail.interrupt().await;

    // meanwhile: two more code events, and a registry event the subject leaves out
    generate(&s, "T-4").await;
    let admin = token_for("admin", REGISTRY, None);
    let le = uuid::Uuid::now_v7();
    let a = s
        .post(
            "/api/v1/legal-entities",
            &admin,
            json!({ "id": le, "name": "Clinic", "edrpou": "12345678", "type": "MSP", "status": "ACTIVE" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    generate(&s, "T-5").await;
    let printed = log.len();
    let log = relayed(&s, &nats).await;
    let codes: Vec<&RecordedEvent> = log[printed..].iter().filter(|e| e.stream.starts_with("codes-")).collect();
    assert!(codes.len() >= 2 && codes.len() < log.len() - printed, "code events and a registry event");

    let mut tail = Tail::spawn(&nats, &["--durable", "scripts", "--subject", "careledger.codes.>"]);
    for event in codes {
        assert_line_is(&tail.line().await, event);
    }
    tail.quiet().await;
    tail.interrupt().await;

    // an ephemeral tail of everything sees all six, registry included
    let mut tail = Tail::spawn(&nats, &["--from-start"]);
    for event in &log {
        assert_line_is(&tail.line().await, event);
    }
    tail.interrupt().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_starts_now_and_a_closed_stdout_ends_the_tail() {
    let nats = NatsServer::start().await;
    let s = TestServer::start_with(Kind::Sqlite, |c| c.relay = Some(RelayConfig::new(nats.url()))).await;
    generate(&s, "N-1").await;
    let before = relayed(&s, &nats).await.len();

    let mut tail = Tail::spawn(&nats, &["--new"]);
    // `--new` means from the consumer's creation on: give the process time to create it
    tokio::time::sleep(Duration::from_millis(1500)).await;
    generate(&s, "N-2").await;
    let log = relayed(&s, &nats).await;
    for event in &log[before..] {
        assert_line_is(&tail.line().await, event);
    }
    tail.quiet().await;

    // the reader goes away: the next line cannot be written, and tail ends without an error
    let Tail { mut child, lines } = tail;
    drop(lines);
    generate(&s, "N-3").await;
    relayed(&s, &nats).await;
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("tail exits within 10 s of its stdout closing")
        .expect("wait");
    assert!(exit.success(), "{exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tail_without_a_stream_says_so() {
    let nats = NatsServer::start().await;
    let out = Command::new(careledger_binary())
        .args(["tail", "--stream", "NOPE"])
        .env("NATS_URL", nats.url())
        .output()
        .await
        .expect("run careledger tail");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no stream NOPE"), "{stderr}");
}
