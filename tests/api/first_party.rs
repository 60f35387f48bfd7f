//! The user's account at latchkey (`/auth/me`, `/auth/sessions`,
//! `/auth/password`) answers only latchkey's own tokens. A token issued to a
//! registered client travels to relying services; none of them may replay it
//! to read the account or end its sessions. `/oauth/userinfo` stays open to
//! every client, by scope.

use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::{TestApp, assert_error};
use crate::oauth_support::{self, Client, PASSWORD, REDIRECT};

/// A user token issued to `client` through the authorization-code flow.
async fn code_flow_token(app: &TestApp, client: &Client) -> Value {
    let (verifier, challenge) = oauth_support::pkce_pair();
    let url = oauth_support::authorize_url(
        app,
        &client.id,
        &[
            ("scope", "openid profile email"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let redirect = oauth_support::sign_in(&oauth_support::browser(), &url, "user", PASSWORD).await;
    let code = oauth_support::query(&redirect)["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let resp = oauth_support::token_basic(app, client, &form).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// A 403 `insufficient_scope` with its RFC 6750 §3 challenge.
async fn assert_not_for_this_token(resp: reqwest::Response) {
    let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    assert_error(resp, 403, "insufficient_scope").await;
    let challenge = challenge.expect("a WWW-Authenticate challenge");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
}

db_test!(async fn account_endpoints_refuse_user_tokens_issued_to_other_clients(backend) {
    // Arrange: the user's own session, and two tokens a registered client
    // received for the same user (password grant, authorization code).
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let own = app.tokens("user", PASSWORD).await;
    let own_token = own["access_token"].as_str().unwrap();
    let password_grant: Value = oauth_support::token_basic(
        &app,
        &client,
        &[("grant_type", "password"), ("username", "user"), ("password", PASSWORD)],
    )
    .await
    .json()
    .await
    .unwrap();
    let code_grant = code_flow_token(&app, &client).await;
    let sessions: Value = app.get_with_token("/auth/sessions", own_token).await.json().await.unwrap();
    let own_session = sessions.as_array().unwrap().iter().find(|s| s["current"] == true).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    for foreign in [&password_grant, &code_grant] {
        let token = foreign["access_token"].as_str().unwrap();
        // Act + Assert: every account endpoint refuses it.
        assert_not_for_this_token(app.get_with_token("/auth/me", token).await).await;
        assert_not_for_this_token(app.get_with_token("/auth/sessions", token).await).await;
        let url = app.url(&format!("/auth/sessions/{own_session}"));
        assert_not_for_this_token(app.client.delete(url).bearer_auth(token).send().await.unwrap()).await;
        let change = json!({"current_password": PASSWORD, "new_password": "a brand new password"});
        let resp = app.client.post(app.url("/auth/password")).bearer_auth(token).json(&change).send().await.unwrap();
        assert_not_for_this_token(resp).await;
        // ...while the same token still works where it belongs.
        assert_eq!(app.get_with_token("/oauth/userinfo", token).await.status(), 200);
    }

    // Nothing happened: the session lives on, the password is unchanged.
    assert_eq!(app.get_with_token("/auth/me", own_token).await.status(), 200);
    let sessions: Value = app.get_with_token("/auth/sessions", own_token).await.json().await.unwrap();
    assert!(sessions.as_array().unwrap().iter().any(|s| s["id"] == own_session.as_str()), "{sessions}");
    assert_eq!(app.login("user", PASSWORD).await.status(), 200);
    // The userinfo answer is the scoped one, not the account view.
    let info: Value =
        app.get_with_token("/oauth/userinfo", code_grant["access_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(info["preferred_username"], "user");
    assert!(info.get("roles").is_none(), "{info}");
});

db_test!(async fn first_party_tokens_still_reach_the_account(backend) {
    let app = TestApp::spawn(backend).await;
    app.create_user("carol", PASSWORD).await;
    let tokens = app.tokens("carol", PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(app.get_with_token("/auth/me", access).await.status(), 200);
    // A refreshed first-party token too.
    let refreshed: Value = app.refresh(tokens["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    let access = refreshed["access_token"].as_str().unwrap();
    assert_eq!(app.get_with_token("/auth/sessions", access).await.status(), 200);
    let change = json!({"current_password": PASSWORD, "new_password": "a brand new password"});
    let resp = app.client.post(app.url("/auth/password")).bearer_auth(access).json(&change).send().await.unwrap();
    assert_eq!(resp.status(), 200);
});
