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

pub type Result<T, E = Internal> = std::result::Result<T, E>;

/// `true` when a database error is a unique-constraint violation; works the
/// same on PostgreSQL and SQLite (`DbErr::sql_err`).
pub fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}
