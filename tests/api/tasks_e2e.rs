//! The relying-service kit end to end: latchkey, the tasks API verifying its
//! tokens offline, a service calling it with client credentials, the
//! revocation feed, and the JWKS cache under rotation, kid spraying and
//! outages.

use std::sync::Arc;
use std::time::Duration;

use latchkey::clock::Clock;
use latchkey_verify::{ClientCredentials, Verifier, VerifierConfig};
use poem::listener::{Acceptor, Listener, TcpListener};
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::{TestApp, eventually};
use crate::oauth_support::{self, PASSWORD};

#[path = "../../examples/service_client.rs"]
mod service_client;
#[path = "../../examples/tasks_api.rs"]
pub(crate) mod tasks_api;

/// A verifier for `app` that reads the app's (mock) clock.
fn config(app: &TestApp) -> VerifierConfig {
    let mut config = VerifierConfig::new(app.address.clone(), "latchkey");
    let clock = Arc::clone(&app.clock);
    config.clock = Arc::new(move || clock.now().timestamp());
    config
}

/// Serve the tasks API on a free port; returns its base URL.
async fn serve_tasks(verifier: Verifier) -> String {
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    let app = tasks_api::app(verifier, Arc::new(tasks_api::Store::default()));
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    format!("http://{addr}")
}

async fn token_for(app: &TestApp, user: &str, scope: Option<&str>) -> String {
    let password = if user == "admin" { "admin password 1" } else { PASSWORD };
    let mut body = json!({"username": user, "password": password});
    if let Some(scope) = scope {
        body["scope"] = json!(scope);
    }
    let resp = app.post_json("/auth/login", &body).await;
    let status = resp.status();
    assert_eq!(status, 200, "{:?}", resp.text().await);
    resp.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}

async fn call(method: reqwest::Method, url: String, token: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = reqwest::Client::new().request(method, url).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

db_test!(async fn the_tasks_api_verifies_latchkey_tokens_without_calling_latchkey(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    app.create_user("bob", PASSWORD).await;
    let verifier = Verifier::discover(config(&app)).await.unwrap();
    let tasks = serve_tasks(verifier.clone()).await;
    let alice = token_for(&app, "user", None).await;
    let bob = token_for(&app, "bob", None).await;

    // Create and list your own.
    let resp = call(reqwest::Method::POST, format!("{tasks}/tasks"), &alice, Some(json!({"title": "buy milk"}))).await;
    assert_eq!(resp.status(), 201);
    let task: Value = resp.json().await.unwrap();
    let id = task["id"].as_u64().unwrap();
    let mine: Value = call(reqwest::Method::GET, format!("{tasks}/tasks"), &alice, None).await.json().await.unwrap();
    assert_eq!(mine.as_array().unwrap().len(), 1);

    // Another user's task is refused, for every operation.
    for (method, body) in [
        (reqwest::Method::GET, None),
        (reqwest::Method::PATCH, Some(json!({"done": true}))),
        (reqwest::Method::DELETE, None),
    ] {
        let resp = call(method, format!("{tasks}/tasks/{id}"), &bob, body).await;
        assert_eq!(resp.status(), 404);
    }
    let theirs: Value = call(reqwest::Method::GET, format!("{tasks}/tasks"), &bob, None).await.json().await.unwrap();
    assert!(theirs.as_array().unwrap().is_empty());

    // Scopes are enforced: a read-only token cannot write.
    let read_only = token_for(&app, "user", Some("tasks:read")).await;
    let resp = call(reqwest::Method::POST, format!("{tasks}/tasks"), &read_only, Some(json!({"title": "x"}))).await;
    assert_eq!(resp.status(), 403);
    assert!(resp.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));

    // An admin (role) sees everyone's tasks.
    call(reqwest::Method::POST, format!("{tasks}/tasks"), &bob, Some(json!({"title": "bob's"}))).await;
    let admin_everyday = token_for(&app, "admin", None).await;
    let all: Value = call(reqwest::Method::GET, format!("{tasks}/tasks"), &admin_everyday, None).await.json().await.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);
    // The admin-API token is not for relying services: wrong audience.
    let resp = call(reqwest::Method::GET, format!("{tasks}/tasks"), &admin, None).await;
    assert_eq!(resp.status(), 401);

    // Garbage and missing tokens: 401 with the RFC 6750 challenge.
    let resp = call(reqwest::Method::GET, format!("{tasks}/tasks"), "garbage", None).await;
    assert_eq!(resp.status(), 401);
    assert!(resp.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    assert_eq!(reqwest::get(format!("{tasks}/tasks")).await.unwrap().status(), 401);

    // After the token expires it is refused.
    app.advance(Duration::from_secs(900 + 11));
    assert_eq!(call(reqwest::Method::GET, format!("{tasks}/tasks"), &alice, None).await.status(), 401);

    // All of it with the one JWKS fetch made at discovery.
    assert_eq!(verifier.stats().jwks_fetches, 1);
});

