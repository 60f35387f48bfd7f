//! PKCE for every client by default (OAuth 2.1, RFC 9700 §2.1.1): a
//! confidential client too must send an S256 `code_challenge`, unless an
//! admin registered it with `require_pkce: false` (a legacy client). A public
//! client can never go without.

use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::{TestApp, assert_error};
use crate::oauth_support::{self, Client, PASSWORD, REDIRECT};

async fn show(app: &TestApp, admin: &str, client: &Client) -> Value {
    let url = app.url(&format!("/admin/clients/{}", client.id));
    app.client.get(url).bearer_auth(admin).send().await.unwrap().json().await.unwrap()
}

async fn patch(app: &TestApp, admin: &str, client: &Client, body: Value) -> reqwest::Response {
    let url = app.url(&format!("/admin/clients/{}", client.id));
    app.client.patch(url).bearer_auth(admin).json(&body).send().await.unwrap()
}

/// Sign in through the authorization endpoint without PKCE: the redirect.
async fn authorize_without_pkce(app: &TestApp, client: &Client) -> String {
    let url = oauth_support::authorize_url(app, &client.id, &[]);
    oauth_support::sign_in(&oauth_support::browser(), &url, "user", PASSWORD).await
}

async fn exchange_without_verifier(app: &TestApp, client: &Client, code: &str) -> reqwest::Response {
    let form = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", REDIRECT)];
    oauth_support::token_basic(app, client, &form).await
}

db_test!(async fn confidential_clients_need_pkce_by_default(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    assert_eq!(show(&app, &admin, &client).await["require_pkce"], true);

    // No code_challenge: the error goes back to the client.
    let resp = oauth_support::browser().get(oauth_support::authorize_url(&app, &client.id, &[])).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let params = oauth_support::query(&oauth_support::location(&resp));
    assert_eq!(params["error"], "invalid_request");
    assert!(params["error_description"].contains("code_challenge"), "{params:?}");
    assert_eq!(params["state"], "xyz");

    // With S256 the flow works, and the verifier is then required.
    let (verifier, challenge) = oauth_support::pkce_pair();
    let pkce = [("code_challenge", challenge.as_str()), ("code_challenge_method", "S256")];
    let redirect =
        oauth_support::sign_in(&oauth_support::browser(), &oauth_support::authorize_url(&app, &client.id, &pkce), "user", PASSWORD).await;
    let code = oauth_support::query(&redirect)["code"].clone();
    assert_error(exchange_without_verifier(&app, &client, &code).await, 400, "invalid_grant").await;
    let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", REDIRECT), ("code_verifier", verifier.as_str())];
    assert_eq!(oauth_support::token_basic(&app, &client, &form).await.status(), 200);
});

db_test!(async fn a_legacy_confidential_client_may_be_allowed_the_code_flow_without_pkce(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    // Registered so from the start...
    let legacy = oauth_support::register_client(
        &app,
        &admin,
        json!({
            "client_name": "Legacy portal",
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "scope": "openid profile",
            "require_pkce": false,
        }),
    )
    .await;
    assert_eq!(show(&app, &admin, &legacy).await["require_pkce"], false);
    let code = oauth_support::query(&authorize_without_pkce(&app, &legacy).await)["code"].clone();
    assert_eq!(exchange_without_verifier(&app, &legacy, &code).await.status(), 200);
    // ...or switched by an update.
    let client = oauth_support::confidential(&app, &admin).await;
    let resp = patch(&app, &admin, &client, json!({"require_pkce": false})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["require_pkce"], false);
    let code = oauth_support::query(&authorize_without_pkce(&app, &client).await)["code"].clone();
    assert_eq!(exchange_without_verifier(&app, &client, &code).await.status(), 200);

    // Requiring PKCE again refuses new requests without it, and codes
    // issued without a challenge before can no longer be redeemed.
    let code = oauth_support::query(&authorize_without_pkce(&app, &client).await)["code"].clone();
    assert_eq!(patch(&app, &admin, &client, json!({"require_pkce": true})).await.status(), 200);
    assert_error(exchange_without_verifier(&app, &client, &code).await, 400, "invalid_grant").await;
    let resp = oauth_support::browser().get(oauth_support::authorize_url(&app, &client.id, &[])).send().await.unwrap();
    assert_eq!(oauth_support::query(&oauth_support::location(&resp))["error"], "invalid_request");
});

db_test!(async fn public_clients_can_never_go_without_pkce(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    // Not at registration...
    let resp = app
        .client
        .post(app.url("/admin/clients"))
        .bearer_auth(&admin)
        .json(&json!({"client_name": "SPA", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "require_pkce": false}))
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, "invalid_client_metadata").await;
    // ...nor by an update...
    let public = oauth_support::public(&app, &admin).await;
    assert_eq!(show(&app, &admin, &public).await["require_pkce"], true);
    assert_error(patch(&app, &admin, &public, json!({"require_pkce": false})).await, 400, "invalid_client_metadata").await;
    // ...nor by turning a legacy confidential client into a public one.
    let legacy = oauth_support::confidential(&app, &admin).await;
    assert_eq!(patch(&app, &admin, &legacy, json!({"require_pkce": false})).await.status(), 200);
    let to_public = json!({"token_endpoint_auth_method": "none", "grant_types": ["authorization_code"]});
    assert_error(patch(&app, &admin, &legacy, to_public.clone()).await, 400, "invalid_client_metadata").await;
    let mut with_pkce = to_public;
    with_pkce["require_pkce"] = json!(true);
    let resp = patch(&app, &admin, &legacy, with_pkce).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["require_pkce"], true);
    let resp = oauth_support::browser().get(oauth_support::authorize_url(&app, &legacy.id, &[])).send().await.unwrap();
    assert_eq!(oauth_support::query(&oauth_support::location(&resp))["error"], "invalid_request");
});

db_test!(async fn the_command_line_registers_a_legacy_client_without_pkce(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let out = app.cli(
        &["clients", "create", "--name", "legacy", "--redirect-uri", REDIRECT, "--require-pkce", "false"],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| stdout.lines().find_map(|l| l.strip_prefix(key)).unwrap().trim().to_owned();
    let client = Client { id: value("client_id:"), secret: Some(value("client_secret:")) };
    assert_eq!(show(&app, &admin, &client).await["require_pkce"], false);
    let code = oauth_support::query(&authorize_without_pkce(&app, &client).await)["code"].clone();
    assert_eq!(exchange_without_verifier(&app, &client, &code).await.status(), 200);
    // A public client cannot be registered so.
    let out = app.cli(
        &["clients", "create", "--name", "spa", "--redirect-uri", REDIRECT, "--auth-method", "none", "--require-pkce", "false"],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PKCE"), "{}", String::from_utf8_lossy(&out.stderr));
});
