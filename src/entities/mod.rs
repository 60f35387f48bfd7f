//! sea-orm entities: one file per table, no logic.
//!
//! The concept modules (`users`, `refresh`, `keys`, ...) own every query and
//! convert these rows into domain types, so columns such as `password_hash`
//! never travel further than the repository that reads them.

pub mod audit_events;
pub mod authorization_codes;
pub mod browser_sessions;
pub mod clients;
pub mod invitations;
pub mod mfa_ceremonies;
pub mod mfa_guards;
pub mod recovery_codes;
pub mod refresh_families;
pub mod revocation_cursor;
pub mod revocations;
pub mod signing_keys;
pub mod user_factors;
pub mod users;
