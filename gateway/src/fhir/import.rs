//! `POST /fhir`: a peer's `transaction` Bundle imported (issue #21, the import side of the sync).
//! This module reads the Bundle into the application's terms (`careledger_app::sync`), which
//! matches, translates and appends it; every element it cannot read is named by its FHIRPath in
//! one 422 `OperationOutcome`, before anything is looked up.
//!
//! Imported so far: `Patient` (an insuree enrolled on a node, with the insurance number the node
//! gave it from the codes this server reserved to the node's holder) and `Coverage` (a policy).
//! Other resource types are refused by name, the whole Bundle with them (FHIR's transaction rule):
//! claims come next.
//!
//! The resources are read from JSON by hand, not through a FHIR model crate: the few elements read
//! here are checked one by one with their paths, and a generated R4 model costs minutes of every
//! build; what this server emits is checked against an independent FHIR library in the tests.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use careledger_app::sync::{
    Importer, Incoming, IncomingBundle, IncomingClaim, IncomingClaimResponse, IncomingCoverage, IncomingLineOutcome,
    IncomingPatient, IncomingRegister, IncomingReservation,
};
use careledger_app::{AppError, Invalid, Operation};
use careledger_events::claims::{Amount, Gender};
use careledger_events::codes::{CodeFormat, HolderType};
use careledger_events::{Identifier, Origin};
use careledger_fhir::IssueType;
use chrono::NaiveDate;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Fhir, FhirError};
use crate::auth::User;
use crate::handler::command_ctx;
use crate::http::body::JsonBody;
use crate::http::envelope::{ApiError, POSITION_HEADER};
use crate::state::AppState;

/// The largest Bundle a peer sends in one request (a node's week of enrolment and claims is a few
/// megabytes; the export's 1,000-resource pages are at most a few).
pub const MAX_BUNDLE_BYTES: usize = 64 << 20;

/// The most entries one Bundle holds: every entry costs a few lookups and its events go in one
/// append, so a Bundle of a million tiny entries would hold the import (and the writer) for long.
/// An export of 10,000 claims with their responses and 2,000 insurees and policies is 24,000.
pub const MAX_ENTRIES: usize = 50_000;
/// The most identifiers one resource carries (its ids on the servers it went through, a code).
pub const MAX_IDENTIFIERS: usize = 20;
/// The longest identifier system and value taken (a URI; an id or a business code).
const MAX_SYSTEM: usize = 500;
const MAX_VALUE: usize = 200;

/// The limit the import route reads its body with (the service's default is 1 MiB).
pub fn body_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_BUNDLE_BYTES)
}

