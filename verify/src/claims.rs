use serde::{Deserialize, Deserializer};

/// The claims of a verified latchkey access token.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user id, or the client id for a client-credentials token.
    pub sub: String,
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    #[serde(default)]
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
    #[serde(default)]
    pub auth_time: Option<i64>,
}

impl Claims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.iter().any(|s| s == scope)
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.as_ref().is_some_and(|r| r.iter().any(|x| x == role))
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
