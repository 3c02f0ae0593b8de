//! The commands on the code pool and what they decide.

use std::collections::HashSet;

use careledger_events::codes::{CODES_PER_CHUNK, CodeEvent, CodeFormat, HolderType};
use rand::SeedableRng;
use uuid::Uuid;

use super::batch::{CodeBatch, CodeStatus};
use super::error::CodeError;
use super::format::CodeFormatExt;
use crate::Ctx;
use crate::check_text;

/// A batch may use at most this share of its format's code space, so codes stay hard to guess
/// and random drawing stays fast.
const MAX_SPACE_SHARE: u64 = 10;

/// Pre-generate `number` codes for a holder (openIMIS `generateInsuranceCodes`).
#[derive(Debug, Clone)]
pub struct GenerateCodes {
    pub batch_id: Uuid,
    pub holder_type: HolderType,
    pub holder_code: String,
    pub number: u32,
    pub format: CodeFormat,
    /// Codes other batches already hold: the store reports them when an append collides, and the
    /// handler decides again without them.
    pub avoid: HashSet<String>,
    /// How many codes of the format's space are issued already (as the read model counts them):
    /// a request the rest of the space cannot hold is refused with how many remain, instead of
    /// drawing until the attempts run out.
    pub issued: u64,
}

impl GenerateCodes {
    pub fn decide(&self, state: &CodeBatch, ctx: &Ctx) -> Result<Vec<CodeEvent>, CodeError> {
        if state.exists() {
            return Err(CodeError::BatchExists(self.batch_id));
        }
        if !check_text(&self.holder_code, 50) {
            return Err(CodeError::InvalidHolderCode);
        }
        if self.number == 0 {
            return Err(CodeError::InvalidNumber);
        }
        self.format.check()?;
        let remaining = self.format.space().saturating_sub(self.issued);
        if u64::from(self.number) > remaining {
            return Err(CodeError::SpaceExhausted { requested: self.number.into(), remaining });
        }
        let limit = self.format.space() / MAX_SPACE_SHARE;
        if u64::from(self.number) > limit {
            return Err(CodeError::CodeSpaceTooSmall { requested: self.number.into(), limit });
        }
        let codes = self.draw_codes(ctx.seed)?;
        let mut events = Vec::with_capacity(1 + codes.len().div_ceil(CODES_PER_CHUNK));
        events.push(CodeEvent::CodeBatchGenerated {
            batch_id: self.batch_id,
            holder_type: self.holder_type,
            holder_code: self.holder_code.clone(),
            number: self.number,
            format: self.format.clone(),
            created_at: ctx.now,
        });
        events.extend(codes.chunks(CODES_PER_CHUNK).enumerate().map(|(i, chunk)| CodeEvent::CodesGenerated {
            batch_id: self.batch_id,
            chunk: i as u32,
            codes: chunk.to_vec(),
        }));
        Ok(events)
    }

    fn draw_codes(&self, seed: u64) -> Result<Vec<String>, CodeError> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let wanted = self.number as usize;
        let mut seen: HashSet<u64> = HashSet::with_capacity(wanted);
        let mut codes = Vec::with_capacity(wanted);
        // The space is at least ten times the batch, so a draw fails with probability <= 1/10
        // plus the share `avoid` holds; this bound is never reached unless the space is full.
        let mut attempts = 0usize;
        while codes.len() < wanted {
            attempts += 1;
            if attempts > 50 * wanted + 1000 {
                return Err(CodeError::CodeSpaceTooSmall { requested: self.number.into(), limit: codes.len() as u64 });
            }
            let number = self.format.random_number(&mut rng);
            if !seen.insert(number) {
                continue;
            }
            let code = self.format.render(number);
            if !self.avoid.contains(&code) {
                codes.push(code);
            }
        }
        Ok(codes)
    }
}

/// Reserve codes to send to their holder: the oldest available codes of the given batches, in
/// the order the batches are given.
#[derive(Debug, Clone)]
pub struct ReserveCodes {
    pub reservation_id: Uuid,
    pub holder_type: HolderType,
    pub holder_code: String,
    pub number: usize,
    /// The server the codes are sent to (an offline node's FHIR system), if not this one.
    pub for_server: Option<String>,
}

impl ReserveCodes {
    /// All or nothing: the events for each batch that gives codes, or why none can be reserved.
    pub fn decide(&self, batches: &[&CodeBatch]) -> Result<Vec<(Uuid, Vec<CodeEvent>)>, CodeError> {
        if self.number == 0 {
            return Err(CodeError::InvalidNumber);
        }
        if !check_text(&self.holder_code, 50) {
            return Err(CodeError::InvalidHolderCode);
        }
        let mut plan = Vec::new();
        let mut remaining = self.number;
        for batch in batches {
            let Some(batch_id) = batch.batch_id else { return Err(CodeError::BatchNotFound) };
            if batch.holder_type != Some(self.holder_type) || batch.holder_code != self.holder_code {
                return Err(CodeError::HolderMismatch);
            }
            if remaining == 0 || batch.available_count() == 0 {
                continue;
            }
            let codes = batch.oldest_available(remaining);
            remaining -= codes.len();
            plan.push((batch_id, codes));
        }
        if remaining > 0 {
            return Err(CodeError::NotEnoughCodes { requested: self.number, available: self.number - remaining });
        }
        Ok(plan
            .into_iter()
            .map(|(batch_id, codes)| {
                let event = CodeEvent::CodesReserved {
                    batch_id,
                    reservation_id: self.reservation_id,
                    holder_type: self.holder_type,
                    holder_code: self.holder_code.clone(),
                    codes,
                    for_server: self.for_server.clone(),
                };
                (batch_id, vec![event])
            })
            .collect())
    }
}

