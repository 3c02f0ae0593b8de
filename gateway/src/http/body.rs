//! Reading request input into checked values, collecting every invalid entry for one 422.
//!
//! Bodies are read as JSON values first and checked field by field (instead of deserialising
//! straight into structs) so that one answer names every invalid field with its JSON path, and
//! unknown fields are refused rather than silently ignored.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use careledger_events::claims::Amount;
use careledger_events::codes::HolderType;
use careledger_events::requisitions::EntityType;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::envelope::{ApiError, Invalid};

/// A JSON object body. Malformed JSON is a 400, a body over the limit a 413, a non-object a 422.
pub struct JsonBody(pub Map<String, Value>, pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body is too large")
            } else {
                ApiError::malformed(format!("Cannot read the request body: {rejection}"))
            }
        })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => {
                // the paths are only made for a body that has a NUL (most have none: no allocation)
                if !map.iter().any(|(name, value)| name.contains('\0') || holds_nul(value)) {
                    return Ok(JsonBody(map, bytes));
                }
                let mut invalid = Vec::new();
                for (name, value) in &map {
                    find_nul(value, &format!("$.{name}"), name, &mut invalid);
                }
                Err(ApiError::invalid(invalid))
            }
            Ok(_) => Err(ApiError::invalid(vec![Invalid::field("$", "type", "expected a JSON object")])),
            Err(e) => Err(ApiError::malformed(format!("Malformed JSON: {e}"))),
        }
    }
}

/// Text with a NUL character (`\u0000`), anywhere in a body, in a key or a value: PostgreSQL can
/// store it neither in TEXT nor in JSONB, so it is refused here, at the edge, with its path,
/// before it can reach a read model or the log (DESIGN rule 9). Done once for every body rather
/// than per field, so that free JSON (`json_ext`) and every future field are covered too.
fn find_nul(value: &Value, path: &str, key: &str, invalid: &mut Vec<Invalid>) {
    const RULE: &str = "text must not contain the NUL character (\\u0000)";
    if key.contains('\0') {
        invalid.push(Invalid::field(path, "format", RULE));
        return;
    }
    match value {
        Value::String(s) if s.contains('\0') => invalid.push(Invalid::field(path, "format", RULE)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                find_nul(item, &format!("{path}[{i}]"), "", invalid);
            }
        }
        Value::Object(map) => {
            for (name, item) in map {
                find_nul(item, &format!("{path}.{name}"), name, invalid);
            }
        }
        _ => {}
    }
}

/// A calendar date written exactly `YYYY-MM-DD` (RFC 3339's `full-date`, OpenAPI's `format: date`).
/// chrono's `%Y-%m-%d` alone also takes `2024-1-5`, ` 2024-01-05` and `+2024-01-05`: a date the
/// API documents as `format: date` is refused in any other spelling, not read as a guess.
pub fn parse_date(text: &str) -> Option<chrono::NaiveDate> {
    let b = text.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    shaped.then(|| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()).flatten()
}

/// Whether a JSON value holds a NUL character in a string or a key, however deep.
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(name, item)| name.contains('\0') || holds_nul(item)),
        _ => false,
    }
}

/// Whether a path or query string carries a NUL character, encoded (`%00`) or not.
pub fn has_nul(text: &str) -> bool {
    text.contains('\0') || text.as_bytes().windows(3).any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

/// Checks the fields of a JSON object, remembering every failure.
pub struct Fields<'a> {
    object: &'a Map<String, Value>,
    invalid: Vec<Invalid>,
    /// The JSON path of `object`: `$`, or e.g. `$.udi[0]` for an item of an array.
    prefix: String,
}

impl<'a> Fields<'a> {
    pub fn new(object: &'a Map<String, Value>) -> Self {
        Fields { object, invalid: vec![], prefix: "$".into() }
    }

    fn fail(&mut self, name: &str, rule: &'static str, description: String) {
        self.invalid.push(Invalid::field(format!("{}.{name}", self.prefix), rule, description));
    }

