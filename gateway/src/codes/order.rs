//! The card printer's order (seed insuree-code-management, "insuree-qrcode") for a batch or a
//! reservation: an XLSX list of CHFIDs and image file names, a ZIP of one QR code PNG per CHFID,
//! and the one-column CSV export. Each streams: the codes are read a page at a time by a task and
//! written by careledger-documents on a blocking thread into the response as it goes.

use std::collections::HashMap;
use std::io::{self, Write};

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use careledger_documents::printer_order;
use careledger_projections::codes::{CodeQueries, CodeSelection, SelectionCursor};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::queries::{batch_id_of, status_param};
use crate::auth::User;
use crate::http::body::Params;
use crate::http::envelope::{ApiError, Invalid};
use crate::http::read_after;
use crate::http::stream::blocking_body;
use crate::state::AppState;

/// Codes read a query at a time: two pages at most wait for the writer.
const PAGE: i64 = 5_000;

#[derive(Debug, Clone, Copy)]
enum Document {
    Xlsx,
    QrZip,
    Csv,
}

impl Document {
    /// The document a path's last segment names; None: no such resource (404).
    fn named(name: &str, csv_too: bool) -> Option<Document> {
        match name {
            "order.xlsx" => Some(Document::Xlsx),
            "qr-codes.zip" => Some(Document::QrZip),
            "export.csv" if csv_too => Some(Document::Csv),
            _ => None,
        }
    }
}

/// `GET /api/v1/code-batches/{batch_id}/{order.xlsx | qr-codes.zip | export.csv}?status=`
pub async fn batch(
    State(state): State<AppState>,
    Path((batch_id, document)): Path<(String, String)>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let document = Document::named(&document, true).ok_or_else(|| ApiError::not_found("No such resource"))?;
    user.require(state.config.permissions.of(careledger_app::Operation::ReadCodes))?;
    let batch_id = batch_id_of(&batch_id)?;
    let mut p = Params::new(&params);
    let status = status_param(&mut p);
    read_after(&state, &mut p).await?;
    p.finish()?;
    if CodeQueries(state.store.db()).batch(&batch_id).await?.is_none() {
        return Err(ApiError::not_found("Batch not found"));
    }
    let name = format!("codes-{batch_id}");
    respond(&state, CodeSelection::Batch { batch_id, status }, document, &name).await
}

/// `GET /api/v1/codes/reservations/{reservation_id}/{order.xlsx | qr-codes.zip}`
pub async fn reservation(
    State(state): State<AppState>,
    Path((reservation_id, document)): Path<(String, String)>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let document = Document::named(&document, false).ok_or_else(|| ApiError::not_found("No such resource"))?;
    user.require(state.config.permissions.of(careledger_app::Operation::ReadCodes))?;
    let reservation_id = Uuid::parse_str(&reservation_id)
        .map_err(|_| ApiError::invalid(vec![Invalid::path("reservation_id", "format", "expected a UUID")]))?
        .to_string();
    let mut p = Params::new(&params);
    read_after(&state, &mut p).await?;
    p.finish()?;
    if !CodeQueries(state.store.db()).reservation_exists(&reservation_id).await? {
        return Err(ApiError::not_found("Reservation not found"));
    }
    let name = format!("reservation-{reservation_id}");
    respond(&state, CodeSelection::Reservation(reservation_id), document, &name).await
}

async fn respond(
    state: &AppState,
    selection: CodeSelection,
    document: Document,
    name: &str,
) -> Result<Response, ApiError> {
    let codes = codes_of(state, selection).await?;
    let (content_type, file, body) = match document {
        Document::Xlsx => (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            format!("{name}-order.xlsx"),
            blocking_body("printer order (XLSX)", move |out| {
                printer_order::write_xlsx(codes, out).map(drop).map_err(|e| e.to_string())
            }),
        ),
        Document::QrZip => (
            "application/zip",
            format!("{name}-qr-codes.zip"),
            blocking_body("printer order (QR codes)", move |out| {
                printer_order::write_qr_zip(codes, out).map(drop).map_err(|e| e.to_string())
            }),
        ),
        Document::Csv => (
            "text/csv; charset=utf-8",
            format!("{name}.csv"),
            blocking_body("codes (CSV)", move |out| {
                let write = || -> io::Result<()> {
                    out.write_all(b"CHFID\n")?;
                    for code in codes {
                        out.write_all(code?.as_bytes())?;
                        out.write_all(b"\n")?;
                    }
                    Ok(())
                };
                write().map_err(|e| e.to_string())
            }),
        ),
    };
    let disposition = format!("attachment; filename=\"{file}\"");
    Ok(([(header::CONTENT_TYPE, content_type.to_string()), (header::CONTENT_DISPOSITION, disposition)], body)
        .into_response())
}

/// The codes of `selection` in its order, for a blocking writer. The first page is read before
/// the answer starts, so that a database that cannot be read is an error in the JSON envelope;
/// then a task reads the others a page at a time and hands them over, and says when it is done:
/// codes that stop coming without that (the task failed, or panicked) end in an error, never
/// in a shorter document that looks whole. A writer that stops (the client went away) stops the
/// task.
async fn codes_of(
    state: &AppState,
    selection: CodeSelection,
) -> Result<impl Iterator<Item = io::Result<String>> + Send + 'static, ApiError> {
    let db = state.store.db().clone();
    let mut cursor = SelectionCursor::default();
    let first = CodeQueries(&db).selection_page(&selection, &mut cursor, PAGE).await?;
    // pages, then `None` once every page was sent
    let (tx, mut rx) = mpsc::channel::<io::Result<Option<Vec<String>>>>(2);
    tokio::spawn(async move {
        if !first.is_empty() && tx.send(Ok(Some(first))).await.is_err() {
            return;
        }
        while !cursor.done {
            match CodeQueries(&db).selection_page(&selection, &mut cursor, PAGE).await {
                // a window with none of the codes asked for (a status, a node's gaps)
                Ok(codes) if codes.is_empty() => {
                    if tx.is_closed() {
                        return;
                    }
                }
                Ok(codes) => {
                    if tx.send(Ok(Some(codes))).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(io::Error::other(format!("reading the codes: {e}")))).await;
                    return;
                }
            }
        }
        let _ = tx.send(Ok(None)).await;
    });
    let mut ended = false;
    let pages = std::iter::from_fn(move || {
        if ended {
            return None;
        }
        let page = rx.blocking_recv().unwrap_or_else(|| Err(io::Error::other("the reading of the codes stopped")));
        ended = !matches!(page, Ok(Some(_)));
        match page {
            Ok(None) => None,
            page => Some(page.map(Option::unwrap_or_default)),
        }
    });
    Ok(pages.flat_map(|page| match page {
        Ok(codes) => codes.into_iter().map(Ok).collect::<Vec<_>>(),
        Err(e) => vec![Err(e)],
    }))
}
