//! Brute-force protection, trusted proxies, the audit log, metrics, purge.

use std::time::Duration;

use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::{Backend, TestApp, assert_error, eventually};
use crate::oauth_support::{self, PASSWORD};

async fn limited(backend: Backend, trust_localhost: bool) -> TestApp {
    let app = TestApp::builder(backend)
        .configure(move |s| {
            s.login_rate_per_ip = 5;
            s.token_rate_per_ip = 5;
            s.lockout_threshold = 3;
            s.username_failure_rate = 100;
            if trust_localhost {
                s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            }
        })
        .spawn()
        .await;
    app.create_user("user", PASSWORD).await;
    app
}

async fn login_as(app: &TestApp, forwarded: Option<&str>, password: &str) -> reqwest::Response {
    let mut req =
        app.client.post(app.url("/auth/login")).json(&json!({"username": "user", "password": password}));
    if let Some(ip) = forwarded {
        req = req.header("x-forwarded-for", ip);
    }
    req.send().await.unwrap()
}

db_test!(async fn too_many_logins_from_one_address_get_429_with_retry_after(backend) {
    let app = limited(backend, false).await;
    for i in 0..5 {
        // A spoofed X-Forwarded-For from an untrusted peer changes nothing.
        let resp = login_as(&app, Some(&format!("198.51.100.{i}")), PASSWORD).await;
        assert_eq!(resp.status(), 200);
    }
    let resp = login_as(&app, Some("198.51.100.99"), PASSWORD).await;
    let retry_after: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_error(resp, 429, "rate_limited").await;
    // After the interval, one more.
    app.advance(Duration::from_secs(retry_after));
    assert_eq!(login_as(&app, None, PASSWORD).await.status(), 200);
});

db_test!(async fn behind_a_trusted_proxy_each_client_has_its_own_budget(backend) {
    let app = limited(backend, true).await;
    for _ in 0..5 {
        assert_eq!(login_as(&app, Some("198.51.100.1"), PASSWORD).await.status(), 200);
    }
    assert_eq!(login_as(&app, Some("198.51.100.1"), PASSWORD).await.status(), 429);
    assert_eq!(login_as(&app, Some("198.51.100.2"), PASSWORD).await.status(), 200, "another client behind the proxy");
});

db_test!(async fn repeated_failures_lock_that_address_only(backend) {
    let app = limited(backend, true).await;
    for _ in 0..3 {
        assert_error(login_as(&app, Some("203.0.113.9"), "wrong password").await, 401, "invalid_credentials").await;
    }
    // Locked for this username from this address, even with the right password...
    let resp = login_as(&app, Some("203.0.113.9"), PASSWORD).await;
    assert!(resp.headers().contains_key("retry-after"));
    assert_error(resp, 429, "rate_limited").await;
    // ...but the user can still sign in from elsewhere.
    assert_eq!(login_as(&app, Some("192.0.2.1"), PASSWORD).await.status(), 200);
    // The lock expires.
    app.advance(Duration::from_secs(901));
    assert_eq!(login_as(&app, Some("203.0.113.9"), PASSWORD).await.status(), 200);
});

db_test!(async fn the_token_endpoint_is_rate_limited_per_address(backend) {
    let app = TestApp::builder(backend).configure(|s| s.token_rate_per_ip = 3).spawn().await;
    for _ in 0..3 {
        let resp = app.client.post(app.url("/oauth/token")).form(&[("grant_type", "client_credentials")]).send().await.unwrap();
        assert_eq!(resp.status(), 401);
    }
    let resp = app.client.post(app.url("/oauth/token")).form(&[("grant_type", "client_credentials")]).send().await.unwrap();
    assert!(resp.headers().contains_key("retry-after"));
    assert_error(resp, 429, "temporarily_unavailable").await;
    assert_error(app.refresh("anything").await, 429, "rate_limited").await;
});

