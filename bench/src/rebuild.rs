//! Rebuild of all read models from a log of about a million events: batches generated over
//! HTTP, then assignments and control-number links appended straight to the store. Each read
//! model's catch-up rate (events/s from position 0) is a figure of its own, then the total.

use std::time::{Duration, Instant};

use careledger_events::codes::{CodeEvent, batch_stream};
use careledger_events::{DomainEvent, EventMetadata, NewEvent};
use careledger_projections::Projections;
use careledger_projections::codes::CodeQueries;
use careledger_store::{AppendRequest, ExpectedVersion};
use serde_json::json;
use uuid::Uuid;

use crate::service::{FreshDb, figure, generate_batch, serve};

pub async fn run(backend: &str, pg_admin: &str, events: usize) -> Result<(), String> {
    let db = FreshDb::new(backend, pg_admin).await?;
    let server = serve(&db.url).await?;
    let store = server.state.store.clone();
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    // half the events assign codes, half link control numbers: events/2 codes are needed
    let codes_needed = events / 2;
    let per_batch = 100_000.min(codes_needed.max(1));
    let mut batches = Vec::new();
    let build_started = Instant::now();
    while batches.len() * per_batch < codes_needed {
        let batch = generate_batch(&client, &base, 2, "EO-BENCH", per_batch).await?;
        batches.push(Uuid::parse_str(&batch).map_err(|e| e.to_string())?);
    }
    let head = store.head().await.map_err(|e| e.to_string())?;
    server.state.projections.wait_for(head, Duration::from_secs(600)).await;
    let metadata = EventMetadata {
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        actor: Default::default(),
        command: "Bench".into(),
        origin: None,
    };
    let mut appended = 0usize;
    for batch in &batches {
        let codes = CodeQueries(store.db()).all_codes(&batch.to_string()).await.map_err(|e| e.to_string())?;
        for chunk in codes.chunks(500) {
            let mut new = Vec::with_capacity(chunk.len() * 2);
            for (i, code) in chunk.iter().enumerate() {
                let assigned = CodeEvent::CodeAssigned {
                    batch_id: *batch,
                    code: code.clone(),
                    insuree_id: format!("i-{appended}-{i}"),
                    json_ext: None,
                };
                let linked = CodeEvent::ControlNumberLinked {
                    batch_id: *batch,
                    code: code.clone(),
                    control_number: format!("CN-{appended}-{i}"),
                };
                for e in [assigned, linked] {
                    new.push(NewEvent {
                        event_id: Uuid::now_v7(),
                        event_type: e.event_type().into(),
                        data: e.to_data(),
                        metadata: metadata.clone(),
                    });
                }
            }
            appended += new.len();
            store
                .append(&AppendRequest::single(batch_stream(*batch), ExpectedVersion::Any, new))
                .await
                .map_err(|e| e.to_string())?;
            if appended >= events {
                break;
            }
        }
        if appended >= events {
            break;
        }
    }
    let head = store.head().await.map_err(|e| e.to_string())?;
    server.state.projections.wait_for(head, Duration::from_secs(600)).await;
    let build = build_started.elapsed().as_secs_f64();
    let count = store.count().await.map_err(|e| e.to_string())?;
    server.stop().await;

    // rebuild with no server running, as `careledger projections rebuild` does
    let store = crate::service::open(&db.url).await?;
    let projections = Projections::new(store.clone(), careledger_projections::all());
    let started = Instant::now();
    for name in projections.names() {
        // each read model's own catch-up rate from position 0 (the audit read model's is the
        // one that must keep up with every event of every context)
        let one = Instant::now();
        projections.rebuild(name, &|_, _| {}).await.map_err(|e| e.to_string())?;
        let s = one.elapsed().as_secs_f64();
        figure(
            "rebuild",
            &format!("catch_up_{name}"),
            count as f64 / s,
            "events/s",
            json!({ "backend": backend, "events": count, "seconds": s }),
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    figure(
        "rebuild",
        "rebuild_all_read_models",
        seconds,
        "s",
        json!({ "backend": backend, "events": count, "events_per_s": count as f64 / seconds, "log_build_s": build }),
    );
    store.db().close().await;
    db.drop_now().await;
    Ok(())
}
