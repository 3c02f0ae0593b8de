//! SubmitClaim: the validations of openIMIS' submission, each line PASSED or REJECTED with its
//! reason, then the claim CHECKED (with `approved` and its category) or REJECTED.
//!
//! Claim-level checks first, each rejecting every line with its reason: 9 the target date (from
//! after today, to before from, claimed before the target date), 7 the insuree (unknown, or no
//! policy in force at the target date). Then per line, the first failing check is its reason:
//! 1 not in the register, 2 not in the facility's price list valid at the target date, 10 its care
//! type is not the claim's, 5 given to the insuree less than its frequency before, 3 no policy in
//! force covers it, 16 the product's quantity limit for the insuree's age group is used up by
//! earlier claims and lines of this claim under the same policy (a line over what remains is
//! trimmed to it: `qty_approved`, still PASSED; the register's `maximum_amount` trims likewise),
//! 17 within the product's waiting period after the policy's start.
//!
//! A passed line's `price_adjusted` is what the product pays: the price the facility asked for
//! price origin O, else the facility's price list price (the register's when the list names none).

use std::collections::HashMap;

use careledger_events::claims::{
    Amount, CareType, ClaimEvent, ClaimStatus, HealthFacility, Insuree, LineAssessment, LineKind, LineStatus,
    MedicalEntry, Policy, PriceListEntry, PriceOrigin, Product, ServiceCategory,
};
use chrono::{Datelike, Months, NaiveDate};

use super::{ADULT_AGE, Claim, ClaimError, ClaimFacts, reason};
use crate::Ctx;

/// A line of the insuree's other claims that passed (for frequency and limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastLine {
    pub kind: LineKind,
    pub code: String,
    pub date: NaiveDate,
    pub quantity: Amount,
}

/// The reference data a submission is checked against, read by the handler for this claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitFacts {
    pub facility: Option<HealthFacility>,
    /// Register entries of the claim's codes.
    pub register: HashMap<(LineKind, String), MedicalEntry>,
    /// The facility's price list entries of the claim's codes.
    pub price_list: Vec<PriceListEntry>,
    pub insuree: Option<Insuree>,
    /// The insuree's policies, each with its product.
    pub policies: Vec<(Policy, Product)>,
    /// Passed lines of the insuree's other claims.
    pub history: Vec<PastLine>,
}

/// Whether `policy` is in force on `date`.
fn in_force(policy: &Policy, date: NaiveDate) -> bool {
    policy.effective_date <= date && date <= policy.expiry_date
}

/// The first policy in force on `date` whose product covers the item or service, with the coverage.
pub fn covered_by<'a>(
    policies: &'a [(Policy, Product)],
    kind: LineKind,
    code: &str,
    date: NaiveDate,
) -> Option<(&'a Policy, &'a careledger_events::claims::Coverage)> {
    let mut found: Vec<_> = policies
        .iter()
        .filter(|(p, _)| in_force(p, date))
        .filter_map(|(p, product)| product.coverage.iter().find(|c| c.kind == kind && c.code == code).map(|c| (p, c)))
        .collect();
    found.sort_by_key(|(p, _)| (p.effective_date, p.policy_id));
    found.into_iter().next()
}

