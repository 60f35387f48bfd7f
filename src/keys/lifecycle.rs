//! The key lifecycle as a pure function of the key rows and the time.
//!
//! Within one chain (a `purpose`), ordered by generation and ignoring keys
//! retired explicitly:
//! - the *current* key is the newest whose `activates_at` has passed;
//! - keys activating later are *next* (published, not signing);
//! - an older key is *previous* from its successor's activation until every
//!   token it signed has expired (plus a grace for verifier leeway), then
//!   *retired*.
//!
//! Replicas evaluate the same rows at (about) the same time and so agree on
//! the current key with no coordination and no restart.

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::SigningAlg;

/// A chain of keys rotated together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyPurpose {
    /// Signs access tokens, with `LATCHKEY_SIGNING_ALG`.
    Access,
    /// Signs ID tokens with RS256, which OIDC Discovery requires to be supported.
    IdToken,
}

impl KeyPurpose {
    pub const ALL: [KeyPurpose; 2] = [KeyPurpose::Access, KeyPurpose::IdToken];

    pub const fn as_str(self) -> &'static str {
        match self {
            KeyPurpose::Access => "access",
            KeyPurpose::IdToken => "id_token",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "access" => Some(KeyPurpose::Access),
            "id_token" => Some(KeyPurpose::IdToken),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    Next,
    Current,
    Previous,
    Retired,
}

impl KeyState {
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Current => "current",
            KeyState::Previous => "previous",
            KeyState::Retired => "retired",
        }
    }

    /// Published in the JWKS (and accepted for verification).
    pub fn is_published(self) -> bool {
        !matches!(self, KeyState::Retired)
    }
}

/// What the lifecycle needs to know about a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMeta {
    pub kid: String,
    pub purpose: KeyPurpose,
    pub generation: i64,
    pub alg: SigningAlg,
    pub created_at: DateTime<Utc>,
    pub activates_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
}

/// A key's state at some instant, with the instant it stops being published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyStatus {
    pub state: KeyState,
    /// For a previous key: when it retires. `None` otherwise.
    pub retires_at: Option<DateTime<Utc>>,
}

/// Evaluate every key of every chain at `now`. `keep_published_for` is the
/// longest lifetime of a token the chain signs plus verifier leeway.
pub fn evaluate(keys: &[KeyMeta], now: DateTime<Utc>, keep_published_for: TimeDelta) -> Vec<KeyStatus> {
    keys.iter().map(|key| status_of(key, keys, now, keep_published_for)).collect()
}

pub(crate) fn status_of(key: &KeyMeta, all: &[KeyMeta], now: DateTime<Utc>, keep: TimeDelta) -> KeyStatus {
    let retired = KeyStatus { state: KeyState::Retired, retires_at: None };
    if key.retired_at.is_some_and(|r| r <= now) {
        return retired;
    }
    if key.activates_at > now {
        return KeyStatus { state: KeyState::Next, retires_at: None };
    }
    // The successor: the oldest later key of the chain that has activated.
    let successor = all
        .iter()
        .filter(|k| {
            k.purpose == key.purpose
                && k.generation > key.generation
                && k.activates_at <= now
                && k.retired_at.is_none_or(|r| r > k.activates_at)
        })
        .min_by_key(|k| k.generation);
    match successor {
        None => KeyStatus { state: KeyState::Current, retires_at: None },
        Some(s) => {
            let retires_at = s.activates_at + keep;
            if retires_at <= now {
                retired
            } else {
                KeyStatus { state: KeyState::Previous, retires_at: Some(retires_at) }
            }
        }
    }
}

/// The next instant at which the published key set changes or is planned to:
/// a key activating (a new next key follows it), a previous key retiring.
/// `None` when nothing is planned.
pub fn next_planned_change(
    keys: &[KeyMeta],
    statuses: &[KeyStatus],
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    keys.iter()
        .zip(statuses)
        .filter_map(|(k, s)| match s.state {
            KeyState::Next => Some(k.activates_at),
            KeyState::Previous => s.retires_at,
            KeyState::Current => k.retired_at,
            KeyState::Retired => None,
        })
        .filter(|t| *t > now)
        .min()
}

/// What a chain needs so it always has one published next key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainAction {
    /// Nothing to do.
    None,
    /// Create a key of `generation` activating at `activates_at`.
    Create { generation: i64, activates_at: DateTime<Utc> },
}

