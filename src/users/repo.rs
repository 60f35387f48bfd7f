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

pub async fn touch_last_login(db: &impl ConnectionTrait, id: Uuid, now: DateTime<Utc>) -> Result<()> {
    Users::update_many()
        .col_expr(users::Column::LastLoginAt, Expr::value(now))
        .filter(users::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}
