//! CORS: which pages on other origins may call which endpoints.
//!
//! A browser lets a script read a cross-origin response only when the
//! response names the script's origin (or `*`) in
//! `Access-Control-Allow-Origin`, and it sends cookies or reads a credentialed
//! response only when the response also says
//! `Access-Control-Allow-Credentials: true` — which the Fetch standard forbids
//! together with `*`. Requests a plain HTML form could not send (JSON bodies,
//! an `Authorization` header, `DELETE`) are first checked with a preflight
//! `OPTIONS` request. Endpoints fall into four classes ([`classify`]):
//!
//! | class | paths | policy |
//! |---|---|---|
//! | public documents | discovery, JWKS | `Access-Control-Allow-Origin: *`, never credentials |
//! | credentialed API | `/oauth/token`, `/oauth/revoke`, `/oauth/userinfo`, `/auth/*` | only origins in `LATCHKEY_CORS_ORIGINS` |
//! | admin | `/admin/*` | only origins in `LATCHKEY_ADMIN_CORS_ORIGINS`, without credentials (bearer only) |
//! | none | everything else (the sign-in page, introspection, the feed, operations) | no CORS headers |
//!
//! **Why `*` is safe for discovery and the JWKS.** They are public by design
//! (RFC 8414, RFC 7517): anyone may fetch them with `curl`, they depend on no
//! cookie or token, and `*` never comes with credentials, so a browser neither
//! sends cookies nor exposes anything that a server-side fetch would not. The
//! header is the same for every request, with or without `Origin`, so a shared
//! cache (the JWKS is `Cache-Control: public`) can serve one stored copy to
//! everyone without `Vary: Origin`.
//!
//! **Why credentials only with an exact origin.** Token, revoke, userinfo and
//! the JSON API hand out or act on a user's tokens and accept the cookie-mode
//! refresh cookie. Echoing an arbitrary `Origin` with credentials would let
//! any site read those responses, so only listed origins get
//! `Access-Control-Allow-Origin: <that origin>` with
//! `Access-Control-Allow-Credentials: true`; an unlisted origin gets no CORS
//! headers at all and its script cannot read the answer (nor send a
//! preflighted request). `WWW-Authenticate` and `Retry-After` are exposed so a
//! page can tell an expired token from a rate limit. The admin API is a
//! separate list, empty by default: a page allowed to sign users in is not
//! thereby allowed to administer them.
//!
//! **`Vary: Origin`.** On the credentialed classes the response depends on the
//! `Origin` header, so every response there (with or without `Origin`,
//! listed or not) says `Vary: Origin`. A cache then never replays one origin's
//! `Access-Control-Allow-Origin` to another. (These responses are `no-store`
//! as well; `Vary` costs nothing and keeps caches honest if that changes.)
//!
//! **Preflights** are answered here, because poem-openapi routes have no
//! `OPTIONS` operations: `204` with the allowed methods, the request headers
//! latchkey reads (`authorization, content-type`) and
//! `Access-Control-Max-Age` ([`PREFLIGHT_MAX_AGE`]), so a browser asks once
//! per ten minutes, not before every call. An unlisted origin's preflight gets
//! `204` without CORS headers, which the browser treats as a refusal.
//!
//! CORS protects responses, not requests: a "simple" cross-site request
//! (a form post) is still delivered. CSRF defences are therefore separate:
//! see [`super::cookies`] for cookie mode and the sign-in page for its form.
//!
//! Cost: the class is a few string comparisons on the path; the origin check
//! compares the header bytes with the configured strings, which are already in
//! the form browsers send (validated in `config`). Every added header value is
//! static or the request's own `Origin` value (a reference-counted copy), so
//! nothing is allocated per request beyond the header map entries themselves.

use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::config::Settings;

/// Seconds a browser may cache a preflight answer (`Access-Control-Max-Age`).
/// Short enough that removing an origin from the list takes effect quickly;
/// Chromium caps the value at two hours anyway.
pub const PREFLIGHT_MAX_AGE: &str = "600";

/// The request headers latchkey reads; anything else a page adds is refused.
const ALLOW_HEADERS: &str = "authorization, content-type";
/// Response headers a credentialed page may read beyond the safelisted ones.
const API_EXPOSE: &str = "www-authenticate, retry-after";
/// The JWKS `ETag`, for pages that revalidate it themselves...
const PUBLIC_EXPOSE: &str = "etag";
/// ...with `If-None-Match`, which is not CORS-safelisted.
const PUBLIC_ALLOW_HEADERS: &str = "if-none-match";

fn value(text: &'static str) -> HeaderValue {
    HeaderValue::from_static(text)
}

