//! `/auth/*`: latchkey's JSON API for first-party frontends.
//!
//! Same tokens, families and rules as the OAuth endpoints, in JSON: register,
//! login, refresh (rotating), logout (ending the family) and the current user.
//!
//! Login, refresh and logout deliver the refresh token in the JSON bodies
//! (`"token_delivery": "body"`, the default) or in an `HttpOnly` cookie
//! (`"token_delivery": "cookie"`); the cookie, its path and its CSRF checks
//! are described in [`super::cookies`]. Either way the same `authn`
//! functions rotate, detect reuse and end families.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use uuid::Uuid;

use super::Tag;
use super::cookies::{self, CookieRequest};
use super::error::ApiError;
use super::origin::ClientOrigin;
use super::security::BearerAuth;
use super::validate::Storable;
use crate::authn::{self, ADMIN_SCOPE, FIRST_PARTY_CLIENT_ID, SessionRequest, TokenGrant};
use crate::config::SigningAlg;
use crate::passwords::Password;
use crate::scope::ScopeSet;
use crate::state::AppState;
use crate::users::{self, Email, NewUser, User, Username};

/// A user account. Never includes the password hash.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none, example)]
pub struct UserView {
    pub id: Uuid,
    /// The username as registered (NFKC-normalized).
    pub username: String,
    pub email: Option<String>,
    pub roles: Vec<String>,
    pub disabled: bool,
    /// Banned now (a ban with an expiry lapses by itself).
    pub banned: bool,
    pub banned_until: Option<DateTime<Utc>>,
    pub ban_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

impl UserView {
    pub fn new(user: &User, now: DateTime<Utc>) -> Self {
        UserView {
            id: user.id,
            username: user.username.clone(),
            email: user.email.clone(),
            roles: user.role_names(),
            disabled: user.disabled,
            banned: user.is_banned(now),
            banned_until: user.ban.as_ref().and_then(|b| b.until),
            ban_reason: user.ban.as_ref().filter(|_| user.is_banned(now)).and_then(|b| b.reason.clone()),
            created_at: user.created_at,
            updated_at: user.updated_at,
            last_login_at: user.last_login_at,
        }
    }
}

/// Registration. Unknown fields (such as `roles`) are refused, not ignored.
#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields, example)]
pub struct RegisterRequest {
    /// 2 to 64 letters, digits, marks, `.`, `_` or `-` of any script; unique
    /// regardless of case and Unicode form.
    #[oai(validator(max_length = 256))]
    pub username: String,
    /// 8 to 256 characters.
    #[oai(validator(max_length = 1024))]
    pub password: String,
    #[oai(validator(max_length = 254))]
    pub email: Option<String>,
}

/// Accepting an invitation: its token and the password to set.
#[derive(Object, Debug)]
#[oai(deny_unknown_fields)]
pub struct InvitationAcceptRequest {
    /// The `invitation.token` an admin or service received for you.
    #[oai(validator(max_length = 128))]
    pub token: String,
    /// 8 to 256 characters.
    #[oai(validator(max_length = 1024))]
    pub password: String,
}

#[derive(ApiResponse)]
pub enum InvitationAccepted {
    /// The password is set; sign in with it.
    #[oai(status = 200)]
    Ok(Json<UserView>),
}

/// Where the refresh token travels (`token_delivery` of login, refresh and
/// logout).
///
/// - `body` (the default when absent): in the JSON bodies. The response has
///   `refresh_token`; send it back as `refresh_token` to refresh or log out.
/// - `cookie`: for browser apps on the same site as latchkey. The response
///   has no `refresh_token`; instead `Set-Cookie` stores it in an `HttpOnly`,
///   `SameSite=Strict` cookie (`__Host-lk_refresh` with `Secure; Path=/` when
///   the issuer is https, `lk_refresh` on path `/auth` over http). Not
///   available with the `latchkey:admin` scope. Refresh and
///   logout in cookie mode read the cookie and must not send
///   `refresh_token`. Every cookie-mode request needs an `Origin` header
///   naming an origin in `LATCHKEY_CORS_ORIGINS` or latchkey's own, else
///   `403 origin_not_allowed`.
#[derive(Enum, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum TokenDelivery {
    #[default]
    Body,
    Cookie,
}

