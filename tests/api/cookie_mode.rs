//! Cookie mode for `/auth/*`: the refresh token in an HttpOnly cookie, the
//! same rotation and reuse rules, and the Origin check that keeps it from
//! being a CSRF target.

use std::time::Duration;

use latchkey::entities::refresh_families;
use reqwest::Response;
use reqwest::header::HeaderMap;
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::{Backend, TestApp, assert_error};

const APP: &str = "http://app.test:5173";
const PASSWORD: &str = "correct horse battery";

/// An app that lists [`APP`]; with `https`, an https issuer (the cookie's
/// attributes depend only on the issuer, so no TLS is needed).
async fn spawn(backend: Backend, https: bool) -> TestApp {
    let app = TestApp::builder(backend)
        .configure(move |s| {
            s.cors_origins = vec![APP.to_owned()];
            if https {
                s.issuer = Some("https://id.test".to_owned());
            }
        })
        .spawn()
        .await;
    app.create_user("erin", PASSWORD).await;
    app
}

/// A POST as a browser would send it: JSON, with `Origin` and `Cookie` as given.
async fn post(
    app: &TestApp,
    path: &str,
    origin: Option<&str>,
    cookie: Option<&str>,
    body: Value,
) -> Response {
    let mut req = app.client.post(app.url(path)).json(&body);
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    req.send().await.unwrap()
}

async fn cookie_login(app: &TestApp, origin: Option<&str>) -> Response {
    let body = json!({"username": "erin", "password": PASSWORD, "token_delivery": "cookie"});
    post(app, "/auth/login", origin, None, body).await
}

/// A parsed `Set-Cookie`: name, value, attributes as written.
struct SetCookie {
    name: String,
    value: String,
    attributes: Vec<String>,
}

impl SetCookie {
    fn has(&self, attribute: &str) -> bool {
        self.attributes.iter().any(|a| a.eq_ignore_ascii_case(attribute))
    }

    /// `name=value`, for a `Cookie` header.
    fn pair(&self) -> String {
        format!("{}={}", self.name, self.value)
    }
}

fn set_cookie(headers: &HeaderMap) -> Option<SetCookie> {
    let all: Vec<_> = headers.get_all("set-cookie").iter().collect();
    assert!(all.len() <= 1, "one Set-Cookie at most: {all:?}");
    let line = all.first()?.to_str().unwrap();
    let mut parts = line.split(';').map(str::trim);
    let (name, value) = parts.next().unwrap().split_once('=').unwrap();
    Some(SetCookie { name: name.into(), value: value.into(), attributes: parts.map(str::to_owned).collect() })
}

/// Status 200, a JSON body without `refresh_token`, and the refresh cookie.
async fn cookie_tokens(resp: Response) -> (Value, SetCookie) {
    assert_eq!(resp.status(), 200);
    let cookie = set_cookie(resp.headers()).expect("Set-Cookie");
    let body: Value = resp.json().await.unwrap();
    assert!(body["access_token"].is_string());
    assert!(body.get("refresh_token").is_none(), "no refresh_token in the body: {body}");
    (body, cookie)
}

async fn families(app: &TestApp) -> Vec<refresh_families::Model> {
    refresh_families::Entity::find().all(&app.state.db).await.unwrap()
}

db_test!(async fn cookie_mode_login_sets_an_httponly_strict_cookie_on_auth_and_leaves_the_body_token_out(backend) {
    let app = spawn(backend, false).await;

    let resp = cookie_login(&app, Some(APP)).await;

    assert_eq!(resp.headers()["access-control-allow-origin"], APP);
    assert_eq!(resp.headers()["access-control-allow-credentials"], "true");
    let (body, cookie) = cookie_tokens(resp).await;
    assert_eq!(cookie.name, "lk_refresh");
    for attribute in ["Path=/auth", "HttpOnly", "SameSite=Strict", "Max-Age=2592000"] {
        assert!(cookie.has(attribute), "{attribute} in {:?}", cookie.attributes);
    }
    assert!(!cookie.has("Secure"), "plain http issuer: no Secure");
    assert!(app.state.refresh_codec.decode(&cookie.value).is_some(), "the cookie holds a refresh token");
    let me = app.get_with_token("/auth/me", body["access_token"].as_str().unwrap()).await;
    assert_eq!(me.status(), 200);
});

