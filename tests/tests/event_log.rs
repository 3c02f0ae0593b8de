//! The event log on both backends: optimistic concurrency, unique ids and keys, idempotency
//! records, and a global order that never skips an event under concurrent writers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use careledger_store::{
    AppendRequest, EventMetadata, EventStore, ExpectedVersion, IdempotencyRecord, KeyClaim, NewEvent, StoreError,
    StreamAppend,
};
use careledger_tests::{Kind, TestDb, both_backends};
use serde_json::json;
use uuid::Uuid;

fn event(n: i64) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "TestHappened".into(),
        data: json!({ "n": n }),
        metadata: EventMetadata {
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            actor: Default::default(),
            command: "Test".into(),
            origin: None,
        },
    }
}

both_backends!(guards_refuse_an_append_made_on_a_stale_stream, guards_on);
/// A stream named with no events at an exact version guards the append: the decision was made on
/// that stream as read (a division), so the append must not land if the stream moved.
async fn guards_on(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.store().await;
    store.append(&AppendRequest::single("t-division-1", ExpectedVersion::Exact(0), vec![event(1)])).await.unwrap();
    let guarded = |version: i64, stream: &str| AppendRequest {
        streams: vec![
            StreamAppend { stream: stream.into(), expected: ExpectedVersion::Exact(0), events: vec![event(2)] },
            StreamAppend { stream: "t-division-1".into(), expected: ExpectedVersion::Exact(version), events: vec![] },
        ],
        claims: vec![],
        idempotency: None,
    };
    let ok = store.append(&guarded(1, "t-equipment-1")).await.unwrap();
    assert_eq!(ok.versions, vec![1, 1]);
    assert_eq!(ok.positions.len(), 1);
    // the division moves on: an append decided on version 1 is refused and writes nothing
    store.append(&AppendRequest::single("t-division-1", ExpectedVersion::Exact(1), vec![event(3)])).await.unwrap();
    let stale = store.append(&guarded(1, "t-equipment-2")).await;
    assert!(
        matches!(&stale, Err(StoreError::WrongExpectedVersion { stream, expected: 1, actual: 2 }) if stream == "t-division-1"),
        "{stale:?}"
    );
    assert_eq!(store.stream_version("t-equipment-2").await.unwrap(), 0);
    assert_eq!(store.stream_version("t-division-1").await.unwrap(), 2);
    // a guard on a stream that does not exist holds at version 0 only
    let missing = AppendRequest {
        streams: vec![
            StreamAppend {
                stream: "t-equipment-3".into(),
                expected: ExpectedVersion::Exact(0),
                events: vec![event(4)],
            },
            StreamAppend { stream: "t-division-9".into(), expected: ExpectedVersion::Exact(0), events: vec![] },
        ],
        claims: vec![],
        idempotency: None,
    };
    store.append(&missing).await.unwrap();
    assert_eq!(store.stream_version("t-division-9").await.unwrap(), 0, "a guard creates no stream");

    // the guarded stream's append is still running when the guarded append checks: the check
    // waits for it and sees its version, never the one before
    let pending = store
        .begin_append(&AppendRequest::single("t-division-1", ExpectedVersion::Exact(2), vec![event(5)]))
        .await
        .unwrap();
    let racing = {
        let store = store.clone();
        let request = guarded(2, "t-equipment-4");
        tokio::spawn(async move { store.append(&request).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!racing.is_finished(), "the guard must wait for the running append to the guarded stream");
    pending.commit().await.unwrap();
    let raced = racing.await.unwrap();
    assert!(matches!(raced, Err(StoreError::WrongExpectedVersion { expected: 2, actual: 3, .. })), "{raced:?}");
    assert_eq!(store.stream_version("t-equipment-4").await.unwrap(), 0);
}

both_backends!(appends_check_the_expected_version, appends_check_the_expected_version_on);
async fn appends_check_the_expected_version_on(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.store().await;
    let first = store
        .append(&AppendRequest::single("t-a-1", ExpectedVersion::Exact(0), vec![event(1), event(2)]))
        .await
        .unwrap();
    assert_eq!(first.versions, vec![2]);
    assert!(first.positions[0] < first.positions[1]);
    let stale = store.append(&AppendRequest::single("t-a-1", ExpectedVersion::Exact(1), vec![event(3)])).await;
    assert!(matches!(stale, Err(StoreError::WrongExpectedVersion { expected: 1, actual: 2, .. })), "{stale:?}");
    let again = store.append(&AppendRequest::single("t-a-1", ExpectedVersion::Exact(0), vec![event(3)])).await;
    assert!(matches!(again, Err(StoreError::WrongExpectedVersion { actual: 2, .. })), "{again:?}");
    store.append(&AppendRequest::single("t-a-1", ExpectedVersion::Exact(2), vec![event(3)])).await.unwrap();
    store.append(&AppendRequest::single("t-a-1", ExpectedVersion::Any, vec![event(4)])).await.unwrap();
    assert_eq!(store.stream_version("t-a-1").await.unwrap(), 4);
    assert_eq!(store.stream_version("t-a-2").await.unwrap(), 0);
    let events = store.read_stream("t-a-1", 1, 100).await.unwrap();
    assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), vec![2, 3, 4]);
    assert_eq!(events[0].data, json!({ "n": 2 }));
    assert_eq!(events[0].metadata.command, "Test");
    assert_eq!(store.count().await.unwrap(), 4);
    // PostgreSQL readers wait for appends still running (none here, but keep the test robust)
    assert_eq!(careledger_tests::eventually_head(&store, events[2].position).await, events[2].position);

    // the same event id twice is refused, and nothing of that append is kept
    let e = event(5);
    store.append(&AppendRequest::single("t-b-1", ExpectedVersion::Any, vec![e.clone()])).await.unwrap();
    let dup = store.append(&AppendRequest::single("t-b-2", ExpectedVersion::Any, vec![e.clone()])).await;
    assert!(matches!(dup, Err(StoreError::DuplicateEvent(id)) if id == e.event_id), "{dup:?}");
    assert_eq!(store.stream_version("t-b-2").await.unwrap(), 0);
}

