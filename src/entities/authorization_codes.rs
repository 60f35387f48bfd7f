use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "authorization_codes")]
pub struct Model {
    /// SHA-256 of the code.
    #[sea_orm(primary_key, auto_increment = false)]
    pub code_hash: Vec<u8>,
    pub client_id: String,
    pub user_id: Uuid,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    /// PKCE S256 challenge (RFC 7636).
    pub code_challenge: Option<String>,
    pub auth_time: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub used_at: Option<DateTimeUtc>,
    /// Set when a second redemption was attempted.
    pub reused_at: Option<DateTimeUtc>,
    pub family_id: Option<Uuid>,
    pub access_jti: Option<String>,
    pub access_expires_at: Option<DateTimeUtc>,
    /// How the session was authenticated: RFC 8176 `amr` values, space-separated.
    pub amr: Option<String>,
}

impl ActiveModelBehavior for ActiveModel {}
