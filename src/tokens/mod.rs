//! JWT access tokens (RFC 9068) and ID tokens (OIDC Core §2): issue and verify.
//!
//! Issuing signs with the key ring's current key and sets `kid`, `alg` and
//! `typ`. Verifying is strict, in this order, and rejects on the first
//! failure: size, compact form, header (`typ` must be `at+jwt`, `alg` one we
//! sign with, `kid` present, no `crit`), a *published* key with that `kid`
//! whose algorithm equals the header's (so `alg: none`, or HS256 keyed with a
//! public key, never reach a verifier), the signature, then `iss`, `aud`,
//! `exp`, `nbf` and the required claims.

use chrono::{DateTime, TimeDelta, Utc};
use josekit::jws::JwsHeader;
use josekit::jwt::{self, JwtPayload};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::config::SigningAlg;
use crate::crypto;
use crate::error::{Internal, Result};
use crate::keys::{KeyPurpose, KeyRing, LoadedKey};

/// RFC 9068 §2.1 `typ` header value.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY: TimeDelta = TimeDelta::seconds(5);

/// The claims of a latchkey access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// A user id, or a client id for client credentials.
    pub sub: String,
    #[serde(with = "audience")]
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub client_id: String,
    /// Space-separated scopes (RFC 8693 §4.2 form).
    pub scope: String,
    /// Role names; present on user tokens only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// When the user authenticated; user tokens only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The refresh family (session) this token belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// How the user authenticated (RFC 8176 values); user tokens only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// The authentication context class (`urn:latchkey:acr:1fa` or
    /// `urn:latchkey:acr:mfa`); user tokens only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
}

impl AccessClaims {
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_whitespace()
    }

    /// Was this token issued to a client for itself (client credentials)?
    pub fn is_client_token(&self) -> bool {
        self.roles.is_none() && self.sub == self.client_id
    }

    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.exp, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3); we emit a
/// string when there is one audience, as RFC 9068 examples do.
mod audience {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(aud: &[String], s: S) -> Result<S::Ok, S::Error> {
        match aud {
            [one] => s.serialize_str(one),
            many => s.collect_seq(many),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        })
    }
}

/// Who and what an access token is for.
#[derive(Clone, Debug)]
pub struct AccessGrant {
    pub subject: String,
    pub client_id: String,
    pub scope: String,
    pub roles: Option<Vec<String>>,
    pub auth_time: Option<DateTime<Utc>>,
    pub session_id: Option<String>,
    /// A reserved `jti`; a fresh random one when `None`.
    pub jti: Option<String>,
    /// `aud` instead of the configured default audience.
    pub audience: Option<String>,
    /// How the user authenticated; user tokens only.
    pub amr: Option<crate::mfa::Amr>,
}

/// A signed access token and what the token response needs about it.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: String,
    pub jti: String,
    pub expires_at: DateTime<Utc>,
    pub expires_in: u64,
    pub kid: String,
}

/// Issuer settings shared by every token.
#[derive(Clone, Debug)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: TimeDelta,
}

impl TokenSettings {
    /// When the last access token issued by `now` stops being accepted.
    pub fn outstanding_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + self.access_ttl + LEEWAY
    }
}

fn sign(key: &LoadedKey, typ: &str, claims: Map<String, Value>) -> Result<String> {
    let mut header = JwsHeader::new();
    header.set_token_type(typ);
    header.set_key_id(key.kid());
    let payload = JwtPayload::from_map(claims)?;
    let signer = key.signer().ok_or_else(|| Internal(anyhow::anyhow!("key {} cannot sign", key.kid())))?;
    Ok(jwt::encode_with_signer(&payload, &header, signer)?)
}

