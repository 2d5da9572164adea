//! Per-tenant rate limits and monthly quotas.
//!
//! Owns the [`Limiter`] trait the gateway asks once per request, its
//! [`Decision`], and three implementations:
//!
//! - [`LocalLimiter`]: in-process GCRA and monthly counter (the embedded
//!   default, tests, and the fallback; with a `share` divisor when it stands
//!   in for one of several replicas);
//! - [`RedisLimiter`]: exact across replicas, one Lua script per request
//!   (GCRA on Redis server time plus the monthly count, atomically);
//! - [`FallbackLimiter`]: Redis first, then the deployment's [`FailMode`]
//!   while Redis fails, back to Redis by itself. A local tier in front
//!   refuses, without a round trip, tenants this replica alone already saw
//!   admitted over their limit (see [`FallbackLimiter::absorbed`]).
//!
//! Owns the `[ratelimit]` section ([`RateLimitSettings`]).
//!
//! Does not own the tower layer, the response headers, the tenants'
//! settings or metrics export: the gateway reads [`Decision`],
//! [`LimiterHealth`] and [`FallbackLimiter::errors`].
//!
//! # GCRA
//!
//! With emission interval `T = 1 / rate` and burst `B`, each tenant has a
//! theoretical arrival time `TAT`. A request at `now` computes
//! `new = max(TAT, now) + T`; it is admitted when `now >= new - B·T` (then
//! `TAT := new`), else refused with `retry_after = new - B·T - now`. From
//! idle, `B` requests pass at once and then one per `T`: over `t` seconds,
//! `B + ⌊R·t⌋`. The same arithmetic (integer microseconds) runs in Rust
//! ([`LocalLimiter`]) and in Lua ([`RedisLimiter`]). The rate is clamped to
//! at least one per hour and at most one per microsecond, the burst to
//! `1..=1_000_000`, so every time stays exact in Lua's doubles.
//!
//! `governor` (listed in the workspace) is deliberately not used: its
//! snapshots give the remaining burst but not the exact `reset`, and its
//! clock is not shared with the Lua arithmetic; a 20-line GCRA with an
//! injected [`Clock`] is exact and testable.
//!
//! # Quota
//!
//! Counted per tenant and calendar month (UTC); only admitted requests
//! count. A request over the quota is refused before the rate is charged.

mod absorb;
mod clock;
mod fallback;
mod gcra;
pub mod layer;
mod local;
mod month;
mod redis;
mod settings;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;

pub use clock::{Clock, ManualClock, SystemClock};
pub use fallback::{FailMode, FallbackLimiter, RETRY_AFTER_FAILURE};
pub use layer::{RateLimit, RateLimitLayer, RatePolicy, Refused};
pub use local::LocalLimiter;
pub use month::{Month, month_of};
pub use redis::{RedisLimiter, RedisLimiterSettings};
pub use settings::RateLimitSettings;

/// A boxed, sendable future (the trait stays object safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A tenant's limits (from its settings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Sustained requests per second (clamped to `[1/3600, 1_000_000]`).
    pub rate_per_second: f64,
    /// Requests that may arrive at once (clamped to `1..=1_000_000`).
    pub burst: u32,
    /// Requests per calendar month (UTC), if any.
    pub monthly_quota: Option<u64>,
}

/// What the limiter decided for one request. `limit` is the burst in force
/// (after any replica share), for a `RateLimit-Limit` header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Admitted. `remaining`: requests that could be made right now;
    /// `reset`: time until the burst is full again; `quota_remaining` this
    /// month when there is a quota.
    Allowed {
        limit: u32,
        remaining: u32,
        reset: Duration,
        quota_remaining: Option<u64>,
    },
    /// Over the rate: retry after `retry_after`.
    RateLimited { limit: u32, retry_after: Duration },
    /// The month's quota is spent: `retry_after` until the next calendar
    /// month (UTC).
    QuotaExceeded { limit: u32, retry_after: Duration },
    /// `fail_mode = closed` and Redis is unreachable.
    Unavailable,
}