#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields, example)]
pub struct LoginRequest {
    #[oai(validator(max_length = 256, custom = "Storable"))]
    pub username: String,
    #[oai(validator(max_length = 1024))]
    pub password: String,
    /// Space-separated scopes; defaults to every user scope except `openid`.
    /// Include `openid` to also receive an `id_token`. Admins ask for
    /// `latchkey:admin` to get a token for the admin API (and only for it).
    #[oai(validator(max_length = 2048))]
    pub scope: Option<String>,
    // No field doc and no `default` here: either makes poem-openapi wrap the
    // `$ref` in an `allOf`, which generated clients (openapi-python-client)
    // cannot handle. `TokenDelivery` documents itself; absent means `body`.
    pub token_delivery: Option<TokenDelivery>,
}

/// A refresh or logout: the refresh token in the body, or (cookie mode) in
/// the refresh cookie.
#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct RefreshTokenRequest {
    /// Required with `token_delivery: body`; must be absent with `cookie`.
    #[oai(validator(max_length = 256))]
    pub refresh_token: Option<String>,
    // Absent means `body` (see `LoginRequest::token_delivery`).
    pub token_delivery: Option<TokenDelivery>,
}

impl RefreshTokenRequest {
    fn delivery(&self) -> TokenDelivery {
        self.token_delivery.unwrap_or_default()
    }
}

/// A token response (RFC 6749 §5.1).
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none, example)]
pub struct TokenResponse {
    /// An RFC 9068 JWT access token (`typ: at+jwt`); verify it with the JWKS.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime of the access token in seconds.
    pub expires_in: u64,
    /// Present your refresh token once; each refresh returns a new one.
    /// Absent in cookie mode (the token is in the cookie).
    pub refresh_token: Option<String>,
    pub scope: String,
    /// An OpenID Connect ID token, when the scope includes `openid`.
    pub id_token: Option<String>,
}

impl From<TokenGrant> for TokenResponse {
    fn from(g: TokenGrant) -> Self {
        TokenResponse {
            access_token: g.access_token,
            token_type: "Bearer".into(),
            expires_in: g.expires_in,
            refresh_token: g.refresh_token,
            scope: g.scope,
            id_token: g.id_token,
        }
    }
}

impl Example for UserView {
    fn example() -> Self {
        let at = DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default();
        UserView {
            id: Uuid::from_u128(0x0193_8f6e_7c3a_7d2e_9a41_5b6c_7d8e_9f01),
            username: "alice".into(),
            email: Some("alice@example.com".into()),
            roles: vec![],
            disabled: false,
            banned: false,
            banned_until: None,
            ban_reason: None,
            created_at: at,
            updated_at: at,
            last_login_at: Some(at),
        }
    }
}

impl Example for RegisterRequest {
    fn example() -> Self {
        RegisterRequest {
            username: "alice".into(),
            password: "correct horse battery staple".into(),
            email: Some("alice@example.com".into()),
        }
    }
}

impl Example for LoginRequest {
    fn example() -> Self {
        LoginRequest {
            username: "alice".into(),
            password: "correct horse battery staple".into(),
            scope: None,
            token_delivery: None,
        }
    }
}

impl Example for TokenResponse {
    fn example() -> Self {
        TokenResponse {
            access_token: "eyJ0eXAiOiJhdCtqd3QiLCJhbGciOiJFUzI1NiIsImtpZCI6Ii4uLiJ9.eyJpc3MiOiIuLi4ifQ.c2ln"
                .into(),
            token_type: "Bearer".into(),
            expires_in: 900,
            refresh_token: Some(
                "AQGTj25_OnfS6aQVtsfY7p8AAAAAAAAAAGq9cK0SahdL0Z4yqg3f5vVtbG8UUu2xvCG6VsRBL4XT".into(),
            ),
            scope: "email profile".into(),
            id_token: None,
        }
    }
}

#[derive(ApiResponse)]
pub enum Registered {
    /// The account was created.
    #[oai(status = 201)]
    Created(Json<UserView>),
}

#[derive(ApiResponse)]
pub enum Tokens {
    #[oai(status = 200)]
    Ok(
        Json<TokenResponse>,
        /// Cookie mode only: the refresh token, as
        /// `__Host-lk_refresh=<token>; Path=/; Max-Age=<refresh lifetime>; HttpOnly; SameSite=Strict; Secure`
        /// (`lk_refresh` on `Path=/auth`, without `Secure`, when the issuer is http).
        #[oai(header = "Set-Cookie")]
        Option<String>,
    ),
}

