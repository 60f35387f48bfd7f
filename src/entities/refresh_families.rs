use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refresh_families")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub client_id: String,
    pub scope: String,
    /// Rotation counter: the only valid refresh token is the one for this value.
    pub counter: i64,
    pub auth_time: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub last_used_at: DateTimeUtc,
    pub last_rotated_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
    pub revoked_reason: Option<String>,
    pub ip: Option<String>,
    /// `ip` as 16 bytes (IPv4 mapped to IPv6), for CIDR range filters.
    pub ip_bin: Option<Vec<u8>>,
    pub user_agent: Option<String>,
    /// Address of the last refresh; null until the first one (then `ip` counts).
    pub last_ip: Option<String>,
    /// User agent of the last refresh; null until the first one (then `user_agent` counts).
    pub last_user_agent: Option<String>,
    /// How the session was authenticated: RFC 8176 `amr` values, space-separated.
    pub amr: Option<String>,
}

impl ActiveModelBehavior for ActiveModel {}
