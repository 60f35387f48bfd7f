//! Passwords: argon2id, off the async workers, bounded.
//!
//! - Hashes are PHC strings with at least the OWASP parameters (m=19456 KiB,
//!   t=2, p=1); a hash made with other parameters is replaced at the next
//!   successful login ([`Verification::Valid::needs_rehash`]).
//! - Hashing runs in `spawn_blocking` behind a semaphore sized to the CPUs,
//!   and at most `queue` callers may wait for it: beyond that the caller gets
//!   [`HashError::Busy`] at once. A login flood therefore neither starves the
//!   async workers (JWKS, refresh keep answering) nor grows memory.
//! - Unknown users are checked against a dummy hash with the same parameters,
//!   so "no such user" and "wrong password" take the same time.
//! - Passwords are NFKC-normalized (NIST SP 800-63B §5.1.1.2) so the same
//!   password typed on two keyboards is the same password.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::anyhow;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;
use unicode_normalization::UnicodeNormalization;

use crate::config::{OWASP_ARGON2_ITERATIONS, OWASP_ARGON2_MEMORY_KIB, Settings};
use crate::error::Internal;
use crate::telemetry::spawn_blocking_in_span;

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 256;
/// Longest accepted input in bytes, checked before any normalization.
pub const MAX_BYTES: usize = 1024;

/// A password, normalized and kept secret (its `Debug` prints nothing).
#[derive(Clone)]
pub struct Password(SecretString);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least {MIN_LEN} characters")]
    TooShort,
    #[error("password must be at most {MAX_LEN} characters")]
    TooLong,
}

impl Password {
    /// A new password (registration, reset): length rules apply.
    pub fn new(input: &str) -> Result<Password, PasswordError> {
        let p = Self::presented(input)?;
        let count = p.0.expose_secret().chars().count();
        if count < MIN_LEN {
            return Err(PasswordError::TooShort);
        }
        if count > MAX_LEN {
            return Err(PasswordError::TooLong);
        }
        Ok(p)
    }

    /// A password presented at login: only the size bound applies, so
    /// passwords set under older rules keep working.
    pub fn presented(input: &str) -> Result<Password, PasswordError> {
        if input.len() > MAX_BYTES {
            return Err(PasswordError::TooLong);
        }
        Ok(Password(SecretString::from(input.nfkc().collect::<String>())))
    }

    fn bytes(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }
}

/// The argon2id parameters new hashes are made with.
#[derive(Clone, Debug)]
pub struct PasswordPolicy {
    params: Params,
}

impl PasswordPolicy {
    pub fn from_settings(s: &Settings) -> anyhow::Result<Self> {
        let params = Params::new(s.argon2_memory_kib, s.argon2_iterations, s.argon2_parallelism, None)
            .map_err(|e| anyhow!("invalid argon2 parameters: {e}"))?;
        Ok(PasswordPolicy { params })
    }

    /// The OWASP minimum: m=19456 KiB, t=2, p=1.
    pub fn owasp() -> Self {
        PasswordPolicy { params: Params::DEFAULT }
    }

    /// Parameters that hash in microseconds. Tests only: never in production.
    pub fn danger_test_minimum() -> Self {
        PasswordPolicy {
            params: Params::new(Params::MIN_M_COST.max(64), 1, 1, None).unwrap_or(Params::DEFAULT),
        }
    }

    pub fn memory_kib(&self) -> u32 {
        self.params.m_cost()
    }
    pub fn iterations(&self) -> u32 {
        self.params.t_cost()
    }
    pub fn parallelism(&self) -> u32 {
        self.params.p_cost()
    }

    pub fn meets_owasp_minimum(&self) -> bool {
        self.memory_kib() >= OWASP_ARGON2_MEMORY_KIB && self.iterations() >= OWASP_ARGON2_ITERATIONS
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Was `phc` made with exactly this policy?
    fn is_current(&self, phc: &str) -> bool {
        let Ok(hash) = PasswordHash::new(phc) else { return false };
        if hash.algorithm != Algorithm::Argon2id.ident() || hash.version != Some(Version::V0x13.into()) {
            return false;
        }
        Params::try_from(&hash).is_ok_and(|p| {
            p.m_cost() == self.params.m_cost()
                && p.t_cost() == self.params.t_cost()
                && p.p_cost() == self.params.p_cost()
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Too many hashes are queued: try again shortly.
    #[error("password hashing is saturated")]
    Busy,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Valid { needs_rehash: bool },
    Invalid,
}

/// Hashes and verifies passwords with bounded concurrency. Cheap to clone.
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    policy: PasswordPolicy,
    permits: Arc<Semaphore>,
    concurrency: usize,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    dummy_hash: String,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").field("policy", &self.inner.policy).finish_non_exhaustive()
    }
}

/// Decrements the waiting count when a job leaves the system, however it
/// leaves. It travels into the blocking task, so a caller that disconnects
/// does not free the slot while its hash is still running.
struct QueueSlot(Arc<AtomicUsize>);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PasswordHasher {
    pub async fn new(policy: PasswordPolicy, concurrency: usize, queue: usize) -> Result<Self, Internal> {
        let dummy_policy = policy.clone();
        let dummy_hash = spawn_blocking_in_span(move || {
            let random = crate::crypto::random_token::<24>();
            dummy_policy
                .argon2()
                .hash_password(random.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| anyhow!("argon2: {e}"))
        })
        .await
        .map_err(|e| anyhow!("hashing task failed: {e}"))??;
        Ok(PasswordHasher {
            inner: Arc::new(Inner {
                policy,
                permits: Arc::new(Semaphore::new(concurrency.max(1))),
                concurrency: concurrency.max(1),
                waiting: Arc::new(AtomicUsize::new(0)),
                max_waiting: queue,
                dummy_hash,
            }),
        })
    }

    pub fn policy(&self) -> &PasswordPolicy {
        &self.inner.policy
    }

    /// Callers waiting for or holding a hashing slot.
    pub fn queue_depth(&self) -> usize {
        self.inner.waiting.load(Ordering::SeqCst)
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&PasswordPolicy) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let inner = &self.inner;
        // Running plus waiting never exceeds the slots plus the queue.
        let capacity = inner.concurrency + inner.max_waiting;
        if inner.waiting.fetch_add(1, Ordering::SeqCst) >= capacity {
            inner.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(HashError::Busy);
        }
        let slot = QueueSlot(Arc::clone(&inner.waiting));
        let permit = Arc::clone(&inner.permits)
            .acquire_owned()
            .await
            .map_err(|e| Internal(anyhow!("hashing semaphore closed: {e}")))?;
        let policy = inner.policy.clone();
        // The permit and the slot move into the blocking task: dropping this
        // future (a disconnected client) cannot release them early, because
        // a blocking task cannot be cancelled.
        spawn_blocking_in_span(move || {
            let result = job(&policy);
            drop(permit);
            drop(slot);
            result
        })
        .await
        .map_err(|e| HashError::Internal(Internal(anyhow!("hashing task failed: {e}"))))
    }

    /// Hash a new password into a PHC string.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let password = password.clone();
        self.run(move |policy| {
            policy
                .argon2()
                .hash_password(password.bytes())
                .map(|h| h.to_string())
                .map_err(|e| anyhow!("argon2: {e}"))
        })
        .await?
        .map_err(|e| HashError::Internal(Internal(e)))
    }

