//! Every way latchkey takes access away. Each function ends what lives in
//! the database (refresh families, browser sessions) and writes the deny
//! entries that stop the access tokens already issued, in one transaction.
//!
//! Pass a `DatabaseTransaction` as `db` to make a cut-off part of a larger
//! write (a ban and its cut-off commit together); it then runs in a
//! savepoint of that transaction.
//!
//! | action | families | browser sessions | deny entry |
//! |---|---|---|---|
//! | ban, disable, role change, admin password reset ([`user`]) | all of the user's | all | `subject` |
//! | user deleted ([`user_deleted`]) | deleted with the user | deleted | `subject` |
//! | client disabled or deleted ([`client`]) | all of the client's | — | `client` |
//! | logout, RFC 7009, admin ends one session, reuse, withdrawn scope ([`session`]) | one | — | `sid` |
//! | per-user session cap ([`sessions`]) | the oldest | — | `sid` each |
//! | bulk revocation ([`matching`]) | those matching | with a user: all | `sid` each, set-based; with a user also `subject` |
//! | password change ([`password_changed`]) | all but the one kept | all | `sid` each, and `subject` up to the change's second |
//! | one access token ([`token`]), code reuse ([`code_reused`]) | the code's | — | `jti` (and `sid`) |

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use std::future::Future;
use uuid::Uuid;

use super::Reach;
use super::feed::{self, Entry, Kind};
use crate::error::Result;
use crate::oauth::sessions as browser_sessions;
use crate::refresh::repo::{self as families, FamilyFilter};

/// A cut-off's transaction (on SQLite holding the write lock from its
/// first statement on: [`feed::lock`]).
async fn begin<C: Publish>(db: &C) -> Result<DatabaseTransaction> {
    let txn = db.begin().await?;
    feed::lock(&txn).await?;
    Ok(txn)
}

/// Commit a cut-off and move its entries onto the feed ([`feed::publish`]).
/// Every replica denies them from the commit on; relying services see
/// them on the feed once this returns.
async fn finish<C: Publish>(db: &C, txn: DatabaseTransaction) -> Result<()> {
    txn.commit().await?;
    db.publish().await;
    Ok(())
}

/// Where a cut-off runs: on its own, it moves its entries onto the feed
/// after its commit; inside a caller's transaction it cannot (the entries
/// are not committed yet), so the caller calls [`feed::publish`] after its
/// own commit. (Were the move made inside the transaction, the feed's row
/// lock would last until that commit.)
pub trait Publish: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction> {
    fn publish(&self) -> impl Future<Output = ()> + Send;
}

impl Publish for sea_orm::DatabaseConnection {
    async fn publish(&self) {
        feed::publish(self).await;
    }
}

impl Publish for DatabaseTransaction {
    async fn publish(&self) {}
}

/// `sid` entries for families already ended in `txn`, written set-based.
async fn deny_ended(
    txn: &DatabaseTransaction,
    reach: Reach,
    filter: &FamilyFilter,
    why: &str,
) -> Result<u64> {
    feed::append_sessions(txn, reach.now, filter.ended_by(reach.now, why), reach.tokens_until, why).await
}

/// Take every form of access away from a user: families, browser sessions,
/// and (through a `subject` entry) every access token issued so far.
/// Returns how many families ended.
pub async fn user<C: Publish>(db: &C, reach: Reach, user_id: Uuid, why: &str) -> Result<u64> {
    let txn = begin(db).await?;
    let filter = FamilyFilter { user_id: Some(user_id), ..FamilyFilter::default() };
    let ended = families::revoke_matching(&txn, &filter, reach.now, why).await?;
    browser_sessions::revoke_all_for_user(&txn, reach.now, user_id).await?;
    let entry = Entry::new(Kind::Subject, user_id.to_string(), reach.tokens_until, why);
    feed::append(&txn, reach.now, vec![entry]).await?;
    finish(db, txn).await?;
    Ok(ended)
}

/// A user is about to be deleted: deny their access tokens. (Their
/// families and browser sessions go with the row.)
pub async fn user_deleted<C: Publish>(db: &C, reach: Reach, user_id: Uuid) -> Result<()> {
    let txn = begin(db).await?;
    let entry = Entry::new(Kind::Subject, user_id.to_string(), reach.tokens_until, "deleted");
    feed::append(&txn, reach.now, vec![entry]).await?;
    finish(db, txn).await?;
    Ok(())
}

/// Take away everything a client was issued: its refresh families end and
/// its access tokens (user and client-credentials alike) are denied until
/// the last one expires. Returns how many families ended.
pub async fn client<C: Publish>(db: &C, reach: Reach, client_id: &str, why: &str) -> Result<u64> {
    let txn = begin(db).await?;
    let filter = FamilyFilter { client_id: Some(client_id.to_owned()), ..FamilyFilter::default() };
    let ended = families::revoke_matching(&txn, &filter, reach.now, why).await?;
    let entry = Entry::new(Kind::Client, client_id, reach.tokens_until, why);
    feed::append(&txn, reach.now, vec![entry]).await?;
    finish(db, txn).await?;
    Ok(ended)
}

/// End one session: its refresh family and its access tokens. Returns
/// whether it was live (an ended session is not denied again).
pub async fn session<C: Publish>(db: &C, reach: Reach, family_id: Uuid, why: &str) -> Result<bool> {
    Ok(sessions(db, reach, vec![family_id], why).await? == 1)
}

