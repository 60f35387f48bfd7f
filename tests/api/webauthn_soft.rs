//! A software WebAuthn authenticator for the MFA tests: a real P-256 key,
//! "none" attestation and ES256 assertions, built byte by byte as WebAuthn
//! Level 2 lays them out (§6.1 authenticator data, §6.5 attestation object,
//! §5.8.1 client data), so passkey ceremonies run without a browser.
//!
//! It plays the browser too: it takes the JSON options webauthn-rs hands out
//! and returns the JSON a page would post back. It does what it is told —
//! `allowCredentials`, `excludeCredentials` and `pubKeyCredParams` are not
//! consulted — so a test can present its credential where the server must
//! refuse it.

use std::collections::BTreeMap;

use latchkey::crypto::{b64url, b64url_decode, sha256};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use openssl::pkey::Private;
use serde_cbor_2::Value as Cbor;
use serde_json::{Value, json};
use webauthn_rs::prelude::{
    DiscoverableKey, Passkey, PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, Webauthn,
    WebauthnBuilder, WebauthnError,
};

/// Authenticator data flag: the user was present.
const FLAG_UP: u8 = 0x01;
/// Authenticator data flag: the user was verified.
const FLAG_UV: u8 = 0x04;
/// Authenticator data flag: attested credential data follows the counter.
const FLAG_AT: u8 = 0x40;

/// One discoverable ES256 credential with its signature counter. A clone is
/// a cloned authenticator: the same key, the counter it had when cloned.
#[derive(Clone)]
pub struct SoftAuthenticator {
    key: EcKey<Private>,
    credential_id: Vec<u8>,
    counter: u32,
    /// `publicKey.user.id` of the registration, returned as `userHandle`.
    user_handle: Option<Vec<u8>>,
}

impl Default for SoftAuthenticator {
    fn default() -> Self {
        Self::new()
    }
}

impl SoftAuthenticator {
    /// A fresh P-256 key, a random credential id of 16 to 32 bytes, counter 0.
    pub fn new() -> Self {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
        let key = EcKey::generate(&group).expect("P-256 key");
        let random = latchkey::crypto::random_bytes::<33>();
        let len = 16 + usize::from(random[0] % 17);
        let credential_id = random[1..=len].to_vec();
        SoftAuthenticator { key, credential_id, counter: 0, user_handle: None }
    }

    /// Create the credential for `options`, the JSON of a webauthn-rs
    /// `CreationChallengeResponse` (`{"publicKey": {"rp", "user", "challenge", ..}}`),
    /// as a page at `origin` would. Returns the JSON of a
    /// `RegisterPublicKeyCredential`. Remembers `publicKey.user.id` as the
    /// user handle of later assertions (a discoverable credential).
    pub fn register(&mut self, options: &Value, origin: &str) -> Value {
        let public_key = &options["publicKey"];
        let rp_id = public_key["rp"]["id"].as_str().map_or_else(|| origin_host(origin), str::to_owned);
        let user_id = public_key["user"]["id"].as_str().expect("publicKey.user.id");
        self.user_handle = Some(decode_b64(user_id));
        let challenge = decode_b64(public_key["challenge"].as_str().expect("publicKey.challenge"));
        let client_data = client_data_json("webauthn.create", &challenge, origin);

        let mut auth_data = self.authenticator_data(&rp_id, FLAG_UP | FLAG_UV | FLAG_AT);
        auth_data.extend_from_slice(&self.attested_credential_data());
        let attestation_object = Cbor::Map(BTreeMap::from([
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(BTreeMap::new())),
            (Cbor::Text("authData".into()), Cbor::Bytes(auth_data)),
        ]));
        let attestation_object = serde_cbor_2::to_vec(&attestation_object).expect("attestation object CBOR");

