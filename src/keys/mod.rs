//! Signing keys: generation, sealing, the lifecycle, rotation and the JWKS.
//!
//! The database is the source of truth shared by every replica; each replica
//! holds a [`KeyRing`]: the decrypted keys plus a pre-serialized JWKS, swapped
//! atomically on reload. Requests never touch the database for keys.
//!
//! - [`lifecycle`]: which key is next / current / previous / retired, as a
//!   pure function of rows and time;
//! - [`material`]: josekit key generation and loading;
//! - [`master`]: the master key, HKDF derivations and sealing;
//! - [`repo`]: queries.

pub mod lifecycle;
pub mod master;
pub mod material;
pub mod repo;

use std::sync::Arc;

use anyhow::{Context, anyhow};
use arc_swap::ArcSwap;
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use josekit::jwk::Jwk;
use josekit::jws::{JwsSigner, JwsVerifier};
use sea_orm::ConnectionTrait;

use crate::clock::delta;
use crate::config::{Settings, SigningAlg};
use crate::crypto;
use crate::entities::signing_keys;
use crate::error::{Internal, Result};
pub use lifecycle::{KeyMeta, KeyPurpose, KeyState, KeyStatus};
use master::MasterKey;

/// Verifiers may accept a token a little after `exp`; keep its key published
/// this much longer than the token lifetime.
const RETIRE_GRACE: TimeDelta = TimeDelta::minutes(5);

/// The rotation policy, from settings.
#[derive(Clone, Debug)]
pub struct KeyPolicy {
    pub access_alg: SigningAlg,
    pub rotation_interval: TimeDelta,
    pub publish_lead: TimeDelta,
    pub jwks_max_age: TimeDelta,
    pub reload_interval: TimeDelta,
    pub keep_published_for: TimeDelta,
}

impl KeyPolicy {
    pub fn from_settings(s: &Settings) -> Self {
        KeyPolicy {
            access_alg: s.signing_alg,
            rotation_interval: delta(s.key_rotation_interval),
            publish_lead: delta(s.publish_lead()),
            jwks_max_age: delta(s.jwks_max_age),
            reload_interval: delta(s.key_reload_interval),
            // ID tokens live as long as access tokens.
            keep_published_for: delta(s.access_token_ttl) + RETIRE_GRACE,
        }
    }

    /// The algorithm each chain must use.
    pub fn alg_for(&self, purpose: KeyPurpose) -> SigningAlg {
        match purpose {
            KeyPurpose::Access => self.access_alg,
            KeyPurpose::IdToken => SigningAlg::Rs256,
        }
    }
}

/// A decrypted key, ready to sign and verify.
pub struct LoadedKey {
    pub meta: KeyMeta,
    pub public_jwk: Jwk,
    /// Only next and current keys carry their private half: a previous key
    /// never signs again, so it is never unsealed.
    signer: Option<Box<dyn JwsSigner>>,
    verifier: Box<dyn JwsVerifier>,
}

impl LoadedKey {
    pub fn kid(&self) -> &str {
        &self.meta.kid
    }
    pub fn alg(&self) -> SigningAlg {
        self.meta.alg
    }
    pub fn signer(&self) -> Option<&dyn JwsSigner> {
        self.signer.as_deref()
    }
    pub fn verifier(&self) -> &dyn JwsVerifier {
        self.verifier.as_ref()
    }
}

impl std::fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedKey").field("meta", &self.meta).finish_non_exhaustive()
    }
}

/// The JWKS as served: body bytes, their ETag, and when they go stale.
#[derive(Debug)]
pub struct JwksDocument {
    pub body: Bytes,
    pub etag: String,
    /// The next planned change of the published set, if any.
    next_change: Option<DateTime<Utc>>,
    /// A chain lacks its next key: a reload is about to add one.
    awaiting_next_key: bool,
}

struct Snapshot {
    keys: Vec<Arc<LoadedKey>>,
}

/// The in-memory view of the signing keys of one replica.
pub struct KeyRing {
    policy: KeyPolicy,
    master: Arc<MasterKey>,
    snapshot: ArcSwap<Snapshot>,
    jwks: ArcSwap<JwksDocument>,
    /// The generation last signed with before its activation (warned once).
    skew_warned: std::sync::atomic::AtomicI64,
}

