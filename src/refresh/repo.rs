//! Queries on `refresh_families`.
//!
//! Rotation is one conditional `UPDATE ... WHERE counter = n AND revoked_at
//! IS NULL`: the database serializes concurrent rotations of one family, on
//! PostgreSQL (row lock) and SQLite (database write lock) alike, so exactly
//! one caller wins and the others see zero rows affected.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use crate::entities::refresh_families::{self, Column, Entity as Families};
use crate::error::Result;
use crate::refresh::Origin;

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

/// Move a family from `counter` to `counter + 1` and record where the
/// refresh came from (what `from` does not know keeps its last value), in
/// one statement. `true` if this call won.
pub async fn advance(
    db: &impl ConnectionTrait,
    id: Uuid,
    counter: i64,
    now: DateTime<Utc>,
    from: &Origin,
) -> Result<bool> {
    let mut update = Families::update_many()
        .col_expr(Column::Counter, Expr::value(counter + 1))
        .col_expr(Column::LastRotatedAt, Expr::value(now))
        .col_expr(Column::LastUsedAt, Expr::value(now));
    if let Some(ip) = from.ip {
        update = update.col_expr(Column::LastIp, Expr::value(ip.to_string()));
    }
    if let Some(ua) = &from.user_agent {
        update = update.col_expr(Column::LastUserAgent, Expr::value(ua.as_str()));
    }
    let result = update
        .filter(Column::Id.eq(id))
        .filter(Column::Counter.eq(counter))
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

/// End those of the given families that are live; returns their ids.
pub async fn revoke_ids(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
    now: DateTime<Utc>,
    reason: &str,
) -> Result<Vec<Uuid>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let live: Vec<Uuid> = Families::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::Id.is_in(ids.iter().copied()))
        .filter(Column::RevokedAt.is_null())
        .into_tuple()
        .all(db)
        .await?;
    if live.is_empty() {
        return Ok(live);
    }
    Families::update_many()
        .col_expr(Column::RevokedAt, Expr::value(now))
        .col_expr(Column::RevokedReason, Expr::value(reason))
        .filter(Column::Id.is_in(live.iter().copied()))
        .filter(Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(live)
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
    /// This family does not match (the session a password change keeps).
    pub except: Option<Uuid>,
}

impl FamilyFilter {
    /// The families the filter selects, live or not.
    pub fn condition(&self) -> Condition {
        use sea_orm::ExprTrait;
        use sea_orm::sea_query::{Func, LikeExpr};
        let mut c = Condition::all();
        if let Some(user) = self.user_id {
            c = c.add(Column::UserId.eq(user));
        }
        if let Some(client) = &self.client_id {
            c = c.add(Column::ClientId.eq(client.as_str()));
        }
        if let Some((lo, hi)) = &self.ip_range {
            c = c.add(Column::IpBin.between(lo.clone(), hi.clone()));
        }
        if let Some(ua) = &self.user_agent_contains {
            let pattern = format!("%{}%", crate::sql::like_escape(&ua.to_lowercase()));
            c = c.add(
                Expr::expr(Func::lower(Expr::col(Column::UserAgent)))
                    .like(LikeExpr::new(pattern).escape('\\')),
            );
        }
        if let Some(before) = self.created_before {
            c = c.add(Column::CreatedAt.lt(before));
        }
        if let Some(after) = self.created_after {
            c = c.add(Column::CreatedAt.gt(after));
        }
        if let Some(except) = self.except {
            c = c.add(Column::Id.ne(except));
        }
        c
    }

    /// The families a [`revoke_matching`] call at `now` for `reason` ended
    /// (read in the same transaction).
    pub fn ended_by(&self, now: DateTime<Utc>, reason: &str) -> Condition {
        self.condition().add(Column::RevokedAt.eq(now)).add(Column::RevokedReason.eq(reason))
    }
}

/// End every live family matching `filter`, in one set-based statement.
pub async fn revoke_matching(
    db: &impl ConnectionTrait,
    filter: &FamilyFilter,
    now: DateTime<Utc>,
    reason: &str,
) -> Result<u64> {
    let update = Families::update_many()
        .col_expr(Column::RevokedAt, Expr::value(now))
        .col_expr(Column::RevokedReason, Expr::value(reason))
        .filter(Column::RevokedAt.is_null())
        .filter(filter.condition());
    Ok(update.exec(db).await?.rows_affected)
}
