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

/// `GET /api/v1/code-batches/{batch_id}/order.xlsx?status=`
pub async fn batch_xlsx(
    s: State<AppState>,
    id: Path<String>,
    user: User,
    q: Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    batch(s, id, user, q, Document::Xlsx).await
}

/// `GET /api/v1/code-batches/{batch_id}/qr-codes.zip?status=`
pub async fn batch_qr_zip(
    s: State<AppState>,
    id: Path<String>,
    user: User,
    q: Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    batch(s, id, user, q, Document::QrZip).await
}

/// `GET /api/v1/code-batches/{batch_id}/export.csv?status=`
pub async fn batch_csv(
    s: State<AppState>,
    id: Path<String>,
    user: User,
    q: Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    batch(s, id, user, q, Document::Csv).await
}

/// `GET /api/v1/codes/reservations/{reservation_id}/order.xlsx`
pub async fn reservation_xlsx(
    s: State<AppState>,
    id: Path<String>,
    user: User,
    q: Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    reservation(s, id, user, q, Document::Xlsx).await
}

/// `GET /api/v1/codes/reservations/{reservation_id}/qr-codes.zip`
pub async fn reservation_qr_zip(
    s: State<AppState>,
    id: Path<String>,
    user: User,
    q: Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    reservation(s, id, user, q, Document::QrZip).await
}

async fn batch(
    State(state): State<AppState>,
    Path(batch_id): Path<String>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
    document: Document,
) -> Result<Response, ApiError> {
    user.require(state.config.permissions.of(careledger_app::Operation::ReadCodes))?;
    let batch_id = batch_id_of(&batch_id)?;
    let mut p = Params::new(&params);
    let status = status_param(&mut p);
    read_after(&state, &mut p).await?;
    p.finish()?;
    let Some(batch) = CodeQueries(state.store.db()).batch(&batch_id).await? else {
        return Err(ApiError::not_found("Batch not found"));
    };
    let name = format!("codes-{batch_id}");
    Ok(respond(&state, CodeSelection::Batch { batch_id, status, number: batch.number }, document, &name))
}

async fn reservation(
    State(state): State<AppState>,
    Path(reservation_id): Path<String>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
    document: Document,
) -> Result<Response, ApiError> {
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
    Ok(respond(&state, CodeSelection::Reservation(reservation_id), document, &name))
}

fn respond(state: &AppState, selection: CodeSelection, document: Document, name: &str) -> Response {
    let codes = codes_of(state, selection);
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
    ([(header::CONTENT_TYPE, content_type.to_string()), (header::CONTENT_DISPOSITION, disposition)], body)
        .into_response()
}

/// The codes of `selection` in its order, for a blocking writer: a task reads them a page at a
/// time (each by index, after the last one's place) and hands the pages over; a read that
/// fails ends them with its error, and a writer that stops (the client went away) stops the task.
fn codes_of(state: &AppState, selection: CodeSelection) -> impl Iterator<Item = io::Result<String>> + Send + 'static {
    let (tx, mut rx) = mpsc::channel::<io::Result<Vec<String>>>(2);
    let db = state.store.db().clone();
    tokio::spawn(async move {
        let mut cursor = SelectionCursor::default();
        while !cursor.done {
            match CodeQueries(&db).selection_page(&selection, &mut cursor, PAGE).await {
                Ok(codes) if codes.is_empty() => continue,
                Ok(codes) => {
                    if tx.send(Ok(codes)).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(io::Error::other(format!("reading the codes: {e}")))).await;
                    break;
                }
            }
        }
    });
    std::iter::from_fn(move || rx.blocking_recv()).flat_map(|page| match page {
        Ok(codes) => codes.into_iter().map(Ok).collect::<Vec<_>>(),
        Err(e) => vec![Err(e)],
    })
}
