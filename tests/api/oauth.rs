//! OAuth endpoints through raw HTTP: every grant's failure modes, exactly
//! as RFC 6749 §5.2 names them, CSRF, discovery, the admin client API.

use std::time::Duration;

use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::{TestApp, assert_error};
use crate::oauth_support::{self, Client, PASSWORD, REDIRECT};

/// Run the code flow by hand; returns (code, verifier).
async fn code_for(app: &TestApp, client: &Client) -> (String, String) {
    let (verifier, challenge) = oauth_support::pkce_pair();
    let url = oauth_support::authorize_url(
        app,
        &client.id,
        &[
            ("scope", "openid profile"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("nonce", "n-0S6"),
        ],
    );
    let redirect = oauth_support::sign_in(&oauth_support::browser(), &url, "user", PASSWORD).await;
    let params = oauth_support::query(&redirect);
    assert_eq!(params["state"], "xyz");
    (params["code"].clone(), verifier)
}

async fn exchange(app: &TestApp, client: &Client, code: &str, verifier: &str) -> reqwest::Response {
    oauth_support::token_basic(
        app,
        client,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    )
    .await
}

db_test!(async fn discovery_lists_every_endpoint_and_capability(backend) {
    let app = TestApp::spawn(backend).await;
    let d: Value = app.get("/.well-known/openid-configuration").await.json().await.unwrap();
    let issuer = app.address.clone();
    assert_eq!(d["issuer"], issuer);
    for (field, path) in [
        ("authorization_endpoint", "/oauth/authorize"),
        ("token_endpoint", "/oauth/token"),
        ("userinfo_endpoint", "/oauth/userinfo"),
        ("jwks_uri", "/.well-known/jwks.json"),
        ("revocation_endpoint", "/oauth/revoke"),
        ("introspection_endpoint", "/oauth/introspect"),
        ("end_session_endpoint", "/oauth/logout"),
    ] {
        assert_eq!(d[field], format!("{issuer}{path}"), "{field}");
    }
    assert_eq!(d["response_types_supported"], json!(["code"]));
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    assert!(d["id_token_signing_alg_values_supported"].as_array().unwrap().contains(&json!("RS256")));
    for grant in ["authorization_code", "refresh_token", "client_credentials", "password"] {
        assert!(d["grant_types_supported"].as_array().unwrap().contains(&json!(grant)), "{grant}");
    }
    for method in ["client_secret_basic", "client_secret_post", "none"] {
        assert!(d["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!(method)));
    }
    assert!(d["scopes_supported"].as_array().unwrap().contains(&json!("openid")));
    assert!(d["claims_supported"].as_array().unwrap().contains(&json!("sub")));
});

db_test!(async fn client_authentication_failures_are_invalid_client_with_a_basic_challenge(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let wrong = Client { id: client.id.clone(), secret: Some("wrong".into()) };
    let unknown = Client { id: "nope".into(), secret: Some("x".into()) };
    for who in [&wrong, &unknown] {
        let resp = oauth_support::token_basic(&app, who, &[("grant_type", "client_credentials")]).await;
        let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert_error(resp, 401, "invalid_client").await;
        assert!(challenge.starts_with("Basic"), "{challenge}");
    }
    // Registered for basic: client_secret_post is refused.
    let resp = app
        .client
        .post(app.url("/oauth/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", &client.id), ("client_secret", client.secret.as_deref().unwrap())])
        .send()
        .await
        .unwrap();
    assert_error(resp, 401, "invalid_client").await;
    // Two methods at once.
    let resp = app
        .client
        .post(app.url("/oauth/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[("grant_type", "client_credentials"), ("client_secret", client.secret.as_deref().unwrap())])
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, "invalid_request").await;
    // No authentication at all.
    let resp = app.client.post(app.url("/oauth/token")).form(&[("grant_type", "client_credentials")]).send().await.unwrap();
    assert_error(resp, 401, "invalid_client").await;
});

db_test!(async fn client_secret_post_and_malformed_token_requests(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::register_client(
        &app,
        &admin,
        json!({"client_name": "svc", "grant_types": ["client_credentials"], "scope": "tasks:read", "token_endpoint_auth_method": "client_secret_post"}),
    )
    .await;
    let secret = client.secret.clone().unwrap();
    let form = |extra: &[(&'static str, &'static str)]| {
        let mut f: Vec<(&str, String)> = vec![("client_id", client.id.clone()), ("client_secret", secret.clone())];
        f.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        f
    };
    let resp = app.client.post(app.url("/oauth/token")).form(&form(&[("grant_type", "client_credentials")])).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "tasks:read");
    assert!(body.get("refresh_token").is_none_or(Value::is_null));

    let resp = app.client.post(app.url("/oauth/token")).form(&form(&[("grant_type", "magic")])).send().await.unwrap();
    assert_error(resp, 400, "unsupported_grant_type").await;
    let resp = app.client.post(app.url("/oauth/token")).form(&form(&[])).send().await.unwrap();
    assert_error(resp, 400, "invalid_request").await;
    let resp = app.client.post(app.url("/oauth/token")).json(&json!({"grant_type": "client_credentials"})).send().await.unwrap();
    assert_error(resp, 400, "invalid_request").await;
    let resp = app
        .client
        .post(app.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials&grant_type=password&client_id={}&client_secret={secret}", client.id))
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, "invalid_request").await;
    // Scope beyond the registration, or openid for a client token.
    for scope in ["tasks:write", "openid"] {
        let resp = app
            .client
            .post(app.url("/oauth/token"))
            .form(&form(&[("grant_type", "client_credentials"), ("scope", scope)]))
            .send()
            .await
            .unwrap();
        assert_error(resp, 400, "invalid_scope").await;
    }
    // A grant it was not registered for.
    let resp = app
        .client
        .post(app.url("/oauth/token"))
        .form(&form(&[("grant_type", "password"), ("username", "user"), ("password", PASSWORD)]))
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, "unauthorized_client").await;
});

db_test!(async fn the_password_grant_refuses_bad_credentials_as_invalid_grant(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let resp =
        oauth_support::token_basic(&app, &client, &[("grant_type", "password"), ("username", "user"), ("password", "wrong")]).await;
    assert_error(resp, 400, "invalid_grant").await;
    let resp = oauth_support::token_basic(&app, &client, &[("grant_type", "password"), ("username", "user")]).await;
    assert_error(resp, 400, "invalid_request").await;
    let resp = oauth_support::token_basic(
        &app,
        &client,
        &[("grant_type", "password"), ("username", "user"), ("password", PASSWORD), ("scope", "admin")],
    )
    .await;
    assert_error(resp, 400, "invalid_scope").await;
});

db_test!(async fn code_exchange_failures(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;

    // Wrong redirect URI at the token endpoint.
    let (code, verifier) = code_for(&app, &client).await;
    let resp = oauth_support::token_basic(
        &app,
        &client,
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", "http://127.0.0.1:9/other"), ("code_verifier", &verifier)],
    )
    .await;
    assert_error(resp, 400, "invalid_grant").await;

    // PKCE verifier mismatch.
    let (code, _) = code_for(&app, &client).await;
    let (other_verifier, _) = oauth_support::pkce_pair();
    assert_error(exchange(&app, &client, &code, &other_verifier).await, 400, "invalid_grant").await;
    let resp = oauth_support::token_basic(
        &app,
        &client,
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT)],
    )
    .await;
    assert_error(resp, 400, "invalid_grant").await;

    // Expired code.
    let (code, verifier) = code_for(&app, &client).await;
    app.advance(Duration::from_secs(61));
    assert_error(exchange(&app, &client, &code, &verifier).await, 400, "invalid_grant").await;

    // Another client's code.
    let other = oauth_support::confidential(&app, &admin).await;
    let (code, verifier) = code_for(&app, &client).await;
    assert_error(exchange(&app, &other, &code, &verifier).await, 400, "invalid_grant").await;
    // ...did not burn it for its rightful owner.
    assert_eq!(exchange(&app, &client, &code, &verifier).await.status(), 200);

    // Missing parameters.
    let resp = oauth_support::token_basic(&app, &client, &[("grant_type", "authorization_code")]).await;
    assert_error(resp, 400, "invalid_request").await;
});