db_test!(async fn revocation_and_introspection_throttle_failed_client_authentication_only(backend) {
    let (app, admin) = oauth_support::spawn_with_admin_configured(backend, |s| s.token_rate_per_ip = 3).await;
    let client = oauth_support::confidential(&app, &admin).await;
    // An authenticated service is never throttled here.
    for _ in 0..10 {
        assert_eq!(oauth_support::introspect(&app, &client, "not-a-token").await, json!({"active": false}));
    }
    let stranger = oauth_support::Client { id: client.id.clone(), secret: Some("wrong".into()) };
    for path in ["/oauth/introspect", "/oauth/revoke"] {
        let resp = app
            .client
            .post(app.url(path))
            .basic_auth(&stranger.id, stranger.secret.as_deref())
            .form(&[("token", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{path}");
    }
    // The third failure used the budget: the address now waits, even with
    // the right secret, until it refills.
    let resp = app.client.post(app.url("/oauth/revoke")).basic_auth(&stranger.id, stranger.secret.as_deref()).form(&[("token", "x")]).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = app.client.post(app.url("/oauth/introspect")).basic_auth(&client.id, client.secret.as_deref()).form(&[("token", "x")]).send().await.unwrap();
    assert!(resp.headers().contains_key("retry-after"));
    assert_error(resp, 429, "temporarily_unavailable").await;
    app.advance(Duration::from_secs(61));
    assert_eq!(oauth_support::introspect(&app, &client, "not-a-token").await, json!({"active": false}));
});

db_test!(async fn audit_rows_exist_for_each_event_kind_and_hold_no_secrets(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let secret = client.secret.clone().unwrap();
    // login success and failure, logout, refresh reuse
    let t = app.tokens("user", PASSWORD).await;
    assert_error(app.login("user", "not the password").await, 401, "invalid_credentials").await;
    assert_eq!(app.refresh(t["refresh_token"].as_str().unwrap()).await.status(), 200);
    app.advance(Duration::from_secs(10));
    // The first token again, past the grace window: reuse detected.
    assert_eq!(app.refresh(t["refresh_token"].as_str().unwrap()).await.status(), 401);
    let t2 = app.tokens("user", PASSWORD).await;
    app.post_json("/auth/logout", &json!({"refresh_token": t2["refresh_token"]})).await;
    // ban / unban, family revoked, client rotated and deleted, key rotated
    let admin = oauth_support::admin_token(&app).await;
    let users: Value = app.client.get(app.url("/admin/users?q=user")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    let id = users["users"][0]["id"].as_str().unwrap().to_owned();
    let post = |path: String| {
        let req = app.client.post(app.url(&path)).bearer_auth(&admin).json(&json!({}));
        async move {
            let resp = req.send().await.unwrap();
            assert!(resp.status().is_success(), "{path}: {}", resp.status());
        }
    };
    post(format!("/admin/users/{id}/ban")).await;
    post(format!("/admin/users/{id}/unban")).await;
    let t3 = app.tokens("user", PASSWORD).await;
    let sid = crate::jwt::claims(t3["access_token"].as_str().unwrap())["sid"].as_str().unwrap().to_owned();
    let ended = app.client.delete(app.url(&format!("/admin/users/{id}/sessions/{sid}"))).bearer_auth(&admin).send().await.unwrap();
    assert!(ended.status().is_success());
    app.advance(Duration::from_secs(6)); // past the unbanned user's cut-off margin
    let t4 = app.tokens("user", PASSWORD).await;
    let resp = app.client.post(app.url("/auth/password")).bearer_auth(t4["access_token"].as_str().unwrap()).json(&json!({"current_password": PASSWORD, "new_password": "another long password"})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    post(format!("/admin/clients/{}/secret", client.id)).await;
    post("/admin/keys/rotate".into()).await;
    let deleted = app.client.delete(app.url(&format!("/admin/clients/{}", client.id))).bearer_auth(&admin).send().await.unwrap();
    assert!(deleted.status().is_success());

    let mut events = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let path = match &before {
            Some(b) => format!("/admin/audit?limit=5&before={b}"),
            None => "/admin/audit?limit=5".into(),
        };
        let page: Value = app.client.get(app.url(&path)).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => before = Some(c.to_owned()),
            None => break,
        }
    }
    let kinds: std::collections::HashSet<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in [
        "user_registered", "login_succeeded", "login_failed", "logout", "refresh_reuse_detected",
        "user_banned", "user_unbanned", "family_revoked", "client_created", "client_secret_rotated",
        "key_rotated", "client_deleted", "password_changed",
    ] {
        assert!(kinds.contains(kind), "missing {kind}: {kinds:?}");
    }
    let admin_actions = events.iter().filter(|e| e["kind"] == "user_banned").collect::<Vec<_>>();
    assert!(admin_actions[0]["actor_id"].is_string(), "admin actions name the acting admin");
    assert_eq!(admin_actions[0]["ip"], "127.0.0.1");
    // Filters.
    let page: Value = app.client.get(app.url(&format!("/admin/audit?kind=user_banned&subject_id={id}"))).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 1);

    // No password, secret or token anywhere in the log.
    let everything = serde_json::to_string(&events).unwrap();
    for secret in [PASSWORD, "not the password", "another long password", secret.as_str(), t["access_token"].as_str().unwrap(), t["refresh_token"].as_str().unwrap(), &admin] {
        assert!(!everything.contains(secret), "the audit log contains a secret");
    }
});

db_test!(async fn metrics_expose_requests_logins_refreshes_and_pools(backend) {
    let app = TestApp::spawn(backend).await;
    app.create_user("user", PASSWORD).await;
    let t = app.tokens("user", PASSWORD).await;
    app.login("user", "wrong").await;
    app.refresh(t["refresh_token"].as_str().unwrap()).await;
    let resp = app.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    for needle in [
        "latchkey_http_requests_total{method=\"POST\",route=\"/auth/login\",status=\"200\"} 1",
        "latchkey_logins_total{outcome=\"success\"} 1",
        "latchkey_logins_total{outcome=\"invalid_credentials\"} 1",
        "latchkey_refreshes_total{outcome=\"rotated\"} 1",
        "latchkey_http_request_duration_seconds_bucket",
        "latchkey_password_hash_queue 0",
        "latchkey_db_pool_connections",
    ] {
        assert!(text.contains(needle), "missing {needle}\n{text}");
    }

    let protected = TestApp::builder(backend)
        .configure(|s| s.metrics_token = Some(secrecy::SecretString::from("scrape-me".to_owned())))
        .spawn()
        .await;
    assert_error(protected.get("/metrics").await, 401, "unauthorized").await;
    assert_eq!(protected.get_with_token("/metrics", "scrape-me").await.status(), 200);
});

db_test!(async fn the_purge_job_removes_dead_rows_and_nothing_live(backend) {
    use latchkey::entities::{refresh_families, revocations};
    use sea_orm::{EntityTrait, PaginatorTrait};
    let app = TestApp::builder(backend)
        .configure(|s| {
            s.purge_interval = Duration::from_secs(1);
            s.purge_retention = Duration::from_secs(3600);
        })
        .spawn()
        .await;
    app.create_user("user", PASSWORD).await;
    let dead = app.tokens("user", PASSWORD).await;
    app.post_json("/auth/logout", &json!({"refresh_token": dead["refresh_token"]})).await;
    let families = || async { refresh_families::Entity::find().count(&app.state.db).await.unwrap() };
    let entries = || async { revocations::Entity::find().count(&app.state.db).await.unwrap() };
    assert_eq!(families().await, 1);
    assert_eq!(entries().await, 1);

    // Past the retention: the revoked family and the expired entry go...
    app.advance(Duration::from_secs(3700));
    let live = app.tokens("user", PASSWORD).await;
    assert!(eventually(Duration::from_secs(10), || async { families().await == 1 && entries().await == 0 }).await);
    // ...and the live family stays and works.
    let resp = app.refresh(live["refresh_token"].as_str().unwrap()).await;
    assert_eq!(resp.status(), 200);
});
