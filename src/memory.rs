//! What each replica keeps in memory: the registered clients, the deny
//! list and the usernames of users it has seen, so that client
//! authentication and introspection cost no query of their own.
//!
//! **The freshness rule.** A request that starts after a ban, revocation or
//! client change committed is answered as if it had read the database: a
//! revoked token is inactive, a disabled client is refused, a rotated secret
//! works at once, on every replica. Before it reads memory, a request waits
//! for one **round** that *started after the request did* ([`Memory::confirm`]):
//! - a round is one short statement ([`STAMP`]): the feed's latest `seq`,
//!   whether entries are pending (PostgreSQL, see [`crate::revocation::feed`])
//!   and the `clients` change counter (a trigger bumps it with every write to
//!   `clients`, in the same transaction);
//! - when nothing moved since the last round, that statement is all; when
//!   something did, the round reads the pending entries, then the feed after
//!   the last `seq` it holds, then (if the counter moved) every client;
//! - rounds are shared: one runs at a time, and every request that arrived
//!   while it ran waits for the next, which starts as soon as this one ends.
//!   Under load each round serves every request that arrived during the
//!   previous one, so the database sees a round per round trip, not a query
//!   per request.
//!
//! A round sees everything committed before its statement began, so a request
//! sees everything committed before the request began. Why no entry is lost
//! between the pending table and the feed: an entry is in exactly one of them
//! at any instant (one statement moves it), and a round reads pending first,
//! then the feed: an entry moved in between is on the feed by the second read.
//!
//! **What it relies on.** Revocations and bans are made through latchkey
//! (the API, the CLI): they write deny entries, and memory follows those.
//! An operator who bans or deletes a user with SQL alone writes none, so
//! a replica that already knows the user's name keeps answering `active`
//! for the user's tokens, as relying services following the feed would;
//! go through latchkey. On PostgreSQL an entry written straight into
//! `revocations` (not `revocations_pending`) is outside the feed's order,
//! and memory, like any feed reader, may pass it by.
//!
//! What memory holds is only ever what the database says: a corrupt client
//! row is left out (and logged), entries expire at their `expires_at`, and
//! usernames, which never change, are kept for the users whose tokens were
//! introspected (bounded). A user who may no longer sign in (banned,
//! disabled, deleted, password reset) has a `subject` entry on the deny list
//! covering every token issued before, so a username from memory is never
//! shown for a token of such a user.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tokio::sync::watch;
use uuid::Uuid;

use crate::clients::OAuthClient;
use crate::clock::Clock;
use crate::error::{Internal, Result, SharedFailure};
use crate::revocation::feed::{self, Kind};
use crate::tokens::AccessClaims;

/// The one statement of a round where nothing changed.
const STAMP: &str = "SELECT (SELECT max(seq) FROM revocations) AS seq, \
     EXISTS (SELECT 1 FROM revocations_pending) AS pending, \
     (SELECT value FROM change_counters WHERE name = 'clients') AS clients";

/// The pending entries, when there are some (PostgreSQL).
const PENDING: &str = "SELECT kind, value, created_at, expires_at FROM revocations_pending";

/// How many usernames are kept before the map starts over.
const USERNAMES: usize = 100_000;

/// How often expired entries are dropped from memory.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A replica's memory of clients and the deny list; cheap to clone.
#[derive(Clone)]
pub struct Memory(Arc<Shared>);

struct Shared {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
    /// How long one statement of a round may take.
    statement_limit: Duration,
    rounds: Mutex<Rounds>,
    /// The number of the last round that ended.
    ended: watch::Sender<u64>,
    view: RwLock<View>,
    usernames: Mutex<HashMap<Uuid, String>>,
}

#[derive(Default)]
struct Rounds {
    /// The number of the last round started.
    started: u64,
    running: bool,
    /// How the last round that ended went.
    outcome: Option<(u64, Option<SharedFailure>)>,
}

/// When a deny entry applies: tokens issued at or before `created_at`
/// (every token, for a `jti`), until `expires_at`.
#[derive(Clone, Copy, Debug)]
struct Span {
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

#[derive(Default)]
struct View {
    /// The feed's `seq` up to which `denies` holds every entry.
    seq: i64,
    /// Feed entries by kind, then value.
    denies: Denies,
    /// Entries committed but not yet on the feed, as the last round saw
    /// them (PostgreSQL), by kind and value like the feed's.
    pending: Denies,
    /// Whether `pending` holds anything.
    has_pending: bool,
    /// The `clients` counter the clients were loaded at.
    clients_version: Option<i64>,
    clients: HashMap<String, OAuthClient>,
    swept_at: Option<Instant>,
}

#[derive(Default)]
struct Denies {
    jti: HashMap<String, Vec<Span>>,
    session: HashMap<String, Vec<Span>>,
    subject: HashMap<String, Vec<Span>>,
    client: HashMap<String, Vec<Span>>,
}

impl Denies {
    fn of(&self, kind: Kind) -> &HashMap<String, Vec<Span>> {
        match kind {
            Kind::Jti => &self.jti,
            Kind::Session => &self.session,
            Kind::Subject => &self.subject,
            Kind::Client => &self.client,
        }
    }

