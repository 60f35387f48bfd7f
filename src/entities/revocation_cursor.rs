use sea_orm::entity::prelude::*;

/// One row, locked by every revocation write so feed order is commit order.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "revocation_cursor")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub writes: i64,
}

impl ActiveModelBehavior for ActiveModel {}
