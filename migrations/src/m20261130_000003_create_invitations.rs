//! Invitations: an admin (or a user-management service) creates an account
//! without a password and hands the person a single-use token to set one.
//!
//! The token is stored only as its SHA-256 hash. `used_at` makes it
//! single-use with one conditional update. Invitations go with their user.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261124_000001_create_users::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Invitations::Table)
                    .if_not_exists()
                    .col(binary(Invitations::TokenHash).primary_key())
                    .col(uuid(Invitations::UserId))
                    .col(text(Invitations::CreatedBy))
                    .col(timestamp_with_time_zone(Invitations::CreatedAt))
                    .col(timestamp_with_time_zone(Invitations::ExpiresAt))
                    .col(timestamp_with_time_zone_null(Invitations::UsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_invitations_user")
                            .from(Invitations::Table, Invitations::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_invitations_user", Invitations::UserId),
            ("idx_invitations_expires_at", Invitations::ExpiresAt),
        ] {
            manager
                .create_index(Index::create().name(name).table(Invitations::Table).col(col).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Invitations::Table).to_owned()).await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Invitations {
    Table,
    TokenHash,
    UserId,
    CreatedBy,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}
