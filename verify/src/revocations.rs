//! Following latchkey's revocation feed, in bounded memory, failing closed.
//!
//! A snapshot first (`GET /revocations/snapshot`), then long polls
//! (`GET /revocations?since=<cursor>&wait=25`). Entries are kept until their
//! `expires_at` (plus the verifier's leeway), after which no token they could
//! deny is still valid.
//!
//! **Memory.** `sid`, `subject` and `client` entries share one bound
//! ([`RevocationOptions::max_entries`], by default [`DEFAULT_MAX_ENTRIES`]);
//! `jti` entries have their own ([`RevocationOptions::max_jti_entries`], by
//! default [`DEFAULT_MAX_JTI_ENTRIES`]). Values shaped like latchkey's ids
//! (lowercase hyphenated UUIDs: every `sid`, and the `subject` of users) are
//! stored as 16 bytes; other values as strings. Entries of one bulk
//! revocation share their `(created_at, expires_at)` pair, which is stored
//! once and referenced by a 4-byte index. A default verifier holds a bulk
//! revocation of 1,000,000 sessions without dropping anything (about 44 MB:
//! `cargo bench -p latchkey-verify --bench revocations`).
//!
//! **Failing closed.** `jti` entries are the ones an outside party can create
//! cheaply (a public client revoking its own tokens through RFC 7009), so they
//! can never push out a `sid`, `subject` or `client` entry: the two kinds are
//! bounded separately. When a bound is exceeded, the entries closest to
//! expiry are dropped, and the list remembers a *floor* instead: every token
//! issued at or before the newest `created_at` among the dropped entries is
//! denied until the latest `expires_at` among them (plus leeway). Each dropped
//! entry only denied tokens issued at or before its `created_at` and only until
//! its `expires_at`, so the floor denies everything the dropped entries did.
//! Floors merge monotonically (the later of both fields), and a warning is
//! logged (counts and times, never a token value).
//!
//! The trade-off: a flood of `jti` revocations beyond the bound makes the
//! verifier deny *older* valid tokens too, until they expire (at most one
//! access-token lifetime); clients then refresh and carry on with new tokens.
//! The list fails closed, never open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use crate::claims::Claims;
use crate::clock::Clock;
use crate::credentials::ClientCredentials;

/// Sid, subject and client entries kept by default (see the module docs).
pub const DEFAULT_MAX_ENTRIES: usize = 2_000_000;

/// `jti` entries kept by default (see the module docs).
pub const DEFAULT_MAX_JTI_ENTRIES: usize = 200_000;

/// How much of the revocation feed a verifier keeps in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevocationOptions {
    /// At most this many `sid`, `subject` and `client` entries.
    pub max_entries: usize,
    /// At most this many `jti` entries.
    pub max_jti_entries: usize,
}

impl Default for RevocationOptions {
    fn default() -> Self {
        RevocationOptions { max_entries: DEFAULT_MAX_ENTRIES, max_jti_entries: DEFAULT_MAX_JTI_ENTRIES }
    }
}

/// One entry of the feed.
#[doc(hidden)]
#[derive(Clone, Debug, Deserialize)]
pub struct FeedEntry {
    pub kind: String,
    pub value: String,
    /// Seconds since the epoch, like `iat`.
    pub created_at: i64,
    /// Seconds since the epoch, like `exp`.
    pub expires_at: i64,
}

#[derive(Deserialize)]
struct Page {
    entries: Vec<FeedEntry>,
    cursor: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevocationStats {
    /// Entries kept, all kinds.
    pub entries: usize,
    /// Of which `jti` entries.
    pub jti_entries: usize,
    /// When the feed last answered (seconds since the epoch); 0 before the
    /// first snapshot. Tokens are not checked against the feed until then.
    pub last_synced: i64,
    /// Feed requests answered.
    pub polls: u64,
    /// Entries dropped because a memory bound was reached.
    pub dropped: u64,
    /// While a floor is in force (see the module docs): every token issued at
    /// or before this time (`iat`, seconds since the epoch) is denied...
    pub floor_issued_at: Option<i64>,
    /// ... until this time (seconds since the epoch), plus the leeway.
    pub floor_until: Option<i64>,
}

/// What an entry denies: tokens issued at or before `created_at`, until
/// `expires_at` (plus leeway).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Kept {
    created_at: i64,
    expires_at: i64,
}

