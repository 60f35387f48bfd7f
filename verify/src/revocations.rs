//! Following latchkey's revocation feed, in bounded memory.
//!
//! A snapshot first (`GET /revocations/snapshot`), then long polls
//! (`GET /revocations?since=<cursor>&wait=25`). Entries are kept until their
//! `expires_at`, after which no token they could deny is valid. At most
//! `max_entries` are kept: beyond that the entries closest to expiry are
//! dropped first and a warning is logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use crate::claims::Claims;
use crate::clock::Clock;
use crate::credentials::ClientCredentials;

#[derive(Deserialize)]
struct Entry {
    kind: String,
    value: String,
    /// Seconds since the epoch, like `iat`.
    created_at: i64,
    /// Seconds since the epoch, like `exp`.
    expires_at: i64,
}

#[derive(Deserialize)]
struct Page {
    entries: Vec<Entry>,
    cursor: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevocationStats {
    pub entries: usize,
    /// When the feed last answered (seconds since the epoch); 0 before the
    /// first snapshot. Tokens are not checked against the feed until then.
    pub last_synced: i64,
    /// Feed requests answered.
    pub polls: u64,
    /// Entries dropped because the memory bound was reached.
    pub dropped: u64,
}

#[derive(Clone, Copy)]
struct Kept {
    created_at: i64,
    expires_at: i64,
}

#[derive(Default)]
struct Lists {
    jti: HashMap<String, Kept>,
    sid: HashMap<String, Kept>,
    subject: HashMap<String, Kept>,
    client: HashMap<String, Kept>,
    polls: u64,
    dropped: u64,
    last_synced: i64,
}

impl Lists {
    fn len(&self) -> usize {
        self.jti.len() + self.sid.len() + self.subject.len() + self.client.len()
    }
}

pub(crate) struct RevocationList {
    max_entries: usize,
    /// The verifier's leeway: a token is accepted until `exp + leeway`, so an
    /// entry must be kept as long.
    leeway: i64,
    lists: Mutex<Lists>,
}

impl RevocationList {
    pub(crate) fn new(max_entries: usize, leeway: i64) -> Self {
        RevocationList { max_entries: max_entries.max(1), leeway, lists: Mutex::new(Lists::default()) }
    }

    pub(crate) fn stats(&self) -> RevocationStats {
        self.lists
            .lock()
            .map(|l| RevocationStats {
                entries: l.len(),
                last_synced: l.last_synced,
                polls: l.polls,
                dropped: l.dropped,
            })
            .unwrap_or_default()
    }

    /// Does the feed deny this token at `now`?
    pub(crate) fn denies(&self, claims: &Claims, now: i64) -> bool {
        let Ok(l) = self.lists.lock() else { return false };
        let live = |k: &Kept| k.expires_at + self.leeway > now;
        let issued_before = |k: &Kept| live(k) && claims.iat <= k.created_at;
        l.jti.get(&claims.jti).is_some_and(live)
            || l.subject.get(&claims.sub).is_some_and(issued_before)
            || l.client.get(&claims.client_id).is_some_and(issued_before)
            || claims.sid.as_ref().and_then(|s| l.sid.get(s)).is_some_and(issued_before)
    }

