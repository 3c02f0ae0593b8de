//! `careledger sync --peer URL` (issue #21, "Over the internet"), the real binary between two real
//! servers, a node on SQLite and the central one on PostgreSQL: the first round brings the node
//! the codes reserved for it and the insurees the central server enrolled itself (the node names
//! it its master); the node enrols offline and enters claims, for its insurees and the central
//! one's, submitting two; the next round takes its insurees, policy and claims to the central
//! server, which assigns their numbers and submits the two claims under its own rules; a round
//! with nothing new appends nothing on either side; the positions reached are kept per peer; a peer
//! that does not answer is retried with backoff, then the command fails having changed nothing.

use std::path::Path;
use std::process::{Command, Output};

use careledger_tests::{CLAIMS, Kind, SECRET, TestServer, careledger_binary, token_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

const OPERATOR: &str = "111101 111102 101101 101201 101102 101202 reference:write 111001 111002 111007";

/// One round of `careledger sync --peer` run on the node's side.
fn sync(data_dir: &Path, node: &TestServer, peer: &str, token: &str, extra: &[&str]) -> Output {
    Command::new(careledger_binary())
        .arg("--data-dir")
        .arg(data_dir)
        .args(["sync", "--peer", peer, "--server", &node.base])
        .args(extra)
        .env("CARELEDGER_JWT_SECRET", SECRET)
        .env("CARELEDGER_FHIR_SYSTEM", &node.state().config.fhir_system)
        .env("CARELEDGER_SYNC_PEER_TOKEN", token)
        .output()
        .expect("run careledger (build it with `cargo build --workspace --bins`)")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_syncs_with_the_central_server_over_http_and_resumes_from_where_it_reached() {
    let central = TestServer::start(Kind::Postgres).await;
    let central_system = central.state().config.fhir_system.clone();
    let node = TestServer::start_with(Kind::Sqlite, |c| c.sync_master = Some(central_system.clone())).await;
    let data_dir = std::env::temp_dir().join(format!("careledger-sync-http-{}", uuid::Uuid::now_v7()));
    let node_system = node.state().config.fhir_system.clone();
    // the central operator's token for the node: its sub names the node
    let token = token_for(&node_system, "sync:read sync:write", None);
    let t = token_for("operator", OPERATOR, None);
    // the register is the central server's alone: the node gets it with the sync
    central.small_register().await;
    central.codes_for_node(10, 3, &node_system).await;
    // an insuree the central server enrols itself, from codes of its own officer
    let a = central
        .post("/api/v1/codes/reservations", &t, json!({ "holder_type": 2, "holder_code": "E01", "number": 1 }))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let body = json!({ "last_name": "Kamau", "other_names": "Baraka", "birth_date": "1985-05-05", "gender": "M",
                       "holder_type": "enrolment_officer", "holder_code": "E01" });
    let a = central.post("/api/v1/enrolment/insurees", &t, body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let (central_insuree, central_chfid) =
        (a.data()["insuree_id"].as_str().unwrap().to_string(), a.data()["chfid"].as_str().unwrap().to_string());
    let body = json!({ "insuree_id": central_insuree, "product_code": "P1", "enrol_date": "2026-11-01",
                       "expiry_date": "2027-10-31" });
    let a = central.post("/api/v1/enrolment/policies", &t, body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    central.settled().await;
    node.settled().await;

    // round 1: the register, the codes and the central server's insuree reach the node
    let round = sync(&data_dir, &node, &central.base, &token, &[]);
    assert!(round.status.success(), "{}", stderr(&round));
    node.settled().await;
    for stream in ["claims-facility-HF1", "claims-item-I1", "claims-pricelist-HF1", "claims-product-P1"] {
        assert_eq!(node.state().store.stream_version(stream).await.unwrap(), 1, "{stream} on the node");
    }
    let found = node.get(&format!("/fhir/Patient?identifier={central_system}|{central_insuree}"), &t).await;
    assert_eq!(found.body["entry"].as_array().map_or(0, Vec::len), 1, "{}", found.text);
    let local = node.get(&format!("/fhir/Patient?identifier={central_chfid}"), &t).await;
    assert_eq!(
        local.body["entry"].as_array().map_or(0, Vec::len),
        1,
        "the master's insuree is found by its number: {}",
        local.text
    );
    let body = json!({ "last_name": "Mwangi", "other_names": "Amani", "birth_date": "1990-01-31", "gender": "F",
                       "holder_type": "enrolment_officer", "holder_code": "E01" });
    let a = node.post("/api/v1/enrolment/insurees", &t, body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let (insuree, chfid) =
        (a.data()["insuree_id"].as_str().unwrap().to_string(), a.data()["chfid"].as_str().unwrap().to_string());
    let body =
        json!({ "insuree_id": insuree, "product_code": "P1", "enrol_date": "2026-12-01", "expiry_date": "2027-11-30" });
    let a = node.post("/api/v1/enrolment/policies", &t, body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    node.settled().await;
    // claims entered offline: for the node's insuree and the central one's; two submitted
    let today = chrono::Utc::now().date_naive().to_string();
    let claim = |code: &str, chfid: &str| {
        json!({ "code": code, "health_facility": "HF1", "insuree": chfid, "date_from": today, "icd": "A00",
                "visit_type": "E", "explanation": "Пацієнт скерований", "guarantee_id": "G-1", "admin": "A01",
                "items": [{ "code": "I1", "qty_provided": 2, "price_asked": 8, "explanation": "twice" }] })
    };
    let mut claims = vec![];
    for (code, chfid) in [("N-1", &chfid), ("N-2", &central_chfid), ("N-3", &chfid)] {
        let a = node.post("/api/v1/claims", &t, claim(code, chfid)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        claims.push(a.data()["uuid"].as_str().unwrap().to_string());
    }
    node.settled().await;
    let a = node.post("/api/v1/claims/submit", &t, json!({ "uuids": [claims[0], claims[1]] })).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    node.settled().await;
    for claim in &claims[..2] {
        let a = node.get(&format!("/api/v1/claims/{claim}"), &t).await;
        assert_eq!(a.data()["status"], 4, "checked on the node: {}", a.text);
    }

    // round 2: the node's enrolment and claims reach the central server
    let round = sync(&data_dir, &node, &central.base, &token, &[]);
    assert!(round.status.success(), "{}", stderr(&round));
    central.settled().await;
    let found = central.get(&format!("/fhir/Patient?identifier={node_system}|{insuree}"), &t).await;
    let identifiers = found.body["entry"][0]["resource"]["identifier"].as_array().cloned().unwrap_or_default();
    assert!(identifiers.iter().any(|i| i["value"] == chfid), "{}", found.text);
    // the node's policy keeps the date it was enrolled on
    let coverage = central.get(&format!("/fhir/Coverage?identifier={node_system}|"), &t).await;
    let extension = &coverage.body["entry"][0]["resource"]["extension"][0];
    assert_eq!(extension["url"], "urn:careledger:fhir:extension:enrol-date", "{}", coverage.text);
    assert_eq!(extension["valueDate"], "2026-12-01", "{}", coverage.text);
    let code = central.get(&format!("/api/v1/codes/{chfid}"), &t).await;
    assert_eq!(code.data()["status"], "assigned", "{}", code.text);
    // the claims keep their ids (free here); the submitted two are submitted and checked here
    for (claim, status) in claims.iter().zip([4, 4, 2]) {
        let a = central.get(&format!("/api/v1/claims/{claim}"), &t).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        assert_eq!(a.data()["status"], status, "{}", a.text);
        let on_node = node.get(&format!("/api/v1/claims/{claim}"), &t).await;
        for field in [
            "code",
            "insuree",
            "health_facility",
            "date_from",
            "date_claimed",
            "icd",
            "visit_type",
            "admin",
            "explanation",
            "guarantee_id",
            "claimed",
        ] {
            assert_eq!(a.data()[field], on_node.data()[field], "{field}: {}", a.text);
        }
        assert_eq!(a.data()["items"][0]["explanation"], "twice", "{}", a.text);
        let found = central.get(&format!("/fhir/Claim?identifier={node_system}|{claim}"), &t).await;
        assert_eq!(
            found.body["entry"].as_array().map_or(0, Vec::len),
            1,
            "found by the node's identifier: {}",
            found.text
        );
    }
    let all = central.get(&format!("/fhir/Claim?identifier={node_system}|"), &t).await;
    assert_eq!(all.body["entry"].as_array().map_or(0, Vec::len), 3, "{}", all.text);

    // the central server decides: N-1 processed, N-2 rejected by its reviewer; the node, still
    // offline, changes N-3 (entered on both sides) and may not process a claim itself
    let c = token_for("admin", CLAIMS, None);
    let a = central.post("/api/v1/claims/process", &c, json!({ "uuids": [claims[0]] })).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = central.post("/api/v1/claims/review/select", &c, json!({ "uuids": [claims[1]] })).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let review = json!({ "lines": [{ "kind": "item", "index": 0, "rejected": true }], "deliver": true });
    let a = central.post(&format!("/api/v1/claims/{}/review", claims[1]), &c, review).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let mut changed = claim("N-3", &chfid);
    changed["items"][0]["qty_provided"] = json!(3);
    let a = node
        .request(reqwest::Method::PUT, &format!("/api/v1/claims/{}", claims[2]), Some(&c), Some(&changed.to_string()))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = node.post("/api/v1/claims/process", &c, json!({ "uuids": [claims[2]] })).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "an offline node leaves processing to its master: {}", a.text);
    central.settled().await;
    node.settled().await;

    // the central server changes its register (a new price of I1 at HF1 from today)
    let list = json!({ "entries": [{ "health_facility": "HF1",
        "items": [{ "code": "I1", "valid_from": "2020-01-01" }, { "code": "I1", "price": 9, "valid_from": today }] }] });
    let a = central.post("/api/v1/price-lists", &token_for("operator", "reference:write", None), list).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    central.settled().await;

    // round 3: the change goes up, the decisions and the new price come down
    let round = sync(&data_dir, &node, &central.base, &token, &[]);
    assert!(round.status.success(), "{}", stderr(&round));
    central.settled().await;
    node.settled().await;
    let prices = node.state().store.read_stream("claims-pricelist-HF1", 0, 10).await.unwrap();
    assert_eq!(prices.len(), 2, "the changed price list, once: {prices:?}");
    assert_eq!(prices[1].data["entries"][1]["price"], 9, "{:?}", prices[1].data);
    // the register does not come back from the node (nor would the central server take it)
    assert_eq!(central.state().store.stream_version("claims-pricelist-HF1").await.unwrap(), 2);
    assert_eq!(central.state().store.stream_version("claims-facility-HF1").await.unwrap(), 1);
    let a = central.get(&format!("/api/v1/claims/{}", claims[2]), &t).await;
    assert_eq!(a.data()["claimed"], 24, "the node's change of an entered claim: {}", a.text);
    for claim in &claims[..2] {
        let (there, here) = (
            central.get(&format!("/api/v1/claims/{claim}"), &c).await,
            node.get(&format!("/api/v1/claims/{claim}"), &c).await,
        );
        assert_ne!(there.data()["status"], 4, "decided on the central server: {}", there.text);
        for field in ["status", "rejection_reason", "approved", "valuated", "remunerated", "claimed"] {
            assert_eq!(here.data()[field], there.data()[field], "{field} mirrored on the node: {}", here.text);
        }
        for field in ["status", "rejection_reason", "price_valuated", "qty_approved"] {
            assert_eq!(here.data()["items"][0][field], there.data()["items"][0][field], "{field}: {}", here.text);
        }
    }
    let rejected = node.get(&format!("/api/v1/claims/{}", claims[1]), &c).await;
    assert_eq!(rejected.data()["status"], 1, "{}", rejected.text);

    // both sides change N-3: the central server submits it, the node (not knowing) changes it again
    let a = central.post("/api/v1/claims/submit", &c, json!({ "uuids": [claims[2]] })).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let mut again = claim("N-3", &chfid);
    again["items"][0]["qty_provided"] = json!(4);
    let put = format!("/api/v1/claims/{}", claims[2]);
    let a = node.request(reqwest::Method::PUT, &put, Some(&c), Some(&again.to_string())).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    central.settled().await;
    node.settled().await;

    // round 4: the master's decision stands on both sides, and each records the change it did not take
    let round = sync(&data_dir, &node, &central.base, &token, &[]);
    assert!(round.status.success(), "{}", stderr(&round));
    central.settled().await;
    node.settled().await;
    let (there, here) = (central.get(&put, &c).await, node.get(&put, &c).await);
    assert_eq!(there.data()["claimed"], 24, "not taken on the central server: {}", there.text);
    assert_eq!(here.data()["claimed"], 24, "replaced on the node by the master's claim: {}", here.text);
    assert_eq!(here.data()["status"], there.data()["status"], "{}", here.text);
    let s = token_for("operator", "sync:read", None);
    for (server, rule, peer) in
        [(&central, "DECIDED_HERE", &node_system), (&node, "REPLACED_BY_MASTER", &central_system)]
    {
        let listed = server.get("/api/v1/sync/conflicts", &s).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
        let conflicts = listed.data().as_array().cloned().unwrap_or_default();
        assert_eq!(conflicts.len(), 1, "{}", listed.text);
        assert_eq!(conflicts[0]["rule"], rule, "{}", listed.text);
        assert_eq!(conflicts[0]["id"], claims[2].as_str(), "{}", listed.text);
        assert_eq!(conflicts[0]["peer"], peer.as_str(), "{}", listed.text);
        assert_eq!(conflicts[0]["data"]["items"][0]["qty_provided"], 4, "the change kept whole: {}", listed.text);
    }
    let bad = central.get("/api/v1/sync/conflicts?peer=%00", &s).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);

    // the sync's events are the catalogue's
    let central_types = careledger_tests::events_match_their_schemas(&central).await;
    let node_types = careledger_tests::events_match_their_schemas(&node).await;
    assert!(central_types.contains("ConflictRecorded"), "{central_types:?}");
    assert!(node_types.contains("ConflictRecorded") && node_types.contains("OutcomeReceived"), "{node_types:?}");

    // deletions: the node enters N-4 and N-5 and sends them; the central server submits N-5; the
    // node deletes both (entered there). N-4 is deleted on the central server too; N-5, decided
    // there, stays, and the deletion is recorded (DELETED_THERE), never dropped silently
    let mut late = vec![];
    for code in ["N-4", "N-5"] {
        let a = node.post("/api/v1/claims", &t, claim(code, &chfid)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        late.push(a.data()["uuid"].as_str().unwrap().to_string());
    }
    node.settled().await;
    let round = sync(&data_dir, &node, &central.base, &token, &[]);
    assert!(round.status.success(), "{}", stderr(&round));
    central.settled().await;
    let a = central.post("/api/v1/claims/submit", &c, json!({ "uuids": [late[1]] })).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = node.post("/api/v1/claims/delete", &c, json!({ "uuids": late })).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    central.settled().await;
    node.settled().await;
    let round = sync(&data_dir, &node, &central.base, &token, &[]);
    assert!(round.status.success(), "{}", stderr(&round));
    central.settled().await;
    node.settled().await;
    let gone = central.get(&format!("/api/v1/claims/{}", late[0]), &c).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "deleted on the central server too: {}", gone.text);
    let kept = central.get(&format!("/api/v1/claims/{}", late[1]), &c).await;
    assert_eq!(kept.status, StatusCode::OK, "decided there, kept: {}", kept.text);
    let listed = central.get("/api/v1/sync/conflicts", &s).await;
    let conflicts: Vec<Value> =
        listed.data().as_array().into_iter().flatten().filter(|c| c["id"] == late[1].as_str()).cloned().collect();
    assert_eq!(conflicts.len(), 1, "{}", listed.text);
    assert_eq!(conflicts[0]["rule"], "DELETED_THERE", "{}", listed.text);
    // the deletion sent again (the node's claim stream moved: it recorded the master's decision
    // of a claim it had deleted) appends nothing on the central server
    let central_head = central.settled().await;
    let round = sync(&data_dir, &node, &central.base, &token, &[]);
    assert!(round.status.success(), "{}", stderr(&round));
    assert_eq!(central.state().store.head().await.unwrap(), central_head);

    // round 5: nothing new, nothing appended on either side
    let (central_head, node_head) = (central.settled().await, node.settled().await);
    let round = sync(&data_dir, &node, &central.base, &token, &[]);
    assert!(round.status.success(), "{}", stderr(&round));
    assert_eq!(central.state().store.head().await.unwrap(), central_head);
    assert_eq!(node.state().store.head().await.unwrap(), node_head);
    let cursors: Value =
        serde_json::from_str(&std::fs::read_to_string(data_dir.join("sync-peers.json")).unwrap()).unwrap();
    assert!(cursors[&central.base]["pushed"].as_i64().unwrap() > 0, "{cursors}");
    assert!(cursors[&central.base]["pulled"].as_i64().unwrap() > 0, "{cursors}");
    assert_eq!(cursors[&central.base]["system"], central_system.as_str(), "{cursors}");

    // a peer must be who it was: another system at that URL (or not the one required) is refused
    let impostor = sync(&data_dir, &node, &central.base, &token, &["--peer-system", "urn:uuid:someone-else"]);
    assert!(!impostor.status.success());
    assert!(stderr(&impostor).contains("names itself"), "{}", stderr(&impostor));
    let mut changed = cursors.clone();
    changed[&central.base]["system"] = json!("urn:uuid:someone-else");
    std::fs::write(data_dir.join("sync-peers.json"), changed.to_string()).unwrap();
    let impostor = sync(&data_dir, &node, &central.base, &token, &[]);
    assert!(stderr(&impostor).contains("when first synced with"), "{}", stderr(&impostor));
    std::fs::write(data_dir.join("sync-peers.json"), cursors.to_string()).unwrap();
    assert_eq!(node.state().store.head().await.unwrap(), node_head);

    // a peer that does not answer: retried with backoff, then an error, nothing changed
    let down = sync(&data_dir, &node, "http://127.0.0.1:9", &token, &["--retries", "1"]);
    assert!(!down.status.success());
    assert!(stderr(&down).contains("gave up after 2 attempts"), "{}", stderr(&down));
    assert_eq!(node.state().store.head().await.unwrap(), node_head);
    // without a token it says what is missing
    let mut no_token = Command::new(careledger_binary());
    no_token
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["sync", "--peer", &central.base])
        .env_remove("CARELEDGER_SYNC_PEER_TOKEN");
    let refused = no_token.output().unwrap();
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("--token"), "{}", stderr(&refused));
}

/// `serve` with `CARELEDGER_SYNC_PEER`: a round at start and every interval, without anyone
/// running `careledger sync`; `/ready` says where the sync stands, and a peer that cannot be
/// reached is a warning there (a node offline is still ready), retried with backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_syncs_with_its_peer_in_the_background_and_says_so_in_ready() {
    let central = TestServer::start(Kind::Sqlite).await;
    let central_system = central.state().config.fhir_system.clone();
    let node_system = format!("urn:uuid:{}", uuid::Uuid::now_v7());
    let data_dir = std::env::temp_dir().join(format!("careledger-sync-loop-{}", uuid::Uuid::now_v7()));
    let t = token_for("operator", OPERATOR, None);
    central.small_register().await;
    let reserved = central.codes_for_node(5, 3, &node_system).await;
    central.settled().await;

    let loop_config = |peer: &str| careledger_gateway::sync_peer::SyncLoopConfig {
        peer: careledger_gateway::sync_peer::Peer {
            url: peer.to_string(),
            token: token_for(&node_system, "sync:read sync:write", None),
            ca: None,
            system: None,
        },
        interval: std::time::Duration::from_millis(300),
        backoff: std::time::Duration::from_millis(100),
        cursors: data_dir.join("sync-peers.json"),
    };
    let (system, config) = (node_system.clone(), loop_config(&central.base));
    let mut node = TestServer::start_with(Kind::Sqlite, move |c| {
        c.fhir_system = system;
        c.sync_master = Some(central_system);
        c.sync_peer = Some(config);
    })
    .await;
    // the codes reserved for the node arrive by themselves
    let mut ready = Value::Null;
    for _ in 0..100 {
        ready = node.get("/ready", "").await.body;
        if ready["sync"]["last_synced_at"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ready["sync"]["reachable"], true, "{ready}");
    assert_eq!(ready["sync"]["failures"], 0, "{ready}");
    assert_eq!(ready["status"], "ready", "{ready}");
    node.settled().await;
    let code = node.get(&format!("/api/v1/codes/{}", reserved[0]), &t).await;
    assert_eq!(code.data()["status"], "reserved", "{}", code.text);

    // an insuree enrolled on the node reaches the central server with a later round
    let body = json!({ "last_name": "Mwangi", "other_names": "Amani", "birth_date": "1990-01-31", "gender": "F",
                       "holder_type": "enrolment_officer", "holder_code": "E01" });
    let a = node.post("/api/v1/enrolment/insurees", &t, body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let chfid = a.data()["chfid"].as_str().unwrap().to_string();
    let mut status = Value::Null;
    for _ in 0..100 {
        status = central.get(&format!("/api/v1/codes/{chfid}"), &t).await.body;
        if status["data"]["status"] == "assigned" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status["data"]["status"], "assigned", "{status}");
    node.stop().await;

    // a peer that does not answer: a warning in /ready, the rounds tried again and counted
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let config = loop_config(&gone);
    let mut offline = TestServer::start_with(Kind::Sqlite, move |c| c.sync_peer = Some(config)).await;
    let mut ready = Value::Null;
    for _ in 0..100 {
        ready = offline.get("/ready", "").await.body;
        if ready["sync"]["failures"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready["sync"]["failures"].as_u64().unwrap_or(0) >= 2, "{ready}");
    assert_eq!(ready["sync"]["reachable"], false, "{ready}");
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(ready["sync"]["last_error"].as_str().unwrap_or_default().contains("/fhir/metadata"), "{ready}");
    assert!(ready["warnings"].to_string().contains("sync rounds with"), "{ready}");
    offline.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// Runs `openssl` with these arguments in `dir`, panicking with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `sync --peer https://…`: TLS, checked against OpenSSL's own test server (`openssl s_server`)
/// with a certificate of a scheme's own CA. Refused while the CA is not trusted; with
/// `--peer-ca` the handshake goes through and the peer's answer is read (here: not a careledger).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_reaches_a_peer_over_tls_trusting_the_ca_it_is_given() {
    let node = TestServer::start(Kind::Sqlite).await;
    let dir = std::env::temp_dir().join(format!("careledger-sync-tls-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &dir,
        &[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=scheme CA", "-days", "2"]]
            .concat(),
    );
    openssl(
        &dir,
        &[&["req"][..], &ec, &["-keyout", "peer.key", "-out", "peer.csr", "-subj", "/CN=127.0.0.1"]].concat(),
    );
    std::fs::write(dir.join("peer.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "peer.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "peer.pem",
            "-days",
            "2",
            "-extfile",
            "peer.ext",
        ],
    );
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let mut server = Command::new("openssl")
        .current_dir(&dir)
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cert",
            "peer.pem",
            "-key",
            "peer.key",
            "-www",
            "-quiet",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_server");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let peer = format!("https://127.0.0.1:{port}");
    let token = token_for("node", "sync:read sync:write", None);

    let untrusted = sync(&dir, &node, &peer, &token, &["--retries", "0"]);
    assert!(!untrusted.status.success());
    // the command's own message says why, not only the verifier's log line
    let said = stderr(&untrusted);
    assert!(said.lines().any(|l| l.starts_with("careledger: https://") && l.contains("UnknownIssuer")), "{said}");
    let ca = dir.join("ca.pem");
    let trusted = sync(&dir, &node, &peer, &token, &["--retries", "0", "--peer-ca", ca.to_str().unwrap()]);
    assert!(!trusted.status.success());
    assert!(stderr(&trusted).contains("without naming the peer's system"), "{}", stderr(&trusted));
    let not_pem = dir.join("peer.csr");
    let refused = sync(&dir, &node, &peer, &token, &["--retries", "0", "--peer-ca", not_pem.to_str().unwrap()]);
    assert!(stderr(&refused).contains("certificate"), "{}", stderr(&refused));

    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