db_test!(async fn a_reused_code_revokes_what_it_issued(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let (code, verifier) = code_for(&app, &client).await;
    let first: Value = exchange(&app, &client, &code, &verifier).await.json().await.unwrap();
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(oauth_support::introspect(&app, &client, access).await["active"], true);

    assert_error(exchange(&app, &client, &code, &verifier).await, 400, "invalid_grant").await;

    assert_eq!(oauth_support::introspect(&app, &client, access).await, json!({"active": false}));
    let resp = oauth_support::token_basic(
        &app,
        &client,
        &[("grant_type", "refresh_token"), ("refresh_token", first["refresh_token"].as_str().unwrap())],
    )
    .await;
    assert_error(resp, 400, "invalid_grant").await;
    assert_eq!(app.get_with_token("/oauth/userinfo", access).await.status(), 401);
});

db_test!(async fn refresh_grant_rules(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let tokens: Value = oauth_support::token_basic(
        &app,
        &client,
        &[("grant_type", "password"), ("username", "user"), ("password", PASSWORD), ("scope", "openid profile tasks:read")],
    )
    .await
    .json()
    .await
    .unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();

    // Widening is refused and changes nothing.
    let resp = oauth_support::token_basic(
        &app,
        &client,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh), ("scope", "openid tasks:write")],
    )
    .await;
    assert_error(resp, 400, "invalid_scope").await;
    // Narrowing works.
    let resp = oauth_support::token_basic(
        &app,
        &client,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh), ("scope", "tasks:read")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let narrowed: Value = resp.json().await.unwrap();
    assert_eq!(narrowed["scope"], "tasks:read");

    // Another client cannot use this family.
    let other = oauth_support::confidential(&app, &admin).await;
    let resp = oauth_support::token_basic(
        &app,
        &other,
        &[("grant_type", "refresh_token"), ("refresh_token", narrowed["refresh_token"].as_str().unwrap())],
    )
    .await;
    assert_error(resp, 400, "invalid_grant").await;
    // Nor the first-party JSON API.
    assert_error(app.refresh(narrowed["refresh_token"].as_str().unwrap()).await, 401, "invalid_refresh_token").await;
});

