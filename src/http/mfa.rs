//! `/auth/login/mfa`, `/auth/passkey/*` and `/auth/mfa/*`: the second step
//! of a sign-in, the usernameless passkey sign-in, and enrolling second
//! factors. Each handler calls one function of [`crate::mfa::flow`].
//!
//! WebAuthn objects travel as JSON exactly as webauthn-rs reads and
//! writes them: options as `{"publicKey": {...}}` with binary members in
//! base64url, credentials as the browser's `PublicKeyCredential` with its
//! `ArrayBuffer`s in base64url.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::Tag;
use super::auth::{self, TokenDelivery, Tokens};
use super::cookies::CookieRequest;
use super::error::ApiError;
use super::origin::ClientOrigin;
use super::security::BearerAuth;
use super::validate::Storable;
use crate::authn::{self, ADMIN_SCOPE, FIRST_PARTY_CLIENT_ID, SessionRequest};
use crate::mfa::flow::{self, Answer};
use crate::state::AppState;

/// The second step of a sign-in: the `mfa_token` from the `mfa_required`
/// answer and exactly one of `code`, `recovery_code` or `webauthn`.
#[derive(Object)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct MfaLoginRequest {
    #[oai(validator(max_length = 256))]
    pub mfa_token: String,
    /// A current code of the user's authenticator app (6 digits).
    #[oai(validator(max_length = 16))]
    pub code: Option<String>,
    /// One of the user's recovery codes (each works once).
    #[oai(validator(max_length = 64))]
    pub recovery_code: Option<String>,
    /// The `PublicKeyCredential` that `navigator.credentials.get` returned
    /// for the `webauthn` options, binary members base64url.
    pub webauthn: Option<serde_json::Value>,
}

/// Start a usernameless passkey sign-in.
#[derive(Object)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct PasskeyLoginBegin {
    /// As for `/auth/login`.
    #[oai(validator(max_length = 2048))]
    pub scope: Option<String>,
    // Absent means `body` (see `LoginRequest::token_delivery`).
    pub token_delivery: Option<TokenDelivery>,
}

/// A started WebAuthn ceremony: pass `webauthn` to the browser
/// (`navigator.credentials.get` or `.create`), send the result back with
/// `ceremony`.
#[derive(Object)]
pub struct CeremonyStarted {
    /// Single use, valid for 5 minutes.
    pub ceremony: String,
    /// `{"publicKey": {...}}`, binary members base64url.
    pub webauthn: serde_json::Value,
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct PasskeyLoginFinish {
    #[oai(validator(max_length = 256))]
    pub ceremony: String,
    /// The `PublicKeyCredential` from `navigator.credentials.get`.
    pub credential: serde_json::Value,
}

#[derive(ApiResponse)]
pub enum Started {
    #[oai(status = 200)]
    Ok(Json<CeremonyStarted>),
}

/// A second factor of the signed-in user.
#[derive(Object)]
pub struct FactorView {
    pub id: Uuid,
    /// `totp` or `passkey`.
    pub kind: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Object)]
pub struct FactorList {
    pub factors: Vec<FactorView>,
    /// Unused recovery codes.
    pub recovery_codes_left: u64,
}

#[derive(ApiResponse)]
pub enum Factors {
    #[oai(status = 200)]
    Ok(Json<FactorList>),
}

#[derive(Object)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct TotpBegin {
    /// A name to tell it apart (default "Authenticator app").
    #[oai(validator(max_length = 64, custom = "Storable"))]
    pub name: Option<String>,
    /// Your password. Required when your token's sign-in used no second
    /// factor (your first factor, or the enrol-only token), so that a
    /// stolen access token alone cannot add the thief's factor.
    #[oai(validator(max_length = 1024))]
    pub current_password: Option<String>,
}

/// A TOTP secret to add to an authenticator app; confirm it with a code.
#[derive(Object)]
pub struct TotpStarted {
    pub factor_id: Uuid,
    /// The secret, base32 (for typing it in).
    pub secret: String,
    /// `otpauth://totp/...` (what the QR code holds).
    pub otpauth_uri: String,
    /// The QR code of `otpauth_uri`, as an SVG document.
    pub qr_svg: String,
}