both_backends!(key_claims_are_all_or_nothing, key_claims_are_all_or_nothing_on);
async fn key_claims_are_all_or_nothing_on(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.store().await;
    let claim = |owner: &str, keys: &[&str]| KeyClaim {
        scope: "chfid".into(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
        owner: owner.into(),
    };
    let mut first = AppendRequest::single("t-k-1", ExpectedVersion::Exact(0), vec![event(1)]);
    first.claims = vec![claim("t-k-1", &["a", "b"])];
    store.append(&first).await.unwrap();
    let mut second = AppendRequest::single("t-k-2", ExpectedVersion::Exact(0), vec![event(2)]);
    second.claims = vec![claim("t-k-2", &["c", "b", "a"])];
    let taken = store.append(&second).await;
    match taken {
        Err(StoreError::KeysTaken { scope, mut keys }) => {
            keys.sort();
            assert_eq!((scope.as_str(), keys), ("chfid", vec!["a".to_string(), "b".to_string()]));
        }
        other => panic!("expected KeysTaken, got {other:?}"),
    }
    assert_eq!(store.stream_version("t-k-2").await.unwrap(), 0, "a refused claim appends nothing");
    assert_eq!(store.key_owner("chfid", "c").await.unwrap(), None);
    assert_eq!(store.key_owner("chfid", "a").await.unwrap().as_deref(), Some("t-k-1"));
}

both_backends!(idempotency_records_commit_with_the_events, idempotency_records_on);
async fn idempotency_records_on(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.store().await;
    let record = IdempotencyRecord {
        key: "user:key-1".into(),
        request_hash: "h1".into(),
        status: 201,
        body: "{\"ok\":true}".into(),
    };
    let mut request = AppendRequest::single("t-i-1", ExpectedVersion::Any, vec![event(1)]);
    request.idempotency = Some(record.clone());
    let outcome = store.append(&request).await.unwrap();
    let stored = store.idempotent_response("user:key-1").await.unwrap().unwrap();
    assert_eq!((stored.status, stored.body.as_str(), stored.position), (201, "{\"ok\":true}", outcome.last_position()));
    let mut again = AppendRequest::single("t-i-1", ExpectedVersion::Any, vec![event(2)]);
    again.idempotency = Some(record);
    assert!(matches!(store.append(&again).await, Err(StoreError::IdempotencyKeyTaken(_))));
    assert_eq!(store.stream_version("t-i-1").await.unwrap(), 1);
}

both_backends!(a_reader_never_passes_an_uncommitted_earlier_append, uncommitted_earlier_append_on);
/// The interleaving a plain sequence gets wrong: an append takes its position, a later append
/// commits first. A reader must not return the later one before the earlier one is decided.
async fn uncommitted_earlier_append_on(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.store().await;
    let early =
        store.begin_append(&AppendRequest::single("t-o-1", ExpectedVersion::Any, vec![event(1)])).await.unwrap();
    let late_store = store.clone();
    let late = tokio::spawn(async move {
        late_store.append(&AppendRequest::single("t-o-2", ExpectedVersion::Any, vec![event(2)])).await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = store.read_all(0, 100).await.unwrap();
    assert!(seen.is_empty(), "read past an uncommitted earlier append: {seen:?}");
    let early = early.commit().await.unwrap();
    let late = late.await.unwrap();
    let seen = store.read_all(0, 100).await.unwrap();
    assert_eq!(seen.iter().map(|e| e.position).collect::<Vec<_>>(), vec![early.last_position(), late.last_position()]);
}

/// Only appenders hold PostgreSQL readers back: a long writing transaction that is not an append
/// (a projector's batch, a rebuild, another application on the server) must not stall the log.
#[tokio::test]
async fn other_writing_transactions_do_not_stall_readers() {
    let db = TestDb::new(Kind::Postgres).await;
    let store = db.store().await;
    let mut other = store.db().begin().await.unwrap();
    careledger_store::sql_exec!(other.exec(), "CREATE TABLE t_unrelated (x BIGINT)", []).unwrap();
    careledger_store::sql_exec!(other.exec(), "INSERT INTO t_unrelated VALUES (1)", []).unwrap();
    let appended = store.append(&AppendRequest::single("t-s-1", ExpectedVersion::Any, vec![event(1)])).await.unwrap();
    let seen = store.read_all(0, 10).await.unwrap();
    assert_eq!(seen.iter().map(|e| e.position).collect::<Vec<_>>(), vec![appended.last_position()]);
    assert_eq!(store.head().await.unwrap(), appended.last_position());
    other.rollback().await.unwrap();
}

/// A read takes the horizon and then the events in one call, each statement with its own
/// snapshot, which only READ COMMITTED gives: the store pins it on its connections whatever the
/// database's default, and the function refuses a caller in a stricter transaction rather than
/// read with one snapshot for both (which could skip a commit in between).
#[tokio::test]
async fn reads_keep_read_committed_whatever_the_database_default() {
    let db = TestDb::new(Kind::Postgres).await;
    let name = db.url.rsplit_once('/').map(|(_, n)| n.to_string()).unwrap();
    {
        let store = db.store().await;
        let mut conn = store.db().acquire().await.unwrap();
        careledger_store::sql_exec!(
            conn.exec(),
            sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} SET default_transaction_isolation = 'serializable'")),
            []
        )
        .unwrap();
    }
    let store = db.store().await;
    let appended = store.append(&AppendRequest::single("t-rc-1", ExpectedVersion::Any, vec![event(1)])).await.unwrap();
    let seen = store.read_all(0, 10).await.unwrap();
    assert_eq!(seen.iter().map(|e| e.position).collect::<Vec<_>>(), vec![appended.last_position()]);
    assert_eq!(store.head().await.unwrap(), appended.last_position());

    let mut tx = store.db().begin().await.unwrap();
    careledger_store::sql_exec!(tx.exec(), "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", []).unwrap();
    let refused = careledger_store::sql_exec!(tx.exec(), "SELECT * FROM careledger_read_after(0, 10)", []);
    let message = refused.expect_err("a read in REPEATABLE READ must be refused").to_string();
    assert!(message.contains("needs READ COMMITTED"), "{message}");
    tx.rollback().await.unwrap();
}

both_backends!(concurrent_appends_get_their_own_answers, own_answers_on);
/// Concurrent appends share transactions on PostgreSQL (group commit): a refused one must take
/// nothing of the others with it, and each caller must get its own answer and positions.
async fn own_answers_on(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.store().await;
    let taken = event(0);
    store
        .append(&AppendRequest {
            streams: vec![StreamAppend {
                stream: "t-g-taken".into(),
                expected: ExpectedVersion::Exact(0),
                events: vec![taken.clone()],
            }],
            claims: vec![KeyClaim { scope: "t-g".into(), keys: vec!["held".into()], owner: "t-g-taken".into() }],
            idempotency: None,
        })
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..64i64 {
        let store = store.clone();
        let taken = taken.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("t-g-{i}");
            let request = match i % 4 {
                0 => AppendRequest::single(&stream, ExpectedVersion::Exact(0), vec![event(i), event(i)]),
                1 => AppendRequest::single(&stream, ExpectedVersion::Exact(3), vec![event(i)]),
                2 => AppendRequest::single(&stream, ExpectedVersion::Any, vec![event(i), taken]),
                _ => AppendRequest {
                    streams: vec![StreamAppend {
                        stream: stream.clone(),
                        expected: ExpectedVersion::Any,
                        events: vec![event(i)],
                    }],
                    claims: vec![KeyClaim {
                        scope: "t-g".into(),
                        keys: vec![format!("k{i}"), "held".into()],
                        owner: stream,
                    }],
                    idempotency: None,
                },
            };
            (i, store.append(&request).await)
        }));
    }
    let mut positions = Vec::new();
    for task in tasks {
        let (i, answer) = task.await.unwrap();
        match (i % 4, answer) {
            (0, Ok(outcome)) => {
                assert_eq!((outcome.positions.len(), outcome.versions.clone()), (2, vec![2]));
                positions.extend(outcome.positions);
            }
            (1, Err(StoreError::WrongExpectedVersion { expected: 3, actual: 0, .. })) => {}
            (2, Err(StoreError::DuplicateEvent(id))) => assert_eq!(id, taken.event_id),
            (3, Err(StoreError::KeysTaken { keys, .. })) => assert_eq!(keys, vec!["held".to_string()]),
            (kind, other) => panic!("append {i} (kind {kind}): {other:?}"),
        }
    }
    let head = *positions.iter().max().unwrap();
    careledger_tests::eventually_head(&store, head).await;
    let log: Vec<i64> = store.read_all(0, 1000).await.unwrap().iter().map(|e| e.position).collect();
    positions.sort();
    assert_eq!(log[1..], positions[..], "the log holds exactly the accepted appends");
    assert_eq!(store.count().await.unwrap(), 33);
    assert_eq!(store.key_owner("t-g", "k3").await.unwrap(), None, "a refused append's keys are not kept");
}

