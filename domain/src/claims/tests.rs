//! Every transition of a claim, allowed and refused, and every rejection reason of a submission.

use std::collections::HashMap;

use careledger_events::claims::{
    Amount, CareType, ClaimData, ClaimEvent, ClaimStatus, Coverage, Feedback, Gender, HealthFacility, Insuree,
    LineInput, LineKind, LineReview, LineStatus, MedicalEntry, Policy, PriceListEntry, PriceOrigin, Product,
    ServiceCategory, StepStatus, VisitType,
};
use chrono::{NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::{Aggregate, Ctx, Refusal};

const CLAIM: Uuid = Uuid::from_u128(0xc1);

fn ctx() -> Ctx {
    Ctx { now: Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(), seed: 0 }
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn today() -> NaiveDate {
    day(2026, 3, 2)
}

fn line(code: &str, qty: i64, price: i64) -> LineInput {
    LineInput {
        code: code.into(),
        qty_provided: Amount::units(qty),
        price_asked: Amount::units(price),
        explanation: None,
    }
}

fn data() -> ClaimData {
    ClaimData {
        code: "C-1".into(),
        health_facility: "HF1".into(),
        insuree: "100000001".into(),
        date_from: day(2026, 2, 20),
        date_to: None,
        date_claimed: day(2026, 2, 21),
        icd: "A00".into(),
        icd_secondary: vec![],
        visit_type: VisitType::Other,
        care_type: None,
        admin: None,
        explanation: None,
        guarantee_id: None,
        items: vec![line("I1", 2, 10)],
        services: vec![line("S1", 1, 50)],
    }
}

fn created(data: ClaimData) -> Claim {
    let events = CreateClaim { claim_id: CLAIM, data, facility: None }.decide(&Claim::default(), &ctx()).unwrap();
    Claim::from_events(&events)
}

fn apply(claim: Claim, events: Result<Vec<ClaimEvent>, ClaimError>) -> Claim {
    events.unwrap().iter().fold(claim, |c, e| c.evolve(e))
}

fn entry(kind: LineKind, code: &str, price: i64) -> MedicalEntry {
    MedicalEntry {
        kind,
        code: code.into(),
        name: code.into(),
        price: Amount::units(price),
        care_type: CareType::Both,
        frequency_days: None,
        maximum_amount: None,
        category: (kind == LineKind::Service).then_some(ServiceCategory::Consultation),
    }
}

fn coverage(kind: LineKind, code: &str, origin: PriceOrigin) -> Coverage {
    Coverage {
        kind,
        code: code.into(),
        limit_adult: None,
        limit_child: None,
        waiting_period_adult: 0,
        waiting_period_child: 0,
        price_origin: origin,
    }
}

/// The register, price list, insuree and policy under which `data()` passes entirely.
fn facts() -> SubmitFacts {
    let mut register = HashMap::new();
    for (kind, code, price) in [(LineKind::Item, "I1", 8), (LineKind::Service, "S1", 40), (LineKind::Service, "S2", 5)]
    {
        register.insert((kind, code.to_string()), entry(kind, code, price));
    }
    let listed = |kind, code: &str, price: Option<i64>| PriceListEntry {
        kind,
        code: code.into(),
        price: price.map(Amount::units),
        valid_from: day(2025, 1, 1),
        valid_to: None,
    };
    let insuree_id = Uuid::from_u128(0x1);
    SubmitFacts {
        facility: Some(HealthFacility { code: "HF1".into(), name: "Clinic".into(), care_type: CareType::Both }),
        register,
        price_list: vec![
            listed(LineKind::Item, "I1", None),
            listed(LineKind::Service, "S1", Some(45)),
            listed(LineKind::Service, "S2", None),
        ],
        insuree: Some(Insuree {
            insuree_id,
            chfid: "100000001".into(),
            birth_date: day(1980, 5, 5),
            gender: Gender::Female,
        }),
        policies: vec![(
            Policy {
                policy_id: Uuid::from_u128(0x9),
                insuree_id,
                product_code: "P1".into(),
                effective_date: day(2025, 6, 1),
                expiry_date: day(2026, 5, 31),
            },
            Product {
                code: "P1".into(),
                name: "Basic".into(),
                coverage: vec![
                    coverage(LineKind::Item, "I1", PriceOrigin::PriceList),
                    coverage(LineKind::Service, "S1", PriceOrigin::PriceList),
                    coverage(LineKind::Service, "S2", PriceOrigin::Relative),
                ],
            },
        )],
        history: vec![],
    }
}

fn submit(claim: &Claim, facts: &SubmitFacts) -> Result<Vec<ClaimEvent>, ClaimError> {
    SubmitClaim { facility: None, today: today() }.decide(claim, facts, &ctx())
}

/// (status, claim reason, each line's reason)
fn outcome(claim: &Claim, facts: &SubmitFacts) -> (ClaimStatus, Option<i32>, Vec<i32>) {
    let c = apply(claim.clone(), submit(claim, facts));
    let f = c.0.unwrap();
    (f.status, f.rejection_reason, f.lines.iter().map(|l| l.rejection_reason).collect())
}

fn checked() -> Claim {
    let c = created(data());
    let events = submit(&c, &facts());
    apply(c, events)
}

fn facts_of(c: &Claim) -> &ClaimFacts {
    c.0.as_ref().unwrap()
}

#[test]
fn create_computes_claimed_and_refuses_bad_lines() {
    let c = created(data());
    assert_eq!(facts_of(&c).claimed, Amount::units(70));
    assert_eq!(facts_of(&c).status, ClaimStatus::Entered);
    let mut d = data();
    d.services[0].qty_provided = Amount::units(2);
    let e = CreateClaim { claim_id: CLAIM, data: d.clone(), facility: None }.decide(&Claim::default(), &ctx());
    assert_eq!(e.unwrap_err().entry(), Some("$.services[0].explanation"));
    d.services[0].explanation = Some("two sessions".into());
    assert!(CreateClaim { claim_id: CLAIM, data: d, facility: None }.decide(&Claim::default(), &ctx()).is_ok());
    let mut d = data();
    d.items[0].qty_provided = Amount::ZERO;
    let e = CreateClaim { claim_id: CLAIM, data: d, facility: None }.decide(&Claim::default(), &ctx());
    assert_eq!(e.unwrap_err().entry(), Some("$.items[0].qty_provided"));
    // the input limits hold whatever transport brought the claim (a sync bundle has no Fields)
    let mut d = data();
    d.items = vec![d.items[0].clone(); super::MAX_LINES + 1];
    let e = CreateClaim { claim_id: CLAIM, data: d, facility: None }.decide(&Claim::default(), &ctx());
    assert_eq!(e.unwrap_err().entry(), Some("$.items"));
    let e =
        CreateClaim { claim_id: CLAIM, data: data(), facility: Some("HF2".into()) }.decide(&Claim::default(), &ctx());
    assert_eq!(e.unwrap_err().refusal(), Refusal::Forbidden);
    assert_eq!(
        CreateClaim { claim_id: CLAIM, data: data(), facility: None }.decide(&c, &ctx()).unwrap_err(),
        ClaimError::Exists
    );
}

#[test]
fn update_and_delete_only_while_entered() {
    let c = created(data());
    let mut d = data();
    d.items[0].qty_provided = Amount::units(3);
    let updated = apply(c.clone(), UpdateClaim { data: d.clone(), facility: None }.decide(&c, &ctx()));
    assert_eq!(facts_of(&updated).claimed, Amount::units(80));
    assert_eq!(UpdateClaim { data: d.clone(), facility: None }.decide(&updated, &ctx()).unwrap(), vec![]);
    let e = UpdateClaim { data: d.clone(), facility: Some("HF2".into()) }.decide(&c, &ctx());
    assert_eq!(e.unwrap_err(), ClaimError::OtherFacility);
    let deleted = apply(c.clone(), DeleteClaim { facility: None }.decide(&c, &ctx()));
    assert!(!facts_of(&deleted).is_live());
    assert_eq!(DeleteClaim { facility: None }.decide(&deleted, &ctx()).unwrap_err(), ClaimError::NotFound);
    assert_eq!(
        UpdateClaim { data: d.clone(), facility: None }.decide(&deleted, &ctx()).unwrap_err(),
        ClaimError::NotFound
    );
    let ch = checked();
    assert!(matches!(
        UpdateClaim { data: d, facility: None }.decide(&ch, &ctx()),
        Err(ClaimError::WrongStatus(ClaimStatus::Checked, "ENTERED"))
    ));
    assert!(matches!(DeleteClaim { facility: None }.decide(&ch, &ctx()), Err(ClaimError::WrongStatus(..))));
    assert_eq!(DeleteClaim { facility: None }.decide(&Claim::default(), &ctx()).unwrap_err(), ClaimError::NotFound);
}

#[test]
fn a_submission_that_passes_checks_the_claim() {
    let c = checked();
    let f = facts_of(&c);
    assert_eq!(f.status, ClaimStatus::Checked);
    assert!(f.lines.iter().all(|l| l.status == Some(LineStatus::Passed)));
    // item at the register price 8 (the list names none), service at the list's 45
    assert_eq!(f.lines[0].price_adjusted, Some(Amount::units(8)));
    assert_eq!(f.lines[1].price_adjusted, Some(Amount::units(45)));
    assert_eq!(f.approved, Some(Amount::units(2 * 8 + 45)));
    assert_eq!(f.category, Some(ServiceCategory::Consultation));
    assert!(matches!(submit(&c, &facts()), Err(ClaimError::WrongStatus(ClaimStatus::Checked, _))));
    let mut nothing = data();
    nothing.items[0].price_asked = Amount::ZERO;
    nothing.services[0].price_asked = Amount::ZERO;
    assert_eq!(submit(&created(nothing), &facts()).unwrap_err(), ClaimError::NothingClaimed);
}

#[test]
fn claim_level_reasons_reject_every_line() {
    let c = created(data());
    let mut future = data();
    future.date_from = day(2026, 3, 3);
    future.date_claimed = day(2026, 3, 3);
    assert_eq!(outcome(&created(future), &facts()), (ClaimStatus::Rejected, Some(9), vec![9, 9]));
    let mut backwards = data();
    backwards.date_to = Some(day(2026, 2, 19));
    assert_eq!(outcome(&created(backwards), &facts()).1, Some(9));
    let mut late_claim = data();
    late_claim.date_claimed = day(2026, 2, 19);
    assert_eq!(outcome(&created(late_claim), &facts()).1, Some(9));
    let mut f = facts();
    f.insuree = None;
    assert_eq!(outcome(&c, &f), (ClaimStatus::Rejected, Some(7), vec![7, 7]));
    let mut f = facts();
    f.policies[0].0.expiry_date = day(2026, 2, 1);
    assert_eq!(outcome(&c, &f).1, Some(7));
}

#[test]
fn line_reasons_in_order() {
    let c = created(data());
    // 1: not in the register
    let mut f = facts();
    f.register.remove(&(LineKind::Item, "I1".into()));
    assert_eq!(outcome(&c, &f), (ClaimStatus::Checked, None, vec![1, 0]));
    // 2: not in the price list at the target date
    let mut f = facts();
    f.price_list[0].valid_to = Some(day(2026, 1, 31));
    assert_eq!(outcome(&c, &f).2, vec![2, 0]);
    // 10: care type
    let mut f = facts();
    f.register.get_mut(&(LineKind::Item, "I1".into())).unwrap().care_type = CareType::InPatient;
    assert_eq!(outcome(&c, &f).2, vec![10, 0]);
    // 5: frequency
    let mut f = facts();
    f.register.get_mut(&(LineKind::Service, "S1".into())).unwrap().frequency_days = Some(30);
    f.history.push(PastLine {
        kind: LineKind::Service,
        code: "S1".into(),
        date: day(2026, 2, 1),
        quantity: Amount::units(1),
    });
    assert_eq!(outcome(&c, &f).2, vec![0, 5]);
    f.history[0].date = day(2026, 1, 20); // 31 days before
    assert_eq!(outcome(&c, &f).2, vec![0, 0]);
    // 3: not covered
    let mut f = facts();
    f.policies[0].1.coverage.remove(0);
    assert_eq!(outcome(&c, &f).2, vec![3, 0]);
    // 17: waiting period
    let mut f = facts();
    f.policies[0].1.coverage[0].waiting_period_adult = 12;
    assert_eq!(outcome(&c, &f).2, vec![17, 0]);
    f.policies[0].1.coverage[0].waiting_period_child = 0;
    assert_eq!(outcome(&c, &f).2, vec![17, 0], "an adult waits the adult period");
    // every line rejected: REJECTED with reason 1
    let mut f = facts();
    f.register.clear();
    assert_eq!(outcome(&c, &f), (ClaimStatus::Rejected, Some(1), vec![1, 1]));
}

#[test]
fn quantity_limits_trim_or_reject() {
    let c = created(data());
    let mut f = facts();
    f.policies[0].1.coverage[0].limit_adult = Some(Amount::units(5));
    f.history.push(PastLine {
        kind: LineKind::Item,
        code: "I1".into(),
        date: day(2025, 12, 1),
        quantity: Amount::units(4),
    });
    let after = apply(c.clone(), submit(&c, &f));
    let l = &facts_of(&after).lines[0];
    assert_eq!((l.status, l.qty_approved), (Some(LineStatus::Passed), Some(Amount::units(1))));
    assert_eq!(facts_of(&after).approved, Some(Amount::units(8 + 45)));
    f.history[0].quantity = Amount::units(5);
    assert_eq!(outcome(&c, &f).2, vec![16, 0]);
    // quantity given under an earlier policy does not count
    f.history[0].date = day(2025, 5, 1);
    assert_eq!(outcome(&c, &f).2, vec![0, 0]);
    // children have their own limit
    let mut f = facts();
    f.insuree.as_mut().unwrap().birth_date = day(2015, 1, 1);
    f.policies[0].1.coverage[0].limit_child = Some(Amount::ZERO);
    assert_eq!(outcome(&c, &f).2, vec![16, 0]);
    // the register's maximum trims a line
    let mut f = facts();
    f.register.get_mut(&(LineKind::Item, "I1".into())).unwrap().maximum_amount = Some(Amount::units(1));
    let after = apply(c.clone(), submit(&c, &f));
    assert_eq!(facts_of(&after).lines[0].qty_approved, Some(Amount::units(1)));
}

#[test]
fn categories_follow_services() {
    let mut f = facts();
    f.register.get_mut(&(LineKind::Service, "S1".into())).unwrap().category = Some(ServiceCategory::Surgery);
    let c = created(data());
    assert_eq!(facts_of(&apply(c.clone(), submit(&c, &f))).category, Some(ServiceCategory::Surgery));
    let mut d = data();
    d.services.clear();
    let c = created(d.clone());
    assert_eq!(facts_of(&apply(c.clone(), submit(&c, &f))).category, Some(ServiceCategory::Visit));
    d.date_to = Some(day(2026, 2, 21));
    let c = created(d);
    assert_eq!(facts_of(&apply(c.clone(), submit(&c, &f))).category, Some(ServiceCategory::Hospitalization));
}

fn step(claim: &Claim, step: Step, action: StepAction) -> Result<Vec<ClaimEvent>, ClaimError> {
    StepChange { step, action, facility: None }.decide(claim, &ctx())
}

#[test]
fn feedback_and_review_transitions() {
    use StepAction::*;
    for s in [Step::Feedback, Step::Review] {
        let status = |c: &Claim| match s {
            Step::Feedback => facts_of(c).feedback_status,
            Step::Review => facts_of(c).review_status,
        };
        let c = checked();
        // from IDLE: select and skip, not bypass
        assert!(matches!(step(&c, s, Bypass), Err(ClaimError::WrongStepStatus { .. })));
        let skipped = apply(c.clone(), step(&c, s, Skip));
        assert_eq!(status(&skipped), StepStatus::NotSelected);
        assert!(step(&skipped, s, Skip).is_err());
        assert!(step(&skipped, s, Bypass).is_err());
        let selected = apply(skipped.clone(), step(&skipped, s, Select));
        assert_eq!(status(&selected), StepStatus::Selected);
        assert!(step(&selected, s, Select).is_err());
        let bypassed = apply(selected.clone(), step(&selected, s, Bypass));
        assert_eq!(status(&bypassed), StepStatus::Bypassed);
        for a in [Select, Skip, Bypass] {
            assert!(step(&bypassed, s, a).is_err(), "nothing follows BYPASSED");
        }
        assert_eq!(status(&apply(selected.clone(), step(&selected, s, Skip))), StepStatus::NotSelected);
        // only CHECKED claims
        let entered = created(data());
        assert!(matches!(step(&entered, s, Select), Err(ClaimError::WrongStatus(ClaimStatus::Entered, "CHECKED"))));
    }
}

fn feedback() -> Feedback {
    Feedback {
        care_rendered: true,
        payment_asked: false,
        drug_prescribed: true,
        drug_received: true,
        assessment: 4,
        officer: None,
        feedback_date: today(),
    }
}

#[test]
fn feedback_is_delivered_only_when_selected() {
    let c = checked();
    let deliver = |c: &Claim| DeliverFeedback { feedback: feedback(), facility: None }.decide(c, &ctx());
    assert!(matches!(deliver(&c), Err(ClaimError::WrongStepStatus { .. })));
    let selected = apply(c.clone(), step(&c, Step::Feedback, StepAction::Select));
    let delivered = apply(selected.clone(), deliver(&selected));
    assert_eq!(facts_of(&delivered).feedback_status, StepStatus::Delivered);
    assert_eq!(facts_of(&delivered).feedback, Some(feedback()));
    assert!(deliver(&delivered).is_err());
    assert!(step(&delivered, Step::Feedback, StepAction::Bypass).is_err());
}

#[test]
fn reviews_approve_adjust_and_reject() {
    let c = checked();
    let review =
        |c: &Claim, lines: Vec<LineReview>, deliver| SaveReview { lines, deliver, facility: None }.decide(c, &ctx());
    let r = |kind, index, qty: Option<i64>, price: Option<i64>, rejected| LineReview {
        kind,
        index,
        qty_approved: qty.map(Amount::units),
        price_approved: price.map(Amount::units),
        justification: Some("checked".into()),
        rejected,
    };
    assert!(matches!(review(&c, vec![], false), Err(ClaimError::WrongStepStatus { .. })));
    let selected = apply(c.clone(), step(&c, Step::Review, StepAction::Select));
    let bad = review(&selected, vec![r(LineKind::Item, 5, None, None, false)], false);
    assert_eq!(bad.unwrap_err().entry(), Some("$.lines[0].index"));
    let saved = apply(selected.clone(), review(&selected, vec![r(LineKind::Item, 0, Some(1), Some(7), false)], false));
    assert_eq!(facts_of(&saved).approved, Some(Amount::units(7 + 45)));
    assert_eq!(facts_of(&saved).review_status, StepStatus::Selected);
    let delivered = apply(saved.clone(), review(&saved, vec![r(LineKind::Service, 0, None, None, true)], true));
    let f = facts_of(&delivered);
    assert_eq!(
        (f.status, f.review_status, f.approved),
        (ClaimStatus::Checked, StepStatus::Delivered, Some(Amount::units(7)))
    );
    assert_eq!(f.lines[1].rejection_reason, reason::REVIEW);
    let all = vec![r(LineKind::Item, 0, None, None, true), r(LineKind::Service, 0, None, None, true)];
    let rejected = apply(selected.clone(), review(&selected, all, true));
    assert_eq!((facts_of(&rejected).status, facts_of(&rejected).rejection_reason), (ClaimStatus::Rejected, Some(-1)));
}

#[test]
fn processing_values_fixed_prices_and_bypasses_pending_steps() {
    let c = checked();
    let c = apply(c.clone(), step(&c, Step::Feedback, StepAction::Select));
    let processed = apply(c.clone(), ProcessClaim { facility: None }.decide(&c, &ctx()));
    let f = facts_of(&processed);
    assert_eq!(f.status, ClaimStatus::Valuated);
    assert_eq!((f.valuated, f.remunerated), (Some(Amount::units(61)), Some(Amount::units(61))));
    assert_eq!(f.feedback_status, StepStatus::Bypassed);
    assert_eq!(f.review_status, StepStatus::Idle);
    assert!(ProcessClaim { facility: None }.decide(&processed, &ctx()).is_err());
    assert!(ProcessClaim { facility: None }.decide(&created(data()), &ctx()).is_err());
}

#[test]
fn relative_lines_wait_for_the_batch_run() {
    let mut d = data();
    d.services.push(line("S2", 1, 6));
    let c = created(d);
    let c = apply(c.clone(), submit(&c, &facts()));
    let processed = apply(c.clone(), ProcessClaim { facility: None }.decide(&c, &ctx()));
    let f = facts_of(&processed);
    assert_eq!((f.status, f.valuated, f.remunerated), (ClaimStatus::Processed, None, None));
    assert_eq!(relative_value(f, "P1"), Amount::units(5));
    let valuate = |amount: i64| ValuateClaim {
        batch_run_id: Uuid::from_u128(7),
        product: "P1".into(),
        amount: Amount::units(amount),
        relative_total: Amount::units(10),
    };
    assert_eq!(valuate(4).decide(&c, &ctx()).unwrap_err(), ClaimError::WrongStatus(ClaimStatus::Checked, "PROCESSED"));
    let valued = apply(processed.clone(), valuate(4).decide(&processed, &ctx()));
    let f = facts_of(&valued);
    assert_eq!(f.status, ClaimStatus::Valuated);
    assert_eq!(f.lines[2].price_valuated, Some(Amount::units(2))); // 5 × 4 / 10
    assert_eq!(f.valuated, Some(Amount::units(16 + 45 + 2)));
    assert_eq!(
        valuate(4).decide(&valued, &ctx()).unwrap_err(),
        ClaimError::WrongStatus(ClaimStatus::Valuated, "PROCESSED")
    );
}

#[test]
fn restore_copies_a_rejected_claim_once() {
    let c = created(data());
    let mut f = facts();
    f.insuree = None;
    let rejected = apply(c.clone(), submit(&c, &f));
    let new_id = Uuid::from_u128(0xc2);
    let restore = RestoreClaim { new_claim_id: new_id, facility: None };
    assert!(matches!(restore.decide(&c, &ctx()), Err(ClaimError::WrongStatus(ClaimStatus::Entered, "REJECTED"))));
    let (old, new) = restore.decide(&rejected, &ctx()).unwrap();
    let restored = old.iter().fold(rejected.clone(), |c, e| c.evolve(e));
    assert!(!facts_of(&restored).is_live());
    assert_eq!(restore.decide(&restored, &ctx()).unwrap_err(), ClaimError::AlreadyRestored);
    let copy = Claim::from_events(&new);
    let f = facts_of(&copy);
    assert_eq!((f.id, f.status, f.restored_from, &f.data), (new_id, ClaimStatus::Entered, Some(CLAIM), &data()));
}

#[test]
fn attachments_are_added_updated_deleted() {
    use careledger_events::claims::Attachment;
    let c = created(data());
    let a = Attachment {
        attachment_id: Uuid::from_u128(0xa),
        title: "Invoice".into(),
        attachment_type: None,
        date: None,
        url: Some("https://example.org/1".into()),
        filename: None,
        mime: None,
        hash: None,
        size: None,
    };
    let change = |change| ChangeAttachment { change, facility: None };
    let c = apply(c.clone(), change(AttachmentChange::Add(a.clone())).decide(&c, &ctx()));
    let mut renamed = a.clone();
    renamed.title = "Receipt".into();
    let c = apply(c.clone(), change(AttachmentChange::Update(renamed.clone())).decide(&c, &ctx()));
    assert_eq!(facts_of(&c).attachments, vec![renamed]);
    let c = apply(c.clone(), change(AttachmentChange::Delete(a.attachment_id)).decide(&c, &ctx()));
    assert!(facts_of(&c).attachments.is_empty());
    assert_eq!(
        change(AttachmentChange::Delete(a.attachment_id)).decide(&c, &ctx()).unwrap_err(),
        ClaimError::AttachmentNotFound
    );
    let mut none = a.clone();
    none.url = None;
    assert!(change(AttachmentChange::Add(none)).decide(&c, &ctx()).is_err());
}

proptest! {
    /// Whatever the quantities and prices, a submission's `approved` is the sum of its passed lines'
    /// values, never more than a line-by-line recomputation, and `claimed` is Σ qty × price.
    #[test]
    fn approved_is_the_sum_of_passed_lines(qtys in proptest::collection::vec((1i64..500, 0i64..100_000), 1..6), limit in 0i64..2000) {
        let mut d = data();
        d.items = qtys.iter().map(|(q, p)| LineInput { code: "I1".into(), qty_provided: Amount(*q), price_asked: Amount(*p), explanation: None }).collect();
        d.services.clear();
        let c = created(d.clone());
        prop_assert_eq!(facts_of(&c).claimed, qtys.iter().map(|(q, p)| Amount(*q).times(Amount(*p))).sum::<Amount>());
        let mut f = facts();
        f.policies[0].1.coverage[0].limit_adult = Some(Amount(limit));
        if !facts_of(&c).claimed.is_positive() {
            return Ok(());
        }
        let after = apply(c.clone(), submit(&c, &f));
        let a = facts_of(&after);
        let total: Amount = a.lines.iter().filter(|l| l.passed()).map(|l| l.approved_value()).sum();
        let given: Amount = a.lines.iter().filter(|l| l.passed()).map(|l| l.quantity()).sum();
        prop_assert!(given <= Amount(limit));
        if a.status == ClaimStatus::Checked {
            prop_assert_eq!(a.approved, Some(total));
        } else {
            prop_assert_eq!(limit, 0);
        }
    }
}

/// The master's outcome of `claim`: rejected, its item with reason 7, its service passed.
fn master_outcome(status: ClaimStatus) -> careledger_events::claims::ClaimOutcome {
    use careledger_events::claims::{ClaimOutcome, LineOutcome};
    let line = |kind, status, rejection_reason| LineOutcome {
        kind,
        index: 0,
        status: Some(status),
        rejection_reason,
        qty_approved: None,
        price_adjusted: None,
        price_approved: None,
        price_valuated: None,
    };
    ClaimOutcome {
        claim_id: CLAIM,
        data: data(),
        status,
        rejection_reason: Some(7),
        category: None,
        claimed: Amount::units(70),
        approved: None,
        valuated: None,
        remunerated: None,
        lines: vec![line(LineKind::Item, LineStatus::Rejected, 7), line(LineKind::Service, LineStatus::Rejected, 7)],
        at: ctx().now,
    }
}

#[test]
fn a_node_mirrors_its_masters_outcome_once() {
    let claim = created(data());
    let receive = ReceiveOutcome { outcome: master_outcome(ClaimStatus::Rejected), peer: "urn:master".into() };
    let mirrored = apply(claim.clone(), receive.decide(&claim, &ctx()));
    let facts = mirrored.0.as_ref().unwrap();
    assert_eq!(facts.status, ClaimStatus::Rejected);
    assert_eq!(facts.rejection_reason, Some(7));
    assert_eq!(facts.lines[0].status, Some(LineStatus::Rejected));
    assert_eq!(facts.lines[0].rejection_reason, 7);
    // the same outcome again: nothing to append
    assert_eq!(receive.decide(&mirrored, &ctx()), Ok(vec![]));
    // the master's claim still entered: the node authors it until submitted
    let entered = ReceiveOutcome { outcome: master_outcome(ClaimStatus::Entered), peer: "urn:master".into() };
    assert_eq!(entered.decide(&claim, &ctx()), Ok(vec![]));
    // a line the claim does not have, a claim not held here
    let mut extra = master_outcome(ClaimStatus::Rejected);
    extra.lines[1].index = 3;
    let extra = ReceiveOutcome { outcome: extra, peer: "urn:master".into() };
    assert!(matches!(extra.decide(&claim, &ctx()), Err(ClaimError::Invalid { .. })));
    assert_eq!(receive.decide(&Claim::default(), &ctx()), Err(ClaimError::NotFound));

    // changed on the node after the master decided: replaced, the change recorded first
    let mut changed_data = data();
    changed_data.items[0].qty_provided = Amount::units(3);
    let changed =
        apply(claim.clone(), UpdateClaim { data: changed_data.clone(), facility: None }.decide(&claim, &ctx()));
    let events = receive.decide(&changed, &ctx()).unwrap();
    assert!(matches!(&events[..], [ClaimEvent::ConflictRecorded(c), ClaimEvent::OutcomeReceived(_)]
        if c.rule == careledger_events::claims::ConflictRule::ReplacedByMaster && c.data == changed_data));
    let replaced = events.iter().fold(changed, |c, e| c.evolve(e));
    assert_eq!(replaced.0.as_ref().unwrap().data, data());

    // a master's figure out of the bounds every claim keeps
    let mut huge = master_outcome(ClaimStatus::Rejected);
    huge.lines[0].price_valuated = Some(Amount::units(2_000_000_000));
    let huge = ReceiveOutcome { outcome: huge, peer: "urn:master".into() };
    assert!(matches!(huge.decide(&claim, &ctx()), Err(ClaimError::Invalid { .. })));
}

#[test]
fn the_central_server_takes_a_nodes_change_until_it_decides_the_claim() {
    use careledger_events::claims::ConflictRule;
    let claim = created(data());
    let mut changed = data();
    changed.items[0].qty_provided = Amount::units(3);
    let take = TakeNodeChange { data: changed.clone(), peer: "urn:node".into(), facility: None };
    // entered here: the node's change is the claim's
    assert!(matches!(&take.decide(&claim, &ctx()).unwrap()[..], [ClaimEvent::ClaimUpdated(_)]));
    // the same data: nothing
    let same = TakeNodeChange { data: data(), ..take.clone() };
    assert_eq!(same.decide(&claim, &ctx()), Ok(vec![]));
    // decided here: recorded once, not taken
    let mut decided = claim.clone();
    decided.0.as_mut().unwrap().status = ClaimStatus::Rejected;
    let events = take.decide(&decided, &ctx()).unwrap();
    assert!(
        matches!(&events[..], [ClaimEvent::ConflictRecorded(c)] if c.rule == ConflictRule::DecidedHere && c.data == changed)
    );
    let recorded = events.iter().fold(decided, |c, e| c.evolve(e));
    assert_eq!(take.decide(&recorded, &ctx()), Ok(vec![]), "the same change again is recorded once");
    assert_eq!(recorded.0.as_ref().unwrap().data, data(), "not taken");
    // deleted here
    // a peer of another facility records nothing on this claim
    let other = TakeNodeChange { facility: Some("HF2".into()), ..take.clone() };
    assert_eq!(other.decide(&decided_again(&claim), &ctx()), Err(ClaimError::OtherFacility));
    let deleted = apply(claim.clone(), DeleteClaim { facility: None }.decide(&claim, &ctx()));
    assert!(
        matches!(&take.decide(&deleted, &ctx()).unwrap()[..], [ClaimEvent::ConflictRecorded(c)] if c.rule == ConflictRule::DeletedHere)
    );
}

#[test]
fn the_central_server_takes_a_nodes_deletion_until_it_decides_the_claim() {
    use careledger_events::claims::ConflictRule;
    let claim = created(data());
    let take = TakeNodeDeletion { peer: "urn:node".into(), facility: None };
    // entered here: deleted
    let events = take.decide(&claim, &ctx()).unwrap();
    assert!(matches!(&events[..], [ClaimEvent::ClaimDeleted { .. }]));
    // deleted already (the same Bundle again, or deleted here too): nothing
    let deleted = events.iter().fold(claim.clone(), |c, e| c.evolve(e));
    assert_eq!(take.decide(&deleted, &ctx()), Ok(vec![]));
    // decided here: the claim stays, the deletion is recorded once
    let decided = decided_again(&claim);
    let events = take.decide(&decided, &ctx()).unwrap();
    assert!(
        matches!(&events[..], [ClaimEvent::ConflictRecorded(c)] if c.rule == ConflictRule::DeletedThere && c.data == data())
    );
    let recorded = events.iter().fold(decided, |c, e| c.evolve(e));
    assert_eq!(take.decide(&recorded, &ctx()), Ok(vec![]), "recorded once");
    assert!(!recorded.0.as_ref().unwrap().deleted);
    // a peer of another facility deletes nothing of this claim
    let other = TakeNodeDeletion { facility: Some("HF2".into()), ..take };
    assert_eq!(other.decide(&claim, &ctx()), Err(ClaimError::OtherFacility));
}

fn decided_again(claim: &Claim) -> Claim {
    let mut decided = claim.clone();
    decided.0.as_mut().unwrap().status = ClaimStatus::Rejected;
    decided
}
