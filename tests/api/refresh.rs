//! Refresh-token families: rotation, the grace window, reuse detection,
//! concurrency, tampering.

use std::time::Duration;

use latchkey::entities::refresh_families;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::db_test;
use crate::helpers::{TestApp, assert_error};

async fn login(app: &TestApp) -> Value {
    app.tokens("henry", "correct horse battery").await
}

async fn setup(backend: crate::helpers::Backend) -> TestApp {
    let app = TestApp::spawn(backend).await;
    app.create_user("henry", "correct horse battery").await;
    app
}

fn rt(v: &Value) -> &str {
    v["refresh_token"].as_str().expect("refresh_token")
}

async fn refreshed(app: &TestApp, token: &str) -> Value {
    let resp = app.refresh(token).await;
    assert_eq!(resp.status(), 200, "refresh should succeed");
    resp.json().await.unwrap()
}

async fn family(app: &TestApp, token: &str) -> refresh_families::Model {
    let decoded = app.state.refresh_codec.decode(token).expect("our token");
    refresh_families::Entity::find_by_id(decoded.family_id).one(&app.state.db).await.unwrap().unwrap()
}

db_test!(async fn refresh_rotates_the_token(backend) {
    let app = setup(backend).await;
    let t0 = login(&app).await;
    let t1 = refreshed(&app, rt(&t0)).await;
    assert_ne!(rt(&t1), rt(&t0));
    assert_ne!(t1["access_token"], t0["access_token"]);
    assert_eq!(app.get_with_token("/auth/me", t1["access_token"].as_str().unwrap()).await.status(), 200);
    let t2 = refreshed(&app, rt(&t1)).await;
    assert_ne!(rt(&t2), rt(&t1));
    let row = family(&app, rt(&t2)).await;
    assert_eq!(row.counter, 2);
    assert!(row.revoked_at.is_none());
    assert_eq!(row.ip.as_deref(), Some("127.0.0.1"));
});

db_test!(async fn a_repeat_inside_the_grace_window_returns_the_same_token_and_revokes_nothing(backend) {
    let app = setup(backend).await;
    let t0 = login(&app).await;
    let t1 = refreshed(&app, rt(&t0)).await;
    app.advance(Duration::from_secs(3)); // grace is 5 s in tests
    let again = refreshed(&app, rt(&t0)).await;
    assert_eq!(rt(&again), rt(&t1), "the same current token comes back");
    let t2 = refreshed(&app, rt(&t1)).await;
    assert_eq!(family(&app, rt(&t2)).await.counter, 2);
});

db_test!(async fn reuse_after_the_grace_window_revokes_the_whole_family(backend) {
    let app = setup(backend).await;
    let t0 = login(&app).await;
    let t1 = refreshed(&app, rt(&t0)).await;
    app.advance(Duration::from_secs(6));

    // The stolen-and-replayed old token...
    let resp = app.refresh(rt(&t0)).await;
    assert_error(resp, 401, "refresh_token_reused").await;
    // ...ends the family: the legitimate child stops working too.
    let resp = app.refresh(rt(&t1)).await;
    assert_error(resp, 401, "invalid_refresh_token").await;
    let row = family(&app, rt(&t1)).await;
    assert_eq!(row.revoked_reason.as_deref(), Some("reuse_detected"));
    // Other sessions of the same user are untouched.
    let other = login(&app).await;
    refreshed(&app, rt(&other)).await;
});

db_test!(async fn a_token_two_rotations_old_is_reuse_even_inside_the_window(backend) {
    let app = setup(backend).await;
    let t0 = login(&app).await;
    let t1 = refreshed(&app, rt(&t0)).await;
    let t2 = refreshed(&app, rt(&t1)).await;
    let resp = app.refresh(rt(&t0)).await;
    assert_error(resp, 401, "refresh_token_reused").await;
    assert_error(app.refresh(rt(&t2)).await, 401, "invalid_refresh_token").await;
});

