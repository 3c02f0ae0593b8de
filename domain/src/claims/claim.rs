//! A claim as folded from its stream: its data, its status and its feedback and review steps,
//! each line's outcome and prices at every stage, its attachments.

use careledger_events::claims::{
    Amount, Attachment, ClaimData, ClaimEvent, ClaimRecord, ClaimStatus, ConflictRule, Feedback, LineInput, LineKind,
    LineStatus, PriceOrigin, ServiceCategory, StepStatus,
};
use uuid::Uuid;

use super::ClaimError;
use crate::Aggregate;

/// A line with what submission, review, processing and valuation made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineState {
    pub kind: LineKind,
    pub index: usize,
    pub input: LineInput,
    /// None until submitted.
    pub status: Option<LineStatus>,
    pub rejection_reason: i32,
    pub qty_approved: Option<Amount>,
    pub price_adjusted: Option<Amount>,
    pub price_approved: Option<Amount>,
    pub price_valuated: Option<Amount>,
    pub justification: Option<String>,
    pub product: Option<String>,
    pub price_origin: Option<PriceOrigin>,
}

impl LineState {
    fn new(kind: LineKind, index: usize, input: &LineInput) -> Self {
        LineState {
            kind,
            index,
            input: input.clone(),
            status: None,
            rejection_reason: 0,
            qty_approved: None,
            price_adjusted: None,
            price_approved: None,
            price_valuated: None,
            justification: None,
            product: None,
            price_origin: None,
        }
    }

    pub fn passed(&self) -> bool {
        self.status == Some(LineStatus::Passed)
    }

    /// The quantity paid: approved, else provided.
    pub fn quantity(&self) -> Amount {
        self.qty_approved.unwrap_or(self.input.qty_provided)
    }

    /// The price approved: by the reviewer, else as adjusted at submission, else as asked.
    pub fn approved_price(&self) -> Amount {
        self.price_approved.or(self.price_adjusted).unwrap_or(self.input.price_asked)
    }

    /// quantity × approved price.
    pub fn approved_value(&self) -> Amount {
        self.quantity().times(self.approved_price())
    }

