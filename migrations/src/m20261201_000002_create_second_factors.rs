//! Second factors: TOTP apps, passkeys and recovery codes; the state of
//! their ceremonies; a per-user count of wrong codes; and the
//! authentication methods (`amr`) each session was signed in with.
//!
//! - `user_factors`: one row per TOTP app or passkey. A TOTP secret is
//!   sealed with the master key (like signing keys); `last_used_step` is the
//!   last accepted 30-second step, so a code is never accepted twice. A
//!   passkey is webauthn-rs's `Passkey` as JSON (public key, no secret),
//!   its `credential_id` unique across users, its `sign_count` moved
//!   forward by one conditional `UPDATE` per use. `confirmed` is false for a
//!   TOTP secret handed out but not yet proven with a first code.
//! - `recovery_codes`: keyed HMAC of each code (a database dump alone
//!   cannot test guesses); `used_at` makes each single use.
//! - `mfa_ceremonies`: every started ceremony (the `mfa_token` of a
//!   password sign-in waiting for its second factor, WebAuthn registration
//!   and authentication challenges) by the SHA-256 of its handle, so it may
//!   start on one replica and finish on another; `used_at` makes each
//!   single use, `attempts` caps the guesses made with one ticket.
//! - `mfa_guards`: wrong second-factor answers per user, counted in the
//!   database so the limit holds across replicas.
//! - `amr` on `refresh_families`, `browser_sessions` and
//!   `authorization_codes`: how the session was authenticated (RFC 8176
//!   values, space-separated), carried into every token the session issues.
//! - `clients.require_mfa`: the client accepts only sign-ins with a second
//!   factor.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261124_000001_create_users::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn user_fk(
    name: &str,
    table: impl IntoIden + 'static,
    col: impl IntoIden + 'static,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, col)
        .to(Users::Table, Users::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UserFactors::Table)
                    .if_not_exists()
                    .col(uuid(UserFactors::Id).primary_key())
                    .col(uuid(UserFactors::UserId))
                    .col(text(UserFactors::Kind))
                    .col(text(UserFactors::Name))
                    .col(text_null(UserFactors::Secret))
                    .col(text_null(UserFactors::Passkey))
                    .col(binary_null(UserFactors::CredentialId).unique_key())
                    .col(boolean(UserFactors::Confirmed))
                    .col(big_integer_null(UserFactors::LastUsedStep))
                    .col(big_integer(UserFactors::SignCount).default(0))
                    .col(timestamp_with_time_zone(UserFactors::CreatedAt))
                    .col(timestamp_with_time_zone_null(UserFactors::LastUsedAt))
                    .foreign_key(&mut user_fk(
                        "fk_user_factors_user",
                        UserFactors::Table,
                        UserFactors::UserId,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_user_factors_user")
                    .table(UserFactors::Table)
                    .col(UserFactors::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RecoveryCodes::Table)
                    .if_not_exists()
                    .col(binary(RecoveryCodes::CodeHash).primary_key())
                    .col(uuid(RecoveryCodes::UserId))
                    .col(timestamp_with_time_zone(RecoveryCodes::CreatedAt))
                    .col(timestamp_with_time_zone_null(RecoveryCodes::UsedAt))
                    .foreign_key(&mut user_fk(
                        "fk_recovery_codes_user",
                        RecoveryCodes::Table,
                        RecoveryCodes::UserId,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_recovery_codes_user")
                    .table(RecoveryCodes::Table)
                    .col(RecoveryCodes::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MfaCeremonies::Table)
                    .if_not_exists()
                    .col(binary(MfaCeremonies::IdHash).primary_key())
                    .col(text(MfaCeremonies::Purpose))
                    .col(uuid_null(MfaCeremonies::UserId))
                    .col(text(MfaCeremonies::ClientId))
                    .col(text(MfaCeremonies::Data))
                    .col(integer(MfaCeremonies::Attempts).default(0))
                    .col(timestamp_with_time_zone(MfaCeremonies::CreatedAt))
                    .col(timestamp_with_time_zone(MfaCeremonies::ExpiresAt))
                    .col(timestamp_with_time_zone_null(MfaCeremonies::UsedAt))
                    .foreign_key(&mut user_fk(
                        "fk_mfa_ceremonies_user",
                        MfaCeremonies::Table,
                        MfaCeremonies::UserId,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_mfa_ceremonies_expires_at")
                    .table(MfaCeremonies::Table)
                    .col(MfaCeremonies::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MfaGuards::Table)
                    .if_not_exists()
                    .col(uuid(MfaGuards::UserId).primary_key())
                    .col(integer(MfaGuards::Failures).default(0))
                    .col(timestamp_with_time_zone(MfaGuards::WindowStartedAt))
                    .col(timestamp_with_time_zone_null(MfaGuards::LockedUntil))
                    .foreign_key(&mut user_fk("fk_mfa_guards_user", MfaGuards::Table, MfaGuards::UserId))
                    .to_owned(),
            )
            .await?;
        for table in [
            SessionTables::RefreshFamilies,
            SessionTables::BrowserSessions,
            SessionTables::AuthorizationCodes,
        ] {
            manager
                .alter_table(Table::alter().table(table).add_column(text_null(SessionTables::Amr)).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .add_column(boolean(Clients::RequireMfa).default(false))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Clients::Table).drop_column(Clients::RequireMfa).to_owned())
            .await?;
        for table in [
            SessionTables::RefreshFamilies,
            SessionTables::BrowserSessions,
            SessionTables::AuthorizationCodes,
        ] {
            manager
                .alter_table(Table::alter().table(table).drop_column(SessionTables::Amr).to_owned())
                .await?;
        }
        for table in [
            MfaGuards::Table.into_iden(),
            MfaCeremonies::Table.into_iden(),
            RecoveryCodes::Table.into_iden(),
            UserFactors::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum UserFactors {
    Table,
    Id,
    UserId,
    Kind,
    Name,
    Secret,
    Passkey,
    CredentialId,
    Confirmed,
    LastUsedStep,
    SignCount,
    CreatedAt,
    LastUsedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum RecoveryCodes {
    Table,
    CodeHash,
    UserId,
    CreatedAt,
    UsedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum MfaCeremonies {
    Table,
    IdHash,
    Purpose,
    UserId,
    ClientId,
    Data,
    Attempts,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum MfaGuards {
    Table,
    UserId,
    Failures,
    WindowStartedAt,
    LockedUntil,
}

/// The three session tables and the column they gain.
#[derive(DeriveIden, Clone, Copy)]
enum SessionTables {
    RefreshFamilies,
    BrowserSessions,
    AuthorizationCodes,
    Amr,
}

#[derive(DeriveIden, Clone, Copy)]
enum Clients {
    Table,
    RequireMfa,
}
