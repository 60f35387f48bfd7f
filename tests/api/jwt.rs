//! Verify tokens the way a relying service would: fetch the JWKS over HTTP
//! and check with josekit, independently of latchkey's own verifier.

use josekit::jwk::{Jwk, JwkSet};
use josekit::jws::{ES256, EdDSA, JwsVerifier, RS256};
use serde_json::{Map, Value};

use crate::helpers::TestApp;

pub fn decode_part(token: &str, index: usize) -> Map<String, Value> {
    let part = token.split('.').nth(index).expect("JWT part");
    let bytes = latchkey::crypto::b64url_decode(part).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON object")
}

pub fn header(token: &str) -> Map<String, Value> {
    decode_part(token, 0)
}

pub fn claims(token: &str) -> Map<String, Value> {
    decode_part(token, 1)
}

fn verifier_for(jwk: &Jwk) -> Box<dyn JwsVerifier> {
    match jwk.algorithm() {
        Some("ES256") => Box::new(ES256.verifier_from_jwk(jwk).expect("ES256 key")),
        Some("EdDSA") => Box::new(EdDSA.verifier_from_jwk(jwk).expect("EdDSA key")),
        Some("RS256") => Box::new(RS256.verifier_from_jwk(jwk).expect("RS256 key")),
        other => panic!("unexpected alg {other:?}"),
    }
}

/// Verify `token` against the JWKS the server publishes right now; return
/// the claims. Panics with a reason on any failure.
pub async fn verify_with_published_jwks(
    app: &TestApp,
    token: &str,
    expected_typ: &str,
) -> Map<String, Value> {
    let jwks_json = app.jwks().await;
    let set = JwkSet::from_bytes(jwks_json.to_string().as_bytes()).expect("JWK set");
    let head = header(token);
    assert_eq!(head["typ"], expected_typ, "typ header");
    let kid = head["kid"].as_str().expect("kid header");
    let jwk = set.get(kid).into_iter().next().unwrap_or_else(|| panic!("kid {kid} is not in the JWKS"));
    assert_eq!(jwk.key_use(), Some("sig"));
    assert_eq!(head["alg"].as_str(), jwk.algorithm(), "alg matches the key");
    let verifier = verifier_for(jwk);
    let (payload, _) =
        josekit::jwt::decode_with_verifier(token, verifier.as_ref()).expect("signature verifies");
    let claims = payload.claims_set().clone();
    assert_eq!(claims["iss"], Value::String(app.state.issuer().to_owned()), "iss");
    let now = app.clock_now().timestamp();
    assert!(claims["exp"].as_i64().expect("exp") > now, "exp in the future");
    claims
}

impl TestApp {
    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use latchkey::clock::Clock;
        self.clock.now()
    }
}