/// Sign an access token with the current access key.
pub fn issue_access(
    ring: &KeyRing,
    settings: &TokenSettings,
    now: DateTime<Utc>,
    grant: &AccessGrant,
) -> Result<IssuedToken> {
    let key = ring.signing_key(KeyPurpose::Access, now).map_err(|e| Internal(e.into()))?;
    let iat = now.timestamp();
    let exp = iat + settings.access_ttl.num_seconds();
    let claims = AccessClaims {
        iss: settings.issuer.clone(),
        sub: grant.subject.clone(),
        aud: vec![grant.audience.clone().unwrap_or_else(|| settings.audience.clone())],
        exp,
        iat,
        nbf: iat,
        jti: grant.jti.clone().unwrap_or_else(crypto::random_token::<16>),
        client_id: grant.client_id.clone(),
        scope: grant.scope.clone(),
        roles: grant.roles.clone(),
        auth_time: grant.auth_time.map(|t| t.timestamp()),
        sid: grant.session_id.clone(),
        amr: grant.amr.as_ref().map(crate::mfa::Amr::values),
        acr: grant.amr.as_ref().map(|a| a.acr().to_owned()),
    };
    let Value::Object(map) = serde_json::to_value(&claims).map_err(anyhow::Error::from)? else {
        return Err(Internal(anyhow::anyhow!("claims did not serialize to an object")));
    };
    let token = sign(&key, ACCESS_TOKEN_TYP, map)?;
    Ok(IssuedToken {
        token,
        jti: claims.jti,
        expires_at: DateTime::from_timestamp(exp, 0).unwrap_or(now),
        expires_in: u64::try_from(settings.access_ttl.num_seconds()).unwrap_or(0),
        kid: key.kid().to_owned(),
    })
}

/// Claims of an OIDC ID token beyond the standard ones this module sets.
#[derive(Clone, Debug, Default)]
pub struct IdTokenClaims {
    pub subject: String,
    pub audience: String,
    pub auth_time: Option<DateTime<Utc>>,
    pub nonce: Option<String>,
    /// `at_hash` is computed from this access token when present.
    pub access_token: Option<String>,
    /// Extra claims (profile, email) by scope.
    pub extra: Map<String, Value>,
}

/// Sign an ID token (OIDC Core §2) with `alg`, RS256 by default.
pub fn issue_id_token(
    ring: &KeyRing,
    settings: &TokenSettings,
    now: DateTime<Utc>,
    alg: SigningAlg,
    claims: &IdTokenClaims,
) -> Result<String> {
    let key = ring
        .current_with_alg(alg, now)
        .ok_or_else(|| Internal(anyhow::anyhow!("no current {alg} signing key for ID tokens")))?;
    let iat = now.timestamp();
    let mut map = claims.extra.clone();
    map.insert("iss".into(), json!(settings.issuer));
    map.insert("sub".into(), json!(claims.subject));
    map.insert("aud".into(), json!(claims.audience));
    map.insert("exp".into(), json!(iat + settings.access_ttl.num_seconds()));
    map.insert("iat".into(), json!(iat));
    if let Some(t) = claims.auth_time {
        map.insert("auth_time".into(), json!(t.timestamp()));
    }
    if let Some(n) = &claims.nonce {
        map.insert("nonce".into(), json!(n));
    }
    if let Some(at) = &claims.access_token {
        map.insert("at_hash".into(), json!(at_hash(alg, at)));
    }
    sign(&key, "JWT", map)
}

/// OIDC Core §3.1.3.6: the left half of the hash of the access token, with
/// the hash of the ID token's `alg` (SHA-256 for ES256 and RS256; SHA-512
/// for EdDSA with Ed25519, per OpenID Connect errata / common practice).
pub fn at_hash(alg: SigningAlg, access_token: &str) -> String {
    use sha2::{Digest, Sha512};
    match alg {
        SigningAlg::EdDsa => {
            let digest = Sha512::digest(access_token.as_bytes());
            crypto::b64url(digest.get(..32).unwrap_or_default())
        }
        SigningAlg::Es256 | SigningAlg::Rs256 => {
            let digest = crypto::sha256(access_token.as_bytes());
            crypto::b64url(digest.get(..16).unwrap_or_default())
        }
    }
}

/// Why a token was refused. The description is safe to show to the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token type is not at+jwt")]
    WrongType,
    #[error("the token algorithm is not accepted")]
    WrongAlgorithm,
    #[error("the token was not signed by a key of this issuer")]
    UnknownKey,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    #[error("the token is not meant for this audience")]
    WrongAudience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
}

