//! `/oauth/token`, `/oauth/revoke`, `/oauth/introspect`, `/oauth/userinfo`.
//!
//! Form-encoded requests (RFC 6749 §3.2), JSON responses, `Cache-Control:
//! no-store` (set by the default-headers middleware), RFC 6749 §5.2 errors.
//! Clients authenticate with HTTP Basic (`client_secret_basic`) or form
//! fields (`client_secret_post`); public clients send only `client_id`.

use poem::Request;
use poem::web::Data;
use poem_openapi::payload::{Form, Json};
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;

use super::Tag;
use super::auth::TokenResponse;
use super::error::{ApiError, OAuthErrorResponse};
use super::origin::ClientOrigin;
use super::security::BearerAuth;
use crate::authn;
use crate::clients::OAuthClient;
use crate::memory::Fresh;
use crate::oauth::client_auth::{self, PresentedCredentials};
use crate::oauth::grants::{self, TokenRequest};
use crate::oauth::introspection::{self, Introspection};
use crate::oauth::{OAuthError, revoke};
use crate::scope::ScopeSet;
use crate::state::AppState;

/// A token request (RFC 6749 §4.1.3, §4.3.2, §4.4.2, §6).
// `client_id` and `username` are looked up as text, so they are checked at
// parsing (`super::validate`); codes and refresh tokens are hashed or
// decoded before any lookup.
#[derive(Object, Deserialize, Debug)]
#[oai(skip_serializing_if_is_none)]
pub struct TokenForm {
    /// `authorization_code`, `refresh_token`, `client_credentials`,
    /// `password`, or `urn:latchkey:grant-type:mfa` (the second step of a
    /// password grant that answered `mfa_required`).
    pub grant_type: String,
    /// authorization_code: the code from the redirect.
    pub code: Option<String>,
    /// authorization_code: the redirect URI of the authorization request.
    pub redirect_uri: Option<String>,
    /// authorization_code: the PKCE verifier (RFC 7636).
    pub code_verifier: Option<String>,
    /// refresh_token: the current refresh token.
    pub refresh_token: Option<String>,
    /// Space-separated scopes (may narrow, never widen).
    pub scope: Option<String>,
    /// password: the user's username.
    #[serde(default, deserialize_with = "crate::http::validate::storable")]
    pub username: Option<String>,
    /// password: the user's password.
    pub password: Option<String>,
    /// urn:latchkey:grant-type:mfa: the `mfa_token` of the `mfa_required` answer.
    pub mfa_token: Option<String>,
    /// urn:latchkey:grant-type:mfa: a current code of the user's authenticator app.
    pub otp: Option<String>,
    /// urn:latchkey:grant-type:mfa: one of the user's recovery codes.
    pub recovery_code: Option<String>,
    /// urn:latchkey:grant-type:mfa: the WebAuthn assertion (the
    /// `PublicKeyCredential` as JSON, binary members base64url).
    pub webauthn: Option<String>,
    /// The client, for `client_secret_post` and public clients.
    #[serde(default, deserialize_with = "crate::http::validate::storable")]
    pub client_id: Option<String>,
    /// `client_secret_post` only.
    pub client_secret: Option<String>,
}

