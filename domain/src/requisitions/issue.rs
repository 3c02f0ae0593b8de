//! IssueRequisition: the encounter's number for one of its entities.

use std::collections::HashSet;

use careledger_events::requisitions::{EntityType, RequisitionEvent};
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use super::encounter::EncounterRequisition;
use super::error::RequisitionError;
use super::number::{RequisitionKey, RequisitionNumber};
use crate::Ctx;

/// Salts tried before giving up. Each number is one of 2^64, so one redraw is already rare.
pub const SALT_DRAWS: usize = 32;

/// The requisition number of `encounter_id`, for `entity_type`/`entity_id`.
#[derive(Debug, Clone)]
pub struct IssueRequisition {
    pub encounter_id: Uuid,
    pub entity_type: EntityType,
    pub entity_id: Uuid,
    /// Numbers other encounters hold: the store reports them when an append collides, and the
    /// handler decides again without them.
    pub avoid: HashSet<String>,
}

impl IssueRequisition {
    /// Issues the number on the encounter's first entity; later entities share it; an entity it
    /// already has decides nothing (the same service request asking twice is not a change).
    pub fn decide(
        &self,
        state: &EncounterRequisition,
        key: &RequisitionKey,
        ctx: &Ctx,
    ) -> Result<Vec<RequisitionEvent>, RequisitionError> {
        if let Some(requisition) = &state.requisition {
            if state.encounter_id != Some(self.encounter_id) {
                return Err(RequisitionError::WrongEncounter(self.encounter_id));
            }
            if state.has(self.entity_type, self.entity_id) {
                return Ok(vec![]);
            }
            return Ok(vec![RequisitionEvent::RequisitionEntityAdded {
                encounter_id: self.encounter_id,
                requisition: requisition.clone(),
                entity_type: self.entity_type,
                entity_id: self.entity_id,
                added_at: ctx.now,
            }]);
        }
        let (number, salt) = self.free_number(key, ctx.seed)?;
        Ok(vec![RequisitionEvent::RequisitionIssued {
            encounter_id: self.encounter_id,
            requisition: number.text(),
            salt,
            entity_type: self.entity_type,
            entity_id: self.entity_id,
            issued_at: ctx.now,
        }])
    }

