//! Admin users API, sessions, bans, bulk revocation.

use std::time::Duration;

use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::{TestApp, assert_error};
use crate::oauth_support::{self, PASSWORD};

async fn admin_get(app: &TestApp, admin: &str, path: &str) -> reqwest::Response {
    app.client.get(app.url(path)).bearer_auth(admin).send().await.unwrap()
}

async fn admin_post(app: &TestApp, admin: &str, path: &str, body: Value) -> reqwest::Response {
    app.client.post(app.url(path)).bearer_auth(admin).json(&body).send().await.unwrap()
}

async fn user_id(app: &TestApp, admin: &str, name: &str) -> String {
    let page: Value = admin_get(app, admin, &format!("/admin/users?q={name}")).await.json().await.unwrap();
    page["users"].as_array().unwrap().iter().find(|u| u["username"] == name).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

db_test!(async fn users_are_listed_with_cursor_pagination_and_search(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    for i in 0..5 {
        app.post_json("/auth/register", &json!({"username": format!("member{i}"), "password": PASSWORD, "email": format!("m{i}@example.com")})).await;
    }
    // admin + user + 5 members, two per page.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/admin/users?limit=2&after={a}"),
            None => "/admin/users?limit=2".into(),
        };
        let page: Value = admin_get(&app, &admin, &path).await.json().await.unwrap();
        for u in page["users"].as_array().unwrap() {
            seen.push(u["username"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => after = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 7, "no repeats");

    // Search: case- and form-insensitive usernames, emails.
    let page: Value = admin_get(&app, &admin, "/admin/users?q=MEMBER3").await.json().await.unwrap();
    assert_eq!(page["users"].as_array().unwrap().len(), 1);
    let page: Value = admin_get(&app, &admin, "/admin/users?q=m4%40EXAMPLE").await.json().await.unwrap();
    assert_eq!(page["users"][0]["username"], "member4");
    // LIKE wildcards are literal.
    let page: Value = admin_get(&app, &admin, "/admin/users?q=%25").await.json().await.unwrap();
    assert_eq!(page["users"].as_array().unwrap().len(), 0);
});

db_test!(async fn admins_update_users_but_never_their_own_roles(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let id = user_id(&app, &admin, "user").await;
    let admin_id = user_id(&app, &admin, "admin").await;
    let patch = |target: &str, body: Value| {
        let url = app.url(&format!("/admin/users/{target}"));
        let req = app.client.patch(url).bearer_auth(&admin).json(&body);
        async move { req.send().await.unwrap() }
    };

    let resp = patch(&id, json!({"roles": ["editor"], "email": "u@example.com"})).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["roles"], json!(["editor"]));
    assert_eq!(body["email"], "u@example.com");
    let resp = patch(&id, json!({"email": null})).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["email"], Value::Null);
    // New tokens carry the new roles.
    let claims = crate::jwt::claims(app.tokens("user", PASSWORD).await["access_token"].as_str().unwrap());
    assert_eq!(claims["roles"], json!(["editor"]));
    // A role change ends the sessions that carry the old roles.
    let before = app.tokens("user", PASSWORD).await;
    assert_eq!(patch(&id, json!({"roles": ["viewer"]})).await.status(), 200);
    assert_error(app.refresh(before["refresh_token"].as_str().unwrap()).await, 401, "invalid_refresh_token").await;
    assert_error(app.get_with_token("/auth/me", before["access_token"].as_str().unwrap()).await, 401, "invalid_token").await;
    // An unchanged role list ends nothing.
    app.advance(std::time::Duration::from_secs(6));
    let after = app.tokens("user", PASSWORD).await;
    assert_eq!(patch(&id, json!({"roles": ["viewer"]})).await.status(), 200);
    assert_eq!(app.refresh(after["refresh_token"].as_str().unwrap()).await.status(), 200);

    assert_error(patch(&admin_id, json!({"roles": []})).await, 403, "self_action").await;
    assert_error(patch(&admin_id, json!({"disabled": true})).await, 403, "self_action").await;
    assert_error(patch(&id, json!({"roles": ["Not A Role"]})).await, 400, "validation_failed").await;
    assert_error(patch(&id, json!({"password_hash": "x"})).await, 400, "invalid_request").await;
    assert_error(patch(&uuid::Uuid::now_v7().to_string(), json!({"disabled": true})).await, 404, "not_found").await;

    // Disabling ends sessions and blocks sign-in.
    let tokens = app.tokens("user", PASSWORD).await;
    assert_eq!(patch(&id, json!({"disabled": true})).await.status(), 200);
    assert_error(app.login("user", PASSWORD).await, 403, "account_disabled").await;
    assert_error(app.refresh(tokens["refresh_token"].as_str().unwrap()).await, 401, "invalid_refresh_token").await;
    assert_error(app.get_with_token("/auth/me", tokens["access_token"].as_str().unwrap()).await, 401, "invalid_token").await;
});

