//! Refresh-token families: one row per login, never one per token.
//!
//! The refresh token is `family id ‖ counter ‖ MAC`, so nothing secret is
//! stored here and rotation only bumps `counter` with one conditional update
//! (RFC 9700 §4.14.2 refresh token rotation). `ip_bin` holds the client address
//! as 16 bytes (IPv4 mapped into IPv6) so a CIDR filter is a range scan on both
//! backends. Revoked and expired rows are purged by a periodic job.

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
                    .table(RefreshFamilies::Table)
                    .if_not_exists()
                    .col(pk_uuid(RefreshFamilies::Id))
                    .col(uuid(RefreshFamilies::UserId))
                    .col(text(RefreshFamilies::ClientId))
                    .col(text(RefreshFamilies::Scope))
                    .col(big_integer(RefreshFamilies::Counter))
                    .col(timestamp_with_time_zone(RefreshFamilies::AuthTime))
                    .col(timestamp_with_time_zone(RefreshFamilies::CreatedAt))
                    .col(timestamp_with_time_zone(RefreshFamilies::LastUsedAt))
                    .col(timestamp_with_time_zone(RefreshFamilies::LastRotatedAt))
                    .col(timestamp_with_time_zone(RefreshFamilies::ExpiresAt))
                    .col(timestamp_with_time_zone_null(RefreshFamilies::RevokedAt))
                    .col(text_null(RefreshFamilies::RevokedReason))
                    .col(text_null(RefreshFamilies::Ip))
                    .col(binary_null(RefreshFamilies::IpBin))
                    .col(text_null(RefreshFamilies::UserAgent))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_refresh_families_user")
                            .from(RefreshFamilies::Table, RefreshFamilies::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_refresh_families_user", RefreshFamilies::UserId),
            ("idx_refresh_families_client", RefreshFamilies::ClientId),
            ("idx_refresh_families_created_at", RefreshFamilies::CreatedAt),
            ("idx_refresh_families_expires_at", RefreshFamilies::ExpiresAt),
            ("idx_refresh_families_revoked_at", RefreshFamilies::RevokedAt),
            ("idx_refresh_families_ip_bin", RefreshFamilies::IpBin),
        ] {
            manager
                .create_index(Index::create().name(name).table(RefreshFamilies::Table).col(col).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(RefreshFamilies::Table).to_owned()).await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum RefreshFamilies {
    Table,
    Id,
    UserId,
    ClientId,
    Scope,
    Counter,
    AuthTime,
    CreatedAt,
    LastUsedAt,
    LastRotatedAt,
    ExpiresAt,
    RevokedAt,
    RevokedReason,
    Ip,
    IpBin,
    UserAgent,
}
