//! `/oauth/authorize` and `/oauth/logout`: the browser side of OAuth, as
//! pages and forms. Handlers extract (query, form, cookies), call one
//! function of [`crate::oauth::browser`] and render what it decides.
//!
//! - `GET /oauth/authorize` validates the request (RFC 6749 §4.1.1), then
//!   redirects at once (a browser session that satisfies `prompt` and
//!   `max_age`), redirects an error, asks "Continue as …", or shows the
//!   sign-in form.
//! - `POST /oauth/authorize` is that form (or the confirmation): CSRF-checked,
//!   the request re-validated from its hidden fields, then
//!   [`browser::sign_in`] or [`browser::continue_session`]; the code goes back
//!   with a 303.
//! - `GET/POST /oauth/logout` is the OIDC RP-Initiated Logout endpoint.
//!
//! Every POST passes [`csrf::check`]; its module doc explains what browsers
//! send and why. Pages carry `Referrer-Policy: same-origin` (so our own form
//! POST has a real `Origin`); redirects keep the default `no-referrer`.
//!
//! Cookies: `lk_session` (the browser session) and `lk_csrf`, both
//! `HttpOnly; SameSite=Lax; Path=/`, named `__Host-…` and `Secure` when the
//! issuer is https.

pub(crate) mod csrf;

use poem::Request;
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::{Form, Html};
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;

use super::Tag;
use super::html::{self, FormError};
use super::origin::ClientOrigin;
use crate::error::Internal;
use crate::mfa::{self, flow::Answer, flow::MfaError};
use crate::oauth::authorize::{self, AuthorizationRequest, AuthorizeError, ValidAuthorization};
use crate::oauth::browser::{
    self, CodeSettings, Logout, LogoutError, LogoutRequest, Next, SignInError, SignInOutcome,
};
use crate::problem::{Class, Problem};
use crate::state::AppState;

#[derive(ApiResponse)]
pub enum AuthorizeResponse {
    /// The sign-in (or sign-out) page. Pages say `Referrer-Policy:
    /// same-origin`, so their own form POST carries the real `Origin`.
    #[oai(status = 200)]
    Page(
        Html<String>,
        #[oai(header = "Set-Cookie")] Option<String>,
        #[oai(header = "Content-Security-Policy")] String,
        #[oai(header = "Referrer-Policy")] String,
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
    Invalid(
        Html<String>,
        #[oai(header = "Content-Security-Policy")] String,
        #[oai(header = "Referrer-Policy")] String,
    ),
    /// The form was not this server's (CSRF check failed) or has expired.
    #[oai(status = 403)]
    Forbidden(
        Html<String>,
        #[oai(header = "Content-Security-Policy")] String,
        #[oai(header = "Referrer-Policy")] String,
    ),
}

impl AuthorizeResponse {
    fn page(html: String, cookie: Option<String>) -> Self {
        AuthorizeResponse::Page(
            Html(html),
            cookie,
            html::CONTENT_SECURITY_POLICY.into(),
            html::REFERRER_POLICY.into(),
        )
    }

    fn invalid(message: &str) -> Self {
        AuthorizeResponse::Invalid(
            Html(html::error_page(message)),
            html::CONTENT_SECURITY_POLICY.into(),
            html::REFERRER_POLICY.into(),
        )
    }

    fn forbidden(message: &str) -> Self {
        AuthorizeResponse::Forbidden(
            Html(html::error_page(message)),
            html::CONTENT_SECURITY_POLICY.into(),
            html::REFERRER_POLICY.into(),
        )
    }

    fn internal(e: Internal) -> Self {
        e.log();
        if e.unavailable().is_some() {
            return AuthorizeResponse::invalid(
                "sign-in is unavailable for a moment; please try again shortly",
            );
        }
        AuthorizeResponse::invalid("an unexpected error occurred; please try again")
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
    pub acr_values: Option<String>,
    pub csrf_token: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The second step: the ticket the password step handed out, and the
    /// code (authenticator app or recovery code) or the passkey's
    /// assertion (`webauthn`, JSON, filled in by the page's script).
    pub mfa_token: Option<String>,
    pub code: Option<String>,
    pub webauthn: Option<String>,
    /// "Sign in with a passkey": the ceremony the page's script started.
    pub passkey_ceremony: Option<String>,
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
        let max_age = u64::try_from(max_age).unwrap_or(0);
        super::cookies::set_cookie_header(&self.name(base), value, "/", "Lax", max_age, self.secure)
    }

