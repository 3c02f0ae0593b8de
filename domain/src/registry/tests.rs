//! Every check and transition of the registry, in the order eHealth checks them.

use careledger_events::registry::{
    AvailabilityStatus, DivisionStatus, DivisionType, EquipmentRegistration, EquipmentStatus, LegalEntityStatus,
    LegalEntityType, RegistryEvent, Udi,
};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::{Aggregate, Ctx, Refusal};

const LE: Uuid = Uuid::from_u128(0x1e);
const OTHER_LE: Uuid = Uuid::from_u128(0x2e);
const DIV: Uuid = Uuid::from_u128(0xd1);
const DIV2: Uuid = Uuid::from_u128(0xd2);
const EQ: Uuid = Uuid::from_u128(0xe1);

fn ctx() -> Ctx {
    Ctx { now: Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(), seed: 0 }
}

fn later(minutes: i64) -> Ctx {
    Ctx { now: ctx().now + Duration::minutes(minutes), seed: 0 }
}

fn legal_entity(id: Uuid, legal_entity_type: LegalEntityType, status: LegalEntityStatus) -> LegalEntity {
    let cmd = RegisterLegalEntity {
        legal_entity_id: id,
        name: "Clinic".into(),
        edrpou: "12345678".into(),
        legal_entity_type,
        status,
    };
    LegalEntity::from_events(&cmd.decide(&LegalEntity::default(), &ctx()).unwrap())
}

fn active_le() -> LegalEntity {
    legal_entity(LE, LegalEntityType::PrimaryCare, LegalEntityStatus::Active)
}

fn division(id: Uuid, owner: Uuid, status: DivisionStatus, is_active: bool) -> Division {
    let le = legal_entity(owner, LegalEntityType::Msp, LegalEntityStatus::Active);
    let cmd = RegisterDivision {
        division_id: id,
        legal_entity_id: owner,
        name: "Ward".into(),
        division_type: DivisionType::Clinic,
        status,
    };
    let mut events = cmd.decide(&Division::default(), &le, &ctx()).unwrap();
    if !is_active {
        let d = Division::from_events(&events);
        events.extend(
            ChangeDivisionStatus { status: None, is_active: Some(false), acting_for: None }.decide(&d, &ctx()).unwrap(),
        );
    }
    Division::from_events(&events)
}

fn active_div(id: Uuid) -> Division {
    division(id, LE, DivisionStatus::Active, true)
}

fn registration() -> EquipmentRegistration {
    EquipmentRegistration {
        equipment_id: EQ,
        legal_entity_id: LE,
        division_id: DIV,
        link_id: Uuid::from_u128(0x11),
        equipment_type: "23143534".into(),
        external_id: "123-ASD-#1".into(),
        name: "Ultrasound scanner".into(),
        serial_number: Some("SN-1".into()),
        manufacturer: Some("GlobalMed, Inc".into()),
        model_number: None,
        lot_number: Some("RZ12345678".into()),
        udi: vec![Udi { udi_type: "default".into(), value: "IMEI 49015420323751".into(), assigner_name: None }],
        manufacture_date: NaiveDate::from_ymd_opt(2024, 1, 1),
        expiration_date: NaiveDate::from_ymd_opt(2034, 1, 1),
        note: None,
        availability_status: AvailabilityStatus::Available,
        registered_at: DateTime::<Utc>::UNIX_EPOCH,
    }
}

fn register() -> RegisterEquipment {
    RegisterEquipment { registration: registration() }
}

fn registered() -> Equipment {
    Equipment::from_events(&register().decide(&Equipment::default(), &active_le(), &active_div(DIV), &ctx()).unwrap())
}

fn apply(state: Equipment, events: &[RegistryEvent]) -> Equipment {
    events.iter().fold(state, |s, e| s.evolve(e))
}

fn status(status: EquipmentStatus, reason: Option<&str>) -> ChangeEquipmentStatus {
    ChangeEquipmentStatus { legal_entity_id: LE, status, reason: reason.map(String::from) }
}

fn availability(a: AvailabilityStatus) -> ChangeAvailability {
    ChangeAvailability { legal_entity_id: LE, availability_status: a }
}

fn link(division_id: Uuid, n: u128) -> LinkDivision {
    LinkDivision { legal_entity_id: LE, division_id, link_id: Uuid::from_u128(0x100 + n) }
}

