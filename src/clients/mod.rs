//! OAuth clients: registration (RFC 7591 metadata names), secrets, lookup.
//!
//! Secrets are generated here with 256 bits of entropy, returned once, and
//! stored as SHA-256 hashes compared in constant time: a slow hash would add
//! nothing against a random 256-bit secret and would make every client
//! credentials request pay argon2. Rotating a secret keeps the previous one
//! valid for an overlap, so deployments can roll without downtime.

pub mod redirect_uri;
pub mod repo;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::ConnectionTrait;

use crate::config::SigningAlg;
use crate::crypto;
use crate::entities::clients;
use crate::error::Internal;
use crate::scope::ScopeSet;
pub use redirect_uri::{RedirectUri, RedirectUriError};

/// `token_endpoint_auth_method` values latchkey supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// A public client: it has no secret (SPAs, native apps); PKCE is required.
    None,
}

impl AuthMethod {
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::None => "none",
        }
    }
}

impl FromStr for AuthMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "client_secret_basic" => Ok(AuthMethod::ClientSecretBasic),
            "client_secret_post" => Ok(AuthMethod::ClientSecretPost),
            "none" => Ok(AuthMethod::None),
            _ => {
                Err("token_endpoint_auth_method must be client_secret_basic, client_secret_post or none"
                    .into())
            }
        }
    }
}

/// Grant types a client may be registered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    Password,
}

impl GrantType {
    pub const ALL: [GrantType; 4] = [
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
        GrantType::Password,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::Password => "password",
        }
    }
}

impl FromStr for GrantType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GrantType::ALL.into_iter().find(|g| g.as_str() == s).ok_or_else(|| {
            "grant_types may hold authorization_code, refresh_token, client_credentials and password"
                .to_owned()
        })
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A registered client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_name: String,
    pub auth_method: AuthMethod,
    pub redirect_uris: Vec<RedirectUri>,
    pub grant_types: Vec<GrantType>,
    pub response_types: Vec<String>,
    pub scope: ScopeSet,
    pub id_token_signed_response_alg: Option<SigningAlg>,
    /// As registered; see [`OAuthClient::requires_pkce`] for what applies.
    pub require_pkce: bool,
    /// Only sign-ins with a second factor may get tokens (`amr` has `mfa`).
    pub require_mfa: bool,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    secret_hash: Option<Vec<u8>>,
    previous_secret_hash: Option<Vec<u8>>,
    previous_secret_expires_at: Option<DateTime<Utc>>,
}

impl OAuthClient {
    /// What an update changed, for the audit log: `{field: {from, to}}` for
    /// each field that differs (RFC 7591 names). Secrets are never listed;
    /// a new secret shows as `token_endpoint_auth_method` changing.
    pub fn changes(old: &OAuthClient, new: &OAuthClient) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::{Value, json};
        let uris = |c: &OAuthClient| -> Value {
            c.redirect_uris.iter().map(|u| Value::from(RedirectUri::as_str(u))).collect()
        };
        let grants =
            |c: &OAuthClient| -> Value { c.grant_types.iter().map(|g| Value::from(g.as_str())).collect() };
        type Field = fn(&OAuthClient) -> Value;
        let fields: [(&str, Field); 10] = [
            ("client_name", |c| c.client_name.clone().into()),
            ("redirect_uris", uris),
            ("grant_types", grants),
            ("response_types", |c| c.response_types.clone().into()),
            ("scope", |c| c.scope.to_string().into()),
            ("token_endpoint_auth_method", |c| c.auth_method.as_str().into()),
            ("id_token_signed_response_alg", |c| c.id_token_signed_response_alg.map(|a| a.as_str()).into()),
            ("require_pkce", |c| c.requires_pkce().into()),
            ("require_mfa", |c| c.require_mfa.into()),
            ("disabled", |c| c.disabled.into()),
        ];
        let mut changes = serde_json::Map::new();
        for (name, value) in fields {
            let (from, to) = (value(old), value(new));
            if from != to {
                changes.insert(name.to_owned(), json!({"from": from, "to": to}));
            }
        }
        changes
    }

    pub fn is_confidential(&self) -> bool {
        self.auth_method != AuthMethod::None
    }

    /// Must the code flow use PKCE? Yes for every client (OAuth 2.1, RFC
    /// 9700 §2.1.1) unless an administrator allowed a legacy confidential
    /// client without it. A public client always must: its code is only
    /// bound to it by the verifier.
    pub fn requires_pkce(&self) -> bool {
        self.require_pkce || !self.is_confidential()
    }

    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    pub fn redirect_uri(&self, presented: &str) -> Option<&RedirectUri> {
        self.redirect_uris.iter().find(|r| r.matches(presented))
    }

    /// Does `secret` match the current secret, or the previous one during
    /// its overlap? Both comparisons always run, in constant time.
    pub fn secret_matches(&self, secret: &str, now: DateTime<Utc>) -> bool {
        let presented = crypto::sha256(secret.as_bytes());
        let current = self.secret_hash.as_deref().is_some_and(|h| crypto::constant_time_eq(h, &presented));
        let previous_live = self.previous_secret_expires_at.is_some_and(|t| t > now);
        let previous =
            self.previous_secret_hash.as_deref().is_some_and(|h| crypto::constant_time_eq(h, &presented));
        current || (previous && previous_live)
    }

    pub fn previous_secret_expires_at(&self) -> Option<DateTime<Utc>> {
        self.previous_secret_expires_at
    }
}

