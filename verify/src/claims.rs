use serde::{Deserialize, Deserializer};

/// The claims of a verified latchkey access token.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user id, or the client id for a client-credentials token.
    pub sub: String,
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// Seconds since the epoch. RFC 7519 §2 allows a non-integer NumericDate;
    /// a fractional value is rounded down.
    #[serde(deserialize_with = "numeric_date")]
    pub exp: i64,
    #[serde(deserialize_with = "numeric_date")]
    pub iat: i64,
    #[serde(default, deserialize_with = "optional_numeric_date")]
    pub nbf: Option<i64>,
    pub jti: String,
    pub client_id: String,
    /// The granted scopes.
    #[serde(default, deserialize_with = "space_separated")]
    pub scope: Vec<String>,
    /// Role names; present on user tokens, absent on client tokens.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// The session (refresh family) the token belongs to.
    #[serde(default)]
    pub sid: Option<String>,
    #[serde(default, deserialize_with = "optional_numeric_date")]
    pub auth_time: Option<i64>,
    /// How the user signed in (RFC 8176): `pwd`, `otp`, `swk`, `user`,
    /// and `mfa` when a second factor was part of it. User tokens only.
    #[serde(default)]
    pub amr: Option<Vec<String>>,
    /// `urn:latchkey:acr:mfa` or `urn:latchkey:acr:1fa`. User tokens only.
    #[serde(default)]
    pub acr: Option<String>,
}

impl Claims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.iter().any(|s| s == scope)
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.as_ref().is_some_and(|r| r.iter().any(|x| x == role))
    }

    /// Did the user sign in with a second factor (`amr` has `mfa`)?
    pub fn has_mfa(&self) -> bool {
        self.amr.as_ref().is_some_and(|a| a.iter().any(|m| m == "mfa"))
    }

    /// A client acting for itself (client credentials), not a user.
    pub fn is_client(&self) -> bool {
        self.roles.is_none() && self.sub == self.client_id
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn space_separated<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let s = String::deserialize(d)?;
    Ok(s.split_whitespace().map(str::to_owned).collect())
}

/// A JSON number as whole seconds. Values outside the `i64` range or not
/// finite are rejected rather than saturated.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f >= i64::MIN as f64 && f < i64::MAX as f64 => Ok(f.floor() as i64),
        _ => Err(serde::de::Error::custom("NumericDate out of range")),
    }
}

fn optional_numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    numeric_date(d).map(Some)
}