        json!({
            "id": b64url(&self.credential_id),
            "rawId": b64url(&self.credential_id),
            "type": "public-key",
            "response": {
                "attestationObject": b64url(&attestation_object),
                "clientDataJSON": b64url(client_data.as_bytes()),
            },
            "extensions": {},
        })
    }

    /// Sign in for `options`, the JSON of a webauthn-rs `RequestChallengeResponse`
    /// (`{"publicKey": {"challenge", "rpId", "allowCredentials", ..}, "mediation"?}`),
    /// as a page at `origin` would. Counts one more use first, then returns
    /// the JSON of a `PublicKeyCredential` with the user handle of the
    /// registration (`null` before one).
    pub fn assert(&mut self, options: &Value, origin: &str) -> Value {
        let public_key = &options["publicKey"];
        let rp_id = public_key["rpId"].as_str().map_or_else(|| origin_host(origin), str::to_owned);
        let challenge = decode_b64(public_key["challenge"].as_str().expect("publicKey.challenge"));
        let client_data = client_data_json("webauthn.get", &challenge, origin);

        self.counter = self.counter.wrapping_add(1);
        let auth_data = self.authenticator_data(&rp_id, FLAG_UP | FLAG_UV);
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&sha256(client_data.as_bytes()));
        let signature = EcdsaSig::sign(&sha256(&signed), &self.key)
            .and_then(|sig| sig.to_der())
            .expect("ES256 signature");

        json!({
            "id": b64url(&self.credential_id),
            "rawId": b64url(&self.credential_id),
            "type": "public-key",
            "response": {
                "authenticatorData": b64url(&auth_data),
                "clientDataJSON": b64url(client_data.as_bytes()),
                "signature": b64url(&signature),
                "userHandle": self.user_handle.as_deref().map(b64url),
            },
            "extensions": {},
        })
    }

    /// The signature counter: the value in the last authenticator data.
    pub fn counter(&self) -> u32 {
        self.counter
    }

    /// Move the signature counter, e.g. back, as a cloned key would.
    pub fn set_counter(&mut self, counter: u32) {
        self.counter = counter;
    }

    /// The raw credential id.
    pub fn credential_id(&self) -> Vec<u8> {
        self.credential_id.clone()
    }

    /// rpIdHash, flags and the big-endian signCount (§6.1).
    fn authenticator_data(&self, rp_id: &str, flags: u8) -> Vec<u8> {
        let mut data = sha256(rp_id.as_bytes()).to_vec();
        data.push(flags);
        data.extend_from_slice(&self.counter.to_be_bytes());
        data
    }

    /// A zero AAGUID, the credential id with its big-endian length, and the
    /// ES256 COSE_Key (§6.5.1).
    fn attested_credential_data(&self) -> Vec<u8> {
        let mut data = vec![0u8; 16];
        let len = u16::try_from(self.credential_id.len()).expect("credential id length");
        data.extend_from_slice(&len.to_be_bytes());
        data.extend_from_slice(&self.credential_id);
        data.extend_from_slice(&self.cose_key());
        data
    }

    /// `{1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}`.
    fn cose_key(&self) -> Vec<u8> {
        let mut ctx = BigNumContext::new().expect("BN context");
        let (mut x, mut y) = (BigNum::new().expect("BN"), BigNum::new().expect("BN"));
        self.key
            .public_key()
            .affine_coordinates(self.key.group(), &mut x, &mut y, &mut ctx)
            .expect("P-256 point coordinates");
        let key = Cbor::Map(BTreeMap::from([
            (Cbor::Integer(1), Cbor::Integer(2)),
            (Cbor::Integer(3), Cbor::Integer(-7)),
            (Cbor::Integer(-1), Cbor::Integer(1)),
            (Cbor::Integer(-2), Cbor::Bytes(x.to_vec_padded(32).expect("x"))),
            (Cbor::Integer(-3), Cbor::Bytes(y.to_vec_padded(32).expect("y"))),
        ]));
        serde_cbor_2::to_vec(&key).expect("COSE key CBOR")
    }
}

/// `{"type","challenge","origin","crossOrigin":false}` in the order browsers write it.
fn client_data_json(type_: &str, challenge: &[u8], origin: &str) -> String {
    format!(
        r#"{{"type":{},"challenge":{},"origin":{},"crossOrigin":false}}"#,
        Value::from(type_),
        Value::from(b64url(challenge)),
        Value::from(origin)
    )
}

/// base64url, padded or not; standard base64 is taken too.
fn decode_b64(text: &str) -> Vec<u8> {
    let normal: String = text
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    b64url_decode(&normal).unwrap_or_else(|| panic!("not base64: {text}"))
}

/// The RP id a browser assumes when the options name none: the origin's host.
fn origin_host(origin: &str) -> String {
    let url = Url::parse(origin).unwrap_or_else(|e| panic!("origin {origin}: {e}"));
    url.host_str().unwrap_or_else(|| panic!("origin {origin} has no host")).to_owned()
}

// The authenticator against webauthn-rs itself: no server, no database.

const ORIGIN: &str = "http://localhost:8080";

fn relying_party() -> Webauthn {
    let origin = Url::parse(ORIGIN).unwrap();
    WebauthnBuilder::new("localhost", &origin).unwrap().rp_name("latchkey tests").build().unwrap()
}

