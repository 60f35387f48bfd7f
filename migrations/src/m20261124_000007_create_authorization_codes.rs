//! Authorization codes (RFC 6749 §4.1) and browser sessions.
//!
//! A code is stored only as its SHA-256 hash. `used_at` makes it single-use
//! with one conditional update; `family_id` and `access_jti` are reserved by
//! that same update, so a second use can revoke exactly what the first issued
//! (RFC 6749 §4.1.2); `reused_at` tells a slow first exchange that it lost. Browser sessions back the login page's "stay signed in" cookie;
//! they are stored as hashes too and can be revoked (logout, bans).

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
                    .table(AuthorizationCodes::Table)
                    .if_not_exists()
                    .col(binary(AuthorizationCodes::CodeHash).primary_key())
                    .col(text(AuthorizationCodes::ClientId))
                    .col(uuid(AuthorizationCodes::UserId))
                    .col(text(AuthorizationCodes::RedirectUri))
                    .col(text(AuthorizationCodes::Scope))
                    .col(text_null(AuthorizationCodes::Nonce))
                    .col(text_null(AuthorizationCodes::CodeChallenge))
                    .col(timestamp_with_time_zone(AuthorizationCodes::AuthTime))
                    .col(timestamp_with_time_zone(AuthorizationCodes::CreatedAt))
                    .col(timestamp_with_time_zone(AuthorizationCodes::ExpiresAt))
                    .col(timestamp_with_time_zone_null(AuthorizationCodes::UsedAt))
                    .col(timestamp_with_time_zone_null(AuthorizationCodes::ReusedAt))
                    .col(uuid_null(AuthorizationCodes::FamilyId))
                    .col(text_null(AuthorizationCodes::AccessJti))
                    .col(timestamp_with_time_zone_null(AuthorizationCodes::AccessExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_authorization_codes_user")
                            .from(AuthorizationCodes::Table, AuthorizationCodes::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_authorization_codes_expires_at")
                    .table(AuthorizationCodes::Table)
                    .col(AuthorizationCodes::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BrowserSessions::Table)
                    .if_not_exists()
                    .col(binary(BrowserSessions::IdHash).primary_key())
                    .col(uuid(BrowserSessions::UserId))
                    .col(timestamp_with_time_zone(BrowserSessions::AuthTime))
                    .col(timestamp_with_time_zone(BrowserSessions::CreatedAt))
                    .col(timestamp_with_time_zone(BrowserSessions::ExpiresAt))
                    .col(timestamp_with_time_zone_null(BrowserSessions::RevokedAt))
                    .col(text_null(BrowserSessions::Ip))
                    .col(text_null(BrowserSessions::UserAgent))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_browser_sessions_user")
                            .from(BrowserSessions::Table, BrowserSessions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_browser_sessions_user", BrowserSessions::UserId),
            ("idx_browser_sessions_expires_at", BrowserSessions::ExpiresAt),
        ] {
            manager
                .create_index(Index::create().name(name).table(BrowserSessions::Table).col(col).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(BrowserSessions::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(AuthorizationCodes::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum AuthorizationCodes {
    Table,
    CodeHash,
    ClientId,
    UserId,
    RedirectUri,
    Scope,
    Nonce,
    CodeChallenge,
    AuthTime,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    ReusedAt,
    FamilyId,
    AccessJti,
    AccessExpiresAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum BrowserSessions {
    Table,
    IdHash,
    UserId,
    AuthTime,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
    Ip,
    UserAgent,
}
