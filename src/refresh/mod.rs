//! Refresh-token families: rotation, reuse detection, the grace window.
//!
//! RFC 9700 §4.14.2 asks an authorization server to rotate refresh tokens and
//! to revoke the whole grant when an old one is replayed. latchkey does so
//! with one row per family and a counter (see [`token`] for the format):
//!
//! | presented counter `c`, family at `n`          | outcome                        |
//! |-----------------------------------------------|--------------------------------|
//! | MAC invalid, family unknown, `c > n`          | refused, nothing changes       |
//! | family revoked / past lifetime / idle too long | refused, nothing changes       |
//! | `c = n`, conditional update wins              | rotated: token for `n + 1`     |
//! | `c = n − 1`, rotated less than grace ago      | the same current token again   |
//! | anything older, or `n − 1` after the grace    | reuse: the family is revoked   |
//!
//! Each refresh that rotates or replays also compares where it comes from
//! with where the family was last refreshed from ([`context`]): another
//! network block or another user-agent family is reported in
//! [`Refreshed::context_change`] (the caller audits it) or, under the
//! `end_session` policy, refused as [`RefreshError::ContextChanged`] before
//! anything changes (the caller ends the family). The context comes from the
//! row already read and is written by the rotation's own `UPDATE`, so an
//! unchanged context costs no statement.
//!
//! The grace row is what keeps two tabs (or a retried request) from logging
//! the user out: both present `n`; one rotates, the other loses the update,
//! re-reads, finds itself at `n − 1` within the window and receives the very
//! token the winner got.

pub mod context;
pub mod repo;
pub mod token;

use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::clock::delta;
use crate::config::Settings;
use crate::entities::refresh_families;
use crate::error::Internal;
use crate::scope::ScopeSet;
pub use context::{ContextChange, ContextPolicy, ContextRules};
pub use token::{RefreshToken, RefreshTokenCodec};

/// Why a family was ended, as stored and audited.
pub mod reason {
    pub const LOGOUT: &str = "logout";
    pub const REUSE_DETECTED: &str = "reuse_detected";
    pub const SESSION_LIMIT: &str = "session_limit";
    pub const ACCOUNT_UNAVAILABLE: &str = "account_unavailable";
    pub const REVOKED: &str = "revoked";
    pub const SCOPE_WITHDRAWN: &str = "scope_withdrawn";
    pub const CONTEXT_CHANGED: &str = "context_changed";
    pub const MFA_REQUIRED: &str = "mfa_required";
}

/// Lifetimes and limits of families.
#[derive(Clone, Debug)]
pub struct FamilyPolicy {
    pub lifetime: TimeDelta,
    pub idle_timeout: TimeDelta,
    pub grace: TimeDelta,
    pub max_per_user: u32,
    /// How a refresh from another network or device is noticed and treated.
    pub context: ContextRules,
}

impl FamilyPolicy {
    pub fn from_settings(s: &Settings) -> Self {
        FamilyPolicy {
            lifetime: delta(s.refresh_token_ttl),
            idle_timeout: delta(s.refresh_idle_timeout),
            grace: delta(s.refresh_grace_period),
            max_per_user: s.max_sessions_per_user,
            context: ContextRules {
                v4_prefix: s.refresh_context_ipv4_prefix,
                v6_prefix: s.refresh_context_ipv6_prefix,
                policy: s.refresh_context_policy,
            },
        }
    }
}

/// A refresh family (a "session" to users).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Family {
    pub id: Uuid,
    pub user_id: Uuid,
    pub client_id: String,
    pub scope: String,
    pub counter: i64,
    pub auth_time: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub last_rotated_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Where it was last refreshed from; `None` before the first refresh.
    pub last_ip: Option<String>,
    pub last_user_agent: Option<String>,
    /// How the session was signed in (RFC 8176 values).
    pub amr: crate::mfa::Amr,
}

impl From<refresh_families::Model> for Family {
    fn from(m: refresh_families::Model) -> Self {
        Family {
            id: m.id,
            user_id: m.user_id,
            client_id: m.client_id,
            scope: m.scope,
            counter: m.counter,
            auth_time: m.auth_time,
            created_at: m.created_at,
            last_used_at: m.last_used_at,
            last_rotated_at: m.last_rotated_at,
            expires_at: m.expires_at,
            revoked_at: m.revoked_at,
            revoked_reason: m.revoked_reason,
            ip: m.ip,
            user_agent: m.user_agent,
            last_ip: m.last_ip,
            last_user_agent: m.last_user_agent,
            amr: crate::mfa::Amr::from_stored(m.amr.as_deref()),
        }
    }
}

impl Family {
    /// Live at `now` under `policy`: not revoked, within its lifetime, not idle too long.
    pub fn is_live(&self, policy: &FamilyPolicy, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now && self.last_used_at + policy.idle_timeout > now
    }

