//! The in-process limiter: exact for one process, approximate as one
//! replica's share of a limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::clock::{Clock, SystemClock};
use crate::gcra::{self, Params, Step};
use crate::month::{Month, month_of};
use crate::{BoxFuture, Decision, Limit, LimitError, Limiter, LimiterHealth, Usage};

/// Per-tenant GCRA and monthly counter in this process.
///
/// With `share = n` it enforces `1/n` of each limit (rate, burst at least
/// 1, quota), the part one of `n` replicas may use while they cannot
/// coordinate. Tenants' entries are kept for the life of the process (one
/// small entry per tenant seen).
pub struct LocalLimiter {
    clock: Arc<dyn Clock>,
    share: u32,
    tenants: Mutex<HashMap<String, TenantState>>,
}

#[derive(Debug, Clone, Copy)]
struct TenantState {
    /// Theoretical arrival time, µs on the monotonic clock.
    tat: u64,
    month: Month,
    used: u64,
}

impl Default for LocalLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalLimiter {
    /// The whole limit, on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock), 1)
    }

    /// `1/share` of every limit (`share` 0 is taken as 1), on `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>, share: u32) -> Self {
        Self {
            clock,
            share: share.max(1),
            tenants: Mutex::default(),
        }
    }

    /// The replica share this limiter enforces.
    pub fn share(&self) -> u32 {
        self.share
    }

    fn quota(&self, limit: Limit) -> Option<u64> {
        limit.monthly_quota.map(|q| q / u64::from(self.share))
    }

    /// The synchronous decision (the trait's future is always ready).
    pub fn decide(&self, tenant: &str, limit: Limit) -> Decision {
        let params = Params::new(limit, self.share);
        let quota = self.quota(limit);
        let now = u64::try_from(self.clock.monotonic().as_micros()).unwrap_or(u64::MAX);
        let unix = self.clock.unix();
        let month = month_of(unix);
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        let state = tenants.entry(tenant.to_owned()).or_insert(TenantState {
            tat: 0,
            month,
            used: 0,
        });
        if state.month != month {
            state.month = month;
            state.used = 0;
        }
        if quota.is_some_and(|q| state.used >= q) {
            return Decision::QuotaExceeded {
                limit: params.burst,
                retry_after: month.until_next(unix),
            };
        }
        match gcra::step(state.tat, now, params) {
            Step::Refused { retry_after } => Decision::RateLimited {
                limit: params.burst,
                retry_after,
            },
            Step::Allowed {
                new_tat,
                remaining,
                reset,
            } => {
                state.tat = new_tat;
                state.used += 1;
                Decision::Allowed {
                    limit: params.burst,
                    remaining,
                    reset,
                    quota_remaining: quota.map(|q| q.saturating_sub(state.used)),
                }
            }
        }
    }

    /// This month's count (synchronous).
    pub fn usage_now(&self, tenant: &str, limit: Limit) -> Usage {
        let month = month_of(self.clock.unix());
        let tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        let used = tenants
            .get(tenant)
            .filter(|s| s.month == month)
            .map_or(0, |s| s.used);
        Usage::new(month, used, self.quota(limit))
    }
}

impl Limiter for LocalLimiter {
    fn check<'a>(&'a self, tenant: &'a str, limit: Limit) -> BoxFuture<'a, Decision> {
        let decision = self.decide(tenant, limit);
        Box::pin(std::future::ready(decision))
    }

    fn usage<'a>(
        &'a self,
        tenant: &'a str,
        limit: Limit,
    ) -> BoxFuture<'a, Result<Usage, LimitError>> {
        let usage = self.usage_now(tenant, limit);
        Box::pin(std::future::ready(Ok(usage)))
    }

    fn health(&self) -> LimiterHealth {
        LimiterHealth {
            backend: "memory",
            ok: true,
            mode: "local",
            detail: None,
            errors: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    // 2026-11-30T23:59:59Z
    const NOV_END: Duration = Duration::from_secs(1_796_083_199);

    fn limit(rate: f64, burst: u32, quota: Option<u64>) -> Limit {
        Limit {
            rate_per_second: rate,
            burst,
            monthly_quota: quota,
        }
    }

    /// R = 20/s, B = 5, hammered every 1 ms for 2 s of injected time:
    /// exactly B + ⌊R·t⌋ admitted.
    #[test]
    fn gcra_accuracy_with_injected_clock() {
        let clock = ManualClock::new(Duration::from_secs(1_795_000_000));
        let limiter = LocalLimiter::with_clock(Arc::new(clock.clone()), 1);
        let l = limit(20.0, 5, None);
        let mut admitted = 0u64;
        for _ in 0..2000 {
            // Several callers per tick.
            for _ in 0..3 {
                if matches!(limiter.decide("t", l), Decision::Allowed { .. }) {
                    admitted += 1;
                }
            }
            clock.advance(Duration::from_millis(1));
        }
        // Last tick checked at t = 1.999 s: 5 + ⌊20 · 1.999⌋ = 44.
        assert_eq!(admitted, 5 + 39);
        assert_eq!(limiter.usage_now("t", l).used, admitted);
    }

    #[test]
    fn share_splits_the_limit() {
        let clock = ManualClock::new(Duration::from_secs(1_795_000_000));
        let limiter = LocalLimiter::with_clock(Arc::new(clock), 3);
        let l = limit(30.0, 9, Some(30));
        let admitted = (0..20)
            .filter(|_| matches!(limiter.decide("t", l), Decision::Allowed { .. }))
            .count();
        assert_eq!(admitted, 3);
        assert_eq!(
            limiter.decide("t", l),
            Decision::RateLimited {
                limit: 3,
                retry_after: Duration::from_millis(100)
            }
        );
        assert_eq!(limiter.usage_now("t", l).monthly_quota, Some(10));
    }

    #[test]
    fn quota_counts_admitted_only_and_resets_monthly() {
        let clock = ManualClock::new(NOV_END - Duration::from_secs(10));
        let limiter = LocalLimiter::with_clock(Arc::new(clock.clone()), 1);
        let l = limit(1.0, 3, Some(4));
        let decisions: Vec<_> = (0..6).map(|_| limiter.decide("t", l)).collect();
        assert!(matches!(
            decisions[2],
            Decision::Allowed {
                remaining: 0,
                quota_remaining: Some(1),
                ..
            }
        ));
        assert!(matches!(decisions[3], Decision::RateLimited { .. }));
        assert_eq!(limiter.usage_now("t", l).used, 3);
        clock.advance(Duration::from_secs(1));
        assert!(matches!(
            limiter.decide("t", l),
            Decision::Allowed {
                quota_remaining: Some(0),
                ..
            }
        ));
        clock.advance(Duration::from_secs(1));
        // 2026-11-30T23:59:51Z: 9 s to December.
        assert_eq!(
            limiter.decide("t", l),
            Decision::QuotaExceeded {
                limit: 3,
                retry_after: Duration::from_secs(9)
            }
        );
        let usage = limiter.usage_now("t", l);
        assert_eq!(
            usage,
            Usage {
                month: "2026-11".to_owned(),
                used: 4,
                monthly_quota: Some(4),
                remaining: Some(0)
            }
        );
        clock.advance(Duration::from_secs(9));
        assert!(matches!(limiter.decide("t", l), Decision::Allowed { .. }));
        assert_eq!(limiter.usage_now("t", l).month, "2026-12");
        assert_eq!(limiter.usage_now("other", l).used, 0);
    }
}
