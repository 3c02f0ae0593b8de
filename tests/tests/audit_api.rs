//! `GET /api/v1/audit` over real HTTP on both backends: every filter alone and together, cursor
//! paging, read-your-writes, entries that are the log's events, and every refusal (401, 403, 422
//! with the parameter named).

use careledger_projections::time::text;
use careledger_store::RecordedEvent;
use careledger_tests::scenario::{
    CODES_USER, EQUIPMENT_USER, REGISTRY_ADMIN, REQUISITIONS_USER, Scenario, every_event_type,
};
use careledger_tests::{ALL, Kind, TestServer, both_backends, token_for, whole_log};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A token that may read the audit trail and nothing else.
fn auditor() -> String {
    token_for("auditor", "audit:read", None)
}

/// The positions of one page.
fn positions(page: &Value) -> Vec<i64> {
    page["data"].as_array().unwrap().iter().map(|e| e["position"].as_i64().unwrap()).collect()
}

/// Every position matching `query`, page after page of `limit`.
async fn all_pages(s: &TestServer, query: &str, limit: i64, after_position: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut after = 0;
    for _ in 0..100 {
        let a = s
            .get(
                &format!("/api/v1/audit?{query}&limit={limit}&after={after}&after_position={after_position}"),
                &auditor(),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{query}: {}", a.text);
        let page = positions(&a.body);
        assert!(page.len() as i64 <= limit);
        out.extend(&page);
        let paging = &a.body["paging"];
        assert_eq!((paging["limit"].as_i64(), paging["after"].as_i64()), (Some(limit), Some(after)));
        after = paging["next"].as_i64().unwrap();
        if !paging["has_more"].as_bool().unwrap() {
            return out;
        }
        assert_eq!(page.len() as i64, limit, "a page short of the limit is the last");
    }
    panic!("{query} never ended");
}

/// The positions of the log's events that `keep` selects.
fn expected(log: &[RecordedEvent], keep: impl Fn(&RecordedEvent) -> bool) -> Vec<i64> {
    log.iter().filter(|e| keep(e)).map(|e| e.position).collect()
}

both_backends!(every_filter_alone_and_together, filters_on);
async fn filters_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let Scenario { legal_entity, equipment_stream, batch_stream, last } = every_event_type(&s).await;
    let log = whole_log(&s.state().store).await;
    let by = |user: &str| {
        let user = user.to_string();
        move |e: &RecordedEvent| e.metadata.actor.user_id.as_deref() == Some(user.as_str())
    };
    let batch_correlation = log.iter().find(|e| e.stream == batch_stream).unwrap().metadata.correlation_id;
    let cases: Vec<(String, Vec<i64>)> = vec![
        (String::new(), expected(&log, |_| true)),
        (format!("actor={EQUIPMENT_USER}"), expected(&log, by(EQUIPMENT_USER))),
        (format!("actor={REGISTRY_ADMIN}"), expected(&log, by(REGISTRY_ADMIN))),
        (format!("actor={CODES_USER}"), expected(&log, by(CODES_USER))),
        ("legal_entity=le-1".into(), expected(&log, by(CODES_USER))),
        (format!("legal_entity={legal_entity}"), expected(&log, |e| by(EQUIPMENT_USER)(e) || by(REQUISITIONS_USER)(e))),
        (
            format!("correlation_id={batch_correlation}"),
            expected(&log, |e| e.metadata.correlation_id == batch_correlation),
        ),
        (format!("stream={equipment_stream}"), expected(&log, |e| e.stream == equipment_stream)),
        ("context=requisitions".into(), expected(&log, |e| e.stream.starts_with("requisitions-"))),
        ("context=claims".into(), vec![]),
        ("type=DivisionRegistered".into(), expected(&log, |e| e.event_type == "DivisionRegistered")),
        (
            format!("actor={EQUIPMENT_USER}&type=EquipmentStatusChanged&stream={equipment_stream}"),
            expected(&log, |e| e.event_type == "EquipmentStatusChanged"),
        ),
        ("actor=nobody".into(), vec![]),
    ];
    let counts: Vec<usize> = cases.iter().map(|(_, want)| want.len()).collect();
    assert_eq!(counts, [17, 4, 6, 5, 5, 6, 2, 4, 2, 0, 3, 1, 0], "the scenario is what these cases assume");
    for (query, want) in &cases {
        assert_eq!(&all_pages(&s, query, 1000, last).await, want, "?{query}");
    }
    // one page at a time: the same events, in log order
    assert_eq!(all_pages(&s, "", 5, last).await, cases[0].1);
    assert_eq!(all_pages(&s, &cases[7].0, 1, last).await, cases[7].1);

    // the recorded time: `from` inclusive, `to` exclusive (to the microsecond)
    let time = |e: &RecordedEvent| text(&e.recorded_at);
    let (t1, t2) = (&log[5], &log[12]);
    let encode = |e: &RecordedEvent| e.recorded_at.to_rfc3339().replace('+', "%2B");
    let from = format!("from={}", encode(t1));
    assert_eq!(all_pages(&s, &from, 1000, last).await, expected(&log, |e| time(e) >= time(t1)));
    let window = format!("from={}&to={}", encode(t1), encode(t2));
    let want = expected(&log, |e| time(e) >= time(t1) && time(e) < time(t2));
    assert!(want.contains(&t1.position) && !want.contains(&t2.position));
    assert_eq!(all_pages(&s, &window, 3, last).await, want);
    // an offset written with an unencoded `+` (which a query string reads as a space)
    let offset = t1.recorded_at.with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap()).to_rfc3339();
    assert!(offset.contains('+'));
    let a = s.get(&format!("/api/v1/audit?to={offset}&limit=1000"), &auditor()).await;
    assert_eq!(positions(&a.body), expected(&log, |e| time(e) < time(t1)), "{}", a.text);
}

