//! The one error body and every mapping from domain errors to HTTP.
//!
//! - [`ErrorBody`] is the only error shape: `{error, error_description}`.
//!   `/oauth/*` uses RFC 6749 §5.2 codes; the JSON API uses latchkey codes.
//! - [`ApiError`] carries the statuses; a 401 always has `WWW-Authenticate`
//!   (RFC 6750 §3), a 429/503 always has `Retry-After`.
//! - A 500 logs the cause chain once and answers a fixed `server_error`.
//! - Requests rejected before a handler runs (malformed JSON, wrong content
//!   type, missing bearer token, unknown route, oversized body) surface as
//!   plain `poem::Error`s; [`normalize_errors`] turns them into the same body,
//!   so no client ever sees poem's plain-text errors. (poem-openapi's
//!   `bad_request_handler` would need every success type to carry an error
//!   variant; one middleware covers every route instead.)

use poem::http::StatusCode;
use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

use crate::admin::AdminError;
use crate::authn::{BearerError, LoginError, PasswordChangeError, RefreshFlowError};
use crate::clients::ClientError;
use crate::error::Internal;
use crate::problem::{Class, Problem};
use crate::users::RegisterError;
use crate::users::invitation::InvitationError;

/// The error body of every endpoint.
#[derive(Object, Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[oai(skip_serializing_if_is_none, example)]
pub struct ErrorBody {
    /// A stable, machine-readable code: RFC 6749 §5.2 / RFC 6750 §3.1 codes on
    /// `/oauth/*`, latchkey codes elsewhere (`invalid_request`,
    /// `validation_failed`, `invalid_credentials`, `invalid_token`,
    /// `username_taken`, `not_found`, `payload_too_large`, `rate_limited`,
    /// `origin_not_allowed`, `server_error`, ...).
    pub error: String,
    /// A human-readable explanation. Never contains secrets or internals.
    pub error_description: String,
    /// `mfa_required` only: the ticket for the second step. Single use,
    /// valid for `mfa_token_expires_in` seconds, only for the client that
    /// signed in (`/auth/login/mfa` for latchkey's own sign-in; the token
    /// endpoint's `urn:latchkey:grant-type:mfa` for others).
    pub mfa_token: Option<String>,
    pub mfa_token_expires_in: Option<u64>,
    /// `mfa_required` only: the answers on offer: `totp`, `passkey`,
    /// `recovery_code`.
    pub factors: Option<Vec<String>>,
    /// `mfa_required` with `passkey` on offer: the WebAuthn request options
    /// (`{"publicKey": {...}}`, binary members base64url) to pass to
    /// `navigator.credentials.get`.
    pub webauthn: Option<serde_json::Value>,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>, description: impl Into<String>) -> Self {
        ErrorBody {
            error: error.into(),
            error_description: description.into(),
            mfa_token: None,
            mfa_token_expires_in: None,
            factors: None,
            webauthn: None,
        }
    }

    /// An `mfa_required` body carrying its challenge.
    pub fn mfa_required(error: &str, description: &str, c: &crate::mfa::flow::Challenge) -> Self {
        ErrorBody {
            mfa_token: Some(c.mfa_token.clone()),
            mfa_token_expires_in: Some(c.expires_in),
            factors: Some(c.factors.clone()),
            webauthn: c.webauthn_json(),
            ..ErrorBody::new(error, description)
        }
    }
}

impl poem_openapi::types::Example for ErrorBody {
    fn example() -> Self {
        ErrorBody::new("validation_failed", "password must be at least 8 characters")
    }
}

/// `WWW-Authenticate` for a bearer failure (RFC 6750 §3). Without an error
/// code when no credentials were sent (§3.1).
pub fn bearer_challenge(error: Option<(&str, &str)>) -> String {
    match error {
        None => "Bearer realm=\"latchkey\"".to_owned(),
        Some((code, description)) => {
            let description = description.replace(['"', '\\'], "'");
            format!("Bearer realm=\"latchkey\", error=\"{code}\", error_description=\"{description}\"")
        }
    }
}

