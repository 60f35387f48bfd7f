//! The audit log: who did what security-relevant thing, from where.
//!
//! Events are built from typed values only (ids, reasons, counts), never from
//! request bodies, so no password or token can be written here. Writing an
//! event never fails the action it records: a failure is logged instead,
//! because refusing a logout over a full audit table would be worse.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ConnectionTrait};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::entities::audit_events;
use crate::refresh::Origin;

/// Kinds of events, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    UserRegistered,
    UserCreated,
    InvitationAccepted,
    LoginSucceeded,
    LoginFailed,
    Logout,
    RefreshReuseDetected,
    /// A refresh came from another network or user-agent family than the last.
    RefreshContextChanged,
    FamilyRevoked,
    ClientCreated,
    ClientUpdated,
    ClientDeleted,
    ClientSecretRotated,
    KeyRotated,
    UserBanned,
    UserUnbanned,
    UserUpdated,
    UserDeleted,
    PasswordReset,
    PasswordChanged,
    SessionsRevoked,
    LoginThrottled,
    /// A TOTP app, passkey or set of recovery codes was added.
    MfaFactorAdded,
    /// A factor was removed by its user.
    MfaFactorRemoved,
    /// An admin removed every factor of a user.
    MfaFactorsReset,
    /// A second-factor answer was wrong (code, recovery code, assertion).
    MfaFailed,
    /// Too many wrong second-factor answers: the user's second step is locked.
    MfaLockedOut,
}

impl EventKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::UserRegistered => "user_registered",
            EventKind::UserCreated => "user_created",
            EventKind::InvitationAccepted => "invitation_accepted",
            EventKind::LoginSucceeded => "login_succeeded",
            EventKind::LoginFailed => "login_failed",
            EventKind::Logout => "logout",
            EventKind::RefreshReuseDetected => "refresh_reuse_detected",
            EventKind::RefreshContextChanged => "refresh_context_changed",
            EventKind::FamilyRevoked => "family_revoked",
            EventKind::ClientCreated => "client_created",
            EventKind::ClientUpdated => "client_updated",
            EventKind::ClientDeleted => "client_deleted",
            EventKind::ClientSecretRotated => "client_secret_rotated",
            EventKind::KeyRotated => "key_rotated",
            EventKind::UserBanned => "user_banned",
            EventKind::UserUnbanned => "user_unbanned",
            EventKind::UserUpdated => "user_updated",
            EventKind::UserDeleted => "user_deleted",
            EventKind::PasswordReset => "password_reset",
            EventKind::PasswordChanged => "password_changed",
            EventKind::SessionsRevoked => "sessions_revoked",
            EventKind::LoginThrottled => "login_throttled",
            EventKind::MfaFactorAdded => "mfa_factor_added",
            EventKind::MfaFactorRemoved => "mfa_factor_removed",
            EventKind::MfaFactorsReset => "mfa_factors_reset",
            EventKind::MfaFailed => "mfa_failed",
            EventKind::MfaLockedOut => "mfa_locked_out",
        }
    }
}

/// One event to record.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: EventKind,
    pub actor_id: Option<String>,
    pub subject_id: Option<String>,
    pub client_id: Option<String>,
    pub details: Map<String, Value>,
}

impl Event {
    pub fn new(kind: EventKind) -> Self {
        Event { kind, actor_id: None, subject_id: None, client_id: None, details: Map::new() }
    }

    pub fn subject(mut self, id: impl ToString) -> Self {
        self.subject_id = Some(id.to_string());
        self
    }

    pub fn actor(mut self, id: impl ToString) -> Self {
        self.actor_id = Some(id.to_string());
        self
    }

    pub fn client(mut self, id: impl ToString) -> Self {
        self.client_id = Some(id.to_string());
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }
}

/// Record one `KeyRotated` event per key a rotation or reload created.
pub async fn keys_created(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    origin: &Origin,
    actor: impl ToString,
    keys: &[crate::keys::RotationPlan],
) {
    let actor = actor.to_string();
    for key in keys {
        let event = Event::new(EventKind::KeyRotated)
            .actor(&actor)
            .detail("kid", key.kid.clone())
            .detail("purpose", key.purpose.as_str())
            .detail("activates_at", key.activates_at.to_rfc3339());
        record(db, now, origin, event).await;
    }
}

pub async fn record(db: &impl ConnectionTrait, now: DateTime<Utc>, origin: &Origin, event: Event) {
    let row = audit_events::Model {
        id: Uuid::now_v7(),
        occurred_at: now,
        kind: event.kind.as_str().to_owned(),
        actor_id: event.actor_id,
        subject_id: event.subject_id,
        client_id: event.client_id,
        ip: origin.ip.map(|ip| ip.to_string()),
        user_agent: origin.user_agent.as_ref().map(|ua| ua.chars().take(512).collect()),
        details: Value::Object(event.details).to_string(),
    };
    let active: audit_events::ActiveModel = row.into();
    if let Err(e) = active.insert(db).await {
        tracing::error!(error = %e, kind = event.kind.as_str(), "failed to write audit event");
    }
}

/// Filters for listing events; all optional.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub kind: Option<String>,
    pub actor_id: Option<String>,
    pub subject_id: Option<String>,
    pub client_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only events older than this id (the previous page's last).
    pub before: Option<Uuid>,
}

/// Newest first, at most `limit`.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &AuditFilter,
    limit: u64,
) -> crate::error::Result<Vec<audit_events::Model>> {
    use audit_events::Column;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
    let mut query = audit_events::Entity::find().order_by_desc(Column::Id).limit(limit);
    if let Some(v) = &filter.kind {
        query = query.filter(Column::Kind.eq(v.as_str()));
    }
    if let Some(v) = &filter.actor_id {
        query = query.filter(Column::ActorId.eq(v.as_str()));
    }
    if let Some(v) = &filter.subject_id {
        query = query.filter(Column::SubjectId.eq(v.as_str()));
    }
    if let Some(v) = &filter.client_id {
        query = query.filter(Column::ClientId.eq(v.as_str()));
    }
    if let Some(v) = filter.since {
        query = query.filter(Column::OccurredAt.gte(v));
    }
    if let Some(v) = filter.until {
        query = query.filter(Column::OccurredAt.lt(v));
    }
    if let Some(v) = filter.before {
        query = query.filter(Column::Id.lt(v));
    }
    Ok(query.all(db).await?)
}