#[test]
fn reference_data_registers_once_and_repeats_are_idempotent() {
    let cmd = RegisterLegalEntity {
        legal_entity_id: LE,
        name: "Clinic".into(),
        edrpou: "12345678".into(),
        legal_entity_type: LegalEntityType::Msp,
        status: LegalEntityStatus::Active,
    };
    let le = LegalEntity::from_events(&cmd.decide(&LegalEntity::default(), &ctx()).unwrap());
    assert_eq!(cmd.decide(&le, &later(1)), Ok(vec![]), "the same fact again decides nothing");
    let other = RegisterLegalEntity { name: "Another".into(), ..cmd.clone() };
    assert_eq!(other.decide(&le, &ctx()), Err(RegistryError::LegalEntityExists));
    assert_eq!(other.decide(&le, &ctx()).unwrap_err().refusal(), Refusal::Conflict);
    let bad = RegisterLegalEntity { edrpou: "1234".into(), ..cmd.clone() };
    assert_eq!(
        bad.decide(&LegalEntity::default(), &ctx()).unwrap_err().refusal(),
        Refusal::Invalid { entry: "$.edrpou" }
    );
    let ten = RegisterLegalEntity { edrpou: "1234567890".into(), ..cmd.clone() };
    assert!(ten.decide(&LegalEntity::default(), &ctx()).is_ok());

    let suspend = ChangeLegalEntityStatus { status: LegalEntityStatus::Suspended };
    let events = suspend.decide(&le, &ctx()).unwrap();
    let le = apply_le(le, &events);
    assert_eq!(le.0.as_ref().unwrap().status, LegalEntityStatus::Suspended);
    assert_eq!(suspend.decide(&le, &ctx()), Ok(vec![]));
    assert_eq!(suspend.decide(&LegalEntity::default(), &ctx()), Err(RegistryError::LegalEntityNotFound));

    let div = RegisterDivision {
        division_id: DIV,
        legal_entity_id: LE,
        name: "Ward".into(),
        division_type: DivisionType::Clinic,
        status: DivisionStatus::Active,
    };
    assert_eq!(
        div.decide(&Division::default(), &LegalEntity::default(), &ctx()),
        Err(RegistryError::UnknownLegalEntityOfDivision)
    );
    assert_eq!(RegistryError::UnknownLegalEntityOfDivision.refusal(), Refusal::Invalid { entry: "$.legal_entity_id" });
    let d = Division::from_events(&div.decide(&Division::default(), &le, &ctx()).unwrap());
    assert_eq!(div.decide(&d, &le, &later(1)), Ok(vec![]));
    let moved = RegisterDivision { legal_entity_id: OTHER_LE, ..div.clone() };
    let other_le = legal_entity(OTHER_LE, LegalEntityType::Msp, LegalEntityStatus::Active);
    assert_eq!(moved.decide(&d, &other_le, &ctx()), Err(RegistryError::DivisionExists));
    let off = ChangeDivisionStatus { status: Some(DivisionStatus::Inactive), is_active: None, acting_for: None };
    let d = d.clone().evolve(&off.decide(&d, &ctx()).unwrap()[0]);
    assert_eq!(d.0.as_ref().map(|f| (f.status, f.is_active)), Some((DivisionStatus::Inactive, true)));
    assert_eq!(off.decide(&d, &ctx()), Ok(vec![]));
    assert_eq!(off.decide(&Division::default(), &ctx()), Err(RegistryError::UnknownDivision));
    assert_eq!(RegistryError::UnknownDivision.refusal(), Refusal::NotFound);
}

fn apply_le(state: LegalEntity, events: &[RegistryEvent]) -> LegalEntity {
    events.iter().fold(state, |s, e| s.evolve(e))
}

#[test]
fn registration_makes_active_equipment_linked_to_its_division() {
    let events = register().decide(&Equipment::default(), &active_le(), &active_div(DIV), &ctx()).unwrap();
    let [RegistryEvent::EquipmentRegistered(r)] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!(r.registered_at, ctx().now, "the time comes from the decision's clock");
    let facts = Equipment::from_events(&events).0.unwrap();
    assert_eq!((facts.status, facts.availability_status), (EquipmentStatus::Active, AvailabilityStatus::Available));
    assert_eq!((facts.division_id, facts.link_id), (DIV, Uuid::from_u128(0x11)));
    // a suspended legal entity still registers equipment
    let suspended = legal_entity(LE, LegalEntityType::Emergency, LegalEntityStatus::Suspended);
    assert!(register().decide(&Equipment::default(), &suspended, &active_div(DIV), &ctx()).is_ok());
    assert_eq!(
        register().decide(&registered(), &active_le(), &active_div(DIV), &ctx()),
        Err(RegistryError::EquipmentExists)
    );
}

