//! Authentication flows shared by the JSON API and the OAuth endpoints.
//!
//! `/auth/login` and `grant_type=password` both call [`login`]; `/auth/refresh`
//! and `grant_type=refresh_token` both call [`refresh`]; the authorization-code
//! grant calls [`start_session`]. Each flow: check credentials, check the
//! account, start or rotate a refresh family, sign the tokens, audit.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::audit::{self, Event, EventKind};
use crate::config::SigningAlg;
use crate::error::Internal;
use crate::mfa::{self, Amr};
use crate::passwords::{HashError, Password, Verification};
use crate::refresh::{self, NewFamily, Origin, RefreshError};
use crate::revocation::{self, cut_off};
use crate::scope::ScopeSet;
use crate::state::AppState;
use crate::tokens::{self, AccessClaims, AccessGrant, IdTokenClaims, TokenError};
use crate::users::{self, User, username};

/// The client id of latchkey's own JSON API (`/auth/*`).
pub const FIRST_PARTY_CLIENT_ID: &str = "latchkey";

/// The scope that unlocks `/admin/*`. Only admins get it, only through the
/// first-party login, and tokens carrying it have `aud` = the issuer, so no
/// relying service accepts them and no relying service ever receives a
/// token that latchkey's admin API would accept.
pub const ADMIN_SCOPE: &str = "latchkey:admin";

/// The scope that lets a service manage users (not admins) over `/admin/users`.
/// Only a confidential client whose only grant is `client_credentials` may
/// be given it; it must be asked for explicitly, and tokens carrying it have
/// `aud` = the issuer, like admin tokens, so no relying service accepts them.
pub const USERS_SCOPE: &str = "latchkey:users";

/// The tokens of a successful login or refresh (RFC 6749 §5.1).
#[derive(Clone, Debug)]
pub struct TokenGrant {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: Option<String>,
    pub scope: String,
    pub id_token: Option<String>,
    /// The refresh family, when one is involved.
    pub family_id: Option<Uuid>,
    pub access_expires_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password: deliberately indistinguishable.
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("this account is disabled")]
    AccountDisabled,
    #[error("this account is banned")]
    AccountBanned { until: Option<DateTime<Utc>> },
    #[error("too many logins are being processed; retry shortly")]
    Busy,
    /// Too many attempts: from this address, for this username, or both.
    #[error("too many sign-in attempts; retry in {retry_after} seconds")]
    RateLimited { retry_after: u64 },
    #[error("the scope {0} is not available to this account")]
    ScopeNotAllowed(String),
    /// The password was right and the user has second factors: answer
    /// this challenge (`mfa_required`).
    #[error("a second factor is required to complete this sign-in")]
    MfaRequired(Box<mfa::flow::Challenge>),
    /// The client (or, outside latchkey's own sign-in, the user's role)
    /// requires a second factor and the user has none yet.
    #[error("a second factor is required; enrol one first (a TOTP app or a passkey)")]
    MfaEnrolmentRequired,
    #[error(transparent)]
    Internal(#[from] Internal),
}

impl From<HashError> for LoginError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => LoginError::Busy,
            HashError::Internal(i) => LoginError::Internal(i),
        }
    }
}

