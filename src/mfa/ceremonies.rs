//! Ceremonies in the database: a started step that a later request
//! finishes, on this replica or another.
//!
//! - `mfa`: the `mfa_token` of a password sign-in waiting for its second
//!   factor (bound to the user, the client and the attempt's scope and
//!   delivery; it may carry a WebAuthn challenge for the user's passkeys);
//! - `passkey_register`: a WebAuthn registration challenge;
//! - `passkey_login`: a discoverable (usernameless) WebAuthn challenge.
//!
//! The handle goes to the client; only its SHA-256 is stored. A ceremony
//! is finished once ([`finish`] is one conditional `UPDATE`), expires after
//! [`TTL`], and an `mfa` ticket takes at most [`MAX_ATTEMPTS`] answers.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::crypto;
use crate::entities::mfa_ceremonies::{self, Column, Entity as Ceremonies};
use crate::error::Internal;

/// How long a ceremony may take.
pub const TTL: TimeDelta = TimeDelta::minutes(5);
/// Wrong answers one `mfa` ticket accepts before it is spent.
pub const MAX_ATTEMPTS: i32 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Mfa,
    PasskeyRegister,
    PasskeyLogin,
}

impl Purpose {
    pub const fn as_str(self) -> &'static str {
        match self {
            Purpose::Mfa => "mfa",
            Purpose::PasskeyRegister => "passkey_register",
            Purpose::PasskeyLogin => "passkey_login",
        }
    }
}

/// A live ceremony, read back.
#[derive(Clone, Debug)]
pub struct Ceremony<T> {
    pub id_hash: Vec<u8>,
    pub user_id: Option<Uuid>,
    pub client_id: String,
    pub data: T,
    pub expires_at: DateTime<Utc>,
}

fn hash(handle: &str) -> Vec<u8> {
    crypto::sha256(handle.as_bytes()).to_vec()
}

/// Start a ceremony; returns its handle.
pub async fn start<T: Serialize>(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    purpose: Purpose,
    user_id: Option<Uuid>,
    client_id: &str,
    data: &T,
) -> Result<String, Internal> {
    let handle = crypto::random_token::<32>();
    let row = mfa_ceremonies::Model {
        id_hash: hash(&handle),
        purpose: purpose.as_str().to_owned(),
        user_id,
        client_id: client_id.to_owned(),
        data: serde_json::to_string(data).map_err(anyhow::Error::from)?,
        attempts: 0,
        created_at: now,
        expires_at: now + TTL,
        used_at: None,
    };
    let active: mfa_ceremonies::ActiveModel = row.into();
    active.insert(db).await?;
    Ok(handle)
}

/// The live ceremony of `purpose` with this handle: not finished, not
/// expired, not out of attempts. Anything else is `None`.
pub async fn find<T: DeserializeOwned>(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    purpose: Purpose,
    handle: &str,
) -> Result<Option<Ceremony<T>>, Internal> {
    if handle.is_empty() || handle.len() > 256 {
        return Ok(None);
    }
    let row = Ceremonies::find_by_id(hash(handle))
        .filter(Column::Purpose.eq(purpose.as_str()))
        .filter(Column::UsedAt.is_null())
        .filter(Column::ExpiresAt.gt(now))
        .filter(Column::Attempts.lt(MAX_ATTEMPTS))
        .one(db)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let data = serde_json::from_str(&row.data).map_err(anyhow::Error::from)?;
    Ok(Some(Ceremony {
        id_hash: row.id_hash,
        user_id: row.user_id,
        client_id: row.client_id,
        data,
        expires_at: row.expires_at,
    }))
}

/// Mark the ceremony finished. `false` when another request finished it
/// first (or it expired meanwhile): the caller must then not act on it.
pub async fn finish(db: &impl ConnectionTrait, now: DateTime<Utc>, id_hash: &[u8]) -> Result<bool, Internal> {
    let done = Ceremonies::update_many()
        .col_expr(Column::UsedAt, Expr::value(now))
        .filter(Column::IdHash.eq(id_hash.to_vec()))
        .filter(Column::UsedAt.is_null())
        .filter(Column::ExpiresAt.gt(now))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Charge one answer against the ticket before it is checked, in one
/// conditional statement: `false` when the ticket is spent, expired or out
/// of attempts, so parallel answers get [`MAX_ATTEMPTS`] checks in all.
pub async fn charge_attempt(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    id_hash: &[u8],
) -> Result<bool, Internal> {
    let done = Ceremonies::update_many()
        .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
        .filter(Column::IdHash.eq(id_hash.to_vec()))
        .filter(Column::UsedAt.is_null())
        .filter(Column::ExpiresAt.gt(now))
        .filter(Column::Attempts.lt(MAX_ATTEMPTS))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Delete ceremonies that expired before `before` (the purge).
pub async fn purge(db: &impl ConnectionTrait, before: DateTime<Utc>) -> Result<u64, Internal> {
    Ok(Ceremonies::delete_many().filter(Column::ExpiresAt.lt(before)).exec(db).await?.rows_affected)
}
