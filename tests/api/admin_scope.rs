//! The `latchkey:users` scope: a service client manages users over the
//! admin API, never admins, with tokens no relying service accepts.

use std::sync::Arc;

use latchkey::clock::Clock;
use latchkey_verify::{Verifier, VerifierConfig};
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::{TestApp, assert_error};
use crate::oauth_support::{self, Client, PASSWORD};

async fn service(app: &TestApp, admin: &str, scope: &str) -> Client {
    oauth_support::register_client(
        app,
        admin,
        json!({"client_name": "auth-service", "grant_types": ["client_credentials"], "scope": scope}),
    )
    .await
}

async fn token(app: &TestApp, client: &Client, scope: Option<&str>) -> Value {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let resp = oauth_support::token_basic(app, client, &form).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn users_token(app: &TestApp, client: &Client) -> String {
    token(app, client, Some("latchkey:users")).await["access_token"].as_str().unwrap().to_owned()
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

async fn id_of(app: &TestApp, token: &str, name: &str) -> String {
    let page: Value =
        app.get_with_token(&format!("/admin/users?q={name}"), token).await.json().await.unwrap();
    page["users"].as_array().unwrap().iter().find(|u| u["username"] == name).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

db_test!(async fn a_users_service_manages_users_but_never_admins(backend) {
    use reqwest::Method;
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = service(&app, &admin, "latchkey:users").await;
    let svc = users_token(&app, &client).await;

    // It creates users, with a password or an invitation, and reads them.
    let resp = send(&app, Method::POST, "/admin/users", &svc, Some(json!({"username": "made", "roles": ["editor"], "password": "made password 1"}))).await;
    assert_eq!(resp.status(), 201);
    let made: Value = resp.json().await.unwrap();
    let made_id = made["user"]["id"].as_str().unwrap().to_owned();
    assert_eq!(app.login("made", "made password 1").await.status(), 200);
    let resp = send(&app, Method::POST, "/admin/users", &svc, Some(json!({"username": "invited"}))).await;
    assert_eq!(resp.status(), 201);
    assert!(resp.json::<Value>().await.unwrap()["invitation"]["token"].is_string());
    let user_id = id_of(&app, &svc, "user").await;
    assert_eq!(send(&app, Method::GET, &format!("/admin/users/{user_id}"), &svc, None).await.status(), 200);

    // It bans, unbans, changes, resets, lists sessions of and deletes users.
    let resp = send(&app, Method::POST, &format!("/admin/users/{user_id}/ban"), &svc, Some(json!({"reason": "spam"}))).await;
    assert_eq!(resp.status(), 200);
    assert_error(app.login("user", PASSWORD).await, 403, "account_banned").await;
    assert_eq!(send(&app, Method::POST, &format!("/admin/users/{user_id}/unban"), &svc, None).await.status(), 200);
    assert_eq!(app.login("user", PASSWORD).await.status(), 200);
    let resp = send(&app, Method::PATCH, &format!("/admin/users/{user_id}"), &svc, Some(json!({"roles": ["editor"]}))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(send(&app, Method::GET, &format!("/admin/users/{user_id}/sessions"), &svc, None).await.status(), 200);
    let resp = send(&app, Method::POST, &format!("/admin/users/{made_id}/password"), &svc, Some(json!({"password": "reset password 1"}))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(send(&app, Method::DELETE, &format!("/admin/users/{made_id}"), &svc, None).await.status(), 204);

    // It never grants the admin role...
    let resp = send(&app, Method::POST, "/admin/users", &svc, Some(json!({"username": "boss", "roles": ["admin"], "password": "boss password 1"}))).await;
    assert_error(resp, 403, "role_not_grantable").await;
    assert_eq!(app.login("boss", "boss password 1").await.status(), 401, "not created");
    let resp = send(&app, Method::PATCH, &format!("/admin/users/{user_id}"), &svc, Some(json!({"roles": ["editor", "admin"]}))).await;
    assert_error(resp, 403, "role_not_grantable").await;

    // ...and never touches an admin.
    let admin_id = id_of(&app, &svc, "admin").await;
    let base = format!("/admin/users/{admin_id}");
    for (method, path, body) in [
        (Method::PATCH, base.clone(), Some(json!({"roles": []}))),
        (Method::PATCH, base.clone(), Some(json!({"disabled": true}))),
        (Method::PATCH, base.clone(), Some(json!({"email": "x@example.com"}))),
        (Method::POST, format!("{base}/ban"), Some(json!({}))),
        (Method::POST, format!("{base}/unban"), None),
        (Method::POST, format!("{base}/password"), Some(json!({"password": "taken over 1"}))),
        (Method::GET, format!("{base}/sessions"), None),
        (Method::DELETE, format!("{base}/sessions/{admin_id}"), None),
        (Method::DELETE, base.clone(), None),
    ] {
        let resp = send(&app, method, &path, &svc, body).await;
        assert_error(resp, 403, "target_is_admin").await;
    }
    let admin_now: Value = app.get_with_token(&base, &admin).await.json().await.unwrap();
    assert_eq!(admin_now["roles"], json!(["admin"]));
    assert_eq!(app.login("admin", "admin password 1").await.status(), 200);

    // Everything else in /admin is for admins only.
    let one_client = format!("/admin/clients/{}", client.id);
    for (method, path) in [
        (Method::GET, "/admin/clients"),
        (Method::GET, one_client.as_str()),
        (Method::GET, "/admin/audit"),
        (Method::GET, "/admin/keys"),
        (Method::POST, "/admin/keys/rotate"),
    ] {
        assert_error(send(&app, method, path, &svc, None).await, 403, "forbidden").await;
    }
    let resp = send(&app, Method::POST, "/admin/sessions/revoke", &svc, Some(json!({"all": true}))).await;
    assert_error(resp, 403, "forbidden").await;
    let resp = send(&app, Method::PATCH, &format!("/admin/clients/{}", client.id), &svc, Some(json!({"scope": "latchkey:users latchkey:introspect"}))).await;
    assert_error(resp, 403, "forbidden").await;
    // Nor is it a user: account endpoints refuse it.
    assert_error(app.get_with_token("/auth/me", &svc).await, 403, "forbidden").await;

    // The audit log names the service.
    let events: Value = app.get_with_token("/admin/audit?kind=user_created", &admin).await.json().await.unwrap();
    let event = &events["events"].as_array().unwrap()[0];
    assert_eq!(event["actor_id"], client.id.as_str());
    assert_eq!(event["client_id"], client.id.as_str());
    assert_eq!(event["details"]["actor_type"], "service");
    let events: Value = app.get_with_token(&format!("/admin/audit?kind=user_banned&subject_id={user_id}"), &admin).await.json().await.unwrap();
    assert_eq!(events["events"][0]["actor_id"], client.id.as_str());
});

db_test!(async fn users_tokens_are_for_latchkey_alone_and_asked_for_explicitly(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = service(&app, &admin, "tasks:read latchkey:users").await;

    // Without asking, a service's token is an everyday one: for relying
    // services, not for user management.
    let everyday = token(&app, &client, None).await;
    assert_eq!(everyday["scope"], "tasks:read");
    let everyday = everyday["access_token"].as_str().unwrap().to_owned();
    assert_eq!(crate::jwt::claims(&everyday)["aud"], "latchkey");
    assert_error(app.get_with_token("/admin/users", &everyday).await, 403, "insufficient_scope").await;

    // Asked for, it has the issuer as audience and no refresh token.
    let response = token(&app, &client, Some("latchkey:users")).await;
    assert!(response.get("refresh_token").is_none());
    let svc = response["access_token"].as_str().unwrap().to_owned();
    let claims = crate::jwt::claims(&svc);
    assert_eq!(claims["aud"], app.state.issuer());
    assert_eq!(claims["sub"], client.id.as_str());
    assert_eq!(app.get_with_token("/admin/users", &svc).await.status(), 200);

    // A relying service (the verification kit, audience "latchkey") refuses
    // it and accepts the everyday token.
    let mut config = VerifierConfig::new(app.address.clone(), "latchkey");
    let clock = Arc::clone(&app.clock);
    config.clock = Arc::new(move || clock.now().timestamp());
    let verifier = Verifier::discover(config).await.unwrap();
    assert!(verifier.verify(&everyday).await.is_ok());
    assert!(verifier.verify(&svc).await.is_err(), "wrong audience");

    // Taking the scope away (or disabling the client) stops its tokens at once.
    let resp = app
        .client
        .patch(app.url(&format!("/admin/clients/{}", client.id)))
        .bearer_auth(&admin)
        .json(&json!({"scope": "tasks:read"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_error(app.get_with_token("/admin/users", &svc).await, 403, "insufficient_scope").await;
    let resp = oauth_support::token_basic(&app, &client, &[("grant_type", "client_credentials"), ("scope", "latchkey:users")]).await;
    assert_error(resp, 400, "invalid_scope").await;
});

db_test!(async fn no_client_ever_gets_the_admin_scope_or_user_tokens_with_the_users_scope(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let register = |body: Value| {
        let req = app.client.post(app.url("/admin/clients")).bearer_auth(&admin).json(&body);
        async move { req.send().await.unwrap() }
    };
    let resp = register(json!({"client_name": "x", "grant_types": ["client_credentials"], "scope": "latchkey:admin"})).await;
    assert_error(resp, 400, "invalid_client_metadata").await;
    // latchkey:users only for a confidential client_credentials-only client.
    let resp = register(json!({"client_name": "x", "grant_types": ["authorization_code"], "redirect_uris": [oauth_support::REDIRECT], "scope": "openid latchkey:users"})).await;
    assert_error(resp, 400, "invalid_client_metadata").await;
    let resp = register(json!({"client_name": "x", "grant_types": ["client_credentials", "password"], "scope": "latchkey:users"})).await;
    assert_error(resp, 400, "invalid_client_metadata").await;
    let svc = service(&app, &admin, "latchkey:users").await;
    let resp = app
        .client
        .patch(app.url(&format!("/admin/clients/{}", svc.id)))
        .bearer_auth(&admin)
        .json(&json!({"grant_types": ["client_credentials", "password"]}))
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, "invalid_client_metadata").await;

    // Asking for the admin scope at the token endpoint is refused.
    let resp = oauth_support::token_basic(&app, &svc, &[("grant_type", "client_credentials"), ("scope", "latchkey:admin")]).await;
    assert_error(resp, 400, "invalid_scope").await;
    let resp = oauth_support::token_basic(&app, &svc, &[("grant_type", "client_credentials"), ("scope", "latchkey:users latchkey:admin")]).await;
    assert_error(resp, 400, "invalid_scope").await;

    // A client without the scope: its token is refused, and it cannot ask.
    let other = service(&app, &admin, "tasks:read").await;
    let t = token(&app, &other, None).await["access_token"].as_str().unwrap().to_owned();
    assert_error(app.get_with_token("/admin/users", &t).await, 403, "insufficient_scope").await;
    let resp = oauth_support::token_basic(&app, &other, &[("grant_type", "client_credentials"), ("scope", "latchkey:users")]).await;
    assert_error(resp, 400, "invalid_scope").await;

    // A user's token from an OAuth client does not manage users either.
    let web = oauth_support::confidential(&app, &admin).await;
    let resp = oauth_support::token_basic(&app, &web, &[("grant_type", "password"), ("username", "user"), ("password", PASSWORD)]).await;
    let user_token = resp.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.get_with_token("/admin/users", &user_token).await.status(), 403);
});
