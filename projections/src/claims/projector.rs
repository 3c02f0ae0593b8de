//! Folds the claim context's events into its tables.
//!
//! Runs of consecutive events of one kind that come in bulk (reference upserts, claim creations,
//! submissions) are written with one statement per table, the rows passed as one JSON array; every
//! other event is a statement or a few of its own. Order is kept: a run is written before the next
//! event of another kind is applied.

use std::sync::Arc;

use std::collections::HashMap;

use careledger_events::claims::{Attachment, ClaimEvent, ClaimRecord, ClaimStatus, LineValuation, StepStatus};
use careledger_events::insurees::InsureeEvent;
use careledger_events::{DomainEvent, RecordedEvent};
use careledger_store::{Backend, Tx, sql_exec};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::{Value, json};

use crate::bulk::{self, Column};
use crate::time::text;
use crate::{ProjectionError, Projector};

pub struct ClaimsProjector;

impl Projector for ClaimsProjector {
    fn name(&self) -> &'static str {
        "claims"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "claims_health_facilities",
            "claims_medical_register",
            "claims_price_lists",
            "claims_insurees",
            "claims_products",
            "claims_product_coverage",
            "claims_policies",
            "claims",
            "claim_lines",
            "claim_attachments",
            "claim_valuation_runs",
            "claims_reference_version",
            "fhir_identifiers",
            "sync_conflicts",
        ]
    }

    /// The claims context's events, and enrolment's: registered insurees and enrolled policies
    /// are checked by submissions as the reference data an integration upserts is.
    fn handles(&self, event: &RecordedEvent) -> bool {
        let context = careledger_events::stream_context(&event.stream);
        context == ClaimEvent::CONTEXT || context == InsureeEvent::CONTEXT
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut Tx,
        events: &'a [Arc<RecordedEvent>],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let mut pending = Pending::default();
            let mut reference_at = None;
            for recorded in events {
                if !self.handles(recorded) {
                    continue;
                }
                if careledger_events::stream_context(&recorded.stream) == InsureeEvent::CONTEXT {
                    let (run, rows) = enrolled(recorded, &recorded.decode::<InsureeEvent>()?);
                    pending.add(tx, run, rows).await?;
                    continue;
                }
                let event = recorded.decode::<ClaimEvent>()?;
                if is_cached_reference(&event) {
                    reference_at = Some(recorded.position);
                }
                if let Some((run, rows)) = batched(recorded, &event) {
                    pending.add(tx, run, rows).await?;
                    continue;
                }
                pending.flush(tx).await?;
                apply_one(tx, recorded, &event).await?;
            }
            pending.flush(tx).await?;
            if let Some(position) = reference_at {
                sql_exec!(
                    tx.exec(),
                    "INSERT INTO claims_reference_version (id, position) VALUES (1, $1)
                     ON CONFLICT (id) DO UPDATE SET position = excluded.position",
                    [position]
                )?;
            }
            Ok(())
        })
    }
}

/// Whether the event changes reference data that gateways keep in process for submissions (see
/// `ReferenceCache`): such an event moves `claims_reference_version` to its position, in the
/// transaction that applies it.
fn is_cached_reference(event: &ClaimEvent) -> bool {
    matches!(
        event,
        ClaimEvent::HealthFacilityUpserted { .. }
            | ClaimEvent::MedicalEntryUpserted { .. }
            | ClaimEvent::PriceListUpserted { .. }
            | ClaimEvent::ProductUpserted { .. }
    )
}

/// Who did it: the token's `sub` recorded with the event.
fn by(recorded: &RecordedEvent) -> Option<&str> {
    recorded.metadata.actor.user_id.as_deref()
}

fn amount(a: Option<careledger_events::claims::Amount>) -> Value {
    a.map_or(Value::Null, |a| json!(a.0))
}

/// Kinds of events written in runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    Facilities,
    Medical,
    Insurees,
    Registered,
    Policies,
    Enrolled,
    Created,
    Submitted,
}

const FACILITY: [Column; 5] = [
    Column::Text("code"),
    Column::Text("name"),
    Column::Text("care_type"),
    Column::Text("updated_at"),
    Column::Text("updated_by"),
];

const MEDICAL: [Column; 10] = [
    Column::Text("kind"),
    Column::Text("code"),
    Column::Text("name"),
    Column::BigInt("price"),
    Column::Text("care_type"),
    Column::BigInt("frequency_days"),
    Column::BigInt("maximum_amount"),
    Column::Text("category"),
    Column::Text("updated_at"),
    Column::Text("updated_by"),
];

