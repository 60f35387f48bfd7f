//! Taking access away completely (issue 10): bulk revocation reaches the
//! access tokens of every ended session, and a password change reaches
//! every other token of the user while the session that made it keeps
//! working tokens.

use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::{TestApp, assert_error};
use crate::oauth_support::{self, Client, PASSWORD};

async fn login_from(app: &TestApp, ip: &str, agent: &str) -> Value {
    let resp = app
        .client
        .post(app.url("/auth/login"))
        .header("x-forwarded-for", ip)
        .header("user-agent", agent)
        .json(&json!({"username": "user", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn access(tokens: &Value) -> &str {
    tokens["access_token"].as_str().unwrap()
}

/// A service that may introspect any token and read the feed.
async fn service(app: &TestApp, admin: &str) -> (Client, String) {
    let client = oauth_support::register_client(
        app,
        admin,
        json!({"client_name": "svc", "grant_types": ["client_credentials"], "scope": "latchkey:introspect revocations:read"}),
    )
    .await;
    let tokens: Value = oauth_support::token_basic(app, &client, &[("grant_type", "client_credentials")])
        .await
        .json()
        .await
        .unwrap();
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    (client, token)
}

async fn active(app: &TestApp, client: &Client, token: &str) -> bool {
    oauth_support::introspect(app, client, token).await["active"].as_bool().unwrap()
}

async fn feed_since(app: &TestApp, reader: &str, cursor: &str) -> Vec<Value> {
    let resp = app
        .client
        .get(app.url(&format!("/revocations?since={cursor}")))
        .bearer_auth(reader)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let page: Value = resp.json().await.unwrap();
    page["entries"].as_array().unwrap().clone()
}

async fn cursor(app: &TestApp, reader: &str) -> String {
    let resp = app.client.get(app.url("/revocations/snapshot")).bearer_auth(reader).send().await.unwrap();
    let page: Value = resp.json().await.unwrap();
    page["cursor"].as_str().unwrap().to_owned()
}

fn sid_of(token: &str) -> String {
    crate::jwt::claims(token)["sid"].as_str().unwrap().to_owned()
}

db_test!(async fn bulk_revocation_denies_the_access_tokens_of_every_ended_session(backend) {
    let app = TestApp::builder(backend)
        .configure(|s| {
            s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            s.admin_username = Some("admin".into());
            s.admin_password = Some(secrecy::SecretString::from("admin password 1".to_owned()));
        })
        .spawn()
        .await;
    let admin = oauth_support::admin_token(&app).await;
    app.create_user("user", PASSWORD).await;
    let (svc, reader) = service(&app, &admin).await;

    let inside = [login_from(&app, "203.0.113.7", "Browser A").await, login_from(&app, "203.0.113.9", "Browser B").await];
    let outside = login_from(&app, "198.51.100.7", "Browser A").await;
    let curl = login_from(&app, "192.0.2.10", "curl/8.1").await;
    for t in inside.iter().chain([&outside, &curl]) {
        assert!(active(&app, &svc, access(t)).await);
    }
    let before = cursor(&app, &reader).await;

    // By address range: both sessions inside end, refresh and access alike.
    let resp = app
        .client
        .post(app.url("/admin/sessions/revoke"))
        .bearer_auth(&admin)
        .json(&json!({"ip_prefix": "203.0.113.0/24"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["revoked"], 2);
    for t in &inside {
        assert!(!active(&app, &svc, access(t)).await, "introspection still accepts an ended session's token");
        assert_error(app.get_with_token("/auth/me", access(t)).await, 401, "invalid_token").await;
        assert_error(app.refresh(t["refresh_token"].as_str().unwrap()).await, 401, "invalid_refresh_token").await;
    }
    // The others are untouched, access token and refresh token.
    assert!(active(&app, &svc, access(&outside)).await);
    assert_eq!(app.get_with_token("/auth/me", access(&outside)).await.status(), 200);
    assert!(active(&app, &svc, access(&curl)).await);

    // Relying services learn of exactly the ended sessions from the feed.
    let entries = feed_since(&app, &reader, &before).await;
    let denied: std::collections::BTreeSet<String> =
        entries.iter().filter(|e| e["kind"] == "sid").map(|e| e["value"].as_str().unwrap().to_owned()).collect();
    let expected: std::collections::BTreeSet<String> = inside.iter().map(|t| sid_of(access(t))).collect();
    assert_eq!(denied, expected, "{entries:?}");
    assert!(entries.iter().all(|e| e["kind"] == "sid"), "no broader entry: {entries:?}");

    // By user agent, the same way.
    let resp = app
        .client
        .post(app.url("/admin/sessions/revoke"))
        .bearer_auth(&admin)
        .json(&json!({"user_agent_contains": "CURL"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["revoked"], 1);
    assert!(!active(&app, &svc, access(&curl)).await);
    assert!(active(&app, &svc, access(&outside)).await);

    // Repeating a revocation ends nothing more and writes nothing more.
    let again = cursor(&app, &reader).await;
    let resp = app
        .client
        .post(app.url("/admin/sessions/revoke"))
        .bearer_auth(&admin)
        .json(&json!({"ip_prefix": "203.0.113.0/24"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["revoked"], 0);
    assert!(feed_since(&app, &reader, &again).await.is_empty());
});

db_test!(async fn a_password_change_denies_every_other_token_and_the_session_keeps_working_tokens(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let (svc, _) = service(&app, &admin).await;

    // Tokens of every kind the user holds: another first-party session, a
    // client's token from a refresh family, and one without a family (an
    // authorization-code grant to a client that may not refresh).
    let other_session = app.tokens("user", PASSWORD).await;
    let password_grant: Value = oauth_support::token_basic(
        &app,
        &client,
        &[("grant_type", "password"), ("username", "user"), ("password", PASSWORD)],
    )
    .await
    .json()
    .await
    .unwrap();
    let no_refresh = oauth_support::register_client(
        &app,
        &admin,
        json!({"client_name": "no-refresh", "grant_types": ["password"], "scope": "tasks:read", "token_endpoint_auth_method": "client_secret_basic"}),
    )
    .await;
    let familyless: Value = oauth_support::token_basic(
        &app,
        &no_refresh,
        &[("grant_type", "password"), ("username", "user"), ("password", PASSWORD)],
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(familyless.get("refresh_token").is_none(), "{familyless}");
    assert!(crate::jwt::claims(access(&familyless)).get("sid").is_none());
    let this = app.tokens("user", PASSWORD).await;
    for t in [&other_session, &password_grant, &familyless, &this] {
        assert!(active(&app, &svc, access(t)).await);
    }

    let change = json!({"current_password": PASSWORD, "new_password": "a brand new password"});
    let resp = app.client.post(app.url("/auth/password")).bearer_auth(access(&this)).json(&change).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let changed: Value = resp.json().await.unwrap();
    assert_eq!(changed["sessions_ended"], 2, "{changed}");
    assert_eq!(changed["token_type"], "Bearer");
    let fresh = changed["access_token"].as_str().unwrap();

    // The returned token works at once, for the same session.
    assert_eq!(app.get_with_token("/auth/me", fresh).await.status(), 200);
    assert!(active(&app, &svc, fresh).await);
    assert_eq!(sid_of(fresh), sid_of(access(&this)));
    // Every older token is refused, the familyless one and the one that
    // asked included.
    for t in [&other_session, &password_grant, &familyless, &this] {
        assert!(!active(&app, &svc, access(t)).await, "{}", access(t));
    }
    assert_error(app.get_with_token("/auth/me", access(&this)).await, 401, "invalid_token").await;
    // The other sessions cannot refresh; this one can, and its new tokens work.
    assert_error(app.refresh(other_session["refresh_token"].as_str().unwrap()).await, 401, "invalid_refresh_token").await;
    let resp = oauth_support::token_basic(
        &app,
        &client,
        &[("grant_type", "refresh_token"), ("refresh_token", password_grant["refresh_token"].as_str().unwrap())],
    )
    .await;
    assert_error(resp, 400, "invalid_grant").await;
    let resp = app.refresh(this["refresh_token"].as_str().unwrap()).await;
    assert_eq!(resp.status(), 200);
    let refreshed: Value = resp.json().await.unwrap();
    assert_eq!(app.get_with_token("/auth/me", access(&refreshed)).await.status(), 200);
    // And a new sign-in with the new password works at once too.
    let signed_in = app.tokens("user", "a brand new password").await;
    assert_eq!(app.get_with_token("/auth/me", access(&signed_in)).await.status(), 200);
});
