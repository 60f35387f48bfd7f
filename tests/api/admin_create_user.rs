//! `POST /admin/users`: accounts with an admin-set password or an
//! invitation, and `POST /auth/invitations/accept`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::{TestApp, assert_error};
use crate::oauth_support::{self, PASSWORD};

async fn create(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.client.post(app.url("/admin/users")).bearer_auth(token).json(&body).send().await.unwrap()
}

async fn accept(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.post_json("/auth/invitations/accept", &json!({"token": token, "password": password})).await
}

async fn audit(app: &TestApp, admin: &str, query: &str) -> Vec<Value> {
    let resp = app.get_with_token(&format!("/admin/audit?{query}"), admin).await;
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["events"].as_array().unwrap().clone()
}

async fn me(app: &TestApp, token: &str) -> Value {
    app.get_with_token("/auth/me", token).await.json().await.unwrap()
}

db_test!(async fn admins_create_users_with_a_password_who_sign_in_at_once(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let resp = create(
        &app,
        &admin,
        json!({"username": "Carol", "email": "carol@Example.com", "roles": ["editor"], "password": "carol password 1"}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["user"]["username"], "Carol");
    assert_eq!(body["user"]["email"], "carol@example.com");
    assert_eq!(body["user"]["roles"], json!(["editor"]));
    assert!(body.get("invitation").is_none(), "{body}");

    let tokens = app.tokens("carol", "carol password 1").await;
    assert_eq!(crate::jwt::claims(tokens["access_token"].as_str().unwrap())["roles"], json!(["editor"]));

    // The same name in another case or form is taken.
    let resp = create(&app, &admin, json!({"username": "CAROL", "password": "another password"})).await;
    assert_error(resp, 409, "username_taken").await;
    // Validation as for registration.
    for bad in [
        json!({"username": "c", "password": "long enough 1"}),
        json!({"username": "dan", "password": "short"}),
        json!({"username": "dan", "password": "long enough 1", "roles": ["Admin"]}),
        json!({"username": "dan", "password": "long enough 1", "email": "not-an-email"}),
    ] {
        assert_error(create(&app, &admin, bad).await, 400, "validation_failed").await;
    }
    assert_eq!(app.login("dan", "long enough 1").await.status(), 401, "nothing was created");

    // Audited with the actor.
    let admin_id = me(&app, &admin).await["id"].as_str().unwrap().to_owned();
    let events = audit(&app, &admin, "kind=user_created").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["actor_id"], admin_id.as_str());
    assert_eq!(events[0]["subject_id"], body["user"]["id"]);
    assert_eq!(events[0]["details"]["invited"], false);
    assert_eq!(events[0]["details"]["roles"], json!(["editor"]));
    assert!(!events[0].to_string().contains("carol password 1"));

    // Only admins: an everyday user token is refused.
    let everyday = app.tokens("user", PASSWORD).await["access_token"].as_str().unwrap().to_owned();
    let resp = create(&app, &everyday, json!({"username": "eve", "password": "long enough 1"})).await;
    assert_eq!(resp.status(), 403);
});

db_test!(async fn invited_users_choose_their_password_once(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let resp = create(&app, &admin, json!({"username": "dave", "roles": ["editor"]})).await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    let token = body["invitation"]["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43, "256 random bits");
    let expires: chrono::DateTime<chrono::Utc> = body["invitation"]["expires_at"].as_str().unwrap().parse().unwrap();
    let ttl = expires - app.clock_now();
    assert!(ttl <= chrono::TimeDelta::hours(72) && ttl > chrono::TimeDelta::hours(72) - chrono::TimeDelta::minutes(1));

    // Before accepting, signing in fails exactly like a wrong password.
    assert_error(app.login("dave", "dave password 1").await, 401, "invalid_credentials").await;
    assert_error(app.login("dave", &token).await, 401, "invalid_credentials").await;

    // A password outside the rules leaves the invitation usable.
    assert_error(accept(&app, &token, "short").await, 400, "validation_failed").await;
    let resp = accept(&app, &token, "dave password 1").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["username"], "dave");
    let tokens = app.tokens("dave", "dave password 1").await;
    assert_eq!(crate::jwt::claims(tokens["access_token"].as_str().unwrap())["roles"], json!(["editor"]));

    // Single use.
    assert_error(accept(&app, &token, "other password 2").await, 400, "invalid_invitation").await;
    assert_eq!(app.login("dave", "other password 2").await.status(), 401);
    assert_eq!(app.login("dave", "dave password 1").await.status(), 200);
    // Unknown tokens, and no token at all.
    assert_error(accept(&app, "bm90LWEtdG9rZW4", "other password 2").await, 400, "invalid_invitation").await;
    assert_error(accept(&app, "", "other password 2").await, 400, "invalid_invitation").await;

    let events = audit(&app, &admin, "kind=invitation_accepted").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["subject_id"], body["user"]["id"]);
    let created = audit(&app, &admin, "kind=user_created").await;
    assert_eq!(created[0]["details"]["invited"], true);
    assert!(!created[0].to_string().contains(&token), "the token is never logged");
});

db_test!(async fn expired_or_superseded_invitations_are_refused(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let invite = |name: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            let body: Value = create(app, admin, json!({"username": name})).await.json().await.unwrap();
            (body["user"]["id"].as_str().unwrap().to_owned(), body["invitation"]["token"].as_str().unwrap().to_owned())
        }
    };
    let (_, erin) = invite("erin").await;
    let (fred_id, fred) = invite("fred").await;

    // An admin sets fred's password: his invitation can no longer replace it.
    let resp = app
        .client
        .post(app.url(&format!("/admin/users/{fred_id}/password")))
        .bearer_auth(&admin)
        .json(&json!({"password": "set by admin 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_error(accept(&app, &fred, "fred password 1").await, 400, "invalid_invitation").await;
    assert_eq!(app.login("fred", "set by admin 1").await.status(), 200);

    // 72 hours later erin's invitation has expired.
    app.advance(Duration::from_secs(72 * 3600 + 1));
    assert_error(accept(&app, &erin, "erin password 1").await, 400, "invalid_invitation").await;
    assert_eq!(app.login("erin", "erin password 1").await.status(), 401);

    // The purge job deletes it (fred's was withdrawn already).
    let day = chrono::TimeDelta::days(1);
    let retention = latchkey::purge::Retention { dead_rows: day, audit: day, idle_timeout: day };
    let report = latchkey::purge::run(&app.state.db, app.clock_now(), &retention).await.unwrap();
    assert_eq!(report.invitations, 1);
});
