//! Key material through josekit: generate, serialize, load. No crypto here,
//! only the calls; the algorithms are openssl's, via josekit.

use josekit::jwk::Jwk;
use josekit::jwk::alg::ed::EdCurve;
use josekit::jws::{ES256, EdDSA, JwsSigner, JwsVerifier, RS256};

use crate::config::SigningAlg;
use crate::crypto;

/// RSA modulus size for RS256 keys.
const RSA_BITS: u32 = 2048;

/// A freshly generated key pair.
pub struct Generated {
    pub kid: String,
    /// PKCS#8 DER; seal it before it touches the database.
    pub private_der: Vec<u8>,
    /// Public JWK with `kid`, `alg` and `use: sig`.
    pub public_jwk: Jwk,
}

/// Generate a key pair. RSA generation is slow: call it off the async workers.
pub fn generate(alg: SigningAlg) -> anyhow::Result<Generated> {
    let (private_der, mut public_jwk) = match alg {
        SigningAlg::Es256 => {
            let pair = ES256.generate_key_pair()?;
            (pair.to_der_private_key(), pair.to_jwk_public_key())
        }
        SigningAlg::EdDsa => {
            let pair = EdDSA.generate_key_pair(EdCurve::Ed25519)?;
            (pair.to_der_private_key(), pair.to_jwk_public_key())
        }
        SigningAlg::Rs256 => {
            let pair = RS256.generate_key_pair(RSA_BITS)?;
            (pair.to_der_private_key(), pair.to_jwk_public_key())
        }
    };
    let kid = thumbprint(&public_jwk)?;
    public_jwk.set_key_id(kid.clone());
    public_jwk.set_algorithm(alg.as_str());
    public_jwk.set_key_use("sig");
    Ok(Generated { kid, private_der, public_jwk })
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url): a stable, content-derived `kid`.
pub fn thumbprint(jwk: &Jwk) -> anyhow::Result<String> {
    let members: &[&str] = match jwk.key_type() {
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "RSA" => &["e", "kty", "n"],
        other => anyhow::bail!("unsupported key type {other}"),
    };
    // Required members in lexicographic order, no whitespace (RFC 7638 §3).
    let mut canonical = serde_json::Map::new();
    for name in members {
        let value = jwk.parameter(name).ok_or_else(|| anyhow::anyhow!("JWK lacks {name}"))?;
        canonical.insert((*name).to_owned(), value.clone());
    }
    let json = serde_json::to_string(&canonical)?;
    Ok(crypto::b64url(&crypto::sha256(json.as_bytes())))
}

/// A signer for a stored private key.
pub fn signer(alg: SigningAlg, kid: &str, private_der: &[u8]) -> anyhow::Result<Box<dyn JwsSigner>> {
    Ok(match alg {
        SigningAlg::Es256 => {
            let mut s = ES256.signer_from_der(private_der)?;
            s.set_key_id(kid);
            Box::new(s)
        }
        SigningAlg::EdDsa => {
            let mut s = EdDSA.signer_from_der(private_der)?;
            s.set_key_id(kid);
            Box::new(s)
        }
        SigningAlg::Rs256 => {
            let mut s = RS256.signer_from_der(private_der)?;
            s.set_key_id(kid);
            Box::new(s)
        }
    })
}

/// A verifier for a stored public JWK; it only accepts `alg` and `kid` of the key.
pub fn verifier(alg: SigningAlg, public_jwk: &Jwk) -> anyhow::Result<Box<dyn JwsVerifier>> {
    Ok(match alg {
        SigningAlg::Es256 => Box::new(ES256.verifier_from_jwk(public_jwk)?),
        SigningAlg::EdDsa => Box::new(EdDSA.verifier_from_jwk(public_jwk)?),
        SigningAlg::Rs256 => Box::new(RS256.verifier_from_jwk(public_jwk)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_signs_and_verifies_with_its_stored_halves() {
        for alg in [SigningAlg::Es256, SigningAlg::EdDsa, SigningAlg::Rs256] {
            let generated = generate(alg).unwrap();
            assert_eq!(generated.public_jwk.key_id(), Some(generated.kid.as_str()));
            assert_eq!(generated.public_jwk.algorithm(), Some(alg.as_str()));
            assert!(
                generated.public_jwk.parameter("d").is_none(),
                "public JWK must not carry the private key"
            );
            let s = signer(alg, &generated.kid, &generated.private_der).unwrap();
            let v = verifier(alg, &generated.public_jwk).unwrap();
            let sig = s.sign(b"message").unwrap();
            v.verify(b"message", &sig).unwrap();
            assert!(v.verify(b"other", &sig).is_err());
        }
    }

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // RFC 7638 §3.1.
        let jwk = Jwk::from_bytes(br#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#).unwrap();
        assert_eq!(thumbprint(&jwk).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }
}
