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
//! **The feed.** `seq` is the cursor, and feed order is commit order: a
//! reader that has seen `seq = n` has seen everything below `n`, across
//! replicas and restarts. (On PostgreSQL two transactions can take sequence
//! values 10 and 11 and commit 11 first; a reader at that moment would move
//! past 10 and never see it.) How each database keeps that:
//! - **SQLite** serializes writers: a cut-off's first statement updates the
//!   `revocation_cursor` row, which takes the write lock at once, and its
//!   entries go straight into `revocations`.
//! - **PostgreSQL**: a cut-off writes its entries into `revocations_pending`
//!   inside its own transaction, with no lock shared with other writers, so
//!   many commit side by side. After its commit, [`publish`] moves pending
//!   entries onto the feed in one statement under the `revocation_cursor`
//!   row lock, or, when another move holds it, waits until that move or
//!   the next has carried them; no writer queues for the lock.
//!   The moves are serialized, each takes its `seq` values while holding the
//!   lock and commits before the next begins, so `seq` order is the order in
//!   which entries reached the feed. One move carries every entry committed
//!   since the last one: 64 concurrent logouts need far fewer serialized
//!   commits than 64, and none of them waits for another.
//!
//! [`is_denied`] reads both tables, so a revocation denies from its commit
//! on, on every replica. A cut-off returns once its entries are on the
//! feed; if its replica died in between, another replica's once-a-second
//! move carries them.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{Alias, Expr, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, ExprTrait,
    QueryFilter, QueryOrder, QuerySelect,
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

    pub fn parse(kind: &str) -> Option<Kind> {
        [Kind::Jti, Kind::Session, Kind::Subject, Kind::Client].into_iter().find(|k| k.as_str() == kind)
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

/// Where a cut-off writes its entries: the feed itself on SQLite, the
/// pending table on PostgreSQL (see the module docs).
fn target(txn: &DatabaseTransaction) -> Alias {
    match txn.get_database_backend() {
        DbBackend::Postgres => Alias::new(PENDING),
        _ => Alias::new("revocations"),
    }
}

const PENDING: &str = "revocations_pending";

/// Start a cut-off in `txn`. On SQLite this takes the write lock at once
/// (the first statement is then a write, so SQLite takes the lock, waiting
/// on `busy_timeout`, instead of failing to upgrade a read transaction); on
/// PostgreSQL nothing is shared between writers until [`publish`].
pub(super) async fn lock(txn: &DatabaseTransaction) -> Result<()> {
    if txn.get_database_backend() == DbBackend::Postgres {
        return Ok(());
    }
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

/// Move every entry committed to `revocations_pending` so far onto the feed
/// and return once they are on it (PostgreSQL; nothing to do on SQLite).
/// Writers never queue behind one another for it.
///
/// The move is one statement: it takes the `revocation_cursor` row if no
/// other move holds it (`FOR UPDATE SKIP LOCKED`) and, only then, moves
/// every pending entry it sees into `revocations`, which gives them their
/// `seq`. Moves are serialized by that row lock and take their `seq` values
/// after getting it, so `seq` order is the order in which moves commit. A
/// move whose snapshot predates an earlier move's commit cannot move an
/// entry twice: its `DELETE` skips rows a committed transaction deleted.
///
/// Without contention that is the only statement, one round trip. A caller
/// that finds the row taken does not queue for it: it polls (a cheap read,
/// with a short back-off) until the move in progress, or the next one, which
/// it may make itself, has carried what was pending when it looked. Under
/// load one move carries the entries of many cut-offs.
///
/// (A row lock, not an advisory lock: it orders moves on every engine that
/// speaks the protocol, see `docs/scaling.md`.)
///
/// Runs after each cut-off commits, and once a second on every replica for
/// entries whose writer died in between. A failure is logged, not returned:
/// the entries are committed, [`is_denied`] already sees them, and the next
/// move carries them.
pub async fn publish(db: &impl ConnectionTrait) {
    if db.get_database_backend() != DbBackend::Postgres {
        return;
    }
    if let Err(e) = publish_pending(db).await {
        tracing::warn!(
            error = format!("{:#}", e.0),
            "moving revocations onto the feed failed; the next move carries them"
        );
    }
}

/// How long [`publish`] waits for other moves before it leaves its entries
/// to the once-a-second move.
const PUBLISH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

async fn publish_pending(db: &impl ConnectionTrait) -> Result<()> {
    let query = |sql: String| db.query_one_raw(sea_orm::Statement::from_string(DbBackend::Postgres, sql));
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(1);
    // What to wait for once another move holds the row: everything pending
    // when we first found it taken, the caller's entries included.
    let mut upto: Option<i64> = None;
    loop {
        // Take the row if free and move what this snapshot sees: everything
        // committed before the statement began. Nothing pending: no lock
        // (taking a row lock costs a commit flush), and nothing to wait for.
        let Some(row) = query(format!(
            "WITH locked AS (SELECT id FROM revocation_cursor \
                              WHERE id = 1 AND EXISTS (SELECT 1 FROM {PENDING}) FOR UPDATE SKIP LOCKED), \
             moved AS (DELETE FROM {PENDING} WHERE EXISTS (SELECT 1 FROM locked) \
                       RETURNING id, created_at, kind, value, reason, expires_at), \
             fed AS (INSERT INTO revocations (created_at, kind, value, reason, expires_at) \
                     SELECT created_at, kind, value, reason, expires_at FROM moved ORDER BY id RETURNING seq) \
             SELECT EXISTS (SELECT 1 FROM locked) AS locked, (SELECT max(id) FROM {PENDING}) AS upto"
        ))
        .await?
        else {
            return Ok(());
        };
        if row.try_get::<bool>("", "locked")? {
            return Ok(());
        }
        if upto.is_none() {
            upto = row.try_get::<Option<i64>>("", "upto")?;
        }
        // Nothing was pending: an earlier move, committed, carried it all.
        let Some(limit) = upto else { return Ok(()) };
        // Another move holds the row: it, or the next, carries what we wait
        // for. Poll a few times, then try to make the next move ourselves.
        for _ in 0..3 {
            if started.elapsed() > PUBLISH_PATIENCE {
                return Err(crate::error::Internal(anyhow::anyhow!(
                    "other moves held the feed for {} s",
                    PUBLISH_PATIENCE.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(16));
            let waiting =
                query(format!("SELECT EXISTS (SELECT 1 FROM {PENDING} WHERE id <= {limit}) AS waiting"))
                    .await?
                    .map(|row| row.try_get::<bool>("", "waiting"))
                    .transpose()?;
            if waiting != Some(true) {
                return Ok(());
            }
        }
    }
}

/// Add entries, in feed order, within `txn`, which began with [`lock`].
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
    let mut insert = Query::insert();
    insert.into_table(target(txn)).columns(COLUMNS);
    let mut any = false;
    for e in entries.into_iter().filter(|e| !(e.kind == Kind::Jti && known.contains(&e.value))) {
        let created_at =
            e.issued_up_to.unwrap_or(if e.kind == Kind::Jti { now } else { now + CUT_OFF_MARGIN });
        insert
            .values([
                created_at.into(),
                e.kind.as_str().into(),
                e.value.into(),
                e.reason.into(),
                (e.expires_at + CUT_OFF_MARGIN).into(),
            ])
            .map_err(|e| crate::error::Internal(anyhow::anyhow!("building the deny statement: {e}")))?;
        any = true;
    }
    if any {
        txn.execute(&insert).await?;
    }
    Ok(())
}

/// The columns a cut-off writes, in the order [`append`] and
/// [`append_sessions`] give them.
const COLUMNS: [Column; 5] =
    [Column::CreatedAt, Column::Kind, Column::Value, Column::Reason, Column::ExpiresAt];

/// Add one `sid` entry for every family `ended` selects, in one
/// `INSERT ... SELECT`: a bulk revocation of a million sessions is two
/// statements, not a million. `txn` began with [`lock`]. Returns how many
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
        .into_table(target(txn))
        .columns(COLUMNS)
        .select_from(select)
        .map_err(|e| crate::error::Internal(anyhow::anyhow!("building the bulk deny statement: {e}")))?
        .to_owned();
    let result = txn.execute(&insert).await?;
    Ok(result.rows_affected())
}

/// Is this token denied at `now`? Reads the feed and, on PostgreSQL, the
/// entries not yet moved onto it ([`publish`]): a revocation counts from
/// its commit, whenever it reaches the feed. One statement either way.
pub async fn is_denied(db: &impl ConnectionTrait, claims: &AccessClaims, now: DateTime<Utc>) -> Result<bool> {
    let iat = DateTime::from_timestamp(claims.iat, 0).unwrap_or(now);
    // Unqualified columns: the same condition serves both tables.
    let col = |c: Column| Expr::col(c);
    let issued_before = |kind: Kind, value: &str| {
        col(Column::Kind)
            .eq(kind.as_str())
            .and(col(Column::Value).eq(value))
            .and(col(Column::CreatedAt).gte(iat))
    };
    let mut denies = Condition::any()
        .add(col(Column::Kind).eq(Kind::Jti.as_str()).and(col(Column::Value).eq(claims.jti.as_str())))
        .add(issued_before(Kind::Subject, &claims.sub))
        .add(issued_before(Kind::Client, &claims.client_id));
    if let Some(sid) = &claims.sid {
        denies = denies.add(issued_before(Kind::Session, sid));
    }
    let probe = |table: &str| {
        Query::select()
            .expr(Expr::val(1))
            .from(Alias::new(table))
            .cond_where(Condition::all().add(col(Column::ExpiresAt).gt(now)).add(denies.clone()))
            .limit(1)
            .to_owned()
    };
    let mut any = Expr::exists(probe("revocations"));
    if db.get_database_backend() == DbBackend::Postgres {
        any = any.or(Expr::exists(probe(PENDING)));
    }
    let statement = Query::select().expr_as(any, Alias::new("denied")).to_owned();
    let row = db.query_one(&statement).await?;
    Ok(row.map(|r| r.try_get::<bool>("", "denied")).transpose()?.unwrap_or(false))
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
