//! Claim attachments (111010): add, update, delete.
//!
//! The bytes of a document are kept outside the log, content-addressed by their BLAKE2b-256 hash
//! in `claim_attachment_files`, before the event that names the hash is appended: an event naming
//! missing bytes cannot happen. They are kept only once the claim is found, under its lock and as
//! the log holds it, to be one the caller may change (it exists, is not deleted, and is of the
//! caller's health facility; for an update, has the attachment): a request the command would
//! refuse stores nothing, so unknown claim ids or another facility's claims cannot be used to fill
//! the table. Bytes nobody names are harmless, which is all a claim deleted between that check
//! and the append can leave. What a transport may accept as a document or a URL is its own
//! (the gateway's `claims/attachments.rs` says why).

use blake2::{Blake2b, Digest, digest::consts::U32};
use careledger_domain::Ctx;
use careledger_domain::claims::{AttachmentChange, ChangeAttachment, Claim, ClaimError};
use careledger_events::claims::{Attachment, claim_stream};
use careledger_projections::claims::ClaimQueries;
use careledger_projections::time::text;
use chrono::NaiveDate;
use uuid::Uuid;

use super::{Claims, OnClaim, alone, refused};
use crate::{Answer, AppError, CommandCtx};

/// An attachment's fields as a transport read them: for an add, `title` and a `url` or a
/// `document`; for an update, the fields to replace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachmentInput {
    pub title: Option<String>,
    pub attachment_type: Option<String>,
    pub date: Option<NaiveDate>,
    pub url: Option<String>,
    pub filename: Option<String>,
    pub mime: Option<String>,
    /// The file's bytes (decoded and size-checked by the transport).
    pub document: Option<Vec<u8>>,
}

/// The key a document's bytes are kept under: their BLAKE2b-256 hash, in hex.
fn attachment_hash(bytes: &[u8]) -> String {
    let mut hasher = Blake2b::<U32>::new();
    hasher.update(bytes);
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Claims<'_> {
    /// What the command would refuse about the claim itself, checked before any bytes are kept:
    /// 404 for an unknown or deleted claim (or, given `attachment`, one without it), 403 for
    /// another facility's. The claim is read under its lock as the log holds it, as the command
    /// decides.
    async fn check_claim(&self, ctx: &CommandCtx, claim_id: Uuid, attachment: Option<Uuid>) -> Result<(), AppError> {
        let held = self.claims.lock(self.store, &claim_stream(claim_id)).await?;
        let facts = held.state.visible_to(ctx.caller.health_facility.as_deref()).map_err(refused)?;
        if attachment.is_some_and(|id| !facts.attachments.iter().any(|a| a.attachment_id == id)) {
            return Err(refused(ClaimError::AttachmentNotFound));
        }
        Ok(())
    }

    /// Keeps a document's bytes once the claim is found to be one the caller may change; returns
    /// (hash, size), or the first answer of a repeated idempotency key.
    async fn keep(
        &self,
        ctx: &CommandCtx,
        claim_id: Uuid,
        attachment: Option<Uuid>,
        document: &Option<Vec<u8>>,
    ) -> Result<Result<Option<(String, u64)>, Answer>, AppError> {
        let Some(bytes) = document else { return Ok(Ok(None)) };
        // a repeat answers as the first time (which kept the bytes), whatever the claim is now
        if let Some(answer) = ctx.earlier_answer(self.store).await? {
            return Ok(Err(answer));
        }
        self.check_claim(ctx, claim_id, attachment).await?;
        let hash = attachment_hash(bytes);
        ClaimQueries(self.store.db()).store_attachment_file(&hash, bytes, &text(&chrono::Utc::now())).await?;
        Ok(Ok(Some((hash, bytes.len() as u64))))
    }

    /// AddAttachment: a new attachment of the claim (201).
    pub async fn add_attachment(
        &self,
        ctx: &CommandCtx,
        claim_id: Uuid,
        a: AttachmentInput,
    ) -> Result<Answer, AppError> {
        let file = match self.keep(ctx, claim_id, None, &a.document).await? {
            Ok(file) => file,
            Err(earlier) => return Ok(earlier),
        };
        let attachment = Attachment {
            attachment_id: Uuid::now_v7(),
            title: a.title.unwrap_or_default(),
            attachment_type: a.attachment_type,
            date: a.date,
            url: a.url,
            filename: a.filename,
            mime: a.mime,
            hash: file.as_ref().map(|(h, _)| h.clone()),
            size: file.map(|(_, s)| s),
        };
        let command = ChangeAttachment {
            change: AttachmentChange::Add(attachment),
            facility: ctx.caller.health_facility.clone(),
        };
        self.on_claim(OnClaim::new(claim_id, ctx).creating(), alone(|c, d| command.decide(c, d))).await
    }

    /// UpdateAttachment: the fields given replace the attachment's.
    pub async fn update_attachment(
        &self,
        ctx: &CommandCtx,
        claim_id: Uuid,
        attachment_id: Uuid,
        a: AttachmentInput,
    ) -> Result<Answer, AppError> {
        let file = match self.keep(ctx, claim_id, Some(attachment_id), &a.document).await? {
            Ok(file) => file,
            Err(earlier) => return Ok(earlier),
        };
        let facility = ctx.caller.health_facility.clone();
        let decide = |claim: &Claim, decision: &Ctx| {
            let facts = claim.visible_to(facility.as_deref())?;
            let old = facts.attachments.iter().find(|x| x.attachment_id == attachment_id);
            let old = old.ok_or(ClaimError::AttachmentNotFound)?;
            let new = Attachment {
                attachment_id,
                title: a.title.clone().unwrap_or_else(|| old.title.clone()),
                attachment_type: a.attachment_type.clone().or_else(|| old.attachment_type.clone()),
                date: a.date.or(old.date),
                url: a.url.clone().or_else(|| old.url.clone()),
                filename: a.filename.clone().or_else(|| old.filename.clone()),
                mime: a.mime.clone().or_else(|| old.mime.clone()),
                hash: file.as_ref().map(|(h, _)| h.clone()).or_else(|| old.hash.clone()),
                size: file.as_ref().map(|(_, s)| *s).or(old.size),
            };
            ChangeAttachment { change: AttachmentChange::Update(new), facility: facility.clone() }
                .decide(claim, decision)
        };
        self.on_claim(OnClaim::new(claim_id, ctx), alone(decide)).await
    }

    /// DeleteAttachment.
    pub async fn delete_attachment(
        &self,
        ctx: &CommandCtx,
        claim_id: Uuid,
        attachment_id: Uuid,
    ) -> Result<Answer, AppError> {
        let command = ChangeAttachment {
            change: AttachmentChange::Delete(attachment_id),
            facility: ctx.caller.health_facility.clone(),
        };
        self.on_one_claim(ctx, claim_id, |c, d| command.decide(c, d)).await
    }
}
