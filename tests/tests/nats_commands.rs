//! Commands over NATS request/reply against a private nats-server, on both backends: every command
//! of the HTTP API answers over NATS exactly as over HTTP (status, body, position), the claims
//! lifecycle's included, refusals too (400/401/403/409/422, a claim of another facility refused in
//! its bulk entry); idempotency keys are one across both ways in; malformed messages (a path
//! parameter header that is not one segment) change nothing; gateways in one queue group run each
//! command once; `/ready` follows the connection.

use std::time::{Duration, Instant};

use careledger_gateway::intake::IntakeConfig;
use careledger_gateway::intake::commands::COMMANDS;
use careledger_tests::scenario::{ClaimsStep, claims_lifecycle, http_of};
use careledger_tests::{
    ALL, CLAIMS, Kind, NatsServer, REGISTRY, REQUISITIONS, TestServer, both_backends, token_at_facility, token_for,
};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

/// A reply, as the HTTP answers of the suite are compared.
#[derive(Debug, Clone, PartialEq)]
struct Reply {
    status: u16,
    position: Option<i64>,
    body: Value,
}

/// One command, sent either way.
#[derive(Clone, Default)]
struct Message<'a> {
    context: &'a str,
    command: &'a str,
    token: Option<&'a str>,
    /// Path parameter headers, e.g. `("Careledger-Code", code)`.
    params: Vec<(&'static str, String)>,
    key: Option<String>,
    body: String,
    /// The request id both ways get, so that whole bodies compare.
    request_id: String,
    /// A bulk claims command (its name): it takes no idempotency key.
    bulk: Option<&'a str>,
}

impl<'a> Message<'a> {
    fn new(context: &'a str, command: &'a str, token: &'a str, body: Value) -> Self {
        Message {
            context,
            command,
            token: Some(token),
            body: body.to_string(),
            request_id: Uuid::now_v7().to_string(),
            ..Default::default()
        }
    }

    fn param(mut self, name: &'static str, value: &str) -> Self {
        self.params.push((name, value.to_string()));
        self
    }

    /// A step of the claims lifecycle.
    fn step(token: &'a str, step: ClaimsStep) -> Self {
        let bulk = step.bulk.then_some(step.command);
        let context = careledger_app::commands::named(step.command).expect("a command of the table").context.name();
        Message { params: step.params, bulk, ..Message::new(context, step.command, token, step.body) }
    }

    fn keyed(mut self) -> Self {
        self.key = Some(Uuid::now_v7().to_string());
        self
    }

    fn headers(&self) -> Vec<(&str, String)> {
        let mut headers = vec![("X-Request-Id", self.request_id.clone())];
        if let Some(t) = self.token {
            headers.push(("Authorization", format!("Bearer {t}")));
        }
        if let Some(k) = &self.key {
            headers.push(("Idempotency-Key", k.clone()));
        }
        headers
    }

    /// The reply, or why none came (a timeout, no responders).
    async fn try_over_nats(&self, client: &async_nats::Client) -> Result<Reply, String> {
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in self.headers().into_iter().chain(self.params.iter().map(|(n, v)| (*n, v.clone()))) {
            headers.insert(name, value.as_str());
        }
        let subject = format!("careledger.commands.{}.{}", self.context, self.command);
        let reply = tokio::time::timeout(
            Duration::from_secs(20),
            client.request_with_headers(subject.clone(), headers, self.body.clone().into()),
        )
        .await
        .map_err(|_| format!("no reply to {subject} in 20 s"))?
        .map_err(|e| format!("request {subject}: {e}"))?;
        let header = |name: &str| reply.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
        assert_eq!(header("X-Request-Id").as_deref(), Some(self.request_id.as_str()), "the reply names its request");
        // the HTTP answer's type: JSON, FHIR's JSON for a sync Bundle's
        let json = if self.context == "sync" { "application/fhir+json" } else { "application/json" };
        assert_eq!(header("Content-Type").as_deref(), Some(json));
        Ok(Reply {
            status: header("Careledger-Status").and_then(|s| s.parse().ok()).expect("Careledger-Status header"),
            position: header("Careledger-Position").and_then(|p| p.parse().ok()),
            body: serde_json::from_slice(&reply.payload).expect("a JSON reply"),
        })
    }

