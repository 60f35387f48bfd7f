//! The refresh token format: `version ‖ family id ‖ counter ‖ MAC`, base64url.
//!
//! - `version` (1 byte) names the MAC key, so the key can change without
//!   breaking tokens in flight;
//! - `family id` (16 bytes, UUID) and `counter` (8 bytes, big-endian) say
//!   which family and which rotation the token is;
//! - `MAC` is HMAC-SHA256 (32 bytes, 256 bits) over the first three fields,
//!   keyed with a key derived from the master key.
//!
//! Nothing secret is stored: the server recomputes the MAC. A token for
//! counter `n` is deterministic, which is what lets the grace window hand the
//! same current token to two tabs refreshing at once.

use uuid::Uuid;

use crate::crypto;
use crate::keys::master::MasterKey;

const VERSION_1: u8 = 1;
const RAW_LEN: usize = 1 + 16 + 8 + 32;
/// base64url without padding of 57 bytes.
pub const ENCODED_LEN: usize = 76;

/// A decoded, authenticated refresh token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshToken {
    pub family_id: Uuid,
    pub counter: i64,
}

/// Encodes and authenticates refresh tokens.
pub struct RefreshTokenCodec {
    key_v1: [u8; 32],
}

impl std::fmt::Debug for RefreshTokenCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshTokenCodec(***)")
    }
}

impl RefreshTokenCodec {
    pub fn new(master: &MasterKey) -> Self {
        RefreshTokenCodec { key_v1: master.derive("refresh-token-mac/v1") }
    }

    pub fn encode(&self, family_id: Uuid, counter: i64) -> String {
        let mut raw = Vec::with_capacity(RAW_LEN);
        raw.push(VERSION_1);
        raw.extend_from_slice(family_id.as_bytes());
        raw.extend_from_slice(&counter.to_be_bytes());
        let mac = crypto::hmac_sha256(&self.key_v1, &[&raw]);
        raw.extend_from_slice(&mac);
        crypto::b64url(&raw)
    }

    /// `None` for anything that is not a token this server made: wrong
    /// length, unknown version, negative counter or a MAC that does not match.
    pub fn decode(&self, token: &str) -> Option<RefreshToken> {
        if token.len() != ENCODED_LEN {
            return None;
        }
        let raw = crypto::b64url_decode(token)?;
        let (body, mac) = raw.split_at_checked(1 + 16 + 8)?;
        let (&version, rest) = body.split_first()?;
        if version != VERSION_1 || mac.len() != 32 {
            return None;
        }
        if !crypto::hmac_sha256_verify(&self.key_v1, &[body], mac) {
            return None;
        }
        let (id, counter) = rest.split_at_checked(16)?;
        let family_id = Uuid::from_slice(id).ok()?;
        let counter = i64::from_be_bytes(counter.try_into().ok()?);
        (counter >= 0).then_some(RefreshToken { family_id, counter })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> RefreshTokenCodec {
        RefreshTokenCodec::new(&MasterKey::from_encoded(&crypto::random_token::<32>()).unwrap())
    }

    #[test]
    fn round_trip() {
        let c = codec();
        let id = Uuid::now_v7();
        let token = c.encode(id, 41);
        assert_eq!(token.len(), ENCODED_LEN);
        assert_eq!(c.decode(&token), Some(RefreshToken { family_id: id, counter: 41 }));
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let c = codec();
        let token = c.encode(Uuid::now_v7(), 3);
        let raw = crypto::b64url_decode(&token).unwrap();
        for bit in 0..raw.len() * 8 {
            let mut tampered = raw.clone();
            if let Some(byte) = tampered.get_mut(bit / 8) {
                *byte ^= 1 << (bit % 8);
            }
            assert_eq!(c.decode(&crypto::b64url(&tampered)), None, "bit {bit}");
        }
    }

    #[test]
    fn another_key_or_a_forged_counter_is_refused() {
        let (a, b) = (codec(), codec());
        let id = Uuid::now_v7();
        assert_eq!(b.decode(&a.encode(id, 1)), None);
        // Splice the MAC of counter 1 onto counter 2.
        let one = crypto::b64url_decode(&a.encode(id, 1)).unwrap();
        let two = crypto::b64url_decode(&a.encode(id, 2)).unwrap();
        let mut forged = two[..25].to_vec();
        forged.extend_from_slice(&one[25..]);
        assert_eq!(a.decode(&crypto::b64url(&forged)), None);
        assert_eq!(a.decode("not a token"), None);
        assert_eq!(a.decode(&"A".repeat(ENCODED_LEN)), None);
    }
}
