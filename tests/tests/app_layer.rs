//! Commands run through the application layer alone, without a server or HTTP (issue #18): what a
//! transport other than HTTP (NATS, the coming sync) gets when it calls the layer.

use careledger_app::requisitions::{IssueInput, Requisitions};
use careledger_app::{AggregateCache, AppError, CommandCtx, RequestMeta};
use careledger_domain::requisitions::{DEFAULT_KEY, RequisitionKey};
use careledger_events::Actor;
use careledger_events::requisitions::EntityType;
use careledger_tests::{Kind, TestDb, both_backends};
use uuid::Uuid;

fn ctx(meta: &RequestMeta) -> CommandCtx {
    let actor = Actor { user_id: Some("sync".into()), legal_entity_id: None };
    CommandCtx::new("IssueRequisition", actor, meta, "requisitions", b"input").unwrap()
}

both_backends!(issue_requisition_through_the_layer, issue_on);
async fn issue_on(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.store().await;
    let encounters = AggregateCache::new(100);
    let key = RequisitionKey::new(DEFAULT_KEY.as_bytes()).unwrap();
    let requisitions = Requisitions { store: &store, encounters: &encounters, key: &key };
    let encounter_id = Uuid::now_v7();
    let input = |entity_id| IssueInput { encounter_id, entity_type: EntityType::ServiceRequest, entity_id };

    let meta = RequestMeta { idempotency_key: Some("k-1".into()), ..Default::default() };
    let first = requisitions.issue(&ctx(&meta), input(Uuid::now_v7())).await.unwrap();
    assert_eq!(first.status, 201);
    let number = first.data["requisition"].as_str().unwrap().to_string();
    assert_eq!(number.len(), 19, "{number}");
    // the same key answers the first answer and appends nothing
    let head = store.head().await.unwrap();
    let again = requisitions.issue(&ctx(&meta), input(Uuid::now_v7())).await.unwrap();
    assert_eq!((again.status, &again.data), (201, &first.data));
    assert_eq!(store.head().await.unwrap(), head);
    // another entity of the encounter shares its number (200), as over HTTP
    let second = requisitions.issue(&ctx(&RequestMeta::default()), input(Uuid::now_v7())).await.unwrap();
    assert_eq!(second.status, 200);
    assert_eq!(second.data["requisition"], number.as_str());
    let log = careledger_tests::whole_log(&store).await;
    assert!(
        log.iter()
            .all(|e| e.metadata.command == "IssueRequisition" && e.metadata.actor.user_id.as_deref() == Some("sync"))
    );
    // a key longer than the layer takes is refused, whatever the transport
    let long = RequestMeta { idempotency_key: Some("x".repeat(201)), ..Default::default() };
    let actor = Actor::default();
    assert!(matches!(CommandCtx::new("IssueRequisition", actor, &long, "p", b""), Err(AppError::Invalid(_))));
}

both_backends!(the_code_pool_through_the_layer, codes_on);
async fn codes_on(kind: Kind) {
    use careledger_app::codes::{Codes, GenerateInput, ReserveInput};
    use careledger_events::codes::{CodeFormat, HolderType};
    let db = TestDb::new(kind).await;
    let store = db.store().await;
    let projections = careledger_projections::Projections::new(store.clone(), careledger_projections::all());
    let batches = AggregateCache::new(10);
    let format = CodeFormat::default();
    let codes = Codes {
        store: &store,
        projections: &projections,
        batches: &batches,
        format: &format,
        query_wait: std::time::Duration::from_secs(1),
    };
    let actor = || Actor { user_id: Some("officer".into()), legal_entity_id: None };
    let ctx = |command: &'static str| CommandCtx::new(command, actor(), &RequestMeta::default(), command, b"").unwrap();
    let input = GenerateInput { holder_type: HolderType::EnrolmentOfficer, holder_code: "EO-1".into(), number: 20 };
    let made = codes.generate(&ctx("GenerateCodes"), input).await.unwrap();
    assert_eq!(made.status, 201);
    let batch_id: Uuid = made.data["batch_id"].as_str().unwrap().parse().unwrap();
    let reserve = ReserveInput {
        holder_type: HolderType::EnrolmentOfficer,
        holder_code: "EO-1".into(),
        number: 5,
        batch_id: Some(batch_id),
    };
    let reserved = codes.reserve(&ctx("ReserveCodes"), reserve).await.unwrap();
    let code = reserved.data["codes"][0].as_str().unwrap().to_string();
    let assigned = codes.assign(&ctx("AssignCode"), &code, "insuree-1".into(), None).await.unwrap();
    assert_eq!(
        (assigned.data["status"].as_str(), assigned.data["insuree_id"].as_str()),
        (Some("assigned"), Some("insuree-1"))
    );
    let linked = codes.link_control_number(&ctx("LinkControlNumber"), &code, "CN-1".into()).await.unwrap();
    assert_eq!(linked.data["control_number"], "CN-1");
    // another code for the same insuree is refused, whatever the transport
    let other = reserved.data["codes"][1].as_str().unwrap().to_string();
    let refused = codes.assign(&ctx("AssignCode"), &other, "insuree-1".into(), None).await;
    assert!(matches!(refused, Err(AppError::Conflict(_))), "{refused:?}");
    // an invalid code is named as the path parameter it came in
    assert!(matches!(
        codes.link_control_number(&ctx("LinkControlNumber"), "12", "CN".into()).await,
        Err(AppError::Invalid(_))
    ));
}