    async fn over_nats(&self, client: &async_nats::Client) -> Reply {
        self.try_over_nats(client).await.unwrap_or_else(|e| panic!("{e}"))
    }

    async fn over_http(&self, s: &TestServer) -> Reply {
        let (method, path) = http_of(self.command, &self.params);
        let mut request = s.client.request(method, format!("{}{path}", s.base)).body(self.body.clone());
        for (name, value) in self.headers() {
            request = request.header(name, value);
        }
        let answer = request.send().await.expect("request sent");
        let status = answer.status().as_u16();
        let position =
            answer.headers().get("careledger-position").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        Reply { status, position, body: answer.json().await.expect("a JSON answer") }
    }
}

async fn start(kind: Kind, nats: &NatsServer) -> (TestServer, async_nats::Client) {
    let s = TestServer::start_with(kind, |c| c.intake = Some(IntakeConfig::new(nats.url()))).await;
    wait_subscribed(&s, true).await;
    (s, async_nats::connect(nats.url()).await.expect("connect to nats"))
}

/// A client whose requests give up after 5 s, so that a command lost costs the test 5 s, not 10.
async fn impatient_client(nats: &NatsServer) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .request_timeout(Some(Duration::from_secs(5)))
        .connect(nats.url())
        .await
        .expect("connect to nats")
}