db_test!(async fn logout_ends_the_family_and_is_idempotent(backend) {
    let app = setup(backend).await;
    let t0 = login(&app).await;
    let t1 = refreshed(&app, rt(&t0)).await;

    let resp = app.post_json("/auth/logout", &json!({"refresh_token": rt(&t1)})).await;
    assert_eq!(resp.status(), 204);
    assert_error(app.refresh(rt(&t1)).await, 401, "invalid_refresh_token").await;
    assert_eq!(family(&app, rt(&t1)).await.revoked_reason.as_deref(), Some("logout"));

    // Again, and with garbage: still 204, nothing revealed.
    assert_eq!(app.post_json("/auth/logout", &json!({"refresh_token": rt(&t1)})).await.status(), 204);
    assert_eq!(app.post_json("/auth/logout", &json!({"refresh_token": "garbage"})).await.status(), 204);
});

db_test!(async fn twenty_concurrent_refreshes_with_one_token_converge_on_one_token(backend) {
    let app = setup(backend).await;
    let t0 = login(&app).await;
    let token = rt(&t0).to_owned();

    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = app.client.clone();
        let url = app.url("/auth/refresh");
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let resp = client.post(url).json(&json!({"refresh_token": token})).send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }

    let winners: std::collections::HashSet<String> = results
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "every caller succeeds: {body}");
            rt(body).to_owned()
        })
        .collect();
    assert_eq!(winners.len(), 1, "all callers received the same refresh token");
    let current = winners.into_iter().next().unwrap();
    let row = family(&app, &current).await;
    assert_eq!(row.counter, 1, "the family rotated exactly once");
    assert!(row.revoked_at.is_none());
    refreshed(&app, &current).await;
});

db_test!(async fn tampered_tokens_are_refused_and_change_nothing(backend) {
    let app = setup(backend).await;
    let a = login(&app).await;
    let b = login(&app).await;
    let a_token = rt(&a).to_owned();
    let before = family(&app, &a_token).await;

    // A flipped bit anywhere.
    let mut raw = latchkey::crypto::b64url_decode(&a_token).unwrap();
    for position in [0, 5, 20, 30, 56] {
        raw[position] ^= 0x01;
        let flipped = latchkey::crypto::b64url(&raw);
        assert_error(app.refresh(&flipped).await, 401, "invalid_refresh_token").await;
        raw[position] ^= 0x01;
    }

    // Family A's id and counter with family B's MAC.
    let b_raw = latchkey::crypto::b64url_decode(rt(&b)).unwrap();
    let mut spliced = raw[..25].to_vec();
    spliced.extend_from_slice(&b_raw[25..]);
    assert_error(app.refresh(&latchkey::crypto::b64url(&spliced)).await, 401, "invalid_refresh_token").await;

    // A correctly authenticated token from a counter the family never reached.
    let future = app.state.refresh_codec.encode(before.id, before.counter + 5);
    assert_error(app.refresh(&future).await, 401, "invalid_refresh_token").await;

    // Unknown family.
    let unknown = app.state.refresh_codec.encode(Uuid::now_v7(), 0);
    assert_error(app.refresh(&unknown).await, 401, "invalid_refresh_token").await;

    // Nothing changed: the genuine token still rotates normally.
    let after = family(&app, &a_token).await;
    assert_eq!(after, before);
    refreshed(&app, &a_token).await;
});

db_test!(async fn idle_and_expired_families_stop_refreshing(backend) {
    let app = setup(backend).await;
    let t0 = login(&app).await;
    // Idle timeout (14 days in tests).
    app.advance(Duration::from_secs(15 * 86_400));
    assert_error(app.refresh(rt(&t0)).await, 401, "invalid_refresh_token").await;

    // Absolute lifetime (30 days): kept busy, still ends.
    let t = login(&app).await;
    let mut current = rt(&t).to_owned();
    for _ in 0..3 {
        app.advance(Duration::from_secs(10 * 86_400));
        let next = app.refresh(&current).await;
        if next.status() != 200 {
            assert_error(next, 401, "invalid_refresh_token").await;
            return;
        }
        current = rt(&next.json::<Value>().await.unwrap()).to_owned();
    }
    panic!("a family outlived its absolute lifetime");
});

db_test!(async fn the_per_user_session_cap_ends_the_oldest_family(backend) {
    let app = TestApp::builder(backend).configure(|s| s.max_sessions_per_user = 2).spawn().await;
    app.create_user("henry", "correct horse battery").await;
    let first = login(&app).await;
    app.advance(Duration::from_secs(1));
    let second = login(&app).await;
    app.advance(Duration::from_secs(1));
    let third = login(&app).await;

    assert_error(app.refresh(rt(&first)).await, 401, "invalid_refresh_token").await;
    assert_eq!(family(&app, rt(&first)).await.revoked_reason.as_deref(), Some("session_limit"));
    refreshed(&app, rt(&second)).await;
    refreshed(&app, rt(&third)).await;
});

