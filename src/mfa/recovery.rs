//! Recovery codes: ten random codes of 80 bits each, shown once, stored as
//! a keyed HMAC-SHA-256 (the key derived from the master key, so a stolen
//! database alone cannot test guesses), each accepted once.

use crate::crypto;

pub const COUNT: usize = 10;
/// Letters without l and o, digits without 0 and 1: 32 symbols, 5 bits each.
const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// New codes, formatted `xxxx-xxxx-xxxx-xxxx` (16 symbols, 80 bits).
pub fn generate() -> Vec<String> {
    (0..COUNT).map(|_| one()).collect()
}

fn one() -> String {
    let bytes = crypto::random_bytes::<16>();
    let mut out = String::with_capacity(19);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        // 32 symbols: the low 5 bits of a uniform byte are uniform.
        let symbol = ALPHABET.get(usize::from(b & 31)).copied().unwrap_or(b'a');
        out.push(char::from(symbol));
    }
    out
}

/// What is stored for a code: separators, spaces and case do not count.
pub fn hash(key: &[u8; 32], code: &str) -> Vec<u8> {
    let normalized: String =
        code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    crypto::hmac_sha256(key, &[b"recovery-code", normalized.as_bytes()]).to_vec()
}

/// The HMAC key for recovery codes.
pub fn key(master: &crate::keys::master::MasterKey) -> [u8; 32] {
    master.derive("recovery-codes/v1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_hash_regardless_of_format() {
        let codes = generate();
        assert_eq!(codes.len(), COUNT);
        let first = codes.first().cloned().unwrap_or_default();
        assert_eq!(first.len(), 19);
        let key = [7u8; 32];
        assert_eq!(hash(&key, &first), hash(&key, &first.to_uppercase().replace('-', " ")));
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), COUNT);
    }
}
