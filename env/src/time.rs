//! Time: [`Ticks`] are nanoseconds of a monotonic clock.
//!
//! A Thread is polled with the time of its poll ([`crate::Thread::poll`]); [`now`] returns that
//! time to code running on the Thread, so tests can drive time by hand ([`crate::testing`]).
//! Off a Thread, [`now`] reads the process's monotonic clock ([`monotonic`]).

use std::ops::{Add, AddAssign, Sub};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Ticks per second: one tick is one nanosecond (SPDK's `spdk_get_ticks_hz`).
pub const TICK_RATE: u64 = 1_000_000_000;

/// A point in monotonic time, in nanoseconds since an arbitrary origin (the first clock read
/// of the process, or 0 for a manual test clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ticks(pub u64);

impl Ticks {
    /// The origin.
    pub const ZERO: Ticks = Ticks(0);

    /// From nanoseconds.
    pub const fn from_nanos(ns: u64) -> Ticks {
        Ticks(ns)
    }

    /// As nanoseconds.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The time from `earlier` to `self`; zero if `earlier` is later.
    pub fn duration_since(self, earlier: Ticks) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at `u64::MAX` nanoseconds.
    pub fn saturating_add(self, d: Duration) -> Ticks {
        Ticks(self.0.saturating_add(duration_to_nanos(d)))
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX`.
pub(crate) fn duration_to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Ticks {
    type Output = Ticks;
    /// Saturating addition.
    fn add(self, d: Duration) -> Ticks {
        self.saturating_add(d)
    }
}

impl AddAssign<Duration> for Ticks {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Ticks> for Ticks {
    type Output = Duration;
    /// Saturating difference (as [`Ticks::duration_since`]).
    fn sub(self, earlier: Ticks) -> Duration {
        self.duration_since(earlier)
    }
}

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// The process's monotonic clock, whatever Thread is current.
pub fn monotonic() -> Ticks {
    Ticks(duration_to_nanos(origin().elapsed()))
}

/// The clock of the Thread being polled on this OS thread (its `poll(now)` argument, or the
/// manual clock of [`crate::testing::TestThreads`]); off a Thread, [`monotonic`].
pub fn now() -> Ticks {
    crate::thread::current_now().unwrap_or_else(monotonic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_arithmetic_saturates() {
        let t = Ticks(100);
        assert_eq!(t + Duration::from_nanos(5), Ticks(105));
        assert_eq!(Ticks(105) - t, Duration::from_nanos(5));
        assert_eq!(t - Ticks(105), Duration::ZERO);
        assert_eq!(
            Ticks(u64::MAX - 1) + Duration::from_secs(1),
            Ticks(u64::MAX)
        );
        let mut u = Ticks::ZERO;
        u += Duration::from_micros(2);
        assert_eq!(u.as_nanos(), 2_000);
    }

    #[test]
    fn monotonic_clock_does_not_go_back() {
        let a = monotonic();
        let b = monotonic();
        assert!(b >= a);
        assert!(now() >= b);
    }
}
