//! NATS hardening (issue #23, finding 10), against private nats-servers on both backends:
//! - a message someone else published on the event stream's subjects, claiming a position whose
//!   event the log does not hold under its `Nats-Msg-Id`, does not make the relay skip events: the
//!   relay stops, says why in `/ready`, and resumes once the message is removed, every event of the
//!   log then in the stream exactly once and in log order;
//! - the command intake never answers into careledger's own subjects (an answer there would be
//!   stored in the event stream as if it were an event).

use std::time::{Duration, Instant};

use careledger_gateway::intake::IntakeConfig;
use careledger_gateway::relay::RelayConfig;
use careledger_store::RecordedEvent;
use careledger_tests::{
    ALL, Kind, NatsServer, Relayed, TestServer, both_backends, consume_all, wait_for_messages, whole_log,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

fn relay_config(nats: &NatsServer) -> RelayConfig {
    RelayConfig { ack_timeout: Duration::from_millis(1000), window: 64, ..RelayConfig::new(nats.url()) }
}

fn relay_status(s: &TestServer) -> String {
    format!("relay: {:?}", s.state().relay.as_ref().map(|r| r.borrow().clone()))
}

/// One message of the stream, read by sequence (deleted sequences are left out).
#[derive(Debug, Clone)]
struct Stored {
    sequence: u64,
    msg_id: String,
    position: i64,
    subject: String,
}

/// Everything the stream `CARELEDGER` holds, with sequences, read message by message.
async fn stored(js: &async_nats::jetstream::Context) -> Vec<Stored> {
    let mut stream = js.get_stream("CARELEDGER").await.expect("the relay's stream exists");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    for sequence in state.first_sequence.max(1)..=state.last_sequence {
        let Ok(message) = stream.get_raw_message(sequence).await else { continue };
        let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_string()).unwrap_or_default();
        out.push(Stored {
            sequence,
            msg_id: header("Nats-Msg-Id"),
            position: header("Careledger-Position").parse().unwrap_or(-1),
            subject: message.subject.to_string(),
        });
    }
    out
}

/// The stream must hold the log's events exactly once, in log order, with their headers.
fn assert_exactly_the_log(relayed: &[Relayed], log: &[RecordedEvent]) {
    assert_eq!(relayed.len(), log.len(), "one message per event: {relayed:?}");
    for (i, (m, e)) in relayed.iter().zip(log).enumerate() {
        assert_eq!(
            (m.msg_id.as_str(), m.stream.as_str(), m.position, m.subject.as_str()),
            (e.event_id.to_string().as_str(), e.stream.as_str(), e.position, e.subject().as_str()),
            "message {i} of the stream is not event {i} of the log"
        );
    }
}

/// `/ready`'s `relay` object.
async fn relay_ready(s: &TestServer) -> Value {
    s.request(Method::GET, "/ready", None, None).await.body["relay"].clone()
}