/// Waits until another gateway's intake has subscribed (joined the queue group).
async fn wait_joined(gateway: &careledger_gateway::RunningServer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gateway.state.intake.as_ref().is_some_and(|i| i.borrow().subscribed) {
        assert!(Instant::now() < deadline, "the other gateway did not subscribe");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `/ready` says the intake is (or is not) subscribed.
async fn wait_subscribed(s: &TestServer, subscribed: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = s.request(Method::GET, "/ready", None, None).await;
        if ready.body["commands"]["subscribed"] == subscribed {
            assert_eq!(ready.body["commands"]["queue"], "careledger");
            return;
        }
        assert!(Instant::now() < deadline, "intake subscribed is not {subscribed} after 20 s: {}", ready.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GenerateCodes over NATS, which must be answered 201.
async fn generated(nats: &async_nats::Client, token: &str, holder: &str, number: u32) -> Reply {
    let body = json!({ "holder_type": 1, "holder_code": holder, "number": number });
    let reply = Message::new("codes", "GenerateCodes", token, body).over_nats(nats).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply
}

/// `count` GenerateCodes for holders `<prefix>-<i>`, to send at once.
fn generations<'a>(token: &'a str, prefix: &str, count: usize, number: u32) -> Vec<Message<'a>> {
    (0..count)
        .map(|i| {
            let body = json!({ "holder_type": 1, "holder_code": format!("{prefix}-{i}"), "number": number });
            Message::new("codes", "GenerateCodes", token, body)
        })
        .collect()
}

async fn head(s: &TestServer) -> i64 {
    s.state().store.head().await.expect("head")
}

/// Sends over NATS, then the same over HTTP with the same idempotency key and request id: the
/// HTTP answer is the replay of the NATS one, identical, and appends nothing more. A bulk command
/// takes no key (each claim answers for itself): its repeat over NATS and over HTTP answer alike,
/// claim by claim, and append nothing. Returns the first answer, once the read models hold it.
async fn same_both_ways(s: &TestServer, nats: &async_nats::Client, send: Message<'_>, status: u16) -> Reply {
    let send = send.keyed();
    let over_nats = send.over_nats(nats).await;
    assert_eq!(over_nats.status, status, "{} over NATS: {}", send.command, over_nats.body);
    let after = head(s).await;
    assert_eq!(over_nats.position, Some(after), "{} answers the position it reached", send.command);
    let log = careledger_tests::whole_log(&s.state().store).await;
    let last = log.last().expect("an event");
    assert_eq!(last.metadata.command, send.bulk.unwrap_or(send.command), "the event is the command's");
    let over_http = send.over_http(s).await;
    if send.bulk.is_some() {
        let again = send.over_nats(nats).await;
        assert_eq!(over_http, again, "{} repeated over HTTP answers as repeated over NATS", send.command);
    } else {
        assert_eq!(over_http, over_nats, "{} over HTTP with the same key answers as over NATS", send.command);
    }
    assert_eq!(head(s).await, after, "{}: the repeat over HTTP appended nothing", send.command);
    assert!(s.state().projections.wait_for(after, Duration::from_secs(10)).await, "read models behind");
    over_nats
}

both_backends!(every_command_answers_as_over_http, every_command_on);
async fn every_command_on(kind: Kind) {
    let nats_server = NatsServer::start().await;
    let (s, nats) = start(kind, &nats_server).await;
    let codes = token_for("user-1", ALL, Some("le-1"));
    let mut sent = vec![];
    let mut run = async |send: Message<'_>, status: u16| {
        sent.push(send.command.to_string());
        same_both_ways(&s, &nats, send, status).await
    };

    let body = json!({ "holder_type": 1, "holder_code": "N-1", "number": 20 });
    run(Message::new("codes", "GenerateCodes", &codes, body), 201).await;
    let body = json!({ "holder_type": 1, "holder_code": "N-1", "number": 5 });
    let reserved = run(Message::new("codes", "ReserveCodes", &codes, body), 201).await;
    let code = reserved.body["data"]["codes"][0].as_str().expect("a reserved code").to_string();
    let assign = Message::new("codes", "AssignCode", &codes, json!({ "insuree_id": "I-1" }));
    run(assign.param("Careledger-Code", &code), 200).await;
    let link = Message::new("codes", "LinkControlNumber", &codes, json!({ "control_number": "CN-1" }));
    run(link.param("Careledger-Code", &code), 200).await;
    // a peer's Bundle: an insuree it registered with another of the codes reserved to N-1
    let (node, insuree) = ("urn:uuid:node-1", Uuid::now_v7());
    let code_type = "https://openimis.github.io/openimis_fhir_r4_ig/CodeSystem/openimis-identifiers";
    let patient = json!({
        "resourceType": "Patient", "id": insuree,
        "identifier": [
            { "system": node, "value": insuree },
            { "type": { "coding": [{ "system": code_type, "code": "Code" }] }, "value": reserved.body["data"]["codes"][1] },
        ],
        "name": [{ "family": "Mwangi", "given": ["Amani"] }], "gender": "female", "birthDate": "1990-01-31",
    });
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction", "identifier": { "system": node, "value": "changes-0-1" },
        "entry": [{ "resource": patient, "request": { "method": "PUT", "url": "Patient" } }],
    });
    let peer = token_for(node, "sync:read sync:write", None);
    run(Message::new("sync", "ImportBundle", &peer, bundle), 200).await;

    let admin = token_for("admin", REGISTRY, None);
    let (le, div, div2) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
    let body = json!({ "id": le, "name": "Clinic", "edrpou": "12345678", "type": "PRIMARY_CARE", "status": "ACTIVE" });
    run(Message::new("registry", "RegisterLegalEntity", &admin, body), 201).await;
    for d in [&div, &div2] {
        let body = json!({ "id": d, "legal_entity_id": le, "name": "Ward", "type": "CLINIC", "status": "ACTIVE" });
        run(Message::new("registry", "RegisterDivision", &admin, body), 201).await;
    }
    let user = token_for("user-1", "equipment:write equipment:read", Some(&le));
    let body = json!({ "division_id": div, "type": "23143534", "external_id": "EQ-1", "name": "Scanner" });
    let equipment = run(Message::new("registry", "RegisterEquipment", &user, body), 201).await;
    let eq = equipment.body["data"]["id"].as_str().expect("equipment id").to_string();
    let link = Message::new("registry", "LinkDivision", &user, json!({ "division_id": div2 }));
    run(link.param("Careledger-Id", &eq), 201).await;
    let damaged = Message::new("registry", "ChangeAvailability", &user, json!({ "availability_status": "DAMAGED" }));
    run(damaged.param("Careledger-Id", &eq), 200).await;
    let inactive = Message::new("registry", "ChangeEquipmentStatus", &user, json!({ "status": "INACTIVE" }));
    run(inactive.param("Careledger-Id", &eq), 200).await;
    let division = Message::new("registry", "ChangeDivisionStatus", &admin, json!({ "status": "INACTIVE" }));
    run(division.param("Careledger-Id", &div), 200).await;
    let suspended = Message::new("registry", "ChangeLegalEntityStatus", &admin, json!({ "status": "SUSPENDED" }));
    run(suspended.param("Careledger-Id", &le), 200).await;

    let requisitions = token_for("user-1", REQUISITIONS, Some(&le));
    let body = json!({ "encounter_id": Uuid::new_v4(), "entity_type": "service_request", "entity_id": Uuid::new_v4() });
    let issued = run(Message::new("requisitions", "IssueRequisition", &requisitions, body), 201).await;
    assert!(issued.body["data"]["requisition"].is_string(), "{}", issued.body);

    let claims = token_for("claims-admin", CLAIMS, None);
    claims_lifecycle(async |step: ClaimsStep| {
        let status = step.status;
        run(Message::step(&claims, step), status).await.body
    })
    .await;

    let mut every: Vec<String> = COMMANDS.iter().map(|c| c.name.to_string()).collect();
    every.sort();
    sent.sort();
    sent.dedup();
    assert_eq!(sent, every, "every command of the HTTP API was sent over NATS");

    // the operator sees it
    let metrics = s.request(Method::GET, "/metrics", None, None).await.text;
    assert!(metrics.contains("careledger_nats_commands_total{command=\"AssignCode\",status=\"200\"}"), "{metrics}");
    assert!(metrics.contains("careledger_nats_commands_subscribed 1"), "{metrics}");
}

