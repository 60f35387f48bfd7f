//! Cookie mode for `/auth/*`: the refresh token in an `HttpOnly` cookie.
//!
//! A browser app that asks for `"token_delivery": "cookie"` on
//! `POST /auth/login` gets the access token in the JSON body (kept in memory)
//! and the refresh token as a cookie script cannot read: an XSS bug cannot
//! carry the session away (it can still act, and mint access tokens, while
//! the page is open and the user signed in). `POST /auth/refresh` and
//! `POST /auth/logout` with `"token_delivery": "cookie"` read the token from
//! the cookie; rotation and reuse detection are exactly those of body mode.
//!
//! **The cookie.** Over https (production) `__Host-lk_refresh` with
//! `Path=/; Secure; HttpOnly; SameSite=Strict`; over http (development)
//! `lk_refresh` with `Path=<issuer path>/auth; HttpOnly; SameSite=Strict`.
//! `Max-Age` is the refresh-token lifetime.
//! - Why `__Host-` and not the narrowest path: a page on a sibling subdomain
//!   (`evil.example.com`) can set a cookie with `Domain=example.com` and any
//!   path, and the browser sends it to latchkey beside the real one (cookie
//!   tossing: logging the victim into the attacker's session, or locking
//!   them out, since a `Domain` cookie cannot be deleted by a host-only
//!   `Set-Cookie`). The `__Host-` prefix makes the browser refuse any cookie
//!   of that name that has a `Domain` or was not set over https by latchkey's
//!   own host, and it requires `Path=/`. A narrow `Path=/auth` with
//!   `__Secure-` would keep the cookie off latchkey's other routes, but not
//!   stop tossing, and a path is no security boundary within one origin. So
//!   the cookie goes to every path of latchkey's own host and nowhere else;
//!   only `/auth/refresh` and `/auth/logout` read it.
//! - Over http (no prefix is possible) the path is the narrowest one that
//!   covers `/auth/refresh` and `/auth/logout`, under the issuer's path.
//! - `SameSite=Strict`: the browser sends the cookie only on requests from
//!   the same site (registrable domain), which is also why cookie mode needs
//!   the app and latchkey to be same-site (`app.example.com` and
//!   `id.example.com`).
//! - The admin scope is never delivered in cookie mode: every listed origin
//!   shares the cookie, and an admin session there would let script on any of
//!   them mint admin tokens (`LATCHKEY_ADMIN_CORS_ORIGINS` is the stricter list).
//!
//! **CSRF.** SameSite alone is not enough: "same site" includes every
//! subdomain and every port of the site, and older browsers ignore it. Two
//! independent defences, each sufficient against a cross-origin form:
//! 1. [`check_origin`]: a cookie-mode request must carry an `Origin` header
//!    naming an origin in `LATCHKEY_CORS_ORIGINS` or the issuer's own origin.
//!    Browsers always send `Origin` on cross-origin `POST`s and on every
//!    `fetch` `POST`, and a page cannot forge it. [`guard`] applies the same
//!    check to any `POST /auth/refresh` or `/auth/logout` that *carries* the
//!    cookie, before the body is read, so a same-site page sending a
//!    `no-cors` `text/plain` request is refused by the Origin check and not
//!    only by the content type.
//! 2. The request shape: the body must be `application/json`, which an HTML
//!    form cannot send and which a cross-origin `fetch` can only send after a
//!    CORS preflight that an unlisted origin fails.
//!
//! Cookie tossing over http (development, no prefix): a refresh that finds
//! the name twice is refused rather than guess
//! (see [`CookieRequest::refresh_token`]).

use std::time::Duration;

use poem::http::{HeaderValue, Method, header};
use poem::{Endpoint, FromRequest, IntoResponse, Request, RequestBody, Response};

use super::error::ApiError;
use crate::state::AppState;

