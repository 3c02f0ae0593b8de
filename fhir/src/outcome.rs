//! `OperationOutcome`: how every error under `/fhir` is told.

use serde_json::{Value, json};

/// The issue types used (FHIR's `issue-type` value set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    Invalid,
    NotFound,
    Forbidden,
    Security,
    NotSupported,
    Conflict,
    Transient,
    Exception,
}

impl IssueType {
    pub fn code(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::NotFound => "not-found",
            IssueType::Forbidden => "forbidden",
            IssueType::Security => "security",
            IssueType::NotSupported => "not-supported",
            IssueType::Conflict => "conflict",
            IssueType::Transient => "transient",
            IssueType::Exception => "exception",
        }
    }
}

/// One error issue of `issue_type`, with what to tell the caller and, where it lies in the
/// request, the FHIRPath-like location (`identifier`, `_count`).
pub fn operation_outcome(issue_type: IssueType, diagnostics: &str, location: Option<&str>) -> Value {
    let mut issue = json!({ "severity": "error", "code": issue_type.code(), "diagnostics": diagnostics });
    if let Some(location) = location {
        issue["expression"] = json!([location]);
    }
    json!({ "resourceType": "OperationOutcome", "issue": [issue] })
}
