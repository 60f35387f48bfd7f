//! The deny list and the feed relying services follow.
//!
//! Access tokens are verified offline, so ending one early needs a list
//! every verifier can consult. Each entry names what it denies:
//! - `jti`: one token (revoked through RFC 7009, or issued from a reused code);
//! - `sid`: every token of one session (refresh family) — logout, reuse
//!   detection, revocation of the refresh token, the session cap;
//! - `subject`: every token of a user (ban, deletion, disabling, password
//!   reset) or a client's own client-credentials tokens;
//! - `client`: every token issued to a client (client deleted).
//!
//! `sid`, `subject` and `client` entries only deny tokens issued at or
//! before the entry (`iat <= created_at`), so tokens issued after an unban
//! work. Their `created_at` is set [`CUT_OFF_MARGIN`] after the write: a token
//! signed by a request that read the account just before the ban committed
//! is still covered. An entry expires when no token it could deny is still
//! valid; the purge job deletes it then. A `jti` already denied is not
//! written again, so repeating a revocation cannot flood the feed.
//!
//! **The feed.** `seq` is the cursor. Every write first updates the single
//! `revocation_cursor` row in the same transaction, so writers are serialized
//! and sequence order is commit order: a reader that has seen `seq = n` has
//! seen everything below `n`, across replicas and restarts.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, ExprTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::entities::revocation_cursor;
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

/// How far past the write a `sid`/`subject`/`client` entry reaches.
pub const CUT_OFF_MARGIN: TimeDelta = TimeDelta::seconds(5);

/// A snapshot returns at most this many entries (then `more` is set).
pub const SNAPSHOT_LIMIT: u64 = 10_000;

/// An entry to add.
#[derive(Clone, Debug)]
pub struct Entry {
    pub kind: Kind,
    pub value: String,
    pub expires_at: DateTime<Utc>,
    pub reason: String,
    /// Deny tokens issued at or before this instant instead of the default
    /// (`now` for `jti`, `now + CUT_OFF_MARGIN` for the others).
    pub issued_up_to: Option<DateTime<Utc>>,
}

impl Entry {
    pub fn new(kind: Kind, value: impl Into<String>, expires_at: DateTime<Utc>, reason: &str) -> Self {
        Entry { kind, value: value.into(), expires_at, reason: reason.to_owned(), issued_up_to: None }
    }
}

/// Take the lock that orders feed writers (see the module docs). Every
/// cut-off transaction starts here, before [`append`]: its first statement
/// is then a write, so SQLite takes the write lock at once (waiting on
/// `busy_timeout`) instead of failing to upgrade a read transaction.
pub(super) async fn lock(txn: &DatabaseTransaction) -> Result<()> {
    let locked = revocation_cursor::Entity::update_many()
        .col_expr(revocation_cursor::Column::Writes, Expr::col(revocation_cursor::Column::Writes).add(1))
        .filter(revocation_cursor::Column::Id.eq(1))
        .exec(txn)
        .await?;
    if locked.rows_affected != 1 {
        return Err(crate::error::Internal(anyhow::anyhow!("the revocation_cursor row is missing")));
    }
    Ok(())
}

/// Add entries, in feed order, within `txn`, which holds the [`lock`].
pub(super) async fn append(txn: &DatabaseTransaction, now: DateTime<Utc>, entries: Vec<Entry>) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    // A token already denied stays denied: do not write it again.
    let jtis: Vec<&str> = entries.iter().filter(|e| e.kind == Kind::Jti).map(|e| e.value.as_str()).collect();
    let known: Vec<String> = if jtis.is_empty() {
        Vec::new()
    } else {
        Revocations::find()
            .select_only()
            .column(Column::Value)
            .filter(Column::Kind.eq(Kind::Jti.as_str()))
            .filter(Column::Value.is_in(jtis))
            .filter(Column::ExpiresAt.gt(now))
            .into_tuple()
            .all(txn)
            .await?
    };
    let rows: Vec<revocations::ActiveModel> = entries
        .into_iter()
        .filter(|e| !(e.kind == Kind::Jti && known.contains(&e.value)))
        .map(|e| revocations::ActiveModel {
            created_at: sea_orm::Set(e.issued_up_to.unwrap_or(if e.kind == Kind::Jti {
                now
            } else {
                now + CUT_OFF_MARGIN
            })),
            kind: sea_orm::Set(e.kind.as_str().to_owned()),
            value: sea_orm::Set(e.value),
            reason: sea_orm::Set(Some(e.reason)),
            expires_at: sea_orm::Set(e.expires_at + CUT_OFF_MARGIN),
            ..Default::default()
        })
        .collect();
    if !rows.is_empty() {
        Revocations::insert_many(rows).exec(txn).await?;
    }
    Ok(())
}