db_test!(async fn authorization_request_errors_go_back_to_a_valid_redirect_only(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let public = oauth_support::public(&app, &admin).await;
    let confidential = oauth_support::confidential(&app, &admin).await;
    let browser = oauth_support::browser();

    // Unknown client or unregistered redirect URI: a page, never a redirect.
    for url in [
        oauth_support::authorize_url(&app, "no-such-client", &[]),
        oauth_support::authorize_url(&app, &public.id, &[]).replace("%2Fcallback", "%2Fevil"),
    ] {
        let resp = browser.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 400);
        assert!(resp.headers().get("location").is_none());
        assert!(resp.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
        assert!(resp.text().await.unwrap().contains("role=\"alert\""));
    }

    let expect_error = |resp: reqwest::Response, code: &'static str| async move {
        assert_eq!(resp.status(), 302);
        let params = oauth_support::query(&oauth_support::location(&resp));
        assert_eq!(params["error"], code);
        assert_eq!(params["state"], "xyz");
        assert!(params.contains_key("iss"));
    };
    // A public client without PKCE.
    let resp = browser.get(oauth_support::authorize_url(&app, &public.id, &[])).send().await.unwrap();
    expect_error(resp, "invalid_request").await;
    // plain PKCE is not accepted.
    let resp = browser
        .get(oauth_support::authorize_url(&app, &public.id, &[("code_challenge", "abc"), ("code_challenge_method", "plain")]))
        .send()
        .await
        .unwrap();
    expect_error(resp, "invalid_request").await;
    // Unsupported response type, unknown scope.
    let url = oauth_support::authorize_url_with_pkce(&app, &confidential.id, &[]).replace("response_type=code", "response_type=token");
    expect_error(browser.get(url).send().await.unwrap(), "unsupported_response_type").await;
    let url = oauth_support::authorize_url_with_pkce(&app, &confidential.id, &[("scope", "openid admin")]);
    expect_error(browser.get(url).send().await.unwrap(), "invalid_scope").await;
    // prompt=none without a session.
    let url = oauth_support::authorize_url_with_pkce(&app, &confidential.id, &[("prompt", "none")]);
    expect_error(browser.get(url).send().await.unwrap(), "login_required").await;
    // A client not registered for the code flow.
    let svc = oauth_support::register_client(
        &app,
        &admin,
        json!({"client_name": "svc", "redirect_uris": [REDIRECT], "grant_types": ["client_credentials"]}),
    )
    .await;
    expect_error(browser.get(oauth_support::authorize_url(&app, &svc.id, &[])).send().await.unwrap(), "unauthorized_client").await;
});