both_backends!(concurrent_writers_and_a_tailing_reader, concurrent_writers_on);
/// Many writers append (own streams and contended shared ones) while a subscriber tails the log:
/// it must see every committed event exactly once, positions increasing, each stream in version
/// order.
async fn concurrent_writers_on(kind: Kind) {
    const WRITERS: usize = 16;
    const APPENDS: usize = 60;
    let db = TestDb::new(kind).await;
    let store = db.store().await;
    // subscriptions of one process share the tail of the log: two with other batch sizes read
    // along, a third starts after the writes (from memory), and one of a second store opened
    // afterwards starts behind its tail (from the database, then from memory)
    let tailing = |store: EventStore, batch: i64| {
        tokio::spawn(async move {
            let mut sub = store.subscribe(0, batch);
            let mut seen = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            loop {
                let batch = tokio::time::timeout_at(deadline, sub.next_batch()).await;
                let Ok(batch) = batch else { break seen };
                seen.extend(batch.unwrap());
                if seen.len() >= expected_total() {
                    break seen;
                }
            }
        })
    };
    let readers = vec![tailing(store.clone(), 97), tailing(store.clone(), 13)];
    let committed = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        let committed = committed.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..APPENDS {
                // every third append goes to one of 4 shared streams, with retries on conflict
                let (stream, events) = if i % 3 == 0 {
                    (format!("t-shared-{}", i % 4), vec![event(i as i64)])
                } else {
                    (format!("t-own-{w}"), (0..(1 + i % 3)).map(|k| event(k as i64)).collect())
                };
                loop {
                    let version = store.stream_version(&stream).await.unwrap();
                    let request = AppendRequest {
                        streams: vec![StreamAppend {
                            stream: stream.clone(),
                            expected: ExpectedVersion::Exact(version),
                            events: events.clone(),
                        }],
                        ..Default::default()
                    };
                    match store.append(&request).await {
                        Ok(_) => {
                            committed.lock().unwrap().extend(events.iter().map(|e| e.event_id));
                            break;
                        }
                        Err(e) if e.is_retryable() => continue,
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let committed = committed.lock().unwrap().clone();
    assert_eq!(committed.len(), expected_total());
    let mut readers = readers;
    readers.push(tailing(store.clone(), 500));
    readers.push(tailing(db.store().await, 50));
    for (r, reader) in readers.into_iter().enumerate() {
        let seen = reader.await.unwrap();
        let ids: Vec<Uuid> = seen.iter().map(|e| e.event_id).collect();
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "reader {r} saw an event twice");
        assert_eq!(ids.iter().copied().collect::<HashSet<_>>(), committed, "reader {r} missed events");
        assert!(seen.windows(2).all(|w| w[0].position < w[1].position), "positions went backwards");
        let mut versions: HashMap<&str, i64> = HashMap::new();
        for e in &seen {
            let last = versions.entry(&e.stream).or_insert(0);
            assert_eq!(e.version, *last + 1, "stream {} out of order (reader {r})", e.stream);
            *last = e.version;
        }
    }

    fn expected_total() -> usize {
        // per writer: i%3==0 -> 1 event; i%3==1 -> 2 events; i%3==2 -> 3 events
        WRITERS * (0..APPENDS).map(|i| if i % 3 == 0 { 1 } else { 1 + i % 3 }).sum::<usize>()
    }
}

#[tokio::test]
async fn the_same_store_is_shared_by_clones() {
    let db = TestDb::new(Kind::Sqlite).await;
    let store: EventStore = db.store().await;
    let clone = store.clone();
    clone.append(&AppendRequest::single("t-c-1", ExpectedVersion::Any, vec![event(1)])).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 1);
}

/// A transaction whose start is cancelled (its future dropped while `BEGIN` is on its way: a
/// client gone, a timeout, a task stopped at shutdown) leaves no transaction open on the
/// connection, which goes back to the pool and serves the next append. sqlx 0.9.0 did leave one:
/// the group commit's next `careledger_append` ran inside it and was answered as committed while
/// nothing committed it (the next one then reused its transaction id, so its positions, and
/// failed on `events_pkey`). Seen when a stopping gateway still took commands after its
/// projectors were stopped mid-transaction; sqlx 0.9.1 claims the depth before the round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_transaction_start_leaves_no_transaction_open() {
    let db = TestDb::new(Kind::Postgres).await;
    db.store().await.db().close().await;
    let mut options = careledger_store::StoreOptions::new(&db.url);
    // one connection: whatever the cancelled start leaves on it, the append gets
    options.max_connections = 1;
    let store = EventStore::open(&options).await.unwrap();
    let careledger_store::Db::Postgres(pool) = store.db() else { unreachable!() };
    // a start that takes long enough to be cancelled while the server runs it
    let started = tokio::spawn({
        let pool = pool.clone();
        async move { pool.begin_with("BEGIN; SELECT pg_sleep(0.5)").await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    started.abort();
    assert!(started.await.is_err_and(|e| e.is_cancelled()), "the start was cancelled");
    let appended = store.append(&AppendRequest::single("t-c-1", ExpectedVersion::Exact(0), vec![event(1)])).await;
    assert!(appended.is_ok(), "{appended:?}");
    store.db().close().await;
    // what another process sees: the append is there, committed
    let other = db.store().await;
    assert_eq!(other.stream_version("t-c-1").await.unwrap(), 1, "the append answered as committed is in the log");
    assert_eq!(other.read_stream("t-c-1", 0, 10).await.unwrap().len(), 1);
}