/// A revocation (RFC 7009 §2.1) or introspection (RFC 7662 §2.1) request.
#[derive(Object, Deserialize, Debug)]
#[oai(skip_serializing_if_is_none)]
pub struct TokenHintForm {
    pub token: String,
    /// `access_token` or `refresh_token`; a hint only.
    pub token_type_hint: Option<String>,
    #[serde(default, deserialize_with = "crate::http::validate::storable")]
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// RFC 7662 §2.2. Only `active` is present for inactive tokens.
#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none)]
pub struct IntrospectionResponse {
    pub active: bool,
    #[oai(skip_serializing_if_is_none)]
    pub scope: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub client_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub username: Option<String>,
    /// `Bearer` for access tokens, `refresh_token` for refresh tokens.
    #[oai(skip_serializing_if_is_none)]
    pub token_type: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub exp: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub iat: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub nbf: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub sub: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub aud: Option<Vec<String>>,
    #[oai(skip_serializing_if_is_none)]
    pub iss: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub jti: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub roles: Option<Vec<String>>,
}

impl From<Introspection> for IntrospectionResponse {
    fn from(i: Introspection) -> Self {
        IntrospectionResponse {
            active: i.active,
            scope: i.scope,
            client_id: i.client_id,
            username: i.username,
            token_type: i.token_type,
            exp: i.exp,
            iat: i.iat,
            nbf: i.nbf,
            sub: i.sub,
            aud: i.aud,
            iss: i.iss,
            jti: i.jti,
            roles: i.roles,
        }
    }
}

/// OIDC Core §5.3.2 UserInfo response; claims by scope.
#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none)]
pub struct UserInfo {
    pub sub: String,
    #[oai(skip_serializing_if_is_none)]
    pub preferred_username: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub updated_at: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub email: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub email_verified: Option<bool>,
}

#[derive(ApiResponse)]
pub enum TokenIssued {
    /// RFC 6749 §5.1.
    #[oai(status = 200)]
    Ok(Json<TokenResponse>),
}

#[derive(ApiResponse)]
pub enum Revoked {
    /// Revoked, or nothing to revoke (RFC 7009 §2.2).
    #[oai(status = 200)]
    Ok,
}

#[derive(ApiResponse)]
pub enum Introspected {
    #[oai(status = 200)]
    Ok(Json<IntrospectionResponse>),
}

#[derive(ApiResponse)]
pub enum UserInfoResponse {
    #[oai(status = 200)]
    Ok(Json<UserInfo>),
}

fn presented(
    req: &Request,
    client_id: Option<String>,
    client_secret: Option<String>,
) -> Result<PresentedCredentials, OAuthError> {
    let basic = match req.headers().get(poem::http::header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value.to_str().map_err(|_| OAuthError::invalid_client())?;
            Some(client_auth::parse_basic(value).ok_or_else(OAuthError::invalid_client)?)
        }
    };
    Ok(PresentedCredentials { basic, client_id, client_secret })
}

async fn authenticate(
    state: &AppState,
    req: &Request,
    client_id: Option<String>,
    client_secret: Option<String>,
) -> Result<(OAuthClient, Fresh), OAuthError> {
    let credentials = presented(req, client_id, client_secret)?;
    let fresh = state.memory.confirm().await?;
    let client = client_auth::authenticate(&fresh, state.now(), &credentials)?;
    Ok((client, fresh))
}

fn too_many(seconds: u64) -> OAuthError {
    OAuthError::throttled(seconds, "too many requests; retry later")
}

/// The per-address limit of the token endpoint: every request counts.
fn throttle(state: &AppState, origin: &ClientOrigin) -> Result<(), OAuthError> {
    let address = crate::ratelimit::address_key(origin.0.ip);
    state.token_limiter.check(&address, state.now()).map_err(too_many)
}

/// Client authentication for revocation and introspection. A service that
/// authenticates is never throttled here (it may introspect on every
/// request); failed authentications count against the address's token
/// endpoint budget, and an address over it is refused before any lookup.
async fn authenticate_throttled(
    state: &AppState,
    req: &Request,
    origin: &ClientOrigin,
    client_id: Option<String>,
    client_secret: Option<String>,
) -> Result<(OAuthClient, Fresh), OAuthError> {
    let address = crate::ratelimit::address_key(origin.0.ip);
    state.token_limiter.peek(&address, state.now()).map_err(too_many)?;
    let result = authenticate(state, req, client_id, client_secret).await;
    if result.is_err() {
        // Over budget now: the next failure waits. This one keeps its answer.
        let _ = state.token_limiter.check(&address, state.now());
    }
    result
}

pub struct OAuthApi;

