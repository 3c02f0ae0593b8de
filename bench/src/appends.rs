//! Raw append throughput of the event store (no HTTP): single-event appends and batches of 100,
//! each from `writers` concurrent writers on their own streams with an exact expected version,
//! against a plain INSERT of the same rows into a bare table from the same writers in the same run.
//! Then the catch-up read throughput of `read_all` over everything written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use careledger_events::{EventMetadata, NewEvent};
use careledger_store::{AppendRequest, EventStore, ExpectedVersion, StoreOptions, sql_exec};
use serde_json::json;
use uuid::Uuid;

use crate::service::{FreshDb, figure};

pub async fn run(backend: &str, pg_admin: &str, writers: usize, seconds: f64, committers: usize) -> Result<(), String> {
    let db = FreshDb::new(backend, pg_admin).await?;
    let mut options = StoreOptions::new(db.url.clone());
    options.max_connections = writers as u32 + 4;
    options.committers = committers.max(1);
    let store = EventStore::open(&options).await.map_err(|e| e.to_string())?;
    store.migrate().await.map_err(|e| e.to_string())?;
    let mut tx = store.db().begin().await.map_err(|e| e.to_string())?;
    sql_exec!(
        tx.exec(),
        "CREATE TABLE bench_plain (id TEXT PRIMARY KEY, stream TEXT NOT NULL, event_type TEXT NOT NULL, data TEXT NOT NULL)",
        []
    )
    .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;

    // the same single-event appends with every append in its own transaction, for the ratio of
    // group commit to one commit per append (PostgreSQL; SQLite has one writer either way)
    let mut own_transactions = None;
    if backend == "postgres" {
        let mut direct = options.clone();
        direct.committers = 0;
        let direct = EventStore::open(&direct).await.map_err(|e| e.to_string())?;
        own_transactions = Some(
            measure(writers, seconds, move |w, round| {
                let store = direct.clone();
                async move {
                    let expected = ExpectedVersion::Exact(round as i64);
                    store
                        .append(&AppendRequest::single(format!("bench-own-{w}"), expected, vec![event(w, round)]))
                        .await
                        .map(|_| 1)
                        .map_err(|e| e.to_string())
                }
            })
            .await?,
        );
    }

    for batch in [1usize, 100] {
        let s = store.clone();
        let appended = measure(writers, seconds, move |w, round| {
            let store = s.clone();
            async move {
                let events = (0..batch).map(|i| event(w, round * batch + i)).collect();
                let expected = ExpectedVersion::Exact((round * batch) as i64);
                store
                    .append(&AppendRequest::single(format!("bench-{batch}-{w}"), expected, events))
                    .await
                    .map(|_| batch)
                    .map_err(|e| e.to_string())
            }
        })
        .await?;
        let s = store.clone();
        let plain = measure(writers, seconds, move |w, round| {
            let store = s.clone();
            async move { plain_insert(&store, w, round, batch).await.map(|_| batch) }
        })
        .await?;
        figure(
            "appends",
            if batch == 1 { "single_event_appends" } else { "batched_appends" },
            appended,
            "events/s",
            json!({ "backend": backend, "writers": writers, "events_per_append": batch,
                    "target": if batch == 1 { 10_000 } else { 60_000 },
                    "baseline_plain_insert_rows_per_s": plain, "ratio_to_baseline": appended / plain,
                    "committers": options.committers,
                    "one_transaction_per_append_events_per_s": if batch == 1 { own_transactions } else { None } }),
        );
    }

    if backend == "postgres" {
        commit_ceiling(&options, writers, seconds).await?;
    }

    let total = store.count().await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    let (mut after, mut read) = (0i64, 0usize);
    loop {
        let page = store.read_all(after, 1000).await.map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = last.position;
        read += page.len();
    }
    let secs = started.elapsed().as_secs_f64();
    if read as i64 != total {
        return Err(format!("catch-up read {read} events of {total}"));
    }
    figure(
        "appends",
        "catch_up_read",
        read as f64 / secs,
        "events/s",
        json!({ "backend": backend, "events": read, "page": 1000 }),
    );
    store.db().close().await;
    db.drop_now().await;
    Ok(())
}

