//! Entering a claim: create, update and delete while ENTERED, restore a REJECTED claim as a new
//! one, and attachments.

use careledger_events::claims::{Amount, Attachment, ClaimData, ClaimEvent, ClaimRecord, ClaimStatus};
use uuid::Uuid;

use super::{Claim, ClaimError, MAX_LINES, MAX_SECONDARY_ICD, explanation_required};
use crate::Ctx;

/// The rules of a claim's data of its own: quantities above 0, prices not below 0, at most four
/// secondary diagnoses, and an explanation for a service with a quantity above 1.
pub(super) fn check(data: &ClaimData) -> Result<(), ClaimError> {
    if data.icd_secondary.len() > MAX_SECONDARY_ICD {
        return Err(ClaimError::invalid("$.icd_secondary", "at most 4 secondary diagnoses"));
    }
    if data.items.len() > MAX_LINES {
        return Err(ClaimError::invalid("$.items", "at most 100 items"));
    }
    if data.services.len() > MAX_LINES {
        return Err(ClaimError::invalid("$.services", "at most 100 services"));
    }
    for (kind, index, line) in data.lines() {
        let at = |field: &str| format!("$.{}s[{index}].{field}", kind.name());
        if !line.qty_provided.is_positive() {
            return Err(ClaimError::invalid(at("qty_provided"), "must be more than 0"));
        }
        if line.price_asked.0 < 0 {
            return Err(ClaimError::invalid(at("price_asked"), "must not be negative"));
        }
        check_bounds(line.qty_provided, line.price_asked, |field| at(field))?;
        let explained = line.explanation.as_deref().is_some_and(|e| !e.trim().is_empty());
        if explanation_required(kind, line.qty_provided) && !explained {
            return Err(ClaimError::invalid(at("explanation"), "required for a service with a quantity above 1"));
        }
    }
    Ok(())
}

/// The bounds every line keeps (README "Bounds"): whatever a claim can hold, every read model
/// and report can add up (see [`Amount::MAX_QUANTITY`]).
pub(super) fn check_bounds(qty: Amount, price: Amount, at: impl Fn(&str) -> String) -> Result<(), ClaimError> {
    if qty > Amount::MAX_QUANTITY {
        return Err(ClaimError::invalid(at("qty_provided"), "must not be more than 100000"));
    }
    if price > Amount::MAX_PRICE {
        return Err(ClaimError::invalid(at("price_asked"), "must not be more than 1000000000"));
    }
    if qty.times(price) > Amount::MAX_LINE_VALUE {
        return Err(ClaimError::invalid(at("price_asked"), "quantity × price must not be more than 10000000000"));
    }
    Ok(())
}

fn record(claim_id: Uuid, data: &ClaimData, restored_from: Option<Uuid>, ctx: &Ctx) -> Box<ClaimRecord> {
    Box::new(ClaimRecord {
        claim_id,
        claimed: data.claimed(),
        data: data.clone(),
        restored_from,
        identifiers: vec![],
        at: ctx.now,
    })
}

/// Enter a new claim (ENTERED). That its code is free is checked by the store when appending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateClaim {
    pub claim_id: Uuid,
    pub data: ClaimData,
    /// The caller's health facility, when its token is scoped to one.
    pub facility: Option<String>,
}

impl CreateClaim {
    pub fn decide(&self, state: &Claim, ctx: &Ctx) -> Result<Vec<ClaimEvent>, ClaimError> {
        check(&self.data)?;
        if self.facility.as_deref().is_some_and(|hf| hf != self.data.health_facility) {
            return Err(ClaimError::OtherFacility);
        }
        if state.0.is_some() {
            return Err(ClaimError::Exists);
        }
        Ok(vec![ClaimEvent::ClaimCreated(record(self.claim_id, &self.data, None, ctx))])
    }
}

/// Replace an ENTERED claim's data. A scoped caller may not move it to another facility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateClaim {
    pub data: ClaimData,
    pub facility: Option<String>,
}

