//! Queries on the claim context's read models: claims (list, one with its lines, the per-stage
//! report), the reference data a submission is checked against, the claims a batch run values,
//! and attached files.

use std::collections::HashMap;

use careledger_domain::claims::{PastLine, SubmitFacts};
use careledger_events::claims::{Amount, ClaimStatus, Feedback, Gender, Insuree, LineKind, Policy, Product};
use careledger_store::{Backend, Db, sql_exec, sql_fetch_all, sql_fetch_one, sql_fetch_optional};
use chrono::NaiveDate;
use serde::Serialize;
use uuid::Uuid;

use super::reference::{ReferenceCache, VERSION};
use crate::ProjectionError;
use crate::bulk::one_of;

/// A claim as lists show it, with the amount of every stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaimView {
    pub uuid: String,
    pub code: String,
    pub health_facility: String,
    pub insuree: String,
    pub date_from: String,
    pub date_to: Option<String>,
    pub date_claimed: String,
    pub icd: String,
    pub icd_secondary: Vec<String>,
    pub visit_type: String,
    pub care_type: Option<String>,
    pub admin: Option<String>,
    pub explanation: Option<String>,
    pub guarantee_id: Option<String>,
    pub status: i32,
    pub feedback_status: i32,
    pub review_status: i32,
    pub rejection_reason: Option<i32>,
    pub category: Option<String>,
    pub claimed: Amount,
    pub adjusted: Option<Amount>,
    pub approved: Option<Amount>,
    pub valuated: Option<Amount>,
    pub remunerated: Option<Amount>,
    /// The claim's value at its stage (the seed's table): claimed while ENTERED or CHECKED,
    /// approved once reviewed or PROCESSED, valuated once VALUATED.
    pub stage_value: Option<Amount>,
    pub restored_from: Option<String>,
    pub restored_as: Option<String>,
    pub batch_run_id: Option<String>,
    pub submitted_at: Option<String>,
    pub processed_at: Option<String>,
    pub inserted_at: String,
    pub inserted_by: Option<String>,
    pub updated_at: String,
    pub updated_by: Option<String>,
    /// The ids other servers gave the claim (an imported one keeps the sender's): on the FHIR
    /// face, not in the JSON API's claim.
    #[serde(skip)]
    pub identifiers: Vec<careledger_events::Identifier>,
}

/// A claim line with its quantities and prices at every stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineView {
    pub index: i64,
    pub code: String,
    pub qty_provided: Amount,
    pub price_asked: Amount,
    pub explanation: Option<String>,
    pub status: Option<i32>,
    pub rejection_reason: Option<i32>,
    pub qty_approved: Option<Amount>,
    pub price_adjusted: Option<Amount>,
    pub price_approved: Option<Amount>,
    pub price_valuated: Option<Amount>,
    pub justification: Option<String>,
    pub product: Option<String>,
    pub price_origin: Option<String>,
    /// The quantity and price of the claim's stage (the seed's table).
    pub latest_qty: Amount,
    pub latest_price: Amount,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttachmentView {
    pub attachment_id: String,
    pub title: String,
    #[serde(rename = "type")]
    pub attachment_type: Option<String>,
    pub date: Option<String>,
    pub url: Option<String>,
    pub filename: Option<String>,
    pub mime: Option<String>,
    pub hash: Option<String>,
    pub size: Option<i64>,
    pub inserted_at: String,
    pub inserted_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaimDetail {
    #[serde(flatten)]
    pub claim: ClaimView,
    pub items: Vec<LineView>,
    pub services: Vec<LineView>,
    pub feedback: Option<Feedback>,
    pub attachments: Vec<AttachmentView>,
}

/// List filters; `None` matches everything. Dates bound `date_claimed`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimFilter {
    pub status: Option<i32>,
    pub feedback_status: Option<i32>,
    pub review_status: Option<i32>,
    pub health_facility: Option<String>,
    pub insuree: Option<String>,
    pub code: Option<String>,
    pub date_from: Option<String>,
    pub date_to: Option<String>,
    pub claimed_min: Option<i64>,
    pub claimed_max: Option<i64>,
    pub approved_min: Option<i64>,
    pub approved_max: Option<i64>,
}

