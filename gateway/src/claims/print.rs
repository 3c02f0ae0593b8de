//! `GET /api/v1/claims/{uuid}/print` (111006): the claim as a claim form in PDF: who and where,
//! the visit, its lines with their quantities and prices at every stage, and the claim's amount at
//! every stage. What the form says is decided here; how it is laid out and written (krilla, with
//! DejaVu Sans embedded, so Cyrillic prints) is careledger-documents'.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use careledger_documents::{Align, Block, Column, Form};
use careledger_events::claims::{Amount, ClaimStatus, StepStatus};
use careledger_projections::claims::{ClaimDetail, LineView};

use super::queries::visible_claim;
use crate::auth::User;
use crate::http::body::Params;
use crate::http::envelope::ApiError;
use crate::http::read_after;
use crate::state::AppState;

fn money(a: Option<Amount>) -> String {
    a.map_or_else(|| "-".into(), |a| a.to_string())
}

fn text(value: Option<&String>) -> String {
    value.filter(|v| !v.is_empty()).cloned().unwrap_or_else(|| "-".into())
}

fn status_name(code: i32) -> &'static str {
    ClaimStatus::from_code(code.into()).map_or("?", |s| s.name())
}

fn step_name(code: i32) -> &'static str {
    StepStatus::from_code(code.into()).map_or("?", |s| s.name())
}

fn line_row(kind: &str, l: &LineView) -> Vec<String> {
    let result = match (l.status, l.rejection_reason) {
        (Some(1), _) => "PASSED".to_string(),
        (Some(_), Some(r)) => format!("REJECTED ({r})"),
        _ => String::new(),
    };
    let notes: Vec<&str> = [l.explanation.as_deref(), l.justification.as_deref()].into_iter().flatten().collect();
    vec![
        kind.to_string(),
        l.code.clone(),
        l.qty_provided.to_string(),
        money(l.qty_approved),
        l.price_asked.to_string(),
        money(l.price_adjusted),
        money(l.price_approved),
        money(l.price_valuated),
        result,
        notes.join(" / "),
    ]
}

/// The claim form.
fn claim_form(d: &ClaimDetail) -> Form {
    let c = &d.claim;
    let mut fields = vec![
        ("Insuree (CHFID)", c.insuree.clone()),
        ("Health facility", c.health_facility.clone()),
        ("Visit type", c.visit_type.clone()),
        ("Care type", text(c.care_type.as_ref())),
        ("Visit from", c.date_from.clone()),
        ("Visit to", c.date_to.clone().unwrap_or_else(|| c.date_from.clone())),
        ("Claimed on", c.date_claimed.clone()),
        ("Category", text(c.category.as_ref())),
        ("Main diagnosis", c.icd.clone()),
        ("Secondary diagnoses", if c.icd_secondary.is_empty() { "-".into() } else { c.icd_secondary.join(", ") }),
        ("Claim administrator", text(c.admin.as_ref())),
        ("Guarantee no.", text(c.guarantee_id.as_ref())),
        ("Feedback", step_name(c.feedback_status).to_string()),
        ("Review", step_name(c.review_status).to_string()),
        ("Submitted", text(c.submitted_at.as_ref())),
        ("Processed", text(c.processed_at.as_ref())),
    ];
    if let Some(r) = c.rejection_reason {
        fields.push(("Rejection reason", r.to_string()));
    }
    if let Some(from) = &c.restored_from {
        fields.push(("Restored from", from.clone()));
    }
    let mut blocks = vec![Block::Fields(fields.into_iter().map(|(l, v)| (l.to_string(), v)).collect())];
    if let Some(e) = c.explanation.as_ref().filter(|e| !e.is_empty()) {
        blocks.push(Block::Paragraph { label: "Explanation".into(), text: e.clone() });
    }
    let right = Align::Right;
    blocks.push(Block::Heading("Items and services (quantities; prices per unit)".into()));
    blocks.push(Block::Table {
        columns: vec![
            Column::new("Type", 1.0, Align::Left),
            Column::new("Code", 1.3, Align::Left),
            Column::new("Quantity", 1.0, right),
            Column::new("Approved quantity", 1.0, right),
            Column::new("Price asked", 1.1, right),
            Column::new("Adjusted", 1.1, right),
            Column::new("Approved", 1.1, right),
            Column::new("Valuated", 1.1, right),
            Column::new("Result (reason)", 1.4, Align::Left),
            Column::new("Explanation / justification", 3.4, Align::Left),
        ],
        rows: d
            .items
            .iter()
            .map(|l| line_row("Item", l))
            .chain(d.services.iter().map(|l| line_row("Service", l)))
            .collect(),
    });
    blocks.push(Block::Heading("Amounts per stage".into()));
    let stages = [
        ("Claimed", Some(c.claimed)),
        ("Adjusted", c.adjusted),
        ("Approved", c.approved),
        ("Valuated", c.valuated),
        ("Remunerated", c.remunerated),
        ("Value at its stage", c.stage_value),
    ];
    blocks.push(Block::Table {
        columns: vec![
            Column::new("Stage", 1.0, Align::Left),
            Column::new("Amount", 1.0, right),
            Column::new("", 4.0, Align::Left),
        ],
        rows: stages.iter().map(|(name, value)| vec![name.to_string(), money(*value), String::new()]).collect(),
    });
    if !d.attachments.is_empty() {
        blocks.push(Block::Heading("Attachments".into()));
        blocks.push(Block::Table {
            columns: vec![
                Column::new("Title", 3.0, Align::Left),
                Column::new("Type", 1.0, Align::Left),
                Column::new("Date", 1.0, Align::Left),
                Column::new("File or address", 3.0, Align::Left),
            ],
            rows: d
                .attachments
                .iter()
                .map(|a| {
                    vec![
                        a.title.clone(),
                        text(a.attachment_type.as_ref()),
                        text(a.date.as_ref()),
                        text(a.filename.as_ref().or(a.url.as_ref())),
                    ]
                })
                .collect(),
        });
    }
    Form {
        title: format!("Claim {}", c.code),
        badge: status_name(c.status).to_string(),
        footer: format!("careledger · claim {}", c.uuid),
        blocks,
    }
}

/// `GET /api/v1/claims/{uuid}/print`
pub async fn print(
    State(state): State<AppState>,
    Path(uuid): Path<String>,
    user: User,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    user.require(state.config.permissions.of(careledger_app::Operation::PrintClaim))?;
    let mut p = Params::new(&params);
    read_after(&state, &mut p).await?;
    p.finish()?;
    let detail = visible_claim(&state, &user, &uuid).await?;
    let form = claim_form(&detail);
    // laying out and subsetting the font is CPU work: off the runtime's threads
    let bytes = tokio::task::spawn_blocking(move || form.to_pdf())
        .await
        .map_err(|e| ApiError::internal(format!("printing a claim: {e}")))?
        .map_err(|e| ApiError::internal(format!("printing a claim: {e}")))?;
    let disposition = format!("inline; filename=\"claim-{}.pdf\"", detail.claim.uuid);
    Ok(([(header::CONTENT_TYPE, "application/pdf".to_string()), (header::CONTENT_DISPOSITION, disposition)], bytes)
        .into_response())
}
