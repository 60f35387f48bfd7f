use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signing_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub kid: String,
    /// `access` or `id_token`: each purpose is its own rotation chain.
    pub purpose: String,
    pub generation: i64,
    pub alg: String,
    /// The public JWK as JSON.
    pub public_jwk: String,
    /// JWE compact serialization (dir, A256GCM) of the PKCS#8 private key.
    pub private_key_sealed: String,
    /// Identifier of the master key that sealed `private_key_sealed`.
    pub sealed_with: String,
    pub created_at: DateTimeUtc,
    pub activates_at: DateTimeUtc,
    pub retired_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
