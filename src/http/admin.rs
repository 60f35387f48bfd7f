//! `/admin/*`: administration, for users with the `admin` role.
//!
//! The user-management endpoints (`/admin/users*`) also accept a service
//! client's token with scope `latchkey:users` (see
//! [`BearerAuth::user_manager`]); such a service never acts on an admin and
//! never grants the admin role. Clients, keys, bulk revocation and the
//! audit log are for admins only.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::Tag;
use super::auth::{SessionView, UserView};
use super::error::ApiError;
use super::origin::ClientOrigin;
use super::security::BearerAuth;
use super::validate::Storable;
use crate::admin::{BulkCriteria, NewAccount, UserPatch};
use crate::audit::{self, AuditFilter, Event, EventKind};
use crate::clients::{self, ClientMetadata, OAuthClient, RedirectUri};
use crate::keys::{self, KeyPolicy};
use crate::passwords::Password;
use crate::state::AppState;
use crate::users::{self, Email, Role, Username};

/// Client registration (RFC 7591 §2 metadata). Unknown fields are refused.
#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct ClientRegistration {
    pub client_name: String,
    /// Exact redirect URIs (https, or http on localhost).
    pub redirect_uris: Option<Vec<String>>,
    /// Default `["authorization_code"]`; also `refresh_token`,
    /// `client_credentials`, `password`.
    pub grant_types: Option<Vec<String>>,
    /// Default `["code"]` when `authorization_code` is granted.
    pub response_types: Option<Vec<String>>,
    /// Space-separated scopes the client may request.
    pub scope: Option<String>,
    /// `client_secret_basic` (default), `client_secret_post`, or `none` (public client).
    pub token_endpoint_auth_method: Option<String>,
    /// `RS256` (default), `ES256` or `EdDSA`, if that key exists.
    pub id_token_signed_response_alg: Option<String>,
    /// The code flow needs PKCE (S256). Default `true`; `false` lets a
    /// legacy confidential client go without it. Public clients always
    /// need it.
    pub require_pkce: Option<bool>,
    /// Give this client tokens only for sign-ins with a second factor
    /// (`amr` has `mfa`). Default `false`.
    pub require_mfa: Option<bool>,
}

/// A partial update: fields left out keep their value.
#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct ClientUpdate {
    pub client_name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub scope: Option<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub id_token_signed_response_alg: Option<String>,
    /// `false` lets a legacy confidential client use the code flow without
    /// PKCE; never for a public client.
    pub require_pkce: Option<bool>,
    /// Tokens only for sign-ins with a second factor.
    pub require_mfa: Option<bool>,
    /// A disabled client cannot authenticate or start authorizations.
    pub disabled: Option<bool>,
}