/// A password change. Not `Debug`: it holds passwords.
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct PasswordChangeRequest {
    #[oai(validator(max_length = 1024))]
    pub current_password: String,
    #[oai(validator(max_length = 1024))]
    pub new_password: String,
}

/// Not `Debug`: it holds a token.
#[derive(Object)]
pub struct PasswordChanged {
    /// How many of your other sessions were signed out.
    pub sessions_ended: u64,
    /// A new access token for this session. Every access token issued
    /// before the change is refused from now on, the one this request
    /// presented included; this session's refresh token keeps working.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until `access_token` expires.
    pub expires_in: u64,
    pub scope: String,
}

#[derive(ApiResponse)]
pub enum PasswordChangeResponse {
    /// The password is changed; every other session has ended; this one
    /// stays, with the new access token in the body.
    #[oai(status = 200)]
    Ok(Json<PasswordChanged>),
}

#[derive(ApiResponse)]
pub enum LoggedOut {
    /// The session is over (also when the token was unknown or already ended).
    #[oai(status = 204)]
    NoContent(
        /// Cookie mode only: deletes the refresh cookie (`Max-Age=0`).
        #[oai(header = "Set-Cookie")]
        Option<String>,
    ),
}

#[derive(ApiResponse)]
pub enum Me {
    #[oai(status = 200)]
    Ok(Json<UserView>),
}

pub struct AuthApi;

/// The scope of a password login: what was asked, within the user scopes
/// (plus the admin scope, which the login then checks against the account).
pub(crate) fn login_scope(state: &AppState, requested: Option<&str>) -> Result<ScopeSet, ApiError> {
    let allowed = &state.settings.user_scopes;
    match requested {
        None => Ok(allowed.without("openid")),
        Some(text) => {
            let scope = ScopeSet::parse(text).map_err(ApiError::validation)?;
            if scope.without(ADMIN_SCOPE).is_subset(allowed) {
                Ok(scope)
            } else {
                Err(ApiError::bad_request(
                    "invalid_scope",
                    format!("allowed scopes are: {allowed} {ADMIN_SCOPE}"),
                ))
            }
        }
    }
}

/// The token response in the requested delivery: in cookie mode the refresh
/// token moves from the body into `Set-Cookie`.
pub(crate) fn deliver(state: &AppState, delivery: TokenDelivery, grant: TokenGrant) -> Tokens {
    let mut body = TokenResponse::from(grant);
    let cookie = match delivery {
        TokenDelivery::Body => None,
        TokenDelivery::Cookie => body
            .refresh_token
            .take()
            .map(|token| cookies::set_cookie(state.issuer(), &token, state.settings.refresh_token_ttl)),
    };
    Tokens::Ok(Json(body), cookie)
}

/// The body-mode refresh token, which is then required.
fn body_token(req: &RefreshTokenRequest) -> Result<&str, ApiError> {
    req.refresh_token.as_deref().ok_or_else(|| {
        ApiError::validation("refresh_token is required (or use \"token_delivery\": \"cookie\")")
    })
}

/// What every cookie-mode refresh or logout must pass before anything
/// happens: the Origin check, and no token in the body.
fn cookie_mode_allowed(
    state: &AppState,
    req: &RefreshTokenRequest,
    browser: &CookieRequest,
) -> Result<(), ApiError> {
    browser.check_origin(state)?;
    if req.refresh_token.is_some() {
        return Err(ApiError::validation(
            "in cookie mode the refresh token is read from the cookie: leave refresh_token out",
        ));
    }
    Ok(())
}

/// The refresh token a refresh presents: from the body, or in cookie mode
/// from the cookie, never both.
fn presented_token<'a>(
    state: &AppState,
    req: &'a RefreshTokenRequest,
    browser: &'a CookieRequest,
) -> Result<&'a str, ApiError> {
    match req.delivery() {
        TokenDelivery::Body => body_token(req),
        TokenDelivery::Cookie => {
            cookie_mode_allowed(state, req, browser)?;
            browser.refresh_token(state)
        }
    }
}