/// Errors of the JSON API (`/auth/*`, `/admin/*`, and shared edges).
#[derive(ApiResponse, Debug)]
pub enum ApiError {
    /// The request is malformed or a value is invalid.
    #[oai(status = 400)]
    BadRequest(Json<Box<ErrorBody>>),
    /// Missing or invalid credentials.
    #[oai(status = 401)]
    Unauthorized(Json<Box<ErrorBody>>, #[oai(header = "WWW-Authenticate")] String),
    /// Authenticated, but not allowed (`insufficient_scope` carries a challenge).
    #[oai(status = 403)]
    Forbidden(Json<Box<ErrorBody>>, #[oai(header = "WWW-Authenticate")] Option<String>),
    /// No such resource.
    #[oai(status = 404)]
    NotFound(Json<Box<ErrorBody>>),
    /// The resource already exists.
    #[oai(status = 409)]
    Conflict(Json<Box<ErrorBody>>),
    /// The request body is larger than the server accepts.
    #[oai(status = 413)]
    PayloadTooLarge(Json<Box<ErrorBody>>),
    /// The request body has the wrong content type.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<Box<ErrorBody>>),
    /// Too many requests; retry after the given number of seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<Box<ErrorBody>>, #[oai(header = "Retry-After")] u64),
    /// An unexpected server error; details are in the server log.
    #[oai(status = 500)]
    Internal(Json<Box<ErrorBody>>),
    /// The server is busy or a dependency is down; retry later.
    #[oai(status = 503)]
    Unavailable(Json<Box<ErrorBody>>, #[oai(header = "Retry-After")] u64),
}

impl ApiError {
    pub fn bad_request(code: &str, description: impl Into<String>) -> Self {
        ApiError::BadRequest(Json(Box::new(ErrorBody::new(code, description))))
    }

    pub fn validation(description: impl ToString) -> Self {
        Self::bad_request("validation_failed", description.to_string())
    }

    /// `/auth/login`'s 401 `mfa_required`, with its challenge.
    pub fn mfa_required(challenge: &crate::mfa::flow::Challenge) -> Self {
        let description = "a second factor is required to complete this sign-in";
        ApiError::Unauthorized(
            Json(Box::new(ErrorBody::mfa_required("mfa_required", description, challenge))),
            bearer_challenge(None),
        )
    }

    pub fn unauthorized(code: &str, description: &str) -> Self {
        ApiError::Unauthorized(
            Json(Box::new(ErrorBody::new(code, description))),
            bearer_challenge(Some((code, description))),
        )
    }

    /// 401 without credentials: the challenge carries no error code.
    pub fn missing_token() -> Self {
        ApiError::Unauthorized(
            Json(Box::new(ErrorBody::new("unauthorized", "a bearer token is required"))),
            bearer_challenge(None),
        )
    }

    pub fn forbidden(code: &str, description: impl Into<String>) -> Self {
        ApiError::Forbidden(Json(Box::new(ErrorBody::new(code, description))), None)
    }

    /// Cookie mode's CSRF check failed: the request's `Origin` is missing or
    /// not allowed (see `http::cookies`).
    pub fn origin_not_allowed(description: &str) -> Self {
        ApiError::forbidden("origin_not_allowed", description)
    }

    /// RFC 6750 §3.1: the token lacks a needed scope.
    pub fn insufficient_scope(description: &str) -> Self {
        ApiError::Forbidden(
            Json(Box::new(ErrorBody::new("insufficient_scope", description))),
            Some(bearer_challenge(Some(("insufficient_scope", description)))),
        )
    }

    pub fn not_found(description: impl Into<String>) -> Self {
        ApiError::NotFound(Json(Box::new(ErrorBody::new("not_found", description))))
    }

    pub fn conflict(code: &str, description: impl Into<String>) -> Self {
        ApiError::Conflict(Json(Box::new(ErrorBody::new(code, description))))
    }

    pub fn too_many_requests(retry_after: u64) -> Self {
        ApiError::TooManyRequests(
            Json(Box::new(ErrorBody::new(
                "rate_limited",
                format!("too many requests; retry in {retry_after} seconds"),
            ))),
            retry_after,
        )
    }

    pub fn busy(description: impl Into<String>) -> Self {
        ApiError::Unavailable(Json(Box::new(ErrorBody::new("temporarily_unavailable", description))), 1)
    }

    /// Log the cause chain once; answer a fixed message.
    pub fn internal(e: &Internal) -> Self {
        e.log();
        if let Some(message) = e.unavailable() {
            return ApiError::busy(message);
        }
        ApiError::Internal(Json(Box::new(ErrorBody::new("server_error", "an unexpected error occurred"))))
    }
}

impl From<Internal> for ApiError {
    fn from(e: Internal) -> Self {
        ApiError::internal(&e)
    }
}

/// The JSON API's rendering of a classified domain error
/// ([`crate::problem`] holds the one mapping of each error).
impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        match p.class {
            Class::Invalid => ApiError::bad_request(p.code, p.message),
            Class::Unauthenticated => ApiError::unauthorized(p.code, &p.message),
            Class::Forbidden => ApiError::forbidden(p.code, p.message),
            Class::NotFound => ApiError::NotFound(Json(Box::new(ErrorBody::new(p.code, p.message)))),
            Class::Conflict => ApiError::conflict(p.code, p.message),
            Class::Throttled { retry_after } => {
                ApiError::TooManyRequests(Json(Box::new(ErrorBody::new(p.code, p.message))), retry_after)
            }
            Class::Busy => ApiError::busy(p.message),
            Class::Internal(i) => ApiError::internal(&i),
        }
    }
}

/// Domain errors reach the JSON API through their [`Problem`].
macro_rules! api_error_via_problem {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for ApiError {
            fn from(e: $error) -> Self {
                Problem::from(e).into()
            }
        }
    )*};
}