/// A client (RFC 7591 §3.2.1 response).
#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none)]
pub struct ClientView {
    pub client_id: String,
    /// Present only when just generated: it is never shown again.
    #[oai(skip_serializing_if_is_none)]
    pub client_secret: Option<String>,
    pub client_id_issued_at: i64,
    /// `0`: secrets do not expire (they are rotated explicitly).
    #[oai(skip_serializing_if_is_none)]
    pub client_secret_expires_at: Option<i64>,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub scope: String,
    pub token_endpoint_auth_method: String,
    #[oai(skip_serializing_if_is_none)]
    pub id_token_signed_response_alg: Option<String>,
    /// The code flow needs PKCE (always `true` for a public client).
    pub require_pkce: bool,
    /// Tokens only for sign-ins with a second factor (`amr` has `mfa`).
    pub require_mfa: bool,
    pub disabled: bool,
    /// Until then, the secret before the last rotation still works.
    #[oai(skip_serializing_if_is_none)]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

impl ClientView {
    fn new(c: &OAuthClient, secret: Option<String>, now: DateTime<Utc>) -> Self {
        ClientView {
            client_id: c.client_id.clone(),
            client_secret: secret,
            client_id_issued_at: c.created_at.timestamp(),
            client_secret_expires_at: c.is_confidential().then_some(0),
            client_name: c.client_name.clone(),
            redirect_uris: c.redirect_uris.iter().map(|u| RedirectUri::as_str(u).to_owned()).collect(),
            grant_types: c.grant_types.iter().map(|g| g.as_str().to_owned()).collect(),
            response_types: c.response_types.clone(),
            scope: c.scope.to_string(),
            token_endpoint_auth_method: c.auth_method.as_str().to_owned(),
            id_token_signed_response_alg: c.id_token_signed_response_alg.map(|a| a.as_str().to_owned()),
            require_pkce: c.requires_pkce(),
            require_mfa: c.require_mfa,
            disabled: c.disabled,
            previous_secret_expires_at: c.previous_secret_expires_at().filter(|t| *t > now),
        }
    }
}

#[derive(ApiResponse)]
pub enum ClientCreated {
    #[oai(status = 201)]
    Created(Json<ClientView>),
}

#[derive(ApiResponse)]
pub enum ClientOk {
    #[oai(status = 200)]
    Ok(Json<ClientView>),
}

#[derive(ApiResponse)]
pub enum ClientList {
    #[oai(status = 200)]
    Ok(Json<Vec<ClientView>>),
}

#[derive(ApiResponse)]
pub enum Deleted {
    /// Deleted, and everything issued to it revoked.
    #[oai(status = 204)]
    NoContent,
}

/// A page of users.
#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none)]
pub struct UserPage {
    pub users: Vec<UserView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// What an admin may change; fields left out keep their value, `email: null` removes it.
#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct UserUpdate {
    pub email: MaybeUndefined<String>,
    /// The complete new set of roles (not for your own account).
    pub roles: Option<Vec<String>>,
    /// A disabled account cannot sign in; its sessions and tokens end.
    pub disabled: Option<bool>,
}

/// A new user. With `password` the account can sign in at once; without
/// it the response carries an invitation for its owner to choose one.
#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct UserCreate {
    /// As for registration: 2 to 64 letters, digits, marks, `.`, `_` or `-`;
    /// unique regardless of case and Unicode form.
    #[oai(validator(max_length = 256))]
    pub username: String,
    #[oai(validator(max_length = 254))]
    pub email: Option<String>,
    /// Role names (a service with `latchkey:users` cannot grant `admin`).
    pub roles: Option<Vec<String>>,
    /// 8 to 256 characters. Leave out to invite the user instead.
    #[oai(validator(max_length = 1024))]
    pub password: Option<String>,
}

/// A single-use token its user exchanges for a password at
/// `POST /auth/invitations/accept`. Shown only here, never again.
#[derive(Object)]
pub struct InvitationView {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for InvitationView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvitationView").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none)]
pub struct UserCreatedView {
    pub user: UserView,
    /// Present when no password was given.
    pub invitation: Option<InvitationView>,
}

#[derive(ApiResponse)]
pub enum UserCreated {
    #[oai(status = 201)]
    Created(Json<UserCreatedView>),
}

#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct BanRequest {
    /// Shown to the user when they try to sign in.
    #[oai(validator(max_length = 500, custom = "Storable"))]
    pub reason: Option<String>,
    /// When the ban ends by itself; absent for an indefinite ban.
    pub until: Option<DateTime<Utc>>,
}

#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none)]
pub struct BanResult {
    pub user: UserView,
    /// Sessions (refresh families) the ban ended.
    pub sessions_ended: u64,
}

#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct PasswordResetRequest {
    #[oai(validator(max_length = 1024))]
    pub password: String,
}

#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none)]
pub struct SessionsEnded {
    /// How many sessions (refresh families) ended.
    pub revoked: u64,
}

/// What resetting a user's second factors did.
#[derive(Object, Debug)]
pub struct MfaReset {
    /// TOTP apps and passkeys removed (recovery codes go with them).
    pub factors_removed: u64,
    /// Sessions (refresh families) ended.
    pub sessions_ended: u64,
}

