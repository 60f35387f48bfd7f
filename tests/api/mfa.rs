//! Second factors through HTTP: TOTP and passkey enrolment, the
//! `mfa_required` sign-in on `/auth/login` and the password grant, replay
//! and guessing limits, recovery codes, the usernameless passkey sign-in,
//! `amr` in the tokens, and the policies (admin tokens, required roles,
//! clients that require a second factor, admin reset).
//!
//! Passkeys use [`SoftAuthenticator`]: a P-256 key producing real
//! attestation and assertion objects, checked by webauthn-rs in the
//! server. WebAuthn needs the issuer on a domain name, so those apps run
//! as `http://localhost:<port>`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::{TestApp, assert_error};
use crate::jwt;
use crate::oauth_support::{self, PASSWORD, register_client, token_basic};
use crate::webauthn_soft::SoftAuthenticator;

const ADMIN_PASSWORD: &str = "admin password 1";

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = app.client.post(app.url(path)).json(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

async fn login(app: &TestApp, username: &str, extra: Value) -> reqwest::Response {
    let mut body = json!({"username": username, "password": PASSWORD});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    app.post_json("/auth/login", &body).await
}

async fn tokens(app: &TestApp, username: &str) -> Value {
    let resp = login(app, username, json!({})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

fn access(tokens: &Value) -> &str {
    tokens["access_token"].as_str().unwrap()
}

/// The code an authenticator app shows now (the app's clock).
fn code_now(app: &TestApp, secret: &[u8]) -> String {
    let t = u64::try_from(app.state.now().timestamp()).unwrap();
    latchkey::mfa::totp::code_at(secret, t).unwrap()
}

/// Enrol an authenticator app; returns its secret and the recovery codes.
async fn enrol_totp(app: &TestApp, token: &str, password: &str) -> (Vec<u8>, Vec<String>) {
    let resp = post(app, "/auth/mfa/totp", Some(token), &json!({"current_password": password})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let started: Value = resp.json().await.unwrap();
    let uri = started["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(started["qr_svg"].as_str().unwrap().starts_with("<svg"));
    let secret =
        totp_rs::Secret::try_from_base32(started["secret"].as_str().unwrap()).unwrap().as_bytes().to_vec();
    let factor_id = started["factor_id"].clone();
    let resp = post(
        app,
        "/auth/mfa/totp/confirm",
        Some(token),
        &json!({"factor_id": factor_id, "code": code_now(app, &secret)}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let done: Value = resp.json().await.unwrap();
    let codes = done["recovery_codes"]
        .as_array()
        .map(|c| c.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    // The code just used belongs to this step: the next sign-in needs the next one.
    app.advance(Duration::from_secs(30));
    (secret, codes)
}

/// Register a passkey with `authenticator`.
async fn enrol_passkey(app: &TestApp, token: &str, authenticator: &mut SoftAuthenticator) -> Value {
    let resp = post(
        app,
        "/auth/mfa/passkeys",
        Some(token),
        &json!({"name": "laptop", "current_password": PASSWORD}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let started: Value = resp.json().await.unwrap();
    let credential = authenticator.register(&started["webauthn"], app.state.issuer());
    let resp = post(
        app,
        "/auth/mfa/passkeys/finish",
        Some(token),
        &json!({"ceremony": started["ceremony"], "credential": credential}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.unwrap()
}

/// `/auth/login` for a user with a factor: the `mfa_required` body.
async fn mfa_required(app: &TestApp, username: &str) -> Value {
    let resp = login(app, username, json!({})).await;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "mfa_required");
    assert!(body["mfa_token"].as_str().is_some_and(|t| t.len() >= 32));
    assert_eq!(body["mfa_token_expires_in"], 300);
    body
}

async fn login_mfa(app: &TestApp, body: Value) -> reqwest::Response {
    app.post_json("/auth/login/mfa", &body).await
}

/// The kinds of the audit events recorded so far.
async fn event_kinds(app: &TestApp) -> Vec<String> {
    use sea_orm::EntityTrait;
    let rows = latchkey::entities::audit_events::Entity::find().all(&app.state.db).await.unwrap();
    rows.into_iter().map(|r| r.kind).collect()
}

/// `GET /auth/mfa/factors`.
async fn factors(app: &TestApp, token: &str) -> Value {
    let resp = app.get_with_token("/auth/mfa/factors", token).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

fn amr(token: &str) -> Value {
    jwt::claims(token)["amr"].clone()
}

db_test!(async fn an_authenticator_app_is_enrolled_then_required_and_its_codes_work_once(backend) {
    let app = TestApp::spawn(backend).await;
    app.create_user("alice", PASSWORD).await;
    let first = tokens(&app, "alice").await;
    assert_eq!(amr(access(&first)), json!(["pwd"]));
    assert_eq!(jwt::claims(access(&first))["acr"], "urn:latchkey:acr:1fa");
    let other = tokens(&app, "alice").await;

    // A password-only sign-in adds a first factor only with the password:
    // the access token alone (stolen, say) does not.
    let resp = post(&app, "/auth/mfa/totp", Some(access(&first)), &json!({})).await;
    assert_error(resp, 403, "password_required").await;
    let resp = post(&app, "/auth/mfa/passkeys", Some(access(&first)), &json!({})).await;
    assert_error(resp, 403, "password_required").await;
    let wrong = json!({"current_password": "not the password"});
    assert_error(post(&app, "/auth/mfa/totp", Some(access(&first)), &wrong).await, 403, "invalid_credentials").await;

    // A wrong first code enrols nothing.
    let with_password = json!({"current_password": PASSWORD});
    let started: Value =
        post(&app, "/auth/mfa/totp", Some(access(&first)), &with_password).await.json().await.unwrap();
    let resp = post(
        &app,
        "/auth/mfa/totp/confirm",
        Some(access(&first)),
        &json!({"factor_id": started["factor_id"], "code": "000000"}),
    )
    .await;
    assert_error(resp, 401, "invalid_second_factor").await;
    let listed = factors(&app, access(&first)).await;
    assert_eq!(listed["factors"], json!([]));

    let (secret, recovery) = enrol_totp(&app, access(&first), PASSWORD).await;
    assert_eq!(recovery.len(), 10);
    // The other session ended; the enrolling one goes on.
    assert_error(app.refresh(other["refresh_token"].as_str().unwrap()).await, 401, "invalid_refresh_token").await;
    assert_eq!(app.refresh(first["refresh_token"].as_str().unwrap()).await.status(), StatusCode::OK);

    // The password alone no longer signs in.
    let challenge = mfa_required(&app, "alice").await;
    assert_eq!(challenge["factors"], json!(["totp", "recovery_code"]));
    assert!(challenge.get("access_token").is_none());
    let ticket = challenge["mfa_token"].as_str().unwrap();

    // A wrong code is refused and the ticket stays usable.
    let resp = login_mfa(&app, json!({"mfa_token": ticket, "code": "123456"})).await;
    assert_error(resp, 401, "invalid_second_factor").await;
    let code = code_now(&app, &secret);
    let resp = login_mfa(&app, json!({"mfa_token": ticket, "code": code})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let signed_in: Value = resp.json().await.unwrap();
    assert_eq!(amr(access(&signed_in)), json!(["pwd", "otp", "mfa"]));
    assert_eq!(jwt::claims(access(&signed_in))["acr"], "urn:latchkey:acr:mfa");
    // The refreshed tokens keep the sign-in's amr.
    let refreshed: Value =
        app.refresh(signed_in["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(amr(access(&refreshed)), json!(["pwd", "otp", "mfa"]));

    // The ticket is spent; the same code on a new ticket is a replay.
    let resp = login_mfa(&app, json!({"mfa_token": ticket, "code": code})).await;
    assert_error(resp, 401, "invalid_mfa_token").await;
    let again = mfa_required(&app, "alice").await;
    let resp = login_mfa(&app, json!({"mfa_token": again["mfa_token"], "code": code})).await;
    assert_error(resp, 401, "invalid_second_factor").await;
    // The next step's code works.
    app.advance(Duration::from_secs(30));
    let resp = login_mfa(&app, json!({"mfa_token": again["mfa_token"], "code": code_now(&app, &secret)})).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // The enrolment was audited.
    let events = event_kinds(&app).await;
    assert!(events.iter().any(|k| k == "mfa_factor_added"), "{events:?}");
    assert!(events.iter().any(|k| k == "mfa_failed"), "{events:?}");
});

db_test!(async fn a_recovery_code_signs_in_once(backend) {
    let app = TestApp::spawn(backend).await;
    app.create_user("bob", PASSWORD).await;
    let first = tokens(&app, "bob").await;
    let (_, recovery) = enrol_totp(&app, access(&first), PASSWORD).await;
    let code = recovery[0].to_uppercase();

    let challenge = mfa_required(&app, "bob").await;
    let resp = login_mfa(&app, json!({"mfa_token": challenge["mfa_token"], "recovery_code": code})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let signed_in: Value = resp.json().await.unwrap();
    assert_eq!(amr(access(&signed_in)), json!(["pwd", "otp", "mfa"]));

    let challenge = mfa_required(&app, "bob").await;
    let resp = login_mfa(&app, json!({"mfa_token": challenge["mfa_token"], "recovery_code": code})).await;
    assert_error(resp, 401, "invalid_second_factor").await;
    let listed = factors(&app, access(&signed_in)).await;
    assert_eq!(listed["recovery_codes_left"], 9);
    assert_eq!(listed["factors"][0]["kind"], "totp");

    // New codes, asked for four times at once: one set of ten is left, and
    // the old codes are gone.
    let token = access(&signed_in);
    let empty = json!({});
    let asks = (0..4).map(|_| post(&app, "/auth/mfa/recovery-codes", Some(token), &empty));
    for resp in futures_util::future::join_all(asks).await {
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(factors(&app, token).await["recovery_codes_left"], 10);
    let challenge = mfa_required(&app, "bob").await;
    let resp = login_mfa(&app, json!({"mfa_token": challenge["mfa_token"], "recovery_code": recovery[1]})).await;
    assert_error(resp, 401, "invalid_second_factor").await;
});

db_test!(async fn an_mfa_ticket_of_the_password_grant_works_once_and_only_for_its_client(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let web = oauth_support::confidential(&app, &admin).await;
    let other = oauth_support::confidential(&app, &admin).await;
    let first = tokens(&app, "user").await;
    let (secret, _) = enrol_totp(&app, access(&first), PASSWORD).await;

    let password_grant =
        [("grant_type", "password"), ("username", "user"), ("password", PASSWORD)];
    let resp = token_basic(&app, &web, &password_grant).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "mfa_required");
    let ticket = body["mfa_token"].as_str().unwrap().to_owned();
    assert_eq!(body["factors"], json!(["totp", "recovery_code"]));

    let code = code_now(&app, &secret);
    // Not at latchkey's own endpoint, not by another client.
    let resp = login_mfa(&app, json!({"mfa_token": ticket, "code": code})).await;
    assert_error(resp, 401, "invalid_mfa_token").await;
    let mfa_grant = |ticket: &str, code: &str| {
        vec![
            ("grant_type".to_owned(), "urn:latchkey:grant-type:mfa".to_owned()),
            ("mfa_token".to_owned(), ticket.to_owned()),
            ("otp".to_owned(), code.to_owned()),
        ]
    };
    let form = mfa_grant(&ticket, &code);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let resp = token_basic(&app, &other, &form).await;
    assert_error(resp, 400, "invalid_grant").await;

    let resp = token_basic(&app, &web, &form).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let granted: Value = resp.json().await.unwrap();
    assert_eq!(jwt::claims(access(&granted))["client_id"], web.id);
    assert_eq!(amr(access(&granted)), json!(["pwd", "otp", "mfa"]));
    let resp = token_basic(&app, &web, &form).await;
    assert_error(resp, 400, "invalid_grant").await;
});

db_test!(async fn passkeys_enrol_sign_in_and_a_cloned_authenticator_is_refused(backend) {
    let app = TestApp::builder(backend).localhost().spawn().await;
    app.create_user("carol", PASSWORD).await;
    let first = tokens(&app, "carol").await;
    let mut key = SoftAuthenticator::new();
    let added = enrol_passkey(&app, access(&first), &mut key).await;
    assert_eq!(added["recovery_codes"].as_array().unwrap().len(), 10);

    // Second step with the passkey.
    let challenge = mfa_required(&app, "carol").await;
    assert_eq!(challenge["factors"], json!(["passkey", "recovery_code"]));
    let clone = key.clone();
    let assertion = key.assert(&challenge["webauthn"], app.state.issuer());
    let resp = login_mfa(&app, json!({"mfa_token": challenge["mfa_token"], "webauthn": assertion})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let signed_in: Value = resp.json().await.unwrap();
    assert_eq!(amr(access(&signed_in)), json!(["pwd", "swk", "user", "mfa"]));

    // Usernameless: the passkey alone.
    let started: Value = app.post_json("/auth/passkey/login/begin", &json!({})).await.json().await.unwrap();
    let assertion = key.assert(&started["webauthn"], app.state.issuer());
    let resp = app
        .post_json("/auth/passkey/login/finish", &json!({"ceremony": started["ceremony"], "credential": assertion}))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let passwordless: Value = resp.json().await.unwrap();
    assert_eq!(amr(access(&passwordless)), json!(["swk", "user", "mfa"]));
    assert_eq!(jwt::claims(access(&passwordless))["sub"], jwt::claims(access(&first))["sub"]);
    // Its ceremony was single use.
    let resp = app
        .post_json("/auth/passkey/login/finish", &json!({"ceremony": started["ceremony"], "credential": assertion}))
        .await;
    assert_error(resp, 401, "invalid_mfa_token").await;

    // A clone of the authenticator, its counter behind: refused.
    let mut clone = clone;
    let challenge = mfa_required(&app, "carol").await;
    let assertion = clone.assert(&challenge["webauthn"], app.state.issuer());
    let resp = login_mfa(&app, json!({"mfa_token": challenge["mfa_token"], "webauthn": assertion})).await;
    assert_error(resp, 401, "invalid_second_factor").await;
    // An assertion for another origin: refused.
    let assertion = key.assert(&challenge["webauthn"], "http://localhost:1");
    let resp = login_mfa(&app, json!({"mfa_token": challenge["mfa_token"], "webauthn": assertion})).await;
    assert_error(resp, 401, "invalid_second_factor").await;
    // The genuine authenticator still works.
    let assertion = key.assert(&challenge["webauthn"], app.state.issuer());
    let resp = login_mfa(&app, json!({"mfa_token": challenge["mfa_token"], "webauthn": assertion})).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // A disabled account: only a valid signature learns that it is disabled.
    disable(&app, "carol").await;
    let resp = passkey_only(&app, &mut key, true).await;
    assert_error(resp, 401, "invalid_second_factor").await;
    let resp = passkey_only(&app, &mut key, false).await;
    assert_error(resp, 403, "account_unavailable").await;
    assert!(event_kinds(&app).await.iter().any(|k| k == "login_failed"), "audited as a password sign-in would be");
});

/// A usernameless passkey sign-in with `key`; with `tamper`, the
/// assertion's signature is spoiled.
async fn passkey_only(app: &TestApp, key: &mut SoftAuthenticator, tamper: bool) -> reqwest::Response {
    let started: Value = app.post_json("/auth/passkey/login/begin", &json!({})).await.json().await.unwrap();
    let mut assertion = key.assert(&started["webauthn"], app.state.issuer());
    if tamper {
        let signature = assertion["response"]["signature"].as_str().unwrap();
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        assertion["response"]["signature"] = json!(format!("{flipped}{}", &signature[1..]));
    }
    app.post_json(
        "/auth/passkey/login/finish",
        &json!({"ceremony": started["ceremony"], "credential": assertion}),
    )
    .await
}

/// Disable a user's account in the database, as an admin would.
async fn disable(app: &TestApp, username: &str) {
    use latchkey::entities::users::{Column, Entity};
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let done = Entity::update_many()
        .col_expr(Column::Disabled, Expr::value(true))
        .filter(Column::Username.eq(username))
        .exec(&app.state.db)
        .await
        .unwrap();
    assert_eq!(done.rows_affected, 1);
}

db_test!(async fn wrong_answers_lock_the_second_step_on_every_replica(backend) {
    let one = TestApp::spawn(backend).await;
    let two = TestApp::builder(backend).on(one.db.clone()).clock(one.clock.clone()).spawn().await;
    one.create_user("dave", PASSWORD).await;
    let first = tokens(&one, "dave").await;
    let (secret, _) = enrol_totp(&one, access(&first), PASSWORD).await;

    for i in 0..5 {
        let app = if i % 2 == 0 { &one } else { &two };
        let challenge = mfa_required(app, "dave").await;
        let resp = login_mfa(app, json!({"mfa_token": challenge["mfa_token"], "code": "000000"})).await;
        assert_error(resp, 401, "invalid_second_factor").await;
    }
    // Locked everywhere, even for the right code.
    for app in [&one, &two] {
        let challenge = mfa_required(app, "dave").await;
        let resp = login_mfa(app, json!({"mfa_token": challenge["mfa_token"], "code": code_now(app, &secret)})).await;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(resp.headers().contains_key("retry-after"));
        assert_eq!(resp.json::<Value>().await.unwrap()["error"], "mfa_locked");
    }
    let events = event_kinds(&one).await;
    assert_eq!(events.iter().filter(|k| *k == "mfa_locked_out").count(), 1, "{events:?}");
    // After the lockout, the right code works again.
    one.advance(Duration::from_secs(16 * 60));
    let challenge = mfa_required(&two, "dave").await;
    let resp = login_mfa(&two, json!({"mfa_token": challenge["mfa_token"], "code": code_now(&two, &secret)})).await;
    assert_eq!(resp.status(), StatusCode::OK);
});

db_test!(async fn admin_tokens_need_the_second_factor_an_admin_has(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    // Enrolling needs a recent sign-in.
    app.advance(Duration::from_secs(301));
    let resp = post(&app, "/auth/mfa/totp", Some(&admin), &json!({})).await;
    assert_error(resp, 403, "reauthentication_required").await;
    let admin = oauth_support::admin_token(&app).await;
    let (secret, _) = enrol_totp(&app, &admin, ADMIN_PASSWORD).await;
    // The token from before the enrolment lacks mfa: refused by the admin API.
    let resp = app.client.get(app.url("/admin/clients")).bearer_auth(&admin).send().await.unwrap();
    assert_error(resp, 403, "mfa_required").await;

    let resp = app
        .post_json(
            "/auth/login",
            &json!({"username": "admin", "password": "admin password 1", "scope": "latchkey:admin"}),
        )
        .await;
    let challenge = assert_error(resp, 401, "mfa_required").await;
    let resp = login_mfa(
        &app,
        json!({"mfa_token": challenge.mfa_token.unwrap(), "code": code_now(&app, &secret)}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let admin: Value = resp.json().await.unwrap();
    let resp = app.client.get(app.url("/admin/clients")).bearer_auth(access(&admin)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // An admin resets a user's factors: audited, sessions end, password alone works again.
    let user_tokens = tokens(&app, "user").await;
    enrol_totp(&app, access(&user_tokens), PASSWORD).await;
    mfa_required(&app, "user").await;
    let user_id = jwt::claims(access(&user_tokens))["sub"].as_str().unwrap().to_owned();
    let resp = app
        .client
        .delete(app.url(&format!("/admin/users/{user_id}/mfa")))
        .bearer_auth(access(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let reset: Value = resp.json().await.unwrap();
    assert_eq!(reset["factors_removed"], 1);
    assert_error(app.refresh(user_tokens["refresh_token"].as_str().unwrap()).await, 401, "invalid_refresh_token").await;
    tokens(&app, "user").await;
    let events = event_kinds(&app).await;
    assert!(events.iter().any(|k| k == "mfa_factors_reset"), "{events:?}");
});

db_test!(async fn a_required_role_signs_in_only_to_enrol_until_it_has_a_factor(backend) {
    let app = TestApp::builder(backend)
        .configure(|s| {
            s.admin_username = Some("admin".into());
            s.admin_password = Some(secrecy::SecretString::from("admin password 1".to_owned()));
            s.mfa_required_roles = vec!["admin".into()];
        })
        .spawn()
        .await;
    let resp = app
        .post_json(
            "/auth/login",
            &json!({"username": "admin", "password": "admin password 1", "scope": "latchkey:admin"}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let enrol: Value = resp.json().await.unwrap();
    assert_eq!(enrol["scope"], "latchkey:mfa_enrol");
    assert!(enrol.get("refresh_token").is_none_or(Value::is_null));
    let token = access(&enrol);
    // Good for nothing but enrolment: not the admin API, not the account.
    let resp = app.client.get(app.url("/admin/clients")).bearer_auth(token).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = app.get_with_token("/auth/me", token).await;
    assert_error(resp, 403, "mfa_enrolment_required").await;
    assert_ne!(jwt::claims(token)["aud"], "latchkey", "no relying service accepts it");

    let (secret, _) = enrol_totp(&app, token, ADMIN_PASSWORD).await;
    let challenge = assert_error(
        app.post_json(
            "/auth/login",
            &json!({"username": "admin", "password": "admin password 1", "scope": "latchkey:admin"}),
        )
        .await,
        401,
        "mfa_required",
    )
    .await;
    let resp = login_mfa(&app, json!({"mfa_token": challenge.mfa_token.unwrap(), "code": code_now(&app, &secret)})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let admin: Value = resp.json().await.unwrap();
    let resp = app.client.get(app.url("/admin/clients")).bearer_auth(access(&admin)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
});

db_test!(async fn a_client_that_requires_mfa_refuses_password_only_users(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let strict = register_client(
        &app,
        &admin,
        json!({
            "client_name": "Payroll",
            "redirect_uris": [oauth_support::REDIRECT],
            "grant_types": ["password", "refresh_token"],
            "scope": "openid profile",
            "require_mfa": true,
        }),
    )
    .await;
    let password_grant = [("grant_type", "password"), ("username", "user"), ("password", PASSWORD)];
    let resp = token_basic(&app, &strict, &password_grant).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "mfa_enrolment_required");

    let first = tokens(&app, "user").await;
    let (secret, _) = enrol_totp(&app, access(&first), PASSWORD).await;
    let resp = token_basic(&app, &strict, &password_grant).await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "mfa_required");
    let resp = token_basic(
        &app,
        &strict,
        &[
            ("grant_type", "urn:latchkey:grant-type:mfa"),
            ("mfa_token", body["mfa_token"].as_str().unwrap()),
            ("otp", &code_now(&app, &secret)),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let granted: Value = resp.json().await.unwrap();
    // The ID token says it too.
    let id = jwt::claims(granted["id_token"].as_str().unwrap());
    assert_eq!(id["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(id["acr"], "urn:latchkey:acr:mfa");
});

db_test!(async fn a_relying_service_can_require_mfa_in_amr(backend) {
    use latchkey_verify::{Verifier, VerifierConfig};
    let app = TestApp::spawn(backend).await;
    app.create_user("erin", PASSWORD).await;
    let first = tokens(&app, "erin").await;
    let jwks = app.jwks().await.to_string();
    let mut config = VerifierConfig::new(app.state.issuer(), "latchkey");
    // The service's clock is the app's (which the test moves).
    let clock = app.clock.clone();
    config.clock = std::sync::Arc::new(move || {
        use latchkey::clock::Clock;
        clock.now().timestamp()
    });
    let verifier = Verifier::from_jwks(config, jwks.as_bytes()).unwrap();
    let claims = verifier.verify(access(&first)).await.unwrap();
    assert!(!claims.has_mfa());
    assert!(latchkey_verify::poem_support::require_mfa(&claims).is_err());

    let (secret, _) = enrol_totp(&app, access(&first), PASSWORD).await;
    let challenge = mfa_required(&app, "erin").await;
    let resp = login_mfa(&app, json!({"mfa_token": challenge["mfa_token"], "code": code_now(&app, &secret)})).await;
    let signed_in: Value = resp.json().await.unwrap();
    let claims = verifier.verify(access(&signed_in)).await.unwrap();
    assert!(claims.has_mfa());
    assert_eq!(claims.acr.as_deref(), Some("urn:latchkey:acr:mfa"));
    assert!(latchkey_verify::poem_support::require_mfa(&claims).is_ok());
});

/// Sign in on the page: the password form, and, when the page asks for
/// it, the second step with `code`. Returns the final response.
async fn page_sign_in(browser: &reqwest::Client, url: &str, code: Option<&str>) -> reqwest::Response {
    use crate::oauth_support::{browser_post, origin_of, parse_form};
    let page = browser.get(url).send().await.unwrap();
    if page.status() == StatusCode::FOUND {
        return page;
    }
    let html = page.text().await.unwrap();
    let (action, mut fields) = parse_form(&html);
    fields.insert("username".into(), "user".into());
    fields.insert("password".into(), PASSWORD.into());
    let origin = origin_of(&action);
    let resp = browser_post(browser, &action, Some(&origin), Some("same-origin"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    let Some(code) = code else { return resp };
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    assert!(html.contains("Two-step verification"), "{html}");
    let (action, mut fields) = parse_form(&html);
    assert!(fields.contains_key("mfa_token"));
    fields.insert("code".into(), code.into());
    browser_post(browser, &action, Some(&origin), Some("same-origin")).form(&fields).send().await.unwrap()
}

/// Exchange the code in a redirect for tokens.
async fn redeem(app: &TestApp, client: &oauth_support::Client, location: &str, verifier: &str) -> Value {
    let resp = offer_code(app, client, location, verifier).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

/// The token endpoint's answer to the code in a redirect.
async fn offer_code(
    app: &TestApp,
    client: &oauth_support::Client,
    location: &str,
    verifier: &str,
) -> reqwest::Response {
    let code = oauth_support::query(location)["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", oauth_support::REDIRECT),
        ("code_verifier", verifier),
    ];
    token_basic(app, client, &form).await
}

/// A second replica of `one` (same database, clock and issuer) whose
/// `LATCHKEY_MFA_REQUIRED_ROLES` is `role`: a rolling configuration change.
async fn replica_requiring_mfa_of(one: &TestApp, backend: crate::helpers::Backend, role: &str) -> TestApp {
    let issuer = one.state.issuer().to_owned();
    let role = role.to_owned();
    TestApp::builder(backend)
        .on(one.db.clone())
        .clock(one.clock.clone())
        .configure(move |s| {
            s.issuer = Some(issuer);
            s.mfa_required_roles = vec![role];
        })
        .spawn()
        .await
}

db_test!(async fn the_sign_in_page_asks_for_the_second_factor_and_acr_values_needs_one(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let web = oauth_support::confidential(&app, &admin).await;
    let browser = oauth_support::browser_for(&app);
    let (verifier, challenge) = oauth_support::pkce_pair();
    let pkce = [("code_challenge", challenge.as_str()), ("code_challenge_method", "S256"), ("scope", "openid")];
    let mfa_pkce = [
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("scope", "openid"),
        ("acr_values", "urn:latchkey:acr:mfa"),
    ];

    // A password-only user signs in; their tokens say so.
    let resp = page_sign_in(&browser, &oauth_support::authorize_url(&app, &web.id, &pkce), None).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let tokens = redeem(&app, &web, &oauth_support::location(&resp), &verifier).await;
    assert_eq!(amr(access(&tokens)), json!(["pwd"]));
    assert_eq!(jwt::claims(tokens["id_token"].as_str().unwrap())["acr"], "urn:latchkey:acr:1fa");

    // Asking for a second factor: the password-only session does not count,
    // and a user without a factor cannot sign in to it.
    let url = oauth_support::authorize_url(&app, &web.id, &mfa_pkce);
    let resp = page_sign_in(&browser, &url, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    assert!(html.contains("role=\"alert\"") && html.contains("second factor"), "{html}");

    // With an authenticator app, the page asks for its code.
    let first = tokens_for_user(&app).await;
    let (secret, _) = enrol_totp(&app, access(&first), PASSWORD).await;
    let code = code_now(&app, &secret);
    let resp = page_sign_in(&browser, &url, Some(&code)).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let tokens = redeem(&app, &web, &oauth_support::location(&resp), &verifier).await;
    assert_eq!(amr(access(&tokens)), json!(["pwd", "otp", "mfa"]));
    assert_eq!(jwt::claims(tokens["id_token"].as_str().unwrap())["acr"], "urn:latchkey:acr:mfa");
    // That session counts for acr_values from now on: straight back with a code.
    let resp = browser.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert!(oauth_support::query(&oauth_support::location(&resp)).contains_key("code"));
});

async fn tokens_for_user(app: &TestApp) -> Value {
    tokens(app, "user").await
}

db_test!(async fn an_operator_resets_the_factors_of_an_admin_nobody_else_can_rescue(backend) {
    let app = TestApp::spawn(backend).await;
    app.create_user("frank", PASSWORD).await;
    let first = tokens(&app, "frank").await;
    enrol_totp(&app, access(&first), PASSWORD).await;
    mfa_required(&app, "frank").await;

    let out = app.cli(&["users", "reset-mfa", "--username", "FRANK"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed 1 second factor(s)"));
    // Every session ended; the password alone signs in again.
    assert_error(app.refresh(first["refresh_token"].as_str().unwrap()).await, 401, "invalid_refresh_token").await;
    assert_eq!(amr(access(&tokens(&app, "frank").await)), json!(["pwd"]));
    assert!(event_kinds(&app).await.iter().any(|k| k == "mfa_factors_reset"));

    let out = app.cli(&["users", "reset-mfa", "--username", "nobody"], None);
    assert!(!out.status.success());
});

db_test!(async fn parallel_guesses_get_no_more_checks_than_sequential_ones(backend) {
    let app = TestApp::spawn(backend).await;
    app.create_user("gina", PASSWORD).await;
    let first = tokens(&app, "gina").await;
    enrol_totp(&app, access(&first), PASSWORD).await;
    let challenge = mfa_required(&app, "gina").await;
    let guesses = (0..30).map(|_| login_mfa(&app, json!({"mfa_token": challenge["mfa_token"], "code": "000000"})));
    let answers = futures_util::future::join_all(guesses).await;
    let mut checked = 0;
    for resp in answers {
        let body: Value = resp.json().await.unwrap();
        match body["error"].as_str().unwrap() {
            "invalid_second_factor" => checked += 1,
            "invalid_mfa_token" | "mfa_locked" => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(checked <= 5, "{checked} guesses were checked");
});

db_test!(async fn a_second_factor_required_later_ends_sessions_signed_in_without_one(backend) {
    // A client turns on require_mfa while a user has a password-only
    // refresh token of it and a browser session that signed in to it.
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let web = oauth_support::confidential(&app, &admin).await;
    let password_grant = [("grant_type", "password"), ("username", "user"), ("password", PASSWORD)];
    let resp = token_basic(&app, &web, &password_grant).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let granted: Value = resp.json().await.unwrap();
    let browser = oauth_support::browser_for(&app);
    let (verifier, challenge) = oauth_support::pkce_pair();
    let pkce = [("code_challenge", challenge.as_str()), ("code_challenge_method", "S256"), ("scope", "openid")];
    let url = oauth_support::authorize_url(&app, &web.id, &pkce);
    let signed_in = page_sign_in(&browser, &url, None).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let location = oauth_support::location(&signed_in);
    assert_eq!(browser.get(&url).send().await.unwrap().status(), StatusCode::FOUND, "the session is remembered");

    let resp = app
        .client
        .patch(app.url(&format!("/admin/clients/{}", web.id)))
        .bearer_auth(&admin)
        .json(&json!({"require_mfa": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // The refresh token no longer mints tokens, and its session is over.
    let refresh = [("grant_type", "refresh_token"), ("refresh_token", granted["refresh_token"].as_str().unwrap())];
    let resp = token_basic(&app, &web, &refresh).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let refused: Value = resp.json().await.unwrap();
    assert_eq!(refused["error"], "invalid_grant");
    assert!(refused["error_description"].as_str().unwrap().contains("second factor"), "{refused}");
    let userinfo = app.get_with_token("/oauth/userinfo", access(&granted)).await;
    assert_eq!(userinfo.status(), StatusCode::UNAUTHORIZED, "the session's access token is denied too");
    let resp = token_basic(&app, &web, &refresh).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert!(event_kinds(&app).await.iter().any(|k| k == "family_revoked"), "the ending is audited");
    // A code the password-only session got before buys nothing now.
    let resp = offer_code(&app, &web, &location, &verifier).await;
    let refused: Value = resp.json().await.unwrap();
    assert_eq!(refused["error"], "invalid_grant");
    assert!(refused["error_description"].as_str().unwrap().contains("second factor"), "{refused}");
    // The browser session does not count for this client any more: the form again.
    let resp = browser.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("id=\"username\""));
});

db_test!(async fn a_role_required_later_stops_password_only_browser_sessions_codes_and_tokens(backend) {
    // "user" gets the role "staff"; replica two has it in
    // LATCHKEY_MFA_REQUIRED_ROLES, replica one does not (yet).
    let (one, admin) = oauth_support::spawn_with_admin(backend).await;
    let web = oauth_support::confidential(&one, &admin).await;
    let user_id = jwt::claims(access(&tokens(&one, "user").await))["sub"].as_str().unwrap().to_owned();
    let resp = one
        .client
        .patch(one.url(&format!("/admin/users/{user_id}")))
        .bearer_auth(&admin)
        .json(&json!({"roles": ["staff"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The role change denied the user's tokens issued up to now (and a
    // few seconds of clock skew after).
    one.advance(Duration::from_secs(6));
    let two = replica_requiring_mfa_of(&one, backend, "staff").await;

    // A first-party token from one: on two, it only enrols, and the
    // password change cannot mint full tokens from it either.
    let first = tokens(&one, "user").await;
    assert_error(two.get_with_token("/auth/me", access(&first)).await, 403, "mfa_enrolment_required").await;
    let resp = two
        .client
        .post(two.url("/auth/password"))
        .bearer_auth(access(&first))
        .json(&json!({"current_password": PASSWORD, "new_password": "another long password 2"}))
        .send()
        .await
        .unwrap();
    assert_error(resp, 403, "mfa_enrolment_required").await;
    // The enrol-only token two gives adds a factor only with the password.
    let enrol = tokens(&two, "user").await;
    assert_eq!(enrol["scope"], "latchkey:mfa_enrol");
    let resp = post(&two, "/auth/mfa/totp", Some(access(&enrol)), &json!({})).await;
    assert_error(resp, 403, "password_required").await;

    // A browser signed in on one: one honours its session, two does not,
    // and two refuses the code one issued.
    let browser = oauth_support::browser_for(&one);
    let (verifier, challenge) = oauth_support::pkce_pair();
    let pkce = [("code_challenge", challenge.as_str()), ("code_challenge_method", "S256"), ("scope", "openid")];
    let signed_in = page_sign_in(&browser, &oauth_support::authorize_url(&one, &web.id, &pkce), None).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let location = oauth_support::location(&signed_in);
    let again = browser.get(oauth_support::authorize_url(&one, &web.id, &pkce)).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::FOUND, "one still honours the session");
    let resp = browser.get(oauth_support::authorize_url(&two, &web.id, &pkce)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("id=\"username\""), "two shows the form");
    let silent = [pkce.as_slice(), &[("prompt", "none")]].concat();
    let resp = browser.get(oauth_support::authorize_url(&two, &web.id, &silent)).send().await.unwrap();
    assert_eq!(oauth_support::query(&oauth_support::location(&resp))["error"], "login_required");
    let resp = offer_code(&two, &web, &location, &verifier).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "invalid_grant");
});

db_test!(async fn a_role_required_later_ends_its_password_only_admin_sessions(backend) {
    // Replica one predates the setting; replica two has the admin role in
    // LATCHKEY_MFA_REQUIRED_ROLES (a rolling configuration change).
    let one = TestApp::builder(backend)
        .configure(|s| {
            s.admin_username = Some("admin".into());
            s.admin_password = Some(secrecy::SecretString::from(ADMIN_PASSWORD.to_owned()));
        })
        .spawn()
        .await;
    let two = replica_requiring_mfa_of(&one, backend, "admin").await;
    let resp = one
        .post_json("/auth/login", &json!({"username": "admin", "password": ADMIN_PASSWORD, "scope": "latchkey:admin"}))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let admin: Value = resp.json().await.unwrap();
    assert_eq!(amr(access(&admin)), json!(["pwd"]));

    let resp = two.client.get(two.url("/admin/clients")).bearer_auth(access(&admin)).send().await.unwrap();
    assert_error(resp, 403, "mfa_enrolment_required").await;
    let resp = two.refresh(admin["refresh_token"].as_str().unwrap()).await;
    let body = assert_error(resp, 401, "login_required").await;
    assert!(body.error_description.contains("second factor"), "{}", body.error_description);
    // Ended for good: the replica without the setting refuses it too.
    assert_error(one.refresh(admin["refresh_token"].as_str().unwrap()).await, 401, "invalid_refresh_token").await;
});

db_test!(async fn starting_passkey_sign_ins_does_not_use_up_the_answers_budget(backend) {
    let app = TestApp::builder(backend).localhost().configure(|s| s.mfa_rate_per_ip = 3).spawn().await;
    app.create_user("hana", PASSWORD).await;
    let first = tokens(&app, "hana").await;
    let (secret, _) = enrol_totp(&app, access(&first), PASSWORD).await;

    for _ in 0..3 {
        assert_eq!(app.post_json("/auth/passkey/login/begin", &json!({})).await.status(), StatusCode::OK);
    }
    let resp = app.post_json("/auth/passkey/login/begin", &json!({})).await;
    assert_error(resp, 429, "rate_limited").await;
    // The second step of a password sign-in still has its own three answers.
    let challenge = mfa_required(&app, "hana").await;
    let resp = login_mfa(&app, json!({"mfa_token": challenge["mfa_token"], "code": code_now(&app, &secret)})).await;
    assert_eq!(resp.status(), StatusCode::OK);
});