    fn get(&mut self, name: &str, required: bool) -> Option<&'a Value> {
        match self.object.get(name) {
            None | Some(Value::Null) => {
                if required {
                    self.fail(name, "required", "required property is missing".into());
                }
                None
            }
            Some(v) => Some(v),
        }
    }

    /// Fields outside `allowed` are refused: a misspelt optional field must not pass unnoticed.
    pub fn only(&mut self, allowed: &[&str]) -> &mut Self {
        let unknown: Vec<String> = self.object.keys().filter(|k| !allowed.contains(&k.as_str())).cloned().collect();
        for name in unknown {
            self.fail(&name, "schema", "property is not allowed".into());
        }
        self
    }

    pub fn string(&mut self, name: &str, required: bool, max_chars: usize) -> Option<String> {
        match self.get(name, required)? {
            Value::String(s) if !s.trim().is_empty() && s.chars().count() <= max_chars => Some(s.trim().to_string()),
            Value::String(_) => {
                self.fail(name, "length", format!("expected a non-empty string of at most {max_chars} characters"));
                None
            }
            _ => {
                self.fail(name, "cast", "expected a string".into());
                None
            }
        }
    }

    /// An integer from `min` to `max`. JSON has one number type: `3.0` is the integer 3 (as JSON
    /// Schema's `integer` reads it), `3.5` is no integer.
    pub fn integer(&mut self, name: &str, required: bool, min: i64, max: i64) -> Option<i64> {
        let value = self.get(name, required)?;
        let in_range = match (value.as_i64(), value.as_f64()) {
            (Some(n), _) => Some((min..=max).contains(&n).then_some(n)),
            // an integral float is compared as a float: one far outside i64 is out of range, not
            // saturated into it
            (None, Some(f)) if f.fract() == 0.0 => Some((f >= min as f64 && f <= max as f64).then_some(f as i64)),
            _ => None,
        };
        match in_range {
            Some(Some(n)) => Some(n),
            Some(None) => {
                self.fail(name, "number", format!("expected an integer from {min} to {max}"));
                None
            }
            None => {
                self.fail(name, "cast", "expected an integer".into());
                None
            }
        }
    }

    /// A URI naming a server (a FHIR identifier system): a scheme, `:`, then at least one
    /// character, none of them white space, a control character or `|` (which FHIR's token search
    /// uses to split a system from a value); at most 500 characters. Not trimmed.
    pub fn system_uri(&mut self, name: &str, required: bool) -> Option<String> {
        let value = self.get(name, required)?;
        let Some(text) = value.as_str() else {
            self.fail(name, "cast", "expected a string".into());
            return None;
        };
        let scheme_ok = |scheme: &str| {
            scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
        };
        let ok = text.chars().count() <= 500
            && text.split_once(':').is_some_and(|(scheme, rest)| {
                scheme_ok(scheme)
                    && !rest.is_empty()
                    && !rest.chars().any(|c| c.is_whitespace() || c.is_control() || c == '|')
            });
        if ok {
            Some(text.to_string())
        } else {
            self.fail(
                name,
                "format",
                "expected a URI (scheme:rest, no white space or |, at most 500 characters)".into(),
            );
            None
        }
    }

    pub fn uuid(&mut self, name: &str, required: bool) -> Option<Uuid> {
        let value = self.get(name, required)?;
        match value.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
            Some(id) => Some(id),
            None => {
                self.fail(name, "format", "expected a UUID".into());
                None
            }
        }
    }

    pub fn object(&mut self, name: &str) -> Option<Value> {
        match self.get(name, false)? {
            v @ Value::Object(_) => Some(v.clone()),
            _ => {
                self.fail(name, "cast", "expected an object".into());
                None
            }
        }
    }

    pub fn holder_type(&mut self, name: &str) -> Option<HolderType> {
        let value = self.get(name, true)?;
        match serde_json::from_value::<HolderType>(value.clone()) {
            Ok(h) => Some(h),
            Err(_) => {
                self.fail(
                    name,
                    "inclusion",
                    "expected 1 (printer), 2 (enrolment_officer), 3 (health_facility) or 4 (location)".into(),
                );
                None
            }
        }
    }

    pub fn entity_type(&mut self, name: &str) -> Option<EntityType> {
        let value = self.get(name, true)?;
        match value.as_str().and_then(EntityType::from_name) {
            Some(t) => Some(t),
            None => {
                let names: Vec<&str> = EntityType::ALL.iter().map(|t| t.name()).collect();
                self.fail(name, "inclusion", format!("expected one of: {}", names.join(", ")));
                None
            }
        }
    }

    /// Ok when every field passed.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.invalid.is_empty() { Ok(()) } else { Err(ApiError::invalid(self.invalid)) }
    }

    /// 422 with every invalid field, else the typed input `build` makes of the fields read,
    /// taking the required ones with `?`. A reader returns `None` for a required field only after
    /// recording why, so `build` failing with no invalid field is a bug of a reader: answered as
    /// one (500) here, once, instead of by an unreachable branch in every handler.
    pub fn finish_with<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, ApiError> {
        self.finish()?;
        build().ok_or_else(|| ApiError::internal("a required field was accepted without a value"))
    }
}

