//! CSRF protection for latchkey's own HTML forms: the sign-in form, the
//! "Continue as …" confirmation and the sign-out confirmation. All three
//! POST go through [`check`], one pure function of what the request carries.
//!
//! # Two layers
//!
//! 1. **A signed double-submit token, always required.** The CSRF cookie is
//!    minted by the server: `r.HMAC(k, "cookie" ‖ r)`, with `r` 128 random
//!    bits. A value the server did not mint is refused. The form carries
//!    `HMAC(k, "form" ‖ r)`. A page on another origin can read neither the
//!    cookie nor our page, and cannot compute the MAC.
//! 2. **Where the request came from (`Origin`, `Sec-Fetch-Site`), when the
//!    browser says.** The token alone does not stop a *sibling* origin on
//!    the same site (`evil.example.com` next to `id.example.com`, or another
//!    port on the same host): it can visit latchkey itself, obtain a valid
//!    cookie and token pair, plant the cookie in the victim's browser (cookie
//!    tossing; `__Host-` prevents that only over https) and post the form —
//!    login CSRF into the attacker's account, or an unwanted sign-out.
//!    (Cookies ignore ports: in development on loopback, every local port
//!    even receives our cookies. Production puts latchkey on its own host.)
//!
//! The cookies are `SameSite=Lax`: the session cookie must reach
//! `GET /oauth/authorize` when a client (another site) sends the browser
//! there, and the form POST is same-origin, so Lax cookies go with it.
//!
//! # What browsers send on our form POST
//!
//! Chromium (seen with version 156 over the DevTools protocol), Firefox
//! (≥ 90) and Safari (≥ 16.4) submitting our own form, the user pressing
//! "Sign in", send:
//!
//! ```text
//! Origin: http://127.0.0.1:8080              the issuer's origin
//! Sec-Fetch-Site: same-origin
//! Sec-Fetch-Mode: navigate
//! Sec-Fetch-Dest: document
//! Sec-Fetch-User: ?1
//! Referer: http://127.0.0.1:8080/oauth/authorize?response_type=code&…
//! Content-Type: application/x-www-form-urlencoded
//! Cookie: lk_csrf=…; lk_session=…            (the session only if signed in)
//! Cache-Control: max-age=0
//! Upgrade-Insecure-Requests: 1
//! ```
//!
//! The request that follows our 303 to the client carries neither `Origin`
//! nor `Referer`.
//!
//! **`Origin`** is sent on every POST by current browsers, but it is the
//! string `null` in several cases (Fetch, "serializing a request origin"):
//! when the *requesting page's* referrer policy is `no-referrer`; under
//! `same-origin` when the request is cross-origin; under the `strict-*`
//! policies and `no-referrer-when-downgrade` from https to http; from
//! sandboxed iframes, `data:` URLs and other opaque origins; and after a
//! cross-origin redirect. Our pages used to be served with
//! `Referrer-Policy: no-referrer` (a proxy may still add it), so Chromium
//! posted our own form with `Origin: null` and this check refused it. The
//! pages now say `Referrer-Policy: same-origin`: our own POST carries the
//! real origin, and nothing leaving latchkey carries a `Referer` (the 303
//! back to the client keeps the default `no-referrer`, so the authorization
//! request in our URLs, `state` included, never leaks to another site). Because the policy is the *requesting* page's,
//! an attacker's page chooses it, and a sandboxed iframe gives `null` at
//! will: **`null` alone proves nothing.** It is accepted only together
//! with `Sec-Fetch-Site: same-origin`.
//!
//! **`Sec-Fetch-Site`** is computed by the browser from the initiator's
//! origin over the whole redirect chain, and, like every `Sec-` header,
//! cannot be set by a page. `same-origin` therefore means one of our own
//! pages; `none` a user-initiated navigation (address bar, bookmark). Both
//! pass. `same-site` (a sibling origin) and `cross-site` are refused, as is
//! any value the spec does not define. An opaque origin (sandboxed iframe)
//! is never `same-origin` with us.
//!
//! **`Referer`** is not consulted. Under `no-referrer` it is absent, under
//! `origin`/`strict-origin` it is only the origin (which `Origin` already
//! gives), and privacy settings and extensions strip it. An attacker's page
//! chooses its own policy, so a missing `Referer` cannot be refused, and a
//! present one adds nothing that `Origin` does not.
//!
//! **Absent headers**: Safari before 16.4 sends no `Sec-Fetch-*`; very old
//! browsers, and every non-browser client (tests, scripts), send neither
//! header. An attacker's page in a current browser cannot make its POST omit
//! `Origin`, so absence is not a way around the check: the token decides.
//!
//! | `Sec-Fetch-Site` | `Origin` | before the token check |
//! |---|---|---|
//! | `same-site`, `cross-site`, unknown | any | refused |
//! | `same-origin`, `none`, absent | the issuer's | passes |
//! | `same-origin` | `null` | passes |
//! | `none`, absent | `null` | refused |
//! | any | another origin | refused |
//! | `same-origin`, `none`, absent | absent | passes |
//!
//! Compared with the check before it, this refuses everything that one
//! refused, and more (`same-site`, unknown values); the only newly accepted
//! request is `Origin: null` with `Sec-Fetch-Site: same-origin`, which only
//! our own pages can produce, and which still needs the token.
//!
//! Not used: CSP `form-action 'self'`. Chromium applies `form-action` to the
//! redirects that follow a submission, so it would block the 303 to the client.