/// Add one `sid` entry for every family `ended` selects, in one
/// `INSERT ... SELECT`: a bulk revocation of a million sessions is two
/// statements, not a million. `txn` holds the [`lock`]. Returns how many
/// entries were written.
pub(super) async fn append_sessions(
    txn: &DatabaseTransaction,
    now: DateTime<Utc>,
    ended: Condition,
    expires_at: DateTime<Utc>,
    reason: &str,
) -> Result<u64> {
    use crate::entities::refresh_families::{Column as F, Entity as Families};
    // The feed's `value` is the family id as text, as the `sid` claim has it.
    let sid = match txn.get_database_backend() {
        DbBackend::Postgres => Expr::cust("CAST(\"refresh_families\".\"id\" AS TEXT)"),
        // sqlx stores a UUID in SQLite as its 16 bytes.
        _ => Expr::cust(
            "lower(substr(hex(\"refresh_families\".\"id\"), 1, 8) || '-' || \
             substr(hex(\"refresh_families\".\"id\"), 9, 4) || '-' || \
             substr(hex(\"refresh_families\".\"id\"), 13, 4) || '-' || \
             substr(hex(\"refresh_families\".\"id\"), 17, 4) || '-' || \
             substr(hex(\"refresh_families\".\"id\"), 21, 12))",
        ),
    };
    let select = Query::select()
        .expr(Expr::val(now + CUT_OFF_MARGIN))
        .expr(Expr::val(Kind::Session.as_str()))
        .expr(sid)
        .expr(Expr::val(reason))
        .expr(Expr::val(expires_at + CUT_OFF_MARGIN))
        .from(Families)
        .cond_where(ended)
        .order_by(F::Id, sea_orm::Order::Asc)
        .to_owned();
    let insert = Query::insert()
        .into_table(Revocations)
        .columns([Column::CreatedAt, Column::Kind, Column::Value, Column::Reason, Column::ExpiresAt])
        .select_from(select)
        .map_err(|e| crate::error::Internal(anyhow::anyhow!("building the bulk deny statement: {e}")))?
        .to_owned();
    let result = txn.execute(&insert).await?;
    Ok(result.rows_affected())
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

/// A page of the feed.
#[derive(Clone, Debug)]
pub struct FeedPage {
    pub entries: Vec<revocations::Model>,
    /// Pass this as `since` next time.
    pub cursor: i64,
    /// More entries are waiting right now.
    pub more: bool,
}

/// Live entries after `cursor`, oldest first.
pub async fn since(
    db: &impl ConnectionTrait,
    cursor: i64,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<FeedPage> {
    let mut entries = Revocations::find()
        .filter(Column::Seq.gt(cursor))
        .filter(Column::ExpiresAt.gt(now))
        .order_by_asc(Column::Seq)
        .limit(limit + 1)
        .all(db)
        .await?;
    let more = entries.len() as u64 > limit;
    entries.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = entries.last().map_or(cursor, |e| e.seq);
    Ok(FeedPage { entries, cursor: next, more })
}

/// The largest cursor this feed has handed out (0 when empty).
pub async fn latest(db: &impl ConnectionTrait) -> Result<i64> {
    let max: Option<i64> = Revocations::find()
        .select_only()
        .column_as(Column::Seq.max(), "max")
        .into_tuple()
        .one(db)
        .await?
        .flatten();
    Ok(max.unwrap_or(0))
}

/// Every live entry, oldest first, up to [`SNAPSHOT_LIMIT`]; continue with
/// [`since`] from the returned cursor when `more` is set.
pub async fn snapshot(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<FeedPage> {
    since(db, 0, now, SNAPSHOT_LIMIT).await
}