/// How long before its activation, by this server's clock, a key may sign
/// when no key of its chain has activated yet: the clock skew between
/// replicas latchkey tolerates. See [`KeyRing::signing_key`].
pub const CLOCK_SKEW_ALLOWANCE: TimeDelta = TimeDelta::minutes(5);

/// No key may sign for a chain at this instant.
#[derive(Debug, thiserror::Error)]
pub struct NoSigningKey {
    pub purpose: KeyPurpose,
    /// Seconds until the earliest key activates; `None` when none is loaded.
    pub activates_in: Option<i64>,
}

impl std::fmt::Display for NoSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let purpose = self.purpose.as_str();
        match self.activates_in {
            Some(secs) => write!(
                f,
                "no {purpose} signing key has activated by this server's clock: the earliest activates in {secs} s, more than the {} s of clock skew allowed; is this server's clock behind the other replicas'?",
                CLOCK_SKEW_ALLOWANCE.num_seconds()
            ),
            None => write!(f, "no {purpose} signing key is loaded"),
        }
    }
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("policy", &self.policy).finish_non_exhaustive()
    }
}

/// What `latchkey keys rotate` did to one chain.
#[derive(Debug, Clone)]
pub struct RotationPlan {
    pub purpose: KeyPurpose,
    pub kid: String,
    pub alg: SigningAlg,
    pub activates_at: DateTime<Utc>,
}

impl KeyRing {
    /// Make sure every chain has its keys, then load them. Fails when the
    /// stored keys cannot be opened with this master key.
    pub async fn start(
        db: &impl ConnectionTrait,
        policy: KeyPolicy,
        master: Arc<MasterKey>,
        now: DateTime<Utc>,
    ) -> Result<KeyRing> {
        let ring = KeyRing {
            policy,
            master,
            snapshot: ArcSwap::from_pointee(Snapshot { keys: Vec::new() }),
            jwks: ArcSwap::from_pointee(JwksDocument {
                body: Bytes::from_static(b"{\"keys\":[]}"),
                etag: String::new(),
                next_change: None,
                awaiting_next_key: true,
            }),
            skew_warned: std::sync::atomic::AtomicI64::new(0),
        };
        ring.reload(db, now).await?;
        Ok(ring)
    }

    pub fn policy(&self) -> &KeyPolicy {
        &self.policy
    }

