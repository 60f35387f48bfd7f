//! `/admin/*`: administration, for users with the `admin` role.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::Tag;
use super::error::ApiError;
use super::origin::ClientOrigin;
use super::security::BearerAuth;
use crate::audit::{self, Event, EventKind};
use crate::clients::{self, ClientError, ClientMetadata, OAuthClient, RedirectUri};
use crate::state::AppState;

/// Client registration (RFC 7591 §2 metadata). Unknown fields are refused.
#[derive(Object, Debug)]
#[oai(deny_unknown_fields)]
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
}

/// A partial update: fields left out keep their value.
#[derive(Object, Debug)]
#[oai(deny_unknown_fields)]
pub struct ClientUpdate {
    pub client_name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub scope: Option<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub id_token_signed_response_alg: Option<String>,
    /// A disabled client cannot authenticate or start authorizations.
    pub disabled: Option<bool>,
}

/// A client (RFC 7591 §3.2.1 response).
#[derive(Object, Debug)]
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
            disabled: c.disabled,
            previous_secret_expires_at: c.previous_secret_expires_at().filter(|t| *t > now),
        }
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::InvalidRedirectUri(_) => {
                ApiError::bad_request("invalid_redirect_uri", e.to_string())
            }
            ClientError::InvalidMetadata(_) => {
                ApiError::bad_request("invalid_client_metadata", e.to_string())
            }
            ClientError::NotFound => ApiError::not_found("no such client"),
            ClientError::Internal(i) => ApiError::internal(&i),
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
        client_id: Path<String>,
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
        client_id: Path<String>,
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
        };
        let now = state.now();
        let algs = clients::id_token_algs(state.settings.signing_alg);
        let (client, secret) = clients::update(&state.db, now, &client_id.0, meta, u.disabled, &algs).await?;
        audit::record(
            &state.db,
            now,
            &origin.0,
            Event::new(EventKind::ClientUpdated).actor(admin.id).client(&client.client_id),
        )
        .await;
        Ok(ClientOk::Ok(Json(ClientView::new(&client, secret, now))))
    }

    /// Delete an OAuth client and revoke everything issued to it.
    #[oai(path = "/clients/:client_id", method = "delete", operation_id = "deleteClient")]
    async fn delete_client(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        origin: ClientOrigin,
        client_id: Path<String>,
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
        client_id: Path<String>,
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
