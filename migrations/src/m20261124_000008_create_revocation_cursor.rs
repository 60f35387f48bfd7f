//! One row that every revocation write locks first.
//!
//! The feed's cursor is `revocations.seq`. On PostgreSQL two transactions
//! can take sequence values 10 and 11 and commit 11 first; a reader at that
//! moment would move its cursor past 10 and never see it. Writers therefore
//! update this row before inserting, in the same transaction: the row lock
//! orders writers, so sequence order is commit order and a cursor never
//! skips an entry. (SQLite serializes writers anyway; the row costs nothing.)
//! Since `..._000004_create_revocations_pending`, writers on PostgreSQL no
//! longer hold this row: only the short statement that moves committed
//! entries onto the feed does.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RevocationCursor::Table)
                    .if_not_exists()
                    .col(integer(RevocationCursor::Id).primary_key())
                    .col(big_integer(RevocationCursor::Writes).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(RevocationCursor::Table)
                    .columns([RevocationCursor::Id, RevocationCursor::Writes])
                    .values_panic([1.into(), 0.into()])
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(RevocationCursor::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum RevocationCursor {
    Table,
    Id,
    Writes,
}
