//! Passkeys through `webauthn-rs` (the kanidm project's WebAuthn library):
//! it builds the challenges and verifies every registration and assertion
//! (origin, RP ID hash, challenge, user verification, signature, counter).
//! latchkey keeps its state in [`super::ceremonies`] and the credentials
//! in [`super::repo`].
//!
//! The relying-party ID is the issuer's host and the only accepted origin
//! the issuer's origin. WebAuthn needs a domain name (not an IP address)
//! and a secure context (https, or http on `localhost`): with another
//! issuer, passkeys are off and their endpoints say so.

use url::Url;
use webauthn_rs::prelude::{
    CreationChallengeResponse, CredentialID, DiscoverableAuthentication, DiscoverableKey, Passkey,
    PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, Webauthn, WebauthnBuilder,
};
use webauthn_rs_proto::ResidentKeyRequirement;

pub use webauthn_rs::prelude::AuthenticationResult;

/// The WebAuthn relying party of this issuer, or why there is none.
pub fn relying_party(issuer: &str) -> Result<Webauthn, String> {
    let url = Url::parse(issuer).map_err(|e| format!("the issuer is not a URL: {e}"))?;
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(_) => return Err("the issuer's host is an IP address; WebAuthn needs a domain name".into()),
        None => return Err("the issuer has no host".into()),
    };
    let secure = url.scheme() == "https" || host == "localhost";
    if !secure {
        return Err(
            "the issuer is neither https nor http://localhost; WebAuthn needs a secure context".into()
        );
    }
    let origin = Url::parse(&url.origin().ascii_serialization()).map_err(|e| e.to_string())?;
    WebauthnBuilder::new(&host, &origin)
        .and_then(|b| b.rp_name("latchkey").build())
        .map_err(|e| format!("WebAuthn relying party: {e}"))
}

/// Begin registering a passkey for `user`. Asks for a discoverable
/// credential where the authenticator can keep one, so the passkey also
/// signs in without a username.
pub fn start_registration(
    rp: &Webauthn,
    user_id: uuid::Uuid,
    username: &str,
    exclude: Vec<CredentialID>,
) -> Result<(CreationChallengeResponse, PasskeyRegistration), String> {
    let exclude = (!exclude.is_empty()).then_some(exclude);
    let (mut ccr, state) =
        rp.start_passkey_registration(user_id, username, username, exclude).map_err(|e| e.to_string())?;
    if let Some(selection) = ccr.public_key.authenticator_selection.as_mut() {
        selection.resident_key = Some(ResidentKeyRequirement::Preferred);
    }
    Ok((ccr, state))
}

pub fn finish_registration(
    rp: &Webauthn,
    response: &RegisterPublicKeyCredential,
    state: &PasskeyRegistration,
) -> Result<Passkey, String> {
    rp.finish_passkey_registration(response, state).map_err(|e| e.to_string())
}

/// Begin an assertion with one of these passkeys (the second step).
pub fn start_authentication(
    rp: &Webauthn,
    passkeys: &[Passkey],
) -> Result<(RequestChallengeResponse, PasskeyAuthentication), String> {
    rp.start_passkey_authentication(passkeys).map_err(|e| e.to_string())
}

pub fn finish_authentication(
    rp: &Webauthn,
    response: &PublicKeyCredential,
    state: &PasskeyAuthentication,
) -> Result<AuthenticationResult, String> {
    rp.finish_passkey_authentication(response, state).map_err(|e| e.to_string())
}

/// Begin a usernameless sign-in: any discoverable passkey of this RP.
/// (webauthn-rs marks it for conditional mediation; the sign-in page's
/// button asks explicitly instead, so the mark is dropped.)
pub fn start_discoverable(
    rp: &Webauthn,
) -> Result<(RequestChallengeResponse, DiscoverableAuthentication), String> {
    let (mut rcr, state) = rp.start_discoverable_authentication().map_err(|e| e.to_string())?;
    rcr.mediation = None;
    Ok((rcr, state))
}

/// The user handle and credential id a discoverable assertion names.
pub fn identify(rp: &Webauthn, response: &PublicKeyCredential) -> Result<(uuid::Uuid, Vec<u8>), String> {
    rp.identify_discoverable_authentication(response)
        .map(|(user, cred)| (user, cred.to_vec()))
        .map_err(|e| e.to_string())
}

pub fn finish_discoverable(
    rp: &Webauthn,
    response: &PublicKeyCredential,
    state: DiscoverableAuthentication,
    passkey: &Passkey,
) -> Result<AuthenticationResult, String> {
    rp.finish_discoverable_authentication(response, state, &[DiscoverableKey::from(passkey)])
        .map_err(|e| e.to_string())
}