/// Criteria for bulk revocation; every given one must match.
#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none, deny_unknown_fields)]
pub struct BulkRevocationRequest {
    pub user_id: Option<Uuid>,
    #[oai(validator(custom = "Storable"))]
    pub client_id: Option<String>,
    /// A CIDR block (`203.0.113.0/24`, `2001:db8::/32`) or one address.
    pub ip_prefix: Option<String>,
    /// Case-insensitive substring of the user agent.
    #[oai(validator(max_length = 200, custom = "Storable"))]
    pub user_agent_contains: Option<String>,
    /// Sessions started before this time.
    pub issued_before: Option<DateTime<Utc>>,
    /// Sessions started after this time.
    pub issued_after: Option<DateTime<Utc>>,
    /// End every session; required when no criterion is given.
    pub all: Option<bool>,
}

#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditEventView {
    /// Time-ordered id; also the pagination cursor.
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub kind: String,
    pub actor_id: Option<String>,
    pub subject_id: Option<String>,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: serde_json::Value,
}

#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditPage {
    pub events: Vec<AuditEventView>,
    /// Pass as `before` for older events; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Object, Debug)]
#[oai(skip_serializing_if_is_none)]
pub struct KeyView {
    pub kid: String,
    /// `access` or `id_token`.
    pub purpose: String,
    pub alg: String,
    /// `next`, `current`, `previous` or `retired`.
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub activates_at: DateTime<Utc>,
    pub retires_at: Option<DateTime<Utc>>,
}

impl KeyView {
    fn new(meta: crate::keys::KeyMeta, status: &crate::keys::KeyStatus) -> Self {
        KeyView {
            kid: meta.kid,
            purpose: meta.purpose.as_str().into(),
            alg: meta.alg.as_str().into(),
            state: status.state.as_str().into(),
            created_at: meta.created_at,
            activates_at: meta.activates_at,
            retires_at: status.retires_at,
        }
    }
}

/// The cursor of the next page: the last row's key when the page is full.
fn next_cursor<T, K: ToString>(rows: &[T], limit: u64, key: impl Fn(&T) -> K) -> Option<String> {
    (rows.len() as u64 == limit).then(|| rows.last().map(|r| key(r).to_string())).flatten()
}

#[derive(ApiResponse)]
pub enum AdminOk<T: poem_openapi::types::ToJSON + Send + Sync + poem_openapi::types::Type> {
    #[oai(status = 200)]
    Ok(Json<T>),
}

pub struct AdminApi;

#[OpenApi(prefix_path = "/admin", tag = "Tag::Admin")]
impl AdminApi {
    /// Register an OAuth client.
    #[oai(path = "/clients", method = "post", operation_id = "createClient")]
    async fn create_client(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        body: Json<ClientRegistration>,
    ) -> Result<ClientCreated, ApiError> {
        let admin = auth.admin(&state)?;
        let r = body.0;
        let meta = ClientMetadata {
            client_name: Some(r.client_name),
            redirect_uris: r.redirect_uris,
            grant_types: r.grant_types,
            response_types: r.response_types,
            scope: r.scope,
            token_endpoint_auth_method: r.token_endpoint_auth_method,
            id_token_signed_response_alg: r.id_token_signed_response_alg,
            require_pkce: r.require_pkce,
            require_mfa: r.require_mfa,
        };
        let now = state.now();
        let algs = clients::id_token_algs(state.settings.signing_alg);
        let (client, secret) = clients::create(&state.db, now, meta, &algs).await?;
        audit::record(
            &state.db,
            now,
            &origin.0,
            Event::new(EventKind::ClientCreated).actor(admin.id).client(&client.client_id),
        )
        .await;
        Ok(ClientCreated::Created(Json(ClientView::new(&client, secret, now))))
    }

    /// List OAuth clients.
    #[oai(path = "/clients", method = "get", operation_id = "listClients")]
    async fn list_clients(&self, state: Data<&AppState>, auth: BearerAuth) -> Result<ClientList, ApiError> {
        auth.admin(&state)?;
        let now = state.now();
        let all = clients::list(&state.db).await?;
        Ok(ClientList::Ok(Json(all.iter().map(|c| ClientView::new(c, None, now)).collect())))
    }

