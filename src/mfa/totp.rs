//! TOTP (RFC 6238) through `totp-rs`: SHA-1, 6 digits, 30-second steps,
//! one step of clock skew either way; what every authenticator app
//! understands. The arithmetic is the crate's; latchkey only keeps the
//! last accepted step so no code is accepted twice ([`super::repo`]).

use std::fmt::Write as _;

use totp_rs::{Algorithm, Builder, Totp};

/// Secret length: 160 bits, as RFC 4226 §4 recommends.
pub const SECRET_LEN: usize = 20;
pub const DIGITS: u8 = 6;
pub const STEP_SECONDS: u64 = 30;

/// A new random secret.
pub fn new_secret() -> Vec<u8> {
    crate::crypto::random_bytes::<SECRET_LEN>().to_vec()
}

fn build(secret: &[u8], issuer: &str, account: &str) -> anyhow::Result<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(1)
        .with_step_duration(STEP_SECONDS)
        .with_secret(secret.to_vec())
        .with_issuer(Some(issuer.replace(':', "")))
        .with_account_name(account.replace(':', ""))
        .build()
        .map_err(|e| anyhow::anyhow!("TOTP parameters refused: {e:?}"))
}

/// What an authenticator app needs: the secret in base32 and the
/// `otpauth://totp/...` URI (what the QR code holds).
pub struct Provisioning {
    pub secret_base32: String,
    pub uri: String,
}

pub fn provisioning(secret: &[u8], issuer: &str, account: &str) -> anyhow::Result<Provisioning> {
    let totp = build(secret, issuer, account)?;
    let uri = totp.to_url().map_err(|e| anyhow::anyhow!("otpauth URI: {e:?}"))?;
    Ok(Provisioning { secret_base32: totp.secret().to_base32(), uri })
}

/// The step a code is valid for at `unix_time` (this step, or one either
/// side), if any. The caller refuses a step at or before the last used one.
pub fn matching_step(secret: &[u8], code: &str, unix_time: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != usize::from(DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The account and issuer are not part of the arithmetic.
    let totp = build(secret, "latchkey", "user").ok()?;
    totp.check(&code, unix_time)
}

/// The code for `unix_time` (tests and the CLI's self-check).
pub fn code_at(secret: &[u8], unix_time: u64) -> Option<String> {
    let totp = build(secret, "latchkey", "user").ok()?;
    Some(totp.generate(unix_time).to_string())
}

/// `text` as a QR code in SVG (black modules on white, 4-module quiet zone).
pub fn qr_svg(text: &str) -> anyhow::Result<String> {
    use qrcodegen::{QrCode, QrCodeEcc};
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium).map_err(|e| anyhow::anyhow!("QR code: {e}"))?;
    let border = 4;
    let size = qr.size() + border * 2;
    let mut path = String::new();
    for y in 0..qr.size() {
        for x in 0..qr.size() {
            if qr.get_module(x, y) {
                let _ = write!(path, "M{},{}h1v1h-1z", x + border, y + border);
            }
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" \
         shape-rendering=\"crispEdges\"><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\
         <path d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_their_step_and_its_neighbours_only() {
        let secret = new_secret();
        let t = 1_767_225_600;
        let code = code_at(&secret, t).unwrap_or_default();
        assert_eq!(matching_step(&secret, &code, t), Some(t / STEP_SECONDS));
        assert_eq!(matching_step(&secret, &code, t + STEP_SECONDS), Some(t / STEP_SECONDS));
        assert_eq!(matching_step(&secret, &code, t + 3 * STEP_SECONDS), None);
        assert_eq!(matching_step(&secret, "12345", t), None);
        assert_eq!(matching_step(&secret, "abcdef", t), None);
    }

    #[test]
    fn the_uri_names_issuer_and_account() {
        let p = provisioning(&new_secret(), "auth.example.com", "alice")
            .unwrap_or_else(|_| Provisioning { secret_base32: String::new(), uri: String::new() });
        assert!(p.uri.starts_with("otpauth://totp/auth.example.com:alice?"), "{}", p.uri);
        assert!(p.uri.contains(&format!("secret={}", p.secret_base32)));
        assert!(qr_svg(&p.uri).is_ok_and(|svg| svg.starts_with("<svg")));
    }
}
