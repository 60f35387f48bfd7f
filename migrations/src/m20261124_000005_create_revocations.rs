//! The revocation feed and deny list, in one table.
//!
//! Each row takes access away before a token's own `exp` could: a revoked
//! access-token `jti` (kind `jti`) or a banned / deleted subject (kind
//! `subject`). `seq` is the feed cursor; `expires_at` is when no token the row
//! could affect is still valid, after which the purge job deletes it. Relying
//! services poll the feed; introspection reads the same rows.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Revocations::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Revocations::Seq))
                    .col(text(Revocations::Kind))
                    .col(text(Revocations::Value))
                    .col(text_null(Revocations::Reason))
                    .col(timestamp_with_time_zone(Revocations::CreatedAt))
                    .col(timestamp_with_time_zone(Revocations::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_revocations_kind_value")
                    .table(Revocations::Table)
                    .col(Revocations::Kind)
                    .col(Revocations::Value)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_revocations_expires_at")
                    .table(Revocations::Table)
                    .col(Revocations::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Revocations::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Revocations {
    Table,
    Seq,
    Kind,
    Value,
    Reason,
    CreatedAt,
    ExpiresAt,
}