/// Counts and amounts of the claims in one status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageTotals {
    pub status: i32,
    pub stage: &'static str,
    pub claims: i64,
    pub claimed: Amount,
    pub adjusted: Amount,
    pub approved: Amount,
    pub valuated: Amount,
    pub remunerated: Amount,
}

/// The claim value of the seed's table at the claim's stage.
pub fn stage_value(
    status: i32,
    review_delivered: bool,
    claimed: Amount,
    approved: Option<Amount>,
    valuated: Option<Amount>,
) -> Option<Amount> {
    match ClaimStatus::from_code(status.into())? {
        ClaimStatus::Entered | ClaimStatus::Rejected => Some(claimed),
        ClaimStatus::Checked if review_delivered => approved,
        ClaimStatus::Checked => Some(claimed),
        ClaimStatus::Processed => approved,
        ClaimStatus::Valuated => valuated,
    }
}

const CLAIM_SELECT: &str = "SELECT claim_id, code, health_facility, insuree, date_from, date_to, date_claimed, icd,
        icd_secondary, visit_type, care_type, admin, explanation, guarantee_id, status, feedback_status,
        review_status, rejection_reason, category, claimed, adjusted, approved, valuated, remunerated,
        restored_from, restored_as, batch_run_id, submitted_at, processed_at, inserted_at, inserted_by,
        updated_at, updated_by, identifiers
     FROM claims";

/// The filter's conditions, parameters $1 to $13 (the facility scope is $1).
const CLAIM_WHERE: &str = "WHERE ($1 IS NULL OR health_facility = $1) AND ($2 IS NULL OR status = $2)
     AND ($3 IS NULL OR feedback_status = $3) AND ($4 IS NULL OR review_status = $4)
     AND ($5 IS NULL OR health_facility = $5) AND ($6 IS NULL OR insuree = $6) AND ($7 IS NULL OR code = $7)
     AND ($8 IS NULL OR date_claimed >= $8) AND ($9 IS NULL OR date_claimed <= $9)
     AND ($10 IS NULL OR claimed >= $10) AND ($11 IS NULL OR claimed <= $11)
     AND ($12 IS NULL OR approved >= $12) AND ($13 IS NULL OR approved <= $13)";

pub(super) fn cents(v: Option<i64>) -> Option<Amount> {
    v.map(Amount)
}

fn claim_row<R: sqlx::Row>(row: &R) -> Result<ClaimView, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i32>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let icd_secondary: String = row.try_get(8)?;
    let status: i32 = row.try_get(14)?;
    let review_status: i32 = row.try_get(16)?;
    let claimed = Amount(row.try_get(19)?);
    let approved = cents(row.try_get(21)?);
    let valuated = cents(row.try_get(22)?);
    Ok(ClaimView {
        uuid: row.try_get(0)?,
        code: row.try_get(1)?,
        health_facility: row.try_get(2)?,
        insuree: row.try_get(3)?,
        date_from: row.try_get(4)?,
        date_to: row.try_get(5)?,
        date_claimed: row.try_get(6)?,
        icd: row.try_get(7)?,
        icd_secondary: serde_json::from_str(&icd_secondary).unwrap_or_default(),
        visit_type: row.try_get(9)?,
        care_type: row.try_get(10)?,
        admin: row.try_get(11)?,
        explanation: row.try_get(12)?,
        guarantee_id: row.try_get(13)?,
        status,
        feedback_status: row.try_get(15)?,
        review_status,
        rejection_reason: row.try_get(17)?,
        category: row.try_get(18)?,
        claimed,
        adjusted: cents(row.try_get(20)?),
        approved,
        valuated,
        remunerated: cents(row.try_get(23)?),
        stage_value: stage_value(status, review_status == 8, claimed, approved, valuated),
        restored_from: row.try_get(24)?,
        restored_as: row.try_get(25)?,
        batch_run_id: row.try_get(26)?,
        submitted_at: row.try_get(27)?,
        processed_at: row.try_get(28)?,
        inserted_at: row.try_get(29)?,
        inserted_by: row.try_get(30)?,
        updated_at: row.try_get(31)?,
        updated_by: row.try_get(32)?,
        identifiers: row
            .try_get::<Option<String>, _>(33)?
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default(),
    })
}

