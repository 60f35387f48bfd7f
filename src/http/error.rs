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

use crate::authn::{BearerError, LoginError, RefreshFlowError};
use crate::error::Internal;
use crate::refresh::RefreshError;
use crate::users::RegisterError;

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
}

impl ErrorBody {
    pub fn new(error: impl Into<String>, description: impl Into<String>) -> Self {
        ErrorBody { error: error.into(), error_description: description.into() }
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
    BadRequest(Json<ErrorBody>),
    /// Missing or invalid credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// Authenticated, but not allowed (`insufficient_scope` carries a challenge).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] Option<String>),
    /// No such resource.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The resource already exists.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The request body is larger than the server accepts.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The request body has the wrong content type.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// Too many requests; retry after the given number of seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    /// An unexpected server error; details are in the server log.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The server is busy or a dependency is down; retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
}

impl ApiError {
    pub fn bad_request(code: &str, description: impl Into<String>) -> Self {
        ApiError::BadRequest(Json(ErrorBody::new(code, description)))
    }

    pub fn validation(description: impl ToString) -> Self {
        Self::bad_request("validation_failed", description.to_string())
    }

    pub fn unauthorized(code: &str, description: &str) -> Self {
        ApiError::Unauthorized(
            Json(ErrorBody::new(code, description)),
            bearer_challenge(Some((code, description))),
        )
    }

    /// 401 without credentials: the challenge carries no error code.
    pub fn missing_token() -> Self {
        ApiError::Unauthorized(
            Json(ErrorBody::new("unauthorized", "a bearer token is required")),
            bearer_challenge(None),
        )
    }

    pub fn forbidden(code: &str, description: impl Into<String>) -> Self {
        ApiError::Forbidden(Json(ErrorBody::new(code, description)), None)
    }

    /// Cookie mode's CSRF check failed: the request's `Origin` is missing or
    /// not allowed (see `http::cookies`).
    pub fn origin_not_allowed(description: &str) -> Self {
        ApiError::forbidden("origin_not_allowed", description)
    }

    /// RFC 6750 §3.1: the token lacks a needed scope.
    pub fn insufficient_scope(description: &str) -> Self {
        ApiError::Forbidden(
            Json(ErrorBody::new("insufficient_scope", description)),
            Some(bearer_challenge(Some(("insufficient_scope", description)))),
        )
    }

    pub fn not_found(description: impl Into<String>) -> Self {
        ApiError::NotFound(Json(ErrorBody::new("not_found", description)))
    }

    pub fn conflict(code: &str, description: impl Into<String>) -> Self {
        ApiError::Conflict(Json(ErrorBody::new(code, description)))
    }

    pub fn too_many_requests(retry_after: u64) -> Self {
        ApiError::TooManyRequests(
            Json(ErrorBody::new(
                "rate_limited",
                format!("too many requests; retry in {retry_after} seconds"),
            )),
            retry_after,
        )
    }

    pub fn busy(description: impl Into<String>) -> Self {
        ApiError::Unavailable(Json(ErrorBody::new("temporarily_unavailable", description)), 1)
    }

    /// Log the cause chain once; answer a fixed message.
    pub fn internal(e: &Internal) -> Self {
        tracing::error!(error = format!("{:#}", e.0), "internal error");
        ApiError::Internal(Json(ErrorBody::new("server_error", "an unexpected error occurred")))
    }
}

impl From<Internal> for ApiError {
    fn from(e: Internal) -> Self {
        ApiError::internal(&e)
    }
}

impl From<RegisterError> for ApiError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::UsernameTaken => ApiError::conflict("username_taken", e.to_string()),
            RegisterError::Hashing(crate::passwords::HashError::Busy) => ApiError::busy(e.to_string()),
            RegisterError::Hashing(crate::passwords::HashError::Internal(i)) | RegisterError::Internal(i) => {
                ApiError::internal(&i)
            }
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::InvalidCredentials => ApiError::unauthorized("invalid_credentials", &e.to_string()),
            LoginError::AccountDisabled => ApiError::forbidden("account_disabled", e.to_string()),
            LoginError::AccountBanned { until } => ApiError::forbidden(
                "account_banned",
                match until {
                    Some(t) => format!("this account is banned until {}", t.to_rfc3339()),
                    None => e.to_string(),
                },
            ),
            LoginError::Busy => ApiError::busy(e.to_string()),
            LoginError::RateLimited { retry_after } => {
                ApiError::TooManyRequests(Json(ErrorBody::new("rate_limited", e.to_string())), retry_after)
            }
            LoginError::ScopeNotAllowed(_) => ApiError::bad_request("invalid_scope", e.to_string()),
            LoginError::Internal(i) => ApiError::internal(&i),
        }
    }
}

