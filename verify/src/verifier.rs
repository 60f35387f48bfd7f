//! The verifier: discovery, the JWKS cache, and the checks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use josekit::jwt;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::claims::Claims;
use crate::clock::{Clock, SystemClock};
use crate::credentials::ClientCredentials;
use crate::error::{DiscoveryError, VerifyError};
use crate::jwks::KeySet;
use crate::revocations::{RevocationList, RevocationOptions, RevocationStats};

/// Tokens longer than this are refused before parsing.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Algorithms latchkey signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Es256,
    EdDsa,
    Rs256,
}

impl Algorithm {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ES256" => Some(Algorithm::Es256),
            "EdDSA" => Some(Algorithm::EdDsa),
            "RS256" => Some(Algorithm::Rs256),
            _ => None,
        }
    }
}

/// How to verify.
#[derive(Clone)]
pub struct VerifierConfig {
    pub issuer: String,
    /// The `aud` this service accepts (latchkey's `LATCHKEY_AUDIENCE`).
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Accepted algorithms; a token with any other `alg` is refused.
    pub algorithms: Vec<Algorithm>,
    /// At most one JWKS refetch per this interval for unknown `kid`s.
    pub min_refetch_interval: Duration,
    /// Cache lifetime when the JWKS response has no `max-age`.
    pub default_max_age: Duration,
    pub http: reqwest::Client,
    pub clock: Arc<dyn Clock>,
}

impl VerifierConfig {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        VerifierConfig {
            issuer: issuer.into().trim_end_matches('/').to_owned(),
            audience: audience.into(),
            leeway: Duration::from_secs(10),
            algorithms: vec![Algorithm::Es256, Algorithm::EdDsa, Algorithm::Rs256],
            min_refetch_interval: Duration::from_secs(60),
            default_max_age: Duration::from_secs(300),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Counters for monitoring (and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifierStats {
    /// JWKS requests sent (including background refreshes and 304s).
    pub jwks_fetches: u64,
    /// Keys in the cache.
    pub keys: usize,
}

struct Cache {
    keys: KeySet,
    etag: Option<String>,
    fresh_until: Instant,
}

pub(crate) struct Inner {
    config: VerifierConfig,
    jwks_uri: Option<String>,
    cache: RwLock<Cache>,
    /// When the last unknown-`kid` refetch happened (the throttle).
    refetch: tokio::sync::Mutex<Option<Instant>>,
    fetches: AtomicU64,
    revocations: Mutex<Option<Arc<RevocationList>>>,
}

/// Verifies latchkey access tokens. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

enum Fetched {
    Keys(KeySet, Option<String>, Duration),
    NotModified(Duration),
}

/// The response's `max-age`, kept between 30 seconds (a JWKS served with
/// `max-age=0` must not make every verifier poll once a second) and a day.
fn max_age(headers: &reqwest::header::HeaderMap, default: Duration) -> Duration {
    let seconds = headers
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').find_map(|d| d.trim().strip_prefix("max-age=")?.parse::<u64>().ok()))
        .map_or(default.as_secs(), |s| s);
    Duration::from_secs(seconds.clamp(30, 86_400))
}

impl Verifier {
    /// Discover the issuer, fetch its JWKS, and keep it fresh in the background.
    pub async fn discover(config: VerifierConfig) -> Result<Verifier, DiscoveryError> {
        let url = format!("{}/.well-known/openid-configuration", config.issuer);
        let fetch_err =
            |e: reqwest::Error| DiscoveryError::Fetch { url: url.clone(), message: e.to_string() };
        let doc: Value = config
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(fetch_err)?
            .json()
            .await
            .map_err(|_| DiscoveryError::InvalidDocument(url.clone()))?;
        let issuer = doc
            .get("issuer")
            .and_then(Value::as_str)
            .ok_or_else(|| DiscoveryError::InvalidDocument(url.clone()))?;
        if issuer != config.issuer {
            return Err(DiscoveryError::IssuerMismatch {
                expected: config.issuer.clone(),
                found: issuer.to_owned(),
            });
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| DiscoveryError::InvalidDocument(url.clone()))?;
        let verifier = Verifier::empty(config, Some(jwks_uri.to_owned()));
        match verifier.fetch(None).await? {
            Fetched::Keys(keys, etag, age) => verifier.store(keys, etag, age),
            Fetched::NotModified(_) => return Err(DiscoveryError::InvalidJwks("unexpected 304".into())),
        }
        let weak = Arc::downgrade(&verifier.inner);
        tokio::spawn(refresh_in_background(weak));
        Ok(verifier)
    }

    /// A verifier over a fixed JWKS (no network): for tests and air-gapped use.
    pub fn from_jwks(config: VerifierConfig, jwks: &[u8]) -> Result<Verifier, DiscoveryError> {
        let keys = KeySet::parse(jwks, &config.algorithms).map_err(DiscoveryError::InvalidJwks)?;
        let verifier = Verifier::empty(config, None);
        verifier.store(keys, None, Duration::from_secs(u64::from(u32::MAX)));
        Ok(verifier)
    }

    fn empty(config: VerifierConfig, jwks_uri: Option<String>) -> Verifier {
        Verifier {
            inner: Arc::new(Inner {
                cache: RwLock::new(Cache {
                    keys: KeySet::default(),
                    etag: None,
                    fresh_until: Instant::now(),
                }),
                refetch: tokio::sync::Mutex::new(None),
                fetches: AtomicU64::new(0),
                revocations: Mutex::new(None),
                jwks_uri,
                config,
            }),
        }
    }

    pub fn config(&self) -> &VerifierConfig {
        &self.inner.config
    }

    pub fn stats(&self) -> VerifierStats {
        VerifierStats {
            jwks_fetches: self.inner.fetches.load(Ordering::SeqCst),
            keys: self.inner.cache.read().map(|c| c.keys.keys.len()).unwrap_or(0),
        }
    }

    async fn fetch(&self, etag: Option<&str>) -> Result<Fetched, DiscoveryError> {
        fetch(&self.inner, etag).await
    }

    fn store(&self, keys: KeySet, etag: Option<String>, age: Duration) {
        store(&self.inner, keys, etag, age);
    }

    /// Verify an access token completely; see the crate documentation.
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::Malformed);
        }
        let header = decode_header(token)?;
        let typ = header.get("typ").and_then(Value::as_str).ok_or(VerifyError::WrongType)?;
        let typ = typ.strip_prefix("application/").unwrap_or(typ);
        if !typ.eq_ignore_ascii_case("at+jwt") {
            return Err(VerifyError::WrongType);
        }
        if header.contains_key("crit") {
            return Err(VerifyError::Malformed);
        }
        let alg_name = header.get("alg").and_then(Value::as_str).ok_or(VerifyError::Malformed)?;
        let alg = Algorithm::parse(alg_name)
            .filter(|a| self.inner.config.algorithms.contains(a))
            .ok_or_else(|| VerifyError::UnsupportedAlgorithm(alg_name.to_owned()))?;
        let kid = header.get("kid").and_then(Value::as_str).ok_or(VerifyError::UnknownKey)?;
        let key = match self.key(kid) {
            Some(key) => key,
            None => {
                self.refetch_for_unknown_kid().await;
                self.key(kid).ok_or(VerifyError::UnknownKey)?
            }
        };
        if key.alg != alg {
            return Err(VerifyError::AlgorithmMismatch);
        }
        let (payload, _) =
            jwt::decode_with_verifier(token, key.verifier.as_ref()).map_err(|_| VerifyError::BadSignature)?;
        let map: Map<String, Value> = payload.into();
        for required in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"] {
            if !map.contains_key(required) {
                return Err(VerifyError::MissingClaim(required));
            }
        }
        let claims: Claims =
            serde_json::from_value(Value::Object(map)).map_err(|_| VerifyError::Malformed)?;
        let config = &self.inner.config;
        if claims.iss != config.issuer {
            return Err(VerifyError::WrongIssuer);
        }
        if !claims.aud.contains(&config.audience) {
            return Err(VerifyError::WrongAudience);
        }
        let now = config.clock.now();
        let leeway = i64::try_from(config.leeway.as_secs()).unwrap_or(0);
        if claims.exp + leeway <= now {
            return Err(VerifyError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf - leeway > now) {
            return Err(VerifyError::NotYetValid);
        }
        // A poisoned lock still holds the list: keep checking it (fail closed).
        let revocations =
            self.inner.revocations.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if revocations.is_some_and(|list| list.denies(&claims, now)) {
            return Err(VerifyError::Revoked);
        }
        Ok(claims)
    }

