//! Which HTTP operation each command subject stands for.
//!
//! A command over NATS is the HTTP command it names, sent through the same router: the subject
//! `careledger.commands.<context>.<Command>` picks a method and path template here, the message's
//! body is the HTTP body unchanged, and path parameters come from headers named after them
//! (`{code}` from `Careledger-Code`, `{id}` from `Careledger-Id`, `{uuid}` from `Careledger-Uuid`).
//! The body is not touched because it is what validation reads and what an idempotency key is
//! checked against: the same command with the same key over HTTP and over NATS is one command.
//!
//! A header fills exactly one path segment: a value with a `/`, or `.` / `..`, is refused rather
//! than encoded, so that no header can make a path name another resource than its template does.
//! Routes with a parameter that picks the operation (`/api/v1/claims/feedback/{action}`) are one
//! command per value instead, each on its fixed path.

use axum::http::Method;

/// One command reachable over NATS: a command of the application's table of commands
/// (`careledger_app::COMMANDS`, which gives its context and so its subject) and the HTTP route
/// it runs through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsCommand {
    pub name: &'static str,
    pub method: Method,
    /// The HTTP path, with `{param}` placeholders filled from headers.
    pub path: &'static str,
}

const fn command(name: &'static str, method: Method, path: &'static str) -> NatsCommand {
    NatsCommand { name, method, path }
}

/// Every command of the HTTP API (tests check that each is reachable and answers as over HTTP).
pub const COMMANDS: &[NatsCommand] = &[
    command("GenerateCodes", Method::POST, "/api/v1/code-batches"),
    command("ReserveCodes", Method::POST, "/api/v1/codes/reservations"),
    command("AssignCode", Method::POST, "/api/v1/codes/{code}/assignment"),
    command("LinkControlNumber", Method::POST, "/api/v1/codes/{code}/control-number"),
    command("RegisterInsuree", Method::POST, "/api/v1/enrolment/insurees"),
    command("EnrolInPolicy", Method::POST, "/api/v1/enrolment/policies"),
    command("ImportBundle", Method::POST, "/fhir"),
    command("RegisterLegalEntity", Method::POST, "/api/v1/legal-entities"),
    command("ChangeLegalEntityStatus", Method::PATCH, "/api/v1/legal-entities/{id}"),
    command("RegisterDivision", Method::POST, "/api/v1/divisions"),
    command("ChangeDivisionStatus", Method::PATCH, "/api/v1/divisions/{id}"),
    command("RegisterEquipment", Method::POST, "/api/v1/equipment"),
    command("LinkDivision", Method::POST, "/api/v1/equipment/{id}/division-links"),
    command("ChangeEquipmentStatus", Method::PATCH, "/api/v1/equipment/{id}/status"),
    command("ChangeAvailability", Method::PATCH, "/api/v1/equipment/{id}/availability"),
    command("IssueRequisition", Method::POST, "/api/v1/requisitions"),
    command("UpsertHealthFacilities", Method::POST, "/api/v1/health-facilities"),
    command("UpsertMedicalItems", Method::POST, "/api/v1/medical-items"),
    command("UpsertMedicalServices", Method::POST, "/api/v1/medical-services"),
    command("UpsertPriceLists", Method::POST, "/api/v1/price-lists"),
    command("UpsertInsurees", Method::POST, "/api/v1/insurees"),
    command("UpsertProducts", Method::POST, "/api/v1/products"),
    command("UpsertPolicies", Method::POST, "/api/v1/policies"),
    command("CreateClaim", Method::POST, "/api/v1/claims"),
    command("UpdateClaim", Method::PUT, "/api/v1/claims/{uuid}"),
    command("DeleteClaims", Method::POST, "/api/v1/claims/delete"),
    command("RestoreClaim", Method::POST, "/api/v1/claims/{uuid}/restore"),
    command("SubmitClaims", Method::POST, "/api/v1/claims/submit"),
    // one command per step and action (openIMIS' mutations), each a fixed path: no `{action}`
    command("SelectClaimsForFeedback", Method::POST, "/api/v1/claims/feedback/select"),
    command("SkipClaimsFeedback", Method::POST, "/api/v1/claims/feedback/skip"),
    command("BypassClaimsFeedback", Method::POST, "/api/v1/claims/feedback/bypass"),
    command("DeliverFeedback", Method::POST, "/api/v1/claims/{uuid}/feedback"),
    command("SelectClaimsForReview", Method::POST, "/api/v1/claims/review/select"),
    command("SkipClaimsReview", Method::POST, "/api/v1/claims/review/skip"),
    command("BypassClaimsReview", Method::POST, "/api/v1/claims/review/bypass"),
    command("SaveReview", Method::POST, "/api/v1/claims/{uuid}/review"),
    command("ProcessClaims", Method::POST, "/api/v1/claims/process"),
    command("ValuateClaims", Method::POST, "/api/v1/claims/valuations"),
    // the file of an attachment travels base64 in the JSON body (`document`), as over HTTP
    command("AddAttachment", Method::POST, "/api/v1/claims/{uuid}/attachments"),
    command("UpdateAttachment", Method::PATCH, "/api/v1/claims/{uuid}/attachments/{id}"),
    command("DeleteAttachment", Method::DELETE, "/api/v1/claims/{uuid}/attachments/{id}"),
];

