//! `/.well-known/*`: discovery (OIDC Discovery 1.0 / RFC 8414) and the JWKS.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Header};

use super::Tag;
use super::payload::RawJson;
use crate::keys::KeyPurpose;
use crate::state::AppState;

/// A public JSON Web Key (RFC 7517 §4), as published.
#[derive(Object)]
#[oai(skip_serializing_if_is_none, rename = "Jwk")]
pub struct JwkDoc {
    /// Key type: `EC`, `OKP` or `RSA`.
    pub kty: String,
    /// Key id; a token's `kid` header selects the key.
    pub kid: String,
    /// The one algorithm this key signs with.
    pub alg: String,
    /// Always `sig`.
    #[oai(rename = "use")]
    pub use_: String,
    /// Curve (`P-256`, `Ed25519`) for EC and OKP keys.
    pub crv: Option<String>,
    pub x: Option<String>,
    pub y: Option<String>,
    /// RSA modulus.
    pub n: Option<String>,
    /// RSA exponent.
    pub e: Option<String>,
}

/// A JWK Set (RFC 7517 §5): the next, current and previous public keys.
#[derive(Object)]
#[oai(skip_serializing_if_is_none, rename = "JwkSet")]
pub struct JwkSetDoc {
    pub keys: Vec<JwkDoc>,
}

#[derive(ApiResponse)]
pub enum JwksResponse {
    /// The key set. Cache it for `max-age`; revalidate with `If-None-Match`.
    #[oai(status = 200)]
    Ok(RawJson<JwkSetDoc>, #[oai(header = "Cache-Control")] String, #[oai(header = "ETag")] String),
    /// Unchanged since the `ETag` in `If-None-Match`.
    #[oai(status = 304)]
    NotModified(#[oai(header = "Cache-Control")] String, #[oai(header = "ETag")] String),
}

/// OpenID Provider metadata (OIDC Discovery 1.0 §3) and authorization
/// server metadata (RFC 8414 §2).
#[derive(Object, Clone, Debug)]
#[oai(skip_serializing_if_is_none)]
pub struct DiscoveryDocument {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: String,
    pub jwks_uri: String,
    pub revocation_endpoint: String,
    pub introspection_endpoint: String,
    pub end_session_endpoint: String,
    pub scopes_supported: Vec<String>,
    pub response_types_supported: Vec<String>,
    pub response_modes_supported: Vec<String>,
    pub grant_types_supported: Vec<String>,
    pub subject_types_supported: Vec<String>,
    pub id_token_signing_alg_values_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    pub code_challenge_methods_supported: Vec<String>,
    pub claims_supported: Vec<String>,
    /// `urn:latchkey:acr:mfa` (a second factor) and `urn:latchkey:acr:1fa`.
    pub acr_values_supported: Vec<String>,
    pub prompt_values_supported: Vec<String>,
    /// RFC 9207: authorization responses carry `iss`.
    pub authorization_response_iss_parameter_supported: bool,
    pub request_parameter_supported: bool,
    pub request_uri_parameter_supported: bool,
    pub claims_parameter_supported: bool,
}

#[derive(ApiResponse)]
pub enum DiscoveryResponse {
    #[oai(status = 200)]
    Ok(Json<DiscoveryDocument>, #[oai(header = "Cache-Control")] String),
}

pub struct WellKnownApi;

/// Does `If-None-Match` match `etag` (RFC 9110 §13.1.2, weak comparison)?
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    if_none_match.trim() == "*" || if_none_match.split(',').any(|candidate| bare(candidate) == bare(etag))
}

#[OpenApi(prefix_path = "/.well-known", tag = "Tag::Discovery")]
impl WellKnownApi {
    /// OpenID Connect discovery document.
    ///
    /// Everything a relying party needs, found from the issuer URL alone.
    #[oai(path = "/openid-configuration", method = "get", operation_id = "getOpenidConfiguration")]
    async fn openid_configuration(&self, state: poem::web::Data<&AppState>) -> DiscoveryResponse {
        DiscoveryResponse::Ok(Json(discovery(&state)), "public, max-age=300".into())
    }

    /// The public signing keys (JWKS).
    ///
    /// Served from memory. `Cache-Control: max-age` never outlasts the next
    /// planned key change, and a key is published at least one `max-age`
    /// before it signs anything, so a cache that is still fresh always knows
    /// every `kid` in use.
    #[oai(path = "/jwks.json", method = "get", operation_id = "getJwks")]
    async fn jwks(
        &self,
        state: poem::web::Data<&AppState>,
        /// ETag of a cached copy.
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> JwksResponse {
        let (doc, max_age) = state.keyring.jwks(state.now());
        let cache_control = format!("public, max-age={max_age}");
        match if_none_match.0 {
            Some(tag) if etag_matches(&tag, &doc.etag) => {
                JwksResponse::NotModified(cache_control, doc.etag.clone())
            }
            _ => JwksResponse::Ok(RawJson::new(doc.body.clone()), cache_control, doc.etag.clone()),
        }
    }
}

pub fn discovery(state: &AppState) -> DiscoveryDocument {
    let issuer = state.issuer();
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let mut algs = vec!["RS256".to_owned()];
    let access_alg = state.keyring.policy().alg_for(KeyPurpose::Access).as_str().to_owned();
    if !algs.contains(&access_alg) {
        algs.push(access_alg);
    }
    let secret_methods = strings(&["client_secret_basic", "client_secret_post"]);
    let mut scopes: Vec<String> = state.settings.user_scopes.iter().map(str::to_owned).collect();
    for standard in ["openid", "profile", "email"] {
        if !scopes.iter().any(|s| s == standard) {
            scopes.push(standard.to_owned());
        }
    }
    DiscoveryDocument {
        issuer: issuer.to_owned(),
        authorization_endpoint: format!("{issuer}/oauth/authorize"),
        token_endpoint: format!("{issuer}/oauth/token"),
        userinfo_endpoint: format!("{issuer}/oauth/userinfo"),
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        revocation_endpoint: format!("{issuer}/oauth/revoke"),
        introspection_endpoint: format!("{issuer}/oauth/introspect"),
        end_session_endpoint: format!("{issuer}/oauth/logout"),
        scopes_supported: scopes,
        response_types_supported: strings(&["code"]),
        response_modes_supported: strings(&["query"]),
        grant_types_supported: strings(&[
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "password",
            crate::oauth::grants::MFA_GRANT,
        ]),
        subject_types_supported: strings(&["public"]),
        id_token_signing_alg_values_supported: algs,
        token_endpoint_auth_methods_supported: strings(&[
            "client_secret_basic",
            "client_secret_post",
            "none",
        ]),
        revocation_endpoint_auth_methods_supported: strings(&[
            "client_secret_basic",
            "client_secret_post",
            "none",
        ]),
        introspection_endpoint_auth_methods_supported: secret_methods,
        code_challenge_methods_supported: strings(&["S256"]),
        claims_supported: strings(&[
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "at_hash",
            "preferred_username",
            "email",
            "email_verified",
            "updated_at",
            "amr",
            "acr",
        ]),
        acr_values_supported: strings(&[crate::mfa::ACR_SINGLE_FACTOR, crate::mfa::ACR_MFA]),
        prompt_values_supported: strings(&["none", "login"]),
        authorization_response_iss_parameter_supported: true,
        request_parameter_supported: false,
        request_uri_parameter_supported: false,
        claims_parameter_supported: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_weakly_and_in_lists() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("W/\"abc\"", "\"abc\""));
        assert!(etag_matches("\"x\", \"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }
}