/// The cookie's name over http (development).
pub const COOKIE_NAME: &str = "lk_refresh";
/// The cookie's name when the issuer is https.
pub const SECURE_COOKIE_NAME: &str = "__Host-lk_refresh";
/// A logout ends at most this many sessions found in cookies (a tossed one
/// beside ours); more is someone sending junk.
const MAX_LOGOUT_COOKIES: usize = 3;

fn is_https(issuer: &str) -> bool {
    issuer.starts_with("https://")
}

/// The cookie name for this issuer.
pub fn cookie_name(issuer: &str) -> &'static str {
    if is_https(issuer) { SECURE_COOKIE_NAME } else { COOKIE_NAME }
}

/// The cookie path: `/` for `__Host-` (https), else `<issuer path>/auth`.
fn cookie_path(issuer: &str) -> String {
    if is_https(issuer) {
        return "/".to_owned();
    }
    let path = url::Url::parse(issuer).map(|u| u.path().trim_end_matches('/').to_owned()).unwrap_or_default();
    format!("{path}/auth")
}

/// A `Set-Cookie` value: `HttpOnly`, and `Secure` when `secure`.
pub fn set_cookie_header(
    name: &str,
    value: &str,
    path: &str,
    same_site: &str,
    max_age: u64,
    secure: bool,
) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}")
}

/// `Set-Cookie` carrying a refresh token.
pub fn set_cookie(issuer: &str, token: &str, max_age: Duration) -> String {
    set_cookie_header(
        cookie_name(issuer),
        token,
        &cookie_path(issuer),
        "Strict",
        max_age.as_secs(),
        is_https(issuer),
    )
}

/// `Set-Cookie` that deletes the refresh cookie.
pub fn clear_cookie(issuer: &str) -> String {
    set_cookie(issuer, "", Duration::ZERO)
}

/// Every value of cookie `name` in the `Cookie` header lines. Works on bytes:
/// browsers send every cookie of the site in one line, and one non-ASCII
/// cookie of another application must not hide ours. Values that are not
/// UTF-8 are skipped.
pub fn cookie_values<'a>(
    lines: impl IntoIterator<Item = &'a HeaderValue> + 'a,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    lines.into_iter().flat_map(|line| line.as_bytes().split(|b| *b == b';')).filter_map(move |pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|b| *b == b'=')?;
        let (n, v) = pair.split_at(eq);
        if n.trim_ascii() != name.as_bytes() {
            return None;
        }
        let value = std::str::from_utf8(v.get(1..)?).ok()?.trim();
        Some(value.trim_matches('"'))
    })
}

/// The CSRF check of cookie mode: the request's `Origin` must be a listed
/// origin (`LATCHKEY_CORS_ORIGINS`) or the issuer's own. A missing `Origin`,
/// `null` (sandboxed frames, some redirects) and anything else is refused.
pub fn check_origin(state: &AppState, origin: Option<&HeaderValue>) -> Result<(), ApiError> {
    let refused = || {
        ApiError::origin_not_allowed(
            "cookie mode needs an Origin header naming an allowed origin (LATCHKEY_CORS_ORIGINS)",
        )
    };
    let origin = origin.ok_or_else(refused)?;
    if super::cors::is_listed(&state.settings.cors_origins, origin) {
        return Ok(());
    }
    if state.issuer_origin.as_bytes() == origin.as_bytes() {
        return Ok(());
    }
    Err(refused())
}