/// `POST /fhir`
pub async fn import(
    State(state): State<AppState>,
    user: Result<User, ApiError>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, FhirError> {
    let user = user?;
    let write = state.config.permissions.of(Operation::SyncWrite);
    if !user.holds(write) {
        return Err(FhirError::new(
            StatusCode::FORBIDDEN,
            IssueType::Forbidden,
            format!("Your scope does not allow to import a Bundle. Missing allowances: {write}"),
        ));
    }
    // a body's NUL characters are named like any other invalid element
    let JsonBody(body, bytes) = body.map_err(|e| if e.invalid.is_empty() { e.into() } else { refused(e.invalid) })?;
    let bundle = read_bundle(&body).map_err(refused)?;
    let ctx = command_ctx(&state, "ImportBundle", &user, &headers, "/fhir", &bytes)?
        .imported(Origin { peer: bundle.sender.clone(), bundle: bundle.bundle.clone(), position: None }, &bytes);
    let importer = Importer {
        store: &state.store,
        projections: &state.projections,
        batches: &state.batches,
        query_wait: state.config.query_wait,
        own_system: &state.config.fhir_system,
        master: state.config.sync_master.as_deref(),
        claims: &crate::claims::context(&state),
    };
    let answer = importer.import(&ctx, bundle).await.map_err(|e| match e {
        AppError::Invalid(invalid) => refused(invalid),
        other => ApiError::from(other).into(),
    })?;
    // a command's answer carries the log position it reached, as the API's other commands do
    let mut response = Fhir(StatusCode::OK, answer.data).into_response();
    if let Some(value) = answer.position.and_then(|p| HeaderValue::from_str(&p.to_string()).ok()) {
        response.headers_mut().insert(POSITION_HEADER, value);
    }
    Ok(response)
}

/// A Bundle refused for what its elements say: the first element named, with what is wrong with
/// it and how many more are (an `OperationOutcome` locates one issue by FHIRPath).
fn refused(invalid: Vec<Invalid>) -> FhirError {
    let first = invalid.first();
    let what = first.and_then(|i| i.rules.first()).map(|r| r.description.clone()).unwrap_or_default();
    let more = match invalid.len() {
        0 | 1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    FhirError {
        location: first.map(|i| i.entry.clone()),
        ..FhirError::new(StatusCode::UNPROCESSABLE_ENTITY, IssueType::Invalid, format!("{what}{more}"))
    }
}

/// What reading a Bundle found wrong, every element at once.
struct Reader {
    invalid: Vec<Invalid>,
}

impl Reader {
    fn fail(&mut self, path: &str, rule: &'static str, message: impl Into<String>) {
        self.invalid.push(Invalid::field(path, rule, message));
    }

    /// A string of 1 to `max` characters without control characters, at `path`.
    fn text(&mut self, value: Option<&Value>, path: &str, required: bool, max: usize) -> Option<String> {
        match value {
            None | Some(Value::Null) if !required => None,
            None | Some(Value::Null) => {
                self.fail(path, "required", "required");
                None
            }
            Some(Value::String(s))
                if !s.trim().is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control) =>
            {
                Some(s.clone())
            }
            Some(Value::String(_)) => {
                self.fail(path, "length", format!("expected 1 to {max} characters, without control characters"));
                None
            }
            Some(_) => {
                self.fail(path, "type", "expected a string");
                None
            }
        }
    }

    fn date(&mut self, value: Option<&Value>, path: &str) -> Option<NaiveDate> {
        let text = self.text(value, path, true, 10)?;
        NaiveDate::parse_from_str(&text, "%Y-%m-%d").ok().or_else(|| {
            self.fail(path, "format", "expected a date YYYY-MM-DD");
            None
        })
    }

    fn object<'v>(&mut self, value: Option<&'v Value>, path: &str) -> Option<&'v Map<String, Value>> {
        match value {
            Some(Value::Object(o)) => Some(o),
            None | Some(Value::Null) => {
                self.fail(path, "required", "required");
                None
            }
            Some(_) => {
                self.fail(path, "type", "expected an object");
                None
            }
        }
    }

    fn array<'v>(&mut self, value: Option<&'v Value>, path: &str, required: bool) -> &'v [Value] {
        match value {
            Some(Value::Array(a)) => a,
            // FHIR's JSON leaves out an empty element rather than writing null
            None if !required => &[],
            None => {
                self.fail(path, "required", "required");
                &[]
            }
            Some(_) => {
                self.fail(path, "type", "expected an array");
                &[]
            }
        }
    }

    /// The Bundle's own identifier: any text of 1 to `max` characters (it names the Bundle and
    /// nothing is read from it).
    fn name(&mut self, value: Option<&Value>, path: &str, max: usize) -> Option<String> {
        match value.and_then(Value::as_str) {
            Some(s) if !s.is_empty() && s.chars().count() <= max => Some(s.to_string()),
            _ => {
                self.fail(path, "length", format!("expected a string of 1 to {max} characters"));
                None
            }
        }
    }

    /// An `Identifier` with a system and a value.
    fn identifier(&mut self, value: &Value, path: &str) -> Option<Identifier> {
        let system = self.text(value.get("system"), &format!("{path}.system"), true, MAX_SYSTEM);
        let value = self.text(value.get("value"), &format!("{path}.value"), true, MAX_VALUE);
        Some(Identifier { system: system?, value: value? })
    }

    /// A resource's identifiers with a system, and the value of the one typed openIMIS `Code`.
    fn identifiers(&mut self, resource: &Map<String, Value>, path: &str) -> (Vec<Identifier>, Option<String>) {
        let (mut with_system, mut code) = (vec![], None);
        let identifiers = self.array(resource.get("identifier"), &format!("{path}.identifier"), true);
        if identifiers.len() > MAX_IDENTIFIERS {
            self.fail(&format!("{path}.identifier"), "length", format!("at most {MAX_IDENTIFIERS} identifiers"));
            return (with_system, code);
        }
        for (i, identifier) in identifiers.iter().enumerate() {
            let at = format!("{path}.identifier[{i}]");
            let typed = identifier["type"]["coding"].as_array().is_some_and(|codings| {
                codings.iter().any(|c| c["system"] == careledger_fhir::OPENIMIS_IDENTIFIERS && c["code"] == "Code")
            });
            if typed {
                code = self.text(identifier.get("value"), &format!("{at}.value"), true, 50);
            } else if let Some(identifier) = self.identifier(identifier, &at) {
                with_system.push(identifier);
            }
        }
        (with_system, code)
    }

    fn patient(&mut self, resource: &Map<String, Value>, path: &str) -> Option<IncomingPatient> {
        let (identifiers, code) = self.identifiers(resource, path);
        if code.is_none() {
            self.fail(
                &format!("{path}.identifier"),
                "required",
                "the insurance number: an identifier typed Code (openIMIS)",
            );
        }
        let name = resource.get("name").and_then(|n| n.get(0));
        let last_name = self.text(name.and_then(|n| n.get("family")), &format!("{path}.name[0].family"), true, 100);
        let other_names = self.text(
            name.and_then(|n| n.get("given")).and_then(|g| g.get(0)),
            &format!("{path}.name[0].given[0]"),
            true,
            100,
        );
        let birth_date = self.date(resource.get("birthDate"), &format!("{path}.birthDate"));
        let gender = match resource.get("gender").and_then(Value::as_str) {
            Some("male") => Some(Gender::Male),
            Some("female") => Some(Gender::Female),
            Some("other") => Some(Gender::Other),
            _ => {
                self.fail(&format!("{path}.gender"), "enum", "expected male, female or other");
                None
            }
        };
        // (a `Map` indexed by a missing key panics: every element is looked up with `get`)
        let telecom = resource.get("telecom").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let phone = telecom
            .iter()
            .position(|c| c["system"] == "phone")
            .and_then(|i| self.text(telecom[i].get("value"), &format!("{path}.telecom[{i}].value"), true, 50));
        let address = resource.get("address").and_then(|a| a.get(0)).and_then(|a| a.get("text"));
        let location = self.text(address, &format!("{path}.address[0].text"), false, 50);
        let extensions = resource.get("extension").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let family_head = match extensions.iter().position(|e| e["url"] == careledger_fhir::FAMILY_HEAD) {
            None => None,
            Some(i) => {
                let at = format!("{path}.extension[{i}].valueReference.identifier");
                match extensions[i].get("valueReference").and_then(|r| r.get("identifier")) {
                    Some(identifier) => self.identifier(identifier, &at),
                    None => {
                        self.fail(
                            &at,
                            "required",
                            "the family head by identifier (the sync translates references through identifiers)",
                        );
                        None
                    }
                }
            }
        };
        Some(IncomingPatient {
            identifiers,
            chfid: code?,
            last_name: last_name?,
            other_names: other_names?,
            birth_date: birth_date?,
            gender: gender?,
            phone,
            location,
            family_head,
        })
    }

    fn coverage(&mut self, resource: &Map<String, Value>, path: &str) -> Option<IncomingCoverage> {
        let (identifiers, _) = self.identifiers(resource, path);
        let beneficiary = self.object(resource.get("beneficiary"), &format!("{path}.beneficiary"));
        let beneficiary = beneficiary.and_then(|b| match b.get("identifier") {
            Some(identifier) => self.identifier(identifier, &format!("{path}.beneficiary.identifier")),
            None => {
                self.fail(
                    &format!("{path}.beneficiary.identifier"),
                    "required",
                    "a reference by identifier (the sync translates references through identifiers)",
                );
                None
            }
        });
        let classes = self.array(resource.get("class"), &format!("{path}.class"), true);
        let plan = classes
            .iter()
            .position(|c| c["type"]["coding"].as_array().is_some_and(|cs| cs.iter().any(|c| c["code"] == "plan")));
        let product_code = match plan {
            Some(i) => self.text(classes[i].get("value"), &format!("{path}.class[{i}].value"), true, 50),
            None => {
                self.fail(&format!("{path}.class"), "required", "the product: a class of type plan");
                None
            }
        };
        let period = self.object(resource.get("period"), &format!("{path}.period"));
        let effective = period.and_then(|p| self.date(p.get("start"), &format!("{path}.period.start")));
        let expiry = period.and_then(|p| self.date(p.get("end"), &format!("{path}.period.end")));
        // the enrolment date, where the sender says it (careledger's extension; R4's Coverage
        // has none): without it the policy is taken as enrolled when it starts
        let extensions = self.array(resource.get("extension"), &format!("{path}.extension"), false);
        let enrol_date = match extensions.iter().position(|e| e["url"] == careledger_fhir::ENROL_DATE) {
            Some(i) => Some(self.date(extensions[i].get("valueDate"), &format!("{path}.extension[{i}].valueDate"))?),
            None => None,
        };
        Some(IncomingCoverage {
            identifiers,
            beneficiary: beneficiary?,
            product_code: product_code?,
            enrol_date: enrol_date.or(effective)?,
            effective_date: effective?,
            expiry_date: expiry?,
        })
    }
}