/// Check a username and password. Unknown usernames (including ones that do
/// not even parse) are verified against the dummy hash, so every failure
/// costs one argon2 verification. A username no row can hold (see
/// [`crate::sql::is_storable`]; the JSON and OAuth edges refuse it first)
/// is unknown without a lookup, which is how the sign-in page answers it.
#[tracing::instrument(skip_all)]
pub async fn check_password(
    state: &AppState,
    origin: &Origin,
    client_id: &str,
    username_input: &str,
    password: &Password,
) -> Result<User, LoginError> {
    // No stored username is longer than MAX_LEN characters or holds a NUL:
    // skip the lookup (never the hash) for anything like that.
    let unknown = username_input.is_empty()
        || username_input.chars().count() > username::MAX_LEN * 4
        || !crate::sql::is_storable(username_input);
    let key = if unknown { String::new() } else { username::comparison_key(username_input) };
    let address = crate::ratelimit::address_key(origin.ip);
    let attempt = match state.login_guard.begin(&key, &address, state.now()) {
        Ok(attempt) => attempt,
        Err(retry_after) => {
            state.metrics.login("throttled");
            return Err(LoginError::RateLimited { retry_after });
        }
    };
    let row = if unknown { None } else { users::repo::by_username_key(&state.db, &key).await? };
    let verification = state.hasher.verify(password, row.as_ref().map(|r| r.password_hash.as_str())).await?;
    let now = state.now();
    let (Verification::Valid { needs_rehash }, Some(row)) = (verification, row) else {
        attempt.failed(now);
        state.metrics.login("invalid_credentials");
        audit::record(
            &state.db,
            now,
            origin,
            Event::new(EventKind::LoginFailed).client(client_id).detail("reason", "invalid_credentials"),
        )
        .await;
        return Err(LoginError::InvalidCredentials);
    };
    attempt.succeeded(now);
    let user = User::from(row);
    if !user.can_authenticate(now) {
        record_unavailable(state, origin, &user, client_id, now).await;
        return Err(if user.disabled {
            LoginError::AccountDisabled
        } else {
            LoginError::AccountBanned { until: user.ban.as_ref().and_then(|b| b.until) }
        });
    }
    if needs_rehash {
        // Parameters changed since this hash was made: upgrade it now that
        // we know the password. A failure only delays the upgrade.
        match state.hasher.hash(password).await {
            Ok(hash) => {
                if let Err(e) = users::repo::set_password_hash(&state.db, user.id, hash, now).await {
                    tracing::warn!(error = %e, user_id = %user.id, "password rehash not saved");
                }
            }
            Err(e) => tracing::warn!(error = %e, user_id = %user.id, "password rehash failed"),
        }
    }
    users::repo::touch_last_login(&state.db, user.id, now).await?;
    state.metrics.login("success");
    Ok(user)
}

/// Count and audit (`login_failed`) a sign-in that proved who it is for
/// an account that is disabled or banned.
pub async fn record_unavailable(
    state: &AppState,
    origin: &Origin,
    user: &User,
    client_id: &str,
    now: DateTime<Utc>,
) {
    let reason = if user.disabled { "account_disabled" } else { "account_banned" };
    state.metrics.login(reason);
    audit::record(
        &state.db,
        now,
        origin,
        Event::new(EventKind::LoginFailed).subject(user.id).client(client_id).detail("reason", reason),
    )
    .await;
}

/// What a new session is for.
#[derive(Clone, Debug)]
pub struct SessionRequest {
    pub client_id: String,
    pub scope: ScopeSet,
    pub auth_time: DateTime<Utc>,
    pub nonce: Option<String>,
    /// Algorithm of the ID token, when the scope has `openid`.
    pub id_token_alg: SigningAlg,
    /// Start a refresh family (the client may refresh).
    pub with_refresh: bool,
    /// Use this family id (reserved beforehand by the code grant).
    pub family_id: Option<Uuid>,
    /// Use this `jti` for the access token (reserved beforehand by the code grant).
    pub access_jti: Option<String>,
    /// How the user authenticated (RFC 8176).
    pub amr: Amr,
    /// The client accepts only sign-ins with a second factor.
    pub require_mfa: bool,
    /// First-party logins: the refresh token goes into a cookie (kept
    /// across a second step).
    pub cookie: bool,
}

impl SessionRequest {
    /// A first-party session: refresh tokens, RS256 ID tokens.
    pub fn first_party(scope: ScopeSet, now: DateTime<Utc>) -> Self {
        SessionRequest {
            client_id: FIRST_PARTY_CLIENT_ID.to_owned(),
            scope,
            auth_time: now,
            nonce: None,
            id_token_alg: SigningAlg::Rs256,
            with_refresh: true,
            family_id: None,
            access_jti: None,
            amr: Amr::password(),
            require_mfa: false,
            cookie: false,
        }
    }

