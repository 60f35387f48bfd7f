//! Cookie mode for `/auth/*`: the refresh token in an `HttpOnly` cookie.
//!
//! A browser app that asks for `"token_delivery": "cookie"` on
//! `POST /auth/login` gets the access token in the JSON body (kept in memory)
//! and the refresh token as a cookie script cannot read, so an XSS bug can
//! steal at most a short-lived access token. `POST /auth/refresh` and
//! `POST /auth/logout` with `"token_delivery": "cookie"` read the token from
//! the cookie; rotation and reuse detection are exactly those of body mode.
//!
//! **The cookie.** `lk_refresh` over http (development), `__Secure-lk_refresh`
//! when the issuer is https, with `Path=/auth; HttpOnly; SameSite=Strict`,
//! `Secure` over https, and `Max-Age` = the refresh-token lifetime.
//! - `Path=/auth` is the narrowest path that covers both `/auth/refresh` and
//!   `/auth/logout`, so the cookie never travels to `/oauth/*`, `/admin/*` or
//!   to other applications on the same host. The `__Host-` prefix would also
//!   forbid a `Domain` attribute, but it requires `Path=/`, which would send
//!   the cookie everywhere; `__Secure-` keeps the path narrow and still makes
//!   the browser refuse the cookie unless it was set over https with `Secure`.
//! - `SameSite=Strict`: the browser sends the cookie only on requests from
//!   the same site (registrable domain), which is also why cookie mode needs
//!   the app and latchkey to be same-site (`app.example.com` and
//!   `id.example.com`).
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
//! Cookie tossing: a page on a sibling subdomain can set a cookie with the
//! same name for the parent domain. Such a cookie is sent next to the real
//! one, so a refresh that finds the name twice is refused rather than guess
//! (see [`CookieRequest::refresh_token`]).

use std::time::Duration;

use poem::http::{HeaderValue, Method, header};
use poem::{Endpoint, FromRequest, IntoResponse, Request, RequestBody, Response};

use super::error::ApiError;
use crate::state::AppState;

/// The cookie's name over http (development).
pub const COOKIE_NAME: &str = "lk_refresh";
/// The cookie's name when the issuer is https.
pub const SECURE_COOKIE_NAME: &str = "__Secure-lk_refresh";
/// The narrowest path covering `/auth/refresh` and `/auth/logout`.
pub const COOKIE_PATH: &str = "/auth";

fn is_https(issuer: &str) -> bool {
    issuer.starts_with("https://")
}

/// The cookie name for this issuer.
pub fn cookie_name(issuer: &str) -> &'static str {
    if is_https(issuer) { SECURE_COOKIE_NAME } else { COOKIE_NAME }
}

/// `Set-Cookie` carrying a refresh token.
pub fn set_cookie(issuer: &str, token: &str, max_age: Duration) -> String {
    let secure = if is_https(issuer) { "; Secure" } else { "" };
    format!(
        "{}={token}; Path={COOKIE_PATH}; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        cookie_name(issuer),
        max_age.as_secs()
    )
}

/// `Set-Cookie` that deletes the refresh cookie.
pub fn clear_cookie(issuer: &str) -> String {
    set_cookie(issuer, "", Duration::ZERO)
}

/// Every value of cookie `name` in the `Cookie` header lines.
fn cookie_values<'a>(
    lines: impl IntoIterator<Item = &'a HeaderValue> + 'a,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    lines.into_iter().filter_map(|line| line.to_str().ok()).flat_map(|line| line.split(';')).filter_map(
        move |pair| {
            let (n, v) = pair.trim().split_once('=')?;
            (n == name).then_some(v.trim_matches('"'))
        },
    )
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
    let own = url::Url::parse(state.issuer()).map(|u| u.origin().ascii_serialization());
    match own {
        Ok(own) if own.as_bytes() == origin.as_bytes() => Ok(()),
        _ => Err(refused()),
    }
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
        cookie_values(&self.cookies, cookie_name(state.issuer())).filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use poem::http::HeaderMap;

    use super::*;

    #[test]
    fn the_cookie_is_narrow_httponly_strict_and_secure_over_https() {
        let week = Duration::from_secs(604_800);
        assert_eq!(
            set_cookie("http://127.0.0.1:8080", "tok", week),
            "lk_refresh=tok; Path=/auth; Max-Age=604800; HttpOnly; SameSite=Strict"
        );
        assert_eq!(
            set_cookie("https://id.example.com", "tok", week),
            "__Secure-lk_refresh=tok; Path=/auth; Max-Age=604800; HttpOnly; SameSite=Strict; Secure"
        );
        assert_eq!(
            clear_cookie("https://id.example.com"),
            "__Secure-lk_refresh=; Path=/auth; Max-Age=0; HttpOnly; SameSite=Strict; Secure"
        );
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