/// Whether a `Basic` is of this kind (`Basic.code`, careledger's system).
fn basic_kind(resource: &Map<String, Value>, kind: &str) -> bool {
    resource.get("code").and_then(|c| c.get("coding")).and_then(Value::as_array).is_some_and(|codings| {
        codings.iter().any(|c| c["system"] == careledger_fhir::RESOURCE_KINDS && c["code"] == kind)
    })
}

impl Reader {
    /// The parts of the resource's complex extension `url` (required, named `what`), and where
    /// they are.
    fn parts<'v>(
        &mut self,
        resource: &'v Map<String, Value>,
        path: &str,
        url: &str,
        what: &str,
    ) -> Option<(String, &'v [Value])> {
        let extensions = resource.get("extension").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let Some(i) = extensions.iter().position(|e| e["url"] == url) else {
            self.fail(&format!("{path}.extension"), "required", what);
            return None;
        };
        let at = format!("{path}.extension[{i}].extension");
        let parts = self.array(extensions[i].get("extension"), &at, true);
        Some((at, parts))
    }

    /// An entry of the master's register (a `Basic` of kind `register-entry`), read by the
    /// upsert API's reader.
    fn register_entry(&mut self, resource: &Map<String, Value>, path: &str) -> Option<IncomingRegister> {
        let (identifiers, _) = self.identifiers(resource, path);
        let (at, parts) =
            self.parts(resource, path, careledger_fhir::REGISTER_ENTRY, "the register entry's extension")?;
        let part = |name: &str| parts.iter().find(|p| p["url"] == name);
        let kind =
            self.text(part("kind").and_then(|p| p.get("valueCode")), &format!("{at}.where(url='kind')"), true, 50)?;
        if !careledger_fhir::REGISTER_KINDS.contains(&kind.as_str()) {
            let kinds = careledger_fhir::REGISTER_KINDS.join(", ");
            self.fail(&format!("{at}.where(url='kind')"), "enum", format!("expected one of {kinds}"));
            return None;
        }
        let attachment = part("entry").and_then(|p| p.get("valueAttachment"));
        let data_at = format!("{at}.where(url='entry').valueAttachment.data");
        if attachment.and_then(|a| a.get("contentType")).and_then(Value::as_str) != Some("application/json") {
            self.fail(
                &format!("{at}.where(url='entry').valueAttachment.contentType"),
                "enum",
                "expected application/json",
            );
            return None;
        }
        let data = self.text(attachment.and_then(|a| a.get("data")), &data_at, true, MAX_BUNDLE_BYTES)?;
        let position = self.version(resource, path)?;
        match super::register::read_entry(&kind, &data) {
            Ok(entry) => Some(IncomingRegister { identifiers, entry, position }),
            Err(why) => {
                self.fail(&data_at, "invalid", why);
                None
            }
        }
    }

    /// Codes reserved for this server (a `Basic` of kind `code-reservation`).
    fn reservation(&mut self, resource: &Map<String, Value>, path: &str) -> Option<IncomingReservation> {
        let (identifiers, _) = self.identifiers(resource, path);
        let (at, parts) = self.parts(resource, path, careledger_fhir::RESERVATION, "the reservation's extension")?;
        let part = |name: &str| parts.iter().find(|p| p["url"] == name);
        let value = |name: &str, kind: &str| part(name).and_then(|p| p.get(kind));
        let uuid = |r: &mut Reader, name: &str| {
            let text = r.text(value(name, "valueString"), &format!("{at}.where(url='{name}')"), true, 36)?;
            Uuid::parse_str(&text).ok().or_else(|| {
                r.fail(&format!("{at}.where(url='{name}')"), "format", "expected a UUID");
                None
            })
        };
        let int = |r: &mut Reader, name: &str| {
            value(name, "valueInteger").and_then(Value::as_i64).or_else(|| {
                r.fail(&format!("{at}.where(url='{name}')"), "required", "expected an integer");
                None
            })
        };
        let batch_id = uuid(self, "batch");
        let reservation_id = uuid(self, "reservation");
        let holder_type = int(self, "holder-type").and_then(|c| {
            HolderType::from_code(c).or_else(|| {
                self.fail(&format!("{at}.where(url='holder-type')"), "enum", "not a holder type");
                None
            })
        });
        let holder_code =
            self.text(value("holder-code", "valueString"), &format!("{at}.where(url='holder-code')"), true, 50);
        let for_server =
            self.text(value("for-server", "valueUri"), &format!("{at}.where(url='for-server')"), true, 500);
        let (length, modulo) = (int(self, "length"), int(self, "modulo"));
        let prefix = self.text(value("prefix", "valueString"), &format!("{at}.where(url='prefix')"), false, 10);
        let mut codes = vec![];
        for code in parts.iter().filter(|p| p["url"] == "code") {
            codes.extend(self.text(code.get("valueString"), &format!("{at}.where(url='code')"), true, 50));
        }
        let format = CodeFormat {
            length: u32::try_from(length?).ok()?,
            modulo: u32::try_from(modulo?).ok()?,
            prefix: prefix.unwrap_or_default(),
        };
        Some(IncomingReservation {
            identifiers,
            batch_id: batch_id?,
            reservation_id: reservation_id?,
            holder_type: holder_type?,
            holder_code: holder_code?,
            for_server: for_server?,
            format,
            codes,
        })
    }
}

