//! The reference data submissions are checked against that rarely changes (health facilities,
//! the medical register, price lists, products' coverage), kept in process so that a submission
//! does not read it from the read model every time.
//!
//! Freshness rule: a copy is tagged with the version of the tables it was read at, the
//! `claims_reference_version` row (the position of the last such event the claims projector
//! applied, moved in the transaction that applies it; -1 when a rebuild emptied the tables). A
//! submission reads that version in the same statement as its insuree and history (one snapshot),
//! and is decided on a copy at that version or a later one. So it never decides on reference data
//! older than the read model it would otherwise read at that moment: an upsert answered with
//! position N is seen by any submission made after the read model applied N (`?after_position=N`
//! on a query, or [`crate::Projections::wait_for`]), whichever gateway process applied it and
//! whichever serves the submission, since every process reads the version from the shared
//! database. Versions are log positions and the tables at a version are a fold of the log up to
//! it, so equal versions are equal data, also across a rebuild (while a rebuild replays, the copy
//! held from before it keeps serving: it is newer than the tables being rebuilt).
//!
//! The register and the coverage are read whole when the version moves; a facility with its price
//! list is read when a submission first needs it at that version (a facility's list is as long as
//! the register, and submissions of a gateway may come from a few facilities only).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use careledger_events::claims::{
    CareType, Coverage, HealthFacility, LineKind, MedicalEntry, PriceListEntry, PriceOrigin, ServiceCategory,
};
use careledger_store::{Db, sql_fetch_all};

use super::queries::{cents, date, parse};
use crate::ProjectionError;

/// The version as stored, -1 when no row (a rebuild deleted it with the tables it versions).
pub(super) const VERSION: &str = "COALESCE((SELECT position FROM claims_reference_version WHERE id = 1), -1)";

/// The reference data of a version, copied from the read model.
pub(super) struct Snapshot {
    pub version: i64,
    /// Register entries by code (of either kind).
    register: HashMap<String, Vec<MedicalEntry>>,
    /// Coverage by product, then by code (of either kind).
    coverage: HashMap<String, HashMap<String, Vec<Coverage>>>,
    /// Facilities read so far at this version.
    facilities: Mutex<HashMap<String, Arc<FacilityReference>>>,
}

/// A facility (None when unknown) and its price list by code (of either kind).
pub(super) struct FacilityReference {
    pub facility: Option<HealthFacility>,
    price_list: HashMap<String, Vec<PriceListEntry>>,
}

impl Snapshot {
    pub fn register<'a>(&'a self, code: &str) -> impl Iterator<Item = &'a MedicalEntry> {
        self.register.get(code).into_iter().flatten()
    }

    pub fn coverage<'a>(&'a self, product: &str, code: &str) -> impl Iterator<Item = &'a Coverage> {
        self.coverage.get(product).and_then(|c| c.get(code)).into_iter().flatten()
    }
}

impl FacilityReference {
    pub fn price_list<'a>(&'a self, code: &str) -> impl Iterator<Item = &'a PriceListEntry> {
        self.price_list.get(code).into_iter().flatten()
    }
}

/// The reference data of the newest version this process has read (see the module's rule).
#[derive(Default)]
pub struct ReferenceCache {
    current: Mutex<Option<Arc<Snapshot>>>,
    /// Taken while a new version is read, so that the submissions that find the copy behind
    /// together read it once.
    loading: tokio::sync::Mutex<()>,
}

impl ReferenceCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn held(&self, at_least: i64) -> Option<Arc<Snapshot>> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current.as_ref().filter(|s| s.version >= at_least).cloned()
    }

    /// The reference data at version `at_least` or later.
    pub(super) async fn snapshot(&self, db: &Db, at_least: i64) -> Result<Arc<Snapshot>, ProjectionError> {
        if let Some(s) = self.held(at_least) {
            return Ok(s);
        }
        let _loading = self.loading.lock().await;
        if let Some(s) = self.held(at_least) {
            return Ok(s);
        }
        let snapshot = Arc::new(read_snapshot(db).await?);
        metrics::counter!("careledger_claims_reference_reads_total", "what" => "register").increment(1);
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        // a rebuild may have moved the version back: keep the newest read
        if current.as_ref().is_none_or(|c| c.version <= snapshot.version) {
            *current = Some(snapshot.clone());
        }
        Ok(snapshot)
    }

    /// The facility with its price list, from `snapshot` or else read (and kept in it when read at
    /// its version; read at a later one, it is used for this submission only, and the next
    /// submission, reading the later version, reads a new snapshot).
    pub(super) async fn facility(
        &self,
        db: &Db,
        snapshot: &Snapshot,
        code: &str,
    ) -> Result<Arc<FacilityReference>, ProjectionError> {
        if let Some(f) = snapshot.facilities.lock().unwrap_or_else(|p| p.into_inner()).get(code) {
            return Ok(f.clone());
        }
        let (version, facility) = read_facility(db, code).await?;
        metrics::counter!("careledger_claims_reference_reads_total", "what" => "facility").increment(1);
        let facility = Arc::new(facility);
        if version == snapshot.version {
            snapshot.facilities.lock().unwrap_or_else(|p| p.into_inner()).insert(code.to_string(), facility.clone());
        }
        Ok(facility)
    }
}

