//! The authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1).
//!
//! Validation order matters (RFC 6749 §4.1.2.1): until the client and its
//! exact redirect URI are known, errors are shown to the user and never
//! redirected (an open redirector otherwise); after that, errors go back to
//! the client with `state` and `iss` (RFC 9207).

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;

use super::grants::requested_scope;
use super::{ErrorCode, OAuthError, pkce};
use crate::clients::{self, GrantType, OAuthClient};
use crate::error::Internal;
use crate::scope::ScopeSet;

/// The parameters as received (query string or the login form's hidden fields).
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct AuthorizationRequest {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub login_hint: Option<String>,
    /// OIDC Core §3.1.2.1: space-separated; `urn:latchkey:acr:mfa` asks
    /// for a second factor. Other values are ignored (voluntary claims).
    pub acr_values: Option<String>,
}

/// OIDC Core §3.1.2.1 `prompt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// Use a session if there is one, else show the login page.
    Default,
    /// Never show a page: a session or `login_required`.
    None,
    /// Always ask for the password again.
    Login,
}

/// A request that passed validation.
#[derive(Clone, Debug)]
pub struct ValidAuthorization {
    pub client: OAuthClient,
    pub redirect_uri: String,
    pub scope: ScopeSet,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// `acr_values` asked for a second factor.
    pub acr_mfa: bool,
}

impl ValidAuthorization {
    /// Must the sign-in include a second factor (the client's setting, or
    /// `acr_values`)?
    pub fn requires_mfa(&self) -> bool {
        self.client.require_mfa || self.acr_mfa
    }

