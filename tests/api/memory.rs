//! Each replica's memory of clients and the deny list (`src/memory.rs`):
//! a request that starts after a change committed is answered as if it had
//! read the database, whoever made the change and however many requests
//! are in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::{Backend, assert_error};
use crate::oauth_support::{self, Client};

async fn client_credentials(app: &crate::helpers::TestApp, client: &Client) -> reqwest::Response {
    oauth_support::token_basic(app, client, &[("grant_type", "client_credentials")]).await
}

db_test!(async fn client_changes_reach_client_authentication_at_once(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let service = oauth_support::register_client(
        &app,
        &admin,
        json!({"client_name": "svc", "grant_types": ["client_credentials"]}),
    )
    .await;
    assert_eq!(client_credentials(&app, &service).await.status(), 200);
    let admin_call = |method: Method, path: String, body: Option<Value>| {
        let mut req = app.client.request(method, app.url(&path)).bearer_auth(&admin);
        if let Some(body) = body {
            req = req.json(&body);
        }
        async move { req.send().await.unwrap() }
    };
    let path = format!("/admin/clients/{}", service.id);

    // Disabled, then enabled again, through the admin API.
    let resp = admin_call(Method::PATCH, path.clone(), Some(json!({"disabled": true}))).await;
    assert_eq!(resp.status(), 200);
    assert_error(client_credentials(&app, &service).await, 401, "invalid_client").await;
    let resp = admin_call(Method::PATCH, path.clone(), Some(json!({"disabled": false}))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(client_credentials(&app, &service).await.status(), 200);

    // A new secret works at once; the old one during its overlap.
    let rotated: Value = admin_call(Method::POST, format!("{path}/secret"), None).await.json().await.unwrap();
    let renewed = Client { id: service.id.clone(), secret: rotated["client_secret"].as_str().map(str::to_owned) };
    assert_eq!(client_credentials(&app, &renewed).await.status(), 200);
    assert_eq!(client_credentials(&app, &service).await.status(), 200);

    // An operator's own SQL counts too: a trigger counts every write.
    let sql = |statement: String| {
        let db = app.state.db.clone();
        async move { db.execute_unprepared(&statement).await.unwrap() }
    };
    sql(format!("UPDATE clients SET disabled = true WHERE client_id = '{}'", service.id)).await;
    assert_error(client_credentials(&app, &renewed).await, 401, "invalid_client").await;
    sql(format!("UPDATE clients SET disabled = false WHERE client_id = '{}'", service.id)).await;
    assert_eq!(client_credentials(&app, &renewed).await.status(), 200);
    sql(format!("DELETE FROM clients WHERE client_id = '{}'", service.id)).await;
    assert_error(client_credentials(&app, &renewed).await, 401, "invalid_client").await;

    // A client registered a moment ago authenticates at once.
    let newcomer = oauth_support::register_client(
        &app,
        &admin,
        json!({"client_name": "new", "grant_types": ["client_credentials"]}),
    )
    .await;
    assert_eq!(client_credentials(&app, &newcomer).await.status(), 200);
});

db_test!(async fn introspection_under_load_sees_every_revocation_that_returned(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let app = Arc::new(app);
    let client = oauth_support::confidential(&app, &admin).await;
    let tokens = oauth_support::password_tokens(&app, &client).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(oauth_support::introspect(&app, &client, &access).await["active"], true);

    // Eight introspectors, each recording when its request started and
    // what it was told, while the session is revoked.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (app, client, access, stop) = (Arc::clone(&app), client.clone(), access.clone(), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let active = oauth_support::introspect(&app, &client, &access).await["active"] == true;
                seen.push((started, active));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = app
        .client
        .post(app.url("/oauth/revoke"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[("token", refresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let returned = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut before = 0;
    let mut after = 0;
    for task in tasks {
        for (started, active) in task.await.unwrap() {
            if started > returned {
                assert!(!active, "an introspection that started after the revocation returned saw the token active");
                after += 1;
            } else if active {
                before += 1;
            }
        }
    }
    assert!(before > 0 && after > 0, "the load overlapped the revocation ({before} before, {after} after)");
});

db_test!(async fn a_revocation_written_behind_latchkeys_back_is_seen_by_introspection(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let issue = || async {
        oauth_support::password_tokens(&app, &client).await["access_token"].as_str().unwrap().to_owned()
    };
    // Warm the memory, then deny a token by writing the database directly.
    let access = issue().await;
    assert_eq!(oauth_support::introspect(&app, &client, &access).await["active"], true);
    let jti = crate::jwt::claims(&access)["jti"].as_str().unwrap().to_owned();
    if backend == Backend::Postgres {
        crate::feed::leave_pending(&app, &jti).await;
    } else {
        // SQLite writes the feed directly.
        use latchkey::entities::revocations;
        use sea_orm::{ActiveModelTrait, NotSet, Set};
        let now = app.state.now();
        revocations::ActiveModel {
            seq: NotSet,
            kind: Set("jti".into()),
            value: Set(jti),
            reason: Set(Some("revoked".into())),
            created_at: Set(now),
            expires_at: Set(now + chrono::TimeDelta::hours(1)),
        }
        .insert(&app.state.db)
        .await
        .unwrap();
    }
    assert_eq!(oauth_support::introspect(&app, &client, &access).await, json!({"active": false}));
    // Once on the feed (PostgreSQL: the once-a-second move) it still
    // denies, and other tokens are still active.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(oauth_support::introspect(&app, &client, &access).await, json!({"active": false}));
    let other = issue().await;
    assert_eq!(oauth_support::introspect(&app, &client, &other).await["active"], true);
});