    /// What a second step needs to start this session afterwards.
    pub fn pending(&self) -> mfa::flow::Pending {
        mfa::flow::Pending {
            scope: self.scope.to_string(),
            nonce: self.nonce.clone(),
            id_token_alg: self.id_token_alg.as_str().to_owned(),
            with_refresh: self.with_refresh,
            amr: self.amr.to_stored(),
            cookie: self.cookie,
            webauthn: None,
            factors: Vec::new(),
            options: None,
        }
    }

    /// The session a verified second step starts.
    pub fn after_second_step(client_id: &str, verified: &mfa::flow::Verified, now: DateTime<Utc>) -> Self {
        let p = &verified.pending;
        SessionRequest {
            client_id: client_id.to_owned(),
            scope: ScopeSet::from_stored(&p.scope),
            auth_time: now,
            nonce: p.nonce.clone(),
            id_token_alg: p.id_token_alg.parse().unwrap_or(SigningAlg::Rs256),
            with_refresh: p.with_refresh,
            family_id: None,
            access_jti: None,
            amr: verified.amr.clone(),
            require_mfa: false,
            cookie: p.cookie,
        }
    }
}

/// Password login: check the credentials, start a session, sign tokens.
#[tracing::instrument(skip_all)]
pub async fn login(
    state: &AppState,
    origin: &Origin,
    username_input: &str,
    password: &Password,
    mut session: SessionRequest,
) -> Result<(User, TokenGrant), LoginError> {
    let user = check_password(state, origin, &session.client_id, username_input, password).await?;
    if session.scope.contains(ADMIN_SCOPE) && !(user.is_admin() && session.client_id == FIRST_PARTY_CLIENT_ID)
    {
        return Err(LoginError::ScopeNotAllowed(ADMIN_SCOPE.to_owned()));
    }
    session.amr = Amr::password();
    let step =
        mfa::flow::second_step(state, &user, &session.client_id, session.require_mfa, session.pending())
            .await?;
    let now = state.now();
    session.auth_time = now;
    match step {
        mfa::flow::SecondStep::Required(challenge) => {
            state.metrics.login("mfa_required");
            return Err(LoginError::MfaRequired(challenge));
        }
        mfa::flow::SecondStep::EnrolFirst => {
            // latchkey's own sign-in lets a user whose role requires a
            // second factor in far enough to enrol one; nothing more.
            if session.client_id != FIRST_PARTY_CLIENT_ID || session.require_mfa {
                return Err(LoginError::MfaEnrolmentRequired);
            }
            let grant = enrolment_token(state, &user, now)?;
            return Ok((user, grant));
        }
        mfa::flow::SecondStep::NotNeeded => {}
    }
    let grant = start_session(state, origin, &user, session, now).await?;
    state.metrics.issued("password");
    Ok((user, grant))
}

/// A token that can only enrol a second factor: scope
/// [`mfa::ENROL_SCOPE`], `aud` = the issuer (no relying service accepts
/// it), no refresh token, no session.
fn enrolment_token(state: &AppState, user: &User, now: DateTime<Utc>) -> Result<TokenGrant, Internal> {
    let scope = ScopeSet::from_stored(mfa::ENROL_SCOPE);
    sign_for_user(
        state,
        user,
        &SignRequest {
            client_id: FIRST_PARTY_CLIENT_ID,
            scope: &scope,
            auth_time: now,
            family_id: None,
            nonce: None,
            id_token_alg: SigningAlg::Rs256,
            jti: None,
            amr: &Amr::password(),
        },
        now,
    )
}

/// Finish a sign-in whose second step was verified: start its session.
pub async fn complete_second_step(
    state: &AppState,
    origin: &Origin,
    client_id: &str,
    verified: &mfa::flow::Verified,
) -> Result<TokenGrant, Internal> {
    let now = state.now();
    let session = SessionRequest::after_second_step(client_id, verified, now);
    let grant = start_session(state, origin, &verified.user, session, now).await?;
    state.metrics.issued("mfa");
    Ok(grant)
}