const INSUREE: [Column; 6] = [
    Column::Text("insuree_id"),
    Column::Text("chfid"),
    Column::Text("birth_date"),
    Column::Text("gender"),
    Column::Text("updated_at"),
    Column::Text("updated_by"),
];

/// A registered insuree's row: the reference columns and what its registration says besides
/// (an upsert of the same insuree later changes the reference columns and keeps these).
const REGISTERED: [Column; 12] = [
    Column::Text("insuree_id"),
    Column::Text("chfid"),
    Column::Text("birth_date"),
    Column::Text("gender"),
    Column::Text("last_name"),
    Column::Text("other_names"),
    Column::Text("phone"),
    Column::Text("family_head"),
    Column::Text("location"),
    Column::Text("identifiers"),
    Column::Text("updated_at"),
    Column::Text("updated_by"),
];

/// A policy enrolled here or imported: the reference columns and its foreign identifiers.
const ENROLLED: [Column; 9] = [
    Column::Text("policy_id"),
    Column::Text("insuree_id"),
    Column::Text("product_code"),
    Column::Text("enrol_date"),
    Column::Text("effective_date"),
    Column::Text("expiry_date"),
    Column::Text("identifiers"),
    Column::Text("updated_at"),
    Column::Text("updated_by"),
];

/// An identifier another server gave a resource, for search by system.
const IDENTIFIER: [Column; 4] =
    [Column::Text("resource_type"), Column::Text("system"), Column::Text("value"), Column::Text("local_id")];

const POLICY: [Column; 7] = [
    Column::Text("policy_id"),
    Column::Text("insuree_id"),
    Column::Text("product_code"),
    Column::Text("effective_date"),
    Column::Text("expiry_date"),
    Column::Text("updated_at"),
    Column::Text("updated_by"),
];

/// The claim's own data: written on creation and replaced by an update.
const CLAIM_DATA: [Column; 16] = [
    Column::Text("code"),
    Column::Text("health_facility"),
    Column::Text("insuree"),
    Column::Text("date_from"),
    Column::Text("date_to"),
    Column::Text("target_date"),
    Column::Text("date_claimed"),
    Column::Text("icd"),
    Column::Text("icd_secondary"),
    Column::Text("visit_type"),
    Column::Text("care_type"),
    Column::Text("admin"),
    Column::Text("explanation"),
    Column::Text("guarantee_id"),
    Column::BigInt("claimed"),
    Column::Text("restored_from"),
];

const CLAIM_NEW: [Column; 9] = [
    Column::Text("claim_id"),
    Column::Text("identifiers"),
    Column::BigInt("status"),
    Column::BigInt("feedback_status"),
    Column::BigInt("review_status"),
    Column::Text("inserted_at"),
    Column::Text("inserted_by"),
    Column::Text("updated_at"),
    Column::Text("updated_by"),
];

const LINE: [Column; 7] = [
    Column::Text("claim_id"),
    Column::Text("kind"),
    Column::BigInt("line_index"),
    Column::Text("code"),
    Column::BigInt("qty_provided"),
    Column::BigInt("price_asked"),
    Column::Text("explanation"),
];

const LINE_KEY: [Column; 3] = [Column::Text("claim_id"), Column::Text("kind"), Column::BigInt("line_index")];
const CLAIM_KEY: [Column; 1] = [Column::Text("claim_id")];

const LINE_ASSESSED: [Column; 6] = [
    Column::BigInt("status"),
    Column::BigInt("rejection_reason"),
    Column::BigInt("qty_approved"),
    Column::BigInt("price_adjusted"),
    Column::Text("product"),
    Column::Text("price_origin"),
];

const CLAIM_SUBMITTED: [Column; 7] = [
    Column::BigInt("status"),
    Column::BigInt("rejection_reason"),
    Column::BigInt("approved"),
    Column::Text("category"),
    Column::Text("submitted_at"),
    Column::Text("updated_at"),
    Column::Text("updated_by"),
];

/// What a master decided of a claim (an offline node's `OutcomeReceived`).
const CLAIM_OUTCOME: [Column; 6] = [
    Column::BigInt("status"),
    Column::BigInt("rejection_reason"),
    Column::Text("category"),
    Column::BigInt("approved"),
    Column::BigInt("valuated"),
    Column::BigInt("remunerated"),
];

