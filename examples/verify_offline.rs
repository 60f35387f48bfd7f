//! verify_offline: how a relying service checks a latchkey access token
//! without calling latchkey for it.
//!
//! It fetches the discovery document and the JWKS once (a real service caches
//! them for the JWKS `max-age`), then verifies the token locally: the `kid`
//! selects a published key, the header `alg` must be that key's algorithm,
//! `typ` must be `at+jwt` (RFC 9068), and `iss`, `aud`, `exp`, `nbf` must hold.
//!
//! ```text
//! cargo run --example verify_offline -- http://127.0.0.1:8080 "$ACCESS_TOKEN"
//! ```

use std::time::{Duration, SystemTime};

use josekit::jwk::JwkSet;
use josekit::jws::{ES256, EdDSA, JwsVerifier, RS256};
use serde_json::Value;

const AUDIENCE: &str = "latchkey";
const LEEWAY: Duration = Duration::from_secs(30);

fn verifier_for(jwk: &josekit::jwk::Jwk) -> Result<Box<dyn JwsVerifier>, String> {
    // Pin the algorithm to the key: never let the token choose it.
    Ok(match jwk.algorithm() {
        Some("ES256") => Box::new(ES256.verifier_from_jwk(jwk).map_err(|e| e.to_string())?),
        Some("EdDSA") => Box::new(EdDSA.verifier_from_jwk(jwk).map_err(|e| e.to_string())?),
        Some("RS256") => Box::new(RS256.verifier_from_jwk(jwk).map_err(|e| e.to_string())?),
        other => return Err(format!("unsupported key algorithm {other:?}")),
    })
}

fn verify(token: &str, issuer: &str, jwks: &JwkSet) -> Result<Value, String> {
    let header = josekit::jwt::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
    let typ = header.claim("typ").and_then(Value::as_str).unwrap_or_default();
    if !typ.eq_ignore_ascii_case("at+jwt") && !typ.eq_ignore_ascii_case("application/at+jwt") {
        return Err(format!("not an access token (typ {typ:?})"));
    }
    let kid = header.claim("kid").and_then(Value::as_str).ok_or("no kid")?;
    let jwk =
        jwks.get(kid).into_iter().next().ok_or("unknown kid: refetch the JWKS (at most once per minute)")?;
    let verifier = verifier_for(jwk)?;
    let (payload, _) = josekit::jwt::decode_with_verifier(token, verifier.as_ref())
        .map_err(|e| format!("bad signature: {e}"))?;
    if payload.issuer() != Some(issuer) {
        return Err("wrong issuer".into());
    }
    if !payload.audience().unwrap_or_default().contains(&AUDIENCE) {
        return Err("wrong audience".into());
    }
    // A relying service has no latchkey Clock: the wall clock is right here.
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    let exp = payload.expires_at().ok_or("no exp")?;
    if exp + LEEWAY <= now {
        return Err("expired".into());
    }
    if payload.not_before().is_some_and(|nbf| nbf > now + LEEWAY) {
        return Err("not valid yet".into());
    }
    Ok(Value::Object(payload.claims_set().clone()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(issuer), Some(token)) = (args.next(), args.next()) else {
        eprintln!("usage: verify_offline <issuer URL> <access token>");
        std::process::exit(2);
    };
    let issuer = issuer.trim_end_matches('/').to_owned();
    let discovery: Value = reqwest::get(format!("{issuer}/.well-known/openid-configuration"))
        .await?
        .error_for_status()?
        .json()
        .await?;
    let jwks_uri = discovery.get("jwks_uri").and_then(Value::as_str).ok_or("discovery has no jwks_uri")?;
    let jwks_text = reqwest::get(jwks_uri).await?.error_for_status()?.text().await?;
    let jwks = JwkSet::from_bytes(jwks_text.as_bytes())?;

    match verify(&token, &issuer, &jwks) {
        Ok(claims) => {
            println!("valid token for subject {}", claims.get("sub").unwrap_or(&Value::Null));
            println!("{}", serde_json::to_string_pretty(&claims)?);
            Ok(())
        }
        Err(reason) => {
            eprintln!("rejected: {reason}");
            std::process::exit(1);
        }
    }
}
