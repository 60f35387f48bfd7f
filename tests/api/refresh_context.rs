//! Suspicious refresh use: a refresh from another network block or another
//! user-agent family than the family's last one is audited, or, under the
//! `end_session` policy, ends the session. Client addresses are set through a
//! trusted `X-Forwarded-For`, user agents with the `User-Agent` header.

use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::{Backend, TestApp, assert_error};
use crate::oauth_support::{self, PASSWORD};

const CHROME_119: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36";
const CHROME_120: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.71 Safari/537.36";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
const KIND: &str = "refresh_context_changed";

/// An app behind a trusted proxy on 127.0.0.1, with an admin and `user`.
async fn spawn(
    backend: Backend,
    configure: impl FnOnce(&mut latchkey::config::Settings) + Send + 'static,
) -> (TestApp, String) {
    oauth_support::spawn_with_admin_configured(backend, move |s| {
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        configure(s);
    })
    .await
}

async fn login_from(app: &TestApp, ip: &str, ua: &str, username: &str) -> Value {
    let resp = app
        .client
        .post(app.url("/auth/login"))
        .header("x-forwarded-for", ip)
        .header("user-agent", ua)
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "login {username}");
    resp.json().await.unwrap()
}

async fn refresh_from(app: &TestApp, ip: &str, ua: &str, token: &str) -> reqwest::Response {
    app.client
        .post(app.url("/auth/refresh"))
        .header("x-forwarded-for", ip)
        .header("user-agent", ua)
        .json(&json!({"refresh_token": token}))
        .send()
        .await
        .unwrap()
}

async fn refreshed_from(app: &TestApp, ip: &str, ua: &str, token: &str) -> Value {
    let resp = refresh_from(app, ip, ua, token).await;
    assert_eq!(resp.status(), 200, "refresh from {ip}");
    resp.json().await.unwrap()
}

fn rt(v: &Value) -> &str {
    v["refresh_token"].as_str().unwrap()
}

fn at(v: &Value) -> &str {
    v["access_token"].as_str().unwrap()
}

async fn user_id(app: &TestApp, tokens: &Value) -> String {
    let me: Value = app.get_with_token("/auth/me", at(tokens)).await.json().await.unwrap();
    me["id"].as_str().unwrap().to_owned()
}

/// The context-change events of one user, as an admin sees them, newest first.
async fn context_events(app: &TestApp, admin: &str, user: &str) -> Vec<Value> {
    let resp = app
        .client
        .get(app.url(&format!("/admin/audit?subject_id={user}&kind={KIND}")))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let page: Value = resp.json().await.unwrap();
    page["events"].as_array().unwrap().clone()
}

async fn my_sessions(app: &TestApp, tokens: &Value) -> Vec<Value> {
    let resp = app.get_with_token("/auth/sessions", at(tokens)).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

db_test!(async fn a_newer_browser_on_the_same_network_is_no_change(backend) {
    let (app, admin) = spawn(backend, |_| {}).await;
    let login = login_from(&app, "203.0.113.5", CHROME_119, "user").await;
    let user = user_id(&app, &login).await;

    // Another address of the same /16, the same browser one version later.
    let next = refreshed_from(&app, "203.0.200.9", CHROME_120, rt(&login)).await;
    refreshed_from(&app, "203.0.1.1", CHROME_120, rt(&next)).await;

    assert!(context_events(&app, &admin, &user).await.is_empty());
    // The session shows where it was signed in and where it was last refreshed.
    let sessions = my_sessions(&app, &next).await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["ip"], "203.0.113.5");
    assert_eq!(sessions[0]["user_agent"], CHROME_119);
    assert_eq!(sessions[0]["last_ip"], "203.0.1.1");
    assert_eq!(sessions[0]["last_user_agent"], CHROME_120);
});

