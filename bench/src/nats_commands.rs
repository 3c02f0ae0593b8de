//! One command two ways in: `clients` concurrent clients issue requisition numbers for new, distinct
//! encounters (IssueRequisition) for `seconds` over NATS request/reply
//! (`careledger.commands.requisitions.IssueRequisition`, one shared connection, as an integrator
//! would hold one), then for as long over HTTP (`POST /api/v1/requisitions`, a keep-alive pool),
//! against one in-process server whose command intake listens on a private nats-server. Prints
//! throughput and answer p50/p99 of each, and the ratio NATS / HTTP: what the NATS way costs or
//! saves over the HTTP one for the very same handler.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use careledger_gateway::intake::IntakeConfig;
use serde_json::json;
use uuid::Uuid;

use crate::appends::measure;
use crate::relay::PrivateNats;
use crate::service::{FreshDb, SECRET, figure, percentile};

const SCOPE: &str = "service_request:write";

/// What one way in measured.
struct Run {
    per_s: f64,
    latencies_ms: Vec<f64>,
    failed: usize,
}

pub async fn run(backend: &str, pg_admin: &str, clients: usize, seconds: f64) -> Result<(), String> {
    let nats = PrivateNats::start().await?;
    let db = FreshDb::new(backend, pg_admin).await?;
    let mut config = careledger_gateway::Config::for_database(&db.url, SECRET);
    config.poll_interval = std::time::Duration::from_millis(10);
    config.intake = Some(IntakeConfig::new(nats.url()));
    let server = careledger_gateway::start(config).await?;
    let token = careledger_gateway::auth::Keys::new(SECRET)
        .mint("bench", SCOPE, Some("bench-le"), 24 * 3600)
        .map_err(|e| e.to_string())?;
    if let Some(intake) = &server.state.intake {
        let mut intake = intake.clone();
        tokio::time::timeout(std::time::Duration::from_secs(10), intake.wait_for(|s| s.subscribed))
            .await
            .map_err(|_| "the command intake did not subscribe in 10 s".to_string())?
            .map_err(|e| e.to_string())?;
    }

    let client = async_nats::connect(nats.url()).await.map_err(|e| e.to_string())?;
    let over_nats = {
        let token = token.clone();
        timed(clients, seconds, move || {
            let (client, token) = (client.clone(), token.clone());
            async move {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Authorization", format!("Bearer {token}").as_str());
                let reply = client
                    .request_with_headers("careledger.commands.requisitions.IssueRequisition", headers, body().into())
                    .await
                    .map_err(|e| e.to_string())?;
                let status = reply.headers.as_ref().and_then(|h| h.get("Careledger-Status")).map(|v| v.as_str());
                Ok(status == Some("201"))
            }
        })
        .await?
    };

    let http = reqwest::Client::builder().pool_max_idle_per_host(clients.max(1)).build().map_err(|e| e.to_string())?;
    let url = format!("http://{}/api/v1/requisitions", server.addr);
    let over_http = timed(clients, seconds, move || {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        async move {
            let r = http
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let created = r.status() == reqwest::StatusCode::CREATED;
            // the body is part of the answer: read it before the clock stops
            let _ = r.bytes().await;
            Ok(created)
        }
    })
    .await?;

    let common = json!({ "backend": backend, "clients": clients, "seconds": seconds,
                         "command": "IssueRequisition, new encounters" });
    for (way, run) in [("nats", &over_nats), ("http", &over_http)] {
        let mut extra = common.clone();
        extra["way"] = json!(way);
        extra["failed"] = json!(run.failed);
        figure("nats-commands", &format!("{way}_commands"), run.per_s, "commands/s", extra.clone());
        let mut latencies = run.latencies_ms.clone();
        figure("nats-commands", &format!("{way}_latency_p50"), percentile(&mut latencies, 50.0), "ms", extra.clone());
        figure("nats-commands", &format!("{way}_latency_p99"), percentile(&mut latencies, 99.0), "ms", extra);
    }
    let mut extra = common;
    extra["http_commands_per_s"] = json!(over_http.per_s);
    figure("nats-commands", "nats_to_http_throughput_ratio", over_nats.per_s / over_http.per_s, "ratio", extra);

    server.stop().await;
    db.drop_now().await;
    let failed = over_nats.failed + over_http.failed;
    if failed > 0 {
        return Err(format!("{failed} commands were not answered 201"));
    }
    Ok(())
}

fn body() -> String {
    json!({ "encounter_id": Uuid::new_v4(), "entity_type": "service_request", "entity_id": Uuid::new_v4() }).to_string()
}

/// `clients` loops of `send` for `seconds`: commands answered per second, each answer's latency.
async fn timed<F, Fut>(clients: usize, seconds: f64, send: F) -> Result<Run, String>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<bool, String>> + Send,
{
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(AtomicUsize::new(0));
    let (l, f) = (latencies.clone(), failed.clone());
    let send = Arc::new(send);
    let per_s = measure(clients, seconds, move |_, _| {
        let (send, latencies, failed) = (send.clone(), l.clone(), f.clone());
        async move {
            let sent = Instant::now();
            let created = send().await?;
            latencies.lock().map_err(|e| e.to_string())?.push(sent.elapsed().as_secs_f64() * 1000.0);
            if !created {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(usize::from(created))
        }
    })
    .await?;
    let latencies_ms = latencies.lock().map_err(|e| e.to_string())?.clone();
    Ok(Run { per_s, latencies_ms, failed: failed.load(Ordering::Relaxed) })
}