/// `column` is one of the JSON array of codes bound to `$param`, per backend (looked up by index,
/// see [`one_of`]).
pub(super) fn code_in(backend: Backend, column: &str, param: u32) -> String {
    let elements = match backend {
        Backend::Postgres => format!("SELECT jsonb_array_elements_text(${param}::jsonb)"),
        Backend::Sqlite => format!("SELECT value FROM json_each(${param})"),
    };
    one_of(backend, column, &elements)
}

pub(super) fn date(s: &str) -> Result<NaiveDate, sqlx::Error> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

pub(super) fn parse<T>(s: &str, from_name: impl Fn(&str) -> Option<T>) -> Result<T, sqlx::Error> {
    from_name(s).ok_or_else(|| sqlx::Error::Decode(format!("unexpected value {s}").into()))
}

/// A line with its latest quantity and price: what the claim's stage makes of what was asked,
/// adjusted, approved and valuated.
fn latest(claim: &ClaimView, mut line: LineView) -> LineView {
    let reviewed = claim.review_status == 8;
    let approved_qty = line.qty_approved.unwrap_or(line.qty_provided);
    (line.latest_qty, line.latest_price) = match ClaimStatus::from_code(claim.status.into()) {
        Some(ClaimStatus::Checked) if reviewed => {
            (approved_qty, line.price_approved.or(line.price_adjusted).unwrap_or(line.price_asked))
        }
        Some(ClaimStatus::Checked) => (line.qty_provided, line.price_adjusted.unwrap_or(line.price_asked)),
        Some(ClaimStatus::Processed | ClaimStatus::Valuated) => (
            approved_qty,
            line.price_valuated.or(line.price_approved).or(line.price_adjusted).unwrap_or(line.price_asked),
        ),
        _ => (line.qty_provided, line.price_asked),
    };
    line
}

/// A change a sync did not take as sent (`ConflictRecorded`), as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConflictView {
    /// Its event's log position (the list's order and cursor).
    pub position: i64,
    pub resource_type: String,
    /// The resource's id here.
    pub id: String,
    /// The other server (the sender of the change, or the master that decided over it).
    pub peer: String,
    /// DECIDED_HERE, REPLACED_BY_MASTER, DELETED_HERE or DELETED_THERE.
    pub rule: String,
    /// The claim's status here when the change arrived.
    pub status: i32,
    pub code: String,
    pub health_facility: String,
    /// The change's data, kept whole.
    pub data: serde_json::Value,
    pub recorded_at: String,
}

/// Read access to the claim context's tables.
pub struct ClaimQueries<'a>(pub &'a Db);

