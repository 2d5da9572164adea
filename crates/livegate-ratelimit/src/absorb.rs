//! The local tier in front of Redis: a per-tenant GCRA with the tenant's
//! whole limit that only counts requests Redis admitted on this replica.
//!
//! Those requests are a subset of the ones the shared limiter admitted, and
//! their local stamps (when the call to Redis started) are no later than
//! Redis's own: removing arrivals from a GCRA sequence, or moving them
//! earlier, can only move its TAT earlier. So the local TAT never runs
//! ahead of the shared one, and when the local state refuses a request it
//! is certainly over the shared limit too. The only gap is the time the
//! request would take to reach Redis: a peek refuses only when it would
//! still refuse `slack` later (the caller passes the recent round trip).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::gcra::{self, Params, Step};

/// Per-tenant TATs, µs on the caller's monotonic clock.
#[derive(Debug, Default)]
pub(crate) struct Absorber {
    tats: Mutex<HashMap<String, u64>>,
}

impl Absorber {
    /// Without changing anything: `Some(retry_after)` when the requests
    /// committed so far leave no room at `now + slack_us` (then the shared
    /// limiter, asked now, would refuse too).
    pub(crate) fn peek(
        &self,
        tenant: &str,
        now: u64,
        p: Params,
        slack_us: u64,
    ) -> Option<Duration> {
        let tat = {
            let tats = self.tats.lock().unwrap_or_else(PoisonError::into_inner);
            tats.get(tenant).copied()?
        };
        match gcra::step(tat, now.saturating_add(slack_us), p) {
            Step::Refused { retry_after } => Some(retry_after + Duration::from_micros(slack_us)),
            Step::Allowed { .. } => None,
        }
    }

    /// Counts a request the shared limiter admitted, stamped `at` (no later
    /// than when Redis decided): `tat = max(tat, at) + interval`.
    pub(crate) fn commit(&self, tenant: &str, at: u64, p: Params) {
        let mut tats = self.tats.lock().unwrap_or_else(PoisonError::into_inner);
        match tats.get_mut(tenant) {
            Some(tat) => *tat = (*tat).max(at).saturating_add(p.interval_us),
            None => {
                tats.insert(tenant.to_owned(), at.saturating_add(p.interval_us));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcra::tests::params;
    use proptest::prelude::*;

    #[test]
    fn refuses_only_after_burst_and_commits_nothing_on_peek() {
        let a = Absorber::default();
        let p = params(10.0, 3);
        let now = 1_000_000;
        assert_eq!(a.peek("t", now, p, 0), None);
        for _ in 0..3 {
            assert_eq!(a.peek("t", now, p, 0), None);
            a.commit("t", now, p);
        }
        assert_eq!(a.peek("t", now, p, 0), Some(Duration::from_millis(100)));
        // Peeking changed nothing.
        assert_eq!(a.peek("t", now, p, 0), Some(Duration::from_millis(100)));
        // With 30 ms of slack: still refused, retry counted from now.
        assert_eq!(
            a.peek("t", now, p, 30_000),
            Some(Duration::from_millis(100))
        );
        // A request 100 ms from now would reach Redis in time.
        assert_eq!(a.peek("t", now, p, 100_000), None);
        assert_eq!(a.peek("t", now + 100_000, p, 0), None);
        assert_eq!(a.peek("other", now, p, 0), None);
    }

    proptest! {
        /// "Redis" runs the same `step` over every request (this replica's
        /// and other replicas'), each decided `delay ≤ slack` after this
        /// replica peeked; the local tier commits only what Redis admitted,
        /// stamped at the peek. A peek refusal never happens where Redis
        /// would admit.
        #[test]
        fn peek_refusal_implies_redis_refusal(
            rate in 0.5f64..2000.0,
            burst in 1u32..20,
            slack in prop_oneof![Just(0u64), 0u64..20_000],
            events in proptest::collection::vec(
                (0u64..100_000, any::<bool>(), 0u64..=100), 1..400),
        ) {
            let p = params(rate, burst);
            let a = Absorber::default();
            let (mut redis_tat, mut now) = (0u64, 1_000_000u64);
            for (gap, ours, delay_pct) in events {
                now += gap;
                let decided_at = now + slack * delay_pct / 100;
                let redis = gcra::step(redis_tat, decided_at, p);
                if let Step::Allowed { new_tat, .. } = redis {
                    redis_tat = new_tat;
                }
                if !ours {
                    // Another replica's request: only Redis sees it.
                    continue;
                }
                if a.peek("t", now, p, slack).is_some() {
                    prop_assert!(
                        matches!(redis, Step::Refused { .. }),
                        "peek refused at {now}, redis admits at {decided_at}"
                    );
                    // Redis, not asked, keeps the state its refusal kept.
                    continue;
                }
                if matches!(redis, Step::Allowed { .. }) {
                    a.commit("t", now, p);
                }
            }
        }
    }
}
