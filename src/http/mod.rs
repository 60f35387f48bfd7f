//! The HTTP edge: routes, the OpenAPI document, middleware.
//!
//! Handlers translate: extract, call one service, map the result. Each API
//! group is a unit struct, so [`openapi_service`] builds the whole document
//! without a database (`latchkey openapi`, the freshness test).

pub mod admin;
pub mod auth;
pub mod authorize;
pub mod cookies;
pub mod cors;
pub mod error;
pub mod health;
pub mod html;
pub mod mfa;
pub mod middleware;
pub mod oauth;
pub mod origin;
pub mod payload;
pub mod revocations;
pub mod security;
pub mod validate;
pub mod well_known;

use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::{OpenApiService, Tags};

use crate::state::AppState;

#[derive(Tags)]
pub enum Tag {
    /// Discovery and public keys: everything relying services need.
    Discovery,
    /// OAuth 2.0 and OpenID Connect endpoints.
    #[oai(rename = "oauth")]
    OAuth,
    /// latchkey's JSON API for first-party apps.
    Auth,
    /// Administration (an admin's token with scope `latchkey:admin`; the
    /// `/admin/users*` endpoints also take a service's `latchkey:users` token).
    Admin,
    /// The revocation feed for relying services.
    Revocations,
    /// Liveness, readiness and metrics.
    Operations,
}

type Apis = (
    well_known::WellKnownApi,
    oauth::OAuthApi,
    authorize::AuthorizeApi,
    auth::AuthApi,
    auth::SessionsApi,
    mfa::MfaApi,
    admin::AdminApi,
    admin::AdminUsersApi,
    revocations::RevocationsApi,
    health::HealthApi,
);

/// The OpenAPI service. The document has no `servers` entry, so it is the
/// same for every deployment and can be committed.
pub fn openapi_service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            well_known::WellKnownApi,
            oauth::OAuthApi,
            authorize::AuthorizeApi,
            auth::AuthApi,
            auth::SessionsApi,
            mfa::MfaApi,
            admin::AdminApi,
            admin::AdminUsersApi,
            revocations::RevocationsApi,
            health::HealthApi,
        ),
        "latchkey",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "latchkey is a standalone identity provider. It signs RFC 9068 JWT access tokens with \
         asymmetric keys published at /.well-known/jwks.json, so services verify tokens offline. \
         Errors always have the `ErrorBody` shape.",
    )
    .license("Apache-2.0")
}

/// The OpenAPI document as pretty JSON, with a trailing newline.
pub fn spec_json() -> String {
    let mut spec = openapi_service().spec();
    spec.push('\n');
    spec
}

/// Metric labels for every documented route, plus the docs.
fn route_labels() -> crate::metrics::RouteLabels {
    let spec: serde_json::Value = serde_json::from_str(&openapi_service().spec()).unwrap_or_default();
    let mut templates: Vec<String> = spec
        .get("paths")
        .and_then(|p| p.as_object())
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    templates.extend(["/docs".to_owned(), "/openapi.json".to_owned()]);
    crate::metrics::RouteLabels::new(templates)
}

/// Every route, with middleware, ready to serve.
pub fn routes(state: AppState) -> impl Endpoint {
    let api = openapi_service();
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    let body_limit = state.settings.body_limit;
    let (log_state, guard_state, cors_state) = (state.clone(), state.clone(), state.clone());
    let labels = std::sync::Arc::new(route_labels());
    let hsts = middleware::hsts(state.issuer(), state.settings.hsts_max_age);
    Route::new()
        .nest("/", api)
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .around(move |ep, req| middleware::limit_body(ep, req, body_limit))
        // Outside the body limit: a cookie-carrying refresh from a foreign
        // origin is refused before its body is read.
        .around(move |ep, req| {
            let state = guard_state.clone();
            async move { cookies::guard(ep, req, &state).await }
        })
        .around(error::normalize_errors)
        // Outside the error mapping, so error responses carry CORS headers too.
        .around(move |ep, req| {
            let state = cors_state.clone();
            async move { cors::cors(ep, req, &state.settings).await }
        })
        .around(move |ep, req| {
            let hsts = hsts.clone();
            async move { middleware::default_headers(ep, req, hsts.as_ref()).await }
        })
        .around(move |ep, req| {
            let (state, labels) = (log_state.clone(), std::sync::Arc::clone(&labels));
            async move { middleware::access_log(ep, req, &state.metrics, &labels).await }
        })
        .data(state)
}

/// The metrics listener (`LATCHKEY_METRICS_LISTEN`): `GET /metrics` only.
pub fn metrics_routes(state: AppState) -> impl Endpoint {
    Route::new()
        .at("/metrics", poem::get(health::metrics_only))
        .around(error::normalize_errors)
        // A private plain-HTTP listener: no HSTS.
        .around(|ep, req| async move { middleware::default_headers(ep, req, None).await })
        .data(state)
}