#[test]
fn every_registration_refusal_with_its_ehealth_answer() {
    let cases: Vec<(LegalEntity, Division, RegistryError, Refusal, &str)> = vec![
        (
            LegalEntity::default(),
            active_div(DIV),
            RegistryError::LegalEntityNotActive,
            Refusal::Conflict,
            "Legal entity must be ACTIVE or SUSPENDED",
        ),
        (
            legal_entity(LE, LegalEntityType::Msp, LegalEntityStatus::Closed),
            active_div(DIV),
            RegistryError::LegalEntityNotActive,
            Refusal::Conflict,
            "Legal entity must be ACTIVE or SUSPENDED",
        ),
        (
            legal_entity(LE, LegalEntityType::Msp, LegalEntityStatus::Reorganized),
            active_div(DIV),
            RegistryError::LegalEntityNotActive,
            Refusal::Conflict,
            "Legal entity must be ACTIVE or SUSPENDED",
        ),
        // another legal entity's record is not the caller's
        (
            legal_entity(OTHER_LE, LegalEntityType::Msp, LegalEntityStatus::Active),
            active_div(DIV),
            RegistryError::LegalEntityNotActive,
            Refusal::Conflict,
            "Legal entity must be ACTIVE or SUSPENDED",
        ),
        (
            legal_entity(LE, LegalEntityType::Pharmacy, LegalEntityStatus::Active),
            active_div(DIV),
            RegistryError::ActionNotAllowed,
            Refusal::Conflict,
            "Action is not allowed for the legal entity",
        ),
        (
            legal_entity(LE, LegalEntityType::Nhs, LegalEntityStatus::Active),
            active_div(DIV),
            RegistryError::ActionNotAllowed,
            Refusal::Conflict,
            "Action is not allowed for the legal entity",
        ),
        (
            active_le(),
            Division::default(),
            RegistryError::DivisionNotFound,
            Refusal::Invalid { entry: "$.division_id" },
            "Division not found",
        ),
        (
            active_le(),
            active_div(DIV2),
            RegistryError::DivisionNotFound,
            Refusal::Invalid { entry: "$.division_id" },
            "Division not found",
        ),
        (
            active_le(),
            division(DIV, LE, DivisionStatus::Active, false),
            RegistryError::DivisionNotFound,
            Refusal::Invalid { entry: "$.division_id" },
            "Division not found",
        ),
        (
            active_le(),
            division(DIV, OTHER_LE, DivisionStatus::Active, true),
            RegistryError::DivisionNotWithinLegalEntity,
            Refusal::Invalid { entry: "$.division_id" },
            "Division is not within current legal entity",
        ),
        (
            active_le(),
            division(DIV, LE, DivisionStatus::Inactive, true),
            RegistryError::DivisionNotActive,
            Refusal::Invalid { entry: "$.division_id" },
            "Division is not active",
        ),
    ];
    for (le, div, error, refusal, message) in cases {
        let got = register().decide(&Equipment::default(), &le, &div, &ctx()).unwrap_err();
        assert_eq!(got, error);
        assert_eq!(got.refusal(), refusal);
        assert_eq!(got.to_string(), message);
    }
    assert_eq!(RegistryError::DuplicatedEquipment.refusal(), Refusal::Conflict);
    assert_eq!(RegistryError::DuplicatedEquipment.to_string(), "Duplicated equipment");
    for legal_entity_type in EQUIPMENT_LEGAL_ENTITY_TYPES {
        let le = legal_entity(LE, legal_entity_type, LegalEntityStatus::Active);
        assert!(register().decide(&Equipment::default(), &le, &active_div(DIV), &ctx()).is_ok());
    }
}

