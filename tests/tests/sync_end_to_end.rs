//! Offline sync end to end at the size (#21, "Done means"), two real `careledger serve`
//! processes: the central server on PostgreSQL, a node on its embedded SQLite naming it its master.
//! The register and 500 codes reserved for the node go to it by a signed, encrypted file; the
//! node, cut off, enrols 200 insurees with policies and enters and submits 1,000 claims, three of
//! them under ids the central server already uses; its file goes up (a tampered copy first:
//! refused, nothing appended), then the rest runs over HTTP: the central server rejects some
//! claims and processes the others, the outcome comes back, and two more rounds change nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use careledger_tests::{CLAIMS, Kind, SECRET, TestDb, careledger_binary, token_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

const OPERATOR: &str = "111101 111102 101101 101201 101102 101202 reference:write 111001 111002 111007 sync:read";
const INSUREES: usize = 200;
const CLAIMS_PER_INSUREE: usize = 5;

/// A `careledger serve` process and what its command line needs.
struct Server {
    child: Child,
    base: String,
    dir: PathBuf,
    system: String,
    database: Option<String>,
}

impl Server {
    async fn spawn(dir: PathBuf, database: Option<String>, master: Option<&str>) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let system = format!("urn:uuid:{}", uuid::Uuid::now_v7());
        let mut command = Command::new(careledger_binary());
        command
            .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
            .env("CARELEDGER_DATA_DIR", &dir)
            .env("CARELEDGER_JWT_SECRET", SECRET)
            .env("CARELEDGER_FHIR_SYSTEM", &system)
            .env("CARELEDGER_POLL_MS", "10")
            .env_remove("DATABASE_URL")
            .env_remove("NATS_URL")
            .stderr(Stdio::null());
        if let Some(url) = &database {
            command.env("DATABASE_URL", url);
        }
        if let Some(master) = master {
            command.env("CARELEDGER_SYNC_MASTER", master);
        }
        let child = command.spawn().expect("run careledger (build it with `cargo build --workspace --bins`)");
        let server = Server { child, base: format!("http://127.0.0.1:{port}"), dir, system, database };
        for _ in 0..200 {
            if reqwest::get(format!("{}/ready", server.base)).await.is_ok_and(|r| r.status().is_success()) {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} did not get ready", server.base);
    }

    /// `careledger <args>` for this server (its data directory, system and address).
    fn cli(&self, args: &[&str]) -> Output {
        let mut command = Command::new(careledger_binary());
        command
            .args(args)
            .arg("--data-dir")
            .arg(&self.dir)
            .env("CARELEDGER_JWT_SECRET", SECRET)
            .env("CARELEDGER_FHIR_SYSTEM", &self.system)
            .env_remove("DATABASE_URL");
        if let Some(url) = &self.database {
            command.env("DATABASE_URL", url);
        }
        command.output().expect("run careledger")
    }

    /// `careledger sync export` of this server's changes for the peer of `public`, into `out`.
    fn export(&self, public: &Path, out: &Path) {
        let (public, out) = (public.to_str().unwrap(), out.to_str().unwrap());
        succeeded(&self.cli(&["sync", "export", "--peer", public, "--out", out, "--server", &self.base]));
    }

    /// `careledger sync import` of `file`, signed by the key of `public`.
    fn import(&self, file: &Path, public: &Path) -> Output {
        let (file, public) = (file.to_str().unwrap(), public.to_str().unwrap());
        self.cli(&["sync", "import", file, "--from", public, "--server", &self.base])
    }