db_test!(async fn over_https_the_cookie_is_secure_and_host_prefixed_and_the_issuer_origin_is_allowed(backend) {
    let app = spawn(backend, true).await;

    let (_, cookie) = cookie_tokens(cookie_login(&app, Some(APP)).await).await;
    assert_eq!(cookie.name, "__Host-lk_refresh");
    for attribute in ["Secure", "Path=/", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.has(attribute), "{attribute} in {:?}", cookie.attributes);
    }

    // latchkey's own origin needs no listing; its refresh uses the prefixed name.
    let (_, own) = cookie_tokens(cookie_login(&app, Some("https://id.test")).await).await;
    let resp = post(&app, "/auth/refresh", Some("https://id.test"), Some(&own.pair()), json!({"token_delivery": "cookie"}))
        .await;
    let (_, rotated) = cookie_tokens(resp).await;
    assert_eq!(rotated.name, "__Host-lk_refresh");
    // The unprefixed name is not the cookie over https.
    let unprefixed = format!("lk_refresh={}", rotated.value);
    let resp = post(&app, "/auth/refresh", Some(APP), Some(&unprefixed), json!({"token_delivery": "cookie"})).await;
    assert_error(resp, 401, "invalid_refresh_token").await;
});

db_test!(async fn refresh_via_the_cookie_rotates_and_sets_a_new_cookie(backend) {
    let app = spawn(backend, false).await;
    let (_, c0) = cookie_tokens(cookie_login(&app, Some(APP)).await).await;

    let resp = post(&app, "/auth/refresh", Some(APP), Some(&c0.pair()), json!({"token_delivery": "cookie"})).await;

    assert_eq!(resp.headers()["access-control-allow-origin"], APP);
    let (body, c1) = cookie_tokens(resp).await;
    assert_eq!(c1.name, "lk_refresh");
    assert_ne!(c1.value, c0.value, "rotated");
    assert!(c1.has("HttpOnly") && c1.has("Path=/auth") && c1.has("SameSite=Strict"));
    let me = app.get_with_token("/auth/me", body["access_token"].as_str().unwrap()).await;
    assert_eq!(me.status(), 200);
    let rows = families(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].counter, 1);
    // The new cookie refreshes again.
    let resp = post(&app, "/auth/refresh", Some(APP), Some(&c1.pair()), json!({"token_delivery": "cookie"})).await;
    cookie_tokens(resp).await;
});

db_test!(async fn an_old_cookie_replayed_after_the_grace_window_is_reuse_and_ends_the_family(backend) {
    let app = spawn(backend, false).await;
    let (_, c0) = cookie_tokens(cookie_login(&app, Some(APP)).await).await;
    let refresh = |cookie: String| {
        let app = &app;
        async move { post(app, "/auth/refresh", Some(APP), Some(&cookie), json!({"token_delivery": "cookie"})).await }
    };
    let (_, c1) = cookie_tokens(refresh(c0.pair()).await).await;

    // Inside the grace window the previous cookie converges on the current token.
    app.advance(Duration::from_secs(2));
    let (_, again) = cookie_tokens(refresh(c0.pair()).await).await;
    assert_eq!(again.value, c1.value);

    // After it, the old cookie is reuse: the whole family ends.
    app.advance(Duration::from_secs(6));
    assert_error(refresh(c0.pair()).await, 401, "refresh_token_reused").await;
    assert_error(refresh(c1.pair()).await, 401, "invalid_refresh_token").await;
    let rows = families(&app).await;
    assert_eq!(rows[0].revoked_reason.as_deref(), Some("reuse_detected"));
});