/// End several sessions by id (the per-user cap). Returns how many were live.
pub async fn sessions<C: Publish>(db: &C, reach: Reach, ids: Vec<Uuid>, why: &str) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let txn = begin(db).await?;
    let ended = families::revoke_ids(&txn, &ids, reach.now, why).await?;
    let entries: Vec<Entry> =
        ended.iter().map(|id| Entry::new(Kind::Session, id.to_string(), reach.tokens_until, why)).collect();
    feed::append(&txn, reach.now, entries).await?;
    finish(db, txn).await?;
    Ok(ended.len() as u64)
}

/// Bulk revocation: end every live family matching `filter` and deny the
/// access tokens of each, in two set-based statements whatever the count.
/// With a user in the filter, that user's browser sessions and every access
/// token of theirs (a `subject` entry) end too. Returns how many ended.
pub async fn matching<C: Publish>(db: &C, reach: Reach, filter: &FamilyFilter, why: &str) -> Result<u64> {
    let txn = begin(db).await?;
    let ended = families::revoke_matching(&txn, filter, reach.now, why).await?;
    if ended > 0 {
        deny_ended(&txn, reach, filter, why).await?;
    }
    if let Some(user_id) = filter.user_id {
        browser_sessions::revoke_all_for_user(&txn, reach.now, user_id).await?;
        let entry = Entry::new(Kind::Subject, user_id.to_string(), reach.tokens_until, why);
        feed::append(&txn, reach.now, vec![entry]).await?;
    }
    finish(db, txn).await?;
    Ok(ended)
}

/// What a password change took away.
#[derive(Clone, Copy, Debug)]
pub struct PasswordCutOff {
    /// Other sessions ended.
    pub ended: u64,
    /// Every access token of the user issued at or before this second is
    /// denied. Tokens for the kept session must be issued after it.
    pub issued_up_to: DateTime<Utc>,
}

/// A user changed their password: every other session ends (families with
/// `sid` entries, browser sessions), and every access token issued up to
/// the current second is denied, family or not — the kept session's too.
///
/// Unlike a ban, the `subject` entry has no [`super::CUT_OFF_MARGIN`]: it
/// reaches exactly to the end of the current second, so the kept session
/// gets working tokens from the next second on. (The margin covers a token
/// signed by a request that read the account just before the write; the
/// other sessions' `sid` entries keep it.)
pub async fn password_changed<C: Publish>(
    db: &C,
    reach: Reach,
    user_id: Uuid,
    keep: Option<Uuid>,
) -> Result<PasswordCutOff> {
    const WHY: &str = "password_changed";
    let txn = begin(db).await?;
    let filter = FamilyFilter { user_id: Some(user_id), except: keep, ..FamilyFilter::default() };
    let ended = families::revoke_matching(&txn, &filter, reach.now, WHY).await?;
    if ended > 0 {
        deny_ended(&txn, reach, &filter, WHY).await?;
    }
    browser_sessions::revoke_all_for_user(&txn, reach.now, user_id).await?;
    // `iat` has whole seconds: deny the whole current second.
    let issued_up_to = reach.now.trunc_subsecs(0);
    let entry = Entry {
        issued_up_to: Some(issued_up_to),
        ..Entry::new(Kind::Subject, user_id.to_string(), reach.tokens_until, WHY)
    };
    feed::append(&txn, reach.now, vec![entry]).await?;
    finish(db, txn).await?;
    Ok(PasswordCutOff { ended, issued_up_to })
}

/// End every session of a user but `keep` (a second factor was added or
/// removed: whoever signed in without it is signed out). Their access
/// tokens are denied by `sid`; the kept session's stay valid.
pub async fn other_sessions<C: Publish>(
    db: &C,
    reach: Reach,
    user_id: Uuid,
    keep: Option<Uuid>,
    why: &str,
) -> Result<u64> {
    let txn = begin(db).await?;
    let filter = FamilyFilter { user_id: Some(user_id), except: keep, ..FamilyFilter::default() };
    let ended = families::revoke_matching(&txn, &filter, reach.now, why).await?;
    if ended > 0 {
        deny_ended(&txn, reach, &filter, why).await?;
    }
    browser_sessions::revoke_all_for_user(&txn, reach.now, user_id).await?;
    finish(db, txn).await?;
    Ok(ended)
}

/// Deny one access token until `until` (RFC 7009 revocation).
pub async fn token<C: Publish>(
    db: &C,
    now: DateTime<Utc>,
    jti: &str,
    until: DateTime<Utc>,
    why: &str,
) -> Result<()> {
    let txn = begin(db).await?;
    feed::append(&txn, now, vec![Entry::new(Kind::Jti, jti, until, why)]).await?;
    finish(db, txn).await?;
    Ok(())
}

/// An authorization code was redeemed twice: end the session it started
/// and deny the access token it issued.
pub async fn code_reused<C: Publish>(
    db: &C,
    reach: Reach,
    family_id: Option<Uuid>,
    access: Option<(String, DateTime<Utc>)>,
) -> Result<()> {
    const WHY: &str = "code_reuse";
    let txn = begin(db).await?;
    let mut entries = Vec::new();
    if let Some(family_id) = family_id {
        for id in families::revoke_ids(&txn, &[family_id], reach.now, WHY).await? {
            entries.push(Entry::new(Kind::Session, id.to_string(), reach.tokens_until, WHY));
        }
    }
    if let Some((jti, until)) = access {
        entries.push(Entry::new(Kind::Jti, jti, until, WHY));
    }
    feed::append(&txn, reach.now, entries).await?;
    finish(db, txn).await?;
    Ok(())
}
