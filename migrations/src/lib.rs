//! latchkey's database schema, as append-only sea-orm migrations.
//!
//! One migration per table, then one per later change. The same migrations run on PostgreSQL and SQLite,
//! so they only use the portable schema helpers: UUIDs for ids, `timestamp with
//! time zone` for every instant (always UTC), text for lists (space-separated,
//! like OAuth scopes) and 16-byte binaries for IP addresses, so CIDR filters
//! become plain range comparisons on both backends.
//!
//! Never edit a migration that has shipped; add a new one.

pub use sea_orm_migration::prelude::*;
/// The table that records applied migrations (read by `serve` when it may not migrate).
pub use sea_orm_migration::seaql_migrations;

mod m20261124_000001_create_users;
mod m20261124_000002_create_signing_keys;
mod m20261124_000003_create_refresh_families;
mod m20261124_000004_create_clients;
mod m20261124_000005_create_revocations;
mod m20261124_000006_create_audit_events;
mod m20261124_000007_create_authorization_codes;
mod m20261124_000008_create_revocation_cursor;
mod m20261130_000001_add_clients_require_pkce;
mod m20261130_000002_add_refresh_families_last_context;
mod m20261130_000003_create_invitations;
mod m20261130_000004_create_revocations_pending;
mod m20261201_000001_create_change_counters;
mod m20261201_000002_create_second_factors;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_users::Migration),
            Box::new(m20261124_000002_create_signing_keys::Migration),
            Box::new(m20261124_000003_create_refresh_families::Migration),
            Box::new(m20261124_000004_create_clients::Migration),
            Box::new(m20261124_000005_create_revocations::Migration),
            Box::new(m20261124_000006_create_audit_events::Migration),
            Box::new(m20261124_000007_create_authorization_codes::Migration),
            Box::new(m20261124_000008_create_revocation_cursor::Migration),
            Box::new(m20261130_000001_add_clients_require_pkce::Migration),
            Box::new(m20261130_000002_add_refresh_families_last_context::Migration),
            Box::new(m20261130_000003_create_invitations::Migration),
            Box::new(m20261130_000004_create_revocations_pending::Migration),
            Box::new(m20261201_000001_create_change_counters::Migration),
            Box::new(m20261201_000002_create_second_factors::Migration),
        ]
    }
}