/// Start a session for an authenticated user: a refresh family if asked for,
/// then the access token (and ID token for `openid`).
pub async fn start_session(
    state: &AppState,
    origin: &Origin,
    user: &User,
    session: SessionRequest,
    now: DateTime<Utc>,
) -> Result<TokenGrant, Internal> {
    let family = if session.with_refresh {
        let new = NewFamily {
            id: session.family_id.unwrap_or_else(Uuid::now_v7),
            user_id: user.id,
            client_id: session.client_id.clone(),
            scope: session.scope.to_string(),
            auth_time: session.auth_time,
            amr: session.amr.clone(),
            origin: origin.clone(),
        };
        let (family, token, overflow) =
            refresh::start(&state.db, &state.families, &state.refresh_codec, now, new).await?;
        let ended =
            cut_off::sessions(&state.db, state.reach(now), overflow, refresh::reason::SESSION_LIMIT).await?;
        if ended > 0 {
            tracing::info!(ended, "oldest sessions ended by the per-user cap");
        }
        Some((family, token))
    } else {
        None
    };
    let family_id = family.as_ref().map(|(f, _)| f.id);
    let mut grant = sign_for_user(
        state,
        user,
        &SignRequest {
            client_id: &session.client_id,
            scope: &session.scope,
            auth_time: session.auth_time,
            family_id,
            nonce: session.nonce,
            id_token_alg: session.id_token_alg,
            jti: session.access_jti,
            amr: &session.amr,
        },
        now,
    )?;
    grant.refresh_token = family.map(|(_, token)| token);
    audit::record(
        &state.db,
        now,
        origin,
        Event::new(EventKind::LoginSucceeded)
            .subject(user.id)
            .client(&session.client_id)
            .detail("family_id", family_id.map(|f| f.to_string()))
            .detail("amr", session.amr.values()),
    )
    .await;
    Ok(grant)
}

#[derive(Clone)]
struct SignRequest<'a> {
    client_id: &'a str,
    scope: &'a ScopeSet,
    auth_time: DateTime<Utc>,
    family_id: Option<Uuid>,
    nonce: Option<String>,
    id_token_alg: SigningAlg,
    jti: Option<String>,
    amr: &'a Amr,
}

fn sign_for_user(
    state: &AppState,
    user: &User,
    req: &SignRequest<'_>,
    now: DateTime<Utc>,
) -> Result<TokenGrant, Internal> {
    // A user who lost the admin role loses the admin scope at the next refresh.
    let scope = if user.is_admin() { req.scope.clone() } else { req.scope.without(ADMIN_SCOPE) };
    let audience =
        (scope.contains(ADMIN_SCOPE) || scope.contains(mfa::ENROL_SCOPE)).then(|| state.issuer().to_owned());
    let req = &SignRequest { scope: &scope, ..req.clone() };
    let access = tokens::issue_access(
        &state.keyring,
        &state.tokens,
        now,
        &AccessGrant {
            subject: user.id.to_string(),
            client_id: req.client_id.to_owned(),
            scope: req.scope.to_string(),
            roles: Some(user.role_names()),
            auth_time: Some(req.auth_time),
            session_id: req.family_id.map(|f| f.to_string()),
            jti: req.jti.clone(),
            audience,
            amr: Some(req.amr.clone()),
        },
    )?;
    let id_token = if req.scope.contains("openid") {
        let claims = IdTokenClaims {
            subject: user.id.to_string(),
            audience: req.client_id.to_owned(),
            auth_time: Some(req.auth_time),
            nonce: req.nonce.clone(),
            access_token: Some(access.token.clone()),
            extra: {
                let mut extra = profile_claims(user, req.scope);
                extra.insert("amr".into(), req.amr.values().into());
                extra.insert("acr".into(), req.amr.acr().into());
                extra
            },
        };
        Some(tokens::issue_id_token(&state.keyring, &state.tokens, now, req.id_token_alg, &claims)?)
    } else {
        None
    };
    Ok(TokenGrant {
        access_token: access.token,
        expires_in: access.expires_in,
        refresh_token: None,
        scope: req.scope.to_string(),
        id_token,
        family_id: req.family_id,
        access_expires_at: access.expires_at,
    })
}