/// The scope a client is allowed now, set by the admin API.
async fn set_client_scope(app: &TestApp, admin: &str, client: &crate::oauth_support::Client, scope: &str) {
    let resp = app
        .client
        .patch(app.url(&format!("/admin/clients/{}", client.id)))
        .bearer_auth(admin)
        .json(&json!({"scope": scope}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "patch client scope");
}

async fn password_grant(app: &TestApp, client: &crate::oauth_support::Client, scope: &str) -> Value {
    let resp = crate::oauth_support::token_basic(
        app,
        client,
        &[
            ("grant_type", "password"),
            ("username", "user"),
            ("password", crate::oauth_support::PASSWORD),
            ("scope", scope),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200, "password grant");
    resp.json().await.unwrap()
}

async fn refresh_grant(
    app: &TestApp,
    client: &crate::oauth_support::Client,
    token: &str,
) -> reqwest::Response {
    crate::oauth_support::token_basic(
        app,
        client,
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
    )
    .await
}

db_test!(async fn refresh_drops_a_scope_the_admin_removed_from_the_client(backend) {
    let (app, admin) = crate::oauth_support::spawn_with_admin(backend).await;
    let client = crate::oauth_support::register_client(
        &app,
        &admin,
        json!({
            "client_name": "Tasks Web",
            "redirect_uris": [crate::oauth_support::REDIRECT],
            "grant_types": ["authorization_code", "refresh_token", "password"],
            "scope": "openid profile tasks:read tasks:write",
            "token_endpoint_auth_method": "client_secret_basic",
        }),
    )
    .await;
    let first = password_grant(&app, &client, "openid profile tasks:read tasks:write").await;
    assert_eq!(first["scope"], "openid profile tasks:read tasks:write");

    set_client_scope(&app, &admin, &client, "openid profile tasks:read").await;
    let resp = refresh_grant(&app, &client, rt(&first)).await;
    assert_eq!(resp.status(), 200);
    let next: Value = resp.json().await.unwrap();
    assert_eq!(next["scope"], "openid profile tasks:read");
    let claims = crate::jwt::claims(next["access_token"].as_str().unwrap());
    assert_eq!(claims["scope"], "openid profile tasks:read");

    // Given back by the admin, the scope the user consented to returns.
    set_client_scope(&app, &admin, &client, "openid profile tasks:read tasks:write").await;
    let again: Value = refresh_grant(&app, &client, rt(&next)).await.json().await.unwrap();
    assert_eq!(again["scope"], "openid profile tasks:read tasks:write");
});

db_test!(async fn refresh_ends_the_family_when_the_client_lost_every_granted_scope(backend) {
    let (app, admin) = crate::oauth_support::spawn_with_admin(backend).await;
    let client = crate::oauth_support::confidential(&app, &admin).await;
    let first = password_grant(&app, &client, "tasks:write").await;
    let access = first["access_token"].as_str().unwrap().to_owned();

    set_client_scope(&app, &admin, &client, "openid tasks:read").await;
    let resp = refresh_grant(&app, &client, rt(&first)).await;
    assert_error(resp, 400, "invalid_grant").await;
    // The family is over, and its access token with it.
    assert_eq!(crate::oauth_support::introspect(&app, &client, &access).await["active"], false);
    set_client_scope(&app, &admin, &client, "openid tasks:read tasks:write").await;
    let resp = refresh_grant(&app, &client, rt(&first)).await;
    assert_error(resp, 400, "invalid_grant").await;
});

db_test!(async fn first_party_refresh_keeps_the_admin_scope_of_an_admin(backend) {
    let (app, admin) = crate::oauth_support::spawn_with_admin(backend).await;
    let resp = app
        .post_json(
            "/auth/login",
            &json!({"username": "admin", "password": "admin password 1", "scope": "profile latchkey:admin"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let login: Value = resp.json().await.unwrap();
    let next = refreshed(&app, rt(&login)).await;
    assert_eq!(next["scope"], "latchkey:admin profile");
    let resp = app.client.get(app.url("/admin/clients")).bearer_auth(next["access_token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(admin);
});
