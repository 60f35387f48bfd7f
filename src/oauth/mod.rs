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
use crate::problem::{Class, Problem};

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
    /// The password was right; a second factor must follow (403, with an
    /// `mfa_token`).
    MfaRequired,
    /// The client or the user's role requires a second factor the user
    /// has not enrolled (403).
    MfaEnrolmentRequired,
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
            ErrorCode::MfaRequired => "mfa_required",
            ErrorCode::MfaEnrolmentRequired => "mfa_enrolment_required",
        }
    }
}

/// RFC 6749 §5.2 (also §4.1.2.1, RFC 7009 §2.2.1, RFC 6750 §3): the
/// characters an `error_description` may use, `%x20-21 / %x23-5B /
/// %x5D-7E`, printable ASCII without `"` and `\`.
pub fn is_description_char(c: char) -> bool {
    matches!(c, ' '..='~') && c != '"' && c != '\\'
}

/// The safety net for `error_description`: messages are written within
/// the RFC 6749 §5.2 character set and never echo input with `{:?}`; one
/// that still carries other characters is mended here rather than sent.
/// `"` becomes `'`, `\` becomes `/`, anything else outside the set
/// (control characters, non-ASCII) becomes `?`.
pub fn error_description(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if is_description_char(c) => c,
            _ => '?',
        })
        .collect()
}

/// An OAuth protocol error. Its description is always within the RFC 6749
/// §5.2 character set ([`error_description`] runs on construction), whether
/// it leaves as a JSON body or in an error redirect.
#[derive(Debug, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    pub code: ErrorCode,
    description: String,
    /// The cause of a `server_error`, for the log only.
    pub internal: Option<Internal>,
    /// Set when the request was throttled: answer 429 with `Retry-After`.
    pub retry_after: Option<u64>,
    /// `mfa_required`: the ticket to answer.
    pub mfa: Option<Box<crate::mfa::flow::Challenge>>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl AsRef<str>) -> Self {
        OAuthError {
            code,
            description: error_description(description.as_ref()),
            internal: None,
            retry_after: None,
            mfa: None,
        }
    }

    /// The `error_description`, within the RFC 6749 §5.2 character set.
    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn invalid_request(description: impl AsRef<str>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    pub fn invalid_grant(description: impl AsRef<str>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }

    pub fn invalid_client() -> Self {
        Self::new(ErrorCode::InvalidClient, "client authentication failed")
    }

    pub fn invalid_scope(description: impl AsRef<str>) -> Self {
        Self::new(ErrorCode::InvalidScope, description)
    }

    pub fn unauthorized_client(description: impl AsRef<str>) -> Self {
        Self::new(ErrorCode::UnauthorizedClient, description)
    }

    /// RFC 6749 has no rate-limit code: `temporarily_unavailable`, sent with
    /// status 429 and `Retry-After`.
    pub fn throttled(retry_after: u64, description: impl AsRef<str>) -> Self {
        OAuthError {
            retry_after: Some(retry_after),
            ..Self::new(ErrorCode::TemporarilyUnavailable, description)
        }
    }
}

impl From<Internal> for OAuthError {
    fn from(e: Internal) -> Self {
        if let Some(message) = e.unavailable() {
            e.log();
            return Self::new(ErrorCode::TemporarilyUnavailable, message);
        }
        OAuthError { internal: Some(e), ..Self::new(ErrorCode::ServerError, "an unexpected error occurred") }
    }
}

/// The OAuth endpoints' rendering of a classified domain error
/// ([`crate::problem`] holds the one mapping of each error).
impl From<Problem> for OAuthError {
    fn from(p: Problem) -> Self {
        let code = p.oauth_code();
        match p.class {
            Class::Internal(i) => i.into(),
            Class::Throttled { retry_after } => Self::throttled(retry_after, p.message),
            _ => Self::new(code, p.message),
        }
    }
}

impl From<LoginError> for OAuthError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::MfaRequired(challenge) => {
                let mut error = OAuthError::new(ErrorCode::MfaRequired, "a second factor is required");
                error.mfa = Some(challenge);
                error
            }
            other => Problem::from(other).into(),
        }
    }
}

impl From<crate::mfa::flow::MfaError> for OAuthError {
    fn from(e: crate::mfa::flow::MfaError) -> Self {
        Problem::from(e).into()
    }
}

impl From<RefreshFlowError> for OAuthError {
    fn from(e: RefreshFlowError) -> Self {
        Problem::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn descriptions_that_quote_values_are_mended() {
        assert_eq!(
            error_description(r#"unsupported grant_type "urn:x\y""#),
            "unsupported grant_type 'urn:x/y'"
        );
        assert_eq!(error_description("caf\u{e9}\n\u{0}!"), "caf???!");
        let plain = "the refresh token is invalid; retry in 5 seconds (see RFC 6749 §5.2)";
        assert_eq!(error_description(plain), plain.replace('§', "?"));
        let e = OAuthError::invalid_request("nonce \"\u{0}\" is bad");
        assert_eq!(e.description(), "nonce '?' is bad");
    }

    #[test]
    fn the_character_set_is_rfc_6749s() {
        let allowed: Vec<u32> = (0..=0x7f).filter(|&c| is_description_char(char::from(c as u8))).collect();
        let expected: Vec<u32> = (0x20..=0x21).chain(0x23..=0x5b).chain(0x5d..=0x7e).collect();
        assert_eq!(allowed, expected);
    }

    proptest! {
        #[test]
        fn any_text_comes_out_within_the_set(text in any::<String>()) {
            let out = error_description(&text);
            prop_assert!(out.chars().all(is_description_char));
            prop_assert_eq!(out.chars().count(), text.chars().count());
            if text.chars().all(is_description_char) {
                prop_assert_eq!(out, text);
            }
        }
    }
}
