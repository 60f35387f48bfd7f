//! Client credentials (RFC 6749 §4.4) with a cached token: how a backend
//! service authenticates to latchkey and to other services.

use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot reach the token endpoint: {0}")]
    Http(String),
    #[error("the token endpoint refused: {error}: {description}")]
    Refused { error: String, description: String },
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
    #[serde(default)]
    error_description: String,
}

struct Cached {
    token: String,
    refresh_at: Instant,
}

/// A client-credentials token source: the token is reused until shortly
/// before it expires, and concurrent callers share one request.
pub struct ClientCredentials {
    token_url: String,
    client_id: String,
    client_secret: String,
    scope: Option<String>,
    http: reqwest::Client,
    cached: Mutex<Option<Cached>>,
}

impl ClientCredentials {
    /// `token_url` is the issuer's `token_endpoint` (`<issuer>/oauth/token`).
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        scope: Option<&str>,
        http: reqwest::Client,
    ) -> Self {
        ClientCredentials {
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scope: scope.map(str::to_owned),
            http,
            cached: Mutex::new(None),
        }
    }

    /// A valid access token, fetched only when the cached one is about to expire.
    pub async fn token(&self) -> Result<String, CredentialsError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let response = self
            .http
            .post(&self.token_url)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&form)
            .send()
            .await
            .map_err(|e| CredentialsError::Http(e.to_string()))?;
        if !response.status().is_success() {
            let error =
                response.json::<ErrorResponse>().await.map_err(|e| CredentialsError::Http(e.to_string()))?;
            return Err(CredentialsError::Refused {
                error: error.error,
                description: error.error_description,
            });
        }
        let token: TokenResponse =
            response.json().await.map_err(|e| CredentialsError::Http(e.to_string()))?;
        // Renew at 80% of the lifetime, and at least 10 s early.
        let lifetime = Duration::from_secs(token.expires_in);
        let margin = (lifetime / 5).max(Duration::from_secs(10)).min(lifetime);
        *cached = Some(Cached {
            token: token.access_token.clone(),
            refresh_at: Instant::now() + (lifetime - margin),
        });
        Ok(token.access_token)
    }

    /// Forget the cached token (after a 401 from a service, say).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}
