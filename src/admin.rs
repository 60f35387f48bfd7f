//! Administrative actions that span several concepts. Each takes who acts
//! (an admin, or for user management an [`Actor::Service`]) and leaves an
//! audit event. Bans, disabling, role changes,
//! password resets, deletions and bulk revocations take access away through
//! [`crate::revocation::cut_off`], in the same transaction as the change
//! that causes them.

use chrono::{DateTime, Utc};
use sea_orm::TransactionTrait;
use uuid::Uuid;

use crate::audit::{self, Event, EventKind};
use crate::clients::{self, ClientError};
use crate::error::Internal;
use crate::passwords::{HashError, Password};
use crate::refresh::{self, Family, Origin};
use crate::revocation::cut_off;
use crate::state::AppState;
use crate::users::{self, Email, Role, User, Username, invitation, roles_to_column};

/// Who performs an administrative action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A user with the admin role, through an admin token.
    Admin(Uuid),
    /// A service client with [`crate::authn::USERS_SCOPE`], through a
    /// client-credentials token. It manages users, never admins, and never
    /// grants a role it could not hold itself.
    Service(String),
}

impl Actor {
    /// The acting admin's user id.
    fn user_id(&self) -> Option<Uuid> {
        match self {
            Actor::Admin(id) => Some(*id),
            Actor::Service(_) => None,
        }
    }

    /// Who acted, on an audit event: the admin's user id, or the service's
    /// client id (as actor and as client).
    pub fn stamp(&self, event: Event) -> Event {
        match self {
            Actor::Admin(id) => event.actor(id),
            Actor::Service(client_id) => {
                event.actor(client_id).client(client_id).detail("actor_type", "service")
            }
        }
    }

    /// A service may not act on an admin: no change, ban, reset, session
    /// listing or deletion.
    fn may_act_on(&self, target: &User) -> Result<(), AdminError> {
        match self {
            Actor::Service(_) if target.is_admin() => Err(AdminError::TargetIsAdmin),
            _ => Ok(()),
        }
    }