/// How an endpoint is exposed to pages on other origins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Public documents: `*`, no credentials.
    Public,
    /// Token, revoke, userinfo, `/auth/*`: listed origins, with credentials.
    Api,
    /// `/admin/*`: origins listed for the admin API, bearer tokens only.
    Admin,
    /// No CORS.
    None,
}

impl Class {
    /// The methods a preflight may ask for.
    fn methods(self) -> HeaderValue {
        match self {
            Class::Public => HeaderValue::from_static("GET, HEAD"),
            Class::Api => HeaderValue::from_static("GET, POST, DELETE"),
            Class::Admin | Class::None => HeaderValue::from_static("GET, POST, PATCH, DELETE"),
        }
    }

    /// The configured origins for a credentialed class.
    fn origins(self, settings: &Settings) -> &[String] {
        match self {
            Class::Api => &settings.cors_origins,
            Class::Admin => &settings.admin_cors_origins,
            Class::Public | Class::None => &[],
        }
    }
}

/// The class of a request path.
pub fn classify(path: &str) -> Class {
    match path {
        "/.well-known/openid-configuration" | "/.well-known/jwks.json" => Class::Public,
        "/oauth/token" | "/oauth/revoke" | "/oauth/userinfo" => Class::Api,
        _ if path.starts_with("/auth/") => Class::Api,
        _ if path == "/admin" || path.starts_with("/admin/") => Class::Admin,
        _ => Class::None,
    }
}

/// Whether `origin` is one of `allowed`, byte for byte.
pub fn is_listed(allowed: &[String], origin: &HeaderValue) -> bool {
    allowed.iter().any(|o| o.as_bytes() == origin.as_bytes())
}

/// Middleware: apply the policy of the path's [`Class`] and answer preflights.
pub async fn cors<E: Endpoint>(next: E, req: Request, settings: &Settings) -> poem::Result<Response> {
    let class = classify(req.uri().path());
    if class == Class::None {
        return next.call(req).await.map(IntoResponse::into_response);
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    let preflight = origin.is_some()
        && req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);

    if class == Class::Public {
        let mut resp = if preflight {
            let mut resp = StatusCode::NO_CONTENT.into_response();
            let h = resp.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, class.methods());
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value(PUBLIC_ALLOW_HEADERS));
            h.insert(header::ACCESS_CONTROL_MAX_AGE, value(PREFLIGHT_MAX_AGE));
            resp
        } else {
            call(next, req).await
        };
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value("*"));
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, value(PUBLIC_EXPOSE));
        return Ok(resp);
    }

    let allowed = origin.filter(|o| is_listed(class.origins(settings), o));
    let mut resp = if preflight {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        if allowed.is_some() {
            let h = resp.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, class.methods());
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value(ALLOW_HEADERS));
            h.insert(header::ACCESS_CONTROL_MAX_AGE, value(PREFLIGHT_MAX_AGE));
        }
        resp
    } else {
        call(next, req).await
    };
    let h = resp.headers_mut();
    h.append(header::VARY, value("origin"));
    if let Some(origin) = allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        // Credentials (cookies) only where cookie mode lives; the admin API
        // takes bearer tokens only.
        if class == Class::Api {
            h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, value("true"));
        }
        if !preflight {
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, value(API_EXPOSE));
        }
    }
    Ok(resp)
}

/// The inner response; an error becomes its response, so it gets CORS
/// headers too and the page can read why it failed.
async fn call<E: Endpoint>(next: E, req: Request) -> Response {
    match next.call(req).await {
        Ok(resp) => resp.into_response(),
        Err(err) => err.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_into_their_classes() {
        assert_eq!(classify("/.well-known/jwks.json"), Class::Public);
        assert_eq!(classify("/.well-known/openid-configuration"), Class::Public);
        for api in ["/oauth/token", "/oauth/revoke", "/oauth/userinfo", "/auth/login", "/auth/sessions/x"] {
            assert_eq!(classify(api), Class::Api, "{api}");
        }
        assert_eq!(classify("/admin/users"), Class::Admin);
        for none in [
            "/oauth/authorize",
            "/oauth/introspect",
            "/oauth/logout",
            "/revocations",
            "/metrics",
            "/authx",
            "/administrator",
            "/",
        ] {
            assert_eq!(classify(none), Class::None, "{none}");
        }
    }

    #[test]
    fn origins_match_exactly() {
        let allowed = vec!["https://app.example.com".to_owned()];
        assert!(is_listed(&allowed, &HeaderValue::from_static("https://app.example.com")));
        for other in ["https://app.example.com.evil.test", "http://app.example.com", "null", ""] {
            assert!(!is_listed(&allowed, &HeaderValue::from_static(other)), "{other}");
        }
    }
}