impl Kept {
    fn merge(self, other: Kept) -> Kept {
        Kept {
            created_at: self.created_at.max(other.created_at),
            expires_at: self.expires_at.max(other.expires_at),
        }
    }
}

/// The 16 bytes of a lowercase hyphenated UUID (how latchkey writes its
/// ids). Any other spelling is kept as text, so the mapping is one-to-one
/// and lookups compare exactly what the feed and the token say.
fn uuid_key(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut nibble = 0usize;
    for (i, &c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        let byte = out.get_mut(nibble / 2)?;
        *byte = (*byte << 4) | v;
        nibble += 1;
    }
    Some(out)
}

/// `(created_at, expires_at)` pairs, stored once: the entries of a bulk
/// revocation all share one.
#[derive(Default)]
struct Pairs {
    list: Vec<Kept>,
    index: HashMap<Kept, u32>,
}

impl Pairs {
    fn get(&self, i: u32) -> Option<Kept> {
        self.list.get(i as usize).copied()
    }

    fn intern(&mut self, k: Kept) -> Option<u32> {
        if let Some(&i) = self.index.get(&k) {
            return Some(i);
        }
        let i = u32::try_from(self.list.len()).ok()?;
        self.list.push(k);
        self.index.insert(k, i);
        Some(i)
    }
}

/// The entries of one kind (`sid`, `subject` or `client`), each an index
/// into [`Pairs`].
#[derive(Default)]
struct Table {
    uuids: HashMap<[u8; 16], u32>,
    texts: HashMap<Box<str>, u32>,
}

impl Table {
    fn len(&self) -> usize {
        self.uuids.len() + self.texts.len()
    }

    fn get(&self, value: &str) -> Option<u32> {
        if self.uuids.is_empty() && self.texts.is_empty() {
            return None;
        }
        match uuid_key(value) {
            Some(k) => self.uuids.get(&k).copied(),
            None => self.texts.get(value).copied(),
        }
    }

    fn insert(&mut self, value: String, i: u32) {
        match uuid_key(&value) {
            Some(k) => self.uuids.insert(k, i),
            None => self.texts.insert(value.into_boxed_str(), i),
        };
    }

    /// Keep the entries for which `keep(pair index)` holds.
    fn retain(&mut self, mut keep: impl FnMut(&mut u32) -> bool) {
        self.uuids.retain(|_, i| keep(i));
        self.texts.retain(|_, i| keep(i));
    }
}

/// What replaces dropped entries: deny every token issued at or before
/// `issued_at` until `until` (plus leeway).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Floor {
    issued_at: i64,
    until: i64,
}

#[derive(Default)]
struct Lists {
    jti: HashMap<Box<str>, Kept>,
    sid: Table,
    subject: Table,
    client: Table,
    pairs: Pairs,
    floor: Option<Floor>,
    polls: u64,
    dropped: u64,
    last_synced: i64,
}

impl Lists {
    fn others(&self) -> usize {
        self.sid.len() + self.subject.len() + self.client.len()
    }

    fn tables(&mut self) -> [&mut Table; 3] {
        [&mut self.sid, &mut self.subject, &mut self.client]
    }

    /// Remember that `dropped` is no longer kept: raise the floor.
    fn lower_bound(&mut self, dropped: Kept) {
        let new = Floor { issued_at: dropped.created_at, until: dropped.expires_at };
        self.floor = Some(match self.floor {
            Some(f) => Floor { issued_at: f.issued_at.max(new.issued_at), until: f.until.max(new.until) },
            None => new,
        });
    }

    /// Drop expired entries and pairs, and renumber the pairs still used.
    fn sweep(&mut self, live: impl Fn(&Kept) -> bool) {
        self.jti.retain(|_, k| live(k));
        if self.floor.is_some_and(|f| !live(&Kept { created_at: f.issued_at, expires_at: f.until })) {
            self.floor = None;
        }
        // Pairs no longer used (superseded by a merge) linger until they
        // expire; rebuild when some have expired or when there are many.
        let expired = self.pairs.list.iter().any(|k| !live(k));
        if !expired && self.pairs.list.len() <= 2 * self.others() + 1024 {
            return;
        }
        let old = std::mem::take(&mut self.pairs);
        let mut renumbered: Vec<Option<u32>> = vec![None; old.list.len()];
        let mut pairs = Pairs::default();
        for table in self.tables() {
            table.retain(|i| {
                let Some(slot) = renumbered.get_mut(*i as usize) else { return false };
                if slot.is_none() {
                    *slot = old.get(*i).filter(|k| live(k)).and_then(|k| pairs.intern(k));
                }
                match *slot {
                    Some(n) => {
                        *i = n;
                        true
                    }
                    None => false,
                }
            });
        }
        self.pairs = pairs;
    }
}