fn split(column: &str) -> impl Iterator<Item = &str> {
    column.split_whitespace()
}

impl TryFrom<clients::Model> for OAuthClient {
    type Error = Internal;
    fn try_from(m: clients::Model) -> Result<Self, Internal> {
        let corrupt =
            |what: String| Internal(anyhow::anyhow!("client {} has an invalid {what}", m.client_id));
        let uris: Vec<String> =
            serde_json::from_str(&m.redirect_uris).map_err(|_| corrupt("redirect_uris".into()))?;
        Ok(OAuthClient {
            auth_method: m.token_endpoint_auth_method.parse().map_err(corrupt)?,
            redirect_uris: uris
                .iter()
                .map(|u| RedirectUri::parse(u))
                .collect::<Result<_, _>>()
                .map_err(|e| corrupt(e.to_string()))?,
            grant_types: split(&m.grant_types).map(str::parse).collect::<Result<_, _>>().map_err(corrupt)?,
            response_types: split(&m.response_types).map(str::to_owned).collect(),
            scope: ScopeSet::from_stored(&m.scope),
            id_token_signed_response_alg: m
                .id_token_signed_response_alg
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(corrupt)?,
            client_id: m.client_id,
            client_name: m.client_name,
            require_pkce: m.require_pkce,
            require_mfa: m.require_mfa,
            disabled: m.disabled,
            created_at: m.created_at,
            updated_at: m.updated_at,
            secret_hash: m.secret_hash,
            previous_secret_hash: m.previous_secret_hash,
            previous_secret_expires_at: m.previous_secret_expires_at,
        })
    }
}

