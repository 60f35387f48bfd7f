//! A parsed JWK Set: `kid` → a verifier pinned to the key's `alg`.

use std::collections::HashMap;
use std::sync::Arc;

use josekit::jwk::JwkSet;
use josekit::jws::{ES256, EdDSA, JwsVerifier, RS256};

use crate::verifier::Algorithm;

pub struct Key {
    pub alg: Algorithm,
    pub verifier: Box<dyn JwsVerifier>,
}

#[derive(Default, Clone)]
pub struct KeySet {
    pub keys: HashMap<String, Arc<Key>>,
}

impl KeySet {
    /// Parse a JWKS, keeping signing keys with a `kid` and an algorithm in
    /// `allowed`; others are ignored (a JWKS may hold keys for other uses).
    pub fn parse(json: &[u8], allowed: &[Algorithm]) -> Result<KeySet, String> {
        let set = JwkSet::from_bytes(json).map_err(|e| e.to_string())?;
        let mut keys = HashMap::new();
        for jwk in set.keys() {
            let (Some(kid), Some(alg)) = (jwk.key_id(), jwk.algorithm().and_then(Algorithm::parse)) else {
                continue;
            };
            if !allowed.contains(&alg) || jwk.key_use().is_some_and(|u| u != "sig") {
                continue;
            }
            let verifier: Box<dyn JwsVerifier> = match alg {
                Algorithm::Es256 => Box::new(ES256.verifier_from_jwk(jwk).map_err(|e| e.to_string())?),
                Algorithm::EdDsa => Box::new(EdDSA.verifier_from_jwk(jwk).map_err(|e| e.to_string())?),
                Algorithm::Rs256 => Box::new(RS256.verifier_from_jwk(jwk).map_err(|e| e.to_string())?),
            };
            keys.insert(kid.to_owned(), Arc::new(Key { alg, verifier }));
        }
        Ok(KeySet { keys })
    }
}