use crate::crypto;

/// What a POST carries that bears on CSRF. Header values that are not
/// visible ASCII should be passed as `Some("")`: present, and wrong.
#[derive(Clone, Copy, Debug, Default)]
pub struct Submission<'a> {
    /// The `Origin` header.
    pub origin: Option<&'a str>,
    /// The `Sec-Fetch-Site` header.
    pub sec_fetch_site: Option<&'a str>,
    /// The CSRF cookie's value.
    pub cookie: Option<&'a str>,
    /// The form's `csrf_token` field.
    pub form_token: Option<&'a str>,
}

/// Why a submission was refused (for the log; the user sees one message).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("Sec-Fetch-Site is not same-origin or none")]
    OtherSite,
    #[error("Origin is not the issuer's")]
    ForeignOrigin,
    #[error("Origin is null without Sec-Fetch-Site: same-origin")]
    UnprovenNullOrigin,
    #[error("no CSRF cookie minted by this server")]
    NoCookie,
    #[error("the form's CSRF token is missing or does not match the cookie")]
    BadToken,
}

/// Is this POST a genuine submission of one of our forms? `key` is the
/// CSRF MAC key; `issuer_origin` the serialized origin of the issuer
/// (`scheme://host[:port]`).
pub fn check(key: &[u8], issuer_origin: &str, s: &Submission<'_>) -> Result<(), Refusal> {
    let same_origin_fetch = match s.sec_fetch_site {
        Some("same-origin") => true,
        None | Some("none") => false,
        Some(_) => return Err(Refusal::OtherSite),
    };
    match s.origin {
        None => {}
        // A tuple origin always has a scheme separator; never compare with
        // an opaque ("null") or empty issuer origin.
        Some(origin) if origin == issuer_origin && issuer_origin.contains("://") => {}
        Some("null") if same_origin_fetch => {}
        Some("null") => return Err(Refusal::UnprovenNullOrigin),
        Some(_) => return Err(Refusal::ForeignOrigin),
    }
    let random = s.cookie.and_then(|c| minted(key, c)).ok_or(Refusal::NoCookie)?;
    let token = s.form_token.ok_or(Refusal::BadToken)?;
    if crypto::constant_time_eq(form_token(key, random).as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::BadToken)
    }
}

/// The serialized origin of the issuer URL (what browsers send as `Origin`).
pub fn issuer_origin(issuer: &str) -> String {
    url::Url::parse(issuer).map(|u| u.origin().ascii_serialization()).unwrap_or_default()
}

fn mac(key: &[u8], label: &[u8], random: &str) -> String {
    crypto::b64url(&crypto::hmac_sha256(key, &[label, b"|", random.as_bytes()]))
}

/// A new CSRF cookie value (`random.MAC`).
pub fn mint_cookie(key: &[u8]) -> String {
    let random = crypto::random_token::<16>();
    let mac = mac(key, b"cookie", &random);
    format!("{random}.{mac}")
}

/// The random part of a CSRF cookie this server minted.
pub fn minted<'c>(key: &[u8], cookie: &'c str) -> Option<&'c str> {
    let (random, tag) = cookie.split_once('.')?;
    crypto::constant_time_eq(mac(key, b"cookie", random).as_bytes(), tag.as_bytes()).then_some(random)
}

