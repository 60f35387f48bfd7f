//! `/.well-known/*`: discovery (OIDC Discovery 1.0 / RFC 8414) and the JWKS.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Header};

use super::Tag;
use super::payload::RawJson;
use crate::keys::KeyPurpose;
use crate::state::AppState;

/// A public JSON Web Key (RFC 7517 §4), as published.
#[derive(Object)]
#[oai(rename = "Jwk")]
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
#[oai(rename = "JwkSet")]
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

/// OpenID Provider / authorization server metadata.
#[derive(Object, Clone, Debug)]
pub struct DiscoveryDocument {
    pub issuer: String,
    pub jwks_uri: String,
    pub subject_types_supported: Vec<String>,
    pub id_token_signing_alg_values_supported: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub claims_supported: Vec<String>,
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
    let mut algs = vec!["RS256".to_owned()];
    let access_alg = state.keyring.policy().alg_for(KeyPurpose::Access).as_str().to_owned();
    if !algs.contains(&access_alg) {
        algs.push(access_alg);
    }
    DiscoveryDocument {
        issuer: issuer.to_owned(),
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        subject_types_supported: vec!["public".into()],
        id_token_signing_alg_values_supported: algs,
        scopes_supported: state.settings.user_scopes.iter().map(str::to_owned).collect(),
        claims_supported: [
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
        ]
        .into_iter()
        .map(str::to_owned)
        .collect(),
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