db_test!(async fn logout_via_the_cookie_ends_the_family_and_clears_the_cookie(backend) {
    let app = spawn(backend, false).await;
    let (_, c0) = cookie_tokens(cookie_login(&app, Some(APP)).await).await;

    let resp = post(&app, "/auth/logout", Some(APP), Some(&c0.pair()), json!({"token_delivery": "cookie"})).await;

    assert_eq!(resp.status(), 204);
    let cleared = set_cookie(resp.headers()).expect("Set-Cookie clears the cookie");
    assert_eq!(cleared.name, "lk_refresh");
    assert_eq!(cleared.value, "");
    assert!(cleared.has("Max-Age=0") && cleared.has("Path=/auth"), "{:?}", cleared.attributes);
    assert_eq!(families(&app).await[0].revoked_reason.as_deref(), Some("logout"));
    let resp = post(&app, "/auth/refresh", Some(APP), Some(&c0.pair()), json!({"token_delivery": "cookie"})).await;
    assert_error(resp, 401, "invalid_refresh_token").await;
    // Idempotent, with or without a cookie.
    let resp = post(&app, "/auth/logout", Some(APP), None, json!({"token_delivery": "cookie"})).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(set_cookie(resp.headers()).unwrap().value, "");
});

db_test!(async fn a_cookie_mode_request_from_a_foreign_or_missing_origin_is_refused_and_changes_nothing(backend) {
    let app = spawn(backend, false).await;
    let (_, c0) = cookie_tokens(cookie_login(&app, Some(APP)).await).await;
    let before = families(&app).await;

    for origin in [None, Some("https://evil.test"), Some("null"), Some("http://app.test:5174"), Some("http://app.test")] {
        let what = format!("Origin {origin:?}");
        let resp = cookie_login(&app, origin).await;
        assert!(set_cookie(resp.headers()).is_none(), "{what}");
        assert_error(resp, 403, "origin_not_allowed").await;
        for path in ["/auth/refresh", "/auth/logout"] {
            // In cookie mode, and in body mode while carrying the cookie.
            for body in [json!({"token_delivery": "cookie"}), json!({"refresh_token": c0.value})] {
                let resp = post(&app, path, origin, Some(&c0.pair()), body).await;
                assert!(set_cookie(resp.headers()).is_none(), "{what} {path}");
                assert_error(resp, 403, "origin_not_allowed").await;
            }
        }
        // Cookie mode without the cookie is refused by the same check.
        let resp = post(&app, "/auth/refresh", origin, None, json!({"token_delivery": "cookie"})).await;
        assert_error(resp, 403, "origin_not_allowed").await;
    }

    // Nothing changed: no new session, no rotation, no revocation.
    assert_eq!(families(&app).await, before);
    let resp = post(&app, "/auth/refresh", Some(APP), Some(&c0.pair()), json!({"token_delivery": "cookie"})).await;
    cookie_tokens(resp).await;
});

