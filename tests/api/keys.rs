//! Signing keys: publication before use, rotation, replicas, sealing, caching.

use std::sync::Arc;
use std::time::Duration;

use latchkey::config::SigningAlg;
use latchkey::entities::signing_keys;
use latchkey::keys::KeyPurpose;
use sea_orm::EntityTrait;

use crate::db_test;
use crate::helpers::{Backend, TestApp, assert_error, eventually, run_cli};
use crate::jwt;

/// Test settings: JWKS max-age 300 s, reload 1 s, so the lead is 306 s.
const PAST_LEAD: Duration = Duration::from_secs(310);

async fn access_kid(app: &TestApp) -> (String, String) {
    let tokens = app.tokens("ivy", "correct horse battery").await;
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    (jwt::header(&token)["kid"].as_str().unwrap().to_owned(), token)
}

fn max_age(resp: &reqwest::Response) -> u64 {
    let cc = resp.headers()["cache-control"].to_str().unwrap();
    assert!(cc.starts_with("public, max-age="), "{cc}");
    cc.trim_start_matches("public, max-age=").parse().unwrap()
}

db_test!(async fn the_jwks_is_cacheable_and_revalidates_with_etag(backend) {
    let app = TestApp::spawn(backend).await;
    let resp = app.get("/.well-known/jwks.json").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let age = max_age(&resp);
    assert!(age > 0 && age <= 300, "max-age {age}");
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    let body: serde_json::Value = resp.json().await.unwrap();
    // Access chain (current + next) and ID-token chain (current + next).
    assert_eq!(body["keys"].as_array().unwrap().len(), 4);
    for key in body["keys"].as_array().unwrap() {
        assert_eq!(key["use"], "sig");
        assert!(key.get("d").is_none() && key.get("p").is_none(), "no private material");
    }

    let resp = app.client.get(app.url("/.well-known/jwks.json")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(resp.status(), 304);
    assert_eq!(resp.headers()["etag"].to_str().unwrap(), etag);
    assert!(resp.bytes().await.unwrap().is_empty());

    let resp = app.client.get(app.url("/.well-known/jwks.json")).header("if-none-match", "\"stale\"").send().await.unwrap();
    assert_eq!(resp.status(), 200);
});

db_test!(async fn max_age_never_outlasts_the_next_planned_change(backend) {
    let app = TestApp::spawn(backend).await;
    // The next keys activate one rotation interval (30 days) after start.
    app.advance(Duration::from_secs(30 * 86_400 - 100));
    let resp = app.get("/.well-known/jwks.json").await;
    let age = max_age(&resp);
    assert!(age <= 100, "max-age {age} must end before the next key activates");
});

db_test!(async fn a_rotation_publishes_first_then_signs_and_old_tokens_keep_verifying(backend) {
    let app = TestApp::spawn(backend).await;
    app.create_user("ivy", "correct horse battery").await;
    let (old_kid, old_token) = access_kid(&app).await;
    let kids_before = app.jwks_kids().await;
    assert!(kids_before.contains(&old_kid));

    // Rotate from the CLI, as an operator would.
    let out = app.cli(&["keys", "rotate"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plans = String::from_utf8_lossy(&out.stdout).to_string();
    let new_kid = plans
        .lines()
        .find(|l| l.starts_with("access key "))
        .and_then(|l| l.split_whitespace().nth(2))
        .expect("rotation plan for the access chain")
        .to_owned();

    // The new key was already published before it signs anything.
    assert!(kids_before.contains(&new_kid), "{new_kid} must be in the JWKS before it signs");
    let (kid_now, _) = access_kid(&app).await;
    assert_eq!(kid_now, old_kid, "nothing switches before the publication lead has passed");
    let list = app.cli(&["keys", "list"], None);
    let listing = String::from_utf8_lossy(&list.stdout);
    assert!(listing.lines().any(|l| l.starts_with(&old_kid) && l.contains(" current ")), "{listing}");
    assert!(listing.lines().any(|l| l.starts_with(&new_kid) && l.contains(" next ")), "{listing}");

    // After the lead, new tokens carry the new kid (once the server reloaded).
    app.advance(PAST_LEAD);
    assert!(
        eventually(Duration::from_secs(10), || async { access_kid(&app).await.0 == new_kid }).await,
        "new tokens must use the new key"
    );
    // The old token still verifies, online and offline.
    let me = app.get_with_token("/auth/me", &old_token).await;
    let status = me.status();
    assert_eq!(status, 200, "the old token after the rotation: {:?}", me.text().await);
    jwt::verify_with_published_jwks(&app, &old_token, "at+jwt").await;
    // A fresh next key follows automatically.
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.jwks_kids().await.iter().any(|k| !kids_before.contains(k))
        })
        .await,
        "a new next key is published after the rotation"
    );

    // Once every token the old key signed has expired, it leaves the JWKS.
    app.advance(Duration::from_secs(900 + 300 + 10));
    assert_error(app.get_with_token("/auth/me", &old_token).await, 401, "invalid_token").await;
    assert!(
        eventually(Duration::from_secs(10), || async { !app.jwks_kids().await.contains(&old_kid) }).await,
        "the old key retires"
    );
});

