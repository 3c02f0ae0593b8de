//! The reference data the claim rules read (health facilities, medical items and services, price
//! lists, insurees, products, policies), upserted in bulk: every entry is an event on its own
//! stream (audited), all of a request in one append. An entry replaces what its key held (a
//! price list or a product's coverage whole).

use careledger_events::claims::{
    ClaimEvent, HealthFacility, Insuree, MedicalEntry, Policy, PriceListEntry, Product, facility_stream,
    insuree_stream, medical_stream, policy_stream, price_list_stream, product_stream,
};
use careledger_store::{AppendRequest, ExpectedVersion, StreamAppend};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::Claims;
use crate::{Answer, AppError, CommandCtx, CommitError};

/// One entry of an upsert: what its key (its stream) holds from now on.
#[derive(Debug, Clone, PartialEq)]
pub enum ReferenceEntry {
    Facility(HealthFacility),
    /// A medical item or service (its `kind`).
    Medical(MedicalEntry),
    /// A facility's whole price list.
    PriceList {
        health_facility: String,
        entries: Vec<PriceListEntry>,
    },
    Insuree(Insuree),
    Product(Product),
    Policy(Policy),
}

impl ReferenceEntry {
    /// The stream that holds the entry's key.
    pub fn stream(&self) -> String {
        match self {
            ReferenceEntry::Facility(f) => facility_stream(&f.code),
            ReferenceEntry::Medical(m) => medical_stream(m.kind, &m.code),
            ReferenceEntry::PriceList { health_facility, .. } => price_list_stream(health_facility),
            ReferenceEntry::Insuree(i) => insuree_stream(i.insuree_id),
            ReferenceEntry::Product(p) => product_stream(&p.code),
            ReferenceEntry::Policy(p) => policy_stream(p.policy_id),
        }
    }

    /// The entry an upsert event holds.
    pub fn of(event: &ClaimEvent) -> Option<ReferenceEntry> {
        Some(match event {
            ClaimEvent::HealthFacilityUpserted { facility, .. } => ReferenceEntry::Facility(facility.clone()),
            ClaimEvent::MedicalEntryUpserted { entry, .. } => ReferenceEntry::Medical(entry.clone()),
            ClaimEvent::PriceListUpserted { health_facility, entries, .. } => {
                ReferenceEntry::PriceList { health_facility: health_facility.clone(), entries: entries.clone() }
            }
            ClaimEvent::InsureeUpserted { insuree, .. } => ReferenceEntry::Insuree(insuree.clone()),
            ClaimEvent::ProductUpserted { product, .. } => ReferenceEntry::Product(product.clone()),
            ClaimEvent::PolicyUpserted { policy, .. } => ReferenceEntry::Policy(policy.clone()),
            _ => return None,
        })
    }

    /// The event that upserts the entry.
    pub fn event(self, at: DateTime<Utc>) -> ClaimEvent {
        match self {
            ReferenceEntry::Facility(facility) => ClaimEvent::HealthFacilityUpserted { facility, at },
            ReferenceEntry::Medical(entry) => ClaimEvent::MedicalEntryUpserted { entry, at },
            ReferenceEntry::PriceList { health_facility, entries } => {
                ClaimEvent::PriceListUpserted { health_facility, entries, at }
            }
            ReferenceEntry::Insuree(insuree) => ClaimEvent::InsureeUpserted { insuree, at },
            ReferenceEntry::Product(product) => ClaimEvent::ProductUpserted { product, at },
            ReferenceEntry::Policy(policy) => ClaimEvent::PolicyUpserted { policy, at },
        }
    }
}

impl Claims<'_> {
    /// Appends each entry's event on its stream (whatever its version) as one append; `ctx` is of
    /// the Upsert command of the entries' kind (the transport refuses a key named twice). Answers
    /// how many were upserted.
    pub async fn upsert(&self, ctx: &CommandCtx, entries: Vec<ReferenceEntry>) -> Result<Answer, AppError> {
        if let Some(answer) = ctx.earlier_answer(self.store).await? {
            return Ok(answer);
        }
        let answer = Answer::ok(json!({ "upserted": entries.len() }));
        let now = Utc::now();
        let streams = entries
            .into_iter()
            .map(|entry| StreamAppend {
                stream: entry.stream(),
                expected: ExpectedVersion::Any,
                events: ctx.events(&[entry.event(now)]),
            })
            .collect();
        match ctx.commit(self.store, AppendRequest { streams, claims: vec![], idempotency: None }, answer).await {
            Ok((_, answer)) | Err(CommitError::Answered(answer)) => Ok(answer),
            Err(CommitError::Retry(e)) => Err(e.into()),
            Err(CommitError::Failed(e)) => Err(e),
        }
    }
}