/// OIDC Core §5.4 claims released by scope.
pub fn profile_claims(user: &User, scope: &ScopeSet) -> serde_json::Map<String, serde_json::Value> {
    let mut claims = serde_json::Map::new();
    if scope.contains("profile") {
        claims.insert("preferred_username".into(), user.username.clone().into());
        claims.insert("updated_at".into(), user.updated_at.timestamp().into());
    }
    if scope.contains("email") {
        if let Some(email) = &user.email {
            claims.insert("email".into(), email.clone().into());
            // latchkey does not verify addresses.
            claims.insert("email_verified".into(), false.into());
        }
    }
    claims
}

/// The client a refresh is for, as the caller loaded it: `allowed` is what
/// it may have now (see [`refresh`]), `require_mfa` its setting.
#[derive(Clone, Copy, Debug)]
pub struct Refresher<'a> {
    pub client_id: &'a str,
    pub allowed: &'a ScopeSet,
    pub id_token_alg: SigningAlg,
    pub require_mfa: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshFlowError {
    #[error(transparent)]
    Refresh(#[from] RefreshError),
    /// The account was disabled, banned or deleted: the family was ended.
    #[error("the account can no longer sign in")]
    AccountUnavailable,
    /// The client may no longer have any scope of the grant: the family was ended.
    #[error("the client is no longer allowed any scope of this grant")]
    ScopeWithdrawn,
    /// The session was signed in without a second factor, and the client or
    /// the user's role now requires one: the family was ended.
    #[error("this session was signed in without a second factor, which is now required: sign in again")]
    MfaRequired,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// Rotate a refresh token and sign new tokens. `narrow` may reduce the
/// scope of the new access token (RFC 6749 §6); the family keeps its own.
///
/// `allowed` is what the client may have now: the scope of the client the
/// token endpoint loaded to authenticate it, or [`first_party_scope`]. The
/// new tokens carry only scopes in both, so a scope an admin removed from the
/// client stops being minted at the next refresh. The family keeps the scope
/// the user consented to; it is cut at each refresh, not rewritten.
#[tracing::instrument(skip_all)]
pub async fn refresh(
    state: &AppState,
    origin: &Origin,
    refresher: &Refresher<'_>,
    presented: &str,
    narrow: Option<ScopeSet>,
) -> Result<TokenGrant, RefreshFlowError> {
    let Refresher { client_id, allowed, id_token_alg, require_mfa } = *refresher;
    let now = state.now();
    let refreshed = match refresh::refresh(
        &state.db,
        &state.families,
        &state.refresh_codec,
        now,
        presented,
        client_id,
        narrow.as_ref(),
        origin,
    )
    .await
    {
        Ok(r) => {
            state.metrics.refresh(match r.rotation {
                refresh::Rotation::Rotated => "rotated",
                refresh::Rotation::GraceReplay => "grace_replay",
            });
            if let Some(change) = &r.context_change {
                let f = &r.family;
                audit_context_change(state, now, origin, client_id, f.id, f.user_id, change, false).await;
            }
            r
        }
        Err(RefreshError::ContextChanged { family_id, user_id, change }) => {
            state.metrics.refresh("context_changed");
            // Concurrent refreshes from the new context all land here; only
            // the one that actually ended the family audits it.
            if cut_off::session(&state.db, state.reach(now), family_id, refresh::reason::CONTEXT_CHANGED)
                .await?
            {
                audit_context_change(state, now, origin, client_id, family_id, user_id, &change, true).await;
            }
            return Err(RefreshError::ContextChanged { family_id, user_id, change }.into());
        }
        Err(RefreshError::Reused { family_id, user_id }) => {
            state.metrics.refresh("reuse_detected");
            cut_off::session(&state.db, state.reach(now), family_id, refresh::reason::REUSE_DETECTED).await?;
            audit::record(
                &state.db,
                now,
                origin,
                Event::new(EventKind::RefreshReuseDetected)
                    .subject(user_id)
                    .client(client_id)
                    .detail("family_id", family_id.to_string()),
            )
            .await;
            return Err(RefreshError::Reused { family_id, user_id }.into());
        }
        Err(e) => {
            state.metrics.refresh("refused");
            return Err(e.into());
        }
    };
    let family = refreshed.family;
    let user = match refreshed.user {
        Some(user) => Some(user),
        None => users::find(&state.db, family.user_id).await?,
    };
    let Some(user) = user.filter(|u| u.can_authenticate(now)) else {
        cut_off::session(&state.db, state.reach(now), family.id, refresh::reason::ACCOUNT_UNAVAILABLE)
            .await?;
        return Err(RefreshFlowError::AccountUnavailable);
    };
    // A second factor required after this session signed in without one
    // (the client's `require_mfa` turned on, the user's role added to
    // `LATCHKEY_MFA_REQUIRED_ROLES`) ends it here rather than let it mint
    // tokens the policy would no longer give.
    if !family.amr.is_mfa() && (require_mfa || mfa::flow::role_requires(state, &user)) {
        if cut_off::session(&state.db, state.reach(now), family.id, refresh::reason::MFA_REQUIRED).await? {
            audit::record(
                &state.db,
                now,
                origin,
                Event::new(EventKind::FamilyRevoked)
                    .subject(user.id)
                    .client(client_id)
                    .detail("family_id", family.id.to_string())
                    .detail("reason", refresh::reason::MFA_REQUIRED),
            )
            .await;
        }
        return Err(RefreshFlowError::MfaRequired);
    }
    let granted = narrow.unwrap_or_else(|| ScopeSet::from_stored(&family.scope));
    let scope = granted.intersection(allowed);
    // Nothing left: the client lost every scope the user granted it. The
    // family is ended (and its access tokens denied) rather than minting
    // empty tokens; the user signs in again if the client is given scope back.
    // A family that never had any scope (a first-party login with none) goes on.
    if scope.is_empty() && !granted.is_empty() {
        cut_off::session(&state.db, state.reach(now), family.id, refresh::reason::SCOPE_WITHDRAWN).await?;
        return Err(RefreshFlowError::ScopeWithdrawn);
    }
    let mut grant = sign_for_user(
        state,
        &user,
        &SignRequest {
            client_id,
            scope: &scope,
            auth_time: family.auth_time,
            family_id: Some(family.id),
            nonce: None,
            id_token_alg,
            jti: None,
            amr: &family.amr,
        },
        now,
    )?;
    grant.refresh_token = Some(refreshed.token);
    state.metrics.issued("refresh_token");
    Ok(grant)
}

/// Record a `refresh_context_changed` event: which session, what changed,
/// from what to what (addresses and user-agent families, never tokens), and
/// whether the session was ended for it.
#[allow(clippy::too_many_arguments)]
async fn audit_context_change(
    state: &AppState,
    now: DateTime<Utc>,
    origin: &Origin,
    client_id: &str,
    family_id: Uuid,
    user_id: Uuid,
    change: &refresh::ContextChange,
    ended: bool,
) {
    let rules = &state.families.context;
    let network = |ip: Option<std::net::IpAddr>| ip.map(|ip| refresh::context::network_of(ip, rules));
    let event = Event::new(EventKind::RefreshContextChanged)
        .subject(user_id)
        .client(client_id)
        .detail("family_id", family_id.to_string())
        .detail("changed", change.what())
        .detail("previous_ip", change.previous_ip.map(|ip| ip.to_string()))
        .detail("ip", change.ip.map(|ip| ip.to_string()))
        .detail("previous_network", network(change.previous_ip))
        .detail("network", network(change.ip))
        .detail("previous_user_agent_family", change.previous_agent.clone())
        .detail("user_agent_family", change.agent.clone())
        .detail("session_ended", ended);
    tracing::warn!(%family_id, %user_id, changed = %change, session_ended = ended, "refresh from another context");
    audit::record(&state.db, now, origin, event).await;
}

/// What a first-party session may have now: `LATCHKEY_USER_SCOPES`, plus the
/// admin scope, which [`sign_for_user`] still keeps only for admins.
/// (The role is re-checked there at every refresh; this does not widen it.)
pub fn first_party_scope(user_scopes: &ScopeSet) -> ScopeSet {
    user_scopes.with(ADMIN_SCOPE)
}

/// End the session a refresh token belongs to. Unknown tokens are ignored:
/// logging out twice is not an error, and the answer reveals nothing.
pub async fn logout(
    state: &AppState,
    origin: &Origin,
    client_id: &str,
    presented: &str,
) -> Result<(), Internal> {
    let now = state.now();
    let Some(family) = refresh::family_of(&state.db, &state.refresh_codec, presented, client_id).await?
    else {
        return Ok(());
    };
    if cut_off::session(&state.db, state.reach(now), family.id, refresh::reason::LOGOUT).await? {
        audit::record(
            &state.db,
            now,
            origin,
            Event::new(EventKind::Logout)
                .subject(family.user_id)
                .client(client_id)
                .detail("family_id", family.id.to_string()),
        )
        .await;
    }
    Ok(())
}

/// The session a password change keeps signed in: the one of the token
/// that asked.
#[derive(Clone, Debug)]
pub struct KeptSession {
    pub family_id: Option<Uuid>,
    pub scope: ScopeSet,
    pub auth_time: DateTime<Utc>,
    pub amr: Amr,
}

/// What a password change did. Not `Debug`: it holds a token.
pub struct PasswordChange {
    /// Other sessions ended.
    pub sessions_ended: u64,
    /// A new access token for the kept session: every token issued before
    /// the change, the one that asked included, is denied.
    pub grant: TokenGrant,
}

/// Why a password change was refused.
#[derive(Debug, thiserror::Error)]
pub enum PasswordChangeError {
    /// The signed-in user got their current password wrong.
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    #[error(transparent)]
    Login(LoginError),
}

impl From<LoginError> for PasswordChangeError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::InvalidCredentials => PasswordChangeError::WrongCurrentPassword,
            other => PasswordChangeError::Login(other),
        }
    }
}

