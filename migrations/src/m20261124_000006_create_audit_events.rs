//! The audit log: security events, never secrets.
//!
//! `id` is a UUIDv7, so it orders by time and doubles as the pagination
//! cursor. `details` is a small JSON object with event-specific fields
//! (reason, family id, counts); it is written only from typed values, never
//! from request bodies, so a password or token cannot end up here.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .if_not_exists()
                    .col(pk_uuid(AuditEvents::Id))
                    .col(timestamp_with_time_zone(AuditEvents::OccurredAt))
                    .col(text(AuditEvents::Kind))
                    .col(text_null(AuditEvents::ActorId))
                    .col(text_null(AuditEvents::SubjectId))
                    .col(text_null(AuditEvents::ClientId))
                    .col(text_null(AuditEvents::Ip))
                    .col(text_null(AuditEvents::UserAgent))
                    .col(text(AuditEvents::Details).default("{}"))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_audit_events_occurred_at", AuditEvents::OccurredAt),
            ("idx_audit_events_kind", AuditEvents::Kind),
            ("idx_audit_events_subject", AuditEvents::SubjectId),
        ] {
            manager
                .create_index(Index::create().name(name).table(AuditEvents::Table).col(col).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(AuditEvents::Table).to_owned()).await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum AuditEvents {
    Table,
    Id,
    OccurredAt,
    Kind,
    ActorId,
    SubjectId,
    ClientId,
    Ip,
    UserAgent,
    Details,
}
