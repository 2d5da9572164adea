//! Redis first; the deployment's fail mode while Redis fails.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::absorb::Absorber;
use crate::clock::{Clock, SystemClock};
use crate::gcra::Params;
use crate::local::LocalLimiter;
use crate::redis::RedisLimiter;
use crate::{BoxFuture, Decision, Limit, LimitError, Limiter, LimiterHealth, Usage};

/// After a failure, Redis is tried again at most this often: a dead or
/// frozen Redis costs one request per interval a timeout, not every
/// request.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(100);

/// What to answer while Redis is unreachable: the deployment's one
/// `redis.fail_mode`, shared with the key store and readiness.
pub use livegate_redis::FailMode;

/// The gateway's limiter with Redis: exact while Redis answers, the
/// [`FailMode`] while it does not, and back by itself.
///
/// State changes are logged once (warn when falling back, info when
/// recovered), never per request. Requests admitted locally during an
/// outage are not written back to Redis's monthly count, and the local
/// quota is `quota / replicas` of what this process counted itself, so a
/// long outage makes the quota approximate.
///
/// While Redis is healthy, a local tier absorbs floods: a per-tenant GCRA
/// with the tenant's whole limit that counts only the requests Redis
/// admitted on this replica. When it has no room left, the tenant is over
/// its shared limit too and the request is refused
/// ([`Decision::RateLimited`]) without asking Redis; otherwise Redis
/// decides as usual, so the shared limit stays exact. To cover the time a
/// request takes to reach Redis, the local tier refuses only when it would
/// still refuse a recent round trip later. Quota refusals are left to
/// Redis. Tenants' entries are kept for the life of the process.
pub struct FallbackLimiter {
    redis: RedisLimiter,
    local: LocalLimiter,
    mode: FailMode,
    errors: AtomicU64,
    failure: Mutex<Option<Failure>>,
    tier: Absorber,
    tier_clock: SystemClock,
    /// A decaying peak of Redis round trips, µs.
    rtt_peak_us: AtomicU64,
    absorbed: AtomicU64,
}

struct Failure {
    since: Instant,
    last_attempt: Instant,
    why: String,
}

impl FallbackLimiter {
    /// `replicas` is the number of gateway replicas sharing the limits (the
    /// local share while in [`FailMode::Local`]).
    pub fn new(redis: RedisLimiter, mode: FailMode, replicas: u32) -> Self {
        let local = LocalLimiter::with_clock(Arc::new(SystemClock), replicas);
        Self::with_local(redis, mode, local)
    }

    /// With a given local limiter (its share and clock).
    pub fn with_local(redis: RedisLimiter, mode: FailMode, local: LocalLimiter) -> Self {
        Self {
            redis,
            local,
            mode,
            errors: AtomicU64::new(0),
            failure: Mutex::new(None),
            tier: Absorber::default(),
            tier_clock: SystemClock,
            rtt_peak_us: AtomicU64::new(0),
            absorbed: AtomicU64::new(0),
        }
    }

    /// Requests the local tier refused without asking Redis, since start.
    pub fn absorbed(&self) -> u64 {
        self.absorbed.load(Ordering::Relaxed)
    }

    fn tier_now(&self) -> u64 {
        u64::try_from(self.tier_clock.monotonic().as_micros()).unwrap_or(u64::MAX)
    }

    /// Remembers a round trip: the peak decays by 1/8 per call.
    fn round_trip(&self, rtt: Duration) {
        let rtt = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        let _ = self
            .rtt_peak_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |peak| {
                Some(rtt.max(peak - peak / 8))
            });
    }

    /// Redis failures and timeouts since start.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub fn fail_mode(&self) -> FailMode {
        self.mode
    }

    fn failure(&self) -> MutexGuard<'_, Option<Failure>> {
        self.failure.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this call should ask Redis: always while healthy, one call
    /// per [`RETRY_AFTER_FAILURE`] while failing.
    fn should_ask(&self, now: Instant) -> bool {
        match &mut *self.failure() {
            None => true,
            Some(f) if now.saturating_duration_since(f.last_attempt) >= RETRY_AFTER_FAILURE => {
                f.last_attempt = now;
                true
            }
            Some(_) => false,
        }
    }

    fn succeeded(&self, started: Instant) {
        let mut failure = self.failure();
        // A call that started before the failure proves nothing.
        if failure.as_ref().is_some_and(|f| started >= f.since) {
            *failure = None;
            tracing::info!("rate limiter: redis recovered, exact limits resumed");
        }
    }

    fn failed(&self, err: &LimitError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let why = match err {
            LimitError::Unavailable(why) | LimitError::Config(why) => why.clone(),
        };
        let mut failure = self.failure();
        match &mut *failure {
            Some(f) => {
                f.last_attempt = now;
                f.why = why;
            }
            None => {
                tracing::warn!(
                    fail_mode = self.mode.as_str(),
                    error = %why,
                    "rate limiter: redis unavailable, falling back"
                );
                *failure = Some(Failure {
                    since: now,
                    last_attempt: now,
                    why,
                });
            }
        }
    }

    fn fallback(&self, tenant: &str, limit: Limit) -> Decision {
        match self.mode {
            FailMode::Local => self.local.decide(tenant, limit),
            FailMode::Open => Decision::Allowed {
                limit: limit.burst.max(1),
                remaining: limit.burst.max(1),
                reset: Duration::ZERO,
                quota_remaining: None,
            },
            FailMode::Closed => Decision::Unavailable,
        }
    }
}

impl Limiter for FallbackLimiter {
    fn check<'a>(&'a self, tenant: &'a str, limit: Limit) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            let started = Instant::now();
            let now = self.tier_now();
            let params = Params::new(limit, 1);
            // The local tier, only while Redis is in force.
            let healthy = self.failure().is_none();
            if healthy {
                let slack = self.rtt_peak_us.load(Ordering::Relaxed);
                if let Some(retry_after) = self.tier.peek(tenant, now, params, slack) {
                    self.absorbed.fetch_add(1, Ordering::Relaxed);
                    return Decision::RateLimited {
                        limit: params.burst,
                        retry_after,
                    };
                }
            }
            if self.should_ask(started) {
                match self.redis.try_check(tenant, limit).await {
                    Ok(decision) => {
                        self.round_trip(started.elapsed());
                        self.succeeded(started);
                        if matches!(decision, Decision::Allowed { .. }) {
                            // Stamped when the call started: no later than
                            // Redis's decision.
                            self.tier.commit(tenant, now, params);
                        }
                        return decision;
                    }
                    Err(e) => self.failed(&e),
                }
            }
            self.fallback(tenant, limit)
        })
    }

    /// Always from Redis (the local count is not the month's usage).
    fn usage<'a>(
        &'a self,
        tenant: &'a str,
        limit: Limit,
    ) -> BoxFuture<'a, Result<Usage, LimitError>> {
        Box::pin(self.redis.try_usage(tenant, limit))
    }

    fn health(&self) -> LimiterHealth {
        match &*self.failure() {
            None => LimiterHealth {
                backend: "redis",
                ok: true,
                mode: "redis",
                detail: None,
                errors: self.errors(),
            },
            Some(f) => LimiterHealth {
                backend: "redis",
                ok: false,
                mode: self.mode.as_str(),
                detail: Some(f.why.clone()),
                errors: self.errors(),
            },
        }
    }
}
