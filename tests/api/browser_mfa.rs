//! Second factors on the sign-in page in a real Chromium.
//!
//! The JSON API's second factors are proven with a software authenticator
//! in `mfa`; this proves the browser side, which no HTTP client can: the
//! page's one script runs under its Content-Security-Policy (by its hash),
//! hands WebAuthn options that latchkey produced to Chromium's own
//! `navigator.credentials` (here backed by the DevTools protocol's virtual
//! authenticator: CTAP2, internal transport, resident keys, user
//! verification), and posts the assertion back in the form.
//!
//! - A passkey registered from a page of the issuer (the JSON API called
//!   with `fetch`, `navigator.credentials.create` in between) completes the
//!   "Two-step verification" page after the password (`amr` `pwd swk user
//!   mfa`), and alone, from "Sign in with a passkey" with no username
//!   typed, signs the same user in (`amr` `swk user mfa`).
//! - An authenticator app's code completes the same page (`amr` `pwd otp
//!   mfa`); a wrong code is shown as an error and the page asks again.
//!
//! WebAuthn needs the issuer on a domain name in a secure context, so the
//! passkey test runs latchkey as `http://localhost:<port>`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::log::{EnableParams as LogEnable, EventEntryAdded};
use chromiumoxide::cdp::browser_protocol::network::ClearBrowserCookiesParams;
use chromiumoxide::cdp::browser_protocol::web_authn::{
    AddVirtualAuthenticatorParams, AuthenticatorProtocol, AuthenticatorTransport,
    EnableParams as WebAuthnEnable, GetCredentialsParams, VirtualAuthenticatorOptions,
};
use chromiumoxide::cdp::js_protocol::runtime::EventExceptionThrown;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::browser::{
    Chromium, Site, Tab, WAIT, issuer_url, js_string, keep_screenshot, spawn_tapped_with_admin,
};
use crate::browser_signin::gallery;
use crate::db_test;
use crate::helpers::{Backend, TestApp};
use crate::jwt;
use crate::oauth_support::{Client, PASSWORD, admin_token, pkce_pair, token_basic};

/// latchkey as `http://localhost:<port>` (a WebAuthn relying party) with
/// an admin; returns the admin-API token.
async fn spawn_localhost_with_admin(backend: Backend) -> (TestApp, String) {
    let app = TestApp::builder(backend)
        .localhost()
        .configure(|s| {
            s.admin_username = Some("admin".into());
            s.admin_password = Some(secrecy::SecretString::from("admin password 1".to_owned()));
        })
        .spawn()
        .await;
    assert!(app.state.issuer().starts_with("http://localhost:"), "{}", app.state.issuer());
    let admin = admin_token(&app).await;
    (app, admin)
}

fn authorize_url(app: &TestApp, client: &Client, site: &Site, state: &str, challenge: &str) -> String {
    let mut url = url::Url::parse(&issuer_url(app, "/oauth/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client.id)
        .append_pair("redirect_uri", &site.url("/callback"))
        .append_pair("scope", "openid profile")
        .append_pair("state", state)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    url.to_string()
}

/// Fill in the sign-in form and press the button.
async fn sign_in(tab: &Tab, username: &str, password: &str) {
    tab.fill("#username", username).await;
    tab.fill("#password", password).await;
    tab.click("button[type=submit]").await;
}

/// Wait for the "Two-step verification" page.
async fn second_step_page(tab: &Tab) {
    tab.wait_for("(h => !!h && h.innerText.includes('Two-step verification'))(document.querySelector('h1'))")
        .await;
}

/// Back at the client's callback: check `state`, redeem the code, return
/// the token response.
async fn redeem(
    app: &TestApp,
    client: &Client,
    site: &Site,
    tab: &Tab,
    state: &str,
    verifier: &str,
) -> Value {
    tab.wait_for_url(&site.url("/callback")).await;
    assert_eq!(tab.text("#state").await, state);
    assert_eq!(tab.text("#error").await, "", "no error at the client");
    let code = tab.text("#code").await;
    assert!(!code.is_empty(), "a code at the client: {}", tab.text("body").await);
    let resp = token_basic(
        app,
        client,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &site.url("/callback")),
            ("code_verifier", verifier),
        ],
    )
    .await;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "the code redeems: {body}");
    body
}

/// The tokens say how the user signed in: `amr` in the access and ID
/// tokens, and `acr` two factors. Returns the access token's claims.
fn assert_methods(tokens: &Value, amr: &Value) -> serde_json::Map<String, Value> {
    let access = jwt::claims(tokens["access_token"].as_str().unwrap());
    let id = jwt::claims(tokens["id_token"].as_str().expect("an ID token (scope openid)"));
    assert_eq!(&access["amr"], amr, "access token: {access:?}");
    assert_eq!(&id["amr"], amr, "ID token: {id:?}");
    assert_eq!(access["acr"], latchkey::mfa::ACR_MFA, "{access:?}");
    assert_eq!(id["acr"], latchkey::mfa::ACR_MFA, "{id:?}");
    access
}

