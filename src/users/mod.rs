//! Users: accounts, roles, registration and lookup.
//!
//! Values are parsed at the edge into [`Username`], [`Email`], [`Role`] and
//! [`crate::passwords::Password`]; services take only parsed values.
//! [`User`] is built from the row and has no password hash, so the hash
//! cannot reach the HTTP layer by accident.

pub mod invitation;
pub mod repo;
pub mod username;

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::entities::users;
use crate::error::Internal;
use crate::passwords::{Password, PasswordHasher};
pub use username::{Username, UsernameError};

/// An email address, lightly checked: one `@`, no spaces, sane length. The
/// domain is lower-cased; the local part is kept as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("email must look like name@example.com and be at most 254 characters")]
pub struct EmailError;

impl Email {
    pub fn parse(input: &str) -> Result<Email, EmailError> {
        let input = input.trim();
        if input.len() > 254 || input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailError);
        }
        let (local, domain) = input.rsplit_once('@').ok_or(EmailError)?;
        if local.is_empty() || local.len() > 64 || local.contains('@') || domain.is_empty() {
            return Err(EmailError);
        }
        if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
            return Err(EmailError);
        }
        Ok(Email(format!("{local}@{}", domain.to_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A role name: lower-case ASCII letters, digits, `_`, `-`, `:`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Role(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("role names are 1 to 64 characters of a-z, 0-9, '_', '-' and ':', starting with a letter")]
pub struct RoleError;

impl Role {
    pub const ADMIN: &'static str = "admin";

    pub fn parse(input: &str) -> Result<Role, RoleError> {
        let ok = (1..=64).contains(&input.len())
            && input.starts_with(|c: char| c.is_ascii_lowercase())
            && input
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | ':'));
        if ok { Ok(Role(input.to_owned())) } else { Err(RoleError) }
    }

    pub fn admin() -> Role {
        Role(Self::ADMIN.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Roles as stored: space-separated, sorted, unique.
pub fn roles_to_column(roles: &[Role]) -> String {
    let mut names: Vec<&str> = roles.iter().map(Role::as_str).collect();
    names.sort_unstable();
    names.dedup();
    names.join(" ")
}

fn roles_from_column(column: &str) -> Vec<Role> {
    column.split_whitespace().filter_map(|r| Role::parse(r).ok()).collect()
}

/// A ban on an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    pub at: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

/// A user, as the rest of latchkey sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub roles: Vec<Role>,
    pub disabled: bool,
    pub ban: Option<Ban>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r.as_str() == Role::ADMIN)
    }

    /// Banned at `now` (a ban with an expiry lapses by itself).
    pub fn is_banned(&self, now: DateTime<Utc>) -> bool {
        self.ban.as_ref().is_some_and(|b| b.until.is_none_or(|u| u > now))
    }

    /// May this account sign in or keep its sessions at `now`?
    pub fn can_authenticate(&self, now: DateTime<Utc>) -> bool {
        !self.disabled && !self.is_banned(now)
    }

    /// Whether the user holds one of `roles` (names, as in settings).
    pub fn has_role_in(&self, roles: &[String]) -> bool {
        self.roles.iter().any(|r| roles.iter().any(|q| q == r.as_str()))
    }

    pub fn role_names(&self) -> Vec<String> {
        self.roles.iter().map(|r| r.as_str().to_owned()).collect()
    }
}

impl From<users::Model> for User {
    fn from(m: users::Model) -> Self {
        User {
            id: m.id,
            username: m.username,
            email: m.email,
            roles: roles_from_column(&m.roles),
            disabled: m.disabled,
            ban: m.banned_at.map(|at| Ban { at, until: m.banned_until, reason: m.ban_reason }),
            created_at: m.created_at,
            updated_at: m.updated_at,
            last_login_at: m.last_login_at,
        }
    }
}

/// Everything needed to create an account.
pub struct NewUser {
    pub username: Username,
    pub email: Option<Email>,
    pub password: Password,
    pub roles: Vec<Role>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("this username is already taken")]
    UsernameTaken,
    #[error(transparent)]
    Hashing(#[from] crate::passwords::HashError),
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// Create an account. The password is hashed first, off the async workers.
#[tracing::instrument(skip_all)]
pub async fn register(
    db: &impl ConnectionTrait,
    hasher: &PasswordHasher,
    now: DateTime<Utc>,
    new: NewUser,
) -> Result<User, RegisterError> {
    let hash = hasher.hash(&new.password).await?;
    let user = create(db, now, &new.username, new.email.as_ref(), &new.roles, hash).await?;
    tracing::info!(user_id = %user.id, "user registered");
    Ok(user)
}

/// Insert an account with an already computed password hash.
pub async fn create(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    username: &Username,
    email: Option<&Email>,
    roles: &[Role],
    password_hash: String,
) -> Result<User, RegisterError> {
    let row = users::Model {
        id: Uuid::now_v7(),
        username: username.as_str().to_owned(),
        username_key: username.key().to_owned(),
        email: email.map(|e| e.0.clone()),
        password_hash,
        roles: roles_to_column(roles),
        disabled: false,
        banned_at: None,
        banned_until: None,
        ban_reason: None,
        created_at: now,
        updated_at: now,
        password_changed_at: now,
        last_login_at: None,
    };
    repo::insert(db, row).await?.ok_or(RegisterError::UsernameTaken)
}

pub async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<User>, Internal> {
    Ok(repo::by_id(db, id).await?.map(User::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_and_domains_lowercased() {
        assert_eq!(Email::parse(" Bob@Example.COM ").unwrap().as_str(), "Bob@example.com");
        for bad in ["bob", "bob@", "@x.com", "bob@localhost", "a b@x.com", "bob@x\u{7f}.com", "b@@x.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roles_are_restricted_and_stored_sorted() {
        assert!(Role::parse("admin").is_ok());
        assert!(Role::parse("tasks:write").is_ok());
        for bad in ["", "Admin", "1abc", "a b", "a\"b"] {
            assert!(Role::parse(bad).is_err(), "{bad:?}");
        }
        let roles = vec![Role::parse("b").unwrap(), Role::admin(), Role::parse("b").unwrap()];
        assert_eq!(roles_to_column(&roles), "admin b");
    }
}
