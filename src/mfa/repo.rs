//! Factors and recovery codes in the database. Every use is one
//! conditional `UPDATE`, so two replicas never accept the same TOTP step,
//! the same recovery code, or a passkey signature counter that did not
//! move forward.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::entities::recovery_codes::{self, Column as CodeColumn, Entity as Codes};
use crate::entities::user_factors::{self, Column, Entity as Factors};
use crate::error::Internal;

pub const TOTP: &str = "totp";
pub const PASSKEY: &str = "passkey";

pub type Factor = user_factors::Model;

/// A new factor row of `kind`: unconfirmed, unused, no secret or passkey
/// yet (the caller sets what its kind holds).
pub fn new_factor(id: Uuid, user_id: Uuid, kind: &str, name: String, now: DateTime<Utc>) -> Factor {
    Factor {
        id,
        user_id,
        kind: kind.to_owned(),
        name,
        secret: None,
        passkey: None,
        credential_id: None,
        confirmed: false,
        last_used_step: None,
        sign_count: 0,
        created_at: now,
        last_used_at: None,
    }
}

/// A user's confirmed factors, oldest first.
pub async fn confirmed(db: &impl ConnectionTrait, user_id: Uuid) -> Result<Vec<Factor>, Internal> {
    Ok(Factors::find()
        .filter(Column::UserId.eq(user_id))
        .filter(Column::Confirmed.eq(true))
        .order_by_asc(Column::CreatedAt)
        .all(db)
        .await?)
}

/// Has the user any confirmed factor?
pub async fn has_any(db: &impl ConnectionTrait, user_id: Uuid) -> Result<bool, Internal> {
    Ok(Factors::find()
        .filter(Column::UserId.eq(user_id))
        .filter(Column::Confirmed.eq(true))
        .count(db)
        .await?
        > 0)
}

/// Store a factor; `None` when its credential id is taken.
pub async fn insert(db: &impl ConnectionTrait, row: Factor) -> Result<Option<Factor>, Internal> {
    let active: user_factors::ActiveModel = row.into();
    match active.insert(db).await {
        Ok(f) => Ok(Some(f)),
        Err(e) if crate::error::is_unique_violation(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The user's TOTP factor waiting for its first code, if any.
pub async fn pending_totp(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<Factor>, Internal> {
    Ok(Factors::find_by_id(id)
        .filter(Column::UserId.eq(user_id))
        .filter(Column::Kind.eq(TOTP))
        .filter(Column::Confirmed.eq(false))
        .one(db)
        .await?)
}

/// Forget TOTP secrets handed out but never confirmed.
pub async fn drop_pending_totp(db: &impl ConnectionTrait, user_id: Uuid) -> Result<(), Internal> {
    Factors::delete_many()
        .filter(Column::UserId.eq(user_id))
        .filter(Column::Kind.eq(TOTP))
        .filter(Column::Confirmed.eq(false))
        .exec(db)
        .await?;
    Ok(())
}

/// Accept `step` for a TOTP factor once: only if it is after the last
/// accepted one. Confirms a pending factor with its first code.
pub async fn use_totp_step(
    db: &impl ConnectionTrait,
    id: Uuid,
    step: i64,
    now: DateTime<Utc>,
) -> Result<bool, Internal> {
    let done = Factors::update_many()
        .col_expr(Column::LastUsedStep, Expr::value(step))
        .col_expr(Column::LastUsedAt, Expr::value(now))
        .col_expr(Column::Confirmed, Expr::value(true))
        .filter(Column::Id.eq(id))
        .filter(Column::LastUsedStep.is_null().or(Column::LastUsedStep.lt(step)))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// A passkey by its credential id (any user).
pub async fn passkey_by_credential(
    db: &impl ConnectionTrait,
    credential_id: &[u8],
) -> Result<Option<Factor>, Internal> {
    Ok(Factors::find()
        .filter(Column::CredentialId.eq(credential_id.to_vec()))
        .filter(Column::Kind.eq(PASSKEY))
        .one(db)
        .await?)
}

/// Record a passkey use: the new credential state and signature counter,
/// only if the counter moved forward (or the authenticator keeps none:
/// both zero). `false` means a cloned authenticator or a concurrent use
/// with the same counter.
pub async fn use_passkey(
    db: &impl ConnectionTrait,
    id: Uuid,
    passkey_json: String,
    counter: u32,
    now: DateTime<Utc>,
) -> Result<bool, Internal> {
    let counter = i64::from(counter);
    let moved = if counter == 0 { Column::SignCount.eq(0) } else { Column::SignCount.lt(counter) };
    let done = Factors::update_many()
        .col_expr(Column::Passkey, Expr::value(passkey_json))
        .col_expr(Column::SignCount, Expr::value(counter))
        .col_expr(Column::LastUsedAt, Expr::value(now))
        .filter(Column::Id.eq(id))
        .filter(moved)
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Remove one of the user's factors. `false` when there is no such factor.
pub async fn delete(db: &impl ConnectionTrait, user_id: Uuid, id: Uuid) -> Result<bool, Internal> {
    let done =
        Factors::delete_many().filter(Column::Id.eq(id)).filter(Column::UserId.eq(user_id)).exec(db).await?;
    Ok(done.rows_affected == 1)
}

/// Remove every factor and recovery code of the user; returns how many
/// factors there were.
pub async fn delete_all(db: &impl ConnectionTrait, user_id: Uuid) -> Result<u64, Internal> {
    let done = Factors::delete_many().filter(Column::UserId.eq(user_id)).exec(db).await?;
    delete_recovery_codes(db, user_id).await?;
    Ok(done.rows_affected)
}

pub async fn delete_recovery_codes(db: &impl ConnectionTrait, user_id: Uuid) -> Result<(), Internal> {
    Codes::delete_many().filter(CodeColumn::UserId.eq(user_id)).exec(db).await?;
    Ok(())
}

/// Replace the user's recovery codes with these hashes.
pub async fn replace_recovery_codes(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    hashes: Vec<Vec<u8>>,
    now: DateTime<Utc>,
) -> Result<(), Internal> {
    delete_recovery_codes(db, user_id).await?;
    let rows = hashes.into_iter().map(|code_hash| {
        recovery_codes::ActiveModel::from(recovery_codes::Model {
            code_hash,
            user_id,
            created_at: now,
            used_at: None,
        })
    });
    Codes::insert_many(rows).exec_without_returning(db).await?;
    Ok(())
}

/// Spend a recovery code of the user: `true` once per code.
pub async fn use_recovery_code(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    code_hash: Vec<u8>,
    now: DateTime<Utc>,
) -> Result<bool, Internal> {
    let done = Codes::update_many()
        .col_expr(CodeColumn::UsedAt, Expr::value(now))
        .filter(CodeColumn::CodeHash.eq(code_hash))
        .filter(CodeColumn::UserId.eq(user_id))
        .filter(CodeColumn::UsedAt.is_null())
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Recovery codes the user has left.
/// Whether the user has recovery codes, used or not (they come with the
/// first factor and go with the last).
pub async fn has_recovery_codes(db: &impl ConnectionTrait, user_id: Uuid) -> Result<bool, Internal> {
    Ok(Codes::find().filter(CodeColumn::UserId.eq(user_id)).count(db).await? > 0)
}

pub async fn recovery_codes_left(db: &impl ConnectionTrait, user_id: Uuid) -> Result<u64, Internal> {
    Ok(Codes::find()
        .filter(CodeColumn::UserId.eq(user_id))
        .filter(CodeColumn::UsedAt.is_null())
        .count(db)
        .await?)
}
