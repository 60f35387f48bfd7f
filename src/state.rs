//! Application state: everything a request needs, cheap to clone.

use std::ops::Deref;
use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::clock::Clock;
use crate::config::Settings;
use crate::keys::KeyRing;
use crate::keys::master::MasterKey;
use crate::metrics::Metrics;
use crate::passwords::PasswordHasher;
use crate::ratelimit::{LoginGuard, RateLimiter};
use crate::refresh::{FamilyPolicy, RefreshTokenCodec};
use crate::tokens::TokenSettings;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub db: DatabaseConnection,
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    pub hasher: PasswordHasher,
    pub keyring: Arc<KeyRing>,
    pub master: Arc<MasterKey>,
    pub refresh_codec: RefreshTokenCodec,
    pub families: FamilyPolicy,
    /// Issuer, audience and lifetimes of tokens; the issuer is final here
    /// (resolved from the bound address when not configured).
    pub tokens: TokenSettings,
    /// The issuer's origin as browsers send it in `Origin`, for CSRF checks.
    pub issuer_origin: String,
    /// Password-guessing protection.
    pub login_guard: LoginGuard,
    /// Requests to the token endpoint and `/auth/refresh`, per address.
    pub token_limiter: RateLimiter,
    /// `POST /auth/register`, per address.
    pub register_limiter: RateLimiter,
    /// Second-factor answers and finished passkey sign-ins, per address.
    pub mfa_limiter: RateLimiter,
    /// Started passkey sign-ins (each stores a ceremony), per address: a
    /// budget of its own, so starting them cannot use up the answers'.
    pub passkey_begin_limiter: RateLimiter,
    /// The WebAuthn relying party (the issuer's host), or why passkeys are off.
    pub webauthn: Result<webauthn_rs::Webauthn, String>,
    pub metrics: Metrics,
    /// Clients and the deny list, kept current by one shared read per request.
    pub memory: crate::memory::Memory,
    /// Set once a shutdown began: `/readyz` answers 503 from then on.
    pub shutting_down: std::sync::atomic::AtomicBool,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.clock.now()
    }

    /// A cut-off at `now`: deny entries live as long as tokens issued now.
    pub fn reach(&self, now: chrono::DateTime<chrono::Utc>) -> crate::revocation::Reach {
        crate::revocation::Reach::new(now, &self.0.tokens)
    }

    pub fn issuer(&self) -> &str {
        &self.0.tokens.issuer
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
