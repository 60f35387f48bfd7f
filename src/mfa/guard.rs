//! Second-factor guessing, limited per user in the database, so every
//! replica counts toward the same limit: [`LIMIT`] wrong codes within
//! [`WINDOW`] lock the user's second step for [`LOCKOUT`] (audited as
//! `mfa_locked_out`). A six-digit code then takes, on average, years to
//! guess. Per address, the in-memory limiter in `AppState` applies too.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::entities::mfa_guards::{self, Column, Entity as Guards};
use crate::error::Internal;

pub const LIMIT: i32 = 5;
pub const WINDOW: TimeDelta = TimeDelta::minutes(15);
pub const LOCKOUT: TimeDelta = TimeDelta::minutes(15);

/// Seconds until the user's second step unlocks, if it is locked.
pub async fn locked(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<u64>, Internal> {
    let row = Guards::find_by_id(user_id).one(db).await?;
    Ok(row
        .and_then(|r| r.locked_until)
        .filter(|until| *until > now)
        .map(|until| Ord::max(u64::try_from((until - now).num_seconds()).unwrap_or(0), 1)))
}

/// Charge one answer against the user *before* it is checked, so answers
/// sent in parallel cannot all pass a check made before any failure was
/// written. Returns the count in the window, this answer included; a right
/// answer then clears it ([`succeeded`]).
pub async fn charge(db: &impl ConnectionTrait, user_id: Uuid, now: DateTime<Utc>) -> Result<i32, Internal> {
    let fresh = mfa_guards::ActiveModel::from(mfa_guards::Model {
        user_id,
        failures: 0,
        window_started_at: now,
        locked_until: None,
    });
    Guards::insert(fresh).on_conflict_do_nothing_on([Column::UserId]).exec(db).await?;
    let window_over = Expr::col(Column::WindowStartedAt).lte(now - WINDOW);
    Guards::update_many()
        .col_expr(
            Column::Failures,
            Expr::case(window_over.clone(), Expr::value(1))
                .finally(Expr::col(Column::Failures).add(1))
                .into(),
        )
        .col_expr(
            Column::WindowStartedAt,
            Expr::case(window_over, Expr::value(now)).finally(Expr::col(Column::WindowStartedAt)).into(),
        )
        .filter(Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    Ok(Guards::find_by_id(user_id).one(db).await?.map_or(0, |r| r.failures))
}

/// Lock the user's codes once [`LIMIT`] answers were charged and not
/// cleared. Returns the end of the lockout when this call started it
/// (exactly one concurrent caller gets it, to audit it).
pub async fn lock(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, Internal> {
    let until = now + LOCKOUT;
    let started = Guards::update_many()
        .col_expr(Column::LockedUntil, Expr::value(until))
        .col_expr(Column::Failures, Expr::value(0))
        .col_expr(Column::WindowStartedAt, Expr::value(now))
        .filter(Column::UserId.eq(user_id))
        .filter(Column::Failures.gte(LIMIT))
        .exec(db)
        .await?;
    Ok((started.rows_affected == 1).then_some(until))
}

/// A right answer: the count starts over.
pub async fn succeeded(db: &impl ConnectionTrait, user_id: Uuid, now: DateTime<Utc>) -> Result<(), Internal> {
    Guards::delete_many()
        .filter(Column::UserId.eq(user_id))
        .filter(Column::LockedUntil.is_null().or(Column::LockedUntil.lte(now)))
        .exec(db)
        .await?;
    Ok(())
}

/// An admin reset: the count and any lockout are cleared.
pub async fn clear(db: &impl ConnectionTrait, user_id: Uuid) -> Result<(), Internal> {
    Guards::delete_many().filter(Column::UserId.eq(user_id)).exec(db).await?;
    Ok(())
}
