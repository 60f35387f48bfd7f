//! Built-in TLS: the certificate and key files, checked before use and
//! reloaded without a restart.
//!
//! poem's rustls listener takes a stream of configurations and switches to
//! each one as it arrives; connections already open keep the session they
//! negotiated. [`configs`] is that stream: the configuration read at startup,
//! then a new one whenever `SIGHUP` arrives or the content of either file
//! changes (read every `LATCHKEY_TLS_RELOAD_INTERVAL`). A replacement that cannot be
//! read, does not parse or whose key does not match its certificate is
//! logged and skipped, and the previous certificate keeps serving.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use poem::listener::{RustlsCertificate, RustlsConfig};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::config::TlsFiles;

const CERT_VAR: &str = "LATCHKEY_TLS_CERT";
const KEY_VAR: &str = "LATCHKEY_TLS_KEY";

/// A checked certificate and key, ready for poem.
pub struct Loaded {
    pub config: RustlsConfig,
    /// Hex SHA-256 of the leaf certificate, for the log.
    pub fingerprint: String,
    digest: [u8; 32],
}

/// Read both files and check them: a PEM certificate chain, a PEM private key
/// rustls can sign with, and a key that belongs to the leaf certificate.
/// Errors name the variable and the file.
pub async fn load(files: &TlsFiles) -> anyhow::Result<Loaded> {
    let (cert, key) = read(files).await?;
    check(files, cert, key)
}

async fn read(files: &TlsFiles) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let read = |path: &std::path::Path, var: &'static str| {
        let path = path.to_path_buf();
        async move {
            tokio::fs::read(&path).await.with_context(|| format!("cannot read {var} {}", path.display()))
        }
    };
    Ok((read(&files.cert, CERT_VAR).await?, read(&files.key, KEY_VAR).await?))
}

fn check(files: &TlsFiles, cert: Vec<u8>, key: Vec<u8>) -> anyhow::Result<Loaded> {
    let cert_file = || format!("{CERT_VAR} {}", files.cert.display());
    let key_file = || format!("{KEY_VAR} {}", files.key.display());
    let chain = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a valid PEM certificate chain", cert_file()))?;
    let Some(leaf) = chain.first() else {
        anyhow::bail!("{} holds no PEM certificate", cert_file());
    };
    let fingerprint = hex(&crate::crypto::sha256(leaf));
    let private_key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|_| anyhow::anyhow!("{} holds no valid PEM private key", key_file()))?;
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    CertifiedKey::from_der(chain, private_key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            anyhow::anyhow!("{} does not match the certificate in {}", key_file(), cert_file())
        }
        e => anyhow::anyhow!("{} or {} is unusable: {e}", cert_file(), key_file()),
    })?;
    let digest = digest(&cert, &key);
    let config = RustlsConfig::new().fallback(RustlsCertificate::new().cert(cert).key(key));
    Ok(Loaded { config, fingerprint, digest })
}

/// What the files held: tells a change apart without keeping a second copy
/// of the private key.
fn digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut both = Vec::with_capacity(cert.len() + key.len() + 8);
    both.extend_from_slice(&(cert.len() as u64).to_be_bytes());
    both.extend_from_slice(cert);
    both.extend_from_slice(key);
    crate::crypto::sha256(&both)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The configurations for poem's listener: `initial`, then every good
/// replacement, looking at the files every `poll` (never when zero). Must be
/// called inside the runtime (it registers for `SIGHUP`).
pub fn configs(files: TlsFiles, initial: Loaded, poll: Duration) -> BoxStream<'static, RustlsConfig> {
    let watcher = Watcher {
        files,
        seen: Seen::Content(initial.digest),
        hangup: Hangup::register(),
        interval: (!poll.is_zero()).then(|| {
            let mut i = tokio::time::interval_at(tokio::time::Instant::now() + poll, poll);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        }),
    };
    let reloads = futures_util::stream::unfold(watcher, |mut w| async move {
        let config = w.next().await;
        Some((config, w))
    });
    futures_util::stream::once(std::future::ready(initial.config)).chain(reloads).boxed()
}

/// The last content tried, good or bad: each change is tried (and warned
/// about) once.
#[derive(PartialEq, Eq)]
enum Seen {
    Content([u8; 32]),
    Unreadable,
}

struct Watcher {
    files: TlsFiles,
    seen: Seen,
    hangup: Hangup,
    interval: Option<tokio::time::Interval>,
}

impl Watcher {
    /// Wait for a good replacement.
    async fn next(&mut self) -> RustlsConfig {
        loop {
            let signalled = tokio::select! {
                () = self.hangup.recv() => true,
                () = tick(&mut self.interval) => false,
            };
            let (cert, key) = match read(&self.files).await {
                Ok(files) => files,
                Err(e) => {
                    // Mid-replacement (a rename, a symlink swap) a file can be
                    // missing for a moment: warn once, try again next tick.
                    if signalled || self.seen != Seen::Unreadable {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "TLS certificate not reloaded; serving the previous one"
                        );
                    }
                    self.seen = Seen::Unreadable;
                    continue;
                }
            };
            let seen = Seen::Content(digest(&cert, &key));
            if !signalled && seen == self.seen {
                continue;
            }
            self.seen = seen;
            match check(&self.files, cert, key) {
                Ok(loaded) => {
                    let trigger = if signalled { "SIGHUP" } else { "file change" };
                    tracing::info!(sha256 = %loaded.fingerprint, trigger, "TLS certificate reloaded");
                    return loaded.config;
                }
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "TLS certificate not reloaded; serving the previous one"
                ),
            }
        }
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// `SIGHUP`, where there is such a thing and it could be registered.
struct Hangup(#[cfg(unix)] Option<tokio::signal::unix::Signal>);

impl Hangup {
    #[cfg(unix)]
    fn register() -> Hangup {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(s) => Hangup(Some(s)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; TLS files are still reloaded when they change");
                Hangup(None)
            }
        }
    }

    #[cfg(not(unix))]
    fn register() -> Hangup {
        Hangup()
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.0 {
            if s.recv().await.is_some() {
                return;
            }
            // The runtime is shutting down: no more signals.
            self.0 = None;
        }
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_separates_the_files() {
        assert_ne!(digest(b"ab", b"c"), digest(b"a", b"bc"));
    }
}
