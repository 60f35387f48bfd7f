//! Administrative actions that span several concepts. Each one takes the
//! acting admin's id and leaves an audit event.

use crate::audit::{self, Event, EventKind};
use crate::clients::{self, ClientError};
use crate::refresh::{self, Origin};
use crate::revocation;
use crate::state::AppState;
use crate::tokens;

/// Delete a client and take away everything it was issued: its refresh
/// families end, and its access tokens (user and client-credentials alike)
/// are denied until the last one expires.
pub async fn delete_client(
    state: &AppState,
    origin: &Origin,
    actor: uuid::Uuid,
    client_id: &str,
) -> Result<u64, ClientError> {
    let now = state.now();
    clients::delete(&state.db, client_id).await?;
    let ended = refresh::repo::revoke_for_client(&state.db, client_id, now, refresh::reason::REVOKED).await?;
    let until = now + state.tokens.access_ttl + tokens::LEEWAY;
    revocation::deny(&state.db, now, revocation::Kind::Client, client_id, until, "client_deleted").await?;
    audit::record(
        &state.db,
        now,
        origin,
        Event::new(EventKind::ClientDeleted).actor(actor).client(client_id).detail("families_ended", ended),
    )
    .await;
    Ok(ended)
}