/// The register and every product's coverage with their version, in one statement (one snapshot
/// of the tables): rows tagged R, C or V.
async fn read_snapshot(db: &Db) -> Result<Snapshot, ProjectionError> {
    enum Read {
        Register(MedicalEntry),
        Covered(String, Coverage),
        Version(i64),
    }
    let mut conn = db.acquire().await?;
    let sql = format!(
        "SELECT 'R', kind, code, name, care_type, category, price, CAST(frequency_days AS BIGINT),
             maximum_amount, CAST(NULL AS BIGINT)
         FROM claims_medical_register
         UNION ALL
         SELECT 'C', kind, code, product_code, price_origin, NULL, limit_adult, limit_child,
             CAST(waiting_period_adult AS BIGINT), CAST(waiting_period_child AS BIGINT)
         FROM claims_product_coverage
         UNION ALL
         SELECT 'V', NULL, NULL, NULL, NULL, NULL, {VERSION}, NULL, NULL, NULL"
    );
    let rows = sql_fetch_all!(conn.exec(), sqlx::AssertSqlSafe(sql), [], |row| {
        let text = |i: usize| row.try_get::<Option<String>, _>(i);
        let required = |i: usize| text(i)?.ok_or_else(|| sqlx::Error::Decode("unexpected NULL".into()));
        let number = |i: usize| row.try_get::<Option<i64>, _>(i);
        let days = |i: usize| number(i).map(|d| d.unwrap_or(0).clamp(0, u32::MAX.into()) as u32);
        Ok(match required(0)?.as_str() {
            "R" => Read::Register(MedicalEntry {
                kind: parse(&required(1)?, LineKind::from_name)?,
                code: required(2)?,
                name: required(3)?,
                price: cents(number(6)?).ok_or_else(|| sqlx::Error::Decode("unexpected NULL".into()))?,
                care_type: parse(&required(4)?, CareType::from_name)?,
                frequency_days: number(7)?.map(|d| d.clamp(0, u32::MAX.into()) as u32),
                maximum_amount: cents(number(8)?),
                category: text(5)?.as_deref().and_then(ServiceCategory::from_name),
            }),
            "C" => Read::Covered(
                required(3)?,
                Coverage {
                    kind: parse(&required(1)?, LineKind::from_name)?,
                    code: required(2)?,
                    limit_adult: cents(number(6)?),
                    limit_child: cents(number(7)?),
                    waiting_period_adult: days(8)?,
                    waiting_period_child: days(9)?,
                    price_origin: parse(&required(4)?, PriceOrigin::from_name)?,
                },
            ),
            _ => Read::Version(number(6)?.unwrap_or(-1)),
        })
    })?;
    let mut snapshot = Snapshot {
        version: -1,
        register: HashMap::new(),
        coverage: HashMap::new(),
        facilities: Mutex::new(HashMap::new()),
    };
    for row in rows {
        match row {
            Read::Register(e) => snapshot.register.entry(e.code.clone()).or_default().push(e),
            Read::Covered(product, c) => {
                snapshot.coverage.entry(product).or_default().entry(c.code.clone()).or_default().push(c)
            }
            Read::Version(v) => snapshot.version = v,
        }
    }
    Ok(snapshot)
}

/// A facility and its price list with their version, in one statement: rows tagged F, P or V.
async fn read_facility(db: &Db, code: &str) -> Result<(i64, FacilityReference), ProjectionError> {
    enum Read {
        Facility(HealthFacility),
        Listed(PriceListEntry),
        Version(i64),
    }
    let mut conn = db.acquire().await?;
    let sql = format!(
        "SELECT 'P', kind, code, valid_from, valid_to, price FROM claims_price_lists WHERE health_facility = $1
         UNION ALL
         SELECT 'F', care_type, code, name, NULL, NULL FROM claims_health_facilities WHERE code = $1
         UNION ALL
         SELECT 'V', NULL, NULL, NULL, NULL, {VERSION}"
    );
    let rows = sql_fetch_all!(conn.exec(), sqlx::AssertSqlSafe(sql), [code], |row| {
        let text = |i: usize| row.try_get::<Option<String>, _>(i);
        let required = |i: usize| text(i)?.ok_or_else(|| sqlx::Error::Decode("unexpected NULL".into()));
        Ok(match required(0)?.as_str() {
            "P" => Read::Listed(PriceListEntry {
                kind: parse(&required(1)?, LineKind::from_name)?,
                code: required(2)?,
                price: cents(row.try_get(5)?),
                valid_from: date(&required(3)?)?,
                valid_to: text(4)?.as_deref().map(date).transpose()?,
            }),
            "F" => Read::Facility(HealthFacility {
                code: required(2)?,
                name: required(3)?,
                care_type: parse(&required(1)?, CareType::from_name)?,
            }),
            _ => Read::Version(row.try_get::<Option<i64>, _>(5)?.unwrap_or(-1)),
        })
    })?;
    let mut version = -1;
    let mut out = FacilityReference { facility: None, price_list: HashMap::new() };
    for row in rows {
        match row {
            Read::Facility(f) => out.facility = Some(f),
            Read::Listed(p) => out.price_list.entry(p.code.clone()).or_default().push(p),
            Read::Version(v) => version = v,
        }
    }
    // a deterministic order where a code has several entries (the first valid one is taken)
    for entries in out.price_list.values_mut() {
        entries.sort_by(|a, b| (a.kind.name(), a.valid_from).cmp(&(b.kind.name(), b.valid_from)));
    }
    Ok((version, out))
}