impl ClaimQueries<'_> {
    /// One claim (of any facility: the caller decides whether it may see it).
    pub async fn claim(&self, claim_id: &str) -> Result<Option<ClaimView>, ProjectionError> {
        let mut conn = self.0.acquire().await?;
        let sql = format!("{CLAIM_SELECT} WHERE claim_id = $1");
        Ok(sql_fetch_optional!(conn.exec(), sqlx::AssertSqlSafe(sql), [claim_id], |row| claim_row(row))?)
    }

    /// The changes syncs did not take, after log position `after`, of `peer` and of a facility's
    /// claims when given, in log order.
    pub async fn conflicts(
        &self,
        after: i64,
        peer: Option<&str>,
        facility: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ConflictView>, ProjectionError> {
        let mut conn = self.0.acquire().await?;
        Ok(sql_fetch_all!(
            conn.exec(),
            "SELECT position, resource_type, local_id, peer, rule, status, code, health_facility, data, recorded_at
             FROM sync_conflicts
             WHERE position > $1 AND ($2 IS NULL OR peer = $2) AND ($3 IS NULL OR health_facility = $3)
             ORDER BY position LIMIT $4",
            [after, peer, facility, limit],
            |row| {
                let data: String = row.try_get(8)?;
                Ok(ConflictView {
                    position: row.try_get(0)?,
                    resource_type: row.try_get(1)?,
                    id: row.try_get(2)?,
                    peer: row.try_get(3)?,
                    rule: row.try_get(4)?,
                    status: row.try_get::<i64, _>(5)? as i32,
                    code: row.try_get(6)?,
                    health_facility: row.try_get(7)?,
                    data: serde_json::from_str(&data).unwrap_or_default(),
                    recorded_at: row.try_get(9)?,
                })
            }
        )?)
    }

    /// The claim with its lines, feedback and attachments.
    pub async fn claim_detail(&self, claim_id: &str) -> Result<Option<ClaimDetail>, ProjectionError> {
        Ok(self.claim_details(&[claim_id.to_string()]).await?.pop())
    }

    /// The claims of `claim_ids` that are in the read model, each with its lines, feedback and
    /// attachments, in the order asked: four queries however many claims (the sync's export reads
    /// a thousand at a time; a claim at a time spent most of it waiting for the database).
    pub async fn claim_details(&self, claim_ids: &[String]) -> Result<Vec<ClaimDetail>, ProjectionError> {
        if claim_ids.is_empty() {
            return Ok(vec![]);
        }
        let backend = self.0.backend();
        let ids = serde_json::to_string(claim_ids)?;
        let mut conn = self.0.acquire().await?;
        let sql = format!("{CLAIM_SELECT} WHERE {}", code_in(backend, "claim_id", 1));
        let claims = sql_fetch_all!(conn.exec(), sqlx::AssertSqlSafe(sql), [&ids], |row| claim_row(row))?;
        let sql = format!(
            "SELECT claim_id, kind, line_index, code, qty_provided, price_asked, explanation, status,
                 rejection_reason, qty_approved, price_adjusted, price_approved, price_valuated, justification,
                 product, price_origin
             FROM claim_lines WHERE {} ORDER BY claim_id, kind, line_index",
            code_in(backend, "claim_id", 1)
        );
        let lines = sql_fetch_all!(conn.exec(), sqlx::AssertSqlSafe(sql), [&ids], |row| {
            let qty_provided = Amount(row.try_get(4)?);
            let price_asked = Amount(row.try_get(5)?);
            Ok((
                row.try_get::<String, _>(0)?,
                row.try_get::<String, _>(1)?,
                LineView {
                    index: row.try_get::<i32, _>(2)?.into(),
                    code: row.try_get(3)?,
                    qty_provided,
                    price_asked,
                    explanation: row.try_get(6)?,
                    status: row.try_get(7)?,
                    rejection_reason: row.try_get(8)?,
                    qty_approved: cents(row.try_get(9)?),
                    price_adjusted: cents(row.try_get(10)?),
                    price_approved: cents(row.try_get(11)?),
                    price_valuated: cents(row.try_get(12)?),
                    justification: row.try_get(13)?,
                    product: row.try_get(14)?,
                    price_origin: row.try_get(15)?,
                    latest_qty: qty_provided,
                    latest_price: price_asked,
                },
            ))
        })?;
        let sql = format!("SELECT claim_id, feedback FROM claims WHERE {}", code_in(backend, "claim_id", 1));
        let feedback: HashMap<String, Option<String>> =
            sql_fetch_all!(conn.exec(), sqlx::AssertSqlSafe(sql), [&ids], |row| Ok((
                row.try_get(0)?,
                row.try_get(1)?
            )))?
            .into_iter()
            .collect();
        let sql = format!(
            "SELECT claim_id, attachment_id, title, attachment_type, date, url, filename, mime, hash, size,
                 inserted_at, inserted_by
             FROM claim_attachments WHERE {} ORDER BY claim_id, inserted_at, attachment_id",
            code_in(backend, "claim_id", 1)
        );
        let attachments = sql_fetch_all!(conn.exec(), sqlx::AssertSqlSafe(sql), [&ids], |row| Ok((
            row.try_get::<String, _>(0)?,
            AttachmentView {
                attachment_id: row.try_get(1)?,
                title: row.try_get(2)?,
                attachment_type: row.try_get(3)?,
                date: row.try_get(4)?,
                url: row.try_get(5)?,
                filename: row.try_get(6)?,
                mime: row.try_get(7)?,
                hash: row.try_get(8)?,
                size: row.try_get(9)?,
                inserted_at: row.try_get(10)?,
                inserted_by: row.try_get(11)?,
            }
        )))?;
        drop(conn);
        let mut details: HashMap<String, ClaimDetail> = claims
            .into_iter()
            .map(|claim| {
                let feedback = feedback.get(&claim.uuid).cloned().flatten().and_then(|f| serde_json::from_str(&f).ok());
                let detail = ClaimDetail { claim, items: vec![], services: vec![], feedback, attachments: vec![] };
                (detail.claim.uuid.clone(), detail)
            })
            .collect();
        for (claim_id, kind, line) in lines {
            let Some(detail) = details.get_mut(&claim_id) else { continue };
            let line = latest(&detail.claim, line);
            if kind == LineKind::Item.name() { detail.items.push(line) } else { detail.services.push(line) }
        }
        for (claim_id, attachment) in attachments {
            if let Some(detail) = details.get_mut(&claim_id) {
                detail.attachments.push(attachment);
            }
        }
        Ok(claim_ids.iter().filter_map(|id| details.remove(id)).collect())
    }

    /// Claims matching the filter (and the caller's facility scope), newest first, and how many match.
    pub async fn claims(
        &self,
        scope: Option<&str>,
        filter: &ClaimFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<ClaimView>, i64), ProjectionError> {
        let f = filter;
        let mut conn = self.0.acquire().await?;
        let sql = format!("{CLAIM_SELECT} {CLAIM_WHERE} ORDER BY inserted_at DESC, claim_id DESC LIMIT $14 OFFSET $15");
        macro_rules! filter_args {
            ($exec:expr, $sql:expr, [$($extra:expr),*], |$row:ident| $body:expr, $fetch:ident) => {
                $fetch!($exec, $sql, [
                    scope, f.status, f.feedback_status, f.review_status, f.health_facility.as_deref(),
                    f.insuree.as_deref(), f.code.as_deref(), f.date_from.as_deref(), f.date_to.as_deref(),
                    f.claimed_min, f.claimed_max, f.approved_min, f.approved_max $(, $extra)*
                ], |$row| $body)
            };
        }
        let rows =
            filter_args!(conn.exec(), sqlx::AssertSqlSafe(sql), [limit, offset], |row| claim_row(row), sql_fetch_all)?;
        let count = format!("SELECT COUNT(*) FROM claims {CLAIM_WHERE}");
        let total =
            filter_args!(conn.exec(), sqlx::AssertSqlSafe(count), [], |row| row.try_get::<i64, _>(0), sql_fetch_one)?;
        Ok((rows, total))
    }

    /// Counts and amounts per status of the claims of a facility (all when None) claimed between
    /// two dates (inclusive, either open).
    pub async fn by_stage(
        &self,
        facility: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<StageTotals>, ProjectionError> {
        let mut conn = self.0.acquire().await?;
        // A sum of many claims can pass 2^63 hundredths, where SQLite's SUM fails and
        // PostgreSQL's cast back to BIGINT does: a report must never fail on the data it reads.
        // PostgreSQL sums exactly (NUMERIC) and saturates; SQLite's TOTAL is a float, exact below
        // 2^53 hundredths (90 trillion), and its CAST saturates.
        let sum = |column: &str| match self.0.backend() {
            Backend::Sqlite => format!("CAST(TOTAL({column}) AS BIGINT)"),
            Backend::Postgres => {
                format!("CAST(LEAST(COALESCE(SUM({column}), 0), 9223372036854775807) AS BIGINT)")
            }
        };
        let sql = format!(
            "SELECT status, COUNT(*), {}, {}, {}, {}, {}
             FROM claims
             WHERE ($1 IS NULL OR health_facility = $1) AND ($2 IS NULL OR date_claimed >= $2)
                 AND ($3 IS NULL OR date_claimed <= $3)
             GROUP BY status",
            sum("claimed"),
            sum("adjusted"),
            sum("approved"),
            sum("valuated"),
            sum("remunerated")
        );
        let rows = sql_fetch_all!(conn.exec(), sqlx::AssertSqlSafe(sql), [facility, from, to], |row| {
            let sums = [2, 3, 4, 5, 6].map(|i| row.try_get::<i64, _>(i).map(Amount));
            let [a, b, c, d, e] = sums;
            Ok((row.try_get::<i32, _>(0)?, row.try_get::<i64, _>(1)?, [a?, b?, c?, d?, e?]))
        })?;
        let mut by_status: HashMap<i32, _> = rows.into_iter().map(|(s, n, sums)| (s, (n, sums))).collect();
        Ok(ClaimStatus::ALL
            .iter()
            .map(|s| {
                let (claims, sums) = by_status.remove(&s.code()).unwrap_or((0, [Amount::ZERO; 5]));
                let [claimed, adjusted, approved, valuated, remunerated] = sums;
                StageTotals {
                    status: s.code(),
                    stage: s.name(),
                    claims,
                    claimed,
                    adjusted,
                    approved,
                    valuated,
                    remunerated,
                }
            })
            .collect())
    }
}

/// A row of what a submission reads of its insuree: the insuree with a policy (or none), a passed
/// line of another claim, or the version of the reference data.
enum InsureeRow {
    Insured { insuree: Insuree, policy: Option<Policy>, updated_at: String },
    Past(PastLine),
    Version(i64),
}

/// What submissions and batch runs read.
impl ClaimQueries<'_> {
    /// The reference data a submission of a claim at `facility` for insuree `chfid` with these
    /// codes is checked against, and the insuree's passed lines of other claims.
    ///
    /// One round trip to the database when `reference` holds the reference data at the version
    /// read with the insuree (see [`ReferenceCache`] for why that is as fresh as the read model).
    pub async fn submit_facts(
        &self,
        reference: &ReferenceCache,
        claim_id: Uuid,
        facility: &str,
        chfid: &str,
        codes: &[String],
    ) -> Result<SubmitFacts, ProjectionError> {
        let backend = self.0.backend();
        let codes_json = serde_json::to_string(codes).unwrap_or_else(|_| "[]".into());
        // the insuree (the newest entry of the CHFID) with its policies, each table read by its
        // index for the rows of the one before (see `one_of`); the insuree's passed lines of the
        // codes on other claims; and the reference data's version: one statement, one snapshot
        let sql = format!(
            "WITH i AS (SELECT insuree_id, chfid, birth_date, gender, updated_at FROM claims_insurees WHERE chfid = $2),
                 p AS (SELECT policy_id, insuree_id, product_code, effective_date, expiry_date FROM claims_policies
                       WHERE {policies})
             SELECT 'I', i.insuree_id, i.chfid, i.birth_date, i.gender, p.policy_id, p.product_code,
                 p.effective_date, p.expiry_date, i.updated_at, CAST(NULL AS BIGINT)
             FROM i LEFT JOIN p ON p.insuree_id = i.insuree_id
             UNION ALL
             SELECT 'H', l.kind, l.code, c.target_date, NULL, NULL, NULL, NULL, NULL, NULL,
                 COALESCE(l.qty_approved, l.qty_provided)
             FROM claims c JOIN claim_lines l ON l.claim_id = c.claim_id
             WHERE c.insuree = $2 AND c.claim_id <> $3 AND c.status IN (4, 8, 16) AND l.status = 1 AND {codes}
             UNION ALL
             SELECT 'V', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, {VERSION}",
            policies = one_of(backend, "insuree_id", "SELECT insuree_id FROM i"),
            codes = code_in(backend, "l.code", 1),
        );
        let uuid = |s: String| Uuid::parse_str(&s).map_err(|e| sqlx::Error::Decode(Box::new(e)));
        let rows = {
            let mut conn = self.0.acquire().await?;
            sql_fetch_all!(
                conn.exec(),
                sqlx::AssertSqlSafe(sql),
                [codes_json.as_str(), chfid, claim_id.to_string()],
                |row| {
                    let text = |i: usize| row.try_get::<Option<String>, _>(i);
                    let required = |i: usize| text(i)?.ok_or_else(|| sqlx::Error::Decode("unexpected NULL".into()));
                    Ok(match required(0)?.as_str() {
                        "I" => {
                            let insuree = Insuree {
                                insuree_id: uuid(required(1)?)?,
                                chfid: required(2)?,
                                birth_date: date(&required(3)?)?,
                                gender: parse(&required(4)?, Gender::from_name)?,
                            };
                            let policy = match text(5)? {
                                None => None,
                                Some(id) => Some(Policy {
                                    policy_id: uuid(id)?,
                                    insuree_id: insuree.insuree_id,
                                    product_code: required(6)?,
                                    effective_date: date(&required(7)?)?,
                                    expiry_date: date(&required(8)?)?,
                                }),
                            };
                            InsureeRow::Insured { insuree, policy, updated_at: required(9)? }
                        }
                        "H" => InsureeRow::Past(PastLine {
                            kind: parse(&required(1)?, LineKind::from_name)?,
                            code: required(2)?,
                            date: date(&required(3)?)?,
                            quantity: Amount(row.try_get(10)?),
                        }),
                        _ => InsureeRow::Version(row.try_get(10)?),
                    })
                }
            )?
        };
        let mut insured = Vec::new();
        let mut history = Vec::new();
        let mut version = -1;
        for row in rows {
            match row {
                InsureeRow::Insured { insuree, policy, updated_at } => insured.push((updated_at, insuree, policy)),
                InsureeRow::Past(line) => history.push(line),
                InsureeRow::Version(v) => version = v,
            }
        }
        // the newest entry of the CHFID first, its policies in the order they took effect
        insured.sort_by(|(at_a, a, pa), (at_b, b, pb)| {
            let policy = |p: &Option<Policy>| p.as_ref().map(|p| (p.effective_date, p.policy_id));
            at_b.cmp(at_a).then(a.insuree_id.cmp(&b.insuree_id)).then(policy(pa).cmp(&policy(pb)))
        });

        let snapshot = reference.snapshot(self.0, version).await?;
        let at = reference.facility(self.0, &snapshot, facility).await?;
        let mut out = SubmitFacts { facility: at.facility.clone(), ..SubmitFacts::default() };
        for code in codes {
            for e in snapshot.register(code) {
                out.register.insert((e.kind, e.code.clone()), e.clone());
            }
            out.price_list.extend(at.price_list(code).cloned());
        }
        out.insuree = insured.first().map(|(_, insuree, _)| insuree.clone());
        let Some(first) = out.insuree.as_ref().map(|i| i.insuree_id) else { return Ok(out) };
        for (_, insuree, policy) in insured {
            let Some(policy) = policy.filter(|_| insuree.insuree_id == first) else { continue };
            if out.policies.iter().any(|(p, _)| p.policy_id == policy.policy_id) {
                continue;
            }
            let code = policy.product_code.clone();
            let coverage = codes.iter().flat_map(|c| snapshot.coverage(&code, c).cloned()).collect();
            out.policies.push((policy, Product { code, name: String::new(), coverage }));
        }
        out.history = history;
        Ok(out)
    }

    /// PROCESSED claims with relative lines of `product` waiting for valuation, with target dates
    /// between `from` and `to` (inclusive).
    pub async fn claims_to_valuate(&self, product: &str, from: &str, to: &str) -> Result<Vec<String>, ProjectionError> {
        let mut conn = self.0.acquire().await?;
        Ok(sql_fetch_all!(
            conn.exec(),
            "SELECT DISTINCT c.claim_id FROM claims c JOIN claim_lines l ON l.claim_id = c.claim_id
             WHERE c.status = 8 AND l.product = $1 AND l.price_origin = 'R' AND l.status = 1
                 AND l.price_valuated IS NULL AND c.target_date >= $2 AND c.target_date <= $3
             ORDER BY c.claim_id",
            [product, from, to],
            |row| row.try_get::<String, _>(0)
        )?)
    }

    /// The bytes of an attached file.
    pub async fn attachment_file(&self, hash: &str) -> Result<Option<Vec<u8>>, ProjectionError> {
        let mut conn = self.0.acquire().await?;
        Ok(sql_fetch_optional!(
            conn.exec(),
            "SELECT bytes FROM claim_attachment_files WHERE hash = $1",
            [hash],
            |row| row.try_get::<Vec<u8>, _>(0)
        )?)
    }

    /// Keeps a file's bytes under their hash (once: the same bytes again change nothing).
    pub async fn store_attachment_file(&self, hash: &str, bytes: &[u8], at: &str) -> Result<(), ProjectionError> {
        let mut tx = self.0.begin().await?;
        sql_exec!(
            tx.exec(),
            "INSERT INTO claim_attachment_files (hash, bytes, size, stored_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            [hash, bytes, bytes.len() as i64, at]
        )?;
        tx.commit().await?;
        Ok(())
    }
}
