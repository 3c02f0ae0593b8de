//! Claim attachments (111010): add, update, delete; download (111001).
//!
//! What a request may attach, and why:
//! - A file goes base64 in the JSON body (`document`): standard base64 (RFC 4648 §4) with its
//!   padding, decoded strictly by the `base64` crate, of 1 to `CARELEDGER_ATTACHMENT_MAX_BYTES`
//!   bytes. ASCII whitespace is skipped first, as MIME senders wrap base64 in lines; anything
//!   else that is not base64 (text after the padding, a stray character) refuses the whole
//!   `document` (422 `$.document`) rather than storing the part before it as if it were the file,
//!   and an empty file is refused as no file at all.
//! - A `url` must be an absolute `http` or `https` URL with a host (422 `$.url`): it is answered
//!   as a redirect, and a `javascript:` or `data:` URL there would be the caller's browser
//!   running what a claim's author wrote. A URL of any other scheme written to the log before this
//!   check is refused at download (409), never redirected to.
//!
//! The commands run in `careledger_app::claims`, which keeps a document's bytes (content-addressed
//! by their BLAKE2b-256 hash, outside the log, and only for a claim the caller may change) before
//! the event that names them is appended.
//!
//! A download is served with `X-Content-Type-Options: nosniff` (a browser keeps the type the
//! attachment declares instead of guessing, say, HTML from its bytes) and `Content-Disposition:
//! attachment` naming the file twice (RFC 6266): `filename*` is the name itself, UTF-8
//! percent-encoded (RFC 5987), `filename` an ASCII fallback for older clients in which quotes,
//! backslashes, `%`, control characters and non-ASCII characters are `_`, so that no file name
//! can end the quoted string or the header.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use careledger_app::claims::AttachmentInput;
use careledger_projections::claims::ClaimQueries;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

use super::queries::visible_claim;
use super::{context, counted, path_uuid};
use crate::auth::User;
use crate::handler::{canonical, command_ctx};
use crate::http::body::{Fields, JsonBody, Params};
use crate::http::envelope::{ApiError, Envelope};
use crate::http::read_after;
use crate::state::AppState;

/// The file of a `document`: standard base64 with the padding it requires, decoded strictly.
/// ASCII whitespace (space, tab, CR, LF, form feed) is removed first, and nothing else: MIME
/// senders break base64 into lines of 76, and a line break carries no data.
fn decode_document(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    if text.bytes().any(|b| b.is_ascii_whitespace()) {
        let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        return STANDARD.decode(compact);
    }
    STANDARD.decode(text)
}

/// An absolute `http` or `https` URL with a host, as RFC 3986 writes one; None for anything else.
/// What a URL parser would silently repair is refused instead (whitespace and control characters
/// it drops or encodes, a backslash it reads as a slash, `http:host` without its `//`,
/// `http:///host` with one too many), so that the address a download redirects to (the parsed
/// URL, which is ASCII) is the one any reader of the stored text takes it for.
fn web_url(text: &str) -> Option<url::Url> {
    if text.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\') {
        return None;
    }
    let after = |prefix: &str| {
        text.get(..prefix.len()).filter(|p| p.eq_ignore_ascii_case(prefix)).and_then(|_| text.get(prefix.len()..))
    };
    // the authority right after the `//`: `http:///host` is no host
    let authority = after("http://").or_else(|| after("https://"))?;
    if authority.is_empty() || authority.starts_with('/') {
        return None;
    }
    let url = url::Url::parse(text).ok()?;
    let web = matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty());
    web.then_some(url)
}

/// RFC 5987's `attr-char`: ALPHA / DIGIT / "!" / "#" / "$" / "&" / "+" / "-" / "." / "^" / "_" /
/// "`" / "|" / "~"; every other byte of the UTF-8 name is percent-encoded.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `Content-Disposition` of a download (RFC 6266): the name as `filename*` (UTF-8,
/// percent-encoded), and an ASCII `filename` fallback holding only printable ASCII other than
/// `"`, `\` and `%` (RFC 6266 appendix D: some clients decode `%xx` there).
fn content_disposition(filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| if (c.is_ascii_graphic() || c == ' ') && !matches!(c, '"' | '\\' | '%') { c } else { '_' })
        .collect();
    let encoded = utf8_percent_encode(filename, ATTR_CHAR);
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// The fields of an add or update body; `document` decoded (and size-checked).
fn attachment_fields(body: &Map<String, Value>, adding: bool, max_bytes: usize) -> Result<AttachmentInput, ApiError> {
    let mut f = Fields::new(body);
    f.only(&["title", "type", "date", "url", "filename", "mime", "document"]);
    let title = f.string("title", adding, 255);
    let attachment_type = f.string("type", false, 50);
    let date = f.date("date", false);
    let url = f.string("url", false, 2000);
    if url.as_deref().is_some_and(|u| web_url(u).is_none()) {
        f.reject("url", "format", "expected an absolute http or https URL with a host");
    }
    let filename = f.string("filename", false, 255);
    let mime = f.string("mime", false, 100);
    let document = match body.get("document").and_then(Value::as_str) {
        None => {
            if body.get("document").is_some_and(|d| !d.is_null()) {
                f.reject("document", "cast", "expected base64 text");
            }
            None
        }
        Some(text) => match decode_document(text) {
            Err(_) => {
                f.reject("document", "format", "expected standard base64 (RFC 4648) with its padding");
                None
            }
            Ok(bytes) if bytes.is_empty() => {
                f.reject("document", "length", "the file is empty");
                None
            }
            Ok(bytes) if bytes.len() > max_bytes => {
                f.reject("document", "length", format!("the file is larger than {max_bytes} bytes"));
                None
            }
            Ok(bytes) => Some(bytes),
        },
    };
    if adding && url.is_none() && document.is_none() && f.is_valid() {
        f.reject("url", "required", "a url or a document is required");
    }
    f.finish()?;
    Ok(AttachmentInput { title, attachment_type, date, url, filename, mime, document })
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
        let path = format!("/api/v1/claims/{}/attachments", canonical(&uuid));
        let ctx = command_ctx(&state, "AddAttachment", &user, &headers, &path, &bytes)?;
        let claim_id = path_uuid(&uuid, "uuid")?;
        let input = attachment_fields(&body, true, state.config.attachment_max_bytes)?;
        Ok(context(&state).add_attachment(&ctx, claim_id, input).await?.into())
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
        let path = format!("/api/v1/claims/{}/attachments/{}", canonical(&uuid), canonical(&id));
        let ctx = command_ctx(&state, "UpdateAttachment", &user, &headers, &path, &bytes)?;
        let claim_id = path_uuid(&uuid, "uuid")?;
        let attachment_id = path_uuid(&id, "id")?;
        let input = attachment_fields(&body, false, state.config.attachment_max_bytes)?;
        Ok(context(&state).update_attachment(&ctx, claim_id, attachment_id, input).await?.into())
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
        let path = format!("/api/v1/claims/{}/attachments/{}", canonical(&uuid), canonical(&id));
        let ctx = command_ctx(&state, "DeleteAttachment", &user, &headers, &path, &[])?;
        let claim_id = path_uuid(&uuid, "uuid")?;
        let attachment_id = path_uuid(&id, "id")?;
        Ok(context(&state).delete_attachment(&ctx, claim_id, attachment_id).await?.into())
    })
    .await
}