    /// Is a session that authenticated at `auth_time` recent enough?
    pub fn accepts_session(&self, auth_time: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.prompt != Prompt::Login && self.max_age.is_none_or(|max| (now - auth_time).num_seconds() <= max)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    /// The client or redirect URI is unknown: tell the user, never redirect.
    #[error("{0}")]
    Page(String),
    /// Send the error back to the client.
    #[error("{error}")]
    Redirect { redirect_uri: String, state: Option<String>, error: OAuthError },
    #[error(transparent)]
    Internal(#[from] Internal),
}

const MAX_STATE: usize = 2048;
const MAX_NONCE: usize = 512;

/// Validate an authorization request.
pub async fn validate(
    db: &impl ConnectionTrait,
    req: &AuthorizationRequest,
) -> Result<ValidAuthorization, AuthorizeError> {
    let client_id =
        req.client_id.as_deref().ok_or_else(|| AuthorizeError::Page("client_id is missing".into()))?;
    let client = clients::find(db, client_id)
        .await?
        .filter(|c| !c.disabled)
        .ok_or_else(|| AuthorizeError::Page("unknown client".into()))?;
    let redirect_uri =
        req.redirect_uri.as_deref().ok_or_else(|| AuthorizeError::Page("redirect_uri is missing".into()))?;
    if client.redirect_uri(redirect_uri).is_none() {
        return Err(AuthorizeError::Page("redirect_uri is not registered for this client".into()));
    }
    let state = req.state.clone().filter(|s| !s.is_empty());
    let back = |error: OAuthError| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        state: state.clone().filter(|s| s.len() <= MAX_STATE),
        error,
    };
    if state.as_ref().is_some_and(|s| s.len() > MAX_STATE) {
        return Err(back(OAuthError::invalid_request("state is too long")));
    }
    match req.response_type.as_deref() {
        Some("code") => {}
        None => return Err(back(OAuthError::invalid_request("response_type is required"))),
        Some(_) => {
            return Err(back(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "unsupported response_type; the only one is code",
            )));
        }
    }
    if !client.allows(GrantType::AuthorizationCode) {
        return Err(back(OAuthError::unauthorized_client(
            "this client is not registered for authorization_code",
        )));
    }
    let scope = requested_scope(req.scope.as_deref(), &client.scope, client.scope.clone()).map_err(&back)?;
    // PKCE for every client (OAuth 2.1, RFC 9700 §2.1.1), unless an admin
    // allowed a legacy confidential client without it.
    let code_challenge = match (req.code_challenge.as_deref(), req.code_challenge_method.as_deref()) {
        (None, None) if !client.requires_pkce() => None,
        (None, _) => {
            return Err(back(OAuthError::invalid_request("code_challenge is required (PKCE, S256)")));
        }
        (Some(_), method) if method != Some("S256") => {
            return Err(back(OAuthError::invalid_request("code_challenge_method must be S256")));
        }
        (Some(challenge), _) if !pkce::is_valid_challenge(challenge) => {
            return Err(back(OAuthError::invalid_request("code_challenge must be 43 base64url characters")));
        }
        (Some(challenge), _) => Some(challenge.to_owned()),
    };
    let nonce = req.nonce.clone().filter(|n| !n.is_empty());
    if nonce.as_ref().is_some_and(|n| n.len() > MAX_NONCE) {
        return Err(back(OAuthError::invalid_request("nonce is too long")));
    }
    // The nonce is stored with the code; the other parameters are either
    // looked up through `clients::find`, matched in memory, or parsed.
    if nonce.as_deref().is_some_and(|n| !crate::sql::is_storable(n)) {
        return Err(back(OAuthError::invalid_request(format!("nonce {}", crate::sql::NOT_STORABLE))));
    }
    let prompt =
        match req.prompt.as_deref().map(|p| p.split(' ').filter(|v| !v.is_empty()).collect::<Vec<_>>()) {
            None => Prompt::Default,
            Some(values) if values.contains(&"none") && values.len() > 1 => {
                return Err(back(OAuthError::invalid_request("prompt=none cannot be combined")));
            }
            Some(values) if values.contains(&"none") => Prompt::None,
            Some(values) if values.contains(&"login") => Prompt::Login,
            Some(_) => Prompt::Default,
        };
    let max_age =
        match req.max_age.as_deref() {
            None => None,
            Some(v) => Some(v.parse::<i64>().ok().filter(|m| *m >= 0).ok_or_else(|| {
                back(OAuthError::invalid_request("max_age must be a non-negative integer"))
            })?),
        };
    Ok(ValidAuthorization {
        redirect_uri: redirect_uri.to_owned(),
        client,
        scope,
        state,
        nonce,
        code_challenge,
        prompt,
        max_age,
        login_hint: req.login_hint.clone().filter(|h| h.len() <= 256),
        acr_mfa: req.acr_values.as_deref().is_some_and(|v| v.split(' ').any(|a| a == crate::mfa::ACR_MFA)),
    })
}

/// `redirect_uri` with extra query parameters, keeping its own query.
pub fn with_query(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(mut url) => {
            {
                let mut pairs = url.query_pairs_mut();
                for (k, v) in params {
                    pairs.append_pair(k, v);
                }
            }
            url.to_string()
        }
        // Registered URIs always parse; keep a defined answer anyway.
        Err(_) => redirect_uri.to_owned(),
    }
}

/// The success redirect (RFC 6749 §4.1.2, RFC 9207 `iss`).
pub fn code_redirect(v: &ValidAuthorization, code: &str, issuer: &str) -> String {
    let mut params = vec![("code", code), ("iss", issuer)];
    if let Some(state) = &v.state {
        params.push(("state", state));
    }
    with_query(&v.redirect_uri, &params)
}

/// The error redirect (RFC 6749 §4.1.2.1).
pub fn error_redirect(redirect_uri: &str, state: Option<&str>, error: &OAuthError, issuer: &str) -> String {
    let mut params =
        vec![("error", error.code.as_str()), ("error_description", error.description()), ("iss", issuer)];
    if let Some(state) = state {
        params.push(("state", state));
    }
    with_query(redirect_uri, &params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_the_registered_query_and_encode_values() {
        let url = with_query("https://app.test/cb?tenant=1", &[("code", "a b&c"), ("state", "x/y")]);
        assert_eq!(url, "https://app.test/cb?tenant=1&code=a+b%26c&state=x%2Fy");
    }
}