/// Verify an access token issued by this server for `settings.audience`, or
/// for latchkey itself (`aud` = the issuer: admin tokens).
pub fn verify_access(
    ring: &KeyRing,
    settings: &TokenSettings,
    now: DateTime<Utc>,
    token: &str,
) -> std::result::Result<AccessClaims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let header = decode_header(token)?;
    let typ = header.get("typ").and_then(Value::as_str).ok_or(TokenError::WrongType)?;
    let typ = typ.strip_prefix("application/").unwrap_or(typ);
    if !typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) {
        return Err(TokenError::WrongType);
    }
    if header.contains_key("crit") {
        return Err(TokenError::Malformed);
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|a| a.parse::<SigningAlg>().ok())
        .ok_or(TokenError::WrongAlgorithm)?;
    let kid = header.get("kid").and_then(Value::as_str).ok_or(TokenError::UnknownKey)?;
    let key = ring.verifying_key(kid, now).ok_or(TokenError::UnknownKey)?;
    if key.alg() != alg {
        return Err(TokenError::WrongAlgorithm);
    }
    let (payload, _) =
        jwt::decode_with_verifier(token, key.verifier()).map_err(|_| TokenError::BadSignature)?;
    let claims: AccessClaims = serde_json::from_value(Value::Object(payload.claims_set().clone()))
        .map_err(|_| TokenError::Malformed)?;
    if claims.iss != settings.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if !claims.aud.contains(&settings.audience) && !claims.aud.contains(&settings.issuer) {
        return Err(TokenError::WrongAudience);
    }
    let now_s = now.timestamp();
    if claims.exp + LEEWAY.num_seconds() <= now_s {
        return Err(TokenError::Expired);
    }
    if claims.nbf - LEEWAY.num_seconds() > now_s {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}

/// Check an ID token this server issued, ignoring its expiry: an expired ID
/// token is still a good `id_token_hint` (OIDC RP-Initiated Logout §2).
/// Returns its `sub` and `aud`.
pub fn verify_id_token_hint(
    ring: &KeyRing,
    settings: &TokenSettings,
    now: DateTime<Utc>,
    token: &str,
) -> Option<(String, String)> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let header = decode_header(token).ok()?;
    if header.get("typ").and_then(Value::as_str) != Some("JWT") || header.contains_key("crit") {
        return None;
    }
    let alg = header.get("alg").and_then(Value::as_str)?.parse::<SigningAlg>().ok()?;
    let key = ring.verifying_key(header.get("kid").and_then(Value::as_str)?, now)?;
    if key.alg() != alg {
        return None;
    }
    let (payload, _) = jwt::decode_with_verifier(token, key.verifier()).ok()?;
    if payload.issuer() != Some(settings.issuer.as_str()) {
        return None;
    }
    let aud = payload.audience()?.first().map(|a| (*a).to_owned())?;
    Some((payload.subject()?.to_owned(), aud))
}

/// The decoded JOSE header of a compact JWS, or `Malformed`.
fn decode_header(token: &str) -> std::result::Result<Map<String, Value>, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    let bytes = crypto::b64url_decode(h).ok_or(TokenError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_matches_oidc_core_example() {
        // OpenID Connect Core, Appendix A.3 (RS256).
        assert_eq!(
            at_hash(SigningAlg::Rs256, "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }

    #[test]
    fn audience_serializes_as_string_or_array() {
        #[derive(Serialize, Deserialize)]
        struct A {
            #[serde(with = "audience")]
            aud: Vec<String>,
        }
        assert_eq!(serde_json::to_string(&A { aud: vec!["x".into()] }).unwrap(), r#"{"aud":"x"}"#);
        let parsed: A = serde_json::from_str(r#"{"aud":["x","y"]}"#).unwrap();
        assert_eq!(parsed.aud, ["x", "y"]);
    }

    #[test]
    fn malformed_compact_forms_are_refused_before_any_key_lookup() {
        for token in ["", "a.b", "a.b.c.d", "!!!.b.c", "bm90IGpzb24.e30.sig"] {
            assert_eq!(decode_header(token), Err(TokenError::Malformed), "{token:?}");
        }
        // A well-formed but empty header parses; `verify_access` then refuses its missing `typ`.
        assert_eq!(decode_header("e30.e30.sig"), Ok(Map::new()));
    }
}
