//! Second factors: TOTP apps ([`totp`]), passkeys ([`passkeys`]) and
//! recovery codes ([`recovery`]); the ceremonies that connect a password
//! sign-in to its second step ([`ceremonies`]); the per-user guess limit
//! ([`guard`]); and what a sign-in proved ([`Amr`], RFC 8176).
//!
//! The HTTP edges call [`flow`]; nothing here knows about HTTP.

pub mod ceremonies;
pub mod flow;
pub mod guard;
pub mod passkeys;
pub mod recovery;
pub mod repo;
pub mod totp;

use std::fmt;

/// `acr` of a sign-in with one factor (a password, or a passkey that did
/// not prove user verification).
pub const ACR_SINGLE_FACTOR: &str = "urn:latchkey:acr:1fa";
/// `acr` of a sign-in with two factors: what `acr_values` asks for.
pub const ACR_MFA: &str = "urn:latchkey:acr:mfa";
/// The scope of a token that can only enrol a second factor: what a user
/// whose role requires one gets until they have one.
pub const ENROL_SCOPE: &str = "latchkey:mfa_enrol";

/// One RFC 8176 authentication method reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    /// A password.
    Pwd,
    /// A one-time password: a TOTP code or a recovery code.
    Otp,
    /// A proof of possession of a software-secured key: a passkey. Passkeys
    /// are registered with attestation `none`, so nothing proves the key is
    /// in hardware; `hwk` is never claimed.
    Swk,
    /// User verification by the authenticator (PIN or biometrics), which
    /// every passkey ceremony requires.
    User,
    /// More than one factor.
    Mfa,
}

impl Method {
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Pwd => "pwd",
            Method::Otp => "otp",
            Method::Swk => "swk",
            Method::User => "user",
            Method::Mfa => "mfa",
        }
    }

    fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "pwd" => Method::Pwd,
            "otp" => Method::Otp,
            "swk" => Method::Swk,
            "user" => Method::User,
            "mfa" => Method::Mfa,
            _ => return None,
        })
    }
}

/// How a session was authenticated (`amr`), kept with the session and put
/// into every token it issues.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Amr(Vec<Method>);

impl Amr {
    /// A password alone.
    pub fn password() -> Amr {
        Amr(vec![Method::Pwd])
    }

    /// A passkey alone (the discoverable sign-in): possession of the key
    /// and the authenticator's user verification, two factors.
    pub fn passkey() -> Amr {
        Amr(vec![Method::Swk, Method::User, Method::Mfa])
    }

    /// `self` followed by a second factor: adds its methods and `mfa`.
    pub fn with_second(&self, second: SecondFactor) -> Amr {
        let mut methods = self.0.clone();
        match second {
            SecondFactor::Totp | SecondFactor::RecoveryCode => methods.push(Method::Otp),
            SecondFactor::Passkey => methods.extend([Method::Swk, Method::User]),
        }
        methods.push(Method::Mfa);
        methods.sort();
        methods.dedup();
        Amr(methods)
    }

    /// Read what [`Amr::to_stored`] wrote. Rows from before second factors
    /// (null) were password sign-ins.
    pub fn from_stored(stored: Option<&str>) -> Amr {
        match stored {
            None => Amr::password(),
            Some(s) => Amr(s.split_whitespace().filter_map(Method::parse).collect()),
        }
    }

    /// The `amr` claim of a token (absent: a password sign-in from before
    /// second factors).
    pub fn from_claim(values: Option<&[String]>) -> Amr {
        match values {
            None => Amr::password(),
            Some(v) => Amr(v.iter().filter_map(|s| Method::parse(s)).collect()),
        }
    }

    pub fn to_stored(&self) -> String {
        self.to_string()
    }

    pub fn is_mfa(&self) -> bool {
        self.0.contains(&Method::Mfa)
    }

    pub fn values(&self) -> Vec<String> {
        self.0.iter().map(|m| m.as_str().to_owned()).collect()
    }

    /// The documented `acr` for these methods.
    pub fn acr(&self) -> &'static str {
        if self.is_mfa() { ACR_MFA } else { ACR_SINGLE_FACTOR }
    }
}

impl fmt::Display for Amr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for m in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(m.as_str())?;
            first = false;
        }
        Ok(())
    }
}

/// What completed a second step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondFactor {
    Totp,
    Passkey,
    RecoveryCode,
}

impl SecondFactor {
    pub const fn as_str(self) -> &'static str {
        match self {
            SecondFactor::Totp => "totp",
            SecondFactor::Passkey => "passkey",
            SecondFactor::RecoveryCode => "recovery_code",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_factor_adds_its_method_and_mfa() {
        let amr = Amr::password().with_second(SecondFactor::Totp);
        assert_eq!(amr.to_string(), "pwd otp mfa");
        assert_eq!(amr.acr(), ACR_MFA);
        let amr = Amr::password().with_second(SecondFactor::Passkey);
        assert_eq!(amr.values(), ["pwd", "swk", "user", "mfa"]);
        assert_eq!(Amr::from_stored(Some(&amr.to_stored())), amr);
        assert_eq!(Amr::from_stored(None), Amr::password());
        assert_eq!(Amr::password().acr(), ACR_SINGLE_FACTOR);
        assert!(Amr::passkey().is_mfa());
    }
}
