//! The FHIR R4 face (`/fhir`, issue #21): Patient, Coverage, Claim and ClaimResponse read and
//! searched by identifier, paged, errors as OperationOutcomes; Organization, Device and
//! ServiceRequest read-only, scoped as their APIs are; and every document served checked by an
//! independent FHIR library (`tests/fhir_valid.py`: fhir.resources from PyPI, run by `tests/python.sh`).

use careledger_tests::{Answer, Kind, REGISTRY, REQUISITIONS, TestServer, both_backends, token_for, valid_fhir};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

/// Insuree search, policy search, claims read (openIMIS rights).
const READ: &str = "101101 101201 111001";

async fn fhir_get(s: &TestServer, path: &str, token: Option<&str>, seen: &mut Vec<Value>) -> Answer {
    let mut request = s.client.get(format!("{}{path}", s.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
    assert_eq!(headers["content-type"], "application/fhir+json", "{path}");
    seen.push(body.clone());
    Answer { status, headers, body, text }
}

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap().to_string()).collect()
}

both_backends!(registers_and_claims_are_served_as_fhir, served_on);
async fn served_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let admin = s.token("reference:write");
    let insurees: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let chfid = |i: usize| format!("07070700{i}");
    let entries: Vec<Value> = insurees
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let gender = ["F", "M", "O"][i];
            json!({ "uuid": id, "chfid": chfid(i), "birth_date": "1980-05-05", "gender": gender })
        })
        .collect();
    s.post("/api/v1/insurees", &admin, json!({ "entries": entries })).await;
    let policy = Uuid::now_v7();
    let answer = s
        .post(
            "/api/v1/policies",
            &admin,
            json!({ "entries": [{ "uuid": policy, "insuree": insurees[0], "product": "P1",
                                 "effective_date": "2026-01-01", "expiry_date": "2026-12-31" }] }),
        )
        .await;
    assert!(s.state().projections.wait_for(answer.position(), std::time::Duration::from_secs(10)).await);
    let own = s.state().config.fhir_system.clone();
    assert!(own.starts_with("urn:uuid:"), "{own}");
    let token = s.token(READ);
    let mut seen = vec![];

    let metadata = fhir_get(&s, "/fhir/metadata", None, &mut seen).await;
    assert_eq!((metadata.status, metadata.body["fhirVersion"].as_str()), (StatusCode::OK, Some("4.0.1")));

    let patient = fhir_get(&s, &format!("/fhir/Patient/{}", insurees[1]), Some(&token), &mut seen).await;
    assert_eq!(patient.status, StatusCode::OK, "{}", patient.text);
    assert_eq!(patient.body["gender"], "male");
    let identifiers = &patient.body["identifier"];
    assert_eq!(
        (identifiers[0]["system"].as_str(), identifiers[0]["value"].as_str()),
        (Some(own.as_str()), Some(insurees[1].to_string().as_str()))
    );
    assert_eq!(
        (identifiers[1]["type"]["coding"][0]["code"].as_str(), identifiers[1]["value"].as_str()),
        (Some("Code"), Some(chfid(1).as_str()))
    );

    // search by identifier: the CHFID with any system or none, this server's id, this server's system
    for query in [chfid(2), format!("|{}", chfid(2)), format!("{own}|{}", insurees[2]), insurees[2].to_string()] {
        let found =
            fhir_get(&s, &format!("/fhir/Patient?identifier={}", urlencode(&query)), Some(&token), &mut seen).await;
        assert_eq!(ids(&found.body), [insurees[2].to_string()], "{query}: {}", found.text);
    }
    let all =
        fhir_get(&s, &format!("/fhir/Patient?identifier={}", urlencode(&format!("{own}|"))), Some(&token), &mut seen)
            .await;
    assert_eq!(ids(&all.body).len(), 3);
    // another server's system: nothing of it is held yet
    let other = fhir_get(
        &s,
        "/fhir/Patient?identifier=urn:uuid:0190f3a0-0000-7000-8000-000000000000%7C",
        Some(&token),
        &mut seen,
    )
    .await;
    assert_eq!(ids(&other.body).len(), 0);

    // pages of one, followed by their next links, give each insuree once, in id order
    let mut paged = vec![];
    let mut next = Some(format!("{}/fhir/Patient?_count=1", s.base));
    while let Some(url) = next {
        let path = url.split_once("/fhir/").map(|(_, p)| format!("/fhir/{p}")).unwrap();
        let page = fhir_get(&s, &path, Some(&token), &mut seen).await;
        paged.extend(ids(&page.body));
        let link = page.body["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").cloned();
        next = link.map(|l| l["url"].as_str().unwrap().to_string());
        assert!(paged.len() <= 3, "paging does not end: {paged:?}");
    }
    let mut sorted: Vec<String> = insurees.iter().map(|i| i.to_string()).collect();
    sorted.sort();
    assert_eq!(paged, sorted);
    let later = fhir_get(&s, "/fhir/Patient?_lastUpdated=ge2999-01-01", Some(&token), &mut seen).await;
    assert_eq!(ids(&later.body).len(), 0);
    let since = fhir_get(&s, "/fhir/Patient?_lastUpdated=ge2000-01-01", Some(&token), &mut seen).await;
    assert_eq!(ids(&since.body).len(), 3);

    let coverage = fhir_get(&s, &format!("/fhir/Coverage/{policy}"), Some(&token), &mut seen).await;
    assert_eq!(coverage.status, StatusCode::OK, "{}", coverage.text);
    assert_eq!(coverage.body["beneficiary"]["reference"], format!("Patient/{}", insurees[0]));
    assert_eq!(coverage.body["class"][0]["value"], "P1");
    // a sync peer's token reads too
    let peer = token_for("central", "sync:read", None);
    let found = fhir_get(
        &s,
        &format!("/fhir/Coverage?identifier={}", urlencode(&format!("{own}|{policy}"))),
        Some(&peer),
        &mut seen,
    )
    .await;
    assert_eq!(ids(&found.body), [policy.to_string()]);

    // a claim as entered (Claim) and as decided so far (ClaimResponse: ENTERED is queued)
    let clerk = careledger_tests::token_at_facility("clerk", "111002 111001", "HF1");
    let claim_id = Uuid::now_v7();
    let created = s
        .post(
            "/api/v1/claims",
            &clerk,
            json!({ "uuid": claim_id, "code": "C-1", "health_facility": "HF1", "insuree": chfid(0),
                    "date_from": "2026-11-02", "icd": "A00", "icd_1": "B01",
                    "items": [{ "code": "I1", "qty_provided": 2, "price_asked": 12.5 }],
                    "services": [{ "code": "S1", "qty_provided": 1, "price_asked": 40 }] }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert!(s.state().projections.wait_for(created.position(), std::time::Duration::from_secs(10)).await);
    let claim = fhir_get(&s, &format!("/fhir/Claim/{claim_id}"), Some(&clerk), &mut seen).await;
    assert_eq!(claim.status, StatusCode::OK, "{}", claim.text);
    assert_eq!(claim.body["total"]["value"], 65);
    assert_eq!(claim.body["item"][0]["productOrService"]["text"], "I1");
    assert_eq!(claim.body["item"][1]["category"]["text"], "service");
    assert_eq!(claim.body["patient"]["identifier"]["value"], chfid(0));
    assert_eq!(claim.body["diagnosis"].as_array().unwrap().len(), 2);
    let response = fhir_get(&s, &format!("/fhir/ClaimResponse/{claim_id}"), Some(&clerk), &mut seen).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(response.body["outcome"], "queued");
    assert_eq!(response.body["request"]["reference"], format!("Claim/{claim_id}"));
    let by_code = fhir_get(&s, "/fhir/Claim?identifier=%7CC-1", Some(&token), &mut seen).await;
    assert_eq!(ids(&by_code.body), [claim_id.to_string()]);
    // another facility's clerk finds none of HF1's claims, as in the claims API
    let stranger = careledger_tests::token_at_facility("stranger", "111001", "HF2");
    let hidden = fhir_get(&s, &format!("/fhir/Claim/{claim_id}"), Some(&stranger), &mut seen).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    let none = fhir_get(&s, "/fhir/ClaimResponse?identifier=C-1", Some(&stranger), &mut seen).await;
    assert_eq!(ids(&none.body).len(), 0);

    // errors are OperationOutcomes with the status they go with
    for (path, token, status) in [
        (format!("/fhir/Patient/{}", Uuid::now_v7()), Some(token.as_str()), StatusCode::NOT_FOUND),
        ("/fhir/Patient/not%20an%20id".to_string(), Some(token.as_str()), StatusCode::NOT_FOUND),
        ("/fhir/Observation/1".to_string(), Some(token.as_str()), StatusCode::NOT_FOUND),
        ("/fhir/Patient?name=x".to_string(), Some(token.as_str()), StatusCode::BAD_REQUEST),
        ("/fhir/Patient?_count=0".to_string(), Some(token.as_str()), StatusCode::BAD_REQUEST),
        ("/fhir/Patient?_lastUpdated=yesterday".to_string(), Some(token.as_str()), StatusCode::BAD_REQUEST),
        ("/fhir/Patient?identifier=%7C".to_string(), Some(token.as_str()), StatusCode::BAD_REQUEST),
        ("/fhir/Patient".to_string(), None, StatusCode::UNAUTHORIZED),
        ("/fhir/Patient".to_string(), Some(admin.as_str()), StatusCode::FORBIDDEN),
        // reading claims is not reading the register of insurees or their policies
        ("/fhir/Patient".to_string(), Some(clerk.as_str()), StatusCode::FORBIDDEN),
        ("/fhir/Coverage".to_string(), Some(clerk.as_str()), StatusCode::FORBIDDEN),
    ] {
        let answer = fhir_get(&s, &path, token, &mut seen).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.text);
        assert_eq!(answer.body["resourceType"], "OperationOutcome", "{path}");
    }
    valid_fhir(&seen);
}

