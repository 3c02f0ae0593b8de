//! SubmitClaim end to end over HTTP against a realistic register: facilities, items and services
//! with every facility's price list, insurees with policies of one product covering the register.
//! C clients submit N claims of 5 lines (created beforehand, not timed), one claim a request:
//! claims submitted per second, answer latency p50/p99, and read-model lag (from a submission's
//! answer until every projector, the claims-by-stage report's included, has applied it; and from
//! the last answer until the read models hold every submission). The run fails unless the
//! per-stage report counts every claim submitted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use careledger_gateway::auth::Keys;
use careledger_projections::claims::ClaimQueries;
use chrono::{Days, Utc};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::service::{FreshDb, SECRET, figure, percentile, serve};

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub facilities: usize,
    /// Items and services together (70 % items).
    pub register: usize,
    pub insurees: usize,
    pub claims: usize,
    pub clients: usize,
}

impl Size {
    pub fn smoke() -> Size {
        Size { facilities: 4, register: 40, insurees: 300, claims: 200, clients: 4 }
    }
}

/// A small deterministic generator (xorshift): the same register and claims on every run.
pub(crate) struct Draw(pub(crate) u64);

impl Draw {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn code(kind: &str, i: usize) -> String {
    format!("{kind}{i:05}")
}

pub(crate) struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) token: String,
}

impl Client {
    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<(Value, i64), String> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let position = r
            .headers()
            .get("careledger-position")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body: Value = r.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{path} answered {status}: {body}"));
        }
        Ok((body, position))
    }

    /// Upserts entries in requests of `chunk`; the last position.
    async fn upsert(&self, path: &str, entries: Vec<Value>, chunk: usize) -> Result<i64, String> {
        let mut last = 0;
        for part in entries.chunks(chunk) {
            last = self.post(path, &json!({ "entries": part })).await?.1;
        }
        Ok(last)
    }
}

/// The register, price lists, insurees, the product and policies; returns the insurees' CHFIDs.
pub(crate) async fn reference(client: &Client, size: Size) -> Result<(Vec<String>, i64), String> {
    let items = size.register * 7 / 10;
    let services = size.register - items;
    let facilities: Vec<Value> = (0..size.facilities)
        .map(|f| json!({ "code": code("HF", f), "name": format!("Facility {f}"), "care_type": "B" }))
        .collect();
    client.upsert("/api/v1/health-facilities", facilities, 1000).await?;
    let entry =
        |kind: &str, i: usize| json!({ "code": code(kind, i), "name": format!("{kind} {i}"), "price": 1 + i % 50 });
    client.upsert("/api/v1/medical-items", (0..items).map(|i| entry("I", i)).collect(), 1000).await?;
    client.upsert("/api/v1/medical-services", (0..services).map(|i| entry("S", i)).collect(), 1000).await?;
    let listed = |kind: &str, n: usize| {
        (0..n).map(|i| json!({ "code": code(kind, i), "valid_from": "2020-01-01" })).collect::<Vec<_>>()
    };
    let lists: Vec<Value> = (0..size.facilities)
        .map(|f| json!({ "health_facility": code("HF", f), "items": listed("I", items), "services": listed("S", services) }))
        .collect();
    client.upsert("/api/v1/price-lists", lists, 10).await?;
    let covered = |kind: &str, n: usize| (0..n).map(|i| json!({ "code": code(kind, i) })).collect::<Vec<_>>();
    let product = json!({ "code": "BENCH", "name": "Bench product", "items": covered("I", items), "services": covered("S", services) });
    client.upsert("/api/v1/products", vec![product], 1).await?;
    let today = Utc::now().date_naive();
    let mut chfids = Vec::with_capacity(size.insurees);
    let mut insurees = Vec::with_capacity(size.insurees);
    let mut policies = Vec::with_capacity(size.insurees);
    for i in 0..size.insurees {
        let (id, chfid) = (Uuid::now_v7(), format!("{:09}", 100_000_000 + i));
        let birth = today - Days::new(365 * (1 + (i % 80) as u64));
        let gender = if i % 2 == 0 { "M" } else { "F" };
        insurees.push(json!({ "uuid": id, "chfid": chfid, "birth_date": birth, "gender": gender }));
        policies.push(json!({ "uuid": Uuid::now_v7(), "insuree": id, "product": "BENCH",
                              "effective_date": today - Days::new(400), "expiry_date": today + Days::new(400) }));
        chfids.push(chfid);
    }
    client.upsert("/api/v1/insurees", insurees, 5000).await?;
    let last = client.upsert("/api/v1/policies", policies, 5000).await?;
    Ok((chfids, last))
}

/// A claim of 5 lines (3 items, 2 services) at a facility for an insuree.
pub(crate) fn claim(draw: &mut Draw, size: Size, chfids: &[String], n: usize) -> Value {
    let items = size.register * 7 / 10;
    let services = size.register - items;
    let today = Utc::now().date_naive();
    let line = |kind: &str, i: usize| json!({ "code": code(kind, i), "qty_provided": 1, "price_asked": 1 + i % 50 });
    json!({
        "code": format!("B{n:07}"),
        "health_facility": code("HF", draw.below(size.facilities)),
        "insuree": chfids[draw.below(chfids.len())],
        "date_from": today - Days::new(1 + draw.below(30) as u64),
        "date_claimed": today,
        "icd": "A00",
        "items": [line("I", draw.below(items)), line("I", draw.below(items)), line("I", draw.below(items))],
        "services": [line("S", draw.below(services)), line("S", draw.below(services))],
    })
}

