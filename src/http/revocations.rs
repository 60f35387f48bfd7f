//! `GET /revocations`: the feed relying services follow to deny revoked
//! tokens offline.
//!
//! Each entry denies tokens: `jti` one token; `sid` every token of a
//! session; `subject` every token of a user (or a client's own tokens);
//! `client` every token issued to a client. Except for `jti`, an entry only
//! denies tokens with `iat <= created_at`. Entries disappear once no token
//! they could deny is still valid (`expires_at`). Follow the feed with the
//! returned `cursor`; start with `GET /revocations/snapshot`.

use std::time::Duration;

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Tag;
use super::error::ApiError;
use super::security::BearerAuth;
use crate::revocation::{self, FeedPage};
use crate::state::AppState;

/// The scope a client needs to read the feed.
pub const FEED_SCOPE: &str = "revocations:read";
const MAX_LIMIT: u64 = 1000;
const MAX_WAIT: u64 = 30;
/// Long polls waiting at once on this replica; beyond, calls answer at once.
const MAX_WAITERS: usize = 256;
static WAITERS: AtomicUsize = AtomicUsize::new(0);

/// Counts a waiting long poll for as long as it lives.
struct Waiter;

impl Waiter {
    fn enter() -> Option<Waiter> {
        if WAITERS.fetch_add(1, Ordering::SeqCst) >= MAX_WAITERS {
            WAITERS.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Waiter)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        WAITERS.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none)]
pub struct RevocationEntry {
    /// The entry's position in the feed.
    pub seq: i64,
    /// `jti`, `sid`, `subject` or `client`.
    pub kind: String,
    /// The `jti`, `sid`, `sub` or `client_id` value to deny.
    pub value: String,
    /// Except for `jti`: tokens with `iat` at or before this are denied
    /// (seconds since the epoch, like `iat`).
    pub created_at: i64,
    /// After this (seconds since the epoch, like `exp`), no token the entry
    /// could deny is valid; forget it.
    pub expires_at: i64,
    pub reason: Option<String>,
}

#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none)]
pub struct RevocationFeed {
    pub entries: Vec<RevocationEntry>,
    /// Opaque: pass it as `since` to get what came after.
    pub cursor: String,
    /// More entries are available right now: ask again at once.
    pub more: bool,
}

impl From<FeedPage> for RevocationFeed {
    fn from(p: FeedPage) -> Self {
        RevocationFeed {
            entries: p
                .entries
                .into_iter()
                .map(|e| RevocationEntry {
                    seq: e.seq,
                    kind: e.kind,
                    value: e.value,
                    created_at: e.created_at.timestamp(),
                    expires_at: e.expires_at.timestamp(),
                    reason: e.reason,
                })
                .collect(),
            cursor: p.cursor.to_string(),
            more: p.more,
        }
    }
}

#[derive(ApiResponse)]
pub enum FeedResponse {
    /// Cacheable for a few seconds by the client; the cursor makes each URL
    /// stable.
    #[oai(status = 200)]
    Ok(Json<RevocationFeed>, #[oai(header = "Cache-Control")] String),
}

pub struct RevocationsApi;

fn authorize(state: &AppState, auth: &BearerAuth) -> Result<(), ApiError> {
    let claims = &auth.0.claims;
    if claims.is_client_token() && claims.scopes().any(|s| s == FEED_SCOPE) {
        return Ok(());
    }
    auth.admin(state).map(|_| ()).map_err(|_| {
        ApiError::insufficient_scope(
            "the feed needs a client token with scope revocations:read, or an admin token",
        )
    })
}

#[OpenApi(tag = "Tag::Revocations")]
impl RevocationsApi {
    /// Revocations since a cursor, oldest first.
    ///
    /// With `wait` (seconds, at most 30) the call long-polls: it returns as
    /// soon as an entry arrives, or empty when the time is up.
    #[oai(path = "/revocations", method = "get", operation_id = "getRevocations")]
    async fn feed(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The cursor of the last response; `0` for everything still live.
        since: Query<Option<String>>,
        /// At most this many entries (1..=1000, default 500).
        limit: Query<Option<u64>>,
        /// Long-poll for up to this many seconds.
        wait: Query<Option<u64>>,
    ) -> Result<FeedResponse, ApiError> {
        authorize(&state, &auth)?;
        let cursor = match since.0.as_deref() {
            None => 0,
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|c| *c >= 0)
                .ok_or_else(|| ApiError::validation("since must be a cursor from this feed"))?,
        };
        if cursor > revocation::latest(&state.db).await? {
            return Err(ApiError::bad_request(
                "invalid_cursor",
                "this cursor is ahead of the feed (was the database restored?): take a new snapshot",
            ));
        }
        let limit = limit.0.unwrap_or(500).clamp(1, MAX_LIMIT);
        let wait = wait.0.unwrap_or(0).min(MAX_WAIT);
        let waiter = if wait > 0 { Waiter::enter() } else { None };
        let wait = if waiter.is_some() { wait } else { 0 };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
        loop {
            let page = revocation::since(&state.db, cursor, state.now(), limit).await?;
            if !page.entries.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(FeedResponse::Ok(Json(page.into()), "private, max-age=5".into()));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every live revocation (up to 10,000; `more` says if there are more)
    /// and the cursor to follow the feed from: how a new relying service
    /// gets the full deny list in one call.
    #[oai(path = "/revocations/snapshot", method = "get", operation_id = "getRevocationSnapshot")]
    async fn snapshot(&self, state: Data<&AppState>, auth: BearerAuth) -> Result<FeedResponse, ApiError> {
        authorize(&state, &auth)?;
        let page = revocation::snapshot(&state.db, state.now()).await?;
        Ok(FeedResponse::Ok(Json(page.into()), "private, max-age=5".into()))
    }
}
