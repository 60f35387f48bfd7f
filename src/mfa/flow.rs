//! The second-factor flows: what a sign-in needs after the password
//! ([`second_step`]), checking the answer to an `mfa_token`
//! ([`verify_answer`]), the usernameless passkey sign-in
//! ([`start_passkey_login`], [`finish_passkey_login`]), and enrolment
//! (TOTP, passkeys, recovery codes, removal, admin reset).
//!
//! Every enrolment change is audited and ends the user's other sessions
//! (through [`cut_off::other_sessions`]); an admin reset ends all of them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use webauthn_rs::prelude::{
    CreationChallengeResponse, DiscoverableAuthentication, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse,
};

use super::ceremonies::{self, Purpose};
use super::{Amr, SecondFactor, guard, passkeys, recovery, repo, totp};
use crate::audit::{self, Event, EventKind};
use crate::error::Internal;
use crate::refresh::Origin;
use crate::revocation::cut_off;
use crate::state::AppState;
use crate::users::{self, User};

/// What a sign-in carries from its password step to its second step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    pub scope: String,
    pub nonce: Option<String>,
    pub id_token_alg: String,
    pub with_refresh: bool,
    /// The methods proven so far (`pwd`).
    pub amr: String,
    /// Edge-specific: how the first-party login wants its tokens.
    pub cookie: bool,
    /// The WebAuthn challenge for the user's passkeys, if they have any.
    pub webauthn: Option<PasskeyAuthentication>,
    /// What the challenge offered (to show it again after a wrong answer).
    #[serde(default)]
    pub factors: Vec<String>,
    #[serde(default)]
    pub options: Option<serde_json::Value>,
}

/// An `mfa_required` answer: the ticket and what may redeem it.
#[derive(Clone, Debug)]
pub struct Challenge {
    pub mfa_token: String,
    pub expires_in: u64,
    /// `totp`, `passkey`, `recovery_code`.
    pub factors: Vec<String>,
    /// For `passkey`: the options for `navigator.credentials.get`.
    pub webauthn: Option<RequestChallengeResponse>,
}

impl Challenge {
    /// The WebAuthn options as JSON, if a passkey is on offer.
    pub fn webauthn_json(&self) -> Option<serde_json::Value> {
        self.webauthn.as_ref().and_then(|w| serde_json::to_value(w).ok())
    }
}

/// What a sign-in needs after a correct password.
pub enum SecondStep {
    /// The user has factors: the answer is `mfa_required` with this ticket.
    Required(Box<Challenge>),
    /// The user has none, but their role (or the client) requires one.
    EnrolFirst,
    NotNeeded,
}

/// Whether one of the user's roles is in `LATCHKEY_MFA_REQUIRED_ROLES`.
pub fn role_requires(state: &AppState, user: &User) -> bool {
    user.has_role_in(&state.settings.mfa_required_roles)
}

/// Decide the second step of a password sign-in by `user` for `client_id`.
pub async fn second_step(
    state: &AppState,
    user: &User,
    client_id: &str,
    client_requires_mfa: bool,
    pending: Pending,
) -> Result<SecondStep, Internal> {
    let factors = repo::confirmed(&state.db, user.id).await?;
    if factors.is_empty() {
        return Ok(if client_requires_mfa || role_requires(state, user) {
            SecondStep::EnrolFirst
        } else {
            SecondStep::NotNeeded
        });
    }
    let challenge = challenge(state, user.id, client_id, &factors, pending).await?;
    Ok(SecondStep::Required(Box::new(challenge)))
}

