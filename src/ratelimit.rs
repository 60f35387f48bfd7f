//! Brute-force protection, in memory, per replica.
//!
//! - **Per address**: every password check and every token request counts
//!   against the client address (IPv6 grouped by /64, since one host owns a
//!   whole /64). A generic cell rate (GCRA): `limit` per minute, bursts up
//!   to `limit`.
//! - **Per username and address**: after `threshold` failures the pair is
//!   locked for `lockout`. Only that address is locked out, so an attacker
//!   cannot lock a user out of everywhere.
//! - **Per username, globally**: when failures for one username come in
//!   faster than `username_failures` per minute (a distributed guess), every
//!   address that already failed for it must wait out its lockout window;
//!   addresses with no failures still get through, so the user can still
//!   sign in while the attack is slowed to one guess per address.
//!
//! Time comes from the [`Clock`](crate::clock::Clock), so tests move it.
//! Memory is bounded: each table prunes expired entries and never holds more
//! than `MAX_KEYS`. Limits are per replica; with N replicas an attacker gets
//! at most N times the budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

const MAX_KEYS: usize = 100_000;

/// The key of an address: IPv4 as is, IPv6 by its /64.
pub fn address_key(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => "unknown".into(),
    }
}

fn seconds_until(t: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    u64::try_from((t - now).num_milliseconds().max(0)).unwrap_or(0).div_ceil(1000).max(1)
}

/// Keep a map below `MAX_KEYS`: when full, drop what `dead` says is dead,
/// then, down to 90% (only reachable under a key-spraying flood, and so a
/// full map is not rescanned on every insert), entries by `rank`, lowest
/// first: what matters least goes before what protects an account.
fn prune<V>(map: &mut HashMap<String, V>, dead: impl Fn(&V) -> bool, rank: impl Fn(&V) -> u8) {
    if map.len() < MAX_KEYS {
        return;
    }
    map.retain(|_, v| !dead(v));
    let target = MAX_KEYS * 9 / 10;
    if map.len() > target {
        let mut ranked: Vec<(u8, String)> = map.iter().map(|(k, v)| (rank(v), k.clone())).collect();
        let excess = map.len() - target;
        ranked.select_nth_unstable_by_key(excess - 1, |(r, _)| *r);
        for (_, k) in ranked.into_iter().take(excess) {
            map.remove(&k);
        }
    }
}

