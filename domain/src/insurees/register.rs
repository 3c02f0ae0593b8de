//! RegisterInsuree: a new insuree, numbered with the oldest code reserved to who enrols them.

use careledger_events::Identifier;
use careledger_events::claims::Gender;
use careledger_events::codes::{CodeEvent, HolderType};
use careledger_events::insurees::{InsureeEvent, RegisteredInsuree};
use chrono::NaiveDate;
use uuid::Uuid;

use super::{Insuree, InsureeError, MAX_LOCATION, MAX_NAME, MAX_PHONE};
use crate::codes::{CodeBatch, CodeStatus};
use crate::{Ctx, check_text};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterInsuree {
    pub insuree_id: Uuid,
    pub last_name: String,
    pub other_names: String,
    pub birth_date: NaiveDate,
    pub gender: Gender,
    pub phone: Option<String>,
    /// The head of the family the insuree joins; none to head a family of its own.
    pub family_head: Option<Uuid>,
    pub location: Option<String>,
    /// Whose reserved codes the number is drawn from.
    pub holder_type: HolderType,
    pub holder_code: String,
    /// The ids other servers gave the insuree (an import's: the sender's id under its system).
    pub identifiers: Vec<Identifier>,
}

/// What registering decides: the code's assignment on its batch and the insuree's registration.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub code: CodeEvent,
    pub insuree: InsureeEvent,
}

impl Registration {
    /// The insurance number the insuree got.
    pub fn chfid(&self) -> &str {
        match &self.insuree {
            InsureeEvent::InsureeRegistered { insuree, .. } => &insuree.chfid,
            InsureeEvent::PolicyEnrolled { .. } => "",
        }
    }
}

fn text_ok(value: &str, max: usize) -> bool {
    check_text(value, max) && !value.chars().any(char::is_control)
}

fn phone_ok(phone: &str) -> bool {
    text_ok(phone, MAX_PHONE)
        && phone.chars().any(|c| c.is_ascii_digit())
        && phone.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c))
}

impl RegisterInsuree {
    /// The rules of the input and of the insuree's and family head's states, before a batch is
    /// looked at (so that a bad request is refused without touching the codes).
    pub fn check(&self, insuree: &Insuree, head: Option<&Insuree>, ctx: &Ctx) -> Result<(), InsureeError> {
        if !text_ok(&self.last_name, MAX_NAME) {
            return Err(InsureeError::InvalidLastName);
        }
        if !text_ok(&self.other_names, MAX_NAME) {
            return Err(InsureeError::InvalidOtherNames);
        }
        if self.phone.as_deref().is_some_and(|p| !phone_ok(p)) {
            return Err(InsureeError::InvalidPhone);
        }
        if self.location.as_deref().is_some_and(|l| !text_ok(l, MAX_LOCATION)) {
            return Err(InsureeError::InvalidLocation);
        }
        if !text_ok(&self.holder_code, 50) {
            return Err(InsureeError::InvalidHolderCode);
        }
        self.check_person(insuree, head, ctx)
    }

    /// The rules of the person, the insuree's state and the family head's.
    fn check_person(&self, insuree: &Insuree, head: Option<&Insuree>, ctx: &Ctx) -> Result<(), InsureeError> {
        let earliest = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(NaiveDate::MIN);
        if self.birth_date < earliest || self.birth_date > ctx.now.date_naive() {
            return Err(InsureeError::InvalidBirthDate);
        }
        if insuree.exists() {
            return Err(InsureeError::InsureeExists);
        }
        if self.family_head.is_some() {
            match head {
                Some(h) if h.is_head() => {}
                Some(h) if h.exists() => return Err(InsureeError::HeadNotHead),
                _ => return Err(InsureeError::UnknownFamilyHead),
            }
        }
        Ok(())
    }

