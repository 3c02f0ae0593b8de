//! Requisition numbers issued per second: `writers` concurrent HTTP clients each issuing numbers
//! for new, distinct encounters (`POST /api/v1/requisitions`) for `seconds`, against an in-process
//! server; the answer's p50/p99 latency. Baseline in the same run: the same number of writers
//! inserting plain `(number, encounter)` rows into a bare table with a primary key on the number,
//! one autocommitted row per request (SQLite: one transaction on the writer per row).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use careledger_domain::requisitions::RequisitionKey;
use careledger_store::{Backend, EventStore, sql_exec, sql_fetch_one};
use serde_json::json;
use uuid::Uuid;

use crate::appends::measure;
use crate::service::{FreshDb, SECRET, busy_cpu_ms, figure, percentile, process_cpu_ms, serve};

const SCOPE: &str = "service_request:write service_request:read";
/// The figure the issue asks for.
const TARGET_PER_S: u32 = 5_000;

pub async fn run(backend: &str, pg_admin: &str, writers: usize, seconds: f64) -> Result<(), String> {
    let db = FreshDb::new(backend, pg_admin).await?;
    let server = serve(&db.url).await?;
    let client =
        reqwest::Client::builder().pool_max_idle_per_host(writers.max(1)).build().map_err(|e| e.to_string())?;
    // parsed once, as the token's header: the load generator's own work is not the server's
    let url: reqwest::Url =
        format!("http://{}/api/v1/requisitions", server.addr).parse().map_err(|e| format!("{e}"))?;
    let token = careledger_gateway::auth::Keys::new(SECRET)
        .mint("bench", SCOPE, Some("bench-le"), 24 * 3600)
        .map_err(|e| e.to_string())?;
    let auth = reqwest::header::HeaderValue::try_from(format!("Bearer {token}")).map_err(|e| e.to_string())?;

    let latencies = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (l, f) = (latencies.clone(), failures.clone());
    let (cpu_before, process_before) = (busy_cpu_ms(), process_cpu_ms());
    let issued = measure(writers, seconds, move |_, _| {
        let (client, url, auth, latencies, failures) =
            (client.clone(), url.clone(), auth.clone(), l.clone(), f.clone());
        async move {
            let body = format!(
                r#"{{"encounter_id":"{}","entity_type":"service_request","entity_id":"{}"}}"#,
                Uuid::new_v4(),
                Uuid::new_v4()
            );
            let sent = Instant::now();
            let r = client
                .post(url)
                .header(reqwest::header::AUTHORIZATION, auth)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let created = r.status() == reqwest::StatusCode::CREATED;
            // the body is part of the answer: read it before the clock stops
            let _ = r.bytes().await;
            let ms = sent.elapsed().as_secs_f64() * 1000.0;
            latencies.lock().map_err(|e| e.to_string())?.push(ms);
            if !created {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(usize::from(created))
        }
    })
    .await?;
    let cpu_ms = cpu_before.zip(busy_cpu_ms()).map(|(before, after)| after - before);
    let process_ms = process_before.zip(process_cpu_ms()).map(|(before, after)| after - before);
    let failed = failures.load(std::sync::atomic::Ordering::Relaxed);
    let numbers = count(&server.state.store, "SELECT COUNT(*) FROM unique_keys WHERE scope = 'requisition'").await?;

    let baseline = baseline(&server.state.store, writers, seconds).await?;
    let mut latencies = latencies.lock().map_err(|e| e.to_string())?.clone();
    let common = json!({ "backend": backend, "writers": writers, "seconds": seconds, "issued": numbers,
                         "failed": failed, "command": "IssueRequisition over HTTP, new encounters" });
    let mut extra = common.clone();
    extra["target"] = json!(TARGET_PER_S);
    extra["baseline_plain_insert_rows_per_s"] = json!(baseline);
    extra["ratio_to_baseline"] = json!(issued / baseline);
    figure("requisitions", "requisitions_issued", issued, "requisitions/s", extra);
    figure("requisitions", "issue_latency_p50", percentile(&mut latencies, 50.0), "ms", common.clone());
    figure("requisitions", "issue_latency_p99", percentile(&mut latencies, 99.0), "ms", common.clone());
    if let Some(cpu_ms) = cpu_ms {
        // the requests answered by the end of the measured window (the count above may include
        // a few issued as it closed)
        let answered = latencies.len().max(1) as f64;
        figure("requisitions", "machine_cpu_per_requisition", cpu_ms * 1000.0 / answered, "us", common.clone());
        if let Some(process_ms) = process_ms {
            figure("requisitions", "process_cpu_per_requisition", process_ms * 1000.0 / answered, "us", common);
        }
    }
    server.stop().await;
    db.drop_now().await;
    if failed > 0 {
        return Err(format!("{failed} requests were not answered 201"));
    }
    Ok(())
}

async fn count(store: &EventStore, sql: &'static str) -> Result<i64, String> {
    let mut conn = store.db().acquire().await.map_err(|e| e.to_string())?;
    sql_fetch_one!(conn.exec(), sql, [], |row| row.try_get::<i64, _>(0)).map_err(|e| e.to_string())
}

/// Rows per second of the plain inserts, from `writers` tasks for `seconds`.
async fn baseline(store: &EventStore, writers: usize, seconds: f64) -> Result<f64, String> {
    let mut tx = store.db().begin().await.map_err(|e| e.to_string())?;
    sql_exec!(
        tx.exec(),
        "CREATE TABLE bench_requisitions (requisition TEXT PRIMARY KEY, encounter_id TEXT NOT NULL)",
        []
    )
    .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    let key = RequisitionKey::default();
    let store = store.clone();
    measure(writers, seconds, move |_, _| {
        let (store, key) = (store.clone(), key.clone());
        async move {
            let encounter = Uuid::new_v4().to_string();
            let number = key.number(&encounter, "").text();
            let sql = "INSERT INTO bench_requisitions (requisition, encounter_id) VALUES ($1, $2)";
            match store.backend() {
                // one statement, committing on its own: what an append is on PostgreSQL
                Backend::Postgres => {
                    let mut conn = store.db().acquire().await.map_err(|e| e.to_string())?;
                    sql_exec!(conn.exec(), sql, [number, encounter]).map_err(|e| e.to_string())?;
                }
                Backend::Sqlite => {
                    let mut tx = store.db().begin().await.map_err(|e| e.to_string())?;
                    sql_exec!(tx.exec(), sql, [number, encounter]).map_err(|e| e.to_string())?;
                    tx.commit().await.map_err(|e| e.to_string())?;
                }
            }
            Ok(1)
        }
    })
    .await
}