/// A keyed GCRA limiter: `limit` events per minute, bursts up to `limit`.
pub struct RateLimiter {
    interval: TimeDelta,
    tolerance: TimeDelta,
    enabled: bool,
    /// Theoretical arrival time per key.
    tat: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl RateLimiter {
    /// `per_minute == 0` disables the limiter.
    pub fn per_minute(per_minute: u32) -> Self {
        let interval = TimeDelta::milliseconds(60_000 / i64::from(per_minute.max(1)));
        RateLimiter {
            interval,
            tolerance: TimeDelta::minutes(1) - interval,
            enabled: per_minute > 0,
            tat: Mutex::new(HashMap::new()),
        }
    }

    /// Count one event for `key`; `Err(seconds)` to wait if over the limit.
    pub fn check(&self, key: &str, now: DateTime<Utc>) -> Result<(), u64> {
        if !self.enabled {
            return Ok(());
        }
        let Ok(mut map) = self.tat.lock() else { return Ok(()) };
        let tat = map.get(key).copied().unwrap_or(now).max(now);
        if tat - now > self.tolerance {
            return Err(seconds_until(tat - self.tolerance, now));
        }
        prune(&mut map, |t| *t <= now, |_| 0);
        map.insert(key.to_owned(), tat + self.interval);
        Ok(())
    }

    /// Has `key` used more than its budget recently (without counting)?
    pub fn exhausted(&self, key: &str, now: DateTime<Utc>) -> bool {
        self.peek(key, now).is_err()
    }

    /// Like [`check`](Self::check), without counting an event.
    pub fn peek(&self, key: &str, now: DateTime<Utc>) -> Result<(), u64> {
        if !self.enabled {
            return Ok(());
        }
        let Ok(map) = self.tat.lock() else { return Ok(()) };
        match map.get(key) {
            Some(tat) if *tat - now > self.tolerance => Err(seconds_until(*tat - self.tolerance, now)),
            _ => Ok(()),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    first_at: DateTime<Utc>,
    locked_until: Option<DateTime<Utc>>,
    /// Attempts for this pair being checked right now: they count against
    /// the threshold, so concurrent guesses cannot overshoot it.
    in_flight: u32,
}

/// Per username-and-address lockouts, plus the per-username slowdown.
pub struct LoginGuard {
    per_address: RateLimiter,
    username_failures: RateLimiter,
    threshold: u32,
    lockout: TimeDelta,
    pairs: Mutex<HashMap<String, Failures>>,
}

/// Settings of the login guard.
#[derive(Clone, Copy, Debug)]
pub struct LoginLimits {
    pub per_address_per_minute: u32,
    pub username_failures_per_minute: u32,
    pub lockout_threshold: u32,
    pub lockout: TimeDelta,
}

/// One password check in progress. Report its outcome with
/// [`Attempt::failed`] or [`Attempt::succeeded`]; dropping it otherwise
/// (an error, a disconnect) just releases its slot.
pub struct Attempt<'a> {
    guard: &'a LoginGuard,
    username_key: String,
    pair: String,
}

impl LoginGuard {
    pub fn new(limits: LoginLimits) -> Self {
        LoginGuard {
            per_address: RateLimiter::per_minute(limits.per_address_per_minute),
            username_failures: RateLimiter::per_minute(limits.username_failures_per_minute),
            threshold: limits.lockout_threshold,
            lockout: limits.lockout,
            pairs: Mutex::new(HashMap::new()),
        }
    }

    fn pair(username_key: &str, address: &str) -> String {
        format!("{address}\u{0}{username_key}")
    }

    fn fresh(now: DateTime<Utc>) -> Failures {
        Failures { count: 0, first_at: now, locked_until: None, in_flight: 0 }
    }

    /// Before checking a password: `Err(seconds)` if this attempt must wait.
    pub fn begin(&self, username_key: &str, address: &str, now: DateTime<Utc>) -> Result<Attempt<'_>, u64> {
        let pair = Self::pair(username_key, address);
        let Ok(mut pairs) = self.pairs.lock() else { return Err(1) };
        let lockout = self.lockout;
        // Judge the attempt on what is known before recording anything: a
        // refused request must not add an entry (a flood of refused
        // requests would otherwise fill the map and push real lockouts out).
        let expired = |f: &Failures| f.first_at + lockout <= now && f.locked_until.is_none_or(|u| u <= now);
        let current = pairs
            .get(&pair)
            .map(|f| if expired(f) { Failures { in_flight: f.in_flight, ..Self::fresh(now) } } else { *f });
        if let Some(entry) = current {
            if let Some(until) = entry.locked_until.filter(|u| *u > now) {
                return Err(seconds_until(until, now));
            }
            if self.threshold > 0 && entry.count + entry.in_flight >= self.threshold {
                return Err(1);
            }
            if entry.count > 0 && self.username_failures.exhausted(username_key, now) {
                return Err(seconds_until(entry.first_at + lockout, now));
            }
        }
        self.per_address.check(address, now)?;
        // Under a flood, pairs with no failures go first and locked pairs last.
        prune(
            &mut pairs,
            |f| f.in_flight == 0 && expired(f),
            |f| match (f.locked_until.is_some_and(|u| u > now), f.count > 0 || f.in_flight > 0) {
                (true, _) => 2,
                (false, true) => 1,
                (false, false) => 0,
            },
        );
        let entry = pairs.entry(pair.clone()).or_insert_with(|| Self::fresh(now));
        if expired(entry) {
            *entry = Failures { in_flight: entry.in_flight, ..Self::fresh(now) };
        }
        entry.in_flight += 1;
        Ok(Attempt { guard: self, username_key: username_key.to_owned(), pair })
    }
}

impl Attempt<'_> {
    /// The password was wrong.
    pub fn failed(self, now: DateTime<Utc>) {
        let _ = self.guard.username_failures.check(&self.username_key, now);
        let Ok(mut pairs) = self.guard.pairs.lock() else { return };
        if let Some(entry) = pairs.get_mut(&self.pair) {
            entry.count += 1;
            if self.guard.threshold > 0 && entry.count >= self.guard.threshold {
                entry.locked_until = Some(now + self.guard.lockout);
            }
        }
    }

