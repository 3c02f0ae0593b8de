//! The insuree code pool over real HTTP on both backends: every endpoint, its refusals
//! (401/403/404/409/413/422, malformed JSON) and the guarantees behind them.

use std::collections::HashSet;

use careledger_domain::codes::CodeFormatExt;
use careledger_events::codes::CodeFormat;
use careledger_tests::{ALL, Kind, TestServer, both_backends};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn generate(s: &TestServer, holder_code: &str, number: i64) -> (String, i64) {
    let a = s
        .post(
            "/api/v1/code-batches",
            &s.token(ALL),
            json!({ "holder_type": 1, "holder_code": holder_code, "number": number }),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    (a.data()["batch_id"].as_str().unwrap().to_string(), a.position())
}

async fn codes_of(s: &TestServer, batch: &str, status: &str, after: i64) -> Vec<String> {
    let a = s
        .get(
            &format!("/api/v1/code-batches/{batch}/codes?limit=1000&status={status}&after_position={after}"),
            &s.token(ALL),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.data().as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap().to_string()).collect()
}

both_backends!(generation_listing_and_export, generation_listing_and_export_on);
async fn generation_listing_and_export_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = s.token(ALL);
    let a = s
        .post(
            "/api/v1/code-batches",
            &t,
            json!({ "holder_type": "health_facility", "holder_code": "HF-7", "number": 250 }),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(a.data()["holder_type"], 3);
    assert_eq!(a.data()["holder_code"], "HF-7");
    assert_eq!(a.data()["number"], 250);
    assert!(a.data()["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(a.headers.get("x-request-id").is_some());
    assert_eq!(a.body["meta"]["code"], 201);
    let batch = a.data()["batch_id"].as_str().unwrap().to_string();
    let position = a.position();

    // default number comes from configuration
    let d = s.post("/api/v1/code-batches", &t, json!({ "holder_type": 3, "holder_code": "HF-7" })).await;
    assert_eq!(d.data()["number"], 1000);

    let list = s
        .get(&format!("/api/v1/code-batches?holder_type=3&holder_code=HF-7&after_position={}", d.position()), &t)
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert_eq!(list.body["paging"]["total"], 2);
    let first = &list.data().as_array().unwrap()[1];
    assert_eq!(first["batch_id"], batch.as_str());
    assert_eq!(
        (first["available"].as_i64(), first["reserved"].as_i64(), first["assigned"].as_i64()),
        (Some(250), Some(0), Some(0))
    );

    let codes = codes_of(&s, &batch, "available", position).await;
    assert_eq!(codes.len(), 250);
    assert_eq!(codes.iter().collect::<HashSet<_>>().len(), 250);
    assert!(codes.iter().all(|c| CodeFormat::default().is_valid(c)), "every code passes the CHFID validator");
    let page = s.get(&format!("/api/v1/code-batches/{batch}/codes?limit=10&offset=240"), &t).await;
    assert_eq!(page.data().as_array().unwrap().len(), 10);
    assert_eq!(page.body["paging"], json!({ "limit": 10, "offset": 240, "total": 250 }));
    assert_eq!(page.data()[0]["status"], "available");
    assert_eq!(page.data()[0]["insuree_id"], Value::Null);

    let csv = s.get(&format!("/api/v1/code-batches/{batch}/export.csv"), &t).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines[0], "CHFID");
    assert_eq!(lines[1..].to_vec(), codes.iter().map(String::as_str).collect::<Vec<_>>());

    // unknown and malformed batch ids
    let unknown = s.get("/api/v1/code-batches/0194f1c2-0000-7000-8000-000000000000/codes", &t).await;
    assert_eq!((unknown.status, unknown.error_type()), (StatusCode::NOT_FOUND, "not_found"));
    let unknown = s.get("/api/v1/code-batches/0194f1c2-0000-7000-8000-000000000000/export.csv", &t).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let bad = s.get("/api/v1/code-batches/not-a-uuid/codes", &t).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad = s.get(&format!("/api/v1/code-batches/{batch}/codes?status=lost&limit=0"), &t).await;
    assert_eq!(bad.invalid_entries(), vec!["status", "limit"]);
    let missing = s.get("/api/v1/code-batches?holder_type=9", &t).await;
    assert_eq!(missing.invalid_entries(), vec!["holder_type", "holder_code"]);
}

both_backends!(the_printers_order_reads_back_with_independent_tools, printer_order_on);
async fn printer_order_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = s.token(ALL);
    // more codes than a page the order is read in (5,000), so that paging shows
    let (batch, _) = generate(&s, "EO-PRINT", 12_000).await;
    let r = s
        .post("/api/v1/codes/reservations", &t, json!({ "holder_type": 1, "holder_code": "EO-PRINT", "number": 25 }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let reservation = r.data()["reservation_id"].as_str().unwrap().to_string();
    let mut reserved: Vec<String> =
        r.data()["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().into()).collect();
    reserved.sort();
    let after = r.position();
    let download = |path: String, content_type: &'static str| {
        let (s, t) = (&s, &t);
        async move {
            let url = format!("{}{path}{}after_position={after}", s.base, if path.contains('?') { '&' } else { '?' });
            let answer = s.client.get(url).bearer_auth(t).send().await.unwrap();
            assert_eq!(answer.status(), StatusCode::OK, "{path}");
            assert_eq!(answer.headers()["content-type"], content_type, "{path}");
            let disposition = answer.headers()["content-disposition"].to_str().unwrap().to_string();
            let name = disposition.strip_prefix("attachment; filename=\"").and_then(|n| n.strip_suffix('"'));
            let name = name.unwrap_or_else(|| panic!("{disposition}"));
            // the file's name as sent: openpyxl goes by its extension
            let path = std::env::temp_dir().join(format!("careledger-{}-{name}", uuid::Uuid::now_v7()));
            std::fs::write(&path, answer.bytes().await.unwrap()).unwrap();
            path
        }
    };
    const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
    let csv = download(format!("/api/v1/code-batches/{batch}/export.csv"), "text/csv; charset=utf-8").await;
    let all: Vec<String> = std::fs::read_to_string(&csv).unwrap().lines().skip(1).map(String::from).collect();
    assert_eq!(all.len(), 12_000);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 12_000, "no code twice");
    let batch_xlsx = download(format!("/api/v1/code-batches/{batch}/order.xlsx"), XLSX).await;
    let reservation_zip =
        download(format!("/api/v1/codes/reservations/{reservation}/qr-codes.zip"), "application/zip").await;
    let reservation_xlsx = download(format!("/api/v1/codes/reservations/{reservation}/order.xlsx"), XLSX).await;
    let reserved_zip =
        download(format!("/api/v1/code-batches/{batch}/qr-codes.zip?status=reserved"), "application/zip").await;

    let read = |xlsx: &std::path::Path, zip: &std::path::Path| {
        let out = careledger_tests::python("printer_order_read.py").arg(xlsx).arg(zip).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let row = |code: &str| json!([code, format!("{code}.png")]);
    // the batch's list: every code in generation order (the CSV's), each with its image's name
    let order = read(&batch_xlsx, &reservation_zip);
    let rows = order["sheets"]["Order"].as_array().unwrap();
    assert_eq!(rows[0], json!(["CHFID", "File name"]));
    assert_eq!(rows[1..].to_vec(), all.iter().map(|c| row(c)).collect::<Vec<_>>());
    // the reservation's images: one per reserved code, named as listed, decoding to its code
    let expected: serde_json::Map<String, Value> =
        reserved.iter().map(|c| (format!("{c}.png"), json!([c, "QRCode"]))).collect();
    assert_eq!(order["images"], Value::Object(expected.clone()));
    let order = read(&reservation_xlsx, &reserved_zip);
    let rows = order["sheets"]["Order"].as_array().unwrap();
    assert_eq!(rows[1..].to_vec(), reserved.iter().map(|c| row(c)).collect::<Vec<_>>(), "in code order");
    assert_eq!(order["images"], Value::Object(expected), "the batch's reserved codes are the reservation's");
    for path in [csv, batch_xlsx, reservation_zip, reservation_xlsx, reserved_zip] {
        std::fs::remove_file(path).ok();
    }

    // refusals
    let unknown = s.get("/api/v1/codes/reservations/0194f1c2-0000-7000-8000-000000000000/order.xlsx", &t).await;
    assert_eq!((unknown.status, unknown.error_type()), (StatusCode::NOT_FOUND, "not_found"));
    let bad = s.get("/api/v1/codes/reservations/not-a-uuid/qr-codes.zip", &t).await;
    assert_eq!(bad.invalid_entries(), vec!["reservation_id"]);
    let bad = s.get(&format!("/api/v1/code-batches/{batch}/order.xlsx?status=lost"), &t).await;
    assert_eq!(bad.invalid_entries(), vec!["status"]);
    let unknown = s.get("/api/v1/code-batches/0194f1c2-0000-7000-8000-000000000000/qr-codes.zip", &t).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let no_right = careledger_tests::token_for("clerk", "111001", None);
    let denied = s.get(&format!("/api/v1/codes/reservations/{reservation}/order.xlsx"), &no_right).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
}

both_backends!(authentication_and_permissions, authentication_and_permissions_on);
async fn authentication_and_permissions_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let body = json!({ "holder_type": 1, "holder_code": "P" }).to_string();
    let none = s.request(reqwest::Method::POST, "/api/v1/code-batches", None, Some(&body)).await;
    assert_eq!((none.status, none.error_type()), (StatusCode::UNAUTHORIZED, "access_denied"));
    assert_eq!(none.body["error"]["message"], "Invalid access token");
    let forged = careledger_gateway::auth::Keys::new("another-secret").mint("u", ALL, None, 60).unwrap();
    let bad = s.request(reqwest::Method::POST, "/api/v1/code-batches", Some(&forged), Some(&body)).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let expired = careledger_gateway::auth::Keys::new(careledger_tests::SECRET).mint("u", ALL, None, 0).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let late = s.request(reqwest::Method::POST, "/api/v1/code-batches", Some(&expired), Some(&body)).await;
    assert_eq!(late.status, StatusCode::UNAUTHORIZED);
    let garbage = s.request(reqwest::Method::GET, "/api/v1/events", Some("not.a.jwt"), None).await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);

    let reader = s.token("111102");
    let denied = s.request(reqwest::Method::POST, "/api/v1/code-batches", Some(&reader), Some(&body)).await;
    assert_eq!((denied.status, denied.error_type()), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!(
        denied.body["error"]["message"],
        "Your scope does not allow to access this resource. Missing allowances: 111101"
    );
    for (method, path) in [
        (reqwest::Method::POST, "/api/v1/codes/reservations"),
        (reqwest::Method::POST, "/api/v1/codes/123456782/assignment"),
        (reqwest::Method::POST, "/api/v1/codes/123456782/control-number"),
        (reqwest::Method::GET, "/api/v1/events"),
        (reqwest::Method::GET, "/api/v1/streams/codes-batch-x/events"),
    ] {
        let a = s.request(method.clone(), path, Some(&reader), Some("{}")).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{method} {path}: {}", a.text);
    }
    let writer = s.token("111101");
    for path in ["/api/v1/code-batches?holder_type=1&holder_code=P", "/api/v1/codes/123456782"] {
        assert_eq!(s.get(path, &writer).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(s.state().store.count().await.unwrap(), 0, "nothing was appended");
}

both_backends!(bad_input_is_refused_and_loses_nothing, bad_input_on);
async fn bad_input_on(kind: Kind) {
    let s = TestServer::start_with(kind, |c| c.max_body_bytes = 4096).await;
    let t = s.token(ALL);
    let post = |body: &'static str| {
        let s = &s;
        let t = t.clone();
        async move { s.request(reqwest::Method::POST, "/api/v1/code-batches", Some(&t), Some(body)).await }
    };
    let a = post("{\"holder_type\": 1,").await;
    assert_eq!((a.status, a.error_type()), (StatusCode::BAD_REQUEST, "request_malformed"));
    let a = post("[1, 2]").await;
    assert_eq!((a.status, a.invalid_entries()), (StatusCode::UNPROCESSABLE_ENTITY, vec!["$".to_string()]));
    let a = post("{\"holder_type\": \"nurse\", \"holder_code\": 5, \"number\": 0, \"colour\": \"red\"}").await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.error_type(), "validation_failed");
    assert_eq!(a.invalid_entries(), vec!["$.colour", "$.holder_type", "$.holder_code", "$.number"]);
    assert_eq!(a.body["error"]["invalid"][0]["entry_type"], "json_data_property");
    let a = post("{\"holder_type\": 1, \"holder_code\": \"P\", \"number\": 1000001}").await;
    assert_eq!(a.invalid_entries(), vec!["$.number"]);
    let a = post("{\"holder_type\": 1, \"holder_code\": \"P\", \"number\": \"ten\"}").await;
    assert_eq!(a.body["error"]["invalid"][0]["rules"][0]["rule"], "cast");
    let big = format!("{{\"holder_type\": 1, \"holder_code\": \"{}\"}}", "x".repeat(5000));
    let a = s.request(reqwest::Method::POST, "/api/v1/code-batches", Some(&t), Some(&big)).await;
    assert_eq!((a.status, a.error_type()), (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large"));
    let a = s.request(reqwest::Method::POST, "/api/v1/codes/reservations", Some(&t), Some("{}")).await;
    assert_eq!(a.invalid_entries(), vec!["$.holder_type", "$.holder_code", "$.number"]);
    let a = s.request(reqwest::Method::DELETE, "/api/v1/code-batches", Some(&t), None).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    let a = s.get("/api/v1/nothing-here", &t).await;
    assert_eq!((a.status, a.error_type()), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(s.state().store.count().await.unwrap(), 0, "nothing was appended");
    // and the service keeps serving
    let (_, _) = generate(&s, "P", 3).await;
}

both_backends!(reservations_never_overlap, reservations_never_overlap_on);
async fn reservations_never_overlap_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = s.token(ALL);
    let (b1, _) = generate(&s, "EO-1", 60).await;
    let (b2, p2) = generate(&s, "EO-1", 60).await;
    s.state().projections.wait_for(p2, std::time::Duration::from_secs(10)).await;

    // 20 concurrent reservations of 7 from 120 codes: 17 fit, 3 cannot
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = s.client.clone();
        let url = format!("{}/api/v1/codes/reservations", s.base);
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(t)
                .json(&json!({ "holder_type": 1, "holder_code": "EO-1", "number": 7 }))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut reserved: Vec<String> = Vec::new();
    let mut refused = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            StatusCode::CREATED => {
                let codes = body["data"]["codes"].as_array().unwrap();
                assert_eq!(codes.len(), 7);
                reserved.extend(codes.iter().map(|c| c.as_str().unwrap().to_string()));
            }
            StatusCode::CONFLICT => refused += 1,
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((reserved.len(), refused), (17 * 7, 3));
    assert_eq!(reserved.iter().collect::<HashSet<_>>().len(), reserved.len(), "a code was reserved twice");

    // asking for more than is left reserves nothing
    let too_many =
        s.post("/api/v1/codes/reservations", &t, json!({ "holder_type": 1, "holder_code": "EO-1", "number": 2 })).await;
    assert_eq!((too_many.status, too_many.error_type()), (StatusCode::CONFLICT, "request_conflict"));
    let last = s
        .post(
            "/api/v1/codes/reservations",
            &t,
            json!({ "holder_type": 1, "holder_code": "EO-1", "number": 1, "batch_id": b2 }),
        )
        .await;
    assert_eq!(last.status, StatusCode::CREATED, "{}", last.text);
    let after = last.position();
    let left = codes_of(&s, &b1, "available", after).await.len() + codes_of(&s, &b2, "available", after).await.len();
    assert_eq!(left, 0);
    let list = s.get(&format!("/api/v1/code-batches?holder_type=1&holder_code=EO-1&after_position={after}"), &t).await;
    let reserved_count: i64 = list.data().as_array().unwrap().iter().map(|b| b["reserved"].as_i64().unwrap()).sum();
    assert_eq!(reserved_count, 120);

    // a batch of another holder, an unknown batch
    let other = s
        .post(
            "/api/v1/codes/reservations",
            &t,
            json!({ "holder_type": 2, "holder_code": "EO-1", "number": 1, "batch_id": b1 }),
        )
        .await;
    assert_eq!(
        (other.status, other.invalid_entries()),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["$.batch_id".to_string()])
    );
    let unknown = s
        .post("/api/v1/codes/reservations", &t, json!({ "holder_type": 1, "holder_code": "EO-1", "number": 1, "batch_id": "0194f1c2-0000-7000-8000-000000000000" }))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let nobody = s
        .post("/api/v1/codes/reservations", &t, json!({ "holder_type": 4, "holder_code": "nowhere", "number": 1 }))
        .await;
    assert_eq!(nobody.status, StatusCode::CONFLICT);
}

both_backends!(assignment_control_number_and_history, assignment_on);
async fn assignment_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = s.token(ALL);
    let (batch, p) = generate(&s, "P-9", 10).await;
    let codes = codes_of(&s, &batch, "available", p).await;
    let r =
        s.post("/api/v1/codes/reservations", &t, json!({ "holder_type": 1, "holder_code": "P-9", "number": 1 })).await;
    let reserved = r.data()["codes"][0].as_str().unwrap().to_string();
    assert_eq!(reserved, codes[0], "reservations take the oldest codes first");

    // reserved -> assigned, with json_ext
    let a = s
        .post(
            &format!("/api/v1/codes/{reserved}/assignment"),
            &t,
            json!({ "insuree_id": "ins-1", "json_ext": { "product_id": 4 } }),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.data()["status"], "assigned");
    assert_eq!(a.data()["insuree_id"], "ins-1");
    assert_eq!(a.data()["json_ext"], json!({ "product_id": 4 }));
    // same insuree again: idempotent 200, nothing appended
    let count = s.state().store.count().await.unwrap();
    let again = s.post(&format!("/api/v1/codes/{reserved}/assignment"), &t, json!({ "insuree_id": "ins-1" })).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(s.state().store.count().await.unwrap(), count);
    // another insuree: 409
    let other = s.post(&format!("/api/v1/codes/{reserved}/assignment"), &t, json!({ "insuree_id": "ins-2" })).await;
    assert_eq!(other.status, StatusCode::CONFLICT);
    // available -> assigned; an insuree holds one code only
    let b = s.post(&format!("/api/v1/codes/{}/assignment", codes[5]), &t, json!({ "insuree_id": "ins-2" })).await;
    assert_eq!(b.status, StatusCode::OK);
    let second = s.post(&format!("/api/v1/codes/{}/assignment", codes[6]), &t, json!({ "insuree_id": "ins-2" })).await;
    assert_eq!(second.status, StatusCode::CONFLICT, "{}", second.text);
    // unknown valid code: 404; invalid code: 422; bad body: 422
    let unknown = CodeFormat::default().render(10_000_000 * 10 + CodeFormat::default().check_digit(10_000_000) as u64);
    let u = s.post(&format!("/api/v1/codes/{unknown}/assignment"), &t, json!({ "insuree_id": "ins-3" })).await;
    assert_eq!(u.status, StatusCode::NOT_FOUND, "{}", u.text);
    let i = s.post("/api/v1/codes/123456781/assignment", &t, json!({ "insuree_id": "ins-3" })).await;
    assert_eq!((i.status, i.invalid_entries()), (StatusCode::UNPROCESSABLE_ENTITY, vec!["code".to_string()]));
    let e = s
        .post(&format!("/api/v1/codes/{}/assignment", codes[7]), &t, json!({ "insuree_id": "", "json_ext": [1] }))
        .await;
    assert_eq!(e.invalid_entries(), vec!["$.insuree_id", "$.json_ext"]);

    // control number
    let cn =
        s.post(&format!("/api/v1/codes/{reserved}/control-number"), &t, json!({ "control_number": "CN-77" })).await;
    assert_eq!((cn.status, cn.data()["control_number"].as_str()), (StatusCode::OK, Some("CN-77")));
    let same =
        s.post(&format!("/api/v1/codes/{reserved}/control-number"), &t, json!({ "control_number": "CN-77" })).await;
    assert_eq!(same.status, StatusCode::OK);
    let other =
        s.post(&format!("/api/v1/codes/{reserved}/control-number"), &t, json!({ "control_number": "CN-78" })).await;
    assert_eq!(other.status, StatusCode::CONFLICT);
    let bad = s.post(&format!("/api/v1/codes/{reserved}/control-number"), &t, json!({})).await;
    assert_eq!(bad.invalid_entries(), vec!["$.control_number"]);

    // the follow-up: status, links and every event with time and actor
    let detail = s.get(&format!("/api/v1/codes/{reserved}?after_position={}", cn.position()), &t).await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.text);
    let d = detail.data();
    assert_eq!(
        (d["status"].as_str(), d["insuree_id"].as_str(), d["control_number"].as_str()),
        (Some("assigned"), Some("ins-1"), Some("CN-77"))
    );
    assert_eq!(
        (d["holder_type"].as_i64(), d["holder_code"].as_str(), d["batch_id"].as_str()),
        (Some(1), Some("P-9"), Some(batch.as_str()))
    );
    let history: Vec<&str> =
        d["history"].as_array().unwrap().iter().map(|h| h["event_type"].as_str().unwrap()).collect();
    assert_eq!(history, vec!["CodeBatchGenerated", "CodesReserved", "CodeAssigned", "ControlNumberLinked"]);
    for h in d["history"].as_array().unwrap() {
        assert_eq!(h["actor"]["user_id"], "user-1");
        assert_eq!(h["actor"]["legal_entity_id"], "le-1");
        assert!(h["recorded_at"].as_str().unwrap().contains('T'));
    }
    assert_eq!(s.get(&format!("/api/v1/codes/{unknown}"), &t).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/api/v1/codes/12", &t).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let counts = s
        .get(&format!("/api/v1/code-batches?holder_type=1&holder_code=P-9&after_position={}", cn.position()), &t)
        .await;
    let b = &counts.data()[0];
    assert_eq!((b["available"].as_i64(), b["reserved"].as_i64(), b["assigned"].as_i64()), (Some(8), Some(0), Some(2)));
}

both_backends!(idempotency_keys_repeat_the_first_answer, idempotency_on);
async fn idempotency_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = s.token(ALL);
    let send = |key: &'static str, number: i64| {
        let s = &s;
        let t = t.clone();
        async move {
            let r = s
                .client
                .post(format!("{}/api/v1/code-batches", s.base))
                .bearer_auth(t)
                .header("Idempotency-Key", key)
                .json(&json!({ "holder_type": 1, "holder_code": "IDEM", "number": number }))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let position = r.headers().get("careledger-position").map(|v| v.to_str().unwrap().to_string());
            (status, r.json::<Value>().await.unwrap(), position)
        }
    };
    let (s1, b1, p1) = send("k-1", 5).await;
    let (s2, b2, p2) = send("k-1", 5).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(b1["data"], b2["data"]);
    assert_eq!(p1, p2);
    let (s3, b3, _) = send("k-1", 6).await;
    assert_eq!(s3, StatusCode::UNPROCESSABLE_ENTITY, "{b3}");
    // concurrent repeats of a new key: one batch
    let (a, b) = tokio::join!(send("k-2", 4), send("k-2", 4));
    assert_eq!(a.1["data"]["batch_id"], b.1["data"]["batch_id"]);
    let last: i64 = a.2.unwrap().parse().unwrap();
    let list = s.get(&format!("/api/v1/code-batches?holder_type=1&holder_code=IDEM&after_position={last}"), &t).await;
    assert_eq!(list.body["paging"]["total"], 2);
}