/// Whole years from `birth` to `date`.
fn age(birth: NaiveDate, date: NaiveDate) -> u32 {
    let mut years = date.year() - birth.year();
    if (date.month(), date.day()) < (birth.month(), birth.day()) {
        years -= 1;
    }
    years.max(0) as u32
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitClaim {
    pub facility: Option<String>,
    /// Today, for the target date check.
    pub today: NaiveDate,
}

impl SubmitClaim {
    pub fn decide(&self, state: &Claim, facts: &SubmitFacts, ctx: &Ctx) -> Result<Vec<ClaimEvent>, ClaimError> {
        let claim = state.visible_to(self.facility.as_deref())?;
        claim.require(&[ClaimStatus::Entered], "ENTERED")?;
        if !claim.claimed.is_positive() {
            return Err(ClaimError::NothingClaimed);
        }
        let claim_id = claim.id;
        let claim_reason = self.claim_reason(claim, facts);
        let lines = match claim_reason {
            Some(r) => claim.lines.iter().map(|l| rejected(l.kind, l.index, r)).collect(),
            None => assess_lines(claim, facts),
        };
        let passed: Vec<&LineAssessment> = lines.iter().filter(|a| a.status == LineStatus::Passed).collect();
        if passed.is_empty() {
            return Ok(vec![ClaimEvent::ClaimSubmitted {
                claim_id,
                status: ClaimStatus::Rejected,
                rejection_reason: Some(claim_reason.unwrap_or(reason::NOT_IN_REGISTER)),
                lines,
                approved: None,
                category: None,
                at: ctx.now,
            }]);
        }
        let approved = passed
            .iter()
            .filter_map(|a| {
                let line = claim.line(a.kind, a.index)?;
                let qty = a.qty_approved.unwrap_or(line.input.qty_provided);
                Some(qty.times(a.price_adjusted.unwrap_or(line.input.price_asked)))
            })
            .sum();
        let category = category(claim, &passed, facts);
        Ok(vec![ClaimEvent::ClaimSubmitted {
            claim_id,
            status: ClaimStatus::Checked,
            rejection_reason: None,
            lines,
            approved: Some(approved),
            category: Some(category),
            at: ctx.now,
        }])
    }

    /// 9 or 7, when the claim as a whole fails.
    fn claim_reason(&self, claim: &ClaimFacts, facts: &SubmitFacts) -> Option<i32> {
        let d = &claim.data;
        let target = d.target_date();
        let dates_ok =
            d.date_from <= self.today && d.date_to.is_none_or(|to| to >= d.date_from) && d.date_claimed >= target;
        if !dates_ok {
            return Some(reason::TARGET_DATE);
        }
        let insured = facts.insuree.as_ref().is_some_and(|i| i.chfid == d.insuree)
            && facts.policies.iter().any(|(p, _)| in_force(p, target));
        if !insured {
            return Some(reason::INSUREE);
        }
        None
    }
}

fn rejected(kind: LineKind, index: usize, rejection_reason: i32) -> LineAssessment {
    LineAssessment {
        kind,
        index,
        status: LineStatus::Rejected,
        rejection_reason,
        qty_approved: None,
        price_adjusted: None,
        product: None,
        price_origin: None,
    }
}

fn assess_lines(claim: &ClaimFacts, facts: &SubmitFacts) -> Vec<LineAssessment> {
    let d = &claim.data;
    let target = d.target_date();
    let care = d.care_type.unwrap_or(CareType::OutPatient);
    let adult = facts.insuree.as_ref().is_none_or(|i| age(i.birth_date, target) >= ADULT_AGE);
    // quantity given under a policy so far: earlier claims, then this claim's lines as they pass
    let mut used: HashMap<(LineKind, &str), Amount> = HashMap::new();
    let mut out = Vec::with_capacity(claim.lines.len());
    for line in &claim.lines {
        let (kind, code) = (line.kind, line.input.code.as_str());
        let Some(entry) = facts.register.get(&(kind, code.to_string())) else {
            out.push(rejected(kind, line.index, reason::NOT_IN_REGISTER));
            continue;
        };
        let listed = facts.price_list.iter().find(|p| {
            p.kind == kind && p.code == code && p.valid_from <= target && p.valid_to.is_none_or(|to| to >= target)
        });
        let Some(listed) = listed else {
            out.push(rejected(kind, line.index, reason::NOT_IN_PRICE_LIST));
            continue;
        };
        if entry.care_type != CareType::Both && entry.care_type != care {
            out.push(rejected(kind, line.index, reason::CARE_TYPE));
            continue;
        }
        let too_soon = entry.frequency_days.is_some_and(|days| {
            let since = target - chrono::Days::new(u64::from(days));
            facts.history.iter().any(|h| h.kind == kind && h.code == code && h.date > since && h.date <= target)
        });
        if too_soon {
            out.push(rejected(kind, line.index, reason::FREQUENCY));
            continue;
        }
        let Some((policy, coverage)) = covered_by(&facts.policies, kind, code, target) else {
            out.push(rejected(kind, line.index, reason::NOT_COVERED));
            continue;
        };
        let limit = if adult { coverage.limit_adult } else { coverage.limit_child };
        let earlier = *used.entry((kind, code)).or_insert_with(|| {
            facts
                .history
                .iter()
                .filter(|h| h.kind == kind && h.code == code && in_force(policy, h.date))
                .map(|h| h.quantity)
                .sum()
        });
        let mut allowed = limit.map(|l| l - earlier);
        if let Some(max) = entry.maximum_amount {
            allowed = Some(allowed.map_or(max, |a| a.min(max)));
        }
        let qty = line.input.qty_provided;
        let qty_approved = match allowed {
            Some(a) if !a.is_positive() => {
                out.push(rejected(kind, line.index, reason::QUANTITY_LIMIT));
                continue;
            }
            Some(a) if a < qty => Some(a),
            _ => None,
        };
        let months = if adult { coverage.waiting_period_adult } else { coverage.waiting_period_child };
        let waits_until = policy.effective_date.checked_add_months(Months::new(months)).unwrap_or(NaiveDate::MAX);
        if target < waits_until {
            out.push(rejected(kind, line.index, reason::WAITING_PERIOD));
            continue;
        }
        used.insert((kind, code), earlier + qty_approved.unwrap_or(qty));
        let price_adjusted = match coverage.price_origin {
            PriceOrigin::Own => line.input.price_asked,
            PriceOrigin::PriceList | PriceOrigin::Relative => listed.price.unwrap_or(entry.price),
        };
        out.push(LineAssessment {
            kind,
            index: line.index,
            status: LineStatus::Passed,
            rejection_reason: 0,
            qty_approved,
            price_adjusted: Some(price_adjusted),
            product: Some(policy.product_code.clone()),
            price_origin: Some(coverage.price_origin),
        });
    }
    out
}

/// The claim's category from its passed services: surgery, delivery, antenatal,
/// hospitalization, consultation in that order of precedence; hospitalization for an in-patient
/// stay (to after from); other when a service says so; else visit.
fn category(claim: &ClaimFacts, passed: &[&LineAssessment], facts: &SubmitFacts) -> ServiceCategory {
    use ServiceCategory::*;
    let categories: Vec<ServiceCategory> = passed
        .iter()
        .filter(|a| a.kind == LineKind::Service)
        .filter_map(|a| claim.line(a.kind, a.index))
        .filter_map(|l| facts.register.get(&(LineKind::Service, l.input.code.clone())).and_then(|e| e.category))
        .collect();
    if let Some(c) =
        [Surgery, Delivery, Antenatal, Hospitalization, Consultation].into_iter().find(|c| categories.contains(c))
    {
        return c;
    }
    if claim.data.date_to.is_some_and(|to| to > claim.data.date_from) {
        return Hospitalization;
    }
    if categories.contains(&Other) { Other } else { Visit }
}
