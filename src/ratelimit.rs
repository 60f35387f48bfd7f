//! Brute-force and flood protection, in memory, per replica.
//!
//! - **Per address**: every password check, every token request and every
//!   registration counts against the client address (see [`address_key`]).
//!   A generic cell rate (GCRA): `limit` per period, bursts up to `limit`.
//! - **Per username and address**: after `threshold` failures the pair is
//!   locked for `lockout`. Only that address is locked out, so an attacker
//!   cannot lock a user out of everywhere.
//! - **Per username, globally** (a distributed guess from many addresses):
//!   failures for one username are counted at `username_failures` per
//!   minute (an attempt from an address not known for it counts from the
//!   start, and is given back if it succeeds, so a burst of concurrent
//!   guesses is seen before any hash finishes). When they come in faster,
//!   the username is *under attack* until `lockout` has passed without a
//!   failure for it. While it lasts:
//!   - an address that already failed for it waits out its lockout window;
//!   - every other attempt for it draws from one per-username budget of
//!     `username_failures` attempts per minute (bursts up to as many),
//!     shared by all addresses, so addresses new for that username are
//!     slowed too;
//!   - except from an address where this username signed in successfully
//!     within [`KNOWN_ADDRESS_TTL`]: those skip the shared budget (their
//!     own per-address limit and pair lockout still apply).
//!
//! The trade-off of the per-username budget, with the defaults
//! (`LATCHKEY_USERNAME_FAILURE_RATE=10`, `LATCHKEY_LOCKOUT_DURATION=900`):
//! - *An attacker with N addresses* gets about 10 guesses per minute for
//!   one username in total, whatever N is and however many they send at
//!   once: 10 attempts use the failure limit, the next one starts the attack
//!   state, the shared budget allows a burst of 10 more, then 10 a minute
//!   for as long as they keep going (20 in the first minute, 10 in each one
//!   after). Without it, N addresses gave N
//!   times the lockout threshold per lockout window (5 × N per 15 minutes).
//!   Guessing many usernames spreads over many budgets; that is what the
//!   per-address limit is for.
//! - *The real user*, during the attack, signs in as usual from an address
//!   they used successfully before (on this replica, within 30 days). From
//!   a new address they compete with the attacker for the 10 attempts a
//!   minute and mostly get `429` with a `Retry-After` of a few seconds.
//!   They are never locked out for good: the attack state ends 15 minutes
//!   after the last failure for that username, and then every address is
//!   treated normally again. An attacker can therefore keep a username slow
//!   from new addresses for as long as they keep guessing at 10 a minute;
//!   we accept that rather than give N addresses N times the guesses.
//!
//! Time comes from the [`Clock`](crate::clock::Clock), so tests move it.
//! Memory is bounded: each table prunes expired entries and never holds more
//! than `MAX_KEYS`. Limits are per replica; with N replicas an attacker gets
//! at most N times the budget, and a known address is known to the replica
//! that saw the success.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

const MAX_KEYS: usize = 100_000;

/// How long an address where a username signed in successfully stays
/// known for it (and skips the per-username budget during an attack).
pub const KNOWN_ADDRESS_TTL: TimeDelta = TimeDelta::days(30);

/// The key of an address: IPv4 as is, IPv6 by its /56.
///
/// Not by /64: one host owns a whole /64, but an ISP hands one customer a
/// /56 (sometimes a /48; RFC 6177, RIPE-690), so a single subscriber can
/// rotate through 256 /64s (or 65,536) at will and would get as many
/// budgets. The /56 is the smallest block one customer cannot leave without
/// changing ISP. The price: customers of an ISP that hands out /64s or
/// smaller share a /56 budget with up to 255 neighbours.
pub fn address_key(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let [a, b, c, d, ..] = v6.segments();
            format!("{a:x}:{b:x}:{c:x}:{:x}::/56", d & 0xff00)
        }
        None => "unknown".into(),
    }
}

fn seconds_until(t: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    u64::try_from((t - now).num_milliseconds().max(0)).unwrap_or(0).div_ceil(1000).max(1)
}