db_test!(async fn a_refresh_from_another_network_is_audited_once_for_that_user(backend) {
    let (app, admin) = spawn(backend, |_| {}).await;
    app.create_user("other", PASSWORD).await;
    let login = login_from(&app, "203.0.113.5", CHROME_119, "user").await;
    let user = user_id(&app, &login).await;
    let other_login = login_from(&app, "203.0.113.6", FIREFOX, "other").await;
    let other = user_id(&app, &other_login).await;
    // Before any refresh, admins see the login context only.
    let admin_path = format!("/admin/users/{user}/sessions");
    let sessions: Value = app.get_with_token(&admin_path, &admin).await.json().await.unwrap();
    assert!(sessions[0].get("last_ip").is_none(), "{sessions}");

    // Another /16: the refresh works, and is audited.
    let moved = refreshed_from(&app, "198.51.100.7", CHROME_120, rt(&login)).await;
    // A second tab presenting the same old token from there gets the same
    // token (grace window) and no second event.
    let replay = refreshed_from(&app, "198.51.100.7", CHROME_120, rt(&login)).await;
    assert_eq!(rt(&replay), rt(&moved));
    // The new network is now the last one: refreshing from it again is no change.
    let later = refreshed_from(&app, "198.51.3.3", CHROME_120, rt(&moved)).await;
    // The other user refreshes from elsewhere too.
    refreshed_from(&app, "192.0.2.1", FIREFOX, rt(&other_login)).await;

    let events = context_events(&app, &admin, &user).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["kind"], KIND);
    assert_eq!(e["subject_id"], user);
    assert_eq!(e["client_id"], "latchkey");
    assert_eq!(e["ip"], "198.51.100.7");
    let session_id = sessions[0]["id"].as_str().unwrap();
    let d = &e["details"];
    assert_eq!(d["family_id"], session_id);
    assert_eq!(d["changed"], json!(["network"]));
    assert_eq!(d["previous_ip"], "203.0.113.5");
    assert_eq!(d["ip"], "198.51.100.7");
    assert_eq!(d["previous_network"], "203.0.0.0/16");
    assert_eq!(d["network"], "198.51.0.0/16");
    assert_eq!(d["previous_user_agent_family"], "Chrome/Windows");
    assert_eq!(d["user_agent_family"], "Chrome/Windows");
    assert_eq!(d["session_ended"], false);
    // No token of the session in the event.
    let text = e.to_string();
    for token in [rt(&login), rt(&moved), rt(&later), at(&login), at(&moved)] {
        assert!(!text.contains(token));
    }
    // Each user's events are their own.
    let others = context_events(&app, &admin, &other).await;
    assert_eq!(others.len(), 1);
    assert_eq!(others[0]["details"]["previous_ip"], "203.0.113.6");
    // Admins see the last context in the user's sessions.
    let sessions: Value = app.get_with_token(&admin_path, &admin).await.json().await.unwrap();
    assert_eq!(sessions[0]["last_ip"], "198.51.3.3");
    assert_eq!(sessions[0]["ip"], "203.0.113.5");
});

db_test!(async fn a_refresh_from_another_user_agent_family_is_audited(backend) {
    let (app, admin) = spawn(backend, |_| {}).await;
    let login = login_from(&app, "203.0.113.5", FIREFOX, "user").await;
    let user = user_id(&app, &login).await;

    let resp = refresh_from(&app, "203.0.113.5", "curl/8.4.0", rt(&login)).await;
    assert_eq!(resp.status(), 200);

    let events = context_events(&app, &admin, &user).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let d = &events[0]["details"];
    assert_eq!(d["changed"], json!(["user_agent"]));
    assert_eq!(d["previous_user_agent_family"], "Firefox/Linux");
    assert_eq!(d["user_agent_family"], "curl");
    assert_eq!(d["previous_ip"], d["ip"]);
});

db_test!(async fn ipv6_addresses_are_compared_by_48(backend) {
    let (app, admin) = spawn(backend, |_| {}).await;
    let login = login_from(&app, "2001:db8:1:a::1", FIREFOX, "user").await;
    let user = user_id(&app, &login).await;

    // Another /64 of the same /48: no change.
    let same = refreshed_from(&app, "2001:db8:1:ffff::2", FIREFOX, rt(&login)).await;
    assert!(context_events(&app, &admin, &user).await.is_empty());
    // Another /48: a change.
    refreshed_from(&app, "2001:db8:2::1", FIREFOX, rt(&same)).await;
    let events = context_events(&app, &admin, &user).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["details"]["previous_network"], "2001:db8:1::/48");
    assert_eq!(events[0]["details"]["network"], "2001:db8:2::/48");
});

