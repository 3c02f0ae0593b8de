//! EnrolInPolicy: a registered insuree covered by a product for a period.

use careledger_events::Identifier;
use careledger_events::insurees::{EnrolledPolicy, InsureeEvent};
use chrono::{Months, NaiveDate};
use uuid::Uuid;

use super::{InsureeError, Policy};
use crate::{Ctx, check_text};

/// The longest period one policy covers.
pub const MAX_POLICY_YEARS: i32 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolInPolicy {
    pub policy_id: Uuid,
    pub insuree_id: Uuid,
    pub product_code: String,
    pub enrol_date: NaiveDate,
    pub effective_date: NaiveDate,
    pub expiry_date: NaiveDate,
    /// The ids other servers gave the policy.
    pub identifiers: Vec<Identifier>,
}

impl EnrolInPolicy {
    /// `insuree_known`, `product_known`: whether this server holds the insuree (registered here,
    /// or reference data from the central server) and the product.
    pub fn decide(
        &self,
        policy: &Policy,
        insuree_known: bool,
        product_known: bool,
        ctx: &Ctx,
    ) -> Result<Vec<InsureeEvent>, InsureeError> {
        if !check_text(&self.product_code, 50) {
            return Err(InsureeError::InvalidProduct);
        }
        if self.effective_date < self.enrol_date {
            return Err(InsureeError::EffectiveBeforeEnrolment);
        }
        let latest = self.effective_date.checked_add_months(Months::new(12 * MAX_POLICY_YEARS as u32));
        if self.expiry_date <= self.effective_date || latest.is_none_or(|l| self.expiry_date > l) {
            return Err(InsureeError::InvalidPeriod { years: MAX_POLICY_YEARS });
        }
        if policy.enrolled.is_some() {
            return Err(InsureeError::PolicyExists);
        }
        if !insuree_known {
            return Err(InsureeError::UnknownInsuree);
        }
        if !product_known {
            return Err(InsureeError::UnknownProduct);
        }
        Ok(vec![InsureeEvent::PolicyEnrolled {
            policy: EnrolledPolicy {
                policy_id: self.policy_id,
                insuree_id: self.insuree_id,
                product_code: self.product_code.clone(),
                enrol_date: self.enrol_date,
                effective_date: self.effective_date,
                expiry_date: self.expiry_date,
                identifiers: self.identifiers.clone(),
            },
            at: ctx.now,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Aggregate;
    use crate::codes::{CodeBatch, GenerateCodes, ReserveCodes};
    use crate::insurees::{Insuree, RegisterInsuree, Registration};
    use careledger_events::claims::Gender;
    use careledger_events::codes::{CodeEvent, CodeFormat, HolderType};
    use chrono::{DateTime, Utc};

    fn ctx() -> Ctx {
        Ctx { now: DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap(), seed: 7 }
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// A batch of `n` codes for EO E01 with `reserved` of them reserved.
    fn batch(n: u32, reserved: usize) -> CodeBatch {
        let generate = GenerateCodes {
            batch_id: Uuid::from_u128(9),
            holder_type: HolderType::EnrolmentOfficer,
            holder_code: "E01".into(),
            number: n,
            format: CodeFormat::default(),
            avoid: Default::default(),
            issued: 0,
        };
        let mut state = CodeBatch::from_events(&generate.decide(&CodeBatch::default(), &ctx()).unwrap());
        if reserved > 0 {
            let reserve = ReserveCodes {
                reservation_id: Uuid::from_u128(10),
                holder_type: HolderType::EnrolmentOfficer,
                holder_code: "E01".into(),
                number: reserved,
                for_server: None,
            };
            for (_, events) in reserve.decide(&[&state]).unwrap() {
                state = events.iter().fold(state, CodeBatch::evolve);
            }
        }
        state
    }

    fn register(id: u128) -> RegisterInsuree {
        RegisterInsuree {
            insuree_id: Uuid::from_u128(id),
            last_name: "Mwangi".into(),
            other_names: "Amani".into(),
            birth_date: day("1990-01-31"),
            gender: Gender::Female,
            phone: Some("+255 712 345 678".into()),
            family_head: None,
            location: None,
            holder_type: HolderType::EnrolmentOfficer,
            holder_code: "E01".into(),
            identifiers: vec![],
        }
    }

    fn registered(r: &Registration) -> Insuree {
        Insuree::from_events([&r.insuree])
    }

    #[test]
    fn registering_takes_the_oldest_reserved_code_and_never_the_same_twice() {
        let mut codes = batch(10, 2);
        let first = register(1).decide(&Insuree::default(), None, &codes, &ctx()).unwrap();
        let CodeEvent::CodeAssigned { code: a, insuree_id, .. } = &first.code else { panic!() };
        assert_eq!(insuree_id, &Uuid::from_u128(1).to_string());
        codes = codes.evolve(&first.code);
        let second = register(2).decide(&Insuree::default(), None, &codes, &ctx()).unwrap();
        let CodeEvent::CodeAssigned { code: b, .. } = &second.code else { panic!() };
        assert_ne!(a, b);
        let InsureeEvent::InsureeRegistered { insuree, .. } = &second.insuree else { panic!() };
        assert_eq!(&insuree.chfid, b);
        codes = codes.evolve(&second.code);
        assert_eq!(codes.reserved_count(), 0);
        // available codes are not the holder's to hand out: they were not reserved
        assert_eq!(
            register(3).decide(&Insuree::default(), None, &codes, &ctx()),
            Err(InsureeError::NoReservedCodeInBatch)
        );
    }

    #[test]
    fn bad_input_and_states_are_refused_before_a_code_is_taken() {
        let codes = batch(5, 5);
        let none = Insuree::default();
        let check = |r: RegisterInsuree| r.decide(&none, None, &codes, &ctx()).map(|_| ());
        assert_eq!(
            check(RegisterInsuree { last_name: " x".into(), ..register(1) }),
            Err(InsureeError::InvalidLastName)
        );
        assert_eq!(
            check(RegisterInsuree { other_names: "a\u{0}".into(), ..register(1) }),
            Err(InsureeError::InvalidOtherNames)
        );
        assert_eq!(
            check(RegisterInsuree { phone: Some("call me".into()), ..register(1) }),
            Err(InsureeError::InvalidPhone)
        );
        assert_eq!(
            check(RegisterInsuree { birth_date: day("2027-02-01"), ..register(1) }),
            Err(InsureeError::InvalidBirthDate)
        );
        assert_eq!(
            check(RegisterInsuree { birth_date: day("1899-12-31"), ..register(1) }),
            Err(InsureeError::InvalidBirthDate)
        );
        assert_eq!(
            check(RegisterInsuree { holder_code: "E02".into(), ..register(1) }),
            Err(InsureeError::HolderMismatch)
        );
        assert_eq!(
            check(RegisterInsuree { family_head: Some(Uuid::from_u128(5)), ..register(1) }),
            Err(InsureeError::UnknownFamilyHead)
        );
        let head = registered(&register(5).decide(&none, None, &codes, &ctx()).unwrap());
        let member = RegisterInsuree { family_head: Some(Uuid::from_u128(5)), ..register(6) };
        let joined = member.decide(&none, Some(&head), &codes, &ctx()).unwrap();
        let member_state = registered(&joined);
        assert!(!member_state.is_head());
        // a member cannot head another member
        let grandchild = RegisterInsuree { family_head: Some(Uuid::from_u128(6)), ..register(7) };
        assert_eq!(grandchild.decide(&none, Some(&member_state), &codes, &ctx()), Err(InsureeError::HeadNotHead));
        assert_eq!(register(5).decide(&head, None, &codes, &ctx()), Err(InsureeError::InsureeExists));
    }

    #[test]
    fn a_policy_covers_a_registered_insuree_for_a_bounded_period() {
        let enrol = EnrolInPolicy {
            policy_id: Uuid::from_u128(20),
            insuree_id: Uuid::from_u128(1),
            product_code: "BASIC".into(),
            enrol_date: day("2026-12-01"),
            effective_date: day("2026-12-01"),
            expiry_date: day("2027-11-30"),
            identifiers: vec![],
        };
        let events = enrol.decide(&Policy::default(), true, true, &ctx()).unwrap();
        assert_eq!(events.len(), 1);
        let policy = Policy::from_events(&events);
        assert_eq!(enrol.decide(&policy, true, true, &ctx()), Err(InsureeError::PolicyExists));
        assert_eq!(enrol.decide(&Policy::default(), false, true, &ctx()), Err(InsureeError::UnknownInsuree));
        assert_eq!(enrol.decide(&Policy::default(), true, false, &ctx()), Err(InsureeError::UnknownProduct));
        let backwards = EnrolInPolicy { expiry_date: day("2026-11-30"), ..enrol.clone() };
        assert!(matches!(
            backwards.decide(&Policy::default(), true, true, &ctx()),
            Err(InsureeError::InvalidPeriod { .. })
        ));
        let too_long = EnrolInPolicy { expiry_date: day("2031-12-02"), ..enrol.clone() };
        assert!(matches!(
            too_long.decide(&Policy::default(), true, true, &ctx()),
            Err(InsureeError::InvalidPeriod { .. })
        ));
        let early = EnrolInPolicy { effective_date: day("2026-11-30"), ..enrol };
        assert_eq!(early.decide(&Policy::default(), true, true, &ctx()), Err(InsureeError::EffectiveBeforeEnrolment));
    }
}
