//! `POST /fhir`, a peer's transaction Bundle imported (issue #21), over real HTTP on both
//! backends: insurees a node enrolled with codes this server reserved to the node's holder, and
//! their policies, appended as the enrolment events with their codes assigned; matched by
//! identifiers (a resource already imported appends nothing, an id taken here gives a new UUID
//! that keeps the node's id as an identifier); all or nothing; the same Bundle twice appends once.

use std::time::Duration;

use careledger_tests::{Answer, Kind, TestServer, both_backends, token_for, whole_log};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

const NODE: &str = "urn:uuid:0b7c6a52-6f38-4c57-9c9e-0d1f6c1a0001";
const CODE_TYPE: &str = "https://openimis.github.io/openimis_fhir_r4_ig/CodeSystem/openimis-identifiers";

/// The central server's own operator: codes, reference data, enrolment reads.
fn operator() -> String {
    token_for("operator", "111101 111102 101101 101201 reference:write", None)
}

fn peer() -> String {
    token_for(NODE, "sync:read sync:write", None)
}

/// Until the read models hold everything appended so far.
async fn wait(s: &TestServer) {
    let head = s.state().store.head().await.unwrap();
    assert!(s.state().projections.wait_for(head, Duration::from_secs(10)).await, "read models behind");
}

/// The codes reserved on this server to enrolment officer E01 (the node's holder).
async fn reserved(s: &TestServer, number: i64) -> Vec<String> {
    let t = operator();
    let a = s.post("/api/v1/code-batches", &t, json!({ "holder_type": 2, "holder_code": "E01", "number": 20 })).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let body = json!({ "holder_type": 2, "holder_code": "E01", "number": number });
    let a = s.post("/api/v1/codes/reservations", &t, body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    for (path, entries) in [
        ("/api/v1/medical-items", json!([{ "code": "I1", "name": "Paracetamol", "price": 8 }])),
        ("/api/v1/products", json!([{ "code": "P1", "name": "Basic", "items": [{ "code": "I1" }] }])),
    ] {
        let a = s.post(path, &t, json!({ "entries": entries })).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.text);
    }
    wait(s).await;
    a.data()["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect()
}

fn patient(id: Uuid, chfid: &str, family: &str) -> Value {
    json!({
        "fullUrl": format!("http://node/fhir/Patient/{id}"),
        "resource": {
            "resourceType": "Patient", "id": id,
            "identifier": [
                { "system": NODE, "value": id },
                { "type": { "coding": [{ "system": CODE_TYPE, "code": "Code" }] }, "value": chfid },
            ],
            "name": [{ "family": family, "given": ["Amani"] }],
            "gender": "female", "birthDate": "1990-01-31",
            "telecom": [{ "system": "phone", "value": "+255 712 345 678" }],
            "address": [{ "text": "R1D1M1V1" }],
        },
        "request": { "method": "PUT", "url": format!("Patient?identifier={NODE}|{id}") },
    })
}

fn coverage(id: Uuid, insuree: Uuid) -> Value {
    json!({
        "resource": {
            "resourceType": "Coverage", "id": id,
            "identifier": [{ "system": NODE, "value": id }],
            "status": "active",
            "beneficiary": { "reference": format!("Patient/{insuree}"), "identifier": { "system": NODE, "value": insuree } },
            "payor": [{ "display": "the scheme" }],
            "period": { "start": "2026-01-01", "end": "2026-12-31" },
            "class": [{ "type": { "coding": [{ "code": "plan" }] }, "value": "P1" }],
        },
        "request": { "method": "PUT", "url": format!("Coverage?identifier={NODE}|{id}") },
    })
}

/// A claim the node entered at HF1 for `chfid`: one line of item I1.
fn claim(id: Uuid, chfid: &str) -> Value {
    json!({
        "resource": {
            "resourceType": "Claim", "id": id,
            "identifier": [
                { "system": NODE, "value": id },
                { "type": { "coding": [{ "system": CODE_TYPE, "code": "Code" }] }, "value": format!("C-{id}") },
            ],
            "status": "active", "use": "claim",
            "type": { "coding": [{ "code": "professional" }] },
            "patient": { "identifier": { "value": chfid } },
            "provider": { "identifier": { "value": "HF1" } },
            "billablePeriod": { "start": "2026-12-01" }, "created": "2026-12-02",
            "diagnosis": [{ "sequence": 1, "diagnosisCodeableConcept": { "coding": [{ "code": "A00" }] } }],
            "item": [{ "sequence": 1, "category": { "text": "item" }, "productOrService": { "text": "I1" },
                       "quantity": { "value": 1 }, "unitPrice": { "value": 8 } }],
        },
        "request": { "method": "PUT", "url": format!("Claim?identifier={NODE}|{id}") },
    })
}

fn bundle(name: &str, entries: Vec<Value>) -> Value {
    json!({ "resourceType": "Bundle", "type": "transaction", "identifier": { "system": NODE, "value": name }, "entry": entries })
}

async fn import(s: &TestServer, body: &Value) -> Answer {
    s.post("/fhir", &peer(), body.clone()).await
}

both_backends!(a_nodes_enrolment_is_imported_once_matched_by_identifiers, imported_on);
async fn imported_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let codes = reserved(&s, 5).await;
    // an insuree of this server's register already has the id the node gave its second insuree
    let taken = Uuid::now_v7();
    let entry = json!({ "uuid": taken, "chfid": "100000001", "birth_date": "1980-05-05", "gender": "F" });
    let a = s.post("/api/v1/insurees", &operator(), json!({ "entries": [entry] })).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    wait(&s).await;

    let (first, policy) = (Uuid::now_v7(), Uuid::now_v7());
    let sent = bundle(
        "changes-0-9",
        vec![patient(first, &codes[0], "Mwangi"), patient(taken, &codes[1], "Otieno"), coverage(policy, taken)],
    );
    let before = s.state().store.head().await.unwrap();
    let a = import(&s, &sent).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["resourceType"], "Bundle");
    assert_eq!(a.body["type"], "transaction-response");
    let locations: Vec<&str> =
        a.body["entry"].as_array().unwrap().iter().map(|e| e["response"]["location"].as_str().unwrap()).collect();
    assert_eq!(locations[0], format!("Patient/{first}"), "a free id is kept");
    let renamed = locations[1].strip_prefix("Patient/").unwrap();
    assert_ne!(renamed, taken.to_string(), "an id taken here gets a new UUID");
    assert_eq!(locations[2], format!("Coverage/{policy}"));
    assert!(a.body["entry"].as_array().unwrap().iter().all(|e| e["response"]["status"] == "201 Created"));

    // ordinary enrolment events, the codes assigned in the same append, saying where they came from
    let log = whole_log(&s.state().store).await;
    let appended: Vec<_> = log.iter().filter(|e| e.position > before).collect();
    let types: Vec<&str> = appended.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types.iter().filter(|t| **t == "InsureeRegistered").count(), 2, "{types:?}");
    assert_eq!(types.iter().filter(|t| **t == "CodeAssigned").count(), 2, "{types:?}");
    assert_eq!(types.iter().filter(|t| **t == "PolicyEnrolled").count(), 1, "{types:?}");
    for event in &appended {
        assert_eq!(event.metadata.command, "ImportBundle");
        let origin = event.metadata.origin.as_ref().expect("origin");
        assert_eq!((origin.peer.as_str(), origin.bundle.as_str()), (NODE, "changes-0-9"));
    }
    let registered =
        appended.iter().find(|e| e.stream == format!("insurees-insuree-{renamed}")).expect("renamed insuree");
    assert_eq!(registered.data["insuree"]["identifiers"], json!([{ "system": NODE, "value": taken.to_string() }]));
    assert_eq!(registered.data["insuree"]["holder_code"], "E01", "the holder the code was reserved to");
    let enrolled = appended.iter().find(|e| e.event_type == "PolicyEnrolled").unwrap();
    assert_eq!(
        enrolled.data["policy"]["insuree_id"], renamed,
        "the reference translated through the node's identifier"
    );
    wait(&s).await;
    let code = s.get(&format!("/api/v1/codes/{}", codes[1]), &operator()).await;
    assert_eq!(code.data()["status"], "assigned", "{}", code.text);
    assert_eq!(code.data()["insuree_id"], renamed);

    // served with the node's ids, and found by the node's system
    let t = operator();
    let served = s.get(&format!("/fhir/Patient/{renamed}"), &t).await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.text);
    let ids: Vec<(String, String)> = served.body["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| Some((i["system"].as_str()?.to_string(), i["value"].as_str()?.to_string())))
        .collect();
    assert!(ids.contains(&(NODE.to_string(), taken.to_string())), "{ids:?}");
    let found = s.get(&format!("/fhir/Patient?identifier={NODE}|"), &t).await;
    let found: Vec<&str> =
        found.body["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
    let mut expected = vec![first.to_string(), renamed.to_string()];
    expected.sort();
    assert_eq!(found, expected, "every insuree imported from the node, and only those");
    let found = s.get(&format!("/fhir/Patient?identifier={NODE}|{taken}"), &t).await;
    assert_eq!(found.body["entry"][0]["resource"]["id"], renamed, "{}", found.text);
    assert_eq!(found.body["entry"].as_array().map(Vec::len), Some(1));
    let covered = s.get(&format!("/fhir/Coverage?identifier={NODE}|{policy}"), &t).await;
    let beneficiary = &covered.body["entry"][0]["resource"]["beneficiary"]["reference"];
    assert_eq!(beneficiary, &json!(format!("Patient/{renamed}")), "{}", covered.text);
    let elsewhere = s.get("/fhir/Patient?identifier=urn:uuid:another-node|", &t).await;
    assert!(elsewhere.body["entry"].as_array().is_none_or(Vec::is_empty), "{}", elsewhere.text);
    careledger_tests::valid_fhir(&[served.body.clone(), covered.body.clone()]);

    // the same Bundle again: the same answer, nothing appended
    let head = s.state().store.head().await.unwrap();
    let again = import(&s, &sent).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body["entry"], a.body["entry"]);
    assert_eq!(s.state().store.head().await.unwrap(), head);
    // another Bundle with the same resources (a sync resumed from an earlier position): known by
    // their identifiers, nothing appended
    let resent = bundle("changes-0-12", vec![patient(taken, &codes[1], "Otieno"), coverage(policy, taken)]);
    let a = import(&s, &resent).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["entry"][0]["response"], json!({ "status": "200 OK", "location": format!("Patient/{renamed}") }));
    assert_eq!(s.state().store.head().await.unwrap(), head);
    // the same name read again later (other bytes: a resource changed since, another
    // timestamp) is imported on its own, its resources matched by identifiers
    let mut later = sent.clone();
    later["timestamp"] = json!("2026-12-07T10:00:00Z");
    let a = import(&s, &later).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(a.body["entry"].as_array().unwrap().iter().all(|e| e["response"]["status"] == "200 OK"), "{}", a.text);
    assert_eq!(s.state().store.head().await.unwrap(), head);
}

