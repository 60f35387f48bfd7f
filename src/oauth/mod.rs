//! OAuth 2.0 and OpenID Connect: the protocol logic behind `/oauth/*`.
//!
//! | step | RFC | function |
//! |---|---|---|
//! | client authentication at the token, revocation, introspection endpoints | RFC 6749 §2.3 | [`client_auth::authenticate`] |
//! | authorization request validation, redirects | RFC 6749 §4.1.1–4.1.2, OIDC Core §3.1.2 | [`authorize`] |
//! | sign-in, browser sessions, code issuance, RP-initiated logout | RFC 6749 §4.1.2, OIDC RP-Initiated Logout | [`browser`] |
//! | PKCE S256 | RFC 7636 §4 | [`pkce`] |
//! | token request per grant | RFC 6749 §4.1.3, §4.3, §4.4, §6 | [`grants::token`] |
//! | single-use codes, revocation on reuse | RFC 6749 §4.1.2, RFC 9700 §4.5 | [`codes`] |
//! | revocation | RFC 7009 | [`revoke::revoke`] |
//! | introspection | RFC 7662 | [`introspection::introspect`] |
//!
//! Errors carry RFC 6749 §5.2 codes ([`ErrorCode`]); the HTTP layer maps
//! them to statuses.

pub mod authorize;
pub mod browser;
pub mod client_auth;
pub mod codes;
pub mod grants;
pub mod introspection;
pub mod pkce;
pub mod revoke;
pub mod sessions;

use crate::authn::{LoginError, RefreshFlowError};
use crate::error::Internal;
use crate::refresh::RefreshError;

/// RFC 6749 §4.1.2.1 / §5.2, RFC 7009 §2.2.1 and OIDC Core §3.1.2.6 codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    AccessDenied,
    UnsupportedResponseType,
    ServerError,
    TemporarilyUnavailable,
    LoginRequired,
    InteractionRequired,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::InteractionRequired => "interaction_required",
        }
    }
}

/// An OAuth protocol error.
#[derive(Debug, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
    /// The cause of a `server_error`, for the log only.
    pub internal: Option<Internal>,
    /// Set when the request was throttled: answer 429 with `Retry-After`.
    pub retry_after: Option<u64>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        OAuthError { code, description: description.into(), internal: None, retry_after: None }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }

    pub fn invalid_client() -> Self {
        Self::new(ErrorCode::InvalidClient, "client authentication failed")
    }

    pub fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidScope, description)
    }

    pub fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnauthorizedClient, description)
    }

    /// RFC 6749 has no rate-limit code: `temporarily_unavailable`, sent with
    /// status 429 and `Retry-After`.
    pub fn throttled(retry_after: u64, description: impl Into<String>) -> Self {
        OAuthError {
            retry_after: Some(retry_after),
            ..Self::new(ErrorCode::TemporarilyUnavailable, description)
        }
    }
}

impl From<Internal> for OAuthError {
    fn from(e: Internal) -> Self {
        OAuthError {
            code: ErrorCode::ServerError,
            description: "an unexpected error occurred".into(),
            internal: Some(e),
            retry_after: None,
        }
    }
}

impl From<LoginError> for OAuthError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Internal(i) => i.into(),
            LoginError::Busy => Self::new(ErrorCode::TemporarilyUnavailable, e.to_string()),
            LoginError::ScopeNotAllowed(_) => Self::invalid_scope(e.to_string()),
            LoginError::RateLimited { retry_after } => Self::throttled(retry_after, e.to_string()),
            other => Self::invalid_grant(other.to_string()),
        }
    }
}

impl From<RefreshFlowError> for OAuthError {
    fn from(e: RefreshFlowError) -> Self {
        match e {
            RefreshFlowError::Internal(i) | RefreshFlowError::Refresh(RefreshError::Internal(i)) => i.into(),
            RefreshFlowError::Refresh(RefreshError::ScopeWidened) => Self::invalid_scope(e.to_string()),
            other => Self::invalid_grant(other.to_string()),
        }
    }
}
