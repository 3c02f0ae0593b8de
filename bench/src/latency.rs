//! Command latency at a fixed offered rate (open loop: requests are sent on schedule whether or
//! not earlier ones have answered), and projection lag: how long after a command's answer the
//! read model includes it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use careledger_projections::codes::CodeQueries;
use serde_json::json;
use tokio::sync::Mutex;

use crate::service::{FreshDb, figure, percentile, serve, token};

pub async fn run(backend: &str, pg_admin: &str, rate: u32, seconds: u32) -> Result<(), String> {
    let db = FreshDb::new(backend, pg_admin).await?;
    let server = serve(&db.url).await?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().map_err(|e| e.to_string())?;
    let base = format!("http://{}", server.addr);
    let token = token();
    let total = (rate * seconds) as usize;
    // codes spread over 16 batches: assignments on different batches do not queue on one stream
    let batches = 16;
    let mut codes = Vec::with_capacity(total);
    for b in 0..batches {
        let r = client
            .post(format!("{base}/api/v1/code-batches"))
            .bearer_auth(&token)
            .json(&json!({ "holder_type": 3, "holder_code": format!("HF-{b}"), "number": total / batches + 1 }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
        let batch = body["data"]["batch_id"].as_str().ok_or("generation failed")?.to_string();
        let head = server.state.store.head().await.map_err(|e| e.to_string())?;
        server.state.projections.wait_for(head, Duration::from_secs(60)).await;
        codes.push(CodeQueries(server.state.store.db()).all_codes(&batch).await.map_err(|e| e.to_string())?);
    }
    // interleave batches
    let mut schedule = Vec::with_capacity(total);
    for i in 0..total {
        schedule.push(codes[i % batches][i / batches].clone());
    }

    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let lags = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for (i, code) in schedule.into_iter().enumerate() {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        let (latencies, lags, failures) = (latencies.clone(), lags.clone(), failures.clone());
        let projections = server.state.projections.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let r = client
                .post(format!("{base}/api/v1/codes/{code}/assignment"))
                .bearer_auth(&token)
                .json(&json!({ "insuree_id": format!("ins-{i}") }))
                .send()
                .await;
            let Ok(r) = r else {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            };
            let answered = Instant::now();
            // latency from the scheduled time: a server falling behind shows, not hides
            latencies.lock().await.push((answered - due.max(sent).min(sent)).as_secs_f64() * 1000.0);
            let position: Option<i64> =
                r.headers().get("careledger-position").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
            if !r.status().is_success() {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            if let Some(p) = position {
                projections.wait_for(p, Duration::from_secs(30)).await;
                lags.lock().await.push(answered.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies = latencies.lock().await.clone();
    let mut lags = lags.lock().await.clone();
    let failed = failures.load(std::sync::atomic::Ordering::Relaxed);
    let common = json!({ "backend": backend, "offered_rate": rate, "commands": total, "failed": failed,
                         "achieved_rate": total as f64 / elapsed, "command": "AssignCode over HTTP" });
    figure("latency", "command_latency_p50", percentile(&mut latencies, 50.0), "ms", common.clone());
    figure("latency", "command_latency_p99", percentile(&mut latencies, 99.0), "ms", common.clone());
    figure("latency", "projection_lag_p50", percentile(&mut lags, 50.0), "ms", common.clone());
    let mut extra = common;
    extra["target_ms"] = json!(100);
    figure("latency", "projection_lag_p99", percentile(&mut lags, 99.0), "ms", extra);
    server.stop().await;
    db.drop_now().await;
    Ok(())
}