    /// Where the family was last used from: its last refresh, or its login
    /// until the first refresh (and for rows older than the `last_*` columns).
    /// What a rotation at `now` from `from` wrote to the row (see
    /// [`repo::advance`] and [`repo::rotate`]), applied to this copy.
    fn record_rotation(&mut self, now: DateTime<Utc>, from: Origin) {
        self.counter += 1;
        self.last_rotated_at = now;
        self.last_used_at = now;
        if let Some(ip) = from.ip {
            self.last_ip = Some(ip.to_string());
        }
        if let Some(ua) = from.user_agent {
            self.last_user_agent = Some(ua);
        }
    }

    pub fn last_context(&self) -> Origin {
        Origin {
            ip: self.last_ip.as_deref().or(self.ip.as_deref()).and_then(|ip| ip.parse().ok()),
            user_agent: self.last_user_agent.clone().or_else(|| self.user_agent.clone()),
        }
    }
}

/// Where a request comes from: where a family was started from, or refreshed from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// What starts a family.
#[derive(Clone, Debug)]
pub struct NewFamily {
    /// Usually a fresh UUIDv7; the authorization-code grant reserves it first.
    pub id: Uuid,
    pub user_id: Uuid,
    pub client_id: String,
    pub scope: String,
    pub auth_time: DateTime<Utc>,
    pub amr: crate::mfa::Amr,
    pub origin: Origin,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Not a token of ours, not this client's, or from a future counter.
    #[error("the refresh token is invalid")]
    Invalid,
    #[error("the refresh token has been revoked")]
    Revoked,
    #[error("the refresh token has expired")]
    Expired,
    /// The request asked for scopes the family was never granted (RFC 6749 §6).
    #[error("the requested scope exceeds the scope originally granted")]
    ScopeWidened,
    /// An old token was replayed: the family has just been revoked.
    #[error("the refresh token was already used; the session has been ended")]
    Reused { family_id: Uuid, user_id: Uuid },
    /// The refresh came from another network or device and the policy is
    /// `end_session`: nothing changed yet; the caller ends the family.
    #[error("the session was used from another network or device and has been ended; sign in again")]
    ContextChanged { family_id: Uuid, user_id: Uuid, change: Box<ContextChange> },
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// How a refresh succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// This call advanced the family.
    Rotated,
    /// A concurrent or retried call had already advanced it; same token returned.
    GraceReplay,
}

/// The family after a refresh, with its current token.
#[derive(Clone, Debug)]
pub struct Refreshed {
    pub family: Family,
    pub token: String,
    pub rotation: Rotation,
    /// The family's user, when the rotation read it in the same statement
    /// (the one-statement path on PostgreSQL); `None`: read it.
    pub user: Option<crate::users::User>,
    /// The refresh came from another network or device than the last one
    /// (under the `audit` policy; `end_session` refuses instead).
    pub context_change: Option<ContextChange>,
}

