//! Queries on `clients`.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::entities::clients::{self, Column, Entity as Clients};
use crate::error::Result;

pub async fn insert(db: &impl ConnectionTrait, row: clients::Model) -> Result<clients::Model> {
    let active: clients::ActiveModel = row.into();
    Ok(active.insert(db).await?)
}

pub async fn replace(db: &impl ConnectionTrait, row: clients::Model) -> Result<clients::Model> {
    let active: clients::ActiveModel = sea_orm::IntoActiveModel::into_active_model(row).reset_all();
    Ok(active.update(db).await?)
}

pub async fn by_id(db: &impl ConnectionTrait, client_id: &str) -> Result<Option<clients::Model>> {
    Ok(Clients::find_by_id(client_id.to_owned()).one(db).await?)
}

pub async fn all(db: &impl ConnectionTrait) -> Result<Vec<clients::Model>> {
    Ok(Clients::find().order_by_asc(Column::CreatedAt).order_by_asc(Column::ClientId).all(db).await?)
}

pub async fn set_secret(
    db: &impl ConnectionTrait,
    client_id: &str,
    hash: Vec<u8>,
    previous: Option<Vec<u8>>,
    previous_expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<()> {
    Clients::update_many()
        .col_expr(Column::SecretHash, Expr::value(hash))
        .col_expr(Column::PreviousSecretHash, Expr::value(previous))
        .col_expr(Column::PreviousSecretExpiresAt, Expr::value(previous_expires_at))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::ClientId.eq(client_id))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn delete(db: &impl ConnectionTrait, client_id: &str) -> Result<bool> {
    Ok(Clients::delete_by_id(client_id.to_owned()).exec(db).await?.rows_affected == 1)
}
