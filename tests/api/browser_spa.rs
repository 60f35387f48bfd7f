//! The example SPA (`examples/spa/`) in a real Chromium: authorization code
//! with PKCE as a public client through the real sign-in page, calls to the
//! tasks API, a refresh, and RP-initiated logout.

use serde_json::json;

use crate::browser::{Chromium, issuer_url, keep_screenshot, spawn_tapped_with_admin};
use crate::db_test;
use crate::helpers::Backend;
use crate::oauth_support::{PASSWORD, register_client};
use crate::spa_support::{SpaServer, serve_tasks};

db_test!(async fn the_spa_signs_in_with_pkce_calls_the_tasks_api_refreshes_and_signs_out(backend) {
    // Arrange: latchkey allowing the SPA's origin, the SPA as a public
    // client, the tasks API allowing the SPA's origin, the SPA's server.
    let spa = SpaServer::bind().await;
    let origin = spa.origin.clone();
    let (app, admin, tap) = spawn_tapped_with_admin(backend, move |s| s.cors_origins = vec![origin]).await;
    let client = register_client(
        &app,
        &admin,
        json!({
            "client_name": "Tasks SPA",
            "redirect_uris": [spa.url("/")],
            "grant_types": ["authorization_code", "refresh_token"],
            "scope": "openid profile tasks:read tasks:write",
            "token_endpoint_auth_method": "none",
        }),
    )
    .await;
    let tasks = serve_tasks(&app, vec![spa.origin.clone()]).await;
    let spa = spa.serve(app.state.issuer(), &client.id, &tasks);
    let Some(chromium) = Chromium::launch().await else { return };
    let tab = chromium.page().await;

    // Sign in: the SPA sends the browser to latchkey's page, and back.
    tab.goto(&spa.url("/")).await;
    tab.wait_for("!document.querySelector('#sign-in').disabled").await;
    tab.click("#sign-in").await;
    tab.wait_for_url(&issuer_url(&app, "/oauth/authorize")).await;
    assert!(tab.text("main").await.contains("Tasks SPA"));
    tab.fill("#username", "user").await;
    tab.fill("#password", PASSWORD).await;
    tab.click("button[type=submit]").await;
    tab.wait_for("document.querySelector('#status').innerText.includes('Signed in as user')").await;
    assert!(!tab.url().await.contains("code="), "the SPA cleans the code out of its URL");
    let exchange = tab.network.answered("POST", &issuer_url(&app, "/oauth/token")).await.expect("the code exchange");
    exchange.expect_status(200);
    if exchange.status.is_some() {
        assert_eq!(exchange.response_headers.get("access-control-allow-origin"), Some(&spa.origin));
    }
    let authorize = tap.last("GET", "/oauth/authorize").unwrap();
    assert!(authorize.target.contains("code_challenge_method=S256"), "{}", authorize.target);
    // Nothing of the session sits in JavaScript-readable storage.
    let stored = tab.eval("JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})").await;
    assert!(!stored.as_str().unwrap().contains("eyJ"), "no token in web storage: {stored}");

    // Call the tasks API: add a task, see it listed.
    tab.fill("#task-title", "Buy milk").await;
    tab.click("#add-task").await;
    tab.wait_for("[...document.querySelectorAll('#tasks li')].some(li => li.innerText.includes('Buy milk'))").await;

    // Refresh with the refresh_token grant; the new access token works.
    tab.click("#refresh").await;
    tab.wait_for("document.querySelector('#refresh-count').innerText.trim() === '1'").await;
    let refresh = tab.network.answered("POST", &issuer_url(&app, "/oauth/token")).await.unwrap();
    refresh.expect_status(200);
    tab.fill("#task-title", "Walk the dog").await;
    tab.click("#add-task").await;
    tab.wait_for("[...document.querySelectorAll('#tasks li')].some(li => li.innerText.includes('Walk the dog'))").await;
    if backend == Backend::Sqlite {
        tab.viewport(1280, 800, false).await;
        keep_screenshot("spa-desktop.png", &tab.screenshot().await, 1280);
    }

    // Sign out: the refresh token is revoked, then RP-initiated logout ends
    // the browser session at latchkey and comes back to the SPA.
    tab.click("#sign-out").await;
    tab.wait_for("document.querySelector('#status').innerText.includes('Signed out')").await;
    assert!(tab.url().await.starts_with(&spa.url("/")));
    let revoke = tab.network.answered("POST", &issuer_url(&app, "/oauth/revoke")).await.expect("the refresh token is revoked");
    revoke.expect_status(200);
    let logout = tap.last("GET", "/oauth/logout").expect("RP-initiated logout");
    assert!(logout.target.contains("id_token_hint="), "{}", logout.target);

    // The browser session at latchkey is over: signing in asks for the password again.
    tab.wait_for("!document.querySelector('#sign-in').disabled").await;
    tab.click("#sign-in").await;
    tab.wait_for_url(&issuer_url(&app, "/oauth/authorize")).await;
    tab.wait_for_element("#password").await;
    chromium.close().await;
});