#[derive(ApiResponse)]
pub enum TotpStartedResponse {
    #[oai(status = 200)]
    Ok(Json<TotpStarted>),
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct TotpConfirm {
    pub factor_id: Uuid,
    #[oai(validator(max_length = 16))]
    pub code: String,
}

#[derive(Object)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct PasskeyBegin {
    /// A name to tell it apart (default "Passkey").
    #[oai(validator(max_length = 64, custom = "Storable"))]
    pub name: Option<String>,
    /// Your password. Required when your token's sign-in used no second
    /// factor (your first factor, or the enrol-only token), so that a
    /// stolen access token alone cannot add the thief's factor.
    #[oai(validator(max_length = 1024))]
    pub current_password: Option<String>,
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct PasskeyFinish {
    #[oai(validator(max_length = 256))]
    pub ceremony: String,
    /// The `PublicKeyCredential` from `navigator.credentials.create`.
    pub credential: serde_json::Value,
}

/// A factor was added.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
pub struct FactorAdded {
    pub factor_id: Uuid,
    /// How many of your other sessions were signed out.
    pub sessions_ended: u64,
    /// With your first factor only: ten recovery codes. They are shown
    /// once; each signs in once in place of a code.
    pub recovery_codes: Option<Vec<String>>,
}

#[derive(ApiResponse)]
pub enum FactorAddedResponse {
    #[oai(status = 201)]
    Created(Json<FactorAdded>),
}

#[derive(Object)]
pub struct RecoveryCodes {
    /// Shown once; the previous codes stop working.
    pub recovery_codes: Vec<String>,
    pub sessions_ended: u64,
}

#[derive(ApiResponse)]
pub enum RecoveryCodesResponse {
    #[oai(status = 200)]
    Ok(Json<RecoveryCodes>),
}

#[derive(Object)]
pub struct FactorsChanged {
    /// How many of your other sessions were signed out.
    pub sessions_ended: u64,
}

#[derive(ApiResponse)]
pub enum FactorRemoved {
    #[oai(status = 200)]
    Ok(Json<FactorsChanged>),
}

fn credential<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::validation(format!("not a WebAuthn credential: {e}")))
}

fn webauthn_json<T: serde::Serialize>(options: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(options)
        .map_err(|e| ApiError::internal(&crate::error::Internal(anyhow::anyhow!("WebAuthn options: {e}"))))
}

fn limited(state: &AppState, origin: &ClientOrigin) -> Result<(), ApiError> {
    limited_by(&state.mfa_limiter, state, origin)
}

fn limited_by(
    limiter: &crate::ratelimit::RateLimiter,
    state: &AppState,
    origin: &ClientOrigin,
) -> Result<(), ApiError> {
    let address = crate::ratelimit::address_key(origin.0.ip);
    limiter.check(&address, state.now()).map_err(ApiError::too_many_requests)
}

/// The answer in a second-step request: exactly one kind.
fn answer(
    code: Option<String>,
    recovery: Option<String>,
    webauthn: Option<serde_json::Value>,
) -> Result<Answer, ApiError> {
    let passkey = webauthn.map(credential).transpose()?;
    Answer::one_of(code, recovery, passkey)
        .ok_or_else(|| ApiError::validation("send exactly one of code, recovery_code and webauthn"))
}

/// The session to keep when a factor changes: the one of the request's token.
fn current_session(auth: &BearerAuth) -> Option<Uuid> {
    auth.0.claims.sid.as_deref().and_then(|s| Uuid::parse_str(s).ok())
}