both_backends!(a_family_arrives_with_its_head_translated, family_on);
async fn family_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let codes = reserved(&s, 3).await;
    let (head, member, stranger) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut joined = patient(member, &codes[1], "Mwangi");
    joined["resource"]["extension"] = json!([{
        "url": "urn:careledger:fhir:extension:family-head",
        "valueReference": { "reference": format!("Patient/{head}"), "identifier": { "system": NODE, "value": head } },
    }]);
    let a = import(&s, &bundle("family", vec![patient(head, &codes[0], "Mwangi"), joined.clone()])).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let log = whole_log(&s.state().store).await;
    let registered = log.iter().find(|e| e.stream == format!("insurees-insuree-{member}")).expect("member");
    assert_eq!(registered.data["insuree"]["family_head"], head.to_string());
    wait(&s).await;
    let served = s.get(&format!("/fhir/Patient/{member}"), &operator()).await;
    let extension = served.body["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "urn:careledger:fhir:extension:family-head")
        .cloned();
    assert_eq!(extension.unwrap()["valueReference"]["reference"], format!("Patient/{head}"), "{}", served.text);
    careledger_tests::valid_fhir(std::slice::from_ref(&served.body));
    // a head the server does not hold refuses the Bundle
    let mut orphan = patient(Uuid::now_v7(), &codes[2], "Otieno");
    orphan["resource"]["extension"] = json!([{
        "url": "urn:careledger:fhir:extension:family-head",
        "valueReference": { "identifier": { "system": NODE, "value": stranger } },
    }]);
    let a = import(&s, &bundle("orphan", vec![orphan])).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(a.body["issue"][0]["expression"][0], "Bundle.entry[0].resource.extension", "{}", a.text);
}