impl UpdateClaim {
    pub fn decide(&self, state: &Claim, ctx: &Ctx) -> Result<Vec<ClaimEvent>, ClaimError> {
        let facts = state.visible_to(self.facility.as_deref())?;
        facts.require(&[ClaimStatus::Entered], "ENTERED")?;
        check(&self.data)?;
        if self.facility.as_deref().is_some_and(|hf| hf != self.data.health_facility) {
            return Err(ClaimError::OtherFacility);
        }
        if facts.data == self.data {
            return Ok(vec![]);
        }
        Ok(vec![ClaimEvent::ClaimUpdated(record(facts.id, &self.data, facts.restored_from, ctx))])
    }
}

/// Delete an ENTERED claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteClaim {
    pub facility: Option<String>,
}

impl DeleteClaim {
    pub fn decide(&self, state: &Claim, ctx: &Ctx) -> Result<Vec<ClaimEvent>, ClaimError> {
        let facts = state.visible_to(self.facility.as_deref())?;
        facts.require(&[ClaimStatus::Entered], "ENTERED")?;
        Ok(vec![ClaimEvent::ClaimDeleted { claim_id: facts.id, at: ctx.now }])
    }
}

/// Restore a REJECTED claim as a new ENTERED claim with the same data (and code): the events of
/// the old claim's stream and the new claim's, appended together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreClaim {
    pub new_claim_id: Uuid,
    pub facility: Option<String>,
}

impl RestoreClaim {
    /// (events of the rejected claim, events of the new claim)
    pub fn decide(&self, state: &Claim, ctx: &Ctx) -> Result<(Vec<ClaimEvent>, Vec<ClaimEvent>), ClaimError> {
        let facts = state.visible_to(self.facility.as_deref())?;
        facts.require(&[ClaimStatus::Rejected], "REJECTED")?;
        if facts.restored_as.is_some() {
            return Err(ClaimError::AlreadyRestored);
        }
        let old = vec![ClaimEvent::ClaimRestored { claim_id: facts.id, restored_as: self.new_claim_id, at: ctx.now }];
        let new = vec![ClaimEvent::ClaimCreated(record(self.new_claim_id, &facts.data, Some(facts.id), ctx))];
        Ok((old, new))
    }
}

/// What to do with an attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentChange {
    Add(Attachment),
    /// Replaces the attachment of the same id (its file, if any, stays unless a new one is given).
    Update(Attachment),
    Delete(Uuid),
}

/// Add, update or delete an attachment of a claim that exists (in any status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeAttachment {
    pub change: AttachmentChange,
    pub facility: Option<String>,
}

impl ChangeAttachment {
    pub fn decide(&self, state: &Claim, ctx: &Ctx) -> Result<Vec<ClaimEvent>, ClaimError> {
        let facts = state.visible_to(self.facility.as_deref())?;
        let claim_id = facts.id;
        let exists = |id: Uuid| facts.attachments.iter().any(|a| a.attachment_id == id);
        match &self.change {
            AttachmentChange::Add(a) => {
                if a.url.is_none() && a.hash.is_none() {
                    return Err(ClaimError::invalid("$.url", "a URL or a file is required"));
                }
                Ok(vec![ClaimEvent::AttachmentAdded { claim_id, attachment: a.clone(), at: ctx.now }])
            }
            AttachmentChange::Update(a) => {
                let Some(old) = facts.attachments.iter().find(|o| o.attachment_id == a.attachment_id) else {
                    return Err(ClaimError::AttachmentNotFound);
                };
                if old == a {
                    return Ok(vec![]);
                }
                Ok(vec![ClaimEvent::AttachmentUpdated { claim_id, attachment: a.clone(), at: ctx.now }])
            }
            AttachmentChange::Delete(id) => {
                if !exists(*id) {
                    return Err(ClaimError::AttachmentNotFound);
                }
                Ok(vec![ClaimEvent::AttachmentDeleted { claim_id, attachment_id: *id, at: ctx.now }])
            }
        }
    }
}