    fn key(&self, kid: &str) -> Option<Arc<crate::jwks::Key>> {
        self.inner.cache.read().ok()?.keys.keys.get(kid).cloned()
    }

    /// An unknown `kid` may be a key published since the last fetch; look
    /// again, but at most once per `min_refetch_interval`, whatever callers
    /// send. Concurrent callers wait for the one fetch in flight.
    async fn refetch_for_unknown_kid(&self) {
        if self.inner.jwks_uri.is_none() {
            return;
        }
        let mut last = self.inner.refetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.inner.config.min_refetch_interval) {
            return;
        }
        *last = Some(Instant::now());
        let etag = self.inner.cache.read().ok().and_then(|c| c.etag.clone());
        match self.fetch(etag.as_deref()).await {
            Ok(Fetched::Keys(keys, etag, age)) => self.store(keys, etag, age),
            Ok(Fetched::NotModified(age)) => extend(&self.inner, age),
            Err(e) => tracing::warn!(error = %e, "JWKS refetch failed; keeping the cached keys"),
        }
    }

    /// Follow the issuer's revocation feed with a client that holds scope
    /// `revocations:read`, so revoked tokens and banned users are refused
    /// before their tokens expire, with the default bounds
    /// ([`RevocationOptions::default`]: [`DEFAULT_MAX_ENTRIES`] `sid`,
    /// `subject` and `client` entries, enough for a bulk revocation of a
    /// million sessions, and [`DEFAULT_MAX_JTI_ENTRIES`] `jti` entries).
    ///
    /// The list fails closed. Revocations of single tokens (`jti`), which a
    /// public client can create cheaply for its own tokens, never push out a
    /// session, user or client entry: each kind has its own bound. If a
    /// bound is reached, the entries closest to expiry are dropped and
    /// replaced by a floor: every token issued at or before the newest
    /// dropped entry is denied until that entry would have expired. The
    /// trade-off: a flood of `jti` revocations beyond the bound makes this
    /// verifier refuse older, still valid tokens too (their clients refresh
    /// and get new ones), never accept a revoked one.
    /// [`RevocationStats::floor_until`] tells when that is the case.
    ///
    /// [`DEFAULT_MAX_ENTRIES`]: crate::DEFAULT_MAX_ENTRIES
    /// [`DEFAULT_MAX_JTI_ENTRIES`]: crate::DEFAULT_MAX_JTI_ENTRIES
    #[must_use = "the feed is followed only while the handle lives"]
    pub fn follow_revocations(&self, credentials: ClientCredentials) -> RevocationHandle {
        self.follow_revocations_with(credentials, RevocationOptions::default())
    }

    /// [`Verifier::follow_revocations`] with other bounds.
    #[must_use = "the feed is followed only while the handle lives"]
    pub fn follow_revocations_with(
        &self,
        credentials: ClientCredentials,
        options: RevocationOptions,
    ) -> RevocationHandle {
        let leeway = i64::try_from(self.inner.config.leeway.as_secs()).unwrap_or(0);
        let list = Arc::new(RevocationList::new(options, leeway));
        *self.inner.revocations.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(Arc::clone(&list));
        let task = tokio::spawn(crate::revocations::follow(
            self.inner.config.issuer.clone(),
            self.inner.config.http.clone(),
            Arc::clone(&self.inner.config.clock),
            credentials,
            Arc::clone(&list),
        ));
        RevocationHandle { list, task }
    }
}

