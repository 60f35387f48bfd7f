//! Counters that replicas read to know whether what they keep in memory is
//! still current.
//!
//! Each replica keeps the registered clients in memory, so that client
//! authentication costs no query. One row here, `clients`, counts the
//! statements that changed `clients`; a trigger bumps it in the same
//! transaction as the change, so every write counts, whether it comes from
//! latchkey, the CLI or an operator's own SQL. A replica compares the count
//! with the one it loaded at, in the one shared read it makes before
//! answering (see `src/memory.rs`), and reloads the clients when it moved.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_TRIGGER: &str = "\
CREATE FUNCTION latchkey_clients_changed() RETURNS trigger LANGUAGE plpgsql \
SET search_path FROM CURRENT AS $body$ \
BEGIN UPDATE change_counters SET value = value + 1 WHERE name = 'clients'; RETURN NULL; END \
$body$; \
CREATE TRIGGER clients_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON clients \
FOR EACH STATEMENT EXECUTE FUNCTION latchkey_clients_changed();";

const SQLITE_TRIGGERS: [&str; 3] = [
    "CREATE TRIGGER clients_inserted AFTER INSERT ON clients BEGIN \
     UPDATE change_counters SET value = value + 1 WHERE name = 'clients'; END",
    "CREATE TRIGGER clients_updated AFTER UPDATE ON clients BEGIN \
     UPDATE change_counters SET value = value + 1 WHERE name = 'clients'; END",
    "CREATE TRIGGER clients_deleted AFTER DELETE ON clients BEGIN \
     UPDATE change_counters SET value = value + 1 WHERE name = 'clients'; END",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ChangeCounters::Table)
                    .if_not_exists()
                    .col(text(ChangeCounters::Name).primary_key())
                    .col(big_integer(ChangeCounters::Value).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(ChangeCounters::Table)
                    .columns([ChangeCounters::Name, ChangeCounters::Value])
                    .values_panic(["clients".into(), 0.into()])
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(POSTGRES_TRIGGER).await?;
            }
            _ => {
                for trigger in SQLITE_TRIGGERS {
                    db.execute_unprepared(trigger).await?;
                }
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(
                    "DROP TRIGGER IF EXISTS clients_changed ON clients; \
                     DROP FUNCTION IF EXISTS latchkey_clients_changed();",
                )
                .await?;
            }
            _ => {
                for name in ["clients_inserted", "clients_updated", "clients_deleted"] {
                    db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {name}")).await?;
                }
            }
        }
        manager.drop_table(Table::drop().table(ChangeCounters::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum ChangeCounters {
    Table,
    Name,
    Value,
}
