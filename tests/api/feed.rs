//! The revocation feed: authorization, cursors, snapshot, concurrency.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::{TestApp, assert_error};
use crate::oauth_support::{self, Client, PASSWORD};

async fn feed_reader(app: &TestApp, admin: &str) -> String {
    let client: Client = oauth_support::register_client(
        app,
        admin,
        json!({"client_name": "tasks-api", "grant_types": ["client_credentials"], "scope": "revocations:read"}),
    )
    .await;
    let tokens: Value = oauth_support::token_basic(app, &client, &[("grant_type", "client_credentials")])
        .await
        .json()
        .await
        .unwrap();
    tokens["access_token"].as_str().unwrap().to_owned()
}

async fn page(app: &TestApp, token: &str, query: &str) -> Value {
    let resp =
        app.client.get(app.url(&format!("/revocations{query}"))).bearer_auth(token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["cache-control"].to_str().unwrap().contains("max-age"));
    resp.json().await.unwrap()
}

db_test!(async fn the_feed_needs_the_right_token(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let user = app.tokens("user", PASSWORD).await["access_token"].as_str().unwrap().to_owned();
    let resp = app.client.get(app.url("/revocations")).bearer_auth(&user).send().await.unwrap();
    assert_error(resp, 403, "insufficient_scope").await;
    // A client without the scope.
    let other = oauth_support::register_client(&app, &admin, json!({"client_name": "x", "grant_types": ["client_credentials"], "scope": "tasks:read"})).await;
    let t: Value = oauth_support::token_basic(&app, &other, &[("grant_type", "client_credentials")]).await.json().await.unwrap();
    let resp = app.client.get(app.url("/revocations")).bearer_auth(t["access_token"].as_str().unwrap()).send().await.unwrap();
    assert_error(resp, 403, "insufficient_scope").await;
    assert_error(app.get("/revocations").await, 401, "unauthorized").await;
    // The reader and an admin may.
    let reader = feed_reader(&app, &admin).await;
    page(&app, &reader, "").await;
    page(&app, &admin, "/snapshot").await;
    let resp = app.client.get(app.url("/revocations?since=abc")).bearer_auth(&reader).send().await.unwrap();
    assert_error(resp, 400, "validation_failed").await;
    // A cursor this issuer never handed out (another deployment, a restored
    // backup) is refused, so the reader re-snapshots instead of missing entries.
    let resp = app.client.get(app.url("/revocations?since=999999")).bearer_auth(&reader).send().await.unwrap();
    assert_error(resp, 400, "invalid_cursor").await;
});

db_test!(async fn the_cursor_never_skips_or_repeats_even_under_concurrent_writes(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let reader = feed_reader(&app, &admin).await;
    // Sessions to log out: each logout writes one `sid` entry. Two users,
    // to stay under the per-user session cap.
    app.create_user("second", PASSWORD).await;
    let mut refresh_tokens = Vec::new();
    for i in 0..30 {
        let name = if i % 2 == 0 { "user" } else { "second" };
        refresh_tokens.push(app.tokens(name, PASSWORD).await["refresh_token"].as_str().unwrap().to_owned());
    }
    let start: Value = page(&app, &reader, "/snapshot").await;
    let mut cursor = start["cursor"].as_str().unwrap().to_owned();

    // Writers log out concurrently while the reader pages with tiny pages.
    let mut writers = Vec::new();
    for token in refresh_tokens {
        let (client, url) = (app.client.clone(), app.url("/auth/logout"));
        writers.push(tokio::spawn(async move {
            client.post(url).json(&json!({"refresh_token": token})).send().await.unwrap().status()
        }));
    }
    let mut seen: Vec<i64> = Vec::new();
    let mut finished = false;
    loop {
        let p = page(&app, &reader, &format!("?since={cursor}&limit=3")).await;
        for e in p["entries"].as_array().unwrap() {
            seen.push(e["seq"].as_i64().unwrap());
        }
        cursor = p["cursor"].as_str().unwrap().to_owned();
        if finished && p["entries"].as_array().unwrap().is_empty() {
            break;
        }
        if !finished && writers.iter().all(|w| w.is_finished()) {
            finished = true;
        }
    }
    for w in writers {
        assert_eq!(w.await.unwrap(), 204);
    }
    // Strictly increasing: nothing repeated.
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    // Nothing skipped: exactly what the feed holds after the start cursor.
    let all: Value = page(&app, &reader, &format!("?since={}&limit=1000", start["cursor"].as_str().unwrap())).await;
    let expected: BTreeSet<i64> = all["entries"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(expected.len(), 30);
    assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>(), expected);
});

