//! A command's or query's answer as the application gives it: a status, the data, paging for
//! lists, and the log position a command reached. Transports render it (the HTTP envelope, a NATS
//! reply, a FHIR resource); an idempotent repeat gives the stored one back.

use serde::Serialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The HTTP-style status (200, 201): what the command did, in the one vocabulary every
    /// transport already speaks.
    pub status: u16,
    pub data: Value,
    pub paging: Option<Value>,
    /// The log position a command reached, when it appended.
    pub position: Option<i64>,
}

impl Answer {
    pub fn ok(data: impl Serialize) -> Self {
        Answer { status: 200, data: json!(data), paging: None, position: None }
    }

    pub fn created(data: impl Serialize) -> Self {
        Answer { status: 201, ..Answer::ok(data) }
    }

    pub fn list(data: impl Serialize, paging: Value) -> Self {
        Answer { paging: Some(paging), ..Answer::ok(data) }
    }

    /// The answer with the log position the command reached.
    pub fn at(mut self, position: i64) -> Self {
        self.position = Some(position);
        self
    }

    /// The body as stored for an idempotent repeat (without the request id, which is per request).
    pub fn body_without_meta(&self) -> Value {
        let mut body = json!({ "data": self.data });
        if let Some(paging) = &self.paging {
            body["paging"] = paging.clone();
        }
        body
    }

    /// Rebuilds an answer from a stored body.
    pub fn from_stored(status: u16, body: Value, position: i64) -> Self {
        Answer {
            status,
            data: body.get("data").cloned().unwrap_or(Value::Null),
            paging: body.get("paging").cloned(),
            position: Some(position),
        }
    }
}
