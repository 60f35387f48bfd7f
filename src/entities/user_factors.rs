use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user_factors")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    /// `totp` or `passkey`.
    pub kind: String,
    pub name: String,
    /// TOTP: the secret, sealed with the master key.
    pub secret: Option<String>,
    /// Passkey: webauthn-rs's `Passkey` as JSON.
    pub passkey: Option<String>,
    #[sea_orm(unique)]
    pub credential_id: Option<Vec<u8>>,
    pub confirmed: bool,
    pub last_used_step: Option<i64>,
    pub sign_count: i64,
    pub created_at: DateTimeUtc,
    pub last_used_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