fn register_passkey(rp: &Webauthn, authenticator: &mut SoftAuthenticator, user: Uuid) -> Passkey {
    let (ccr, state) = rp.start_passkey_registration(user, "alice", "Alice", None).unwrap();
    let response = authenticator.register(&serde_json::to_value(&ccr).unwrap(), ORIGIN);
    let response: RegisterPublicKeyCredential = serde_json::from_value(response).unwrap();
    rp.finish_passkey_registration(&response, &state).unwrap()
}

/// One passkey sign-in; the stored passkey takes the new counter on success.
fn sign_in(
    rp: &Webauthn,
    authenticator: &mut SoftAuthenticator,
    passkey: &mut Passkey,
) -> Result<u32, WebauthnError> {
    let (rcr, state) = rp.start_passkey_authentication(std::slice::from_ref(passkey)).unwrap();
    let response = authenticator.assert(&serde_json::to_value(&rcr).unwrap(), ORIGIN);
    let response: PublicKeyCredential = serde_json::from_value(response).unwrap();
    let result = rp.finish_passkey_authentication(&response, &state)?;
    assert!(result.user_verified());
    passkey.update_credential(&result);
    Ok(result.counter())
}

/// webauthn-rs's verdict on a counter at or below the stored one.
fn compromised(result: Result<u32, WebauthnError>) -> bool {
    matches!(result, Err(WebauthnError::CredentialPossibleCompromise))
}

#[test]
fn webauthn_rs_registers_the_soft_authenticator_and_verifies_its_assertions() {
    let rp = relying_party();
    let mut authenticator = SoftAuthenticator::new();
    assert!((16..=32).contains(&authenticator.credential_id().len()));
    let mut passkey = register_passkey(&rp, &mut authenticator, Uuid::new_v4());
    assert_eq!(passkey.cred_id().as_slice(), authenticator.credential_id().as_slice());
    assert_eq!(authenticator.counter(), 0);

    assert_eq!(sign_in(&rp, &mut authenticator, &mut passkey).unwrap(), 1);
    assert_eq!(authenticator.counter(), 1);
    assert_eq!(sign_in(&rp, &mut authenticator, &mut passkey).unwrap(), 2);
}