db_test!(async fn a_snapshot_then_the_feed_gives_the_full_deny_list(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let reader = feed_reader(&app, &admin).await;
    let t = app.tokens("user", PASSWORD).await;
    app.post_json("/auth/logout", &json!({"refresh_token": t["refresh_token"]})).await;
    let snap = page(&app, &reader, "/snapshot").await;
    let entries = snap["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["kind"], "sid");
    assert_eq!(entries[0]["value"], crate::jwt::claims(t["access_token"].as_str().unwrap())["sid"]);
    // Nothing new after the snapshot's cursor; a long poll returns when something arrives.
    let cursor = snap["cursor"].as_str().unwrap().to_owned();
    let empty = page(&app, &reader, &format!("?since={cursor}")).await;
    assert!(empty["entries"].as_array().unwrap().is_empty());
    assert_eq!(empty["cursor"], cursor.as_str());
    let t2 = app.tokens("user", PASSWORD).await;
    let poll = {
        let (client, url, reader) = (app.client.clone(), app.url(&format!("/revocations?since={cursor}&wait=10")), reader.clone());
        tokio::spawn(async move { client.get(url).bearer_auth(reader).send().await.unwrap().json::<Value>().await.unwrap() })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "the long poll answers only when something arrives");
    app.post_json("/auth/logout", &json!({"refresh_token": t2["refresh_token"]})).await;
    let polled = poll.await.unwrap();
    assert_eq!(polled["entries"].as_array().unwrap().len(), 1);
    // Entries disappear once nothing they deny can still be valid.
    app.advance(std::time::Duration::from_secs(900 + 10));
    let reader = feed_reader(&app, &oauth_support::admin_token(&app).await).await;
    let later = page(&app, &reader, "/snapshot").await;
    assert!(later["entries"].as_array().unwrap().is_empty());
});

db_test!(async fn a_revocation_left_pending_denies_at_once_and_reaches_the_feed(backend) {
    use sea_orm::ConnectionTrait;
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let reader = feed_reader(&app, &admin).await;
    let start = page(&app, &reader, "/snapshot").await["cursor"].as_str().unwrap().to_owned();
    let count_pending = || async {
        let row = app.state.db.query_one_raw(sea_orm::Statement::from_string(
            app.state.db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM revocations_pending",
        ));
        row.await.unwrap().unwrap().try_get::<i64>("", "n").unwrap()
    };
    if backend == crate::helpers::Backend::Postgres {
        // A revocation that committed, then lost the database before it
        // moved its entry onto the feed: the entry waits, committed, off the
        // feed, and yet denies the token at once (a revocation counts from
        // its commit). Each replica's once-a-second move may carry it first:
        // then try again with another token.
        let mut denied_while_pending = false;
        for _ in 0..5 {
            let access = app.tokens("user", PASSWORD).await["access_token"].as_str().unwrap().to_owned();
            assert_eq!(app.get_with_token("/auth/me", &access).await.status(), 200);
            let jti = crate::jwt::claims(&access)["jti"].as_str().unwrap().to_owned();
            leave_pending(&app, &jti).await;
            assert_error(app.get_with_token("/auth/me", &access).await, 401, "invalid_token").await;
            if count_pending().await == 1 {
                denied_while_pending = true;
                break;
            }
        }
        assert!(denied_while_pending);
        // No cut-off follows, yet the replica's once-a-second move puts it
        // on the feed.
        let on_feed = || async {
            let p = page(&app, &reader, &format!("?since={start}")).await;
            !p["entries"].as_array().unwrap().is_empty()
        };
        assert!(crate::helpers::eventually(std::time::Duration::from_secs(5), on_feed).await);
        assert_eq!(count_pending().await, 0);
    }
    // A logout's own entry is on the feed when it returns.
    let t = app.tokens("user", PASSWORD).await;
    assert_eq!(app.post_json("/auth/logout", &json!({"refresh_token": t["refresh_token"]})).await.status(), 204);
    let after = page(&app, &reader, &format!("?since={start}")).await;
    let kinds: Vec<&str> = after["entries"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    // On PostgreSQL the jti entries come first (older), then the logout's.
    assert_eq!(kinds.last(), Some(&"sid"), "{kinds:?}");
    assert!(kinds[..kinds.len() - 1].iter().all(|k| *k == "jti"), "{kinds:?}");
    if backend == crate::helpers::Backend::Sqlite {
        assert_eq!(kinds, ["sid"]);
    } else {
        assert!(kinds.len() >= 2, "the pending entry reached the feed: {kinds:?}");
    }
    // Nothing is left behind: SQLite writes the feed directly.
    assert_eq!(count_pending().await, 0);
});

/// Deny `jti` in `revocations_pending` only, as a cut-off whose replica
/// died before its move would leave it: committed, not on the feed
/// (PostgreSQL).
pub async fn leave_pending(app: &TestApp, jti: &str) {
    use sea_orm::ConnectionTrait;
    app.state
        .db
        .execute_unprepared(&format!(
            "INSERT INTO revocations_pending (kind, value, reason, created_at, expires_at) \
             VALUES ('jti', '{jti}', 'revoked', now(), now() + interval '1 hour')"
        ))
        .await
        .unwrap();
}