db_test!(async fn the_prefixes_are_configurable(backend) {
    let (app, admin) = spawn(backend, |s| s.refresh_context_ipv4_prefix = 24).await;
    let login = login_from(&app, "203.0.113.5", FIREFOX, "user").await;
    let user = user_id(&app, &login).await;

    // Same /16, another /24.
    refreshed_from(&app, "203.0.114.5", FIREFOX, rt(&login)).await;
    let events = context_events(&app, &admin, &user).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["details"]["previous_network"], "203.0.113.0/24");
});

db_test!(async fn under_end_session_a_changed_context_ends_the_session(backend) {
    let (app, admin) =
        spawn(backend, |s| s.refresh_context_policy = latchkey::refresh::ContextPolicy::EndSession).await;
    let login = login_from(&app, "203.0.113.5", CHROME_119, "user").await;
    let user = user_id(&app, &login).await;
    // Unchanged context: refreshes as usual.
    let next = refreshed_from(&app, "203.0.7.7", CHROME_120, rt(&login)).await;

    // From another network: refused, and the session is over.
    let resp = refresh_from(&app, "198.51.100.7", CHROME_120, rt(&next)).await;
    let body = assert_error(resp, 401, "session_context_changed").await;
    assert!(body.error_description.contains("sign in again"), "{}", body.error_description);
    // Its refresh token no longer works, even from the original place...
    let resp = refresh_from(&app, "203.0.7.7", CHROME_120, rt(&next)).await;
    assert_error(resp, 401, "invalid_refresh_token").await;
    // ...and neither do its access tokens.
    assert_eq!(app.get_with_token("/auth/me", at(&next)).await.status(), 401);
    // The user signs in again; only the new session is live.
    let again = login_from(&app, "198.51.100.7", CHROME_120, "user").await;
    assert_eq!(my_sessions(&app, &again).await.len(), 1);

    let events = context_events(&app, &admin, &user).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["details"]["session_ended"], true);
    assert_eq!(events[0]["details"]["changed"], json!(["network"]));

    // A new user agent ends a session just the same.
    let fresh = login_from(&app, "203.0.113.5", FIREFOX, "user").await;
    let resp = refresh_from(&app, "203.0.113.5", "curl/8.4.0", rt(&fresh)).await;
    assert_error(resp, 401, "session_context_changed").await;
    assert_eq!(app.get_with_token("/auth/me", at(&fresh)).await.status(), 401);
    assert_eq!(context_events(&app, &admin, &user).await.len(), 2);
});

db_test!(async fn under_end_session_the_token_endpoint_answers_invalid_grant(backend) {
    let (app, admin) =
        spawn(backend, |s| s.refresh_context_policy = latchkey::refresh::ContextPolicy::EndSession).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let token = |ip: &'static str, form: Vec<(&'static str, String)>| {
        app.client
            .post(app.url("/oauth/token"))
            .basic_auth(&client.id, client.secret.as_deref())
            .header("x-forwarded-for", ip)
            .header("user-agent", "okhttp/4.12.0")
            .form(&form)
            .send()
    };
    let resp = token(
        "203.0.113.5",
        vec![
            ("grant_type", "password".into()),
            ("username", "user".into()),
            ("password", PASSWORD.into()),
            ("scope", "openid tasks:read".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let tokens: Value = resp.json().await.unwrap();
    let introspection = oauth_support::introspect(&app, &client, at(&tokens)).await;
    assert_eq!(introspection["active"], true);
    let user = introspection["sub"].as_str().unwrap().to_owned();

    let refresh = vec![("grant_type", "refresh_token".into()), ("refresh_token", rt(&tokens).to_owned())];
    let resp = token("198.51.100.7", refresh.clone()).await.unwrap();
    let body = assert_error(resp, 400, "invalid_grant").await;
    assert!(body.error_description.contains("another network or device"), "{}", body.error_description);

    // The session's access token is denied at once; the refresh token is dead everywhere.
    assert!(!oauth_support::introspect(&app, &client, at(&tokens)).await["active"].as_bool().unwrap());
    assert_error(token("203.0.113.5", refresh).await.unwrap(), 400, "invalid_grant").await;

    let events = context_events(&app, &admin, &user).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["client_id"], client.id);
    assert_eq!(events[0]["details"]["session_ended"], true);
    assert_eq!(events[0]["details"]["user_agent_family"], "okhttp");
});