/// Changing factors needs a recent sign-in and, once the user has a
/// factor, a sign-in that used one: a token from a password-only sign-in
/// cannot add or remove factors of an account that has them.
async fn recent(state: &AppState, auth: &BearerAuth, user: &crate::users::User) -> Result<(), ApiError> {
    flow::require_recent(state, auth.0.claims.auth_time)?;
    if !auth.0.with_mfa() && crate::mfa::repo::has_any(&state.db, user.id).await? {
        return Err(ApiError::forbidden(
            "mfa_required",
            "you have a second factor: sign in with it to change your factors",
        ));
    }
    Ok(())
}

/// Starting to add a factor: [`recent`], and the password when the token's
/// sign-in used no second factor (checked when given in any case).
async fn may_add(
    state: &AppState,
    auth: &BearerAuth,
    origin: &ClientOrigin,
    user: &crate::users::User,
    current_password: Option<&str>,
) -> Result<(), ApiError> {
    recent(state, auth, user).await?;
    match current_password {
        Some(given) => {
            let current = crate::passwords::Password::presented(given).map_err(ApiError::validation)?;
            authn::confirm_password(state, &origin.0, user, &current).await?;
        }
        None if !auth.0.with_mfa() => {
            return Err(ApiError::forbidden(
                "password_required",
                "send your current_password to add a second factor to a password-only sign-in",
            ));
        }
        None => {}
    }
    Ok(())
}

pub struct MfaApi;

#[OpenApi(prefix_path = "/auth", tag = "Tag::Auth")]
impl MfaApi {
    /// Finish a sign-in that answered `mfa_required`.
    ///
    /// Send the `mfa_token` and one answer: `code` (TOTP), `recovery_code`,
    /// or `webauthn` (the assertion for the `webauthn` options). The token
    /// works once and only for latchkey's own sign-in; a wrong answer
    /// counts against it (5 at most) and against the user: 5 wrong answers
    /// in 15 minutes lock their second step for 15 minutes (`429
    /// mfa_locked`) on every replica. Tokens are delivered as the login
    /// asked (`token_delivery`); they carry `amr` with `mfa`.
    #[oai(path = "/login/mfa", method = "post", operation_id = "loginMfa")]
    async fn login_mfa(
        &self,
        state: Data<&AppState>,
        origin: ClientOrigin,
        browser: CookieRequest,
        body: Json<MfaLoginRequest>,
    ) -> Result<Tokens, ApiError> {
        limited(&state, &origin)?;
        let req = body.0;
        let answer = answer(req.code, req.recovery_code, req.webauthn)?;
        let verified =
            flow::verify_answer(&state, &origin.0, FIRST_PARTY_CLIENT_ID, &req.mfa_token, answer).await?;
        let delivery = if verified.pending.cookie { TokenDelivery::Cookie } else { TokenDelivery::Body };
        if delivery == TokenDelivery::Cookie {
            browser.check_origin(&state)?;
        }
        let grant = authn::complete_second_step(&state, &origin.0, FIRST_PARTY_CLIENT_ID, &verified).await?;
        Ok(auth::deliver(&state, delivery, grant))
    }

