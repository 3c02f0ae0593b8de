//! Commands run through the application layer alone, without a server or HTTP (issue #18): what a
//! transport other than HTTP (NATS, the coming sync) gets when it calls the layer.

use careledger_app::requisitions::{IssueInput, Requisitions};
use careledger_app::{AggregateCache, AppError, Caller, CommandCtx, Operation, Permissions, RequestMeta};
use careledger_domain::requisitions::{DEFAULT_KEY, RequisitionKey};
use careledger_events::requisitions::EntityType;
use careledger_tests::{Kind, TestDb, both_backends};
use uuid::Uuid;

/// A caller holding every operation's default permission, acting for no tenant.
fn caller(id: &str) -> Caller {
    Caller::new(id, None, None, Operation::ALL.iter().map(|o| o.default_permission().to_string()))
}

fn ctx(meta: &RequestMeta) -> CommandCtx {
    CommandCtx::new("IssueRequisition", &caller("sync"), &Permissions::default(), meta, "requisitions", b"input")
        .unwrap()
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
    let p = Permissions::default();
    assert!(matches!(
        CommandCtx::new("IssueRequisition", &caller("u"), &p, &long, "p", b""),
        Err(AppError::Invalid(_))
    ));
    // and a caller without the operation's permission gets no context to run it with
    let nobody = Caller::new("u", None, None, Vec::<String>::new());
    let refused = CommandCtx::new("IssueRequisition", &nobody, &p, &RequestMeta::default(), "p", b"");
    assert!(matches!(refused, Err(AppError::Forbidden(_))));
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
    let (officer, p) = (caller("officer"), Permissions::default());
    let ctx =
        |command: &'static str| CommandCtx::new(command, &officer, &p, &RequestMeta::default(), command, b"").unwrap();
    let input = GenerateInput { holder_type: HolderType::EnrolmentOfficer, holder_code: "EO-1".into(), number: 20 };
    let made = codes.generate(&ctx("GenerateCodes"), input).await.unwrap();
    assert_eq!(made.status, 201);
    let batch_id: Uuid = made.data["batch_id"].as_str().unwrap().parse().unwrap();
    let reserve = ReserveInput {
        holder_type: HolderType::EnrolmentOfficer,
        holder_code: "EO-1".into(),
        number: 5,
        batch_id: Some(batch_id),
        for_server: None,
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

/// A caller acting for a legal entity or a health facility, with every default permission.
fn tenant(id: &str, legal_entity: Option<Uuid>, facility: Option<&str>) -> Caller {
    let permissions = Operation::ALL.iter().map(|o| o.default_permission().to_string());
    Caller::new(id, legal_entity.map(|l| l.to_string()), facility.map(String::from), permissions)
}

both_backends!(the_registry_through_the_layer, registry_on);
async fn registry_on(kind: Kind) {
    use careledger_app::registry::{Registry, RegistryReferences};
    use careledger_domain::registry::{RegisterDivision, RegisterLegalEntity};
    use careledger_events::registry::{
        AvailabilityStatus, DivisionStatus, DivisionType, EquipmentRegistration, EquipmentStatus, LegalEntityStatus,
        LegalEntityType,
    };
    let db = TestDb::new(kind).await;
    let store = db.store().await;
    let references = RegistryReferences::default();
    let registry = Registry { store: &store, references: &references };
    let p = Permissions::default();
    let ctx = |caller: &Caller, command: &'static str| {
        CommandCtx::new(command, caller, &p, &RequestMeta::default(), command, b"").unwrap()
    };
    let (le, division) = (Uuid::now_v7(), Uuid::now_v7());
    let integration = tenant("register", None, None);
    let register = RegisterLegalEntity {
        legal_entity_id: le,
        name: "Clinic".into(),
        edrpou: "12345678".into(),
        legal_entity_type: LegalEntityType::from_name("MSP").unwrap(),
        status: LegalEntityStatus::Active,
    };
    let made = registry.register_legal_entity(&ctx(&integration, "RegisterLegalEntity"), register.clone()).await;
    assert_eq!(made.unwrap().status, 201);
    // delivered twice, the same fact appends nothing and answers 200
    let again = registry.register_legal_entity(&ctx(&integration, "RegisterLegalEntity"), register).await.unwrap();
    assert_eq!(again.status, 200);
    let division_of = |legal_entity_id| RegisterDivision {
        division_id: division,
        legal_entity_id,
        name: "Ward".into(),
        division_type: DivisionType::from_name("CLINIC").unwrap(),
        status: DivisionStatus::Active,
    };
    // a caller acting for another legal entity changes none of this one's data
    let stranger = tenant("other", Some(Uuid::now_v7()), None);
    let refused = registry.register_division(&ctx(&stranger, "RegisterDivision"), division_of(le)).await;
    assert!(matches!(refused, Err(AppError::Forbidden(_))), "{refused:?}");
    let own = tenant("admin", Some(le), None);
    let made = registry.register_division(&ctx(&own, "RegisterDivision"), division_of(le)).await.unwrap();
    assert_eq!(made.status, 201);

    let registration = |external_id: &str| EquipmentRegistration {
        equipment_id: Uuid::now_v7(),
        // whatever the input says, the equipment is the caller's legal entity's
        legal_entity_id: Uuid::nil(),
        division_id: division,
        link_id: Uuid::now_v7(),
        equipment_type: "MRI".into(),
        external_id: external_id.into(),
        name: "Scanner".into(),
        serial_number: None,
        manufacturer: None,
        model_number: None,
        lot_number: None,
        udi: vec![],
        manufacture_date: None,
        expiration_date: None,
        note: None,
        availability_status: AvailabilityStatus::Available,
        registered_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
    };
    let equipment = registry.register_equipment(&ctx(&own, "RegisterEquipment"), registration("E-1")).await.unwrap();
    assert_eq!((equipment.status, equipment.data["legal_entity_id"].as_str()), (201, Some(le.to_string().as_str())));
    let duplicate = registry.register_equipment(&ctx(&own, "RegisterEquipment"), registration("E-1")).await;
    assert!(matches!(duplicate, Err(AppError::Conflict(_))), "{duplicate:?}");
    // equipment commands need a legal entity to act for
    let refused = registry.register_equipment(&ctx(&integration, "RegisterEquipment"), registration("E-2")).await;
    assert!(matches!(refused, Err(AppError::Forbidden(_))), "{refused:?}");
    let id: Uuid = equipment.data["id"].as_str().unwrap().parse().unwrap();
    // eHealth's rule, whatever the transport: available equipment keeps its status
    let refused = registry
        .change_equipment_status(&ctx(&own, "ChangeEquipmentStatus"), id, EquipmentStatus::Inactive, None)
        .await;
    assert!(matches!(refused, Err(AppError::Conflict(_))), "{refused:?}");
    let lost = registry.change_availability(&ctx(&own, "ChangeAvailability"), id, AvailabilityStatus::Lost).await;
    assert_eq!(lost.unwrap().data["availability_status"], "LOST");
    let changed = registry
        .change_equipment_status(&ctx(&own, "ChangeEquipmentStatus"), id, EquipmentStatus::Inactive, None)
        .await
        .unwrap();
    assert_eq!(changed.data["status"], "INACTIVE");
    let log = careledger_tests::whole_log(&store).await;
    let commands: Vec<&str> = log.iter().map(|e| e.metadata.command.as_str()).collect();
    assert_eq!(
        commands,
        ["RegisterLegalEntity", "RegisterDivision", "RegisterEquipment", "ChangeAvailability", "ChangeEquipmentStatus"]
    );
}

both_backends!(claims_through_the_layer, claims_on);
async fn claims_on(kind: Kind) {
    use careledger_app::claims::Claims;
    use careledger_events::claims::{Amount, ClaimData, LineInput, VisitType};
    let db = TestDb::new(kind).await;
    let store = db.store().await;
    let projections = careledger_projections::Projections::new(store.clone(), careledger_projections::all());
    let cache = AggregateCache::new(100);
    let reference = careledger_projections::claims::ReferenceCache::new();
    let claims = Claims {
        store: &store,
        projections: &projections,
        claims: &cache,
        reference: &reference,
        code_per_facility: false,
        offline_node: false,
        query_wait: std::time::Duration::from_secs(1),
    };
    let p = Permissions::default();
    let ctx = |caller: &Caller, command: &'static str| {
        CommandCtx::new(command, caller, &p, &RequestMeta::default(), command, b"").unwrap()
    };
    let data = |code: &str| ClaimData {
        code: code.into(),
        health_facility: "HF-1".into(),
        insuree: "070707070".into(),
        date_from: chrono::NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(),
        date_to: None,
        date_claimed: chrono::NaiveDate::from_ymd_opt(2026, 11, 3).unwrap(),
        icd: "A00".into(),
        icd_secondary: vec![],
        visit_type: VisitType::Other,
        care_type: None,
        admin: None,
        explanation: None,
        guarantee_id: None,
        items: vec![LineInput {
            code: "I-1".into(),
            qty_provided: Amount::units(1),
            price_asked: Amount::units(10),
            explanation: None,
        }],
        services: vec![],
    };
    let clerk = tenant("clerk", None, Some("HF-1"));
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    let created = claims.create(&ctx(&clerk, "CreateClaim"), first, data("C-1")).await.unwrap();
    assert_eq!((created.status, created.data["status"].as_i64()), (201, Some(2)), "{:?}", created.data);
    // a code taken by a live claim is refused
    let taken = claims.create(&ctx(&clerk, "CreateClaim"), second, data("C-1")).await;
    assert!(matches!(taken, Err(AppError::Conflict(_))), "{taken:?}");
    claims.create(&ctx(&clerk, "CreateClaim"), second, data("C-2")).await.unwrap();
    // another facility's clerk acts on none of HF-1's claims: in a bulk command, that claim's answer
    let stranger = tenant("stranger", None, Some("HF-2"));
    let bulk = claims.delete(ctx(&stranger, "DeleteClaims"), vec![first]).await.unwrap();
    assert!(matches!(bulk.claims[0].1, Err(AppError::Forbidden(_))), "{bulk:?}");
    // each claim of a bulk command answers alone, in the order asked
    let unknown = Uuid::now_v7();
    let bulk = claims.delete(ctx(&clerk, "DeleteClaims"), vec![second, unknown, first]).await.unwrap();
    let done: Vec<bool> = bulk.claims.iter().map(|(_, r)| r.is_ok()).collect();
    assert_eq!(done, [true, false, true]);
    assert!(matches!(bulk.claims[1].1, Err(AppError::NotFound(_))), "{bulk:?}");
    assert_eq!(bulk.position, store.head().await.unwrap());
    // a facility-scoped caller cannot start a valuation (it pays every facility's claims)
    let input = careledger_app::claims::ValuationInput {
        product: "P".into(),
        from: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        to: chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        amount: Amount::units(100),
    };
    let refused = claims.valuate(&ctx(&clerk, "ValuateClaims"), input).await;
    assert!(matches!(refused, Err(AppError::Forbidden(_))), "{refused:?}");
    let commands: Vec<String> =
        careledger_tests::whole_log(&store).await.into_iter().map(|e| e.metadata.command).collect();
    assert_eq!(commands, ["CreateClaim", "CreateClaim", "DeleteClaims", "DeleteClaims"]);
}