db_test!(async fn a_ban_takes_effect_immediately_and_unban_restores_login(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let id = user_id(&app, &admin, "user").await;
    let tokens: Value = oauth_support::token_basic(
        &app,
        &client,
        &[("grant_type", "password"), ("username", "user"), ("password", PASSWORD)],
    )
    .await
    .json()
    .await
    .unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(oauth_support::introspect(&app, &client, access).await["active"], true);
    let snapshot_before: Value = admin_get(&app, &admin, "/revocations/snapshot").await.json().await.unwrap();

    let resp = admin_post(&app, &admin, &format!("/admin/users/{id}/ban"), json!({"reason": "spam"})).await;
    assert_eq!(resp.status(), 200);
    let ban: Value = resp.json().await.unwrap();
    assert_eq!(ban["user"]["banned"], true);
    assert_eq!(ban["sessions_ended"], 1);

    // Refresh fails, introspection says inactive, the feed shows it, login is refused.
    let resp = oauth_support::token_basic(&app, &client, &[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())]).await;
    assert_error(resp, 400, "invalid_grant").await;
    assert_eq!(oauth_support::introspect(&app, &client, access).await, json!({"active": false}));
    let feed: Value = admin_get(&app, &admin, &format!("/revocations?since={}", snapshot_before["cursor"].as_str().unwrap())).await.json().await.unwrap();
    assert!(
        feed["entries"].as_array().unwrap().iter().any(|e| e["kind"] == "subject" && e["value"] == id.as_str()),
        "{feed}"
    );
    let refused = app.login("user", PASSWORD).await;
    let body = assert_error(refused, 403, "account_banned").await;
    assert!(body.error_description.contains("banned"));

    // Unban: login works again, and tokens issued after the entry's cut-off
    // (the ban plus a few seconds' margin for clock skew) are not caught by it.
    let resp = admin_post(&app, &admin, &format!("/admin/users/{id}/unban"), json!({})).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["banned"], false);
    app.advance(Duration::from_secs(6));
    let fresh = app.tokens("user", PASSWORD).await;
    assert_eq!(app.get_with_token("/auth/me", fresh["access_token"].as_str().unwrap()).await.status(), 200);
});