#[test]
fn registration_fields_are_checked_before_anything_else() {
    let mut bad = register();
    bad.registration.expiration_date = NaiveDate::from_ymd_opt(2023, 1, 1);
    let err = bad.decide(&Equipment::default(), &LegalEntity::default(), &Division::default(), &ctx()).unwrap_err();
    assert_eq!(err.refusal(), Refusal::Invalid { entry: "$.expiration_date" });
    let mut bad = register();
    bad.registration.udi[0].value = " padded ".into();
    assert_eq!(
        bad.decide(&Equipment::default(), &active_le(), &active_div(DIV), &ctx()).unwrap_err().refusal(),
        Refusal::Invalid { entry: "$.udi" }
    );
    for (entry, change) in [
        (
            "$.type",
            (|r: &mut EquipmentRegistration| r.equipment_type = String::new()) as fn(&mut EquipmentRegistration),
        ),
        ("$.external_id", |r| r.external_id = "x".repeat(101)),
        ("$.name", |r| r.name = String::new()),
        ("$.serial_number", |r| r.serial_number = Some(String::new())),
        ("$.note", |r| r.note = Some("n".repeat(2001))),
    ] {
        let mut bad = register();
        change(&mut bad.registration);
        let err = bad.decide(&Equipment::default(), &active_le(), &active_div(DIV), &ctx()).unwrap_err();
        assert_eq!(err.refusal(), Refusal::Invalid { entry }, "{entry}");
    }
}

#[test]
fn linking_closes_the_old_link_and_opens_one_new() {
    let eq = registered();
    let events = link(DIV2, 1).decide(&eq, &active_le(), &active_div(DIV2), &later(5)).unwrap();
    assert_eq!(
        events,
        vec![RegistryEvent::EquipmentDivisionLinked {
            equipment_id: EQ,
            link_id: Uuid::from_u128(0x101),
            division_id: DIV2,
            previous_link_id: Uuid::from_u128(0x11),
            previous_division_id: DIV,
            linked_at: later(5).now,
        }]
    );
    let eq = apply(eq, &events);
    let facts = eq.0.as_ref().unwrap();
    assert_eq!((facts.division_id, facts.link_id, facts.updated_at), (DIV2, Uuid::from_u128(0x101), later(5).now));
    assert_eq!(link(DIV2, 2).decide(&eq, &active_le(), &active_div(DIV2), &ctx()), Err(RegistryError::AlreadyLinked));
    // back to the first division is a new link
    assert!(link(DIV, 3).decide(&eq, &active_le(), &active_div(DIV), &ctx()).is_ok());
}

#[test]
fn linking_checks_legal_entity_then_equipment_then_division() {
    let eq = registered();
    let closed = legal_entity(LE, LegalEntityType::Msp, LegalEntityStatus::Closed);
    assert_eq!(
        link(DIV2, 1).decide(&Equipment::default(), &closed, &Division::default(), &ctx()),
        Err(RegistryError::LegalEntityNotActive)
    );
    let pharmacy = legal_entity(LE, LegalEntityType::Pharmacy, LegalEntityStatus::Active);
    assert_eq!(link(DIV2, 1).decide(&eq, &pharmacy, &active_div(DIV2), &ctx()), Err(RegistryError::ActionNotAllowed));
    assert_eq!(
        link(DIV2, 1).decide(&Equipment::default(), &active_le(), &Division::default(), &ctx()),
        Err(RegistryError::EquipmentNotFound)
    );
    let foreign = LinkDivision { legal_entity_id: OTHER_LE, ..link(DIV2, 1) };
    let other_le = legal_entity(OTHER_LE, LegalEntityType::Msp, LegalEntityStatus::Active);
    let err = foreign.decide(&eq, &other_le, &Division::default(), &ctx()).unwrap_err();
    assert_eq!((err.clone(), err.refusal()), (RegistryError::ForeignEquipment, Refusal::Forbidden));
    for (div, error) in [
        (Division::default(), RegistryError::DivisionNotFound),
        (division(DIV2, LE, DivisionStatus::Active, false), RegistryError::DivisionNotFound),
        (division(DIV2, OTHER_LE, DivisionStatus::Active, true), RegistryError::DivisionNotWithinLegalEntity),
        (division(DIV2, LE, DivisionStatus::Inactive, true), RegistryError::DivisionNotActive),
    ] {
        assert_eq!(link(DIV2, 1).decide(&eq, &active_le(), &div, &ctx()), Err(error));
    }
    let gone = apply(eq, &status(EquipmentStatus::EnteredInError, Some("typo")).decide(&registered(), &ctx()).unwrap());
    assert_eq!(link(DIV2, 1).decide(&gone, &active_le(), &active_div(DIV2), &ctx()), Err(RegistryError::FinalStatus));
}

