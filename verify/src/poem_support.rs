//! poem integration: an extractor and guards.
//!
//! ```no_run
//! use latchkey_verify::poem_support::{Authenticated, require_scope};
//! use poem::{handler, web::Json, EndpointExt, Route, get};
//!
//! #[handler]
//! async fn tasks(auth: Authenticated) -> poem::Result<Json<Vec<String>>> {
//!     require_scope(&auth.0, "tasks:read")?;
//!     Ok(Json(vec![auth.0.sub]))
//! }
//! # fn routes(verifier: latchkey_verify::Verifier) -> impl poem::Endpoint {
//! Route::new().at("/tasks", get(tasks)).data(verifier)
//! # }
//! ```
//!
//! The extractor reads `Authorization: Bearer …`, verifies it with the
//! [`Verifier`] in the request data and answers `401` with
//! `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3.1) when it
//! fails; the guards answer `403` with `error="insufficient_scope"`.

use poem::http::{StatusCode, header};
use poem::{FromRequest, IntoResponse, Request, RequestBody, Response};

use crate::claims::Claims;
use crate::verifier::Verifier;

/// A request with a verified latchkey access token.
pub struct Authenticated(pub Claims);

fn error_response(status: StatusCode, challenge: String, error: &str, description: &str) -> poem::Error {
    let body = serde_json::json!({ "error": error, "error_description": description }).to_string();
    let mut resp =
        Response::builder().status(status).content_type("application/json").body(body).into_response();
    if let Ok(value) = challenge.parse() {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    poem::Error::from_response(resp)
}

fn unauthorized(description: Option<&str>) -> poem::Error {
    match description {
        None => error_response(
            StatusCode::UNAUTHORIZED,
            "Bearer".into(),
            "unauthorized",
            "a bearer token is required",
        ),
        Some(d) => error_response(
            StatusCode::UNAUTHORIZED,
            format!("Bearer error=\"invalid_token\", error_description=\"{}\"", d.replace('"', "'")),
            "invalid_token",
            d,
        ),
    }
}

impl<'a> FromRequest<'a> for Authenticated {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let verifier = req.data::<Verifier>().ok_or_else(|| {
            poem::Error::from_string(
                "no latchkey Verifier in the request data",
                StatusCode::INTERNAL_SERVER_ERROR,
            )
        })?;
        let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = header
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| unauthorized(None))?;
        match verifier.verify(token).await {
            Ok(claims) => Ok(Authenticated(claims)),
            Err(e) => Err(unauthorized(Some(&e.to_string()))),
        }
    }
}

/// `403 insufficient_scope` unless the token has `scope`.
pub fn require_scope(claims: &Claims, scope: &str) -> poem::Result<()> {
    if claims.has_scope(scope) {
        return Ok(());
    }
    Err(error_response(
        StatusCode::FORBIDDEN,
        format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""),
        "insufficient_scope",
        &format!("this needs the {scope} scope"),
    ))
}

/// `401 insufficient_user_authentication` (RFC 9470) unless the user
/// signed in with a second factor (`amr` has `mfa`). The challenge names
/// `acr_values="urn:latchkey:acr:mfa"`: the client signs the user in again
/// with those `acr_values` (or at latchkey's `/auth/login`, which asks for
/// the second factor of a user who has one) and retries.
pub fn require_mfa(claims: &Claims) -> poem::Result<()> {
    if claims.has_mfa() {
        return Ok(());
    }
    Err(error_response(
        StatusCode::UNAUTHORIZED,
        "Bearer error=\"insufficient_user_authentication\", acr_values=\"urn:latchkey:acr:mfa\"".into(),
        "insufficient_user_authentication",
        "this needs a sign-in with a second factor",
    ))
}

/// `403 forbidden` unless the token's user has `role`.
pub fn require_role(claims: &Claims, role: &str) -> poem::Result<()> {
    if claims.has_role(role) {
        return Ok(());
    }
    Err(error_response(
        StatusCode::FORBIDDEN,
        "Bearer".into(),
        "forbidden",
        &format!("this needs the {role} role"),
    ))
}
