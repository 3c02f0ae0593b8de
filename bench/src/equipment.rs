//! RegisterEquipment over HTTP from concurrent clients (closed loop: each client sends its next
//! registration when the last is answered), each with distinct external_ids: registrations per
//! second, answer latency p50/p99, and how long after its 201 each registration is visible in the
//! read models (what a reader using `?after_position=` waits: every projector has applied it).
//! The baseline, measured in the same run with the same clients' concurrency: plain autocommitted
//! INSERTs of equivalent rows (id, legal entity, external_id unique per legal entity, the JSON
//! body) into a bare table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use careledger_gateway::auth::Keys;
use careledger_projections::registry::{EquipmentFilter, RegistryQueries};
use careledger_store::{EventStore, sql_exec};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::appends::measure;
use crate::service::{FreshDb, SECRET, figure, percentile, serve};

/// Divisions the registrations are spread over.
const DIVISIONS: usize = 4;

fn body(division_id: &str, external_id: &str) -> Value {
    json!({
        "division_id": division_id,
        "type": "23143534",
        "external_id": external_id,
        "name": "Ultrasound scanner",
        "serial_number": "SN-0001",
        "manufacturer": "GlobalMed, Inc",
        "model_number": "GM-7",
        "lot_number": "RZ12345678",
        "udi": [{ "type": "default", "value": "IMEI 49015420323751" }],
        "manufacture_date": "2024-02-01",
        "expiration_date": "2034-02-01",
    })
}

/// Registers the legal entity and its divisions the clients register equipment in.
async fn reference_data(client: &reqwest::Client, base: &str) -> Result<(String, Vec<String>), String> {
    let admin = Keys::new(SECRET).mint("bench-admin", "legal_entity:write division:write", None, 3600)?;
    let legal_entity = Uuid::now_v7().to_string();
    let post = |path: &'static str, body: Value| {
        let request = client.post(format!("{base}{path}")).bearer_auth(&admin).json(&body);
        async move {
            let r = request.send().await.map_err(|e| e.to_string())?;
            if r.status().is_success() {
                Ok(())
            } else {
                Err(format!("{path}: {}", r.text().await.unwrap_or_default()))
            }
        }
    };
    post(
        "/api/v1/legal-entities",
        json!({ "id": legal_entity, "name": "Bench clinic", "edrpou": "12345678", "type": "PRIMARY_CARE" }),
    )
    .await?;
    let mut divisions = Vec::new();
    for i in 0..DIVISIONS {
        let id = Uuid::now_v7().to_string();
        post(
            "/api/v1/divisions",
            json!({ "id": id, "legal_entity_id": legal_entity, "name": format!("Ward {i}"), "type": "CLINIC" }),
        )
        .await?;
        divisions.push(id);
    }
    Ok((legal_entity, divisions))
}

