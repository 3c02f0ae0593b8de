//! The sync's export (issue #21): `GET /fhir/$changes` of a node's work, 10,000 claims of 5 lines
//! for 2,000 insurees with their policies, read a Bundle at a time from position 0 until a Bundle
//! comes back empty; then a re-sync with nothing new (from the last cursor). The baseline, in the
//! same run: reading the same log with `read_all` in pages of 1,000, what any export must at least
//! do. Targets: the export ≤ 3 s, a re-sync with nothing new ≤ 100 ms.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use careledger_gateway::auth::Keys;
use serde_json::{Value, json};

use crate::claims::{Client, Draw, Size, claim, reference};
use crate::service::{FreshDb, SECRET, figure, percentile, serve};

/// Resources asked per Bundle (the most `$changes` gives).
const COUNT: usize = 1000;

pub async fn run(backend: &str, pg_admin: &str, size: Size) -> Result<(), String> {
    let db = FreshDb::new(backend, pg_admin).await?;
    let server = serve(&db.url).await?;
    let base = format!("http://{}", server.addr);
    let client = Arc::new(Client {
        http: reqwest::Client::builder().pool_max_idle_per_host(256).build().map_err(|e| e.to_string())?,
        base: base.clone(),
        token: Keys::new(SECRET).mint("bench-admin", "reference:write 111001 111002", None, 24 * 3600)?,
    });
    let peer = Keys::new(SECRET).mint("bench-peer", "sync:read", None, 24 * 3600)?;

    // the node's work (not timed): the register, insurees with policies, claims entered
    let (chfids, _) = reference(&client, size).await?;
    let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
    let bodies = Arc::new((0..size.claims).map(|n| claim(&mut draw, size, &chfids, n)).collect::<Vec<Value>>());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..size.clients {
        let (client, bodies, next) = (client.clone(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(n) else { return Ok::<_, String>(()) };
                client.post("/api/v1/claims", body).await?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let head = server.state.store.head().await.map_err(|e| e.to_string())?;
    if !server.state.projections.wait_for(head, Duration::from_secs(600)).await {
        return Err("the read models did not catch up".into());
    }

    // the export: every Bundle from position 0 until one comes back empty
    let http = reqwest::Client::new();
    let get = |url: String| {
        let (http, peer) = (http.clone(), peer.clone());
        async move {
            let r = http.get(url).bearer_auth(peer).send().await.map_err(|e| e.to_string())?;
            let status = r.status();
            let body = r.bytes().await.map_err(|e| e.to_string())?;
            let bundle: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!("$changes answered {status}: {bundle}"));
            }
            Ok::<_, String>((bundle, body.len()))
        }
    };
    let mut url = format!("{base}/fhir/$changes?_since=0&_count={COUNT}");
    let (mut entries, mut bundles, mut bytes, mut register) = (0usize, 0usize, 0usize, 0usize);
    let started = Instant::now();
    loop {
        let (bundle, size) = get(url.clone()).await?;
        bytes += size;
        let n = bundle["entry"].as_array().map_or(0, Vec::len);
        // the register the claims were checked against goes too (to a node)
        register += bundle["entry"]
            .as_array()
            .map_or(0, |e| e.iter().filter(|e| e["resource"]["code"]["coding"][0]["code"] == "register-entry").count());
        url = bundle["link"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["relation"] == "next"))
            .and_then(|l| l["url"].as_str())
            .ok_or("a Bundle without a next link")?
            .to_string();
        if n == 0 {
            break;
        }
        entries += n;
        bundles += 1;
    }
    let export_s = started.elapsed().as_secs_f64();
    // every insuree, policy, claim and claim response of the node's work
    let expected = 2 * size.insurees + 2 * size.claims + register;
    if entries != expected {
        return Err(format!("the export held {entries} entries, not {expected}"));
    }

    // a re-sync with nothing new, from the last cursor
    let mut resync = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let (bundle, _) = get(url.clone()).await?;
        resync.push(started.elapsed().as_secs_f64() * 1000.0);
        if bundle.get("entry").is_some() {
            return Err("a re-sync with nothing new sent something".into());
        }
    }

    // the baseline: the same log read plainly, in pages of 1,000
    let started = Instant::now();
    let (mut after, mut events) = (0, 0usize);
    loop {
        let page = server.state.store.read_all(after, 1000).await.map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = last.position;
        events += page.len();
    }
    let baseline_s = started.elapsed().as_secs_f64();

    let common = json!({ "backend": backend, "claims": size.claims, "lines_per_claim": 5, "insurees": size.insurees,
                         "entries": entries, "register_entries": register, "bundles": bundles, "bytes": bytes, "events": events });
    let mut extra = common.clone();
    extra["target_s"] = json!(3);
    extra["baseline_read_all_s"] = json!(baseline_s);
    extra["ratio_to_baseline"] = json!(export_s / baseline_s);
    figure("sync_export", "export_all_changes", export_s, "s", extra);
    let mut extra = common;
    extra["target_ms"] = json!(100);
    figure("sync_export", "resync_nothing_new_p50", percentile(&mut resync.clone(), 50.0), "ms", extra.clone());
    figure("sync_export", "resync_nothing_new_max", percentile(&mut resync, 100.0), "ms", extra);
    server.stop().await;
    db.drop_now().await;
    Ok(())
}