api_error_via_problem!(
    RegisterError,
    LoginError,
    PasswordChangeError,
    RefreshFlowError,
    BearerError,
    AdminError,
    ClientError,
    InvitationError,
    crate::mfa::flow::MfaError,
);

/// The code and status for an error raised before any handler ran.
fn classify(err: &poem::Error, oauth: bool) -> (StatusCode, &'static str, String) {
    use poem_openapi::error::{AuthorizationError, ContentTypeError, ParseRequestPayloadError};
    let status = err.status();
    let invalid_request = "invalid_request";
    if err.is::<AuthorizationError>() {
        return (StatusCode::UNAUTHORIZED, "unauthorized", "a bearer token is required".into());
    }
    if err.is::<ContentTypeError>() {
        // RFC 6749 endpoints answer every malformed request with 400 invalid_request.
        if oauth {
            return (StatusCode::BAD_REQUEST, invalid_request, err.to_string());
        }
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", err.to_string());
    }
    if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
        return (StatusCode::BAD_REQUEST, invalid_request, format!("invalid request body: {}", e.reason));
    }
    match status {
        StatusCode::NOT_FOUND => (status, "not_found", "no such endpoint".into()),
        StatusCode::METHOD_NOT_ALLOWED => {
            (status, "method_not_allowed", "method not allowed on this endpoint".into())
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            (status, "payload_too_large", "the request body is too large".into())
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (status, "unsupported_media_type", err.to_string()),
        s if s.is_client_error() => (s, invalid_request, err.to_string()),
        _ => {
            tracing::error!(error = %err, "unhandled error");
            (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "an unexpected error occurred".into())
        }
    }
}

/// Where a request that failed before its handler came from: the edge
/// decides how its errors look.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Edge {
    /// `/auth/*`, `/admin/*` and the rest of the JSON API.
    Api,
    /// The RFC 6749 JSON endpoints under `/oauth/`.
    OAuth,
    /// The pages a browser is sent to (`/oauth/authorize`, `/oauth/logout`):
    /// a person reads the error, so it is an HTML page, as documented.
    Page,
}

impl Edge {
    fn of(path: &str) -> Edge {
        match path {
            "/oauth/authorize" | "/oauth/logout" => Edge::Page,
            p if p.starts_with("/oauth/") => Edge::OAuth,
            _ => Edge::Api,
        }
    }
}

