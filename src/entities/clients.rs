use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "clients")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub client_id: String,
    pub client_name: String,
    /// SHA-256 of the client secret; `None` for public clients.
    pub secret_hash: Option<Vec<u8>>,
    pub previous_secret_hash: Option<Vec<u8>>,
    pub previous_secret_expires_at: Option<DateTimeUtc>,
    pub token_endpoint_auth_method: String,
    /// JSON array of exact redirect URIs.
    pub redirect_uris: String,
    pub grant_types: String,
    pub response_types: String,
    pub scope: String,
    pub id_token_signed_response_alg: Option<String>,
    pub disabled: bool,
    /// The code flow needs PKCE (always, for public clients).
    pub require_pkce: bool,
    /// Accept only sign-ins with a second factor (`amr` has `mfa`).
    pub require_mfa: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
