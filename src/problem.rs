//! Every domain error, classified once.
//!
//! A [`Problem`] says what kind of failure an error is ([`Class`]), the
//! code latchkey's JSON API answers with, the RFC 6749 §5.2 code the OAuth
//! endpoints answer with, and the message. Each domain error is mapped to a
//! `Problem` in this file and nowhere else; the edges only render it:
//!
//! - the JSON API (`http::error::ApiError`): class → status, `code`;
//! - the OAuth endpoints (`oauth::OAuthError`): `oauth` code, or the class's;
//! - the sign-in pages (`http::authorize`): the message, and which form
//!   fields it is about.
//!
//! So "a banned user signs in" reads the same (and is refused for the same
//! reason) at `/auth/login`, at the password grant and on the sign-in page.

use crate::admin::AdminError;
use crate::authn::{BearerError, LoginError, PasswordChangeError, RefreshFlowError};
use crate::clients::ClientError;
use crate::error::Internal;
use crate::mfa::flow::MfaError;
use crate::oauth::ErrorCode;
use crate::passwords::HashError;
use crate::refresh::RefreshError;
use crate::users::RegisterError;
use crate::users::invitation::InvitationError;

/// What kind of failure it is, whichever edge reports it.
#[derive(Debug)]
pub enum Class {
    /// The request is malformed or a value is not acceptable.
    Invalid,
    /// The credentials or the token presented do not authenticate anyone.
    Unauthenticated,
    /// Authenticated, but this is not allowed.
    Forbidden,
    /// No such thing.
    NotFound,
    /// It exists already.
    Conflict,
    /// Too many attempts; retry after this many seconds.
    Throttled { retry_after: u64 },
    /// The server is saturated (password hashing); retry shortly.
    Busy,
    /// Our fault: logged with its cause, answered with a fixed message.
    Internal(Internal),
}

/// A classified error: see the module docs.
#[derive(Debug)]
pub struct Problem {
    pub class: Class,
    /// latchkey's code on the JSON API (`invalid_credentials`, ...).
    pub code: &'static str,
    /// The RFC 6749 §5.2 code on the OAuth endpoints, where it is not the
    /// class's own ([`Problem::oauth_code`]).
    pub oauth: Option<ErrorCode>,
    /// For people: never a secret, never an internal detail.
    pub message: String,
}

impl Problem {
    fn new(class: Class, code: &'static str, message: impl ToString) -> Self {
        Problem { class, code, oauth: None, message: message.to_string() }
    }

    fn oauth(mut self, code: ErrorCode) -> Self {
        self.oauth = Some(code);
        self
    }

    fn internal(e: Internal) -> Self {
        if let Some(message) = e.unavailable() {
            e.log();
            return Problem::busy(message);
        }
        Problem::new(Class::Internal(e), "server_error", "an unexpected error occurred")
    }

    fn busy(message: impl ToString) -> Self {
        Problem::new(Class::Busy, "temporarily_unavailable", message)
    }

    /// The RFC 6749 §5.2 code this problem has on the OAuth endpoints.
    pub fn oauth_code(&self) -> ErrorCode {
        self.oauth.unwrap_or(match self.class {
            Class::Unauthenticated | Class::Forbidden | Class::NotFound => ErrorCode::InvalidGrant,
            Class::Throttled { .. } | Class::Busy => ErrorCode::TemporarilyUnavailable,
            Class::Internal(_) => ErrorCode::ServerError,
            Class::Invalid | Class::Conflict => ErrorCode::InvalidRequest,
        })
    }
}

impl From<Internal> for Problem {
    fn from(e: Internal) -> Self {
        Problem::internal(e)
    }
}

impl From<HashError> for Problem {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Problem::busy("too many passwords are being checked; retry shortly"),
            HashError::Internal(i) => Problem::internal(i),
        }
    }
}

/// Sign-in by password: `/auth/login`, the password grant, the sign-in page.
impl From<LoginError> for Problem {
    fn from(e: LoginError) -> Self {
        let message = e.to_string();
        match e {
            LoginError::InvalidCredentials => {
                Problem::new(Class::Unauthenticated, "invalid_credentials", message)
            }
            LoginError::AccountDisabled => Problem::new(Class::Forbidden, "account_disabled", message),
            LoginError::AccountBanned { until: Some(t) } => Problem::new(
                Class::Forbidden,
                "account_banned",
                format!("this account is banned until {}", t.format("%Y-%m-%dT%H:%M:%SZ")),
            ),
            LoginError::AccountBanned { until: None } => {
                Problem::new(Class::Forbidden, "account_banned", message)
            }
            LoginError::Busy => Problem::busy(message),
            LoginError::RateLimited { retry_after } => {
                Problem::new(Class::Throttled { retry_after }, "rate_limited", message)
            }
            LoginError::ScopeNotAllowed(_) => {
                Problem::new(Class::Invalid, "invalid_scope", message).oauth(ErrorCode::InvalidScope)
            }
            LoginError::MfaRequired(_) => {
                Problem::new(Class::Unauthenticated, "mfa_required", message).oauth(ErrorCode::MfaRequired)
            }
            LoginError::MfaEnrolmentRequired => {
                Problem::new(Class::Forbidden, "mfa_enrolment_required", message)
                    .oauth(ErrorCode::MfaEnrolmentRequired)
            }
            LoginError::Internal(i) => Problem::internal(i),
        }
    }
}