/// Decide whether a chain needs a new key.
///
/// - On a fresh install (no key at all) an empty chain gets a key that signs
///   at once: no JWKS has ever been served, so none can be cached. A chain
///   added to a running deployment waits for the publication lead like any
///   new key.
/// - Otherwise, when no next key exists, create one that activates one
///   rotation interval after the current one, and never sooner than
///   `publish_lead` from now (so every cache has seen it before it signs).
/// - When the current key has the wrong algorithm (the operator switched
///   `LATCHKEY_SIGNING_ALG`), the new key activates as soon as that is safe.
pub fn plan_chain(
    chain: &[(&KeyMeta, &KeyStatus)],
    fresh_install: bool,
    max_generation: i64,
    desired_alg: SigningAlg,
    now: DateTime<Utc>,
    rotation_interval: TimeDelta,
    publish_lead: TimeDelta,
) -> ChainAction {
    let live: Vec<_> = chain.iter().filter(|(_, s)| s.state != KeyState::Retired).collect();
    if live.is_empty() {
        let activates_at = if fresh_install { now } else { now + publish_lead };
        return ChainAction::Create { generation: max_generation + 1, activates_at };
    }
    let has_next = live.iter().any(|(k, s)| s.state == KeyState::Next && k.alg == desired_alg);
    if has_next {
        return ChainAction::None;
    }
    let earliest = now + publish_lead;
    let activates_at = match live.iter().find(|(_, s)| s.state == KeyState::Current) {
        Some((current, _)) if current.alg == desired_alg => {
            (current.activates_at + rotation_interval).max(earliest)
        }
        _ => earliest,
    };
    ChainAction::Create { generation: max_generation + 1, activates_at }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn key(generation: i64, created: i64, activates: i64) -> KeyMeta {
        KeyMeta {
            kid: format!("k{generation}"),
            purpose: KeyPurpose::Access,
            generation,
            alg: SigningAlg::Es256,
            created_at: t(created),
            activates_at: t(activates),
            retired_at: None,
        }
    }

    fn states(keys: &[KeyMeta], now: i64) -> Vec<KeyState> {
        evaluate(keys, t(now), TimeDelta::seconds(100)).into_iter().map(|s| s.state).collect()
    }

    #[test]
    fn a_key_moves_through_next_current_previous_retired() {
        let keys = vec![key(1, 0, 0), key(2, 10, 1000)];
        assert_eq!(states(&keys, 500), [KeyState::Current, KeyState::Next]);
        assert_eq!(states(&keys, 1000), [KeyState::Previous, KeyState::Current]);
        assert_eq!(states(&keys, 1099), [KeyState::Previous, KeyState::Current]);
        assert_eq!(states(&keys, 1100), [KeyState::Retired, KeyState::Current]);
    }

    #[test]
    fn explicit_retirement_wins_and_a_never_activated_key_is_skipped() {
        let mut keys = vec![key(1, 0, 0), key(2, 10, 1000), key(3, 20, 2000)];
        keys[1].retired_at = Some(t(20));
        // Key 2 was retired before it activated, so key 1 stays current until key 3.
        assert_eq!(states(&keys, 1500), [KeyState::Current, KeyState::Retired, KeyState::Next]);
        assert_eq!(states(&keys, 2050), [KeyState::Previous, KeyState::Retired, KeyState::Current]);
    }

    #[test]
    fn planned_changes_include_activation_and_retirement() {
        let keys = vec![key(1, 0, 0), key(2, 10, 1000), key(3, 1000, 5000)];
        let st = evaluate(&keys, t(1010), TimeDelta::seconds(100));
        assert_eq!(next_planned_change(&keys, &st, t(1010)), Some(t(1100)));
        let st = evaluate(&keys, t(1200), TimeDelta::seconds(100));
        assert_eq!(next_planned_change(&keys, &st, t(1200)), Some(t(5000)));
    }

    fn plan(keys: &[KeyMeta], now: i64, alg: SigningAlg) -> ChainAction {
        let st = evaluate(keys, t(now), TimeDelta::seconds(100));
        let chain: Vec<_> = keys.iter().zip(st.iter()).collect();
        let max = keys.iter().map(|k| k.generation).max().unwrap_or(0);
        plan_chain(
            &chain,
            keys.is_empty(),
            max,
            alg,
            t(now),
            TimeDelta::seconds(10_000),
            TimeDelta::seconds(400),
        )
    }

    #[test]
    fn an_empty_chain_signs_at_once_only_on_a_fresh_install() {
        assert_eq!(
            plan(&[], 5, SigningAlg::Es256),
            ChainAction::Create { generation: 1, activates_at: t(5) }
        );
        let action = plan_chain(
            &[],
            false,
            0,
            SigningAlg::Es256,
            t(5),
            TimeDelta::seconds(10_000),
            TimeDelta::seconds(400),
        );
        assert_eq!(action, ChainAction::Create { generation: 1, activates_at: t(405) });
    }

    #[test]
    fn a_chain_without_next_key_plans_one_per_interval_but_never_before_the_lead() {
        let keys = vec![key(1, 0, 0)];
        assert_eq!(
            plan(&keys, 5, SigningAlg::Es256),
            ChainAction::Create { generation: 2, activates_at: t(10_000) }
        );
        // Long overdue: still published for the full lead first.
        assert_eq!(
            plan(&keys, 20_000, SigningAlg::Es256),
            ChainAction::Create { generation: 2, activates_at: t(20_400) }
        );
        let with_next = vec![key(1, 0, 0), key(2, 5, 10_000)];
        assert_eq!(plan(&with_next, 6, SigningAlg::Es256), ChainAction::None);
    }

    #[test]
    fn switching_the_algorithm_rotates_as_soon_as_it_is_safe() {
        let keys = vec![key(1, 0, 0), key(2, 5, 10_000)];
        assert_eq!(
            plan(&keys, 6, SigningAlg::EdDsa),
            ChainAction::Create { generation: 3, activates_at: t(406) }
        );
    }
}