db_test!(async fn a_public_client_needs_the_user_to_confirm_an_existing_session(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let public = oauth_support::public(&app, &admin).await;
    let browser = oauth_support::browser();
    let (_, challenge) = oauth_support::pkce_pair();
    let pkce = [("code_challenge", challenge.as_str()), ("code_challenge_method", "S256")];
    oauth_support::sign_in(&browser, &oauth_support::authorize_url(&app, &public.id, &pkce), "user", PASSWORD).await;

    // Signed in, but a public client's redirect proves nothing: confirm first.
    let page = browser.get(oauth_support::authorize_url(&app, &public.id, &pkce)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Continue as user"), "{html}");
    let (action, fields) = oauth_support::parse_form(&html);
    assert_eq!(fields["continue_session"], "1");
    let resp = browser.post(&action).form(&fields).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert!(oauth_support::query(&oauth_support::location(&resp)).contains_key("code"));

    // Without interaction it cannot be done.
    let mut none = pkce.to_vec();
    none.push(("prompt", "none"));
    let resp = browser.get(oauth_support::authorize_url(&app, &public.id, &none)).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(oauth_support::query(&oauth_support::location(&resp))["error"], "interaction_required");
});

db_test!(async fn the_sign_in_form_is_csrf_protected(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let browser = oauth_support::browser();
    let page = browser.get(oauth_support::authorize_url_with_pkce(&app, &client.id, &[])).send().await.unwrap();
    let set_cookie = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    let html = page.text().await.unwrap();
    assert!(html.contains("<label for=\"username\">") && html.contains("<label for=\"password\">"));
    let (action, mut fields) = oauth_support::parse_form(&html);
    fields.insert("username".into(), "user".into());
    fields.insert("password".into(), PASSWORD.into());

    // Without the form's token.
    let mut without = fields.clone();
    without.remove("csrf_token");
    assert_eq!(browser.post(&action).form(&without).send().await.unwrap().status(), 403);
    // With a forged token.
    let mut forged = fields.clone();
    forged.insert("csrf_token".into(), "forged".into());
    assert_eq!(browser.post(&action).form(&forged).send().await.unwrap().status(), 403);
    // From another browser (no CSRF cookie), with the real token.
    assert_eq!(oauth_support::browser().post(&action).form(&fields).send().await.unwrap().status(), 403);
    // Cross-site, even with the right cookie and token.
    let cross = browser.post(&action).header("origin", "https://evil.example").form(&fields).send().await.unwrap();
    assert_eq!(cross.status(), 403);
    let cross = browser.post(&action).header("sec-fetch-site", "cross-site").form(&fields).send().await.unwrap();
    assert_eq!(cross.status(), 403);
    // A cookie value the server did not mint.
    let planted = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = planted
        .post(&action)
        .header("cookie", "lk_csrf=AAAAAAAAAAAAAAAAAAAAAA")
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // A wrong password re-shows the form with an alert.
    let mut wrong = fields.clone();
    wrong.insert("password".into(), "wrong password".into());
    let resp = browser.post(&action).form(&wrong).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("Invalid username or password"));
    // The genuine form works.
    let resp = browser.post(&action).form(&fields).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert!(oauth_support::location(&resp).starts_with(REDIRECT));
});

db_test!(async fn the_sign_in_form_accepts_what_browsers_send_and_refuses_other_origins(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let browser = oauth_support::browser();
    let page = browser.get(oauth_support::authorize_url_with_pkce(&app, &client.id, &[])).send().await.unwrap();
    assert_eq!(page.status(), 200);
    // The page's own form POST must carry its real Origin: not `no-referrer`.
    assert_eq!(page.headers()["referrer-policy"], "same-origin");
    let (action, mut fields) = oauth_support::parse_form(&page.text().await.unwrap());
    fields.insert("username".into(), "user".into());
    fields.insert("password".into(), PASSWORD.into());
    let issuer = oauth_support::origin_of(&app.address);
    let sibling = "http://127.0.0.1:1"; // another port on the same host: same site

    // Refused even with the right cookie and token.
    for (origin, site) in [
        (Some("null"), Some("cross-site")),
        (Some("null"), Some("same-site")),
        (Some("null"), None),
        (Some("https://evil.example"), Some("cross-site")),
        (Some("https://evil.example"), None),
        (Some(sibling), Some("same-site")),
        (Some(sibling), None),
        (None, Some("same-site")),
        (Some(issuer.as_str()), Some("same-site")),
    ] {
        let resp = oauth_support::browser_post(&browser, &action, origin, site).form(&fields).send().await.unwrap();
        assert_eq!(resp.status(), 403, "Origin {origin:?}, Sec-Fetch-Site {site:?}");
        assert_eq!(resp.headers()["referrer-policy"], "same-origin");
        assert!(resp.text().await.unwrap().contains("This sign-in form has expired"));
    }

    // A wrong password from the real page: shown on the form, username kept.
    let mut wrong = fields.clone();
    wrong.insert("password".into(), "wrong password".into());
    let resp = oauth_support::browser_post(&browser, &action, Some(&issuer), Some("same-origin"))
        .form(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["referrer-policy"], "same-origin");
    let html = resp.text().await.unwrap();
    assert!(html.contains("id=\"form-error\">Invalid username or password.</p>"), "{html}");
    assert!(html.contains("aria-describedby=\"form-error\""));
    assert!(html.contains("value=\"user\""));
    assert!(!html.contains("wrong password"));
    let (retry_action, mut retry) = oauth_support::parse_form(&html);
    retry.insert("username".into(), "user".into());
    retry.insert("password".into(), PASSWORD.into());

    // Accepted: what Chromium sends from our page (the regression: this was
    // a 403 while the page said `Referrer-Policy: no-referrer`), and `null`
    // from our own page behind a proxy that forces `no-referrer`.
    for (origin, form) in [(issuer.as_str(), &retry), ("null", &fields)] {
        let resp = oauth_support::browser_post(&browser, &retry_action, Some(origin), Some("same-origin"))
            .form(form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303, "Origin {origin}: {:?}", resp.text().await);
        // Nothing leaving latchkey carries a Referer.
        assert_eq!(resp.headers()["referrer-policy"], "no-referrer");
        assert!(oauth_support::location(&resp).starts_with(REDIRECT));
    }
});