    /// Check `password` against `stored`; with no stored hash (unknown user)
    /// the dummy hash is checked instead, so the answer takes as long.
    pub async fn verify(&self, password: &Password, stored: Option<&str>) -> Result<Verification, HashError> {
        let known = stored.is_some();
        let phc = stored.unwrap_or(&self.inner.dummy_hash).to_owned();
        let password = password.clone();
        self.run(move |policy| {
            // Verification uses the parameters inside the PHC string.
            let ok = policy.argon2().verify_password(password.bytes(), phc.as_str()).is_ok();
            match (known, ok) {
                (true, true) => Verification::Valid { needs_rehash: !policy.is_current(&phc) },
                _ => Verification::Invalid,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_parameters_meet_owasp() {
        let (settings, _) = Settings::from_sources(None, &[]).unwrap();
        let policy = PasswordPolicy::from_settings(&settings).unwrap();
        assert!(policy.meets_owasp_minimum());
        assert_eq!((policy.memory_kib(), policy.iterations(), policy.parallelism()), (19_456, 2, 1));
        assert!(PasswordPolicy::owasp().meets_owasp_minimum());
    }

    #[test]
    fn password_length_rules() {
        assert_eq!(Password::new("short").unwrap_err(), PasswordError::TooShort);
        assert!(Password::new("long enough").is_ok());
        assert_eq!(Password::new(&"x".repeat(257)).unwrap_err(), PasswordError::TooLong);
        assert_eq!(Password::presented(&"x".repeat(2000)).unwrap_err(), PasswordError::TooLong);
        assert!(Password::presented("x").is_ok(), "old short passwords still log in");
        assert_eq!(format!("{:?}", Password::new("hunter2hunter2").unwrap()), "Password(***)");
    }

    #[tokio::test]
    async fn hash_verify_and_rehash_detection() {
        let hasher = PasswordHasher::new(PasswordPolicy::danger_test_minimum(), 2, 8).await.unwrap();
        let pw = Password::new("correct horse").unwrap();
        let phc = hasher.hash(&pw).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$"));
        assert_eq!(
            hasher.verify(&pw, Some(&phc)).await.unwrap(),
            Verification::Valid { needs_rehash: false }
        );
        let wrong = Password::presented("wrong horse").unwrap();
        assert_eq!(hasher.verify(&wrong, Some(&phc)).await.unwrap(), Verification::Invalid);
        assert_eq!(hasher.verify(&pw, None).await.unwrap(), Verification::Invalid);

        let stronger =
            PasswordHasher::new(PasswordPolicy { params: Params::new(128, 2, 1, None).unwrap() }, 2, 8)
                .await
                .unwrap();
        assert_eq!(
            stronger.verify(&pw, Some(&phc)).await.unwrap(),
            Verification::Valid { needs_rehash: true }
        );
    }

    #[tokio::test]
    async fn nfkc_equivalent_passwords_match() {
        let hasher = PasswordHasher::new(PasswordPolicy::danger_test_minimum(), 1, 8).await.unwrap();
        let phc = hasher.hash(&Password::new("ｐａｓｓｗｏｒｄ１２").unwrap()).await.unwrap();
        let ascii = Password::presented("password12").unwrap();
        assert!(matches!(hasher.verify(&ascii, Some(&phc)).await.unwrap(), Verification::Valid { .. }));
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_instead_of_waiting() {
        let hasher = PasswordHasher::new(PasswordPolicy::danger_test_minimum(), 1, 0).await.unwrap();
        // Hold the only permit so the next caller would have to wait.
        let permit = hasher.inner.permits.acquire().await.unwrap();
        hasher.inner.waiting.fetch_add(1, Ordering::SeqCst);
        let pw = Password::new("whatever1").unwrap();
        assert!(matches!(hasher.hash(&pw).await, Err(HashError::Busy)));
        hasher.inner.waiting.fetch_sub(1, Ordering::SeqCst);
        drop(permit);
        assert!(hasher.hash(&pw).await.is_ok());
        assert_eq!(hasher.queue_depth(), 0);
    }
}
