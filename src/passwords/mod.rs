//! Passwords: argon2id, off the async workers, bounded.
//!
//! - Hashes are PHC strings with at least the OWASP parameters (m=19456 KiB,
//!   t=2, p=1); a hash made with other parameters is replaced at the next
//!   successful login ([`Verification::Valid::needs_rehash`]).
//! - Hashing runs on a fixed pool of dedicated threads sized to the CPUs,
//!   and at most `queue` callers may wait for it: beyond that the caller gets
//!   [`HashError::Busy`] at once. A login flood therefore neither starves the
//!   async workers (JWKS, refresh keep answering) nor grows memory. The pool
//!   is fixed rather than tokio's blocking pool on purpose: each argon2 call
//!   allocates `m_cost` KiB, and the allocator keeps that block cached in the
//!   arena of the thread that freed it, so hashing on whichever blocking
//!   thread is free leaves ~19 MiB behind on every one of them (measured:
//!   idle 28 MB grew to 280 MB after 30 logins). With N long-lived threads
//!   the high-water mark is N hashes, and a thread idle for 30 s gives its
//!   memory back (reserved large enough that glibc maps it on its own and
//!   unmaps it when freed, instead of caching it in the arena).
//! - Self-service registration hashes through
//!   [`PasswordHasher::for_registration`], which may hold at most half of
//!   the threads (at least one) between its running and queued hashes, and
//!   gets [`HashError::Busy`] at once beyond that. Hashes are taken in
//!   order, so a registration flood can never have more than that share
//!   running: logins keep the other half, and wait behind at most one
//!   share's worth of registrations. The price: with one hashing thread a
//!   login may wait for one registration hash, and more than `N/2`
//!   simultaneous registrations get `503` (retry after a second).
//! - Unknown users are checked against a dummy hash with the same parameters,
//!   so "no such user" and "wrong password" take the same time.
//! - Passwords are NFKC-normalized (NIST SP 800-63B §5.1.1.2) so the same
//!   password typed on two keyboards is the same password.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use anyhow::anyhow;
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;
use unicode_normalization::UnicodeNormalization;

use crate::config::{
    MAX_ARGON2_ITERATIONS, MAX_ARGON2_MEMORY_KIB, MAX_ARGON2_PARALLELISM, OWASP_ARGON2_ITERATIONS,
    OWASP_ARGON2_MEMORY_KIB, Settings,
};
use crate::error::Internal;

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

    /// A password nobody knows: 32 random bytes, base64url. An account
    /// whose owner has not chosen a password yet gets its hash.
    pub fn unguessable() -> Password {
        Password(SecretString::from(crate::crypto::random_token::<32>()))
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

/// Hashes and verifies passwords with bounded concurrency. Cheap to clone;
/// the worker threads stop when the last clone is dropped.
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
    /// Hashes for self-service registration, limited to their share.
    registration: bool,
}

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

struct Inner {
    policy: PasswordPolicy,
    jobs: mpsc::Sender<Job>,
    concurrency: usize,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    /// Registration hashes queued or running, and how many may be.
    registering: Arc<AtomicUsize>,
    registration_share: usize,
    dummy_hash: String,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").field("policy", &self.inner.policy).finish_non_exhaustive()
    }
}

/// Decrements the waiting count when a job leaves the system, however it
/// leaves. It travels into the job, so a caller that disconnects does not
/// free the slot while its hash is still queued or running.
struct QueueSlot(Arc<AtomicUsize>);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One hashing thread's state: the policy, and argon2 working memory that is
/// allocated on first use, reused by every later hash on this thread, and
/// given back after [`IDLE_RELEASE`] without a job.
struct Worker {
    policy: PasswordPolicy,
    memory: Vec<Block>,
    last_job: std::time::Instant,
}

/// A hashing thread idle this long gives its working memory back, so an
/// idle server returns to its small footprint.
const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a thread waits for a job before it looks at its idle time and
/// lets the others (waiting for the queue's lock) do the same.
const WAIT_SLICE: std::time::Duration = std::time::Duration::from_secs(5);

/// The working memory is reserved at least this large (33 MiB of 1 KiB
/// blocks). glibc serves a request of 32 MiB or more (its largest dynamic
/// mmap threshold on 64-bit) with a mapping of its own, which `free` unmaps;
/// a smaller one may come from the thread's arena, which keeps the pages
/// after `free`, so the memory would never go back. Only the blocks argon2
/// uses are ever touched, so the rest of the reservation is never resident.
const MAPPED_BLOCKS: usize = 33 * 1024;

