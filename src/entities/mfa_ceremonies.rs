use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mfa_ceremonies")]
pub struct Model {
    /// SHA-256 of the handle given to the client.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id_hash: Vec<u8>,
    pub purpose: String,
    pub user_id: Option<Uuid>,
    pub client_id: String,
    /// JSON: what the ceremony continues (WebAuthn state, the sign-in attempt).
    pub data: String,
    pub attempts: i32,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub used_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