/// What the single-event appends and the plain inserts do when a commit does not wait for its
/// WAL flush (`synchronous_commit=off` on the benchmark's own sessions; never the service's
/// setting: an answered append must survive a crash). With 16 closed-loop writers each append
/// waits for one flush, so on a disk whose flush takes ~3 ms (`pg_test_fsync`) no design that
/// answers after the flush passes ~16 / flush time; this figure shows what the append path itself
/// does, beside the plain inserts measured the same way.
async fn commit_ceiling(options: &StoreOptions, writers: usize, seconds: f64) -> Result<(), String> {
    let mut unsynced = options.clone();
    let joiner = if unsynced.url.contains('?') { '&' } else { '?' };
    unsynced.url = format!("{}{joiner}options=-c%20synchronous_commit%3Doff", unsynced.url);
    let store = EventStore::open(&unsynced).await.map_err(|e| e.to_string())?;
    let s = store.clone();
    let appended = measure(writers, seconds, move |w, round| {
        let store = s.clone();
        async move {
            store
                .append(&AppendRequest::single(
                    format!("bench-unsynced-{w}"),
                    ExpectedVersion::Exact(round as i64),
                    vec![event(w, round)],
                ))
                .await
                .map(|_| 1)
                .map_err(|e| e.to_string())
        }
    })
    .await?;
    let s = store.clone();
    let plain = measure(writers, seconds, move |w, round| {
        let store = s.clone();
        async move { plain_insert(&store, w + writers, round, 1).await.map(|_| 1) }
    })
    .await?;
    figure(
        "appends",
        "single_event_appends_flush_not_awaited",
        appended,
        "events/s",
        json!({ "backend": "postgres", "writers": writers, "events_per_append": 1, "synchronous_commit": "off",
                "baseline_plain_insert_rows_per_s": plain, "ratio_to_baseline": appended / plain,
                "committers": options.committers }),
    );
    store.db().close().await;
    Ok(())
}

/// Runs `op(writer, round)` in a loop on `writers` tasks for `seconds`; returns items per second.
pub(crate) async fn measure<F, Fut>(writers: usize, seconds: f64, op: F) -> Result<f64, String>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<usize, String>> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (op, stop, done) = (op.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    let n = op(w, round).await?;
                    done.fetch_add(n as u64, Ordering::Relaxed);
                    round += 1;
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

fn event(writer: usize, n: usize) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "BenchHappened".into(),
        data: json!({ "writer": writer, "n": n, "note": "a payload of a typical small event" }),
        metadata: EventMetadata {
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            actor: Default::default(),
            command: "Bench".into(),
            origin: None,
        },
    }
}

/// The baseline: the same rows (id, stream, type, JSON data) in one plain autocommitted INSERT.
async fn plain_insert(store: &EventStore, writer: usize, round: usize, batch: usize) -> Result<(), String> {
    let rows: Vec<_> = (0..batch)
        .map(|i| {
            let e = event(writer, round * batch + i);
            json!({ "id": e.event_id, "stream": format!("plain-{writer}"), "type": e.event_type, "data": e.data.to_string() })
        })
        .collect();
    let sql = match store.backend() {
        careledger_store::Backend::Sqlite => {
            "INSERT INTO bench_plain SELECT value->>'id', value->>'stream', value->>'type', value->>'data' FROM json_each($1)"
        }
        careledger_store::Backend::Postgres => {
            "INSERT INTO bench_plain SELECT r->>'id', r->>'stream', r->>'type', r->>'data' FROM jsonb_array_elements($1::jsonb) AS t(r)"
        }
    };
    let mut tx = store.db().begin().await.map_err(|e| e.to_string())?;
    sql_exec!(tx.exec(), sql, [serde_json::Value::Array(rows).to_string()]).map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())
}
