//! Taking access away, in one place.
//!
//! latchkey hands out two kinds of credentials, and ending access means
//! ending both:
//! - **refresh families** (and browser sign-in sessions) live in the
//!   database: ending one is an `UPDATE`, and the next refresh fails;
//! - **access tokens** are verified offline by relying services, so an
//!   access token already out there can only be stopped by a deny entry on
//!   the **revocation feed** ([`feed`]). Introspection and latchkey's own
//!   endpoints consult the same entries ([`is_denied`]); relying services
//!   follow the feed (`GET /revocations`, the `latchkey-verify` crate).
//!
//! **How a ban reaches relying services:** [`cut_off::user`] ends the user's
//! families and browser sessions and writes a `subject` entry, in one
//! transaction; every relying service that follows the feed sees the entry
//! within one long poll and refuses the user's tokens issued up to then.
//!
//! Every action that takes access away is one function of [`cut_off`], and
//! callers (admin actions, logout, RFC 7009 revocation, refresh-token reuse,
//! code reuse, password changes, bulk revocation) make one call each. Each
//! runs in one transaction: either the sessions end *and* their tokens are
//! denied, or nothing changes and the request can be retried.
//!
//! The functions take what they need — a connection and a [`Reach`] (the
//! time, and how long tokens issued now stay valid) — not the whole
//! application state, so tests and the CLI can call them too.

pub mod cut_off;
pub mod feed;

use chrono::{DateTime, Utc};

pub use feed::{CUT_OFF_MARGIN, Entry, FeedPage, Kind, SNAPSHOT_LIMIT, is_denied, latest, since, snapshot};

use crate::tokens::TokenSettings;

/// When a cut-off happens, and until when a token issued now is accepted
/// (so how long a deny entry must live).
#[derive(Clone, Copy, Debug)]
pub struct Reach {
    pub now: DateTime<Utc>,
    pub tokens_until: DateTime<Utc>,
}

impl Reach {
    pub fn new(now: DateTime<Utc>, tokens: &TokenSettings) -> Self {
        Reach { now, tokens_until: tokens.outstanding_until(now) }
    }
}