const LINE_OUTCOME: [Column; 6] = [
    Column::BigInt("status"),
    Column::BigInt("rejection_reason"),
    Column::BigInt("qty_approved"),
    Column::BigInt("price_adjusted"),
    Column::BigInt("price_approved"),
    Column::BigInt("price_valuated"),
];

const LINE_VALUED: [Column; 1] = [Column::BigInt("price_valuated")];

/// The statements of a run, in the order they are executed.
fn statements(run: Run, backend: Backend) -> Vec<String> {
    let all = |columns: &[&[Column]]| columns.concat();
    match run {
        Run::Facilities => vec![bulk::upsert(backend, "claims_health_facilities", &FACILITY, &["code"])],
        Run::Medical => vec![bulk::upsert(backend, "claims_medical_register", &MEDICAL, &["kind", "code"])],
        Run::Insurees => vec![bulk::upsert(backend, "claims_insurees", &INSUREE, &["insuree_id"])],
        Run::Registered => vec![
            bulk::upsert(backend, "claims_insurees", &REGISTERED, &["insuree_id"]),
            bulk::upsert(backend, "fhir_identifiers", &IDENTIFIER, &["resource_type", "system", "value"]),
        ],
        Run::Policies => vec![bulk::upsert(backend, "claims_policies", &POLICY, &["policy_id"])],
        Run::Enrolled => vec![
            bulk::upsert(backend, "claims_policies", &ENROLLED, &["policy_id"]),
            bulk::upsert(backend, "fhir_identifiers", &IDENTIFIER, &["resource_type", "system", "value"]),
        ],
        Run::Created => vec![
            bulk::insert(backend, "claims", &all(&[&CLAIM_NEW, &CLAIM_DATA])),
            bulk::insert(backend, "claim_lines", &LINE),
            bulk::upsert(backend, "fhir_identifiers", &IDENTIFIER, &["resource_type", "system", "value"]),
        ],
        Run::Submitted => vec![
            bulk::update(backend, "claim_lines", &LINE_ASSESSED, &LINE_KEY),
            bulk::update_also(backend, "claims", &CLAIM_SUBMITTED, &CLAIM_KEY, &[CLAIM_ADJUSTED]),
        ],
    }
}

/// The passed lines at the adjusted price, rounded per line as the domain does; set with the rest
/// of a submission's columns (one write of the claim's row), after its lines were written.
const CLAIM_ADJUSTED: &str = "adjusted = (SELECT SUM((l.qty_provided * l.price_adjusted + 50) / 100)
     FROM claim_lines l WHERE l.claim_id = x.claim_id AND l.status = 1)";

/// Rows of a batched event: (statement index, key to keep only the last row of, row).
type Rows = Vec<(usize, Option<String>, Value)>;

/// The register's row of an insuree registered or a policy enrolled here (the insurees context),
/// in the runs of upserted insurees and policies.
fn enrolled(recorded: &RecordedEvent, event: &InsureeEvent) -> (Run, Rows) {
    let by = by(recorded);
    match event {
        InsureeEvent::InsureeRegistered { insuree: i, at } => {
            let row = json!({
                "insuree_id": i.insuree_id.to_string(), "chfid": i.chfid,
                "birth_date": i.birth_date.to_string(), "gender": i.gender.name(),
                "last_name": i.last_name, "other_names": i.other_names, "phone": i.phone,
                "family_head": i.family_head.map(|h| h.to_string()), "location": i.location,
                "identifiers": identifiers_text(&i.identifiers), "updated_at": text(at), "updated_by": by,
            });
            let id = i.insuree_id.to_string();
            let mut rows = vec![(0, Some(id.clone()), row)];
            rows.extend(identifier_rows(1, "Patient", &id, &i.identifiers));
            (Run::Registered, rows)
        }
        InsureeEvent::PolicyEnrolled { policy: p, at } => {
            let row = json!({
                "policy_id": p.policy_id.to_string(), "insuree_id": p.insuree_id.to_string(),
                "product_code": p.product_code, "enrol_date": p.enrol_date.to_string(),
                "effective_date": p.effective_date.to_string(),
                "expiry_date": p.expiry_date.to_string(), "identifiers": identifiers_text(&p.identifiers),
                "updated_at": text(at), "updated_by": by,
            });
            let id = p.policy_id.to_string();
            let mut rows = vec![(0, Some(id.clone()), row)];
            rows.extend(identifier_rows(1, "Coverage", &id, &p.identifiers));
            (Run::Enrolled, rows)
        }
    }
}