both_backends!(reference_data_is_served_read_only, reference_data_on);
async fn reference_data_on(kind: Kind) {
    let s = TestServer::start(kind).await;
    let wait = |a: &Answer| {
        assert!(a.status.is_success(), "{}", a.text);
        let position = a.position();
        let state = s.state();
        async move { assert!(state.projections.wait_for(position, std::time::Duration::from_secs(10)).await) }
    };
    // two facilities, one whose code cannot be a FHIR id; a legal entity with a division
    let admin = s.token("reference:write");
    let facilities = json!({ "entries": [{ "code": "HF1", "name": "District hospital", "care_type": "I" },
                                          { "code": "HF 2", "name": "Health centre", "care_type": "O" }] });
    wait(&s.post("/api/v1/health-facilities", &admin, facilities).await).await;
    let registry = token_for("admin", REGISTRY, None);
    let le = Uuid::now_v7().to_string();
    let body = json!({ "id": le, "name": "Clinic", "edrpou": "12345678", "type": "PRIMARY_CARE", "status": "ACTIVE" });
    wait(&s.post("/api/v1/legal-entities", &registry, body).await).await;
    let div = Uuid::now_v7().to_string();
    let body = json!({ "id": div, "legal_entity_id": le, "name": "Ward", "type": "CLINIC", "status": "ACTIVE" });
    wait(&s.post("/api/v1/divisions", &registry, body).await).await;
    let staff = token_for("staff", "equipment:write equipment:read", Some(&le));
    let body = json!({ "division_id": div, "type": "23143534", "external_id": "EXT-7", "name": "Ultrasound scanner",
                       "serial_number": "SN-0001", "manufacture_date": "2024-02-01", "note": "ward 3",
                       "udi": [{ "type": "default", "value": "IMEI 49015420323751", "assigner_name": "UCC" }] });
    let registered = s.post("/api/v1/equipment", &staff, body).await;
    wait(&registered).await;
    let device = registered.data()["id"].as_str().unwrap().to_string();
    let (encounter, service_request) = (Uuid::now_v7(), Uuid::now_v7());
    let body = json!({ "encounter_id": encounter, "entity_type": "service_request", "entity_id": service_request });
    let issued = s.post("/api/v1/requisitions", &s.token(REQUISITIONS), body).await;
    wait(&issued).await;
    let number = issued.data()["requisition"].as_str().unwrap().to_string();
    let mut seen = vec![];
    let clerk = s.token("111001");

    let hf = fhir_get(&s, "/fhir/Organization/HF1", Some(&clerk), &mut seen).await;
    assert_eq!(hf.status, StatusCode::OK, "{}", hf.text);
    assert_eq!(
        (hf.body["name"].as_str(), hf.body["extension"][0]["valueCode"].as_str()),
        (Some("District hospital"), Some("I"))
    );
    let entity = fhir_get(&s, &format!("/fhir/Organization/{le}"), Some(&staff), &mut seen).await;
    assert_eq!(entity.status, StatusCode::OK, "{}", entity.text);
    assert_eq!(
        (entity.body["active"].as_bool(), entity.body["identifier"][1]["value"].as_str()),
        (Some(true), Some("12345678"))
    );
    let by_edrpou = fhir_get(&s, "/fhir/Organization?identifier=%7C12345678", Some(&clerk), &mut seen).await;
    assert_eq!(ids(&by_edrpou.body), [le.as_str()]);
    // the facility whose code is not a FHIR id is counted and not shown
    let all = fhir_get(&s, "/fhir/Organization", Some(&clerk), &mut seen).await;
    let mut expected = vec!["HF1".to_string(), le.clone()];
    expected.sort();
    assert_eq!(ids(&all.body), expected);

    let found = fhir_get(&s, &format!("/fhir/Device/{device}"), Some(&staff), &mut seen).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.text);
    assert_eq!(found.body["owner"]["reference"], format!("Organization/{le}"));
    assert_eq!((found.body["status"].as_str(), found.body["serialNumber"].as_str()), (Some("active"), Some("SN-0001")));
    assert_eq!(found.body["udiCarrier"][0]["deviceIdentifier"], "IMEI 49015420323751");
    let by_external = fhir_get(&s, "/fhir/Device?identifier=%7CEXT-7", Some(&staff), &mut seen).await;
    assert_eq!(ids(&by_external.body), [device.as_str()]);
    // another legal entity's staff finds none of it; a sync peer's token (acting for none) does
    let stranger = token_for("stranger", "equipment:read", Some(&Uuid::now_v7().to_string()));
    let hidden = fhir_get(&s, &format!("/fhir/Device/{device}"), Some(&stranger), &mut seen).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    let peer = token_for("central", "sync:read", None);
    let all = fhir_get(&s, "/fhir/Device", Some(&peer), &mut seen).await;
    assert_eq!(ids(&all.body), [device.as_str()]);

    let requested =
        fhir_get(&s, &format!("/fhir/ServiceRequest/{service_request}"), Some(&s.token(REQUISITIONS)), &mut seen).await;
    assert_eq!(requested.status, StatusCode::OK, "{}", requested.text);
    assert_eq!(requested.body["requisition"]["value"], number.as_str());
    assert_eq!(requested.body["encounter"]["identifier"]["value"], encounter.to_string());
    let lower = urlencode(&number.to_lowercase());
    let by_number = fhir_get(&s, &format!("/fhir/ServiceRequest?requisition={lower}"), Some(&peer), &mut seen).await;
    assert_eq!(ids(&by_number.body), [service_request.to_string()]);
    let other = fhir_get(&s, "/fhir/ServiceRequest?requisition=0000-0000-0000-0000", Some(&peer), &mut seen).await;
    assert_eq!(ids(&other.body).len(), 0);

    for (path, token, status) in [
        // equipment is read within a legal entity: a reader acting for none is refused, as in its API
        ("/fhir/Device".to_string(), token_for("reader", "equipment:read", None), StatusCode::FORBIDDEN),
        ("/fhir/Device".to_string(), clerk.clone(), StatusCode::FORBIDDEN),
        ("/fhir/ServiceRequest".to_string(), staff.clone(), StatusCode::FORBIDDEN),
        ("/fhir/Organization".to_string(), s.token(REQUISITIONS), StatusCode::FORBIDDEN),
        ("/fhir/Patient?requisition=x".to_string(), peer.clone(), StatusCode::BAD_REQUEST),
        ("/fhir/Organization/HF%202".to_string(), clerk.clone(), StatusCode::NOT_FOUND),
    ] {
        let answer = fhir_get(&s, &path, Some(&token), &mut seen).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.text);
        assert_eq!(answer.body["resourceType"], "OperationOutcome", "{path}");
    }
    valid_fhir(&seen);
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