both_backends!(audit_trail, audit_trail_on);
async fn audit_trail_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let t = s.token(ALL);
    let (batch, _) = generate(&s, "AUD", 3).await;
    let stream = format!("codes-batch-{batch}");
    let a = s.get(&format!("/api/v1/streams/{stream}/events"), &t).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let events = a.data().as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event_type"], "CodeBatchGenerated");
    assert_eq!(events[0]["version"], 1);
    assert_eq!(events[0]["metadata"]["command"], "GenerateCodes");
    assert_eq!(events[0]["metadata"]["actor"]["user_id"], "user-1");
    assert_eq!(events[1]["data"]["codes"].as_array().unwrap().len(), 3);
    let page = s.get(&format!("/api/v1/streams/{stream}/events?after_version=1&limit=1"), &t).await;
    assert_eq!(page.data()[0]["version"], 2);
    assert_eq!(page.body["paging"]["next_version"], 2);
    assert_eq!(s.get("/api/v1/streams/codes-batch-nope/events", &t).await.status, StatusCode::NOT_FOUND);

    generate(&s, "AUD", 2).await;
    let all = s.get("/api/v1/events?after=0&limit=3", &t).await;
    let positions: Vec<i64> = all.data().as_array().unwrap().iter().map(|e| e["position"].as_i64().unwrap()).collect();
    assert_eq!(positions.len(), 3);
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    let rest = s.get(&format!("/api/v1/events?after={}", all.body["paging"]["next"]), &t).await;
    assert_eq!(rest.data().as_array().unwrap().len(), 1);
    assert_eq!(s.get("/api/v1/events?limit=5000", &t).await.invalid_entries(), vec!["limit"]);
}