    async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Value {
        let (status, answer) = self.call(reqwest::Method::POST, path, token, Some(body)).await;
        assert!(status.is_success(), "POST {path}: {status} {answer}");
        answer
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    /// The log's head once every read model holds it.
    async fn settled(&self) -> i64 {
        for _ in 0..600 {
            let (_, ready) = self.get("/ready", "").await;
            let head = ready["head"].as_i64().unwrap_or(-1);
            let projections = ready["projections"].as_array().cloned().unwrap_or_default();
            if !projections.is_empty() && projections.iter().all(|p| p["position"].as_i64() == Some(head)) {
                return head;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{}: the read models did not catch up", self.base);
    }

    /// Every resource a FHIR search finds, following its `next` links.
    async fn search_all(&self, query: &str, token: &str) -> Vec<Value> {
        let mut found = vec![];
        let mut url = format!("/fhir/{query}");
        loop {
            let (status, bundle) = self.get(&url, token).await;
            assert_eq!(status, StatusCode::OK, "{url}: {bundle}");
            found.extend(bundle["entry"].as_array().into_iter().flatten().map(|e| e["resource"].clone()));
            let next = bundle["link"].as_array().and_then(|l| l.iter().find(|l| l["relation"] == "next")).cloned();
            match next.and_then(|n| n["url"].as_str().map(str::to_string)) {
                Some(next) => url = next[next.find("/fhir/").unwrap()..].to_string(),
                None => return found,
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn succeeded(out: &Output) -> String {
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{said}");
    said
}

fn keys(server: &Server, out: &Path) {
    succeeded(&server.cli(&["sync", "keys", "--out", out.to_str().unwrap()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_works_offline_at_size_and_both_sides_agree_after_file_and_http_rounds() {
    let db = TestDb::new(Kind::Postgres).await;
    let dir = db.dir.join("end-to-end");
    let central = Server::spawn(dir.join("central"), Some(db.url.clone()), None).await;
    let node = Server::spawn(dir.join("node"), None, Some(&central.system)).await;
    let (central_pub, node_pub) = (dir.join("central.pub.json"), dir.join("node.pub.json"));
    keys(&central, &central_pub);
    keys(&node, &node_pub);
    let t = token_for("operator", OPERATOR, None);
    let c = token_for("admin", CLAIMS, None);

    // the central server: its register, 500 codes for the node, and claims of its own
    for (path, entries) in [
        ("/api/v1/medical-items", json!([{ "code": "I1", "name": "Paracetamol", "price": 8 }])),
        ("/api/v1/products", json!([{ "code": "P1", "name": "Basic", "items": [{ "code": "I1" }] }])),
        ("/api/v1/health-facilities", json!([{ "code": "HF1", "name": "Dispensary", "care_type": "B" }])),
        (
            "/api/v1/price-lists",
            json!([{ "health_facility": "HF1", "items": [{ "code": "I1", "valid_from": "2020-01-01" }] }]),
        ),
    ] {
        central.post(path, &t, json!({ "entries": entries })).await;
    }
    central.post("/api/v1/code-batches", &t, json!({ "holder_type": 2, "holder_code": "E01", "number": 520 })).await;
    let body = json!({ "holder_type": 2, "holder_code": "E01", "number": 500, "for_server": node.system });
    central.post("/api/v1/codes/reservations", &t, body).await;
    central
        .post("/api/v1/codes/reservations", &t, json!({ "holder_type": 2, "holder_code": "E01", "number": 1 }))
        .await;
    let person = |i: usize| {
        json!({ "last_name": format!("Family{i}"), "other_names": "Amani", "birth_date": "1990-01-31",
                "gender": if i.is_multiple_of(2) { "F" } else { "M" }, "holder_type": "enrolment_officer", "holder_code": "E01" })
    };
    let here = central.post("/api/v1/enrolment/insurees", &t, person(9999)).await;
    let (central_insuree, central_chfid) =
        (here["data"]["insuree_id"].as_str().unwrap().to_string(), here["data"]["chfid"].as_str().unwrap().to_string());
    let policy = json!({ "insuree_id": central_insuree, "product_code": "P1", "enrol_date": "2026-11-01", "expiry_date": "2027-10-31" });
    central.post("/api/v1/enrolment/policies", &t, policy).await;
    central.settled().await;
    let today = chrono::Utc::now().date_naive().to_string();
    let claim = |code: String, chfid: &str| {
        json!({ "code": code, "health_facility": "HF1", "insuree": chfid, "date_from": today, "icd": "A00",
                "visit_type": "O", "items": [{ "code": "I1", "qty_provided": 2, "price_asked": 8 }] })
    };
    let mut taken = vec![];
    for n in 0..3 {
        let answer = central.post("/api/v1/claims", &c, claim(format!("C-{n}"), &central_chfid)).await;
        taken.push(answer["data"]["uuid"].as_str().unwrap().to_string());
    }
    central.settled().await;

    // by file to the node: the register and the codes
    let to_node = dir.join("to-node.sync");
    central.export(&node_pub, &to_node);
    succeeded(&node.import(&to_node, &central_pub));
    node.settled().await;

    // offline: 200 insurees with policies, 1,000 claims (three under the central server's ids), submitted
    let mut chfids = vec![];
    for i in 0..INSUREES {
        let answer = node.post("/api/v1/enrolment/insurees", &t, person(i)).await;
        let (id, chfid) = (
            answer["data"]["insuree_id"].as_str().unwrap().to_string(),
            answer["data"]["chfid"].as_str().unwrap().to_string(),
        );
        let policy =
            json!({ "insuree_id": id, "product_code": "P1", "enrol_date": "2026-11-01", "expiry_date": "2027-10-31" });
        node.post("/api/v1/enrolment/policies", &t, policy).await;
        chfids.push(chfid);
    }
    node.settled().await;
    let mut claims = vec![];
    for n in 0..INSUREES * CLAIMS_PER_INSUREE {
        let mut body = claim(format!("N-{n}"), &chfids[n % INSUREES]);
        if n < 3 {
            body["uuid"] = json!(taken[n]);
        }
        let answer = node.post("/api/v1/claims", &c, body).await;
        claims.push(answer["data"]["uuid"].as_str().unwrap().to_string());
    }
    assert_eq!(&claims[..3], &taken[..], "the node's claims under ids the central server uses");
    node.settled().await;
    for chunk in claims.chunks(100) {
        node.post("/api/v1/claims/submit", &c, json!({ "uuids": chunk })).await;
    }
    node.settled().await;

    // by file to the central server: a tampered copy first
    let to_central = dir.join("to-central.sync");
    node.export(&central_pub, &to_central);
    let mut bytes = std::fs::read(&to_central).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let tampered = dir.join("tampered.sync");
    std::fs::write(&tampered, bytes).unwrap();
    let before = central.settled().await;
    let refused = central.import(&tampered, &node_pub);
    assert!(!refused.status.success(), "a tampered file is refused");
    assert_eq!(central.settled().await, before, "nothing appended for a tampered file");
    succeeded(&central.import(&to_central, &node_pub));
    central.settled().await;

    // the node's claims on the central server: by its identifiers; the three under taken ids have new ones
    let mine = central.search_all(&format!("Claim?identifier={}|&_count=100", node.system), &c).await;
    assert_eq!(mine.len(), claims.len(), "every claim of the node, once");
    for (n, id) in taken.iter().enumerate() {
        let found = central.search_all(&format!("Claim?identifier={}|{id}", node.system), &c).await;
        assert_eq!(found.len(), 1, "{id}");
        assert_ne!(found[0]["id"], id.as_str(), "a new UUID here for the node's claim under a taken id");
        let (_, own) = central.get(&format!("/api/v1/claims/{id}"), &c).await;
        assert_eq!(own["data"]["code"], format!("C-{n}"), "the central server's own claim stays itself");
    }
    // insurees and their numbers: each once, each number assigned once
    let patients = central.search_all(&format!("Patient?identifier={}|&_count=1000", node.system), &t).await;
    assert_eq!(patients.len(), INSUREES);
    for chfid in &chfids {
        let (_, code) = central.get(&format!("/api/v1/codes/{chfid}"), &t).await;
        assert_eq!(code["data"]["status"], "assigned", "{code}");
        let found = central.search_all(&format!("Patient?identifier=%7C{chfid}"), &t).await;
        assert_eq!(found.len(), 1, "{chfid} names one insuree");
    }
    // every policy's insuree resolves here
    let coverages = central.search_all(&format!("Coverage?identifier={}|&_count=1000", node.system), &t).await;
    assert_eq!(coverages.len(), INSUREES);
    for coverage in &coverages {
        let reference = coverage["beneficiary"]["reference"].as_str().unwrap();
        assert_eq!(central.get(&format!("/fhir/{reference}"), &t).await.0, StatusCode::OK, "{reference}");
    }

    // the central server decides: two claims rejected by its reviewer, ten processed
    let on_central = |resource: &Value| resource["id"].as_str().unwrap().to_string();
    let decided: Vec<String> = mine.iter().take(12).map(on_central).collect();
    central.post("/api/v1/claims/review/select", &c, json!({ "uuids": &decided[..2] })).await;
    for id in &decided[..2] {
        let review = json!({ "lines": [{ "kind": "item", "index": 0, "rejected": true }], "deliver": true });
        central.post(&format!("/api/v1/claims/{id}/review"), &c, review).await;
    }
    central.post("/api/v1/claims/process", &c, json!({ "uuids": &decided[2..] })).await;
    central.settled().await;

    // over HTTP: the outcome comes back; then twice more, nothing changes
    let token = token_for(&node.system, "sync:read sync:write", None);
    let round = || node.cli(&["sync", "--peer", &central.base, "--token", &token, "--server", &node.base]);
    succeeded(&round());
    node.settled().await;
    for resource in mine.iter().take(12) {
        let theirs = resource["identifier"].as_array().unwrap().iter().find(|i| i["system"] == node.system.as_str());
        let id = theirs.unwrap()["value"].as_str().unwrap();
        let (there, here) = (
            central.get(&format!("/api/v1/claims/{}", on_central(resource)), &c).await.1,
            node.get(&format!("/api/v1/claims/{id}"), &c).await.1,
        );
        for field in ["status", "approved", "valuated", "remunerated", "claimed"] {
            assert_eq!(here["data"][field], there["data"][field], "{field} of {id} mirrored: {here}");
        }
    }
    let statuses: Vec<i64> = {
        let mut s = vec![];
        for resource in mine.iter().take(12) {
            let id = on_central(resource);
            s.push(central.get(&format!("/api/v1/claims/{id}"), &c).await.1["data"]["status"].as_i64().unwrap());
        }
        s
    };
    assert_eq!(statuses.iter().filter(|s| **s == 1).count(), 2, "{statuses:?}");
    let (central_head, node_head) = (central.settled().await, node.settled().await);
    for _ in 0..2 {
        succeeded(&round());
    }
    assert_eq!((central.settled().await, node.settled().await), (central_head, node_head), "re-syncs append nothing");
    // both sides hold the node's claims and insurees by identifier, none twice
    let on_node = node.search_all("Claim?_count=100", &c).await;
    assert_eq!(on_node.len(), claims.len(), "the node keeps its own claims only");
    let node_patients = node.search_all("Patient?_count=1000", &t).await;
    assert_eq!(node_patients.len(), INSUREES + 1, "its own and the master's");
    let _ = std::fs::remove_dir_all(&dir);
}
