//! Text that reaches the database is checked at the edge. PostgreSQL cannot
//! hold a NUL character in `text` (the query fails), SQLite can: without the
//! check the same request answered 500 on one backend and something else on
//! the other. Now every such input answers the same documented 400 (or, where
//! a protocol says how to answer an unknown value, that answer) on both.

use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::{TestApp, assert_error};
use crate::oauth_support::{self, Client, PASSWORD, REDIRECT};

const NUL: &str = "a\u{0}b";

async fn post_form(app: &TestApp, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    app.client.post(app.url(path)).form(form).send().await.unwrap()
}

db_test!(async fn a_nul_in_a_login_username_is_a_bad_request(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;

    // The JSON API's login.
    let resp = app.post_json("/auth/login", &json!({"username": "us\u{0}er", "password": PASSWORD})).await;
    let body = assert_error(resp, 400, "invalid_request").await;
    assert!(body.error_description.contains("NUL"), "{body:?}");
    // The password grant.
    let form = [("grant_type", "password"), ("username", "us\u{0}er"), ("password", PASSWORD)];
    assert_error(oauth_support::token_basic(&app, &client, &form).await, 400, "invalid_request").await;
    // Registration already refused it; it still does.
    let resp = app.post_json("/auth/register", &json!({"username": "us\u{0}er", "password": PASSWORD})).await;
    assert_error(resp, 400, "validation_failed").await;
    // The user can still sign in.
    assert_eq!(app.login("user", PASSWORD).await.status(), 200);
});

