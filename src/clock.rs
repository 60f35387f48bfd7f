//! Time as a parameter.
//!
//! Services take `now` from a [`Clock`] instead of asking the system, so tests
//! move time forward instead of sleeping (kanidm passes `ct: Duration` for the
//! same reason). `clippy.toml` forbids `Utc::now` everywhere but here.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// Microsecond precision: what PostgreSQL stores, so values survive a round trip.
fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// The wall clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> DateTime<Utc> {
        truncate(Utc::now())
    }
}

/// The wall clock shifted by an adjustable offset. Tests share one with the
/// server and call [`MockClock::advance`]; since it starts at the real time, a
/// separate process (the CLI) on the same database still agrees with it
/// until the test moves it.
#[derive(Debug, Default)]
pub struct MockClock {
    offset_micros: AtomicI64,
}

impl MockClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn advance(&self, by: std::time::Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.offset_micros.fetch_add(micros, Ordering::SeqCst);
    }

    /// Set the clock back: a replica whose clock is behind the others'.
    pub fn rewind(&self, by: std::time::Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.offset_micros.fetch_sub(micros, Ordering::SeqCst);
    }
}

impl Clock for MockClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> DateTime<Utc> {
        let offset = TimeDelta::microseconds(self.offset_micros.load(Ordering::SeqCst));
        truncate(Utc::now() + offset)
    }
}

/// A `std` duration as a chrono delta, saturating instead of failing.
pub fn delta(d: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_clock_moves_only_when_told() {
        let clock = MockClock::new();
        let before = clock.now();
        clock.advance(std::time::Duration::from_secs(3600));
        let after = clock.now();
        assert!(after - before >= TimeDelta::seconds(3600));
        assert!(after - before < TimeDelta::seconds(3700));
    }
}
