//! Reference data the claim rules read, upserted in bulk (`{"entries": [...]}`, permission
//! `reference:write`): the bodies are read here into `ReferenceEntry`s, which
//! `careledger_app::claims` appends, every entry an event on its own stream (audited), all of a
//! request in one append. An entry replaces what its key held (a price list or a product's coverage whole).
//! A key named twice in one request is a 422, as is any invalid field (`$.entries[3].price`).

use std::collections::HashSet;

use axum::extract::State;
use axum::http::HeaderMap;
use careledger_app::claims::ReferenceEntry;
use careledger_events::claims::{
    Amount, CareType, Coverage, Gender, HealthFacility, Insuree, LineKind, MedicalEntry, Policy, PriceListEntry,
    PriceOrigin, Product, ServiceCategory,
};
use serde_json::{Map, Value};

use super::counted;
use crate::auth::User;
use crate::handler::command_ctx;
use crate::http::body::{Fields, JsonBody};
use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

/// Most entries one request upserts.
pub const MAX_ENTRIES: usize = 10_000;

/// The entries of a body, each read by `read` (which returns its key and the entry), refusing
/// repeated keys.
fn entries(
    body: &Map<String, Value>,
    key_field: &str,
    mut read: impl FnMut(&mut Fields<'_>) -> Option<(String, ReferenceEntry)>,
) -> Result<Vec<ReferenceEntry>, ApiError> {
    let mut f = Fields::new(body);
    f.only(&["entries"]);
    let mut keys = HashSet::new();
    let read = f.objects("entries", true, MAX_ENTRIES, |e, _| {
        let (key, entry) = read(e)?;
        if !keys.insert(key) {
            e.reject(key_field, "unique", "named twice in the request");
            return None;
        }
        Some(entry)
    });
    f.finish()?;
    Ok(read)
}

/// Runs the upsert of a body's entries in the application layer.
async fn upsert(
    state: &AppState,
    ctx: &careledger_app::CommandCtx,
    entries: Vec<ReferenceEntry>,
) -> Result<Envelope, ApiError> {
    Ok(super::context(state).upsert(ctx, entries).await?.into())
}

fn care_type(f: &mut Fields<'_>, name: &str, required: bool) -> Option<CareType> {
    f.one_of(name, required, CareType::from_name, &CareType::names())
}

/// `POST /api/v1/health-facilities` `{entries: [{code, name, care_type}]}`
pub async fn facilities(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("UpsertHealthFacilities", async {
        let ctx = command_ctx(&state, "UpsertHealthFacilities", &user, &headers, "/api/v1/health-facilities", &bytes)?;
        let entries = read("health-facilities", &body)?;
        upsert(&state, &ctx, entries).await
    })
    .await
}

/// The entries of a body of `POST /api/v1/<kind>`, each read and bounded as that API reads it
/// (the sync reads the master's register entries with it too).
pub(crate) fn read(kind: &str, body: &Map<String, Value>) -> Result<Vec<ReferenceEntry>, ApiError> {
    match kind {
        "health-facilities" => entries(body, "code", facility),
        "medical-items" => medical(body, LineKind::Item),
        "medical-services" => medical(body, LineKind::Service),
        "price-lists" => entries(body, "health_facility", price_list),
        "products" => entries(body, "code", product),
        other => Err(ApiError::malformed(format!("{other} is not a kind of register entry"))),
    }
}

fn facility(e: &mut Fields<'_>) -> Option<(String, ReferenceEntry)> {
    e.only(&["code", "name", "care_type"]);
    let code = e.string("code", true, 50);
    let name = e.string("name", true, 255);
    let care_type = care_type(e, "care_type", true);
    let facility = HealthFacility { code: code?, name: name?, care_type: care_type? };
    Some((facility.code.clone(), ReferenceEntry::Facility(facility)))
}

fn price_list(e: &mut Fields<'_>) -> Option<(String, ReferenceEntry)> {
    e.only(&["health_facility", "items", "services"]);
    let facility = e.string("health_facility", true, 50);
    let mut list = priced(e, "items", LineKind::Item);
    list.extend(priced(e, "services", LineKind::Service));
    let facility = facility?;
    Some((facility.clone(), ReferenceEntry::PriceList { health_facility: facility, entries: list }))
}

fn product(e: &mut Fields<'_>) -> Option<(String, ReferenceEntry)> {
    e.only(&["code", "name", "items", "services"]);
    let code = e.string("code", true, 50);
    let name = e.string("name", true, 255);
    let mut coverage = covered(e, "items", LineKind::Item);
    coverage.extend(covered(e, "services", LineKind::Service));
    let product = Product { code: code?, name: name?, coverage };
    Some((product.code.clone(), ReferenceEntry::Product(product)))
}

fn medical(body: &Map<String, Value>, kind: LineKind) -> Result<Vec<ReferenceEntry>, ApiError> {
    entries(body, "code", |e| {
        let mut allowed = vec!["code", "name", "price", "care_type", "frequency_days", "maximum_amount"];
        if kind == LineKind::Service {
            allowed.push("category");
        }
        e.only(&allowed);
        let code = e.string("code", true, 50);
        let name = e.string("name", true, 255);
        let price = e.amount("price", true, Amount::ZERO, Amount::MAX_PRICE);
        let care_type = care_type(e, "care_type", false);
        let frequency_days = e.integer("frequency_days", false, 0, 36_500).map(|d| d as u32);
        let maximum_amount = e.amount("maximum_amount", false, Amount::ZERO, Amount::MAX_QUANTITY);
        let category = if kind == LineKind::Service {
            e.one_of("category", false, ServiceCategory::from_name, &ServiceCategory::names())
        } else {
            None
        };
        let entry = MedicalEntry {
            kind,
            code: code?,
            name: name?,
            price: price?,
            care_type: care_type.unwrap_or(CareType::Both),
            frequency_days,
            maximum_amount,
            category,
        };
        Some((entry.code.clone(), ReferenceEntry::Medical(entry)))
    })
}

/// `POST /api/v1/medical-items` `{entries: [{code, name, price, care_type, frequency_days, maximum_amount}]}`
pub async fn items(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("UpsertMedicalItems", async {
        let ctx = command_ctx(&state, "UpsertMedicalItems", &user, &headers, "/api/v1/medical-items", &bytes)?;
        let entries = medical(&body, LineKind::Item)?;
        upsert(&state, &ctx, entries).await
    })
    .await
}

/// `POST /api/v1/medical-services` (as items, with `category`)
pub async fn services(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("UpsertMedicalServices", async {
        let ctx = command_ctx(&state, "UpsertMedicalServices", &user, &headers, "/api/v1/medical-services", &bytes)?;
        let entries = medical(&body, LineKind::Service)?;
        upsert(&state, &ctx, entries).await
    })
    .await
}

/// The priced codes of one kind in a price list entry.
fn priced(f: &mut Fields<'_>, name: &str, kind: LineKind) -> Vec<PriceListEntry> {
    let mut seen = HashSet::new();
    f.objects(name, false, MAX_ENTRIES, |p, _| {
        p.only(&["code", "price", "valid_from", "valid_to"]);
        let code = p.string("code", true, 50);
        let price = p.amount("price", false, Amount::ZERO, Amount::MAX_PRICE);
        let valid_from = p.date("valid_from", true);
        let valid_to = p.date("valid_to", false);
        if let (Some(from), Some(to)) = (valid_from, valid_to)
            && to < from
        {
            p.reject("valid_to", "date", "must not be before valid_from");
        }
        let (code, valid_from) = (code?, valid_from?);
        if !seen.insert((code.clone(), valid_from)) {
            p.reject("code", "unique", "this code and valid_from are named twice in the list");
            return None;
        }
        Some(PriceListEntry { kind, code, price, valid_from, valid_to })
    })
}

/// `POST /api/v1/price-lists` `{entries: [{health_facility, items: [{code, price, valid_from,
/// valid_to}], services: [...]}]}`: each facility's whole list.
pub async fn price_lists(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("UpsertPriceLists", async {
        let ctx = command_ctx(&state, "UpsertPriceLists", &user, &headers, "/api/v1/price-lists", &bytes)?;
        let entries = read("price-lists", &body)?;
        upsert(&state, &ctx, entries).await
    })
    .await
}

/// `POST /api/v1/insurees` `{entries: [{uuid, chfid, birth_date, gender}]}`
pub async fn insurees(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("UpsertInsurees", async {
        let ctx = command_ctx(&state, "UpsertInsurees", &user, &headers, "/api/v1/insurees", &bytes)?;
        let entries = entries(&body, "uuid", |e| {
            e.only(&["uuid", "chfid", "birth_date", "gender"]);
            let insuree_id = e.uuid("uuid", true);
            let chfid = e.string("chfid", true, 50);
            let birth_date = e.date("birth_date", true);
            let gender = e.one_of("gender", true, Gender::from_name, &Gender::names());
            let insuree = Insuree { insuree_id: insuree_id?, chfid: chfid?, birth_date: birth_date?, gender: gender? };
            Some((insuree.insuree_id.to_string(), ReferenceEntry::Insuree(insuree)))
        })?;
        upsert(&state, &ctx, entries).await
    })
    .await
}

/// The covered codes of one kind of a product.
fn covered(f: &mut Fields<'_>, name: &str, kind: LineKind) -> Vec<Coverage> {
    let mut seen = HashSet::new();
    f.objects(name, false, MAX_ENTRIES, |c, _| {
        c.only(&["code", "limit_adult", "limit_child", "waiting_period_adult", "waiting_period_child", "price_origin"]);
        let code = c.string("code", true, 50);
        let limit_adult = c.amount("limit_adult", false, Amount::ZERO, Amount::MAX_QUANTITY);
        let limit_child = c.amount("limit_child", false, Amount::ZERO, Amount::MAX_QUANTITY);
        let waiting_adult = c.integer("waiting_period_adult", false, 0, 1200);
        let waiting_child = c.integer("waiting_period_child", false, 0, 1200);
        let origin = c.one_of("price_origin", false, PriceOrigin::from_name, &PriceOrigin::names());
        let code = code?;
        if !seen.insert(code.clone()) {
            c.reject("code", "unique", "this code is named twice in the product");
            return None;
        }
        Some(Coverage {
            kind,
            code,
            limit_adult,
            limit_child,
            waiting_period_adult: waiting_adult.unwrap_or(0) as u32,
            waiting_period_child: waiting_child.unwrap_or(0) as u32,
            price_origin: origin.unwrap_or(PriceOrigin::PriceList),
        })
    })
}

/// `POST /api/v1/products` `{entries: [{code, name, items: [{code, limit_adult, limit_child,
/// waiting_period_adult, waiting_period_child, price_origin}], services: [...]}]}`
pub async fn products(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("UpsertProducts", async {
        let ctx = command_ctx(&state, "UpsertProducts", &user, &headers, "/api/v1/products", &bytes)?;
        let entries = read("products", &body)?;
        upsert(&state, &ctx, entries).await
    })
    .await
}

/// `POST /api/v1/policies` `{entries: [{uuid, insuree, product, effective_date, expiry_date}]}`
pub async fn policies(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("UpsertPolicies", async {
        let ctx = command_ctx(&state, "UpsertPolicies", &user, &headers, "/api/v1/policies", &bytes)?;
        let entries = entries(&body, "uuid", |e| {
            e.only(&["uuid", "insuree", "product", "effective_date", "expiry_date"]);
            let policy_id = e.uuid("uuid", true);
            let insuree_id = e.uuid("insuree", true);
            let product_code = e.string("product", true, 50);
            let effective_date = e.date("effective_date", true);
            let expiry_date = e.date("expiry_date", true);
            if let (Some(from), Some(to)) = (effective_date, expiry_date)
                && to < from
            {
                e.reject("expiry_date", "date", "must not be before effective_date");
                return None;
            }
            let policy = Policy {
                policy_id: policy_id?,
                insuree_id: insuree_id?,
                product_code: product_code?,
                effective_date: effective_date?,
                expiry_date: expiry_date?,
            };
            Some((policy.policy_id.to_string(), ReferenceEntry::Policy(policy)))
        })?;
        upsert(&state, &ctx, entries).await
    })
    .await
}
