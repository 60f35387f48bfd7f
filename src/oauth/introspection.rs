//! Token introspection (RFC 7662).
//!
//! A confidential client may introspect the tokens issued to it; a client
//! registered with the `latchkey:introspect` scope (a resource server) may
//! introspect any access token (RFC 7662 §4: the server decides who may
//! learn what). Refresh tokens only ever by the client they were issued to. `active` is false for anything that would not be honoured right
//! now: a bad signature, expiry, a deny-list entry, a banned or deleted user,
//! a refresh token that is not its family's current one.

use chrono::{DateTime, Utc};

use crate::clients::{INTROSPECT_SCOPE, OAuthClient};
use crate::error::Internal;
use crate::memory::Fresh;
use crate::refresh::{self, RefreshToken};
use crate::state::AppState;
use crate::tokens;
use crate::users;

/// RFC 7662 §2.2 response members.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Introspection {
    pub active: bool,
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub token_type: Option<String>,
    pub exp: Option<i64>,
    pub iat: Option<i64>,
    pub nbf: Option<i64>,
    pub sub: Option<String>,
    pub aud: Option<Vec<String>>,
    pub iss: Option<String>,
    pub jti: Option<String>,
    pub roles: Option<Vec<String>>,
}

impl Introspection {
    pub fn inactive() -> Self {
        Introspection::default()
    }
}

/// The username of a user whose refresh family is live, or `None` when
/// the user may not sign in.
async fn username_if_allowed(
    state: &AppState,
    sub: &str,
    now: DateTime<Utc>,
) -> Result<Option<Option<String>>, Internal> {
    let Ok(id) = uuid::Uuid::parse_str(sub) else { return Ok(None) };
    Ok(users::find(&state.db, id).await?.filter(|u| u.can_authenticate(now)).map(|u| Some(u.username)))
}

/// Introspect `token` for `client`. An access token is answered from
/// memory as of `fresh` (the deny list, and the username once read); a
/// refresh token reads its family.
pub async fn introspect(
    state: &AppState,
    fresh: &Fresh,
    client: &OAuthClient,
    token: &str,
    hint: Option<&str>,
) -> Result<Introspection, Internal> {
    let now = state.now();
    let try_refresh_first = hint == Some("refresh_token");
    if try_refresh_first {
        if let Some(found) = refresh_token(state, client, token, now).await? {
            return Ok(found);
        }
    }
    if let Ok(claims) = tokens::verify_access(&state.keyring, &state.tokens, now, token) {
        let may_see = claims.client_id == client.client_id || client.scope.contains(INTROSPECT_SCOPE);
        if !may_see || fresh.is_denied(&claims, now) {
            return Ok(Introspection::inactive());
        }
        let username = if claims.is_client_token() {
            None
        } else {
            let Ok(id) = uuid::Uuid::parse_str(&claims.sub) else { return Ok(Introspection::inactive()) };
            match fresh.username(id, now).await? {
                Some(name) => Some(name),
                None => return Ok(Introspection::inactive()),
            }
        };
        return Ok(Introspection {
            active: true,
            scope: Some(claims.scope),
            client_id: Some(claims.client_id),
            username,
            token_type: Some("Bearer".into()),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            nbf: Some(claims.nbf),
            sub: Some(claims.sub),
            aud: Some(claims.aud),
            iss: Some(claims.iss),
            jti: Some(claims.jti),
            roles: claims.roles,
        });
    }
    if !try_refresh_first {
        if let Some(found) = refresh_token(state, client, token, now).await? {
            return Ok(found);
        }
    }
    Ok(Introspection::inactive())
}

async fn refresh_token(
    state: &AppState,
    client: &OAuthClient,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<Introspection>, Internal> {
    let Some(RefreshToken { family_id, counter }) = state.refresh_codec.decode(token) else {
        return Ok(None);
    };
    let Some(family) = refresh::repo::by_id(&state.db, family_id).await?.map(refresh::Family::from) else {
        return Ok(Some(Introspection::inactive()));
    };
    let current = counter == family.counter;
    if family.client_id != client.client_id || !current || !family.is_live(&state.families, now) {
        return Ok(Some(Introspection::inactive()));
    }
    let Some(username) = username_if_allowed(state, &family.user_id.to_string(), now).await? else {
        return Ok(Some(Introspection::inactive()));
    };
    Ok(Some(Introspection {
        active: true,
        scope: Some(family.scope),
        client_id: Some(family.client_id),
        username,
        token_type: Some("refresh_token".into()),
        exp: Some(family.expires_at.timestamp()),
        iat: Some(family.last_rotated_at.timestamp()),
        sub: Some(family.user_id.to_string()),
        iss: Some(state.issuer().to_owned()),
        ..Introspection::default()
    }))
}
