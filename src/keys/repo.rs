//! Queries on `signing_keys`.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, Set,
};

use crate::entities::signing_keys::{self, Entity as SigningKeys};
use crate::error::{Result, is_unique_violation};

pub async fn all(db: &impl ConnectionTrait) -> Result<Vec<signing_keys::Model>> {
    Ok(SigningKeys::find()
        .order_by_asc(signing_keys::Column::Purpose)
        .order_by_asc(signing_keys::Column::Generation)
        .all(db)
        .await?)
}

/// Insert a key; `Ok(false)` when another replica already created this
/// generation of the chain (the unique index decided the race).
pub async fn insert(db: &impl ConnectionTrait, row: signing_keys::Model) -> Result<bool> {
    let active: signing_keys::ActiveModel = row.into();
    match active.insert(db).await {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Retire a key for good and wipe its sealed private half: a retired key
/// never signs again, so there is no reason to keep it.
pub async fn retire(db: &impl ConnectionTrait, kid: &str, at: DateTime<Utc>) -> Result<()> {
    SigningKeys::update_many()
        .col_expr(signing_keys::Column::RetiredAt, Expr::value(at))
        .col_expr(signing_keys::Column::PrivateKeySealed, Expr::value(""))
        .filter(signing_keys::Column::Kid.eq(kid))
        .filter(signing_keys::Column::RetiredAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Move a next key's activation (manual rotation).
pub async fn set_activation(db: &impl ConnectionTrait, kid: &str, at: DateTime<Utc>) -> Result<()> {
    let mut active = signing_keys::ActiveModel::new();
    active.kid = Set(kid.to_owned());
    active.activates_at = Set(at);
    SigningKeys::update(active).exec(db).await?;
    Ok(())
}
