//! CORS: public documents for everyone, credentialed endpoints for listed
//! origins only, the admin API for its own list, preflights with a max-age.

use reqwest::header::HeaderMap;
use reqwest::{Method, Response};
use serde_json::json;

use crate::db_test;
use crate::helpers::{Backend, TestApp};

const APP: &str = "http://app.test:5173";
const ADMIN_CONSOLE: &str = "https://console.test";
const STRANGER: &str = "https://evil.test";

async fn spawn(backend: Backend, admin_origins: Vec<String>) -> TestApp {
    TestApp::builder(backend)
        .configure(move |s| {
            s.cors_origins = vec![APP.to_owned()];
            s.admin_cors_origins = admin_origins;
        })
        .spawn()
        .await
}

async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> Response {
    app.client
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "content-type, authorization")
        .send()
        .await
        .unwrap()
}

async fn from_origin(app: &TestApp, method: Method, path: &str, origin: &str) -> Response {
    let req = app.client.request(method.clone(), app.url(path)).header("origin", origin);
    let req = if method == Method::POST { req.json(&json!({})) } else { req };
    req.send().await.unwrap()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

fn varies_on_origin(headers: &HeaderMap) -> bool {
    headers
        .get_all("vary")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("origin"))
}

/// No CORS grant at all (a `Vary: Origin` is fine).
fn assert_no_cors(headers: &HeaderMap, what: &str) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-expose-headers",
        "access-control-max-age",
    ] {
        assert!(headers.get(name).is_none(), "{what}: unexpected {name}: {:?}", headers.get(name));
    }
}

/// The credentialed grant for exactly `origin`.
/// The admin API: the exact origin, bearer tokens only (no credentials).
fn assert_admin_for(headers: &HeaderMap, origin: &str, what: &str) {
    assert_eq!(header(headers, "access-control-allow-origin"), Some(origin), "{what}");
    assert_eq!(header(headers, "access-control-allow-credentials"), None, "{what}");
    assert!(varies_on_origin(headers), "{what}: Vary: Origin");
}

fn assert_credentialed_for(headers: &HeaderMap, origin: &str, what: &str) {
    assert_eq!(header(headers, "access-control-allow-origin"), Some(origin), "{what}");
    assert_eq!(header(headers, "access-control-allow-credentials"), Some("true"), "{what}");
    assert!(varies_on_origin(headers), "{what}: Vary: Origin");
}

db_test!(async fn discovery_and_the_jwks_allow_any_origin_without_credentials(backend) {
    let app = spawn(backend, Vec::new()).await;
    for path in ["/.well-known/jwks.json", "/.well-known/openid-configuration"] {
        // Arrange/Act: from an unlisted origin, and with no Origin at all (a
        // shared cache must be able to serve one copy to everyone).
        let resp = from_origin(&app, Method::GET, path, STRANGER).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(header(resp.headers(), "access-control-allow-origin"), Some("*"), "{path}");
        assert!(resp.headers().get("access-control-allow-credentials").is_none(), "{path}: no credentials");
        let resp = app.get(path).await;
        assert_eq!(header(resp.headers(), "access-control-allow-origin"), Some("*"), "{path} without Origin");

        let resp = preflight(&app, path, STRANGER, "GET").await;
        assert_eq!(resp.status(), 204, "{path} preflight");
        let h = resp.headers();
        assert_eq!(header(h, "access-control-allow-origin"), Some("*"));
        assert!(h.get("access-control-allow-credentials").is_none());
        assert!(header(h, "access-control-allow-methods").unwrap().contains("GET"));
        assert_eq!(header(h, "access-control-max-age"), Some("600"));
    }
    // The JWKS stays a cacheable public document.
    let resp = app.get("/.well-known/jwks.json").await;
    assert!(header(resp.headers(), "cache-control").unwrap().contains("public"));
    assert_eq!(header(resp.headers(), "access-control-expose-headers"), Some("etag"));
});

db_test!(async fn a_listed_origin_gets_a_credentialed_preflight_with_a_max_age(backend) {
    let app = spawn(backend, Vec::new()).await;
    for (path, method) in [
        ("/auth/login", "POST"),
        ("/auth/refresh", "POST"),
        ("/auth/me", "GET"),
        ("/auth/sessions/0193", "DELETE"),
        ("/oauth/token", "POST"),
        ("/oauth/revoke", "POST"),
        ("/oauth/userinfo", "GET"),
    ] {
        let resp = preflight(&app, path, APP, method).await;
        assert_eq!(resp.status(), 204, "{path}");
        let h = resp.headers();
        assert_credentialed_for(h, APP, path);
        assert!(header(h, "access-control-allow-methods").unwrap().contains(method), "{path}");
        let allowed_headers = header(h, "access-control-allow-headers").unwrap();
        assert!(allowed_headers.contains("content-type") && allowed_headers.contains("authorization"));
        assert_eq!(header(h, "access-control-max-age"), Some("600"), "{path}");
    }
});