    /// Bring the chains up to date (create next keys, retire old ones) and
    /// swap in a fresh snapshot. Safe to run on every replica at once.
    /// Returns the keys this call created (for the audit log).
    #[tracing::instrument(skip_all)]
    pub async fn reload(&self, db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<Vec<RotationPlan>> {
        let (rows, created) = maintained_rows(db, &self.policy, &self.master, now).await?;
        self.load(&rows, now)?;
        Ok(created)
    }

    fn load(&self, rows: &[signing_keys::Model], now: DateTime<Utc>) -> Result<()> {
        let previous = self.snapshot.load();
        let known: Vec<(&signing_keys::Model, KeyMeta)> =
            rows.iter().zip(metas_of(rows)).filter_map(|(row, meta)| meta.map(|m| (row, m))).collect();
        let metas: Vec<KeyMeta> = known.iter().map(|(_, m)| m.clone()).collect();
        let statuses = lifecycle::evaluate(&metas, now, self.policy.keep_published_for);
        let mut keys = Vec::new();
        for ((row, meta), status) in known.into_iter().zip(&statuses) {
            if !status.state.is_published() {
                continue;
            }
            let may_sign = matches!(status.state, KeyState::Next | KeyState::Current);
            match previous.keys.iter().find(|k| k.meta.kid == meta.kid) {
                Some(loaded) if loaded.meta == meta && (loaded.signer.is_some() || !may_sign) => {
                    keys.push(Arc::clone(loaded));
                }
                _ => keys.push(Arc::new(self.open(row, meta, may_sign)?)),
            }
        }
        self.snapshot.store(Arc::new(Snapshot { keys }));
        self.rebuild_jwks(now);
        Ok(())
    }

    fn open(&self, row: &signing_keys::Model, meta: KeyMeta, may_sign: bool) -> Result<LoadedKey> {
        let public_jwk = Jwk::from_bytes(row.public_jwk.as_bytes())
            .with_context(|| format!("stored public JWK of {} is invalid", row.kid))?;
        let signer = if may_sign {
            let der = self.master.unseal(&row.kid, &row.private_key_sealed)?;
            Some(material::signer(meta.alg, &meta.kid, &der)?)
        } else {
            None
        };
        let verifier = material::verifier(meta.alg, &public_jwk)?;
        Ok(LoadedKey { meta, public_jwk, signer, verifier })
    }

    fn rebuild_jwks(&self, now: DateTime<Utc>) {
        let snapshot = self.snapshot.load();
        let metas: Vec<KeyMeta> = snapshot.keys.iter().map(|k| k.meta.clone()).collect();
        let statuses = lifecycle::evaluate(&metas, now, self.policy.keep_published_for);
        let published: Vec<&Jwk> = snapshot
            .keys
            .iter()
            .zip(&statuses)
            .filter(|(_, s)| s.state.is_published())
            .map(|(k, _)| &k.public_jwk)
            .collect();
        let awaiting_next_key = KeyPurpose::ALL.iter().any(|purpose| {
            !metas.iter().zip(&statuses).any(|(m, s)| {
                m.purpose == *purpose && s.state == KeyState::Next && m.alg == self.policy.alg_for(*purpose)
            })
        });
        let keys: Vec<serde_json::Value> =
            published.iter().map(|jwk| serde_json::Value::Object(jwk.as_ref().clone())).collect();
        let body = serde_json::json!({ "keys": keys }).to_string();
        let etag = format!("\"{}\"", crypto::b64url(&crypto::sha256(body.as_bytes())));
        self.jwks.store(Arc::new(JwksDocument {
            body: Bytes::from(body),
            etag,
            next_change: lifecycle::next_planned_change(&metas, &statuses, now),
            awaiting_next_key,
        }));
    }

    /// The JWKS to serve at `now`, and its `max-age` in seconds: never longer
    /// than the configured ceiling nor than the time to the next planned
    /// change of the key set.
    pub fn jwks(&self, now: DateTime<Utc>) -> (Arc<JwksDocument>, u64) {
        let mut doc = self.jwks.load_full();
        if doc.next_change.is_some_and(|t| now >= t) {
            self.rebuild_jwks(now);
            doc = self.jwks.load_full();
        }
        let mut max_age = self.policy.jwks_max_age;
        if let Some(change) = doc.next_change {
            max_age = max_age.min(change - now);
        }
        if doc.awaiting_next_key {
            max_age = max_age.min(self.policy.reload_interval);
        }
        let secs = u64::try_from(max_age.num_seconds()).unwrap_or(0);
        (doc, secs)
    }

    /// The key that signs for `purpose` at `now`, if any.
    pub fn current(&self, purpose: KeyPurpose, now: DateTime<Utc>) -> Option<Arc<LoadedKey>> {
        self.signing_key(purpose, now).ok()
    }

    /// The key that signs for `purpose` at `now`: the newest that has
    /// activated. When none has by this server's clock, but one activates
    /// within [`CLOCK_SKEW_ALLOWANCE`], that one: this server's clock is
    /// behind the one that created the chain's first key (on a fresh
    /// install, a key activates as it is created), and the key is already
    /// published by every replica. Further behind, nothing signs: the
    /// request gets 503 and the log says why.
    pub fn signing_key(
        &self,
        purpose: KeyPurpose,
        now: DateTime<Utc>,
    ) -> Result<Arc<LoadedKey>, NoSigningKey> {
        let snapshot = self.snapshot.load();
        let can_sign = |k: &&Arc<LoadedKey>| {
            k.meta.purpose == purpose && k.signer.is_some() && k.meta.retired_at.is_none_or(|r| r > now)
        };
        let activated = snapshot
            .keys
            .iter()
            .filter(can_sign)
            .filter(|k| k.meta.activates_at <= now)
            .max_by_key(|k| k.meta.generation);
        if let Some(key) = activated {
            return Ok(Arc::clone(key));
        }
        let earliest = snapshot.keys.iter().filter(can_sign).min_by_key(|k| k.meta.activates_at);
        let Some(key) = earliest else {
            return Err(NoSigningKey { purpose, activates_in: None });
        };
        let ahead = key.meta.activates_at - now;
        if ahead > CLOCK_SKEW_ALLOWANCE {
            return Err(NoSigningKey { purpose, activates_in: Some(ahead.num_seconds()) });
        }
        if self.skew_warned.swap(key.meta.generation, std::sync::atomic::Ordering::Relaxed)
            != key.meta.generation
        {
            tracing::warn!(
                kid = key.meta.kid,
                activates_in_seconds = ahead.num_seconds(),
                "signing with a key that has not activated by this server's clock: is the clock behind the other replicas'?"
            );
        }
        Ok(Arc::clone(key))
    }

    /// A current key with this algorithm, preferring the access chain (for
    /// ID tokens a client asked to get signed with a specific `alg`).
    pub fn current_with_alg(&self, alg: SigningAlg, now: DateTime<Utc>) -> Option<Arc<LoadedKey>> {
        KeyPurpose::ALL.iter().filter_map(|p| self.current(*p, now)).find(|k| k.meta.alg == alg)
    }

    /// The published key with this `kid`, if any.
    pub fn verifying_key(&self, kid: &str, now: DateTime<Utc>) -> Option<Arc<LoadedKey>> {
        let snapshot = self.snapshot.load();
        let key = snapshot.keys.iter().find(|k| k.meta.kid == kid)?;
        let metas: Vec<KeyMeta> = snapshot.keys.iter().map(|k| k.meta.clone()).collect();
        let status = lifecycle::status_of(&key.meta, &metas, now, self.policy.keep_published_for);
        status.state.is_published().then(|| Arc::clone(key))
    }
}

/// Refuse to run with a master key other than the one that sealed the keys:
/// a clear error instead of every signature failing later.
fn check_master_key(rows: &[signing_keys::Model], master: &MasterKey) -> Result<()> {
    if let Some(row) = rows.iter().find(|r| r.retired_at.is_none() && r.sealed_with != master.id()) {
        return Err(Internal(anyhow!(
            "the signing keys in the database were sealed with master key {} but this process has master key {}: every replica and CLI call must use the same LATCHKEY_MASTER_KEY",
            row.sealed_with,
            master.id()
        )));
    }
    Ok(())
}

fn metas_of(rows: &[signing_keys::Model]) -> Vec<Option<KeyMeta>> {
    rows.iter()
        .map(|row| {
            let purpose = KeyPurpose::parse(&row.purpose);
            let alg = row.alg.parse::<SigningAlg>().ok();
            if purpose.is_none() || alg.is_none() {
                tracing::warn!(kid = %row.kid, "ignoring a signing key with an unknown purpose or algorithm");
            }
            Some(KeyMeta {
                kid: row.kid.clone(),
                purpose: purpose?,
                generation: row.generation,
                alg: alg?,
                created_at: row.created_at,
                activates_at: row.activates_at,
                retired_at: row.retired_at,
            })
        })
        .collect()
}

/// The key rows after bringing every chain up to date. A fresh chain needs
/// two passes (its first key, then that key's successor).
async fn maintained_rows(
    db: &impl ConnectionTrait,
    policy: &KeyPolicy,
    master: &MasterKey,
    now: DateTime<Utc>,
) -> Result<(Vec<signing_keys::Model>, Vec<RotationPlan>)> {
    let mut rows = repo::all(db).await?;
    check_master_key(&rows, master)?;
    let mut created = Vec::new();
    for _ in 0..3 {
        let (changed, mut new_keys) = maintain_chains(db, &rows, policy, master, now).await?;
        created.append(&mut new_keys);
        if !changed {
            break;
        }
        rows = repo::all(db).await?;
    }
    Ok((rows, created))
}

/// Record retirements, drop next keys of the wrong algorithm, create missing
/// next keys. Returns whether anything changed, and the keys it created.
async fn maintain_chains(
    db: &impl ConnectionTrait,
    rows: &[signing_keys::Model],
    policy: &KeyPolicy,
    master: &MasterKey,
    now: DateTime<Utc>,
) -> Result<(bool, Vec<RotationPlan>)> {
    let mut created = Vec::new();
    let metas: Vec<KeyMeta> = metas_of(rows).into_iter().flatten().collect();
    let mut statuses = lifecycle::evaluate(&metas, now, policy.keep_published_for);
    let mut changed = false;
    for (meta, status) in metas.iter().zip(statuses.iter_mut()) {
        let wrong_alg_next = status.state == KeyState::Next && meta.alg != policy.alg_for(meta.purpose);
        let implicitly_retired = status.state == KeyState::Retired && meta.retired_at.is_none();
        if wrong_alg_next || implicitly_retired {
            repo::retire(db, &meta.kid, now).await?;
            tracing::info!(kid = %meta.kid, purpose = meta.purpose.as_str(), "signing key retired");
            status.state = KeyState::Retired;
            changed = true;
        }
    }
    for purpose in KeyPurpose::ALL {
        let chain: Vec<(&KeyMeta, &KeyStatus)> =
            metas.iter().zip(statuses.iter()).filter(|(m, _)| m.purpose == purpose).collect();
        let max_generation =
            rows.iter().filter(|r| r.purpose == purpose.as_str()).map(|r| r.generation).max().unwrap_or(0);
        let alg = policy.alg_for(purpose);
        let action = lifecycle::plan_chain(
            &chain,
            rows.is_empty(),
            max_generation,
            alg,
            now,
            policy.rotation_interval,
            policy.publish_lead,
        );
        if let lifecycle::ChainAction::Create { generation, activates_at } = action {
            let row = new_key_row(master, purpose, generation, alg, now, activates_at).await?;
            let kid = row.kid.clone();
            if repo::insert(db, row).await? {
                tracing::info!(%kid, purpose = purpose.as_str(), alg = %alg, %activates_at, "signing key created");
                created.push(RotationPlan { purpose, kid, alg, activates_at });
            }
            changed = true;
        }
    }
    Ok((changed, created))
}

async fn new_key_row(
    master: &MasterKey,
    purpose: KeyPurpose,
    generation: i64,
    alg: SigningAlg,
    now: DateTime<Utc>,
    activates_at: DateTime<Utc>,
) -> Result<signing_keys::Model> {
    let generated = crate::telemetry::spawn_blocking_in_span(move || material::generate(alg))
        .await
        .map_err(|e| Internal(anyhow!("key generation task failed: {e}")))??;
    let sealed = master.seal(&generated.kid, &generated.private_der)?;
    Ok(signing_keys::Model {
        kid: generated.kid,
        purpose: purpose.as_str().to_owned(),
        generation,
        alg: alg.as_str().to_owned(),
        public_jwk: generated.public_jwk.to_string(),
        private_key_sealed: sealed,
        sealed_with: master.id().to_owned(),
        created_at: now,
        activates_at,
        retired_at: None,
    })
}

/// Manual rotation (`latchkey keys rotate`): each chain's next key starts
/// signing as soon as it has been published for the full lead time, right
/// now if it already has. A chain without a next key gets one, activating
/// after the lead. Replicas pick the change up on their next reload; a new
/// next key follows automatically once the promoted one is current.
pub async fn rotate(
    db: &impl ConnectionTrait,
    policy: &KeyPolicy,
    master: &MasterKey,
    now: DateTime<Utc>,
) -> Result<Vec<RotationPlan>> {
    let (rows, _) = maintained_rows(db, policy, master, now).await?;
    let metas: Vec<KeyMeta> = metas_of(&rows).into_iter().flatten().collect();
    let statuses = lifecycle::evaluate(&metas, now, policy.keep_published_for);
    let mut plans = Vec::new();
    for purpose in KeyPurpose::ALL {
        let next = metas
            .iter()
            .zip(&statuses)
            .filter(|(m, s)| m.purpose == purpose && s.state == KeyState::Next)
            .map(|(m, _)| m)
            .min_by_key(|m| m.generation);
        let Some(next) = next else { continue };
        let activates_at = (next.created_at + policy.publish_lead).max(now).min(next.activates_at);
        repo::set_activation(db, &next.kid, activates_at).await?;
        plans.push(RotationPlan { purpose, kid: next.kid.clone(), alg: next.alg, activates_at });
    }
    Ok(plans)
}

/// Every stored key with its state at `now` (`latchkey keys list`).
pub async fn list(
    db: &impl ConnectionTrait,
    policy: &KeyPolicy,
    now: DateTime<Utc>,
) -> Result<Vec<(KeyMeta, KeyStatus)>> {
    let rows = repo::all(db).await?;
    let metas: Vec<KeyMeta> = metas_of(&rows).into_iter().flatten().collect();
    let statuses = lifecycle::evaluate(&metas, now, policy.keep_published_for);
    Ok(metas.into_iter().zip(statuses).collect())
}
