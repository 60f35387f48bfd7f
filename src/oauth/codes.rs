//! Authorization codes: short-lived, single-use, bound to client, redirect
//! URI, PKCE challenge and nonce.
//!
//! Redemption reserves the family id and access-token `jti` in the same
//! conditional update that marks the code used. A second redemption flags
//! the code and revokes whatever the first one issued (RFC 6749 §4.1.2); a
//! first redemption that finishes after that flag sees it and revokes its own
//! tokens, so no interleaving leaves a stolen code's tokens alive.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::crypto;
use crate::entities::authorization_codes::{self, Column, Entity as Codes};
use crate::error::Internal;

/// What a code grants.
#[derive(Clone, Debug)]
pub struct NewCode {
    pub client_id: String,
    pub user_id: Uuid,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: DateTime<Utc>,
    /// How the user signed in (RFC 8176).
    pub amr: crate::mfa::Amr,
}

/// Store a code and return it (only its hash is kept).
pub async fn issue(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    ttl: TimeDelta,
    new: NewCode,
) -> Result<String, Internal> {
    let code = crypto::random_token::<32>();
    let row = authorization_codes::Model {
        code_hash: crypto::sha256(code.as_bytes()).to_vec(),
        client_id: new.client_id,
        user_id: new.user_id,
        redirect_uri: new.redirect_uri,
        scope: new.scope,
        nonce: new.nonce,
        code_challenge: new.code_challenge,
        auth_time: new.auth_time,
        created_at: now,
        expires_at: now + ttl,
        used_at: None,
        reused_at: None,
        family_id: None,
        access_jti: None,
        access_expires_at: None,
        amr: Some(new.amr.to_stored()),
    };
    let active: authorization_codes::ActiveModel = row.into();
    active.insert(db).await?;
    Ok(code)
}

#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("the authorization code is invalid or expired")]
    Invalid,
    /// The code was already redeemed: what it issued must be revoked.
    #[error("the authorization code was already used")]
    Reused { family_id: Option<Uuid>, access_jti: Option<String>, access_expires_at: Option<DateTime<Utc>> },
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// A code being redeemed, with the identifiers reserved for what it issues.
#[derive(Clone, Debug)]
pub struct Redemption {
    pub row: authorization_codes::Model,
    pub family_id: Uuid,
    pub access_jti: String,
}

/// How long after a code expires a second redemption still counts as reuse
/// (and revokes); later it is just an invalid code.
pub const REUSE_WINDOW: TimeDelta = TimeDelta::minutes(10);

/// Redeem `code` for `client_id`. `matches` checks the request against the
/// stored code (redirect URI, PKCE); the code is only spent if it holds.
pub async fn redeem(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    code: &str,
    client_id: &str,
    access_ttl: TimeDelta,
    matches: impl Fn(&authorization_codes::Model) -> bool,
) -> Result<Redemption, CodeError> {
    if code.len() > 256 {
        return Err(CodeError::Invalid);
    }
    let hash = crypto::sha256(code.as_bytes()).to_vec();
    let row =
        Codes::find_by_id(hash.clone()).one(db).await.map_err(Internal::from)?.ok_or(CodeError::Invalid)?;
    // Another client's code, or a request that does not match it (wrong
    // redirect URI, wrong or missing verifier): refuse without spending it.
    if row.client_id != client_id || !matches(&row) {
        return Err(CodeError::Invalid);
    }
    if row.used_at.is_some() {
        if now < row.expires_at + REUSE_WINDOW {
            return Err(flag_reuse(db, now, row).await?);
        }
        return Err(CodeError::Invalid);
    }
    if row.expires_at <= now {
        return Err(CodeError::Invalid);
    }
    let family_id = Uuid::now_v7();
    let access_jti = crypto::random_token::<16>();
    let won = Codes::update_many()
        .col_expr(Column::UsedAt, Expr::value(now))
        .col_expr(Column::FamilyId, Expr::value(family_id))
        .col_expr(Column::AccessJti, Expr::value(access_jti.clone()))
        .col_expr(Column::AccessExpiresAt, Expr::value(now + access_ttl))
        .filter(Column::CodeHash.eq(hash.clone()))
        .filter(Column::UsedAt.is_null())
        .exec(db)
        .await
        .map_err(Internal::from)?
        .rows_affected
        == 1;
    if !won {
        let row = Codes::find_by_id(hash).one(db).await.map_err(Internal::from)?.ok_or(CodeError::Invalid)?;
        return Err(flag_reuse(db, now, row).await?);
    }
    Ok(Redemption { row, family_id, access_jti })
}

async fn flag_reuse(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    row: authorization_codes::Model,
) -> Result<CodeError, Internal> {
    Codes::update_many()
        .col_expr(Column::ReusedAt, Expr::value(now))
        .filter(Column::CodeHash.eq(row.code_hash.clone()))
        .exec(db)
        .await?;
    tracing::warn!(client_id = %row.client_id, user_id = %row.user_id, "authorization code reuse detected");
    Ok(CodeError::Reused {
        family_id: row.family_id,
        access_jti: row.access_jti,
        access_expires_at: row.access_expires_at,
    })
}

/// After issuing: was the code flagged as reused meanwhile?
pub async fn was_reused(db: &impl ConnectionTrait, code: &str) -> Result<bool, Internal> {
    let hash = crypto::sha256(code.as_bytes()).to_vec();
    Ok(Codes::find_by_id(hash).one(db).await?.is_some_and(|r| r.reused_at.is_some()))
}
