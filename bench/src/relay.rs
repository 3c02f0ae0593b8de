//! The relay to JetStream, against a private nats-server this benchmark starts on a free port:
//! - catch-up: a backlog of N events already in the log, relayed from position 0 until JetStream
//!   acknowledged the last one; baseline: the same messages published straight to JetStream from
//!   memory with the same window of unacknowledged publishes (no log to read, no checkpoint);
//! - commit to acknowledgement: single-event appends on schedule at R/s while the relay runs;
//!   for each, the time from the append's return to the relay reporting it acknowledged.

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use careledger_events::{EventMetadata, NewEvent};
use careledger_gateway::relay::{self, RelayConfig};
use careledger_store::{AppendRequest, ExpectedVersion};
use serde_json::json;
use tokio::sync::{Mutex, watch};
use uuid::Uuid;

use crate::service::{FreshDb, figure, open, percentile};

pub async fn run(backend: &str, pg_admin: &str, events: usize, rate: u32, seconds: u32) -> Result<(), String> {
    let nats = PrivateNats::start().await?;
    let db = FreshDb::new(backend, pg_admin).await?;
    let store = open(&db.url).await?;
    let window = RelayConfig::new(nats.url()).window;

    // the backlog, appended in chunks of 1,000 events over 100 streams
    let filled = Instant::now();
    let mut written = 0;
    let mut versions = vec![0i64; 100];
    while written < events {
        let n = (events - written).min(1000);
        let s = (written / 1000) % 100;
        let batch = (0..n).map(|i| event(written + i)).collect();
        store
            .append(&AppendRequest::single(stream(s), ExpectedVersion::Exact(versions[s]), batch))
            .await
            .map_err(|e| e.to_string())?;
        versions[s] += n as i64;
        written += n;
    }
    let head = store.head().await.map_err(|e| e.to_string())?;
    eprintln!("[relay] {events} events in the log ({:.1} s); relaying", filled.elapsed().as_secs_f64());

    let (stop, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let (task, mut status) = relay::spawn(store.clone(), RelayConfig::new(nats.url()), stop_rx);
    status.wait_for(|s| s.position >= head).await.map_err(|_| "the relay stopped before catching up".to_string())?;
    let secs = started.elapsed().as_secs_f64();
    let baseline = raw_publish(&nats.url(), events, window).await?;
    figure(
        "relay",
        "catch_up",
        events as f64 / secs,
        "events/s",
        json!({ "backend": backend, "events": events, "seconds": secs, "window": window, "target": 20_000,
                "baseline_raw_jetstream_publish_per_s": baseline, "ratio_to_baseline": events as f64 / secs / baseline }),
    );

    // open loop at `rate` single-event appends per second, relay running
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let committed: Arc<Mutex<VecDeque<(i64, Instant)>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let watcher = {
        let (committed, latencies, mut status) = (committed.clone(), latencies.clone(), status.clone());
        tokio::spawn(async move {
            while status.changed().await.is_ok() {
                let acked = status.borrow_and_update().position;
                let now = Instant::now();
                let mut waiting = committed.lock().await;
                while waiting.front().is_some_and(|(p, _)| *p <= acked) {
                    if let Some((_, at)) = waiting.pop_front() {
                        latencies.lock().await.push(now.duration_since(at).as_secs_f64());
                    }
                }
            }
        })
    };
    let begun = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    let store = Arc::new(store);
    for i in 0..total {
        tokio::time::sleep_until((begun + interval * i as u32).into()).await;
        let (store, committed, latencies, status) =
            (store.clone(), committed.clone(), latencies.clone(), status.clone());
        tasks.push(tokio::spawn(async move {
            let request = AppendRequest::single(format!("codes-live-{i}"), ExpectedVersion::Exact(0), vec![event(i)]);
            let outcome = store.append(&request).await.map_err(|e| e.to_string())?;
            let mut waiting = committed.lock().await;
            if status.borrow().position >= outcome.last_position() {
                // acknowledged before this task got here
                latencies.lock().await.push(0.0);
                return Ok(());
            }
            // keep the queue in position order (appends finish out of order)
            let at = waiting.partition_point(|(p, _)| *p < outcome.last_position());
            waiting.insert(at, (outcome.last_position(), Instant::now()));
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let last = store.head().await.map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(30), status.wait_for(|s| s.position >= last))
        .await
        .map_err(|_| "the relay did not catch up with the live appends in 30 s".to_string())?
        .map_err(|_| "the relay stopped".to_string())?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    watcher.abort();
    let mut latencies = latencies.lock().await.clone();
    let measured = latencies.len();
    let p50 = percentile(&mut latencies, 50.0) * 1000.0;
    let p99 = percentile(&mut latencies, 99.0) * 1000.0;
    let extra = json!({ "backend": backend, "rate": rate, "events": total, "measured": measured });
    figure("relay", "commit_to_ack_p50", p50, "ms", extra.clone());
    figure("relay", "commit_to_ack_p99", p99, "ms", json!({ "target": 100, "detail": extra }));

    stop.send_replace(true);
    let _ = task.await;
    store.db().close().await;
    db.drop_now().await;
    Ok(())
}

fn stream(s: usize) -> String {
    format!("codes-bench-{s}")
}

fn event(n: usize) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "BenchHappened".into(),
        data: json!({ "n": n, "note": "a payload of a typical small event" }),
        metadata: EventMetadata {
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            actor: Default::default(),
            command: "Bench".into(),
            origin: None,
        },
    }
}

/// The same number of messages of the same size and headers, published from memory to a stream of
/// its own with `window` unacknowledged at most.
async fn raw_publish(url: &str, events: usize, window: usize) -> Result<f64, String> {
    let client = async_nats::connect(url).await.map_err(|e| e.to_string())?;
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "BASELINE".into(),
        subjects: vec!["baseline.>".into()],
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let payload = serde_json::to_vec(&json!({
        "position": 1i64 << 40, "event_id": Uuid::now_v7(), "stream": stream(1), "version": 1,
        "event_type": "BenchHappened", "data": event(0).data, "metadata": event(0).metadata,
        "recorded_at": chrono::Utc::now(),
    }))
    .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut in_flight = VecDeque::with_capacity(window);
    for i in 0..events {
        if in_flight.len() >= window
            && let Some(ack) = in_flight.pop_front()
        {
            let ack: async_nats::jetstream::context::PublishAckFuture = ack;
            ack.into_future().await.map_err(|e| e.to_string())?;
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", Uuid::now_v7().to_string().as_str());
        headers.insert("Careledger-Stream", stream(1).as_str());
        headers.insert("Careledger-Position", i.to_string().as_str());
        let ack = js
            .publish_with_headers("baseline.codes.BenchHappened", headers, payload.clone().into())
            .await
            .map_err(|e| e.to_string())?;
        in_flight.push_back(ack);
    }
    for ack in in_flight {
        ack.into_future().await.map_err(|e| e.to_string())?;
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

/// A nats-server with JetStream on a free port and a temporary store, stopped on drop.
pub(crate) struct PrivateNats {
    port: u16,
    dir: std::path::PathBuf,
    child: std::process::Child,
}

impl PrivateNats {
    pub(crate) async fn start() -> Result<PrivateNats, String> {
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let dir = std::env::temp_dir().join(format!("careledger-bench-nats-{}", Uuid::now_v7().simple()));
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nats-server");
        let child = std::process::Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start nats-server: {e}"))?;
        let nats = PrivateNats { port, dir, child };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(nats);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("nats-server did not come up on port {port}"))
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