db_test!(async fn continue_and_sign_out_forms_take_the_same_csrf_check(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let public = oauth_support::public(&app, &admin).await;
    let browser = oauth_support::browser();
    let issuer = oauth_support::origin_of(&app.address);
    let (_, challenge) = oauth_support::pkce_pair();
    let pkce = [("code_challenge", challenge.as_str()), ("code_challenge_method", "S256")];
    oauth_support::sign_in(&browser, &oauth_support::authorize_url(&app, &public.id, &pkce), "user", PASSWORD).await;

    // "Continue as …"
    let page = browser.get(oauth_support::authorize_url(&app, &public.id, &pkce)).send().await.unwrap();
    assert_eq!(page.headers()["referrer-policy"], "same-origin");
    let (action, fields) = oauth_support::parse_form(&page.text().await.unwrap());
    assert_eq!(fields["continue_session"], "1");
    for (origin, site) in [(Some("null"), Some("cross-site")), (Some("https://evil.example"), None), (None, Some("same-site"))] {
        let resp = oauth_support::browser_post(&browser, &action, origin, site).form(&fields).send().await.unwrap();
        assert_eq!(resp.status(), 403, "Origin {origin:?}, Sec-Fetch-Site {site:?}");
    }
    let resp = oauth_support::browser_post(&browser, &action, Some(&issuer), Some("same-origin"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert!(oauth_support::query(&oauth_support::location(&resp)).contains_key("code"));

    // The sign-out confirmation.
    let page = browser.get(app.url("/oauth/logout")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["referrer-policy"], "same-origin");
    let (action, fields) = oauth_support::parse_form(&page.text().await.unwrap());
    for (origin, site) in [(Some("null"), Some("cross-site")), (Some("https://evil.example"), None), (None, Some("same-site"))] {
        let resp = oauth_support::browser_post(&browser, &action, origin, site).form(&fields).send().await.unwrap();
        assert_eq!(resp.status(), 403, "Origin {origin:?}, Sec-Fetch-Site {site:?}");
        assert!(resp.text().await.unwrap().contains("This sign-out form has expired"));
    }
    let resp = oauth_support::browser_post(&browser, &action, Some("null"), Some("same-origin"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert!(resp.text().await.unwrap().contains("You are signed out"));
    // Signed out: the next authorization shows the sign-in form.
    let page = browser.get(oauth_support::authorize_url(&app, &public.id, &pkce)).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("id=\"password\""));
});

db_test!(async fn over_https_the_browser_cookies_are_host_prefixed_and_secure(backend) {
    let (app, admin) = oauth_support::spawn_with_admin_tls(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let browser = oauth_support::browser_for(&app);
    let page = browser.get(oauth_support::authorize_url_with_pkce(&app, &client.id, &[])).send().await.unwrap();
    assert_eq!(page.headers()["referrer-policy"], "same-origin");
    let csrf = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(csrf.starts_with("__Host-lk_csrf="), "{csrf}");
    for attribute in ["; Path=/", "; HttpOnly", "; SameSite=Lax", "; Secure"] {
        assert!(csrf.contains(attribute), "{csrf} lacks {attribute}");
    }
    assert!(!csrf.contains("Domain="));
    let (action, mut fields) = oauth_support::parse_form(&page.text().await.unwrap());
    fields.insert("username".into(), "user".into());
    fields.insert("password".into(), PASSWORD.into());
    let issuer = oauth_support::origin_of(&app.address);
    assert!(issuer.starts_with("https://localhost:"));
    // The same origin over http is another origin.
    let downgraded = issuer.replace("https://", "http://");
    let resp = oauth_support::browser_post(&browser, &action, Some(&downgraded), None).form(&fields).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let resp = oauth_support::browser_post(&browser, &action, Some(&issuer), Some("same-origin"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let session = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(session.starts_with("__Host-lk_session="), "{session}");
    for attribute in ["; Path=/", "; HttpOnly", "; SameSite=Lax", "; Secure"] {
        assert!(session.contains(attribute), "{session} lacks {attribute}");
    }
});

db_test!(async fn end_session_clears_the_browser_session(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let browser = oauth_support::browser();
    let (code, verifier) = {
        let (verifier, challenge) = oauth_support::pkce_pair();
        let url = oauth_support::authorize_url(&app, &client.id, &[("scope", "openid"), ("code_challenge", &challenge), ("code_challenge_method", "S256")]);
        let redirect = oauth_support::sign_in(&browser, &url, "user", PASSWORD).await;
        (oauth_support::query(&redirect)["code"].clone(), verifier)
    };
    let tokens: Value = exchange(&app, &client, &code, &verifier).await.json().await.unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();

    // Without a hint: a confirmation page, CSRF-protected.
    let page = browser.get(app.url("/oauth/logout")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let (action, fields) = oauth_support::parse_form(&page.text().await.unwrap());
    let mut no_token = fields.clone();
    no_token.remove("csrf_token");
    assert_eq!(browser.post(&action).form(&no_token).send().await.unwrap().status(), 403);

    // An unregistered post-logout URI is refused.
    let bad = format!("{}?id_token_hint={id_token}&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F", app.url("/oauth/logout"));
    assert_eq!(browser.get(bad).send().await.unwrap().status(), 400);
    // So is a client_id other than the hint's audience (RP-Initiated Logout §2).
    let other = oauth_support::confidential(&app, &admin).await;
    let mismatch = format!("{}?id_token_hint={id_token}&client_id={}", app.url("/oauth/logout"), other.id);
    assert_eq!(browser.get(mismatch).send().await.unwrap().status(), 400);

    // With a hint: signed out at once and sent back with state.
    let url = format!(
        "{}?id_token_hint={id_token}&post_logout_redirect_uri={}&state=bye",
        app.url("/oauth/logout"),
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    );
    let resp = browser.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(oauth_support::location(&resp), format!("{REDIRECT}?state=bye"));
    assert!(resp.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));

    // The next authorization asks for the password again.
    let page = browser.get(oauth_support::authorize_url_with_pkce(&app, &client.id, &[])).send().await.unwrap();
    assert_eq!(page.status(), 200);
});

db_test!(async fn revocation_and_introspection_rules(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let other = oauth_support::confidential(&app, &admin).await;
    let public = oauth_support::public(&app, &admin).await;
    let tokens: Value = oauth_support::token_basic(
        &app,
        &client,
        &[("grant_type", "password"), ("username", "user"), ("password", PASSWORD)],
    )
    .await
    .json()
    .await
    .unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();

    // Introspection: a client sees its own tokens; another client only with
    // the latchkey:introspect permission (a resource server).
    assert_eq!(oauth_support::introspect(&app, &other, access).await, json!({"active": false}));
    assert_eq!(oauth_support::introspect(&app, &client, access).await["active"], true);
    let resource_server = oauth_support::register_client(
        &app,
        &admin,
        json!({"client_name": "api", "grant_types": ["client_credentials"], "scope": "latchkey:introspect"}),
    )
    .await;
    let info = oauth_support::introspect(&app, &resource_server, access).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["token_type"], "Bearer");
    assert_eq!(info["username"], "user");
    assert_eq!(info["client_id"], client.id);
    assert!(info["exp"].is_i64() && info["sub"].is_string() && info["jti"].is_string());
    // Refresh tokens only to their own client.
    assert_eq!(oauth_support::introspect(&app, &client, refresh).await["token_type"], "refresh_token");
    assert_eq!(oauth_support::introspect(&app, &other, refresh).await, json!({"active": false}));
    // Garbage is inactive, not an error.
    assert_eq!(oauth_support::introspect(&app, &client, "garbage").await, json!({"active": false}));
    // Public clients may not introspect.
    let resp = app.client.post(app.url("/oauth/introspect")).form(&[("token", access), ("client_id", &public.id)]).send().await.unwrap();
    assert_error(resp, 400, "unauthorized_client").await;

    // Revocation: unknown tokens are fine; another client's are refused.
    let revoke = |who: &Client, token: &str| {
        let (id, secret, token, url) = (who.id.clone(), who.secret.clone(), token.to_owned(), app.url("/oauth/revoke"));
        let http = app.client.clone();
        async move { http.post(url).basic_auth(id, secret).form(&[("token", token)]).send().await.unwrap() }
    };
    assert_eq!(revoke(&client, "garbage").await.status(), 200);
    assert_error(revoke(&other, refresh).await, 400, "unauthorized_client").await;
    assert_error(revoke(&other, access).await, 400, "unauthorized_client").await;
    assert_eq!(oauth_support::introspect(&app, &client, access).await["active"], true);

    // Revoking the refresh token ends the session and its access tokens.
    assert_eq!(revoke(&client, refresh).await.status(), 200);
    assert_eq!(oauth_support::introspect(&app, &client, access).await, json!({"active": false}));
    assert_eq!(oauth_support::introspect(&app, &client, refresh).await, json!({"active": false}));
});

db_test!(async fn userinfo_needs_the_openid_scope(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let token = |scope: &'static str| {
        let (app, client) = (&app, &client);
        async move {
            let v: Value = oauth_support::token_basic(
                app,
                client,
                &[("grant_type", "password"), ("username", "user"), ("password", PASSWORD), ("scope", scope)],
            )
            .await
            .json()
            .await
            .unwrap();
            v["access_token"].as_str().unwrap().to_owned()
        }
    };
    let with = token("openid email").await;
    let resp = app.get_with_token("/oauth/userinfo", &with).await;
    assert_eq!(resp.status(), 200);
    let info: Value = resp.json().await.unwrap();
    assert!(info["sub"].is_string());
    assert!(info.get("preferred_username").is_none(), "no profile scope, no profile claims");
    let post = app.client.post(app.url("/oauth/userinfo")).bearer_auth(&with).send().await.unwrap();
    assert_eq!(post.status(), 200);

    let without = token("profile").await;
    let resp = app.get_with_token("/oauth/userinfo", &without).await;
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert_error(resp, 403, "insufficient_scope").await;
    assert!(challenge.contains("insufficient_scope"));
    assert_error(app.get("/oauth/userinfo").await, 401, "unauthorized").await;
});

db_test!(async fn admin_tokens_are_separate_from_everyday_tokens(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    // The admin token is for latchkey only: its audience is the issuer.
    let claims = crate::jwt::claims(&admin);
    assert_eq!(claims["aud"], app.state.issuer());
    assert!(claims["scope"].as_str().unwrap().contains("latchkey:admin"));

    // An admin's everyday token (what relying services receive) is refused.
    let everyday = app.tokens("admin", "admin password 1").await["access_token"].as_str().unwrap().to_owned();
    assert_eq!(crate::jwt::claims(&everyday)["aud"], "latchkey");
    let resp = app.client.get(app.url("/admin/clients")).bearer_auth(&everyday).send().await.unwrap();
    assert_error(resp, 403, "insufficient_scope").await;

    // So is an admin's token issued to an OAuth client.
    let client = oauth_support::confidential(&app, &admin).await;
    let oauth: Value = oauth_support::token_basic(
        &app,
        &client,
        &[("grant_type", "password"), ("username", "admin"), ("password", "admin password 1")],
    )
    .await
    .json()
    .await
    .unwrap();
    let resp = app.client.get(app.url("/admin/clients")).bearer_auth(oauth["access_token"].as_str().unwrap()).send().await.unwrap();
    assert_error(resp, 403, "insufficient_scope").await;
    // An OAuth client cannot ask for the admin scope at all.
    let resp = oauth_support::token_basic(
        &app,
        &client,
        &[("grant_type", "password"), ("username", "admin"), ("password", "admin password 1"), ("scope", "latchkey:admin")],
    )
    .await;
    assert_error(resp, 400, "invalid_scope").await;

    // Users who are not admins cannot get the scope.
    let resp = app
        .post_json("/auth/login", &json!({"username": "user", "password": PASSWORD, "scope": "latchkey:admin"}))
        .await;
    assert_error(resp, 400, "invalid_scope").await;
});

db_test!(async fn the_admin_client_api_is_for_admins_only(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let user = app.tokens("user", PASSWORD).await["access_token"].as_str().unwrap().to_owned();
    let resp = app.client.get(app.url("/admin/clients")).bearer_auth(&user).send().await.unwrap();
    assert_error(resp, 403, "forbidden").await;
    assert_error(app.get("/admin/clients").await, 401, "unauthorized").await;

    // Validation follows RFC 7591 error codes.
    let bad_uri = app
        .client
        .post(app.url("/admin/clients"))
        .bearer_auth(&admin)
        .json(&json!({"client_name": "x", "redirect_uris": ["http://evil.example/cb"]}))
        .send()
        .await
        .unwrap();
    assert_error(bad_uri, 400, "invalid_redirect_uri").await;
    let bad_meta = app
        .client
        .post(app.url("/admin/clients"))
        .bearer_auth(&admin)
        .json(&json!({"client_name": "x", "grant_types": ["implicit"]}))
        .send()
        .await
        .unwrap();
    assert_error(bad_meta, 400, "invalid_client_metadata").await;

    // Create, read, update, list; the secret is shown once.
    let client = oauth_support::confidential(&app, &admin).await;
    let got: Value = app.client.get(app.url(&format!("/admin/clients/{}", client.id))).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    assert!(got.get("client_secret").is_none());
    assert_eq!(got["token_endpoint_auth_method"], "client_secret_basic");
    let patched = app
        .client
        .patch(app.url(&format!("/admin/clients/{}", client.id)))
        .bearer_auth(&admin)
        .json(&json!({"client_name": "Renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    assert_eq!(patched.json::<Value>().await.unwrap()["client_name"], "Renamed");
    let list: Value = app.client.get(app.url("/admin/clients")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Secret rotation: both work during the overlap, only the new one after.
    let rotated: Value = app
        .client
        .post(app.url(&format!("/admin/clients/{}/secret", client.id)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new = Client { id: client.id.clone(), secret: rotated["client_secret"].as_str().map(str::to_owned) };
    assert_ne!(new.secret, client.secret);
    for who in [&client, &new] {
        assert_eq!(oauth_support::token_basic(&app, who, &[("grant_type", "client_credentials")]).await.status(), 200);
    }
    app.advance(Duration::from_secs(86_400 + 1));
    assert_error(oauth_support::token_basic(&app, &client, &[("grant_type", "client_credentials")]).await, 401, "invalid_client").await;
    let service: Value = oauth_support::token_basic(&app, &new, &[("grant_type", "client_credentials")]).await.json().await.unwrap();
    // The admin's own token expired with the clock: sign in again.
    let admin = oauth_support::admin_token(&app).await;

    // Deleting the client revokes what it was issued.
    let resp = app.client.delete(app.url(&format!("/admin/clients/{}", client.id))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_error(oauth_support::token_basic(&app, &new, &[("grant_type", "client_credentials")]).await, 401, "invalid_client").await;
    let resp = app.get_with_token("/auth/me", service["access_token"].as_str().unwrap()).await;
    assert_eq!(resp.status(), 401);
    let resp = app.client.get(app.url(&format!("/admin/clients/{}", client.id))).bearer_auth(&admin).send().await.unwrap();
    assert_error(resp, 404, "not_found").await;
});

db_test!(async fn clients_create_on_the_command_line(backend) {
    let app = TestApp::spawn(backend).await;
    let out = app.cli(
        &["clients", "create", "--name", "billing", "--grant-type", "client_credentials", "--scope", "tasks:read"],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| stdout.lines().find_map(|l| l.strip_prefix(key)).unwrap().trim().to_owned();
    let client = Client { id: value("client_id:"), secret: Some(value("client_secret:")) };
    let resp = oauth_support::token_basic(&app, &client, &[("grant_type", "client_credentials")]).await;
    assert_eq!(resp.status(), 200);
});

db_test!(async fn disabling_a_client_ends_what_it_was_issued(backend) {
    let (app, admin) = oauth_support::spawn_with_admin(backend).await;
    let client = oauth_support::confidential(&app, &admin).await;
    let service: Value = oauth_support::token_basic(&app, &client, &[("grant_type", "client_credentials")]).await.json().await.unwrap();
    let access = service["access_token"].as_str().unwrap();
    assert_eq!(oauth_support::introspect(&app, &client, access).await["active"], true);
    let user: Value = oauth_support::token_basic(&app, &client, &[("grant_type", "password"), ("username", "user"), ("password", PASSWORD)]).await.json().await.unwrap();

    let disable = |disabled: bool| {
        let req = app.client.patch(app.url(&format!("/admin/clients/{}", client.id))).bearer_auth(&admin).json(&json!({"disabled": disabled}));
        async move { req.send().await.unwrap() }
    };
    assert_eq!(disable(true).await.status(), 200);
    assert_error(oauth_support::token_basic(&app, &client, &[("grant_type", "client_credentials")]).await, 401, "invalid_client").await;
    assert_eq!(app.get_with_token("/auth/me", user["access_token"].as_str().unwrap()).await.status(), 401);
    let feed: Value = app.client.get(app.url("/revocations/snapshot")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    assert!(feed["entries"].as_array().unwrap().iter().any(|e| e["kind"] == "client" && e["value"] == client.id.as_str()), "{feed}");

    // Enabled again, it works; the refresh token it held before does not.
    assert_eq!(disable(false).await.status(), 200);
    app.advance(Duration::from_secs(6));
    let again: Value = oauth_support::token_basic(&app, &client, &[("grant_type", "client_credentials")]).await.json().await.unwrap();
    assert_eq!(oauth_support::introspect(&app, &client, again["access_token"].as_str().unwrap()).await["active"], true);
    assert_eq!(oauth_support::introspect(&app, &client, access).await["active"], false);
    let resp = oauth_support::token_basic(&app, &client, &[("grant_type", "refresh_token"), ("refresh_token", user["refresh_token"].as_str().unwrap())]).await;
    assert_error(resp, 400, "invalid_grant").await;
});
