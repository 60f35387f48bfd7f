//! Helpers for the OAuth tests: an admin, registered clients, a browser.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp};

pub const REDIRECT: &str = "http://127.0.0.1:9/callback";
pub const PASSWORD: &str = "correct horse battery";

/// A registered client as the admin API returned it.
#[derive(Clone, Debug)]
pub struct Client {
    pub id: String,
    pub secret: Option<String>,
}

pub async fn spawn_with_admin(backend: Backend) -> (TestApp, String) {
    spawn_admin_app(TestApp::builder(backend)).await
}

/// The same with more settings changed.
pub async fn spawn_with_admin_configured(
    backend: Backend,
    configure: impl FnOnce(&mut latchkey::config::Settings) + Send + 'static,
) -> (TestApp, String) {
    spawn_admin_app(TestApp::builder(backend).configure(configure)).await
}

/// The same over HTTPS, as strict client libraries require.
pub async fn spawn_with_admin_tls(backend: Backend) -> (TestApp, String) {
    spawn_admin_app(TestApp::builder(backend).tls()).await
}

async fn spawn_admin_app(builder: crate::helpers::TestAppBuilder) -> (TestApp, String) {
    let app = builder
        .configure(|s| {
            s.admin_username = Some("admin".into());
            s.admin_password = Some(secrecy::SecretString::from("admin password 1".to_owned()));
        })
        .spawn()
        .await;
    let token = admin_token(&app).await;
    app.create_user("user", PASSWORD).await;
    (app, token)
}

/// An admin-API token: the admin signs in asking for `latchkey:admin`.
pub async fn admin_token(app: &TestApp) -> String {
    let resp = app
        .post_json(
            "/auth/login",
            &json!({"username": "admin", "password": "admin password 1", "scope": "latchkey:admin"}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "admin login");
    resp.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}

pub async fn register_client(app: &TestApp, admin: &str, body: Value) -> Client {
    let resp =
        app.client.post(app.url("/admin/clients")).bearer_auth(admin).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED, "register client");
    let v: Value = resp.json().await.unwrap();
    Client {
        id: v["client_id"].as_str().unwrap().to_owned(),
        secret: v["client_secret"].as_str().map(str::to_owned),
    }
}

/// A confidential client registered for every grant.
pub async fn confidential(app: &TestApp, admin: &str) -> Client {
    register_client(
        app,
        admin,
        json!({
            "client_name": "Web App",
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials", "password"],
            "scope": "openid profile email tasks:read tasks:write",
            "token_endpoint_auth_method": "client_secret_basic",
        }),
    )
    .await
}

/// A public client (an SPA): PKCE required, no secret.
pub async fn public(app: &TestApp, admin: &str) -> Client {
    register_client(
        app,
        admin,
        json!({
            "client_name": "Single Page App",
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "scope": "openid profile",
            "token_endpoint_auth_method": "none",
        }),
    )
    .await
}

/// A browser: keeps cookies, never follows redirects, trusts the app's CA.
pub fn browser_for(app: &TestApp) -> reqwest::Client {
    let mut b = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = &app.ca_pem {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

/// A plain-HTTP browser.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

/// The sign-in form of a page: its action and hidden fields.
pub fn parse_form(html: &str) -> (String, HashMap<String, String>) {
    let form_start = html.find("<form").expect("a form");
    let form_tag_end = html[form_start..].find('>').unwrap() + form_start;
    let action = attr(&html[form_start..form_tag_end], "action").expect("form action");
    let mut fields = HashMap::new();
    for chunk in html[form_start..].split("<input").skip(1) {
        let tag = &chunk[..chunk.find('>').unwrap()];
        if tag.contains("type=\"hidden\"") {
            fields.insert(attr(tag, "name").unwrap(), attr(tag, "value").unwrap_or_default());
        }
    }
    (action, fields)
}

/// Query parameters of a redirect `Location`.
pub fn query(location: &str) -> HashMap<String, String> {
    url::Url::parse(location).unwrap().query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()["location"].to_str().unwrap().to_owned()
}

/// A form POST as Chromium sends it when the user presses the button of a
/// page from `origin` (`None`: the header is left out, as old browsers and
/// non-browser clients do).
pub fn browser_post(
    browser: &reqwest::Client,
    action: &str,
    origin: Option<&str>,
    sec_fetch_site: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut req = browser
        .post(action)
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-dest", "document")
        .header("sec-fetch-user", "?1")
        .header("upgrade-insecure-requests", "1");
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    if let Some(site) = sec_fetch_site {
        req = req.header("sec-fetch-site", site);
    }
    req
}

/// The origin of a URL, as a browser serializes it.
pub fn origin_of(url: &str) -> String {
    url::Url::parse(url).unwrap().origin().ascii_serialization()
}

/// Open an authorization URL in `browser`, sign in as `user` if asked, and
/// return the final redirect to the client. The form is posted with the
/// headers a browser sends for a same-origin form.
pub async fn sign_in(
    browser: &reqwest::Client,
    authorize_url: &str,
    username: &str,
    password: &str,
) -> String {
    let page = browser.get(authorize_url).send().await.unwrap();
    if page.status() == StatusCode::FOUND {
        return location(&page);
    }
    assert_eq!(page.status(), StatusCode::OK, "the sign-in page");
    let html = page.text().await.unwrap();
    let (action, mut fields) = parse_form(&html);
    fields.insert("username".into(), username.into());
    fields.insert("password".into(), password.into());
    let origin = origin_of(&action);
    let resp = browser_post(browser, &action, Some(&origin), Some("same-origin"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "signed in: {:?}", resp.text().await);
    location(&resp)
}

/// POST a form to the token endpoint with HTTP Basic client auth.
pub async fn token_basic(app: &TestApp, client: &Client, form: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .post(app.url("/oauth/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(form)
        .send()
        .await
        .unwrap()
}

/// Tokens for "user" through the password grant of `client`.
pub async fn password_tokens(app: &TestApp, client: &Client) -> Value {
    let resp =
        token_basic(app, client, &[("grant_type", "password"), ("username", "user"), ("password", PASSWORD)])
            .await;
    assert_eq!(resp.status(), StatusCode::OK, "password grant");
    resp.json().await.unwrap()
}

pub async fn introspect(app: &TestApp, client: &Client, token: &str) -> Value {
    let resp = app
        .client
        .post(app.url("/oauth/introspect"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

pub fn pkce_pair() -> (String, String) {
    let verifier = latchkey::crypto::random_token::<32>();
    let challenge = latchkey::crypto::b64url(&latchkey::crypto::sha256(verifier.as_bytes()));
    (verifier, challenge)
}

/// An authorization URL built by hand (for negative cases).
pub fn authorize_url(app: &TestApp, client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&app.url("/oauth/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("state", "xyz");
    for (k, v) in extra {
        url.query_pairs_mut().append_pair(k, v);
    }
    url.to_string()
}

/// An authorization URL with a fresh S256 challenge, for flows that never
/// redeem the code: every client needs PKCE unless registered without it.
pub fn authorize_url_with_pkce(app: &TestApp, client_id: &str, extra: &[(&str, &str)]) -> String {
    let (_, challenge) = pkce_pair();
    let mut params = vec![("code_challenge", challenge.as_str()), ("code_challenge_method", "S256")];
    params.extend_from_slice(extra);
    authorize_url(app, client_id, &params)
}