/// The second step of a sign-in, and second-factor enrolment.
impl From<MfaError> for Problem {
    fn from(e: MfaError) -> Self {
        let message = e.to_string();
        match e {
            MfaError::InvalidTicket => Problem::new(Class::Unauthenticated, "invalid_mfa_token", message),
            MfaError::WrongAnswer => Problem::new(Class::Unauthenticated, "invalid_second_factor", message),
            MfaError::NotOffered => Problem::new(Class::Invalid, "factor_not_available", message),
            MfaError::Locked { retry_after } => {
                Problem::new(Class::Throttled { retry_after }, "mfa_locked", message)
            }
            MfaError::RateLimited { retry_after } => {
                Problem::new(Class::Throttled { retry_after }, "rate_limited", message)
            }
            MfaError::AccountUnavailable => Problem::new(Class::Forbidden, "account_unavailable", message),
            MfaError::PasskeysUnavailable(_) => Problem::new(Class::Invalid, "passkeys_unavailable", message),
            MfaError::Invalid(_) => Problem::new(Class::Invalid, "validation_failed", message),
            MfaError::ReauthenticationRequired(_) => {
                Problem::new(Class::Forbidden, "reauthentication_required", message)
            }
            MfaError::TotpExists | MfaError::PasskeyExists => {
                Problem::new(Class::Conflict, "factor_exists", message)
            }
            MfaError::NotFound => Problem::new(Class::NotFound, "not_found", message),
            MfaError::NoFactor => Problem::new(Class::Invalid, "no_factor", message),
            MfaError::Internal(i) => Problem::internal(i),
        }
    }
}

/// `POST /auth/password`: a wrong current password is a refusal of an
/// authenticated user (403), not a failed authentication (401).
impl From<PasswordChangeError> for Problem {
    fn from(e: PasswordChangeError) -> Self {
        match e {
            PasswordChangeError::WrongCurrentPassword => {
                Problem::new(Class::Forbidden, "invalid_credentials", e.to_string())
            }
            PasswordChangeError::Login(e) => e.into(),
        }
    }
}

/// Refresh: `/auth/refresh` and the refresh-token grant.
impl From<RefreshFlowError> for Problem {
    fn from(e: RefreshFlowError) -> Self {
        let message = e.to_string();
        match e {
            RefreshFlowError::Refresh(RefreshError::Internal(i)) | RefreshFlowError::Internal(i) => {
                Problem::internal(i)
            }
            RefreshFlowError::Refresh(RefreshError::Reused { .. }) => {
                Problem::new(Class::Unauthenticated, "refresh_token_reused", message)
            }
            RefreshFlowError::Refresh(RefreshError::ContextChanged { .. }) => {
                Problem::new(Class::Unauthenticated, "session_context_changed", message)
            }
            RefreshFlowError::Refresh(RefreshError::ScopeWidened) => {
                Problem::new(Class::Invalid, "invalid_scope", message).oauth(ErrorCode::InvalidScope)
            }
            RefreshFlowError::Refresh(
                RefreshError::Invalid | RefreshError::Revoked | RefreshError::Expired,
            )
            | RefreshFlowError::ScopeWithdrawn => {
                Problem::new(Class::Unauthenticated, "invalid_refresh_token", message)
            }
            RefreshFlowError::AccountUnavailable => {
                Problem::new(Class::Unauthenticated, "account_unavailable", message)
            }
            RefreshFlowError::MfaRequired => Problem::new(Class::Unauthenticated, "login_required", message),
        }
    }
}

/// A bearer access token presented to latchkey's own API.
impl From<BearerError> for Problem {
    fn from(e: BearerError) -> Self {
        match e {
            BearerError::Internal(i) => Problem::internal(i),
            other => Problem::new(Class::Unauthenticated, "invalid_token", other),
        }
    }
}