/// The 16-byte form of an address (IPv4 mapped into IPv6), so one index
/// serves CIDR range filters for both families.
pub fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// User agents are stored for display; keep them short and printable.
pub(crate) fn clean_user_agent(ua: Option<&str>) -> Option<String> {
    let cleaned: String = ua?.chars().filter(|c| !c.is_control()).take(512).collect();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// Start a family and return it with its first token and the ids of the
/// user's oldest live families beyond the per-user cap, which the caller
/// ends ([`crate::revocation::cut_off::sessions`]).
#[tracing::instrument(skip_all, fields(user_id = %new.user_id))]
pub async fn start(
    db: &impl ConnectionTrait,
    policy: &FamilyPolicy,
    codec: &RefreshTokenCodec,
    now: DateTime<Utc>,
    new: NewFamily,
) -> Result<(Family, String, Vec<Uuid>), Internal> {
    let row = refresh_families::Model {
        id: new.id,
        user_id: new.user_id,
        client_id: new.client_id,
        scope: new.scope,
        counter: 0,
        auth_time: new.auth_time,
        created_at: now,
        last_used_at: now,
        last_rotated_at: now,
        expires_at: now + policy.lifetime,
        revoked_at: None,
        revoked_reason: None,
        ip: new.origin.ip.map(|ip| ip.to_string()),
        ip_bin: new.origin.ip.map(ip_bytes),
        user_agent: clean_user_agent(new.origin.user_agent.as_deref()),
        last_ip: None,
        last_user_agent: None,
        amr: Some(new.amr.to_stored()),
    };
    let family: Family = repo::insert(db, row).await?.into();
    let overflow =
        repo::overflow_for_user(db, family.user_id, policy.max_per_user as usize, now, policy.idle_timeout)
            .await?;
    let token = codec.encode(family.id, family.counter);
    tracing::info!(family_id = %family.id, "refresh family started");
    Ok((family, token, overflow))
}

/// Refresh with `presented`, from `origin`. `client_id` is the client the
/// caller authenticated as: a family is only usable by the client it was
/// issued to. A `narrow` scope is checked against the family before anything
/// changes.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(skip_all, fields(family_id))]
pub async fn refresh(
    db: &impl ConnectionTrait,
    policy: &FamilyPolicy,
    codec: &RefreshTokenCodec,
    now: DateTime<Utc>,
    presented: &str,
    client_id: &str,
    narrow: Option<&ScopeSet>,
    origin: &Origin,
) -> Result<Refreshed, RefreshError> {
    let RefreshToken { family_id, counter } = codec.decode(presented).ok_or(RefreshError::Invalid)?;
    let current = Origin { ip: origin.ip, user_agent: clean_user_agent(origin.user_agent.as_deref()) };
    tracing::Span::current().record("family_id", tracing::field::display(family_id));
    // The common case, on PostgreSQL: one statement rotates the family and
    // returns it as it was, with its user. Anything else (SQLite, a
    // narrowed scope, a lost race, reuse, an ended or expired family) takes
    // the path below, which reads the family first.
    if narrow.is_none() && db.get_database_backend() == sea_orm::DbBackend::Postgres {
        if let Some(rotated) =
            repo::rotate(db, family_id, counter, client_id, now, policy.idle_timeout, &current).await?
        {
            let mut family: Family = rotated.before.into();
            // Compared with where it was last refreshed from, as below. The
            // family has moved on already: under `end_session` the caller
            // ends it, so refusing after the rotation ends the same way.
            let context_change = context_check(&family, &current, &policy.context)?;
            family.record_rotation(now, current);
            let token = codec.encode(family_id, family.counter);
            let user = Some(crate::users::User::from(rotated.user));
            return Ok(Refreshed { family, token, rotation: Rotation::Rotated, context_change, user });
        }
    }
    let mut family: Family = repo::by_id(db, family_id).await?.ok_or(RefreshError::Invalid)?.into();
    if family.client_id != client_id {
        return Err(RefreshError::Invalid);
    }
    check_usable(&family, policy, now)?;
    if narrow.is_some_and(|n| !n.is_subset(&ScopeSet::from_stored(&family.scope))) {
        return Err(RefreshError::ScopeWidened);
    }
    if counter > family.counter {
        // Only this server can mint a MAC, so this is a restored backup or a bug: refuse, change nothing.
        tracing::warn!(%family_id, "refresh token from a future counter refused");
        return Err(RefreshError::Invalid);
    }
    if counter == family.counter {
        let context_change = context_check(&family, &current, &policy.context)?;
        if repo::advance(db, family_id, counter, now, &current).await? {
            family.record_rotation(now, current);
            let token = codec.encode(family_id, family.counter);
            return Ok(Refreshed { family, token, rotation: Rotation::Rotated, context_change, user: None });
        }
        // Lost the race (or the family was revoked meanwhile): look again.
        family = repo::by_id(db, family_id).await?.ok_or(RefreshError::Invalid)?.into();
        check_usable(&family, policy, now)?;
    }
    if counter + 1 == family.counter && now - family.last_rotated_at <= policy.grace {
        // Compared with the winner's context, which the row now holds: a
        // second tab of the same browser is no change (and is not audited
        // twice); the same token replayed from elsewhere is.
        let context_change = context_check(&family, &current, &policy.context)?;
        let token = codec.encode(family_id, family.counter);
        return Ok(Refreshed { family, token, rotation: Rotation::GraceReplay, context_change, user: None });
    }
    // The caller ends the family ([`crate::revocation::cut_off::session`]).
    tracing::warn!(%family_id, user_id = %family.user_id, presented = counter, current = family.counter, "refresh token reuse detected");
    Err(RefreshError::Reused { family_id, user_id: family.user_id })
}

/// The change from the family's last context, if any; an error instead
/// when the policy ends sessions on a change.
fn context_check(
    family: &Family,
    current: &Origin,
    rules: &ContextRules,
) -> Result<Option<ContextChange>, RefreshError> {
    let change = context::compare(&family.last_context(), current, rules);
    match change {
        Some(change) if rules.policy == ContextPolicy::EndSession => Err(RefreshError::ContextChanged {
            family_id: family.id,
            user_id: family.user_id,
            change: Box::new(change),
        }),
        other => Ok(other),
    }
}

fn check_usable(family: &Family, policy: &FamilyPolicy, now: DateTime<Utc>) -> Result<(), RefreshError> {
    if family.revoked_at.is_some() {
        return Err(RefreshError::Revoked);
    }
    if family.expires_at <= now || family.last_used_at + policy.idle_timeout <= now {
        return Err(RefreshError::Expired);
    }
    Ok(())
}

/// The family `presented` belongs to, if it was issued to `client_id`
/// (logout, RFC 7009). Any authentic token of the family counts, even an
/// old one: ending a session only takes access away.
pub async fn family_of(
    db: &impl ConnectionTrait,
    codec: &RefreshTokenCodec,
    presented: &str,
    client_id: &str,
) -> Result<Option<Family>, Internal> {
    let Some(RefreshToken { family_id, .. }) = codec.decode(presented) else {
        return Ok(None);
    };
    Ok(repo::by_id(db, family_id).await?.filter(|f| f.client_id == client_id).map(Family::from))
}