    /// Registers the insuree with the oldest reserved code of `batch`, one of the holder's
    /// batches. [`InsureeError::NoReservedCodeInBatch`] when the batch has none left: the caller
    /// tries the holder's next batch, and answers [`InsureeError::NoCodesLeft`] after the last.
    pub fn decide(
        &self,
        insuree: &Insuree,
        head: Option<&Insuree>,
        batch: &CodeBatch,
        ctx: &Ctx,
    ) -> Result<Registration, InsureeError> {
        self.check(insuree, head, ctx)?;
        let batch_id = batch.batch_id.ok_or(InsureeError::NoReservedCodeInBatch)?;
        if batch.holder_type != Some(self.holder_type) || batch.holder_code != self.holder_code {
            return Err(InsureeError::HolderMismatch);
        }
        let chfid = batch.oldest_reserved().ok_or(InsureeError::NoReservedCodeInBatch)?;
        Ok(self.registration(batch_id, chfid, ctx))
    }

    /// Registers the insuree with `chfid`, a code `batch` holds reserved: the number a node gave
    /// the insuree offline, from the codes this server reserved to the node's holder, arriving
    /// with the node's sync. The holder is the batch's (the node drew only from its own).
    pub fn decide_code(
        &self,
        insuree: &Insuree,
        head: Option<&Insuree>,
        batch: &CodeBatch,
        chfid: &str,
        ctx: &Ctx,
    ) -> Result<Registration, InsureeError> {
        let code = || chfid.to_string();
        let (Some(batch_id), Some(slot), Some(holder_type)) = (batch.batch_id, batch.slot(chfid), batch.holder_type)
        else {
            return Err(InsureeError::UnknownCode { code: code() });
        };
        let command = RegisterInsuree { holder_type, holder_code: batch.holder_code.clone(), ..self.clone() };
        command.check(insuree, head, ctx)?;
        match slot.status {
            CodeStatus::Reserved => {}
            CodeStatus::Available => return Err(InsureeError::CodeNotReserved { code: code() }),
            CodeStatus::Assigned => return Err(InsureeError::CodeAssigned { code: code() }),
        }
        Ok(command.registration(batch_id, code(), ctx))
    }

    /// Registers an insuree the sync's master server numbered (`chfid`, a code of the master's
    /// pool this server never held): a node keeps the master's register to enter claims for its
    /// insurees. No code of this server is assigned, and the insuree has no holder here (an
    /// empty `holder_code`): the master assigned the number.
    pub fn decide_numbered_by_master(
        &self,
        insuree: &Insuree,
        head: Option<&Insuree>,
        chfid: &str,
        ctx: &Ctx,
    ) -> Result<InsureeEvent, InsureeError> {
        if !text_ok(chfid, 50) {
            return Err(InsureeError::UnknownCode { code: chfid.to_string() });
        }
        let command =
            RegisterInsuree { holder_type: HolderType::EnrolmentOfficer, holder_code: String::new(), ..self.clone() };
        command.check_person(insuree, head, ctx)?;
        Ok(command.registration(Uuid::nil(), chfid.to_string(), ctx).insuree)
    }

    fn registration(&self, batch_id: Uuid, chfid: String, ctx: &Ctx) -> Registration {
        Registration {
            code: CodeEvent::CodeAssigned {
                batch_id,
                code: chfid.clone(),
                insuree_id: self.insuree_id.to_string(),
                json_ext: None,
            },
            insuree: InsureeEvent::InsureeRegistered {
                insuree: RegisteredInsuree {
                    insuree_id: self.insuree_id,
                    chfid,
                    last_name: self.last_name.clone(),
                    other_names: self.other_names.clone(),
                    birth_date: self.birth_date,
                    gender: self.gender,
                    phone: self.phone.clone(),
                    family_head: self.family_head,
                    location: self.location.clone(),
                    holder_type: self.holder_type,
                    holder_code: self.holder_code.clone(),
                    identifiers: self.identifiers.clone(),
                },
                at: ctx.now,
            },
        }
    }
}
