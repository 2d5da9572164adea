//! `[ratelimit]`: the defaults for tenants that set no limit, the cap over
//! all tenants, and how the limiter runs.

use std::sync::Arc;
use std::time::Duration;

use livegate_core::serde_duration::millis;
use livegate_redis::RedisSettings;
use serde::{Deserialize, Serialize};

use crate::{
    FallbackLimiter, Limit, LimitError, Limiter, LocalLimiter, RedisLimiter, RedisLimiterSettings,
};

/// Rate limiting: the per-tenant settings are on the tenants; these are the
/// defaults for tenants without them, and how the limiter runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Rate for a tenant that sets none; unset: such tenants are not limited.
    pub default_rate_per_second: Option<f64>,
    /// Burst for a tenant that sets none (with a rate).
    pub default_burst: u32,
    /// A cap over all tenants together (protecting the vendor account);
    /// unset: none.
    pub global_rate_per_second: Option<f64>,
    pub global_burst: u32,
    /// Replicas sharing the limits: with Redis unreachable and
    /// `fail_mode = "local"`, each replica allows 1/replicas of the rate.
    pub replicas: u32,
    /// Bound on the limiter's Redis round trip.
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            default_rate_per_second: None,
            default_burst: 10,
            global_rate_per_second: None,
            global_burst: 50,
            replicas: 1,
            timeout: Duration::from_millis(25),
        }
    }
}

impl RateLimitSettings {
    /// What is wrong with these settings on their own, each problem
    /// naming its key (without the `ratelimit.` its section adds).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (name, zero) in [
            ("timeout_ms", self.timeout.is_zero()),
            ("replicas", self.replicas == 0),
            ("default_burst", self.default_burst == 0),
        ] {
            if zero {
                p.push(format!("{name} must be greater than 0"));
            }
        }
        if self
            .default_rate_per_second
            .is_some_and(|r| !(r.is_finite() && r > 0.0 && r <= 100_000.0))
        {
            p.push("default_rate_per_second must be above 0 and at most 100000".into());
        }
        if self
            .global_rate_per_second
            .is_some_and(|r| !(r.is_finite() && r > 0.0 && r <= 1_000_000.0))
        {
            p.push("global_rate_per_second must be above 0 and at most 1000000".into());
        }
        p
    }

    /// The limit of a tenant that sets none; `None`: such tenants are not
    /// rate-limited.
    pub fn default_limit(&self) -> Option<Limit> {
        self.default_rate_per_second.map(|rate_per_second| Limit {
            rate_per_second,
            burst: self.default_burst,
            monthly_quota: None,
        })
    }

    /// The cap over all tenants together, if any.
    pub fn global_limit(&self) -> Option<Limit> {
        self.global_rate_per_second.map(|rate_per_second| Limit {
            rate_per_second,
            burst: self.global_burst,
            monthly_quota: None,
        })
    }

    /// The limiter: exact GCRA and monthly quotas shared through Redis
    /// (with a per-replica fallback by `redis.fail_mode`) when Redis is
    /// configured, else in this process.
    pub fn limiter(&self, redis: &RedisSettings) -> Result<Arc<dyn Limiter>, LimitError> {
        let nodes = redis.nodes();
        let settings = RedisLimiterSettings {
            command_timeout: self.timeout,
            ..RedisLimiterSettings::default()
        };
        let limiter = match nodes.as_slice() {
            [] => return Ok(Arc::new(LocalLimiter::new())),
            [url] => RedisLimiter::new(url, settings)?,
            nodes => RedisLimiter::new_cluster(nodes, settings)?,
        };
        Ok(Arc::new(FallbackLimiter::new(
            limiter,
            redis.fail_mode,
            self.replicas,
        )))
    }
}
