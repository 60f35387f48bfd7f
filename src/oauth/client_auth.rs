//! Client authentication (RFC 6749 §2.3.1): `client_secret_basic`,
//! `client_secret_post`, or just `client_id` for public clients.
//!
//! A client uses exactly one method (§2.3) and the one it registered; any
//! failure is `invalid_client`, the same for an unknown client and a wrong
//! secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};

use super::OAuthError;
use crate::clients::{AuthMethod, OAuthClient};
use crate::crypto;
use crate::memory::Fresh;

/// What the request offered to authenticate the client.
#[derive(Clone, Debug, Default)]
pub struct PresentedCredentials {
    /// From `Authorization: Basic`.
    pub basic: Option<(String, String)>,
    /// `client_id` in the body.
    pub client_id: Option<String>,
    /// `client_secret` in the body.
    pub client_secret: Option<String>,
}

/// Decode `Authorization: Basic`, whose parts are form-urlencoded
/// (RFC 6749 §2.3.1). `None` for anything malformed.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| -> Option<String> {
        form_urlencoded::parse(format!("v={s}").as_bytes()).next().map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// Authenticate the client making a request, against the clients in
/// memory as of a round that began after the request ([`Fresh`]).
pub fn authenticate(
    fresh: &Fresh,
    now: DateTime<Utc>,
    presented: &PresentedCredentials,
) -> Result<OAuthClient, OAuthError> {
    let (client_id, secret, method) = match (&presented.basic, &presented.client_secret) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request("use exactly one client authentication method"));
        }
        (Some((id, secret)), None) => {
            if presented.client_id.as_ref().is_some_and(|body_id| body_id != id) {
                return Err(OAuthError::invalid_request("client_id does not match the Authorization header"));
            }
            (id.as_str(), Some(secret.as_str()), AuthMethod::ClientSecretBasic)
        }
        (None, Some(secret)) => {
            let id = presented.client_id.as_deref().ok_or_else(OAuthError::invalid_client)?;
            (id, Some(secret.as_str()), AuthMethod::ClientSecretPost)
        }
        (None, None) => {
            let id = presented.client_id.as_deref().ok_or_else(OAuthError::invalid_client)?;
            (id, None, AuthMethod::None)
        }
    };
    let Some(client) = fresh.client(client_id).filter(|c| !c.disabled) else {
        // The same work as a wrong secret, so timing does not tell which
        // client ids exist.
        if let Some(secret) = secret {
            let _ = crypto::constant_time_eq(&crypto::sha256(secret.as_bytes()), &[0; 32]);
        }
        return Err(OAuthError::invalid_client());
    };
    let ok = client.auth_method == method
        && match secret {
            Some(secret) => client.secret_matches(secret, now),
            None => !client.is_confidential(),
        };
    if ok { Ok(client) } else { Err(OAuthError::invalid_client()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%20client:s%3Acret%2B"));
        assert_eq!(parse_basic(&header), Some(("my client".into(), "s:cret+".into())));
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic(&format!("Basic {}", STANDARD.encode("nocolon"))), None);
    }
}