/// The text of the first coding's code of a CodeableConcept at `value`, if any.
fn coded(value: Option<&Value>) -> Option<&str> {
    value?.get("coding")?.as_array()?.iter().find_map(|c| c.get("code")?.as_str())
}

/// A logical reference's identifier value (`{"identifier": {"value": ...}}`).
fn referenced(value: Option<&Value>) -> Option<&Value> {
    value?.get("identifier")?.get("value")
}

impl Reader {
    /// A claim as the sender entered it (`Claim`), read into the body `POST /api/v1/claims`
    /// takes and checked by the same rules; what breaks them is named by its FHIR element.
    fn claim(&mut self, resource: &Map<String, Value>, path: &str) -> Option<IncomingClaim> {
        let (identifiers, code) = self.identifiers(resource, path);
        let mut body = Map::new();
        let mut put = |name: &str, value: Option<&Value>| {
            if let Some(value) = value {
                body.insert(name.to_string(), value.clone());
            }
        };
        put("code", code.map(Value::String).as_ref());
        put("health_facility", referenced(resource.get("provider")));
        put("insuree", referenced(resource.get("patient")));
        let period = resource.get("billablePeriod");
        put("date_from", period.and_then(|p| p.get("start")));
        put("date_to", period.and_then(|p| p.get("end")));
        put("date_claimed", resource.get("created"));
        let diagnoses = resource.get("diagnosis").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        for (i, diagnosis) in diagnoses.iter().enumerate() {
            let name = if i == 0 { "icd".to_string() } else { format!("icd_{i}") };
            put(
                &name,
                diagnosis.get("diagnosisCodeableConcept").and_then(|c| coded(Some(c))).map(Value::from).as_ref(),
            );
        }
        put("visit_type", coded(resource.get("subType")).map(Value::from).as_ref());
        if coded(resource.get("type")) == Some("institutional") {
            put("care_type", Some(&Value::from("I")));
        }
        put("admin", referenced(resource.get("enterer")));
        let supporting =
            resource.get("supportingInfo").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        for info in supporting {
            match coded(info.get("category")) {
                Some("explanation") => put("explanation", info.get("valueString")),
                Some("guarantee") => put("guarantee_id", info.get("valueString")),
                _ => {}
            }
        }
        // each line where it stands in `Claim.item`, to name it there
        let (mut items, mut services, mut at) = (vec![], vec![], (vec![], vec![]));
        let lines = resource.get("item").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        for (i, line) in lines.iter().enumerate() {
            let category = line.get("category");
            let kind = coded(category).or_else(|| category.and_then(|c| c.get("text")).and_then(Value::as_str));
            let mut input = Map::new();
            let product = line.get("productOrService");
            if let Some(code) = product
                .and_then(|p| p.get("text"))
                .or_else(|| product.and_then(|p| p.get("coding")?.get(0)?.get("code")))
            {
                input.insert("code".into(), code.clone());
            }
            for (name, element) in [("qty_provided", "quantity"), ("price_asked", "unitPrice")] {
                if let Some(value) = line.get(element).and_then(|q| q.get("value")) {
                    input.insert(name.into(), value.clone());
                }
            }
            let extensions = line.get("extension").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            if let Some(e) = extensions.iter().find(|e| e["url"] == careledger_fhir::LINE_EXPLANATION) {
                input.insert("explanation".into(), e.get("valueString").cloned().unwrap_or(Value::Null));
            }
            match kind {
                Some("item") => {
                    items.push(Value::Object(input));
                    at.0.push(i);
                }
                Some("service") => {
                    services.push(Value::Object(input));
                    at.1.push(i);
                }
                _ => self.fail(&format!("{path}.item[{i}].category"), "enum", "expected item or service"),
            }
        }
        body.insert("items".into(), Value::Array(items));
        body.insert("services".into(), Value::Array(services));
        let position = self.version(resource, path)?;
        match crate::claims::claim_data(&body, false) {
            Ok((_, data)) => Some(IncomingClaim { identifiers, data, position }),
            Err(e) => {
                for invalid in e.invalid {
                    let element = claim_element(&invalid.entry, &at);
                    for rule in invalid.rules {
                        self.invalid.push(Invalid::field(format!("{path}.{element}"), rule.rule, rule.description));
                    }
                }
                None
            }
        }
    }

