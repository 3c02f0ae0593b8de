//! GenerateCodes of N codes over HTTP, from request to the availability read model caught up,
//! against a plain bulk insert of the same rows into the same database in the same run.

use std::time::Instant;

use careledger_store::sql_exec;
use serde_json::json;

use crate::service::{FreshDb, figure, serve, token};

pub async fn run(backend: &str, pg_admin: &str, number: u32) -> Result<(), String> {
    let db = FreshDb::new(backend, pg_admin).await?;
    let server = serve(&db.url).await?;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let started = Instant::now();
    let response = client
        .post(format!("{base}/api/v1/code-batches"))
        .bearer_auth(token())
        .json(&json!({ "holder_type": 1, "holder_code": "BENCH", "number": number }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let position: i64 = response
        .headers()
        .get("careledger-position")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("generation failed: {status}"))?;
    let answered = started.elapsed().as_secs_f64();
    let caught_up = server.state.projections.wait_for(position, std::time::Duration::from_secs(600)).await;
    let total = started.elapsed().as_secs_f64();
    if !caught_up {
        return Err("the read model did not catch up within 600 s".into());
    }

    // baseline: the same number of rows (code, batch, status), bulk-inserted in one transaction
    let codes: Vec<String> = (0..number as u64).map(|i| format!("{:09}", 100_000_000 + i * 7)).collect();
    let store = &server.state.store;
    let mut tx = store.db().begin().await.map_err(|e| e.to_string())?;
    sql_exec!(
        tx.exec(),
        "CREATE TABLE bench_plain (code TEXT PRIMARY KEY, batch_id TEXT NOT NULL, status TEXT NOT NULL)",
        []
    )
    .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    let baseline_started = Instant::now();
    let mut tx = store.db().begin().await.map_err(|e| e.to_string())?;
    let sql = match store.backend() {
        careledger_store::Backend::Sqlite => {
            "INSERT INTO bench_plain SELECT value, 'b', 'available' FROM json_each($1)"
        }
        careledger_store::Backend::Postgres => {
            "INSERT INTO bench_plain SELECT c, 'b', 'available' FROM jsonb_array_elements_text($1::jsonb) AS t(c)"
        }
    };
    for chunk in codes.chunks(10_000) {
        let json = serde_json::to_string(chunk).unwrap_or_default();
        sql_exec!(tx.exec(), sql, [json]).map_err(|e| e.to_string())?;
    }
    tx.commit().await.map_err(|e| e.to_string())?;
    let baseline = baseline_started.elapsed().as_secs_f64();

    let target = if backend == "sqlite" { 10.0 } else { 15.0 };
    figure(
        "generate",
        "generate_codes_to_read_model",
        total,
        "s",
        json!({ "backend": backend, "codes": number, "answered_s": answered, "target_s": target,
                "baseline_plain_bulk_insert_s": baseline, "ratio_to_baseline": total / baseline }),
    );
    server.stop().await;
    db.drop_now().await;
    Ok(())
}
