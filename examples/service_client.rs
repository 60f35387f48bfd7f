//! service_client: a backend service calling the tasks API as itself.
//!
//! Instead of a shared API key, the service is an OAuth client of latchkey:
//! it gets an access token with client credentials (RFC 6749 §4.4), reuses
//! it until shortly before it expires, and sends it to the tasks API, which
//! verifies it offline like any other latchkey token (`sub` = the client).
//!
//! ```text
//! cargo run -- clients create --name reporting --grant-type client_credentials --scope "tasks:read tasks:write"
//! SERVICE_CLIENT_ID=… SERVICE_CLIENT_SECRET=… cargo run --example service_client
//! ```
//!
//! `LATCHKEY_ISSUER` (default `http://127.0.0.1:8080`), `TASKS_URL`
//! (`http://127.0.0.1:8081`).

use latchkey_verify::ClientCredentials;
use serde_json::{Value, json};

/// Discover the token endpoint, create a task and list the service's tasks.
/// Returns the tasks the service sees.
pub async fn run(
    issuer: &str,
    client_id: &str,
    client_secret: &str,
    tasks_url: &str,
    http: reqwest::Client,
) -> Result<Vec<Value>, Box<dyn std::error::Error + Send + Sync>> {
    let discovery: Value = http
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token_endpoint =
        discovery.get("token_endpoint").and_then(Value::as_str).ok_or("no token_endpoint")?;
    let credentials = ClientCredentials::new(
        token_endpoint,
        client_id,
        client_secret,
        Some("tasks:read tasks:write"),
        http.clone(),
    );

    // Both calls share one token: the second comes from the cache.
    let token = credentials.token().await?;
    http.post(format!("{tasks_url}/tasks"))
        .bearer_auth(&token)
        .json(&json!({"title": "nightly report"}))
        .send()
        .await?
        .error_for_status()?;
    let token = credentials.token().await?;
    let tasks: Vec<Value> = http
        .get(format!("{tasks_url}/tasks"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(tasks)
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let id = std::env::var("SERVICE_CLIENT_ID").map_err(|_| "set SERVICE_CLIENT_ID")?;
    let secret = std::env::var("SERVICE_CLIENT_SECRET").map_err(|_| "set SERVICE_CLIENT_SECRET")?;
    let tasks = run(
        &env("LATCHKEY_ISSUER", "http://127.0.0.1:8080"),
        &id,
        &secret,
        &env("TASKS_URL", "http://127.0.0.1:8081"),
        reqwest::Client::new(),
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&tasks)?);
    Ok(())
}
