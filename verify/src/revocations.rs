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
    created_at: String,
    expires_at: String,
}

#[derive(Deserialize)]
struct Page {
    entries: Vec<Entry>,
    cursor: String,
}

/// Unix seconds of an RFC 3339 instant.
fn unix(rfc3339: &str) -> Option<i64> {
    // Entries come from latchkey in UTC with an offset; a full parser is not
    // needed for "YYYY-MM-DDTHH:MM:SS(.frac)(Z|±HH:MM)".
    let (date, rest) = rfc3339.split_once('T')?;
    let mut d = date.split('-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let time = rest.get(..8)?;
    let mut t = time.split(':').map(str::parse::<i64>);
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let tail = rest.get(8..)?.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match tail {
        "Z" | "" => 0,
        _ => {
            let sign = if tail.starts_with('-') { -1 } else { 1 };
            let (oh, om) = tail.get(1..)?.split_once(':')?;
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss - offset)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevocationStats {
    pub entries: usize,
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
}

impl Lists {
    fn len(&self) -> usize {
        self.jti.len() + self.sid.len() + self.subject.len() + self.client.len()
    }
}

pub(crate) struct RevocationList {
    max_entries: usize,
    lists: Mutex<Lists>,
}

impl RevocationList {
    pub(crate) fn new(max_entries: usize) -> Self {
        RevocationList { max_entries: max_entries.max(1), lists: Mutex::new(Lists::default()) }
    }

    pub(crate) fn stats(&self) -> RevocationStats {
        self.lists
            .lock()
            .map(|l| RevocationStats { entries: l.len(), polls: l.polls, dropped: l.dropped })
            .unwrap_or_default()
    }

    /// Does the feed deny this token at `now`?
    pub(crate) fn denies(&self, claims: &Claims, now: i64) -> bool {
        let Ok(l) = self.lists.lock() else { return false };
        let live = |k: &Kept| k.expires_at > now;
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
        for e in entries {
            let (Some(created_at), Some(expires_at)) = (unix(&e.created_at), unix(&e.expires_at)) else {
                continue;
            };
            let kept = Kept { created_at, expires_at };
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
                    created_at: old.created_at.max(created_at),
                    expires_at: old.expires_at.max(expires_at),
                },
                None => kept,
            };
            map.insert(e.value, merged);
        }
        for map in [&mut l.jti, &mut l.sid, &mut l.subject, &mut l.client] {
            map.retain(|_, k| k.expires_at > now);
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

async fn get_page(
    http: &reqwest::Client,
    credentials: &ClientCredentials,
    url: &str,
) -> Result<Page, String> {
    let token = credentials.token().await.map_err(|e| e.to_string())?;
    let response = http.get(url).bearer_auth(token).send().await.map_err(|e| e.to_string())?;
    if response.status() == reqwest::StatusCode::UNAUTHORIZED {
        credentials.invalidate().await;
    }
    let response = response.error_for_status().map_err(|e| e.to_string())?;
    response.json::<Page>().await.map_err(|e| e.to_string())
}

/// The follower loop: snapshot, then long polls; on errors, back off and retry.
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
            Some(c) => format!("{issuer}/revocations?since={c}&wait=25"),
        };
        match get_page(&http, &credentials, &url).await {
            // A long poll has already waited (or `more` says there is
            // more): ask again at once.
            Ok(page) => {
                backoff = Duration::from_secs(1);
                cursor = Some(page.cursor);
                list.add(page.entries, clock.now());
            }
            Err(e) => {
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

    #[test]
    fn rfc3339_instants_parse_with_offsets_and_fractions() {
        assert_eq!(unix("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix("2026-11-24T10:00:00.123456+00:00"), Some(1_795_514_400));
        assert_eq!(unix("2026-11-24T12:00:00+02:00"), Some(1_795_514_400));
        assert_eq!(unix("garbage"), None);
    }

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

    fn entry(kind: &str, value: &str, created: &str, expires: &str) -> Entry {
        Entry {
            kind: kind.into(),
            value: value.into(),
            created_at: created.into(),
            expires_at: expires.into(),
        }
    }

    #[test]
    fn entries_deny_what_they_name_until_they_expire() {
        let list = RevocationList::new(100);
        let t0 = unix("2026-01-01T00:00:00Z").unwrap();
        list.add(
            vec![
                entry("jti", "j1", "2026-01-01T00:00:00Z", "2026-01-01T00:15:00Z"),
                entry("subject", "u1", "2026-01-01T00:00:00Z", "2026-01-01T00:15:00Z"),
                entry("sid", "s1", "2026-01-01T00:00:00Z", "2026-01-01T00:15:00Z"),
            ],
            t0,
        );
        assert!(list.denies(&claims("j1", "x", None, t0 - 10), t0));
        assert!(list.denies(&claims("j2", "u1", None, t0 - 10), t0), "subject banned");
        assert!(!list.denies(&claims("j2", "u1", None, t0 + 10), t0 + 20), "issued after the ban");
        assert!(list.denies(&claims("j3", "x", Some("s1"), t0 - 10), t0));
        assert!(!list.denies(&claims("j1", "x", None, t0 - 10), t0 + 901), "expired entry");
    }

    #[test]
    fn memory_stays_bounded() {
        let list = RevocationList::new(3);
        let t0 = unix("2026-01-01T00:00:00Z").unwrap();
        let entries = (0..10)
            .map(|i| {
                entry(
                    "jti",
                    &format!("j{i}"),
                    "2026-01-01T00:00:00Z",
                    &format!("2026-01-01T00:{:02}:00Z", 10 + i),
                )
            })
            .collect();
        list.add(entries, t0);
        let stats = list.stats();
        assert_eq!(stats.entries, 3);
        assert_eq!(stats.dropped, 7);
        // The ones kept are those that expire last.
        assert!(list.denies(&claims("j9", "x", None, t0), t0));
        assert!(!list.denies(&claims("j0", "x", None, t0), t0));
    }
}