/// What the page's console and the DevTools log reported: script errors,
/// CSP violations, failed loads.
#[derive(Clone, Default)]
struct Console {
    entries: Arc<Mutex<Vec<String>>>,
}

impl Console {
    async fn record(tab: &Tab) -> Console {
        let console = Console::default();
        tab.page.execute(LogEnable::default()).await.expect("Log.enable");
        let mut logged = tab.page.event_listener::<EventEntryAdded>().await.expect("listen");
        let mut thrown = tab.page.event_listener::<EventExceptionThrown>().await.expect("listen");
        let entries = Arc::clone(&console.entries);
        tokio::spawn(async move {
            loop {
                let line = tokio::select! {
                    Some(e) = logged.next() => {
                        format!("{:?} {:?}: {} ({})", e.entry.level, e.entry.source, e.entry.text, e.entry.url.clone().unwrap_or_default())
                    }
                    Some(e) = thrown.next() => {
                        let d = &e.exception_details;
                        let description = d.exception.as_ref().and_then(|x| x.description.clone()).unwrap_or_default();
                        format!("exception: {} {description} ({})", d.text, d.url.clone().unwrap_or_default())
                    }
                    else => break,
                };
                entries.lock().unwrap().push(line);
            }
        });
        console
    }

    /// Everything reported but Chromium's own request for a favicon
    /// (latchkey has none; the 404 is expected).
    fn problems(&self) -> Vec<String> {
        self.entries.lock().unwrap().iter().filter(|e| !e.contains("/favicon.ico")).cloned().collect()
    }

    /// Wait until an entry containing `text` is reported.
    async fn wait_for(&self, text: &str) {
        let started = tokio::time::Instant::now();
        while !self.problems().iter().any(|e| e.contains(text)) {
            assert!(started.elapsed() < WAIT, "no `{text}` reported: {:#?}", self.problems());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Chromium's virtual authenticator in this tab: a platform authenticator
/// that keeps discoverable credentials, verifies the user and needs no touch.
async fn virtual_authenticator(
    tab: &Tab,
) -> chromiumoxide::cdp::browser_protocol::web_authn::AuthenticatorId {
    tab.page.execute(WebAuthnEnable::default()).await.expect("WebAuthn.enable");
    let mut options =
        VirtualAuthenticatorOptions::new(AuthenticatorProtocol::Ctap2, AuthenticatorTransport::Internal);
    options.has_resident_key = Some(true);
    options.has_user_verification = Some(true);
    options.is_user_verified = Some(true);
    options.automatic_presence_simulation = Some(true);
    let added =
        tab.page.execute(AddVirtualAuthenticatorParams::new(options)).await.expect("addVirtualAuthenticator");
    added.result.authenticator_id
}

/// Register a passkey from the page the tab is on (an issuer page), as a
/// settings page would: the JSON API with the bearer token, and
/// `navigator.credentials.create` in between (a first factor: with the
/// password too). Returns what it saw.
async fn register_passkey_in_page(tab: &Tab, access_token: &str, password: &str) -> Value {
    let script = format!(
        r#"(async () => {{
  const token = {token};
  const bytes = s => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), c => c.charCodeAt(0));
  const encode = b => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const headers = {{ "Content-Type": "application/json", "Authorization": "Bearer " + token }};
  const begin = await fetch("/auth/mfa/passkeys", {{ method: "POST", headers, body: JSON.stringify({{ name: "Chromium", current_password: {password} }}) }});
  if (begin.status !== 200) {{
    return {{ step: "begin", status: begin.status, body: await begin.text() }};
  }}
  const started = await begin.json();
  const publicKey = started.webauthn.publicKey;
  publicKey.challenge = bytes(publicKey.challenge);
  publicKey.user.id = bytes(publicKey.user.id);
  (publicKey.excludeCredentials || []).forEach(c => {{ c.id = bytes(c.id); }});
  let credential;
  try {{
    credential = await navigator.credentials.create({{ publicKey }});
  }} catch (e) {{
    return {{ step: "create", status: 0, body: String(e) }};
  }}
  const finish = await fetch("/auth/mfa/passkeys/finish", {{
    method: "POST",
    headers,
    body: JSON.stringify({{
      ceremony: started.ceremony,
      credential: {{
        id: credential.id,
        rawId: encode(credential.rawId),
        type: credential.type,
        response: {{
          attestationObject: encode(credential.response.attestationObject),
          clientDataJSON: encode(credential.response.clientDataJSON),
        }},
        extensions: credential.getClientExtensionResults(),
      }},
    }}),
  }});
  return {{ step: "finish", status: finish.status, body: await finish.text() }};
}})()"#,
        token = js_string(access_token),
        password = js_string(password),
    );
    tab.eval(&script).await
}

