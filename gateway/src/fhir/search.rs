//! `GET /fhir/{type}?identifier=..&_id=..&_lastUpdated=..&_count=..`: a `searchset` Bundle, a
//! page at a time in id order (`next` links carry `_after`, the page's last id).
//!
//! `identifier` is FHIR's token search: `value` (this server's id or the business code, any
//! system), `|value` (the business code, which has no system), `system|` (every resource with an
//! identifier of that system), `system|value`. This server's system finds its ids; another
//! server's finds the insurees and policies imported from it (`fhir_identifiers`; no claim yet).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use careledger_fhir::{Page, Token, TokenError};
use careledger_projections::claims::Select;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

use super::{Fhir, FhirError, Found, Served, base_url, may_read, systems};
use crate::auth::User;
use crate::http::envelope::ApiError;
use crate::state::AppState;

/// Matches per page unless `_count` says otherwise, and the most it may say.
const DEFAULT_COUNT: i64 = 100;
const MAX_COUNT: i64 = 1000;

/// The most claims one page holds, whatever `_count` says (FHIR lets a server give fewer): each
/// claim is read with its lines, attachments and feedback, so a page of 1,000 would be thousands
/// of statements for one request while other callers wait for connections.
const MAX_CLAIMS_PAGE: i64 = 100;

/// What a search asks, read from its parameters.
struct Search {
    select: Select,
    /// `ServiceRequest`'s `requisition=<number>` (with or without `|` before it), as written.
    requisition: Option<String>,
    /// No resource can match (an identifier of a system this server holds none of).
    nothing: bool,
}

/// `_lastUpdated=ge<time>` or `gt<time>` (a date or an instant) as the first time it admits, in
/// the read models' text form.
fn since(raw: &str) -> Option<String> {
    let (strict, time) = match raw.get(..2) {
        Some("ge") => (false, &raw[2..]),
        Some("gt") => (true, &raw[2..]),
        _ => return None,
    };
    let at: DateTime<Utc> = match DateTime::parse_from_rfc3339(time) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => NaiveDate::parse_from_str(time, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0)?.and_utc(),
    };
    let at = if strict { at + chrono::Duration::microseconds(1) } else { at };
    Some(at.to_rfc3339_opts(SecondsFormat::Micros, true))
}

fn read_search(params: &[(String, String)], own_system: &str, served: Served) -> Result<Search, FhirError> {
    let mut search =
        Search { select: Select { limit: DEFAULT_COUNT, ..Select::default() }, requisition: None, nothing: false };
    let mut seen = std::collections::HashSet::new();
    for (name, value) in params {
        if !seen.insert(name.as_str()) {
            return Err(FhirError::parameter(name, format!("{name} is given more than once")));
        }
        let s = &mut search.select;
        match name.as_str() {
            "identifier" => match Token::parse(value) {
                Ok(Token::Any(v)) => s.id_or_code = Some(v),
                Ok(Token::NoSystem(v)) => s.code = Some(v),
                Ok(Token::System(system)) if system == own_system => {}
                // another server's: the resources imported from it
                Ok(Token::System(system)) => s.foreign = Some((system, None)),
                // with `_id` too, both must name the same resource, in whichever order they come
                Ok(Token::Exact(system, v)) if system == own_system => match &s.id {
                    Some(id) if *id != v => search.nothing = true,
                    _ => s.id = Some(v),
                },
                Ok(Token::Exact(system, v)) => s.foreign = Some((system, Some(v))),
                Err(TokenError::Empty) => {
                    return Err(FhirError::parameter(name, "expected system|value, value, |value or system|"));
                }
                Err(TokenError::TooLong) => return Err(FhirError::parameter(name, "longer than 1000 characters")),
            },
            "_id" if careledger_fhir::is_id(value) => match &s.id {
                Some(id) if id != value => search.nothing = true,
                _ => s.id = Some(value.clone()),
            },
            "_id" => return Err(FhirError::parameter(name, "expected a FHIR id (1 to 64 of A-Z a-z 0-9 - .)")),
            "_lastUpdated" => {
                s.updated_since = Some(since(value).ok_or_else(|| {
                    FhirError::parameter(name, "expected ge or gt and a date (2026-12-07) or an instant")
                })?);
            }
            "_count" => {
                s.limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_COUNT).contains(n))
                    .ok_or_else(|| FhirError::parameter(name, format!("expected 1 to {MAX_COUNT}")))?;
            }
            // a number either form writes (lower case, or without dashes) is found as issued;
            // one no scheme could issue finds nothing
            "requisition" if served == Served::ServiceRequest => {
                let number = value.strip_prefix('|').unwrap_or(value);
                match careledger_domain::requisitions::RequisitionNumber::parse(number) {
                    Ok(number) => search.requisition = Some(number.text()),
                    Err(_) => search.nothing = true,
                }
            }
            "_after" if careledger_fhir::is_id(value) => s.after = Some(value.clone()),
            "_after" => return Err(FhirError::parameter(name, "expected the id a page ended with")),
            "_format" if matches!(value.as_str(), "json" | "application/json" | careledger_fhir::FHIR_JSON) => {}
            "_format" => {
                return Err(FhirError::new(
                    StatusCode::NOT_ACCEPTABLE,
                    careledger_fhir::IssueType::NotSupported,
                    "only JSON is served (_format=json)",
                ));
            }
            other => {
                return Err(FhirError::parameter(
                    other,
                    format!("{other} is not a search parameter here (see /fhir/metadata)"),
                ));
            }
        }
    }
    Ok(search)
}