    /// One OAuth client.
    #[oai(path = "/clients/:client_id", method = "get", operation_id = "getClient")]
    async fn get_client(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(validator(custom = "Storable"))] client_id: Path<String>,
    ) -> Result<ClientOk, ApiError> {
        auth.admin(&state)?;
        let client = clients::find(&state.db, &client_id.0)
            .await?
            .ok_or_else(|| ApiError::not_found("no such client"))?;
        Ok(ClientOk::Ok(Json(ClientView::new(&client, None, state.now()))))
    }

    /// Change an OAuth client's metadata.
    #[oai(path = "/clients/:client_id", method = "patch", operation_id = "updateClient")]
    async fn update_client(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        #[oai(validator(custom = "Storable"))] client_id: Path<String>,
        body: Json<ClientUpdate>,
    ) -> Result<ClientOk, ApiError> {
        let admin = auth.admin(&state)?;
        let u = body.0;
        let meta = ClientMetadata {
            client_name: u.client_name,
            redirect_uris: u.redirect_uris,
            grant_types: u.grant_types,
            response_types: u.response_types,
            scope: u.scope,
            token_endpoint_auth_method: u.token_endpoint_auth_method,
            id_token_signed_response_alg: u.id_token_signed_response_alg,
            require_pkce: u.require_pkce,
            require_mfa: u.require_mfa,
        };
        let (client, secret) =
            crate::admin::update_client(&state, &origin.0, admin.id, &client_id.0, meta, u.disabled).await?;
        Ok(ClientOk::Ok(Json(ClientView::new(&client, secret, state.now()))))
    }

    /// Delete an OAuth client and revoke everything issued to it.
    #[oai(path = "/clients/:client_id", method = "delete", operation_id = "deleteClient")]
    async fn delete_client(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        #[oai(validator(custom = "Storable"))] client_id: Path<String>,
    ) -> Result<Deleted, ApiError> {
        let admin = auth.admin(&state)?;
        crate::admin::delete_client(&state, &origin.0, admin.id, &client_id.0).await?;
        Ok(Deleted::NoContent)
    }

    /// Issue a new client secret. The previous one keeps working for
    /// `LATCHKEY_CLIENT_SECRET_OVERLAP` seconds.
    #[oai(path = "/clients/:client_id/secret", method = "post", operation_id = "rotateClientSecret")]
    async fn rotate_secret(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        #[oai(validator(custom = "Storable"))] client_id: Path<String>,
    ) -> Result<ClientOk, ApiError> {
        let admin = auth.admin(&state)?;
        let now = state.now();
        let overlap = crate::clock::delta(state.settings.client_secret_overlap);
        let (client, secret) = clients::rotate_secret(&state.db, now, &client_id.0, overlap).await?;
        audit::record(
            &state.db,
            now,
            &origin.0,
            Event::new(EventKind::ClientSecretRotated).actor(admin.id).client(&client.client_id),
        )
        .await;
        Ok(ClientOk::Ok(Json(ClientView::new(&client, Some(secret), now))))
    }
}

fn parse_roles(names: &[String]) -> Result<Vec<Role>, ApiError> {
    names.iter().map(|n| Role::parse(n).map_err(ApiError::validation)).collect()
}

#[OpenApi(prefix_path = "/admin", tag = "Tag::Admin")]
impl AdminUsersApi {
    /// Create a user, with a password or an invitation.
    ///
    /// With `password` (same rules as registration) the user can sign in at
    /// once. Without it the account gets a password nobody knows (signing in
    /// fails like a wrong password) and the response carries a single-use
    /// `invitation` token, valid 72 hours, that the user exchanges for a
    /// password at `POST /auth/invitations/accept`. `409 username_taken`
    /// when the name is in use; `503` when password hashing is saturated.
    ///
    /// Admins, or a service with `latchkey:users`, which cannot grant the
    /// `admin` role (`403 role_not_grantable`).
    #[oai(path = "/users", method = "post", operation_id = "createUser")]
    async fn create_user(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        body: Json<UserCreate>,
    ) -> Result<UserCreated, ApiError> {
        let actor = auth.user_manager(&state).await?;
        let b = body.0;
        let new = NewAccount {
            username: Username::parse(&b.username).map_err(ApiError::validation)?,
            email: b.email.as_deref().map(Email::parse).transpose().map_err(ApiError::validation)?,
            roles: b.roles.as_deref().map(parse_roles).transpose()?.unwrap_or_default(),
            password: b.password.as_deref().map(Password::new).transpose().map_err(ApiError::validation)?,
        };
        let (user, invitation) = crate::admin::create_user(&state, &origin.0, &actor, new).await?;
        Ok(UserCreated::Created(Json(UserCreatedView {
            user: UserView::new(&user, state.now()),
            invitation: invitation.map(|i| InvitationView { token: i.token, expires_at: i.expires_at }),
        })))
    }

