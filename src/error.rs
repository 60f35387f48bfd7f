//! Errors shared by every concept.
//!
//! Each concept has its own `thiserror` enum with the cases its callers must
//! branch on (`RefreshError::Reused`, `LoginError::InvalidCredentials`, ...)
//! plus `Internal` for everything else. No HTTP words here: each error is
//! classified once in [`crate::problem`], and `http::error` turns the class
//! into a status and body.

/// Something went wrong that the client cannot fix: a database failure, a
/// corrupt row, a crypto library error. Logged with its cause chain, answered
/// with a fixed message.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Internal(#[from] pub anyhow::Error);

impl From<sea_orm::DbErr> for Internal {
    fn from(e: sea_orm::DbErr) -> Self {
        Internal(anyhow::Error::new(e).context("database error"))
    }
}

impl From<josekit::JoseError> for Internal {
    fn from(e: josekit::JoseError) -> Self {
        Internal(anyhow::Error::new(e).context("JOSE error"))
    }
}

/// What a request that needs the database gets while it cannot be reached
/// (status 503, `temporarily_unavailable`, `Retry-After: 1`).
pub const DATABASE_UNAVAILABLE: &str = "the database is unavailable; retry shortly";

/// What a request that must sign a token gets while no key may sign on this
/// server (its clock is behind; see `keys::CLOCK_SKEW_ALLOWANCE`).
pub const NO_SIGNING_KEY_YET: &str = "no signing key is active on this server yet; retry shortly";

impl Internal {
    /// What to tell the client when this failure is temporary, so that it
    /// is answered 503 (`temporarily_unavailable`, `Retry-After: 1`), not
    /// 500: the same request may succeed in a moment.
    /// - The database could not be reached: no connection within the pool's
    ///   acquire timeout, a connection lost mid-query, or the server shutting
    ///   down or starting up.
    /// - No key may sign yet: this server's clock is behind the replica that
    ///   created the keys by more than the skew latchkey tolerates.
    pub fn unavailable(&self) -> Option<&'static str> {
        use sea_orm::DbErr;
        self.0.chain().find_map(|cause| {
            if let Some(e) = cause.downcast_ref::<SharedFailure>() {
                return e.unavailable;
            }
            if let Some(e) = cause.downcast_ref::<crate::keys::NoSigningKey>() {
                return e.activates_in.is_some().then_some(NO_SIGNING_KEY_YET);
            }
            let down = match cause.downcast_ref::<DbErr>()? {
                DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
                other => sqlx_error(other).is_some_and(is_connection_failure),
            };
            down.then_some(DATABASE_UNAVAILABLE)
        })
    }

    /// Log the cause chain: a temporary failure as a warning (it is not a
    /// bug, but the operator must see it), anything else as an error.
    pub fn log(&self) {
        if self.unavailable().is_some() {
            tracing::warn!(error = format!("{:#}", self.0), "temporarily unavailable");
        } else {
            tracing::error!(error = format!("{:#}", self.0), "internal error");
        }
    }
}

/// A failure met by one task on behalf of several requests (a shared read,
/// see [`crate::memory`]): each request gets a copy, classified as the
/// original was.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{cause}")]
pub struct SharedFailure {
    cause: String,
    unavailable: Option<&'static str>,
}

impl SharedFailure {
    pub fn of(e: &Internal) -> Self {
        SharedFailure { cause: format!("{:#}", e.0), unavailable: e.unavailable() }
    }

    pub fn new(cause: &str) -> Self {
        SharedFailure { cause: cause.to_owned(), unavailable: None }
    }
}

fn is_connection_failure(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error;
    match e {
        Error::Io(_) | Error::Tls(_) | Error::PoolTimedOut | Error::PoolClosed | Error::WorkerCrashed => true,
        Error::Database(db) => match sqlite_code(db.as_ref()) {
            // Another process held the write lock past the busy timeout.
            Some(code) => matches!(code, SQLITE_BUSY | SQLITE_LOCKED),
            // PostgreSQL: class 08 (connection exception), 57P01–57P03
            // (admin shutdown, crash shutdown, cannot connect now).
            None => db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P0")),
        },
        _ => false,
    }
}

/// SQLite's primary result codes that say something about the file.
pub const SQLITE_BUSY: i32 = 5;
pub const SQLITE_LOCKED: i32 = 6;
pub const SQLITE_READONLY: i32 = 8;

/// The primary result code of a SQLite error (the low byte of the extended
/// code sqlx reports); `None` for any other database's error.
fn sqlite_code(e: &dyn sea_orm::sqlx::error::DatabaseError) -> Option<i32> {
    e.try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()?;
    e.code()?.parse::<i32>().ok().map(|code| code & 0xff)
}

/// The same for a sea-orm error.
pub fn sqlite_primary_code(e: &sea_orm::DbErr) -> Option<i32> {
    match sqlx_error(e)? {
        sea_orm::sqlx::Error::Database(db) => sqlite_code(db.as_ref()),
        _ => None,
    }
}

/// The sqlx error under a sea-orm error, if it has one.
fn sqlx_error(e: &sea_orm::DbErr) -> Option<&sea_orm::sqlx::Error> {
    use sea_orm::{DbErr, RuntimeErr};
    match e {
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => Some(e.as_ref()),
        _ => None,
    }
}

pub type Result<T, E = Internal> = std::result::Result<T, E>;

/// `true` when a database error is a unique-constraint violation; works the
/// same on PostgreSQL and SQLite (`DbErr::sql_err`).
pub fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}
