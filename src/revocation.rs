//! Revocations: the deny list of access tokens issued before something was
//! taken away.
//!
//! Access tokens are verified offline, so ending one early needs a list
//! every verifier can consult. Each entry names what it denies:
//! - `jti`: one token (revoked through RFC 7009);
//! - `sid`: every token of one session (refresh family) — logout, reuse
//!   detection, revocation of the refresh token;
//! - `subject`: every token of a user (ban, deletion) or of a client's own
//!   client-credentials tokens;
//! - `client`: every token issued to a client (client deleted).
//!
//! `sid`, `subject` and `client` entries only deny tokens issued at or before
//! the entry (`iat <= created_at`), so tokens issued after an unban work. An
//! entry expires when no token it could deny is still valid.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, ExprTrait, PaginatorTrait, QueryFilter,
};

use crate::entities::revocations::{self, Column, Entity as Revocations};
use crate::error::Result;
use crate::tokens::AccessClaims;

/// What an entry denies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Jti,
    Session,
    Subject,
    Client,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Jti => "jti",
            Kind::Session => "sid",
            Kind::Subject => "subject",
            Kind::Client => "client",
        }
    }
}

/// Add a deny entry valid until `expires_at`.
pub async fn deny(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    kind: Kind,
    value: &str,
    expires_at: DateTime<Utc>,
    reason: &str,
) -> Result<()> {
    let row = revocations::ActiveModel {
        kind: sea_orm::Set(kind.as_str().to_owned()),
        value: sea_orm::Set(value.to_owned()),
        reason: sea_orm::Set(Some(reason.to_owned())),
        created_at: sea_orm::Set(now),
        expires_at: sea_orm::Set(expires_at),
        ..Default::default()
    };
    row.insert(db).await?;
    Ok(())
}

/// Is this token denied at `now`?
pub async fn is_denied(db: &impl ConnectionTrait, claims: &AccessClaims, now: DateTime<Utc>) -> Result<bool> {
    let iat = DateTime::from_timestamp(claims.iat, 0).unwrap_or(now);
    let issued_before = |kind: Kind, value: &str| {
        Column::Kind.eq(kind.as_str()).and(Column::Value.eq(value)).and(Column::CreatedAt.gte(iat))
    };
    let mut condition = Column::Kind
        .eq(Kind::Jti.as_str())
        .and(Column::Value.eq(claims.jti.as_str()))
        .or(issued_before(Kind::Subject, &claims.sub))
        .or(issued_before(Kind::Client, &claims.client_id));
    if let Some(sid) = &claims.sid {
        condition = condition.or(issued_before(Kind::Session, sid));
    }
    let count = Revocations::find().filter(Column::ExpiresAt.gt(now)).filter(condition).count(db).await?;
    Ok(count > 0)
}