db_test!(async fn a_listed_origin_may_read_responses_and_errors_with_credentials(backend) {
    let app = spawn(backend, Vec::new()).await;
    app.create_user("dana", "correct horse battery").await;

    // A successful JSON API call.
    let resp = app
        .client
        .post(app.url("/auth/login"))
        .header("origin", APP)
        .json(&json!({"username": "dana", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_credentialed_for(resp.headers(), APP, "login");
    let exposed = header(resp.headers(), "access-control-expose-headers").unwrap().to_ascii_lowercase();
    assert!(exposed.contains("www-authenticate") && exposed.contains("retry-after"), "{exposed}");

    // Errors are readable too, so the page can tell why.
    let resp = from_origin(&app, Method::GET, "/oauth/userinfo", APP).await;
    assert_eq!(resp.status(), 401);
    assert_credentialed_for(resp.headers(), APP, "userinfo 401");
    let resp = app
        .client
        .post(app.url("/oauth/token"))
        .header("origin", APP)
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "garbage"), ("client_id", "nobody")])
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error());
    assert_credentialed_for(resp.headers(), APP, "token error");
});

db_test!(async fn an_unlisted_origin_gets_no_cors_headers_on_credentialed_endpoints(backend) {
    let app = spawn(backend, Vec::new()).await;
    for other in [STRANGER, "http://app.test:5174", "https://app.test:5173", "null"] {
        for (path, method) in [
            ("/auth/login", Method::POST),
            ("/auth/refresh", Method::POST),
            ("/oauth/token", Method::POST),
            ("/oauth/revoke", Method::POST),
            ("/oauth/userinfo", Method::GET),
        ] {
            let what = format!("{other} {method} {path}");
            let resp = preflight(&app, path, other, method.as_str()).await;
            assert_no_cors(resp.headers(), &what);
            assert!(varies_on_origin(resp.headers()), "{what}: preflight Vary");
            let resp = from_origin(&app, method, path, other).await;
            assert_no_cors(resp.headers(), &what);
            assert!(varies_on_origin(resp.headers()), "{what}: Vary");
        }
    }
    // Without an Origin header: nothing to grant, but caches still learn
    // that the answer depends on it.
    let resp = app.post_json("/auth/login", &json!({})).await;
    assert_no_cors(resp.headers(), "no Origin");
    assert!(varies_on_origin(resp.headers()));
});

db_test!(async fn the_admin_api_is_closed_to_browsers_unless_its_own_list_names_the_origin(backend) {
    // Arrange: the app's origin is listed for the API, none for the admin API.
    let app = spawn(backend, Vec::new()).await;
    for origin in [APP, ADMIN_CONSOLE] {
        let resp = preflight(&app, "/admin/users", origin, "GET").await;
        assert_no_cors(resp.headers(), origin);
        let resp = from_origin(&app, Method::GET, "/admin/users", origin).await;
        assert_eq!(resp.status(), 401);
        assert_no_cors(resp.headers(), origin);
    }

    // With an admin origin: that origin, and only it.
    let app = spawn(backend, vec![ADMIN_CONSOLE.to_owned()]).await;
    let resp = preflight(&app, "/admin/users/0193", ADMIN_CONSOLE, "PATCH").await;
    assert_eq!(resp.status(), 204);
    assert_admin_for(resp.headers(), ADMIN_CONSOLE, "admin preflight");
    assert!(header(resp.headers(), "access-control-allow-methods").unwrap().contains("PATCH"));
    let resp = from_origin(&app, Method::GET, "/admin/users", ADMIN_CONSOLE).await;
    assert_eq!(resp.status(), 401);
    assert_admin_for(resp.headers(), ADMIN_CONSOLE, "admin 401");
    let resp = preflight(&app, "/admin/users", APP, "GET").await;
    assert_no_cors(resp.headers(), "the API's origin on the admin API");
    // And the admin origin gets nothing on the user-facing API.
    let resp = preflight(&app, "/auth/login", ADMIN_CONSOLE, "POST").await;
    assert_no_cors(resp.headers(), "the admin origin on /auth");
});

db_test!(async fn endpoints_outside_the_policy_never_get_cors_headers(backend) {
    let app = spawn(backend, vec![ADMIN_CONSOLE.to_owned()]).await;
    for (path, method) in [
        ("/oauth/introspect", Method::POST),
        ("/oauth/authorize", Method::GET),
        ("/revocations", Method::GET),
        ("/healthz", Method::GET),
        ("/openapi.json", Method::GET),
    ] {
        let resp = from_origin(&app, method, path, APP).await;
        assert_no_cors(resp.headers(), path);
        let resp = preflight(&app, path, APP, "POST").await;
        assert_ne!(resp.status(), 204, "{path}: no preflight answer");
        assert_no_cors(resp.headers(), path);
    }
});