db_test!(async fn a_text_plain_post_carrying_the_cookie_is_refused_by_the_origin_check(backend) {
    let app = spawn(backend, false).await;
    let (_, c0) = cookie_tokens(cookie_login(&app, Some(APP)).await).await;
    let before = families(&app).await;
    // What a same-site page can send with fetch(..., {mode: "no-cors", credentials: "include"}).
    let simple = |path: &'static str, origin: Option<&'static str>| {
        let mut req = app
            .client
            .post(app.url(path))
            .header("content-type", "text/plain;charset=UTF-8")
            .header("cookie", c0.pair())
            .body(r#"{"token_delivery":"cookie"}"#);
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        req.send()
    };

    for path in ["/auth/refresh", "/auth/logout"] {
        for origin in [Some("http://app.test:5174"), None] {
            let resp = simple(path, origin).await.unwrap();
            assert_error(resp, 403, "origin_not_allowed").await;
        }
        // From the listed origin the request shape is still wrong.
        let resp = simple(path, Some(APP)).await.unwrap();
        assert_error(resp, 415, "unsupported_media_type").await;
    }
    assert_eq!(families(&app).await, before);
});

db_test!(async fn cookie_mode_takes_the_token_only_from_the_cookie_and_body_mode_only_from_the_body(backend) {
    let app = spawn(backend, false).await;
    let (_, c0) = cookie_tokens(cookie_login(&app, Some(APP)).await).await;

    for path in ["/auth/refresh", "/auth/logout"] {
        // Cookie mode with a token in the body.
        let body = json!({"token_delivery": "cookie", "refresh_token": c0.value});
        let resp = post(&app, path, Some(APP), Some(&c0.pair()), body).await;
        assert_error(resp, 400, "validation_failed").await;
        // Body mode without one (the cookie does not count).
        let resp = post(&app, path, Some(APP), Some(&c0.pair()), json!({})).await;
        assert_error(resp, 400, "validation_failed").await;
        let resp = post(&app, path, None, None, json!({"token_delivery": "body"})).await;
        assert_error(resp, 400, "validation_failed").await;
    }
    // Cookie mode without a cookie, or with two (one tossed by a sibling subdomain).
    let resp = post(&app, "/auth/refresh", Some(APP), None, json!({"token_delivery": "cookie"})).await;
    assert_error(resp, 401, "invalid_refresh_token").await;
    let two = format!("lk_refresh=tossed; {}", c0.pair());
    let resp = post(&app, "/auth/refresh", Some(APP), Some(&two), json!({"token_delivery": "cookie"})).await;
    assert_error(resp, 401, "invalid_refresh_token").await;
    let resp = post(&app, "/auth/refresh", Some(APP), None, json!({"token_delivery": "sideways"})).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(families(&app).await[0].counter, 0, "nothing rotated");
});

db_test!(async fn body_mode_is_unchanged(backend) {
    let app = spawn(backend, false).await;

    for delivery in [json!({}), json!({"token_delivery": "body"})] {
        let mut login = json!({"username": "erin", "password": PASSWORD});
        login.as_object_mut().unwrap().extend(delivery.as_object().unwrap().clone());
        let resp = post(&app, "/auth/login", Some(APP), None, login).await;
        assert_eq!(resp.status(), 200);
        assert!(set_cookie(resp.headers()).is_none());
        let t0: Value = resp.json().await.unwrap();
        let rt0 = t0["refresh_token"].as_str().expect("refresh_token in the body");

        // No Origin needed without the cookie.
        let resp = post(&app, "/auth/refresh", None, None, json!({"refresh_token": rt0})).await;
        assert_eq!(resp.status(), 200);
        assert!(set_cookie(resp.headers()).is_none());
        let t1: Value = resp.json().await.unwrap();
        let rt1 = t1["refresh_token"].as_str().unwrap();
        assert_ne!(rt1, rt0);

        let resp = post(&app, "/auth/logout", None, None, json!({"refresh_token": rt1})).await;
        assert_eq!(resp.status(), 204);
        assert!(set_cookie(resp.headers()).is_none());
        assert_error(app.refresh(rt1).await, 401, "invalid_refresh_token").await;
    }
});

db_test!(async fn the_admin_scope_is_never_delivered_in_a_cookie(backend) {
    let app = spawn(backend, false).await;
    app.create_user_with_roles_admin().await;

    let resp = post(
        &app,
        "/auth/login",
        Some(APP),
        None,
        json!({"username": "admin", "password": "admin password 1", "scope": "latchkey:admin", "token_delivery": "cookie"}),
    )
    .await;

    assert!(resp.headers().get("set-cookie").is_none(), "no cookie is set");
    assert_error(resp, 400, "invalid_request").await;
});