/// A pruning rank from how long an entry has left, in `unit`s (capped).
fn rank_by_time(until: DateTime<Utc>, now: DateTime<Utc>, unit: TimeDelta) -> u8 {
    let left = (until - now).num_seconds() / unit.num_seconds().max(1);
    u8::try_from(left.clamp(0, 255)).unwrap_or(u8::MAX)
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

/// A keyed GCRA limiter: `limit` events per period, bursts up to `limit`.
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
        Self::per_period(per_minute, TimeDelta::minutes(1))
    }

    /// `per_hour == 0` disables the limiter.
    pub fn per_hour(per_hour: u32) -> Self {
        Self::per_period(per_hour, TimeDelta::hours(1))
    }

    /// `count` events per `period`, bursts up to `count`; 0 disables.
    fn per_period(count: u32, period: TimeDelta) -> Self {
        let interval = TimeDelta::milliseconds(period.num_milliseconds() / i64::from(count.max(1)));
        RateLimiter {
            interval,
            tolerance: period - interval,
            enabled: count > 0,
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

    /// Give back one event counted for `key` (it turned out harmless).
    pub fn refund(&self, key: &str, now: DateTime<Utc>) {
        let Ok(mut map) = self.tat.lock() else { return };
        if let Some(tat) = map.get_mut(key) {
            *tat = (*tat - self.interval).max(now);
        }
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
    /// Detects an attack: failures per username.
    username_failures: RateLimiter,
    /// During an attack: the attempts all new addresses share per username.
    username_attempts: RateLimiter,
    threshold: u32,
    lockout: TimeDelta,
    pairs: Mutex<HashMap<String, Failures>>,
    /// Usernames under attack, until when (extended by every failure).
    attacks: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Username-and-address pairs that signed in, and when last.
    known: Mutex<HashMap<String, DateTime<Utc>>>,
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
    /// Already counted against the username's failures (refunded on success).
    counted: bool,
}

impl LoginGuard {
    pub fn new(limits: LoginLimits) -> Self {
        LoginGuard {
            per_address: RateLimiter::per_minute(limits.per_address_per_minute),
            username_failures: RateLimiter::per_minute(limits.username_failures_per_minute),
            username_attempts: RateLimiter::per_minute(limits.username_failures_per_minute),
            threshold: limits.lockout_threshold,
            lockout: limits.lockout,
            pairs: Mutex::new(HashMap::new()),
            attacks: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Is `username_key` under a distributed attack right now?
    fn under_attack(&self, username_key: &str, now: DateTime<Utc>) -> bool {
        let Ok(attacks) = self.attacks.lock() else { return true };
        attacks.get(username_key).is_some_and(|until| *until > now)
    }

    /// Did this username sign in from this address recently?
    fn is_known(&self, pair: &str, now: DateTime<Utc>) -> bool {
        let Ok(known) = self.known.lock() else { return false };
        known.get(pair).is_some_and(|at| *at + KNOWN_ADDRESS_TTL > now)
    }

    /// `username_key` is under attack from now until `lockout` from now.
    fn start_attack(&self, username_key: &str, now: DateTime<Utc>) {
        let Ok(mut attacks) = self.attacks.lock() else { return };
        // Those with the least time left go first.
        prune(&mut attacks, |until| *until <= now, |until| rank_by_time(*until, now, TimeDelta::minutes(10)));
        attacks.insert(username_key.to_owned(), now + self.lockout);
    }

    /// A failure for `username_key` (`counted` when its attempt already
    /// counted): start the attack state when failures come faster than the
    /// limit, and extend it while it lasts, so it ends `lockout` after the
    /// last failure.
    fn record_failure(&self, username_key: &str, counted: bool, now: DateTime<Utc>) {
        let over = !counted && self.username_failures.check(username_key, now).is_err();
        if over || self.under_attack(username_key, now) {
            self.start_attack(username_key, now);
        }
    }

    fn record_success(&self, pair: &str, now: DateTime<Utc>) {
        let Ok(mut known) = self.known.lock() else { return };
        // The least recently used go first.
        prune(
            &mut known,
            |at| *at + KNOWN_ADDRESS_TTL <= now,
            |at| rank_by_time(*at + KNOWN_ADDRESS_TTL, now, TimeDelta::hours(3)),
        );
        known.insert(pair.to_owned(), now);
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
        // From an address new for this username, the attempt counts as a
        // failure until it succeeds (so a burst of concurrent guesses is
        // seen before the hashes finish), and during an attack it draws from
        // the username's shared budget.
        let mut counted = false;
        if !self.is_known(&pair, now) {
            // Spend nothing of the username's on an attempt the address
            // limit refuses anyway.
            self.per_address.peek(address, now)?;
            let mut attack = self.under_attack(username_key, now);
            if !attack {
                counted = self.username_failures.check(username_key, now).is_ok();
                if !counted {
                    self.start_attack(username_key, now);
                    attack = true;
                }
            }
            if attack {
                self.username_attempts.check(username_key, now)?;
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
        Ok(Attempt { guard: self, username_key: username_key.to_owned(), pair, counted })
    }
}

impl Attempt<'_> {
    /// The password was wrong.
    pub fn failed(self, now: DateTime<Utc>) {
        self.guard.record_failure(&self.username_key, self.counted, now);
        let Ok(mut pairs) = self.guard.pairs.lock() else { return };
        if let Some(entry) = pairs.get_mut(&self.pair) {
            entry.count += 1;
            if self.guard.threshold > 0 && entry.count >= self.guard.threshold {
                entry.locked_until = Some(now + self.guard.lockout);
            }
        }
    }

    /// The password was right: the pair starts over, and the address is
    /// known for this username from now on.
    pub fn succeeded(self, now: DateTime<Utc>) {
        if let Ok(mut pairs) = self.guard.pairs.lock() {
            if let Some(entry) = pairs.get_mut(&self.pair) {
                entry.count = 0;
                entry.locked_until = None;
            }
        }
        if self.counted {
            self.guard.username_failures.refund(&self.username_key, now);
        }
        self.guard.record_success(&self.pair, now);
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
    fn a_distributed_attack_gets_a_bounded_rate_and_spares_known_addresses() {
        let g = guard();
        g.begin("alice", "198.51.100.1", t(0)).unwrap().succeeded(t(0));
        let passed = (0..20).filter(|i| fail(&g, "alice", &format!("10.0.0.{i}"), t(0))).count();
        // Three attempts use the failure limit, the fourth starts the
        // attack and draws from the shared budget, which allows three.
        assert_eq!(passed, 6, "20 addresses got {passed} guesses");
        assert!(g.begin("alice", "10.0.0.1", t(1)).is_err(), "an address that failed waits");
        assert!(g.begin("alice", "192.0.2.1", t(1)).is_err(), "a new address is slowed too");
        assert!(g.begin("bob", "192.0.2.1", t(1)).is_ok(), "other usernames are not");
        assert!(g.begin("alice", "198.51.100.1", t(1)).is_ok(), "an address the user signed in from is not");
        // The budget refills at three a minute while the attack lasts...
        assert!(fail(&g, "alice", "10.0.1.1", t(21)));
        assert!(g.begin("alice", "192.0.2.1", t(21)).is_err());
        // ...and the attack state ends fifteen minutes after the last failure.
        assert!(g.begin("alice", "192.0.2.1", t(21 + 15 * 60 - 1)).is_ok(), "a slot is free by then");
        let later = t(21 + 15 * 60 + 1);
        let fresh: Vec<_> = (0..3).map(|i| g.begin("alice", &format!("192.0.2.{i}"), later)).collect();
        assert!(fresh.iter().all(Result::is_ok), "after the attack, new addresses are normal again");
    }

    #[test]
    fn success_clears_the_pair() {
        let g = guard();
        fail(&g, "alice", "1.1.1.1", t(0));
        fail(&g, "alice", "1.1.1.1", t(0));
        g.begin("alice", "1.1.1.1", t(0)).unwrap().succeeded(t(0));
        // A minute on, so the per-username slowdown has refilled.
        assert!(fail(&g, "alice", "1.1.1.1", t(60)));
        assert!(fail(&g, "alice", "1.1.1.1", t(60)));
        assert!(g.begin("alice", "1.1.1.1", t(60)).is_ok(), "the count started over: two failures, not four");
    }

    #[test]
    fn ipv6_addresses_are_grouped_by_56() {
        let key = |s: &str| address_key(Some(s.parse().unwrap()));
        assert_eq!(key("2001:db8:1:200::1"), "2001:db8:1:200::/56");
        assert_eq!(key("2001:db8:1:200::1"), key("2001:db8:1:2ff:ffff::9"), "256 /64s of one customer");
        assert_ne!(key("2001:db8:1:200::1"), key("2001:db8:1:300::1"), "the next /56");
        assert_eq!(key("192.0.2.1"), "192.0.2.1");
    }
}
