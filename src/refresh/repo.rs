//! Queries on `refresh_families`.
//!
//! Rotation is one conditional `UPDATE ... WHERE counter = n AND revoked_at
//! IS NULL`: the database serializes concurrent rotations of one family, on
//! PostgreSQL (row lock) and SQLite (database write lock) alike, so exactly
//! one caller wins and the others see zero rows affected.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::entities::refresh_families::{self, Column, Entity as Families};
use crate::error::Result;

pub async fn insert(
    db: &impl ConnectionTrait,
    row: refresh_families::Model,
) -> Result<refresh_families::Model> {
    let active: refresh_families::ActiveModel = row.into();
    Ok(active.insert(db).await?)
}

pub async fn by_id(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<refresh_families::Model>> {
    Ok(Families::find_by_id(id).one(db).await?)
}

/// Move a family from `counter` to `counter + 1`. `true` if this call won.
pub async fn advance(db: &impl ConnectionTrait, id: Uuid, counter: i64, now: DateTime<Utc>) -> Result<bool> {
    let result = Families::update_many()
        .col_expr(Column::Counter, Expr::value(counter + 1))
        .col_expr(Column::LastRotatedAt, Expr::value(now))
        .col_expr(Column::LastUsedAt, Expr::value(now))
        .filter(Column::Id.eq(id))
        .filter(Column::Counter.eq(counter))
        .filter(Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// End a family. `true` if it was live.
pub async fn revoke(db: &impl ConnectionTrait, id: Uuid, now: DateTime<Utc>, reason: &str) -> Result<bool> {
    let result = Families::update_many()
        .col_expr(Column::RevokedAt, Expr::value(now))
        .col_expr(Column::RevokedReason, Expr::value(reason))
        .filter(Column::Id.eq(id))
        .filter(Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Families of a user that are live at `now`, newest first.
pub async fn live_for_user(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    now: DateTime<Utc>,
    idle_timeout: TimeDelta,
) -> Result<Vec<refresh_families::Model>> {
    Ok(Families::find()
        .filter(Column::UserId.eq(user_id))
        .filter(Column::RevokedAt.is_null())
        .filter(Column::ExpiresAt.gt(now))
        .filter(Column::LastUsedAt.gt(now - idle_timeout))
        .order_by_desc(Column::CreatedAt)
        .order_by_desc(Column::Id)
        .all(db)
        .await?)
}

/// Revoke the given families in one statement; returns how many ended.
pub async fn revoke_many(
    db: &impl ConnectionTrait,
    ids: Vec<Uuid>,
    now: DateTime<Utc>,
    reason: &str,
) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let result = Families::update_many()
        .col_expr(Column::RevokedAt, Expr::value(now))
        .col_expr(Column::RevokedReason, Expr::value(reason))
        .filter(Column::Id.is_in(ids))
        .filter(Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Ids of a user's live families beyond the newest `keep`. The per-user cap
/// keeps this list short, so the skip happens here rather than in SQL
/// (SQLite has no OFFSET without LIMIT).
pub async fn overflow_for_user(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    keep: usize,
    now: DateTime<Utc>,
    idle_timeout: TimeDelta,
) -> Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = Families::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::UserId.eq(user_id))
        .filter(Column::RevokedAt.is_null())
        .filter(Column::ExpiresAt.gt(now))
        .filter(Column::LastUsedAt.gt(now - idle_timeout))
        .order_by_desc(Column::CreatedAt)
        .order_by_desc(Column::Id)
        .into_tuple::<Uuid>()
        .all(db)
        .await?;
    Ok(ids.into_iter().skip(keep).collect())
}

/// Revoke every live family of a client in one statement.
pub async fn revoke_for_client(
    db: &impl ConnectionTrait,
    client_id: &str,
    now: DateTime<Utc>,
    reason: &str,
) -> Result<u64> {
    let filter = FamilyFilter { client_id: Some(client_id.to_owned()), ..FamilyFilter::default() };
    revoke_matching(db, &filter, now, reason).await
}

/// Which families a bulk revocation ends. Every set field must match.
#[derive(Clone, Debug, Default)]
pub struct FamilyFilter {
    pub user_id: Option<Uuid>,
    pub client_id: Option<String>,
    /// Inclusive range of 16-byte addresses (a CIDR block).
    pub ip_range: Option<(Vec<u8>, Vec<u8>)>,
    /// Case-insensitive substring of the user agent.
    pub user_agent_contains: Option<String>,
    pub created_before: Option<DateTime<Utc>>,
    pub created_after: Option<DateTime<Utc>>,
}

/// End every live family matching `filter`, in one set-based statement.
pub async fn revoke_matching(
    db: &impl ConnectionTrait,
    filter: &FamilyFilter,
    now: DateTime<Utc>,
    reason: &str,
) -> Result<u64> {
    use sea_orm::ExprTrait;
    use sea_orm::sea_query::{Func, LikeExpr};
    let mut update = Families::update_many()
        .col_expr(Column::RevokedAt, Expr::value(now))
        .col_expr(Column::RevokedReason, Expr::value(reason))
        .filter(Column::RevokedAt.is_null());
    if let Some(user) = filter.user_id {
        update = update.filter(Column::UserId.eq(user));
    }
    if let Some(client) = &filter.client_id {
        update = update.filter(Column::ClientId.eq(client.as_str()));
    }
    if let Some((lo, hi)) = &filter.ip_range {
        update = update.filter(Column::IpBin.between(lo.clone(), hi.clone()));
    }
    if let Some(ua) = &filter.user_agent_contains {
        let pattern = format!("%{}%", crate::sql::like_escape(&ua.to_lowercase()));
        update = update.filter(
            Expr::expr(Func::lower(Expr::col(Column::UserAgent))).like(LikeExpr::new(pattern).escape('\\')),
        );
    }
    if let Some(before) = filter.created_before {
        update = update.filter(Column::CreatedAt.lt(before));
    }
    if let Some(after) = filter.created_after {
        update = update.filter(Column::CreatedAt.gt(after));
    }
    Ok(update.exec(db).await?.rows_affected)
}

/// End every live family of a user in one statement.
pub async fn revoke_for_user(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    now: DateTime<Utc>,
    reason: &str,
) -> Result<u64> {
    let filter = FamilyFilter { user_id: Some(user_id), ..FamilyFilter::default() };
    revoke_matching(db, &filter, now, reason).await
}
