//! A real OpenID Connect client library (`openidconnect`) drives latchkey
//! from nothing but the issuer URL: discovery, the authorization code flow
//! with PKCE through the sign-in form, ID token validation, UserInfo,
//! refresh, client credentials, the password grant, introspection and
//! revocation.

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod,
    CoreGrantType, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AdditionalProviderMetadata, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    IntrospectionUrl, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, ProviderMetadata,
    RedirectUrl, ResourceOwnerPassword, ResourceOwnerUsername, RevocationUrl, Scope,
    TokenIntrospectionResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};

use crate::db_test;
use crate::helpers::TestApp;
use crate::oauth_support::{self, PASSWORD, REDIRECT};

#[derive(Clone, Debug, Deserialize, Serialize)]
struct MoreEndpoints {
    revocation_endpoint: String,
    introspection_endpoint: String,
    end_session_endpoint: String,
}
impl AdditionalProviderMetadata for MoreEndpoints {}

type Metadata = ProviderMetadata<
    MoreEndpoints,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The library's HTTP client: no redirects (SSRF), trusting the test CA.
fn http(app: &TestApp) -> openidconnect::reqwest::Client {
    let ca = app.ca_pem.as_ref().expect("the OIDC tests run over HTTPS");
    openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .add_root_certificate(openidconnect::reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap()
}

async fn discover(app: &TestApp) -> Metadata {
    Metadata::discover_async(IssuerUrl::new(app.address.clone()).unwrap(), &http(app))
        .await
        .expect("discovery")
}

db_test!(async fn a_strict_oidc_client_library_completes_every_flow(backend) {
    let (app, admin) = oauth_support::spawn_with_admin_tls(backend).await;
    let registered = oauth_support::confidential(&app, &admin).await;
    let http = http(&app);

    // Discovery from the issuer URL alone.
    let metadata = discover(&app).await;
    let extra = metadata.additional_metadata().clone();
    assert_eq!(extra.revocation_endpoint, app.url("/oauth/revoke"));
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(registered.id.clone()),
        registered.secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap())
    .set_revocation_url(RevocationUrl::new(extra.revocation_endpoint).unwrap())
    .set_introspection_url(IntrospectionUrl::new(extra.introspection_endpoint).unwrap());

    // Authorization code + PKCE, signing in through the HTML form.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let browser = oauth_support::browser_for(&app);
    let redirect = oauth_support::sign_in(&browser, auth_url.as_str(), "user", PASSWORD).await;
    let params = oauth_support::query(&redirect);
    assert_eq!(params["state"], *csrf.secret());
    assert_eq!(params["iss"], app.address, "RFC 9207 iss");

    let tokens = client
        .exchange_code(AuthorizationCode::new(params["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange");

    // The ID token validates: signature, iss, aud, exp, nonce, at_hash.
    let id_token = tokens.id_token().expect("id_token");
    let verifier = client.id_token_verifier();
    let claims = id_token.claims(&verifier, &nonce).expect("valid id_token");
    let expected_hash = claims.access_token_hash().expect("at_hash");
    let actual_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(*expected_hash, actual_hash);
    assert!(claims.auth_time().is_some());

    // UserInfo: same subject as the ID token, claims by scope.
    let userinfo: CoreUserInfoClaims = client
        .user_info(tokens.access_token().to_owned(), None)
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(userinfo.subject(), claims.subject());
    assert_eq!(userinfo.preferred_username().map(|u| u.as_str()), Some("user"));

    // The browser session skips the form next time.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, _, nonce2) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let page = browser.get(auth_url.as_str()).send().await.unwrap();
    assert_eq!(page.status(), 302, "a signed-in browser is not asked again");
    let code = oauth_support::query(&oauth_support::location(&page))["code"].clone();
    let second = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    second.id_token().unwrap().claims(&client.id_token_verifier(), &nonce2).unwrap();

    // Refresh rotates.
    let refresh = tokens.refresh_token().expect("refresh_token").clone();
    let refreshed = client.exchange_refresh_token(&refresh).unwrap().request_async(&http).await.expect("refresh");
    assert_ne!(refreshed.refresh_token().unwrap().secret(), refresh.secret());

    // Introspection, then revocation, then introspection again.
    let active = client.introspect(refreshed.access_token()).request_async(&http).await.unwrap();
    assert!(active.active());
    assert_eq!(active.client_id().map(|c| c.as_str()), Some(registered.id.as_str()));
    client
        .revoke_token(refreshed.access_token().into())
        .unwrap()
        .request_async(&http)
        .await
        .expect("revocation");
    let inactive = client.introspect(refreshed.access_token()).request_async(&http).await.unwrap();
    assert!(!inactive.active());
    client
        .revoke_token(refreshed.refresh_token().unwrap().into())
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    let refused = client.exchange_refresh_token(refreshed.refresh_token().unwrap()).unwrap().request_async(&http).await;
    match refused {
        Err(openidconnect::RequestTokenError::ServerResponse(r)) => {
            assert_eq!(r.error(), &openidconnect::core::CoreErrorResponseType::InvalidGrant)
        }
        other => panic!("expected invalid_grant, got {other:?}"),
    }

    // Client credentials: the client acts for itself.
    let service = client
        .exchange_client_credentials()
        .unwrap()
        .add_scope(Scope::new("tasks:read".into()))
        .request_async(&http)
        .await
        .expect("client credentials");
    assert!(service.refresh_token().is_none());
    let service_claims = crate::jwt::verify_with_published_jwks(&app, service.access_token().secret(), "at+jwt").await;
    assert_eq!(service_claims["sub"], registered.id.as_str());
    assert_eq!(service_claims["scope"], "tasks:read");

    // Password grant (this client is registered for it).
    let direct = client
        .exchange_password(&ResourceOwnerUsername::new("user".into()), &ResourceOwnerPassword::new(PASSWORD.into()))
        .unwrap()
        .add_scope(Scope::new("openid".into()))
        .request_async(&http)
        .await
        .expect("password grant");
    assert!(direct.refresh_token().is_some());
    assert!(direct.id_token().is_some());
});

db_test!(async fn a_public_client_uses_pkce_and_no_secret(backend) {
    let (app, admin) = oauth_support::spawn_with_admin_tls(backend).await;
    let registered = oauth_support::public(&app, &admin).await;
    let http = http(&app);
    let client = CoreClient::from_provider_metadata(discover(&app).await, ClientId::new(registered.id.clone()), None)
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, _, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let redirect = oauth_support::sign_in(&oauth_support::browser_for(&app), auth_url.as_str(), "user", PASSWORD).await;
    let code = oauth_support::query(&redirect)["code"].clone();
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("public client exchange");
    tokens.id_token().unwrap().claims(&client.id_token_verifier(), &nonce).unwrap();
    let refreshed = client.exchange_refresh_token(tokens.refresh_token().unwrap()).unwrap().request_async(&http).await;
    assert!(refreshed.is_ok(), "public clients refresh with client_id only");
});
