use latchkey::entities::users;
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::{TestApp, assert_error};
use crate::jwt;

db_test!(async fn register_login_and_me_with_a_token_that_verifies_offline(backend) {
    let app = TestApp::spawn(backend).await;

    // Register.
    let user = app.create_user("Alice", "correct horse battery").await;
    assert_eq!(user["username"], "Alice");
    assert_eq!(user["roles"], json!([]));
    assert!(user.get("password_hash").is_none() && user.get("password").is_none());

    // Log in (usernames compare case-insensitively).
    let tokens = app.tokens("alice", "correct horse battery").await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(tokens["scope"], "email profile tasks:read tasks:write");
    assert!(tokens["refresh_token"].as_str().is_some_and(|t| t.len() == 76));
    assert!(tokens.get("id_token").is_none_or(Value::is_null), "no id_token without openid");
    let access = tokens["access_token"].as_str().unwrap();

    // The token works on /auth/me.
    let me = app.get_with_token("/auth/me", access).await;
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["id"], user["id"]);
    assert!(me["last_login_at"].is_string());

    // And verifies offline against the published JWKS, as a relying service would.
    let claims = jwt::verify_with_published_jwks(&app, access, "at+jwt").await;
    assert_eq!(claims["sub"], user["id"]);
    assert_eq!(claims["aud"], "latchkey");
    assert_eq!(claims["client_id"], "latchkey");
    assert_eq!(claims["roles"], json!([]));
    assert_eq!(claims["scope"], "email profile tasks:read tasks:write");
    let (iat, nbf, exp) = (claims["iat"].as_i64().unwrap(), claims["nbf"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 900);
    assert_eq!(nbf, iat);
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 22));
    assert!(claims["sid"].is_string());
    assert_eq!(jwt::header(access)["alg"], "ES256");
});

db_test!(async fn the_openid_scope_adds_an_rs256_id_token(backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.create_user("carol", "correct horse battery").await;

    let resp = app
        .post_json("/auth/login", &json!({"username": "carol", "password": "correct horse battery", "scope": "openid profile"}))
        .await;
    assert_eq!(resp.status(), 200);
    let tokens: Value = resp.json().await.unwrap();
    assert_eq!(tokens["scope"], "openid profile");
    let id_token = tokens["id_token"].as_str().expect("id_token");

    let claims = jwt::verify_with_published_jwks(&app, id_token, "JWT").await;
    assert_eq!(jwt::header(id_token)["alg"], "RS256");
    assert_eq!(claims["sub"], user["id"]);
    assert_eq!(claims["aud"], "latchkey");
    assert_eq!(claims["preferred_username"], "carol");
    let at_hash = latchkey::tokens::at_hash(latchkey::config::SigningAlg::Rs256, tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["at_hash"], at_hash);

    // A scope the server does not offer is refused.
    let resp = app
        .post_json("/auth/login", &json!({"username": "carol", "password": "correct horse battery", "scope": "admin:everything"}))
        .await;
    assert_error(resp, 400, "invalid_scope").await;
});

db_test!(async fn unknown_user_and_wrong_password_get_the_same_answer(backend) {
    let app = TestApp::spawn(backend).await;
    app.create_user("dave", "correct horse battery").await;

    let wrong_password = app.login("dave", "not the password").await;
    let headers_a = wrong_password.headers().get("www-authenticate").cloned();
    let a = assert_error(wrong_password, 401, "invalid_credentials").await;
    let unknown_user = app.login("nobody-here", "not the password").await;
    let headers_b = unknown_user.headers().get("www-authenticate").cloned();
    let b = assert_error(unknown_user, 401, "invalid_credentials").await;
    let unparseable = app.login("\u{200B}", "not the password").await;
    let c = assert_error(unparseable, 401, "invalid_credentials").await;

    assert_eq!(a, b);
    assert_eq!(b, c);
    assert_eq!(headers_a, headers_b);
});

db_test!(async fn a_password_hashed_with_old_parameters_is_rehashed_at_login(backend) {
    // Arrange: a user whose hash was made with weaker parameters.
    let mut old = TestApp::spawn(backend).await;
    old.create_user("erin", "correct horse battery").await;
    old.stop().await;
    let db = old.db.clone();
    let stronger = TestApp::builder(backend)
        .on(db)
        .configure(|s| {
            s.argon2_memory_kib = 256;
            s.argon2_iterations = 2;
        })
        .spawn()
        .await;
    let before = users::Entity::find().one(&stronger.state.db).await.unwrap().unwrap().password_hash;
    assert!(before.contains("m=64,t=1"), "{before}");

    // Act
    stronger.tokens("erin", "correct horse battery").await;

    // Assert: upgraded, and still the same password.
    let after = users::Entity::find().one(&stronger.state.db).await.unwrap().unwrap().password_hash;
    assert!(after.contains("m=256,t=2,p=1"), "{after}");
    stronger.tokens("erin", "correct horse battery").await;
    let wrong = stronger.login("erin", "wrong horse battery").await;
    assert_error(wrong, 401, "invalid_credentials").await;
});

db_test!(async fn passwords_are_argon2id_phc_strings(backend) {
    let app = TestApp::spawn(backend).await;
    app.create_user("frank", "correct horse battery").await;
    let row = users::Entity::find().one(&app.state.db).await.unwrap().unwrap();
    assert!(row.password_hash.starts_with("$argon2id$v=19$"), "{}", row.password_hash);
    assert!(!row.password_hash.contains("correct horse"));
});

db_test!(async fn the_configured_admin_is_created_at_start(backend) {
    let app = TestApp::builder(backend)
        .configure(|s| {
            s.admin_username = Some("admin".into());
            s.admin_password = Some(secrecy::SecretString::from("bootstrap password".to_owned()));
        })
        .spawn()
        .await;
    let tokens = app.tokens("admin", "bootstrap password").await;
    let claims = jwt::claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["roles"], json!(["admin"]));
});