#[OpenApi(prefix_path = "/auth", tag = "Tag::Auth")]
impl AuthApi {
    /// Create an account.
    ///
    /// Limited per client address (`LATCHKEY_REGISTER_RATE_PER_IP` an hour,
    /// IPv6 by /56): beyond it, `429` with `Retry-After`. Registrations get
    /// at most half of the password-hashing threads, so logins keep working
    /// during a registration flood; when that share is busy, `503` with
    /// `Retry-After`.
    #[oai(path = "/register", method = "post", operation_id = "register")]
    async fn register(
        &self,
        state: Data<&AppState>,
        origin: ClientOrigin,
        body: Json<RegisterRequest>,
    ) -> Result<Registered, ApiError> {
        if !state.settings.allow_registration {
            return Err(ApiError::forbidden("registration_closed", "self-service registration is disabled"));
        }
        let address = crate::ratelimit::address_key(origin.0.ip);
        if let Err(seconds) = state.register_limiter.check(&address, state.now()) {
            return Err(ApiError::too_many_requests(seconds));
        }
        let req = body.0;
        let new = NewUser {
            username: Username::parse(&req.username).map_err(ApiError::validation)?,
            email: req.email.as_deref().map(Email::parse).transpose().map_err(ApiError::validation)?,
            password: Password::new(&req.password).map_err(ApiError::validation)?,
            roles: Vec::new(),
        };
        let now = state.now();
        let user = users::register(&state.db, &state.hasher.for_registration(), now, new).await?;
        crate::audit::record(
            &state.db,
            now,
            &origin.0,
            crate::audit::Event::new(crate::audit::EventKind::UserRegistered).subject(user.id),
        )
        .await;
        Ok(Registered::Created(Json(UserView::new(&user, now))))
    }

    /// Accept an invitation: choose the password of an account an admin
    /// (or a user-management service) created for you.
    ///
    /// The token works once, for 72 hours. An unknown, expired or already
    /// used token is `400 invalid_invitation`; a password outside the rules
    /// is `400 validation_failed`.
    #[oai(path = "/invitations/accept", method = "post", operation_id = "acceptInvitation")]
    async fn accept_invitation(
        &self,
        state: Data<&AppState>,
        origin: ClientOrigin,
        body: Json<InvitationAcceptRequest>,
    ) -> Result<InvitationAccepted, ApiError> {
        let req = body.0;
        let password = Password::new(&req.password).map_err(ApiError::validation)?;
        let user = users::invitation::accept(&state, &origin.0, &req.token, &password).await?;
        Ok(InvitationAccepted::Ok(Json(UserView::new(&user, state.now()))))
    }