/// Waits (10 s at most) until `/ready` says the relay stopped because of the message at `sequence`.
async fn wait_stopped_at(s: &TestServer, sequence: u64, position: i64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let relay = relay_ready(s).await;
        let error = relay["last_error"].as_str().unwrap_or_default().to_string();
        if error.contains("relaying stopped") && error.contains(&format!("(sequence {sequence})")) {
            assert!(error.contains(&format!("position {position}")), "{error}");
            assert_eq!(relay["connected"], false, "{relay}");
            return error;
        }
        assert!(Instant::now() < deadline, "/ready does not say the relay stopped at sequence {sequence}: {relay}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes a message as someone allowed to publish on `careledger.>` could, not as the relay
/// would; returns its sequence in the stream.
async fn forge(js: &async_nats::jetstream::Context, position: i64) -> u64 {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", Uuid::new_v4().to_string().as_str());
    headers.insert("Careledger-Stream", "CodeBatch-forged");
    headers.insert("Careledger-Position", position.to_string().as_str());
    let payload = json!({ "forged": true }).to_string();
    let ack = js
        .publish_with_headers("careledger.codes.CodesGenerated", headers, payload.into())
        .await
        .expect("publish the forged message")
        .await
        .expect("the stream stores it");
    assert!(!ack.duplicate);
    ack.sequence
}

async fn generate(s: &TestServer, holder: &str) {
    let t = s.token(ALL);
    let a = s.post("/api/v1/code-batches", &t, json!({ "holder_type": 1, "holder_code": holder, "number": 3 })).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
}

both_backends!(a_forged_last_message_stops_the_relay_and_skips_nothing, forged_resume_on);
async fn forged_resume_on(kind: Kind) {
    let nats = NatsServer::start().await;
    let mut s = TestServer::start_with(kind, |c| c.relay = Some(relay_config(&nats))).await;
    for holder in ["F-1", "F-2", "F-3"] {
        generate(&s, holder).await;
    }
    let before = whole_log(&s.state().store).await;
    assert!(before.len() >= 3);
    wait_for_messages(&nats.url(), before.len(), || relay_status(&s)).await;
    // caught up: the relay has (or is about to have) its checkpoint at the head
    let head = before.last().expect("events").position;
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay_ready(&s).await["position"] != head {
        assert!(Instant::now() < deadline, "{}", relay_status(&s));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;

    // while the service is down, someone publishes "position 999999999999999" on an event subject
    let client = async_nats::connect(nats.url()).await.expect("connect to nats");
    let js = async_nats::jetstream::new(client);
    let huge = 999_999_999_999_999;
    let forged = forge(&js, huge).await;

    let server = TestServer::serve(&s.db.url, |c| c.relay = Some(relay_config(&nats))).await;
    s.base = format!("http://{}", server.addr);
    s.server = Some(server);
    for holder in ["F-4", "F-5", "F-6"] {
        generate(&s, holder).await;
    }
    let log = whole_log(&s.state().store).await;
    assert!(log.len() >= before.len() + 3);
    let error = wait_stopped_at(&s, forged, huge).await;
    assert!(error.contains("remove that message"), "{error}");
    // the relay retries, and keeps refusing: nothing is published after the forged message
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held = stored(&js).await;
    assert_eq!(held.len(), before.len() + 1, "{held:?}");
    assert_eq!(held.last().map(|m| m.sequence), Some(forged), "nothing after the forged message: {held:?}");
    let relayed_ids: Vec<String> = held[..before.len()].iter().map(|m| m.msg_id.clone()).collect();
    assert_eq!(relayed_ids, before.iter().map(|e| e.event_id.to_string()).collect::<Vec<_>>());
    assert!(held.iter().all(|m| m.sequence == forged || m.position <= head), "{held:?}");

    // a real position (an event not relayed yet) under another id is refused alike. It is
    // published before the first forgery is removed, so that it is the last message throughout.
    let real = log.last().expect("events").position;
    assert!(real > head);
    let wrong_id = forge(&js, real).await;
    let stream = js.get_stream("CARELEDGER").await.expect("stream");
    assert!(stream.delete_message(forged).await.expect("delete the forged message"));
    wait_stopped_at(&s, wrong_id, real).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held = stored(&js).await;
    assert_eq!(held.len(), before.len() + 1, "{held:?}");
    assert_eq!(held.last().map(|m| m.sequence), Some(wrong_id), "nothing after the forged message: {held:?}");
    let status = relay_ready(&s).await;
    assert!(status["position"].as_i64().unwrap_or(0) <= head, "the relay moved past unpublished events: {status}");

    // once an operator removes it (`nats stream rmm CARELEDGER <seq>`), the relay resumes, and
    // every event of the log is in the stream exactly once, in log order. (What the relay meets
    // then, on nats-server 2.9: the stream's `last_seq` still names the removed message, which
    // cannot be read any more, and JetStream still takes the removed message's `Nats-Msg-Id` for
    // the last one, refusing a publish that expects the last event's id instead.)
    assert!(stream.delete_message(wrong_id).await.expect("delete the forged message"));
    wait_for_messages(&nats.url(), log.len(), || relay_status(&s)).await;
    let last = log.last().expect("events").position;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let relay = relay_ready(&s).await;
        if relay["position"] == last && relay["connected"] == true {
            assert!(relay["last_error"].is_null(), "{relay}");
            break;
        }
        assert!(Instant::now() < deadline, "the relay did not resume: {relay}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // a little longer: a repeat would show as one message too many
    tokio::time::sleep(Duration::from_millis(500)).await;
    let relayed = consume_all(&nats.url(), "CARELEDGER", "after-forgery").await;
    assert_exactly_the_log(&relayed, &whole_log(&s.state().store).await);
    s.stop().await;
}

/// The value of a counter in `/metrics` (0 when not there yet).
async fn counter(s: &TestServer, name: &str) -> f64 {
    let metrics = s.request(Method::GET, "/metrics", None, None).await.text;
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
        .next()
        .unwrap_or(0.0)
}

both_backends!(the_intake_never_replies_into_careledger_subjects, intake_reply_on);
async fn intake_reply_on(kind: Kind) {
    let nats = NatsServer::start().await;
    let s = TestServer::start_with(kind, |c| {
        c.relay = Some(relay_config(&nats));
        c.intake = Some(IntakeConfig::new(nats.url()));
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.request(Method::GET, "/ready", None, None).await.body["commands"]["subscribed"] != true {
        assert!(Instant::now() < deadline, "the intake did not subscribe");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = async_nats::connect(nats.url()).await.expect("connect to nats");
    let js = async_nats::jetstream::new(client.clone());
    // the relay's stream exists (it captures `careledger.codes.>`) before anything is sent
    let deadline = Instant::now() + Duration::from_secs(20);
    while js.get_stream("CARELEDGER").await.is_err() {
        assert!(Instant::now() < deadline, "{}", relay_status(&s));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // whatever is published on careledger's subjects meanwhile, stored or not
    let mut watch = client.subscribe("careledger.>").await.expect("subscribe");
    client.flush().await.expect("flush");

    let token = s.token(ALL);
    let before = s.state().store.head().await.expect("head");
    let unanswerable = counter(&s, "careledger_nats_commands_unanswerable_total").await;
    let replies = ["careledger.codes.CodeAssigned", "careledger.commands.codes.GenerateCodes"];
    for reply in replies {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Authorization", format!("Bearer {token}").as_str());
        headers.insert("X-Request-Id", Uuid::now_v7().to_string().as_str());
        let body = json!({ "holder_type": 1, "holder_code": "I-1", "number": 3 }).to_string();
        client
            .publish_with_reply_and_headers("careledger.commands.codes.GenerateCodes", reply, headers, body.into())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter(&s, "careledger_nats_commands_unanswerable_total").await < unanswerable + replies.len() as f64 {
        assert!(Instant::now() < deadline, "the commands replying into careledger's subjects were not refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.state().store.head().await.expect("head"), before, "a command replying into the stream ran");

    // a normal request still works, and its event is relayed
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {token}").as_str());
    let body = json!({ "holder_type": 1, "holder_code": "I-2", "number": 3 }).to_string();
    let reply = tokio::time::timeout(
        Duration::from_secs(20),
        client.request_with_headers("careledger.commands.codes.GenerateCodes", headers, body.into()),
    )
    .await
    .expect("a reply in 20 s")
    .expect("a reply");
    let status = reply.headers.as_ref().and_then(|h| h.get("Careledger-Status")).map(|v| v.as_str().to_string());
    assert_eq!(status.as_deref(), Some("201"), "{}", String::from_utf8_lossy(&reply.payload));
    let log = whole_log(&s.state().store).await;
    assert!(!log.is_empty());
    assert!(log.iter().all(|e| e.position > before), "only the normal request appended");
    wait_for_messages(&nats.url(), log.len(), || relay_status(&s)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // the stream holds the log's events and nothing else: no answer on `careledger.codes.CodeAssigned`
    let held = stored(&js).await;
    assert_eq!(held.len(), log.len(), "{held:?}");
    assert!(held.iter().all(|m| m.subject != "careledger.codes.CodeAssigned"), "{held:?}");
    let relayed = consume_all(&nats.url(), "CARELEDGER", "after-replies").await;
    assert_exactly_the_log(&relayed, &log);
    // nor was anything published there outside the stream: only the commands and the events
    let mut seen = Vec::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(200), futures::StreamExt::next(&mut watch)).await
    {
        seen.push(message.subject.to_string());
    }
    let events: Vec<&String> = seen.iter().filter(|subject| !subject.starts_with("careledger.commands.")).collect();
    let subjects: Vec<String> = log.iter().map(|e| e.subject()).collect();
    assert_eq!(events, subjects.iter().collect::<Vec<_>>(), "only the relay's events: {seen:?}");
    assert!(!seen.iter().any(|subject| subject == "careledger.codes.CodeAssigned"), "{seen:?}");
}