/// Render an error raised outside a handler as [`ErrorBody`] (or, on a
/// browser page, as an error page).
fn render(err: poem::Error, edge: Edge) -> Response {
    if err.is_from_response() {
        return err.into_response();
    }
    let (status, code, description) = classify(&err, edge != Edge::Api);
    // Parse errors quote the input: on the OAuth endpoints the description
    // must stay within RFC 6749 §5.2's characters, as OAuthError's do.
    let description =
        if edge == Edge::Api { description } else { crate::oauth::error_description(&description) };
    if edge == Edge::Page && status.is_client_error() {
        return page_error(&description);
    }
    let mut resp = Json(Box::new(ErrorBody::new(code, description))).into_response();
    resp.set_status(status);
    if status == StatusCode::UNAUTHORIZED {
        let challenge = bearer_challenge(None);
        if let Ok(value) = challenge.parse() {
            resp.headers_mut().insert(poem::http::header::WWW_AUTHENTICATE, value);
        }
    }
    resp
}

/// A malformed request to a browser page: 400 with the page's headers.
fn page_error(description: &str) -> Response {
    use crate::http::html;
    let message = format!("This request cannot be handled: {description}.");
    Response::builder()
        .status(StatusCode::BAD_REQUEST)
        .content_type("text/html; charset=utf-8")
        .header("Content-Security-Policy", html::CONTENT_SECURITY_POLICY)
        .header("Referrer-Policy", html::REFERRER_POLICY)
        .body(html::error_page(&message))
}

/// Middleware: every error leaves as documented: JSON [`ErrorBody`], or an
/// HTML page on the browser pages.
pub async fn normalize_errors<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let edge = Edge::of(req.uri().path());
    match next.call(req).await {
        Ok(resp) => Ok(resp.into_response()),
        Err(err) => Ok(render(err, edge)),
    }
}

/// Errors of the OAuth endpoints (RFC 6749 §5.2): the same [`ErrorBody`]
/// with RFC error codes.
#[derive(ApiResponse, Debug)]
pub enum OAuthErrorResponse {
    /// `invalid_request`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope`.
    #[oai(status = 400)]
    BadRequest(Json<Box<ErrorBody>>),
    /// `invalid_client`: client authentication failed.
    #[oai(status = 401)]
    InvalidClient(Json<Box<ErrorBody>>, #[oai(header = "WWW-Authenticate")] String),
    /// `mfa_required` (password grant): the password was right and the
    /// user has a second factor; the body carries `mfa_token`, `factors`
    /// and, for passkeys, `webauthn`. Answer with
    /// `grant_type=urn:latchkey:grant-type:mfa`. `mfa_enrolment_required`:
    /// the client requires a second factor the user has not enrolled.
    #[oai(status = 403)]
    Forbidden(Json<Box<ErrorBody>>),
    /// Too many requests; retry after the given number of seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<Box<ErrorBody>>, #[oai(header = "Retry-After")] u64),
    /// `server_error`.
    #[oai(status = 500)]
    ServerError(Json<Box<ErrorBody>>),
    /// `temporarily_unavailable`.
    #[oai(status = 503)]
    Unavailable(Json<Box<ErrorBody>>, #[oai(header = "Retry-After")] u64),
}

impl From<crate::oauth::OAuthError> for OAuthErrorResponse {
    fn from(e: crate::oauth::OAuthError) -> Self {
        use crate::oauth::ErrorCode;
        let body = match &e.mfa {
            Some(challenge) => {
                Json(Box::new(ErrorBody::mfa_required(e.code.as_str(), e.description(), challenge)))
            }
            None => Json(Box::new(ErrorBody::new(e.code.as_str(), e.description()))),
        };
        if let Some(seconds) = e.retry_after {
            return OAuthErrorResponse::TooManyRequests(body, seconds);
        }
        match e.code {
            ErrorCode::InvalidClient => {
                OAuthErrorResponse::InvalidClient(body, "Basic realm=\"latchkey\", charset=\"UTF-8\"".into())
            }
            ErrorCode::ServerError => {
                if let Some(cause) = &e.internal {
                    cause.log();
                }
                OAuthErrorResponse::ServerError(body)
            }
            ErrorCode::TemporarilyUnavailable => OAuthErrorResponse::Unavailable(body, 1),
            ErrorCode::MfaRequired | ErrorCode::MfaEnrolmentRequired => OAuthErrorResponse::Forbidden(body),
            _ => OAuthErrorResponse::BadRequest(body),
        }
    }
}

impl From<Internal> for OAuthErrorResponse {
    fn from(e: Internal) -> Self {
        crate::oauth::OAuthError::from(e).into()
    }
}
