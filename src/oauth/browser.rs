//! The browser side of the code flow, without HTTP: what the sign-in page,
//! the "Continue as …" confirmation and RP-initiated logout decide.
//!
//! `http::authorize` reads cookies and form fields, calls one function here
//! and renders what it returns; every decision lives in this module.
//!
//! | step | spec | function |
//! |---|---|---|
//! | a validated request meets the browser session: code, confirmation, sign-in page or error | OIDC Core §3.1.2.3, §3.1.2.6; RFC 8252 §8.6 | [`on_request`] |
//! | the sign-in form: password, browser session, code | RFC 6749 §4.1.2 | [`sign_in`] |
//! | "Continue as …" confirmed | RFC 8252 §8.6 | [`continue_session`] |
//! | end-session request: sign out at once or confirm | OIDC RP-Initiated Logout §2, §3 | [`logout`] |
//! | the post-logout redirect | OIDC RP-Initiated Logout §3 | [`post_logout_redirect`], [`finish_logout`] |
//!
//! A signed-in browser is sent straight back to a confidential client (the
//! code is useless without the client's secret). A public client gets a
//! confirmation first: its redirect URI proves nothing about who is
//! listening (RFC 8252 §8.6).

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use super::authorize::{self, Prompt, ValidAuthorization};
use super::codes::{self, NewCode};
use super::sessions;
use super::{ErrorCode, OAuthError};
use crate::authn::{self, LoginError};
use crate::clients;
use crate::error::Internal;
use crate::keys::KeyRing;
use crate::mfa::Amr;
use crate::mfa::flow::{
    Answer, Challenge, MfaError, Pending, SecondStep, finish_passkey_login, second_step, verify_answer,
};
use crate::passwords::Password;
use crate::refresh::Origin;
use crate::state::AppState;
use crate::tokens::{self, TokenSettings};
use crate::users::{self, User};
use webauthn_rs::prelude::PublicKeyCredential;

/// What issuing a code needs besides the request: the issuer (RFC 9207
/// `iss` in the redirect), the code's lifetime, and the roles that need a
/// second factor (`LATCHKEY_MFA_REQUIRED_ROLES`).
#[derive(Clone, Copy, Debug)]
pub struct CodeSettings<'a> {
    pub issuer: &'a str,
    pub ttl: TimeDelta,
    pub mfa_roles: &'a [String],
}

impl<'a> CodeSettings<'a> {
    pub fn of(state: &'a AppState) -> Self {
        CodeSettings {
            issuer: state.issuer(),
            ttl: crate::clock::delta(state.settings.auth_code_ttl),
            mfa_roles: &state.settings.mfa_required_roles,
        }
    }
}

/// A browser session that suits the request at hand.
#[derive(Clone, Debug)]
pub struct SignedIn {
    pub user: User,
    pub auth_time: DateTime<Utc>,
    pub amr: Amr,
}

/// The browser session behind `cookie`, if it is live, its user may still
/// sign in, and it satisfies `prompt`, `max_age` and the second factor that
/// the client, `acr_values` or the user's role requires (a session signed in
/// before that requirement began does not count: the user signs in again).
async fn usable_session(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    settings: CodeSettings<'_>,
    cookie: Option<&str>,
    v: &ValidAuthorization,
) -> Result<Option<SignedIn>, Internal> {
    let Some(cookie) = cookie else { return Ok(None) };
    let Some(session) = sessions::find(db, now, cookie).await? else { return Ok(None) };
    if !v.accepts_session(session.auth_time, now) || (v.requires_mfa() && !session.amr.is_mfa()) {
        return Ok(None);
    }
    let user = users::find(db, session.user_id)
        .await?
        .filter(|u| u.can_authenticate(now) && (session.amr.is_mfa() || !u.has_role_in(settings.mfa_roles)));
    Ok(user.map(|user| SignedIn { user, auth_time: session.auth_time, amr: session.amr }))
}