    /// Where a claim stands on the sender (`ClaimResponse`): the claim it answers and openIMIS'
    /// status, the category of its adjudications.
    fn claim_response(&mut self, resource: &Map<String, Value>, path: &str) -> Option<IncomingClaimResponse> {
        let (identifiers, _) = self.identifiers(resource, path);
        let at = format!("{path}.request.identifier");
        let request = match resource.get("request").and_then(|r| r.get("identifier")) {
            Some(identifier) => self.identifier(identifier, &at),
            None => {
                self.fail(&at, "required", "the claim answered, by identifier");
                None
            }
        };
        let categories = resource
            .get("item")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|i| i.get("adjudication").and_then(Value::as_array).into_iter().flatten())
            .chain(resource.get("total").and_then(Value::as_array).into_iter().flatten())
            .filter_map(|a| coded(a.get("category")));
        let status = categories.into_iter().find_map(|code| code.parse::<i32>().ok());
        if status.is_none() {
            self.fail(
                &format!("{path}.item[0].adjudication[0].category"),
                "required",
                "the claim's status (openIMIS' claim-status code) as the adjudications' category",
            );
        }
        // careledger's own figures (a master's decision, mirrored whole by a node)
        let figure = |adjudication: &Value, code: &str| -> Option<Value> {
            let coding = adjudication.get("category")?.get("coding")?.as_array()?;
            coding.iter().any(|c| c["system"] == careledger_fhir::AMOUNTS && c["code"] == code).then(|| {
                adjudication.get("amount").and_then(|a| a.get("value")).or_else(|| adjudication.get("value")).cloned()
            })?
        };
        let amount = |r: &mut Reader, value: Option<Value>, at: &str| -> Option<Amount> {
            let value = value?;
            serde_json::from_value::<Amount>(value).ok().or_else(|| {
                r.fail(at, "type", "expected an amount (a number with at most two decimals)");
                None
            })
        };
        let totals = resource.get("total").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let total = |r: &mut Reader, code: &str| {
            let value = totals.iter().find_map(|t| figure(t, code));
            amount(r, value, &format!("{path}.total"))
        };
        let (approved, valuated, remunerated) =
            (total(self, "approved"), total(self, "valuated"), total(self, "remunerated"));
        let mut lines = vec![];
        let items = resource.get("item").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        for (i, item) in items.iter().enumerate() {
            let at = format!("{path}.item[{i}]");
            let Some(sequence) = item.get("itemSequence").and_then(Value::as_u64).and_then(|s| usize::try_from(s).ok())
            else {
                self.fail(&format!("{at}.itemSequence"), "required", "expected a positive integer");
                continue;
            };
            let adjudications =
                item.get("adjudication").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            let find = |code: &str| adjudications.iter().find_map(|a| figure(a, code));
            let reason = adjudications
                .iter()
                .find_map(|a| coded(a.get("reason")))
                .and_then(|r| r.parse::<i32>().ok())
                .unwrap_or_default();
            lines.push(IncomingLineOutcome {
                sequence,
                status: find("line-status").and_then(|s| s.as_i64()),
                rejection_reason: reason,
                qty_approved: amount(self, find("qty-approved"), &format!("{at}.adjudication")),
                price_adjusted: amount(self, find("price-adjusted"), &format!("{at}.adjudication")),
                price_approved: amount(self, find("price-approved"), &format!("{at}.adjudication")),
                price_valuated: amount(self, find("price-valuated"), &format!("{at}.adjudication")),
            });
        }
        let extensions = resource.get("extension").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let extension = |url: &str, kind: &str| extensions.iter().find(|e| e["url"] == url).and_then(|e| e.get(kind));
        let rejection_reason = extension(careledger_fhir::REJECTION_REASON, "valueInteger")
            .and_then(Value::as_i64)
            .and_then(|r| i32::try_from(r).ok());
        let category =
            extension(careledger_fhir::CLAIM_CATEGORY, "valueCode").and_then(Value::as_str).map(str::to_string);
        let position = self.version(resource, path)?;
        Some(IncomingClaimResponse {
            identifiers,
            position,
            request: request?,
            status: status?,
            rejection_reason,
            category,
            approved,
            valuated,
            remunerated,
            lines,
        })
    }
}

