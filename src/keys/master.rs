//! The master key: the one secret latchkey cannot keep in its database.
//!
//! Every other secret is derived from it with HKDF-SHA256 under a distinct
//! label (key sealing, refresh-token MAC, CSRF), so one leaked derived key
//! says nothing about the others. Private signing keys are sealed as JWE
//! (`dir` + `A256GCM`, RFC 7516), with the signing key's `kid` in the
//! protected header: a sealed blob moved to another row fails to open.
//!
//! Without `LATCHKEY_MASTER_KEY`, a key is generated once into
//! `<data dir>/master.key` (mode 0600) with a loud warning: fine for one
//! machine, wrong for replicas, which must all share one key.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use base64::Engine;
use hkdf::Hkdf;
use josekit::jwe::{self, Dir, JweHeader};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

use crate::crypto;

const SALT: &[u8] = b"latchkey master key v1";
const SEALED_KID_CLAIM: &str = "lk_kid";

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("LATCHKEY_MASTER_KEY must be 32 to 64 random bytes, base64 or hex encoded")]
    BadEncoding,
    #[error("cannot use the master key file {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
}

/// Where the master key came from, for the startup log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    Environment,
    File(PathBuf),
    Generated(PathBuf),
}

pub struct MasterKey {
    ikm: SecretBox<Vec<u8>>,
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey(id={})", self.id)
    }
}

impl MasterKey {
    /// Parse an encoded key: base64 (standard or URL-safe, padded or not) or hex.
    pub fn from_encoded(text: &str) -> Result<Self, MasterKeyError> {
        let text = text.trim();
        let bytes = decode_any(text).ok_or(MasterKeyError::BadEncoding)?;
        if !(32..=64).contains(&bytes.len()) {
            return Err(MasterKeyError::BadEncoding);
        }
        Ok(Self::from_bytes(bytes))
    }

    fn from_bytes(bytes: Vec<u8>) -> Self {
        let mut key = MasterKey { ikm: SecretBox::new(Box::new(bytes)), id: String::new() };
        let id_bytes = key.derive("master-key-id");
        key.id = hex(&id_bytes[..8]);
        key
    }

    /// The configured key, else the one in `<data_dir>/master.key`, else a
    /// freshly generated one written there with mode 0600.
    pub fn load_or_generate(
        configured: Option<&str>,
        data_dir: &Path,
    ) -> Result<(Self, MasterKeySource), MasterKeyError> {
        if let Some(text) = configured {
            return Ok((Self::from_encoded(text)?, MasterKeySource::Environment));
        }
        let path = data_dir.join("master.key");
        let file_err = |source| MasterKeyError::File { path: path.clone(), source };
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok((Self::from_encoded(&text)?, MasterKeySource::File(path))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_err(e)),
        }
        crate::files::create_private_dir(data_dir).map_err(file_err)?;
        let encoded = crypto::random_token::<32>();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(mut file) => {
                file.write_all(format!("{encoded}\n").as_bytes()).map_err(file_err)?;
                file.sync_all().map_err(file_err)?;
                Ok((Self::from_encoded(&encoded)?, MasterKeySource::Generated(path)))
            }
            // Another process generated it between our read and create: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(&path).map_err(file_err)?;
                Ok((Self::from_encoded(&text)?, MasterKeySource::File(path)))
            }
            Err(e) => Err(file_err(e)),
        }
    }

    /// A short public identifier of this key (not reversible to it).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A 32-byte key for one purpose, via HKDF-SHA256 (RFC 5869).
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let hk = Hkdf::<Sha256>::new(Some(SALT), self.ikm.expose_secret());
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
        let _ = hk.expand(format!("latchkey/{label}").as_bytes(), &mut out);
        out
    }

    /// Encrypt `plaintext` (a private key) bound to `kid`.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> anyhow::Result<String> {
        let encrypter = Dir.encrypter_from_bytes(self.derive("key-sealing/v1"))?;
        let mut header = JweHeader::new();
        header.set_content_encryption("A256GCM");
        header.set_key_id(self.id.clone());
        header.set_claim(SEALED_KID_CLAIM, Some(kid.into()))?;
        Ok(jwe::serialize_compact(plaintext, &header, &encrypter)?)
    }

    /// Decrypt what [`MasterKey::seal`] produced for the same `kid`.
    pub fn unseal(&self, kid: &str, sealed: &str) -> anyhow::Result<Vec<u8>> {
        let decrypter = Dir.decrypter_from_bytes(self.derive("key-sealing/v1"))?;
        let (plaintext, header) = jwe::deserialize_compact(sealed, &decrypter)
            .with_context(|| format!("cannot decrypt the private key of {kid}"))?;
        let bound = header.claim(SEALED_KID_CLAIM).and_then(|v| v.as_str());
        if bound != Some(kid) {
            return Err(anyhow!("sealed private key of {kid} belongs to another key"));
        }
        Ok(plaintext)
    }
}

fn decode_any(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    if text.len() == 64 || text.len() == 128 {
        if let Some(bytes) = unhex(text) {
            return Some(bytes);
        }
    }
    [URL_SAFE_NO_PAD, URL_SAFE, STANDARD_NO_PAD, STANDARD].iter().find_map(|engine| engine.decode(text).ok())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(2)
        .map(|pair| {
            let s: String = pair.iter().collect();
            u8::from_str_radix(&s, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::from_encoded(&crypto::random_token::<32>()).unwrap()
    }

    #[test]
    fn sealing_round_trips_and_binds_the_kid() {
        let k = key();
        let sealed = k.seal("kid-1", b"private key bytes").unwrap();
        assert!(!sealed.contains("private"));
        assert_eq!(k.unseal("kid-1", &sealed).unwrap(), b"private key bytes");
        assert!(k.unseal("kid-2", &sealed).is_err(), "a blob moved to another row must not open");
        assert!(key().unseal("kid-1", &sealed).is_err(), "another master key must not open it");
    }

    #[test]
    fn derived_keys_differ_by_label_and_master() {
        let k = key();
        assert_ne!(k.derive("a"), k.derive("b"));
        assert_ne!(k.derive("a"), key().derive("a"));
        assert_eq!(k.derive("a"), k.derive("a"));
    }

    #[test]
    fn encodings_are_accepted_and_short_keys_refused() {
        let raw = [7u8; 32];
        let hex_form = hex(&raw);
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        assert_eq!(
            MasterKey::from_encoded(&hex_form).unwrap().id(),
            MasterKey::from_encoded(&b64).unwrap().id()
        );
        assert!(MasterKey::from_encoded("c2hvcnQ").is_err());
        assert!(MasterKey::from_encoded("not base64 !!").is_err());
    }

    #[test]
    fn a_generated_key_file_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, source) = MasterKey::load_or_generate(None, dir.path()).unwrap();
        assert!(matches!(source, MasterKeySource::Generated(_)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("master.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (second, source) = MasterKey::load_or_generate(None, dir.path()).unwrap();
        assert!(matches!(source, MasterKeySource::File(_)));
        assert_eq!(first.id(), second.id());
    }
}
