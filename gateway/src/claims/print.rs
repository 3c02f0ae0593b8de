//! `GET /api/v1/claims/{uuid}/print` (111006): the claim as a PDF, its lines and the amount of
//! every stage. The PDF is written by hand (PDF 1.4, the standard Helvetica font, text only, 60
//! lines a page): a claim printout needs nothing more, and no crate has to be trusted with it.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use careledger_events::claims::{Amount, ClaimStatus, StepStatus};
use careledger_projections::claims::{ClaimDetail, LineView};

use super::queries::visible_claim;
use crate::auth::User;
use crate::http::body::Params;
use crate::http::envelope::ApiError;
use crate::http::read_after;
use crate::state::AppState;

const LINES_PER_PAGE: usize = 60;

fn money(a: Option<Amount>) -> String {
    a.map_or_else(|| "-".into(), |a| a.to_string())
}

fn status_name(code: i32) -> &'static str {
    ClaimStatus::from_code(code.into()).map_or("?", |s| s.name())
}

fn step_name(code: i32) -> &'static str {
    StepStatus::from_code(code.into()).map_or("?", |s| s.name())
}

fn line_text(kind: &str, l: &LineView) -> String {
    format!(
        "{kind:<7} {:<12} qty {:>8} / {:>8}  asked {:>10}  adjusted {:>10}  approved {:>10}  valuated {:>10}  {}",
        l.code,
        l.qty_provided.to_string(),
        money(l.qty_approved),
        l.price_asked.to_string(),
        money(l.price_adjusted),
        money(l.price_approved),
        money(l.price_valuated),
        match (l.status, l.rejection_reason) {
            (Some(1), _) => "PASSED".to_string(),
            (Some(_), Some(r)) => format!("REJECTED ({r})"),
            _ => String::new(),
        }
    )
}

/// The printout's text, line by line.
fn claim_text(d: &ClaimDetail) -> Vec<String> {
    let c = &d.claim;
    let mut out = vec![
        format!("Claim {}", c.code),
        String::new(),
        format!("UUID: {}", c.uuid),
        format!("Health facility: {}    Insuree (CHFID): {}", c.health_facility, c.insuree),
        format!(
            "Visit: {} to {}    Claimed on: {}    Visit type: {}",
            c.date_from,
            c.date_to.clone().unwrap_or_else(|| c.date_from.clone()),
            c.date_claimed,
            c.visit_type
        ),
        format!("Diagnosis: {} {}", c.icd, c.icd_secondary.join(" ")),
        format!(
            "Status: {}    Feedback: {}    Review: {}    Category: {}",
            status_name(c.status),
            step_name(c.feedback_status),
            step_name(c.review_status),
            c.category.clone().unwrap_or_else(|| "-".into())
        ),
    ];
    if let Some(r) = c.rejection_reason {
        out.push(format!("Rejection reason: {r}"));
    }
    if let Some(e) = &c.explanation {
        out.push(format!("Explanation: {e}"));
    }
    out.push(String::new());
    out.push("Lines (quantity provided / approved, prices per unit)".into());
    out.extend(d.items.iter().map(|l| line_text("item", l)));
    out.extend(d.services.iter().map(|l| line_text("service", l)));
    out.push(String::new());
    out.push("Amounts per stage".into());
    for (name, value) in [
        ("Claimed", Some(c.claimed)),
        ("Adjusted", c.adjusted),
        ("Approved", c.approved),
        ("Valuated", c.valuated),
        ("Remunerated", c.remunerated),
        ("Value at its stage", c.stage_value),
    ] {
        out.push(format!("  {name:<20} {:>14}", money(value)));
    }
    out
}

/// Text as a PDF string literal's content: Latin-1 printable, `\`, `(` and `)` escaped.
fn pdf_escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\\' | '(' | ')' => format!("\\{c}"),
            ' '..='~' => c.to_string(),
            _ => "?".to_string(),
        })
        .collect()
}

/// A PDF of `lines` of text on A4 pages (landscape: claim lines are wide).
pub fn pdf(title: &str, lines: &[String]) -> Vec<u8> {
    let pages: Vec<&[String]> = lines.chunks(LINES_PER_PAGE).collect();
    let pages = if pages.is_empty() { vec![&lines[..0]] } else { pages };
    // objects: 1 catalog, 2 pages, 3 font, 4 info, then a page and its content per page
    let mut objects: Vec<String> = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".into(),
        String::new(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Courier /Encoding /WinAnsiEncoding >>".into(),
        format!("<< /Title ({}) /Producer (careledger) >>", pdf_escape(title)),
    ];
    let mut kids = Vec::new();
    for page in &pages {
        let page_id = objects.len() + 1;
        kids.push(format!("{page_id} 0 R"));
        let mut content = String::from("BT /F1 8 Tf 10 TL 36 560 Td\n");
        for line in page.iter() {
            content.push_str(&format!("({}) Tj T*\n", pdf_escape(line)));
        }
        content.push_str("ET");
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 842 595] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
            page_id + 1
        ));
        objects.push(format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()));
    }
    objects[1] = format!("<< /Type /Pages /Kids [{}] /Count {} >>", kids.join(" "), pages.len());
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {} /Root 1 0 R /Info 4 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1)
            .as_bytes(),
    );
    out
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
    let bytes = pdf(&format!("Claim {}", detail.claim.code), &claim_text(&detail));
    let disposition = format!("inline; filename=\"claim-{}.pdf\"", detail.claim.uuid);
    Ok(([(header::CONTENT_TYPE, "application/pdf".to_string()), (header::CONTENT_DISPOSITION, disposition)], bytes)
        .into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pdf_has_a_valid_cross_reference_table() {
        let lines: Vec<String> = (0..130).map(|i| format!("line (number) {i}")).collect();
        let pdf = super::pdf("Claim C-1", &lines);
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.starts_with("%PDF-1.4"));
        assert!(text.contains("/Count 3"));
        assert!(text.contains("(line \\(number\\) 129) Tj"));
        // every xref offset points at its object
        let xref_at: usize = text.rsplit("startxref\n").next().unwrap().lines().next().unwrap().parse().unwrap();
        let table = &text[xref_at..];
        for (i, entry) in table.lines().skip(3).take(10).enumerate() {
            let offset: usize = entry[..10].parse().unwrap();
            assert!(text[offset..].starts_with(&format!("{} 0 obj", i + 1)), "object {}", i + 1);
        }
    }
}