    /// List users, oldest first, optionally searching usernames and emails.
    ///
    /// Admins, or a service with `latchkey:users`.
    #[oai(path = "/users", method = "get", operation_id = "listUsers")]
    async fn list_users(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Substring of the username (case- and form-insensitive) or email.
        #[oai(validator(custom = "Storable"))]
        q: Query<Option<String>>,
        /// The `next_cursor` of the previous page.
        after: Query<Option<Uuid>>,
        /// Page size, 1..=200 (default 50).
        limit: Query<Option<u64>>,
    ) -> Result<AdminOk<UserPage>, ApiError> {
        auth.user_manager(&state).await?;
        let limit = limit.0.unwrap_or(50).clamp(1, 200);
        let rows = users::repo::list(&state.db, after.0, limit, q.0.as_deref()).await?;
        let now = state.now();
        let next_cursor = next_cursor(&rows, limit, |r| r.id);
        let users = rows.into_iter().map(|r| UserView::new(&r.into(), now)).collect();
        Ok(AdminOk::Ok(Json(UserPage { users, next_cursor })))
    }

    /// One user.
    ///
    /// Admins, or a service with `latchkey:users`.
    #[oai(path = "/users/:id", method = "get", operation_id = "getUser")]
    async fn get_user(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<AdminOk<UserView>, ApiError> {
        auth.user_manager(&state).await?;
        let user = crate::admin::existing_user(&state, id.0).await?;
        Ok(AdminOk::Ok(Json(UserView::new(&user, state.now()))))
    }

    /// Change a user's email, roles or disabled flag.
    ///
    /// Admins, or a service with `latchkey:users` (not on an admin).
    #[oai(path = "/users/:id", method = "patch", operation_id = "updateUser")]
    async fn update_user(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        id: Path<Uuid>,
        body: Json<UserUpdate>,
    ) -> Result<AdminOk<UserView>, ApiError> {
        let actor = auth.user_manager(&state).await?;
        let b = body.0;
        let email = match b.email {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(e) => Some(Some(Email::parse(&e).map_err(ApiError::validation)?)),
        };
        let roles = b.roles.as_deref().map(parse_roles).transpose()?;
        let patch = UserPatch { email, roles, disabled: b.disabled };
        let user = crate::admin::update_user(&state, &origin.0, &actor, id.0, patch).await?;
        Ok(AdminOk::Ok(Json(UserView::new(&user, state.now()))))
    }

    /// Delete a user. Their sessions end and their tokens are denied.
    ///
    /// Admins, or a service with `latchkey:users` (not on an admin).
    #[oai(path = "/users/:id", method = "delete", operation_id = "deleteUser")]
    async fn delete_user(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        id: Path<Uuid>,
    ) -> Result<Deleted, ApiError> {
        let actor = auth.user_manager(&state).await?;
        crate::admin::delete_user(&state, &origin.0, &actor, id.0).await?;
        Ok(Deleted::NoContent)
    }

    /// Set a new password; every session of the user ends.
    ///
    /// Admins, or a service with `latchkey:users` (not on an admin).
    /// An open invitation of the user is withdrawn.
    #[oai(path = "/users/:id/password", method = "post", operation_id = "resetUserPassword")]
    async fn reset_password(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        id: Path<Uuid>,
        body: Json<PasswordResetRequest>,
    ) -> Result<AdminOk<SessionsEnded>, ApiError> {
        let actor = auth.user_manager(&state).await?;
        let password = Password::new(&body.0.password).map_err(ApiError::validation)?;
        let revoked = crate::admin::reset_password(&state, &origin.0, &actor, id.0, &password).await?;
        Ok(AdminOk::Ok(Json(SessionsEnded { revoked })))
    }

    /// Ban a user: sign-in and refresh stop, every session ends, their
    /// access tokens are denied (introspection, the revocation feed).
    ///
    /// Admins, or a service with `latchkey:users` (not on an admin).
    #[oai(path = "/users/:id/ban", method = "post", operation_id = "banUser")]
    async fn ban(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        id: Path<Uuid>,
        body: Json<BanRequest>,
    ) -> Result<AdminOk<BanResult>, ApiError> {
        let actor = auth.user_manager(&state).await?;
        let b = body.0;
        let (user, ended) =
            crate::admin::ban_user(&state, &origin.0, &actor, id.0, b.reason, b.until).await?;
        Ok(AdminOk::Ok(Json(BanResult { user: UserView::new(&user, state.now()), sessions_ended: ended })))
    }

    /// Lift a ban.
    ///
    /// Admins, or a service with `latchkey:users` (not on an admin).
    #[oai(path = "/users/:id/unban", method = "post", operation_id = "unbanUser")]
    async fn unban(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        id: Path<Uuid>,
    ) -> Result<AdminOk<UserView>, ApiError> {
        let actor = auth.user_manager(&state).await?;
        let user = crate::admin::unban_user(&state, &origin.0, &actor, id.0).await?;
        Ok(AdminOk::Ok(Json(UserView::new(&user, state.now()))))
    }

    /// Remove every second factor of a user (a lost phone or security
    /// key), with their recovery codes; every session of the user ends.
    ///
    /// Admins only. Audited as `mfa_factors_reset`. The user then signs in
    /// with the password alone (or, with a role in
    /// `LATCHKEY_MFA_REQUIRED_ROLES`, enrols again first).
    #[oai(path = "/users/:id/mfa", method = "delete", operation_id = "resetUserMfa")]
    async fn reset_mfa(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        id: Path<Uuid>,
    ) -> Result<AdminOk<MfaReset>, ApiError> {
        let admin = auth.admin(&state)?;
        let reach = state.reach(state.now());
        let (removed, ended) =
            crate::mfa::flow::reset(&state.db, reach, &origin.0, &admin.id.to_string(), id.0).await?;
        Ok(AdminOk::Ok(Json(MfaReset { factors_removed: removed, sessions_ended: ended })))
    }

    /// A user's live sessions.
    ///
    /// Admins, or a service with `latchkey:users` (not on an admin).
    #[oai(path = "/users/:id/sessions", method = "get", operation_id = "listUserSessions")]
    async fn sessions(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<AdminOk<Vec<SessionView>>, ApiError> {
        let actor = auth.user_manager(&state).await?;
        let sessions = crate::admin::sessions_of_user(&state, &actor, id.0).await?;
        Ok(AdminOk::Ok(Json(sessions.iter().map(|f| SessionView::new(f, None)).collect())))
    }

    /// End one session of a user.
    ///
    /// Admins, or a service with `latchkey:users` (not on an admin).
    #[oai(path = "/users/:id/sessions/:session_id", method = "delete", operation_id = "endUserSession")]
    async fn end_session(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        id: Path<Uuid>,
        session_id: Path<Uuid>,
    ) -> Result<Deleted, ApiError> {
        let actor = auth.user_manager(&state).await?;
        crate::admin::end_user_session(&state, &origin.0, &actor, id.0, session_id.0).await?;
        Ok(Deleted::NoContent)
    }

    /// End every session matching the criteria, in one statement.
    ///
    /// Admins only (not `latchkey:users`).
    #[oai(path = "/sessions/revoke", method = "post", operation_id = "bulkRevokeSessions")]
    async fn bulk_revoke(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        body: Json<BulkRevocationRequest>,
    ) -> Result<AdminOk<SessionsEnded>, ApiError> {
        let admin = auth.admin(&state)?;
        let b = body.0;
        let ip_prefix = b
            .ip_prefix
            .as_deref()
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| ApiError::validation("ip_prefix must be an IP address or a CIDR block"))
            })
            .transpose()?;
        let criteria = BulkCriteria {
            user_id: b.user_id,
            client_id: b.client_id,
            ip_prefix,
            user_agent_contains: b.user_agent_contains,
            issued_before: b.issued_before,
            issued_after: b.issued_after,
            all: b.all.unwrap_or(false),
        };
        let revoked = crate::admin::bulk_revoke(&state, &origin.0, admin.id, criteria).await?;
        Ok(AdminOk::Ok(Json(SessionsEnded { revoked })))
    }

    /// The audit log, newest first.
    ///
    /// Admins only (not `latchkey:users`).
    #[oai(path = "/audit", method = "get", operation_id = "listAuditEvents")]
    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(validator(custom = "Storable"))] kind: Query<Option<String>>,
        #[oai(validator(custom = "Storable"))] actor_id: Query<Option<String>>,
        /// Whom the event is about: a user id lists that user's events (with
        /// `kind=refresh_context_changed`, their sessions' context changes).
        #[oai(validator(custom = "Storable"))]
        subject_id: Query<Option<String>>,
        #[oai(validator(custom = "Storable"))] client_id: Query<Option<String>>,
        since: Query<Option<DateTime<Utc>>>,
        until: Query<Option<DateTime<Utc>>>,
        /// The `next_cursor` of the previous page.
        before: Query<Option<Uuid>>,
        /// Page size, 1..=500 (default 100).
        limit: Query<Option<u64>>,
    ) -> Result<AdminOk<AuditPage>, ApiError> {
        auth.admin(&state)?;
        let limit = limit.0.unwrap_or(100).clamp(1, 500);
        let filter = AuditFilter {
            kind: kind.0,
            actor_id: actor_id.0,
            subject_id: subject_id.0,
            client_id: client_id.0,
            since: since.0,
            until: until.0,
            before: before.0,
        };
        let rows = audit::list(&state.db, &filter, limit).await?;
        let next_cursor = next_cursor(&rows, limit, |r| r.id);
        let events = rows
            .into_iter()
            .map(|r| AuditEventView {
                id: r.id,
                occurred_at: r.occurred_at,
                kind: r.kind,
                actor_id: r.actor_id,
                subject_id: r.subject_id,
                client_id: r.client_id,
                ip: r.ip,
                user_agent: r.user_agent,
                details: serde_json::from_str(&r.details).unwrap_or_default(),
            })
            .collect();
        Ok(AdminOk::Ok(Json(AuditPage { events, next_cursor })))
    }

    /// Signing keys and their states.
    ///
    /// Admins only (not `latchkey:users`).
    #[oai(path = "/keys", method = "get", operation_id = "listKeys")]
    async fn keys(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
    ) -> Result<AdminOk<Vec<KeyView>>, ApiError> {
        auth.admin(&state)?;
        let policy = KeyPolicy::from_settings(&state.settings);
        let rows = keys::list(&state.db, &policy, state.now()).await?;
        Ok(AdminOk::Ok(Json(rows.into_iter().map(|(meta, status)| KeyView::new(meta, &status)).collect())))
    }

    /// Rotate the signing keys: the next keys sign as soon as that is safe.
    ///
    /// Admins only (not `latchkey:users`).
    #[oai(path = "/keys/rotate", method = "post", operation_id = "rotateKeys")]
    async fn rotate_keys(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
    ) -> Result<AdminOk<Vec<KeyView>>, ApiError> {
        let admin = auth.admin(&state)?;
        let policy = KeyPolicy::from_settings(&state.settings);
        let now = state.now();
        let plans = keys::rotate(&state.db, &policy, &state.master, now).await?;
        audit::keys_created(&state.db, now, &origin.0, admin.id, &plans).await;
        state.keyring.reload(&state.db, now).await?;
        let rows = keys::list(&state.db, &policy, now).await?;
        Ok(AdminOk::Ok(Json(
            rows.into_iter()
                .filter(|(m, _)| plans.iter().any(|p| p.kid == m.kid))
                .map(|(meta, status)| KeyView::new(meta, &status))
                .collect(),
        )))
    }
}

pub struct AdminUsersApi;