db_test!(async fn a_service_calls_the_tasks_api_with_client_credentials(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::register_client(
        &app,
        &admin,
        json!({"client_name": "reporting", "grant_types": ["client_credentials"], "scope": "tasks:read tasks:write"}),
    )
    .await;
    let verifier = Verifier::discover(config(&app)).await.unwrap();
    let tasks = serve_tasks(verifier).await;
    let seen = service_client::run(&app.address, &client.id, client.secret.as_deref().unwrap(), &tasks, reqwest::Client::new())
        .await
        .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["owner"], client.id.as_str(), "the service acts as itself");
    // One token for both calls.
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(text.contains("latchkey_tokens_issued_total{grant=\"client_credentials\"} 1"), "{text}");
});

db_test!(async fn with_the_revocation_feed_a_banned_user_is_refused_within_seconds(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let feed_client = oauth_support::register_client(
        &app,
        &admin,
        json!({"client_name": "tasks-api", "grant_types": ["client_credentials"], "scope": "revocations:read"}),
    )
    .await;
    let verifier = Verifier::discover(config(&app)).await.unwrap();
    let credentials = ClientCredentials::new(
        app.url("/oauth/token"),
        feed_client.id.clone(),
        feed_client.secret.clone().unwrap(),
        None,
        reqwest::Client::new(),
    );
    let feed = verifier.follow_revocations(credentials);
    let tasks = serve_tasks(verifier).await;
    let alice = token_for(&app, "user", None).await;
    assert_eq!(call(reqwest::Method::GET, format!("{tasks}/tasks"), &alice, None).await.status(), 200);

    let users: Value = app.client.get(app.url("/admin/users?q=user")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    let id = users["users"][0]["id"].as_str().unwrap().to_owned();
    let resp = app.client.post(app.url(&format!("/admin/users/{id}/ban"))).bearer_auth(&admin).json(&json!({})).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    assert!(
        eventually(Duration::from_secs(10), || async {
            call(reqwest::Method::GET, format!("{tasks}/tasks"), &alice, None).await.status() == 401
        })
        .await,
        "the banned user's still-unexpired token is refused"
    );
    assert!(feed.stats().entries >= 1);
});

db_test!(async fn the_jwks_cache_follows_rotation_throttles_kid_spraying_and_survives_outages(backend) {
    let mut app = TestApp::spawn(backend).await;
    app.create_user("user", PASSWORD).await;
    let verifier = Verifier::discover(config(&app)).await.unwrap();
    let jwks_requests = |app: &TestApp| {
        let url = app.url("/metrics");
        let client = app.client.clone();
        async move {
            let text = client.get(url).send().await.unwrap().text().await.unwrap();
            text.lines()
                .filter(|l| l.starts_with("latchkey_http_requests_total{method=\"GET\",route=\"/.well-known/jwks.json\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum::<u64>()
        }
    };

    // Rotation: promote the pre-published key, then a key the verifier has
    // never seen takes over; it verifies without restarting anything. (The
    // admin API rotates with the server's clock, which this test moves.)
    app.create_user_with_roles_admin().await;
    let lead = Duration::from_secs(310);
    for _ in 0..2 {
        let admin = oauth_support::admin_token(&app).await;
        let resp = app.client.post(app.url("/admin/keys/rotate")).bearer_auth(&admin).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let before = app.jwks_kids().await.len();
        app.advance(lead);
        // The server creates the following next key on its next reload.
        assert!(eventually(Duration::from_secs(10), || async { app.jwks_kids().await.len() > before }).await);
    }
    let token = token_for(&app, "user", None).await;
    let kid = crate::jwt::header(&token)["kid"].as_str().unwrap().to_owned();
    assert!(verifier.stats().keys > 0);
    verifier.verify(&token).await.expect("a token from a rotated-in key verifies");
    assert_eq!(verifier.stats().jwks_fetches, 2, "one refetch for the new kid {kid}");

    // Spraying random kids: at most one refetch per interval.
    let before = jwks_requests(&app).await;
    let claims = crate::jwt::claims(&token);
    let attacker = josekit::jws::ES256.generate_key_pair().unwrap();
    let signer = josekit::jws::ES256.signer_from_der(attacker.to_der_private_key()).unwrap();
    for i in 0..50 {
        let mut header = josekit::jws::JwsHeader::new();
        header.set_token_type("at+jwt");
        header.set_key_id(format!("sprayed-{i}"));
        let forged =
            josekit::jwt::encode_with_signer(&josekit::jwt::JwtPayload::from_map(claims.clone()).unwrap(), &header, &signer)
                .unwrap();
        assert_eq!(verifier.verify(&forged).await.unwrap_err(), latchkey_verify::VerifyError::UnknownKey);
    }
    let after = jwks_requests(&app).await;
    assert!(after - before <= 1, "latchkey saw {} JWKS requests for 50 unknown kids", after - before);

    // latchkey down: tokens keep verifying from the cache.
    app.stop().await;
    verifier.verify(&token).await.expect("verifies while latchkey is down");
});
