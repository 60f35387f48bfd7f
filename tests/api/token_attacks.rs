//! Token confusion: every forged or misused token is a 401 with
//! `WWW-Authenticate: Bearer error="invalid_token"`.

use std::time::Duration;

use josekit::jws::{ES256, HS256, JwsHeader};
use josekit::jwt::{self, JwtPayload};
use latchkey::keys::KeyPurpose;
use serde_json::{Map, Value, json};

use crate::db_test;
use crate::helpers::{TestApp, assert_error};
use crate::jwt as testjwt;

async fn assert_refused(app: &TestApp, token: &str) {
    let resp = app.get_with_token("/auth/me", token).await;
    let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    assert_error(resp, 401, "invalid_token").await;
    let challenge = challenge.expect("WWW-Authenticate");
    assert!(challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""), "{challenge}");
}

fn b64(value: &Value) -> String {
    latchkey::crypto::b64url(value.to_string().as_bytes())
}

async fn real_token(app: &TestApp) -> (String, Map<String, Value>) {
    app.create_user("mallory", "correct horse battery").await;
    let tokens = app.tokens("mallory", "correct horse battery").await;
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    // Sanity: the genuine token works.
    assert_eq!(app.get_with_token("/auth/me", &token).await.status(), 200);
    let claims = testjwt::claims(&token);
    (token, claims)
}

db_test!(async fn alg_none_is_refused(backend) {
    let app = TestApp::spawn(backend).await;
    let (token, claims) = real_token(&app).await;
    let kid = testjwt::header(&token)["kid"].clone();
    for alg in ["none", "None", "NONE"] {
        let forged = format!("{}.{}.", b64(&json!({"alg": alg, "typ": "at+jwt", "kid": kid})), b64(&Value::Object(claims.clone())));
        assert_refused(&app, &forged).await;
    }
});

db_test!(async fn hs256_keyed_with_the_public_key_is_refused(backend) {
    let app = TestApp::spawn(backend).await;
    let (token, claims) = real_token(&app).await;
    let kid = testjwt::header(&token)["kid"].as_str().unwrap().to_owned();
    let jwks = app.jwks().await;
    let public = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).unwrap().to_string();
    let signer = HS256.signer_from_bytes(public.as_bytes()).unwrap();
    let mut header = JwsHeader::new();
    header.set_token_type("at+jwt");
    header.set_key_id(&kid);
    let forged = jwt::encode_with_signer(&JwtPayload::from_map(claims).unwrap(), &header, &signer).unwrap();
    assert_refused(&app, &forged).await;
});

db_test!(async fn unknown_or_mismatched_kids_are_refused(backend) {
    let app = TestApp::spawn(backend).await;
    let (token, claims) = real_token(&app).await;
    let real_kid = testjwt::header(&token)["kid"].as_str().unwrap().to_owned();
    let attacker_key = ES256.generate_key_pair().unwrap();
    let signer = ES256.signer_from_der(attacker_key.to_der_private_key()).unwrap();
    for kid in ["unknown-kid", real_kid.as_str()] {
        let mut header = JwsHeader::new();
        header.set_token_type("at+jwt");
        header.set_key_id(kid);
        let forged = jwt::encode_with_signer(&JwtPayload::from_map(claims.clone()).unwrap(), &header, &signer).unwrap();
        assert_refused(&app, &forged).await;
    }
    // No kid at all.
    let mut header = JwsHeader::new();
    header.set_token_type("at+jwt");
    let forged = jwt::encode_with_signer(&JwtPayload::from_map(claims).unwrap(), &header, &signer).unwrap();
    assert_refused(&app, &forged).await;
});

db_test!(async fn expired_tokens_are_refused(backend) {
    let app = TestApp::spawn(backend).await;
    let (token, _) = real_token(&app).await;
    app.advance(Duration::from_secs(900 + 10));
    assert_refused(&app, &token).await;
});

db_test!(async fn wrong_typ_wrong_issuer_and_wrong_audience_are_refused_even_when_signed_by_us(backend) {
    let app = TestApp::spawn(backend).await;
    let (_, claims) = real_token(&app).await;
    let key = app.state.keyring.current(KeyPurpose::Access, app.clock_now()).unwrap();
    let sign = |typ: &str, claims: Map<String, Value>| {
        let mut header = JwsHeader::new();
        header.set_token_type(typ);
        header.set_key_id(key.kid());
        jwt::encode_with_signer(&JwtPayload::from_map(claims).unwrap(), &header, key.signer().unwrap()).unwrap()
    };
    // The genuine claims re-signed by the genuine key pass...
    assert_eq!(app.get_with_token("/auth/me", &sign("at+jwt", claims.clone())).await.status(), 200);
    // ...but not with another typ, issuer or audience.
    assert_refused(&app, &sign("JWT", claims.clone())).await;
    let mut other_issuer = claims.clone();
    other_issuer.insert("iss".into(), json!("https://evil.example"));
    assert_refused(&app, &sign("at+jwt", other_issuer)).await;
    let mut other_audience = claims.clone();
    other_audience.insert("aud".into(), json!("another-service"));
    assert_refused(&app, &sign("at+jwt", other_audience)).await;
    let mut future = claims;
    future.insert("nbf".into(), json!(app.clock_now().timestamp() + 3600));
    assert_refused(&app, &sign("at+jwt", future)).await;
});

db_test!(async fn an_id_token_is_not_an_access_token(backend) {
    let app = TestApp::spawn(backend).await;
    app.create_user("oscar", "correct horse battery").await;
    let resp = app
        .post_json("/auth/login", &json!({"username": "oscar", "password": "correct horse battery", "scope": "openid"}))
        .await;
    let tokens: Value = resp.json().await.unwrap();
    assert_refused(&app, tokens["id_token"].as_str().unwrap()).await;
    assert_refused(&app, tokens["refresh_token"].as_str().unwrap()).await;
});
