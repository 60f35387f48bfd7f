//! `/oauth/authorize` and `/oauth/logout`: the browser side of OAuth.
//!
//! - `GET /oauth/authorize` validates the request (RFC 6749 §4.1.1), then
//!   either redirects at once (a browser session that satisfies `prompt` and
//!   `max_age`), redirects an error, or shows the sign-in form.
//! - `POST /oauth/authorize` is that form: CSRF-checked, the request
//!   re-validated from its hidden fields, the password checked like every
//!   other login, a browser session started, the code sent with a 303.
//! - `GET/POST /oauth/logout` is the OIDC RP-Initiated Logout endpoint.
//!
//! CSRF protection has three layers. The CSRF cookie is minted by the server
//! (`r.HMAC(key, r)`): a value the server did not mint is refused. The form
//! carries `HMAC(key, "form" ‖ r)`, which a cross-site page can neither read
//! nor compute. And a POST whose `Origin` is not the issuer's, or whose
//! `Sec-Fetch-Site` is `cross-site`, is refused — which also stops a sibling
//! domain from planting a cookie it obtained through its own visit.
//!
//! A signed-in browser is sent straight back to a confidential client (the
//! code is useless without the client's secret). A public client gets a
//! "Continue as …" confirmation first: its redirect URI proves nothing about
//! who is listening (RFC 8252 §8.6).

use poem::Request;
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::{Form, Html};
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;

use super::Tag;
use super::html;
use super::origin::ClientOrigin;
use crate::authn::{self, LoginError};
use crate::clients;
use crate::crypto;
use crate::error::Internal;
use crate::oauth::authorize::{self, AuthorizationRequest, AuthorizeError, Prompt, ValidAuthorization};
use crate::oauth::codes::{self, NewCode};
use crate::oauth::sessions;
use crate::oauth::{ErrorCode, OAuthError};
use crate::passwords::Password;
use crate::state::AppState;
use crate::tokens;