both_backends!(refusals_answer_as_over_http, refusals_on);
async fn refusals_on(kind: Kind) {
    let nats_server = NatsServer::start().await;
    let (s, nats) = start(kind, &nats_server).await;
    let t = token_for("user-1", ALL, Some("le-1"));
    generated(&nats, &t, "N-1", 3).await;
    let reserved =
        Message::new("codes", "ReserveCodes", &t, json!({ "holder_type": 1, "holder_code": "N-1", "number": 1 }))
            .over_nats(&nats)
            .await;
    let code = reserved.body["data"]["codes"][0].as_str().expect("a code").to_string();
    let assigned = Message::new("codes", "AssignCode", &t, json!({ "insuree_id": "I-1" }))
        .param("Careledger-Code", &code)
        .over_nats(&nats)
        .await;
    assert_eq!(assigned.status, 200, "{}", assigned.body);
    let before = head(&s).await;

    let read_only = token_for("user-1", "111102", Some("le-1"));
    let no_legal_entity = token_for("u", "equipment:write", None);
    let body = json!({ "holder_type": 1, "holder_code": "N-1", "number": 3 });
    let no_token = Message { token: None, ..Message::new("codes", "GenerateCodes", &t, body.clone()) };
    let bad_token = Message { token: Some("not-a-jwt"), ..Message::new("codes", "GenerateCodes", &t, body.clone()) };
    let cases = [
        (no_token, 401, "access_denied"),
        (bad_token, 401, "access_denied"),
        (Message::new("codes", "GenerateCodes", &read_only, body.clone()), 403, "forbidden"),
        (
            Message::new("codes", "GenerateCodes", &t, json!({ "holder_type": 9, "colour": "red" })),
            422,
            "validation_failed",
        ),
        (
            Message { body: "{\"holder_type\": 1,".into(), ..Message::new("codes", "GenerateCodes", &t, body) },
            400,
            "request_malformed",
        ),
        (
            Message::new("codes", "AssignCode", &t, json!({ "insuree_id": "I-2" })).param("Careledger-Code", &code),
            409,
            "request_conflict",
        ),
        (Message::new("registry", "RegisterEquipment", &no_legal_entity, json!({})), 403, "forbidden"),
    ];
    for (send, status, kind) in cases {
        let over_nats = send.over_nats(&nats).await;
        assert_eq!(
            (over_nats.status, over_nats.body["error"]["type"].as_str()),
            (status, Some(kind)),
            "{}",
            over_nats.body
        );
        assert_eq!(send.over_http(&s).await, over_nats, "{} {status}: HTTP answers as NATS", send.command);
    }
    assert_eq!(head(&s).await, before, "no refusal appended anything");

    // claims: a claim of HF1 is refused to HF2's administrator in its entry of the bulk answer
    // (403), and an invalid line is a 422 naming its JSON path
    let admin = token_for("claims-admin", CLAIMS, None);
    let claim = json!({ "code": "C-1", "health_facility": "HF1", "insuree": "100000001", "date_from": "2026-01-02",
                        "icd": "A00", "items": [{ "code": "I1", "qty_provided": 1, "price_asked": 8 }] });
    let created = Message::new("claims", "CreateClaim", &admin, claim.clone()).over_nats(&nats).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let before = head(&s).await;
    let other_facility = token_at_facility("clerk-2", CLAIMS, "HF2");
    let uuids = json!({ "uuids": [created.body["data"]["uuid"]] });
    let submit = Message::new("claims", "SubmitClaims", &other_facility, uuids);
    let over_nats = submit.over_nats(&nats).await;
    let entry = &over_nats.body["data"][0];
    assert_eq!(
        (over_nats.status, &entry["done"], &entry["error"]["code"]),
        (200, &json!(false), &json!(403)),
        "{entry}"
    );
    assert_eq!(submit.over_http(&s).await, over_nats, "SubmitClaims refused: HTTP answers as NATS");
    let mut invalid = claim;
    invalid["items"][0]["qty_provided"] = json!(-1);
    let create = Message::new("claims", "CreateClaim", &admin, invalid);
    let over_nats = create.over_nats(&nats).await;
    assert_eq!(over_nats.status, 422, "{}", over_nats.body);
    assert_eq!(over_nats.body["error"]["invalid"][0]["entry"], "$.items[0].qty_provided");
    assert_eq!(create.over_http(&s).await, over_nats, "CreateClaim 422: HTTP answers as NATS");
    assert_eq!(head(&s).await, before, "no claims refusal appended anything");
}