db_test!(async fn a_nul_in_the_sign_in_form_is_a_failed_sign_in(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let (_, challenge) = oauth_support::pkce_pair();
    let url = oauth_support::authorize_url(
        &app,
        &client.id,
        &[("code_challenge", &challenge), ("code_challenge_method", "S256")],
    );
    let browser = oauth_support::browser();
    let html = browser.get(&url).send().await.unwrap().text().await.unwrap();
    let (action, mut fields) = oauth_support::parse_form(&html);
    fields.insert("username".into(), "us\u{0}er".into());
    fields.insert("password".into(), PASSWORD.into());
    let origin = oauth_support::origin_of(&action);
    let resp = oauth_support::browser_post(&browser, &action, Some(&origin), Some("same-origin"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    assert!(page.contains("Invalid username or password."), "{page}");
});

db_test!(async fn a_nul_in_a_client_id_never_reaches_a_lookup(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;

    // In the form (client_secret_post, or a public client's bare id).
    let with_secret = [("grant_type", "client_credentials"), ("client_id", NUL), ("client_secret", "x")];
    assert_error(post_form(&app, "/oauth/token", &with_secret).await, 400, "invalid_request").await;
    let bare = [("grant_type", "refresh_token"), ("client_id", NUL), ("refresh_token", "x")];
    assert_error(post_form(&app, "/oauth/token", &bare).await, 400, "invalid_request").await;
    for path in ["/oauth/revoke", "/oauth/introspect"] {
        let form = [("token", "x"), ("client_id", NUL)];
        assert_error(post_form(&app, path, &form).await, 400, "invalid_request").await;
    }
    // In HTTP Basic credentials: an unknown client (RFC 6749 §5.2).
    let stranger = Client { id: NUL.into(), secret: Some("x".into()) };
    let resp = oauth_support::token_basic(&app, &stranger, &[("grant_type", "client_credentials")]).await;
    assert_error(resp, 401, "invalid_client").await;

    // The authorization and logout endpoints show an unknown client's page.
    let browser = oauth_support::browser();
    for url in [
        oauth_support::authorize_url(&app, NUL, &[]),
        format!("{}?client_id=a%00b&post_logout_redirect_uri={REDIRECT}", app.url("/oauth/logout")),
    ] {
        let resp = browser.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{url}");
        let page = resp.text().await.unwrap();
        assert!(page.contains("unknown client"), "{url}: {page}");
    }
    // The real client still works.
    let resp = oauth_support::token_basic(&app, &client, &[("grant_type", "client_credentials")]).await;
    assert_eq!(resp.status(), 200);
});

db_test!(async fn a_nul_in_a_nonce_goes_back_to_the_client_as_invalid_request(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let (_, challenge) = oauth_support::pkce_pair();
    let url = oauth_support::authorize_url(
        &app,
        &client.id,
        &[("code_challenge", &challenge), ("code_challenge_method", "S256"), ("nonce", NUL)],
    );
    let resp = oauth_support::browser().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let params = oauth_support::query(&oauth_support::location(&resp));
    assert_eq!(params["error"], "invalid_request");
    assert_eq!(params["state"], "xyz");
});

db_test!(async fn a_nul_in_admin_inputs_is_a_bad_request(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let users: Value = app.client.get(app.url("/admin/users")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    let user_id = users["users"].as_array().unwrap().iter().find(|u| u["username"] == "user").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Search and filter parameters.
    for query in ["/admin/users?q=a%00b", "/admin/audit?kind=a%00b", "/admin/audit?actor_id=a%00b", "/admin/audit?subject_id=a%00b", "/admin/audit?client_id=a%00b"] {
        let resp = app.client.get(app.url(query)).bearer_auth(&admin).send().await.unwrap();
        assert_error(resp, 400, "invalid_request").await;
    }
    // A client id in the path.
    let path = app.url("/admin/clients/a%00b");
    assert_error(app.client.get(&path).bearer_auth(&admin).send().await.unwrap(), 400, "invalid_request").await;
    let resp = app.client.patch(&path).bearer_auth(&admin).json(&json!({"client_name": "x"})).send().await.unwrap();
    assert_error(resp, 400, "invalid_request").await;
    assert_error(app.client.delete(&path).bearer_auth(&admin).send().await.unwrap(), 400, "invalid_request").await;
    let resp = app.client.post(format!("{path}/secret")).bearer_auth(&admin).send().await.unwrap();
    assert_error(resp, 400, "invalid_request").await;
    // Bulk revocation criteria.
    for body in [json!({"client_id": NUL}), json!({"user_agent_contains": NUL})] {
        let resp = app.client.post(app.url("/admin/sessions/revoke")).bearer_auth(&admin).json(&body).send().await.unwrap();
        assert_error(resp, 400, "invalid_request").await;
    }
    // A ban reason (stored).
    let resp = app
        .client
        .post(app.url(&format!("/admin/users/{user_id}/ban")))
        .bearer_auth(&admin)
        .json(&json!({"reason": NUL}))
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, "invalid_request").await;
    assert_eq!(app.login("user", PASSWORD).await.status(), 200, "not banned");
    // Client metadata.
    let resp = app
        .client
        .post(app.url("/admin/clients"))
        .bearer_auth(&admin)
        .json(&json!({"client_name": NUL, "grant_types": ["client_credentials"]}))
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, "invalid_client_metadata").await;
    // Nothing of this touched the real client.
    let resp = app.client.get(app.url(&format!("/admin/clients/{}", client.id))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(resp.status(), 200);
});

/// RFC 6749 §5.2: `error_description` uses %x20-21 / %x23-5B / %x5D-7E only.
fn assert_rfc_6749_description(description: &str) {
    let outside: Vec<char> = description
        .chars()
        .filter(|&c| !matches!(c, '\u{20}'..='\u{21}' | '\u{23}'..='\u{5b}' | '\u{5d}'..='\u{7e}'))
        .collect();
    assert!(outside.is_empty(), "{description:?} has {outside:?}");
}

db_test!(async fn oauth_error_descriptions_stay_within_rfc_6749s_characters(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;

    // Values that used to be echoed in quotes: a grant type, a scope.
    for grant_type in ["urn:ietf:params:oauth:grant-type:\"x\\y\"", "caf\u{e9}"] {
        let resp = oauth_support::token_basic(&app, &client, &[("grant_type", grant_type)]).await;
        let body = assert_error(resp, 400, "unsupported_grant_type").await;
        assert_rfc_6749_description(&body.error_description);
    }
    let form = [("grant_type", "password"), ("username", "user"), ("password", PASSWORD), ("scope", "a\"b\\c")];
    let body = assert_error(oauth_support::token_basic(&app, &client, &form).await, 400, "invalid_scope").await;
    assert_rfc_6749_description(&body.error_description);
    // Errors raised while parsing the request, before any handler: a NUL,
    // a duplicate field, a content type that is echoed back.
    for (content_type, raw) in [
        ("application/x-www-form-urlencoded", "grant_type=password&client_id=a%00b"),
        ("application/x-www-form-urlencoded", "grant_type=a&grant_type=%22b%22"),
        ("text/plain; note=\"caf\\\"e\"", "grant_type=password"),
    ] {
        let resp = app.client.post(app.url("/oauth/token")).header("content-type", content_type).body(raw).send().await.unwrap();
        let body = assert_error(resp, 400, "invalid_request").await;
        assert_rfc_6749_description(&body.error_description);
    }
    let resp = app.client.post(app.url("/oauth/token")).json(&json!({"grant_type": "\"\u{e9}\""})).send().await.unwrap();
    let body = assert_error(resp, 400, "invalid_request").await;
    assert_rfc_6749_description(&body.error_description);

    // An authorization error goes back to the client in the redirect.
    let (_, challenge) = oauth_support::pkce_pair();
    let url = oauth_support::authorize_url(
        &app,
        &client.id,
        &[("code_challenge", &challenge), ("code_challenge_method", "S256")],
    )
    .replace("response_type=code", "response_type=%22t%C3%B6ken%5C%22");
    let resp = oauth_support::browser().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let params = oauth_support::query(&oauth_support::location(&resp));
    assert_eq!(params["error"], "unsupported_response_type");
    assert_rfc_6749_description(&params["error_description"]);

    // Client registration no longer quotes what it refuses.
    for (field, value) in [("token_endpoint_auth_method", json!("bo\"gus")), ("grant_types", json!(["impl\\icit"])), ("response_types", json!(["token"])), ("id_token_signed_response_alg", json!("\"none\""))] {
        let mut body = json!({"client_name": "x", "redirect_uris": [REDIRECT]});
        body[field] = value;
        let resp = app.client.post(app.url("/admin/clients")).bearer_auth(&admin).json(&body).send().await.unwrap();
        let error = assert_error(resp, 400, "invalid_client_metadata").await;
        assert_rfc_6749_description(&error.error_description);
    }
});
