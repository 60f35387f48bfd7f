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

/// What [`rotate`] returns: the family as it was before the rotation, and
/// its user.
pub struct Rotated {
    pub before: refresh_families::Model,
    pub user: crate::entities::users::Model,
}

/// A refresh's common case in one statement (PostgreSQL): move a live,
/// unexpired, not idle family of `client_id` from `counter` to
/// `counter + 1`, record where the refresh came from, and return the
/// family as it was (the context check compares with that) and its user
/// (the account check and the claims need it). `None` when any condition
/// fails: the caller then reads the family and takes the slow path, which
/// tells a lost race (grace), reuse, revocation and expiry apart.
///
/// The self-join reads the row as it was when the statement began; a
/// concurrent rotation of the same family makes PostgreSQL re-check the
/// `WHERE` against the committed row, so the loser changes nothing, as in
/// [`advance`].
pub async fn rotate(
    db: &impl ConnectionTrait,
    id: Uuid,
    counter: i64,
    client_id: &str,
    now: DateTime<Utc>,
    idle_timeout: TimeDelta,
    from: &Origin,
) -> Result<Option<Rotated>> {
    use sea_orm::{FromQueryResult, IdenStatic, Iterable, Statement};

    use crate::entities::users;
    // Built once: the statement is the same for every refresh.
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let columns = |alias: &str, prefix: &str, names: Vec<&'static str>| {
            names
                .into_iter()
                .map(|c| format!("{alias}.\"{c}\" AS \"{prefix}{c}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let family_columns = columns("old", "f_", Column::iter().map(|c| c.as_str()).collect());
        let user_columns = columns("u", "u_", users::Column::iter().map(|c| c.as_str()).collect());
        format!(
            "UPDATE refresh_families AS f \
             SET counter = f.counter + 1, last_rotated_at = $1, last_used_at = $1, \
                 last_ip = COALESCE($2, f.last_ip), last_user_agent = COALESCE($3, f.last_user_agent) \
             FROM refresh_families AS old, users AS u \
             WHERE f.id = $4 AND old.id = f.id AND u.id = f.user_id \
               AND f.counter = $5 AND f.revoked_at IS NULL AND f.client_id = $6 \
               AND f.expires_at > $1 AND f.last_used_at > $7 \
             RETURNING {family_columns}, {user_columns}"
        )
    });
    let values: [sea_orm::Value; 7] = [
        now.into(),
        from.ip.map(|ip| ip.to_string()).into(),
        from.user_agent.clone().into(),
        id.into(),
        counter.into(),
        client_id.into(),
        (now - idle_timeout).into(),
    ];
    let row = db
        .query_one_raw(Statement::from_sql_and_values(db.get_database_backend(), SQL.as_str(), values))
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(Rotated {
        before: refresh_families::Model::from_query_result(&row, "f_")?,
        user: users::Model::from_query_result(&row, "u_")?,
    }))
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