/// The `Claim` element a field of the claim body comes from (`$.items[1].code` is the second
/// item line: `item[<its index>].productOrService`).
fn claim_element(entry: &str, lines: &(Vec<usize>, Vec<usize>)) -> String {
    let field = entry.trim_start_matches("$.");
    let line = |kind: &str, list: &[usize]| -> Option<String> {
        let rest = field.strip_prefix(kind)?.strip_prefix('[')?;
        let (n, rest) = rest.split_once(']')?;
        let index = list.get(n.parse::<usize>().ok()?)?;
        let element = match rest.trim_start_matches('.') {
            "code" => "productOrService",
            "qty_provided" => "quantity.value",
            "price_asked" => "unitPrice.value",
            "explanation" => "extension",
            _ => "",
        };
        Some(if element.is_empty() { format!("item[{index}]") } else { format!("item[{index}].{element}") })
    };
    if let Some(element) = line("items", &lines.0).or_else(|| line("services", &lines.1)) {
        return element;
    }
    match field {
        "code" => "identifier".into(),
        "health_facility" => "provider.identifier.value".into(),
        "insuree" => "patient.identifier.value".into(),
        "date_from" => "billablePeriod.start".into(),
        "date_to" => "billablePeriod.end".into(),
        "date_claimed" => "created".into(),
        "icd" => "diagnosis[0]".into(),
        "visit_type" => "subType".into(),
        "care_type" => "type".into(),
        "admin" => "enterer.identifier.value".into(),
        "explanation" | "guarantee_id" => "supportingInfo".into(),
        "items" | "services" => "item".into(),
        other => match other.strip_prefix("icd_") {
            Some(n) => format!("diagnosis[{n}]"),
            None => other.to_string(),
        },
    }
}