both_backends!(an_idempotency_key_answers_once, idempotency_on);
async fn idempotency_on(kind: Kind) {
    let nats_server = NatsServer::start().await;
    let (s, nats) = start(kind, &nats_server).await;
    let t = token_for("user-1", REQUISITIONS, Some("le-1"));
    let body = json!({ "encounter_id": Uuid::new_v4(), "entity_type": "service_request", "entity_id": Uuid::new_v4() });
    let send = Message::new("requisitions", "IssueRequisition", &t, body).keyed();
    let first = send.over_nats(&nats).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let after = head(&s).await;
    // concurrent and later repeats: one answer, one append
    let repeats = futures::future::join_all((0..4).map(|_| send.over_nats(&nats))).await;
    for repeat in repeats {
        assert_eq!(repeat, first, "a repeat answers the first answer");
    }
    assert_eq!(head(&s).await, after, "the repeats appended nothing");
    let other =
        json!({ "encounter_id": Uuid::new_v4(), "entity_type": "service_request", "entity_id": Uuid::new_v4() });
    let reused = Message { body: other.to_string(), ..send.clone() }.over_nats(&nats).await;
    assert_eq!(reused.status, 422, "a key reused for another command: {}", reused.body);
    assert_eq!(reused.body["error"]["invalid"][0]["entry"], "Idempotency-Key");
    assert_eq!(head(&s).await, after);
}