#[derive(ApiResponse)]
pub enum AuthorizeResponse {
    /// The sign-in (or sign-out) page.
    #[oai(status = 200)]
    Page(
        Html<String>,
        #[oai(header = "Set-Cookie")] Option<String>,
        #[oai(header = "Content-Security-Policy")] String,
    ),
    /// Back to the client: `code`, `state` and `iss`, or an error (RFC 6749 §4.1.2).
    #[oai(status = 302)]
    Found(#[oai(header = "Location")] String, #[oai(header = "Set-Cookie")] Option<String>),
    /// After the sign-in form: back to the client.
    #[oai(status = 303)]
    SeeOther(#[oai(header = "Location")] String, #[oai(header = "Set-Cookie")] Option<String>),
    /// The request names an unknown client or an unregistered redirect URI;
    /// it cannot be sent back, so it is explained here.
    #[oai(status = 400)]
    Invalid(Html<String>, #[oai(header = "Content-Security-Policy")] String),
    /// The form was not this server's (CSRF check failed) or has expired.
    #[oai(status = 403)]
    Forbidden(Html<String>, #[oai(header = "Content-Security-Policy")] String),
}

impl AuthorizeResponse {
    fn page(html: String, cookie: Option<String>) -> Self {
        AuthorizeResponse::Page(Html(html), cookie, html::CONTENT_SECURITY_POLICY.into())
    }

    fn invalid(message: &str) -> Self {
        AuthorizeResponse::Invalid(Html(html::error_page(message)), html::CONTENT_SECURITY_POLICY.into())
    }

    fn forbidden(message: &str) -> Self {
        AuthorizeResponse::Forbidden(Html(html::error_page(message)), html::CONTENT_SECURITY_POLICY.into())
    }
}

/// The sign-in form as posted: the authorization request in hidden fields,
/// the CSRF token, and the credentials.
#[derive(Object, Deserialize, Debug)]
#[oai(skip_serializing_if_is_none)]
pub struct AuthorizeForm {
    /// Set by the "Continue as …" form: use the browser session, no password.
    pub continue_session: Option<String>,
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub max_age: Option<String>,
    pub csrf_token: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Object, Deserialize, Debug)]
#[oai(skip_serializing_if_is_none)]
pub struct LogoutForm {
    pub csrf_token: Option<String>,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
}

struct Cookies {
    secure: bool,
}

impl Cookies {
    fn new(state: &AppState) -> Self {
        Cookies { secure: state.issuer().starts_with("https://") }
    }

    /// `__Host-` names need `Secure`; without TLS (development) plain names.
    fn name(&self, base: &str) -> String {
        if self.secure { format!("__Host-{base}") } else { base.to_owned() }
    }

    fn set(&self, base: &str, value: &str, max_age: i64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}", self.name(base))
    }

    fn read(&self, req: &Request, base: &str) -> Option<String> {
        let name = self.name(base);
        req.headers()
            .get_all(poem::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    }
}

const SESSION: &str = "lk_session";
const CSRF: &str = "lk_csrf";

fn csrf_mac(state: &AppState, label: &[u8], random: &str) -> String {
    crypto::b64url(&crypto::hmac_sha256(&state.master.derive("csrf/v1"), &[label, b"|", random.as_bytes()]))
}

/// The random part of a CSRF cookie this server minted (`random.MAC`).
fn minted(state: &AppState, cookie: &str) -> Option<String> {
    let (random, mac) = cookie.split_once('.')?;
    let expected = csrf_mac(state, b"cookie", random);
    crypto::constant_time_eq(expected.as_bytes(), mac.as_bytes()).then(|| random.to_owned())
}

/// The form token for the browser's CSRF cookie, minting the cookie (and
/// returning its `Set-Cookie`) when the browser has no valid one.
fn csrf_for_form(state: &AppState, req: &Request) -> (String, Option<String>) {
    let cookies = Cookies::new(state);
    let (random, set_cookie) = match cookies.read(req, CSRF).and_then(|c| minted(state, &c)) {
        Some(random) => (random, None),
        None => {
            let random = crypto::random_token::<16>();
            let value = format!("{random}.{}", csrf_mac(state, b"cookie", &random));
            (random, Some(cookies.set(CSRF, &value, 3600)))
        }
    };
    (csrf_mac(state, b"form", &random), set_cookie)
}

/// Is this POST a genuine submission of one of our forms?
fn csrf_ok(state: &AppState, req: &Request, token: Option<&str>) -> bool {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if header("sec-fetch-site") == Some("cross-site") {
        return false;
    }
    if let Some(origin) = header("origin") {
        let ours =
            url::Url::parse(state.issuer()).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
        if origin != ours {
            return false;
        }
    }
    let random = Cookies::new(state).read(req, CSRF).and_then(|c| minted(state, &c));
    match (random, token) {
        (Some(random), Some(token)) => {
            crypto::constant_time_eq(csrf_mac(state, b"form", &random).as_bytes(), token.as_bytes())
        }
        _ => false,
    }
}

fn hidden_fields(req: &AuthorizationRequest) -> String {
    let fields = [
        ("response_type", &req.response_type),
        ("client_id", &req.client_id),
        ("redirect_uri", &req.redirect_uri),
        ("scope", &req.scope),
        ("state", &req.state),
        ("nonce", &req.nonce),
        ("code_challenge", &req.code_challenge),
        ("code_challenge_method", &req.code_challenge_method),
        ("max_age", &req.max_age),
    ];
    fields.iter().filter_map(|(name, value)| value.as_deref().map(|v| html::hidden(name, v))).collect()
}

/// Render the sign-in form.
fn login_form(
    state: &AppState,
    req: &Request,
    auth: &AuthorizationRequest,
    v: &ValidAuthorization,
    error: Option<&str>,
) -> AuthorizeResponse {
    let (token, set_cookie) = csrf_for_form(state, req);
    let mut fields = hidden_fields(auth);
    fields.push_str(&html::hidden("csrf_token", &token));
    let action = format!("{}/oauth/authorize", state.issuer());
    let username = v.login_hint.as_deref().unwrap_or_default();
    AuthorizeResponse::page(
        html::login_page(&action, &v.client.client_name, &fields, username, error),
        set_cookie,
    )
}

/// "Continue as …" for a signed-in user and a public client.
fn continue_form(
    state: &AppState,
    req: &Request,
    auth: &AuthorizationRequest,
    v: &ValidAuthorization,
    username: &str,
) -> AuthorizeResponse {
    let (token, set_cookie) = csrf_for_form(state, req);
    let mut fields = hidden_fields(auth);
    fields.push_str(&html::hidden("csrf_token", &token));
    let action = format!("{}/oauth/authorize", state.issuer());
    let mut switch = auth.clone();
    switch.prompt = Some("login".into());
    let query = serde_urlencoded::to_string(&switch).unwrap_or_default();
    let switch_url = format!("{}/oauth/authorize?{query}", state.issuer());
    AuthorizeResponse::page(
        html::continue_page(&action, &v.client.client_name, username, &fields, &switch_url),
        set_cookie,
    )
}

/// The browser session, if it is live and good enough for this request.
async fn usable_session(
    state: &AppState,
    req: &Request,
    v: &ValidAuthorization,
) -> Result<Option<(crate::users::User, chrono::DateTime<chrono::Utc>)>, Internal> {
    let now = state.now();
    let Some(cookie) = Cookies::new(state).read(req, SESSION) else { return Ok(None) };
    let Some(session) = sessions::find(&state.db, now, &cookie).await? else { return Ok(None) };
    if !v.accepts_session(session.auth_time, now) {
        return Ok(None);
    }
    let user = crate::users::find(&state.db, session.user_id).await?.filter(|u| u.can_authenticate(now));
    Ok(user.map(|u| (u, session.auth_time)))
}

/// Issue a code and build the redirect back to the client.
async fn issue_code(
    state: &AppState,
    v: &ValidAuthorization,
    user_id: uuid::Uuid,
    auth_time: chrono::DateTime<chrono::Utc>,
) -> Result<String, Internal> {
    let now = state.now();
    let code = codes::issue(
        &state.db,
        now,
        crate::clock::delta(state.settings.auth_code_ttl),
        NewCode {
            client_id: v.client.client_id.clone(),
            user_id,
            redirect_uri: v.redirect_uri.clone(),
            scope: v.scope.to_string(),
            nonce: v.nonce.clone(),
            code_challenge: v.code_challenge.clone(),
            auth_time,
        },
    )
    .await?;
    Ok(authorize::code_redirect(v, &code, state.issuer()))
}

fn error_response(state: &AppState, e: AuthorizeError) -> AuthorizeResponse {
    match e {
        AuthorizeError::Page(message) => AuthorizeResponse::invalid(&message),
        AuthorizeError::Redirect { redirect_uri, state: s, error } => AuthorizeResponse::Found(
            authorize::error_redirect(&redirect_uri, s.as_deref(), &error, state.issuer()),
            None,
        ),
        AuthorizeError::Internal(i) => {
            tracing::error!(error = format!("{:#}", i.0), "internal error");
            AuthorizeResponse::invalid("an unexpected error occurred; please try again")
        }
    }
}

fn redirect_error(state: &AppState, v: &ValidAuthorization, error: OAuthError) -> AuthorizeResponse {
    AuthorizeResponse::Found(
        authorize::error_redirect(&v.redirect_uri, v.state.as_deref(), &error, state.issuer()),
        None,
    )
}

pub struct AuthorizeApi;

#[OpenApi(prefix_path = "/oauth", tag = "Tag::OAuth")]
impl AuthorizeApi {
    /// Authorization endpoint (RFC 6749 §4.1.1, OIDC Core §3.1.2).
    ///
    /// `response_type=code` only; PKCE with `S256` is required for public
    /// clients and accepted for confidential ones. Shows a sign-in page; a
    /// signed-in browser goes straight back to a confidential client, or
    /// confirms on a page for a public one.
    #[oai(path = "/authorize", method = "get", operation_id = "oauthAuthorize")]
    #[allow(clippy::too_many_arguments)]
    async fn authorize(
        &self,
        state: Data<&AppState>,
        req: &Request,
        response_type: Query<Option<String>>,
        client_id: Query<Option<String>>,
        redirect_uri: Query<Option<String>>,
        scope: Query<Option<String>>,
        #[oai(name = "state")] state_param: Query<Option<String>>,
        nonce: Query<Option<String>>,
        code_challenge: Query<Option<String>>,
        code_challenge_method: Query<Option<String>>,
        prompt: Query<Option<String>>,
        max_age: Query<Option<String>>,
        login_hint: Query<Option<String>>,
    ) -> AuthorizeResponse {
        let auth = AuthorizationRequest {
            response_type: response_type.0,
            client_id: client_id.0,
            redirect_uri: redirect_uri.0,
            scope: scope.0,
            state: state_param.0,
            nonce: nonce.0,
            code_challenge: code_challenge.0,
            code_challenge_method: code_challenge_method.0,
            prompt: prompt.0,
            max_age: max_age.0,
            login_hint: login_hint.0,
        };
        let v = match authorize::validate(&state.db, &auth).await {
            Ok(v) => v,
            Err(e) => return error_response(&state, e),
        };
        let session = match usable_session(&state, req, &v).await {
            Ok(s) => s,
            Err(e) => return error_response(&state, e.into()),
        };
        match session {
            Some((user, auth_time)) if v.client.is_confidential() => {
                match issue_code(&state, &v, user.id, auth_time).await {
                    Ok(location) => AuthorizeResponse::Found(location, None),
                    Err(e) => error_response(&state, e.into()),
                }
            }
            Some(_) if v.prompt == Prompt::None => {
                let error =
                    OAuthError::new(ErrorCode::InteractionRequired, "the user must confirm this client");
                redirect_error(&state, &v, error)
            }
            Some((user, _)) => continue_form(&state, req, &auth, &v, &user.username),
            None if v.prompt == Prompt::None => redirect_error(
                &state,
                &v,
                OAuthError::new(ErrorCode::LoginRequired, "the user is not signed in"),
            ),
            None => login_form(&state, req, &auth, &v, None),
        }
    }

    /// The sign-in form's submission (or the "Continue as …" confirmation).
    #[oai(path = "/authorize", method = "post", operation_id = "oauthAuthorizeLogin")]
    async fn authorize_login(
        &self,
        state: Data<&AppState>,
        req: &Request,
        origin: ClientOrigin,
        form: Form<AuthorizeForm>,
    ) -> AuthorizeResponse {
        let form = form.0;
        if !csrf_ok(&state, req, form.csrf_token.as_deref()) {
            return AuthorizeResponse::forbidden(
                "This sign-in form has expired or did not come from this server.",
            );
        }
        let auth = AuthorizationRequest {
            response_type: form.response_type,
            client_id: form.client_id,
            redirect_uri: form.redirect_uri,
            scope: form.scope,
            state: form.state,
            nonce: form.nonce,
            code_challenge: form.code_challenge,
            code_challenge_method: form.code_challenge_method,
            prompt: None,
            max_age: form.max_age,
            login_hint: form.username.clone(),
        };
        let v = match authorize::validate(&state.db, &auth).await {
            Ok(v) => v,
            Err(e) => return error_response(&state, e),
        };
        if form.continue_session.is_some() {
            return match usable_session(&state, req, &v).await {
                Ok(Some((user, auth_time))) => match issue_code(&state, &v, user.id, auth_time).await {
                    Ok(location) => AuthorizeResponse::SeeOther(location, None),
                    Err(e) => error_response(&state, e.into()),
                },
                Ok(None) => {
                    login_form(&state, req, &auth, &v, Some("Your session has ended. Please sign in."))
                }
                Err(e) => error_response(&state, e.into()),
            };
        }
        let (Some(username), Some(password)) = (form.username.as_deref(), form.password.as_deref()) else {
            return login_form(&state, req, &auth, &v, Some("Enter your username and password."));
        };
        let Ok(password) = Password::presented(password) else {
            return login_form(&state, req, &auth, &v, Some("Invalid username or password."));
        };
        let user =
            match authn::check_password(&state, &origin.0, &v.client.client_id, username, &password).await {
                Ok(user) => user,
                Err(LoginError::Internal(e)) => return error_response(&state, e.into()),
                Err(LoginError::InvalidCredentials) => {
                    return login_form(&state, req, &auth, &v, Some("Invalid username or password."));
                }
                Err(LoginError::Busy) => {
                    return login_form(
                        &state,
                        req,
                        &auth,
                        &v,
                        Some("Too many sign-ins right now. Please try again."),
                    );
                }
                Err(e) => return login_form(&state, req, &auth, &v, Some(&format!("Sign-in refused: {e}."))),
            };
        let now = state.now();
        let ttl = crate::clock::delta(state.settings.session_ttl);
        let result = async {
            let cookie = sessions::create(&state.db, now, ttl, user.id, &origin.0).await?;
            let location = issue_code(&state, &v, user.id, now).await?;
            Ok::<_, Internal>((cookie, location))
        }
        .await;
        let cookies = Cookies::new(&state);
        match result {
            Ok((cookie, location)) => {
                AuthorizeResponse::SeeOther(location, Some(cookies.set(SESSION, &cookie, ttl.num_seconds())))
            }
            Err(e) => error_response(&state, e.into()),
        }
    }

    /// End-session endpoint (OIDC RP-Initiated Logout 1.0).
    ///
    /// With an `id_token_hint` for the signed-in user the browser session
    /// ends at once; otherwise the user confirms on a page.
    /// `post_logout_redirect_uri` must be a registered redirect URI of the client.
    #[oai(path = "/logout", method = "get", operation_id = "oauthLogout")]
    async fn logout(
        &self,
        state: Data<&AppState>,
        req: &Request,
        id_token_hint: Query<Option<String>>,
        client_id: Query<Option<String>>,
        post_logout_redirect_uri: Query<Option<String>>,
        #[oai(name = "state")] state_param: Query<Option<String>>,
    ) -> AuthorizeResponse {
        let now = state.now();
        let hinted = id_token_hint
            .0
            .as_deref()
            .and_then(|t| tokens::verify_id_token_hint(&state.keyring, &state.tokens, now, t));
        if let (Some(given), Some((_, aud))) = (client_id.0.as_deref(), &hinted) {
            // RP-Initiated Logout §2: the client must be the token's audience.
            if given != aud {
                return AuthorizeResponse::invalid("client_id does not match the id_token_hint");
            }
        }
        let client_id = client_id.0.or_else(|| hinted.as_ref().map(|(_, aud)| aud.clone()));
        let target = match redirect_target(
            &state,
            client_id.as_deref(),
            post_logout_redirect_uri.0.as_deref(),
        )
        .await
        {
            Ok(t) => t,
            Err(message) => return AuthorizeResponse::invalid(&message),
        };
        // Sign out at once only when the hint names the signed-in user (or
        // nobody is signed in); any other ID token gets the confirmation page.
        let session_user = match Cookies::new(&state).read(req, SESSION) {
            Some(cookie) => match sessions::find(&state.db, now, &cookie).await {
                Ok(s) => s.map(|s| s.user_id.to_string()),
                Err(e) => return error_response(&state, e.into()),
            },
            None => None,
        };
        let immediate = match (&hinted, &session_user) {
            (Some((sub, _)), Some(user)) => sub == user,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if immediate {
            return finish_logout(&state, req, target, state_param.0.as_deref()).await;
        }
        let (token, set_cookie) = csrf_for_form(&state, req);
        let mut fields = html::hidden("csrf_token", &token);
        for (name, value) in
            [("client_id", &client_id), ("post_logout_redirect_uri", &target), ("state", &state_param.0)]
        {
            if let Some(v) = value {
                fields.push_str(&html::hidden(name, v));
            }
        }
        let action = format!("{}/oauth/logout", state.issuer());
        AuthorizeResponse::page(html::logout_page(&action, &fields), set_cookie)
    }

    /// The sign-out confirmation's submission.
    #[oai(path = "/logout", method = "post", operation_id = "oauthLogoutConfirm")]
    async fn logout_confirm(
        &self,
        state: Data<&AppState>,
        req: &Request,
        form: Form<LogoutForm>,
    ) -> AuthorizeResponse {
        let form = form.0;
        if !csrf_ok(&state, req, form.csrf_token.as_deref()) {
            return AuthorizeResponse::forbidden(
                "This sign-out form has expired or did not come from this server.",
            );
        }
        let target = match redirect_target(
            &state,
            form.client_id.as_deref(),
            form.post_logout_redirect_uri.as_deref(),
        )
        .await
        {
            Ok(t) => t,
            Err(message) => return AuthorizeResponse::invalid(&message),
        };
        finish_logout(&state, req, target, form.state.as_deref()).await
    }
}

/// The validated post-logout redirect, if one was asked for.
async fn redirect_target(
    state: &AppState,
    client_id: Option<&str>,
    uri: Option<&str>,
) -> Result<Option<String>, String> {
    let Some(uri) = uri else { return Ok(None) };
    let client_id = client_id.ok_or("post_logout_redirect_uri needs client_id or id_token_hint")?;
    let client = clients::find(&state.db, client_id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "looking up the client of a logout failed");
            "an unexpected error occurred".to_owned()
        })?
        .filter(|c| !c.disabled)
        .ok_or("unknown client")?;
    client
        .redirect_uri(uri)
        .map(|r| Some(r.as_str().to_owned()))
        .ok_or_else(|| "post_logout_redirect_uri is not registered for this client".to_owned())
}

async fn finish_logout(
    state: &AppState,
    req: &Request,
    target: Option<String>,
    state_param: Option<&str>,
) -> AuthorizeResponse {
    let cookies = Cookies::new(state);
    if let Some(cookie) = cookies.read(req, SESSION) {
        if let Err(e) = sessions::revoke(&state.db, state.now(), &cookie).await {
            return error_response(state, e.into());
        }
    }
    let clear = cookies.set(SESSION, "", 0);
    match target {
        Some(uri) => {
            let location = match state_param {
                Some(s) => authorize::with_query(&uri, &[("state", s)]),
                None => uri,
            };
            AuthorizeResponse::Found(location, Some(clear))
        }
        None => AuthorizeResponse::page(html::signed_out_page(), Some(clear)),
    }
}