    /// Log in with a username and password.
    ///
    /// Starts a new session (refresh family). Unknown user and wrong password
    /// give the same answer in the same time. With `token_delivery: cookie`
    /// the refresh token is set as a cookie instead of returned.
    ///
    /// A user with a second factor gets `401` with `error: mfa_required`,
    /// an `mfa_token` (single use, 5 minutes), the `factors` on offer and,
    /// for passkeys, the `webauthn` options; finish with
    /// `POST /auth/login/mfa`. A user whose role is in
    /// `LATCHKEY_MFA_REQUIRED_ROLES` and who has no factor yet gets a token
    /// with only the scope `latchkey:mfa_enrol` (no refresh token), which
    /// only the `/auth/mfa/*` endpoints accept.
    #[oai(path = "/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        state: Data<&AppState>,
        origin: ClientOrigin,
        browser: CookieRequest,
        body: Json<LoginRequest>,
    ) -> Result<Tokens, ApiError> {
        let req = body.0;
        let delivery = req.token_delivery.unwrap_or_default();
        if delivery == TokenDelivery::Cookie {
            browser.check_origin(&state)?;
        }
        let password = Password::presented(&req.password).map_err(ApiError::validation)?;
        let scope = login_scope(&state, req.scope.as_deref())?;
        if delivery == TokenDelivery::Cookie && scope.contains(ADMIN_SCOPE) {
            // Every listed origin shares the cookie: an admin session there
            // would hand admin tokens to script on any of them.
            return Err(ApiError::bad_request(
                "invalid_request",
                "the admin scope is not available in cookie mode; use body mode",
            ));
        }
        let mut session = SessionRequest::first_party(scope, state.now());
        session.cookie = delivery == TokenDelivery::Cookie;
        match authn::login(&state, &origin.0, &req.username, &password, session).await {
            Ok((_, grant)) => Ok(deliver(&state, delivery, grant)),
            Err(authn::LoginError::MfaRequired(challenge)) => Err(ApiError::mfa_required(&challenge)),
            Err(e) => Err(e.into()),
        }
    }

    /// Exchange a refresh token for new tokens.
    ///
    /// The refresh token rotates: use the returned one next time. Presenting
    /// the previous one again within a few seconds returns the same tokens
    /// (two tabs refreshing at once); presenting an older one ends the session.
    /// A refresh from another network block or another browser than the
    /// last one is audited (`refresh_context_changed`); with
    /// `LATCHKEY_REFRESH_CONTEXT_POLICY=end_session` it ends the session
    /// instead (401 `session_context_changed`: sign in again). A session
    /// signed in without a second factor ends once the user's role requires
    /// one (401 `login_required`: sign in again, with a factor).
    /// In cookie mode the token comes from the refresh cookie and the new one
    /// is set there.
    #[oai(path = "/refresh", method = "post", operation_id = "refresh")]
    async fn refresh(
        &self,
        state: Data<&AppState>,
        origin: ClientOrigin,
        browser: CookieRequest,
        body: Json<RefreshTokenRequest>,
    ) -> Result<Tokens, ApiError> {
        let presented = presented_token(&state, &body.0, &browser)?;
        let address = crate::ratelimit::address_key(origin.0.ip);
        if let Err(seconds) = state.token_limiter.check(&address, state.now()) {
            return Err(ApiError::too_many_requests(seconds));
        }
        let allowed = authn::first_party_scope(&state.settings.user_scopes);
        let refresher = authn::Refresher {
            client_id: FIRST_PARTY_CLIENT_ID,
            allowed: &allowed,
            id_token_alg: SigningAlg::Rs256,
            require_mfa: false,
        };
        let grant = authn::refresh(&state, &origin.0, &refresher, presented, None).await?;
        Ok(deliver(&state, body.0.delivery(), grant))
    }

    /// End the session a refresh token belongs to.
    ///
    /// In cookie mode the token comes from the refresh cookie, and the cookie
    /// is deleted.
    #[oai(path = "/logout", method = "post", operation_id = "logout")]
    async fn logout(
        &self,
        state: Data<&AppState>,
        origin: ClientOrigin,
        browser: CookieRequest,
        body: Json<RefreshTokenRequest>,
    ) -> Result<LoggedOut, ApiError> {
        let req = body.0;
        if req.delivery() == TokenDelivery::Body {
            authn::logout(&state, &origin.0, FIRST_PARTY_CLIENT_ID, body_token(&req)?).await?;
            return Ok(LoggedOut::NoContent(None));
        }
        cookie_mode_allowed(&state, &req, &browser)?;
        // Every refresh cookie sent: ending a tossed one as well does no harm.
        for token in browser.all_refresh_tokens(&state) {
            authn::logout(&state, &origin.0, FIRST_PARTY_CLIENT_ID, token).await?;
        }
        Ok(LoggedOut::NoContent(Some(cookies::clear_cookie(state.issuer()))))
    }

    /// Change your password, proving the current one.
    ///
    /// Rate-limited and locked out like a login. Every other session of
    /// yours ends (refresh tokens, their access tokens, browser sign-ins),
    /// and every access token issued before the change is refused. The
    /// session of this request's token stays signed in: its refresh token
    /// keeps working and the response carries its new access token.
    ///
    /// Account endpoint: only tokens from `/auth/login` or `/auth/refresh`
    /// work here; a token issued to another client gets 403
    /// `insufficient_scope` (use `/oauth/userinfo`).
    #[oai(path = "/password", method = "post", operation_id = "changePassword")]
    async fn change_password(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        body: Json<PasswordChangeRequest>,
    ) -> Result<PasswordChangeResponse, ApiError> {
        let user = auth.account()?;
        let req = body.0;
        let current = Password::presented(&req.current_password).map_err(ApiError::validation)?;
        let new = Password::new(&req.new_password).map_err(ApiError::validation)?;
        if req.new_password == req.current_password {
            return Err(ApiError::validation("the new password must differ from the current one"));
        }
        let claims = &auth.0.claims;
        let keep = authn::KeptSession {
            family_id: claims.sid.as_deref().and_then(|s| Uuid::parse_str(s).ok()),
            scope: ScopeSet::from_stored(&claims.scope),
            auth_time: claims
                .auth_time
                .and_then(|t| DateTime::from_timestamp(t, 0))
                .unwrap_or_else(|| state.now()),
            amr: crate::mfa::Amr::from_claim(claims.amr.as_deref()),
        };
        match authn::change_password(&state, &origin.0, user, keep, &current, &new).await {
            Ok(done) => Ok(PasswordChangeResponse::Ok(Json(PasswordChanged {
                sessions_ended: done.sessions_ended,
                access_token: done.grant.access_token,
                token_type: "Bearer".to_owned(),
                expires_in: done.grant.expires_in,
                scope: done.grant.scope,
            }))),
            Err(e) => Err(e.into()),
        }
    }

    /// The user the bearer token belongs to.
    ///
    /// Account endpoint: only tokens from `/auth/login` or `/auth/refresh`
    /// work here; a token issued to another client gets 403
    /// `insufficient_scope` (use `/oauth/userinfo`).
    #[oai(path = "/me", method = "get", operation_id = "getMe")]
    async fn me(&self, state: Data<&AppState>, auth: BearerAuth) -> Result<Me, ApiError> {
        let user = auth.account()?;
        Ok(Me::Ok(Json(UserView::new(user, state.now()))))
    }
}

