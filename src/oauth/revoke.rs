//! Token revocation (RFC 7009).
//!
//! The client must own the token. Refresh tokens end their whole family and
//! the family's access tokens (§2.1: "SHOULD also invalidate all access
//! tokens based on the same authorization grant"); access tokens go on the
//! deny list by `jti` until they expire. Unknown, malformed or expired
//! tokens are answered with success (§2.2): there is nothing left to revoke.

use super::OAuthError;
use crate::clients::OAuthClient;
use crate::refresh::{self, RefreshToken};
use crate::revocation::cut_off;
use crate::state::AppState;
use crate::tokens;

pub async fn revoke(state: &AppState, client: &OAuthClient, token: &str) -> Result<(), OAuthError> {
    let now = state.now();
    if let Some(RefreshToken { family_id, .. }) = state.refresh_codec.decode(token) {
        let Some(family) = refresh::repo::by_id(&state.db, family_id).await? else { return Ok(()) };
        if family.client_id != client.client_id {
            return Err(OAuthError::unauthorized_client("the token was not issued to this client"));
        }
        cut_off::session(&state.db, state.reach(now), family_id, refresh::reason::REVOKED).await?;
        return Ok(());
    }
    match tokens::verify_access(&state.keyring, &state.tokens, now, token) {
        Ok(claims) => {
            if claims.client_id != client.client_id {
                return Err(OAuthError::unauthorized_client("the token was not issued to this client"));
            }
            let until = claims.expires_at() + tokens::LEEWAY;
            cut_off::token(&state.db, now, &claims.jti, until, "revoked").await?;
            Ok(())
        }
        // Expired, forged or foreign to this issuer: nothing to revoke.
        Err(_) => Ok(()),
    }
}
