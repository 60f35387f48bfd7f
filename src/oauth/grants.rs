//! The token endpoint's grants (RFC 6749 §4.1.3, §4.3, §4.4, §6).
//!
//! Every grant first checks that the client is registered for it
//! (`unauthorized_client`), then validates its own parameters
//! (`invalid_request`), then the grant itself (`invalid_grant`,
//! `invalid_scope`). Client authentication has already happened.

use chrono::{DateTime, Utc};

use super::codes::{self, CodeError};
use super::{ErrorCode, OAuthError, pkce};
use crate::authn::{self, ADMIN_SCOPE, SessionRequest, TokenGrant, USERS_SCOPE};
use crate::clients::{GrantType, OAuthClient};
use crate::config::SigningAlg;
use crate::passwords::Password;
use crate::refresh::Origin;
use crate::revocation::cut_off;
use crate::scope::ScopeSet;
use crate::state::AppState;
use crate::tokens::{self, AccessGrant};
use crate::users;

/// The parameters of a token request (RFC 6749 §4.1.3, §4.3.2, §4.4.2, §6).
#[derive(Clone, Debug, Default)]
pub struct TokenRequest {
    pub grant_type: String,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub mfa_token: Option<String>,
    pub otp: Option<String>,
    pub recovery_code: Option<String>,
    pub webauthn: Option<String>,
}

/// The second step of a password grant that answered `mfa_required`.
pub const MFA_GRANT: &str = "urn:latchkey:grant-type:mfa";

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, OAuthError> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
}

/// The scope of a request: what was asked for within `allowed`, or `default`.
pub fn requested_scope(
    requested: Option<&str>,
    allowed: &ScopeSet,
    default: ScopeSet,
) -> Result<ScopeSet, OAuthError> {
    match requested {
        None => Ok(default),
        Some(text) => {
            let scope = ScopeSet::parse(text).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
            if scope.is_subset(allowed) {
                Ok(scope)
            } else {
                Err(OAuthError::invalid_scope(format!("this client may request: {allowed}")))
            }
        }
    }
}

/// The algorithm of the client's ID tokens.
pub fn id_token_alg(client: &OAuthClient) -> SigningAlg {
    client.id_token_signed_response_alg.unwrap_or(SigningAlg::Rs256)
}

/// Run the grant the request names.
pub async fn token(
    state: &AppState,
    origin: &Origin,
    client: &OAuthClient,
    req: TokenRequest,
) -> Result<TokenGrant, OAuthError> {
    if req.grant_type == MFA_GRANT {
        if !client.allows(GrantType::Password) {
            return Err(OAuthError::unauthorized_client("this client is not registered for password"));
        }
        return mfa(state, origin, client, &req).await;
    }
    // The value is not echoed: it is the client's input (RFC 6749 §5.2
    // limits error_description to printable ASCII without '"' and '\').
    let grant: GrantType = req.grant_type.parse().map_err(|_| {
        OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            "unsupported grant_type; use authorization_code, refresh_token, client_credentials or password",
        )
    })?;
    if !client.allows(grant) {
        return Err(OAuthError::unauthorized_client(format!("this client is not registered for {grant}")));
    }
    match grant {
        GrantType::Password => password(state, origin, client, &req).await,
        GrantType::RefreshToken => refresh_token(state, origin, client, &req).await,
        GrantType::ClientCredentials => client_credentials(state, client, &req),
        GrantType::AuthorizationCode => authorization_code(state, origin, client, &req).await,
    }
}