impl From<HashError> for PasswordChangeError {
    fn from(e: HashError) -> Self {
        LoginError::from(e).into()
    }
}

impl From<Internal> for PasswordChangeError {
    fn from(e: Internal) -> Self {
        PasswordChangeError::Login(e.into())
    }
}

/// The signed-in `user` proves their current password again (a password
/// change, enrolling a first second factor), through the same rate limits
/// and lockout as a login.
pub async fn confirm_password(
    state: &AppState,
    origin: &Origin,
    user: &User,
    current: &Password,
) -> Result<(), PasswordChangeError> {
    let checked = check_password(state, origin, FIRST_PARTY_CLIENT_ID, &user.username, current).await?;
    if checked.id != user.id {
        // The username now names someone else (the user was deleted and the
        // name reused): the token's user is gone.
        return Err(PasswordChangeError::WrongCurrentPassword);
    }
    Ok(())
}

/// A user changes their own password, proving the current one.
///
/// The check goes through the same rate limits and lockout as a login. On
/// success the password and the cut-off ([`cut_off::password_changed`])
/// commit together: every other session ends, and every access token of
/// the user issued up to now is denied, tokens without a refresh family
/// included. The session the request came from stays signed in (its
/// refresh token keeps working) and receives a new access token, issued
/// after the cut-off so that it works at once.
pub async fn change_password(
    state: &AppState,
    origin: &Origin,
    user: &User,
    keep: KeptSession,
    current: &Password,
    new: &Password,
) -> Result<PasswordChange, PasswordChangeError> {
    use sea_orm::TransactionTrait;
    confirm_password(state, origin, user, current).await?;
    let hash = state.hasher.hash(new).await?;
    let now = state.now();
    let txn = state.db.begin().await.map_err(Internal::from)?;
    users::repo::set_new_password(&txn, user.id, hash, now).await?;
    let cut = cut_off::password_changed(&txn, state.reach(now), user.id, keep.family_id).await?;
    txn.commit().await.map_err(Internal::from)?;
    crate::revocation::feed::publish(&state.db).await;
    // `iat` counts whole seconds and the cut-off denies the whole current
    // one: the kept session's token is issued in the next second.
    let after = cut.issued_up_to + chrono::TimeDelta::seconds(1);
    if let Ok(wait) = (after - state.now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    let issued_at = state.now().max(after);
    let scope = keep.scope.intersection(&first_party_scope(&state.settings.user_scopes));
    let grant = sign_for_user(
        state,
        user,
        &SignRequest {
            client_id: FIRST_PARTY_CLIENT_ID,
            scope: &scope,
            auth_time: keep.auth_time,
            family_id: keep.family_id,
            nonce: None,
            id_token_alg: SigningAlg::Rs256,
            jti: None,
            amr: &keep.amr,
        },
        issued_at,
    )?;
    audit::record(
        &state.db,
        issued_at,
        origin,
        Event::new(EventKind::PasswordChanged).subject(user.id).detail("families_ended", cut.ended),
    )
    .await;
    Ok(PasswordChange { sessions_ended: cut.ended, grant })
}

/// Who a valid bearer token speaks for.
#[derive(Clone, Debug)]
pub struct Principal {
    pub claims: AccessClaims,
    /// The user, for user tokens; `None` for client-credentials tokens.
    pub user: Option<User>,
    /// Admin-scope tokens only: the user has a second factor, so the
    /// token must show one (`amr` has `mfa`).
    pub mfa_enrolled: bool,
    /// The user's role is in `LATCHKEY_MFA_REQUIRED_ROLES`: a token without
    /// `mfa` (from before the requirement) only enrols.
    pub mfa_required_by_role: bool,
}

impl Principal {
    /// The sign-in behind the token used a second factor.
    pub fn with_mfa(&self) -> bool {
        self.claims.amr.as_ref().is_some_and(|amr| amr.iter().any(|m| m == "mfa"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BearerError {
    #[error("{0}")]
    Invalid(#[from] TokenError),
    #[error("the token has been revoked")]
    Revoked,
    #[error("the account can no longer sign in")]
    AccountUnavailable,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// Verify a bearer access token completely: signature and claims, the deny
/// list, and (for user tokens) that the account still exists and may sign in.
pub async fn authenticate_bearer(state: &AppState, token: &str) -> Result<Principal, BearerError> {
    let now = state.now();
    let claims = tokens::verify_access(&state.keyring, &state.tokens, now, token)?;
    if revocation::is_denied(&state.db, &claims, now).await? {
        return Err(BearerError::Revoked);
    }
    if claims.is_client_token() {
        return Ok(Principal { claims, user: None, mfa_enrolled: false, mfa_required_by_role: false });
    }
    let user_id = Uuid::parse_str(&claims.sub).map_err(|_| TokenError::Malformed)?;
    let user = users::find(&state.db, user_id)
        .await?
        .filter(|u| u.can_authenticate(now))
        .ok_or(BearerError::AccountUnavailable)?;
    // One query, for admin tokens only.
    let mfa_enrolled =
        claims.scopes().any(|s| s == ADMIN_SCOPE) && mfa::repo::has_any(&state.db, user.id).await?;
    let mfa_required_by_role = mfa::flow::role_requires(state, &user);
    Ok(Principal { claims, user: Some(user), mfa_enrolled, mfa_required_by_role })
}