    fn read(&self, req: &Request, base: &str) -> Option<String> {
        let name = self.name(base);
        let lines = req.headers().get_all(poem::http::header::COOKIE);
        super::cookies::cookie_values(lines, &name).next().map(str::to_owned)
    }
}

const SESSION: &str = "lk_session";
const CSRF: &str = "lk_csrf";

fn csrf_key(state: &AppState) -> [u8; 32] {
    state.master.derive("csrf/v1")
}

/// The form token for the browser's CSRF cookie, minting the cookie (and
/// returning its `Set-Cookie`) when the browser has no valid one.
fn csrf_for_form(state: &AppState, req: &Request) -> (String, Option<String>) {
    let key = csrf_key(state);
    let cookies = Cookies::new(state);
    let existing = cookies.read(req, CSRF);
    if let Some(random) = existing.as_deref().and_then(|c| csrf::minted(&key, c)) {
        return (csrf::form_token(&key, random), None);
    }
    let cookie = csrf::mint_cookie(&key);
    let token = csrf::minted(&key, &cookie).map(|random| csrf::form_token(&key, random)).unwrap_or_default();
    (token, Some(cookies.set(CSRF, &cookie, 3600)))
}

/// Is this POST a genuine submission of one of our forms? See [`csrf`].
fn csrf_ok(state: &AppState, req: &Request, form_token: Option<&str>) -> bool {
    // A header that is present but not visible ASCII counts as present and wrong.
    let header = |name: &str| req.headers().get(name).map(|v| v.to_str().unwrap_or_default());
    let cookie = Cookies::new(state).read(req, CSRF);
    let submission = csrf::Submission {
        origin: header("origin"),
        sec_fetch_site: header("sec-fetch-site"),
        cookie: cookie.as_deref(),
        form_token,
    };
    match csrf::check(&csrf_key(state), &state.issuer_origin, &submission) {
        Ok(()) => true,
        Err(refusal) => {
            tracing::info!(
                %refusal,
                origin = ?submission.origin,
                sec_fetch_site = ?submission.sec_fetch_site,
                "form submission refused (CSRF)"
            );
            false
        }
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
        ("acr_values", &req.acr_values),
    ];
    fields.iter().filter_map(|(name, value)| value.as_deref().map(|v| html::hidden(name, v))).collect()
}

/// Render the sign-in form.
fn login_form(
    state: &AppState,
    req: &Request,
    auth: &AuthorizationRequest,
    v: &ValidAuthorization,
    error: Option<&FormError>,
) -> AuthorizeResponse {
    let (token, set_cookie) = csrf_for_form(state, req);
    let mut fields = hidden_fields(auth);
    fields.push_str(&html::hidden("csrf_token", &token));
    let action = format!("{}/oauth/authorize", state.issuer());
    let username = v.login_hint.as_deref().unwrap_or_default();
    let passkey_begin =
        state.webauthn.is_ok().then(|| format!("{}/auth/passkey/login/begin", state.issuer()));
    AuthorizeResponse::page(
        html::login_page(&action, &v.client.client_name, &fields, username, error, passkey_begin.as_deref()),
        set_cookie,
    )
}

/// Render the second step: a code field and, for a user with a passkey,
/// the "Use your passkey" button.
#[allow(clippy::too_many_arguments)]
fn second_step_form(
    state: &AppState,
    req: &Request,
    auth: &AuthorizationRequest,
    v: &ValidAuthorization,
    mfa_token: &str,
    factors: &[String],
    options: Option<&serde_json::Value>,
    error: Option<&FormError>,
) -> AuthorizeResponse {
    let (token, set_cookie) = csrf_for_form(state, req);
    let mut fields = hidden_fields(auth);
    fields.push_str(&html::hidden("csrf_token", &token));
    fields.push_str(&html::hidden("mfa_token", mfa_token));
    let action = format!("{}/oauth/authorize", state.issuer());
    let code = factors.iter().any(|f| f == "totp" || f == "recovery_code");
    let options = options.map(serde_json::Value::to_string);
    AuthorizeResponse::page(
        html::second_step_page(&action, &v.client.client_name, &fields, code, options.as_deref(), error),
        set_cookie,
    )
}

/// The answer the second-step form carries: the passkey's assertion, or a
/// code (six digits: the authenticator app; anything else: a recovery code).
fn second_step_answer(webauthn: Option<&str>, code: Option<&str>) -> Result<Answer, FormError> {
    let filled = |v: Option<&str>| v.map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    if let Some(json) = filled(webauthn) {
        return serde_json::from_str(&json)
            .map(|c| Answer::Passkey(Box::new(c)))
            .map_err(|_| FormError::general("The passkey's answer was not understood. Please try again."));
    }
    match filled(code) {
        Some(code) if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) => Ok(Answer::Totp(code)),
        Some(code) => Ok(Answer::RecoveryCode(code)),
        None => Err(FormError {
            message: "Enter the code from your authenticator app.".into(),
            ..Default::default()
        }),
    }
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

/// What the sign-in form says when a sign-in did not work: the same
/// [`Problem`] `/auth/login` and the password grant answer with, as a
/// sentence, marking the fields it is about. `Err` is a server error.
fn sign_in_problem(
    e: SignInError,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<FormError, Internal> {
    let blank = |v: Option<&str>| v.is_none_or(str::is_empty);
    let problem = match e {
        SignInError::MissingCredentials => {
            return Ok(FormError {
                message: "Enter your username and password.".into(),
                username: blank(username),
                password: blank(password),
            });
        }
        SignInError::Login(e) => Problem::from(e),
        SignInError::Mfa(e) => Problem::from(e),
    };
    let credentials = matches!(problem.class, Class::Unauthenticated);
    match problem.class {
        Class::Internal(i) => Err(i),
        _ => Ok(FormError {
            message: html::sentence(&problem.message),
            username: credentials,
            password: credentials,
        }),
    }
}

fn error_response(e: AuthorizeError, issuer: &str) -> AuthorizeResponse {
    match e {
        AuthorizeError::Page(message) => AuthorizeResponse::invalid(&message),
        AuthorizeError::Redirect { redirect_uri, state, error } => AuthorizeResponse::Found(
            authorize::error_redirect(&redirect_uri, state.as_deref(), &error, issuer),
            None,
        ),
        AuthorizeError::Internal(i) => AuthorizeResponse::internal(i),
    }
}

pub struct AuthorizeApi;

#[OpenApi(prefix_path = "/oauth", tag = "Tag::OAuth")]
impl AuthorizeApi {
    /// Authorization endpoint (RFC 6749 §4.1.1, OIDC Core §3.1.2).
    ///
    /// `response_type=code` only; PKCE with `S256` is required of every
    /// client, except a confidential one an administrator registered with
    /// `require_pkce: false` (a legacy client). Shows a sign-in page; a
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
        acr_values: Query<Option<String>>,
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
            acr_values: acr_values.0,
        };
        let v = match authorize::validate(&state.db, &auth).await {
            Ok(v) => v,
            Err(e) => return error_response(e, state.issuer()),
        };
        let session = Cookies::new(&state).read(req, SESSION);
        let next =
            browser::on_request(&state.db, state.now(), CodeSettings::of(&state), &v, session.as_deref())
                .await;
        match next {
            Ok(Next::Redirect(location)) => AuthorizeResponse::Found(location, None),
            Ok(Next::Confirm { username }) => continue_form(&state, req, &auth, &v, &username),
            Ok(Next::SignIn) => login_form(&state, req, &auth, &v, None),
            Err(e) => AuthorizeResponse::internal(e),
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
            // Shown again in the form after a failed attempt.
            login_hint: form.username.clone(),
            acr_values: form.acr_values.clone(),
        };
        let v = match authorize::validate(&state.db, &auth).await {
            Ok(v) => v,
            Err(e) => return error_response(e, state.issuer()),
        };
        let cookies = Cookies::new(&state);
        if form.continue_session.is_some() {
            let session = cookies.read(req, SESSION);
            let settings = CodeSettings::of(&state);
            return match browser::continue_session(&state.db, state.now(), settings, &v, session.as_deref())
                .await
            {
                Ok(Some(location)) => AuthorizeResponse::SeeOther(location, None),
                Ok(None) => {
                    let error = FormError::general("Your session has ended. Please sign in.");
                    login_form(&state, req, &auth, &v, Some(&error))
                }
                Err(e) => AuthorizeResponse::internal(e),
            };
        }
        let signed_in = |session: browser::NewSession| {
            AuthorizeResponse::SeeOther(
                session.location,
                Some(cookies.set(SESSION, &session.cookie, session.ttl.num_seconds())),
            )
        };
        let answering = form.mfa_token.as_deref().is_some_and(|t| !t.is_empty());
        let passkey = form.passkey_ceremony.as_deref().is_some_and(|c| !c.is_empty());
        if answering || passkey {
            // The same per-address budget as the JSON API's second step.
            let address = crate::ratelimit::address_key(origin.0.ip);
            if let Err(seconds) = state.mfa_limiter.check(&address, state.now()) {
                let error =
                    FormError::general(format!("Too many attempts. Please try again in {seconds} seconds."));
                return login_form(&state, req, &auth, &v, Some(&error));
            }
        }
        if let Some(ticket) = form.mfa_token.as_deref().filter(|t| !t.is_empty()) {
            let answer = second_step_answer(form.webauthn.as_deref(), form.code.as_deref());
            return match second_step(&state, req, &origin, &auth, &v, ticket, answer).await {
                Ok(session) => signed_in(session),
                Err(page) => page,
            };
        }
        if let (Some(ceremony), Some(json)) = (
            form.passkey_ceremony.as_deref().filter(|c| !c.is_empty()),
            form.webauthn.as_deref().filter(|w| !w.is_empty()),
        ) {
            let outcome = match serde_json::from_str(json) {
                Ok(credential) => {
                    browser::passkey_sign_in(&state, &origin.0, &v, ceremony, &credential).await
                }
                Err(_) => Err(SignInError::Mfa(MfaError::WrongAnswer)),
            };
            return match outcome {
                Ok(session) => signed_in(session),
                Err(e) => match sign_in_problem(e, None, None) {
                    Ok(problem) => {
                        login_form(&state, req, &auth, &v, Some(&FormError::general(problem.message)))
                    }
                    Err(e) => AuthorizeResponse::internal(e),
                },
            };
        }
        let (username, password) = (form.username.as_deref(), form.password.as_deref());
        match browser::sign_in(&state, &origin.0, &v, username, password).await {
            Ok(SignInOutcome::Done(session)) => signed_in(session),
            Ok(SignInOutcome::SecondStep(c)) => second_step_form(
                &state,
                req,
                &auth,
                &v,
                &c.mfa_token,
                &c.factors,
                c.webauthn_json().as_ref(),
                None,
            ),
            Err(e) => match sign_in_problem(e, username, password) {
                Ok(problem) => login_form(&state, req, &auth, &v, Some(&problem)),
                Err(e) => AuthorizeResponse::internal(e),
            },
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
        let session = Cookies::new(&state).read(req, SESSION);
        let request = LogoutRequest {
            id_token_hint: id_token_hint.0.as_deref(),
            client_id: client_id.0.as_deref(),
            post_logout_redirect_uri: post_logout_redirect_uri.0.as_deref(),
        };
        let decision = browser::logout(
            &state.db,
            &state.keyring,
            &state.tokens,
            state.now(),
            session.as_deref(),
            request,
        )
        .await;
        match decision {
            Ok(Logout::Now { target }) => {
                finish_logout(&state, session.as_deref(), target, state_param.0.as_deref()).await
            }
            Ok(Logout::Confirm { client_id, target }) => {
                let (token, set_cookie) = csrf_for_form(&state, req);
                let mut fields = html::hidden("csrf_token", &token);
                for (name, value) in [
                    ("client_id", &client_id),
                    ("post_logout_redirect_uri", &target),
                    ("state", &state_param.0),
                ] {
                    if let Some(v) = value {
                        fields.push_str(&html::hidden(name, v));
                    }
                }
                let action = format!("{}/oauth/logout", state.issuer());
                AuthorizeResponse::page(html::logout_page(&action, &fields), set_cookie)
            }
            Err(e) => logout_error(e),
        }
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
        let target = match browser::post_logout_redirect(
            &state.db,
            form.client_id.as_deref(),
            form.post_logout_redirect_uri.as_deref(),
        )
        .await
        {
            Ok(t) => t,
            Err(e) => return logout_error(e),
        };
        let session = Cookies::new(&state).read(req, SESSION);
        finish_logout(&state, session.as_deref(), target, form.state.as_deref()).await
    }
}

fn logout_error(e: LogoutError) -> AuthorizeResponse {
    match e {
        LogoutError::Internal(e) => AuthorizeResponse::internal(e),
        e => AuthorizeResponse::invalid(&e.to_string()),
    }
}

/// What the page says when the ticket of a second step is gone.
const EXPIRED: &str = "This sign-in has expired. Please sign in again.";

/// The second-step form's submission: `Err` is the page to show,
/// `Ok` the new session.
#[allow(clippy::too_many_arguments)]
async fn second_step(
    state: &AppState,
    req: &Request,
    origin: &ClientOrigin,
    auth: &AuthorizationRequest,
    v: &ValidAuthorization,
    ticket: &str,
    answer: Result<Answer, FormError>,
) -> Result<browser::NewSession, AuthorizeResponse> {
    let offered = match mfa::flow::offered(state, &v.client.client_id, ticket).await {
        Ok(Some(offered)) => offered,
        Ok(None) => {
            let error = FormError::general(EXPIRED);
            return Err(login_form(state, req, auth, v, Some(&error)));
        }
        Err(e) => return Err(AuthorizeResponse::internal(e)),
    };
    let again = |error: &FormError| {
        second_step_form(state, req, auth, v, ticket, &offered.0, offered.1.as_ref(), Some(error))
    };
    let answer = answer.map_err(|e| again(&e))?;
    let by_passkey = matches!(answer, Answer::Passkey(_));
    match browser::finish_second_step(state, &origin.0, v, ticket, answer).await {
        Ok(session) => Ok(session),
        Err(SignInError::Mfa(MfaError::InvalidTicket)) => {
            let error = FormError::general(EXPIRED);
            Err(login_form(state, req, auth, v, Some(&error)))
        }
        Err(SignInError::Mfa(MfaError::WrongAnswer)) => Err(again(&FormError::general(if by_passkey {
            "Your passkey was not accepted. Try again, or enter a code."
        } else {
            "That code did not work. Check the code and try again."
        }))),
        Err(e) => match sign_in_problem(e, None, None) {
            Ok(problem) => Err(again(&FormError { password: false, username: false, ..problem })),
            Err(e) => Err(AuthorizeResponse::internal(e)),
        },
    }
}

/// End the session, clear its cookie, and go back (or say "signed out").
async fn finish_logout(
    state: &AppState,
    session: Option<&str>,
    target: Option<String>,
    state_param: Option<&str>,
) -> AuthorizeResponse {
    let clear = Cookies::new(state).set(SESSION, "", 0);
    match browser::finish_logout(&state.db, state.now(), session, target, state_param).await {
        Ok(Some(location)) => AuthorizeResponse::Found(location, Some(clear)),
        Ok(None) => AuthorizeResponse::page(html::signed_out_page(), Some(clear)),
        Err(e) => AuthorizeResponse::internal(e),
    }
}
