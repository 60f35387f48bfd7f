//! `clients.require_pkce`: PKCE for every client by default (OAuth 2.1,
//! RFC 9700 §2.1.1).
//!
//! Until now a confidential client could run the code flow without a
//! `code_challenge`. Every client, existing ones included, now requires
//! PKCE (the default `true`); an administrator sets `false` for a legacy
//! confidential client that cannot send one. Public clients always require
//! it, whatever the column says.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .add_column(boolean(Clients::RequirePkce).default(true))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Clients::Table).drop_column(Clients::RequirePkce).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Clients {
    Table,
    RequirePkce,
}
