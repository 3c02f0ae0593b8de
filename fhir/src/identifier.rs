//! Identifier systems and the `identifier` search token.

use serde_json::{Value, json};

/// openIMIS' identifier types (its FHIR R4 IG: `UUID`, `Code`, ...), the system of the coding in
/// every `Identifier.type`.
pub const OPENIMIS_IDENTIFIERS: &str = "https://openimis.github.io/openimis_fhir_r4_ig/CodeSystem/openimis-identifiers";

/// The identifier systems a server knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Systems {
    /// This server's own: the system of the ids it gives (a URI; `urn:uuid:<server id>` unless
    /// configured).
    pub own: String,
}

impl Systems {
    /// A resource's id on this server, as an identifier.
    pub fn own_id(&self, id: &str) -> Value {
        json!({
            "use": "official",
            "type": { "coding": [{ "system": OPENIMIS_IDENTIFIERS, "code": "UUID" }] },
            "system": self.own,
            "value": id,
        })
    }
}

/// A business code (an insuree's CHFID) as openIMIS emits it: typed `Code`, without a system.
pub fn code_identifier(code: &str) -> Value {
    json!({
        "use": "usual",
        "type": { "coding": [{ "system": OPENIMIS_IDENTIFIERS, "code": "Code" }] },
        "value": code,
    })
}

/// An `identifier` search parameter (FHIR's token search): `value` (any system), `|value` (no
/// system), `system|` (any value of the system), `system|value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Any(String),
    NoSystem(String),
    System(String),
    Exact(String, String),
}

/// Why a token is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Empty,
    TooLong,
}

impl Token {
    pub fn parse(raw: &str) -> Result<Token, TokenError> {
        if raw.len() > 1000 {
            return Err(TokenError::TooLong);
        }
        match raw.split_once('|') {
            None if raw.is_empty() => Err(TokenError::Empty),
            None => Ok(Token::Any(raw.to_string())),
            Some(("", "")) => Err(TokenError::Empty),
            Some(("", value)) => Ok(Token::NoSystem(value.to_string())),
            Some((system, "")) => Ok(Token::System(system.to_string())),
            Some((system, value)) => Ok(Token::Exact(system.to_string(), value.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_read_as_fhir_says() {
        assert_eq!(Token::parse("123"), Ok(Token::Any("123".into())));
        assert_eq!(Token::parse("|123"), Ok(Token::NoSystem("123".into())));
        assert_eq!(Token::parse("urn:x|"), Ok(Token::System("urn:x".into())));
        assert_eq!(Token::parse("urn:x|1|2"), Ok(Token::Exact("urn:x".into(), "1|2".into())));
        assert_eq!(Token::parse(""), Err(TokenError::Empty));
        assert_eq!(Token::parse("|"), Err(TokenError::Empty));
    }
}