db_test!(async fn a_timed_ban_lapses_by_itself(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let id = user_id(&app, &admin, "user").await;
    let until = (app.clock_now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let resp = admin_post(&app, &admin, &format!("/admin/users/{id}/ban"), json!({"until": until})).await;
    assert_eq!(resp.status(), 200);
    assert_error(app.login("user", PASSWORD).await, 403, "account_banned").await;
    app.advance(Duration::from_secs(3601));
    app.tokens("user", PASSWORD).await;
    // A ban that has already ended is refused (with a fresh admin token).
    let admin = oauth_support::admin_token(&app).await;
    let past = (app.clock_now() - chrono::TimeDelta::hours(1)).to_rfc3339();
    assert_error(admin_post(&app, &admin, &format!("/admin/users/{id}/ban"), json!({"until": past})).await, 400, "validation_failed").await;
});

db_test!(async fn users_see_and_end_their_own_sessions(backend) {
    let (app, _) = oauth_support::spawn_with_admin(backend).await;
    let phone = app.client.post(app.url("/auth/login")).header("user-agent", "Phone/1.0").json(&json!({"username": "user", "password": PASSWORD})).send().await.unwrap().json::<Value>().await.unwrap();
    let laptop = app.tokens("user", PASSWORD).await;
    let token = laptop["access_token"].as_str().unwrap();
    let sessions: Value = app.get_with_token("/auth/sessions", token).await.json().await.unwrap();
    let list = sessions.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    let phone_session = list.iter().find(|s| s["user_agent"] == "Phone/1.0").unwrap();
    assert_eq!(phone_session["ip"], "127.0.0.1");
    assert_eq!(phone_session["client_id"], "latchkey");

    let url = app.url(&format!("/auth/sessions/{}", phone_session["id"].as_str().unwrap()));
    assert_eq!(app.client.delete(&url).bearer_auth(token).send().await.unwrap().status(), 204);
    assert_error(app.refresh(phone["refresh_token"].as_str().unwrap()).await, 401, "invalid_refresh_token").await;
    assert_error(app.get_with_token("/auth/me", phone["access_token"].as_str().unwrap()).await, 401, "invalid_token").await;
    assert_error(app.client.delete(&url).bearer_auth(token).send().await.unwrap(), 404, "not_found").await;

    // Another user's session id is not found, not revealed.
    app.create_user("other", PASSWORD).await;
    let other = app.tokens("other", PASSWORD).await;
    let other_sessions: Value = app.get_with_token("/auth/sessions", other["access_token"].as_str().unwrap()).await.json().await.unwrap();
    let other_url = app.url(&format!("/auth/sessions/{}", other_sessions[0]["id"].as_str().unwrap()));
    assert_error(app.client.delete(&other_url).bearer_auth(token).send().await.unwrap(), 404, "not_found").await;
});

db_test!(async fn users_change_their_password_and_sign_out_other_devices(backend) {
    let (app, _) = oauth_support::spawn_with_admin(backend).await;
    let phone = app.tokens("user", PASSWORD).await;
    let laptop = app.tokens("user", PASSWORD).await;
    let token = laptop["access_token"].as_str().unwrap();
    let change = |current: &str, new: &str| {
        let req = app.client.post(app.url("/auth/password")).bearer_auth(token).json(&json!({"current_password": current, "new_password": new}));
        async move { req.send().await.unwrap() }
    };

    assert_error(app.post_json("/auth/password", &json!({"current_password": PASSWORD, "new_password": "x".repeat(20)})).await, 401, "unauthorized").await;
    assert_error(change("not the password", "a fresh long password").await, 403, "invalid_credentials").await;
    assert_error(change(PASSWORD, "short").await, 400, "validation_failed").await;
    assert_error(change(PASSWORD, PASSWORD).await, 400, "validation_failed").await;
    // Nothing changed so far.
    assert_eq!(app.refresh(phone["refresh_token"].as_str().unwrap()).await.status(), 200);
    let phone = app.tokens("user", PASSWORD).await;

    let resp = change(PASSWORD, "a fresh long password").await;
    assert_eq!(resp.status(), 200);
    let changed: Value = resp.json().await.unwrap();
    assert_eq!(changed["sessions_ended"], 2, "both phone sessions");
    // The other device is signed out at once; this one stays, with the new
    // access token (the old one is refused like every older token).
    assert_error(app.refresh(phone["refresh_token"].as_str().unwrap()).await, 401, "invalid_refresh_token").await;
    assert_error(app.get_with_token("/auth/me", phone["access_token"].as_str().unwrap()).await, 401, "invalid_token").await;
    assert_error(app.get_with_token("/auth/me", token).await, 401, "invalid_token").await;
    assert_eq!(app.get_with_token("/auth/me", changed["access_token"].as_str().unwrap()).await.status(), 200);
    assert_eq!(app.refresh(laptop["refresh_token"].as_str().unwrap()).await.status(), 200);
    // Only the new password signs in, and new sessions work immediately.
    assert_error(app.login("user", PASSWORD).await, 401, "invalid_credentials").await;
    let fresh = app.tokens("user", "a fresh long password").await;
    assert_eq!(app.get_with_token("/auth/me", fresh["access_token"].as_str().unwrap()).await.status(), 200);
});

db_test!(async fn admins_manage_sessions_reset_passwords_and_delete_users(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let id = user_id(&app, &admin, "user").await;
    let tokens = app.tokens("user", PASSWORD).await;
    let sessions: Value = admin_get(&app, &admin, &format!("/admin/users/{id}/sessions")).await.json().await.unwrap();
    assert_eq!(sessions.as_array().unwrap().len(), 1);
    let sid = sessions[0]["id"].as_str().unwrap();
    let resp = app.client.delete(app.url(&format!("/admin/users/{id}/sessions/{sid}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_error(app.refresh(tokens["refresh_token"].as_str().unwrap()).await, 401, "invalid_refresh_token").await;

    // Password reset: the old password stops working, sessions end.
    let tokens = app.tokens("user", PASSWORD).await;
    let resp = admin_post(&app, &admin, &format!("/admin/users/{id}/password"), json!({"password": "a brand new password"})).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["revoked"], 1);
    assert_error(app.login("user", PASSWORD).await, 401, "invalid_credentials").await;
    assert_error(app.refresh(tokens["refresh_token"].as_str().unwrap()).await, 401, "invalid_refresh_token").await;
    let fresh = app.tokens("user", "a brand new password").await;
    assert_error(admin_post(&app, &admin, &format!("/admin/users/{id}/password"), json!({"password": "short"})).await, 400, "validation_failed").await;
    // An admin changes their own password through the ordinary flow, which
    // asks for the current one, never here.
    let admin_id = user_id(&app, &admin, "admin").await;
    let resp = admin_post(&app, &admin, &format!("/admin/users/{admin_id}/password"), json!({"password": "a takeover password"})).await;
    assert_error(resp, 403, "self_action").await;
    assert_eq!(app.login("admin", "admin password 1").await.status(), 200);

    // Deleting: tokens stop working at once, the name is free again.
    let resp = app.client.delete(app.url(&format!("/admin/users/{id}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_error(app.get_with_token("/auth/me", fresh["access_token"].as_str().unwrap()).await, 401, "invalid_token").await;
    assert_error(admin_get(&app, &admin, &format!("/admin/users/{id}")).await, 404, "not_found").await;
    app.create_user("user", PASSWORD).await;
    let admin_id = user_id(&app, &admin, "admin").await;
    let resp = app.client.delete(app.url(&format!("/admin/users/{admin_id}"))).bearer_auth(&admin).send().await.unwrap();
    assert_error(resp, 403, "self_action").await;
});

/// Log `user` in as if from `ip`, through a trusted proxy.
async fn login_from(app: &TestApp, ip: &str, agent: &str) -> Value {
    app.client
        .post(app.url("/auth/login"))
        .header("x-forwarded-for", ip)
        .header("user-agent", agent)
        .json(&json!({"username": "user", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn still_works(app: &TestApp, tokens: &Value) -> bool {
    app.refresh(tokens["refresh_token"].as_str().unwrap()).await.status() == 200
}

db_test!(async fn bulk_revocation_ends_exactly_the_matching_families(backend) {
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

    // By CIDR.
    let inside_v4 = login_from(&app, "203.0.113.7", "Browser A").await;
    let outside_v4 = login_from(&app, "198.51.100.7", "Browser A").await;
    let inside_v6 = login_from(&app, "2001:db8::1", "Browser B").await;
    let resp = admin_post(&app, &admin, "/admin/sessions/revoke", json!({"ip_prefix": "203.0.113.0/24"})).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["revoked"], 1);
    assert!(!still_works(&app, &inside_v4).await);
    assert!(still_works(&app, &outside_v4).await);
    let resp = admin_post(&app, &admin, "/admin/sessions/revoke", json!({"ip_prefix": "2001:db8::/32"})).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["revoked"], 1);
    assert!(!still_works(&app, &inside_v6).await);

    // By issued-before (and user agent).
    app.advance(Duration::from_secs(60));
    let cutoff = app.clock_now();
    app.advance(Duration::from_secs(60));
    let newer_a = login_from(&app, "192.0.2.10", "Browser A").await;
    let newer_c = login_from(&app, "192.0.2.11", "Curl/8").await;
    let resp = admin_post(&app, &admin, "/admin/sessions/revoke", json!({"issued_before": cutoff.to_rfc3339()})).await;
    // The older live families: the admin's own sign-in and `outside_v4`.
    assert_eq!(resp.json::<Value>().await.unwrap()["revoked"], 2);
    // The admin's own access token went with its session: sign in again.
    assert_error(admin_post(&app, &admin, "/admin/sessions/revoke", json!({"all": true})).await, 401, "invalid_token").await;
    let admin = oauth_support::admin_token(&app).await;
    assert!(!still_works(&app, &outside_v4).await);
    assert!(still_works(&app, &newer_a).await);
    let resp = admin_post(&app, &admin, "/admin/sessions/revoke", json!({"user_agent_contains": "curl"})).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["revoked"], 1);
    assert!(!still_works(&app, &newer_c).await);
    assert!(still_works(&app, &newer_a).await);

    // No criterion needs an explicit all.
    assert_error(admin_post(&app, &admin, "/admin/sessions/revoke", json!({})).await, 400, "validation_failed").await;
    assert_error(admin_post(&app, &admin, "/admin/sessions/revoke", json!({"ip_prefix": "nonsense"})).await, 400, "validation_failed").await;
    let resp = admin_post(&app, &admin, "/admin/sessions/revoke", json!({"all": true})).await;
    assert!(resp.json::<Value>().await.unwrap()["revoked"].as_u64().unwrap() >= 1);
    assert!(!still_works(&app, &newer_a).await);
});