/// Self-service registration.
impl From<RegisterError> for Problem {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::UsernameTaken => Problem::new(Class::Conflict, "username_taken", e),
            RegisterError::Hashing(h) => h.into(),
            RegisterError::Internal(i) => Problem::internal(i),
        }
    }
}

/// The admin API's user and session management.
impl From<AdminError> for Problem {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::UserNotFound | AdminError::SessionNotFound => {
                Problem::new(Class::NotFound, "not_found", e)
            }
            AdminError::SelfAction(_) => Problem::new(Class::Forbidden, "self_action", e),
            AdminError::Invalid(_) => Problem::new(Class::Invalid, "validation_failed", e),
            AdminError::Busy => Problem::busy(e),
            AdminError::UsernameTaken => Problem::new(Class::Conflict, "username_taken", e),
            AdminError::TargetIsAdmin => Problem::new(Class::Forbidden, "target_is_admin", e),
            AdminError::RoleNotGrantable(_) => Problem::new(Class::Forbidden, "role_not_grantable", e),
            AdminError::Internal(i) => Problem::internal(i),
        }
    }
}

/// Accepting an invitation an admin created.
impl From<InvitationError> for Problem {
    fn from(e: InvitationError) -> Self {
        match e {
            InvitationError::Invalid => Problem::new(Class::Invalid, "invalid_invitation", e),
            InvitationError::Busy => Problem::busy(e),
            InvitationError::Internal(i) => Problem::internal(i),
        }
    }
}

/// Client registration and management (RFC 7591 §3.2.2 codes).
impl From<ClientError> for Problem {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::InvalidRedirectUri(_) => Problem::new(Class::Invalid, "invalid_redirect_uri", e),
            ClientError::InvalidMetadata(_) => Problem::new(Class::Invalid, "invalid_client_metadata", e),
            ClientError::NotFound => Problem::new(Class::NotFound, "not_found", e),
            ClientError::Internal(i) => Problem::internal(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same refusal gets the same meaning on both kinds of endpoint.
    #[test]
    fn a_refusal_keeps_its_meaning_on_the_oauth_endpoints() {
        let cases: Vec<(Problem, &str, ErrorCode)> = vec![
            (LoginError::InvalidCredentials.into(), "invalid_credentials", ErrorCode::InvalidGrant),
            (LoginError::AccountDisabled.into(), "account_disabled", ErrorCode::InvalidGrant),
            (LoginError::Busy.into(), "temporarily_unavailable", ErrorCode::TemporarilyUnavailable),
            (
                LoginError::RateLimited { retry_after: 3 }.into(),
                "rate_limited",
                ErrorCode::TemporarilyUnavailable,
            ),
            (LoginError::ScopeNotAllowed("x".into()).into(), "invalid_scope", ErrorCode::InvalidScope),
            (RefreshFlowError::ScopeWithdrawn.into(), "invalid_refresh_token", ErrorCode::InvalidGrant),
            (
                RefreshFlowError::Refresh(RefreshError::ScopeWidened).into(),
                "invalid_scope",
                ErrorCode::InvalidScope,
            ),
            (RefreshFlowError::AccountUnavailable.into(), "account_unavailable", ErrorCode::InvalidGrant),
            (RefreshFlowError::MfaRequired.into(), "login_required", ErrorCode::InvalidGrant),
            (
                RefreshFlowError::Refresh(RefreshError::ContextChanged {
                    family_id: uuid::Uuid::nil(),
                    user_id: uuid::Uuid::nil(),
                    change: Box::new(crate::refresh::context::ContextChange {
                        previous_ip: None,
                        ip: None,
                        previous_agent: None,
                        agent: None,
                        network_changed: true,
                        agent_changed: false,
                    }),
                })
                .into(),
                "session_context_changed",
                ErrorCode::InvalidGrant,
            ),
        ];
        for (problem, code, oauth) in cases {
            assert_eq!(problem.code, code);
            assert_eq!(problem.oauth_code(), oauth, "{code}");
        }
    }

    #[test]
    fn a_ban_with_an_end_says_when() {
        let until = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let p = Problem::from(LoginError::AccountBanned { until: Some(until) });
        assert_eq!(p.message, "this account is banned until 2027-01-15T08:00:00Z");
        assert!(matches!(p.class, Class::Forbidden));
    }

    #[test]
    fn internal_detail_never_reaches_the_message() {
        let p = Problem::from(LoginError::Internal(Internal(anyhow::anyhow!("password=hunter2 at db"))));
        assert_eq!(p.message, "an unexpected error occurred");
        assert_eq!(p.oauth_code(), ErrorCode::ServerError);
    }
}
