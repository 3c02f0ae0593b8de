//! The relay to NATS JetStream against real, private nats-servers: every committed event reaches
//! the stream exactly once and in log order, also when NATS is killed and restarted under load and
//! when the service relaying is killed with SIGKILL and restarted.

use std::time::{Duration, Instant};

use careledger_gateway::relay::RelayConfig;
use careledger_store::RecordedEvent;
use careledger_tests::{
    ALL, Kind, NatsServer, Relayed, TestServer, both_backends, careledger_binary, consume_all, wait_for_messages,
    whole_log,
};
use reqwest::StatusCode;
use serde_json::json;

fn relay_config(nats: &NatsServer) -> RelayConfig {
    RelayConfig { ack_timeout: Duration::from_millis(1000), window: 64, ..RelayConfig::new(nats.url()) }
}

/// Commands from `writers` concurrent clients until `duration` has passed; returns how many.
async fn write_for(s: &TestServer, writers: usize, duration: Duration) -> usize {
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (client, base, token) = (s.client.clone(), s.base.clone(), s.token(ALL));
            tokio::spawn(async move {
                let mut done = 0;
                while Instant::now() < deadline {
                    let r = client
                        .post(format!("{base}/api/v1/code-batches"))
                        .bearer_auth(&token)
                        .json(&json!({ "holder_type": 1, "holder_code": format!("W{w}"), "number": 3 }))
                        .send()
                        .await
                        .expect("request");
                    assert_eq!(r.status(), StatusCode::CREATED, "commands go on whatever NATS does");
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("writer");
    }
    total
}

/// The stream must hold the log's events exactly once, in log order, with their headers.
fn assert_exactly_the_log(relayed: &[Relayed], log: &[RecordedEvent]) {
    assert_eq!(relayed.len(), log.len(), "one message per event");
    for (i, (m, e)) in relayed.iter().zip(log).enumerate() {
        assert_eq!(
            (m.msg_id.as_str(), m.stream.as_str(), m.position, m.subject.as_str()),
            (e.event_id.to_string().as_str(), e.stream.as_str(), e.position, e.subject().as_str()),
            "message {i} of the stream is not event {i} of the log"
        );
    }
}

fn relay_status(s: &TestServer) -> String {
    format!("relay: {:?}", s.state().relay.as_ref().map(|r| r.borrow().clone()))
}

both_backends!(every_event_reaches_jetstream_once_in_order, every_event_on);
async fn every_event_on(kind: Kind) {
    let nats = NatsServer::start().await;
    let s = TestServer::start_with(kind, |c| c.relay = Some(relay_config(&nats))).await;
    let t = s.token(ALL);
    let a = s.post("/api/v1/code-batches", &t, json!({ "holder_type": 1, "holder_code": "R", "number": 30 })).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let r =
        s.post("/api/v1/codes/reservations", &t, json!({ "holder_type": 1, "holder_code": "R", "number": 5 })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let code = r.data()["codes"][0].as_str().unwrap().to_string();
    let a = s.post(&format!("/api/v1/codes/{code}/assignment"), &t, json!({ "insuree_id": "I-1" })).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let c = s.post(&format!("/api/v1/codes/{code}/control-number"), &t, json!({ "control_number": "CN-1" })).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);

    let log = whole_log(&s.state().store).await;
    assert!(log.len() >= 4);
    wait_for_messages(&nats.url(), log.len(), || relay_status(&s)).await;
    let relayed = consume_all(&nats.url(), "CARELEDGER", "check").await;
    assert_exactly_the_log(&relayed, &log);
    assert!(relayed.iter().any(|m| m.subject == "careledger.codes.CodeAssigned"), "{relayed:?}");

    // operators see it: /ready and /metrics
    let ready = s.request(reqwest::Method::GET, "/ready", None, None).await;
    let head = log.last().unwrap().position;
    let mut relay = ready.body["relay"].clone();
    for _ in 0..50 {
        if relay["position"] == head {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        relay = s.request(reqwest::Method::GET, "/ready", None, None).await.body["relay"].clone();
    }
    assert_eq!((relay["connected"].as_bool(), relay["position"].as_i64()), (Some(true), Some(head)), "{relay}");
    let metrics = s.request(reqwest::Method::GET, "/metrics", None, None).await.text;
    assert!(metrics.contains("careledger_relay_connected 1"), "{metrics}");
    assert!(metrics.contains("careledger_relay_published_total"), "{metrics}");
}

both_backends!(nats_going_away_loses_and_reorders_nothing, nats_going_away_on);
/// NATS is killed (SIGKILL) and restarted twice while four clients keep writing.
async fn nats_going_away_on(kind: Kind) {
    let _ = tracing_subscriber::fmt().with_env_filter("careledger_gateway::relay=debug").with_test_writer().try_init();
    let mut nats = NatsServer::start().await;
    let s = TestServer::start_with(kind, |c| c.relay = Some(relay_config(&nats))).await;
    let writing = write_for(&s, 4, Duration::from_secs(6));
    let faults = async {
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(1200)).await;
            nats.kill();
            tokio::time::sleep(Duration::from_millis(1000)).await;
            nats.restart().await;
        }
    };
    let (commands, ()) = tokio::join!(writing, faults);
    assert!(commands > 20, "only {commands} commands were written");
    let log = whole_log(&s.state().store).await;
    wait_for_messages(&nats.url(), log.len(), || relay_status(&s)).await;
    let relayed = consume_all(&nats.url(), "CARELEDGER", "after-faults").await;
    assert_exactly_the_log(&relayed, &log);
}

fn spawn_relaying_service(db_url: &str, nats: &NatsServer, data_dir: &std::path::Path) -> std::process::Child {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::process::Command::new(careledger_binary())
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .env("CARELEDGER_DATA_DIR", data_dir)
        .env("DATABASE_URL", db_url)
        .env("CARELEDGER_JWT_SECRET", careledger_tests::SECRET)
        .env("NATS_URL", nats.url())
        .env("CARELEDGER_NATS_ACK_TIMEOUT_MS", "1000")
        .env("CARELEDGER_POLL_MS", "10")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run careledger (build it with `cargo build -p careledger-gateway`)")
}

/// The relaying service (the real binary) is killed with SIGKILL mid-stream and started again,
/// while another gateway on the same PostgreSQL keeps writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_relay_resumes_without_loss_or_repeat() {
    let nats = NatsServer::start().await;
    let s = TestServer::start(Kind::Postgres).await;
    let dir = s.db.dir.join("relaying-service");
    let mut service = spawn_relaying_service(&s.db.url, &nats, &dir);
    let writing = write_for(&s, 4, Duration::from_secs(6));
    let faults = async {
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            service.kill().expect("SIGKILL the service");
            service.wait().expect("reaped");
            tokio::time::sleep(Duration::from_millis(500)).await;
            service = spawn_relaying_service(&s.db.url, &nats, &dir);
        }
    };
    let (commands, ()) = tokio::join!(writing, faults);
    assert!(commands > 20, "only {commands} commands were written");
    let log = whole_log(&s.state().store).await;
    wait_for_messages(&nats.url(), log.len(), String::new).await;
    // a little longer: a repeat would show as one message too many
    tokio::time::sleep(Duration::from_millis(500)).await;
    let relayed = consume_all(&nats.url(), "CARELEDGER", "after-kill").await;
    assert_exactly_the_log(&relayed, &log);
    let _ = service.kill();
    let _ = service.wait();
}
