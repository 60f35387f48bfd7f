//! Revocations: the deny list of access-token `jti`s and subjects.
//!
//! Access tokens are verified offline, so taking one away early needs a list
//! every verifier can consult; latchkey's own endpoints consult it here.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, ExprTrait, PaginatorTrait, QueryFilter};

use crate::entities::revocations::{Column, Entity as Revocations};
use crate::error::Result;

pub mod kind {
    pub const JTI: &str = "jti";
    pub const SUBJECT: &str = "subject";
}

/// Is a token denied at `now`: its `jti` revoked, or its subject banned or
/// deleted at or after the token was issued (`iat`)? A subject entry only
/// covers tokens issued before it, so tokens issued after an unban work.
pub async fn is_denied(
    db: &impl ConnectionTrait,
    jti: &str,
    sub: &str,
    iat: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let count =
        Revocations::find()
            .filter(Column::ExpiresAt.gt(now))
            .filter((Column::Kind.eq(kind::JTI).and(Column::Value.eq(jti))).or(
                Column::Kind.eq(kind::SUBJECT).and(Column::Value.eq(sub)).and(Column::CreatedAt.gte(iat)),
            ))
            .count(db)
            .await?;
    Ok(count > 0)
}
