//! A claim between an offline node and its master (issue #21). The node authors a claim until it
//! is submitted; the master decides it from then on (review, processing, valuation), and the node
//! mirrors the master's decision. A change one side did not take is recorded on the claim
//! (`ConflictRecorded`, with the change's data), never dropped silently.

use careledger_events::claims::{Amount, ClaimData, ClaimEvent, ClaimOutcome, ClaimStatus, ConflictRule, SyncConflict};

use super::entry::{check, check_bounds};
use super::{Claim, ClaimError, ClaimFacts, UpdateClaim};
use crate::{Aggregate, Ctx};

/// `ConflictRecorded` of `data`, unless the claim holds that very conflict already (the same
/// change arriving again with a later sync).
fn conflict(facts: &ClaimFacts, peer: &str, rule: ConflictRule, data: &ClaimData, ctx: &Ctx) -> Vec<ClaimEvent> {
    if facts.last_conflict.as_ref().is_some_and(|(r, d)| *r == rule && d == data) {
        return vec![];
    }
    vec![ClaimEvent::ConflictRecorded(Box::new(SyncConflict {
        claim_id: facts.id,
        peer: peer.to_string(),
        rule,
        status: facts.status,
        data: data.clone(),
        at: ctx.now,
    }))]
}

/// The facts of a node's claim a sync changes: a peer scoped to a health facility changes
/// nothing of another facility's claim.
fn node_claim<'c>(claim: &'c Claim, facility: Option<&str>) -> Result<&'c ClaimFacts, ClaimError> {
    let facts = claim.0.as_ref().ok_or(ClaimError::NotFound)?;
    if facility.is_some_and(|f| f != facts.data.health_facility) {
        return Err(ClaimError::OtherFacility);
    }
    Ok(facts)
}

/// On the central server: a node's claim imported before, arriving again with `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeNodeChange {
    pub data: ClaimData,
    /// The node (its FHIR system).
    pub peer: String,
    /// The caller's health facility, when its token is scoped to one.
    pub facility: Option<String>,
}

impl TakeNodeChange {
    /// Nothing when the data is the claim's; `ClaimUpdated` while the claim is ENTERED here; a
    /// conflict once this server submitted the claim or deleted it.
    pub fn decide(&self, claim: &Claim, ctx: &Ctx) -> Result<Vec<ClaimEvent>, ClaimError> {
        let facts = node_claim(claim, self.facility.as_deref())?;
        if facts.deleted {
            return Ok(conflict(facts, &self.peer, ConflictRule::DeletedHere, &self.data, ctx));
        }
        if facts.data == self.data {
            return Ok(vec![]);
        }
        if facts.status != ClaimStatus::Entered {
            return Ok(conflict(facts, &self.peer, ConflictRule::DecidedHere, &self.data, ctx));
        }
        UpdateClaim { data: self.data.clone(), facility: self.facility.clone() }.decide(claim, ctx)
    }
}

/// On the central server: a node deleted a claim it had sent (a `DELETE` entry of its Bundle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeNodeDeletion {
    /// The node (its FHIR system).
    pub peer: String,
    /// The caller's health facility, when its token is scoped to one.
    pub facility: Option<String>,
}

impl TakeNodeDeletion {
    /// `ClaimDeleted` while the claim is ENTERED here; nothing when it is deleted here already;
    /// a conflict (`DELETED_THERE`) once this server submitted it: the claim stays, decided here,
    /// and the deletion is recorded rather than dropped.
    pub fn decide(&self, claim: &Claim, ctx: &Ctx) -> Result<Vec<ClaimEvent>, ClaimError> {
        let facts = node_claim(claim, self.facility.as_deref())?;
        if facts.deleted {
            return Ok(vec![]);
        }
        if facts.status != ClaimStatus::Entered {
            return Ok(conflict(facts, &self.peer, ConflictRule::DeletedThere, &facts.data, ctx));
        }
        Ok(vec![ClaimEvent::ClaimDeleted { claim_id: facts.id, at: ctx.now }])
    }
}

/// On a node: the claim as the master decided it, arriving with the node's sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveOutcome {
    pub outcome: ClaimOutcome,
    /// The master (its FHIR system).
    pub peer: String,
}

impl ReceiveOutcome {
    /// `OutcomeReceived` when the master's claim differs from the node's; nothing when the node's
    /// claim already stands so (the master's Bundle imported again), or while the master's claim
    /// is still ENTERED (the node's later changes go to the master with the next sync). A change
    /// the node made to a claim the master has decided since is replaced, and recorded first
    /// (`ConflictRecorded`); a claim deleted here records the master's decision it did not take.
    pub fn decide(&self, claim: &Claim, ctx: &Ctx) -> Result<Vec<ClaimEvent>, ClaimError> {
        let facts = claim.0.as_ref().ok_or(ClaimError::NotFound)?;
        let outcome = &self.outcome;
        check(&outcome.data)?;
        if let Some(line) = outcome.lines.iter().find(|l| {
            let of_kind = outcome.data.lines().filter(|(kind, _, _)| *kind == l.kind).count();
            l.index >= of_kind
        }) {
            return Err(ClaimError::invalid(
                format!("$.{}s[{}]", line.kind.name(), line.index),
                "the claim has no such line",
            ));
        }
        // the master's figures keep the bounds every claim keeps (README "Bounds")
        for line in &outcome.lines {
            let at = |field: &str| format!("$.{}s[{}].{field}", line.kind.name(), line.index);
            if let Some(qty) = line.qty_approved {
                check_bounds(qty, Amount::ZERO, at)?;
            }
            for price in [line.price_adjusted, line.price_approved, line.price_valuated].into_iter().flatten() {
                check_bounds(Amount::units(1), price, at)?;
            }
        }
        let totals = [Some(outcome.claimed), outcome.approved, outcome.valuated, outcome.remunerated];
        if totals.into_iter().flatten().any(|a| a.0 < 0 || a > Amount::MAX_ALLOCATION) {
            return Err(ClaimError::invalid("$.total", "an amount out of bounds"));
        }
        if outcome.status == ClaimStatus::Entered {
            return Ok(vec![]);
        }
        if facts.deleted {
            return Ok(conflict(facts, &self.peer, ConflictRule::DeletedHere, &outcome.data, ctx));
        }
        let event = ClaimEvent::OutcomeReceived(Box::new(ClaimOutcome { at: ctx.now, ..outcome.clone() }));
        let after = claim.clone().evolve(&event);
        if after == *claim {
            return Ok(vec![]);
        }
        let mut events = vec![];
        if facts.status == ClaimStatus::Entered && facts.data != outcome.data {
            events = conflict(facts, &self.peer, ConflictRule::ReplacedByMaster, &facts.data, ctx);
        }
        events.push(event);
        Ok(events)
    }
}