pub async fn run(backend: &str, pg_admin: &str, size: Size) -> Result<(), String> {
    let db = FreshDb::new(backend, pg_admin).await?;
    let server = serve(&db.url).await?;
    let scope = "reference:write 111001 111002 111007";
    let client = Arc::new(Client {
        http: reqwest::Client::builder().pool_max_idle_per_host(256).build().map_err(|e| e.to_string())?,
        base: format!("http://{}", server.addr),
        token: Keys::new(SECRET).mint("bench-admin", scope, None, 24 * 3600)?,
    });
    let projections = server.state.projections.clone();

    let started = Instant::now();
    let (chfids, last) = reference(&client, size).await?;
    if !projections.wait_for(last, Duration::from_secs(600)).await {
        return Err("the reference data did not reach the read models".into());
    }
    let reference_s = started.elapsed().as_secs_f64();

    // claims to submit, created by the same clients (not timed in the figures)
    let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
    let bodies: Vec<Value> = (0..size.claims).map(|n| claim(&mut draw, size, &chfids, n)).collect();
    let bodies = Arc::new(bodies);
    let ids = Arc::new(Mutex::new(vec![String::new(); size.claims]));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..size.clients {
        let (client, bodies, ids, next) = (client.clone(), bodies.clone(), ids.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(n) else { return Ok::<_, String>(()) };
                let (answer, _) = client.post("/api/v1/claims", body).await?;
                ids.lock().await[n] = answer["data"]["uuid"].as_str().unwrap_or_default().to_string();
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let head = server.state.store.head().await.map_err(|e| e.to_string())?;
    projections.wait_for(head, Duration::from_secs(600)).await;

    // the measured part: one submission a request from every client
    let ids = Arc::new(ids.lock().await.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(size.claims)));
    let lags = Arc::new(Mutex::new(Vec::with_capacity(size.claims)));
    let waits = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let last_position = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let submit_started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..size.clients {
        let (client, ids, next) = (client.clone(), ids.clone(), next.clone());
        let (latencies, lags, waits, refused) = (latencies.clone(), lags.clone(), waits.clone(), refused.clone());
        let (projections, last_position) = (projections.clone(), last_position.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(n) else { return Ok::<_, String>(()) };
                let sent = Instant::now();
                let (answer, position) = client.post("/api/v1/claims/submit", &json!({ "uuids": [id] })).await?;
                let answered = Instant::now();
                latencies.lock().await.push((answered - sent).as_secs_f64() * 1000.0);
                if answer["data"][0]["done"] != true {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                last_position.fetch_max(position, Ordering::Relaxed);
                let (projections, lags) = (projections.clone(), lags.clone());
                waits.lock().await.push(tokio::spawn(async move {
                    if projections.wait_for(position, Duration::from_secs(60)).await {
                        lags.lock().await.push(answered.elapsed().as_secs_f64() * 1000.0);
                    }
                }));
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let submit_s = submit_started.elapsed().as_secs_f64();
    let last_answer = Instant::now();
    projections.wait_for(last_position.load(Ordering::Relaxed), Duration::from_secs(120)).await;
    let caught_up_ms = last_answer.elapsed().as_secs_f64() * 1000.0;
    for w in std::mem::take(&mut *waits.lock().await) {
        let _ = w.await;
    }
    let refused = refused.load(Ordering::Relaxed);
    if refused > 0 {
        return Err(format!("{refused} submissions were refused"));
    }
    let report = ClaimQueries(server.state.store.db()).by_stage(None, None, None).await.map_err(|e| e.to_string())?;
    let submitted: i64 = report.iter().filter(|r| r.status == 1 || r.status == 4).map(|r| r.claims).sum();
    if submitted != size.claims as i64 {
        return Err(format!("{} claims submitted but the report counts {submitted}", size.claims));
    }
    let checked = report.iter().find(|r| r.status == 4).map_or(0, |r| r.claims);

    let mut latencies = latencies.lock().await.clone();
    let mut lags = lags.lock().await.clone();
    let common = json!({ "backend": backend, "clients": size.clients, "claims": size.claims, "lines_per_claim": 5,
                         "facilities": size.facilities, "register": size.register, "insurees": size.insurees,
                         "checked": checked, "command": "SubmitClaim over HTTP, one claim a request" });
    let mut extra = common.clone();
    extra["target"] = json!(1000);
    figure("claims", "submit_claims", size.claims as f64 / submit_s, "claims/s", extra);
    figure("claims", "submit_latency_p50", percentile(&mut latencies, 50.0), "ms", common.clone());
    let mut extra = common.clone();
    extra["target_ms"] = json!(50);
    figure("claims", "submit_latency_p99", percentile(&mut latencies, 99.0), "ms", extra);
    figure("claims", "read_model_lag_p50", percentile(&mut lags, 50.0), "ms", common.clone());
    figure("claims", "read_model_lag_p99", percentile(&mut lags, 99.0), "ms", common.clone());
    let mut extra = common.clone();
    extra["target_ms"] = json!(1000);
    figure("claims", "read_model_caught_up_after_last", caught_up_ms, "ms", extra);
    figure("claims", "reference_data_loaded", reference_s, "s", common);
    server.stop().await;
    db.drop_now().await;
    Ok(())
}