/// `GET /api/v1/claims/{uuid}/attachments/{id}`: the file's bytes, or a redirect to its URL (an
/// `http` or `https` one only: see the module's comment).
pub async fn download(
    State(state): State<AppState>,
    Path((uuid, id)): Path<(String, String)>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    user.require(state.config.permissions.of(careledger_app::Operation::ReadClaims))?;
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
        // a declared type that is no header value is no type at all
        let mime = a
            .mime
            .as_deref()
            .and_then(|m| HeaderValue::from_str(m).ok())
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        let disposition = content_disposition(a.filename.as_deref().unwrap_or("attachment"));
        let headers = [
            (header::CONTENT_TYPE, mime),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).map_err(|e| ApiError::internal(e.to_string()))?,
            ),
        ];
        return Ok((headers, Body::from(bytes)).into_response());
    }
    match a.url {
        // the parsed URL as the `url` crate writes it: ASCII, percent-encoded, fit for a header
        Some(url) => match web_url(&url) {
            Some(target) => Ok((StatusCode::FOUND, [(header::LOCATION, target.as_str())]).into_response()),
            None => Err(ApiError::conflict(
                "The attachment's URL is not an http or https URL and is not served; replace it with one that is",
            )),
        },
        None => Err(ApiError::not_found("The attachment has no file")),
    }
}

#[cfg(test)]
mod tests {
    use super::{content_disposition, decode_document, web_url};

    #[test]
    fn documents_decode_strictly() {
        assert_eq!(decode_document("aGVsbG8=").unwrap(), b"hello");
        // line breaks and spaces, as MIME senders wrap base64, are skipped
        assert_eq!(decode_document("aGVs\r\nbG8=\n").unwrap(), b"hello");
        assert_eq!(decode_document(" aGVs bG8= ").unwrap(), b"hello");
        assert!(decode_document("").unwrap().is_empty());
        for bad in ["aGVsbG8=junk!!", "aGVsbG8", "a$b", "aGVsbG8==", "aGVsbG9=", "aGVs\u{a0}bG8=", "aGVsbG8=\0"] {
            assert!(decode_document(bad).is_err(), "{bad:?} decoded");
        }
    }

    #[test]
    fn only_web_urls_are_kept() {
        for good in ["https://example.org/r.pdf", "http://example.org", "HTTPS://Example.org/a?b=c#d"] {
            assert!(web_url(good).is_some(), "{good} refused");
        }
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox(1)",
            "file:///etc/passwd",
            "ftp://example.org/x",
            "//example.org/x",
            "/relative",
            "u",
            "http:example.org",
            "http:///x",
            "https://",
            "java\nscript:alert(1)",
            "http://exa mple.org",
            "https://example.org\\@evil.example",
            "https://example.org/\u{7}",
        ] {
            assert!(web_url(bad).is_none(), "{bad:?} kept");
        }
    }

    #[test]
    fn dispositions_name_the_file_twice() {
        assert_eq!(
            content_disposition("invoice.txt"),
            "attachment; filename=\"invoice.txt\"; filename*=UTF-8''invoice.txt"
        );
        assert_eq!(
            content_disposition("Счёт 1.pdf"),
            "attachment; filename=\"____ 1.pdf\"; filename*=UTF-8''%D0%A1%D1%87%D1%91%D1%82%201.pdf"
        );
        assert_eq!(
            content_disposition("a\"b\\c%41\r\nd.txt"),
            "attachment; filename=\"a_b_c_41__d.txt\"; filename*=UTF-8''a%22b%5Cc%2541%0D%0Ad.txt"
        );
    }
}