both_backends!(entries_are_the_logs_events, entries_on);
async fn entries_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let scenario = every_event_type(&s).await;
    // read your writes: the scenario's last command is in the answer right away
    let a = s.get(&format!("/api/v1/audit?context=requisitions&after_position={}", scenario.last), &auditor()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(positions(&a.body).last(), Some(&scenario.last));
    let log = whole_log(&s.state().store).await;
    let a = s.get(&format!("/api/v1/audit?stream={}", scenario.equipment_stream), &auditor()).await;
    let entries = a.data().as_array().unwrap();
    assert_eq!(entries.len(), 4);
    for entry in entries {
        let event = log.iter().find(|e| Some(e.position) == entry["position"].as_i64()).unwrap();
        let mut want = serde_json::to_value(event).unwrap();
        want["context"] = "registry".into();
        assert_eq!(entry, &want, "an entry is the log's event with its context");
    }
    assert_eq!(entries[0]["event_type"], "EquipmentRegistered");
    assert_eq!(entries[0]["data"]["external_id"], "EQ-1");
    assert_eq!(entries[0]["metadata"]["actor"]["user_id"], EQUIPMENT_USER);
    assert_eq!(entries[0]["metadata"]["actor"]["legal_entity_id"], scenario.legal_entity.as_str());
    assert_eq!(entries[0]["metadata"]["command"], "RegisterEquipment");
    assert_eq!(entries[3]["data"]["reason"], "registered twice");
    // the read model holds every event's metadata, one row each
    let mut conn = s.state().store.db().acquire().await.unwrap();
    let rows = careledger_store::sql_fetch_one!(conn.exec(), "SELECT COUNT(*) FROM audit_events", [], |row| row
        .try_get::<i64, _>(0))
    .unwrap();
    assert_eq!(rows, log.len() as i64);
}

both_backends!(refusals, refusals_on);
async fn refusals_on(kind: Kind) {
    let s = TestServer::start_with(kind, |c| {
        c.permissions = careledger_gateway::config::Permissions::parse("audit=auditor").unwrap();
    })
    .await;
    let a = s.request(Method::GET, "/api/v1/audit", None, None).await;
    assert_eq!((a.status, a.error_type()), (StatusCode::UNAUTHORIZED, "access_denied"));
    let a = s.request(Method::GET, "/api/v1/audit", Some("not-a-token"), None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // audit:read is not enough once the operation is given another permission
    let a = s.get("/api/v1/audit", &s.token(ALL)).await;
    assert_eq!((a.status, a.error_type()), (StatusCode::FORBIDDEN, "forbidden"), "{}", a.text);
    assert!(a.body["error"]["message"].as_str().unwrap().ends_with("Missing allowances: auditor"));
    let t = token_for("auditor", "auditor", None);
    assert_eq!(s.get("/api/v1/audit", &t).await.status, StatusCode::OK);

    for (query, entries) in [
        ("from=yesterday", vec!["from"]),
        ("to=2026-13-01T00:00:00Z", vec!["to"]),
        ("from=2026-05-02T00:00:00Z&to=2026-05-01T00:00:00Z", vec!["to"]),
        ("correlation_id=not-a-uuid", vec!["correlation_id"]),
        ("type=CodeDeleted", vec!["type"]),
        ("context=billing", vec!["context"]),
        ("limit=0&after=-1", vec!["after", "limit"]),
        ("actr=user-1", vec!["actr"]),
        ("from=2026&correlation_id=1&limit=x", vec!["correlation_id", "from", "limit"]),
    ] {
        let a = s.get(&format!("/api/v1/audit?{query}"), &t).await;
        assert_eq!((a.status, a.error_type()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{query}");
        let mut got = a.invalid_entries();
        got.sort();
        assert_eq!(got, entries, "{query}: {}", a.text);
        assert_eq!(a.body["error"]["invalid"][0]["entry_type"], "query_parameter");
    }
}