    /// Start a usernameless passkey sign-in.
    ///
    /// Answers a WebAuthn challenge for any passkey of this site; pass
    /// `webauthn` to `navigator.credentials.get` and the result to
    /// `/auth/passkey/login/finish`. Only for an issuer on a domain name
    /// over https (or `http://localhost`); otherwise `400 passkeys_unavailable`.
    #[oai(path = "/passkey/login/begin", method = "post", operation_id = "passkeyLoginBegin")]
    async fn passkey_login_begin(
        &self,
        state: Data<&AppState>,
        origin: ClientOrigin,
        browser: CookieRequest,
        body: Json<PasskeyLoginBegin>,
    ) -> Result<Started, ApiError> {
        limited_by(&state.passkey_begin_limiter, &state, &origin)?;
        let req = body.0;
        let delivery = req.token_delivery.unwrap_or_default();
        let scope = auth::login_scope(&state, req.scope.as_deref())?;
        if delivery == TokenDelivery::Cookie {
            browser.check_origin(&state)?;
            if scope.contains(ADMIN_SCOPE) {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "the admin scope is not available in cookie mode; use body mode",
                ));
            }
        }
        let mut session = SessionRequest::first_party(scope, state.now());
        session.cookie = delivery == TokenDelivery::Cookie;
        let (ceremony, options) =
            flow::start_passkey_login(&state, FIRST_PARTY_CLIENT_ID, session.pending()).await?;
        Ok(Started::Ok(Json(CeremonyStarted { ceremony, webauthn: webauthn_json(&options)? })))
    }

    /// Finish a usernameless passkey sign-in.
    ///
    /// The tokens carry `amr` `["swk", "user", "mfa"]`: possession of the
    /// passkey and the authenticator's user verification.
    #[oai(path = "/passkey/login/finish", method = "post", operation_id = "passkeyLoginFinish")]
    async fn passkey_login_finish(
        &self,
        state: Data<&AppState>,
        origin: ClientOrigin,
        browser: CookieRequest,
        body: Json<PasskeyLoginFinish>,
    ) -> Result<Tokens, ApiError> {
        limited(&state, &origin)?;
        let req = body.0;
        let response = credential(req.credential)?;
        let verified =
            flow::finish_passkey_login(&state, &origin.0, FIRST_PARTY_CLIENT_ID, &req.ceremony, &response)
                .await?;
        if verified.pending.scope.split(' ').any(|s| s == ADMIN_SCOPE) && !verified.user.is_admin() {
            return Err(authn::LoginError::ScopeNotAllowed(ADMIN_SCOPE.to_owned()).into());
        }
        let delivery = if verified.pending.cookie { TokenDelivery::Cookie } else { TokenDelivery::Body };
        if delivery == TokenDelivery::Cookie {
            browser.check_origin(&state)?;
        }
        let grant = authn::complete_second_step(&state, &origin.0, FIRST_PARTY_CLIENT_ID, &verified).await?;
        Ok(auth::deliver(&state, delivery, grant))
    }

    /// Your second factors and how many recovery codes you have left.
    ///
    /// Second-factor endpoints accept tokens from latchkey's own sign-in,
    /// including the enrol-only token of `LATCHKEY_MFA_REQUIRED_ROLES`.
    #[oai(path = "/mfa/factors", method = "get", operation_id = "listMyFactors")]
    async fn list(&self, state: Data<&AppState>, auth: BearerAuth) -> Result<Factors, ApiError> {
        let user = auth.enrolling()?;
        let (factors, left) = flow::list(&state, user.id).await?;
        let factors = factors
            .into_iter()
            .map(|f| FactorView {
                id: f.id,
                kind: f.kind,
                name: f.name,
                created_at: f.created_at,
                last_used_at: f.last_used_at,
            })
            .collect();
        Ok(Factors::Ok(Json(FactorList { factors, recovery_codes_left: left })))
    }

    /// Start adding an authenticator app (TOTP, RFC 6238).
    ///
    /// Answers the secret, its `otpauth://` URI and a QR code; nothing
    /// changes until `/auth/mfa/totp/confirm` proves a first code. One
    /// authenticator app per user (`409 factor_exists`). Needs a sign-in
    /// within `LATCHKEY_MFA_REAUTH_WINDOW` (default 5 minutes), else `403
    /// reauthentication_required`, and, unless that sign-in used a second
    /// factor, `current_password` (`403 password_required`; a wrong one is
    /// `403 invalid_credentials` and counts as a failed login).
    #[oai(path = "/mfa/totp", method = "post", operation_id = "beginTotp")]
    async fn begin_totp(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        body: Json<TotpBegin>,
    ) -> Result<TotpStartedResponse, ApiError> {
        let user = auth.enrolling()?;
        may_add(&state, &auth, &origin, user, body.0.current_password.as_deref()).await?;
        let name = body.0.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
        let started = flow::begin_totp(&state, user, name).await?;
        Ok(TotpStartedResponse::Ok(Json(TotpStarted {
            factor_id: started.factor_id,
            secret: started.secret_base32,
            otpauth_uri: started.uri,
            qr_svg: started.qr_svg,
        })))
    }

    /// Confirm the authenticator app with a code it shows.
    ///
    /// The app becomes a second factor; your other sessions end. With your
    /// first factor, the answer has your recovery codes (shown once).
    #[oai(path = "/mfa/totp/confirm", method = "post", operation_id = "confirmTotp")]
    async fn confirm_totp(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        body: Json<TotpConfirm>,
    ) -> Result<FactorAddedResponse, ApiError> {
        let user = auth.enrolling()?;
        recent(&state, &auth, user).await?;
        limited(&state, &origin)?;
        let req = body.0;
        let done =
            flow::confirm_totp(&state, &origin.0, user, current_session(&auth), req.factor_id, &req.code)
                .await?;
        Ok(added(done))
    }

    /// Start registering a passkey (WebAuthn).
    ///
    /// Pass `webauthn` to `navigator.credentials.create` and the result to
    /// `/auth/mfa/passkeys/finish`. Several passkeys per user are fine.
    /// Needs a recent sign-in and, unless it used a second factor,
    /// `current_password`, as for `/auth/mfa/totp`.
    #[oai(path = "/mfa/passkeys", method = "post", operation_id = "beginPasskey")]
    async fn begin_passkey(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        body: Json<PasskeyBegin>,
    ) -> Result<Started, ApiError> {
        let user = auth.enrolling()?;
        may_add(&state, &auth, &origin, user, body.0.current_password.as_deref()).await?;
        let name =
            body.0.name.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or("Passkey").to_owned();
        let (ceremony, options) = flow::begin_passkey(&state, user, &name).await?;
        Ok(Started::Ok(Json(CeremonyStarted { ceremony, webauthn: webauthn_json(&options)? })))
    }

    /// Finish registering a passkey.
    ///
    /// The passkey becomes a second factor (and, where the authenticator
    /// keeps it discoverable, a way to sign in without a username); your
    /// other sessions end. With your first factor, the answer has your
    /// recovery codes (shown once).
    #[oai(path = "/mfa/passkeys/finish", method = "post", operation_id = "finishPasskey")]
    async fn finish_passkey(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        body: Json<PasskeyFinish>,
    ) -> Result<FactorAddedResponse, ApiError> {
        let user = auth.enrolling()?;
        recent(&state, &auth, user).await?;
        let req = body.0;
        let response = credential(req.credential)?;
        let done =
            flow::finish_passkey(&state, &origin.0, user, current_session(&auth), &req.ceremony, &response)
                .await?;
        Ok(added(done))
    }

    /// New recovery codes; the previous ones stop working.
    #[oai(path = "/mfa/recovery-codes", method = "post", operation_id = "regenerateRecoveryCodes")]
    async fn recovery_codes(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
    ) -> Result<RecoveryCodesResponse, ApiError> {
        let user = auth.account()?;
        recent(&state, &auth, user).await?;
        let (codes, ended) =
            flow::regenerate_recovery_codes(&state, &origin.0, user, current_session(&auth)).await?;
        Ok(RecoveryCodesResponse::Ok(Json(RecoveryCodes { recovery_codes: codes, sessions_ended: ended })))
    }

    /// Remove one of your second factors.
    ///
    /// Needs a recent sign-in, like adding one. Removing the last factor
    /// also removes the recovery codes. Your other sessions end.
    #[oai(path = "/mfa/factors/:id", method = "delete", operation_id = "removeMyFactor")]
    async fn remove(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        id: Path<Uuid>,
    ) -> Result<FactorRemoved, ApiError> {
        let user = auth.account()?;
        recent(&state, &auth, user).await?;
        let ended = flow::remove(&state, &origin.0, user, current_session(&auth), id.0).await?;
        Ok(FactorRemoved::Ok(Json(FactorsChanged { sessions_ended: ended })))
    }
}

fn added(done: flow::Enrolled) -> FactorAddedResponse {
    FactorAddedResponse::Created(Json(FactorAdded {
        factor_id: done.factor_id,
        sessions_ended: done.sessions_ended,
        recovery_codes: done.recovery_codes,
    }))
}
