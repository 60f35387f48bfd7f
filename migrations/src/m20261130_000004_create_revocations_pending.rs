//! Revocations written but not yet on the feed (PostgreSQL).
//!
//! Writers used to lock the single `revocation_cursor` row until their
//! commit, so that feed order was commit order; every logout on every
//! replica then waited for the one before it to reach the disk. Now a
//! writer inserts its entries here, in its own transaction and without a
//! shared lock, and after its commit moves every pending row onto the feed
//! (`revocations`) in one short statement under the `revocation_cursor`
//! row lock: those moves are serialized, so the feed's `seq` order is still commit order,
//! but a move carries everyone's entries that have committed since the last
//! one, and the writers' own commits run side by side.
//!
//! SQLite serializes writers anyway and keeps writing `revocations`
//! directly; the table exists there too, empty, so both schemas are alike.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RevocationsPending::Table)
                    .if_not_exists()
                    .col(big_pk_auto(RevocationsPending::Id))
                    .col(text(RevocationsPending::Kind))
                    .col(text(RevocationsPending::Value))
                    .col(text_null(RevocationsPending::Reason))
                    .col(timestamp_with_time_zone(RevocationsPending::CreatedAt))
                    .col(timestamp_with_time_zone(RevocationsPending::ExpiresAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(RevocationsPending::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum RevocationsPending {
    Table,
    Id,
    Kind,
    Value,
    Reason,
    CreatedAt,
    ExpiresAt,
}