    fn add(&mut self, kind: Kind, value: String, span: Span) {
        self.of_mut(kind).entry(value).or_default().push(span);
    }

    fn of_mut(&mut self, kind: Kind) -> &mut HashMap<String, Vec<Span>> {
        match kind {
            Kind::Jti => &mut self.jti,
            Kind::Session => &mut self.session,
            Kind::Subject => &mut self.subject,
            Kind::Client => &mut self.client,
        }
    }
}

impl View {
    fn add(&mut self, kind: Kind, value: String, span: Span) {
        self.denies.add(kind, value, span);
    }

    fn denies(&self, kind: Kind, value: &str, iat: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let applies = |s: &Span| s.expires_at > now && (kind == Kind::Jti || s.created_at >= iat);
        let any = |d: &Denies| d.of(kind).get(value).is_some_and(|spans| spans.iter().any(applies));
        any(&self.denies) || (self.has_pending && any(&self.pending))
    }

    fn sweep(&mut self, now: DateTime<Utc>) {
        for kind in [Kind::Jti, Kind::Session, Kind::Subject, Kind::Client] {
            self.denies.of_mut(kind).retain(|_, spans| {
                spans.retain(|s| s.expires_at > now);
                !spans.is_empty()
            });
        }
    }
}

/// Proof that a round which started after this request began has ended:
/// what memory answers from here on obeys the freshness rule.
pub struct Fresh(Arc<Shared>);

impl Memory {
    /// `statement_limit` bounds each statement of a round, waiting for a
    /// connection included.
    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>, statement_limit: Duration) -> Self {
        Memory(Arc::new(Shared {
            db,
            clock,
            statement_limit,
            rounds: Mutex::new(Rounds::default()),
            ended: watch::Sender::new(0),
            view: RwLock::new(View::default()),
            usernames: Mutex::new(HashMap::new()),
        }))
    }