impl Worker {
    /// Compute the raw argon2 output for `params` into `out`. Memory for the
    /// policy's parameters (or smaller) comes from the reused buffer; a hash
    /// stored with larger parameters gets a one-off allocation, so an old
    /// expensive hash cannot pin memory forever.
    fn compute(
        &mut self,
        argon2: &Argon2<'_>,
        params: &Params,
        password: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> argon2::Result<()> {
        let needed = params.block_count();
        if needed > self.policy.params.block_count() {
            // The crate's own allocation fails with `OutOfMemory` instead of
            // aborting, whatever a stored string claims.
            return argon2.hash_password_into(password, salt, out);
        }
        if self.memory.len() < needed {
            let mut memory = Vec::new();
            memory.try_reserve_exact(needed.max(MAPPED_BLOCKS)).map_err(|_| argon2::Error::OutOfMemory)?;
            memory.resize(needed, Block::default());
            self.memory = memory;
        }
        // argon2 uses the first `needed` blocks of a longer buffer.
        argon2.hash_password_into_with_memory(password, salt, out, self.memory.as_mut_slice())
    }

    /// A PHC string for `password` under the policy, with a fresh salt.
    fn hash(&mut self, password: &[u8]) -> Result<String, argon2::password_hash::Error> {
        let params = self.policy.params.clone();
        let salt_bytes = crate::crypto::random_bytes::<{ Salt::RECOMMENDED_LENGTH }>();
        let salt = Salt::new(&salt_bytes)?;
        let mut buffer = [0u8; Output::MAX_LENGTH];
        let out = buffer
            .get_mut(..params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN))
            .ok_or(argon2::password_hash::Error::OutputSize)?;
        self.compute(&self.policy.argon2(), &params, password, &salt, out)?;
        let hash = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params)?,
            salt: Some(salt),
            hash: Some(Output::new(out)?),
        };
        Ok(hash.to_string())
    }

    /// Does `password` match the PHC string `phc`? Uses the algorithm,
    /// version and parameters recorded in the string, and compares the
    /// outputs in constant time (as `PasswordVerifier` does).
    fn verify(&mut self, password: &[u8], phc: &str) -> bool {
        let Ok(hash) = PasswordHash::new(phc) else { return false };
        let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else { return false };
        let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else { return false };
        let Ok(version) = hash.version.map(Version::try_from).transpose() else { return false };
        let Ok(params) = Params::try_from(&hash) else { return false };
        if params.m_cost() > MAX_ARGON2_MEMORY_KIB
            || params.t_cost() > MAX_ARGON2_ITERATIONS
            || params.p_cost() > MAX_ARGON2_PARALLELISM
        {
            return false;
        }
        let argon2 = Argon2::new(algorithm, version.unwrap_or_default(), params.clone());
        let mut out = vec![0u8; expected.len()];
        if self.compute(&argon2, &params, password, &salt, &mut out).is_err() {
            return false;
        }
        crate::crypto::constant_time_eq(&out, expected.as_bytes())
    }
}

/// Start `count` hashing threads that take jobs from one queue until every
/// sender is gone.
fn start_workers(policy: &PasswordPolicy, count: usize) -> Result<mpsc::Sender<Job>, Internal> {
    let (sender, receiver) = mpsc::channel::<Job>();
    let receiver = Arc::new(Mutex::new(receiver));
    for i in 0..count {
        let receiver = Arc::clone(&receiver);
        let mut worker =
            Worker { policy: policy.clone(), memory: Vec::new(), last_job: std::time::Instant::now() };
        std::thread::Builder::new()
            .name(format!("latchkey-argon2-{i}"))
            .spawn(move || {
                loop {
                    // The lock is held only while waiting for the next job,
                    // and at most one slice at a time, so every idle thread
                    // gets to check its idle time.
                    let next = match receiver.lock() {
                        Ok(rx) => rx.recv_timeout(WAIT_SLICE),
                        Err(_) => return,
                    };
                    let job = match next {
                        Ok(job) => job,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            if !worker.memory.is_empty() && worker.last_job.elapsed() >= IDLE_RELEASE {
                                worker.memory = Vec::new();
                            }
                            std::thread::yield_now();
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    };
                    // A panicking job drops its reply channel (the caller
                    // sees an internal error); the worker lives on.
                    let _ = catch_unwind(AssertUnwindSafe(|| job(&mut worker)));
                    worker.last_job = std::time::Instant::now();
                }
            })
            .map_err(|e| Internal(anyhow!("cannot start a hashing thread: {e}")))?;
    }
    Ok(sender)
}

/// Queue `job` for the hashing threads, in the caller's span; the receiver
/// yields its result.
fn submit<T: Send + 'static>(
    jobs: &mpsc::Sender<Job>,
    job: impl FnOnce(&mut Worker) -> T + Send + 'static,
) -> Result<oneshot::Receiver<T>, Internal> {
    let (reply, answer) = oneshot::channel();
    let span = tracing::Span::current();
    let boxed: Job = Box::new(move |worker: &mut Worker| {
        // A caller that went away while queued (a client that timed out)
        // costs no hash: dropping the job frees its slot.
        if reply.is_closed() {
            return;
        }
        let result = span.in_scope(|| job(worker));
        let _ = reply.send(result);
    });
    jobs.send(boxed).map_err(|_| Internal(anyhow!("hashing threads are gone")))?;
    Ok(answer)
}

