//! Bearer JWT (HS256) authentication and permission strings.
//!
//! Claims: `sub` (user id), `client_id` (legal entity id, where the caller acts for one), `scope`
//! (space-separated permissions: openIMIS rights as their numeric codes, eHealth scopes by name),
//! `health_facility` (claim administrators: the facility whose claims alone they act on), `exp`,
//! and optionally `nbf`. Messages follow eHealth's answers.
//!
//! Time rules: a token is refused once its `exp` second has passed (no leeway: a token minted
//! with a time to live of 0 is refused a second later), and before its `nbf` when it has one, with
//! [`NBF_LEEWAY_SECONDS`] of leeway for the clock of whoever minted it being a little ahead of
//! ours. Before, `nbf` was not looked at: a token for next week worked today (issue #23, 9).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::http::envelope::ApiError;
use crate::state::AppState;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default)]
    pub scope: String,
    /// openIMIS claim administrators: the health facility (code) whose claims alone the user acts on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_facility: Option<String>,
    pub exp: u64,
    /// Not before (seconds since the epoch): refused until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// How far in the future a token's `nbf` may be and the token still be taken: the clock of the
/// server or identity provider that minted it ahead of ours (NTP keeps clocks within
/// milliseconds; 5 s forgives a poorly kept one and admits nothing an hour early).
pub const NBF_LEEWAY_SECONDS: u64 = 5;

/// The keys of one server.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Keys {
    pub fn new(secret: &str) -> Self {
        Keys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
        }
    }

    /// A token for `sub` with the given scope, valid `ttl_seconds` from now.
    pub fn mint(&self, sub: &str, scope: &str, client_id: Option<&str>, ttl_seconds: u64) -> Result<String, String> {
        self.mint_scoped(sub, scope, client_id, None, ttl_seconds)
    }

    /// [`Keys::mint`], the user acting only on one health facility's claims when `health_facility` is given.
    pub fn mint_scoped(
        &self,
        sub: &str,
        scope: &str,
        client_id: Option<&str>,
        health_facility: Option<&str>,
        ttl_seconds: u64,
    ) -> Result<String, String> {
        let exp = chrono::Utc::now().timestamp().max(0) as u64 + ttl_seconds;
        let claims = Claims {
            sub: sub.into(),
            client_id: client_id.map(Into::into),
            scope: scope.into(),
            health_facility: health_facility.map(Into::into),
            exp,
            nbf: None,
        };
        self.sign(&claims)
    }

    /// A token carrying `claims` as they are, signed with this server's secret.
    pub fn sign(&self, claims: &Claims) -> Result<String, String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding).map_err(|e| e.to_string())
    }

    fn verify(&self, token: &str) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        // jsonwebtoken has one leeway for `exp` and `nbf`; `exp` is to have none. Its expiry test
        // is `exp - reject_tokens_expiring_in_less_than < now - leeway`: with both at the nbf
        // leeway, that is `exp < now` (no leeway), while `nbf > now + leeway` refuses an early one.
        validation.leeway = NBF_LEEWAY_SECONDS;
        validation.reject_tokens_expiring_in_less_than = NBF_LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok().map(|data| data.claims)
    }
}

/// The authenticated caller: the application layer's [`careledger_app::Caller`], read from the
/// bearer token.
pub use careledger_app::Caller as User;
pub use careledger_app::caller::AuditScope;

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let invalid = || ApiError::unauthorized("Invalid access token");
        let header = parts.headers.get(AUTHORIZATION).and_then(|h| h.to_str().ok()).ok_or_else(invalid)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(invalid)?;
        let claims = state.keys.verify(token).ok_or_else(invalid)?;
        Ok(User::new(
            claims.sub,
            claims.client_id,
            claims.health_facility,
            claims.scope.split_whitespace().map(String::from),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        chrono::Utc::now().timestamp().max(0) as u64
    }

    fn token(keys: &Keys, exp: u64, nbf: Option<u64>) -> String {
        let claims = Claims { sub: "u".into(), client_id: None, scope: String::new(), health_facility: None, exp, nbf };
        keys.sign(&claims).unwrap()
    }

    #[test]
    fn nbf_in_the_future_is_refused_beyond_the_leeway() {
        let keys = Keys::new("a-secret-of-at-least-thirty-two-bytes");
        let exp = now() + 7200;
        assert!(keys.verify(&token(&keys, exp, Some(now() + 3600))).is_none(), "an hour early");
        assert!(keys.verify(&token(&keys, exp, Some(now() + NBF_LEEWAY_SECONDS + 2))).is_none());
        assert!(keys.verify(&token(&keys, exp, Some(now() + 1))).is_some(), "within the leeway");
        assert!(keys.verify(&token(&keys, exp, Some(now() - 60))).is_some());
        assert!(keys.verify(&token(&keys, exp, None)).is_some(), "nbf is optional");
    }

    #[test]
    fn exp_has_no_leeway() {
        let keys = Keys::new("a-secret-of-at-least-thirty-two-bytes");
        assert!(keys.verify(&token(&keys, now() - 1, None)).is_none(), "expired a second ago");
        assert!(keys.verify(&token(&keys, now() + 60, None)).is_some());
        assert!(keys.verify(&token(&keys, 3, None)).is_none(), "an exp below the leeway does not wrap around");
    }
}