    /// Wait for a round that starts after this call (see the module docs).
    /// Fails, for every request waiting on it, when that round fails: a
    /// database that cannot be reached gives the usual 503.
    pub async fn confirm(&self) -> Result<Fresh> {
        let shared = &self.0;
        // Subscribe before looking, so a round ending in between wakes us.
        let mut ended = shared.ended.subscribe();
        let (wanted, round) = {
            let mut rounds = lock(&shared.rounds);
            if rounds.running { (rounds.started + 1, None) } else { start(shared, &mut rounds) }
        };
        spawn(round);
        loop {
            {
                let mut rounds = lock(&shared.rounds);
                match &rounds.outcome {
                    Some((n, outcome)) if *n >= wanted => {
                        return match outcome {
                            None => Ok(Fresh(Arc::clone(shared))),
                            Some(failure) => Err(Internal(anyhow::Error::new(failure.clone()))),
                        };
                    }
                    _ if !rounds.running => {
                        let (_, round) = start(shared, &mut rounds);
                        drop(rounds);
                        spawn(round);
                        continue;
                    }
                    _ => {}
                }
            }
            if ended.changed().await.is_err() {
                return Err(Internal(anyhow::anyhow!("the memory rounds stopped")));
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Mark the next round started; the caller spawns it ([`spawn`]) once it
/// has let go of the lock.
fn start(shared: &Arc<Shared>, rounds: &mut Rounds) -> (u64, Option<RoundEnd>) {
    rounds.started += 1;
    rounds.running = true;
    (rounds.started, Some(RoundEnd { shared: Arc::clone(shared), number: rounds.started, outcome: None }))
}

/// Run a round in a task of its own: a request that gives up waiting does
/// not stop the round the others wait for.
fn spawn(round_end: Option<RoundEnd>) {
    let Some(mut ending) = round_end else { return };
    tokio::spawn(async move {
        let outcome = round(&ending.shared).await.err().map(|e| SharedFailure::of(&e));
        if let Some(failure) = &outcome {
            tracing::debug!(error = %failure, "a memory round failed");
        }
        ending.finish(outcome);
    });
}

/// Ends a round however its task ends: with its outcome, or, if the task
/// panicked or was dropped with the runtime, with a failure, so that no
/// request waits for a round that will never end.
struct RoundEnd {
    shared: Arc<Shared>,
    number: u64,
    outcome: Option<Option<SharedFailure>>,
}

impl RoundEnd {
    fn finish(&mut self, outcome: Option<SharedFailure>) {
        self.outcome = Some(outcome);
    }
}

impl Drop for RoundEnd {
    fn drop(&mut self) {
        let outcome =
            self.outcome.take().unwrap_or_else(|| Some(SharedFailure::new("a memory round stopped")));
        {
            let mut rounds = lock(&self.shared.rounds);
            rounds.running = false;
            rounds.outcome = Some((self.number, outcome));
        }
        self.shared.ended.send_replace(self.number);
    }
}

/// One round: the stamp, and what changed since the last.
async fn round(shared: &Shared) -> Result<()> {
    let db = &shared.db;
    let backend = db.get_database_backend();
    let limit = shared.statement_limit;
    let stamp = bounded(limit, async { Ok(db.query_one_raw(Statement::from_string(backend, STAMP)).await?) })
        .await?
        .ok_or_else(|| Internal(anyhow::anyhow!("the memory stamp returned no row")))?;
    let latest = stamp.try_get::<Option<i64>>("", "seq")?.unwrap_or(0);
    // SQLite writes the feed directly: its pending table stays out of it,
    // as in `feed::is_denied`.
    let pending = backend == DbBackend::Postgres && stamp.try_get::<bool>("", "pending")?;
    let clients_version = stamp.try_get::<Option<i64>>("", "clients")?;
    let now = shared.clock.now();
    let (held, had_pending, held_clients, sweep) = {
        let view = shared.view.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let sweep = view.swept_at.is_none_or(|t| t.elapsed() >= SWEEP_EVERY);
        (view.seq, view.has_pending, view.clients_version, sweep)
    };
    if pending || latest > held || had_pending || sweep {
        // Pending first, then the feed (see the module docs).
        let overlay = if pending {
            bounded(limit, pending_entries(db, backend, now)).await?
        } else {
            Denies::default()
        };
        let mut fresh = Vec::new();
        let mut cursor = held;
        loop {
            let page = bounded(limit, feed::since(db, cursor, now, feed::SNAPSHOT_LIMIT)).await?;
            cursor = page.cursor;
            fresh.extend(page.entries);
            if !page.more {
                break;
            }
        }
        let mut view = shared.view.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for e in fresh {
            if let Some(kind) = Kind::parse(&e.kind) {
                view.add(kind, e.value, Span { created_at: e.created_at, expires_at: e.expires_at });
            }
        }
        // Everything live up to `latest` is in hand: it committed before
        // the stamp, and `seq` order is commit order. Entries that expired
        // unread do not hold the cursor back.
        view.seq = cursor.max(latest);
        view.has_pending = pending;
        view.pending = overlay;
        if sweep {
            view.sweep(now);
            view.swept_at = Some(Instant::now());
        }
    }
    if clients_version != held_clients || held_clients.is_none() {
        let clients = bounded(limit, crate::clients::load_all(db)).await?;
        let mut view = shared.view.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        view.clients = clients.into_iter().map(|c| (c.client_id.clone(), c)).collect();
        view.clients_version = Some(clients_version.unwrap_or(0));
    }
    Ok(())
}

/// Fail a statement of a round that has not answered within `limit`
/// (a connection gone silent, say): every request waits on the round, so it
/// must end, and the next round takes another connection.
async fn bounded<T>(limit: Duration, statement: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(limit, statement).await.unwrap_or_else(|_| {
        Err(Internal(anyhow::anyhow!("a memory round's statement took over {} s", limit.as_secs())))
    })
}

async fn pending_entries(db: &DatabaseConnection, backend: DbBackend, now: DateTime<Utc>) -> Result<Denies> {
    let rows = db.query_all_raw(Statement::from_string(backend, PENDING)).await?;
    let mut entries = Denies::default();
    for row in rows {
        let kind: String = row.try_get("", "kind")?;
        let span =
            Span { created_at: row.try_get("", "created_at")?, expires_at: row.try_get("", "expires_at")? };
        if let Some(kind) = Kind::parse(&kind).filter(|_| span.expires_at > now) {
            entries.add(kind, row.try_get("", "value")?, span);
        }
    }
    Ok(entries)
}

impl Fresh {
    fn view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.0.view.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The client with this id, if registered.
    pub fn client(&self, client_id: &str) -> Option<OAuthClient> {
        self.view().clients.get(client_id).cloned()
    }

    /// Is this token denied at `now`? The same rule as
    /// [`crate::revocation::is_denied`], from memory.
    pub fn is_denied(&self, claims: &AccessClaims, now: DateTime<Utc>) -> bool {
        let iat = DateTime::from_timestamp(claims.iat, 0).unwrap_or(now);
        let view = self.view();
        view.denies(Kind::Jti, &claims.jti, iat, now)
            || view.denies(Kind::Subject, &claims.sub, iat, now)
            || view.denies(Kind::Client, &claims.client_id, iat, now)
            || claims.sid.as_deref().is_some_and(|sid| view.denies(Kind::Session, sid, iat, now))
    }

    /// The username of a user whose token is not denied: from memory, or
    /// read once. `None` when the user is gone or may not sign in.
    pub async fn username(&self, user_id: Uuid, now: DateTime<Utc>) -> Result<Option<String>> {
        if let Some(name) = lock(&self.0.usernames).get(&user_id) {
            return Ok(Some(name.clone()));
        }
        let Some(user) = crate::users::find(&self.0.db, user_id).await?.filter(|u| u.can_authenticate(now))
        else {
            return Ok(None);
        };
        let mut names = lock(&self.0.usernames);
        if names.len() >= USERNAMES {
            names.clear();
        }
        names.insert(user_id, user.username.clone());
        Ok(Some(user.username))
    }
}