const PASSKEY_BUTTON_SHOWN: &str = "(b => !!b && !b.hidden)(document.querySelector('button[data-passkey]'))";

db_test!(async fn chromium_registers_a_passkey_with_its_virtual_authenticator_and_signs_in_with_it(backend) {
    let (app, admin) = spawn_localhost_with_admin(backend).await;
    let user = app.create_user("alice", PASSWORD).await;
    let site = Site::start().await;
    let client = gallery(&app, &admin, &site).await;
    let Some(chromium) = Chromium::launch().await else { return };
    let tab = chromium.page().await;
    let console = Console::record(&tab).await;
    let authenticator = virtual_authenticator(&tab).await;

    // Arrange: a passkey, registered from a page of the issuer.
    let signed_in = app.tokens("alice", PASSWORD).await;
    let (_, challenge) = pkce_pair();
    tab.goto(&authorize_url(&app, &client, &site, "unused", &challenge)).await;
    tab.wait_for_element("#username").await;
    let registered = register_passkey_in_page(&tab, signed_in["access_token"].as_str().unwrap(), PASSWORD).await;
    assert_eq!(registered["status"], 201, "the passkey is registered: {registered}");
    let credentials = tab
        .page
        .execute(GetCredentialsParams::new(authenticator.clone()))
        .await
        .expect("WebAuthn.getCredentials");
    let credentials = &credentials.result.credentials;
    assert_eq!(credentials.len(), 1, "one credential in the authenticator");
    assert!(credentials[0].is_resident_credential, "a discoverable credential");
    assert_eq!(credentials[0].rp_id.as_deref(), Some("localhost"));

    // Act 1: the password, then the passkey.
    let (verifier, challenge) = pkce_pair();
    tab.goto(&authorize_url(&app, &client, &site, "with-password", &challenge)).await;
    tab.wait_for_element("#username").await;
    // The page's script ran under the page's CSP: it shows the passkey button.
    tab.wait_for(PASSKEY_BUTTON_SHOWN).await;
    sign_in(&tab, "alice", PASSWORD).await;
    second_step_page(&tab).await;
    tab.wait_for(PASSKEY_BUTTON_SHOWN).await;
    assert!(tab.text("button[data-passkey]").await.contains("Use your passkey"));
    // Registering the passkey gave recovery codes too: a field for one.
    tab.wait_for_usable("#code").await;
    if backend == Backend::Sqlite {
        // The README's screenshot of the second step.
        tab.viewport(1280, 800, false).await;
        keep_screenshot("two-step-desktop.png", &tab.screenshot().await, 1280);
    }
    tab.click("button[data-passkey]").await;

    // Assert 1: a code for the client, and the tokens say how.
    let tokens = redeem(&app, &client, &site, &tab, "with-password", &verifier).await;
    let claims = assert_methods(&tokens, &json!(["pwd", "swk", "user", "mfa"]));
    assert_eq!(claims["sub"], user["id"]);
    // The browser session remembers how: the next authorization, silent,
    // says the same.
    let (verifier, challenge) = pkce_pair();
    tab.goto(&authorize_url(&app, &client, &site, "again", &challenge)).await;
    let tokens = redeem(&app, &client, &site, &tab, "again", &verifier).await;
    assert_methods(&tokens, &json!(["pwd", "swk", "user", "mfa"]));

    // Act 2: a browser with no session; the passkey alone, no username.
    tab.page.execute(ClearBrowserCookiesParams::default()).await.expect("clear cookies");
    let (verifier, challenge) = pkce_pair();
    tab.goto(&authorize_url(&app, &client, &site, "passkey-only", &challenge)).await;
    tab.wait_for_element("#username").await;
    tab.wait_for(PASSKEY_BUTTON_SHOWN).await;
    assert!(tab.text("button[data-passkey]").await.contains("Sign in with a passkey"));
    tab.click("button[data-passkey]").await;

    // Assert 2: the same user, signed in by the passkey alone.
    let tokens = redeem(&app, &client, &site, &tab, "passkey-only", &verifier).await;
    let claims = assert_methods(&tokens, &json!(["swk", "user", "mfa"]));
    assert_eq!(claims["sub"], user["id"]);
    let begin = tab.network.answered("POST", &issuer_url(&app, "/auth/passkey/login/begin")).await;
    begin.expect("the page started the ceremony").expect_status(200);
    let form = tab.network.answered("POST", &issuer_url(&app, "/oauth/authorize")).await;
    form.expect("the page posted the assertion").expect_status(303);

    // Nothing was refused by the CSP, no script failed...
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reported = console.problems();
    assert!(reported.is_empty(), "the pages logged: {reported:#?}");
    // ...and a violation would have been seen: an injected inline script
    // on the sign-in page is refused and reported.
    tab.page.execute(ClearBrowserCookiesParams::default()).await.expect("clear cookies");
    let (_, challenge) = pkce_pair();
    tab.goto(&authorize_url(&app, &client, &site, "control", &challenge)).await;
    tab.wait_for(PASSKEY_BUTTON_SHOWN).await;
    let ran = tab
        .eval("(() => { const s = document.createElement('script'); s.textContent = 'window.injected = true'; document.body.appendChild(s); return window.injected === true; })()")
        .await;
    assert_eq!(ran, json!(false), "the CSP refuses an inline script it does not list");
    console.wait_for("Content Security Policy").await;
    chromium.close().await;
});

