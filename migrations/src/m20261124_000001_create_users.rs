//! Users: one row per human account.
//!
//! `username` keeps the NFKC form the user chose (for display); `username_key`
//! is the case-folded comparison key and carries the uniqueness constraint, so
//! "Alice", "ALICE" and "Ａｌｉｃｅ" (fullwidth) can never be two accounts.
//! `password_hash` is an argon2id PHC string. Bans live on the row: a ban is a
//! property of the account, and the revocation feed records it for relying
//! services.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(pk_uuid(Users::Id))
                    .col(text(Users::Username))
                    .col(text_uniq(Users::UsernameKey))
                    .col(text_null(Users::Email))
                    .col(text(Users::PasswordHash))
                    .col(text(Users::Roles).default(""))
                    .col(boolean(Users::Disabled).default(false))
                    .col(timestamp_with_time_zone_null(Users::BannedAt))
                    .col(timestamp_with_time_zone_null(Users::BannedUntil))
                    .col(text_null(Users::BanReason))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .col(timestamp_with_time_zone(Users::PasswordChangedAt))
                    .col(timestamp_with_time_zone_null(Users::LastLoginAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_users_email").table(Users::Table).col(Users::Email).to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_users_created_at")
                    .table(Users::Table)
                    .col(Users::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Users::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
pub(crate) enum Users {
    Table,
    Id,
    Username,
    UsernameKey,
    Email,
    PasswordHash,
    Roles,
    Disabled,
    BannedAt,
    BannedUntil,
    BanReason,
    CreatedAt,
    UpdatedAt,
    PasswordChangedAt,
    LastLoginAt,
}