async fn challenge(
    state: &AppState,
    user_id: Uuid,
    client_id: &str,
    factors: &[repo::Factor],
    mut pending: Pending,
) -> Result<Challenge, Internal> {
    let mut offered = Vec::new();
    if factors.iter().any(|f| f.kind == repo::TOTP) {
        offered.push("totp".to_owned());
    }
    let keys: Vec<Passkey> = factors.iter().filter_map(stored_passkey).collect();
    let mut options = None;
    if let (false, Ok(rp)) = (keys.is_empty(), state.webauthn.as_ref()) {
        match passkeys::start_authentication(rp, &keys) {
            Ok((rcr, auth)) => {
                pending.webauthn = Some(auth);
                options = Some(rcr);
                offered.push("passkey".to_owned());
            }
            Err(e) => tracing::warn!(error = %e, "passkey challenge not created"),
        }
    }
    if repo::recovery_codes_left(&state.db, user_id).await? > 0 {
        offered.push("recovery_code".to_owned());
    }
    pending.factors = offered.clone();
    pending.options = options.as_ref().and_then(|o| serde_json::to_value(o).ok());
    let now = state.now();
    let mfa_token =
        ceremonies::start(&state.db, now, Purpose::Mfa, Some(user_id), client_id, &pending).await?;
    Ok(Challenge {
        mfa_token,
        expires_in: u64::try_from(ceremonies::TTL.num_seconds()).unwrap_or(300),
        factors: offered,
        webauthn: options,
    })
}

fn stored_passkey(f: &repo::Factor) -> Option<Passkey> {
    let json = f.passkey.as_deref()?;
    match serde_json::from_str(json) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!(factor_id = %f.id, error = %e, "stored passkey unreadable; skipped");
            None
        }
    }
}

/// What a live `mfa_token` of `client_id` offers: the factors and the
/// WebAuthn options (the sign-in page shows them again after a wrong
/// answer). `None` once the ticket is spent or expired.
pub async fn offered(
    state: &AppState,
    client_id: &str,
    mfa_token: &str,
) -> Result<Option<(Vec<String>, Option<serde_json::Value>)>, Internal> {
    let ticket = ceremonies::find::<Pending>(&state.db, state.now(), Purpose::Mfa, mfa_token).await?;
    Ok(ticket.filter(|t| t.client_id == client_id).map(|t| (t.data.factors, t.data.options)))
}

/// An answer to an `mfa_token`.
pub enum Answer {
    Totp(String),
    RecoveryCode(String),
    Passkey(Box<PublicKeyCredential>),
}

impl Answer {
    /// The one answer a request carries, `None` unless exactly one of the
    /// three was sent (every edge has the same rule).
    pub fn one_of(
        code: Option<String>,
        recovery_code: Option<String>,
        passkey: Option<PublicKeyCredential>,
    ) -> Option<Answer> {
        match (code, recovery_code, passkey) {
            (Some(code), None, None) => Some(Answer::Totp(code)),
            (None, Some(code), None) => Some(Answer::RecoveryCode(code)),
            (None, None, Some(p)) => Some(Answer::Passkey(Box::new(p))),
            _ => None,
        }
    }