impl Reader {
    /// The sender's log position of the version of the resource it sends (`meta.versionId`, as
    /// careledger writes it), when it says it; `None` (and a failure noted) when it is not one.
    #[allow(clippy::option_option)]
    fn version(&mut self, resource: &Map<String, Value>, path: &str) -> Option<Option<i64>> {
        let Some(version) = resource.get("meta").and_then(|m| m.get("versionId")) else { return Some(None) };
        match version.as_str().and_then(|v| v.parse::<i64>().ok()).filter(|p| *p > 0) {
            Some(position) => Some(Some(position)),
            None => {
                self.fail(&format!("{path}.meta.versionId"), "format", "expected a log position (an integer from 1)");
                None
            }
        }
    }

    /// A `DELETE` entry: a conditional delete of a claim by the sender's identifier
    /// (`Claim?identifier=<system>|<value>`, as `$changes` writes it), with the sender's log
    /// position of the deletion as `request.ifMatch` (`W/"<position>"`) when it says it.
    fn deletion(&mut self, entry: &Value, i: usize) -> Option<Incoming> {
        let at = format!("Bundle.entry[{i}].request.url");
        let url = self.text(entry["request"].get("url"), &at, true, MAX_SYSTEM + MAX_VALUE + 20)?;
        let token = url.strip_prefix("Claim?identifier=").map(careledger_fhir::Token::parse);
        let identifier = match token {
            // bounded as every identifier is: a tombstone keeps it as a key
            Some(Ok(careledger_fhir::Token::Exact(system, value)))
                if system.chars().count() <= MAX_SYSTEM && value.chars().count() <= MAX_VALUE =>
            {
                Identifier { system, value }
            }
            _ => {
                let why = format!(
                    "expected Claim?identifier=<system>|<value>, a system of at most {MAX_SYSTEM} characters and a value of at most {MAX_VALUE}: only claims are deleted by a sync"
                );
                self.fail(&at, "format", why);
                return None;
            }
        };
        let position = match entry["request"].get("ifMatch") {
            None => None,
            Some(tag) => {
                let position =
                    tag.as_str().and_then(|t| t.strip_prefix("W/\"")?.strip_suffix('"')?.parse::<i64>().ok());
                match position.filter(|p| *p > 0) {
                    Some(p) => Some(p),
                    None => {
                        let at = format!("Bundle.entry[{i}].request.ifMatch");
                        self.fail(&at, "format", "expected W/\"<log position>\"");
                        return None;
                    }
                }
            }
        };
        Some(Incoming::Deletion(identifier, position))
    }
}

