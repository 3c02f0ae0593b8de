//! The sync's import (issue #21): a node's work as one FHIR `transaction` Bundle posted to
//! `POST /fhir` — N new insurees numbered with codes the server reserved for the node, their
//! policies, and M claims of 5 lines each with their `ClaimResponse` (entered on the node) — the
//! time until it is answered, and until the read models hold it. The baseline, in the same run:
//! the very events the import appended, appended again to a fresh database of the same backend
//! with the plain append path (the same streams, one append). Target: ≤ 10 s for 10,000 claims
//! with 2,000 insurees, on either backend.

use std::time::{Duration, Instant};

use careledger_events::NewEvent;
use careledger_gateway::auth::Keys;
use careledger_store::{AppendRequest, ExpectedVersion, StreamAppend};
use chrono::{Days, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::claims::{Client, Draw, Size, claim, reference};
use crate::service::{FreshDb, SECRET, figure, open, serve};

/// The node's FHIR system.
const NODE: &str = "urn:uuid:0b7c6a52-6f38-4c57-9c9e-0d1f6c1a0b1e";
const CODE_TYPE: &str = "https://openimis.github.io/openimis_fhir_r4_ig/CodeSystem/openimis-identifiers";

fn code_identifier(value: &str) -> Value {
    json!({ "type": { "coding": [{ "system": CODE_TYPE, "code": "Code" }] }, "value": value })
}

fn entry(kind: &str, id: Uuid, resource: Value) -> Value {
    json!({ "resource": resource, "request": { "method": "PUT", "url": format!("{kind}?identifier={NODE}|{id}") } })
}

/// A claim body of the claims benchmark as the node's `Claim` and its `ClaimResponse` (entered).
fn claim_entries(id: Uuid, body: &Value) -> [Value; 2] {
    let mut sequence = 0;
    let mut items = vec![];
    for (kind, lines) in [("item", &body["items"]), ("service", &body["services"])] {
        for line in lines.as_array().into_iter().flatten() {
            sequence += 1;
            items.push(json!({ "sequence": sequence, "category": { "text": kind },
                "productOrService": { "text": line["code"] }, "quantity": { "value": line["qty_provided"] },
                "unitPrice": { "value": line["price_asked"] } }));
        }
    }
    let claim = json!({
        "resourceType": "Claim", "id": id,
        "identifier": [{ "system": NODE, "value": id }, code_identifier(body["code"].as_str().unwrap_or_default())],
        "status": "active", "use": "claim", "type": { "coding": [{ "code": "professional" }] },
        "patient": { "identifier": { "value": body["insuree"] } },
        "provider": { "identifier": { "value": body["health_facility"] } },
        "billablePeriod": { "start": body["date_from"] }, "created": body["date_claimed"],
        "diagnosis": [{ "sequence": 1, "diagnosisCodeableConcept": { "coding": [{ "code": body["icd"] }] } }],
        "item": items,
    });
    let response = json!({
        "resourceType": "ClaimResponse", "id": id, "identifier": [{ "system": NODE, "value": id }],
        "request": { "identifier": { "system": NODE, "value": id } }, "outcome": "queued",
        "total": [{ "category": { "coding": [{ "code": "2" }] }, "amount": { "value": 0 } }],
    });
    [entry("Claim", id, claim), entry("ClaimResponse", id, response)]
}

pub async fn run(backend: &str, pg_admin: &str, size: Size) -> Result<(), String> {
    let db = FreshDb::new(backend, pg_admin).await?;
    let server = serve(&db.url).await?;
    let base = format!("http://{}", server.addr);
    let client = Client {
        http: reqwest::Client::builder().timeout(Duration::from_secs(600)).build().map_err(|e| e.to_string())?,
        base: base.clone(),
        token: Keys::new(SECRET).mint("bench-admin", "reference:write 111101 111102 101101 101201", None, 24 * 3600)?,
    };

    // the central server's register, and codes reserved for the node (not timed)
    reference(&client, Size { insurees: 0, ..size }).await?;
    let batch = json!({ "holder_type": 2, "holder_code": "E01", "number": size.insurees });
    client.post("/api/v1/code-batches", &batch).await?;
    let reserve = json!({ "holder_type": 2, "holder_code": "E01", "number": size.insurees, "for_server": NODE });
    let (reserved, _) = client.post("/api/v1/codes/reservations", &reserve).await?;
    let codes: Vec<String> = reserved["data"]["codes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    if codes.len() != size.insurees {
        return Err(format!("{} codes reserved, not {}", codes.len(), size.insurees));
    }

    // the node's work as one Bundle
    let today = Utc::now().date_naive();
    let mut entries = Vec::with_capacity(2 * size.insurees + 2 * size.claims);
    for (i, chfid) in codes.iter().enumerate() {
        let (insuree, policy) = (Uuid::now_v7(), Uuid::now_v7());
        let birth = today - Days::new(365 * (1 + (i % 80) as u64));
        entries.push(entry(
            "Patient",
            insuree,
            json!({
                "resourceType": "Patient", "id": insuree,
                "identifier": [{ "system": NODE, "value": insuree }, code_identifier(chfid)],
                "name": [{ "family": format!("Family{i}"), "given": ["Given"] }],
                "gender": if i % 2 == 0 { "male" } else { "female" }, "birthDate": birth,
            }),
        ));
        entries.push(entry(
            "Coverage",
            policy,
            json!({
                "resourceType": "Coverage", "id": policy, "identifier": [{ "system": NODE, "value": policy }],
                "status": "active", "beneficiary": { "identifier": { "system": NODE, "value": insuree } },
                "payor": [{ "display": "the scheme" }],
                "period": { "start": today - Days::new(400), "end": today + Days::new(400) },
                "class": [{ "type": { "coding": [{ "code": "plan" }] }, "value": "BENCH" }],
            }),
        ));
    }
    let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
    for n in 0..size.claims {
        entries.extend(claim_entries(Uuid::now_v7(), &claim(&mut draw, size, &codes, n)));
    }
    let count = entries.len();
    let bundle = json!({ "resourceType": "Bundle", "type": "transaction",
                         "identifier": { "system": NODE, "value": "bench-import" }, "entry": entries });
    let body = serde_json::to_vec(&bundle).map_err(|e| e.to_string())?;
    let peer = Keys::new(SECRET).mint(NODE, "sync:read sync:write", None, 24 * 3600)?;
    let before = server.state.store.head().await.map_err(|e| e.to_string())?;

    // the import: answered, then held by the read models
    let started = Instant::now();
    let answer = reqwest::Client::new()
        .post(format!("{base}/fhir"))
        .bearer_auth(&peer)
        .header("content-type", "application/fhir+json")
        .body(body.clone())
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = answer.status();
    let answered: Value = answer.json().await.map_err(|e| e.to_string())?;
    let import_s = started.elapsed().as_secs_f64();
    if !status.is_success() {
        return Err(format!(
            "the import answered {status}: {}",
            answered.to_string().chars().take(2000).collect::<String>()
        ));
    }
    let created = answered["entry"]
        .as_array()
        .map_or(0, |e| e.iter().filter(|e| e["response"]["status"] == "201 Created").count());
    if created != count {
        return Err(format!("{created} of {count} entries created"));
    }
    let head = server.state.store.head().await.map_err(|e| e.to_string())?;
    if !server.state.projections.wait_for(head, Duration::from_secs(600)).await {
        return Err("the read models did not catch up".into());
    }
    let caught_up_s = started.elapsed().as_secs_f64();

    // the baseline: the same events, the same streams, one plain append to a fresh database
    let mut appended = Vec::new();
    let mut after = before;
    loop {
        let page = server.state.store.read_all(after, 10_000).await.map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = last.position;
        appended.extend(page);
    }
    let mut streams: Vec<StreamAppend> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for e in &appended {
        let new = NewEvent {
            event_id: Uuid::now_v7(),
            event_type: e.event_type.clone(),
            data: e.data.clone(),
            metadata: e.metadata.clone(),
        };
        match at.get(&e.stream) {
            Some(&i) => streams[i].events.push(new),
            None => {
                at.insert(e.stream.clone(), streams.len());
                streams.push(StreamAppend {
                    stream: e.stream.clone(),
                    expected: ExpectedVersion::Any,
                    events: vec![new],
                });
            }
        }
    }
    let plain = FreshDb::new(backend, pg_admin).await?;
    let store = open(&plain.url).await?;
    let request = AppendRequest { streams, claims: vec![], idempotency: None };
    let started = Instant::now();
    store.append(&request).await.map_err(|e| e.to_string())?;
    let baseline_s = started.elapsed().as_secs_f64();
    drop(store);
    plain.drop_now().await;

    let extra = json!({ "backend": backend, "claims": size.claims, "lines_per_claim": 5, "insurees": size.insurees,
                        "entries": count, "bytes": body.len(), "events": appended.len(), "target_s": 10,
                        "baseline_plain_append_s": baseline_s, "ratio_to_baseline": import_s / baseline_s });
    figure("sync_import", "import_answered", import_s, "s", extra.clone());
    figure("sync_import", "import_in_read_models", caught_up_s, "s", extra);
    server.stop().await;
    db.drop_now().await;
    Ok(())
}
