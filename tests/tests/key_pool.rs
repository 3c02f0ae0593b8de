//! Set-invariant keys at the size of a national code pool (issue #19): the query that finds keys
//! held by another owner probes the primary key once per key asked for, whatever the pool holds.
//! Its old join let SQLite scan `json_each` once per row of the scope: a second GenerateCodes
//! after a million codes did not finish in 300 s.

use std::time::Duration;

use careledger_store::{AppendRequest, ExpectedVersion, KeyClaim, SQLITE_TAKEN_KEYS, StoreError};
use careledger_tests::{Kind, TestDb};
use sqlx::Row;

fn claim(owner: &str, keys: Vec<String>) -> AppendRequest {
    let mut request = AppendRequest::single(owner, ExpectedVersion::Any, vec![]);
    request.claims.push(KeyClaim { scope: "code".into(), keys, owner: owner.into() });
    request
}

fn code(n: u64) -> String {
    format!("{n:09}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_keys_are_found_by_index_in_a_pool_of_a_million() {
    let db = TestDb::new(Kind::Sqlite).await;
    let store = db.store().await;
    for chunk in 0..10u64 {
        let keys = (chunk * 100_000..(chunk + 1) * 100_000).map(code).collect();
        store.append(&claim("codes-batch-first", keys)).await.unwrap();
    }

    let careledger_store::Db::Sqlite { reader, .. } = store.db() else { panic!("sqlite") };
    let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {SQLITE_TAKEN_KEYS}")))
        .bind("code")
        .bind("codes-batch-second")
        .bind("[\"000000001\"]")
        .fetch_all(reader)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>(3))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("SEARCH unique_keys USING PRIMARY KEY (scope=? AND key=?)"), "{plan}");
    assert!(!plan.contains("SCAN unique_keys"), "{plan}");

    // 10,000 new keys of which two are held: refused, naming them, well within a guard that only
    // catches the old plan's minutes (it is not a performance figure: see bench/)
    let mut keys: Vec<String> = (2_000_000..2_010_000).map(code).collect();
    keys[17] = code(5);
    keys[9_000] = code(999_999);
    let refused = tokio::time::timeout(Duration::from_secs(120), store.append(&claim("codes-batch-second", keys)))
        .await
        .expect("the taken keys are found without scanning the pool");
    match refused {
        Err(StoreError::KeysTaken { mut keys, .. }) => {
            keys.sort();
            assert_eq!(keys, vec![code(5), code(999_999)]);
        }
        other => panic!("{other:?}"),
    }
    let fresh = (2_000_000..2_010_000).map(code).collect();
    store.append(&claim("codes-batch-second", fresh)).await.unwrap();
}