/// Checks for nested objects, enumerations, dates and booleans.
impl<'a> Fields<'a> {
    /// Checks the fields of an object inside the body, naming entries below `prefix` (e.g.
    /// `$.udi[0]`); [`Fields::absorb`] takes its failures back into the body's answer.
    pub fn nested(object: &'a Map<String, Value>, prefix: String) -> Self {
        Fields { object, invalid: vec![], prefix }
    }

    pub fn absorb(&mut self, nested: Fields<'_>) {
        self.invalid.extend(nested.invalid);
    }

    /// Records a failure of a rule checked outside this helper.
    pub fn reject(&mut self, name: &str, rule: &'static str, description: impl Into<String>) {
        self.fail(name, rule, description.into());
    }

    /// One of a list of names (`parse` gives the value of a name), e.g. `"ACTIVE"`.
    pub fn one_of<T>(
        &mut self,
        name: &str,
        required: bool,
        parse: impl Fn(&str) -> Option<T>,
        names: &str,
    ) -> Option<T> {
        let value = self.get(name, required)?;
        match value.as_str().and_then(parse) {
            Some(v) => Some(v),
            None => {
                self.fail(name, "inclusion", format!("value is not allowed in enum: expected one of {names}"));
                None
            }
        }
    }

    /// A date `YYYY-MM-DD` (see [`parse_date`]).
    pub fn date(&mut self, name: &str, required: bool) -> Option<chrono::NaiveDate> {
        let value = self.get(name, required)?;
        match value.as_str().and_then(parse_date) {
            Some(d) => Some(d),
            None => {
                self.fail(name, "format", "expected a date YYYY-MM-DD".into());
                None
            }
        }
    }

    pub fn boolean(&mut self, name: &str, required: bool) -> Option<bool> {
        match self.get(name, required)? {
            Value::Bool(b) => Some(*b),
            _ => {
                self.fail(name, "cast", "expected a boolean".into());
                None
            }
        }
    }

    /// A number with at most two decimals (money, quantities), from `min` to `max` (the bounds
    /// of [`Amount`], README "Bounds").
    pub fn amount(&mut self, name: &str, required: bool, min: Amount, max: Amount) -> Option<Amount> {
        let value = self.get(name, required)?;
        let Some(number) = value.as_f64() else {
            self.fail(name, "cast", "expected a number".into());
            return None;
        };
        match Amount::from_f64(number) {
            Some(a) if a.to_f64() != number => {
                self.fail(name, "number", "expected at most two decimals".into());
                None
            }
            Some(a) if a >= min && a <= max => Some(a),
            _ => {
                self.fail(name, "number", format!("expected a number from {min} to {max}"));
                None
            }
        }
    }