#[test]
fn status_follows_the_newer_ehealth_model() {
    let eq = registered();
    // INACTIVE needs the equipment to be out of use
    let err = status(EquipmentStatus::Inactive, None).decide(&eq, &ctx()).unwrap_err();
    assert_eq!(err.to_string(), "It is prohibited to change status for equipment with availability status = AVAILABLE");
    assert_eq!(err.refusal(), Refusal::Conflict);
    let eq = apply(eq, &availability(AvailabilityStatus::Damaged).decide(&registered(), &ctx()).unwrap());
    let events = status(EquipmentStatus::Inactive, None).decide(&eq, &later(1)).unwrap();
    let eq = apply(eq, &events);
    assert_eq!(eq.0.as_ref().unwrap().status, EquipmentStatus::Inactive);
    let final_status = "Invalid transition. Equipment is in final status";
    assert_eq!(status(EquipmentStatus::Inactive, None).decide(&eq, &ctx()).unwrap_err().to_string(), final_status);
    assert_eq!(status(EquipmentStatus::Active, None).decide(&eq, &ctx()), Err(RegistryError::FinalStatus));
    // ENTERED_IN_ERROR needs a reason, then nothing moves any more
    assert_eq!(
        status(EquipmentStatus::EnteredInError, None).decide(&eq, &ctx()).unwrap_err().refusal(),
        Refusal::Invalid { entry: "$.reason" }
    );
    let eq =
        apply(eq.clone(), &status(EquipmentStatus::EnteredInError, Some("wrong device")).decide(&eq, &ctx()).unwrap());
    let facts = eq.0.as_ref().unwrap();
    assert_eq!((facts.status, facts.status_reason.as_deref()), (EquipmentStatus::EnteredInError, Some("wrong device")));
    for s in EquipmentStatus::ALL {
        assert_eq!(status(*s, Some("again")).decide(&eq, &ctx()), Err(RegistryError::FinalStatus));
    }
    assert_eq!(availability(AvailabilityStatus::Lost).decide(&eq, &ctx()), Err(RegistryError::FinalStatus));
    // ACTIVE straight to ENTERED_IN_ERROR
    assert!(status(EquipmentStatus::EnteredInError, Some("dup")).decide(&registered(), &ctx()).is_ok());
    // 404 before 403 before the transition
    assert_eq!(
        status(EquipmentStatus::Inactive, None).decide(&Equipment::default(), &ctx()),
        Err(RegistryError::EquipmentNotFound)
    );
    let other =
        ChangeEquipmentStatus { legal_entity_id: OTHER_LE, ..status(EquipmentStatus::EnteredInError, Some("x")) };
    assert_eq!(other.decide(&eq, &ctx()), Err(RegistryError::ForeignEquipment));
}

#[test]
fn availability_moves_but_not_out_of_destroyed_nor_back_to_available_while_inactive() {
    let eq = registered();
    assert_eq!(
        availability(AvailabilityStatus::Available).decide(&eq, &ctx()),
        Err(RegistryError::SameAvailability(AvailabilityStatus::Available))
    );
    let eq = apply(eq.clone(), &availability(AvailabilityStatus::Lost).decide(&eq, &later(1)).unwrap());
    assert_eq!(eq.0.as_ref().unwrap().updated_at, later(1).now);
    let eq = apply(eq.clone(), &availability(AvailabilityStatus::Available).decide(&eq, &ctx()).unwrap());
    let eq = apply(eq.clone(), &availability(AvailabilityStatus::Damaged).decide(&eq, &ctx()).unwrap());
    let inactive = apply(eq.clone(), &status(EquipmentStatus::Inactive, None).decide(&eq, &ctx()).unwrap());
    assert_eq!(
        availability(AvailabilityStatus::Available).decide(&inactive, &ctx()),
        Err(RegistryError::InactiveCannotBeAvailable)
    );
    let destroyed =
        apply(inactive.clone(), &availability(AvailabilityStatus::Destroyed).decide(&inactive, &ctx()).unwrap());
    for a in [AvailabilityStatus::Available, AvailabilityStatus::Damaged, AvailabilityStatus::Lost] {
        assert_eq!(availability(a).decide(&destroyed, &ctx()), Err(RegistryError::Destroyed));
    }
    let other = ChangeAvailability { legal_entity_id: OTHER_LE, ..availability(AvailabilityStatus::Lost) };
    assert_eq!(other.decide(&eq, &ctx()), Err(RegistryError::ForeignEquipment));
}

/// One way a registration can be wrong; the variants are listed in eHealth's order of checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Fields,
    LegalEntityStatus,
    LegalEntityType,
    DivisionMissing,
    DivisionForeign,
    DivisionInactive,
}