/// Codes the central server reserved to a holder for this server (an offline node), received
/// with the sync: this server's copy of the batch (created by the first reservation it receives)
/// holds exactly the codes sent to it, reserved to the holder, so that it hands out those and no
/// others. Receiving the same reservation again decides nothing.
#[derive(Debug, Clone)]
pub struct ReceiveReservation {
    pub batch_id: Uuid,
    pub reservation_id: Uuid,
    pub holder_type: HolderType,
    pub holder_code: String,
    pub format: CodeFormat,
    pub codes: Vec<String>,
}

impl ReceiveReservation {
    pub fn decide(&self, state: &CodeBatch, ctx: &Ctx) -> Result<Vec<CodeEvent>, CodeError> {
        if self.codes.is_empty() || self.codes.len() > CODES_PER_CHUNK {
            return Err(CodeError::InvalidNumber);
        }
        if !check_text(&self.holder_code, 50) {
            return Err(CodeError::InvalidHolderCode);
        }
        self.format.check()?;
        let distinct: HashSet<&String> = self.codes.iter().collect();
        if distinct.len() != self.codes.len() || self.codes.iter().any(|c| !self.format.is_valid(c)) {
            return Err(CodeError::InvalidCode);
        }
        let held = self.codes.iter().filter(|c| state.slot(c).is_some()).count();
        if state.exists() {
            if state.holder_type != Some(self.holder_type) || state.holder_code != self.holder_code {
                return Err(CodeError::HolderMismatch);
            }
            if state.format != self.format {
                return Err(CodeError::InvalidCode);
            }
            if held == self.codes.len() {
                return Ok(vec![]);
            }
            if held > 0 {
                return Err(CodeError::InvalidCode);
            }
        }
        let mut events = Vec::with_capacity(3);
        if !state.exists() {
            events.push(CodeEvent::CodeBatchGenerated {
                batch_id: self.batch_id,
                holder_type: self.holder_type,
                holder_code: self.holder_code.clone(),
                number: self.codes.len() as u32,
                format: self.format.clone(),
                created_at: ctx.now,
            });
        }
        events.push(CodeEvent::CodesGenerated {
            batch_id: self.batch_id,
            chunk: state.chunks,
            codes: self.codes.clone(),
        });
        events.push(CodeEvent::CodesReserved {
            batch_id: self.batch_id,
            reservation_id: self.reservation_id,
            holder_type: self.holder_type,
            holder_code: self.holder_code.clone(),
            codes: self.codes.clone(),
            for_server: None,
        });
        Ok(events)
    }
}

/// The code now identifies the insuree (openIMIS `assignCode`).
#[derive(Debug, Clone)]
pub struct AssignCode {
    pub code: String,
    pub insuree_id: String,
    pub json_ext: Option<serde_json::Value>,
}

impl AssignCode {
    /// Assigning a code to the insuree it already belongs to decides nothing (idempotent).
    pub fn decide(&self, state: &CodeBatch) -> Result<Vec<CodeEvent>, CodeError> {
        if !check_text(&self.insuree_id, 100) {
            return Err(CodeError::InvalidInsuree);
        }
        let batch_id = state.batch_id.ok_or(CodeError::UnknownCode)?;
        let slot = state.slot(&self.code).ok_or(CodeError::UnknownCode)?;
        match (&slot.status, &slot.insuree_id) {
            (CodeStatus::Assigned, Some(current)) if *current == self.insuree_id => Ok(vec![]),
            (CodeStatus::Assigned, _) => Err(CodeError::AlreadyAssigned),
            _ => Ok(vec![CodeEvent::CodeAssigned {
                batch_id,
                code: self.code.clone(),
                insuree_id: self.insuree_id.clone(),
                json_ext: self.json_ext.clone(),
            }]),
        }
    }
}

/// Links the code to a payment control number (CN).
#[derive(Debug, Clone)]
pub struct LinkControlNumber {
    pub code: String,
    pub control_number: String,
}

impl LinkControlNumber {
    /// Linking the CN the code already has decides nothing; another CN is refused, because a CN
    /// once sent to a payer must keep pointing at the same code.
    pub fn decide(&self, state: &CodeBatch) -> Result<Vec<CodeEvent>, CodeError> {
        if !check_text(&self.control_number, 50) {
            return Err(CodeError::InvalidControlNumber);
        }
        let batch_id = state.batch_id.ok_or(CodeError::UnknownCode)?;
        let slot = state.slot(&self.code).ok_or(CodeError::UnknownCode)?;
        match &slot.control_number {
            Some(cn) if *cn == self.control_number => Ok(vec![]),
            Some(_) => Err(CodeError::ControlNumberAlreadyLinked),
            None => Ok(vec![CodeEvent::ControlNumberLinked {
                batch_id,
                code: self.code.clone(),
                control_number: self.control_number.clone(),
            }]),
        }
    }
}

#[cfg(test)]
mod tests;
