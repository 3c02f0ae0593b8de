//! `careledger sync --peer URL` (issue #21, "Over the internet"), the real binary between two real
//! servers, a node on SQLite and the central one on PostgreSQL: the first round brings the node
//! the codes reserved for it; the node enrols offline; the next round takes its insurees and policy
//! to the central server, which assigns their numbers; a round with nothing new appends nothing on
//! either side; the positions reached are kept per peer; a peer that does not answer is retried
//! with backoff, then the command fails having changed nothing.

use std::path::Path;
use std::process::{Command, Output};

use careledger_tests::{Kind, SECRET, TestServer, careledger_binary, token_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

const OPERATOR: &str = "111101 111102 101101 101201 101102 101202 reference:write";

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
    let (central, node) = (TestServer::start(Kind::Postgres).await, TestServer::start(Kind::Sqlite).await);
    let data_dir = std::env::temp_dir().join(format!("careledger-sync-http-{}", uuid::Uuid::now_v7()));
    let node_system = node.state().config.fhir_system.clone();
    // the central operator's token for the node: its sub names the node
    let token = token_for(&node_system, "sync:read sync:write", None);
    let t = token_for("operator", OPERATOR, None);
    central.small_register().await;
    node.small_register().await;
    let a =
        central.post("/api/v1/code-batches", &t, json!({ "holder_type": 2, "holder_code": "E01", "number": 10 })).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let body = json!({ "holder_type": 2, "holder_code": "E01", "number": 3, "for_server": node_system });
    let a = central.post("/api/v1/codes/reservations", &t, body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    central.settled().await;
    node.settled().await;

    // round 1: the codes reach the node
    let round = sync(&data_dir, &node, &central.base, &token, &[]);
    assert!(round.status.success(), "{}", stderr(&round));
    node.settled().await;
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

    // round 2: the node's enrolment reaches the central server
    let round = sync(&data_dir, &node, &central.base, &token, &[]);
    assert!(round.status.success(), "{}", stderr(&round));
    central.settled().await;
    let found = central.get(&format!("/fhir/Patient?identifier={node_system}|{insuree}"), &t).await;
    let identifiers = found.body["entry"][0]["resource"]["identifier"].as_array().cloned().unwrap_or_default();
    assert!(identifiers.iter().any(|i| i["value"] == chfid), "{}", found.text);
    let code = central.get(&format!("/api/v1/codes/{chfid}"), &t).await;
    assert_eq!(code.data()["status"], "assigned", "{}", code.text);

    // round 3: nothing new, nothing appended on either side
    let (central_head, node_head) = (central.settled().await, node.settled().await);
    let round = sync(&data_dir, &node, &central.base, &token, &[]);
    assert!(round.status.success(), "{}", stderr(&round));
    assert_eq!(central.state().store.head().await.unwrap(), central_head);
    assert_eq!(node.state().store.head().await.unwrap(), node_head);
    let cursors: Value =
        serde_json::from_str(&std::fs::read_to_string(data_dir.join("sync-peers.json")).unwrap()).unwrap();
    assert!(cursors[&central.base]["pushed"].as_i64().unwrap() > 0, "{cursors}");
    assert!(cursors[&central.base]["pulled"].as_i64().unwrap() > 0, "{cursors}");

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