/// The search's URL with `params`, `_after` replaced by `after` when given.
fn url(base: &str, resource_type: &str, params: &[(String, String)], after: Option<&str>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params.iter().filter(|(n, _)| n != "_after") {
        query.append_pair(name, value);
    }
    if let Some(after) = after {
        query.append_pair("_after", after);
    }
    let query = query.finish();
    if query.is_empty() { format!("{base}/{resource_type}") } else { format!("{base}/{resource_type}?{query}") }
}

/// `GET /fhir/{type}`
pub async fn search(
    State(state): State<AppState>,
    Path(resource_type): Path<String>,
    user: Result<User, ApiError>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Fhir, FhirError> {
    let served = Served::of(&resource_type)?;
    let user = may_read(&state, user, served)?;
    let mut search = read_search(&params, &systems(&state).own, served)?;
    if matches!(served, Served::Claim | Served::ClaimResponse) {
        search.select.limit = search.select.limit.min(MAX_CLAIMS_PAGE);
    }
    let found = if search.nothing {
        Found::default()
    } else {
        served.find(&state, &user, &search.select, search.requisition.as_deref()).await?
    };
    let base = base_url(&headers);
    // a full page may have a next one, even when some of its rows were not shown
    let next = (found.rows == search.select.limit)
        .then(|| found.last_id.as_deref().map(|id| url(&base, &resource_type, &params, Some(id))))
        .flatten();
    let page =
        Page { self_url: url(&base, &resource_type, &params, search.select.after.as_deref()), next_url: next, base };
    Ok(Fhir(StatusCode::OK, careledger_fhir::searchset(found.resources, &page)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_updated_admits_from_the_time_given() {
        assert_eq!(since("ge2026-12-07").as_deref(), Some("2026-12-07T00:00:00.000000Z"));
        assert_eq!(since("gt2026-12-07T10:00:00Z").as_deref(), Some("2026-12-07T10:00:00.000001Z"));
        assert_eq!(since("ge2026-12-07T12:00:00+02:00").as_deref(), Some("2026-12-07T10:00:00.000000Z"));
        assert_eq!(since("2026-12-07"), None);
        assert_eq!(since("lt2026-12-07"), None);
        assert_eq!(since("ge2026-13-07"), None);
    }

    #[test]
    fn identifiers_of_this_system_find_ids_and_others_what_came_from_there() {
        let params = |v: &str| vec![("identifier".to_string(), v.to_string())];
        let s = read_search(&params("urn:own|abc"), "urn:own", Served::Patient).unwrap();
        assert_eq!((s.select.id.as_deref(), s.nothing), (Some("abc"), false));
        let other = read_search(&params("urn:other|abc"), "urn:own", Served::Patient).unwrap().select.foreign;
        assert_eq!(other, Some(("urn:other".to_string(), Some("abc".to_string()))));
        let other = read_search(&params("urn:other|"), "urn:own", Served::Patient).unwrap().select.foreign;
        assert_eq!(other, Some(("urn:other".to_string(), None)));
        assert!(!read_search(&params("urn:own|"), "urn:own", Served::Patient).unwrap().nothing);
        assert_eq!(
            read_search(&params("|070"), "urn:own", Served::Patient).unwrap().select.code.as_deref(),
            Some("070")
        );
        assert!(read_search(&params("|"), "urn:own", Served::Patient).is_err());
        // `_id` and an identifier of this system name one resource together, in either order
        let both = |a: (&str, &str), b: (&str, &str)| {
            let params = vec![(a.0.to_string(), a.1.to_string()), (b.0.to_string(), b.1.to_string())];
            read_search(&params, "urn:own", Served::Patient).unwrap().nothing
        };
        assert!(both(("_id", "a"), ("identifier", "urn:own|b")));
        assert!(both(("identifier", "urn:own|b"), ("_id", "a")));
        assert!(!both(("identifier", "urn:own|a"), ("_id", "a")));
        let twice = vec![("_count".to_string(), "1".to_string()), ("_count".to_string(), "2".to_string())];
        assert!(read_search(&twice, "urn:own", Served::Patient).is_err());
        // `requisition` is ServiceRequest's alone; a number no scheme issues finds nothing
        let number = |v: &str| vec![("requisition".to_string(), v.to_string())];
        let s = read_search(&number("|01cx-ihht-tx63-02pi"), "urn:own", Served::ServiceRequest).unwrap();
        assert_eq!((s.requisition.as_deref(), s.nothing), (Some("01CX-IHHT-TX63-02PI"), false));
        assert!(read_search(&number("nonsense"), "urn:own", Served::ServiceRequest).unwrap().nothing);
        assert!(read_search(&number("01CX-IHHT-TX63-02PI"), "urn:own", Served::Patient).is_err());
    }
}