impl Decision {
    /// `allowed`, `rate_limited`, `quota_exceeded` or `unavailable`, e.g.
    /// for a span attribute.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Allowed { .. } => "allowed",
            Decision::RateLimited { .. } => "rate_limited",
            Decision::QuotaExceeded { .. } => "quota_exceeded",
            Decision::Unavailable => "unavailable",
        }
    }
}

/// This month's count, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// `YYYY-MM`, UTC.
    pub month: String,
    /// Admitted requests this month.
    pub used: u64,
    pub monthly_quota: Option<u64>,
    /// `monthly_quota - used` (never below 0) when there is a quota.
    pub remaining: Option<u64>,
}

impl Usage {
    pub(crate) fn new(month: Month, used: u64, monthly_quota: Option<u64>) -> Self {
        Self {
            month: month.to_string(),
            used,
            monthly_quota,
            remaining: monthly_quota.map(|q| q.saturating_sub(used)),
        }
    }
}

/// The limiter's state for `/readyz` and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LimiterHealth {
    /// `"memory"` or `"redis"`.
    pub backend: &'static str,
    /// Whether the backend answers (a fallback in force is not ok).
    pub ok: bool,
    /// The mode in force: `"redis"`, `"local"`, `"open"` or `"closed"`.
    pub mode: &'static str,
    /// Why it is not ok (never a URL or a password).
    pub detail: Option<String>,
    /// Redis errors since start (timeouts, refused connections, …).
    pub errors: u64,
}

/// Why a limiter could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Redis failed, timed out or is being left alone after a failure.
    #[error("rate limiter unavailable: {0}")]
    Unavailable(String),
    /// A bad Redis URL or setting.
    #[error("rate limiter misconfigured: {0}")]
    Config(String),
}

/// A tenant's limit from its settings and the deployment's default
/// (`[ratelimit]`'s rate and burst): `None` when neither a rate nor a quota
/// applies. A quota without a rate gets a rate that is no bound in
/// practice.
pub fn limit_of(
    rate_per_second: Option<f64>,
    burst: Option<u32>,
    monthly_quota: Option<u64>,
    default: Option<impl Into<Limit>>,
) -> Option<Limit> {
    let default = default.map(Into::into);
    let rate = rate_per_second.or(default.map(|d| d.rate_per_second));
    let burst = burst.or(default.map(|d| d.burst)).unwrap_or(1);
    match (rate, monthly_quota) {
        (None, None) => None,
        (None, Some(_)) => Some(Limit {
            rate_per_second: 1_000_000.0,
            burst: 1_000_000,
            monthly_quota,
        }),
        (Some(rate_per_second), _) => Some(Limit {
            rate_per_second,
            burst,
            monthly_quota,
        }),
    }
}

/// `(rate, burst)`, the form the admin API is given the default in.
impl From<(f64, u32)> for Limit {
    fn from((rate_per_second, burst): (f64, u32)) -> Self {
        Self {
            rate_per_second,
            burst,
            monthly_quota: None,
        }
    }
}

impl From<Limit> for (f64, u32) {
    fn from(l: Limit) -> Self {
        (l.rate_per_second, l.burst)
    }
}

/// Decides whether a tenant's request may proceed, and counts it.
pub trait Limiter: Send + Sync + 'static {
    /// Admits or refuses one request of `tenant`; an admitted one is
    /// counted against the month's quota.
    fn check<'a>(&'a self, tenant: &'a str, limit: Limit) -> BoxFuture<'a, Decision>;
    /// This month's count and the current limit state, for the admin API.
    fn usage<'a>(
        &'a self,
        tenant: &'a str,
        limit: Limit,
    ) -> BoxFuture<'a, Result<Usage, LimitError>>;
    /// Backend, whether it is ok, and the mode in force.
    fn health(&self) -> LimiterHealth;
}