impl From<RefreshFlowError> for ApiError {
    fn from(e: RefreshFlowError) -> Self {
        match e {
            RefreshFlowError::Refresh(RefreshError::Reused { .. }) => {
                ApiError::unauthorized("refresh_token_reused", &e.to_string())
            }
            RefreshFlowError::Refresh(RefreshError::Internal(i)) | RefreshFlowError::Internal(i) => {
                ApiError::internal(&i)
            }
            RefreshFlowError::Refresh(_) => ApiError::unauthorized("invalid_refresh_token", &e.to_string()),
            RefreshFlowError::AccountUnavailable => {
                ApiError::unauthorized("account_unavailable", &e.to_string())
            }
            RefreshFlowError::ScopeWithdrawn => {
                ApiError::unauthorized("invalid_refresh_token", &e.to_string())
            }
        }
    }
}

impl From<BearerError> for ApiError {
    fn from(e: BearerError) -> Self {
        match e {
            BearerError::Internal(i) => ApiError::internal(&i),
            other => ApiError::unauthorized("invalid_token", &other.to_string()),
        }
    }
}

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

/// Render an error raised outside a handler as [`ErrorBody`].
fn render(err: poem::Error, oauth: bool) -> Response {
    if err.is_from_response() {
        return err.into_response();
    }
    let (status, code, description) = classify(&err, oauth);
    // Parse errors quote the input: on the OAuth endpoints the description
    // must stay within RFC 6749 §5.2's characters, as OAuthError's do.
    let description = if oauth { crate::oauth::error_description(&description) } else { description };
    let mut resp = Json(ErrorBody::new(code, description)).into_response();
    resp.set_status(status);
    if status == StatusCode::UNAUTHORIZED {
        let challenge = bearer_challenge(None);
        if let Ok(value) = challenge.parse() {
            resp.headers_mut().insert(poem::http::header::WWW_AUTHENTICATE, value);
        }
    }
    resp
}

/// Middleware: every error leaves as JSON [`ErrorBody`].
pub async fn normalize_errors<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let oauth = req.uri().path().starts_with("/oauth/");
    match next.call(req).await {
        Ok(resp) => Ok(resp.into_response()),
        Err(err) => Ok(render(err, oauth)),
    }
}

/// Errors of the OAuth endpoints (RFC 6749 §5.2): the same [`ErrorBody`]
/// with RFC error codes.
#[derive(ApiResponse, Debug)]
pub enum OAuthErrorResponse {
    /// `invalid_request`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope`.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// `invalid_client`: client authentication failed.
    #[oai(status = 401)]
    InvalidClient(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// Too many requests; retry after the given number of seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    /// `server_error`.
    #[oai(status = 500)]
    ServerError(Json<ErrorBody>),
    /// `temporarily_unavailable`.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
}

impl From<crate::oauth::OAuthError> for OAuthErrorResponse {
    fn from(e: crate::oauth::OAuthError) -> Self {
        use crate::oauth::ErrorCode;
        let body = Json(ErrorBody::new(e.code.as_str(), e.description()));
        if let Some(seconds) = e.retry_after {
            return OAuthErrorResponse::TooManyRequests(body, seconds);
        }
        match e.code {
            ErrorCode::InvalidClient => {
                OAuthErrorResponse::InvalidClient(body, "Basic realm=\"latchkey\", charset=\"UTF-8\"".into())
            }
            ErrorCode::ServerError => {
                if let Some(cause) = &e.internal {
                    tracing::error!(error = format!("{:#}", cause.0), "internal error");
                }
                OAuthErrorResponse::ServerError(body)
            }
            ErrorCode::TemporarilyUnavailable => OAuthErrorResponse::Unavailable(body, 1),
            _ => OAuthErrorResponse::BadRequest(body),
        }
    }
}

impl From<Internal> for OAuthErrorResponse {
    fn from(e: Internal) -> Self {
        crate::oauth::OAuthError::from(e).into()
    }
}

impl From<crate::admin::AdminError> for ApiError {
    fn from(e: crate::admin::AdminError) -> Self {
        use crate::admin::AdminError;
        match e {
            AdminError::UserNotFound => ApiError::not_found("no such user"),
            AdminError::SessionNotFound => ApiError::not_found("no such session"),
            AdminError::SelfAction(_) => ApiError::forbidden("self_action", e.to_string()),
            AdminError::Invalid(_) => ApiError::validation(e),
            AdminError::Busy => ApiError::busy(e.to_string()),
            AdminError::UsernameTaken => ApiError::conflict("username_taken", e.to_string()),
            AdminError::TargetIsAdmin => ApiError::forbidden("target_is_admin", e.to_string()),
            AdminError::RoleNotGrantable(_) => ApiError::forbidden("role_not_grantable", e.to_string()),
            AdminError::Internal(i) => ApiError::internal(&i),
        }
    }
}

impl From<crate::users::invitation::InvitationError> for ApiError {
    fn from(e: crate::users::invitation::InvitationError) -> Self {
        use crate::users::invitation::InvitationError;
        match e {
            InvitationError::Invalid => ApiError::bad_request("invalid_invitation", e.to_string()),
            InvitationError::Busy => ApiError::busy(e.to_string()),
            InvitationError::Internal(i) => ApiError::internal(&i),
        }
    }
}
