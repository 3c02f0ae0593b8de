//! Bearer JWT (HS256) authentication and permission strings.
//!
//! Claims: `sub` (user id), `client_id` (legal entity id, where the caller acts for one), `scope`
//! (space-separated permissions: openIMIS rights as their numeric codes, eHealth scopes by name),
//! `health_facility` (claim administrators: the facility whose claims alone they act on), `exp`. Messages follow eHealth's answers.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use careledger_events::Actor;
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
}

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
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|e| e.to_string())
    }

    fn verify(&self, token: &str) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok().map(|data| data.claims)
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub legal_entity_id: Option<String>,
    /// The health facility whose claims alone this user acts on (the token's `health_facility`).
    pub health_facility: Option<String>,
    scopes: Arc<HashSet<String>>,
}

impl User {
    /// 403 unless the token's scope holds `permission`.
    pub fn require(&self, permission: &str) -> Result<(), ApiError> {
        if self.scopes.contains(permission) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "Your scope does not allow to access this resource. Missing allowances: {permission}"
            )))
        }
    }

    pub fn actor(&self) -> Actor {
        Actor { user_id: Some(self.id.clone()), legal_entity_id: self.legal_entity_id.clone() }
    }
}

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
        Ok(User {
            id: claims.sub,
            legal_entity_id: claims.client_id,
            health_facility: claims.health_facility,
            scopes: Arc::new(claims.scope.split_whitespace().map(String::from).collect()),
        })
    }
}
