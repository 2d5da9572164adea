//! The GCRA arithmetic, in integer microseconds. The Lua script in
//! `redis.rs` does the same steps; keep them in step.

use std::time::Duration;

use crate::Limit;

/// Slowest rate: one request per hour.
const MAX_INTERVAL_US: u64 = 3_600_000_000;
const MAX_BURST: u32 = 1_000_000;

/// A limit in the units GCRA works in, after the replica share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) interval_us: u64,
    pub(crate) burst: u32,
}

impl Params {
    /// `share` replicas split the limit: rate ÷ share, burst ÷ share (at
    /// least 1).
    pub(crate) fn new(limit: Limit, share: u32) -> Self {
        let share = share.max(1);
        let rate = limit.rate_per_second / f64::from(share);
        let interval = if rate.is_finite() && rate > 0.0 {
            (1e6 / rate).round()
        } else {
            f64::INFINITY
        };
        // `as` saturates (NaN never reaches here), then clamp.
        let interval_us = (interval as u64).clamp(1, MAX_INTERVAL_US);
        let burst = (limit.burst / share).clamp(1, MAX_BURST);
        Self { interval_us, burst }
    }

    fn window_us(self) -> u64 {
        self.interval_us * u64::from(self.burst)
    }
}

/// The outcome of one GCRA step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Allowed {
        new_tat: u64,
        remaining: u32,
        reset: Duration,
    },
    Refused {
        retry_after: Duration,
    },
}

/// One request at `now` against a stored `tat` (0 when none).
pub(crate) fn step(tat: u64, now: u64, p: Params) -> Step {
    let new_tat = tat.max(now) + p.interval_us;
    let allow_at = new_tat.saturating_sub(p.window_us());
    if now < allow_at {
        return Step::Refused {
            retry_after: Duration::from_micros(allow_at - now),
        };
    }
    // Not `now - allow_at`: `allow_at` saturates at 0 while `now` is still
    // within one window of the clock's origin (a monotonic clock that starts
    // with the process), which would understate what remains.
    let remaining = (now + p.window_us() - new_tat) / p.interval_us;
    Step::Allowed {
        new_tat,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        reset: Duration::from_micros(new_tat - now),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn params(rate: f64, burst: u32) -> Params {
        Params::new(
            Limit {
                rate_per_second: rate,
                burst,
                monthly_quota: None,
            },
            1,
        )
    }

    #[test]
    fn burst_then_one_per_interval() {
        let p = params(20.0, 5);
        assert_eq!(p.interval_us, 50_000);
        let mut tat = 0;
        let now = 1_000_000;
        for want in (0..5).rev() {
            match step(tat, now, p) {
                Step::Allowed {
                    new_tat, remaining, ..
                } => {
                    assert_eq!(remaining, want);
                    tat = new_tat;
                }
                Step::Refused { .. } => panic!("refused within the burst"),
            }
        }
        assert_eq!(
            step(tat, now, p),
            Step::Refused {
                retry_after: Duration::from_millis(50)
            }
        );
        assert!(matches!(
            step(tat, now + 50_000, p),
            Step::Allowed { remaining: 0, .. }
        ));
    }

    #[test]
    fn a_full_burst_remains_right_after_the_clock_origin() {
        // 5/s, burst 10: a 2 s window; the first request 100 ms after the
        // monotonic clock starts leaves 9, not `now / interval`.
        let p = params(5.0, 10);
        let mut tat = 0;
        for want in (0..10).rev() {
            let Step::Allowed {
                new_tat, remaining, ..
            } = step(tat, 100_000, p)
            else {
                panic!("refused within the burst")
            };
            assert_eq!(remaining, want);
            tat = new_tat;
        }
        assert!(matches!(step(tat, 100_000, p), Step::Refused { .. }));
    }

    #[test]
    fn reset_is_time_until_full() {
        let p = params(10.0, 3);
        let Step::Allowed { reset, .. } = step(0, 5_000_000, p) else {
            panic!()
        };
        assert_eq!(reset, Duration::from_millis(100));
    }

    #[test]
    fn share_divides_rate_and_burst() {
        let l = Limit {
            rate_per_second: 20.0,
            burst: 5,
            monthly_quota: None,
        };
        assert_eq!(
            Params::new(l, 2),
            Params {
                interval_us: 100_000,
                burst: 2
            }
        );
        assert_eq!(Params::new(l, 10).burst, 1);
        assert_eq!(Params::new(l, 0), Params::new(l, 1));
    }

    #[test]
    fn degenerate_limits_are_clamped() {
        assert_eq!(params(0.0, 0).interval_us, MAX_INTERVAL_US);
        assert_eq!(params(f64::NAN, 0).burst, 1);
        assert_eq!(params(1e12, u32::MAX).interval_us, 1);
        assert_eq!(params(1e12, u32::MAX).burst, MAX_BURST);
    }

    proptest! {
        /// Over any arrival pattern, admissions never exceed B + ⌊elapsed / T⌋.
        #[test]
        fn never_more_than_burst_plus_rate(
            rate in 0.5f64..1000.0,
            burst in 1u32..50,
            gaps in proptest::collection::vec(0u64..200_000, 1..300),
        ) {
            let p = params(rate, burst);
            let (mut tat, mut now, mut admitted) = (0u64, 1_000_000u64, 0u64);
            let start = now;
            for g in gaps {
                now += g;
                if let Step::Allowed { new_tat, .. } = step(tat, now, p) {
                    tat = new_tat;
                    admitted += 1;
                }
            }
            prop_assert!(admitted <= u64::from(p.burst) + (now - start) / p.interval_us);
        }
    }
}