/// The running feed follower; stops when dropped.
#[must_use = "the feed is followed only while the handle lives"]
pub struct RevocationHandle {
    list: Arc<RevocationList>,
    task: tokio::task::JoinHandle<()>,
}

impl RevocationHandle {
    pub fn stats(&self) -> RevocationStats {
        self.list.stats()
    }
}

impl Drop for RevocationHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fetch(inner: &Inner, etag: Option<&str>) -> Result<Fetched, DiscoveryError> {
    let Some(url) = inner.jwks_uri.as_deref() else {
        return Err(DiscoveryError::InvalidJwks("no jwks_uri".into()));
    };
    inner.fetches.fetch_add(1, Ordering::SeqCst);
    let mut request = inner.config.http.get(url);
    if let Some(etag) = etag {
        request = request.header(reqwest::header::IF_NONE_MATCH, etag);
    }
    let fetch_err = |e: reqwest::Error| DiscoveryError::Fetch { url: url.to_owned(), message: e.to_string() };
    let response = request.send().await.map_err(fetch_err)?;
    let age = max_age(response.headers(), inner.config.default_max_age);
    if response.status() == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified(age));
    }
    let response = response.error_for_status().map_err(fetch_err)?;
    let etag = response.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.bytes().await.map_err(fetch_err)?;
    let keys = KeySet::parse(&body, &inner.config.algorithms).map_err(DiscoveryError::InvalidJwks)?;
    Ok(Fetched::Keys(keys, etag, age))
}

fn store(inner: &Inner, keys: KeySet, etag: Option<String>, age: Duration) {
    if let Ok(mut cache) = inner.cache.write() {
        *cache = Cache { keys, etag, fresh_until: Instant::now() + age };
    }
}

fn extend(inner: &Inner, age: Duration) {
    if let Ok(mut cache) = inner.cache.write() {
        cache.fresh_until = Instant::now() + age;
    }
}

/// Refresh the JWKS shortly before it goes stale; on failure keep the last
/// good keys and retry. Ends when the verifier is dropped.
async fn refresh_in_background(inner: Weak<Inner>) {
    loop {
        let wait = {
            let Some(inner) = inner.upgrade() else { return };
            let fresh_until = inner.cache.read().map(|c| c.fresh_until).unwrap_or_else(|_| Instant::now());
            let remaining = fresh_until.saturating_duration_since(Instant::now());
            // Refresh at 90% of the lifetime, never more often than once a second.
            remaining.mul_f64(0.9).max(Duration::from_secs(1))
        };
        tokio::time::sleep(wait).await;
        let Some(inner) = inner.upgrade() else { return };
        let etag = inner.cache.read().ok().and_then(|c| c.etag.clone());
        match fetch(&inner, etag.as_deref()).await {
            Ok(Fetched::Keys(keys, etag, age)) => store(&inner, keys, etag, age),
            Ok(Fetched::NotModified(age)) => extend(&inner, age),
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refresh failed; serving the cached keys");
                extend(&inner, Duration::from_secs(30));
            }
        }
    }
}

fn decode_header(token: &str) -> Result<Map<String, Value>, VerifyError> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(VerifyError::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD.decode(h).map_err(|_| VerifyError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(VerifyError::Malformed),
    }
}
