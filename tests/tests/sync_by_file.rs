//! The sync by file (issue #21, "By file"), with the real `careledger` binary against two real
//! servers: a node on SQLite enrols insurees and a policy offline; `careledger sync export` writes
//! them into a file signed by the node and encrypted to the central server (on PostgreSQL);
//! `careledger sync import` on the central server imports it: the insurees with the numbers the
//! node gave them (assigned there in the same append), found by the node's system. Importing the
//! file again adds nothing; a file changed on the way, or signed by a key the central server was
//! not given, is refused with nothing appended.
//!
//! The codes the node hands out travel first, the other way: reserved on the central server for
//! the node (and so not handed out there), sent in a file the node imports.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use careledger_tests::{Kind, SECRET, TestServer, careledger_binary, token_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

const OPERATOR: &str = "111101 111102 101101 101201 101102 101202 reference:write";

fn careledger(data_dir: &Path, server: &TestServer, args: &[&str]) -> Output {
    Command::new(careledger_binary())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--server", &server.base])
        .env("CARELEDGER_JWT_SECRET", SECRET)
        .env("CARELEDGER_FHIR_SYSTEM", &server.state().config.fhir_system)
        .output()
        .expect("run careledger (build it with `cargo build --workspace --bins`)")
}

/// The server's public key file, made by `careledger sync keys` in its data directory.
fn keys(dir: &Path, data_dir: &Path, server: &TestServer, name: &str) -> PathBuf {
    let public = dir.join(format!("{name}.pub.json"));
    let made = Command::new(careledger_binary())
        .args(["sync", "keys", "--data-dir"])
        .arg(data_dir)
        .args(["--fhir-system", &server.state().config.fhir_system, "--out"])
        .arg(&public)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    public
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nodes_enrolment_reaches_the_central_server_by_a_signed_encrypted_file() {
    let central = TestServer::start(Kind::Postgres).await;
    let central_system = central.state().config.fhir_system.clone();
    let node = TestServer::start_with(Kind::Sqlite, |c| c.sync_master = Some(central_system)).await;
    let dir = std::env::temp_dir().join(format!("careledger-sync-file-{}", uuid::Uuid::now_v7()));
    let (central_dir, node_dir) = (dir.join("central"), dir.join("node"));
    std::fs::create_dir_all(&dir).unwrap();
    let central_pub = keys(&dir, &central_dir, &central, "central");
    let node_pub = keys(&dir, &node_dir, &node, "node");
    let t = token_for("operator", OPERATOR, None);

    // the central server reserves codes to enrolment officer E01 for the node, and sends them
    let node_system = node.state().config.fhir_system.clone();
    let sent = central.codes_for_node(10, 3, &node_system).await;
    // the register is the central server's: the node gets it with the file
    central.small_register().await;
    central.settled().await;
    // codes reserved for the node are not handed out on the central server
    let body = json!({ "last_name": "Njeri", "other_names": "Amani", "birth_date": "1990-01-31", "gender": "F",
                       "holder_type": "enrolment_officer", "holder_code": "E01" });
    let a = central.post("/api/v1/enrolment/insurees", &t, body).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    // what the node is sent: a Basic per reservation, to the node alone, valid FHIR (beside the
    // register entries every peer is sent)
    let reservation = |r: &Value| r["code"]["coding"][0]["code"] == "code-reservation";
    let for_node = central.get("/fhir/$changes?_since=0", &token_for(&node_system, "sync:read", None)).await;
    let basics: Vec<_> =
        for_node.body["entry"].as_array().unwrap().iter().map(|e| e["resource"].clone()).filter(reservation).collect();
    assert_eq!(basics.len(), 1, "{}", for_node.text);
    careledger_tests::valid_fhir(&basics);
    let for_other =
        central.get("/fhir/$changes?_since=0", &token_for("urn:uuid:another-node", "sync:read", None)).await;
    assert!(
        for_other.body["entry"].as_array().is_none_or(|e| e.iter().all(|e| !reservation(&e["resource"]))),
        "{}",
        for_other.text
    );
    let to_node = dir.join("central-to-node.sync");
    let central_pub_arg = central_pub.to_str().unwrap().to_string();
    let node_pub_arg = node_pub.to_str().unwrap().to_string();
    let out = careledger(
        &central_dir,
        &central,
        &["sync", "export", "--peer", &node_pub_arg, "--out", to_node.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let into_node =
        careledger(&node_dir, &node, &["sync", "import", to_node.to_str().unwrap(), "--from", &central_pub_arg]);
    assert!(into_node.status.success(), "{}", String::from_utf8_lossy(&into_node.stderr));
    node.settled().await;
    for code in &sent {
        let on_node = node.get(&format!("/api/v1/codes/{code}"), &t).await;
        assert_eq!(on_node.data()["status"], "reserved", "{}", on_node.text);
    }
    // the same file again changes nothing on the node
    let head = node.settled().await;
    let again =
        careledger(&node_dir, &node, &["sync", "import", to_node.to_str().unwrap(), "--from", &central_pub_arg]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(node.state().store.head().await.unwrap(), head);

    // offline, the node enrols two insurees and a policy
    let mut enrolled = vec![];
    for name in ["Mwangi", "Otieno"] {
        let body = json!({ "last_name": name, "other_names": "Amani", "birth_date": "1990-01-31", "gender": "F",
                           "holder_type": "enrolment_officer", "holder_code": "E01" });
        let a = node.post("/api/v1/enrolment/insurees", &t, body).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        enrolled.push((
            a.data()["insuree_id"].as_str().unwrap().to_string(),
            a.data()["chfid"].as_str().unwrap().to_string(),
        ));
    }
    let body = json!({ "insuree_id": enrolled[0].0, "product_code": "P1", "enrol_date": "2026-12-01", "expiry_date": "2027-11-30" });
    let a = node.post("/api/v1/enrolment/policies", &t, body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    node.settled().await;

    // the node writes its changes into a file for the central server
    let file = dir.join("node-to-central.sync");
    let out = careledger(
        &node_dir,
        &node,
        &["sync", "export", "--peer", central_pub.to_str().unwrap(), "--out", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 resources"), "{}", String::from_utf8_lossy(&out.stderr));

    // a file changed on the way, or signed by a key not given, is refused: nothing appended
    let before = central.settled().await;
    let mut tampered = std::fs::read(&file).unwrap();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    let tampered_file = dir.join("tampered.sync");
    std::fs::write(&tampered_file, tampered).unwrap();
    let refused = careledger(
        &central_dir,
        &central,
        &["sync", "import", tampered_file.to_str().unwrap(), "--from", &node_pub_arg],
    );
    assert!(!refused.status.success());
    let refused = careledger(
        &central_dir,
        &central,
        &["sync", "import", file.to_str().unwrap(), "--from", central_pub.to_str().unwrap()],
    );
    assert!(!refused.status.success(), "signed by the node, not by the key given");
    assert_eq!(central.state().store.head().await.unwrap(), before, "nothing appended by a refused file");

    // the file goes in: the insurees with the node's numbers, the codes assigned on the central server
    let imported =
        careledger(&central_dir, &central, &["sync", "import", file.to_str().unwrap(), "--from", &node_pub_arg]);
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    assert!(
        String::from_utf8_lossy(&imported.stderr).contains("3 new"),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    central.settled().await;
    let found = central.get(&format!("/fhir/Patient?identifier={node_system}|"), &t).await;
    let mut chfids: Vec<String> = found.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["resource"]["identifier"].as_array().unwrap().clone())
        .filter(|i| i["type"]["coding"][0]["code"] == "Code")
        .map(|i| i["value"].as_str().unwrap().to_string())
        .collect();
    chfids.sort();
    let mut expected: Vec<String> = enrolled.iter().map(|(_, c)| c.clone()).collect();
    expected.sort();
    assert!(expected.iter().all(|c| sent.contains(c)), "the node handed out the codes sent to it");
    assert_eq!(chfids, expected, "{}", found.text);
    for (_, chfid) in &enrolled {
        let code = central.get(&format!("/api/v1/codes/{chfid}"), &t).await;
        assert_eq!(code.data()["status"], "assigned", "{}", code.text);
    }
    let policies = central.get(&format!("/fhir/Coverage?identifier={node_system}|"), &t).await;
    assert_eq!(policies.body["entry"].as_array().map(Vec::len), Some(1), "{}", policies.text);

    // the same file again adds nothing
    let head = central.settled().await;
    let again =
        careledger(&central_dir, &central, &["sync", "import", file.to_str().unwrap(), "--from", &node_pub_arg]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(central.state().store.head().await.unwrap(), head);
}