db_test!(async fn a_second_replica_picks_up_a_rotation_without_restart(backend) {
    let issuer = || Some("http://latchkey.test".to_owned());
    let a = TestApp::builder(backend).configure(move |s| s.issuer = issuer()).spawn().await;
    let b = TestApp::builder(backend)
        .on(a.db.clone())
        .clock(Arc::clone(&a.clock))
        .configure(move |s| s.issuer = issuer())
        .spawn()
        .await;
    a.create_user("ivy", "correct horse battery").await;
    assert_eq!(a.jwks_kids().await, b.jwks_kids().await, "replicas share one key set");
    let (old_kid, _) = access_kid(&b).await;

    let out = a.cli(&["keys", "rotate"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    a.advance(PAST_LEAD);

    assert!(
        eventually(Duration::from_secs(10), || async { access_kid(&b).await.0 != old_kid }).await,
        "replica B signs with the rotated key"
    );
    assert!(
        eventually(Duration::from_secs(10), || async { a.jwks_kids().await == b.jwks_kids().await }).await,
        "both replicas publish the same new key set"
    );
    let (kid_a, _) = access_kid(&a).await;
    let (kid_b, token_b) = access_kid(&b).await;
    assert_eq!(kid_a, kid_b);
    jwt::verify_with_published_jwks(&a, &token_b, "at+jwt").await;
});

db_test!(async fn private_keys_are_sealed_at_rest(backend) {
    let app = TestApp::spawn(backend).await;
    let rows = signing_keys::Entity::find().all(&app.state.db).await.unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        let sealed = &row.private_key_sealed;
        assert_eq!(sealed.split('.').count(), 5, "JWE compact serialization");
        assert_eq!(row.sealed_with, app.state.master.id());
        let der = app.state.master.unseal(&row.kid, sealed).unwrap();
        assert!(der.len() > 32);
        let der_b64 = latchkey::crypto::b64url(&der);
        assert!(!sealed.contains(&der_b64[..40]), "the private key is not stored in clear");
        assert!(!row.public_jwk.contains("\"d\""), "the public JWK has no private part");
    }
});

db_test!(async fn another_master_key_cannot_open_the_keys(backend) {
    let app = TestApp::spawn(backend).await;
    let out = run_cli(
        &app.db.url,
        app.db.dir.path().to_path_buf(),
        &["keys", "rotate"],
        None,
        &[("LATCHKEY_MASTER_KEY", "b3RoZXItbWFzdGVyLWtleS1vdGhlci1tYXN0ZXIta2V5IQ")],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("LATCHKEY_MASTER_KEY"), "{stderr}");
    assert!(!stderr.contains("panicked"));
});

async fn signs_with(backend: Backend, alg: SigningAlg) {
    let app = TestApp::builder(backend).configure(move |s| s.signing_alg = alg).spawn().await;
    app.create_user("ivy", "correct horse battery").await;
    let (_, token) = access_kid(&app).await;
    assert_eq!(jwt::header(&token)["alg"], alg.as_str());
    jwt::verify_with_published_jwks(&app, &token, "at+jwt").await;
    assert_eq!(app.get_with_token("/auth/me", &token).await.status(), 200);
    let key = app.state.keyring.current(KeyPurpose::IdToken, app.clock_now()).unwrap();
    assert_eq!(key.alg(), SigningAlg::Rs256, "an RS256 key always exists for ID tokens");
}

db_test!(async fn eddsa_and_rs256_can_sign_access_tokens(backend) {
    signs_with(backend, SigningAlg::EdDsa).await;
    signs_with(backend, SigningAlg::Rs256).await;
});

db_test!(async fn switching_the_algorithm_rotates_safely(backend) {
    let mut first = TestApp::spawn(backend).await;
    first.create_user("ivy", "correct horse battery").await;
    let (es_kid, _) = access_kid(&first).await;
    first.stop().await;

    let second = TestApp::builder(backend)
        .on(first.db.clone())
        .clock(Arc::clone(&first.clock))
        .configure(|s| s.signing_alg = SigningAlg::EdDsa)
        .spawn()
        .await;
    // Until the EdDSA key has been published for the lead, ES256 keeps signing.
    let (kid, token) = access_kid(&second).await;
    assert_eq!(kid, es_kid);
    assert_eq!(jwt::header(&token)["alg"], "ES256");
    second.advance(PAST_LEAD);
    let (_, token) = access_kid(&second).await;
    assert_eq!(jwt::header(&token)["alg"], "EdDSA");
});