/// The subjects commands arrive on: `careledger.commands.<context>.<Command>`.
pub const SUBJECT_PREFIX: &str = "careledger.commands.";

impl NatsCommand {
    /// The command a subject names, if any.
    pub fn for_subject(subject: &str) -> Option<&'static NatsCommand> {
        let (context, name) = subject.strip_prefix(SUBJECT_PREFIX)?.split_once('.')?;
        COMMANDS.iter().find(|c| c.name == name && c.context() == context)
    }

    /// Its context's name, from the table of commands ("" for a name not in it, which a test
    /// rules out).
    pub fn context(&self) -> &'static str {
        careledger_app::commands::named(self.name).map_or("", |c| c.context.name())
    }

    pub fn subject(&self) -> String {
        format!("{SUBJECT_PREFIX}{}.{}", self.context(), self.name)
    }

    /// The path parameters of the template, in order (`code`, `id`).
    pub fn parameters(&self) -> impl Iterator<Item = &'static str> {
        self.path.split('/').filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
    }

    /// The header a path parameter is read from: `Careledger-Code` for `{code}`.
    pub fn header_of(parameter: &str) -> String {
        format!("Careledger-{}", super::message::title_case(parameter))
    }

    /// The path with every parameter filled by `value` (percent-encoded), or every parameter
    /// `value` had none or no single segment for.
    pub fn path_with(
        &self,
        value: impl Fn(&str) -> Option<String>,
    ) -> Result<String, Vec<(&'static str, ParameterError)>> {
        let mut errors = vec![];
        let segments: Vec<String> = self
            .path
            .split('/')
            .map(|segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                None => segment.to_string(),
                Some(parameter) => match segment_of(value(parameter).as_deref()).and_then(|v| typed(parameter, v)) {
                    Ok(v) => percent_encoding::utf8_percent_encode(v, SEGMENT).to_string(),
                    Err(e) => {
                        errors.push((parameter, e));
                        String::new()
                    }
                },
            })
            .collect();
        if errors.is_empty() { Ok(segments.join("/")) } else { Err(errors) }
    }
}

/// Why a header cannot fill its path parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterError {
    /// No header, or a blank one.
    Missing,
    /// A `/`, or a dot segment: the value would not be one path segment.
    NotASegment,
    /// `{uuid}` (a claim) that is not a UUID: it could name a fixed route beside the claim's
    /// (`/api/v1/claims/submit`) and be answered 405 instead of 422.
    NotAUuid,
}