both_backends!(a_bundle_with_one_bad_entry_appends_nothing, all_or_nothing_on);
async fn all_or_nothing_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let codes = reserved(&s, 3).await;
    let head = s.state().store.head().await.unwrap();
    let good = patient(Uuid::now_v7(), &codes[0], "Mwangi");

    // unreadable: every element named by its FHIRPath
    let mut bad = patient(Uuid::now_v7(), &codes[1], "Otieno");
    bad["resource"]["birthDate"] = json!("31/01/1990");
    bad["resource"]["gender"] = json!("f");
    let a = import(&s, &bundle("b1", vec![good.clone(), bad])).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(a.body["resourceType"], "OperationOutcome");
    assert_eq!(a.body["issue"][0]["expression"][0], "Bundle.entry[1].resource.birthDate", "{}", a.text);
    // a rule of enrolment: a code this server never reserved to anyone
    let a = import(&s, &bundle("b2", vec![good.clone(), patient(Uuid::now_v7(), "000000000", "Otieno")])).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(a.body["issue"][0]["expression"][0], "Bundle.entry[1].resource.identifier", "{}", a.text);
    // a policy of a product this server does not have
    let id = Uuid::now_v7();
    let mut policy = coverage(Uuid::now_v7(), id);
    policy["resource"]["class"][0]["value"] = json!("NOPE");
    let a = import(&s, &bundle("b3", vec![patient(id, &codes[1], "Otieno"), policy])).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    // a resource type not imported
    let device =
        json!({ "resource": { "resourceType": "Device", "id": "x" }, "request": { "method": "PUT", "url": "Device" } });
    let a = import(&s, &bundle("b4", vec![good.clone(), device])).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(a.body["issue"][0]["expression"][0], "Bundle.entry[1].resource.resourceType", "{}", a.text);
    // a claim breaking the claim rules, named by its FHIR element
    let mut bad_claim = claim(Uuid::now_v7(), &codes[0]);
    bad_claim["resource"]["item"][0]["quantity"]["value"] = json!(0);
    let a = import(&s, &bundle("b4c", vec![good.clone(), bad_claim])).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(a.body["issue"][0]["expression"][0], "Bundle.entry[1].resource.item[0].quantity.value", "{}", a.text);
    let mut no_provider = claim(Uuid::now_v7(), &codes[0]);
    no_provider["resource"].as_object_mut().unwrap().remove("provider");
    let a = import(&s, &bundle("b4d", vec![no_provider])).await;
    assert_eq!(a.body["issue"][0]["expression"][0], "Bundle.entry[0].resource.provider.identifier.value", "{}", a.text);
    // the response of a claim neither in the Bundle nor here
    let response = json!({ "resource": { "resourceType": "ClaimResponse", "identifier": [{ "system": NODE, "value": "r" }],
        "request": { "identifier": { "system": NODE, "value": "nowhere" } }, "outcome": "complete",
        "total": [{ "category": { "coding": [{ "code": "4" }] }, "amount": { "value": 1 } }] },
        "request": { "method": "PUT", "url": "ClaimResponse" } });
    let a = import(&s, &bundle("b4r", vec![good.clone(), response])).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(a.body["issue"][0]["expression"][0], "Bundle.entry[1].resource.request.identifier", "{}", a.text);
    // two insurees with one code: the second finds it assigned
    let a = import(&s, &bundle("b5", vec![good.clone(), patient(Uuid::now_v7(), &codes[0], "Njeri")])).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert_eq!(s.state().store.head().await.unwrap(), head, "nothing appended by a refused Bundle");

    // a Bundle of nothing (a peer with nothing new): answered, nothing appended, twice
    for _ in 0..2 {
        let a = import(&s, &bundle("empty", vec![])).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        assert_eq!(a.body["type"], "transaction-response");
    }
    assert_eq!(s.state().store.head().await.unwrap(), head);
    // bounded: entries a Bundle, identifiers a resource
    let tiny = json!({ "resource": { "resourceType": "Patient" }, "request": { "method": "PUT" } });
    let a = import(&s, &bundle("huge", vec![tiny; 50_001])).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(a.body["issue"][0]["expression"][0], "Bundle.entry", "{}", a.text);
    let mut many = good.clone();
    let ids: Vec<Value> = (0..21).map(|i| json!({ "system": NODE, "value": format!("x{i}") })).collect();
    many["resource"]["identifier"] = Value::Array(ids);
    let a = import(&s, &bundle("many", vec![many])).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(a.body["issue"][0]["expression"][0], "Bundle.entry[0].resource.identifier", "{}", a.text);
    // a register entry is read as the upsert API reads it: its errors are named
    let entry = |data: &str| {
        json!({ "resource": { "resourceType": "Basic", "identifier": [{ "system": NODE, "value": "r1" }],
            "code": { "coding": [{ "system": "urn:careledger:fhir:basic-kind", "code": "register-entry" }] },
            "extension": [{ "url": "urn:careledger:fhir:extension:register-entry", "extension": [
                { "url": "kind", "valueCode": "medical-items" },
                { "url": "entry", "valueAttachment": { "contentType": "application/json", "data": data } }] }] },
            "request": { "method": "PUT", "url": "Basic" } })
    };
    // {"code":"I1","name":"x","price":-1}
    let a = import(&s, &bundle("bad-entry", vec![entry("eyJjb2RlIjoiSTEiLCJuYW1lIjoieCIsInByaWNlIjotMX0=")])).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    let at = a.body["issue"][0]["expression"][0].as_str().unwrap_or_default().to_string();
    assert!(at.ends_with("where(url='entry').valueAttachment.data"), "{}", a.text);
    assert!(
        a.body["issue"][0]["diagnostics"].as_str().unwrap_or_default().starts_with("the entry's price"),
        "{}",
        a.text
    );
    // a well-formed one from a server that is not this one's master: answered, not taken
    // {"code":"I1","name":"x","price":1}
    let a = import(&s, &bundle("foreign-entry", vec![entry("eyJjb2RlIjoiSTEiLCJuYW1lIjoieCIsInByaWNlIjoxfQ==")])).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(a.text.contains("from its master only"), "{}", a.text);
    assert_eq!(s.state().store.head().await.unwrap(), head);
    // a deletion deletes a claim the sender names by its own identifier, and nothing else
    let delete = |url: &str| json!({ "request": { "method": "DELETE", "url": url } });
    let a = import(&s, &bundle("del-patient", vec![delete(&format!("Patient?identifier={NODE}|x"))])).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(a.body["issue"][0]["expression"][0], "Bundle.entry[0].request.url", "{}", a.text);
    let a = import(&s, &bundle("del-other", vec![delete("Claim?identifier=urn:uuid:someone-else|x")])).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    // bounded as every identifier is (a deletion of a claim never received keeps it as a key)
    let long = format!("Claim?identifier={NODE}|{}", "x".repeat(201));
    let a = import(&s, &bundle("del-long", vec![delete(&long)])).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(a.body["issue"][0]["expression"][0], "Bundle.entry[0].request.url", "{}", a.text);
    // one never received is remembered as deleted: the claim arriving later (an older sync file)
    // is not created
    let gone = Uuid::now_v7();
    let a = import(&s, &bundle("del-unknown", vec![delete(&format!("Claim?identifier={NODE}|{gone}"))])).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(a.text.contains("nothing to delete"), "{}", a.text);
    let a = import(&s, &bundle("late-claim", vec![claim(gone, &codes[0])])).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(a.text.contains("the sender deleted this claim"), "{}", a.text);
    let url = format!("Claim?identifier={NODE}|{gone}");
    let bad_tag = json!({ "request": { "method": "DELETE", "url": url, "ifMatch": "7" } });
    let a = import(&s, &bundle("del-bad-tag", vec![bad_tag])).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(a.body["issue"][0]["expression"][0], "Bundle.entry[0].request.ifMatch", "{}", a.text);
    assert_eq!(s.state().store.head().await.unwrap(), head);
    // without the right to import
    let a = s.post("/fhir", &token_for("reader", "sync:read", None), bundle("b6", vec![good.clone()])).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    assert_eq!(s.state().store.head().await.unwrap(), head);
    // a peer speaking for another: its right to import does not let it name another sender
    let other = token_for("urn:uuid:another-node", "sync:read sync:write", None);
    let a = s.post("/fhir", &other, bundle("b6", vec![good.clone()])).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    assert!(
        a.body["issue"][0]["diagnostics"].as_str().unwrap_or_default().contains("issued to its sender"),
        "{}",
        a.text
    );
    assert_eq!(s.state().store.head().await.unwrap(), head);
    // and then it goes in
    let a = import(&s, &bundle("b7", vec![good])).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(s.state().store.head().await.unwrap() > head);
}