/// The form token that goes with a cookie's random part.
pub fn form_token(key: &[u8], random: &str) -> String {
    mac(key, b"form", random)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const ISSUER: &str = "https://id.example.com";

    /// A genuine cookie and form token, with the given headers.
    fn check_with(origin: Option<&str>, sec_fetch_site: Option<&str>) -> Result<(), Refusal> {
        let cookie = mint_cookie(KEY);
        let token = form_token(KEY, minted(KEY, &cookie).unwrap());
        let s = Submission { origin, sec_fetch_site, cookie: Some(&cookie), form_token: Some(&token) };
        check(KEY, ISSUER, &s)
    }

    #[test]
    fn what_browsers_send_for_our_own_form_passes() {
        // Chromium, Firefox, Safari under our `same-origin` policy.
        assert_eq!(check_with(Some(ISSUER), Some("same-origin")), Ok(()));
        // Our page behind a proxy that adds `Referrer-Policy: no-referrer`.
        assert_eq!(check_with(Some("null"), Some("same-origin")), Ok(()));
        // A user-initiated navigation.
        assert_eq!(check_with(Some(ISSUER), Some("none")), Ok(()));
        // Safari before 16.4: Origin, no fetch metadata.
        assert_eq!(check_with(Some(ISSUER), None), Ok(()));
        // Old browsers and non-browser clients: the token decides.
        assert_eq!(check_with(None, None), Ok(()));
        assert_eq!(check_with(None, Some("same-origin")), Ok(()));
    }

    #[test]
    fn other_origins_are_refused_even_with_a_valid_token() {
        assert_eq!(check_with(Some("https://evil.example"), Some("cross-site")), Err(Refusal::OtherSite));
        assert_eq!(check_with(Some("https://evil.example"), None), Err(Refusal::ForeignOrigin));
        // A sibling origin on the same site (cookie tossing).
        assert_eq!(check_with(Some("https://app.example.com"), Some("same-site")), Err(Refusal::OtherSite));
        assert_eq!(check_with(Some("https://app.example.com"), None), Err(Refusal::ForeignOrigin));
        assert_eq!(check_with(None, Some("same-site")), Err(Refusal::OtherSite));
        assert_eq!(check_with(None, Some("cross-site")), Err(Refusal::OtherSite));
        // Another port or scheme is another origin.
        assert_eq!(check_with(Some("https://id.example.com:8443"), None), Err(Refusal::ForeignOrigin));
        assert_eq!(
            check_with(Some("http://id.example.com"), Some("same-origin")),
            Err(Refusal::ForeignOrigin)
        );
        // Unknown or unreadable values.
        assert_eq!(check_with(Some(ISSUER), Some("same-origin, cross-site")), Err(Refusal::OtherSite));
        assert_eq!(check_with(Some(ISSUER), Some("")), Err(Refusal::OtherSite));
        assert_eq!(check_with(Some(""), Some("same-origin")), Err(Refusal::ForeignOrigin));
    }

    #[test]
    fn a_null_origin_needs_same_origin_fetch_metadata() {
        // A sandboxed iframe or a no-referrer page elsewhere produces null at will.
        assert_eq!(check_with(Some("null"), Some("cross-site")), Err(Refusal::OtherSite));
        assert_eq!(check_with(Some("null"), Some("same-site")), Err(Refusal::OtherSite));
        assert_eq!(check_with(Some("null"), None), Err(Refusal::UnprovenNullOrigin));
        assert_eq!(check_with(Some("null"), Some("none")), Err(Refusal::UnprovenNullOrigin));
    }

    #[test]
    fn the_token_is_always_required() {
        let cookie = mint_cookie(KEY);
        let random = minted(KEY, &cookie).unwrap();
        let token = form_token(KEY, random);
        let headers =
            Submission { origin: Some(ISSUER), sec_fetch_site: Some("same-origin"), ..Default::default() };
        // No cookie, no token, a forged token, a token for another cookie.
        assert_eq!(
            check(KEY, ISSUER, &Submission { form_token: Some(&token), ..headers }),
            Err(Refusal::NoCookie)
        );
        assert_eq!(
            check(KEY, ISSUER, &Submission { cookie: Some(&cookie), ..headers }),
            Err(Refusal::BadToken)
        );
        let forged = Submission { cookie: Some(&cookie), form_token: Some("forged"), ..headers };
        assert_eq!(check(KEY, ISSUER, &forged), Err(Refusal::BadToken));
        let other = form_token(KEY, minted(KEY, &mint_cookie(KEY)).unwrap());
        let swapped = Submission { cookie: Some(&cookie), form_token: Some(&other), ..headers };
        assert_eq!(check(KEY, ISSUER, &swapped), Err(Refusal::BadToken));
        // A cookie the server did not mint, or minted under another key.
        let planted =
            Submission { cookie: Some("AAAAAAAAAAAAAAAAAAAAAA"), form_token: Some(&token), ..headers };
        assert_eq!(check(KEY, ISSUER, &planted), Err(Refusal::NoCookie));
        let other_key = mint_cookie(b"another key, another deployment!");
        let foreign = Submission { cookie: Some(&other_key), form_token: Some(&token), ..headers };
        assert_eq!(check(KEY, ISSUER, &foreign), Err(Refusal::NoCookie));
        // The genuine pair.
        let genuine = Submission { cookie: Some(&cookie), form_token: Some(&token), ..headers };
        assert_eq!(check(KEY, ISSUER, &genuine), Ok(()));
    }

    #[test]
    fn an_opaque_issuer_origin_never_matches() {
        let cookie = mint_cookie(KEY);
        let token = form_token(KEY, minted(KEY, &cookie).unwrap());
        for (issuer, origin) in [("null", "null"), ("", "")] {
            let s = Submission {
                origin: Some(origin),
                sec_fetch_site: None,
                cookie: Some(&cookie),
                form_token: Some(&token),
            };
            assert!(check(KEY, issuer, &s).is_err(), "{issuer:?}");
        }
    }

    #[test]
    fn the_issuer_origin_is_what_browsers_send() {
        assert_eq!(issuer_origin("https://id.example.com"), "https://id.example.com");
        assert_eq!(issuer_origin("https://id.example.com:443/"), "https://id.example.com");
        assert_eq!(issuer_origin("http://127.0.0.1:8080/"), "http://127.0.0.1:8080");
        assert_eq!(issuer_origin("https://example.com/idp"), "https://example.com");
    }
}
