//! Claim attachments (111010): add, update, delete; download (111001). A file is sent base64 in
//! the JSON body (`document`, at most `CARELEDGER_ATTACHMENT_MAX_BYTES` decoded); its bytes are
//! kept outside the log, content-addressed by their BLAKE2b-256 hash in `claim_attachment_files`,
//! before the event that names the hash is appended (bytes nobody names are harmless; an event
//! naming missing bytes cannot happen).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use blake2::{Blake2b, Digest, digest::consts::U32};
use careledger_domain::claims::{AttachmentChange, ChangeAttachment, ClaimError};
use careledger_events::claims::Attachment;
use careledger_projections::claims::ClaimQueries;
use careledger_projections::time::text;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::queries::visible_claim;
use super::{OnClaim, alone, counted, on_claim, on_one_claim, path_uuid};
use crate::auth::User;
use crate::handler::CommandCtx;
use crate::http::body::{Fields, JsonBody, Params};
use crate::http::envelope::{ApiError, Envelope};
use crate::http::read_after;
use crate::state::AppState;

/// Standard base64 (padding optional, whitespace ignored); None when it is not base64.
fn base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn hash(bytes: &[u8]) -> String {
    let mut hasher = Blake2b::<U32>::new();
    hasher.update(bytes);
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The fields of an add or update body; `document` decoded (and size-checked).
struct AttachmentFields {
    title: Option<String>,
    attachment_type: Option<String>,
    date: Option<chrono::NaiveDate>,
    url: Option<String>,
    filename: Option<String>,
    mime: Option<String>,
    document: Option<Vec<u8>>,
}

fn attachment_fields(body: &Map<String, Value>, adding: bool, max_bytes: usize) -> Result<AttachmentFields, ApiError> {
    let mut f = Fields::new(body);
    f.only(&["title", "type", "date", "url", "filename", "mime", "document"]);
    let title = f.string("title", adding, 255);
    let attachment_type = f.string("type", false, 50);
    let date = f.date("date", false);
    let url = f.string("url", false, 2000);
    let filename = f.string("filename", false, 255);
    let mime = f.string("mime", false, 100);
    let document = match body.get("document").and_then(Value::as_str) {
        None => {
            if body.get("document").is_some_and(|d| !d.is_null()) {
                f.reject("document", "cast", "expected base64 text");
            }
            None
        }
        Some(text) => match base64(text) {
            None => {
                f.reject("document", "format", "expected base64 text");
                None
            }
            Some(bytes) if bytes.len() > max_bytes => {
                f.reject("document", "length", format!("the file is larger than {max_bytes} bytes"));
                None
            }
            Some(bytes) => Some(bytes),
        },
    };
    if adding && url.is_none() && document.is_none() && f.is_valid() {
        f.reject("url", "required", "a url or a document is required");
    }
    f.finish()?;
    Ok(AttachmentFields { title, attachment_type, date, url, filename, mime, document })
}

/// Keeps the document's bytes; returns (hash, size).
async fn keep(state: &AppState, document: &Option<Vec<u8>>) -> Result<Option<(String, u64)>, ApiError> {
    let Some(bytes) = document else { return Ok(None) };
    let h = hash(bytes);
    ClaimQueries(state.store.db()).store_attachment_file(&h, bytes, &text(&chrono::Utc::now())).await?;
    Ok(Some((h, bytes.len() as u64)))
}

/// `POST /api/v1/claims/{uuid}/attachments` `{title, type, date, url | document, filename, mime}`
pub async fn add(
    State(state): State<AppState>,
    Path(uuid): Path<String>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("AddAttachment", async {
        user.require(state.config.permissions.of("update_claim"))?;
        let claim_id = path_uuid(&uuid, "uuid")?;
        let a = attachment_fields(&body, true, state.config.attachment_max_bytes)?;
        let path = format!("/api/v1/claims/{claim_id}/attachments");
        let ctx = CommandCtx::new("AddAttachment", user.actor(), &headers, &path, &bytes)?;
        let file = keep(&state, &a.document).await?;
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
        let command =
            ChangeAttachment { change: AttachmentChange::Add(attachment), facility: user.health_facility.clone() };
        on_claim(&state, OnClaim::new(claim_id, &ctx).creating(), alone(|c, d| command.decide(c, d))).await
    })
    .await
}

/// `PATCH /api/v1/claims/{uuid}/attachments/{id}`: the fields given replace the attachment's.
pub async fn update(
    State(state): State<AppState>,
    Path((uuid, id)): Path<(String, String)>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("UpdateAttachment", async {
        user.require(state.config.permissions.of("update_claim"))?;
        let claim_id = path_uuid(&uuid, "uuid")?;
        let attachment_id = path_uuid(&id, "id")?;
        let a = attachment_fields(&body, false, state.config.attachment_max_bytes)?;
        let path = format!("/api/v1/claims/{claim_id}/attachments/{attachment_id}");
        let file = keep(&state, &a.document).await?;
        let facility = user.health_facility.clone();
        let decide = |claim: &careledger_domain::claims::Claim, decision: &careledger_domain::Ctx| {
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
        on_one_claim(&state, &user, &headers, &bytes, "UpdateAttachment", claim_id, &path, decide).await
    })
    .await
}

/// `DELETE /api/v1/claims/{uuid}/attachments/{id}`
pub async fn delete(
    State(state): State<AppState>,
    Path((uuid, id)): Path<(String, String)>,
    user: User,
    headers: HeaderMap,
) -> Result<Envelope, ApiError> {
    counted("DeleteAttachment", async {
        user.require(state.config.permissions.of("update_claim"))?;
        let claim_id = path_uuid(&uuid, "uuid")?;
        let attachment_id = path_uuid(&id, "id")?;
        let path = format!("/api/v1/claims/{claim_id}/attachments/{attachment_id}");
        let command = ChangeAttachment {
            change: AttachmentChange::Delete(attachment_id),
            facility: user.health_facility.clone(),
        };
        on_one_claim(&state, &user, &headers, &[], "DeleteAttachment", claim_id, &path, |c, d| command.decide(c, d))
            .await
    })
    .await
}

/// `GET /api/v1/claims/{uuid}/attachments/{id}`: the file's bytes, or a redirect to its URL.
pub async fn download(
    State(state): State<AppState>,
    Path((uuid, id)): Path<(String, String)>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    user.require(state.config.permissions.of("read_claims"))?;
    let attachment_id = path_uuid(&id, "id")?.to_string();
    let mut p = Params::new(&params);
    read_after(&state, &mut p).await?;
    p.finish()?;
    let claim = visible_claim(&state, &user, &uuid).await?;
    let a = claim
        .attachments
        .into_iter()
        .find(|a| a.attachment_id == attachment_id)
        .ok_or_else(|| ApiError::not_found("Attachment not found"))?;
    if let Some(h) = &a.hash {
        let bytes = ClaimQueries(state.store.db())
            .attachment_file(h)
            .await?
            .ok_or_else(|| ApiError::internal("the attachment's file is missing"))?;
        let mime = a.mime.unwrap_or_else(|| "application/octet-stream".into());
        let disposition =
            format!("attachment; filename=\"{}\"", a.filename.unwrap_or_else(|| "attachment".into()).replace('"', ""));
        return Ok(([(header::CONTENT_TYPE, mime), (header::CONTENT_DISPOSITION, disposition)], Body::from(bytes))
            .into_response());
    }
    match a.url {
        Some(url) => Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response()),
        None => Err(ApiError::not_found("The attachment has no file")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes_standard_text() {
        assert_eq!(super::base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(super::base64("aGVs\nbG8").unwrap(), b"hello");
        assert!(super::base64("a$b").is_none());
    }
}