/// A segment checked against what its parameter names.
fn typed<'a>(parameter: &str, segment: &'a str) -> Result<&'a str, ParameterError> {
    if parameter == "uuid" && uuid::Uuid::parse_str(segment).is_err() {
        return Err(ParameterError::NotAUuid);
    }
    Ok(segment)
}

/// A header's value as one path segment (trimmed).
fn segment_of(value: Option<&str>) -> Result<&str, ParameterError> {
    match value.map(str::trim) {
        None | Some("") => Err(ParameterError::Missing),
        Some(v) if v.contains('/') || v == "." || v == ".." => Err(ParameterError::NotASegment),
        Some(v) => Ok(v),
    }
}

/// What a path segment must escape: everything but RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_their_commands() {
        let assign = NatsCommand::for_subject("careledger.commands.codes.AssignCode").unwrap();
        assert_eq!(assign.path, "/api/v1/codes/{code}/assignment");
        assert!(NatsCommand::for_subject("careledger.commands.registry.AssignCode").is_none());
        assert!(NatsCommand::for_subject("careledger.commands.codes").is_none());
        assert!(NatsCommand::for_subject("careledger.codes.AssignCode").is_none());
        for c in COMMANDS {
            assert_eq!(NatsCommand::for_subject(&c.subject()), Some(c));
        }
    }

    #[test]
    fn parameters_come_from_their_headers_encoded() {
        let assign = NatsCommand::for_subject("careledger.commands.codes.AssignCode").unwrap();
        assert_eq!(assign.parameters().collect::<Vec<_>>(), ["code"]);
        assert_eq!(NatsCommand::header_of("code"), "Careledger-Code");
        assert_eq!(assign.path_with(|_| Some("12 3?#%".into())).unwrap(), "/api/v1/codes/12%203%3F%23%25/assignment");
        assert_eq!(assign.path_with(|_| None), Err(vec![("code", ParameterError::Missing)]));
        assert_eq!(assign.path_with(|_| Some(" ".into())), Err(vec![("code", ParameterError::Missing)]));
        for other_path in ["12/3", "/", "..", " . ", "../../code-batches"] {
            let refused = assign.path_with(|_| Some(other_path.into()));
            assert_eq!(refused, Err(vec![("code", ParameterError::NotASegment)]), "{other_path:?}");
        }
    }

    #[test]
    fn claims_commands_take_their_claim_and_attachment_from_headers() {
        let update = NatsCommand::for_subject("careledger.commands.claims.UpdateAttachment").unwrap();
        assert_eq!(
            (update.method.clone(), update.parameters().collect::<Vec<_>>()),
            (Method::PATCH, vec!["uuid", "id"])
        );
        assert_eq!(NatsCommand::header_of("uuid"), "Careledger-Uuid");
        let claim = "0190b3a4-6c1e-7d2a-9f00-000000000001";
        let path = update.path_with(|p| Some(if p == "uuid" { claim.into() } else { "a-1".into() }));
        assert_eq!(path.unwrap(), format!("/api/v1/claims/{claim}/attachments/a-1"));
        let fixed_route = NatsCommand::for_subject("careledger.commands.claims.UpdateClaim").unwrap();
        assert_eq!(fixed_route.path_with(|_| Some("submit".into())), Err(vec![("uuid", ParameterError::NotAUuid)]));
        let both = update.path_with(|p| (p == "id").then(|| "..".to_string()));
        assert_eq!(both, Err(vec![("uuid", ParameterError::Missing), ("id", ParameterError::NotASegment)]));
        // no command leaves the operation to a path parameter
        assert!(COMMANDS.iter().all(|c| c.parameters().all(|p| p != "action")));
        let select = NatsCommand::for_subject("careledger.commands.claims.SelectClaimsForFeedback").unwrap();
        assert_eq!(select.path, "/api/v1/claims/feedback/select");
    }
}
