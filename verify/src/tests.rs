//! Every rejection path of `Verifier::verify`, against a local JWKS.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use josekit::jwk::Jwk;
use josekit::jwk::alg::ed::EdCurve;
use josekit::jws::{ES256, EdDSA, HS256, JwsHeader, JwsSigner, RS256};
use josekit::jwt::{self, JwtPayload};
use serde_json::{Value, json};

use crate::{Algorithm, Verifier, VerifierConfig, VerifyError};

const ISSUER: &str = "https://id.example";
const NOW: i64 = 1_800_000_000;

struct Fixture {
    verifier: Verifier,
    es: Box<dyn JwsSigner>,
    rsa: Box<dyn JwsSigner>,
    public_es: Jwk,
    clock: Arc<AtomicI64>,
}

fn public(jwk: &mut Jwk, kid: &str, alg: &str) -> Value {
    jwk.set_key_id(kid);
    jwk.set_algorithm(alg);
    jwk.set_key_use("sig");
    Value::Object(jwk.as_ref().clone())
}

fn fixture() -> Fixture {
    let es = ES256.generate_key_pair().unwrap();
    let rsa = RS256.generate_key_pair(2048).unwrap();
    let ed = EdDSA.generate_key_pair(EdCurve::Ed25519).unwrap();
    let mut es_pub = es.to_jwk_public_key();
    let mut rsa_pub = rsa.to_jwk_public_key();
    let mut ed_pub = ed.to_jwk_public_key();
    let jwks = json!({"keys": [
        public(&mut es_pub, "es", "ES256"),
        public(&mut rsa_pub, "rsa", "RS256"),
        public(&mut ed_pub, "ed", "EdDSA"),
    ]});
    let clock = Arc::new(AtomicI64::new(NOW));
    let c = Arc::clone(&clock);
    let mut config = VerifierConfig::new(ISSUER, "latchkey");
    config.leeway = Duration::from_secs(5);
    config.clock = Arc::new(move || c.load(Ordering::SeqCst));
    let verifier = Verifier::from_jwks(config, jwks.to_string().as_bytes()).unwrap();
    Fixture {
        verifier,
        es: Box::new(ES256.signer_from_der(es.to_der_private_key()).unwrap()),
        rsa: Box::new(RS256.signer_from_der(rsa.to_der_private_key()).unwrap()),
        public_es: es_pub,
        clock,
    }
}

fn claims() -> serde_json::Map<String, Value> {
    let Value::Object(map) = json!({
        "iss": ISSUER, "sub": "user-1", "aud": "latchkey", "exp": NOW + 900, "iat": NOW, "nbf": NOW,
        "jti": "j1", "client_id": "latchkey", "scope": "tasks:read tasks:write", "roles": ["admin"], "sid": "s1",
    }) else {
        unreachable!()
    };
    map
}

fn sign(signer: &dyn JwsSigner, kid: &str, typ: &str, claims: serde_json::Map<String, Value>) -> String {
    let mut header = JwsHeader::new();
    header.set_token_type(typ);
    header.set_key_id(kid);
    jwt::encode_with_signer(&JwtPayload::from_map(claims).unwrap(), &header, signer).unwrap()
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn verify(f: &Fixture, token: &str) -> Result<crate::Claims, VerifyError> {
    f.verifier.verify(token).await
}

#[tokio::test]
async fn a_good_token_yields_typed_claims() {
    let f = fixture();
    let c = verify(&f, &sign(f.es.as_ref(), "es", "at+jwt", claims())).await.unwrap();
    assert_eq!(c.sub, "user-1");
    assert_eq!(c.scope, ["tasks:read", "tasks:write"]);
    assert!(c.has_scope("tasks:write") && c.has_role("admin") && !c.is_client());
    assert_eq!(c.sid.as_deref(), Some("s1"));
    // RS256 and the media-type form of typ are fine too.
    verify(&f, &sign(f.rsa.as_ref(), "rsa", "application/at+jwt", claims())).await.unwrap();
}

#[tokio::test]
async fn structural_problems_are_malformed() {
    let f = fixture();
    for token in ["", "abc", "a.b", "a.b.c.d", "!!.e30.x", &"a".repeat(9000)] {
        assert_eq!(verify(&f, token).await.unwrap_err(), VerifyError::Malformed, "{token:.20}");
    }
    let mut header = JwsHeader::new();
    header.set_token_type("at+jwt");
    header.set_key_id("es");
    header.set_critical(&vec!["exp"]);
    let token =
        jwt::encode_with_signer(&JwtPayload::from_map(claims()).unwrap(), &header, f.es.as_ref()).unwrap();
    assert_eq!(verify(&f, &token).await.unwrap_err(), VerifyError::Malformed, "crit is refused");
}

#[tokio::test]
async fn alg_none_and_unknown_algorithms_are_refused() {
    let f = fixture();
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt", "kid": "es"})),
        b64(&Value::Object(claims()))
    );
    assert_eq!(verify(&f, &none).await.unwrap_err(), VerifyError::UnsupportedAlgorithm("none".into()));
    // HS256 keyed with the public JWK: the classic confusion.
    let hs = HS256.signer_from_bytes(f.public_es.to_string().as_bytes()).unwrap();
    let token = sign(&hs, "es", "at+jwt", claims());
    assert_eq!(verify(&f, &token).await.unwrap_err(), VerifyError::UnsupportedAlgorithm("HS256".into()));
}