/// Foreign identifiers as the register's column holds them: a JSON array, NULL when none.
fn identifiers_text(identifiers: &[careledger_events::Identifier]) -> Value {
    match identifiers {
        [] => Value::Null,
        some => json!(serde_json::to_string(some).unwrap_or_default()),
    }
}

/// The search rows of a resource's foreign identifiers (statement `statement` of its run).
fn identifier_rows(
    statement: usize,
    resource_type: &str,
    local_id: &str,
    identifiers: &[careledger_events::Identifier],
) -> Rows {
    identifiers
        .iter()
        .map(|i| {
            let key = format!("{resource_type}|{}", i.token());
            let row =
                json!({ "resource_type": resource_type, "system": i.system, "value": i.value, "local_id": local_id });
            (statement, Some(key), row)
        })
        .collect()
}

/// The rows an event adds to its run, when it is written in runs.
fn batched(recorded: &RecordedEvent, event: &ClaimEvent) -> Option<(Run, Rows)> {
    let by = by(recorded);
    let stamp = |at: &DateTime<Utc>, mut row: Value| {
        row["updated_at"] = json!(text(at));
        row["updated_by"] = json!(by);
        row
    };
    Some(match event {
        ClaimEvent::HealthFacilityUpserted { facility: f, at } => {
            let row = json!({ "code": f.code, "name": f.name, "care_type": f.care_type.name() });
            (Run::Facilities, vec![(0, Some(f.code.clone()), stamp(at, row))])
        }
        ClaimEvent::MedicalEntryUpserted { entry: e, at } => {
            let row = json!({
                "kind": e.kind.name(), "code": e.code, "name": e.name, "price": e.price.0,
                "care_type": e.care_type.name(), "frequency_days": e.frequency_days,
                "maximum_amount": amount(e.maximum_amount), "category": e.category.map(|c| c.name()),
            });
            (Run::Medical, vec![(0, Some(format!("{}/{}", e.kind.name(), e.code)), stamp(at, row))])
        }
        ClaimEvent::InsureeUpserted { insuree: i, at } => {
            let row = json!({
                "insuree_id": i.insuree_id.to_string(), "chfid": i.chfid,
                "birth_date": i.birth_date.to_string(), "gender": i.gender.name(),
            });
            (Run::Insurees, vec![(0, Some(i.insuree_id.to_string()), stamp(at, row))])
        }
        ClaimEvent::PolicyUpserted { policy: p, at } => {
            let row = json!({
                "policy_id": p.policy_id.to_string(), "insuree_id": p.insuree_id.to_string(),
                "product_code": p.product_code, "effective_date": p.effective_date.to_string(),
                "expiry_date": p.expiry_date.to_string(),
            });
            (Run::Policies, vec![(0, Some(p.policy_id.to_string()), stamp(at, row))])
        }
        ClaimEvent::ClaimCreated(record) => {
            let mut row = claim_data_row(record);
            let at = text(&record.at);
            for (k, v) in [
                ("claim_id", json!(record.claim_id.to_string())),
                ("identifiers", identifiers_text(&record.identifiers)),
                ("status", json!(ClaimStatus::Entered.code())),
                ("feedback_status", json!(StepStatus::Idle.code())),
                ("review_status", json!(StepStatus::Idle.code())),
                ("inserted_at", json!(at)),
                ("inserted_by", json!(by)),
            ] {
                row[k] = v;
            }
            let mut rows = vec![(0, None, stamp(&record.at, row))];
            rows.extend(line_rows(record).into_iter().map(|l| (1, None, l)));
            rows.extend(identifier_rows(2, "Claim", &record.claim_id.to_string(), &record.identifiers));
            (Run::Created, rows)
        }
        ClaimEvent::ClaimSubmitted { claim_id, status, rejection_reason, lines, approved, category, at } => {
            let claim_id = claim_id.to_string();
            let mut rows: Rows = lines
                .iter()
                .map(|a| {
                    let row = json!({
                        "claim_id": claim_id, "kind": a.kind.name(), "line_index": a.index,
                        "status": a.status.code(), "rejection_reason": a.rejection_reason,
                        "qty_approved": amount(a.qty_approved), "price_adjusted": amount(a.price_adjusted),
                        "product": a.product, "price_origin": a.price_origin.map(|o| o.name()),
                    });
                    (0, None, row)
                })
                .collect();
            let row = json!({
                "claim_id": claim_id, "status": status.code(), "rejection_reason": rejection_reason,
                "approved": amount(*approved), "category": category.map(|c| c.name()), "submitted_at": text(at),
            });
            rows.push((1, None, stamp(at, row)));
            (Run::Submitted, rows)
        }
        _ => return None,
    })
}