#[OpenApi(prefix_path = "/oauth", tag = "Tag::OAuth")]
impl OAuthApi {
    /// Token endpoint (RFC 6749 §3.2).
    ///
    /// Grants: `authorization_code` (PKCE S256), `refresh_token` (rotating),
    /// `client_credentials`, `password` (first-party clients registered for
    /// it). A password grant for a user with a second factor answers `403`
    /// `mfa_required` with an `mfa_token`; the same client then sends
    /// `grant_type=urn:latchkey:grant-type:mfa` with `mfa_token` and one of
    /// `otp`, `recovery_code` or `webauthn`. Authenticate the client with HTTP Basic or `client_id` +
    /// `client_secret` in the form; public clients send `client_id` only.
    #[oai(path = "/token", method = "post", operation_id = "oauthToken")]
    async fn token(
        &self,
        state: Data<&AppState>,
        req: &Request,
        origin: ClientOrigin,
        form: Form<TokenForm>,
    ) -> Result<TokenIssued, OAuthErrorResponse> {
        let form = form.0;
        throttle(&state, &origin)?;
        let (client, _) = authenticate(&state, req, form.client_id, form.client_secret).await?;
        let request = TokenRequest {
            grant_type: form.grant_type,
            code: form.code,
            redirect_uri: form.redirect_uri,
            code_verifier: form.code_verifier,
            refresh_token: form.refresh_token,
            scope: form.scope,
            username: form.username,
            password: form.password,
            mfa_token: form.mfa_token,
            otp: form.otp,
            recovery_code: form.recovery_code,
            webauthn: form.webauthn,
        };
        let grant = grants::token(&state, &origin.0, &client, request).await?;
        Ok(TokenIssued::Ok(Json(grant.into())))
    }

    /// Token revocation (RFC 7009).
    ///
    /// Revoking a refresh token ends its whole session, including the access
    /// tokens issued from it. Unknown tokens are not an error.
    #[oai(path = "/revoke", method = "post", operation_id = "oauthRevoke")]
    async fn revoke(
        &self,
        state: Data<&AppState>,
        req: &Request,
        origin: ClientOrigin,
        form: Form<TokenHintForm>,
    ) -> Result<Revoked, OAuthErrorResponse> {
        let form = form.0;
        let (client, _) =
            authenticate_throttled(&state, req, &origin, form.client_id, form.client_secret).await?;
        revoke::revoke(&state, &client, &form.token).await?;
        Ok(Revoked::Ok)
    }

    /// Token introspection (RFC 7662), for confidential clients.
    #[oai(path = "/introspect", method = "post", operation_id = "oauthIntrospect")]
    async fn introspect(
        &self,
        state: Data<&AppState>,
        req: &Request,
        origin: ClientOrigin,
        form: Form<TokenHintForm>,
    ) -> Result<Introspected, OAuthErrorResponse> {
        let form = form.0;
        let (client, fresh) =
            authenticate_throttled(&state, req, &origin, form.client_id, form.client_secret).await?;
        if !client.is_confidential() {
            return Err(OAuthError::unauthorized_client("public clients cannot introspect tokens").into());
        }
        let result =
            introspection::introspect(&state, &fresh, &client, &form.token, form.token_type_hint.as_deref())
                .await?;
        Ok(Introspected::Ok(Json(result.into())))
    }

    /// OpenID Connect UserInfo (OIDC Core §5.3), GET.
    #[oai(path = "/userinfo", method = "get", operation_id = "oauthUserinfo")]
    async fn userinfo_get(&self, auth: BearerAuth) -> Result<UserInfoResponse, ApiError> {
        userinfo(&auth)
    }

    /// OpenID Connect UserInfo (OIDC Core §5.3), POST.
    #[oai(path = "/userinfo", method = "post", operation_id = "oauthUserinfoPost")]
    async fn userinfo_post(&self, auth: BearerAuth) -> Result<UserInfoResponse, ApiError> {
        userinfo(&auth)
    }
}

fn userinfo(auth: &BearerAuth) -> Result<UserInfoResponse, ApiError> {
    let claims = &auth.0.claims;
    let scope = ScopeSet::from_stored(&claims.scope);
    let user = auth
        .0
        .user
        .as_ref()
        .filter(|_| scope.contains("openid"))
        .ok_or_else(|| ApiError::insufficient_scope("the token needs the openid scope and a user"))?;
    let extra = authn::profile_claims(user, &scope);
    let text = |k: &str| extra.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    Ok(UserInfoResponse::Ok(Json(UserInfo {
        sub: user.id.to_string(),
        preferred_username: text("preferred_username"),
        updated_at: extra.get("updated_at").and_then(serde_json::Value::as_i64),
        email: text("email"),
        email_verified: extra.get("email_verified").and_then(serde_json::Value::as_bool),
    })))
}
