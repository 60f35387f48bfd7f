//! `client_updated` audit events record what changed, never a secret.

use serde_json::{Value, json};

use crate::db_test;
use crate::oauth_support::{self, REDIRECT};

db_test!(async fn client_updates_are_audited_field_by_field(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::public(&app, &admin).await;
    let patch = |body: Value| {
        let req = app.client.patch(app.url(&format!("/admin/clients/{}", client.id))).bearer_auth(&admin).json(&body);
        async move { req.send().await.unwrap() }
    };
    let events = || async {
        let resp = app
            .get_with_token(&format!("/admin/audit?kind=client_updated&client_id={}", client.id), &admin)
            .await;
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().await.unwrap()["events"].as_array().unwrap().clone()
    };

    let other = "http://127.0.0.1:9/other";
    let resp = patch(json!({"redirect_uris": [REDIRECT, other], "scope": "openid", "disabled": true})).await;
    assert_eq!(resp.status(), 200);
    let event = events().await[0].clone();
    assert_eq!(
        event["details"]["changes"],
        json!({
            "redirect_uris": {"from": [REDIRECT], "to": [REDIRECT, other]},
            "scope": {"from": "openid profile", "to": "openid"},
            "disabled": {"from": false, "to": true},
        })
    );

    // Becoming confidential issues a secret: the change is recorded, the secret is not.
    let resp = patch(json!({"token_endpoint_auth_method": "client_secret_basic", "require_pkce": false, "disabled": false})).await;
    assert_eq!(resp.status(), 200);
    let secret = resp.json::<Value>().await.unwrap()["client_secret"].as_str().unwrap().to_owned();
    let all = events().await;
    assert_eq!(all.len(), 2);
    assert_eq!(
        all[0]["details"]["changes"],
        json!({
            "token_endpoint_auth_method": {"from": "none", "to": "client_secret_basic"},
            "require_pkce": {"from": true, "to": false},
            "disabled": {"from": true, "to": false},
        })
    );
    assert!(!all[0].to_string().contains(&secret));
    assert!(!all[0].to_string().contains("secret\""), "no secret field");

    // A no-op update records no change.
    assert_eq!(patch(json!({"scope": "openid"})).await.status(), 200);
    assert_eq!(events().await[0]["details"]["changes"], json!({}));
});