fn claim_data_row(record: &ClaimRecord) -> Value {
    let d = &record.data;
    json!({
        "code": d.code, "health_facility": d.health_facility, "insuree": d.insuree,
        "date_from": d.date_from.to_string(), "date_to": d.date_to.map(|t| t.to_string()),
        "target_date": d.target_date().to_string(), "date_claimed": d.date_claimed.to_string(),
        "icd": d.icd, "icd_secondary": serde_json::to_string(&d.icd_secondary).unwrap_or_else(|_| "[]".into()),
        "visit_type": d.visit_type.name(), "care_type": d.care_type.map(|c| c.name()), "admin": d.admin,
        "explanation": d.explanation, "guarantee_id": d.guarantee_id, "claimed": record.claimed.0,
        "restored_from": record.restored_from.map(|r| r.to_string()),
    })
}

fn line_rows(record: &ClaimRecord) -> Vec<Value> {
    record
        .data
        .lines()
        .map(|(kind, index, l)| {
            json!({
                "claim_id": record.claim_id.to_string(), "kind": kind.name(), "line_index": index, "code": l.code,
                "qty_provided": l.qty_provided.0, "price_asked": l.price_asked.0, "explanation": l.explanation,
            })
        })
        .collect()
}

/// Rows of the run being gathered, per statement.
#[derive(Default)]
struct Pending {
    run: Option<Run>,
    rows: Vec<Vec<Value>>,
    /// Where the row of a key is, per statement: a later upsert of the key replaces it.
    seen: Vec<HashMap<String, usize>>,
}

impl Pending {
    /// Adds an event's rows to its run, writing the run before first if it is of another kind.
    async fn add(&mut self, tx: &mut Tx, run: Run, rows: Rows) -> Result<(), ProjectionError> {
        if self.run != Some(run) {
            self.flush(tx).await?;
            self.run = Some(run);
        }
        for (statement, key, row) in rows {
            self.push(statement, key, row);
        }
        Ok(())
    }

    fn push(&mut self, statement: usize, key: Option<String>, row: Value) {
        while self.rows.len() <= statement {
            self.rows.push(vec![]);
            self.seen.push(HashMap::new());
        }
        let rows = &mut self.rows[statement];
        let Some(key) = key else { return rows.push(row) };
        match self.seen[statement].get(&key) {
            Some(&i) => rows[i] = row,
            None => {
                self.seen[statement].insert(key, rows.len());
                rows.push(row);
            }
        }
    }

    async fn flush(&mut self, tx: &mut Tx) -> Result<(), ProjectionError> {
        let Some(run) = self.run.take() else { return Ok(()) };
        let rows = std::mem::take(&mut self.rows);
        self.seen.clear();
        for (sql, rows) in statements(run, tx.backend()).into_iter().zip(rows) {
            bulk::write(tx, sql, rows).await?;
        }
        Ok(())
    }
}

fn valuation_rows(claim_id: &str, lines: &[LineValuation]) -> Vec<Value> {
    lines
        .iter()
        .map(|v| {
            json!({ "claim_id": claim_id, "kind": v.kind.name(), "line_index": v.index,
                    "price_valuated": v.price_valuated.0 })
        })
        .collect()
}

fn attachment_row(claim_id: &str, a: &Attachment) -> Value {
    json!({
        "attachment_id": a.attachment_id.to_string(), "claim_id": claim_id, "title": a.title,
        "attachment_type": a.attachment_type, "date": a.date.map(|d| d.to_string()), "url": a.url,
        "filename": a.filename, "mime": a.mime, "hash": a.hash, "size": a.size,
    })
}

const ATTACHMENT: [Column; 10] = [
    Column::Text("attachment_id"),
    Column::Text("claim_id"),
    Column::Text("title"),
    Column::Text("attachment_type"),
    Column::Text("date"),
    Column::Text("url"),
    Column::Text("filename"),
    Column::Text("mime"),
    Column::Text("hash"),
    Column::BigInt("size"),
];

const STAMPS: [Column; 2] = [Column::Text("updated_at"), Column::Text("updated_by")];