    /// Waits for a batch run: passed, relative price, not valued yet.
    pub fn waits_for_valuation(&self) -> bool {
        self.passed() && self.price_origin == Some(PriceOrigin::Relative) && self.price_valuated.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimFacts {
    pub id: Uuid,
    pub data: ClaimData,
    pub status: ClaimStatus,
    pub feedback_status: StepStatus,
    pub review_status: StepStatus,
    pub rejection_reason: Option<i32>,
    pub lines: Vec<LineState>,
    pub claimed: Amount,
    pub approved: Option<Amount>,
    pub valuated: Option<Amount>,
    pub remunerated: Option<Amount>,
    pub category: Option<ServiceCategory>,
    pub feedback: Option<Feedback>,
    pub attachments: Vec<Attachment>,
    pub deleted: bool,
    pub restored_from: Option<Uuid>,
    pub restored_as: Option<Uuid>,
    /// The last change a sync did not take (its rule and data): the same change arriving again
    /// is not recorded twice.
    pub last_conflict: Option<(ConflictRule, ClaimData)>,
}

impl ClaimFacts {
    fn new(record: &ClaimRecord) -> Self {
        ClaimFacts {
            id: record.claim_id,
            data: record.data.clone(),
            status: ClaimStatus::Entered,
            feedback_status: StepStatus::Idle,
            review_status: StepStatus::Idle,
            rejection_reason: None,
            lines: lines_of(&record.data),
            claimed: record.claimed,
            approved: None,
            valuated: None,
            remunerated: None,
            category: None,
            feedback: None,
            attachments: vec![],
            deleted: false,
            restored_from: record.restored_from,
            restored_as: None,
            last_conflict: None,
        }
    }

    /// Still holds its code: neither deleted nor replaced by a restored copy.
    pub fn is_live(&self) -> bool {
        !self.deleted && self.restored_as.is_none()
    }

    pub fn line_mut(&mut self, kind: LineKind, index: usize) -> Option<&mut LineState> {
        self.lines.iter_mut().find(|l| l.kind == kind && l.index == index)
    }

    pub fn line(&self, kind: LineKind, index: usize) -> Option<&LineState> {
        self.lines.iter().find(|l| l.kind == kind && l.index == index)
    }

    /// Σ of the passed lines' approved value.
    pub fn approved_total(&self) -> Amount {
        self.lines.iter().filter(|l| l.passed()).map(LineState::approved_value).sum()
    }

    /// Refused unless the claim is in one of `statuses` (`needed` names them for the message).
    pub fn require(&self, statuses: &[ClaimStatus], needed: &'static str) -> Result<(), ClaimError> {
        if statuses.contains(&self.status) { Ok(()) } else { Err(ClaimError::WrongStatus(self.status, needed)) }
    }
}

fn lines_of(data: &ClaimData) -> Vec<LineState> {
    data.lines().map(|(kind, index, input)| LineState::new(kind, index, input)).collect()
}

/// A claim (`None` until created).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claim(pub Option<ClaimFacts>);

impl Claim {
    /// The claim, if it exists (not deleted) and the caller may act on it: a caller scoped to a
    /// health facility acts only on that facility's claims (404 first, then 403).
    pub fn visible_to(&self, facility: Option<&str>) -> Result<&ClaimFacts, ClaimError> {
        let facts = self.0.as_ref().filter(|f| !f.deleted).ok_or(ClaimError::NotFound)?;
        if facility.is_some_and(|hf| hf != facts.data.health_facility) {
            return Err(ClaimError::OtherFacility);
        }
        Ok(facts)
    }
}

impl Aggregate for Claim {
    type Event = ClaimEvent;

    fn evolve(mut self, event: &ClaimEvent) -> Self {
        if let ClaimEvent::ClaimCreated(record) = event {
            self.0 = Some(ClaimFacts::new(record));
            return self;
        }
        let Some(facts) = &mut self.0 else { return self };
        match event {
            ClaimEvent::ClaimUpdated(record) => {
                facts.data = record.data.clone();
                facts.lines = lines_of(&record.data);
                facts.claimed = record.claimed;
            }
            ClaimEvent::ClaimDeleted { .. } => facts.deleted = true,
            ClaimEvent::ClaimSubmitted { status, rejection_reason, lines, approved, category, .. } => {
                facts.status = *status;
                facts.rejection_reason = *rejection_reason;
                facts.approved = *approved;
                facts.category = *category;
                for a in lines {
                    if let Some(line) = facts.line_mut(a.kind, a.index) {
                        line.status = Some(a.status);
                        line.rejection_reason = a.rejection_reason;
                        line.qty_approved = a.qty_approved;
                        line.price_adjusted = a.price_adjusted;
                        line.product = a.product.clone();
                        line.price_origin = a.price_origin;
                    }
                }
            }
            ClaimEvent::FeedbackStatusChanged { feedback_status, .. } => facts.feedback_status = *feedback_status,
            ClaimEvent::FeedbackDelivered { feedback, .. } => {
                facts.feedback = Some(feedback.clone());
                facts.feedback_status = StepStatus::Delivered;
            }
            ClaimEvent::ReviewStatusChanged { review_status, .. } => facts.review_status = *review_status,
            ClaimEvent::ReviewSaved { lines, approved, status, delivered, .. } => {
                for r in lines {
                    if let Some(line) = facts.line_mut(r.kind, r.index) {
                        line.qty_approved = r.qty_approved.or(line.qty_approved);
                        line.price_approved = r.price_approved;
                        line.justification = r.justification.clone();
                        if r.rejected {
                            line.status = Some(LineStatus::Rejected);
                            line.rejection_reason = super::reason::REVIEW;
                        }
                    }
                }
                facts.approved = Some(*approved);
                if *status == ClaimStatus::Rejected && facts.status != ClaimStatus::Rejected {
                    facts.rejection_reason = Some(super::reason::REVIEW);
                }
                facts.status = *status;
                if *delivered {
                    facts.review_status = StepStatus::Delivered;
                }
            }
            ClaimEvent::ClaimProcessed {
                status, lines, valuated, remunerated, feedback_status, review_status, ..
            } => {
                facts.status = *status;
                apply_valuations(facts, lines);
                facts.valuated = *valuated;
                facts.remunerated = *remunerated;
                facts.feedback_status = *feedback_status;
                facts.review_status = *review_status;
            }
            ClaimEvent::ClaimValuated { status, lines, valuated, remunerated, .. } => {
                facts.status = *status;
                apply_valuations(facts, lines);
                facts.valuated = Some(*valuated);
                facts.remunerated = Some(*remunerated);
            }
            ClaimEvent::ClaimRestored { restored_as, .. } => facts.restored_as = Some(*restored_as),
            ClaimEvent::AttachmentAdded { attachment, .. } => facts.attachments.push(attachment.clone()),
            ClaimEvent::AttachmentUpdated { attachment, .. } => {
                if let Some(a) = facts.attachments.iter_mut().find(|a| a.attachment_id == attachment.attachment_id) {
                    *a = attachment.clone();
                }
            }
            ClaimEvent::AttachmentDeleted { attachment_id, .. } => {
                facts.attachments.retain(|a| a.attachment_id != *attachment_id);
            }
            ClaimEvent::ConflictRecorded(c) => facts.last_conflict = Some((c.rule, c.data.clone())),
            ClaimEvent::OutcomeReceived(outcome) => {
                facts.data = outcome.data.clone();
                facts.lines = lines_of(&outcome.data);
                facts.claimed = outcome.claimed;
                facts.status = outcome.status;
                facts.rejection_reason = outcome.rejection_reason;
                facts.category = outcome.category;
                facts.approved = outcome.approved;
                facts.valuated = outcome.valuated;
                facts.remunerated = outcome.remunerated;
                for o in &outcome.lines {
                    if let Some(line) = facts.line_mut(o.kind, o.index) {
                        line.status = o.status;
                        line.rejection_reason = o.rejection_reason;
                        line.qty_approved = o.qty_approved;
                        line.price_adjusted = o.price_adjusted;
                        line.price_approved = o.price_approved;
                        line.price_valuated = o.price_valuated;
                    }
                }
            }
            _ => {}
        }
        self
    }
}

fn apply_valuations(facts: &mut ClaimFacts, lines: &[careledger_events::claims::LineValuation]) {
    for v in lines {
        if let Some(line) = facts.line_mut(v.kind, v.index) {
            line.price_valuated = Some(v.price_valuated);
        }
    }
}