/// The Bundle as the application imports it, or every element that cannot be read.
fn read_bundle(body: &Map<String, Value>) -> Result<IncomingBundle, Vec<Invalid>> {
    let mut r = Reader { invalid: vec![] };
    if body.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        r.fail("Bundle.resourceType", "enum", "expected a Bundle");
        return Err(r.invalid);
    }
    if body.get("type").and_then(Value::as_str) != Some("transaction") {
        r.fail("Bundle.type", "enum", "expected a transaction Bundle (all or nothing)");
    }
    let identifier = match body.get("identifier") {
        Some(identifier) => {
            let system = r.name(identifier.get("system"), "Bundle.identifier.system", 500);
            let value = r.name(identifier.get("value"), "Bundle.identifier.value", 200);
            system.zip(value).map(|(system, value)| Identifier { system, value })
        }
        None => {
            r.fail(
                "Bundle.identifier",
                "required",
                "the sender's system and the Bundle's name: importing it twice is recognised by it",
            );
            None
        }
    };
    let mut entries = vec![];
    let all = r.array(body.get("entry"), "Bundle.entry", false);
    if all.len() > MAX_ENTRIES {
        r.fail("Bundle.entry", "length", format!("at most {MAX_ENTRIES} entries a Bundle: send the rest in another"));
        return Err(r.invalid);
    }
    for (i, entry) in all.iter().enumerate() {
        let path = format!("Bundle.entry[{i}].resource");
        let method = entry["request"]["method"].as_str();
        if method == Some("DELETE") {
            entries.extend(r.deletion(entry, i));
            continue;
        }
        if !matches!(method, Some("PUT" | "POST")) {
            r.fail(
                &format!("Bundle.entry[{i}].request.method"),
                "enum",
                "expected PUT (conditional update by identifier), POST, or DELETE (a claim the sender deleted)",
            );
        }
        let Some(resource) = r.object(entry.get("resource"), &path) else { continue };
        let incoming = match resource.get("resourceType").and_then(Value::as_str) {
            Some("Patient") => r.patient(resource, &path).map(Incoming::Patient),
            Some("Coverage") => r.coverage(resource, &path).map(Incoming::Coverage),
            Some("Basic") if basic_kind(resource, careledger_fhir::RESERVATION_CODE) => {
                r.reservation(resource, &path).map(Incoming::Reservation)
            }
            Some("Basic") if basic_kind(resource, careledger_fhir::REGISTER_ENTRY_CODE) => {
                r.register_entry(resource, &path).map(Incoming::Register)
            }
            Some("Basic") => {
                let kinds =
                    format!("{} or {}", careledger_fhir::RESERVATION_CODE, careledger_fhir::REGISTER_ENTRY_CODE);
                r.fail(&format!("{path}.code"), "enum", format!("a Basic imported here is a {kinds}"));
                None
            }
            Some("Claim") => r.claim(resource, &path).map(Incoming::Claim),
            Some("ClaimResponse") => r.claim_response(resource, &path).map(Incoming::ClaimResponse),
            Some(other) => {
                r.fail(
                    &format!("{path}.resourceType"),
                    "enum",
                    format!(
                        "{other} is not imported: Patient, Coverage, Claim, ClaimResponse and Basic (code reservations, register entries) are"
                    ),
                );
                None
            }
            None => {
                r.fail(&format!("{path}.resourceType"), "required", "required");
                None
            }
        };
        entries.extend(incoming);
    }
    match identifier {
        Some(identifier) if r.invalid.is_empty() => {
            Ok(IncomingBundle { sender: identifier.system, bundle: identifier.value, entries })
        }
        _ => Err(r.invalid),
    }
}