    /// The unsalted number if free, else the first free one of salts drawn from `seed`. The same
    /// seed draws the same salts, so deciding again with a bigger `avoid` only skips further.
    fn free_number(&self, key: &RequisitionKey, seed: u64) -> Result<(RequisitionNumber, String), RequisitionError> {
        // the canonical text (lower case, hyphenated): the same encounter always hashes alike
        let encounter = self.encounter_id.to_string();
        let unsalted = key.number(&encounter, "");
        if !self.avoid.contains(&unsalted.text()) {
            return Ok((unsalted, String::new()));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for _ in 0..SALT_DRAWS {
            let salt = format!("{:016x}", rng.next_u64());
            let number = key.number(&encounter, &salt);
            if !self.avoid.contains(&number.text()) {
                return Ok((number, salt));
            }
        }
        Err(RequisitionError::NumbersExhausted(SALT_DRAWS))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    use super::*;
    use crate::{Aggregate, Refusal};

    const EXAMPLE: &str = "7a1419b0-c53d-4df2-9c22-07de28d96ac0";

    fn ctx(seed: u64) -> Ctx {
        Ctx { now: Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap(), seed }
    }

    fn issue(encounter: Uuid, entity: u128) -> IssueRequisition {
        IssueRequisition {
            encounter_id: encounter,
            entity_type: EntityType::ServiceRequest,
            entity_id: Uuid::from_u128(entity),
            avoid: HashSet::new(),
        }
    }

    fn example() -> Uuid {
        Uuid::parse_str(EXAMPLE).unwrap()
    }

    #[test]
    fn the_first_entity_issues_the_unsalted_number() {
        let events = issue(example(), 1).decide(&Default::default(), &RequisitionKey::default(), &ctx(1)).unwrap();
        assert_eq!(
            events,
            vec![RequisitionEvent::RequisitionIssued {
                encounter_id: example(),
                requisition: "01CX-IHHT-TX63-02PI".into(),
                salt: String::new(),
                entity_type: EntityType::ServiceRequest,
                entity_id: Uuid::from_u128(1),
                issued_at: ctx(1).now,
            }]
        );
        let state = EncounterRequisition::from_events(&events);
        assert_eq!(state.requisition.as_deref(), Some("01CX-IHHT-TX63-02PI"));
        assert!(state.has(EntityType::ServiceRequest, Uuid::from_u128(1)));
    }

    #[test]
    fn later_entities_share_the_number_and_a_known_one_decides_nothing() {
        let key = RequisitionKey::default();
        let mut state =
            EncounterRequisition::from_events(&issue(example(), 1).decide(&Default::default(), &key, &ctx(1)).unwrap());
        let second = issue(example(), 2).decide(&state, &key, &ctx(2)).unwrap();
        assert!(matches!(
            &second[..],
            [RequisitionEvent::RequisitionEntityAdded { requisition, entity_id, .. }]
                if requisition == "01CX-IHHT-TX63-02PI" && *entity_id == Uuid::from_u128(2)
        ));
        state = second.iter().fold(state, EncounterRequisition::evolve);
        assert_eq!(state.entities.len(), 2);
        assert_eq!(issue(example(), 1).decide(&state, &key, &ctx(3)).unwrap(), vec![]);
        assert_eq!(issue(example(), 2).decide(&state, &key, &ctx(3)).unwrap(), vec![]);
    }

    #[test]
    fn a_taken_number_is_replaced_by_a_salted_one_kept_with_it() {
        let key = RequisitionKey::default();
        let mut cmd = issue(example(), 1);
        cmd.avoid.insert("01CX-IHHT-TX63-02PI".into());
        let events = cmd.decide(&Default::default(), &key, &ctx(9)).unwrap();
        let RequisitionEvent::RequisitionIssued { requisition, salt, .. } = &events[0] else { panic!("{events:?}") };
        assert_eq!(salt.len(), 16);
        assert_ne!(requisition, "01CX-IHHT-TX63-02PI");
        assert_eq!(key.number(EXAMPLE, salt).text(), *requisition, "the salt reproduces the number");
        assert_eq!(cmd.decide(&Default::default(), &key, &ctx(9)).unwrap(), events, "same seed, same salt");
        // that one taken too: the next salt of the same seed
        cmd.avoid.insert(requisition.clone());
        let again = cmd.decide(&Default::default(), &key, &ctx(9)).unwrap();
        assert_ne!(again[0].requisition(), requisition);
        assert!(!cmd.avoid.contains(again[0].requisition()));
    }

    #[test]
    fn an_exhausted_search_is_a_conflict() {
        let key = RequisitionKey::default();
        let mut cmd = issue(example(), 1);
        cmd.avoid.insert(key.number(EXAMPLE, "").text());
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for _ in 0..SALT_DRAWS {
            cmd.avoid.insert(key.number(EXAMPLE, &format!("{:016x}", rng.next_u64())).text());
        }
        let e = cmd.decide(&Default::default(), &key, &ctx(5)).unwrap_err();
        assert_eq!(e, RequisitionError::NumbersExhausted(SALT_DRAWS));
        assert_eq!(e.refusal(), Refusal::Conflict);
    }

    #[test]
    fn another_encounters_state_is_refused() {
        let key = RequisitionKey::default();
        let state =
            EncounterRequisition::from_events(&issue(example(), 1).decide(&Default::default(), &key, &ctx(1)).unwrap());
        let e = issue(Uuid::nil(), 1).decide(&state, &key, &ctx(1)).unwrap_err();
        assert_eq!(e.refusal(), Refusal::Invalid { entry: "$.encounter_id" });
    }

    proptest! {
        #[test]
        fn the_number_is_the_encounters_own_and_never_one_to_avoid(
            encounter in any::<u128>(), seed in any::<u64>(), taken in 0usize..4,
        ) {
            let key = RequisitionKey::default();
            let encounter = Uuid::from_u128(encounter);
            let mut cmd = issue(encounter, 1);
            // avoid the first `taken` numbers the command would pick
            for _ in 0..taken {
                let events = cmd.decide(&Default::default(), &key, &ctx(seed)).unwrap();
                cmd.avoid.insert(events[0].requisition().to_string());
            }
            let events = cmd.decide(&Default::default(), &key, &ctx(seed)).unwrap();
            let RequisitionEvent::RequisitionIssued { requisition, salt, .. } = &events[0] else {
                return Err(TestCaseError::fail("not issued"));
            };
            prop_assert!(!cmd.avoid.contains(requisition));
            prop_assert_eq!(salt.is_empty(), taken == 0);
            prop_assert_eq!(&key.number(&encounter.to_string(), salt).text(), requisition);
            prop_assert!(RequisitionNumber::parse(requisition).is_ok());
        }
    }
}
