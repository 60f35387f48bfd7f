//! The sign-in pages in a real Chromium: the form, a wrong password, the
//! "Continue as …" confirmation, RP-initiated logout, HTTPS, and a page on
//! another origin that tries to post the form.

use serde_json::json;

use crate::browser::{
    Chromium, LaunchOptions, Site, Tab, issuer_url, js_string, keep_screenshot, spawn_tapped_with_admin,
};
use crate::db_test;
use crate::helpers::{Backend, TestApp};
use crate::oauth_support::{self, Client, PASSWORD, pkce_pair, register_client, token_basic};

/// A confidential client whose redirect URI is `site`'s callback.
pub(crate) async fn gallery(app: &TestApp, admin: &str, site: &Site) -> Client {
    register_client(
        app,
        admin,
        json!({
            "client_name": "Photo Gallery",
            "redirect_uris": [site.url("/callback")],
            "grant_types": ["authorization_code", "refresh_token"],
            "scope": "openid profile email",
            "token_endpoint_auth_method": "client_secret_basic",
        }),
    )
    .await
}

fn authorize_url(app: &TestApp, client: &Client, site: &Site, challenge: &str) -> String {
    let mut url = url::Url::parse(&issuer_url(app, "/oauth/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client.id)
        .append_pair("redirect_uri", &site.url("/callback"))
        .append_pair("scope", "openid profile")
        .append_pair("state", "s-123")
        .append_pair("nonce", "n-456")
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    url.to_string()
}

/// Fill in the sign-in form and press the button.
async fn sign_in(tab: &Tab, username: &str, password: &str) {
    tab.fill("#username", username).await;
    tab.fill("#password", password).await;
    tab.click("button[type=submit]").await;
}

fn origin_of(url: &str) -> String {
    url::Url::parse(url).unwrap().origin().ascii_serialization()
}

db_test!(async fn chromium_signs_in_on_the_page_and_the_client_gets_a_code(backend) {
    let (app, admin, tap) = spawn_tapped_with_admin(backend, |_| {}).await;
    let site = Site::start().await;
    let client = gallery(&app, &admin, &site).await;
    let Some(chromium) = Chromium::launch().await else { return };
    let tab = chromium.page().await;
    let (verifier, challenge) = pkce_pair();

    // Arrange: the page, at desktop and phone widths (the README's screenshots).
    tab.goto(&authorize_url(&app, &client, &site, &challenge)).await;
    tab.wait_for_element("#username").await;
    assert!(tab.text("main").await.contains("Photo Gallery"), "the page names the client");
    if backend == Backend::Sqlite {
        tab.viewport(1280, 800, false).await;
        keep_screenshot("sign-in-desktop.png", &tab.screenshot().await, 1280);
        tab.viewport(390, 844, true).await;
        keep_screenshot("sign-in-phone.png", &tab.screenshot().await, 390);
        tab.viewport(1280, 800, false).await;
    }

    // Act: a user types and presses the button.
    sign_in(&tab, "user", PASSWORD).await;
    tab.wait_for_url(&site.url("/callback")).await;

    // Assert: back at the client with a code that redeems.
    assert_eq!(tab.text("#state").await, "s-123");
    assert_eq!(tab.text("#iss").await, app.state.issuer());
    let code = tab.text("#code").await;
    let resp = token_basic(
        &app,
        &client,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &site.url("/callback")),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200, "the code redeems: {:?}", resp.text().await);

    // What Chromium really sent with the form (the reason for the old 403:
    // under `Referrer-Policy: no-referrer` it sent `Origin: null`).
    let status = tab.network.answered("POST", &issuer_url(&app, "/oauth/authorize")).await.expect("the form POST");
    status.expect_status(303);
    let post = tap.last("POST", "/oauth/authorize").expect("the form POST arrived");
    eprintln!("Chromium's sign-in POST as it arrived: {:#?}", post.headers);
    assert_eq!(post.headers.get("origin"), Some(&origin_of(app.state.issuer())));
    assert_eq!(post.headers.get("sec-fetch-site").map(String::as_str), Some("same-origin"));
    assert_eq!(post.headers.get("sec-fetch-mode").map(String::as_str), Some("navigate"));
    assert!(post.headers.get("cookie").is_some_and(|c| c.contains("lk_csrf=")));
    // The page allowed a same-origin Referer, and nothing leaked to the client.
    assert!(post.headers.get("referer").is_some_and(|r| r.starts_with(app.state.issuer())));
    let arrival = tab.network.answered("GET", &site.url("/callback")).await.expect("callback seen");
    assert!(!arrival.headers.contains_key("referer"), "no Referer reaches the client: {arrival:?}");
    chromium.close().await;
});

db_test!(async fn chromium_shows_a_wrong_password_on_the_page(backend) {
    let (app, admin, _tap) = spawn_tapped_with_admin(backend, |_| {}).await;
    let site = Site::start().await;
    let client = gallery(&app, &admin, &site).await;
    let Some(chromium) = Chromium::launch().await else { return };
    let tab = chromium.page().await;
    let (_, challenge) = pkce_pair();
    tab.goto(&authorize_url(&app, &client, &site, &challenge)).await;

    sign_in(&tab, "user", "not the password").await;
    tab.wait_for("document.querySelector('[role=alert]')").await;

    let alert = tab.text("[role=alert]").await;
    assert!(alert.contains("Invalid username or password"), "the error is shown: {alert}");
    assert!(tab.url().await.starts_with(&issuer_url(&app, "/oauth/authorize")), "still on the sign-in page");
    let kept = tab.eval("document.querySelector('#username').value").await;
    assert_eq!(kept, json!("user"), "the username is kept");
    // The error is tied to the field it is about, for screen readers.
    let described = tab.eval("document.querySelector('#password').getAttribute('aria-describedby') || ''").await;
    let described = described.as_str().unwrap_or_default();
    assert!(!described.is_empty(), "the password field points at the error");
    let points_at = tab.eval(&format!("document.getElementById({}).innerText", js_string(described))).await;
    assert!(points_at.as_str().unwrap_or_default().contains("Invalid"), "{points_at}");
    if backend == Backend::Sqlite {
        tab.viewport(390, 844, true).await;
        keep_screenshot("sign-in-error-phone.png", &tab.screenshot().await, 390);
    }

    // The right password on the same page still works.
    sign_in(&tab, "user", PASSWORD).await;
    tab.wait_for_url(&site.url("/callback")).await;
    assert!(!tab.text("#code").await.is_empty());
    chromium.close().await;
});

db_test!(async fn chromium_continues_a_session_for_a_public_client_and_signs_out(backend) {
    let (app, admin, _tap) = spawn_tapped_with_admin(backend, |_| {}).await;
    let site = Site::start().await;
    let spa = register_client(
        &app,
        &admin,
        json!({
            "client_name": "Notes SPA",
            "redirect_uris": [site.url("/callback"), site.url("/signed-out")],
            "grant_types": ["authorization_code", "refresh_token"],
            "scope": "openid profile",
            "token_endpoint_auth_method": "none",
        }),
    )
    .await;
    let Some(chromium) = Chromium::launch().await else { return };
    let tab = chromium.page().await;
    let (_, challenge) = pkce_pair();
    let url = authorize_url(&app, &spa, &site, &challenge);

    // First visit: the form.
    tab.goto(&url).await;
    sign_in(&tab, "user", PASSWORD).await;
    tab.wait_for_url(&site.url("/callback")).await;
    let first = tab.text("#code").await;

    // Second visit: a public client gets "Continue as user" (RFC 8252 §8.6).
    tab.goto(&url).await;
    tab.wait_for("document.body.innerText.includes('Continue as user')").await;
    if backend == Backend::Sqlite {
        tab.viewport(390, 844, true).await;
        keep_screenshot("continue-phone.png", &tab.screenshot().await, 390);
        tab.viewport(1280, 800, false).await;
    }
    tab.click("button[type=submit]").await;
    tab.wait_for_url(&site.url("/callback")).await;
    let second = tab.text("#code").await;
    assert!(!second.is_empty() && second != first, "a fresh code for the confirmed session");

    // RP-initiated logout without a hint: the user confirms on a page.
    let mut logout = url::Url::parse(&issuer_url(&app, "/oauth/logout")).unwrap();
    logout
        .query_pairs_mut()
        .append_pair("client_id", &spa.id)
        .append_pair("post_logout_redirect_uri", &site.url("/signed-out"))
        .append_pair("state", "bye");
    tab.goto(logout.as_str()).await;
    tab.wait_for("document.querySelector('form button')").await;
    tab.click("form button").await;
    tab.wait_for_url(&site.url("/signed-out")).await;
    assert_eq!(tab.text("#state").await, "bye");
    let confirm = tab.network.answered("POST", &issuer_url(&app, "/oauth/logout")).await.expect("the confirmation POST");
    confirm.expect_status(302);

    // Signed out: the next authorization shows the form again.
    tab.goto(&url).await;
    tab.wait_for_element("#password").await;
    chromium.close().await;
});

db_test!(async fn chromium_signs_in_over_https_with_secure_cookies(backend) {
    let (app, admin) = oauth_support::spawn_with_admin_tls(backend).await;
    let site = Site::start().await;
    let client = gallery(&app, &admin, &site).await;
    let Some(chromium) =
        Chromium::launch_with(LaunchOptions { trusted_spki: vec![app.tls_spki.clone().unwrap()] }).await
    else {
        return;
    };
    let tab = chromium.page().await;
    let (_, challenge) = pkce_pair();
    tab.goto(&authorize_url(&app, &client, &site, &challenge)).await;
    assert!(app.state.issuer().starts_with("https://localhost:"));

    sign_in(&tab, "user", PASSWORD).await;
    tab.wait_for_url(&site.url("/callback")).await;
    assert!(!tab.text("#code").await.is_empty());

    let cookies = chromium.cookies().await;
    let ours: Vec<_> = cookies.iter().filter(|c| c.domain == "localhost").collect();
    assert!(!ours.is_empty(), "latchkey set its cookies: {cookies:?}");
    for cookie in ours {
        assert!(cookie.secure && cookie.http_only, "{cookie:?}");
        assert!(cookie.name.starts_with("__Host-"), "{}", cookie.name);
    }
    let post = tab.network.answered("POST", &issuer_url(&app, "/oauth/authorize")).await.unwrap();
    post.expect_status(303);
    assert_eq!(post.headers.get("origin"), Some(&origin_of(app.state.issuer())));
    chromium.close().await;
});

db_test!(async fn a_page_on_another_origin_cannot_post_the_sign_in_form(backend) {
    let (app, admin, tap) = spawn_tapped_with_admin(backend, |_| {}).await;
    let site = Site::start().await;
    let client = gallery(&app, &admin, &site).await;
    let Some(chromium) = Chromium::launch().await else { return };
    let tab = chromium.page().await;
    let (_, challenge) = pkce_pair();

    // The victim's browser has a CSRF cookie from visiting the page. Give the
    // attacker even the matching form token (as if it had leaked), so only
    // the Origin / Sec-Fetch-Site check stands in the way.
    tab.goto(&authorize_url(&app, &client, &site, &challenge)).await;
    tab.wait_for_element("#username").await;
    let fields = tab
        .eval(
            "JSON.stringify(Object.fromEntries([...document.querySelectorAll('form input[type=hidden]')].map(i => [i.name, i.value])))",
        )
        .await;
    let mut fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(fields.as_str().unwrap()).unwrap();
    fields.insert("username".into(), json!("user"));
    fields.insert("password".into(), json!(PASSWORD));
    let inputs: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                latchkey::http::html::escape(k),
                latchkey::http::html::escape(v.as_str().unwrap())
            )
        })
        .collect();
    // Another port on the same host: another origin, but the same site, so
    // SameSite=Lax cookies still go along.
    let evil = Site::start().await;
    evil.page(
        "/evil.html",
        format!(
            "<!doctype html><form id=f method=post action=\"{}\">{inputs}</form><script>document.getElementById('f').submit()</script>",
            issuer_url(&app, "/oauth/authorize")
        ),
    );

    tab.goto(&evil.url("/evil.html")).await;
    tab.wait_for_url(&issuer_url(&app, "/oauth/authorize")).await;
    tab.wait_for("document.querySelector('#page-error')").await;

    let post = tap.last("POST", "/oauth/authorize").expect("the forged POST arrived");
    eprintln!("forged POST as it arrived: {:#?}", post.headers);
    assert_eq!(post.headers.get("origin"), Some(&evil.origin), "Chromium names the forging origin");
    assert_eq!(post.headers.get("sec-fetch-site").map(String::as_str), Some("same-site"));
    assert!(post.headers.get("cookie").is_some_and(|c| c.contains("lk_csrf=")), "the cookie went along");
    let status = tab.network.answered("POST", &issuer_url(&app, "/oauth/authorize")).await.unwrap();
    status.expect_status(403);
    assert!(tab.network.last("GET", &site.url("/callback")).is_none(), "no code was issued");
    chromium.close().await;
});