    /// A service may not grant a role it could not hold itself: the admin
    /// role, the one that confers `latchkey:admin`.
    fn may_grant(&self, roles: &[Role]) -> Result<(), AdminError> {
        match self {
            Actor::Service(_) if roles.iter().any(|r| r.as_str() == Role::ADMIN) => {
                Err(AdminError::RoleNotGrantable(Role::ADMIN))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no such user")]
    UserNotFound,
    #[error("no such session")]
    SessionNotFound,
    /// An admin may not ban, delete, disable or change the roles of themselves.
    #[error("{0}")]
    SelfAction(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("password hashing is saturated")]
    Busy,
    #[error("this username is already taken")]
    UsernameTaken,
    /// A service tried to create, change or delete an admin.
    #[error("a service cannot create, change or delete an admin")]
    TargetIsAdmin,
    /// A service tried to grant a role it could not hold itself.
    #[error("a service cannot grant the {0} role")]
    RoleNotGrantable(&'static str),
    #[error(transparent)]
    Internal(#[from] Internal),
}

impl From<users::RegisterError> for AdminError {
    fn from(e: users::RegisterError) -> Self {
        match e {
            users::RegisterError::UsernameTaken => AdminError::UsernameTaken,
            users::RegisterError::Hashing(h) => h.into(),
            users::RegisterError::Internal(i) => AdminError::Internal(i),
        }
    }
}

impl From<HashError> for AdminError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => AdminError::Busy,
            HashError::Internal(i) => AdminError::Internal(i),
        }
    }
}

/// The user `id`, or [`AdminError::UserNotFound`].
pub async fn existing_user(state: &AppState, id: Uuid) -> Result<User, AdminError> {
    users::find(&state.db, id).await?.ok_or(AdminError::UserNotFound)
}

/// The user `id`, if `actor` may act on them.
async fn target(state: &AppState, actor: &Actor, id: Uuid) -> Result<User, AdminError> {
    let user = existing_user(state, id).await?;
    actor.may_act_on(&user)?;
    Ok(user)
}

/// A user's live sessions, if `actor` may see them (a service sees no admin's).
pub async fn sessions_of_user(state: &AppState, actor: &Actor, id: Uuid) -> Result<Vec<Family>, AdminError> {
    target(state, actor, id).await?;
    Ok(sessions_of(state, id).await?)
}

/// An account to create: with a password set by the actor, or, without
/// one, with an invitation the person accepts to choose theirs.
pub struct NewAccount {
    pub username: Username,
    pub email: Option<Email>,
    pub roles: Vec<Role>,
    pub password: Option<Password>,
}

/// Create a user. Without a password the account gets an unguessable one
/// and the returned invitation lets its owner set theirs.
pub async fn create_user(
    state: &AppState,
    origin: &Origin,
    actor: &Actor,
    new: NewAccount,
) -> Result<(User, Option<invitation::Issued>), AdminError> {
    actor.may_grant(&new.roles)?;
    let invited = new.password.is_none();
    let password = new.password.unwrap_or_else(Password::unguessable);
    let hash = state.hasher.hash(&password).await?;
    let now = state.now();
    let txn = state.db.begin().await.map_err(Internal::from)?;
    let user = users::create(&txn, now, &new.username, new.email.as_ref(), &new.roles, hash).await?;
    let issued = if invited {
        let by = match actor {
            Actor::Admin(id) => id.to_string(),
            Actor::Service(client_id) => client_id.clone(),
        };
        Some(invitation::issue(&txn, now, user.id, &by).await?)
    } else {
        None
    };
    txn.commit().await.map_err(Internal::from)?;
    let event = actor
        .stamp(Event::new(EventKind::UserCreated))
        .subject(user.id)
        .detail("roles", user.role_names())
        .detail("invited", invited);
    audit::record(&state.db, now, origin, event).await;
    Ok((user, issued))
}

/// Ban a user until `until` (or indefinitely).
pub async fn ban_user(
    state: &AppState,
    origin: &Origin,
    actor: &Actor,
    id: Uuid,
    reason: Option<String>,
    until: Option<DateTime<Utc>>,
) -> Result<(User, u64), AdminError> {
    if actor.user_id() == Some(id) {
        return Err(AdminError::SelfAction("an admin cannot ban themselves"));
    }
    let now = state.now();
    if until.is_some_and(|u| u <= now) {
        return Err(AdminError::Invalid("the ban must end in the future".into()));
    }
    if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(AdminError::Invalid("the reason is at most 500 characters".into()));
    }
    target(state, actor, id).await?;
    let ban = users::Ban { at: now, until, reason: reason.clone() };
    let txn = state.db.begin().await.map_err(Internal::from)?;
    users::repo::set_ban(&txn, id, Some(ban), now).await?;
    let ended = cut_off::user(&txn, state.reach(now), id, "banned").await?;
    txn.commit().await.map_err(Internal::from)?;
    crate::revocation::feed::publish(&state.db).await;
    let event = actor
        .stamp(Event::new(EventKind::UserBanned))
        .subject(id)
        .detail("reason", reason)
        .detail("until", until.map(|u| u.to_rfc3339()))
        .detail("families_ended", ended);
    audit::record(&state.db, now, origin, event).await;
    Ok((existing_user(state, id).await?, ended))
}

/// Lift a ban. Tokens issued before the ban stay denied until they expire.
pub async fn unban_user(
    state: &AppState,
    origin: &Origin,
    actor: &Actor,
    id: Uuid,
) -> Result<User, AdminError> {
    let now = state.now();
    target(state, actor, id).await?;
    users::repo::set_ban(&state.db, id, None, now).await?;
    audit::record(&state.db, now, origin, actor.stamp(Event::new(EventKind::UserUnbanned)).subject(id)).await;
    existing_user(state, id).await
}

/// What an admin may change about a user. `None` keeps the current value.
#[derive(Clone, Debug, Default)]
pub struct UserPatch {
    pub email: Option<Option<Email>>,
    pub roles: Option<Vec<Role>>,
    pub disabled: Option<bool>,
}

pub async fn update_user(
    state: &AppState,
    origin: &Origin,
    actor: &Actor,
    id: Uuid,
    patch: UserPatch,
) -> Result<User, AdminError> {
    let own = actor.user_id() == Some(id);
    if own && patch.roles.is_some() {
        return Err(AdminError::SelfAction("an admin cannot change their own roles"));
    }
    if own && patch.disabled == Some(true) {
        return Err(AdminError::SelfAction("an admin cannot disable themselves"));
    }
    if let Some(roles) = &patch.roles {
        actor.may_grant(roles)?;
    }
    // The actor is an admin who cannot act on themselves, or a service that
    // cannot act on admins, so no change here can remove the last admin.
    // (Two admins demoting each other at once could; `latchkey users create
    // --role admin` recovers.)
    let before = target(state, actor, id).await?;
    let now = state.now();
    let email = patch.email.map(|e| e.map(|e| e.as_str().to_owned()));
    let roles = patch.roles.as_deref().map(roles_to_column);
    let newly_disabled = patch.disabled == Some(true) && !before.disabled;
    // Roles are in every access token: a change ends the user's sessions so
    // new tokens carry it.
    let roles_changed = roles.as_ref().is_some_and(|r| *r != roles_to_column(&before.roles));
    let why = if newly_disabled {
        Some("disabled")
    } else if roles_changed {
        Some("roles_changed")
    } else {
        None
    };
    // The change and its cut-off commit together, or neither does.
    let txn = state.db.begin().await.map_err(Internal::from)?;
    let ended = match why {
        Some(why) => cut_off::user(&txn, state.reach(now), id, why).await?,
        None => 0,
    };
    let user: User = users::repo::update_profile(&txn, id, email, roles, patch.disabled, now)
        .await?
        .ok_or(AdminError::UserNotFound)?
        .into();
    txn.commit().await.map_err(Internal::from)?;
    crate::revocation::feed::publish(&state.db).await;
    let event = actor
        .stamp(Event::new(EventKind::UserUpdated))
        .subject(id)
        .detail("email_changed", user.email != before.email)
        .detail("roles", user.role_names())
        .detail("disabled", user.disabled)
        .detail("families_ended", ended);
    audit::record(&state.db, now, origin, event).await;
    Ok(user)
}

/// Set a new password and end every session of the user.
pub async fn reset_password(
    state: &AppState,
    origin: &Origin,
    actor: &Actor,
    id: Uuid,
    password: &Password,
) -> Result<u64, AdminError> {
    if actor.user_id() == Some(id) {
        // A stolen admin token must not become a permanent takeover.
        return Err(AdminError::SelfAction("an admin cannot reset their own password here"));
    }
    target(state, actor, id).await?;
    let hash = state.hasher.hash(password).await?;
    let now = state.now();
    let txn = state.db.begin().await.map_err(Internal::from)?;
    users::repo::set_new_password(&txn, id, hash, now).await?;
    // The password is set: an open invitation must not replace it later.
    invitation::withdraw_for_user(&txn, id).await?;
    let ended = cut_off::user(&txn, state.reach(now), id, "password_reset").await?;
    txn.commit().await.map_err(Internal::from)?;
    crate::revocation::feed::publish(&state.db).await;
    audit::record(
        &state.db,
        now,
        origin,
        actor.stamp(Event::new(EventKind::PasswordReset)).subject(id).detail("families_ended", ended),
    )
    .await;
    Ok(ended)
}

/// Delete a user; everything they were issued stops working.
pub async fn delete_user(
    state: &AppState,
    origin: &Origin,
    actor: &Actor,
    id: Uuid,
) -> Result<(), AdminError> {
    if actor.user_id() == Some(id) {
        return Err(AdminError::SelfAction("an admin cannot delete themselves"));
    }
    target(state, actor, id).await?;
    let now = state.now();
    let txn = state.db.begin().await.map_err(Internal::from)?;
    cut_off::user_deleted(&txn, state.reach(now), id).await?;
    if !users::repo::delete(&txn, id).await? {
        return Err(AdminError::UserNotFound);
    }
    txn.commit().await.map_err(Internal::from)?;
    crate::revocation::feed::publish(&state.db).await;
    audit::record(&state.db, now, origin, actor.stamp(Event::new(EventKind::UserDeleted)).subject(id)).await;
    Ok(())
}

/// A user's live sessions, newest first.
pub async fn sessions_of(state: &AppState, user_id: Uuid) -> Result<Vec<Family>, Internal> {
    let now = state.now();
    Ok(refresh::repo::live_for_user(&state.db, user_id, now, state.families.idle_timeout)
        .await?
        .into_iter()
        .map(Family::from)
        .collect())
}

/// End one session of a user, as an admin or a user-management service.
pub async fn end_user_session(
    state: &AppState,
    origin: &Origin,
    actor: &Actor,
    user_id: Uuid,
    family_id: Uuid,
) -> Result<(), AdminError> {
    target(state, actor, user_id).await?;
    end_session(state, origin, actor.stamp(Event::new(EventKind::FamilyRevoked)), user_id, family_id).await
}

/// A user ends one of their own sessions.
pub async fn end_own_session(
    state: &AppState,
    origin: &Origin,
    user_id: Uuid,
    family_id: Uuid,
) -> Result<(), AdminError> {
    end_session(state, origin, Event::new(EventKind::FamilyRevoked).actor(user_id), user_id, family_id).await
}

async fn end_session(
    state: &AppState,
    origin: &Origin,
    event: Event,
    user_id: Uuid,
    family_id: Uuid,
) -> Result<(), AdminError> {
    let family = refresh::repo::by_id(&state.db, family_id).await?.filter(|f| f.user_id == user_id);
    if family.is_none() {
        return Err(AdminError::SessionNotFound);
    }
    let now = state.now();
    if !cut_off::session(&state.db, state.reach(now), family_id, refresh::reason::REVOKED).await? {
        return Err(AdminError::SessionNotFound);
    }
    let event = event.subject(user_id).detail("family_id", family_id.to_string());
    audit::record(&state.db, now, origin, event).await;
    Ok(())
}

/// Bulk revocation criteria, as given.
#[derive(Clone, Debug, Default)]
pub struct BulkCriteria {
    pub user_id: Option<Uuid>,
    pub client_id: Option<String>,
    pub ip_prefix: Option<ipnet::IpNet>,
    pub user_agent_contains: Option<String>,
    pub issued_before: Option<DateTime<Utc>>,
    pub issued_after: Option<DateTime<Utc>>,
    /// Required to end every session when no other criterion is given.
    pub all: bool,
}

/// The 16-byte range a CIDR block covers (IPv4 mapped into IPv6).
pub fn ip_range(net: ipnet::IpNet) -> (Vec<u8>, Vec<u8>) {
    (refresh::ip_bytes(net.network()), refresh::ip_bytes(net.broadcast()))
}

/// End every session matching the criteria and deny their access tokens
/// (one `sid` entry each, written set-based); returns how many ended. With
/// a `user_id`, the user's browser sessions and every access token of
/// theirs end too.
pub async fn bulk_revoke(
    state: &AppState,
    origin: &Origin,
    actor: Uuid,
    criteria: BulkCriteria,
) -> Result<u64, AdminError> {
    let filter = refresh::repo::FamilyFilter {
        user_id: criteria.user_id,
        client_id: criteria.client_id.clone(),
        ip_range: criteria.ip_prefix.map(ip_range),
        user_agent_contains: criteria.user_agent_contains.clone().filter(|s| !s.is_empty()),
        created_before: criteria.issued_before,
        created_after: criteria.issued_after,
        except: None,
    };
    let has_criterion = filter.user_id.is_some()
        || filter.client_id.is_some()
        || filter.ip_range.is_some()
        || filter.user_agent_contains.is_some()
        || filter.created_before.is_some()
        || filter.created_after.is_some();
    if !has_criterion && !criteria.all {
        return Err(AdminError::Invalid(
            "give at least one criterion, or all: true to end every session".into(),
        ));
    }
    let now = state.now();
    let ended = cut_off::matching(&state.db, state.reach(now), &filter, "bulk_revocation").await?;
    let event = Event::new(EventKind::SessionsRevoked)
        .actor(actor)
        .detail("ended", ended)
        .detail("user_id", criteria.user_id.map(|u| u.to_string()))
        .detail("client_id", criteria.client_id)
        .detail("ip_prefix", criteria.ip_prefix.map(|n| n.to_string()))
        .detail("user_agent_contains", criteria.user_agent_contains)
        .detail("issued_before", criteria.issued_before.map(|t| t.to_rfc3339()))
        .detail("issued_after", criteria.issued_after.map(|t| t.to_rfc3339()));
    audit::record(&state.db, now, origin, event).await;
    Ok(ended)
}

/// Change a client's metadata (and maybe disable it). Returns the client and
/// a secret when the change made it confidential.
pub async fn update_client(
    state: &AppState,
    origin: &Origin,
    actor: Uuid,
    client_id: &str,
    meta: clients::ClientMetadata,
    disabled: Option<bool>,
) -> Result<(clients::OAuthClient, Option<String>), ClientError> {
    let now = state.now();
    let current = clients::find(&state.db, client_id).await?.ok_or(ClientError::NotFound)?;
    let algs = clients::id_token_algs(state.settings.signing_alg);
    // A disabled client keeps nothing it was issued; the change and the
    // cut-off commit together.
    let txn = state.db.begin().await.map_err(Internal::from)?;
    if disabled == Some(true) && !current.disabled {
        cut_off::client(&txn, state.reach(now), client_id, "client_disabled").await?;
    }
    let (client, secret) = clients::update(&txn, now, client_id, meta, disabled, &algs).await?;
    txn.commit().await.map_err(Internal::from)?;
    crate::revocation::feed::publish(&state.db).await;
    let changes = clients::OAuthClient::changes(&current, &client);
    audit::record(
        &state.db,
        now,
        origin,
        Event::new(EventKind::ClientUpdated).actor(actor).client(client_id).detail("changes", changes),
    )
    .await;
    Ok((client, secret))
}

/// Delete a client and take away everything it was issued.
pub async fn delete_client(
    state: &AppState,
    origin: &Origin,
    actor: Uuid,
    client_id: &str,
) -> Result<u64, ClientError> {
    let now = state.now();
    clients::find(&state.db, client_id).await?.ok_or(ClientError::NotFound)?;
    let txn = state.db.begin().await.map_err(Internal::from)?;
    let ended = cut_off::client(&txn, state.reach(now), client_id, "client_deleted").await?;
    clients::delete(&txn, client_id).await?;
    txn.commit().await.map_err(Internal::from)?;
    crate::revocation::feed::publish(&state.db).await;
    audit::record(
        &state.db,
        now,
        origin,
        Event::new(EventKind::ClientDeleted).actor(actor).client(client_id).detail("families_ended", ended),
    )
    .await;
    Ok(ended)
}
