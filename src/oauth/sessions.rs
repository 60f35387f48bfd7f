//! Browser sessions behind the login page's cookie.
//!
//! The cookie holds 256 random bits; the database holds their SHA-256, so a
//! database leak does not hand out sessions. Sessions end at their expiry,
//! at logout (end-session endpoint) and when the account is banned.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::crypto;
use crate::entities::browser_sessions::{self, Column, Entity as Sessions};
use crate::error::Internal;
use crate::refresh::Origin;

/// A live browser session.
#[derive(Clone, Debug)]
pub struct BrowserSession {
    pub user_id: Uuid,
    pub auth_time: DateTime<Utc>,
    /// How the user signed in (RFC 8176).
    pub amr: crate::mfa::Amr,
}

/// Start a session; returns the cookie value.
pub async fn create(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    ttl: TimeDelta,
    user_id: Uuid,
    amr: &crate::mfa::Amr,
    origin: &Origin,
) -> Result<String, Internal> {
    let value = crypto::random_token::<32>();
    let row = browser_sessions::Model {
        id_hash: crypto::sha256(value.as_bytes()).to_vec(),
        user_id,
        auth_time: now,
        created_at: now,
        expires_at: now + ttl,
        revoked_at: None,
        ip: origin.ip.map(|ip| ip.to_string()),
        user_agent: crate::refresh::clean_user_agent(origin.user_agent.as_deref()),
        amr: Some(amr.to_stored()),
    };
    let active: browser_sessions::ActiveModel = row.into();
    active.insert(db).await?;
    Ok(value)
}

/// The live session for a cookie value, if any.
pub async fn find(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    cookie: &str,
) -> Result<Option<BrowserSession>, Internal> {
    if cookie.len() > 128 {
        return Ok(None);
    }
    let hash = crypto::sha256(cookie.as_bytes()).to_vec();
    Ok(Sessions::find_by_id(hash)
        .one(db)
        .await?
        .filter(|s| s.revoked_at.is_none() && s.expires_at > now)
        .map(|s| BrowserSession {
            user_id: s.user_id,
            auth_time: s.auth_time,
            amr: crate::mfa::Amr::from_stored(s.amr.as_deref()),
        }))
}

/// End the session behind a cookie value.
pub async fn revoke(db: &impl ConnectionTrait, now: DateTime<Utc>, cookie: &str) -> Result<(), Internal> {
    let hash = crypto::sha256(cookie.as_bytes()).to_vec();
    Sessions::update_many()
        .col_expr(Column::RevokedAt, Expr::value(now))
        .filter(Column::IdHash.eq(hash))
        .filter(Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// End every browser session of a user (bans, deletion, password reset).
pub async fn revoke_all_for_user(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    user_id: Uuid,
) -> Result<u64, Internal> {
    Ok(Sessions::update_many()
        .col_expr(Column::RevokedAt, Expr::value(now))
        .filter(Column::UserId.eq(user_id))
        .filter(Column::RevokedAt.is_null())
        .exec(db)
        .await?
        .rows_affected)
}