pub async fn run(backend: &str, pg_admin: &str, clients: usize, seconds: f64) -> Result<(), String> {
    let db = FreshDb::new(backend, pg_admin).await?;
    let server = serve(&db.url).await?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().map_err(|e| e.to_string())?;
    let base = format!("http://{}", server.addr);
    let (legal_entity, divisions) = reference_data(&client, &base).await?;
    let token =
        Keys::new(SECRET).mint("bench-user", "equipment:write equipment:read", Some(&legal_entity), 24 * 3600)?;

    let latencies = Arc::new(Mutex::new(Vec::new()));
    let lags = Arc::new(Mutex::new(Vec::new()));
    let waits = Arc::new(Mutex::new(Vec::new()));
    let projections = server.state.projections.clone();
    let (divisions, shared) = (Arc::new(divisions), (client.clone(), base.clone(), token.clone()));
    let (l, g, w) = (latencies.clone(), lags.clone(), waits.clone());
    let rate = measure(clients, seconds, move |c, n| {
        let (client, base, token) = shared.clone();
        let (latencies, lags, waits, projections) = (l.clone(), g.clone(), w.clone(), projections.clone());
        let division = divisions[(c + n) % DIVISIONS].clone();
        async move {
            let sent = Instant::now();
            let r = client
                .post(format!("{base}/api/v1/equipment"))
                .bearer_auth(&token)
                .json(&body(&division, &format!("EQ-{c}-{n}")))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let answered = Instant::now();
            if r.status() != reqwest::StatusCode::CREATED {
                return Err(format!("registration answered {}: {}", r.status(), r.text().await.unwrap_or_default()));
            }
            latencies.lock().await.push((answered - sent).as_secs_f64() * 1000.0);
            let position: i64 = r
                .headers()
                .get("careledger-position")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .ok_or("no careledger-position header")?;
            // measured apart, so that the client sends its next registration meanwhile
            waits.lock().await.push(tokio::spawn(async move {
                if projections.wait_for(position, Duration::from_secs(30)).await {
                    lags.lock().await.push(answered.elapsed().as_secs_f64() * 1000.0);
                }
            }));
            Ok(1)
        }
    })
    .await?;
    for wait in std::mem::take(&mut *waits.lock().await) {
        let _ = wait.await;
    }
    let registrations = latencies.lock().await.len();
    let (_, visible) = RegistryQueries(server.state.store.db())
        .equipment_list(&legal_entity, &EquipmentFilter::default(), 1, 0)
        .await
        .map_err(|e| e.to_string())?;
    if visible != registrations as i64 {
        return Err(format!("{registrations} registrations but {visible} in the read model"));
    }

    let baseline = plain_inserts(&server.state.store, clients, seconds).await?;
    let mut latencies = latencies.lock().await.clone();
    let mut lags = lags.lock().await.clone();
    let common = json!({ "backend": backend, "clients": clients, "seconds": seconds, "registrations": registrations,
                         "command": "RegisterEquipment over HTTP" });
    let mut extra = common.clone();
    extra["target"] = json!(2000);
    extra["baseline_plain_insert_rows_per_s"] = json!(baseline);
    extra["ratio_to_baseline"] = json!(rate / baseline);
    figure("equipment", "register_equipment", rate, "registrations/s", extra);
    figure("equipment", "register_latency_p50", percentile(&mut latencies, 50.0), "ms", common.clone());
    let mut extra = common.clone();
    extra["target_ms"] = json!(50);
    figure("equipment", "register_latency_p99", percentile(&mut latencies, 99.0), "ms", extra);
    figure("equipment", "read_model_lag_p50", percentile(&mut lags, 50.0), "ms", common.clone());
    let mut extra = common;
    extra["target_ms"] = json!(100);
    figure("equipment", "read_model_lag_p99", percentile(&mut lags, 99.0), "ms", extra);
    server.stop().await;
    db.drop_now().await;
    Ok(())
}

/// The baseline: rows like a registration's (id, legal entity, external_id unique within it, the
/// request's JSON), one autocommitted INSERT each, from as many concurrent writers. Rows per second.
async fn plain_inserts(store: &EventStore, writers: usize, seconds: f64) -> Result<f64, String> {
    let mut tx = store.db().begin().await.map_err(|e| e.to_string())?;
    sql_exec!(
        tx.exec(),
        "CREATE TABLE bench_equipment_plain (id TEXT PRIMARY KEY, legal_entity_id TEXT NOT NULL,
             external_id TEXT NOT NULL, data TEXT NOT NULL, UNIQUE (legal_entity_id, external_id))",
        []
    )
    .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    let store = store.clone();
    let legal_entity = Uuid::now_v7().to_string();
    measure(writers, seconds, move |w, n| {
        let (store, legal_entity) = (store.clone(), legal_entity.clone());
        async move {
            let external_id = format!("EQ-{w}-{n}");
            let data = body(&legal_entity, &external_id).to_string();
            let mut tx = store.db().begin().await.map_err(|e| e.to_string())?;
            sql_exec!(
                tx.exec(),
                "INSERT INTO bench_equipment_plain (id, legal_entity_id, external_id, data) VALUES ($1, $2, $3, $4)",
                [Uuid::now_v7().to_string(), legal_entity.as_str(), external_id.as_str(), data.as_str()]
            )
            .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok(1)
        }
    })
    .await
}