    fn kind(&self) -> SecondFactor {
        match self {
            Answer::Totp(_) => SecondFactor::Totp,
            Answer::RecoveryCode(_) => SecondFactor::RecoveryCode,
            Answer::Passkey(_) => SecondFactor::Passkey,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    /// Unknown, expired, already used, out of attempts, or another client's.
    #[error("the mfa_token is invalid, expired or already used; sign in again")]
    InvalidTicket,
    #[error("the second factor is wrong")]
    WrongAnswer,
    /// This kind of answer is not on offer for the ticket.
    #[error("this factor is not available for this sign-in")]
    NotOffered,
    #[error("too many wrong second-factor answers; retry in {retry_after} seconds")]
    Locked { retry_after: u64 },
    #[error("too many second-factor attempts from this address; retry in {retry_after} seconds")]
    RateLimited { retry_after: u64 },
    #[error("the account can no longer sign in")]
    AccountUnavailable,
    /// Passkeys are off for this issuer (an IP address or plain http).
    #[error("passkeys are not available: {0}")]
    PasskeysUnavailable(String),
    #[error("{0}")]
    Invalid(String),
    /// An enrolment that needs a fresh sign-in.
    #[error("sign in again (within the last {0} seconds) to change second factors")]
    ReauthenticationRequired(u64),
    #[error("you already have an authenticator app; remove it first")]
    TotpExists,
    #[error("this passkey is already registered")]
    PasskeyExists,
    #[error("no such factor")]
    NotFound,
    #[error("add a TOTP app or a passkey first")]
    NoFactor,
    #[error(transparent)]
    Internal(#[from] Internal),
}

impl From<anyhow::Error> for MfaError {
    fn from(e: anyhow::Error) -> Self {
        MfaError::Internal(Internal(e))
    }
}

/// A verified second step.
pub struct Verified {
    pub user: User,
    pub pending: Pending,
    pub amr: Amr,
}

/// Check the answer to an `mfa_token` of `client_id`, and spend the
/// ticket. Wrong answers count against the ticket and the user (in the
/// database), and are audited; the per-address limit is the caller's.
pub async fn verify_answer(
    state: &AppState,
    origin: &Origin,
    client_id: &str,
    mfa_token: &str,
    answer: Answer,
) -> Result<Verified, MfaError> {
    let now = state.now();
    let ticket = ceremonies::find::<Pending>(&state.db, now, Purpose::Mfa, mfa_token).await?;
    let Some(ticket) = ticket.filter(|t| t.client_id == client_id) else {
        return Err(MfaError::InvalidTicket);
    };
    let user_id = ticket.user_id.ok_or(MfaError::InvalidTicket)?;
    let user = users::find(&state.db, user_id)
        .await?
        .filter(|u| u.can_authenticate(now))
        .ok_or(MfaError::AccountUnavailable)?;
    let kind = answer.kind();
    // Every answer is charged before it is checked (ticket and user), so
    // answers sent in parallel get no more checks than answers sent one
    // after the other. The lock stops guessing; a passkey's signature
    // cannot be guessed, so a locked user can still answer with one.
    let guessable = kind != SecondFactor::Passkey;
    if guessable {
        if let Some(retry_after) = guard::locked(&state.db, user.id, now).await? {
            return Err(MfaError::Locked { retry_after });
        }
    }
    if !ceremonies::charge_attempt(&state.db, now, &ticket.id_hash).await? {
        return Err(MfaError::InvalidTicket);
    }
    let charged = if guessable { guard::charge(&state.db, user.id, now).await? } else { 0 };
    if charged > guard::LIMIT {
        lock(state, origin, &user, client_id, now).await?;
        let retry_after = u64::try_from(guard::LOCKOUT.num_seconds()).unwrap_or(900);
        return Err(MfaError::Locked { retry_after });
    }
    let right = match answer {
        Answer::Totp(code) => check_totp(state, user.id, &code, now).await?,
        Answer::RecoveryCode(code) => {
            let hash = recovery::hash(&recovery::key(&state.master), &code);
            repo::use_recovery_code(&state.db, user.id, hash, now).await?
        }
        Answer::Passkey(response) => {
            let Some(auth) = ticket.data.webauthn.as_ref() else { return Err(MfaError::NotOffered) };
            let rp = state.webauthn.as_ref().map_err(|e| MfaError::PasskeysUnavailable(e.clone()))?;
            match passkeys::finish_authentication(rp, &response, auth) {
                Ok(result) => record_passkey_use(state, user.id, &result, now).await?,
                Err(e) => {
                    tracing::info!(user_id = %user.id, error = %e, "passkey assertion refused");
                    false
                }
            }
        }
    };
    if !right {
        audit_refusal(state, origin, &user, client_id, kind, now).await;
        if charged >= guard::LIMIT {
            lock(state, origin, &user, client_id, now).await?;
        }
        return Err(MfaError::WrongAnswer);
    }
    if !ceremonies::finish(&state.db, now, &ticket.id_hash).await? {
        return Err(MfaError::InvalidTicket);
    }
    guard::succeeded(&state.db, user.id, now).await?;
    let amr = Amr::from_stored(Some(&ticket.data.amr)).with_second(kind);
    Ok(Verified { user, pending: ticket.data, amr })
}

/// Lock the user's codes (the charged answers reached the limit); the
/// replica whose call started the lockout audits it.
async fn lock(
    state: &AppState,
    origin: &Origin,
    user: &User,
    client_id: &str,
    now: DateTime<Utc>,
) -> Result<(), Internal> {
    if let Some(until) = guard::lock(&state.db, user.id, now).await? {
        tracing::warn!(user_id = %user.id, "second step locked after repeated wrong answers");
        audit::record(
            &state.db,
            now,
            origin,
            Event::new(EventKind::MfaLockedOut)
                .subject(user.id)
                .client(client_id)
                .detail("locked_until", until.to_rfc3339()),
        )
        .await;
    }
    Ok(())
}

/// Audit a refused answer. A refused usernameless passkey sign-in stops
/// here: it needed no password, and a signature cannot be guessed, so it
/// does not count toward the user's lockout (which a stranger could
/// otherwise trigger).
async fn audit_refusal(
    state: &AppState,
    origin: &Origin,
    user: &User,
    client_id: &str,
    kind: SecondFactor,
    now: DateTime<Utc>,
) {
    state.metrics.login("mfa_failed");
    audit::record(
        &state.db,
        now,
        origin,
        Event::new(EventKind::MfaFailed).subject(user.id).client(client_id).detail("factor", kind.as_str()),
    )
    .await;
}

/// Is `code` a current code of the user's TOTP app, not used before?
async fn check_totp(
    state: &AppState,
    user_id: Uuid,
    code: &str,
    now: DateTime<Utc>,
) -> Result<bool, Internal> {
    let factors = repo::confirmed(&state.db, user_id).await?;
    let Some(factor) = factors.iter().find(|f| f.kind == repo::TOTP) else { return Ok(false) };
    let secret = unseal_totp(state, factor)?;
    let Some(step) = totp::matching_step(&secret, code, unix(now)) else { return Ok(false) };
    repo::use_totp_step(&state.db, factor.id, i64::try_from(step).unwrap_or(i64::MAX), now).await
}

fn unix(now: DateTime<Utc>) -> u64 {
    u64::try_from(now.timestamp()).unwrap_or(0)
}

fn seal_label(factor_id: Uuid) -> String {
    format!("totp:{factor_id}")
}

fn unseal_totp(state: &AppState, factor: &repo::Factor) -> Result<Vec<u8>, Internal> {
    let sealed =
        factor.secret.as_deref().ok_or_else(|| Internal(anyhow::anyhow!("TOTP factor without secret")))?;
    Ok(state.master.unseal(&seal_label(factor.id), sealed)?)
}

/// Move the passkey's stored state and counter forward after an assertion
/// webauthn-rs accepted. `false` (refused) when the credential is not the
/// user's, or another use got there with the same or a later counter.
async fn record_passkey_use(
    state: &AppState,
    user_id: Uuid,
    result: &passkeys::AuthenticationResult,
    now: DateTime<Utc>,
) -> Result<bool, Internal> {
    let Some(factor) = repo::passkey_by_credential(&state.db, result.cred_id().as_ref()).await? else {
        return Ok(false);
    };
    if factor.user_id != user_id {
        return Ok(false);
    }
    let Some(mut passkey) = stored_passkey(&factor) else { return Ok(false) };
    passkey.update_credential(result);
    let json = serde_json::to_string(&passkey).map_err(anyhow::Error::from)?;
    repo::use_passkey(&state.db, factor.id, json, result.counter(), now).await
}

/// Start a usernameless passkey sign-in for `client_id`.
pub async fn start_passkey_login(
    state: &AppState,
    client_id: &str,
    pending: Pending,
) -> Result<(String, RequestChallengeResponse), MfaError> {
    let rp = state.webauthn.as_ref().map_err(|e| MfaError::PasskeysUnavailable(e.clone()))?;
    let (rcr, auth) = passkeys::start_discoverable(rp).map_err(|e| Internal(anyhow::anyhow!(e)))?;
    let data = DiscoverableCeremony { pending, state: auth };
    let handle =
        ceremonies::start(&state.db, state.now(), Purpose::PasskeyLogin, None, client_id, &data).await?;
    Ok((handle, rcr))
}

#[derive(Serialize, Deserialize)]
struct DiscoverableCeremony {
    pending: Pending,
    state: DiscoverableAuthentication,
}

/// Finish a usernameless passkey sign-in: who it was and what to issue.
pub async fn finish_passkey_login(
    state: &AppState,
    origin: &Origin,
    client_id: &str,
    handle: &str,
    response: &PublicKeyCredential,
) -> Result<Verified, MfaError> {
    let rp = state.webauthn.as_ref().map_err(|e| MfaError::PasskeysUnavailable(e.clone()))?;
    let now = state.now();
    let ceremony =
        ceremonies::find::<DiscoverableCeremony>(&state.db, now, Purpose::PasskeyLogin, handle).await?;
    let Some(ceremony) = ceremony.filter(|c| c.client_id == client_id) else {
        return Err(MfaError::InvalidTicket);
    };
    // Spent whatever the outcome: a discoverable challenge is not retried.
    if !ceremonies::finish(&state.db, now, &ceremony.id_hash).await? {
        return Err(MfaError::InvalidTicket);
    }
    let refused = |e: String| {
        tracing::info!(error = %e, "passkey sign-in refused");
        MfaError::WrongAnswer
    };
    let (user_id, credential_id) = passkeys::identify(rp, response).map_err(refused)?;
    let factor = repo::passkey_by_credential(&state.db, &credential_id).await?;
    let Some(factor) = factor.filter(|f| f.user_id == user_id && f.confirmed) else {
        return Err(MfaError::WrongAnswer);
    };
    let user = users::find(&state.db, user_id).await?.ok_or(MfaError::WrongAnswer)?;
    let passkey = stored_passkey(&factor).ok_or(MfaError::WrongAnswer)?;
    let result = match passkeys::finish_discoverable(rp, response, ceremony.data.state, &passkey) {
        Ok(r) => r,
        Err(e) => {
            audit_refusal(state, origin, &user, client_id, SecondFactor::Passkey, now).await;
            return Err(refused(e));
        }
    };
    // Only a verified signature learns whether the account may sign in: a
    // user id and credential id alone do not tell a disabled account apart.
    if !user.can_authenticate(now) {
        // As a password sign-in of such an account is.
        crate::authn::record_unavailable(state, origin, &user, client_id, now).await;
        return Err(MfaError::AccountUnavailable);
    }
    if !record_passkey_use(state, user.id, &result, now).await? {
        audit_refusal(state, origin, &user, client_id, SecondFactor::Passkey, now).await;
        return Err(MfaError::WrongAnswer);
    }
    // The sign-in is this one step: record it as a password sign-in's
    // check does.
    users::repo::touch_last_login(&state.db, user.id, now).await?;
    Ok(Verified { user, pending: ceremony.data.pending, amr: Amr::passkey() })
}

// ---- enrolment ----

/// A factor as its owner sees it.
#[derive(Clone, Debug)]
pub struct FactorInfo {
    pub id: Uuid,
    pub kind: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

pub async fn list(state: &AppState, user_id: Uuid) -> Result<(Vec<FactorInfo>, u64), Internal> {
    let factors = repo::confirmed(&state.db, user_id).await?;
    let left = repo::recovery_codes_left(&state.db, user_id).await?;
    let infos = factors
        .into_iter()
        .map(|f| FactorInfo {
            id: f.id,
            kind: f.kind,
            name: f.name,
            created_at: f.created_at,
            last_used_at: f.last_used_at,
        })
        .collect();
    Ok((infos, left))
}

/// Enrolment needs a sign-in within `LATCHKEY_MFA_REAUTH_WINDOW`.
pub fn require_recent(state: &AppState, auth_time: Option<i64>) -> Result<(), MfaError> {
    let window = state.settings.mfa_reauth_window;
    let recent = auth_time
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .is_some_and(|t| state.now() - t <= chrono::TimeDelta::from_std(window).unwrap_or_default());
    if recent { Ok(()) } else { Err(MfaError::ReauthenticationRequired(window.as_secs())) }
}

/// A TOTP secret handed out, waiting for its first code.
pub struct TotpEnrolment {
    pub factor_id: Uuid,
    pub secret_base32: String,
    pub uri: String,
    pub qr_svg: String,
}

pub async fn begin_totp(
    state: &AppState,
    user: &User,
    name: Option<&str>,
) -> Result<TotpEnrolment, MfaError> {
    let factors = repo::confirmed(&state.db, user.id).await?;
    if factors.iter().any(|f| f.kind == repo::TOTP) {
        return Err(MfaError::TotpExists);
    }
    repo::drop_pending_totp(&state.db, user.id).await?;
    let secret = totp::new_secret();
    let id = Uuid::now_v7();
    let sealed = state.master.seal(&seal_label(id), &secret)?;
    let now = state.now();
    repo::insert(
        &state.db,
        repo::Factor {
            secret: Some(sealed),
            ..repo::new_factor(id, user.id, repo::TOTP, name.unwrap_or("Authenticator app").to_owned(), now)
        },
    )
    .await?;
    let provisioning = totp::provisioning(&secret, &issuer_label(state), &user.username)?;
    let qr_svg = totp::qr_svg(&provisioning.uri)?;
    Ok(TotpEnrolment {
        factor_id: id,
        secret_base32: provisioning.secret_base32,
        uri: provisioning.uri,
        qr_svg,
    })
}

fn issuer_label(state: &AppState) -> String {
    url::Url::parse(state.issuer())
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "latchkey".to_owned())
}

/// What a confirmed enrolment did.
pub struct Enrolled {
    pub factor_id: Uuid,
    /// Sessions of the user's that ended.
    pub sessions_ended: u64,
    /// Recovery codes, generated with the first factor; shown once.
    pub recovery_codes: Option<Vec<String>>,
}

pub async fn confirm_totp(
    state: &AppState,
    origin: &Origin,
    user: &User,
    keep: Option<Uuid>,
    factor_id: Uuid,
    code: &str,
) -> Result<Enrolled, MfaError> {
    let now = state.now();
    let factor = repo::pending_totp(&state.db, user.id, factor_id).await?.ok_or(MfaError::NotFound)?;
    let secret = unseal_totp(state, &factor)?;
    let step = totp::matching_step(&secret, code, unix(now)).ok_or(MfaError::WrongAnswer)?;
    if !repo::use_totp_step(&state.db, factor.id, i64::try_from(step).unwrap_or(i64::MAX), now).await? {
        return Err(MfaError::WrongAnswer);
    }
    enrolled(state, origin, user, keep, factor.id, repo::TOTP).await
}

async fn enrolled(
    state: &AppState,
    origin: &Origin,
    user: &User,
    keep: Option<Uuid>,
    factor_id: Uuid,
    kind: &str,
) -> Result<Enrolled, MfaError> {
    let now = state.now();
    let recovery_codes = issue_recovery_codes(state, user.id, now, CodesFor::FirstFactor).await?;
    audit::record(
        &state.db,
        now,
        origin,
        Event::new(EventKind::MfaFactorAdded)
            .actor(user.id)
            .subject(user.id)
            .detail("factor_id", factor_id.to_string())
            .detail("kind", kind),
    )
    .await;
    let sessions_ended = end_other_sessions(state, user.id, keep, "mfa_factor_added").await?;
    Ok(Enrolled { factor_id, sessions_ended, recovery_codes })
}

async fn end_other_sessions(
    state: &AppState,
    user_id: Uuid,
    keep: Option<Uuid>,
    why: &str,
) -> Result<u64, Internal> {
    let now = state.now();
    cut_off::other_sessions(&state.db, state.reach(now), user_id, keep, why).await
}

/// Why recovery codes are issued.
enum CodesFor {
    /// A factor was added: codes only if the user has none yet.
    FirstFactor,
    /// The user asked for new ones: needs a factor.
    Regenerate,
}

/// Issue recovery codes under the user's row lock, which every change to
/// a user's set of codes takes (see also [`remove`], [`reset`]): two
/// regenerations at once leave one set of ten, not twenty; two first
/// factors at once give codes once; removing the last factor while new
/// codes are made leaves no codes behind.
async fn issue_recovery_codes(
    state: &AppState,
    user_id: Uuid,
    now: DateTime<Utc>,
    why: CodesFor,
) -> Result<Option<Vec<String>>, MfaError> {
    use sea_orm::TransactionTrait;
    let txn = state.db.begin().await.map_err(Internal::from)?;
    users::repo::lock(&txn, user_id).await?;
    match why {
        CodesFor::FirstFactor if repo::has_recovery_codes(&txn, user_id).await? => return Ok(None),
        CodesFor::Regenerate if !repo::has_any(&txn, user_id).await? => return Err(MfaError::NoFactor),
        _ => {}
    }
    let codes = recovery::generate();
    let key = recovery::key(&state.master);
    let hashes = codes.iter().map(|c| recovery::hash(&key, c)).collect();
    repo::replace_recovery_codes(&txn, user_id, hashes, now).await?;
    txn.commit().await.map_err(Internal::from)?;
    Ok(Some(codes))
}

/// New recovery codes (the old ones stop working). Needs a factor.
pub async fn regenerate_recovery_codes(
    state: &AppState,
    origin: &Origin,
    user: &User,
    keep: Option<Uuid>,
) -> Result<(Vec<String>, u64), MfaError> {
    let now = state.now();
    let codes =
        issue_recovery_codes(state, user.id, now, CodesFor::Regenerate).await?.ok_or(MfaError::NoFactor)?;
    audit::record(
        &state.db,
        now,
        origin,
        Event::new(EventKind::MfaFactorAdded)
            .actor(user.id)
            .subject(user.id)
            .detail("kind", "recovery_codes"),
    )
    .await;
    let ended = end_other_sessions(state, user.id, keep, "mfa_factor_added").await?;
    Ok((codes, ended))
}

#[derive(Serialize, Deserialize)]
struct RegistrationCeremony {
    name: String,
    state: PasskeyRegistration,
}

pub async fn begin_passkey(
    state: &AppState,
    user: &User,
    name: &str,
) -> Result<(String, CreationChallengeResponse), MfaError> {
    let rp = state.webauthn.as_ref().map_err(|e| MfaError::PasskeysUnavailable(e.clone()))?;
    let existing = repo::confirmed(&state.db, user.id).await?;
    let exclude = existing.iter().filter_map(stored_passkey).map(|p| p.cred_id().clone()).collect();
    let (ccr, reg) = passkeys::start_registration(rp, user.id, &user.username, exclude)
        .map_err(|e| Internal(anyhow::anyhow!(e)))?;
    let data = RegistrationCeremony { name: name.to_owned(), state: reg };
    let handle =
        ceremonies::start(&state.db, state.now(), Purpose::PasskeyRegister, Some(user.id), "latchkey", &data)
            .await?;
    Ok((handle, ccr))
}

pub async fn finish_passkey(
    state: &AppState,
    origin: &Origin,
    user: &User,
    keep: Option<Uuid>,
    handle: &str,
    response: &RegisterPublicKeyCredential,
) -> Result<Enrolled, MfaError> {
    let rp = state.webauthn.as_ref().map_err(|e| MfaError::PasskeysUnavailable(e.clone()))?;
    let now = state.now();
    let ceremony =
        ceremonies::find::<RegistrationCeremony>(&state.db, now, Purpose::PasskeyRegister, handle).await?;
    let Some(ceremony) = ceremony.filter(|c| c.user_id == Some(user.id)) else {
        return Err(MfaError::InvalidTicket);
    };
    if !ceremonies::finish(&state.db, now, &ceremony.id_hash).await? {
        return Err(MfaError::InvalidTicket);
    }
    let passkey = passkeys::finish_registration(rp, response, &ceremony.data.state)
        .map_err(|e| MfaError::Invalid(format!("the passkey registration was refused: {e}")))?;
    let credential_id = passkey.cred_id().as_ref().to_vec();
    if repo::passkey_by_credential(&state.db, &credential_id).await?.is_some() {
        return Err(MfaError::PasskeyExists);
    }
    let id = Uuid::now_v7();
    repo::insert(
        &state.db,
        repo::Factor {
            passkey: Some(serde_json::to_string(&passkey).map_err(anyhow::Error::from)?),
            credential_id: Some(credential_id),
            confirmed: true,
            ..repo::new_factor(id, user.id, repo::PASSKEY, ceremony.data.name, now)
        },
    )
    .await?
    .ok_or(MfaError::PasskeyExists)?;
    enrolled(state, origin, user, keep, id, repo::PASSKEY).await
}

/// Remove one of the user's factors. Removing the last one also removes
/// the recovery codes.
pub async fn remove(
    state: &AppState,
    origin: &Origin,
    user: &User,
    keep: Option<Uuid>,
    factor_id: Uuid,
) -> Result<u64, MfaError> {
    use sea_orm::TransactionTrait;
    let txn = state.db.begin().await.map_err(Internal::from)?;
    users::repo::lock(&txn, user.id).await?;
    if !repo::delete(&txn, user.id, factor_id).await? {
        return Err(MfaError::NotFound);
    }
    if !repo::has_any(&txn, user.id).await? {
        repo::delete_recovery_codes(&txn, user.id).await?;
    }
    txn.commit().await.map_err(Internal::from)?;
    let now = state.now();
    audit::record(
        &state.db,
        now,
        origin,
        Event::new(EventKind::MfaFactorRemoved)
            .actor(user.id)
            .subject(user.id)
            .detail("factor_id", factor_id.to_string()),
    )
    .await;
    Ok(end_other_sessions(state, user.id, keep, "mfa_factor_removed").await?)
}

/// An admin (`DELETE /admin/users/{id}/mfa`, or an operator with
/// `latchkey users reset-mfa`) removes every factor of a user who lost
/// them: their sessions all end, and their lockout is cleared. `actor` is
/// the admin's id, or `cli`. Returns how many factors were removed and how
/// many sessions ended.
pub async fn reset(
    db: &sea_orm::DatabaseConnection,
    reach: crate::revocation::Reach,
    origin: &Origin,
    actor: &str,
    user_id: Uuid,
) -> Result<(u64, u64), MfaError> {
    if users::find(db, user_id).await?.is_none() {
        return Err(MfaError::NotFound);
    }
    use sea_orm::TransactionTrait;
    let txn = db.begin().await.map_err(Internal::from)?;
    users::repo::lock(&txn, user_id).await?;
    let removed = repo::delete_all(&txn, user_id).await?;
    txn.commit().await.map_err(Internal::from)?;
    guard::clear(db, user_id).await?;
    let now = reach.now;
    let ended = cut_off::user(db, reach, user_id, "mfa_factors_reset").await?;
    audit::record(
        db,
        now,
        origin,
        Event::new(EventKind::MfaFactorsReset)
            .actor(actor)
            .subject(user_id)
            .detail("factors_removed", removed)
            .detail("sessions_ended", ended),
    )
    .await;
    Ok((removed, ended))
}
