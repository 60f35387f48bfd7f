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

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::Tag;
use super::error::ApiError;
use super::security::BearerAuth;
use crate::revocation::{self, FeedPage};
use crate::state::AppState;

/// The scope a client needs to read the feed.
pub const FEED_SCOPE: &str = "revocations:read";
const MAX_LIMIT: u64 = 1000;
const MAX_WAIT: u64 = 30;

#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none)]
pub struct RevocationEntry {
    /// The entry's position in the feed.
    pub seq: i64,
    /// `jti`, `sid`, `subject` or `client`.
    pub kind: String,
    /// The `jti`, `sid`, `sub` or `client_id` value to deny.
    pub value: String,
    /// Except for `jti`: tokens with `iat` at or before this are denied.
    pub created_at: DateTime<Utc>,
    /// After this, no token the entry could deny is valid; forget it.
    pub expires_at: DateTime<Utc>,
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
                    created_at: e.created_at,
                    expires_at: e.expires_at,
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
        let limit = limit.0.unwrap_or(500).clamp(1, MAX_LIMIT);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.0.unwrap_or(0).min(MAX_WAIT));
        loop {
            let page = revocation::since(&state.db, cursor, state.now(), limit).await?;
            if !page.entries.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(FeedResponse::Ok(Json(page.into()), "private, max-age=5".into()));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every live revocation, and the cursor to follow the feed from: how a
    /// new relying service gets the full deny list in one call.
    #[oai(path = "/revocations/snapshot", method = "get", operation_id = "getRevocationSnapshot")]
    async fn snapshot(&self, state: Data<&AppState>, auth: BearerAuth) -> Result<FeedResponse, ApiError> {
        authorize(&state, &auth)?;
        let page = revocation::snapshot(&state.db, state.now()).await?;
        Ok(FeedResponse::Ok(Json(page.into()), "private, max-age=5".into()))
    }
}
