//! Bad input gets a clear 4xx with the documented body, never a 500, and
//! changes nothing.

use latchkey::entities::{refresh_families, users};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;

use crate::db_test;
use crate::helpers::{TestApp, assert_error};

async fn user_count(app: &TestApp) -> u64 {
    users::Entity::find().count(&app.state.db).await.unwrap()
}

db_test!(async fn duplicate_usernames_differing_in_case_or_unicode_form_conflict(backend) {
    let app = TestApp::spawn(backend).await;
    app.create_user("Alice", "correct horse battery").await;
    app.create_user("José", "correct horse battery").await;

    for duplicate in ["alice", "ALICE", "Ａｌｉｃｅ", "aLIce", "Jose\u{301}", "JOSÉ"] {
        let resp = app.register(duplicate, "another password").await;
        assert_error(resp, 409, "username_taken").await;
    }
    assert_eq!(user_count(&app).await, 2);
});

db_test!(async fn invalid_registrations_are_refused_with_the_error_body(backend) {
    let app = TestApp::spawn(backend).await;

    let cases = [
        (json!({"username": "bob", "password": "short"}), "validation_failed"),
        (json!({"username": "b", "password": "long enough pw"}), "validation_failed"),
        (json!({"username": "bo\u{200B}b", "password": "long enough pw"}), "validation_failed"),
        (json!({"username": "bob", "password": "long enough pw", "email": "not-an-email"}), "validation_failed"),
        (json!({"username": "bob", "password": "x".repeat(300)}), "validation_failed"),
        (json!({"username": "bob"}), "invalid_request"),
        (json!({"username": ["bob"], "password": "long enough pw"}), "invalid_request"),
        // Mass assignment: a user cannot give themselves roles.
        (json!({"username": "bob", "password": "long enough pw", "roles": ["admin"]}), "invalid_request"),
    ];
    for (body, code) in cases {
        let resp = app.post_json("/auth/register", &body).await;
        assert_error(resp, 400, code).await;
    }
    assert_eq!(user_count(&app).await, 0, "nothing was created");
});

db_test!(async fn malformed_requests_get_json_errors(backend) {
    let app = TestApp::spawn(backend).await;
    let url = app.url("/auth/login");

    let resp = app.client.post(&url).header("content-type", "application/json").body("{not json").send().await.unwrap();
    assert_error(resp, 400, "invalid_request").await;

    let resp = app.client.post(&url).header("content-type", "text/plain").body("hello").send().await.unwrap();
    assert_error(resp, 415, "unsupported_media_type").await;

    let resp = app.client.post(&url).send().await.unwrap();
    assert_error(resp, 415, "unsupported_media_type").await;

    let resp = app.get("/no/such/endpoint").await;
    assert_error(resp, 404, "not_found").await;

    let resp = app.client.delete(&url).send().await.unwrap();
    assert_error(resp, 405, "method_not_allowed").await;

    // A huge password at login is refused before hashing.
    let resp = app.post_json("/auth/login", &json!({"username": "x", "password": "p".repeat(5000)})).await;
    assert_error(resp, 400, "invalid_request").await;
    let resp = app.post_json("/auth/login", &json!({"username": "x", "password": "p".repeat(1000) + "ééééééééééééé"})).await;
    assert_error(resp, 400, "validation_failed").await;
});

db_test!(async fn oversized_bodies_are_refused_with_413(backend) {
    let app = TestApp::spawn(backend).await;
    let huge = "x".repeat(2 * 1024 * 1024);
    let body = format!("{{\"username\":\"bob\",\"password\":\"{huge}\"}}");

    // With a Content-Length.
    let resp = app
        .client
        .post(app.url("/auth/register"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_error(resp, 413, "payload_too_large").await;

    // Chunked, without a Content-Length.
    let stream = futures_util::stream::iter(
        body.into_bytes().chunks(64 * 1024).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>(),
    );
    let resp = app
        .client
        .post(app.url("/auth/register"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_error(resp, 413, "payload_too_large").await;
    assert_eq!(user_count(&app).await, 0);
});

db_test!(async fn bearer_errors_carry_the_rfc_6750_challenge(backend) {
    let app = TestApp::spawn(backend).await;

    let resp = app.get("/auth/me").await;
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert_error(resp, 401, "unauthorized").await;
    assert_eq!(challenge, "Bearer realm=\"latchkey\"");

    for garbage in ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", &"x".repeat(10_000)] {
        let resp = app.get_with_token("/auth/me", garbage).await;
        let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert_error(resp, 401, "invalid_token").await;
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }
});

db_test!(async fn closed_registration_is_refused(backend) {
    let app = TestApp::builder(backend).configure(|s| s.allow_registration = false).spawn().await;
    let resp = app.register("bob", "long enough pw").await;
    assert_error(resp, 403, "registration_closed").await;
    assert_eq!(user_count(&app).await, 0);
    assert_eq!(refresh_families::Entity::find().count(&app.state.db).await.unwrap(), 0);
});

db_test!(async fn every_response_has_safe_default_headers(backend) {
    let app = TestApp::spawn(backend).await;
    app.create_user("gina", "correct horse battery").await;
    let resp = app.login("gina", "correct horse battery").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store", "token responses must not be cached (RFC 6749 §5.1)");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
});

// The browser pages document HTML errors: a request poem refuses before the
// handler runs (no form body, a body that is not a form) gets the error page
// with the page's headers, not a JSON body (found by the schemathesis run).
db_test!(async fn malformed_requests_to_browser_pages_get_an_html_error_page(backend) {
    let app = TestApp::spawn(backend).await;
    for path in ["/oauth/authorize", "/oauth/logout"] {
        let url = app.url(path);
        let requests = [
            app.client.post(&url),
            app.client.post(&url).header("content-type", "application/json").body("{}"),
        ];
        for request in requests {
            let resp = request.send().await.unwrap();
            assert_eq!(resp.status(), 400, "{path}");
            let headers = resp.headers().clone();
            assert_eq!(headers["content-type"], "text/html; charset=utf-8", "{path}");
            assert!(headers.contains_key("content-security-policy"), "{path}");
            assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
            let page = resp.text().await.unwrap();
            assert!(page.starts_with("<!doctype html>"), "{page}");
            assert!(page.contains("This request cannot be handled"), "{page}");
        }
    }
});