    /// The objects of an array, each checked like a body of its own (entries `$.name[i].field`):
    /// `each` reads one item's fields; items that are not objects are refused.
    pub fn objects<T>(
        &mut self,
        name: &str,
        required: bool,
        max_items: usize,
        mut each: impl FnMut(&mut Fields<'_>, usize) -> Option<T>,
    ) -> Vec<T> {
        let Some(items) = self.array(name, required, max_items) else { return vec![] };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Value::Object(object) = item else {
                self.fail(&format!("{name}[{i}]"), "cast", "expected an object".into());
                continue;
            };
            let mut nested = Fields::nested(object, format!("{}.{name}[{i}]", self.prefix));
            let value = each(&mut nested, i);
            self.absorb(nested);
            out.extend(value);
        }
        out
    }

    /// Whether every field so far passed.
    pub fn is_valid(&self) -> bool {
        self.invalid.is_empty()
    }

    /// An array of at most `max_items` items.
    pub fn array(&mut self, name: &str, required: bool, max_items: usize) -> Option<&'a Vec<Value>> {
        match self.get(name, required)? {
            Value::Array(items) if items.len() <= max_items => Some(items),
            Value::Array(_) => {
                self.fail(name, "length", format!("expected at most {max_items} items"));
                None
            }
            _ => {
                self.fail(name, "cast", "expected an array".into());
                None
            }
        }
    }
}

/// Checks query parameters, remembering every failure.
pub struct Params<'a> {
    params: &'a HashMap<String, String>,
    invalid: Vec<Invalid>,
}

impl<'a> Params<'a> {
    pub fn new(params: &'a HashMap<String, String>) -> Self {
        Params { params, invalid: vec![] }
    }

    pub fn fail(&mut self, name: &str, rule: &'static str, description: impl Into<String>) {
        self.invalid.push(Invalid::query(name, rule, description));
    }

    /// The parameter's value, trimmed. A parameter given blank (`?limit=`, `?date_to=%20`) is
    /// refused rather than read as absent: it is no integer, date or filter value, and a caller
    /// who sends one most likely meant something else (an empty filter is no filter: leave it out).
    pub fn string(&mut self, name: &str, required: bool) -> Option<String> {
        match self.params.get(name).map(|s| s.trim()) {
            Some(s) if !s.is_empty() => Some(s.to_string()),
            Some(_) => {
                self.fail(name, "length", "expected a non-empty value (leave the parameter out instead)");
                None
            }
            None => {
                if required {
                    self.fail(name, "required", "required parameter is missing");
                }
                None
            }
        }
    }

    pub fn integer(&mut self, name: &str, default: i64, min: i64, max: i64) -> i64 {
        match self.string(name, false) {
            None => default,
            Some(s) => match s.parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => n,
                _ => {
                    self.fail(name, "number", format!("expected an integer from {min} to {max}"));
                    default
                }
            },
        }
    }

    /// Parameters outside `allowed` are refused.
    pub fn only(&mut self, allowed: &[&str]) {
        let mut unknown: Vec<&String> = self.params.keys().filter(|k| !allowed.contains(&k.as_str())).collect();
        unknown.sort();
        for name in unknown {
            self.fail(name, "schema", "parameter is not allowed");
        }
    }

    pub fn uuid(&mut self, name: &str) -> Option<Uuid> {
        let s = self.string(name, false)?;
        let parsed = Uuid::parse_str(&s).ok();
        if parsed.is_none() {
            self.fail(name, "format", "expected a UUID");
        }
        parsed
    }

    pub fn holder_type(&mut self, name: &str) -> Option<HolderType> {
        let s = self.string(name, true)?;
        let parsed = HolderType::from_name(&s);
        if parsed.is_none() {
            self.fail(name, "inclusion", "expected 1-4 or printer, enrolment_officer, health_facility, location");
        }
        parsed
    }

    /// Ok when every parameter passed.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.invalid.is_empty() { Ok(()) } else { Err(ApiError::invalid(self.invalid)) }
    }
}

/// Paging of list answers.
pub fn paging(limit: i64, offset: i64, total: i64) -> Value {
    serde_json::json!({ "limit": limit, "offset": offset, "total": total })
}
