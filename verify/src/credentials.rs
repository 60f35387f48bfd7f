//! Client credentials (RFC 6749 §4.4) with a cached token: how a backend
//! service authenticates to latchkey and to other services.

use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Clone, Debug, thiserror::Error)]
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

/// After a failure, callers get the same error until `until` instead of
/// each sending its own request to an issuer that is down or refusing.
struct Failed {
    error: CredentialsError,
    until: Instant,
}

/// How long a failure is remembered, unless the issuer's `Retry-After` says more.
const FAILURE_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A client-credentials token source: the token is reused until shortly
/// before it expires, concurrent callers share one request, and a failure
/// is answered from memory for a second (or the issuer's `Retry-After`).
pub struct ClientCredentials {
    token_url: String,
    client_id: String,
    client_secret: String,
    scope: Option<String>,
    http: reqwest::Client,
    cached: Mutex<State>,
}

#[derive(Default)]
struct State {
    token: Option<Cached>,
    failed: Option<Failed>,
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
            cached: Mutex::new(State::default()),
        }
    }

    /// A valid access token, fetched only when the cached one is about to expire.
    pub async fn token(&self) -> Result<String, CredentialsError> {
        let mut state = self.cached.lock().await;
        let now = Instant::now();
        if let Some(c) = state.token.as_ref().filter(|c| now < c.refresh_at) {
            return Ok(c.token.clone());
        }
        if let Some(f) = state.failed.as_ref().filter(|f| now < f.until) {
            return Err(f.error.clone());
        }
        match self.fetch().await {
            Ok(cached) => {
                let token = cached.token.clone();
                *state = State { token: Some(cached), failed: None };
                Ok(token)
            }
            Err((error, retry_after)) => {
                let backoff = retry_after.unwrap_or(FAILURE_BACKOFF).clamp(FAILURE_BACKOFF, MAX_BACKOFF);
                state.failed = Some(Failed { error: error.clone(), until: Instant::now() + backoff });
                Err(error)
            }
        }
    }

    async fn fetch(&self) -> Result<Cached, (CredentialsError, Option<Duration>)> {
        let http = |e: reqwest::Error| (CredentialsError::Http(e.to_string()), None);
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
            .map_err(http)?;
        if !response.status().is_success() {
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .map(Duration::from_secs);
            let error = match response.json::<ErrorResponse>().await {
                Ok(e) => CredentialsError::Refused { error: e.error, description: e.error_description },
                Err(_) => CredentialsError::Http(format!("the token endpoint answered {status}")),
            };
            return Err((error, retry_after));
        }
        let token: TokenResponse = response.json().await.map_err(http)?;
        // Renew at 80% of the lifetime, and at least 10 s early.
        let lifetime = Duration::from_secs(token.expires_in);
        let margin = (lifetime / 5).max(Duration::from_secs(10)).min(lifetime);
        Ok(Cached { token: token.access_token, refresh_at: Instant::now() + (lifetime - margin) })
    }

    /// Forget the cached token (after a 401 from a service, say).
    pub async fn invalidate(&self) {
        self.cached.lock().await.token = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A token endpoint that refuses every request, counting them.
    async fn refusing_endpoint(extra_header: &'static str) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/oauth/token", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let mut buf = vec![0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let body = r#"{"error":"invalid_client","error_description":"no"}"#;
                let response = format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n{extra_header}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        (url, hits)
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_remembered_instead_of_retried_by_every_caller() {
        let (url, hits) = refusing_endpoint("").await;
        let credentials = ClientCredentials::new(url, "svc", "wrong", None, reqwest::Client::new());
        for _ in 0..5 {
            let err = credentials.token().await.unwrap_err();
            assert!(
                matches!(err, CredentialsError::Refused { ref error, .. } if error == "invalid_client"),
                "{err}"
            );
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1, "one request for five callers");
        tokio::time::advance(FAILURE_BACKOFF).await;
        credentials.token().await.unwrap_err();
        assert_eq!(hits.load(Ordering::SeqCst), 2, "asked again once the back-off ended");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_lengthens_the_back_off() {
        let (url, hits) = refusing_endpoint("retry-after: 30\r\n").await;
        let credentials = ClientCredentials::new(url, "svc", "wrong", None, reqwest::Client::new());
        credentials.token().await.unwrap_err();
        tokio::time::advance(Duration::from_secs(29)).await;
        credentials.token().await.unwrap_err();
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        credentials.token().await.unwrap_err();
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }
}