#[test]
fn the_objects_are_laid_out_as_webauthn_level_2_says() {
    let rp = relying_party();
    let mut authenticator = SoftAuthenticator::new();
    let (ccr, _) = rp.start_passkey_registration(Uuid::new_v4(), "alice", "Alice", None).unwrap();
    let options = serde_json::to_value(&ccr).unwrap();
    let response = authenticator.register(&options, ORIGIN);
    let id = authenticator.credential_id();
    assert_eq!(response["id"], b64url(&id));
    assert_eq!(response["type"], "public-key");

    let client_data = decode_b64(response["response"]["clientDataJSON"].as_str().unwrap());
    let expected = format!(
        r#"{{"type":"webauthn.create","challenge":{},"origin":"{ORIGIN}","crossOrigin":false}}"#,
        options["publicKey"]["challenge"]
    );
    assert_eq!(String::from_utf8(client_data).unwrap(), expected);

    let object = decode_b64(response["response"]["attestationObject"].as_str().unwrap());
    let Cbor::Map(object) = serde_cbor_2::from_slice::<Cbor>(&object).unwrap() else { panic!("not a map") };
    assert_eq!(object[&Cbor::Text("fmt".into())], Cbor::Text("none".into()));
    assert_eq!(object[&Cbor::Text("attStmt".into())], Cbor::Map(BTreeMap::new()));
    let Cbor::Bytes(auth_data) = &object[&Cbor::Text("authData".into())] else { panic!("authData") };
    assert_eq!(auth_data[..32], sha256(b"localhost"));
    assert_eq!(auth_data[32], 0x45, "UP | UV | AT, no BE/BS/ED");
    assert_eq!(auth_data[33..37], [0, 0, 0, 0]);
    assert_eq!(auth_data[37..53], [0; 16], "AAGUID");
    assert_eq!(usize::from(u16::from_be_bytes([auth_data[53], auth_data[54]])), id.len());
    assert_eq!(auth_data[55..55 + id.len()], id[..]);
    let Cbor::Map(cose) = serde_cbor_2::from_slice::<Cbor>(&auth_data[55 + id.len()..]).unwrap() else {
        panic!("COSE key")
    };
    assert_eq!(cose.len(), 5);
    assert_eq!(cose[&Cbor::Integer(1)], Cbor::Integer(2));
    assert_eq!(cose[&Cbor::Integer(3)], Cbor::Integer(-7));
    assert_eq!(cose[&Cbor::Integer(-1)], Cbor::Integer(1));
    let (Cbor::Bytes(x), Cbor::Bytes(y)) = (&cose[&Cbor::Integer(-2)], &cose[&Cbor::Integer(-3)]) else {
        panic!("x, y")
    };

    // The assertion's signature checks with that public key, independently of webauthn-rs.
    authenticator.set_counter(41);
    let (rcr, _) = rp.start_discoverable_authentication().unwrap();
    let response = authenticator.assert(&serde_json::to_value(&rcr).unwrap(), ORIGIN);
    let auth_data = decode_b64(response["response"]["authenticatorData"].as_str().unwrap());
    assert_eq!(auth_data.len(), 37);
    assert_eq!(auth_data[32], 0x05, "UP | UV");
    assert_eq!(auth_data[33..], 42u32.to_be_bytes());
    let client_data = decode_b64(response["response"]["clientDataJSON"].as_str().unwrap());
    assert!(String::from_utf8(client_data.clone()).unwrap().starts_with(r#"{"type":"webauthn.get","#));
    let mut signed = auth_data.clone();
    signed.extend_from_slice(&sha256(&client_data));
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let public = EcKey::from_public_key_affine_coordinates(
        &group,
        &BigNum::from_slice(x).unwrap(),
        &BigNum::from_slice(y).unwrap(),
    )
    .unwrap();
    let signature = decode_b64(response["response"]["signature"].as_str().unwrap());
    let signature = EcdsaSig::from_der(&signature).unwrap();
    assert!(signature.verify(&sha256(&signed), &public).unwrap());
}

#[test]
fn a_cloned_authenticator_behind_the_stored_counter_is_refused() {
    let rp = relying_party();
    let mut authenticator = SoftAuthenticator::new();
    let mut passkey = register_passkey(&rp, &mut authenticator, Uuid::new_v4());
    let mut clone = authenticator.clone();
    assert_eq!(clone.counter(), 0);

    assert_eq!(sign_in(&rp, &mut authenticator, &mut passkey).unwrap(), 1);
    assert_eq!(sign_in(&rp, &mut authenticator, &mut passkey).unwrap(), 2);
    assert!(compromised(sign_in(&rp, &mut clone, &mut passkey)));
    // A counter equal to the stored one is refused as well ...
    clone.set_counter(1);
    assert!(compromised(sign_in(&rp, &mut clone, &mut passkey)));
    // ... one past it is not: the counter is all webauthn-rs can tell a clone by.
    clone.set_counter(9);
    assert_eq!(sign_in(&rp, &mut clone, &mut passkey).unwrap(), 10);
    assert!(compromised(sign_in(&rp, &mut authenticator, &mut passkey)));
}

#[test]
fn a_discoverable_sign_in_names_the_user_and_verifies() {
    let rp = relying_party();
    let user = Uuid::new_v4();
    let mut authenticator = SoftAuthenticator::new();
    let passkey = register_passkey(&rp, &mut authenticator, user);

    let (rcr, state) = rp.start_discoverable_authentication().unwrap();
    let options = serde_json::to_value(&rcr).unwrap();
    assert_eq!(options["publicKey"]["allowCredentials"], json!([]));
    let response = authenticator.assert(&options, ORIGIN);
    let response: PublicKeyCredential = serde_json::from_value(response).unwrap();
    let (named, cred_id) = rp.identify_discoverable_authentication(&response).unwrap();
    assert_eq!(named, user);
    assert_eq!(cred_id, authenticator.credential_id().as_slice());
    let result =
        rp.finish_discoverable_authentication(&response, state, &[DiscoverableKey::from(&passkey)]).unwrap();
    assert_eq!(result.counter(), 1);
    assert!(result.user_verified());
}

#[test]
fn a_wrong_origin_is_refused() {
    let rp = relying_party();
    let evil = "http://localhost.evil.example:8080";
    let mut authenticator = SoftAuthenticator::new();

    let (ccr, state) = rp.start_passkey_registration(Uuid::new_v4(), "alice", "Alice", None).unwrap();
    let response = authenticator.register(&serde_json::to_value(&ccr).unwrap(), evil);
    let response: RegisterPublicKeyCredential = serde_json::from_value(response).unwrap();
    let refused = rp.finish_passkey_registration(&response, &state);
    assert!(matches!(refused, Err(WebauthnError::InvalidRPOrigin)), "{refused:?}");

    let passkey = register_passkey(&rp, &mut authenticator, Uuid::new_v4());
    let (rcr, state) = rp.start_passkey_authentication(&[passkey]).unwrap();
    let response = authenticator.assert(&serde_json::to_value(&rcr).unwrap(), evil);
    let response: PublicKeyCredential = serde_json::from_value(response).unwrap();
    let refused = rp.finish_passkey_authentication(&response, &state);
    assert!(matches!(refused, Err(WebauthnError::InvalidRPOrigin)), "{refused:?}");
}