/// A session: one refresh family.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct SessionView {
    pub id: Uuid,
    /// The client it was issued to (`latchkey` for the JSON API).
    pub client_id: String,
    pub scope: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    /// When it was last refreshed (its sign-in, until the first refresh).
    pub last_rotated_at: DateTime<Utc>,
    /// The session ends at this time at the latest.
    pub expires_at: DateTime<Utc>,
    /// The address it was signed in from.
    pub ip: Option<String>,
    /// The user agent it was signed in with.
    pub user_agent: Option<String>,
    /// The address of its last refresh; absent before the first refresh.
    pub last_ip: Option<String>,
    /// The user agent of its last refresh; absent before the first refresh.
    pub last_user_agent: Option<String>,
    /// This is the session the request's token belongs to.
    pub current: bool,
}

impl SessionView {
    pub fn new(f: &crate::refresh::Family, current_sid: Option<&str>) -> Self {
        SessionView {
            id: f.id,
            client_id: f.client_id.clone(),
            scope: f.scope.clone(),
            created_at: f.created_at,
            last_used_at: f.last_used_at,
            last_rotated_at: f.last_rotated_at,
            expires_at: f.expires_at,
            ip: f.ip.clone(),
            user_agent: f.user_agent.clone(),
            last_ip: f.last_ip.clone(),
            last_user_agent: f.last_user_agent.clone(),
            current: current_sid == Some(f.id.to_string().as_str()),
        }
    }
}

#[derive(ApiResponse)]
pub enum SessionList {
    #[oai(status = 200)]
    Ok(Json<Vec<SessionView>>),
}

#[derive(ApiResponse)]
pub enum SessionEnded {
    /// The session ended; its refresh token and access tokens no longer work.
    #[oai(status = 204)]
    NoContent,
}

pub struct SessionsApi;

#[OpenApi(prefix_path = "/auth", tag = "Tag::Auth")]
impl SessionsApi {
    /// Your live sessions (refresh families), newest first.
    ///
    /// Account endpoint: only tokens from `/auth/login` or `/auth/refresh`
    /// work here; a token issued to another client gets 403
    /// `insufficient_scope` (use `/oauth/userinfo`).
    #[oai(path = "/sessions", method = "get", operation_id = "listMySessions")]
    async fn list(&self, state: Data<&AppState>, auth: BearerAuth) -> Result<SessionList, ApiError> {
        let user = auth.account()?;
        let sessions = crate::admin::sessions_of(&state, user.id).await?;
        let sid = auth.0.claims.sid.as_deref();
        Ok(SessionList::Ok(Json(sessions.iter().map(|f| SessionView::new(f, sid)).collect())))
    }

    /// End one of your sessions (sign out a device).
    ///
    /// Account endpoint: only tokens from `/auth/login` or `/auth/refresh`
    /// work here; a token issued to another client gets 403
    /// `insufficient_scope` (use `/oauth/userinfo`).
    #[oai(path = "/sessions/:id", method = "delete", operation_id = "endMySession")]
    async fn end(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        id: poem_openapi::param::Path<Uuid>,
    ) -> Result<SessionEnded, ApiError> {
        let user = auth.account()?;
        crate::admin::end_own_session(&state, &origin.0, user.id, id.0).await?;
        Ok(SessionEnded::NoContent)
    }
}
