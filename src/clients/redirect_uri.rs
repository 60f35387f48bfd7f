//! Redirect URIs: validated at registration, matched exactly at use.
//!
//! RFC 6749 §3.1.2 and the Security BCP (RFC 9700 §4.1.1) ask for exact
//! string matching, so a URI is stored as registered and compared byte for
//! byte. Allowed at registration: `https` URLs; `http` only on loopback
//! hosts (development, native apps per RFC 8252 §7.3); private-use schemes
//! containing a dot (`com.example.app:/cb`, RFC 8252 §7.1). Never a fragment
//! (RFC 6749 §3.1.2), user info, or a scheme a browser would execute.

use url::Url;

pub const MAX_LEN: usize = 2000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectUri(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("redirect URI {0:?} is not an absolute URI")]
    NotAbsolute(String),
    #[error("redirect URI {0:?} must not contain a fragment")]
    Fragment(String),
    #[error("redirect URI {0:?} must not contain user info")]
    UserInfo(String),
    #[error("redirect URI {0:?} must use https (http is allowed for localhost only)")]
    Insecure(String),
    #[error("redirect URI {0:?} uses a forbidden scheme")]
    ForbiddenScheme(String),
    #[error("redirect URIs are at most {MAX_LEN} characters")]
    TooLong,
}

const FORBIDDEN_SCHEMES: &[&str] = &["javascript", "data", "vbscript", "file", "about", "blob", "filesystem"];

impl RedirectUri {
    pub fn parse(input: &str) -> Result<RedirectUri, RedirectUriError> {
        if input.len() > MAX_LEN {
            return Err(RedirectUriError::TooLong);
        }
        if input.contains('#') {
            return Err(RedirectUriError::Fragment(input.to_owned()));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(RedirectUriError::NotAbsolute(input.to_owned()));
        }
        let url = Url::parse(input).map_err(|_| RedirectUriError::NotAbsolute(input.to_owned()))?;
        // The URL parser repairs `https:///host` and `https:host`; exact
        // matching needs the string to be what it means.
        let after_scheme = input.get(url.scheme().len()..).unwrap_or_default();
        let web = matches!(url.scheme(), "http" | "https");
        if web && (!after_scheme.starts_with("://") || after_scheme.starts_with(":///")) {
            return Err(RedirectUriError::NotAbsolute(input.to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RedirectUriError::UserInfo(input.to_owned()));
        }
        match url.scheme() {
            "https" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(RedirectUriError::NotAbsolute(input.to_owned()));
                }
            }
            "http" => {
                let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
                if !loopback {
                    return Err(RedirectUriError::Insecure(input.to_owned()));
                }
            }
            scheme if FORBIDDEN_SCHEMES.contains(&scheme) => {
                return Err(RedirectUriError::ForbiddenScheme(input.to_owned()));
            }
            // RFC 8252 §7.1: private-use schemes are reverse domain names.
            scheme if scheme.contains('.') => {}
            _ => return Err(RedirectUriError::ForbiddenScheme(input.to_owned())),
        }
        Ok(RedirectUri(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Exact, byte-for-byte comparison.
    pub fn matches(&self, presented: &str) -> bool {
        self.0 == presented
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_the_usual_shapes() {
        for ok in [
            "https://app.example.com/callback",
            "https://app.example.com:8443/cb?x=1",
            "http://localhost:3000/cb",
            "http://127.0.0.1:8080/cb",
            "http://[::1]/cb",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(RedirectUri::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_dangerous_or_ambiguous_ones() {
        for bad in [
            "/relative",
            "https://app.example.com/cb#frag",
            "http://app.example.com/cb",
            "javascript:alert(1)",
            "data:text/html,hi",
            "https://user:pw@app.example.com/cb",
            "ftp://example.com/",
            "https:///nohost",
            "https:app.example.com/cb",
            "https://app.example.com/a b",
        ] {
            assert!(RedirectUri::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn matching_is_exact(suffix in "[a-z0-9/?=&._-]{0,40}") {
            let base = RedirectUri::parse("https://app.example.com/cb").unwrap();
            let presented = format!("https://app.example.com/cb{suffix}");
            prop_assert_eq!(base.matches(&presented), suffix.is_empty());
        }

        #[test]
        fn parsing_never_panics_and_never_accepts_fragments(input in "\\PC{0,80}") {
            if let Ok(uri) = RedirectUri::parse(&input) {
                prop_assert!(!uri.as_str().contains('#'));
                prop_assert!(!uri.as_str().starts_with("javascript"));
            }
        }
    }
}