    /// The password was right: the pair starts over.
    pub fn succeeded(self) {
        if let Ok(mut pairs) = self.guard.pairs.lock() {
            if let Some(entry) = pairs.get_mut(&self.pair) {
                entry.count = 0;
                entry.locked_until = None;
            }
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if let Ok(mut pairs) = self.guard.pairs.lock() {
            if let Some(entry) = pairs.get_mut(&self.pair) {
                entry.in_flight = entry.in_flight.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn the_limiter_allows_a_burst_then_one_per_interval() {
        let limiter = RateLimiter::per_minute(6);
        for _ in 0..6 {
            assert!(limiter.check("a", t(0)).is_ok());
        }
        let wait = limiter.check("a", t(0)).unwrap_err();
        assert!((1..=10).contains(&wait), "{wait}");
        assert!(limiter.check("b", t(0)).is_ok(), "keys are independent");
        assert!(limiter.check("a", t(10)).is_ok(), "one interval later, one more");
        assert!(limiter.check("a", t(10)).is_err());
        assert!(RateLimiter::per_minute(0).check("a", t(0)).is_ok(), "0 disables");
    }

    fn guard() -> LoginGuard {
        LoginGuard::new(LoginLimits {
            per_address_per_minute: 0,
            username_failures_per_minute: 3,
            lockout_threshold: 3,
            lockout: TimeDelta::minutes(15),
        })
    }

    fn fail(g: &LoginGuard, user: &str, ip: &str, now: DateTime<Utc>) -> bool {
        match g.begin(user, ip, now) {
            Ok(attempt) => {
                attempt.failed(now);
                true
            }
            Err(_) => false,
        }
    }

    #[test]
    fn a_pair_locks_after_the_threshold_and_only_that_pair() {
        let g = guard();
        for _ in 0..3 {
            assert!(fail(&g, "alice", "1.1.1.1", t(0)));
        }
        assert!(g.begin("alice", "1.1.1.1", t(1)).err().unwrap() > 800);
        assert!(g.begin("alice", "2.2.2.2", t(1)).is_ok(), "another address is not locked");
        assert!(g.begin("bob", "1.1.1.1", t(1)).is_ok(), "another user is not locked");
        assert!(g.begin("alice", "1.1.1.1", t(15 * 60 + 1)).is_ok(), "the lock expires");
    }

    #[test]
    fn a_flood_of_usernames_cannot_push_a_lockout_out_of_memory() {
        let g = LoginGuard::new(LoginLimits {
            per_address_per_minute: 60,
            username_failures_per_minute: 3,
            lockout_threshold: 3,
            lockout: TimeDelta::minutes(15),
        });
        for _ in 0..3 {
            assert!(fail(&g, "alice", "1.1.1.1", t(0)));
        }
        // Refused by the address limit: nothing is recorded for them.
        for i in 0..1000 {
            let _ = g.begin(&format!("spray{i}"), "1.1.1.1", t(1));
        }
        assert!(g.pairs.lock().unwrap().len() < 100, "refused attempts left entries behind");
        // Accepted ones from many addresses overflow the table; the locked
        // pair is the last thing evicted.
        let open = guard();
        for _ in 0..3 {
            assert!(fail(&open, "alice", "1.1.1.1", t(0)));
        }
        for i in 0..MAX_KEYS + 10 {
            drop(open.begin(
                &format!("spray{i}"),
                &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
                t(1),
            ));
        }
        assert!(open.pairs.lock().unwrap().len() <= MAX_KEYS);
        assert!(open.begin("alice", "1.1.1.1", t(2)).is_err(), "the lockout survived the flood");
    }

    #[test]
    fn concurrent_attempts_cannot_overshoot_the_threshold() {
        let g = guard();
        let held: Vec<_> = (0..3).map(|_| g.begin("alice", "1.1.1.1", t(0)).unwrap()).collect();
        assert!(g.begin("alice", "1.1.1.1", t(0)).is_err(), "three in flight already");
        drop(held);
        assert!(g.begin("alice", "1.1.1.1", t(0)).is_ok(), "released slots are free again");
    }

    #[test]
    fn a_distributed_attack_slows_failing_addresses_but_not_fresh_ones() {
        let g = guard();
        for i in 0..10 {
            fail(&g, "alice", &format!("10.0.0.{i}"), t(0));
        }
        assert!(g.begin("alice", "10.0.0.1", t(1)).is_err(), "an address that failed waits");
        assert!(g.begin("alice", "192.0.2.1", t(1)).is_ok(), "the real user's fresh address gets through");
    }

    #[test]
    fn success_clears_the_pair() {
        let g = guard();
        fail(&g, "alice", "1.1.1.1", t(0));
        fail(&g, "alice", "1.1.1.1", t(0));
        g.begin("alice", "1.1.1.1", t(0)).unwrap().succeeded();
        // A minute on, so the per-username slowdown has refilled.
        assert!(fail(&g, "alice", "1.1.1.1", t(60)));
        assert!(fail(&g, "alice", "1.1.1.1", t(60)));
        assert!(g.begin("alice", "1.1.1.1", t(60)).is_ok(), "the count started over: two failures, not four");
    }

    #[test]
    fn ipv6_addresses_are_grouped_by_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(address_key(Some(a)), address_key(Some(b)));
        assert_ne!(address_key(Some(a)), address_key(Some("2001:db8:1:3::1".parse().unwrap())));
    }
}