/// Client metadata as submitted (RFC 7591 §2 names). Absent fields take
/// RFC 7591 defaults: `authorization_code`, `code`, `client_secret_basic`.
#[derive(Clone, Debug, Default)]
pub struct ClientMetadata {
    pub client_name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub scope: Option<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub id_token_signed_response_alg: Option<String>,
    /// latchkey's own: `false` lets a confidential client use the code
    /// flow without PKCE (default `true`).
    pub require_pkce: Option<bool>,
    /// latchkey's own: `true` gives this client tokens only for sign-ins
    /// with a second factor (default `false`).
    pub require_mfa: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// RFC 7591 §3.2.2 `invalid_redirect_uri`.
    #[error(transparent)]
    InvalidRedirectUri(#[from] RedirectUriError),
    /// RFC 7591 §3.2.2 `invalid_client_metadata`.
    #[error("{0}")]
    InvalidMetadata(String),
    #[error("no such client")]
    NotFound,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// Metadata after validation, ready to store.
struct Validated {
    client_name: String,
    redirect_uris: Vec<RedirectUri>,
    grant_types: Vec<GrantType>,
    response_types: Vec<String>,
    scope: ScopeSet,
    auth_method: AuthMethod,
    id_token_alg: Option<SigningAlg>,
    require_pkce: bool,
    require_mfa: bool,
}

/// Scopes with this prefix are latchkey's own permissions.
pub const RESERVED_PREFIX: &str = "latchkey:";
/// Lets a client introspect tokens issued to other clients (RFC 7662 §4).
pub const INTROSPECT_SCOPE: &str = "latchkey:introspect";
pub use crate::authn::USERS_SCOPE;

/// The algorithms an ID token can be signed with: RS256 always, and the
/// access-token algorithm.
pub fn id_token_algs(access_alg: SigningAlg) -> Vec<SigningAlg> {
    let mut algs = vec![SigningAlg::Rs256];
    if access_alg != SigningAlg::Rs256 {
        algs.push(access_alg);
    }
    algs
}

fn validate(
    meta: ClientMetadata,
    current: Option<&OAuthClient>,
    id_algs: &[SigningAlg],
) -> Result<Validated, ClientError> {
    let bad = |m: String| ClientError::InvalidMetadata(m);
    let client_name = meta
        .client_name
        .or_else(|| current.map(|c| c.client_name.clone()))
        .ok_or_else(|| bad("client_name is required".into()))?;
    if client_name.trim().is_empty()
        || client_name.chars().count() > 200
        || client_name.chars().any(char::is_control)
    {
        return Err(bad("client_name must be 1 to 200 printable characters".into()));
    }
    let redirect_uris = match meta.redirect_uris {
        Some(list) => {
            if list.len() > 20 {
                return Err(bad("at most 20 redirect_uris".into()));
            }
            list.iter().map(|u| RedirectUri::parse(u)).collect::<Result<Vec<_>, _>>()?
        }
        None => current.map(|c| c.redirect_uris.clone()).unwrap_or_default(),
    };
    let grant_types = match meta.grant_types {
        Some(list) => {
            let mut grants =
                list.iter().map(|g| g.parse::<GrantType>()).collect::<Result<Vec<_>, _>>().map_err(bad)?;
            grants.sort();
            grants.dedup();
            grants
        }
        None => current.map_or_else(|| vec![GrantType::AuthorizationCode], |c| c.grant_types.clone()),
    };
    let auth_method = match meta.token_endpoint_auth_method {
        Some(m) => m.parse::<AuthMethod>().map_err(bad)?,
        None => current.map_or(AuthMethod::ClientSecretBasic, |c| c.auth_method),
    };
    let default_response_types = if grant_types.contains(&GrantType::AuthorizationCode) {
        vec!["code".to_owned()]
    } else {
        Vec::new()
    };
    let response_types = match meta.response_types {
        Some(list) => list,
        None => current.map_or(default_response_types, |c| c.response_types.clone()),
    };
    if response_types.iter().any(|r| r != "code") {
        return Err(bad("the only supported response_type is code".into()));
    }
    let scope = match meta.scope {
        Some(s) => ScopeSet::parse(&s).map_err(|e| bad(e.to_string()))?,
        None => current.map(|c| c.scope.clone()).unwrap_or_default(),
    };
    if let Some(reserved) =
        scope.iter().find(|s| s.starts_with(RESERVED_PREFIX) && *s != INTROSPECT_SCOPE && *s != USERS_SCOPE)
    {
        return Err(bad(format!("scope {reserved} is reserved and cannot be granted to a client")));
    }
    // User management is for a service acting for itself: never in a token
    // a user obtained through a client (code or password grant).
    if scope.contains(USERS_SCOPE)
        && (auth_method == AuthMethod::None || grant_types != [GrantType::ClientCredentials])
    {
        return Err(bad(format!(
            "scope {USERS_SCOPE} is only for a confidential client whose only grant_type is client_credentials"
        )));
    }
    let id_token_alg = match meta.id_token_signed_response_alg {
        Some(a) => {
            let names = || id_algs.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ");
            let unknown = || bad(format!("id_token_signed_response_alg must be one of {}", names()));
            let alg = a.parse::<SigningAlg>().map_err(|_| unknown())?;
            if !id_algs.contains(&alg) {
                return Err(unknown());
            }
            Some(alg)
        }
        None => current.and_then(|c| c.id_token_signed_response_alg),
    };
    // Cross-field rules (RFC 7591 §2.1).
    let uses_code = grant_types.contains(&GrantType::AuthorizationCode);
    if uses_code && redirect_uris.is_empty() {
        return Err(bad("authorization_code clients need at least one redirect_uri".into()));
    }
    if uses_code != response_types.iter().any(|r| r == "code") {
        return Err(bad(
            "response_types must be exactly [code] when grant_types has authorization_code".into()
        ));
    }
    if auth_method == AuthMethod::None && grant_types.contains(&GrantType::ClientCredentials) {
        return Err(bad(
            "a public client (token_endpoint_auth_method none) cannot use client_credentials".into()
        ));
    }
    if grant_types.is_empty() {
        return Err(bad("grant_types must not be empty".into()));
    }
    // A client that stays or becomes public keeps PKCE, even one that was
    // confidential without it: switching needs require_pkce true as well.
    let require_pkce = meta.require_pkce.or(current.map(|c| c.require_pkce)).unwrap_or(true);
    if auth_method == AuthMethod::None && !require_pkce {
        return Err(bad("a public client (token_endpoint_auth_method none) must use PKCE: \
             require_pkce cannot be false"
            .into()));
    }
    let require_mfa = meta.require_mfa.or(current.map(|c| c.require_mfa)).unwrap_or(false);
    Ok(Validated {
        client_name,
        redirect_uris,
        grant_types,
        response_types,
        scope,
        auth_method,
        id_token_alg,
        require_pkce,
        require_mfa,
    })
}

fn to_row(v: &Validated) -> Result<(String, String, String), Internal> {
    let uris: Vec<&str> = v.redirect_uris.iter().map(RedirectUri::as_str).collect();
    let grants: Vec<&str> = v.grant_types.iter().map(|g| g.as_str()).collect();
    Ok((
        serde_json::to_string(&uris).map_err(anyhow::Error::from)?,
        grants.join(" "),
        v.response_types.join(" "),
    ))
}

/// A new random secret and its stored hash.
fn new_secret() -> (String, Vec<u8>) {
    let secret = crypto::random_token::<32>();
    let hash = crypto::sha256(secret.as_bytes()).to_vec();
    (secret, hash)
}

/// Register a client. Returns it with its secret (confidential clients),
/// which is never shown again.
pub async fn create(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    meta: ClientMetadata,
    id_algs: &[SigningAlg],
) -> Result<(OAuthClient, Option<String>), ClientError> {
    let v = validate(meta, None, id_algs)?;
    let (redirect_uris, grant_types, response_types) = to_row(&v)?;
    let (secret, secret_hash) = match v.auth_method {
        AuthMethod::None => (None, None),
        _ => {
            let (s, h) = new_secret();
            (Some(s), Some(h))
        }
    };
    let row = clients::Model {
        client_id: crypto::random_token::<16>(),
        client_name: v.client_name,
        secret_hash,
        previous_secret_hash: None,
        previous_secret_expires_at: None,
        token_endpoint_auth_method: v.auth_method.as_str().to_owned(),
        redirect_uris,
        grant_types,
        response_types,
        scope: v.scope.to_string(),
        id_token_signed_response_alg: v.id_token_alg.map(|a| a.as_str().to_owned()),
        require_pkce: v.require_pkce,
        require_mfa: v.require_mfa,
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    let client = OAuthClient::try_from(repo::insert(db, row).await?)?;
    tracing::info!(client_id = %client.client_id, "client registered");
    Ok((client, secret))
}

/// The client with this id. An id no row can hold (see
/// [`crate::sql::is_storable`]) names no client: callers that meet raw
/// input outside a checked field (HTTP Basic credentials, the
/// authorization request) answer "unknown client", as the protocol says.
pub async fn find(db: &impl ConnectionTrait, client_id: &str) -> Result<Option<OAuthClient>, Internal> {
    if !crate::sql::is_storable(client_id) {
        return Ok(None);
    }
    repo::by_id(db, client_id).await?.map(OAuthClient::try_from).transpose()
}

pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<OAuthClient>, Internal> {
    repo::all(db).await?.into_iter().map(OAuthClient::try_from).collect()
}

/// Every client, for a replica's memory ([`crate::memory`]). A row that
/// does not parse is left out and logged: that client cannot authenticate
/// until it is mended, and every other client still can.
pub async fn load_all(db: &impl ConnectionTrait) -> Result<Vec<OAuthClient>, Internal> {
    let mut clients = Vec::new();
    for row in repo::all(db).await? {
        let client_id = row.client_id.clone();
        match OAuthClient::try_from(row) {
            Ok(client) => clients.push(client),
            Err(e) => {
                tracing::error!(%client_id, error = format!("{:#}", e.0), "a client row is invalid; it cannot authenticate")
            }
        }
    }
    Ok(clients)
}

/// Change metadata (fields left out keep their value). Changing the auth
/// method between public and confidential issues or drops the secret.
pub async fn update(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    client_id: &str,
    meta: ClientMetadata,
    disabled: Option<bool>,
    id_algs: &[SigningAlg],
) -> Result<(OAuthClient, Option<String>), ClientError> {
    let current = find(db, client_id).await?.ok_or(ClientError::NotFound)?;
    let v = validate(meta, Some(&current), id_algs)?;
    let (redirect_uris, grant_types, response_types) = to_row(&v)?;
    let mut new_secret_value = None;
    let (secret_hash, previous_hash, previous_expires) = match (current.is_confidential(), v.auth_method) {
        (_, AuthMethod::None) => (None, None, None),
        (false, _) => {
            let (s, h) = new_secret();
            new_secret_value = Some(s);
            (Some(h), None, None)
        }
        (true, _) => (
            current.secret_hash.clone(),
            current.previous_secret_hash.clone(),
            current.previous_secret_expires_at,
        ),
    };
    let row = clients::Model {
        client_id: current.client_id.clone(),
        client_name: v.client_name,
        secret_hash,
        previous_secret_hash: previous_hash,
        previous_secret_expires_at: previous_expires,
        token_endpoint_auth_method: v.auth_method.as_str().to_owned(),
        redirect_uris,
        grant_types,
        response_types,
        scope: v.scope.to_string(),
        id_token_signed_response_alg: v.id_token_alg.map(|a| a.as_str().to_owned()),
        require_pkce: v.require_pkce,
        require_mfa: v.require_mfa,
        disabled: disabled.unwrap_or(current.disabled),
        created_at: current.created_at,
        updated_at: now,
    };
    let client = OAuthClient::try_from(repo::replace(db, row).await?)?;
    Ok((client, new_secret_value))
}

/// Issue a new secret; the old one keeps working for `overlap`.
pub async fn rotate_secret(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    client_id: &str,
    overlap: TimeDelta,
) -> Result<(OAuthClient, String), ClientError> {
    let current = find(db, client_id).await?.ok_or(ClientError::NotFound)?;
    if !current.is_confidential() {
        return Err(ClientError::InvalidMetadata("a public client has no secret to rotate".into()));
    }
    let (secret, hash) = new_secret();
    repo::set_secret(db, client_id, hash, current.secret_hash.clone(), now + overlap, now).await?;
    let client = find(db, client_id).await?.ok_or(ClientError::NotFound)?;
    tracing::info!(%client_id, "client secret rotated");
    Ok((client, secret))
}

pub async fn delete(db: &impl ConnectionTrait, client_id: &str) -> Result<(), ClientError> {
    if repo::delete(db, client_id).await? { Ok(()) } else { Err(ClientError::NotFound) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(grants: &[&str], method: &str, uris: &[&str]) -> ClientMetadata {
        ClientMetadata {
            client_name: Some("app".into()),
            redirect_uris: Some(uris.iter().map(|s| (*s).to_owned()).collect()),
            grant_types: Some(grants.iter().map(|s| (*s).to_owned()).collect()),
            token_endpoint_auth_method: Some(method.into()),
            ..Default::default()
        }
    }

    fn validate_default(
        meta: ClientMetadata,
        current: Option<&OAuthClient>,
    ) -> Result<Validated, ClientError> {
        validate(meta, current, &[SigningAlg::Rs256, SigningAlg::Es256])
    }

    #[test]
    fn reserved_scopes_and_missing_keys_are_refused() {
        let mut m = meta(&["client_credentials"], "client_secret_basic", &[]);
        m.scope = Some("tasks:read latchkey:admin".into());
        assert!(validate_default(m.clone(), None).is_err());
        m.scope = Some("tasks:read latchkey:introspect".into());
        assert!(validate_default(m.clone(), None).is_ok());
        m.id_token_signed_response_alg = Some("EdDSA".into());
        assert!(validate_default(m, None).is_err(), "no EdDSA key exists");
    }

    #[test]
    fn the_users_scope_is_only_for_confidential_client_credentials_clients() {
        let mut m = meta(&["client_credentials"], "client_secret_basic", &[]);
        m.scope = Some("latchkey:users".into());
        assert!(validate_default(m.clone(), None).is_ok());
        let mut code = meta(&["authorization_code"], "client_secret_basic", &["https://x.test/cb"]);
        code.scope = m.scope.clone();
        assert!(validate_default(code, None).is_err(), "user tokens must never carry it");
        let mut both = meta(&["client_credentials", "password"], "client_secret_basic", &[]);
        both.scope = m.scope.clone();
        assert!(validate_default(both, None).is_err());
        let mut public = meta(&["client_credentials"], "none", &[]);
        public.scope = m.scope.clone();
        assert!(validate_default(public, None).is_err());
    }

    fn client(scope: &str, uris: &[&str]) -> OAuthClient {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        OAuthClient::try_from(clients::Model {
            client_id: "c".into(),
            client_name: "app".into(),
            secret_hash: Some(vec![1; 32]),
            previous_secret_hash: None,
            previous_secret_expires_at: None,
            token_endpoint_auth_method: "client_secret_basic".into(),
            redirect_uris: serde_json::to_string(uris).unwrap(),
            grant_types: "authorization_code".into(),
            response_types: "code".into(),
            scope: scope.into(),
            id_token_signed_response_alg: None,
            require_pkce: true,
            require_mfa: false,
            disabled: false,
            created_at: now,
            updated_at: now,
        })
        .unwrap()
    }

    #[test]
    fn changes_list_each_changed_field_and_never_a_secret() {
        let old = client("openid tasks:read", &["https://a.test/cb"]);
        assert!(OAuthClient::changes(&old, &old).is_empty());
        let mut new = client("openid tasks:write", &["https://a.test/cb", "https://b.test/cb"]);
        new.disabled = true;
        new.secret_hash = Some(vec![2; 32]);
        let changes = OAuthClient::changes(&old, &new);
        assert_eq!(
            serde_json::Value::Object(changes),
            serde_json::json!({
                "scope": {"from": "openid tasks:read", "to": "openid tasks:write"},
                "redirect_uris": {
                    "from": ["https://a.test/cb"],
                    "to": ["https://a.test/cb", "https://b.test/cb"],
                },
                "disabled": {"from": false, "to": true},
            })
        );
    }

    #[test]
    fn defaults_follow_rfc_7591() {
        let v = validate_default(
            ClientMetadata {
                client_name: Some("x".into()),
                redirect_uris: Some(vec!["https://x.test/cb".into()]),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        assert_eq!(v.grant_types, [GrantType::AuthorizationCode]);
        assert_eq!(v.response_types, ["code"]);
        assert_eq!(v.auth_method, AuthMethod::ClientSecretBasic);
    }

    #[test]
    fn pkce_is_required_by_default_and_always_for_public_clients() {
        let code = |method: &str, require_pkce: Option<bool>| ClientMetadata {
            require_pkce,
            ..meta(&["authorization_code"], method, &["https://x.test/cb"])
        };
        assert!(validate_default(code("client_secret_basic", None), None).unwrap().require_pkce);
        assert!(!validate_default(code("client_secret_basic", Some(false)), None).unwrap().require_pkce);
        assert!(validate_default(code("none", Some(false)), None).is_err());
        assert!(validate_default(code("none", None), None).unwrap().require_pkce);
    }

    #[test]
    fn inconsistent_metadata_is_refused() {
        assert!(
            validate_default(meta(&["authorization_code"], "none", &[]), None).is_err(),
            "code needs a redirect URI"
        );
        assert!(
            validate_default(meta(&["client_credentials"], "none", &[]), None).is_err(),
            "public + client_credentials"
        );
        assert!(validate_default(meta(&["implicit"], "client_secret_basic", &[]), None).is_err());
        assert!(validate_default(meta(&["client_credentials"], "private_key_jwt", &[]), None).is_err());
        assert!(validate_default(meta(&["client_credentials"], "client_secret_post", &[]), None).is_ok());
    }
}