both_backends!(a_node_never_takes_an_older_version_of_its_masters_register, register_versions_on);
async fn register_versions_on(kind: Kind) {
    const MASTER: &str = "urn:uuid:0b7c6a52-6f38-4c57-9c9e-0d1f6c1a00ff";
    let s = TestServer::start_with(kind, |c| c.sync_master = Some(MASTER.to_string())).await;
    let master = token_for(MASTER, "sync:read sync:write", None);
    let item = |version: Option<i64>, price: i64| {
        let data = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            json!({ "code": "I9", "name": "Bandage", "price": price }).to_string(),
        );
        let mut resource = json!({ "resourceType": "Basic", "id": "e1", "identifier": [{ "system": MASTER, "value": "e1" }],
            "code": { "coding": [{ "system": "urn:careledger:fhir:basic-kind", "code": "register-entry" }] },
            "extension": [{ "url": "urn:careledger:fhir:extension:register-entry", "extension": [
                { "url": "kind", "valueCode": "medical-items" },
                { "url": "entry", "valueAttachment": { "contentType": "application/json", "data": data } }] }] });
        if let Some(version) = version {
            resource["meta"] = json!({ "versionId": version.to_string() });
        }
        json!({ "resource": resource, "request": { "method": "PUT", "url": format!("Basic?identifier={MASTER}|e1") } })
    };
    let send = |name: &str, entry: Value| {
        let body = json!({ "resourceType": "Bundle", "type": "transaction",
                           "identifier": { "system": MASTER, "value": name }, "entry": [entry] });
        let (s, master) = (&s, master.clone());
        async move { s.post("/fhir", &master, body).await }
    };
    // how many upserts the item's stream holds, and the last one's price
    let held = |s: &TestServer| {
        let store = s.state().store.clone();
        async move {
            let events = store.read_stream("claims-item-I9", 0, 100).await.unwrap();
            (events.len(), events.last().map(|e| e.data["price"].clone()).unwrap_or_default())
        }
    };
    let a = send("page-2", item(Some(20), 700)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let first = held(&s).await;
    assert_eq!(first.0, 1);
    // an older version, from a sync file written before: answered, not taken
    let a = send("old-file", item(Some(10), 300)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(a.text.contains("held already"), "{}", a.text);
    assert_eq!(held(&s).await, first);
    // the same version again (a page asked again): not taken again
    let a = send("page-2-again", item(Some(20), 700)).await;
    assert!(a.text.contains("held already"), "{}", a.text);
    assert_eq!(held(&s).await, first);
    // a newer one is taken, and one without a version (a sender that does not say) too
    assert_eq!(send("page-3", item(Some(30), 900)).await.status, StatusCode::OK);
    let third = held(&s).await;
    assert_eq!(third.0, 2);
    assert_ne!(third.1, first.1);
    // the master changed it back (900 -> 500 -> 900) and the node got only the last: the same
    // entry at a newer version is recorded, so that the change between, arriving late, is older
    assert_eq!(send("page-5", item(Some(50), 900)).await.status, StatusCode::OK);
    assert_eq!(held(&s).await, (3, third.1.clone()));
    let a = send("late-page-4", item(Some(40), 500)).await;
    assert!(a.text.contains("held already"), "{}", a.text);
    assert_eq!(held(&s).await, (3, third.1.clone()));
    assert_eq!(send("unversioned", item(None, 950)).await.status, StatusCode::OK);
    assert_eq!(held(&s).await.0, 4);
    // a version that is not a log position names where
    let a = send("bad-version", item(Some(-1), 1)).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(a.body["issue"][0]["expression"][0], "Bundle.entry[0].resource.meta.versionId", "{}", a.text);
}

both_backends!(an_older_version_of_a_nodes_claim_never_replaces_a_newer_one, claim_versions_on);
async fn claim_versions_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    reserved(&s, 1).await;
    let insuree = json!({ "uuid": Uuid::now_v7(), "chfid": "100000009", "birth_date": "1980-05-05", "gender": "F" });
    for (path, entries) in [
        ("/api/v1/health-facilities", json!([{ "code": "HF1", "name": "District hospital", "care_type": "B" }])),
        ("/api/v1/insurees", json!([insuree])),
    ] {
        let a = s.post(path, &operator(), json!({ "entries": entries })).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.text);
    }
    wait(&s).await;
    let id = Uuid::now_v7();
    // the claim as the node had it at `version` (its log position), with `quantity` of I1
    let sent = |name: &str, version: Option<i64>, quantity: i64| {
        let mut entry = claim(id, "100000009");
        entry["resource"]["item"][0]["quantity"]["value"] = json!(quantity);
        if let Some(version) = version {
            entry["resource"]["meta"] = json!({ "versionId": version.to_string() });
        }
        let (body, name, s) = (bundle(name, vec![entry]), name.to_string(), &s);
        async move {
            let a = import(s, &body).await;
            assert_eq!(a.status, StatusCode::OK, "{name}: {}", a.text);
            wait(s).await;
            a
        }
    };
    async fn quantity_of(s: &TestServer, id: Uuid) -> Value {
        let a = s.get(&format!("/api/v1/claims/{id}"), &token_for("reader", "111001", None)).await;
        a.data()["items"][0]["qty_provided"].clone()
    }
    sent("file-2", Some(20), 2).await;
    assert_eq!(quantity_of(&s, id).await, 2);
    // the older file, imported after the newer one: answered, not taken
    let a = sent("file-1", Some(10), 1).await;
    assert!(a.text.contains("held already"), "{}", a.text);
    assert_eq!(quantity_of(&s, id).await, 2);
    // newer versions are taken, and a change without a version (a sender that does not say)
    sent("file-3", Some(30), 3).await;
    assert_eq!(quantity_of(&s, id).await, 3);
    let head = s.state().store.head().await.unwrap();
    sent("file-3-again-renamed", Some(30), 4).await;
    assert_eq!(quantity_of(&s, id).await, 3, "the same version is not newer");
    assert_eq!(s.state().store.head().await.unwrap(), head);
    sent("unversioned", None, 5).await;
    assert_eq!(quantity_of(&s, id).await, 5);
}