impl PasswordHasher {
    pub async fn new(policy: PasswordPolicy, concurrency: usize, queue: usize) -> Result<Self, Internal> {
        let concurrency = concurrency.max(1);
        let jobs = start_workers(&policy, concurrency)?;
        let random = crate::crypto::random_token::<24>();
        let dummy_hash = submit(&jobs, move |worker| {
            let hash = worker.hash(random.as_bytes());
            // A replica that never sees a login need not hold the memory.
            worker.memory = Vec::new();
            hash
        })?
        .await
        .map_err(|_| Internal(anyhow!("computing the dummy hash failed")))?
        .map_err(|e| Internal(anyhow!("argon2: {e}")))?;
        Ok(PasswordHasher {
            inner: Arc::new(Inner {
                policy,
                jobs,
                concurrency,
                waiting: Arc::new(AtomicUsize::new(0)),
                max_waiting: queue,
                registering: Arc::new(AtomicUsize::new(0)),
                registration_share: (concurrency / 2).max(1),
                dummy_hash,
            }),
            registration: false,
        })
    }

    /// The same pool, for self-service registration: its hashes (running
    /// plus queued) never exceed half of the threads, so a registration
    /// flood leaves logins the rest; beyond that share it answers
    /// [`HashError::Busy`] at once.
    pub fn for_registration(&self) -> PasswordHasher {
        PasswordHasher { inner: Arc::clone(&self.inner), registration: true }
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
        job: impl FnOnce(&mut Worker) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let inner = &self.inner;
        // A registration holds a slot of its share until its job leaves
        // the system, like the queue slot below.
        let share = if self.registration {
            if inner.registering.fetch_add(1, Ordering::SeqCst) >= inner.registration_share {
                inner.registering.fetch_sub(1, Ordering::SeqCst);
                return Err(HashError::Busy);
            }
            Some(QueueSlot(Arc::clone(&inner.registering)))
        } else {
            None
        };
        // Running plus waiting never exceeds the threads plus the queue.
        let capacity = inner.concurrency + inner.max_waiting;
        if inner.waiting.fetch_add(1, Ordering::SeqCst) >= capacity {
            inner.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(HashError::Busy);
        }
        let slot = QueueSlot(Arc::clone(&inner.waiting));
        let answer = submit(&inner.jobs, move |worker| {
            let result = job(worker);
            drop(slot);
            drop(share);
            result
        })?;
        answer.await.map_err(|_| HashError::Internal(Internal(anyhow!("hashing job failed"))))
    }