/// The `over`-th smallest of `values` (1-based): entries expiring strictly
/// before it are all dropped, and enough of those expiring at it.
fn cut(mut values: Vec<i64>, over: usize) -> Option<i64> {
    let nth = over.checked_sub(1)?;
    if nth >= values.len() {
        return values.into_iter().max();
    }
    let (_, &mut v, _) = values.select_nth_unstable(nth);
    Some(v)
}

/// Should an entry expiring at `expires_at` be dropped, given the cut and
/// the number still to drop at the cut itself?
fn drop_it(expires_at: i64, cut: i64, at_cut: &mut usize) -> bool {
    if expires_at < cut {
        return true;
    }
    if expires_at == cut && *at_cut > 0 {
        *at_cut -= 1;
        return true;
    }
    false
}

/// The revocation list a verifier consults. Public only for the benchmark
/// (`verify/benches/revocations.rs`); not part of the stable API.
#[doc(hidden)]
pub struct RevocationList {
    options: RevocationOptions,
    /// The verifier's leeway: a token is accepted until `exp + leeway`, so an
    /// entry must be kept as long.
    leeway: i64,
    lists: Mutex<Lists>,
}

impl RevocationList {
    pub fn new(options: RevocationOptions, leeway: i64) -> Self {
        // Pair indexes are u32; entries beyond that could not be referenced.
        let cap = u32::MAX as usize / 4;
        let options = RevocationOptions {
            max_entries: options.max_entries.clamp(1, cap),
            max_jti_entries: options.max_jti_entries.clamp(1, cap),
        };
        RevocationList { options, leeway, lists: Mutex::new(Lists::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lists> {
        // Nothing panics while holding the lock; if something did, keep
        // using the entries rather than accepting every token.
        self.lists.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn stats(&self) -> RevocationStats {
        let l = self.lock();
        RevocationStats {
            entries: l.jti.len() + l.others(),
            jti_entries: l.jti.len(),
            last_synced: l.last_synced,
            polls: l.polls,
            dropped: l.dropped,
            floor_issued_at: l.floor.map(|f| f.issued_at),
            floor_until: l.floor.map(|f| f.until),
        }
    }

    /// Does the feed deny this token at `now`?
    pub fn denies(&self, claims: &Claims, now: i64) -> bool {
        let l = self.lock();
        let live = |k: &Kept| k.expires_at.saturating_add(self.leeway) > now;
        let issued_before = |k: &Kept| live(k) && claims.iat <= k.created_at;
        let in_table = |t: &Table, value: &str| {
            t.get(value).and_then(|i| l.pairs.get(i)).is_some_and(|k| issued_before(&k))
        };
        l.floor.is_some_and(|f| issued_before(&Kept { created_at: f.issued_at, expires_at: f.until }))
            || (!l.jti.is_empty() && l.jti.get(claims.jti.as_str()).is_some_and(live))
            || in_table(&l.subject, &claims.sub)
            || in_table(&l.client, &claims.client_id)
            || claims.sid.as_deref().is_some_and(|s| in_table(&l.sid, s))
    }

    /// Add a page of the feed, received at `now`.
    pub fn add(&self, entries: Vec<FeedEntry>, now: i64) {
        let mut guard = self.lock();
        let l = &mut *guard;
        l.polls += 1;
        l.last_synced = now;
        for e in entries {
            let kept = Kept { created_at: e.created_at, expires_at: e.expires_at };
            // A later entry for the same value supersedes an earlier one.
            let table = match e.kind.as_str() {
                "jti" => {
                    let merged = l.jti.get(e.value.as_str()).map_or(kept, |old| old.merge(kept));
                    l.jti.insert(e.value.into_boxed_str(), merged);
                    continue;
                }
                "sid" => &mut l.sid,
                "subject" => &mut l.subject,
                "client" => &mut l.client,
                _ => continue,
            };
            let merged = table.get(&e.value).and_then(|i| l.pairs.get(i)).map_or(kept, |old| old.merge(kept));
            match l.pairs.intern(merged) {
                Some(i) => table.insert(e.value, i),
                // Unreachable in practice (pairs are renumbered long before);
                // failing closed all the same.
                None => {
                    l.dropped += 1;
                    l.lower_bound(merged);
                }
            }
        }
        let leeway = self.leeway;
        l.sweep(|k| k.expires_at.saturating_add(leeway) > now);
        let dropped_jti = self.trim_jti(l);
        let dropped_others = self.trim_others(l);
        if dropped_jti + dropped_others > 0 {
            l.dropped += (dropped_jti + dropped_others) as u64;
            tracing::warn!(
                dropped_jti,
                dropped_others,
                floor_issued_at = l.floor.map(|f| f.issued_at),
                floor_until = l.floor.map(|f| f.until),
                "revocation list over its memory bound; dropped the entries closest to expiry \
                 and denying every token issued at or before floor_issued_at until floor_until"
            );
        }
    }

    /// Bring the `jti` entries within their bound; returns how many were dropped.
    fn trim_jti(&self, l: &mut Lists) -> usize {
        let over = l.jti.len().saturating_sub(self.options.max_jti_entries);
        let Some(cut) = cut(l.jti.values().map(|k| k.expires_at).collect(), over) else { return 0 };
        let mut at_cut = over - l.jti.values().filter(|k| k.expires_at < cut).count();
        let mut dropped = Vec::new();
        l.jti.retain(|_, k| {
            let gone = drop_it(k.expires_at, cut, &mut at_cut);
            if gone {
                dropped.push(*k);
            }
            !gone
        });
        for k in &dropped {
            l.lower_bound(*k);
        }
        dropped.len()
    }

    /// Bring the `sid`, `subject` and `client` entries within their bound;
    /// returns how many were dropped.
    fn trim_others(&self, l: &mut Lists) -> usize {
        let over = l.others().saturating_sub(self.options.max_entries);
        if over == 0 {
            return 0;
        }
        let pairs = std::mem::take(&mut l.pairs);
        let expiry = |i: &u32| pairs.get(*i).map_or(i64::MIN, |k| k.expires_at);
        let mut all = Vec::with_capacity(l.others());
        for t in l.tables() {
            all.extend(t.uuids.values().map(expiry));
            all.extend(t.texts.values().map(expiry));
        }
        let Some(cut) = cut(all, over) else {
            l.pairs = pairs;
            return 0;
        };
        let mut below = 0;
        for t in l.tables() {
            below += t.uuids.values().chain(t.texts.values()).filter(|i| expiry(i) < cut).count();
        }
        let mut at_cut = over - below;
        let mut dropped = Vec::new();
        for t in l.tables() {
            t.retain(|i| {
                let gone = drop_it(expiry(i), cut, &mut at_cut);
                if gone {
                    dropped.extend(pairs.get(*i));
                }
                !gone
            });
        }
        l.pairs = pairs;
        for k in &dropped {
            l.lower_bound(*k);
        }
        dropped.len()
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

    const T0: i64 = 1_767_225_600;

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
            amr: None,
            acr: None,
        }
    }

    fn entry(kind: &str, value: &str, created_at: i64, expires_at: i64) -> FeedEntry {
        FeedEntry { kind: kind.into(), value: value.into(), created_at, expires_at }
    }

    fn options(max_entries: usize, max_jti_entries: usize) -> RevocationOptions {
        RevocationOptions { max_entries, max_jti_entries }
    }

    /// A UUID as latchkey writes it, numbered.
    fn uuid(n: u64) -> String {
        let h = format!("{n:032x}");
        format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
    }

    #[test]
    fn entries_deny_what_they_name_until_they_expire() {
        let list = RevocationList::new(options(100, 100), 10);
        list.add(
            vec![
                entry("jti", "j1", T0, T0 + 900),
                entry("subject", "u1", T0, T0 + 900),
                entry("sid", "s1", T0, T0 + 900),
                entry("sid", &uuid(0xabc), T0, T0 + 900),
                entry("client", "c", T0 - 100, T0 + 900),
            ],
            T0,
        );
        assert!(list.denies(&claims("j1", "x", None, T0 - 10), T0));
        assert!(list.denies(&claims("j2", "u1", None, T0 - 10), T0), "subject banned");
        assert!(!list.denies(&claims("j2", "u1", None, T0 + 10), T0 + 20), "issued after the ban");
        assert!(list.denies(&claims("j3", "x", Some("s1"), T0 - 10), T0));
        assert!(list.denies(&claims("j3", "x", Some(&uuid(0xabc)), T0 - 10), T0), "a UUID sid");
        assert!(!list.denies(&claims("j3", "x", Some(&uuid(0xabd)), T0 - 10), T0), "another UUID sid");
        assert!(
            !list.denies(&claims("j3", "x", Some(&uuid(0xabc).to_uppercase()), T0 - 10), T0),
            "values compare exactly, as on the server"
        );
        assert!(list.denies(&claims("j4", "x", None, T0 - 200), T0), "client entry");
        assert!(list.denies(&claims("j1", "x", None, T0 - 10), T0 + 905), "kept for the leeway");
        assert!(!list.denies(&claims("j1", "x", None, T0 - 10), T0 + 911), "expired entry");
        assert_eq!(list.stats().dropped, 0);
        assert_eq!(list.stats().floor_until, None);
    }

    #[test]
    fn uuid_keys_are_exactly_the_lowercase_hyphenated_form() {
        assert_eq!(uuid_key("00000000-0000-0000-0000-0000000000ff").map(|k| k[15]), Some(0xff));
        assert!(uuid_key(&uuid(u64::MAX)).is_some());
        for other in [
            "",
            "u1",
            "00000000-0000-0000-0000-0000000000FF",
            "000000000000000000000000000000000000",
            "00000000-0000-0000-0000-0000000000f",
        ] {
            assert_eq!(uuid_key(other), None, "{other}");
        }
    }

    #[test]
    fn expired_entries_are_swept_and_merged_entries_keep_the_later_times() {
        let list = RevocationList::new(options(100, 100), 0);
        list.add(vec![entry("sid", &uuid(1), T0, T0 + 100), entry("sid", &uuid(2), T0, T0 + 900)], T0);
        list.add(vec![entry("sid", &uuid(2), T0 + 50, T0 + 200)], T0 + 60);
        assert!(list.denies(&claims("j", "x", Some(&uuid(2)), T0 + 40), T0 + 60), "later created_at");
        list.add(vec![], T0 + 150);
        assert_eq!(list.stats().entries, 1, "the first sid expired");
        assert!(list.denies(&claims("j", "x", Some(&uuid(2)), T0 + 40), T0 + 800), "later expires_at");
        list.add(vec![], T0 + 900);
        assert_eq!(list.stats().entries, 0);
    }

    #[test]
    fn a_jti_flood_never_pushes_out_a_ban_session_or_client_entry() {
        let list = RevocationList::new(options(10, 100), 5);
        // The ban, session and client entries expire first: under a single
        // bound they would be the first to go.
        list.add(
            vec![
                entry("subject", "banned", T0, T0 + 60),
                entry("sid", &uuid(1), T0, T0 + 60),
                entry("client", "gone", T0, T0 + 60),
            ],
            T0,
        );
        for page in 0..50 {
            let entries = (0..1_000)
                .map(|i| entry("jti", &format!("j{page}-{i}"), T0 + 1, T0 + 900 + page * 1_000 + i))
                .collect();
            list.add(entries, T0 + 1);
        }
        let stats = list.stats();
        assert_eq!(stats.jti_entries, 100);
        assert_eq!(stats.entries, 103, "the three non-jti entries are all kept");
        assert_eq!(stats.dropped, 49_900);
        // The banned subject's tokens stay denied, whenever they were issued
        // before the ban, even after the floor left by the jti flood lifts.
        let floor_until = stats.floor_until.unwrap();
        assert!(list.denies(&claims("x", "banned", None, T0), T0 + 2));
        assert!(list.denies(&claims("x", "someone", Some(&uuid(1)), T0), T0 + 2));
        let mut c = claims("x", "someone", None, T0);
        c.client_id = "gone".into();
        assert!(list.denies(&c, T0 + 2));
        assert_eq!(stats.floor_issued_at, Some(T0 + 1));
        assert!(floor_until > T0 + 900);
        // A token issued after the flood's entries is accepted.
        assert!(!list.denies(&claims("x", "someone", None, T0 + 2), T0 + 2));
    }

    #[test]
    fn dropped_jti_entries_leave_a_floor_until_they_would_have_expired() {
        let leeway = 5;
        let list = RevocationList::new(options(10, 2), leeway);
        // Three revoked tokens; the one closest to expiry is dropped.
        list.add(
            vec![
                entry("jti", "a", T0 + 10, T0 + 300),
                entry("jti", "b", T0 + 20, T0 + 600),
                entry("jti", "c", T0 + 30, T0 + 900),
            ],
            T0 + 30,
        );
        let stats = list.stats();
        assert_eq!((stats.jti_entries, stats.dropped), (2, 1));
        assert_eq!((stats.floor_issued_at, stats.floor_until), (Some(T0 + 10), Some(T0 + 300)));
        // The dropped token itself stays denied, as does any token issued at
        // or before the dropped entry...
        assert!(list.denies(&claims("a", "u", None, T0), T0 + 40));
        assert!(list.denies(&claims("other", "u", None, T0 + 10), T0 + 40));
        assert!(list.denies(&claims("other", "u", None, T0 + 10), T0 + 300 + leeway - 1));
        // ... but not a token issued after it.
        assert!(!list.denies(&claims("other", "u", None, T0 + 11), T0 + 40));
        // Once the dropped entry would have expired, the floor lifts.
        assert!(!list.denies(&claims("other", "u", None, T0 + 10), T0 + 300 + leeway));
        list.add(vec![], T0 + 300 + leeway);
        assert_eq!(list.stats().floor_until, None);
        // The kept entries still work.
        assert!(list.denies(&claims("b", "u", None, T0 + 20), T0 + 400));
    }

    #[test]
    fn floors_merge_monotonically() {
        let list = RevocationList::new(options(10, 1), 0);
        list.add(vec![entry("jti", "a", T0 + 50, T0 + 900), entry("jti", "b", T0 + 60, T0 + 950)], T0 + 60);
        assert_eq!((list.stats().floor_issued_at, list.stats().floor_until), (Some(T0 + 50), Some(T0 + 900)));
        // A later drop of an entry created later but expiring sooner.
        list.add(vec![entry("jti", "c", T0 + 70, T0 + 400)], T0 + 70);
        assert_eq!((list.stats().floor_issued_at, list.stats().floor_until), (Some(T0 + 70), Some(T0 + 900)));
        assert!(list.denies(&claims("z", "u", None, T0 + 70), T0 + 899));
        assert!(!list.denies(&claims("z", "u", None, T0 + 71), T0 + 100));
    }

    #[test]
    fn non_jti_entries_beyond_their_own_bound_fail_closed_too() {
        let list = RevocationList::new(options(3, 10), 0);
        let entries =
            (0..10).map(|i| entry("sid", &uuid(i), T0 + i as i64, T0 + 600 + i as i64 * 60)).collect();
        list.add(entries, T0 + 10);
        let stats = list.stats();
        assert_eq!((stats.entries, stats.dropped), (3, 7));
        // The ones kept are those that expire last; the dropped ones are
        // covered by the floor.
        assert_eq!((stats.floor_issued_at, stats.floor_until), (Some(T0 + 6), Some(T0 + 600 + 6 * 60)));
        assert!(list.denies(&claims("j", "x", Some(&uuid(9)), T0 + 9), T0 + 20));
        assert!(list.denies(&claims("j", "x", Some(&uuid(0)), T0), T0 + 20));
        assert!(list.denies(&claims("j", "x", Some("unrelated"), T0 + 6), T0 + 20), "floor");
        assert!(!list.denies(&claims("j", "x", Some("unrelated"), T0 + 7), T0 + 20));
    }

    #[test]
    fn a_default_list_holds_a_bulk_revocation_of_a_million_sessions() {
        let list = RevocationList::new(RevocationOptions::default(), 10);
        // One bulk revocation: a million sids with the same times, in pages.
        for page in 0..100u64 {
            let entries =
                (0..10_000).map(|i| entry("sid", &uuid(page * 10_000 + i), T0 + 5, T0 + 900)).collect();
            list.add(entries, T0 + 1);
        }
        let stats = list.stats();
        assert_eq!((stats.entries, stats.dropped, stats.floor_until), (1_000_000, 0, None));
        assert!(list.denies(&claims("j", "u", Some(&uuid(0)), T0), T0 + 2));
        assert!(list.denies(&claims("j", "u", Some(&uuid(999_999)), T0), T0 + 2));
        assert!(!list.denies(&claims("j", "u", Some(&uuid(1_000_000)), T0), T0 + 2), "unrelated sid");
        assert!(!list.denies(&claims("j", "u", None, T0), T0 + 2), "no sid");
        assert!(!list.denies(&claims("j", "u", Some(&uuid(0)), T0 + 6), T0 + 7), "issued after");
        list.add(vec![], T0 + 910);
        assert_eq!(list.stats().entries, 0, "all expired together");
    }
}
