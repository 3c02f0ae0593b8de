//! The reporting views on PostgreSQL (migrations/postgres/0025): they hold what the read models
//! hold, in the documented shape, and the role careledger_reporting reads them and nothing else.

use careledger_tests::{Kind, TestServer, scenario};
use sqlx::Row;
use sqlx::postgres::PgPoolOptions;

async fn pool(url: &str) -> sqlx::PgPool {
    PgPoolOptions::new().max_connections(1).connect(url).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_views_hold_the_read_models_and_the_reporting_role_reads_only_them() {
    let s = TestServer::start(Kind::Postgres).await;
    let scenario = scenario::every_event_type(&s).await;
    let last = scenario::every_claims_event_type(&s).await.max(scenario.last);
    assert!(s.state().projections.wait_for(last, std::time::Duration::from_secs(20)).await);
    let service = pool(&s.db.url).await;

    // every view answers, with the read models' rows
    let count = |sql: &'static str| {
        let service = service.clone();
        async move { sqlx::query(sql).fetch_one(&service).await.unwrap().get::<i64, _>(0) }
    };
    assert_eq!(count("SELECT count(*) FROM reporting.claims").await, count("SELECT count(*) FROM claims").await);
    assert!(count("SELECT count(*) FROM reporting.claims").await > 0);
    assert_eq!(
        count("SELECT count(*) FROM reporting.claim_lines").await,
        count("SELECT count(*) FROM claim_lines").await
    );
    assert_eq!(
        count("SELECT count(*) FROM reporting.code_batches").await,
        count("SELECT count(*) FROM code_batches").await
    );
    assert_eq!(count("SELECT count(*) FROM reporting.equipment").await, count("SELECT count(*) FROM equipment").await);
    assert_eq!(
        count("SELECT COALESCE(sum(issued), 0)::bigint FROM reporting.requisitions_per_day").await,
        count("SELECT count(*) FROM requisitions").await
    );
    // amounts in currency units, statuses by name: the per-facility figures add up to the claims'
    let row = sqlx::query(
        "SELECT (SELECT sum(claimed) FROM reporting.claims_by_facility_month)::text,
                (SELECT sum(claimed) / 100.0 FROM claims)::numeric(18, 2)::text,
                (SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM reporting.claims)",
    )
    .fetch_one(&service)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>(0), row.get::<String, _>(1));
    let statuses = row.get::<String, _>(2);
    assert!(statuses.split(',').all(|s| ["REJECTED", "ENTERED", "CHECKED", "PROCESSED", "VALUATED"].contains(&s)));
    // a claim dated in a year PostgreSQL's date does not hold (the claim API takes 0000-01-01)
    // makes its dates NULL, not every query of the views fail
    sqlx::query("UPDATE claims SET date_from = '0000-01-01', date_claimed = '0000-01-01' WHERE claim_id = (SELECT min(claim_id) FROM claims)")
        .execute(&service)
        .await
        .unwrap();
    assert_eq!(count("SELECT count(*) FROM reporting.claims WHERE date_claimed IS NULL").await, 1);
    assert_eq!(count("SELECT count(*) FROM reporting.claims_by_facility_month WHERE month_claimed IS NULL").await, 1);
    for view in ["code_holders", "equipment_counts", "rejection_reasons", "projectors"] {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM reporting.{view}")))
            .fetch_all(&service)
            .await
            .unwrap_or_else(|e| panic!("{view}: {e}"));
        assert!(!rows.is_empty(), "{view} is empty");
    }
    // every read model has caught up (the relay, which has no NATS here, has not); a checkpoint
    // that moved only past events its read model does not take is stored once a second
    let mut behind: Option<String> = Some(String::new());
    for _ in 0..50 {
        behind = sqlx::query(
            "SELECT string_agg(projector || ' ' || events_behind, ', ') FROM reporting.projectors
             WHERE events_behind > 0 AND projector <> 'relay'",
        )
        .fetch_one(&service)
        .await
        .unwrap()
        .get(0);
        if behind.is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(behind, None, "behind the log");

    // a BI tool's login role, member of careledger_reporting
    let login = format!("bi_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE {login} LOGIN IN ROLE careledger_reporting")))
        .execute(&service)
        .await
        .unwrap();
    let url = {
        let mut url = url::Url::parse(&s.db.url).unwrap();
        url.set_username(&login).unwrap();
        url.to_string()
    };
    let bi = pool(&url).await;
    let claims: i64 = sqlx::query("SELECT count(*) FROM reporting.claims").fetch_one(&bi).await.unwrap().get(0);
    assert_eq!(claims, count("SELECT count(*) FROM claims").await, "the role reads the views");
    sqlx::query("SELECT * FROM reporting.projectors").fetch_all(&bi).await.expect("and every one of them");
    for refused in [
        "SELECT count(*) FROM events",
        "SELECT count(*) FROM claims",
        "SELECT count(*) FROM code_history",
        "DELETE FROM reporting.code_batches",
        "CREATE VIEW reporting.mine AS SELECT 1",
    ] {
        let error = sqlx::query(refused).execute(&bi).await.expect_err(refused);
        let code = error.as_database_error().and_then(|e| e.code()).map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("42501"), "{refused}: {error}");
    }
    // every query of the business dashboard (monitoring/grafana/dashboards) runs as the role
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../monitoring/grafana/dashboards/business.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let sql = target["rawSql"].as_str().unwrap().to_string();
            sqlx::query(sqlx::AssertSqlSafe(sql.clone())).fetch_all(&bi).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            queries += 1;
        }
    }
    assert_eq!(queries, 8);
    bi.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE {login}"))).execute(&service).await.unwrap();
}