/// Issue a code; returns the redirect back to the client (RFC 6749 §4.1.2).
pub async fn issue_code(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    settings: CodeSettings<'_>,
    v: &ValidAuthorization,
    user_id: Uuid,
    auth_time: DateTime<Utc>,
    amr: &Amr,
) -> Result<String, Internal> {
    let code = codes::issue(
        db,
        now,
        settings.ttl,
        NewCode {
            client_id: v.client.client_id.clone(),
            user_id,
            redirect_uri: v.redirect_uri.clone(),
            scope: v.scope.to_string(),
            nonce: v.nonce.clone(),
            code_challenge: v.code_challenge.clone(),
            auth_time,
            amr: amr.clone(),
        },
    )
    .await?;
    Ok(authorize::code_redirect(v, &code, settings.issuer))
}

/// The error redirect for a request that passed validation.
pub fn refuse(settings: CodeSettings<'_>, v: &ValidAuthorization, error: &OAuthError) -> String {
    authorize::error_redirect(&v.redirect_uri, v.state.as_deref(), error, settings.issuer)
}

/// What a validated authorization request leads to.
#[derive(Debug)]
pub enum Next {
    /// Back to the client: a code, or an error when `prompt=none` cannot be
    /// honoured (OIDC Core §3.1.2.6).
    Redirect(String),
    /// A signed-in user confirms before a public client gets a code.
    Confirm { username: String },
    /// Show the sign-in form.
    SignIn,
}

/// Decide what `GET /oauth/authorize` does for a validated request, given
/// the browser's session cookie.
pub async fn on_request(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    settings: CodeSettings<'_>,
    v: &ValidAuthorization,
    session_cookie: Option<&str>,
) -> Result<Next, Internal> {
    let session = usable_session(db, now, settings, session_cookie, v).await?;
    Ok(match session {
        Some(s) if v.client.is_confidential() => {
            Next::Redirect(issue_code(db, now, settings, v, s.user.id, s.auth_time, &s.amr).await?)
        }
        Some(_) if v.prompt == Prompt::None => {
            let error = OAuthError::new(ErrorCode::InteractionRequired, "the user must confirm this client");
            Next::Redirect(refuse(settings, v, &error))
        }
        Some(s) => Next::Confirm { username: s.user.username },
        None if v.prompt == Prompt::None => {
            let error = OAuthError::new(ErrorCode::LoginRequired, "the user is not signed in");
            Next::Redirect(refuse(settings, v, &error))
        }
        None => Next::SignIn,
    })
}

/// "Continue as …" confirmed: the redirect with a code for the session's
/// user, or `None` when the session ended (or stopped qualifying) meanwhile.
pub async fn continue_session(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    settings: CodeSettings<'_>,
    v: &ValidAuthorization,
    session_cookie: Option<&str>,
) -> Result<Option<String>, Internal> {
    match usable_session(db, now, settings, session_cookie, v).await? {
        Some(s) => Ok(Some(issue_code(db, now, settings, v, s.user.id, s.auth_time, &s.amr).await?)),
        None => Ok(None),
    }
}

