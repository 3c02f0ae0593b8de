use std::collections::HashSet;

use careledger_events::codes::{CODES_PER_CHUNK, CodeEvent, CodeFormat, HolderType};
use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::codes::CodeFormatExt;
use crate::{Aggregate, Ctx, Refusal};

fn ctx(seed: u64) -> Ctx {
    Ctx { now: Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap(), seed }
}

fn generate(number: u32, seed: u64) -> (GenerateCodes, Vec<CodeEvent>) {
    let cmd = GenerateCodes {
        batch_id: Uuid::from_u128(seed as u128 + 1),
        holder_type: HolderType::Printer,
        holder_code: "PRN-1".into(),
        number,
        format: CodeFormat::default(),
        avoid: HashSet::new(),
        issued: 0,
    };
    let events = cmd.decide(&CodeBatch::default(), &ctx(seed)).unwrap();
    (cmd, events)
}

fn batch(number: u32, seed: u64) -> CodeBatch {
    CodeBatch::from_events(&generate(number, seed).1)
}

fn codes_of(events: &[CodeEvent]) -> Vec<String> {
    events
        .iter()
        .flat_map(|e| match e {
            CodeEvent::CodesGenerated { codes, .. } | CodeEvent::CodesReserved { codes, .. } => codes.clone(),
            _ => vec![],
        })
        .collect()
}

#[test]
fn generation_chunks_distinct_valid_non_sequential_codes() {
    let (_, events) = generate(25_000, 7);
    assert_eq!(events.len(), 1 + 3);
    let codes = codes_of(&events);
    assert_eq!(codes.len(), 25_000);
    assert_eq!(codes.iter().collect::<HashSet<_>>().len(), 25_000);
    assert!(codes.iter().all(|c| CodeFormat::default().is_valid(c)));
    assert!(matches!(&events[3], CodeEvent::CodesGenerated { chunk: 2, codes, .. } if codes.len() == 5_000));
    let consecutive =
        codes.windows(2).filter(|w| w[1].parse::<u64>().unwrap().abs_diff(w[0].parse::<u64>().unwrap()) < 100).count();
    assert!(consecutive < 10, "codes look sequential: {consecutive} close neighbours");
    assert_eq!(CODES_PER_CHUNK, 10_000);
}

#[test]
fn generation_is_reproducible_from_the_seed_and_differs_across_seeds() {
    assert_eq!(codes_of(&generate(100, 1).1), codes_of(&generate(100, 1).1));
    assert_ne!(codes_of(&generate(100, 1).1), codes_of(&generate(100, 2).1));
}

#[test]
fn generation_avoids_codes_held_elsewhere() {
    let (mut cmd, events) = generate(500, 3);
    let taken: HashSet<String> = codes_of(&events).into_iter().take(100).collect();
    cmd.avoid = taken.clone();
    let again = codes_of(&cmd.decide(&CodeBatch::default(), &ctx(3)).unwrap());
    assert_eq!(again.len(), 500);
    assert!(again.iter().all(|c| !taken.contains(c)));
}

#[test]
fn generation_refuses_bad_input_and_existing_batches() {
    let (cmd, events) = generate(10, 1);
    let existing = CodeBatch::from_events(&events);
    assert_eq!(cmd.decide(&existing, &ctx(1)).unwrap_err().refusal(), Refusal::Conflict);
    let mut bad = cmd.clone();
    bad.number = 0;
    assert_eq!(bad.decide(&CodeBatch::default(), &ctx(1)), Err(CodeError::InvalidNumber));
    let mut bad = cmd.clone();
    bad.holder_code = "".into();
    assert_eq!(bad.decide(&CodeBatch::default(), &ctx(1)), Err(CodeError::InvalidHolderCode));
    let mut small = cmd.clone();
    small.format = CodeFormat { length: 3, modulo: 7, prefix: String::new() };
    small.number = 10; // 90 codes in the space, a tenth is 9
    assert!(matches!(small.decide(&CodeBatch::default(), &ctx(1)), Err(CodeError::CodeSpaceTooSmall { limit: 9, .. })));
}