/// Middleware: a `POST /auth/refresh` or `/auth/logout` that carries the
/// refresh cookie must pass [`check_origin`] before its body is even read,
/// whatever its content type or `token_delivery`.
pub async fn guard<E: Endpoint>(next: E, req: Request, state: &AppState) -> poem::Result<Response> {
    let watched =
        req.method() == Method::POST && matches!(req.uri().path(), "/auth/refresh" | "/auth/logout");
    if watched
        && cookie_values(req.headers().get_all(header::COOKIE), cookie_name(state.issuer())).next().is_some()
    {
        if let Err(refused) = check_origin(state, req.headers().get(header::ORIGIN)) {
            return Ok(refused.into_response());
        }
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// What a cookie-mode handler needs from the request: `Origin` and `Cookie`.
pub struct CookieRequest {
    origin: Option<HeaderValue>,
    cookies: Vec<HeaderValue>,
}

impl<'a> FromRequest<'a> for CookieRequest {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let cookies = req.headers().get_all(header::COOKIE).iter().cloned().collect();
        Ok(CookieRequest { origin: req.headers().get(header::ORIGIN).cloned(), cookies })
    }
}

impl CookieRequest {
    /// [`check_origin`] for this request.
    pub fn check_origin(&self, state: &AppState) -> Result<(), ApiError> {
        check_origin(state, self.origin.as_ref())
    }

    /// The refresh token from the cookie, for a refresh. Missing, or present
    /// twice (a cookie tossed from a sibling subdomain next to ours), is an
    /// invalid refresh token.
    pub fn refresh_token(&self, state: &AppState) -> Result<&str, ApiError> {
        let mut values = cookie_values(&self.cookies, cookie_name(state.issuer()));
        match (values.next(), values.next()) {
            (Some(token), None) if !token.is_empty() => Ok(token),
            (None, _) | (Some(_), None) => Err(ApiError::unauthorized(
                "invalid_refresh_token",
                "cookie mode: the request carries no refresh cookie",
            )),
            (Some(_), Some(_)) => Err(ApiError::unauthorized(
                "invalid_refresh_token",
                "cookie mode: the request carries more than one refresh cookie",
            )),
        }
    }

    /// Every refresh token in the cookies, for a logout (ending a tossed
    /// session as well does no harm).
    pub fn all_refresh_tokens<'s>(&'s self, state: &AppState) -> impl Iterator<Item = &'s str> + 's {
        cookie_values(&self.cookies, cookie_name(state.issuer()))
            .filter(|v| !v.is_empty())
            .take(MAX_LOGOUT_COOKIES)
    }
}

#[cfg(test)]
mod tests {
    use poem::http::HeaderMap;

    use super::*;

    #[test]
    fn the_cookie_is_host_locked_over_https_and_narrow_over_http() {
        let week = Duration::from_secs(604_800);
        assert_eq!(
            set_cookie("http://127.0.0.1:8080", "tok", week),
            "lk_refresh=tok; Path=/auth; Max-Age=604800; HttpOnly; SameSite=Strict"
        );
        assert_eq!(
            set_cookie("http://127.0.0.1:8080/idp/", "tok", week),
            "lk_refresh=tok; Path=/idp/auth; Max-Age=604800; HttpOnly; SameSite=Strict"
        );
        assert_eq!(
            set_cookie("https://id.example.com", "tok", week),
            "__Host-lk_refresh=tok; Path=/; Max-Age=604800; HttpOnly; SameSite=Strict; Secure"
        );
        assert_eq!(
            clear_cookie("https://example.com/idp"),
            "__Host-lk_refresh=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure"
        );
    }

    #[test]
    fn a_non_ascii_cookie_of_another_application_does_not_hide_ours() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_bytes(b"pref=caf\xc3\xa9; lk_refresh=one; bad=\xff").unwrap(),
        );
        let found: Vec<&str> = cookie_values(headers.get_all(header::COOKIE), COOKIE_NAME).collect();
        assert_eq!(found, ["one"]);
    }

    #[test]
    fn cookie_values_are_found_by_exact_name_in_every_line() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; lk_refresh=one; xlk_refresh=no"));
        headers.append(header::COOKIE, HeaderValue::from_static("lk_refresh=\"two\""));
        let found: Vec<&str> = cookie_values(headers.get_all(header::COOKIE), COOKIE_NAME).collect();
        assert_eq!(found, ["one", "two"]);
        assert_eq!(cookie_values(headers.get_all(header::COOKIE), SECURE_COOKIE_NAME).count(), 0);
    }
}