#[tokio::test]
async fn an_algorithm_outside_the_allow_list_is_refused() {
    let f = fixture();
    let mut config = f.verifier.config().clone();
    config.algorithms = vec![Algorithm::Es256];
    let jwks = json!({"keys": [Value::Object(f.public_es.as_ref().clone())]});
    let strict = Verifier::from_jwks(config, jwks.to_string().as_bytes()).unwrap();
    let token = sign(f.rsa.as_ref(), "rsa", "at+jwt", claims());
    assert_eq!(strict.verify(&token).await.unwrap_err(), VerifyError::UnsupportedAlgorithm("RS256".into()));
}

#[tokio::test]
async fn the_header_alg_must_be_the_keys() {
    let f = fixture();
    // Signed with RSA but naming the EC key.
    let token = sign(f.rsa.as_ref(), "es", "at+jwt", claims());
    assert_eq!(verify(&f, &token).await.unwrap_err(), VerifyError::AlgorithmMismatch);
}

#[tokio::test]
async fn unknown_kids_and_bad_signatures_are_refused() {
    let f = fixture();
    assert_eq!(
        verify(&f, &sign(f.es.as_ref(), "nope", "at+jwt", claims())).await.unwrap_err(),
        VerifyError::UnknownKey
    );
    let other = ES256.generate_key_pair().unwrap();
    let forged = sign(&ES256.signer_from_der(other.to_der_private_key()).unwrap(), "es", "at+jwt", claims());
    assert_eq!(verify(&f, &forged).await.unwrap_err(), VerifyError::BadSignature);
    let mut tampered = sign(f.es.as_ref(), "es", "at+jwt", claims());
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert!(matches!(
        verify(&f, &tampered).await.unwrap_err(),
        VerifyError::BadSignature | VerifyError::Malformed
    ));
}

#[tokio::test]
async fn the_type_must_be_at_jwt() {
    let f = fixture();
    for typ in ["JWT", "id_token", "at+jwtx"] {
        assert_eq!(
            verify(&f, &sign(f.es.as_ref(), "es", typ, claims())).await.unwrap_err(),
            VerifyError::WrongType
        );
    }
}

#[tokio::test]
async fn issuer_audience_and_required_claims_are_checked() {
    let f = fixture();
    let mut c = claims();
    c.insert("iss".into(), json!("https://evil.example"));
    assert_eq!(
        verify(&f, &sign(f.es.as_ref(), "es", "at+jwt", c)).await.unwrap_err(),
        VerifyError::WrongIssuer
    );
    let mut c = claims();
    c.insert("aud".into(), json!(["other-service"]));
    assert_eq!(
        verify(&f, &sign(f.es.as_ref(), "es", "at+jwt", c)).await.unwrap_err(),
        VerifyError::WrongAudience
    );
    for missing in ["sub", "exp", "jti", "client_id", "iat"] {
        let mut c = claims();
        c.remove(missing);
        assert_eq!(
            verify(&f, &sign(f.es.as_ref(), "es", "at+jwt", c)).await.unwrap_err(),
            VerifyError::MissingClaim(match missing {
                "sub" => "sub",
                "exp" => "exp",
                "jti" => "jti",
                "client_id" => "client_id",
                _ => "iat",
            })
        );
    }
}

#[tokio::test]
async fn exp_and_nbf_allow_only_the_leeway() {
    let f = fixture();
    let token = sign(f.es.as_ref(), "es", "at+jwt", claims());
    f.clock.store(NOW + 900 + 4, Ordering::SeqCst);
    verify(&f, &token).await.unwrap();
    f.clock.store(NOW + 900 + 5, Ordering::SeqCst);
    assert_eq!(verify(&f, &token).await.unwrap_err(), VerifyError::Expired);
    let mut c = claims();
    c.insert("nbf".into(), json!(NOW + 60));
    let early = sign(f.es.as_ref(), "es", "at+jwt", c);
    f.clock.store(NOW, Ordering::SeqCst);
    assert_eq!(verify(&f, &early).await.unwrap_err(), VerifyError::NotYetValid);
    f.clock.store(NOW + 56, Ordering::SeqCst);
    verify(&f, &early).await.unwrap();
}

#[tokio::test]
async fn fractional_numeric_dates_are_accepted_and_rounded_down() {
    let f = fixture();
    let mut c = claims();
    c.insert("iat".into(), json!(NOW as f64 + 0.75));
    c.insert("exp".into(), json!((NOW + 900) as f64 + 0.5));
    let token = sign(f.es.as_ref(), "es", "at+jwt", c);
    let claims = verify(&f, &token).await.unwrap();
    assert_eq!((claims.iat, claims.exp), (NOW, NOW + 900));
}