db_test!(async fn chromium_completes_the_second_step_with_an_authenticator_app_code(backend) {
    let (app, admin, _tap) = spawn_tapped_with_admin(backend, |_| {}).await;
    let site = Site::start().await;
    let client = gallery(&app, &admin, &site).await;

    // Arrange: "user" has an authenticator app.
    let signed_in = app.tokens("user", PASSWORD).await;
    let token = signed_in["access_token"].as_str().unwrap();
    let started: Value = app
        .client
        .post(app.url("/auth/mfa/totp"))
        .bearer_auth(token)
        .json(&json!({"current_password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret =
        totp_rs::Secret::try_from_base32(started["secret"].as_str().unwrap()).unwrap().as_bytes().to_vec();
    let code_at = |t: i64| latchkey::mfa::totp::code_at(&secret, u64::try_from(t).unwrap()).unwrap();
    let resp = app
        .client
        .post(app.url("/auth/mfa/totp/confirm"))
        .bearer_auth(token)
        .json(&json!({"factor_id": started["factor_id"], "code": code_at(app.state.now().timestamp())}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "TOTP enrolled");
    // That code is spent: the sign-in below needs the next step's.
    app.advance(Duration::from_secs(30));

    let Some(chromium) = Chromium::launch().await else { return };
    let tab = chromium.page().await;
    let console = Console::record(&tab).await;
    let (verifier, challenge) = pkce_pair();
    tab.goto(&authorize_url(&app, &client, &site, "s-otp", &challenge)).await;
    tab.wait_for_element("#username").await;
    // An issuer on an IP address is no WebAuthn relying party: no passkey button.
    assert!(tab.eval("document.querySelector('button[data-passkey]')").await.is_null());

    // Act: the password, then a wrong code.
    sign_in(&tab, "user", PASSWORD).await;
    second_step_page(&tab).await;
    tab.wait_for_usable("#code").await;
    let now = app.state.now().timestamp();
    let wrong = ["000000", "999999", "123456"]
        .into_iter()
        .find(|c| ![now - 30, now, now + 30].iter().any(|t| code_at(*t) == *c))
        .unwrap();
    tab.fill("#code", wrong).await;
    tab.click("button[type=submit]").await;
    tab.wait_for("document.querySelector('[role=alert]')").await;

    // Assert: the error is shown and the page asks again.
    let alert = tab.text("[role=alert]").await;
    assert!(!alert.trim().is_empty(), "an error is shown");
    eprintln!("the wrong code's error: {alert}");
    second_step_page(&tab).await;
    tab.wait_for_usable("#code").await;
    assert_eq!(
        tab.eval("document.querySelector('#code').getAttribute('aria-invalid')").await,
        json!("true"),
        "the code field is marked invalid"
    );
    assert!(tab.network.last("GET", &site.url("/callback")).is_none(), "no code was issued");
    if backend == Backend::Sqlite {
        tab.viewport(390, 844, true).await;
        keep_screenshot("two-step-error-phone.png", &tab.screenshot().await, 390);
        tab.viewport(1280, 800, false).await;
    }

    // Act: the right code.
    tab.fill("#code", &code_at(app.state.now().timestamp())).await;
    tab.click("button[type=submit]").await;

    // Assert: back at the client, the tokens say how.
    let tokens = redeem(&app, &client, &site, &tab, "s-otp", &verifier).await;
    assert_methods(&tokens, &json!(["pwd", "otp", "mfa"]));
    let reported = console.problems();
    assert!(reported.is_empty(), "the pages logged: {reported:#?}");
    chromium.close().await;
});
