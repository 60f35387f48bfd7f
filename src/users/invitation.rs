//! Invitations: an account created without a password, and a single-use
//! token that lets the person set one.
//!
//! Until the invitation is accepted the account's password hash is the hash
//! of 32 random bytes nobody knows, so a sign-in attempt fails exactly like
//! a wrong password (same answer, same argon2 cost). The token is 256 random
//! bits, shown once, and stored only as its SHA-256 hash; accepting it is
//! one conditional update, so it works once, and never after it expires.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait,
};
use uuid::Uuid;

use super::User;
use crate::audit::{self, Event, EventKind};
use crate::crypto;
use crate::entities::invitations::{self, Entity as Invitations};
use crate::error::Internal;
use crate::passwords::{HashError, Password};
use crate::refresh::Origin;
use crate::state::AppState;

/// How long an invitation can be accepted.
pub const TTL: TimeDelta = TimeDelta::hours(72);

/// A freshly issued invitation. Not `Debug`: it holds the token.
pub struct Issued {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

fn hash(token: &str) -> Vec<u8> {
    crypto::sha256(token.as_bytes()).to_vec()
}

/// Store a new invitation for `user_id`.
pub async fn issue(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    user_id: Uuid,
    created_by: &str,
) -> Result<Issued, Internal> {
    let token = crypto::random_token::<32>();
    let expires_at = now + TTL;
    let row = invitations::Model {
        token_hash: hash(&token),
        user_id,
        created_by: created_by.to_owned(),
        created_at: now,
        expires_at,
        used_at: None,
    };
    invitations::ActiveModel::from(row).insert(db).await.map_err(Internal::from)?;
    Ok(Issued { token, expires_at })
}

/// Withdraw the user's open invitations (their password was set otherwise).
pub async fn withdraw_for_user(db: &impl ConnectionTrait, user_id: Uuid) -> Result<u64, Internal> {
    let result = Invitations::delete_many()
        .filter(invitations::Column::UserId.eq(user_id))
        .filter(invitations::Column::UsedAt.is_null())
        .exec(db)
        .await
        .map_err(Internal::from)?;
    Ok(result.rows_affected)
}

#[derive(Debug, thiserror::Error)]
pub enum InvitationError {
    /// Unknown, expired or already used: deliberately one answer.
    #[error("the invitation is invalid, expired or already used")]
    Invalid,
    #[error("password hashing is saturated")]
    Busy,
    #[error(transparent)]
    Internal(#[from] Internal),
}

impl From<HashError> for InvitationError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => InvitationError::Busy,
            HashError::Internal(i) => InvitationError::Internal(i),
        }
    }
}

/// Accept an invitation: set the account's password, once.
///
/// The token is checked before the (costly) hash is computed, so invalid
/// tokens cost a lookup; the conditional update that marks it used decides
/// a race between two acceptances.
pub async fn accept(
    state: &AppState,
    origin: &Origin,
    token: &str,
    password: &Password,
) -> Result<User, InvitationError> {
    if token.is_empty() || token.len() > 128 || !crate::sql::is_storable(token) {
        return Err(InvitationError::Invalid);
    }
    let token_hash = hash(token);
    let open = |now: DateTime<Utc>| {
        Condition::all()
            .add(invitations::Column::TokenHash.eq(token_hash.clone()))
            .add(invitations::Column::UsedAt.is_null())
            .add(invitations::Column::ExpiresAt.gt(now))
    };
    let pending =
        Invitations::find().filter(open(state.now())).one(&state.db).await.map_err(Internal::from)?;
    let Some(pending) = pending else {
        return Err(InvitationError::Invalid);
    };
    let password_hash = state.hasher.hash(password).await?;
    let now = state.now();
    let txn = state.db.begin().await.map_err(Internal::from)?;
    // The first statement is the write that claims the invitation.
    let claimed = Invitations::update_many()
        .col_expr(invitations::Column::UsedAt, Expr::value(Some(now)))
        .filter(open(now))
        .exec(&txn)
        .await
        .map_err(Internal::from)?;
    if claimed.rows_affected != 1 {
        return Err(InvitationError::Invalid);
    }
    if !super::repo::set_new_password(&txn, pending.user_id, password_hash, now).await? {
        return Err(InvitationError::Invalid);
    }
    txn.commit().await.map_err(Internal::from)?;
    let user = super::find(&state.db, pending.user_id).await?.ok_or(InvitationError::Invalid)?;
    audit::record(
        &state.db,
        now,
        origin,
        Event::new(EventKind::InvitationAccepted).subject(user.id).detail("invited_by", pending.created_by),
    )
    .await;
    Ok(user)
}
