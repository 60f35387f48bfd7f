use serde_json::Value;

use crate::db_test;
use crate::helpers::TestApp;

db_test!(async fn users_keys_and_families_survive_a_restart(backend) {
    // Arrange: a fixed issuer, so tokens stay valid across ports.
    let issuer = "http://latchkey.test";
    let mut first = TestApp::builder(backend).configure(move |s| s.issuer = Some(issuer.into())).spawn().await;
    first.create_user("jack", "correct horse battery").await;
    let tokens = first.tokens("jack", "correct horse battery").await;
    let kids = first.jwks_kids().await;
    first.stop().await;

    // Act: a new process on the same database.
    let second = TestApp::builder(backend)
        .on(first.db.clone())
        .clock(first.clock.clone())
        .configure(move |s| s.issuer = Some(issuer.into()))
        .spawn()
        .await;

    // Assert
    assert_eq!(second.jwks_kids().await, kids, "same keys");
    let me = second.get_with_token("/auth/me", tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(me.status(), 200, "tokens from before the restart verify");
    let resp = second.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(resp.status(), 200, "the family survived");
    let refreshed: Value = resp.json().await.unwrap();
    assert!(refreshed["access_token"].is_string());
    second.tokens("jack", "correct horse battery").await;
});
