//! Queries on `users`.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::User;
use crate::entities::users::{self, Entity as Users};
use crate::error::{Result, is_unique_violation};

/// Insert a user; `Ok(None)` when the username (key) is taken.
pub async fn insert(db: &impl ConnectionTrait, row: users::Model) -> Result<Option<User>> {
    let active: users::ActiveModel = row.into();
    match active.insert(db).await {
        Ok(model) => Ok(Some(model.into())),
        Err(e) if is_unique_violation(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn by_id(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<users::Model>> {
    Ok(Users::find_by_id(id).one(db).await?)
}

pub async fn by_username_key(db: &impl ConnectionTrait, key: &str) -> Result<Option<users::Model>> {
    Ok(Users::find().filter(users::Column::UsernameKey.eq(key)).one(db).await?)
}

pub async fn set_password_hash(
    db: &impl ConnectionTrait,
    id: Uuid,
    hash: String,
    now: DateTime<Utc>,
) -> Result<()> {
    Users::update_many()
        .col_expr(users::Column::PasswordHash, Expr::value(hash))
        .col_expr(users::Column::UpdatedAt, Expr::value(now))
        .filter(users::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Take the user's row lock for the rest of `txn` (a no-op update):
/// changes to what hangs off the user that must not interleave (replacing
/// their recovery codes) run one after the other on PostgreSQL. SQLite
/// serializes writing transactions anyway.
pub async fn lock(txn: &impl ConnectionTrait, id: Uuid) -> Result<()> {
    Users::update_many()
        .col_expr(users::Column::Id, Expr::col(users::Column::Id))
        .filter(users::Column::Id.eq(id))
        .exec(txn)
        .await?;
    Ok(())
}

pub async fn touch_last_login(db: &impl ConnectionTrait, id: Uuid, now: DateTime<Utc>) -> Result<()> {
    Users::update_many()
        .col_expr(users::Column::LastLoginAt, Expr::value(now))
        .filter(users::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Users after `after` (by id, which is time-ordered), optionally matching
/// `search` in the username (compared like usernames are) or the email.
pub async fn list(
    db: &impl ConnectionTrait,
    after: Option<Uuid>,
    limit: u64,
    search: Option<&str>,
) -> Result<Vec<users::Model>> {
    use sea_orm::sea_query::{Func, LikeExpr};
    use sea_orm::{ExprTrait, QueryOrder, QuerySelect};
    let mut query = Users::find().order_by_asc(users::Column::Id).limit(limit);
    if let Some(after) = after {
        query = query.filter(users::Column::Id.gt(after));
    }
    if let Some(search) = search.filter(|s| !s.is_empty()) {
        let key = format!("%{}%", crate::sql::like_escape(&super::username::comparison_key(search)));
        let email = format!("%{}%", crate::sql::like_escape(&search.to_lowercase()));
        query = query.filter(Expr::col(users::Column::UsernameKey).like(LikeExpr::new(key).escape('\\')).or(
            Expr::expr(Func::lower(Expr::col(users::Column::Email))).like(LikeExpr::new(email).escape('\\')),
        ));
    }
    Ok(query.all(db).await?)
}

/// Change profile fields; `None` leaves a field as it is.
pub async fn update_profile(
    db: &impl ConnectionTrait,
    id: Uuid,
    email: Option<Option<String>>,
    roles: Option<String>,
    disabled: Option<bool>,
    now: DateTime<Utc>,
) -> Result<Option<users::Model>> {
    let mut update = Users::update_many().col_expr(users::Column::UpdatedAt, Expr::value(now));
    if let Some(email) = email {
        update = update.col_expr(users::Column::Email, Expr::value(email));
    }
    if let Some(roles) = roles {
        update = update.col_expr(users::Column::Roles, Expr::value(roles));
    }
    if let Some(disabled) = disabled {
        update = update.col_expr(users::Column::Disabled, Expr::value(disabled));
    }
    update.filter(users::Column::Id.eq(id)).exec(db).await?;
    by_id(db, id).await
}

/// Set or clear a ban.
pub async fn set_ban(
    db: &impl ConnectionTrait,
    id: Uuid,
    ban: Option<super::Ban>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let (at, until, reason) = match ban {
        Some(b) => (Some(b.at), b.until, b.reason),
        None => (None, None, None),
    };
    let result = Users::update_many()
        .col_expr(users::Column::BannedAt, Expr::value(at))
        .col_expr(users::Column::BannedUntil, Expr::value(until))
        .col_expr(users::Column::BanReason, Expr::value(reason))
        .col_expr(users::Column::UpdatedAt, Expr::value(now))
        .filter(users::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// A new password (reset): the hash and the change time.
pub async fn set_new_password(
    db: &impl ConnectionTrait,
    id: Uuid,
    hash: String,
    now: DateTime<Utc>,
) -> Result<bool> {
    let result = Users::update_many()
        .col_expr(users::Column::PasswordHash, Expr::value(hash))
        .col_expr(users::Column::PasswordChangedAt, Expr::value(now))
        .col_expr(users::Column::UpdatedAt, Expr::value(now))
        .filter(users::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Delete a user; their families, codes and browser sessions go with them
/// (foreign keys cascade).
pub async fn delete(db: &impl ConnectionTrait, id: Uuid) -> Result<bool> {
    Ok(Users::delete_by_id(id).exec(db).await?.rows_affected == 1)
}
