//! Cookie mode of the JSON API in a real Chromium: the example page signs in,
//! refreshes and signs out with the refresh token in an HttpOnly cookie, and
//! a page on the same site but another origin cannot use that cookie.

use serde_json::json;

use crate::browser::{Chromium, Site, WireTap, issuer_url, spawn_tapped_with_admin};
use crate::db_test;
use crate::helpers::TestApp;
use crate::oauth_support::PASSWORD;
use crate::spa_support::SpaServer;

/// latchkey (behind a wire tap) allowing the SPA server's origin, a user,
/// and the SPA server.
async fn setup(backend: crate::helpers::Backend) -> (TestApp, WireTap, SpaServer) {
    let spa = SpaServer::bind().await;
    let origin = spa.origin.clone();
    let (app, _admin, tap) = spawn_tapped_with_admin(backend, move |s| s.cors_origins = vec![origin]).await;
    // The cookie page needs no OAuth client and no tasks API.
    let spa = spa.serve(app.state.issuer(), "unused", "http://127.0.0.1:9");
    (app, tap, spa)
}

/// The refresh cookie as the browser holds it.
async fn refresh_cookie(
    chromium: &Chromium,
) -> Option<chromiumoxide::cdp::browser_protocol::network::Cookie> {
    chromium.cookies().await.into_iter().find(|c| c.name.ends_with("lk_refresh"))
}

/// Sign in on the cookie-mode page.
async fn sign_in(tab: &crate::browser::Tab, spa: &SpaServer) {
    tab.goto(&spa.url("/cookie.html")).await;
    tab.fill("#username", "user").await;
    tab.fill("#password", PASSWORD).await;
    tab.click("#login").await;
    tab.wait_for("document.querySelector('#me') && document.querySelector('#me').innerText.includes('user')")
        .await;
}

db_test!(async fn the_cookie_mode_page_signs_in_refreshes_and_signs_out(backend) {
    let (app, tap, spa) = setup(backend).await;
    let Some(chromium) = Chromium::launch().await else { return };
    let tab = chromium.page().await;

    // Sign in: the refresh token arrives as an HttpOnly cookie.
    sign_in(&tab, &spa).await;
    let cookie = refresh_cookie(&chromium).await.expect("the refresh cookie is set");
    assert!(cookie.http_only, "{cookie:?}");
    assert_eq!(cookie.path, "/auth");
    assert_eq!(format!("{:?}", cookie.same_site), "Some(Strict)");
    assert_eq!(tab.eval("document.cookie.includes('lk_refresh')").await, json!(false));
    let login = tab.network.answered("POST", &issuer_url(&app, "/auth/login")).await.unwrap();
    login.expect_status(200);
    assert_eq!(tap.last("POST", "/auth/login").unwrap().headers.get("origin"), Some(&spa.origin));

    // Refresh with the cookie: it rotates.
    tab.click("#refresh").await;
    tab.wait_for("document.querySelector('#refresh-count').innerText.trim() === '1'").await;
    let refresh = tab.network.answered("POST", &issuer_url(&app, "/auth/refresh")).await.unwrap();
    refresh.expect_status(200);
    let wire = tap.last("POST", "/auth/refresh").unwrap();
    assert!(wire.headers.get("cookie").is_some_and(|c| c.contains("lk_refresh=")), "{wire:?}");
    assert_eq!(wire.headers.get("origin"), Some(&spa.origin));
    let rotated = refresh_cookie(&chromium).await.expect("a rotated cookie");
    assert_ne!(rotated.value, cookie.value, "the refresh token rotated");
    // The user still shows after the refresh (the new access token works).
    assert!(tab.text("#me").await.contains("user"));

    // Sign out: the session ends and the cookie is gone.
    tab.click("#logout").await;
    tab.wait_for("!document.querySelector('#status').innerText.includes('Signed in')").await;
    let logout = tab.network.answered("POST", &issuer_url(&app, "/auth/logout")).await.unwrap();
    logout.expect_status(204);
    assert!(refresh_cookie(&chromium).await.is_none(), "logout clears the cookie");

    // The rotated token no longer works anywhere.
    let resp = app.refresh(&rotated.value).await;
    assert_eq!(resp.status(), 401, "the session is over");
    chromium.close().await;
});

db_test!(async fn a_same_site_page_on_another_origin_cannot_use_the_refresh_cookie(backend) {
    let (app, tap, spa) = setup(backend).await;
    let Some(chromium) = Chromium::launch().await else { return };
    let tab = chromium.page().await;
    sign_in(&tab, &spa).await;
    let cookie = refresh_cookie(&chromium).await.expect("signed in");

    // Another port on the same host: same site, so SameSite=Strict still
    // sends the cookie; only the Origin check and CORS stand in the way.
    let evil = Site::start().await;
    let refresh = issuer_url(&app, "/auth/refresh");
    evil.page(
        "/evil.html",
        format!(
            r#"<!doctype html><title>evil</title><p id="out">running</p><script>
const url = {refresh};
const body = JSON.stringify({{token_delivery: "cookie"}});
(async () => {{
  const results = [];
  // 1. A JSON request needs a preflight, which latchkey answers without CORS headers.
  try {{
    const r = await fetch(url, {{method: "POST", credentials: "include", headers: {{"content-type": "application/json"}}, body}});
    results.push("cors:" + r.status);
  }} catch (e) {{ results.push("cors:blocked"); }}
  // 2. A simple (no-cors, text/plain) request goes out without a preflight.
  try {{
    await fetch(url, {{method: "POST", mode: "no-cors", credentials: "include", body}});
    results.push("simple:sent");
  }} catch (e) {{ results.push("simple:error"); }}
  document.getElementById("out").textContent = results.join(" ");
}})();
</script>"#,
            refresh = crate::browser::js_string(&refresh)
        ),
    );
    let attack = chromium.page().await;
    attack.goto(&evil.url("/evil.html")).await;
    attack.wait_for("document.getElementById('out').textContent !== 'running'").await;

    // The JSON request never got past the preflight.
    let out = attack.text("#out").await;
    assert!(out.contains("cors:blocked"), "{out}");
    // The simple request reached latchkey with the cookie and was refused by
    // the Origin check.
    let simple = attack.network.answered("POST", &refresh).await.expect("the simple request was sent");
    simple.expect_status(403);
    let wire = tap.last("POST", "/auth/refresh").expect("the simple request arrived");
    assert_eq!(wire.headers.get("origin"), Some(&evil.origin));
    assert_eq!(wire.headers.get("sec-fetch-site").map(String::as_str), Some("same-site"));
    assert!(wire.headers.get("cookie").is_some_and(|c| c.contains("lk_refresh=")), "{wire:?}");
    // The JSON attempt never arrived: its preflight got no CORS headers.
    assert!(
        tap.all().iter().any(|r| r.method == "OPTIONS" && r.target == "/auth/refresh"),
        "the preflight arrived"
    );

    // Nothing rotated: the cookie is unchanged and still works on the real page.
    assert_eq!(refresh_cookie(&chromium).await.unwrap().value, cookie.value);
    attack.page.close().await.unwrap();
    tab.page.bring_to_front().await.unwrap();
    tab.click("#refresh").await;
    tab.wait_for("document.querySelector('#refresh-count').innerText.trim() === '1'").await;
    tab.network.answered("POST", &refresh).await.unwrap().expect_status(200);

    chromium.close().await;
});
