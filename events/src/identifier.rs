//! An identifier another server (or a business register) gives a resource, as FHIR carries it:
//! `{system, value}` (issue #21). A resource imported from a peer keeps the peer's id under the
//! peer's system, so the peer's later Bundles and searches by the peer's system find it here.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct Identifier {
    /// A URI naming who gives the values (a server's `CARELEDGER_FHIR_SYSTEM`).
    pub system: String,
    pub value: String,
}

impl Identifier {
    /// `system|value`, as FHIR's token search writes it and as the identifier map keys it.
    pub fn token(&self) -> String {
        format!("{}|{}", self.system, self.value)
    }
}