both_backends!(operations_endpoints, operations_on);
async fn operations_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let (_, p) = generate(&s, "OPS", 2).await;
    s.state().projections.wait_for(p, std::time::Duration::from_secs(10)).await;
    let health = s.request(reqwest::Method::GET, "/health", None, None).await;
    assert_eq!((health.status, health.body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let ready = s.request(reqwest::Method::GET, "/ready", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["projections"][0]["name"], "codes");
    assert!(ready.body["projections"][0]["position"].as_i64().unwrap() >= p);
    let metrics = s.request(reqwest::Method::GET, "/metrics", None, None).await;
    for name in [
        "careledger_commands_total",
        "careledger_appends_total",
        "careledger_projection_lag",
        "careledger_projection_position",
    ] {
        assert!(metrics.text.contains(name), "/metrics lacks {name}");
    }
    let spec = s.request(reqwest::Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(spec.status, StatusCode::OK);
    for path in [
        "/api/v1/code-batches",
        "/api/v1/code-batches/{batch_id}/codes",
        "/api/v1/code-batches/{batch_id}/export.csv",
        "/api/v1/code-batches/{batch_id}/order.xlsx",
        "/api/v1/code-batches/{batch_id}/qr-codes.zip",
        "/api/v1/codes/reservations/{reservation_id}/order.xlsx",
        "/api/v1/codes/reservations/{reservation_id}/qr-codes.zip",
        "/api/v1/codes/reservations",
        "/api/v1/codes/{code}/assignment",
        "/api/v1/codes/{code}/control-number",
        "/api/v1/codes/{code}",
        "/api/v1/streams/{stream}/events",
        "/api/v1/events",
        "/api/v1/events/schema",
        "/api/v1/audit",
        "/health",
        "/ready",
        "/metrics",
        "/api/v1/openapi.json",
    ] {
        assert!(spec.body["paths"].get(path).is_some(), "openapi.json does not describe {path}");
    }
}