    fn add(&self, entries: Vec<Entry>, now: i64) {
        let Ok(mut guard) = self.lists.lock() else { return };
        let l = &mut *guard;
        l.polls += 1;
        l.last_synced = now;
        for e in entries {
            let kept = Kept { created_at: e.created_at, expires_at: e.expires_at };
            let map = match e.kind.as_str() {
                "jti" => &mut l.jti,
                "sid" => &mut l.sid,
                "subject" => &mut l.subject,
                "client" => &mut l.client,
                _ => continue,
            };
            // A later entry for the same subject supersedes an earlier one.
            let merged = match map.get(&e.value) {
                Some(old) => Kept {
                    created_at: old.created_at.max(kept.created_at),
                    expires_at: old.expires_at.max(kept.expires_at),
                },
                None => kept,
            };
            map.insert(e.value, merged);
        }
        let leeway = self.leeway;
        for map in [&mut l.jti, &mut l.sid, &mut l.subject, &mut l.client] {
            map.retain(|_, k| k.expires_at + leeway > now);
        }
        let over = l.len().saturating_sub(self.max_entries);
        if over > 0 {
            tracing::warn!(
                over,
                "revocation list over its memory bound; dropping the entries closest to expiry"
            );
            let mut all: Vec<(i64, u8, String)> = Vec::new();
            for (tag, map) in [(0u8, &l.jti), (1, &l.sid), (2, &l.subject), (3, &l.client)] {
                all.extend(map.iter().map(|(k, v)| (v.expires_at, tag, k.clone())));
            }
            all.sort();
            for (_, tag, key) in all.into_iter().take(over) {
                let map = match tag {
                    0 => &mut l.jti,
                    1 => &mut l.sid,
                    2 => &mut l.subject,
                    _ => &mut l.client,
                };
                map.remove(&key);
            }
            l.dropped += over as u64;
        }
    }
}

/// The largest feed response read (a snapshot is at most 10,000 entries).
const MAX_BODY: usize = 16 * 1024 * 1024;

enum PageError {
    /// The request was refused (4xx): start over from a snapshot.
    Refused(String),
    Failed(String),
}

async fn get_page(
    http: &reqwest::Client,
    credentials: &ClientCredentials,
    url: &str,
    timeout: Duration,
) -> Result<Page, PageError> {
    let token = credentials.token().await.map_err(|e| PageError::Failed(e.to_string()))?;
    let mut response = http
        .get(url)
        .bearer_auth(token)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| PageError::Failed(e.to_string()))?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        credentials.invalidate().await;
        return Err(PageError::Failed("the feed token was refused".into()));
    }
    if status.is_client_error() {
        return Err(PageError::Refused(status.to_string()));
    }
    if !status.is_success() {
        return Err(PageError::Failed(status.to_string()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| PageError::Failed(e.to_string()))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(PageError::Failed("feed response too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| PageError::Failed(e.to_string()))
}

/// How long a long poll waits on the server.
const WAIT: u64 = 25;

/// The follower loop: snapshot, then long polls; on errors, back off and
/// retry; on a refused request (a cursor the feed no longer knows), start
/// over from a snapshot.
pub(crate) async fn follow(
    issuer: String,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    credentials: ClientCredentials,
    list: Arc<RevocationList>,
) {
    let mut cursor: Option<String> = None;
    let mut backoff = Duration::from_secs(1);
    loop {
        let url = match &cursor {
            None => format!("{issuer}/revocations/snapshot"),
            Some(c) => format!("{issuer}/revocations?since={c}&wait={WAIT}"),
        };
        // The request may take the whole wait, so its timeout must exceed it.
        match get_page(&http, &credentials, &url, Duration::from_secs(WAIT + 15)).await {
            Ok(page) => {
                backoff = Duration::from_secs(1);
                cursor = Some(page.cursor);
                list.add(page.entries, clock.now());
            }
            Err(PageError::Refused(e)) => {
                tracing::warn!(error = %e, "revocation feed refused the cursor; taking a new snapshot");
                cursor = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(PageError::Failed(e)) => {
                tracing::warn!(error = %e, "revocation feed unavailable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(jti: &str, sub: &str, sid: Option<&str>, iat: i64) -> Claims {
        Claims {
            iss: "i".into(),
            sub: sub.into(),
            aud: vec!["a".into()],
            exp: iat + 900,
            iat,
            nbf: None,
            jti: jti.into(),
            client_id: "c".into(),
            scope: vec![],
            roles: Some(vec![]),
            sid: sid.map(str::to_owned),
            auth_time: None,
        }
    }

    fn entry(kind: &str, value: &str, created_at: i64, expires_at: i64) -> Entry {
        Entry { kind: kind.into(), value: value.into(), created_at, expires_at }
    }

    #[test]
    fn entries_deny_what_they_name_until_they_expire() {
        let list = RevocationList::new(100, 10);
        let t0 = 1_767_225_600;
        list.add(
            vec![
                entry("jti", "j1", t0, t0 + 900),
                entry("subject", "u1", t0, t0 + 900),
                entry("sid", "s1", t0, t0 + 900),
            ],
            t0,
        );
        assert!(list.denies(&claims("j1", "x", None, t0 - 10), t0));
        assert!(list.denies(&claims("j2", "u1", None, t0 - 10), t0), "subject banned");
        assert!(!list.denies(&claims("j2", "u1", None, t0 + 10), t0 + 20), "issued after the ban");
        assert!(list.denies(&claims("j3", "x", Some("s1"), t0 - 10), t0));
        assert!(list.denies(&claims("j1", "x", None, t0 - 10), t0 + 905), "kept for the leeway");
        assert!(!list.denies(&claims("j1", "x", None, t0 - 10), t0 + 911), "expired entry");
    }

    #[test]
    fn memory_stays_bounded() {
        let list = RevocationList::new(3, 0);
        let t0 = 1_767_225_600;
        let entries = (0..10).map(|i| entry("jti", &format!("j{i}"), t0, t0 + 600 + i * 60)).collect();
        list.add(entries, t0);
        let stats = list.stats();
        assert_eq!(stats.entries, 3);
        assert_eq!(stats.dropped, 7);
        // The ones kept are those that expire last.
        assert!(list.denies(&claims("j9", "x", None, t0), t0));
        assert!(!list.denies(&claims("j0", "x", None, t0), t0));
    }
}
