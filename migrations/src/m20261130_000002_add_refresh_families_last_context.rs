//! `refresh_families.last_ip` and `last_user_agent`: where a family was last
//! refreshed from, beside where it was started (`ip`, `user_agent`).
//!
//! Each refresh compares the caller's address and user agent with these
//! (or, while they are null, with the login's) and records the new ones in
//! the same conditional `UPDATE` that rotates the family, so a family that
//! moves to another network or device is noticed at its next refresh
//! without an extra query. Existing rows start null: compared against their
//! login context until their first refresh.
//!
//! One `ALTER TABLE` per column: SQLite adds one column per statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [RefreshFamilies::LastIp, RefreshFamilies::LastUserAgent] {
            manager
                .alter_table(
                    Table::alter().table(RefreshFamilies::Table).add_column(text_null(col)).to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [RefreshFamilies::LastIp, RefreshFamilies::LastUserAgent] {
            manager
                .alter_table(Table::alter().table(RefreshFamilies::Table).drop_column(col).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum RefreshFamilies {
    Table,
    LastIp,
    LastUserAgent,
}