both_backends!(malformed_messages_change_nothing, malformed_on);
async fn malformed_on(kind: Kind) {
    let nats_server = NatsServer::start().await;
    let (s, nats) = start(kind, &nats_server).await;
    let t = token_for("user-1", ALL, Some("le-1"));
    let before = head(&s).await;
    let body = json!({ "holder_type": 1, "holder_code": "N-1", "number": 3 });

    let unknown = Message::new("codes", "MintCodes", &t, body.clone()).over_nats(&nats).await;
    assert_eq!((unknown.status, unknown.body["error"]["type"].as_str()), (404, Some("not_found")), "{}", unknown.body);
    assert!(unknown.body["error"]["message"].as_str().unwrap().contains("careledger.commands.codes.GenerateCodes"));
    let wrong_context = Message::new("registry", "GenerateCodes", &t, body.clone()).over_nats(&nats).await;
    assert_eq!(wrong_context.status, 404, "{}", wrong_context.body);
    let deeper = Message::new("codes.batches", "GenerateCodes", &t, body.clone()).over_nats(&nats).await;
    assert_eq!(deeper.status, 404, "{}", deeper.body);

    let no_code = Message::new("codes", "AssignCode", &t, json!({ "insuree_id": "I-1" })).over_nats(&nats).await;
    assert_eq!(no_code.status, 422, "{}", no_code.body);
    assert_eq!(no_code.body["error"]["invalid"][0]["entry"], "Careledger-Code");
    assert_eq!(no_code.body["error"]["invalid"][0]["entry_type"], "header");
    let blank = Message::new("codes", "AssignCode", &t, json!({ "insuree_id": "I-1" })).param("Careledger-Code", " ");
    assert_eq!(blank.over_nats(&nats).await.status, 422);
    // a header fills one path segment, never more: no header reaches another route
    let claims = token_for("claims-admin", CLAIMS, None);
    for (command, value) in [("RestoreClaim", "x/../../code-batches"), ("UpdateClaim", ".."), ("RestoreClaim", "/")] {
        let send = Message::new("claims", command, &claims, json!({})).param("Careledger-Uuid", value);
        let refused = send.over_nats(&nats).await;
        assert_eq!(refused.status, 422, "{command} {value:?}: {}", refused.body);
        let invalid = &refused.body["error"]["invalid"][0];
        assert_eq!((&invalid["entry"], &invalid["entry_type"]), (&json!("Careledger-Uuid"), &json!("header")));
        assert_eq!(invalid["rules"][0]["rule"], "format", "{invalid}");
    }
    let no_attachment = Message::new("claims", "DeleteAttachment", &claims, json!({}))
        .param("Careledger-Uuid", &Uuid::now_v7().to_string())
        .over_nats(&nats)
        .await;
    assert_eq!(no_attachment.body["error"]["invalid"][0]["entry"], "Careledger-Id", "{}", no_attachment.body);

    let bad_json = Message { body: "not json".into(), ..Message::new("codes", "GenerateCodes", &t, body.clone()) };
    assert_eq!(bad_json.over_nats(&nats).await.status, 400);
    let empty = Message { body: String::new(), ..Message::new("codes", "GenerateCodes", &t, body.clone()) };
    assert_eq!(empty.over_nats(&nats).await.status, 400);
    let array = Message::new("codes", "GenerateCodes", &t, json!([body.clone()])).over_nats(&nats).await;
    assert_eq!(array.status, 422);

    // a valid command without a reply subject: nobody could learn its answer, so it is not run
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {t}").as_str());
    nats.publish_with_headers("careledger.commands.codes.GenerateCodes", headers, body.to_string().into())
        .await
        .expect("publish");
    nats.flush().await.expect("flush");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = s.request(Method::GET, "/metrics", None, None).await.text;
        if metrics.contains("careledger_nats_commands_unanswerable_total") {
            break;
        }
        assert!(Instant::now() < deadline, "the message without reply subject was not counted: {metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(head(&s).await, before, "no malformed message appended anything");
    // and the intake goes on serving
    generated(&nats, &t, "N-1", 3).await;
}

/// Two gateways on one database in the default queue group: each command runs on one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateways_in_a_queue_group_run_each_command_once() {
    let nats_server = NatsServer::start().await;
    let (s, nats) = start(Kind::Postgres, &nats_server).await;
    let second = TestServer::serve(&s.db.url, |c| c.intake = Some(IntakeConfig::new(nats_server.url()))).await;
    let before = head(&s).await;
    let t = token_for("user-1", ALL, Some("le-1"));
    let sends = generations(&t, "Q", 20, 2);
    // wait for the second gateway's subscription, then send them all at once
    wait_joined(&second).await;
    let replies = futures::future::join_all(sends.iter().map(|send| send.over_nats(&nats))).await;
    assert!(replies.iter().all(|r| r.status == 201), "{replies:?}");
    let log = careledger_tests::whole_log(&s.state().store).await;
    let batches = log.iter().filter(|e| e.position > before && e.event_type == "CodesGenerated").count();
    assert_eq!(batches, 20, "one batch per command, not one per gateway");
    let answered =
        |st: &careledger_gateway::state::AppState| st.intake.as_ref().map(|i| i.borrow().answered).unwrap_or(0);
    assert_eq!(answered(s.state()) + answered(&second.state), 20);
    second.stop().await;
}

