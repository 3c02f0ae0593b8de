//! The card printer's order of a batch of N codes (`order.xlsx`, `qr-codes.zip`, `export.csv`),
//! downloaded over HTTP from an in-process server: seconds, and how much the process's resident
//! memory grew at its peak while each was written; against reading the same codes at once into
//! memory (`CodeQueries::all_codes`, what the CSV export did before it streamed) in the same run.
//!
//! The peak is the kernel's (VmHWM, reset before each phase through /proc/self/clear_refs), so it
//! counts the server, the client and the allocator alike; a streamed document's peak must not grow
//! with N, the baseline's does.

use std::time::Instant;

use careledger_projections::codes::CodeQueries;
use serde_json::json;

use crate::service::{FreshDb, figure, generate_batch, serve, token};

/// Resident memory now and at its peak since the last reset, in MB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

/// Starts a phase: the peak is reset to what is resident now; answers that.
fn reset_peak() -> f64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    memory().0
}

pub async fn run(backend: &str, pg_admin: &str, number: u32) -> Result<(), String> {
    let db = FreshDb::new(backend, pg_admin).await?;
    let server = serve(&db.url).await?;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let batch = generate_batch(&client, &base, 1, "BENCH", number as usize).await?;
    let head = server.state.store.head().await.map_err(|e| e.to_string())?;
    if !server.state.projections.wait_for(head, std::time::Duration::from_secs(900)).await {
        return Err("the read model did not catch up".into());
    }

    // baseline: the batch's codes read at once
    let before = reset_peak();
    let started = Instant::now();
    let codes = CodeQueries(server.state.store.db()).all_codes(&batch).await.map_err(|e| e.to_string())?;
    let baseline_s = started.elapsed().as_secs_f64();
    let baseline_mb = memory().1 - before;
    let read = codes.len();
    drop(codes);

    for (document, path) in [("csv", "export.csv"), ("xlsx", "order.xlsx"), ("qr_zip", "qr-codes.zip")] {
        let before = reset_peak();
        let started = Instant::now();
        let mut answer = client
            .get(format!("{base}/api/v1/code-batches/{batch}/{path}"))
            .bearer_auth(token())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !answer.status().is_success() {
            return Err(format!("{path}: {}", answer.status()));
        }
        let mut bytes = 0usize;
        while let Some(chunk) = answer.chunk().await.map_err(|e| format!("{path}: {e}"))? {
            bytes += chunk.len();
        }
        let seconds = started.elapsed().as_secs_f64();
        let peak_mb = memory().1 - before;
        figure(
            "printer_order",
            &format!("{document}_seconds"),
            seconds,
            "s",
            json!({ "backend": backend, "codes": read, "bytes": bytes, "peak_rss_growth_mb": peak_mb,
                    "baseline_read_all_s": baseline_s, "baseline_peak_rss_growth_mb": baseline_mb,
                    "memory_ratio_to_baseline": peak_mb / baseline_mb }),
        );
    }
    server.stop().await;
    db.drop_now().await;
    Ok(())
}