#[test]
fn reservation_takes_the_oldest_available_codes_across_batches_all_or_nothing() {
    let a = batch(3, 1);
    let b = batch(5, 2);
    let cmd = ReserveCodes {
        reservation_id: Uuid::nil(),
        holder_type: HolderType::Printer,
        holder_code: "PRN-1".into(),
        number: 6,
        for_server: None,
    };
    let plan = cmd.decide(&[&a, &b]).unwrap();
    assert_eq!(plan.len(), 2);
    assert_eq!(codes_of(&plan[0].1), a.oldest_available(3));
    assert_eq!(codes_of(&plan[1].1), b.oldest_available(3));
    let a2 = plan[0].1.iter().fold(a.clone(), |s, e| s.evolve(e));
    assert_eq!(a2.available_count(), 0);

    let too_many = ReserveCodes { number: 9, ..cmd.clone() };
    assert_eq!(too_many.decide(&[&a, &b]), Err(CodeError::NotEnoughCodes { requested: 9, available: 8 }));
    let other_holder = ReserveCodes { holder_code: "PRN-2".into(), ..cmd };
    assert_eq!(other_holder.decide(&[&a]), Err(CodeError::HolderMismatch));
}

#[test]
fn assignment_moves_available_or_reserved_codes_and_is_idempotent_per_insuree() {
    let b = batch(4, 9);
    let codes = b.oldest_available(4);
    let assign =
        |code: &str, insuree: &str| AssignCode { code: code.into(), insuree_id: insuree.into(), json_ext: None };
    let events = assign(&codes[0], "ins-1").decide(&b).unwrap();
    let b = events.iter().fold(b, |s, e| s.evolve(e));
    assert_eq!(b.slot(&codes[0]).unwrap().status, CodeStatus::Assigned);
    assert_eq!(assign(&codes[0], "ins-1").decide(&b), Ok(vec![]));
    assert_eq!(assign(&codes[0], "ins-2").decide(&b), Err(CodeError::AlreadyAssigned));
    assert_eq!(b.available_count(), 3);

    let reserve = ReserveCodes {
        reservation_id: Uuid::nil(),
        holder_type: HolderType::Printer,
        holder_code: "PRN-1".into(),
        number: 1,
        for_server: None,
    };
    let (_, events) = reserve.decide(&[&b]).unwrap().remove(0);
    let b = events.iter().fold(b, |s, e| s.evolve(e));
    assert_eq!(b.slot(&codes[1]).unwrap().status, CodeStatus::Reserved);
    assert_eq!(assign(&codes[1], "ins-3").decide(&b).unwrap().len(), 1);
    assert_eq!(assign("123456781", "ins-3").decide(&b), Err(CodeError::UnknownCode));
    assert_eq!(assign(&codes[2], "").decide(&b), Err(CodeError::InvalidInsuree));
}

#[test]
fn control_number_links_once() {
    let b = batch(2, 4);
    let code = b.oldest_available(1).remove(0);
    let link = |cn: &str| LinkControlNumber { code: code.clone(), control_number: cn.into() };
    let events = link("CN-1").decide(&b).unwrap();
    let b = events.iter().fold(b, |s, e| s.evolve(e));
    assert_eq!(b.slot(&code).unwrap().control_number.as_deref(), Some("CN-1"));
    assert_eq!(link("CN-1").decide(&b), Ok(vec![]));
    assert_eq!(link("CN-2").decide(&b), Err(CodeError::ControlNumberAlreadyLinked));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// However reservations and assignments interleave, no code is ever handed out twice.
    #[test]
    fn no_code_is_handed_out_twice(seed in any::<u64>(), ops in proptest::collection::vec((0usize..4, 1usize..6), 1..40)) {
        let mut b = batch(60, seed);
        let all = b.oldest_available(60);
        let mut handed: HashSet<String> = HashSet::new();
        for (i, (kind, n)) in ops.into_iter().enumerate() {
            let events = if kind < 3 {
                let cmd = ReserveCodes { reservation_id: Uuid::from_u128(i as u128), holder_type: HolderType::Printer, holder_code: "PRN-1".into(), number: n, for_server: None };
                match cmd.decide(&[&b]) { Ok(mut plan) => plan.remove(0).1, Err(_) => continue }
            } else {
                let code = &all[(seed as usize + i * 7) % all.len()];
                AssignCode { code: code.clone(), insuree_id: format!("ins-{i}"), json_ext: None }.decide(&b).unwrap_or_default()
            };
            for e in &events {
                let given = match e {
                    CodeEvent::CodesReserved { codes, .. } => codes.clone(),
                    CodeEvent::CodeAssigned { code, .. } => {
                        // assignment may take a reserved code (to the holder's insuree), never an assigned one
                        prop_assert_ne!(b.slot(code).unwrap().status, CodeStatus::Assigned);
                        vec![]
                    }
                    _ => vec![],
                };
                for c in given { prop_assert!(handed.insert(c.clone()), "{} reserved twice", c); }
                b = b.evolve(e);
            }
        }
    }
}

