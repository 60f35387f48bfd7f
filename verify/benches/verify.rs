//! Verifications per second on one core: `Verifier::verify` on the cache-hit
//! path against the raw josekit signature check it wraps (ES256), measured
//! in the same run.
//!
//! `cargo bench -p latchkey-verify`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use josekit::jws::{ES256, JwsHeader};
use josekit::jwt::{self, JwtPayload};
use latchkey_verify::{Verifier, VerifierConfig};

fn rate(mut f: impl FnMut(), seconds: f64) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pair = ES256.generate_key_pair().unwrap();
    let mut jwk = pair.to_jwk_public_key();
    jwk.set_key_id("k1");
    jwk.set_algorithm("ES256");
    jwk.set_key_use("sig");
    let jwks = serde_json::json!({ "keys": [serde_json::Value::Object(jwk.as_ref().clone())] }).to_string();
    let signer = ES256.signer_from_der(pair.to_der_private_key()).unwrap();
    let mut header = JwsHeader::new();
    header.set_token_type("at+jwt");
    header.set_key_id("k1");
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    let mut payload = JwtPayload::new();
    payload.set_issuer("https://id.example");
    payload.set_subject("user");
    payload.set_audience(vec!["latchkey"]);
    payload.set_issued_at(&now);
    payload.set_expires_at(&(now + Duration::from_secs(900)));
    payload.set_jwt_id("j");
    payload.set_claim("client_id", Some("latchkey".into())).unwrap();
    payload.set_claim("scope", Some("tasks:read".into())).unwrap();
    let token = jwt::encode_with_signer(&payload, &header, &signer).unwrap();

    let verifier =
        Verifier::from_jwks(VerifierConfig::new("https://id.example", "latchkey"), jwks.as_bytes()).unwrap();
    let raw = ES256.verifier_from_jwk(&jwk).unwrap();
    let seconds = std::env::var("LATCHKEY_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);

    let raw_rate = rate(
        || {
            jwt::decode_with_verifier(&token, &raw).unwrap();
        },
        seconds,
    );
    let lib_rate = rate(
        || {
            runtime.block_on(verifier.verify(&token)).unwrap();
        },
        seconds,
    );
    println!("token verification on one core (ES256)");
    println!("  raw josekit decode_with_verifier (ceiling) {raw_rate:>10.0} /s");
    println!("  Verifier::verify (cache hit)               {lib_rate:>10.0} /s");
    println!("  ratio: {:.2} of raw josekit", lib_rate / raw_rate);
}
