//! Signing keys, shared by every replica through the database.
//!
//! A key's lifecycle state is not stored: it follows from its timestamps and
//! the clock, so replicas agree on it without coordination.
//! - *next*: `activates_at` is in the future (published, not signing);
//! - *current*: the newest key of its `purpose` whose `activates_at` has passed;
//! - *previous*: superseded, still published until every token it signed expired;
//! - *retired*: past that, or `retired_at` set explicitly.
//!
//! `(purpose, generation)` is unique: when two replicas race to create the
//! next key of a chain, exactly one insert wins.
//! `private_key_sealed` is a JWE (dir + A256GCM) under a key derived from the
//! master key; `sealed_with` names that master key so a mismatch is a clear
//! startup error instead of a decryption failure.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .if_not_exists()
                    .col(text(SigningKeys::Kid).primary_key())
                    .col(text(SigningKeys::Purpose))
                    .col(big_integer(SigningKeys::Generation))
                    .col(text(SigningKeys::Alg))
                    .col(text(SigningKeys::PublicJwk))
                    .col(text(SigningKeys::PrivateKeySealed))
                    .col(text(SigningKeys::SealedWith))
                    .col(timestamp_with_time_zone(SigningKeys::CreatedAt))
                    .col(timestamp_with_time_zone(SigningKeys::ActivatesAt))
                    .col(timestamp_with_time_zone_null(SigningKeys::RetiredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_signing_keys_purpose_generation")
                    .table(SigningKeys::Table)
                    .col(SigningKeys::Purpose)
                    .col(SigningKeys::Generation)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(SigningKeys::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    Purpose,
    Generation,
    Alg,
    PublicJwk,
    PrivateKeySealed,
    SealedWith,
    CreatedAt,
    ActivatesAt,
    RetiredAt,
}