/// RFC 6749 §4.3: for first-party clients an administrator registered with
/// the `password` grant.
async fn password(
    state: &AppState,
    origin: &Origin,
    client: &OAuthClient,
    req: &TokenRequest,
) -> Result<TokenGrant, OAuthError> {
    let username = required(&req.username, "username")?;
    let password = Password::presented(required(&req.password, "password")?)
        .map_err(|e| OAuthError::invalid_request(e.to_string()))?;
    let scope = requested_scope(req.scope.as_deref(), &client.scope, client.scope.clone())?;
    let session = SessionRequest {
        client_id: client.client_id.clone(),
        scope,
        auth_time: state.now(),
        nonce: None,
        id_token_alg: id_token_alg(client),
        with_refresh: client.allows(GrantType::RefreshToken),
        family_id: None,
        access_jti: None,
        amr: crate::mfa::Amr::password(),
        require_mfa: client.require_mfa,
        cookie: false,
    };
    let (_, grant) = authn::login(state, origin, username, &password, session).await?;
    Ok(grant)
}

/// The second step of a password grant: the ticket works only for the
/// client it was issued to (the one authenticated here).
async fn mfa(
    state: &AppState,
    origin: &Origin,
    client: &OAuthClient,
    req: &TokenRequest,
) -> Result<TokenGrant, OAuthError> {
    use crate::mfa::flow::{self, Answer};
    let ticket = required(&req.mfa_token, "mfa_token")?;
    let address = crate::ratelimit::address_key(origin.ip);
    if let Err(seconds) = state.mfa_limiter.check(&address, state.now()) {
        return Err(OAuthError::throttled(seconds, "too many second-factor attempts; retry later"));
    }
    let passkey = req
        .webauthn
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|_| OAuthError::invalid_request("webauthn is not a WebAuthn credential"))?;
    let answer = Answer::one_of(req.otp.clone(), req.recovery_code.clone(), passkey)
        .ok_or_else(|| OAuthError::invalid_request("send exactly one of otp, recovery_code and webauthn"))?;
    let verified = flow::verify_answer(state, origin, &client.client_id, ticket, answer).await?;
    Ok(authn::complete_second_step(state, origin, &client.client_id, &verified).await?)
}

/// RFC 6749 §6, with the family's rotation and reuse detection.
async fn refresh_token(
    state: &AppState,
    origin: &Origin,
    client: &OAuthClient,
    req: &TokenRequest,
) -> Result<TokenGrant, OAuthError> {
    let token = required(&req.refresh_token, "refresh_token")?;
    let narrow = req
        .scope
        .as_deref()
        .map(ScopeSet::parse)
        .transpose()
        .map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
    let refresher = authn::Refresher {
        client_id: &client.client_id,
        allowed: &client.scope,
        id_token_alg: id_token_alg(client),
        require_mfa: client.require_mfa,
    };
    Ok(authn::refresh(state, origin, &refresher, token, narrow).await?)
}

/// RFC 6749 §4.4: a service acting for itself. `sub` is the client id; no
/// refresh token (§4.4.3); scopes within the client's registration.
///
/// The admin scope is never available here. [`USERS_SCOPE`] is issued only
/// when asked for, and a token carrying it has `aud` = the issuer: it is
/// good for latchkey's user-management API and for no relying service.
fn client_credentials(
    state: &AppState,
    client: &OAuthClient,
    req: &TokenRequest,
) -> Result<TokenGrant, OAuthError> {
    if !client.is_confidential() {
        return Err(OAuthError::unauthorized_client("public clients cannot use client_credentials"));
    }
    let allowed = client.scope.without("openid").without(ADMIN_SCOPE);
    let scope = requested_scope(req.scope.as_deref(), &allowed, allowed.without(USERS_SCOPE))?;
    let audience = scope.contains(USERS_SCOPE).then(|| state.issuer().to_owned());
    let now = state.now();
    let access = tokens::issue_access(
        &state.keyring,
        &state.tokens,
        now,
        &AccessGrant {
            subject: client.client_id.clone(),
            client_id: client.client_id.clone(),
            scope: scope.to_string(),
            roles: None,
            auth_time: None,
            session_id: None,
            jti: None,
            audience,
            amr: None,
        },
    )?;
    state.metrics.issued("client_credentials");
    Ok(TokenGrant {
        access_token: access.token,
        expires_in: access.expires_in,
        refresh_token: None,
        scope: scope.to_string(),
        id_token: None,
        family_id: None,
        access_expires_at: access.expires_at,
    })
}

/// RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.5–4.6).
async fn authorization_code(
    state: &AppState,
    origin: &Origin,
    client: &OAuthClient,
    req: &TokenRequest,
) -> Result<TokenGrant, OAuthError> {
    let code = required(&req.code, "code")?;
    let redirect_uri = required(&req.redirect_uri, "redirect_uri")?;
    let now = state.now();
    let without_pkce = !client.requires_pkce();
    let verifier = req.code_verifier.as_deref();
    // RFC 6749 §4.1.3 redirect URI binding and RFC 7636 §4.6 PKCE. A code
    // without a challenge is only good while the client may go without
    // PKCE (an admin may have required it since).
    let matches = |row: &crate::entities::authorization_codes::Model| {
        row.redirect_uri == redirect_uri
            && match (&row.code_challenge, verifier) {
                (Some(challenge), Some(v)) => pkce::verify_s256(challenge, v),
                (Some(_), None) | (None, Some(_)) => false,
                (None, None) => without_pkce,
            }
    };
    let redemption = match codes::redeem(
        &state.db,
        now,
        code,
        &client.client_id,
        state.tokens.access_ttl,
        matches,
    )
    .await
    {
        Ok(r) => r,
        Err(CodeError::Reused { family_id, access_jti, access_expires_at }) => {
            revoke_issued(state, now, family_id, access_jti, access_expires_at).await?;
            return Err(OAuthError::invalid_grant("the authorization code was already used"));
        }
        Err(CodeError::Invalid) => {
            return Err(OAuthError::invalid_grant(
                "the authorization code is invalid, expired, or does not match redirect_uri and code_verifier",
            ));
        }
        Err(CodeError::Internal(i)) => return Err(i.into()),
    };
    let row = &redemption.row;
    let user = users::find(&state.db, row.user_id)
        .await?
        .filter(|u| u.can_authenticate(now))
        .ok_or_else(|| OAuthError::invalid_grant("the account can no longer sign in"))?;
    let amr = crate::mfa::Amr::from_stored(row.amr.as_deref());
    // A code from a sign-in without a second factor, issued before the
    // client or the user's role required one (or by a replica that did not
    // know yet), buys nothing.
    if !amr.is_mfa() && (client.require_mfa || crate::mfa::flow::role_requires(state, &user)) {
        return Err(OAuthError::invalid_grant(
            "this code comes from a sign-in without a second factor, which is now required: sign in again",
        ));
    }
    let session = SessionRequest {
        client_id: client.client_id.clone(),
        scope: ScopeSet::from_stored(&row.scope),
        auth_time: row.auth_time,
        nonce: row.nonce.clone(),
        id_token_alg: id_token_alg(client),
        with_refresh: client.allows(GrantType::RefreshToken),
        family_id: Some(redemption.family_id),
        access_jti: Some(redemption.access_jti.clone()),
        amr,
        require_mfa: false,
        cookie: false,
    };
    let grant = authn::start_session(state, origin, &user, session, now).await?;
    // A second redemption may have raced this one: it flagged the code and
    // revoked what it could see; revoke ours too if so.
    if codes::was_reused(&state.db, code).await? {
        revoke_issued(
            state,
            now,
            Some(redemption.family_id),
            Some(redemption.access_jti),
            Some(grant.access_expires_at),
        )
        .await?;
        return Err(OAuthError::invalid_grant("the authorization code was already used"));
    }
    state.metrics.issued("authorization_code");
    Ok(grant)
}

/// Revoke what a (re)used code issued: its refresh family and access token.
async fn revoke_issued(
    state: &AppState,
    now: DateTime<Utc>,
    family_id: Option<uuid::Uuid>,
    access_jti: Option<String>,
    access_expires_at: Option<DateTime<Utc>>,
) -> Result<(), OAuthError> {
    let access = access_jti.zip(access_expires_at.map(|exp| exp + tokens::LEEWAY));
    cut_off::code_reused(&state.db, state.reach(now), family_id, access).await?;
    Ok(())
}