    /// Hash a new password into a PHC string.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let password = password.clone();
        self.run(move |worker| worker.hash(password.bytes()))
            .await?
            .map_err(|e| HashError::Internal(Internal(anyhow!("argon2: {e}"))))
    }

    /// Check `password` against `stored`; with no stored hash (unknown user)
    /// the dummy hash is checked instead, so the answer takes as long.
    pub async fn verify(&self, password: &Password, stored: Option<&str>) -> Result<Verification, HashError> {
        let known = stored.is_some();
        let phc = stored.unwrap_or(&self.inner.dummy_hash).to_owned();
        let password = password.clone();
        self.run(move |worker| {
            // Verification uses the parameters inside the PHC string.
            let ok = worker.verify(password.bytes(), &phc);
            match (known, ok) {
                (true, true) => Verification::Valid { needs_rehash: !worker.policy.is_current(&phc) },
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
            PasswordHasher::new(PasswordPolicy { params: Params::new(128, 2, 1, None).unwrap() }, 1, 8)
                .await
                .unwrap();
        assert_eq!(
            stronger.verify(&pw, Some(&phc)).await.unwrap(),
            Verification::Valid { needs_rehash: true }
        );
        // One thread: its reused buffer now holds 128 blocks, and checking
        // the 64-block hash again uses only the first 64 of them.
        let strong_phc = stronger.hash(&pw).await.unwrap();
        assert_eq!(
            stronger.verify(&pw, Some(&strong_phc)).await.unwrap(),
            Verification::Valid { needs_rehash: false }
        );
        assert_eq!(
            stronger.verify(&pw, Some(&phc)).await.unwrap(),
            Verification::Valid { needs_rehash: true }
        );
        assert_eq!(stronger.verify(&wrong, Some(&phc)).await.unwrap(), Verification::Invalid);
    }

    #[tokio::test]
    async fn hashes_interoperate_with_the_argon2_crate_both_ways() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let policy = PasswordPolicy::danger_test_minimum();
        let hasher = PasswordHasher::new(policy.clone(), 1, 8).await.unwrap();
        let pw = Password::new("interop password").unwrap();

        // Ours, checked by the crate's own verifier.
        let ours = hasher.hash(&pw).await.unwrap();
        assert!(policy.argon2().verify_password(pw.bytes(), ours.as_str()).is_ok());
        let wrong = Password::presented("interop passworD").unwrap();
        assert!(policy.argon2().verify_password(wrong.bytes(), ours.as_str()).is_err());

        // The crate's, checked by ours; made with larger memory than the
        // policy, so the one-off allocation path runs too.
        let bigger = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(256, 1, 2, None).unwrap());
        let theirs = bigger.hash_password(pw.bytes()).unwrap().to_string();
        assert_eq!(
            hasher.verify(&pw, Some(&theirs)).await.unwrap(),
            Verification::Valid { needs_rehash: true }
        );
        assert_eq!(hasher.verify(&wrong, Some(&theirs)).await.unwrap(), Verification::Invalid);

        // Garbage and other algorithms are a mismatch, not an error.
        // Parameters beyond latchkey's own limits are refused, not computed
        // (this one would need 4 TiB).
        let absurd = "$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
        for junk in ["", "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ", "$2b$12$abcdefghijklmnopqrstuu", absurd] {
            assert_eq!(hasher.verify(&pw, Some(junk)).await.unwrap(), Verification::Invalid);
        }
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
        // Occupy the only thread until told to stop.
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let held = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.run(move |_| gate.recv().is_ok()).await })
        };
        while hasher.queue_depth() == 0 {
            tokio::task::yield_now().await;
        }
        let pw = Password::new("whatever1").unwrap();
        assert!(matches!(hasher.hash(&pw).await, Err(HashError::Busy)));
        release.send(()).unwrap();
        assert!(held.await.unwrap().unwrap());
        assert!(hasher.hash(&pw).await.is_ok());
        assert_eq!(hasher.queue_depth(), 0);
    }

    #[tokio::test]
    async fn registration_holds_at_most_half_the_threads_and_logins_keep_the_rest() {
        let hasher = PasswordHasher::new(PasswordPolicy::danger_test_minimum(), 4, 0).await.unwrap();
        let registration = hasher.for_registration();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        // Two registrations occupy their share (two of four threads).
        let held: Vec<_> = (0..2)
            .map(|_| {
                let (registration, gate) = (registration.clone(), Arc::clone(&gate));
                tokio::spawn(async move {
                    registration.run(move |_| gate.lock().map(|g| g.recv().is_ok()).unwrap_or(false)).await
                })
            })
            .collect();
        while hasher.queue_depth() < 2 {
            tokio::task::yield_now().await;
        }
        let pw = Password::new("whatever1").unwrap();
        assert!(matches!(registration.hash(&pw).await, Err(HashError::Busy)), "the share is full");
        // Logins still have the other two threads.
        assert!(hasher.verify(&pw, None).await.is_ok());
        assert!(hasher.hash(&pw).await.is_ok());
        for _ in 0..2 {
            release.send(()).unwrap();
        }
        for h in held {
            assert!(h.await.unwrap().unwrap());
        }
        assert!(registration.hash(&pw).await.is_ok(), "the share is free again");
        assert_eq!(hasher.queue_depth(), 0);
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_while_queued_costs_no_hash() {
        let hasher = PasswordHasher::new(PasswordPolicy::danger_test_minimum(), 1, 4).await.unwrap();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let held = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.run(move |_| gate.recv().is_ok()).await })
        };
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let queued = {
            let (hasher, ran) = (hasher.clone(), Arc::clone(&ran));
            tokio::spawn(async move { hasher.run(move |_| ran.store(true, Ordering::SeqCst)).await })
        };
        while hasher.queue_depth() < 2 {
            tokio::task::yield_now().await;
        }
        queued.abort();
        assert!(queued.await.unwrap_err().is_cancelled());
        release.send(()).unwrap();
        assert!(held.await.unwrap().unwrap());
        // The worker reaches the abandoned job next and drops it unrun.
        assert!(hasher.hash(&Password::new("whatever1").unwrap()).await.is_ok());
        assert!(!ran.load(Ordering::SeqCst));
        assert_eq!(hasher.queue_depth(), 0);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_the_thread_survives() {
        let hasher = PasswordHasher::new(PasswordPolicy::danger_test_minimum(), 1, 4).await.unwrap();
        let failed = hasher.run(|_| -> u8 { panic!("boom") }).await;
        assert!(matches!(failed, Err(HashError::Internal(_))));
        assert_eq!(hasher.queue_depth(), 0);
        let pw = Password::new("whatever1").unwrap();
        assert!(hasher.hash(&pw).await.is_ok());
    }
}