proptest! {
    /// With any set of faults, the answer is the first fault's in eHealth's order.
    #[test]
    fn the_first_failing_check_answers(faults in proptest::collection::btree_set(0usize..6, 0..6)) {
        let faults: Vec<Fault> = faults.into_iter().map(|i| [Fault::Fields, Fault::LegalEntityStatus, Fault::LegalEntityType, Fault::DivisionMissing, Fault::DivisionForeign, Fault::DivisionInactive][i]).collect();
        let has = |f| faults.contains(&f);
        let mut cmd = register();
        if has(Fault::Fields) { cmd.registration.name = String::new(); }
        let le_status = if has(Fault::LegalEntityStatus) { LegalEntityStatus::Closed } else { LegalEntityStatus::Active };
        let le_type = if has(Fault::LegalEntityType) { LegalEntityType::Pharmacy } else { LegalEntityType::Outpatient };
        let owner = if has(Fault::DivisionForeign) { OTHER_LE } else { LE };
        let div_status = if has(Fault::DivisionInactive) { DivisionStatus::Inactive } else { DivisionStatus::Active };
        let div = if has(Fault::DivisionMissing) { Division::default() } else { division(DIV, owner, div_status, true) };
        let got = cmd.decide(&Equipment::default(), &legal_entity(LE, le_type, le_status), &div, &ctx());
        let want = faults.iter().min().map(|f| match f {
            Fault::Fields => RegistryError::Invalid { entry: "$.name", reason: "expected 1 to 255 characters" },
            Fault::LegalEntityStatus => RegistryError::LegalEntityNotActive,
            Fault::LegalEntityType => RegistryError::ActionNotAllowed,
            Fault::DivisionMissing => RegistryError::DivisionNotFound,
            Fault::DivisionForeign => RegistryError::DivisionNotWithinLegalEntity,
            Fault::DivisionInactive => RegistryError::DivisionNotActive,
        });
        match want {
            None => prop_assert!(got.is_ok()),
            Some(e) => prop_assert_eq!(got, Err(e)),
        }
    }

    /// Whatever commands follow a registration: one ACTIVE link at a time (each link event closes
    /// the link the equipment had), ENTERED_IN_ERROR is never left, INACTIVE equipment is never
    /// AVAILABLE, DESTROYED is never left.
    #[test]
    fn equipment_invariants_hold_under_any_command_sequence(ops in proptest::collection::vec((0u8..4, 0u8..4), 1..40)) {
        let divisions = [active_div(DIV), active_div(DIV2), active_div(Uuid::from_u128(0xd3))];
        let mut eq = registered();
        let mut open_link = Uuid::from_u128(0x11);
        let mut was_destroyed = false;
        let mut was_in_error = false;
        for (i, (kind, arg)) in ops.into_iter().enumerate() {
            let before = eq.0.clone().unwrap();
            let events = match kind {
                0 => {
                    let d = &divisions[arg as usize % 3];
                    let id = d.0.as_ref().unwrap().id;
                    link(id, i as u128).decide(&eq, &active_le(), d, &ctx())
                }
                1 => status(EquipmentStatus::ALL[arg as usize % 3], Some("r")).decide(&eq, &ctx()),
                _ => availability(AvailabilityStatus::ALL[arg as usize % 4]).decide(&eq, &ctx()),
            };
            let Ok(events) = events else { continue };
            for e in &events {
                if let RegistryEvent::EquipmentDivisionLinked { previous_link_id, link_id, .. } = e {
                    prop_assert_eq!(*previous_link_id, open_link, "the closed link is the one that was open");
                    prop_assert_ne!(*link_id, open_link);
                    open_link = *link_id;
                }
            }
            eq = apply(eq, &events);
            let after = eq.0.clone().unwrap();
            prop_assert_eq!(after.link_id, open_link);
            if was_in_error { prop_assert_eq!(&after, &before, "nothing changes after ENTERED_IN_ERROR"); }
            if was_destroyed { prop_assert_eq!(after.availability_status, AvailabilityStatus::Destroyed); }
            if after.status == EquipmentStatus::Inactive {
                prop_assert_ne!(after.availability_status, AvailabilityStatus::Available);
            }
            was_in_error |= after.status == EquipmentStatus::EnteredInError;
            was_destroyed |= after.availability_status == AvailabilityStatus::Destroyed;
        }
    }
}
