//! The purge job: deletes what can never matter again, in bounded batches.
//!
//! | table | deleted once |
//! |---|---|
//! | refresh families | revoked, expired or idle for longer than the retention |
//! | authorization codes | past their reuse-detection window |
//! | browser sessions | expired, or revoked for longer than the retention |
//! | invitations | expired (used or not) |
//! | revocations | no token they could deny is valid any more |
//! | audit events | older than the audit retention |
//! | signing keys | retired for longer than the retention (private half already wiped) |
//!
//! Every replica may run it: deletes are idempotent, batches are small
//! (`BATCH` rows per statement) so no run holds locks for long, and a run
//! that races another simply finds less to do.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::SimpleExpr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, ExprTrait, QueryFilter, QuerySelect};

use crate::entities::{
    audit_events, authorization_codes, browser_sessions, invitations, mfa_ceremonies, refresh_families,
    revocations, signing_keys, user_factors,
};
use crate::error::Result;
use crate::oauth::codes::REUSE_WINDOW;

pub const BATCH: u64 = 1000;

/// How long dead rows are kept (for session listings and investigations).
#[derive(Clone, Debug)]
pub struct Retention {
    pub dead_rows: TimeDelta,
    pub audit: TimeDelta,
    pub idle_timeout: TimeDelta,
}

/// Rows deleted by one run, per table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub families: u64,
    pub codes: u64,
    pub browser_sessions: u64,
    pub invitations: u64,
    /// Second-factor ceremonies (`mfa_token`s, WebAuthn challenges) past
    /// their expiry, and TOTP secrets handed out but never confirmed.
    pub mfa_ceremonies: u64,
    pub revocations: u64,
    pub audit_events: u64,
    pub signing_keys: u64,
}

/// Delete matching rows of `E` in batches of [`BATCH`] until none is left.
async fn delete_in_batches<E, C, K>(db: &impl ConnectionTrait, key: C, condition: SimpleExpr) -> Result<u64>
where
    E: EntityTrait,
    C: ColumnTrait,
    K: sea_orm::TryGetableMany + Into<sea_orm::Value> + Send + Sync,
{
    let mut total = 0;
    loop {
        let keys: Vec<K> = E::find()
            .select_only()
            .column(key)
            .filter(condition.clone())
            .limit(BATCH)
            .into_tuple::<K>()
            .all(db)
            .await?;
        if keys.is_empty() {
            return Ok(total);
        }
        let n = keys.len() as u64;
        // The condition again: a row that came back to life meanwhile stays.
        total +=
            E::delete_many().filter(key.is_in(keys)).filter(condition.clone()).exec(db).await?.rows_affected;
        if n < BATCH {
            return Ok(total);
        }
    }
}

/// One purge run at `now`.
pub async fn run(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    retention: &Retention,
) -> Result<PurgeReport> {
    use refresh_families::Column as F;
    let dead_since = now - retention.dead_rows;
    let families = delete_in_batches::<refresh_families::Entity, _, uuid::Uuid>(
        db,
        F::Id,
        F::RevokedAt
            .lt(dead_since)
            .or(F::ExpiresAt.lt(dead_since))
            .or(F::LastUsedAt.lt(dead_since - retention.idle_timeout)),
    )
    .await?;
    let codes = delete_in_batches::<authorization_codes::Entity, _, Vec<u8>>(
        db,
        authorization_codes::Column::CodeHash,
        authorization_codes::Column::ExpiresAt.lt(now - REUSE_WINDOW),
    )
    .await?;
    use browser_sessions::Column as B;
    let browser_sessions = delete_in_batches::<browser_sessions::Entity, _, Vec<u8>>(
        db,
        B::IdHash,
        B::ExpiresAt.lt(now).or(B::RevokedAt.lt(dead_since)),
    )
    .await?;
    let invitations = delete_in_batches::<invitations::Entity, _, Vec<u8>>(
        db,
        invitations::Column::TokenHash,
        invitations::Column::ExpiresAt.lt(now),
    )
    .await?;
    let mfa_ceremonies = delete_in_batches::<mfa_ceremonies::Entity, _, Vec<u8>>(
        db,
        mfa_ceremonies::Column::IdHash,
        mfa_ceremonies::Column::ExpiresAt.lt(now),
    )
    .await?
        + delete_in_batches::<user_factors::Entity, _, uuid::Uuid>(
            db,
            user_factors::Column::Id,
            user_factors::Column::Confirmed
                .eq(false)
                .and(user_factors::Column::CreatedAt.lt(now - crate::mfa::ceremonies::TTL * 12)),
        )
        .await?;
    let revocations = delete_in_batches::<revocations::Entity, _, i64>(
        db,
        revocations::Column::Seq,
        revocations::Column::ExpiresAt.lt(now),
    )
    .await?;
    let audit_events = delete_in_batches::<audit_events::Entity, _, uuid::Uuid>(
        db,
        audit_events::Column::Id,
        audit_events::Column::OccurredAt.lt(now - retention.audit),
    )
    .await?;
    let signing_keys = delete_in_batches::<signing_keys::Entity, _, String>(
        db,
        signing_keys::Column::Kid,
        signing_keys::Column::RetiredAt.lt(dead_since),
    )
    .await?;
    Ok(PurgeReport {
        families,
        codes,
        browser_sessions,
        invitations,
        mfa_ceremonies,
        revocations,
        audit_events,
        signing_keys,
    })
}