/// `/ready` follows NATS going away and coming back; commands work again after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ready_follows_the_connection() {
    let mut nats_server = NatsServer::start().await;
    let (s, _) = start(Kind::Sqlite, &nats_server).await;
    nats_server.kill();
    wait_subscribed(&s, false).await;
    let metrics = s.request(Method::GET, "/metrics", None, None).await.text;
    assert!(metrics.contains("careledger_nats_commands_subscribed 0"), "{metrics}");
    nats_server.restart().await;
    wait_subscribed(&s, true).await;
    let nats = async_nats::connect(nats_server.url()).await.expect("connect");
    let t = token_for("user-1", ALL, Some("le-1"));
    generated(&nats, &t, "R", 2).await;
}

/// A gateway stopped while commands run answers every command sent to it before it stopped, and
/// runs each once, before it closes the store. (A command that reaches no gateway at all, sent
/// after the last one left, hears "no responders" and never runs: a retry with its idempotency
/// key is safe.) How the intake leaves its queue group without dropping what the server routed
/// to it meanwhile: `intake::leave`, and `gateways_stopping_under_load_lose_no_command` below.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopping_gateway_answers_what_it_took() {
    let nats_server = NatsServer::start().await;
    let (mut s, _) = start(Kind::Postgres, &nats_server).await;
    let nats = impatient_client(&nats_server).await;
    let t = token_for("user-1", ALL, Some("le-1"));
    let sends = generations(&t, "S", 16, 2000);
    let replies = futures::future::join_all(sends.iter().map(|send| send.try_over_nats(&nats)));
    let stopping = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.stop().await;
    };
    let (replies, ()) = tokio::join!(replies, stopping);
    let store = s.db.store().await;
    let log = careledger_tests::whole_log(&store).await;
    let generated_for = |holder: &str| {
        log.iter().filter(|e| e.event_type == "CodeBatchGenerated" && e.data["holder_code"] == holder).count()
    };
    for (i, reply) in replies.iter().enumerate() {
        let holder = format!("S-{i}");
        match reply {
            Ok(reply) => {
                assert_eq!(reply.status, 201, "{}", reply.body);
                assert_eq!(generated_for(&holder), 1, "answered 201, so generated once: {holder}");
            }
            Err(unanswered) => {
                assert_eq!(generated_for(&holder), 0, "{holder} ran without an answer ({unanswered})")
            }
        }
    }
    let answered = replies.iter().filter(|r| r.is_ok()).count();
    assert_eq!(answered, sends.len(), "every command sent before the gateway stopped is answered: {replies:?}");
}

