//! Which HTTP operation each command subject stands for.
//!
//! A command over NATS is the HTTP command it names, sent through the same router: the subject
//! `careledger.commands.<context>.<Command>` picks a method and path template here, the message's
//! body is the HTTP body unchanged, and path parameters come from headers named after them
//! (`{code}` from `Careledger-Code`, `{id}` from `Careledger-Id`). The body is not touched because
//! it is what validation reads and what an idempotency key is checked against: the same command
//! with the same key over HTTP and over NATS is one command.

use axum::http::Method;

/// One command reachable over NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsCommand {
    pub context: &'static str,
    pub name: &'static str,
    pub method: Method,
    /// The HTTP path, with `{param}` placeholders filled from headers.
    pub path: &'static str,
}

const fn command(context: &'static str, name: &'static str, method: Method, path: &'static str) -> NatsCommand {
    NatsCommand { context, name, method, path }
}

/// Every command of the HTTP API (tests check that each is reachable and answers as over HTTP).
pub const COMMANDS: &[NatsCommand] = &[
    command("codes", "GenerateCodes", Method::POST, "/api/v1/code-batches"),
    command("codes", "ReserveCodes", Method::POST, "/api/v1/codes/reservations"),
    command("codes", "AssignCode", Method::POST, "/api/v1/codes/{code}/assignment"),
    command("codes", "LinkControlNumber", Method::POST, "/api/v1/codes/{code}/control-number"),
    command("registry", "RegisterLegalEntity", Method::POST, "/api/v1/legal-entities"),
    command("registry", "ChangeLegalEntityStatus", Method::PATCH, "/api/v1/legal-entities/{id}"),
    command("registry", "RegisterDivision", Method::POST, "/api/v1/divisions"),
    command("registry", "ChangeDivisionStatus", Method::PATCH, "/api/v1/divisions/{id}"),
    command("registry", "RegisterEquipment", Method::POST, "/api/v1/equipment"),
    command("registry", "LinkDivision", Method::POST, "/api/v1/equipment/{id}/division-links"),
    command("registry", "ChangeEquipmentStatus", Method::PATCH, "/api/v1/equipment/{id}/status"),
    command("registry", "ChangeAvailability", Method::PATCH, "/api/v1/equipment/{id}/availability"),
    command("requisitions", "IssueRequisition", Method::POST, "/api/v1/requisitions"),
];

/// The subjects commands arrive on: `careledger.commands.<context>.<Command>`.
pub const SUBJECT_PREFIX: &str = "careledger.commands.";

impl NatsCommand {
    /// The command a subject names, if any.
    pub fn for_subject(subject: &str) -> Option<&'static NatsCommand> {
        let (context, name) = subject.strip_prefix(SUBJECT_PREFIX)?.split_once('.')?;
        COMMANDS.iter().find(|c| c.context == context && c.name == name)
    }

    pub fn subject(&self) -> String {
        format!("{SUBJECT_PREFIX}{}.{}", self.context, self.name)
    }

    /// The path parameters of the template, in order (`code`, `id`).
    pub fn parameters(&self) -> impl Iterator<Item = &'static str> {
        self.path.split('/').filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
    }

    /// The header a path parameter is read from: `Careledger-Code` for `{code}`.
    pub fn header_of(parameter: &str) -> String {
        format!("Careledger-{}", super::message::title_case(parameter))
    }

    /// The path with every parameter filled by `value` (percent-encoded), or the parameters
    /// `value` had none for.
    pub fn path_with(&self, value: impl Fn(&str) -> Option<String>) -> Result<String, Vec<&'static str>> {
        let mut missing = vec![];
        let segments: Vec<String> = self
            .path
            .split('/')
            .map(|segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                None => segment.to_string(),
                Some(parameter) => match value(parameter).filter(|v| !v.trim().is_empty()) {
                    Some(v) => percent_encoding::utf8_percent_encode(v.trim(), SEGMENT).to_string(),
                    None => {
                        missing.push(parameter);
                        String::new()
                    }
                },
            })
            .collect();
        if missing.is_empty() { Ok(segments.join("/")) } else { Err(missing) }
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
        assert_eq!(assign.path_with(|_| Some("12/3 ?".into())).unwrap(), "/api/v1/codes/12%2F3%20%3F/assignment");
        assert_eq!(assign.path_with(|_| None), Err(vec!["code"]));
        assert_eq!(assign.path_with(|_| Some(" ".into())), Err(vec!["code"]));
    }
}
