//! Bearer authentication (RFC 6750) for the JSON API.
//!
//! The checker verifies the token completely (signature, claims, deny list,
//! account) before the handler runs; a failure is a 401 with
//! `WWW-Authenticate: Bearer error="invalid_token"`.

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use super::error::ApiError;
use crate::authn::{self, ADMIN_SCOPE, FIRST_PARTY_CLIENT_ID, Principal};
use crate::state::AppState;
use crate::users::User;

/// A verified latchkey access token.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub Principal);

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let state = req.data::<AppState>().ok_or_else(|| {
        poem::Error::from(ApiError::internal(&crate::error::Internal(anyhow::anyhow!("state missing"))))
    })?;
    authn::authenticate_bearer(state, &bearer.token).await.map_err(|e| ApiError::from(e).into())
}

impl BearerAuth {
    /// The user behind a user token; client tokens are refused.
    pub fn user(&self) -> Result<&User, ApiError> {
        self.0
            .user
            .as_ref()
            .ok_or_else(|| ApiError::forbidden("forbidden", "this endpoint needs a user token"))
    }

    /// The user, who must hold the `admin` role now, with a first-party
    /// token carrying the admin scope and audience (see [`ADMIN_SCOPE`]).
    pub fn admin(&self, state: &AppState) -> Result<&User, ApiError> {
        let user = self.user()?;
        if !user.is_admin() {
            return Err(ApiError::forbidden("forbidden", "this endpoint needs the admin role"));
        }
        let claims = &self.0.claims;
        let admin_token = claims.client_id == FIRST_PARTY_CLIENT_ID
            && claims.scopes().any(|s| s == ADMIN_SCOPE)
            && claims.aud.iter().any(|a| a == state.issuer());
        if !admin_token {
            return Err(ApiError::insufficient_scope(
                "sign in to latchkey with scope latchkey:admin to use the admin API",
            ));
        }
        Ok(user)
    }
}
