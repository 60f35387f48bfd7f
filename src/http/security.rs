//! Bearer authentication (RFC 6750) for the JSON API.
//!
//! The checker verifies the token completely (signature, claims, deny list,
//! account) before the handler runs; a failure is a 401 with
//! `WWW-Authenticate: Bearer error="invalid_token"`.
//!
//! What a valid token may then do is decided here too, once per kind of
//! endpoint: [`BearerAuth::account`] for the user's own account (`/auth/*`),
//! [`BearerAuth::admin`] for `/admin/*`, [`BearerAuth::user_manager`] for
//! the user-management part of `/admin/*`, which a service with
//! `latchkey:users` may use too. `/oauth/userinfo` reads the
//! principal itself, by scope, because any client may call it.

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use super::error::ApiError;
use crate::admin::Actor;
use crate::authn::{self, ADMIN_SCOPE, FIRST_PARTY_CLIENT_ID, Principal, USERS_SCOPE};
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
    fn user(&self) -> Result<&User, ApiError> {
        self.0
            .user
            .as_ref()
            .ok_or_else(|| ApiError::forbidden("forbidden", "this endpoint needs a user token"))
    }

    /// The user of an account endpoint (`/auth/me`, `/auth/sessions`,
    /// `/auth/password`): only a user token latchkey issued to itself
    /// (`client_id` = [`FIRST_PARTY_CLIENT_ID`], from `/auth/login` or
    /// `/auth/refresh`) is accepted.
    ///
    /// A token issued to any other client (authorization code, password
    /// grant) was handed to that client and, with the default audience, to
    /// every relying service it calls; any of them could replay it here to
    /// read the user's email, roles and sessions, or to end their sessions.
    /// Such a token lacks the privilege, so the answer is 403
    /// `insufficient_scope` (RFC 6750 §3.1); those clients read the user
    /// through `/oauth/userinfo`, within their scopes.
    pub fn account(&self) -> Result<&User, ApiError> {
        let user = self.enrolling()?;
        // The enrol-only token, or one from before the user's role required
        // a second factor (a password change would otherwise keep minting
        // full tokens for it).
        let enrol_only = self.0.claims.scopes().any(|s| s == crate::mfa::ENROL_SCOPE)
            || (self.0.mfa_required_by_role && !self.0.with_mfa());
        if enrol_only {
            return Err(ApiError::forbidden(
                "mfa_enrolment_required",
                "this token can only enrol a second factor (/auth/mfa/*); enrol one, then sign in again",
            ));
        }
        Ok(user)
    }

    /// The user of the second-factor endpoints (`/auth/mfa/*`): as for
    /// [`BearerAuth::account`], and also the enrol-only token a user whose
    /// role requires a second factor gets until they have one.
    pub fn enrolling(&self) -> Result<&User, ApiError> {
        let user = self.user()?;
        if self.0.claims.client_id != FIRST_PARTY_CLIENT_ID {
            return Err(ApiError::insufficient_scope(
                "account endpoints accept only tokens from latchkey's own sign-in (/auth/login); \
                 other clients use /oauth/userinfo",
            ));
        }
        Ok(user)
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
        let with_mfa = self.0.with_mfa();
        if self.0.mfa_enrolled && !with_mfa {
            return Err(ApiError::forbidden(
                "mfa_required",
                "you have a second factor: sign in with it to use the admin API",
            ));
        }
        // A token from before the admin role was added to
        // LATCHKEY_MFA_REQUIRED_ROLES (its refreshes end, see authn::refresh).
        if !with_mfa && self.0.mfa_required_by_role {
            return Err(ApiError::forbidden(
                "mfa_enrolment_required",
                "your role requires a second factor: enrol one, then sign in with it to use the admin API",
            ));
        }
        Ok(user)
    }

    /// Who may manage users (`/admin/users*`): an admin as for
    /// [`BearerAuth::admin`], or a service with a client-credentials token
    /// carrying [`USERS_SCOPE`] with `aud` = the issuer, whose client still
    /// exists, is enabled and still has that scope (so taking the scope
    /// away, or disabling the client, stops its outstanding tokens here at
    /// once). What a service may then do to whom is decided by
    /// [`crate::admin`] (never to admins, never granting the admin role).
    pub async fn user_manager(&self, state: &AppState) -> Result<Actor, ApiError> {
        if self.0.user.is_some() {
            return Ok(Actor::Admin(self.admin(state)?.id));
        }
        let claims = &self.0.claims;
        let users_token =
            claims.scopes().any(|s| s == USERS_SCOPE) && claims.aud.iter().any(|a| a == state.issuer());
        if !users_token {
            return Err(ApiError::insufficient_scope(
                "a service needs a client_credentials token with scope latchkey:users to manage users",
            ));
        }
        let client = crate::clients::find(&state.db, &claims.client_id).await?;
        match client {
            Some(c) if !c.disabled && c.scope.contains(USERS_SCOPE) => Ok(Actor::Service(c.client_id)),
            _ => Err(ApiError::insufficient_scope("this client may no longer manage users")),
        }
    }
}