/// An answer larger than NATS' maximum payload (1 MiB by default): the command took effect, and
/// the reply says so with its position instead of leaving the requester to time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_answer_too_large_for_a_message_says_so() {
    let nats_server = NatsServer::start().await;
    let (s, nats) = start(Kind::Sqlite, &nats_server).await;
    let t = token_for("user-1", ALL, Some("le-1"));
    generated(&nats, &t, "BIG", 100_000).await;
    let reserve = json!({ "holder_type": 1, "holder_code": "BIG", "number": 100_000 });
    let reserved = Message::new("codes", "ReserveCodes", &t, reserve).over_nats(&nats).await;
    assert_eq!(reserved.status, 500, "{}", reserved.body);
    let message = reserved.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("the command was executed"), "{message}");
    assert_eq!(reserved.position, Some(head(&s).await), "the reply names the position the command reached");
}

/// No more commands run at once than the intake's concurrency; the rest wait their turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_is_bounded() {
    let nats_server = NatsServer::start().await;
    let s = TestServer::start_with(Kind::Sqlite, |c| {
        c.intake = Some(IntakeConfig { concurrency: 2, ..IntakeConfig::new(nats_server.url()) })
    })
    .await;
    wait_subscribed(&s, true).await;
    let nats = async_nats::connect(nats_server.url()).await.expect("connect");
    let mut intake = s.state().intake.clone().expect("an intake");
    let watcher = tokio::spawn(async move {
        let mut most = 0;
        while intake.changed().await.is_ok() {
            most = most.max(intake.borrow_and_update().in_flight);
        }
        most
    });
    let t = token_for("user-1", ALL, Some("le-1"));
    let sends = generations(&t, "C", 12, 300);
    let replies = futures::future::join_all(sends.iter().map(|send| send.over_nats(&nats))).await;
    assert!(replies.iter().all(|r| r.status == 201), "{replies:?}");
    let mut s = s;
    s.stop().await;
    let most = watcher.await.expect("watcher");
    assert!((1..=2).contains(&most), "at most 2 commands ran at once, not {most}");
}

/// Gateways leaving a queue group while commands keep coming lose none of them: each command is
/// answered, by the gateway that stays or by the one stopping. A stopping gateway's intake
/// unsubscribes; a command the server routed to it just before the server took the UNSUB must
/// still reach it and be answered (async-nats' own drain forgets the subscription before the
/// server has confirmed the UNSUB, and such a command was dropped unread, its requester timing
/// out).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateways_stopping_under_load_lose_no_command() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let nats_server = NatsServer::start().await;
    let (s, _) = start(Kind::Postgres, &nats_server).await;
    let nats = impatient_client(&nats_server).await;
    let t = token_for("user-1", REQUISITIONS, Some("le-1"));
    let sending = Arc::new(AtomicBool::new(true));
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let (nats, t, sending) = (nats.clone(), t.clone(), sending.clone());
            tokio::spawn(async move {
                let (mut answered, mut lost) = (0usize, Vec::new());
                while sending.load(Ordering::Relaxed) {
                    let body = json!({ "encounter_id": Uuid::new_v4(), "entity_type": "service_request",
                                       "entity_id": Uuid::new_v4() });
                    match Message::new("requisitions", "IssueRequisition", &t, body).try_over_nats(&nats).await {
                        Ok(reply) => {
                            assert_eq!(reply.status, 201, "{}", reply.body);
                            answered += 1;
                        }
                        Err(e) => lost.push(e),
                    }
                }
                (answered, lost)
            })
        })
        .collect();
    for _ in 0..4 {
        let leaving = TestServer::serve(&s.db.url, |c| c.intake = Some(IntakeConfig::new(nats_server.url()))).await;
        wait_joined(&leaving).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let took = leaving.state.intake.as_ref().map(|i| i.borrow().answered).unwrap_or(0);
        assert!(took > 0, "the second gateway took no command while it was in the group");
        leaving.stop().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    sending.store(false, Ordering::Relaxed);
    let (mut answered, mut lost) = (0, Vec::new());
    for sender in senders {
        let (a, l) = sender.await.expect("sender");
        answered += a;
        lost.extend(l);
    }
    assert!(lost.is_empty(), "{} of {} commands went unanswered: {lost:?}", lost.len(), answered + lost.len());
}