async fn apply_one(tx: &mut Tx, recorded: &RecordedEvent, event: &ClaimEvent) -> Result<(), ProjectionError> {
    let by = by(recorded);
    let backend = tx.backend();
    match event {
        ClaimEvent::PriceListUpserted { health_facility, entries, .. } => {
            sql_exec!(
                tx.exec(),
                "DELETE FROM claims_price_lists WHERE health_facility = $1",
                [health_facility.as_str()]
            )?;
            let rows = entries
                .iter()
                .map(|e| {
                    json!({ "health_facility": health_facility, "kind": e.kind.name(), "code": e.code,
                            "valid_from": e.valid_from.to_string(), "valid_to": e.valid_to.map(|d| d.to_string()),
                            "price": amount(e.price) })
                })
                .collect();
            let columns = [
                Column::Text("health_facility"),
                Column::Text("kind"),
                Column::Text("code"),
                Column::Text("valid_from"),
                Column::Text("valid_to"),
                Column::BigInt("price"),
            ];
            bulk::write(tx, bulk::insert(backend, "claims_price_lists", &columns), rows).await?;
        }
        ClaimEvent::ProductUpserted { product, at } => {
            sql_exec!(
                tx.exec(),
                "INSERT INTO claims_products (code, name, updated_at, updated_by) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (code) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at,
                     updated_by = excluded.updated_by",
                [product.code.as_str(), product.name.as_str(), text(at), by]
            )?;
            sql_exec!(
                tx.exec(),
                "DELETE FROM claims_product_coverage WHERE product_code = $1",
                [product.code.as_str()]
            )?;
            let rows = product
                .coverage
                .iter()
                .map(|c| {
                    json!({ "product_code": product.code, "kind": c.kind.name(), "code": c.code,
                            "limit_adult": amount(c.limit_adult), "limit_child": amount(c.limit_child),
                            "waiting_period_adult": c.waiting_period_adult,
                            "waiting_period_child": c.waiting_period_child, "price_origin": c.price_origin.name() })
                })
                .collect();
            let columns = [
                Column::Text("product_code"),
                Column::Text("kind"),
                Column::Text("code"),
                Column::BigInt("limit_adult"),
                Column::BigInt("limit_child"),
                Column::BigInt("waiting_period_adult"),
                Column::BigInt("waiting_period_child"),
                Column::Text("price_origin"),
            ];
            bulk::write(tx, bulk::insert(backend, "claims_product_coverage", &columns), rows).await?;
        }
        ClaimEvent::ClaimUpdated(record) => {
            let claim_id = record.claim_id.to_string();
            let mut row = claim_data_row(record);
            row["claim_id"] = json!(claim_id);
            row["updated_at"] = json!(text(&record.at));
            row["updated_by"] = json!(by);
            let columns = [&CLAIM_DATA[..], &STAMPS[..]].concat();
            bulk::write(tx, bulk::update(backend, "claims", &columns, &CLAIM_KEY), vec![row]).await?;
            sql_exec!(tx.exec(), "DELETE FROM claim_lines WHERE claim_id = $1", [claim_id.as_str()])?;
            bulk::write(tx, bulk::insert(backend, "claim_lines", &LINE), line_rows(record)).await?;
        }
        ClaimEvent::ClaimDeleted { claim_id, .. } => {
            let claim_id = claim_id.to_string();
            for table in ["claims", "claim_lines", "claim_attachments"] {
                let sql = format!("DELETE FROM {table} WHERE claim_id = $1");
                sql_exec!(tx.exec(), sqlx::AssertSqlSafe(sql), [claim_id.as_str()])?;
            }
        }
        ClaimEvent::FeedbackStatusChanged { claim_id, feedback_status, at } => {
            sql_exec!(
                tx.exec(),
                "UPDATE claims SET feedback_status = $2, updated_at = $3, updated_by = $4 WHERE claim_id = $1",
                [claim_id.to_string(), feedback_status.code(), text(at), by]
            )?;
        }
        ClaimEvent::FeedbackDelivered { claim_id, feedback, at } => {
            sql_exec!(
                tx.exec(),
                "UPDATE claims SET feedback = $2, feedback_status = $3, updated_at = $4, updated_by = $5
                 WHERE claim_id = $1",
                [
                    claim_id.to_string(),
                    serde_json::to_string(feedback).unwrap_or_default(),
                    StepStatus::Delivered.code(),
                    text(at),
                    by
                ]
            )?;
        }
        ClaimEvent::ReviewStatusChanged { claim_id, review_status, at } => {
            sql_exec!(
                tx.exec(),
                "UPDATE claims SET review_status = $2, updated_at = $3, updated_by = $4 WHERE claim_id = $1",
                [claim_id.to_string(), review_status.code(), text(at), by]
            )?;
        }
        ClaimEvent::ReviewSaved { claim_id, lines, approved, status, delivered, at } => {
            let claim_id = claim_id.to_string();
            for r in lines {
                sql_exec!(
                    tx.exec(),
                    "UPDATE claim_lines SET qty_approved = COALESCE($4, qty_approved), price_approved = $5,
                         justification = $6,
                         status = CASE WHEN $7 THEN 2 ELSE status END,
                         rejection_reason = CASE WHEN $7 THEN -1 ELSE rejection_reason END
                     WHERE claim_id = $1 AND kind = $2 AND line_index = $3",
                    [
                        claim_id.as_str(),
                        r.kind.name(),
                        r.index as i64,
                        r.qty_approved.map(|a| a.0),
                        r.price_approved.map(|a| a.0),
                        r.justification.as_deref(),
                        r.rejected
                    ]
                )?;
            }
            sql_exec!(
                tx.exec(),
                "UPDATE claims SET approved = $2,
                     rejection_reason = CASE WHEN $3 = 1 AND status <> 1 THEN -1 ELSE rejection_reason END,
                     status = $3, review_status = CASE WHEN $4 THEN 8 ELSE review_status END,
                     updated_at = $5, updated_by = $6
                 WHERE claim_id = $1",
                [claim_id.as_str(), approved.0, status.code(), *delivered, text(at), by]
            )?;
        }
        ClaimEvent::ClaimProcessed {
            claim_id,
            status,
            lines,
            valuated,
            remunerated,
            feedback_status,
            review_status,
            at,
        } => {
            let claim_id = claim_id.to_string();
            bulk::write(
                tx,
                bulk::update(backend, "claim_lines", &LINE_VALUED, &LINE_KEY),
                valuation_rows(&claim_id, lines),
            )
            .await?;
            sql_exec!(
                tx.exec(),
                "UPDATE claims SET status = $2, valuated = $3, remunerated = $4, feedback_status = $5,
                     review_status = $6, processed_at = $7, updated_at = $7, updated_by = $8
                 WHERE claim_id = $1",
                [
                    claim_id.as_str(),
                    status.code(),
                    valuated.map(|a| a.0),
                    remunerated.map(|a| a.0),
                    feedback_status.code(),
                    review_status.code(),
                    text(at),
                    by
                ]
            )?;
        }
        ClaimEvent::ClaimValuated { claim_id, batch_run_id, status, lines, valuated, remunerated, at } => {
            let claim_id = claim_id.to_string();
            bulk::write(
                tx,
                bulk::update(backend, "claim_lines", &LINE_VALUED, &LINE_KEY),
                valuation_rows(&claim_id, lines),
            )
            .await?;
            sql_exec!(
                tx.exec(),
                "UPDATE claims SET status = $2, valuated = $3, remunerated = $4, batch_run_id = $5,
                     updated_at = $6, updated_by = $7
                 WHERE claim_id = $1",
                [claim_id.as_str(), status.code(), valuated.0, remunerated.0, batch_run_id.to_string(), text(at), by]
            )?;
        }
        ClaimEvent::ValuationRun { batch_run_id, product, from, to, amount, relative_total, claims, at } => {
            sql_exec!(
                tx.exec(),
                "INSERT INTO claim_valuation_runs (batch_run_id, product, date_from, date_to, amount, relative_total,
                     claims, run_at, run_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                [
                    batch_run_id.to_string(),
                    product.as_str(),
                    from.to_string(),
                    to.to_string(),
                    amount.0,
                    relative_total.0,
                    claims.len() as i64,
                    text(at),
                    by
                ]
            )?;
        }
        ClaimEvent::ClaimRestored { claim_id, restored_as, at } => {
            sql_exec!(
                tx.exec(),
                "UPDATE claims SET restored_as = $2, updated_at = $3, updated_by = $4 WHERE claim_id = $1",
                [claim_id.to_string(), restored_as.to_string(), text(at), by]
            )?;
        }
        ClaimEvent::AttachmentAdded { claim_id, attachment, at } => {
            let mut row = attachment_row(&claim_id.to_string(), attachment);
            row["inserted_at"] = json!(text(at));
            row["inserted_by"] = json!(by);
            row["updated_at"] = json!(text(at));
            row["updated_by"] = json!(by);
            let columns =
                [&ATTACHMENT[..], &[Column::Text("inserted_at"), Column::Text("inserted_by")], &STAMPS[..]].concat();
            bulk::write(tx, bulk::insert(backend, "claim_attachments", &columns), vec![row]).await?;
        }
        ClaimEvent::AttachmentUpdated { claim_id, attachment, at } => {
            let mut row = attachment_row(&claim_id.to_string(), attachment);
            row["updated_at"] = json!(text(at));
            row["updated_by"] = json!(by);
            let columns = [&ATTACHMENT[2..], &STAMPS[..]].concat();
            let key = [Column::Text("attachment_id")];
            bulk::write(tx, bulk::update(backend, "claim_attachments", &columns, &key), vec![row]).await?;
        }
        ClaimEvent::AttachmentDeleted { attachment_id, .. } => {
            sql_exec!(
                tx.exec(),
                "DELETE FROM claim_attachments WHERE attachment_id = $1",
                [attachment_id.to_string()]
            )?;
        }
        ClaimEvent::ConflictRecorded(c) => {
            sql_exec!(
                tx.exec(),
                "INSERT INTO sync_conflicts (position, resource_type, local_id, peer, rule, status, code,
                     health_facility, data, recorded_at)
                 VALUES ($1, 'Claim', $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (position) DO NOTHING",
                [
                    recorded.position,
                    c.claim_id.to_string(),
                    c.peer.as_str(),
                    c.rule.name(),
                    i64::from(c.status.code()),
                    c.data.code.as_str(),
                    c.data.health_facility.as_str(),
                    serde_json::to_string(&c.data).unwrap_or_default(),
                    text(&c.at)
                ]
            )?;
        }
        ClaimEvent::OutcomeReceived(o) => {
            // the claim as the master decided it: its data, status and amounts, and every line
            let claim_id = o.claim_id.to_string();
            let record = ClaimRecord {
                claim_id: o.claim_id,
                data: o.data.clone(),
                claimed: o.claimed,
                restored_from: None,
                identifiers: vec![],
                at: o.at,
            };
            let mut row = claim_data_row(&record);
            for (k, v) in [
                ("claim_id", json!(claim_id)),
                ("status", json!(o.status.code())),
                ("rejection_reason", json!(o.rejection_reason)),
                ("category", json!(o.category.map(|c| c.name()))),
                ("approved", amount(o.approved)),
                ("valuated", amount(o.valuated)),
                ("remunerated", amount(o.remunerated)),
                ("updated_at", json!(text(&o.at))),
                ("updated_by", json!(by)),
            ] {
                row[k] = v;
            }
            // every data column but `restored_from`, which the master's claim does not change
            let columns = [&CLAIM_DATA[..CLAIM_DATA.len() - 1], &CLAIM_OUTCOME[..], &STAMPS[..]].concat();
            bulk::write(tx, bulk::update(backend, "claims", &columns, &CLAIM_KEY), vec![row]).await?;
            sql_exec!(tx.exec(), "DELETE FROM claim_lines WHERE claim_id = $1", [claim_id.as_str()])?;
            let mut lines = line_rows(&record);
            for line in &mut lines {
                let decided = o.lines.iter().find(|l| line["kind"] == l.kind.name() && line["line_index"] == l.index);
                if let Some(l) = decided {
                    line["status"] = json!(l.status.map(|s| s.code()));
                    line["rejection_reason"] = json!(l.rejection_reason);
                    line["qty_approved"] = amount(l.qty_approved);
                    line["price_adjusted"] = amount(l.price_adjusted);
                    line["price_approved"] = amount(l.price_approved);
                    line["price_valuated"] = amount(l.price_valuated);
                }
            }
            let columns = [&LINE[..], &LINE_OUTCOME[..]].concat();
            bulk::write(tx, bulk::insert(backend, "claim_lines", &columns), lines).await?;
        }
        // written in runs by `Pending`
        ClaimEvent::HealthFacilityUpserted { .. }
        | ClaimEvent::MedicalEntryUpserted { .. }
        | ClaimEvent::InsureeUpserted { .. }
        | ClaimEvent::PolicyUpserted { .. }
        | ClaimEvent::ClaimCreated(_)
        | ClaimEvent::ClaimSubmitted { .. } => {}
    }
    Ok(())
}
