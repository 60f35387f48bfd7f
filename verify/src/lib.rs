//! Verify [latchkey](https://github.com/) access tokens in your service,
//! offline.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use latchkey_verify::{Verifier, VerifierConfig};
//! let verifier = Verifier::discover(VerifierConfig::new("https://id.example.com", "latchkey")).await?;
//! let claims = verifier.verify("eyJ0eXAiOiJhdCtqd3QiLC…").await?;
//! println!("{} may {}", claims.sub, claims.scope.join(" "));
//! # Ok(()) }
//! ```
//!
//! - [`Verifier::discover`] reads the issuer's discovery document and JWKS,
//!   caches the keys for the JWKS `Cache-Control: max-age`, refreshes them in
//!   the background before they go stale (with `If-None-Match`), refetches on
//!   an unknown `kid` at most once per [`VerifierConfig::min_refetch_interval`]
//!   (a client spraying random `kid`s cannot make it hammer latchkey), and
//!   keeps verifying with the last good keys while latchkey is down.
//! - [`Verifier::verify`] checks everything RFC 9068 asks: the signature, an
//!   `alg` from the allow-list that equals the key's, `typ: at+jwt`, `iss`,
//!   `aud`, `exp` and `nbf` with a small leeway, and the required claims.
//! - [`Verifier::follow_revocations`] follows latchkey's revocation feed so
//!   revoked tokens and banned users are refused before their tokens expire,
//!   in bounded memory, failing closed: when a bound is reached it denies
//!   older tokens rather than forget a revocation.
//! - With the `poem` feature, [`poem_support::Authenticated`] is an
//!   extractor (`Bearer` → [`Claims`], `401`/`403` with the right
//!   `WWW-Authenticate`), plus scope and role guards.

#![forbid(unsafe_code)]

mod claims;
mod clock;
mod credentials;
mod error;
mod jwks;
mod revocations;
mod verifier;

#[cfg(feature = "poem")]
pub mod poem_support;

pub use claims::Claims;
pub use clock::{Clock, SystemClock};
pub use credentials::{ClientCredentials, CredentialsError};
pub use error::{DiscoveryError, VerifyError};
pub use revocations::{DEFAULT_MAX_ENTRIES, DEFAULT_MAX_JTI_ENTRIES, RevocationOptions, RevocationStats};
pub use verifier::RevocationHandle;

/// The revocation list without the network, for the benchmark in
/// `benches/revocations.rs`. Not part of the stable API.
#[doc(hidden)]
pub mod bench_support {
    pub use crate::revocations::{FeedEntry, RevocationList};
}
pub use verifier::{Algorithm, Verifier, VerifierConfig, VerifierStats};

#[cfg(test)]
mod tests;