#[test]
fn a_space_that_cannot_hold_the_request_says_how_many_codes_remain() {
    let format = CodeFormat::default();
    let space = format.space();
    let cmd = |number: u32, issued: u64| GenerateCodes {
        batch_id: Uuid::from_u128(9),
        holder_type: HolderType::Printer,
        holder_code: "PRN-1".into(),
        number,
        format: format.clone(),
        avoid: HashSet::new(),
        issued,
    };
    let refused = cmd(1_000, space - 999).decide(&CodeBatch::default(), &ctx(1));
    assert_eq!(refused.clone().unwrap_err(), CodeError::SpaceExhausted { requested: 1_000, remaining: 999 });
    assert_eq!(refused.unwrap_err().refusal(), Refusal::Conflict);
    assert!(cmd(999, space - 999).decide(&CodeBatch::default(), &ctx(1)).is_ok() || space < 10_000);
    assert!(cmd(1_000, space + 5).decide(&CodeBatch::default(), &ctx(1)).is_err(), "over-counted: none remain");
}

#[test]
fn a_node_receives_the_codes_reserved_for_it_once_and_hands_out_those_alone() {
    // the central server reserves 3 of 6 codes for a node: it does not hand them out itself
    let ctx = Ctx { now: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(), seed: 3 };
    let generate = GenerateCodes {
        batch_id: Uuid::from_u128(1),
        holder_type: HolderType::EnrolmentOfficer,
        holder_code: "E01".into(),
        number: 6,
        format: CodeFormat::default(),
        avoid: Default::default(),
        issued: 0,
    };
    let central = CodeBatch::from_events(&generate.decide(&CodeBatch::default(), &ctx).unwrap());
    let reserve = ReserveCodes {
        reservation_id: Uuid::from_u128(2),
        holder_type: HolderType::EnrolmentOfficer,
        holder_code: "E01".into(),
        number: 3,
        for_server: Some("urn:uuid:node".into()),
    };
    let (_, events) = reserve.decide(&[&central]).unwrap().remove(0);
    let central = events.iter().fold(central, CodeBatch::evolve);
    assert_eq!(central.reserved_count(), 0, "reserved for the node, not to hand out here");
    let CodeEvent::CodesReserved { codes, .. } = &events[0] else { panic!() };

    // the node's copy of the batch holds exactly those, reserved to the holder
    let receive = ReceiveReservation {
        batch_id: Uuid::from_u128(1),
        reservation_id: Uuid::from_u128(2),
        holder_type: HolderType::EnrolmentOfficer,
        holder_code: "E01".into(),
        format: CodeFormat::default(),
        codes: codes.clone(),
    };
    let received = receive.decide(&CodeBatch::default(), &ctx).unwrap();
    let node = CodeBatch::from_events(&received);
    assert_eq!((node.len(), node.reserved_count(), node.available_count()), (3, 3, 0));
    assert_eq!(receive.decide(&node, &ctx).unwrap(), vec![], "received twice: nothing more");
    // a code with another check digit (modulo 7: 0 to 6, so the next digit never checks)
    let mut wrong = receive.clone();
    let mut digits = wrong.codes[0].clone().into_bytes();
    let last = digits.len() - 1;
    digits[last] = b'0' + (digits[last] - b'0' + 1) % 10;
    wrong.codes[0] = String::from_utf8(digits).unwrap();
    assert!(!CodeFormat::default().is_valid(&wrong.codes[0]));
    assert_eq!(wrong.decide(&CodeBatch::default(), &ctx), Err(CodeError::InvalidCode));
    let other = ReceiveReservation { holder_code: "E02".into(), reservation_id: Uuid::from_u128(3), ..receive };
    assert_eq!(other.decide(&node, &ctx), Err(CodeError::HolderMismatch));
}