/// A successful sign-in: the new browser session and the way back.
#[derive(Debug)]
pub struct NewSession {
    /// The session cookie's value.
    pub cookie: String,
    pub ttl: TimeDelta,
    /// The redirect back to the client, with a code.
    pub location: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The form lacked a username or a password.
    #[error("enter your username and password")]
    MissingCredentials,
    /// The login was refused (or failed; see [`LoginError::Internal`]).
    #[error(transparent)]
    Login(#[from] LoginError),
    /// The second step (or a passkey sign-in) was refused.
    #[error(transparent)]
    Mfa(#[from] MfaError),
}

/// Where a correct password leads on the sign-in page.
#[derive(Debug)]
pub enum SignInOutcome {
    /// Signed in: back to the client.
    Done(NewSession),
    /// The user has a second factor: ask for it.
    SecondStep(Box<Challenge>),
}

impl From<Internal> for SignInError {
    fn from(e: Internal) -> Self {
        SignInError::Login(LoginError::Internal(e))
    }
}

/// The sign-in form: check the password like every other login (rate
/// limits, audit, rehash), then ask for the second factor of a user who
/// has one, or start a browser session and issue a code.
pub async fn sign_in(
    state: &AppState,
    origin: &Origin,
    v: &ValidAuthorization,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<SignInOutcome, SignInError> {
    let (Some(username), Some(password)) = (username, password) else {
        return Err(SignInError::MissingCredentials);
    };
    // A password too long to be anyone's is simply wrong.
    let password = Password::presented(password).map_err(|_| LoginError::InvalidCredentials)?;
    let user = authn::check_password(state, origin, &v.client.client_id, username, &password).await?;
    let pending = Pending {
        scope: v.scope.to_string(),
        nonce: None,
        id_token_alg: String::new(),
        with_refresh: false,
        amr: Amr::password().to_stored(),
        cookie: false,
        webauthn: None,
        factors: Vec::new(),
        options: None,
    };
    match second_step(state, &user, &v.client.client_id, v.requires_mfa(), pending).await? {
        SecondStep::Required(challenge) => return Ok(SignInOutcome::SecondStep(challenge)),
        SecondStep::EnrolFirst => return Err(LoginError::MfaEnrolmentRequired.into()),
        SecondStep::NotNeeded => {}
    }
    Ok(SignInOutcome::Done(start(state, origin, v, &user, &Amr::password()).await?))
}

/// A browser session for `user` and the code for the client.
async fn start(
    state: &AppState,
    origin: &Origin,
    v: &ValidAuthorization,
    user: &User,
    amr: &Amr,
) -> Result<NewSession, Internal> {
    let now = state.now();
    let ttl = crate::clock::delta(state.settings.session_ttl);
    let cookie = sessions::create(&state.db, now, ttl, user.id, amr, origin).await?;
    let location = issue_code(&state.db, now, CodeSettings::of(state), v, user.id, now, amr).await?;
    Ok(NewSession { cookie, ttl, location })
}

/// The sign-in page's second step: the answer to the `mfa_token` of this
/// client. The browser session records the methods (`amr`).
pub async fn finish_second_step(
    state: &AppState,
    origin: &Origin,
    v: &ValidAuthorization,
    mfa_token: &str,
    answer: Answer,
) -> Result<NewSession, SignInError> {
    let verified = verify_answer(state, origin, &v.client.client_id, mfa_token, answer).await?;
    Ok(start(state, origin, v, &verified.user, &verified.amr).await?)
}

/// The sign-in page's "Sign in with a passkey": a usernameless ceremony
/// started at `/auth/passkey/login/begin`.
pub async fn passkey_sign_in(
    state: &AppState,
    origin: &Origin,
    v: &ValidAuthorization,
    ceremony: &str,
    credential: &PublicKeyCredential,
) -> Result<NewSession, SignInError> {
    let verified =
        finish_passkey_login(state, origin, crate::authn::FIRST_PARTY_CLIENT_ID, ceremony, credential)
            .await?;
    Ok(start(state, origin, v, &verified.user, &verified.amr).await?)
}

/// Why an end-session request is refused (shown on a page, never redirected).
#[derive(Debug, thiserror::Error)]
pub enum LogoutError {
    #[error("client_id does not match the id_token_hint")]
    ClientMismatch,
    #[error("post_logout_redirect_uri needs client_id or id_token_hint")]
    NoClient,
    #[error("unknown client")]
    UnknownClient,
    #[error("post_logout_redirect_uri is not registered for this client")]
    UnregisteredUri,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// An end-session request as received (OIDC RP-Initiated Logout §2).
#[derive(Clone, Copy, Debug, Default)]
pub struct LogoutRequest<'a> {
    pub id_token_hint: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub post_logout_redirect_uri: Option<&'a str>,
}

/// What an end-session request leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Logout {
    /// Sign out now, then go to `target` (or say "signed out").
    Now { target: Option<String> },
    /// Ask the user first; the confirmation form carries these.
    Confirm { client_id: Option<String>, target: Option<String> },
}

/// Decide an end-session request: validate the hint, the client and the
/// post-logout redirect, then sign out at once or ask.
pub async fn logout(
    db: &impl ConnectionTrait,
    keyring: &KeyRing,
    token_settings: &TokenSettings,
    now: DateTime<Utc>,
    session_cookie: Option<&str>,
    req: LogoutRequest<'_>,
) -> Result<Logout, LogoutError> {
    let hinted =
        req.id_token_hint.and_then(|t| tokens::verify_id_token_hint(keyring, token_settings, now, t));
    if let (Some(given), Some((_, aud))) = (req.client_id, &hinted) {
        // RP-Initiated Logout §2: the client must be the token's audience.
        if given != aud {
            return Err(LogoutError::ClientMismatch);
        }
    }
    let client_id = req.client_id.map(str::to_owned).or_else(|| hinted.as_ref().map(|(_, aud)| aud.clone()));
    let target = post_logout_redirect(db, client_id.as_deref(), req.post_logout_redirect_uri).await?;
    let session_user = match session_cookie {
        Some(cookie) => sessions::find(db, now, cookie).await?.map(|s| s.user_id),
        None => None,
    };
    if signs_out_at_once(hinted.as_ref().map(|(sub, _)| sub.as_str()), session_user) {
        Ok(Logout::Now { target })
    } else {
        Ok(Logout::Confirm { client_id, target })
    }
}

/// Sign out without asking only when a valid ID token hint names the
/// signed-in user, or names someone while nobody is signed in (nothing to
/// lose). Without a hint, or with another user's token, the user confirms:
/// anyone can link to the end-session endpoint.
pub fn signs_out_at_once(hint_subject: Option<&str>, session_user: Option<Uuid>) -> bool {
    match (hint_subject, session_user) {
        (Some(sub), Some(user)) => sub == user.to_string(),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// The validated post-logout redirect, if one was asked for: it must be a
/// registered redirect URI of an enabled client.
pub async fn post_logout_redirect(
    db: &impl ConnectionTrait,
    client_id: Option<&str>,
    uri: Option<&str>,
) -> Result<Option<String>, LogoutError> {
    let Some(uri) = uri else { return Ok(None) };
    let client_id = client_id.ok_or(LogoutError::NoClient)?;
    let client =
        clients::find(db, client_id).await?.filter(|c| !c.disabled).ok_or(LogoutError::UnknownClient)?;
    client.redirect_uri(uri).map(|r| Some(r.as_str().to_owned())).ok_or(LogoutError::UnregisteredUri)
}

/// End the browser session behind `cookie`; returns where to send the
/// browser (`target` with `state`), or `None` to show "signed out".
pub async fn finish_logout(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    session_cookie: Option<&str>,
    target: Option<String>,
    state: Option<&str>,
) -> Result<Option<String>, Internal> {
    if let Some(cookie) = session_cookie {
        sessions::revoke(db, now, cookie).await?;
    }
    Ok(target.map(|uri| match state {
        Some(s) => authorize::with_query(&uri, &[("state", s)]),
        None => uri,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_hint_for_the_signed_in_user_signs_out_without_asking() {
        let user = Uuid::now_v7();
        let other = Uuid::now_v7().to_string();
        assert!(signs_out_at_once(Some(&user.to_string()), Some(user)));
        assert!(signs_out_at_once(Some(&other), None));
        assert!(!signs_out_at_once(Some(&other), Some(user)));
        assert!(!signs_out_at_once(None, Some(user)));
        assert!(!signs_out_at_once(None, None));
    }
}
